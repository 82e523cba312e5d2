"""FHIR R4 Bundle -> GA4GH Phenopacket v2 (protobuf JSON form), one phenopacket per Patient.

Pure: works on the parsed JSON dicts (no I/O, no models, no copies of the input, no keys) and returns
the phenopackets plus `Issue`s whose locations are JSON pointers into the *input* bundle. Ids come
from the `IdFunctions` the caller passes in (the gateway's keyed pseudonyms).

What goes where (the code tables are data in mappings/, the knobs per country in mappings/profiles/);
each family lives in its own module under translators/fhir/:

- Patient -> subject (`patient`): pseudonym of the first identifier in the profile's priority list,
  sex, ages (see translators/ages.py), vital status. Names, addresses, telecom never leave.
- HPO findings -> phenotypicFeatures (`phenotypes`).
- Conditions -> diseases, coded by the profile's disease priority list (`conditions`).
- Variant Observations and diagnostic implications -> interpretations (`variants`).
- Specimen -> biosamples (`specimens`); Procedure / MedicationStatement -> medicalActions (`actions`).
Anything that cannot be mapped becomes an Issue (warning; information when only a detail is lost).
"""

from __future__ import annotations

from datetime import datetime

from mappings import Profile
from translators.fhir.assemble import (
    DATING_TYPES,
    HANDLED_TYPES,
    REPORT_TYPES,
    SUPPORTING_TYPES,
    BundleTranslation,
    BundleTranslator,
    PatientTranslation,
)
from translators.fhir.common import IdFunctions
from translators.fhir.references import ACCEPTED_BUNDLE_TYPES

__all__ = [
    "ACCEPTED_BUNDLE_TYPES",
    "BundleTranslation",
    "IdFunctions",
    "PatientTranslation",
    "as_bundle",
    "translate_bundle",
    "translated_resource_types",
]


def as_bundle(resource: dict) -> dict:
    """Wrap one resource into a collection Bundle (a Bundle is returned unchanged)."""
    if isinstance(resource, dict) and resource.get("resourceType") == "Bundle":
        return resource
    return {"resourceType": "Bundle", "type": "collection", "entry": [{"resource": resource}]}


def translate_bundle(
    bundle: dict,
    *,
    profile: Profile,
    ids: IdFunctions,
    now: datetime,
    namespace: str = "",
    created_by: str = "genomic-gateway",
) -> BundleTranslation:
    """Translate every Patient of `bundle` into a phenopacket (see the module docstring)."""
    return BundleTranslator(bundle, profile, ids, now, namespace, created_by).run()


def translated_resource_types() -> list[str]:
    """Resource types that reach a phenopacket (for the CapabilityStatement, and what the REST surface keeps).
    Reports count: a DiagnosticReport's contained variants and its date reach the phenopacket, so one sent on
    its own after its Patient must be kept like one sent beside it; so do the dates of DATING_TYPES."""
    return sorted({"Patient", *HANDLED_TYPES, *SUPPORTING_TYPES, *REPORT_TYPES, *DATING_TYPES})
