"""Phenopackets and Beacon record-level answers out as FHIR R4, validated before anything is sent.

The translators build the Bundles (translators/phenopacket_to_fhir.py, translators/beacon_to_fhir.py);
this room checks each one with the gateway's own FHIR validation (gateway/validation/fhir.py) and
withholds any that fails: a failing Bundle is an error, never a response. Used by GET /phenopackets/{id}
(Accept: application/fhir+json), POST /fhir/$export-beacon-response and `gateway convert ... --to fhir`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

import mappings
from gateway.issues import Issue, Report
from gateway.validation.fhir import validate_fhir
from translators.beacon_to_fhir import translate_beacon_response
from translators.phenopacket_to_fhir import translate_family, translate_phenopacket


@dataclass
class FhirExport:
    bundle: dict | None  # None when translation or validation failed
    report: Report = field(default_factory=Report)

    @property
    def ok(self) -> bool:
        return self.bundle is not None


def export_profile(configured: str | None) -> tuple[str, Issue | None]:
    """The profile whose flavour the export takes: the node's own, "generic" when it detects per document.

    An unknown name comes back with the issue that refuses it (the name is then not to be used)."""
    name = "generic" if not configured or configured == "auto" else configured
    if name not in mappings.profile_names():
        known = ", ".join(mappings.profile_names())
        return name, Issue.error("profile-unknown", f"unknown profile {name!r}; known: {known}")
    return name, None


def _checked(bundle: dict, issues: list[Issue]) -> FhirExport:
    report = Report(list(issues))
    if not report.ok:
        return FhirExport(None, report)
    validation = validate_fhir(bundle)
    if not validation.ok:
        # The document was ours: its faults are located in the output, and nothing of it is sent.
        report.extend(Issue(i.severity, i.code, i.message, i.location, "output") for i in validation)
        report.add(Issue.error("fhir-export-invalid", "the FHIR produced failed validation; nothing was sent"))
        return FhirExport(None, report)
    report.extend(i for i in validation if not i.is_error)
    return FhirExport(bundle, report)


def export_phenopacket(document: dict, *, profile: str | None, now: datetime | None = None) -> FhirExport:
    """A phenopacket (or a Family message: proband plus relatives) as a validated collection Bundle."""
    name, issue = export_profile(profile)
    if issue:
        return FhirExport(None, Report([issue]))
    family = isinstance(document, dict) and "proband" in document
    translate = translate_family if family else translate_phenopacket
    bundle, issues = translate(document, profile=name, now=now)
    return _checked(bundle, issues)


def export_beacon_response(response: dict, *, profile: str | None, now: datetime | None = None) -> FhirExport:
    """A Beacon v2 record-level response as a validated collection Bundle."""
    name, issue = export_profile(profile)
    if issue:
        return FhirExport(None, Report([issue]))
    bundle, issues = translate_beacon_response(response, profile=name, now=now)
    return _checked(bundle, issues)
