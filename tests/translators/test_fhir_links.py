"""translators.fhir.links is the one list of the references the translation follows: the merge of
resource-by-resource writes groups resources by it, so a family that starts resolving another kind
of reference must declare it there. Held against every real Bundle: each reference a translation
resolved (BundleSource.resolved) is a patient link or one `followed_references` names."""

from __future__ import annotations

import json

import pytest

import mappings
from translators.fhir import links
from translators.fhir.assemble import BundleTranslator
from translators.fhir.common import reference_of
from translators.fhir.links import Link, followed_references

from .conftest import FHIR, NOW, TEST_IDS


def _bundles():
    found = sorted(FHIR.rglob("Bundle-*.json"))
    assert len(found) > 20, "the reference Bundles are missing"
    return [(path.relative_to(FHIR).as_posix(), json.loads(path.read_text())) for path in found]


def _undeclared(bundle: dict) -> list[str]:
    """`Type.element -> Type` for each resolved reference no declared link names (patient links aside)."""
    profile = mappings.load_profile(mappings.detect_profile(bundle))
    translator = BundleTranslator(bundle, profile, TEST_IDS, NOW, "", "t")
    translator.run()
    source = translator.source
    out = []
    for i, reference, j in source.resolved:
        resource, target = source.resources[i] or {}, source.resources[j] or {}
        patient_links = {reference_of(resource.get(name)) for name in ("subject", "patient")}
        if target.get("resourceType") == "Patient" or reference in patient_links:
            continue
        if reference not in followed_references(resource):
            out.append(f"{resource.get('resourceType')} -> {reference} ({target.get('resourceType')})")
    return out


def test_every_reference_a_translation_resolves_is_declared():
    undeclared = {name: found for name, bundle in _bundles() if (found := _undeclared(bundle))}
    assert undeclared == {}


def test_a_link_left_out_of_the_declaration_is_caught(monkeypatch):
    """The check can fail: without the TNM focus link, the MII oncology Bundle's TNM Observations
    resolve their Condition undeclared."""
    monkeypatch.setattr(links, "LINKS", tuple(link for link in links.LINKS if link.path != ("focus",)))
    caught = [f for _, bundle in _bundles() for f in _undeclared(bundle)]
    assert caught and all(f.startswith("Observation -> Condition/") for f in caught)


@pytest.mark.parametrize(
    ("resource", "expected"),
    [
        (
            {"resourceType": "MedicationStatement", "medicationReference": {"reference": "Medication/m"}},
            ["Medication/m"],
        ),
        ({"resourceType": "Condition", "evidence": [{"detail": [{"reference": "Observation/v"}]}]}, ["Observation/v"]),
        # a focus is followed only when the value is a TNM category (conditions.tnm_finding)
        ({"resourceType": "Observation", "focus": [{"reference": "Condition/c"}]}, []),
        (
            {
                "resourceType": "Observation",
                "focus": [{"reference": "Condition/c"}],
                "valueCodeableConcept": {"coding": [{"system": "https://www.uicc.org/resources/tnm", "code": "T2"}]},
            },
            ["Condition/c"],
        ),
        # a link of another resource type is not this one's
        ({"resourceType": "Procedure", "result": [{"reference": "Observation/x"}]}, []),
    ],
)
def test_followed_references_reads_the_declaration(resource, expected):
    assert followed_references(resource) == expected


def test_every_link_names_its_family():
    assert all(isinstance(link, Link) and link.types and link.path and link.family for link in links.LINKS)
