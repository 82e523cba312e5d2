"""Beacon v2 record-level answers -> one FHIR R4 `collection` Bundle (for the EHR, the web page, the CLI).

Pure, like translators/phenopacket_to_fhir.py, whose writers it reuses so that an individual looks the
same in FHIR whether it came from a phenopacket or from a Beacon answer:

- `individual` records -> Patient (the record id is already the pseudonym) with its phenotypic features,
  diseases (and `info.excludedDiseases` as refuted), measures, treatments and procedures;
- `biosample` records -> Specimen (of the individual's Patient when it is in the same Bundle);
- `genomicVariation` records -> one Genomics Reporting variant Observation per carrier in caseLevelData
  (its zygosity as the allelic state, its Patient as subject when present), or one without subject.
Record sets of other types (datasets, cohorts, runs, analyses) are warned about and left out.
Issue locations are JSON pointers into the Beacon response; the sex table is the forward Beacon table
(translators/data/phenopacket_to_beacon.json) read backwards.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from gateway.issues import Issue
from mappings import ExportProfile, load_export_profile
from translators.phenopacket_to_beacon import sex_terms
from translators.phenopacket_to_fhir import (
    ALLELE_START_END,
    ALLELIC_STATE,
    ASSEMBLY,
    COORDINATE_SYSTEM,
    DISCRETE_VARIANT,
    GENE_STUDIED,
    GENOMIC_HGVS,
    GENOMIC_REF_SEQ,
    HGVS,
    OBSERVATION_CATEGORY,
    REFSEQ,
    BundleWriter,
    FhirTranslation,
    PacketWriter,
    _text,
)

# Individual record elements that reach FHIR (the rest is warned about).
INDIVIDUAL_KEYS_WRITTEN = frozenset(
    {"id", "sex", "phenotypicFeatures", "diseases", "measures", "treatments", "interventionsOrProcedures", "info"}
)
# Biosample record elements that reach the Specimen (the rest is warned about; `biosampleStatus` is the
# sample's reference/abnormal status, not a Specimen status).
BIOSAMPLE_KEYS_WRITTEN = frozenset({"id", "individualId", "sampleOriginType", "sampleOriginDetail"})


def _dict(value: Any) -> dict:
    return value if isinstance(value, dict) else {}


def _list(value: Any) -> list:
    return value if isinstance(value, list) else []


def translate_beacon_response(
    responses: dict | list, *, profile: str | ExportProfile = "generic", now: datetime | None = None
) -> FhirTranslation:
    """One Beacon response (or a list of them) as a collection Bundle; see the module docstring."""
    export = profile if isinstance(profile, ExportProfile) else load_export_profile(profile)
    writer = BundleWriter(export)
    many = isinstance(responses, list)
    sets: list[tuple[str, str | None, dict]] = []
    for n, response in enumerate(responses if many else [responses]):
        base = f"/{n}" if many else ""
        result_sets = _dict(_dict(response).get("response")).get("resultSets")
        if not isinstance(result_sets, list):
            writer.issues.append(
                Issue.error("not-beacon-response", "expected a Beacon response with response.resultSets", base)
            )
            continue
        schemas = _list(_dict(_dict(response).get("meta")).get("returnedSchemas"))
        entity = next((_text(_dict(x).get("entityType")) for x in schemas if _text(_dict(x).get("entityType"))), None)
        sets.extend((f"{base}/response/resultSets/{s}", entity, _dict(rs)) for s, rs in enumerate(result_sets))
    patients: dict[str, str] = {}  # individual id -> Patient fullUrl
    # Individuals first, so that biosamples and variant carriers can name their Patient.
    order = {"individual": 0, "biosample": 1, "genomicVariation": 2}
    for where, entity, result_set in sorted(sets, key=lambda item: order.get(item[1], 3)):
        for r, record in enumerate(_list(result_set.get("results"))):
            location = f"{where}/results/{r}"
            set_type = entity or record_type(record)
            if not isinstance(record, dict):
                writer.issues.append(Issue.warning("unmapped-element", "a result is not a record", location))
            elif set_type == "individual":
                individual(writer, record, location, patients)
            elif set_type == "biosample":
                biosample(writer, record, location, patients)
            elif set_type == "genomicVariation":
                genomic_variation(writer, record, location, patients)
            else:
                writer.issues.append(
                    Issue.warning("unmapped-element", f"{set_type!r} records have no FHIR export", location)
                )
                break
    return FhirTranslation(writer.bundle(now), writer.issues)


def record_type(record: Any) -> str | None:
    """The entry type of a record when the response's meta.returnedSchemas does not name it."""
    record = _dict(record)
    if "variantInternalId" in record or "variation" in record:
        return "genomicVariation"
    if "biosampleStatus" in record or "sampleOriginType" in record:
        return "biosample"
    if "sex" in record:
        return "individual"
    return None


def _relocated(issues: list[Issue], start: int, location: str, paths: dict[str, str]) -> None:
    """Issues written from the phenopacket-shaped view of a record, moved onto the record's own paths.

    `paths` maps a phenopacket-shaped path to the record's path for the same element; the longest
    one that an issue's location starts with is swapped.
    """
    for k in range(start, len(issues)):
        issue = issues[k]
        path = issue.location
        for shaped in sorted(paths, key=len, reverse=True):
            if path == shaped or path.startswith(shaped + "/"):
                path = paths[shaped] + path[len(shaped) :]
                break
        issues[k] = Issue(issue.severity, issue.code, issue.message, location + path, issue.target)


def individual(writer: BundleWriter, record: dict, location: str, patients: dict[str, str]) -> None:
    """An individual record, seen as the phenopacket it says (its elements are the same terms)."""
    sex_by_term = {term["id"]: sex for sex, term in sex_terms().items()}
    info = _dict(record.get("info"))
    subject: dict = {"id": record.get("id")}
    sex = sex_by_term.get(_text(_dict(record.get("sex")).get("id")))
    if sex:
        subject["sex"] = sex
    if info.get("vitalStatus") in ("ALIVE", "DECEASED"):
        subject["vitalStatus"] = {"status": info["vitalStatus"]}
    packet: dict = {"id": record.get("id"), "subject": subject}
    paths = {"/subject/sex": "/sex", "/subject/vitalStatus": "/info/vitalStatus", "/subject": ""}
    features = packet["phenotypicFeatures"] = []
    for n, feature in enumerate(map(_dict, _list(record.get("phenotypicFeatures")))):
        features.append({"type": feature.get("featureType"), **({"excluded": True} if feature.get("excluded") else {})})
        paths[f"/phenotypicFeatures/{n}/type"] = f"/phenotypicFeatures/{n}/featureType"
    diseases = packet["diseases"] = []
    for n, disease in enumerate(map(_dict, _list(record.get("diseases")))):
        paths[f"/diseases/{len(diseases)}/term"] = f"/diseases/{n}/diseaseCode"
        paths[f"/diseases/{len(diseases)}"] = f"/diseases/{n}"
        diseases.append({"term": disease.get("diseaseCode")})
    for n, term in enumerate(_list(info.get("excludedDiseases"))):
        paths[f"/diseases/{len(diseases)}/term"] = paths[f"/diseases/{len(diseases)}"] = f"/info/excludedDiseases/{n}"
        diseases.append({"term": term, "excluded": True})
    packet["measurements"] = []
    for n, measure in enumerate(map(_dict, _list(record.get("measures")))):
        paths[f"/measurements/{n}/assay"] = f"/measures/{n}/assayCode"
        paths[f"/measurements/{n}/value"] = f"/measures/{n}/measurementValue"
        paths[f"/measurements/{n}"] = f"/measures/{n}"
        packet["measurements"].append(_measurement(measure))
    actions = packet["medicalActions"] = []
    for key, kind, code, element in (
        ("treatments", "treatment", "treatmentCode", "agent"),
        ("interventionsOrProcedures", "procedure", "procedureCode", "code"),
    ):
        for n, item in enumerate(map(_dict, _list(record.get(key)))):
            paths[f"/medicalActions/{len(actions)}/{kind}/{element}"] = f"/{key}/{n}/{code}"
            paths[f"/medicalActions/{len(actions)}"] = f"/{key}/{n}"
            actions.append({kind: {element: item.get(code)}})
    start = len(writer.issues)
    for key, value in record.items():
        if value and key not in INDIVIDUAL_KEYS_WRITTEN:
            writer.warn("unmapped-element", f"individual {key} is not exported", f"/{key}")
    if info.get("ageAtLastEncounter"):
        writer.warn(
            "unmapped-element", "an age cannot become a date without the birth date", "/info/ageAtLastEncounter"
        )
    packet_writer = PacketWriter(writer, packet, "")
    packet_writer.write()
    _relocated(writer.issues, start, location, paths)
    if isinstance(record.get("id"), str):
        patients[record["id"]] = packet_writer.patient_ref


def _measurement(measure: dict) -> dict:
    value = _dict(measure.get("measurementValue"))
    if "value" in value and "unit" in value:
        shaped = {"quantity": {"unit": value["unit"], "value": value["value"]}}
        if value.get("referenceRange"):
            shaped["quantity"]["referenceRange"] = value["referenceRange"]
    elif "id" in value:
        shaped = {"ontologyClass": value}
    else:
        shaped = {}
    return {"assay": measure.get("assayCode"), "value": shaped}


def biosample(writer: BundleWriter, record: dict, location: str, patients: dict[str, str]) -> None:
    writer.seed = f"biosample|{record.get('id')}"
    spec: dict = {"resourceType": "Specimen"}
    patient = patients.get(_text(record.get("individualId")))
    if patient:
        spec["subject"] = {"reference": patient}
    if record.get("sampleOriginType"):
        spec["type"] = writer.concept(record["sampleOriginType"], location + "/sampleOriginType", "sample type")
    if record.get("sampleOriginDetail"):
        site = writer.concept(record["sampleOriginDetail"], location + "/sampleOriginDetail", "tissue")
        spec["collection"] = {"bodySite": site}
    for key, value in record.items():
        if value and key not in BIOSAMPLE_KEYS_WRITTEN:
            writer.warn("unmapped-element", f"biosample {key} is not exported", f"{location}/{key}")
    writer.add(spec, "specimen", location)


def _component(code: tuple[str, str], **value) -> dict:
    return {"code": {"coding": [{"system": "http://loinc.org", "code": code[0], "display": code[1]}]}, **value}


def genomic_variation(writer: BundleWriter, record: dict, location: str, patients: dict[str, str]) -> None:
    """A genomicVariations record: one variant Observation per carrier (or one, without subject)."""
    writer.seed = f"variant|{record.get('variantInternalId')}"
    components = _variation_components(writer, record, location)
    if not components:
        writer.warn("unmapped-element", "the record describes no variant FHIR can carry", location)
        return
    carriers = [_dict(c) for c in _list(record.get("caseLevelData"))] or [{}]
    for c, carrier in enumerate(carriers):
        obs: dict = {
            "resourceType": "Observation",
            "status": "final",
            "category": [{"coding": [{"system": OBSERVATION_CATEGORY, "code": "laboratory"}]}],
            "code": writer.variant_code(),
            "valueCodeableConcept": writer.answer("presence", "present", "Present"),
            "component": list(components),
        }
        patient = patients.get(_text(carrier.get("individualId")))
        if patient:
            obs["subject"] = {"reference": patient}
        zygosity = _dict(carrier.get("zygosity"))
        answer = writer.answer("allelic_state", zygosity.get("id"), zygosity.get("label")) if zygosity else None
        if answer:
            obs["component"].append(_component(ALLELIC_STATE, valueCodeableConcept=answer))
        elif zygosity:
            writer.note("unmapped-code", f"zygosity {zygosity.get('id')!r} has no LOINC answer", location)
        writer.add(obs, "variant", f"{location}/caseLevelData/{c}")


def _variation_components(writer: BundleWriter, record: dict, location: str) -> list[dict]:
    info = _dict(record.get("info"))
    out = []
    variation = _dict(record.get("variation"))
    where = _dict(variation.get("location")) or _dict(variation.get("subject"))
    sequence = str(where.get("sequence_id", ""))
    if sequence.startswith("refseq:"):
        accession = {"coding": [{"system": REFSEQ, "code": sequence[7:]}]}
        out.append(_component(GENOMIC_REF_SEQ, valueCodeableConcept=accession))
        interval = _dict(where.get("interval"))
        start, end = _dict(interval.get("start")).get("value"), _dict(interval.get("end")).get("value")
        if isinstance(start, int) and isinstance(end, int):
            out.append(_component(ALLELE_START_END, valueRange={"low": {"value": start}, "high": {"value": end}}))
            system = writer.answer("coordinate_system", "1", "0-based interval counting")
            out.append(_component(COORDINATE_SYSTEM, valueCodeableConcept=system))
    elif variation:
        writer.note("unmapped-element", "the variation is not on a RefSeq sequence", location + "/variation")
    assembly = _text(info.get("assemblyId"))
    assembly = writer.tables.assembly_aliases.get(assembly, assembly)
    answer = writer.answer("genome_assembly", assembly, assembly) if assembly else None
    if answer:
        out.append(_component(ASSEMBLY, valueCodeableConcept=answer))
    identifiers = _dict(record.get("identifiers"))
    if isinstance(identifiers.get("genomicHGVSId"), str):
        hgvs = {"coding": [{"system": HGVS, "code": identifiers["genomicHGVSId"]}]}
        out.append(_component(GENOMIC_HGVS, valueCodeableConcept=hgvs))
    ids = [_dict(a).get("id") for a in _list(identifiers.get("variantAlternativeIds"))]
    codings = [
        c for i in ids if isinstance(i, str) and (c := writer.coding({"id": i}, location + "/identifiers", "id"))
    ]
    if codings:
        out.append(_component(DISCRETE_VARIANT, valueCodeableConcept={"coding": codings}))
    for gene in _list(_dict(record.get("molecularAttributes")).get("geneIds")):
        if isinstance(gene, str) and gene:
            out.append(_component(GENE_STUDIED, valueCodeableConcept={"text": gene}))
    return out
