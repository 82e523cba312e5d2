"""The diseases a phenopacket says its subject has: `diseases`, and the diagnosis of a solved case.

Many collections (PhEval's corpora, Exomiser and LIRICAL inputs, case reports written by variant
curation tools) give the disease only as `interpretations[].diagnosis.disease` of an interpretation
whose `progressStatus` is SOLVED, with no `diseases` entry. That diagnosis is the subject's disease as
much as a `diseases` entry is, so Beacon finds and shows it (gateway/store/indexing.py, translators/
phenopacket_to_beacon.py). An interpretation still IN_PROGRESS, UNSOLVED or of unknown progress is a
hypothesis (the FHIR translator files provisional diagnoses there), never a disease of the subject.
Beneath both the translators and the store, as its two readers are.
"""

from __future__ import annotations

from typing import Any

SOLVED = "SOLVED"


def solved_diagnoses(document: dict[str, Any]) -> list[dict[str, Any]]:
    """The disease terms (OntologyClass) of the SOLVED interpretations that `diseases` does not already name,
    in document order, each once."""
    named = {
        disease["term"].get("id")
        for disease in _dicts(document.get("diseases"))
        if isinstance(disease.get("term"), dict)
    }
    out: list[dict[str, Any]] = []
    for interpretation in _dicts(document.get("interpretations")):
        if interpretation.get("progressStatus") != SOLVED:
            continue
        diagnosis = interpretation.get("diagnosis")
        term = diagnosis.get("disease") if isinstance(diagnosis, dict) else None
        if not isinstance(term, dict):
            continue
        term_id = term.get("id")
        if isinstance(term_id, str) and term_id and term_id not in named:
            named.add(term_id)
            out.append(term)
    return out


def _dicts(value: Any) -> list[dict[str, Any]]:
    return [v for v in value if isinstance(v, dict)] if isinstance(value, list) else []
