"""The Bundle index reads every identifier a resource carries: R4's `Composition.identifier` is one Identifier
(0..1), not a list, and was not indexed, so `Composition?identifier=token` matched nothing (the REST surface's
identifier matches go through the same index: services.fhir_resources._matching). Real HL7 IPS 1.1.0 document."""

from __future__ import annotations

import json

import pytest

from translators.fhir.references import BundleIndex

SYSTEM = "urn:oid:2.16.724.4.8.10.200.10"
VALUE = "3f69e0a5-2177-4540-baab-7a5d0877428f"


@pytest.fixture
def ips_entries(reference_dir):
    bundle = json.loads((reference_dir / "fhir" / "ips-1.1.0" / "Bundle-IPS-examples-Bundle-01.json").read_text())
    assert bundle["entry"][0]["resource"]["identifier"] == {"system": SYSTEM, "value": VALUE}  # one, not a list
    return bundle["entry"]


@pytest.mark.parametrize("token", [f"{SYSTEM}|{VALUE}", VALUE, f"{SYSTEM}|"])
def test_a_composition_is_found_by_its_one_identifier(ips_entries, token):
    index = BundleIndex.build(ips_entries)
    assert index.conditional_matches(f"Composition?identifier={token}") == [0]
    assert index.resolve(f"Composition?identifier={token}") == 0


def test_a_list_of_identifiers_is_read_as_before(ips_entries):
    patient = next(n for n, e in enumerate(ips_entries) if e["resource"]["resourceType"] == "Patient")
    identifier = ips_entries[patient]["resource"]["identifier"][0]
    token = f"{identifier.get('system', '')}|{identifier['value']}"
    assert BundleIndex.build(ips_entries).conditional_matches(f"Patient?identifier={token}") == [patient]
