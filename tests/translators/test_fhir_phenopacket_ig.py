"""The GA4GH Phenopacket FHIR IG (phenopackets/core-ig) writes a phenotypic feature as an HPO-coded Observation
whose components carry its severity (HP:0012824), clinical modifiers (HP:0012823) and onset (HP:0003674).
Small hand-written inputs with the facts of the IG's `phenotypic-abnormality-valid-1` example."""

from __future__ import annotations

from tests.translators.test_fhir_clinical import bundle, translate, warnings

HP = "http://human-phenotype-ontology.org"


def hp(code: str, label: str) -> dict:
    return {"coding": [{"system": HP, "code": code, "display": label}]}


def finding(*components: dict) -> dict:
    return {
        "resourceType": "Observation",
        "status": "final",
        "code": hp("HP:0001249", "Intellectual disability"),
        "valueBoolean": True,
        "component": list(components),
    }


def test_clinical_modifiers_and_onset_components_are_carried():
    """Was: 'component has no phenopacket target', an information issue, for the modifiers and the onset: both
    have a home in a PhenotypicFeature."""
    packet = translate(
        bundle(
            finding(
                {"code": hp("HP:0012824", "Severity"), "valueCodeableConcept": hp("HP:0012825", "Mild")},
                {"code": hp("HP:0012823", "Clinical modifier"), "valueCodeableConcept": hp("HP:0410401", "Worse")},
                {"code": hp("HP:0012823", "Clinical modifier"), "valueCodeableConcept": hp("HP:0031375", "Refractory")},
                {"code": hp("HP:0003674", "Onset"), "valueCodeableConcept": hp("HP:0003577", "Congenital onset")},
            )
        )
    )
    (feature,) = packet.phenopacket["phenotypicFeatures"]
    assert feature["severity"] == {"id": "HP:0012825", "label": "Mild"}
    assert feature["modifiers"] == [{"id": "HP:0410401", "label": "Worse"}, {"id": "HP:0031375", "label": "Refractory"}]
    assert feature["onset"] == {"ontologyClass": {"id": "HP:0003577", "label": "Congenital onset"}}
    assert not warnings(packet)


def test_a_component_of_a_finding_with_no_home_is_a_warning_not_a_note():
    packet = translate(
        bundle(
            finding(
                {"code": hp("HP:0003674", "Onset"), "valueQuantity": {"value": 0, "unit": "d"}},
                {"code": {"coding": [{"system": "http://example.org/other", "code": "x"}]}, "valueString": "mild"},
            )
        )
    )
    (feature,) = packet.phenopacket["phenotypicFeatures"]
    assert "onset" not in feature
    assert {
        ("unmapped-code", "/entry/1/resource/component/0"),
        ("unmapped-element", "/entry/1/resource/component/1"),
    } <= warnings(packet)
