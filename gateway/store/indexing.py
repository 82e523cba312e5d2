"""What the store indexes from a phenopacket: a pure function over its JSON form.

`index_fields(document)` returns the columns and term rows that later queries filter on
(Beacon individuals/biosamples: HPO terms, diseases, sex, age). It trusts that the
document was validated on the way in, but never fails on a missing or odd-shaped
element: what is not there is simply not indexed.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator
from typing import Any

from gateway.store.tables import (
    BIOSAMPLE_PHENOTYPE,
    BIOSAMPLE_TERM,
    DISEASE,
    EXCLUDED_DISEASE,
    EXCLUDED_PHENOTYPE,
    GENE,
    MEASUREMENT,
    MEDICAL_ACTION,
    PHENOTYPE,
    SAMPLED_TISSUE,
)
from mappings.alternate_codings import alternates_by_term
from mappings.diagnoses import solved_diagnoses

# ISO 8601 duration as phenopackets use it (PnYnMnWnD with an optional time part).
_DURATION = re.compile(
    r"^P(?!$)(?:(?P<y>\d+(?:\.\d+)?)Y)?(?:(?P<mo>\d+(?:\.\d+)?)M)?(?:(?P<w>\d+(?:\.\d+)?)W)?(?:(?P<d>\d+(?:\.\d+)?)D)?"
    r"(?:T(?=\d)(?:(?P<h>\d+(?:\.\d+)?)H)?(?:(?P<mi>\d+(?:\.\d+)?)M)?(?:(?P<s>\d+(?:\.\d+)?)S)?)?$"
)
_CURIE = re.compile(r"[A-Za-z][A-Za-z0-9_.-]*:\S+")
# A biosample's descriptive terms (each an OntologyClass or a list of them), beside its tissue.
_BIOSAMPLE_TERMS = (
    "histologicalDiagnosis",
    "tumorProgression",
    "tumorGrade",
    "pathologicalStage",
    "pathologicalTnmFinding",
    "diagnosticMarkers",
    "sampleType",
    "materialSample",
    "sampleProcessing",
    "sampleStorage",
)
# Mean Gregorian year and month, so that P1Y and P12M compare equal.
_DAYS_PER = {"y": 365.2425, "mo": 365.2425 / 12, "w": 7.0, "d": 1.0, "h": 1 / 24, "mi": 1 / 1440, "s": 1 / 86400}


def duration_days(value: Any) -> float | None:
    """An ISO 8601 duration (`P3Y6M`) in days; None when it is not one."""
    if not isinstance(value, str):
        return None
    match = _DURATION.match(value)
    if match is None:
        return None
    return sum(float(v) * _DAYS_PER[k] for k, v in match.groupdict().items() if v is not None)


def index_fields(document: dict[str, Any]) -> dict[str, Any]:
    """The indexed view of one phenopacket (pure; no I/O).

    Returns `sex`, `age_iso`, `age_days`, `vital_status`, `phenotypes` (observed),
    `excluded_phenotypes`, `diseases`, `excluded_diseases`, `biosample_ids`,
    `biosamples` (id + sampled tissue) and `terms`: every (kind, term, label) row for
    `phenopacket_terms`, without duplicates, in document order.
    """
    subject = _dict(document.get("subject"))
    terms = list(_unique(_terms(document)))
    biosample_rows = []
    seen_biosamples: set[str] = set()
    for biosample in _dicts(document.get("biosamples")):
        biosample_id = biosample.get("id")
        if isinstance(biosample_id, str) and biosample_id and biosample_id not in seen_biosamples:
            seen_biosamples.add(biosample_id)
            biosample_rows.append({"id": biosample_id, "sampled_tissue": _term_id(biosample.get("sampledTissue"))})
    age_iso = _dict(_dict(subject.get("timeAtLastEncounter")).get("age")).get("iso8601duration")
    age_iso = age_iso if isinstance(age_iso, str) else None
    sex = subject.get("sex")
    vital_status = _dict(subject.get("vitalStatus")).get("status")
    return {
        "sex": sex if isinstance(sex, str) and sex else None,
        "age_iso": age_iso,
        "age_days": duration_days(age_iso),
        "vital_status": vital_status if isinstance(vital_status, str) and vital_status else None,
        "phenotypes": [t for k, t, _ in terms if k == PHENOTYPE],
        "excluded_phenotypes": [t for k, t, _ in terms if k == EXCLUDED_PHENOTYPE],
        "diseases": [t for k, t, _ in terms if k == DISEASE],
        "excluded_diseases": [t for k, t, _ in terms if k == EXCLUDED_DISEASE],
        "biosample_ids": [b["id"] for b in biosample_rows],
        "biosamples": biosample_rows,
        "terms": terms,
    }


def _terms(document: dict[str, Any]) -> Iterator[tuple[str, str, str | None]]:
    for feature in _dicts(document.get("phenotypicFeatures")):
        yield from _term(EXCLUDED_PHENOTYPE if feature.get("excluded") is True else PHENOTYPE, feature.get("type"))
    alternates = alternates_by_term(document)  # a disease's other codings find it too
    for disease in _dicts(document.get("diseases")):
        kind = EXCLUDED_DISEASE if disease.get("excluded") is True else DISEASE
        yield from _term(kind, disease.get("term"))
        for code in alternates.get(_term_id(disease.get("term")) or "", ()):
            yield kind, code, None
    for term in solved_diagnoses(document):  # a solved case's diagnosis is a disease of the subject
        yield from _term(DISEASE, term)
    for gene, symbol in _genes(document):
        yield GENE, gene, symbol
    for measurement in _dicts(document.get("measurements")):
        yield from _term(MEASUREMENT, measurement.get("assay"))
    for action in _dicts(document.get("medicalActions")):
        yield from _term(MEDICAL_ACTION, _dict(action.get("procedure")).get("code"))
        yield from _term(MEDICAL_ACTION, _dict(action.get("treatment")).get("agent"))
        yield from _term(MEDICAL_ACTION, _dict(action.get("radiationTherapy")).get("modality"))
        yield from _term(MEDICAL_ACTION, _dict(action.get("therapeuticRegimen")).get("ontologyClass"))
    for biosample in _dicts(document.get("biosamples")):
        yield from _term(SAMPLED_TISSUE, biosample.get("sampledTissue"))
        for name in _BIOSAMPLE_TERMS:  # what its Beacon record shows, a filter finds
            value = biosample.get(name)
            for item in value if isinstance(value, list) else [value]:
                yield from _term(BIOSAMPLE_TERM, item)
        for feature in _dicts(biosample.get("phenotypicFeatures")):
            if feature.get("excluded") is not True:
                yield from _term(BIOSAMPLE_PHENOTYPE, feature.get("type"))
        for measurement in _dicts(biosample.get("measurements")):
            yield from _term(MEASUREMENT, measurement.get("assay"))
        yield from _term(MEDICAL_ACTION, _dict(biosample.get("procedure")).get("code"))


def _genes(document: dict[str, Any]) -> Iterator[tuple[str, str | None]]:
    """The genes of the genomic interpretations that were not REJECTED: the gene studied, or the gene of the
    variant found (the subject carries it, whatever its part in the disease). CURIEs only (a bare Ensembl id
    is no filter id)."""
    for interpretation in _dicts(document.get("interpretations")):
        for call in _dicts(_dict(interpretation.get("diagnosis")).get("genomicInterpretations")):
            if call.get("interpretationStatus") == "REJECTED":
                continue
            descriptor = _dict(_dict(call.get("variantInterpretation")).get("variationDescriptor"))
            for gene in (_dict(call.get("gene")), _dict(descriptor.get("geneContext"))):
                value, symbol = gene.get("valueId"), gene.get("symbol")
                if isinstance(value, str) and _CURIE.fullmatch(value):
                    yield value, symbol if isinstance(symbol, str) and symbol else None


def _term(kind: str, ontology_class: Any) -> Iterator[tuple[str, str, str | None]]:
    term_id = _term_id(ontology_class)
    if term_id is not None:
        label = ontology_class.get("label")
        yield kind, term_id, label if isinstance(label, str) and label else None


def _term_id(ontology_class: Any) -> str | None:
    if isinstance(ontology_class, dict):
        term_id = ontology_class.get("id")
        if isinstance(term_id, str) and term_id:
            return term_id
    return None


def _unique(rows: Iterable[tuple[str, str, str | None]]) -> Iterator[tuple[str, str, str | None]]:
    seen: set[tuple[str, str]] = set()
    for kind, term, label in rows:
        if (kind, term) not in seen:
            seen.add((kind, term))
            yield kind, term, label


def _dict(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _dicts(value: Any) -> Iterator[dict[str, Any]]:
    if isinstance(value, list):
        yield from (item for item in value if isinstance(item, dict))
