"""One validator per format; all return the same `Report` of `Issue`s located by JSON pointer.

- `validate_fhir(doc)` / `check_fhir(doc)`: FHIR R4 Bundles and resources (input).
- `validate_phenopacket(doc, target=...)`, `validate_family`, `validate_cohort`: Phenopacket v2 documents.
"""

from gateway.validation.fhir import ALL_BUNDLE_TYPES, INGEST_BUNDLE_TYPES, FhirCheck, check_fhir, validate_fhir
from gateway.validation.phenopacket import (
    detect_kind,
    validate_cohort,
    validate_document,
    validate_family,
    validate_phenopacket,
)

__all__ = [
    "ALL_BUNDLE_TYPES",
    "INGEST_BUNDLE_TYPES",
    "FhirCheck",
    "check_fhir",
    "detect_kind",
    "validate_cohort",
    "validate_document",
    "validate_family",
    "validate_fhir",
    "validate_phenopacket",
]
