"""The collection entry types `datasets` and `cohorts`, and the filtering terms of the data.

Datasets are the ones the node holds (declared in the configuration, created by an ingest, or holding
variants), with the operator's name, description and DUO data-use conditions. Each dataset has one
beacon-defined cohort, "all individuals of the dataset", with criteria and counts computed by
aggregate SQL (no document is read). `/filtering_terms` lists exactly the terms present in the data.
"""

from __future__ import annotations

from functools import cache

import sqlalchemy as sa

from gateway.beacon import ontology
from gateway.beacon.context import QueryContext
from gateway.beacon.filters import AGE_IDS, EXCLUDED_KINDS, EXCLUDED_PREFIX, PRESENT_KINDS, SEX_ID, VITAL_ID
from gateway.beacon.individuals import check_record_id, no_parameters
from gateway.beacon.registry import EntryType
from gateway.beacon.request import BeaconRequest
from gateway.beacon.response import EntryAnswer, ResultSet
from gateway.security.policy import Granularity
from gateway.store.tables import (
    BIOSAMPLE_PHENOTYPE,
    BIOSAMPLE_TERM,
    DISEASE,
    SAMPLED_TISSUE,
    datasets,
    phenopacket_terms,
    phenopackets,
)
from mappings import load_table
from translators.phenopacket_to_beacon import sex_term

COHORT_SUFFIX = "-all"
MAX_COHORT_DISEASES = 20
_DAYS_PER_YEAR = 365.2425


@cache
def _duo() -> tuple[str, dict[str, str]]:
    table = load_table("beacon/duo")
    return table["_version"], {k: v for k, v in table.items() if not k.startswith("_")}


def duo_terms(curies) -> list[dict]:
    """DUO terms as Beacon `DUODataUse`; a non-DUO CURIE (the disease of DUO:0000007
    disease-specific research, say) is a modifier of the DUO term before it."""
    version, labels = _duo()
    out: list[dict] = []
    for curie in curies:
        if not curie.startswith("DUO:") and out:
            out[-1].setdefault("modifiers", []).append({"id": curie})
            continue
        term = {"id": curie, "version": version}
        if curie in labels:
            term["label"] = labels[curie]
        out.append(term)
    return out


# --- datasets ------------------------------------------------------------------------------


def _store_rows(ctx, dataset_ids: tuple[str, ...]) -> dict[str, dict]:
    if ctx.store is None or not dataset_ids:
        return {}
    count = sa.func.count(phenopackets.c.pk)
    query = (
        sa.select(
            datasets.c.id, datasets.c.name, datasets.c.description, datasets.c.created_at, datasets.c.updated_at, count
        )
        .select_from(datasets.outerjoin(phenopackets, phenopackets.c.dataset_id == datasets.c.id))
        .where(datasets.c.id.in_(dataset_ids))
        .group_by(datasets.c.id, datasets.c.name, datasets.c.description, datasets.c.created_at, datasets.c.updated_at)
    )
    with ctx.store.engine.connect() as connection:
        return {
            row[0]: dict(zip(("id", "name", "description", "created", "updated", "individuals"), row, strict=True))
            for row in connection.execute(query)
        }


def _timestamp(value) -> str | None:
    if value is None:
        return None
    text = value.isoformat()
    return text if value.tzinfo is not None else text + "Z"


def dataset_record(ctx, dataset_id: str, row: dict | None) -> dict:
    declared = ctx.config.dataset(dataset_id)
    name = (declared.name if declared and declared.name else None) or (row or {}).get("name") or dataset_id
    record: dict = {"id": dataset_id, "name": name}
    description = (declared.description if declared else "") or (row or {}).get("description")
    if description:
        record["description"] = description
    if row:
        for key, column in (("createDateTime", "created"), ("updateDateTime", "updated")):
            stamp = _timestamp(row.get(column))
            if stamp:
                record[key] = stamp
    conditions = tuple(declared.data_use_conditions) if declared else ()
    if not conditions:
        conditions = ctx.config.default_data_use_conditions
    if conditions:
        record["dataUseConditions"] = {"duoDataUse": duo_terms(conditions)}
    variants = ctx.variants.datasets() if ctx.variants is not None else []
    record["info"] = {
        "securityLevel": declared.security_level if declared else "CONTROLLED",
        "declared": declared is not None,
        "individuals": int((row or {}).get("individuals") or 0),
        "genomicVariants": dataset_id in variants,
    }
    return record


def answer_datasets(
    ctx: QueryContext,
    request: BeaconRequest,
    granularity: Granularity,
    dataset_ids: tuple[str, ...],
    record_id: str | None = None,
) -> EntryAnswer:
    selected = dataset_ids if record_id is None else tuple(d for d in dataset_ids if d == check_record_id(record_id))
    return _collection_answer(request, granularity, selected, lambda ids: [dataset_record(ctx, d, r) for d, r in ids])(
        _store_rows(ctx, selected)
    )


def _collection_answer(request, granularity, selected, build):
    def finish(rows: dict) -> EntryAnswer:
        total = len(selected)
        page = selected[request.offset : request.offset + request.limit] if granularity == "record" else ()
        records = build([(d, rows.get(d)) for d in page])
        # Collections are one result set: the node's own catalogue, not a per-dataset answer.
        result_sets = (
            [ResultSet(id="collections", count=total, records=records, set_type="collection")]
            if granularity == "record"
            else []
        )
        return EntryAnswer(exists=total > 0, total=total, result_sets=result_sets)

    return finish


# --- cohorts -------------------------------------------------------------------------------


def cohort_id(dataset_id: str) -> str:
    return dataset_id + COHORT_SUFFIX


def dataset_of_cohort(cohort: str) -> str | None:
    return cohort[: -len(COHORT_SUFFIX)] if cohort.endswith(COHORT_SUFFIX) else None


def _duration(days: float) -> str:
    years = int(days // _DAYS_PER_YEAR)
    rest = round(days - years * _DAYS_PER_YEAR)
    return f"P{years}Y{rest}D" if rest else f"P{years}Y"


def cohort_record(ctx, dataset_id: str, row: dict | None) -> dict:
    record: dict = {
        "id": cohort_id(dataset_id),
        "name": f"All individuals of {(row or {}).get('name') or dataset_id}",
        "cohortType": "beacon-defined",
        "cohortDesign": {"id": "OMIABIS:0001024", "label": "other"},
    }
    size = int((row or {}).get("individuals") or 0)
    record["cohortSize"] = size
    data_types = [{"id": "OGMS:0000015", "label": "clinical history"}]
    if ctx.variants is not None and dataset_id in ctx.variants.datasets():
        data_types.append({"id": "OBI:0000070", "label": "genotyping assay"})
    record["cohortDataTypes"] = data_types
    if ctx.store is None or size == 0:
        record["inclusionCriteria"] = {}
        return record
    p, t = phenopackets.c, phenopacket_terms.c
    with ctx.store.engine.connect() as connection:
        sexes = connection.execute(
            sa.select(p.sex, sa.func.count()).where(p.dataset_id == dataset_id).group_by(p.sex)
        ).all()
        ages = connection.execute(
            sa.select(sa.func.min(p.age_days), sa.func.max(p.age_days), sa.func.count(p.age_days)).where(
                p.dataset_id == dataset_id
            )
        ).one()
        n = sa.func.count().label("n")
        diseases = connection.execute(
            sa.select(t.term, sa.func.min(t.label), n)
            .where(t.kind == DISEASE, t.dataset_id == dataset_id)
            .group_by(t.term)
            .order_by(n.desc(), t.term)
            .limit(MAX_COHORT_DISEASES)
        ).all()
    criteria: dict = {"genders": [sex_term(s) for s, _ in sexes]}
    if ages[2]:
        criteria["ageRange"] = {
            "start": {"iso8601duration": _duration(ages[0])},
            "end": {"iso8601duration": _duration(ages[1])},
        }
    if diseases:
        criteria["diseaseConditions"] = [
            {"diseaseCode": {"id": term, "label": label} if label else {"id": term}} for term, label, _ in diseases
        ]
    record["inclusionCriteria"] = criteria
    record["collectionEvents"] = [
        {
            "eventNum": 1,
            "eventSize": size,
            "eventGenders": {
                "availability": True,
                "availabilityCount": sum(c for s, c in sexes if s),
                "distribution": {"genders": {sex_term(s)["label"]: c for s, c in sexes}},
            },
            "eventDiseases": {
                "availability": bool(diseases),
                "availabilityCount": len(diseases),
                "distribution": {"diseases": {term: c for term, _, c in diseases}},
            },
        }
    ]
    return record


def answer_cohorts(
    ctx: QueryContext,
    request: BeaconRequest,
    granularity: Granularity,
    dataset_ids: tuple[str, ...],
    record_id: str | None = None,
) -> EntryAnswer:
    if record_id is not None:
        wanted = dataset_of_cohort(check_record_id(record_id))
        selected = tuple(d for d in dataset_ids if d == wanted)
    else:
        selected = dataset_ids
    return _collection_answer(request, granularity, selected, lambda ids: [cohort_record(ctx, d, r) for d, r in ids])(
        _store_rows(ctx, selected)
    )


def cohort_datasets(record_id: str, dataset_ids: tuple[str, ...]) -> tuple[str, ...]:
    wanted = dataset_of_cohort(check_record_id(record_id))
    return tuple(d for d in dataset_ids if d == wanted)


# --- filtering terms -----------------------------------------------------------------------


@cache
def _code_systems():
    from mappings import load_registry

    return load_registry().systems


def _resource(prefix: str) -> dict:
    system = _code_systems().get(prefix)
    if system is None:
        return {"id": prefix.lower(), "nameSpacePrefix": prefix}
    out = {"id": system.id, "name": system.name, "url": system.url, "nameSpacePrefix": prefix}
    if system.iri_prefix:
        out["iriPrefix"] = system.iri_prefix
    if system.version and system.version != "unspecified":
        out["version"] = system.version
    if prefix == "HP":
        out["version"] = out.get("version") or "hpo3-embedded"
    return out


def filtering_terms(ctx, dataset_ids: tuple[str, ...], scope: str | None = None) -> dict:
    """`{"filteringTerms": [...], "resources": [...]}` for the terms present in `dataset_ids`."""
    terms: dict[str, dict] = {}
    custom: dict[str, dict] = {}
    sexes: list[str] = []
    has_age = has_vital = False
    if ctx.store is not None and dataset_ids:
        t, p = phenopacket_terms.c, phenopackets.c
        with ctx.store.engine.connect() as connection:
            rows = connection.execute(
                sa.select(t.kind, t.term, sa.func.min(t.label))
                .where(t.dataset_id.in_(dataset_ids))
                .group_by(t.kind, t.term)
            ).all()
            sexes = [s for (s,) in connection.execute(sa.select(p.sex).where(p.dataset_id.in_(dataset_ids)).distinct())]
            has_age = (
                connection.execute(
                    sa.select(sa.literal(1)).where(p.dataset_id.in_(dataset_ids), p.age_days.is_not(None)).limit(1)
                ).first()
                is not None
            )
            has_vital = (
                connection.execute(
                    sa.select(sa.literal(1)).where(p.dataset_id.in_(dataset_ids), p.vital_status.is_not(None)).limit(1)
                ).first()
                is not None
            )
        for kind, term, label in rows:
            if kind in PRESENT_KINDS:
                entry = terms.setdefault(term, {"type": "ontology", "id": term, "scopes": set()})
                entry["scopes"].add(
                    "biosamples" if kind in (BIOSAMPLE_PHENOTYPE, SAMPLED_TISSUE, BIOSAMPLE_TERM) else "individuals"
                )
                entry["scopes"].add("individuals")
                label = label or (ontology.hpo_label(term) if term.startswith("HP:") else None)
                if label and "label" not in entry:
                    entry["label"] = label
            elif kind in EXCLUDED_KINDS:
                cid = EXCLUDED_PREFIX + term
                custom[cid] = {"type": "custom", "id": cid, "scopes": {"individuals"}}
                if label:
                    custom[cid]["label"] = f"excluded: {label}"
    listed = []
    for entry in [*sorted(terms.values(), key=lambda e: e["id"]), *sorted(custom.values(), key=lambda e: e["id"])]:
        listed.append({**entry, "scopes": sorted(entry["scopes"])})
    for sex in sorted({s for s in sexes if s}):
        term = sex_term(sex)
        listed.append({"type": "ontology", "id": term["id"], "label": term["label"], "scopes": ["individuals"]})
    if sexes:
        listed.append(
            {"type": "alphanumeric", "id": SEX_ID, "label": "sex (= or ! an NCIT sex term)", "scopes": ["individuals"]}
        )
    if has_age:
        listed.append(
            {
                "type": "alphanumeric",
                "id": AGE_IDS[0],
                "label": "age at last encounter (ISO 8601 duration)",
                "scopes": ["individuals"],
            }
        )
    if has_vital:
        listed.append(
            {
                "type": "alphanumeric",
                "id": VITAL_ID,
                "label": "vital status (ALIVE, DECEASED, UNKNOWN_STATUS)",
                "scopes": ["individuals"],
            }
        )
    if scope is not None:
        listed = [e for e in listed if scope in e["scopes"]]
    prefixes = sorted(
        {e["id"].removeprefix(EXCLUDED_PREFIX).split(":")[0] for e in listed if e["type"] != "alphanumeric"}
    )
    return {"filteringTerms": listed, "resources": [_resource(p) for p in prefixes]}


DATASETS = EntryType(
    id="dataset",
    path="datasets",
    name="Datasets",
    description="The datasets of this node, with their data-use conditions (DUO).",
    schema_id="beacon-dataset-v2.0.0",
    default_schema="datasets/defaultSchema.json",
    ontology_term={"id": "NCIT:C47824", "label": "Data set"},
    parameter_group="dataset",
    parse_parameters=no_parameters("datasets"),
    handler=answer_datasets,
    collection=True,
)

COHORTS = EntryType(
    id="cohort",
    path="cohorts",
    name="Cohorts",
    description="One beacon-defined cohort per dataset (all its individuals), with criteria and counts.",
    schema_id="beacon-cohort-v2.0.0",
    default_schema="cohorts/defaultSchema.json",
    ontology_term={"id": "NCIT:C61512", "label": "Cohort"},
    parameter_group="cohort",
    parse_parameters=no_parameters("cohorts"),
    handler=answer_cohorts,
    collection=True,
)
