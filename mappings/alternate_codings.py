"""A disease's other codings, kept in the phenopacket beside the one chosen as its term.

Phenopacket v2 `Disease` holds one term, but a hospital codes one condition several ways (ORPHA,
OMIM, ICD-10-GM, SNOMED CT). The FHIR translator keeps every other coding as a
`metaData.externalReferences` entry whose description names the disease term it belongs to; the
Beacon index (gateway/store/indexing.py) reads them back with `alternates_by_term`, so a filter on
any coding of a condition finds the individual. The written form and its reader live here together,
beneath both the translators and the store.
"""

from __future__ import annotations

import re

_DESCRIPTION = "alternative coding of {primary} in the source record"
_DESCRIPTION_RE = re.compile(r"^alternative coding of (\S+) in the source record$")


def alternate_reference(code: str, primary: str, iri_prefix: str | None) -> dict:
    """The externalReferences entry saying `code` is another coding of disease term `primary`."""
    reference = {"id": code, "description": _DESCRIPTION.format(primary=primary)}
    if iri_prefix:
        reference["reference"] = iri_prefix + code.partition(":")[2]
    return reference


def alternates_by_term(document: dict) -> dict[str, list[str]]:
    """Disease term id -> the other codings of it recorded in the phenopacket's metaData."""
    meta = document.get("metaData")
    references = meta.get("externalReferences") if isinstance(meta, dict) else None
    out: dict[str, list[str]] = {}
    for reference in references if isinstance(references, list) else ():
        if not isinstance(reference, dict) or not isinstance(reference.get("id"), str):
            continue
        match = _DESCRIPTION_RE.match(str(reference.get("description", "")))
        if match:
            out.setdefault(match.group(1), []).append(reference["id"])
    return out
