"""The GA4GH Phenopacket FHIR IG (phenopackets/core-ig) writes a phenotypic feature as an HPO-coded Observation
whose components carry its severity (HP:0012824), clinical modifiers (HP:0012823) and onset (HP:0003674).
Small hand-written inputs with the facts of the IG's `phenotypic-abnormality-valid-1` example."""

from __future__ import annotations

from tests.translators.test_fhir_clinical import bundle, translate, warnings
from translators.phenopacket_to_fhir import translate_phenopacket

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


# --- a Condition's status in SNOMED CT ---------------------------------------------------------------------

SCT = "http://snomed.info/sct"


def condition(**status) -> dict:
    code = {"coding": [{"system": SCT, "code": "87628006", "display": "Bacterial infectious disease"}]}
    return {"resourceType": "Condition", "code": code, **status}


def sct(code: str, label: str) -> dict:
    return {"coding": [{"system": SCT, "code": code, "display": label}]}


def test_a_disorder_excluded_status_in_snomed_is_an_excluded_disease():
    """The Phenopacket FHIR IG's excluded disease says so with clinicalStatus SNOMED CT 315215002 'Disorder
    excluded': it became a present disease, silently."""
    packet = translate(bundle(condition(clinicalStatus=sct("315215002", "Disorder excluded (situation)"))))
    (disease,) = packet.phenopacket["diseases"]
    assert disease["excluded"] is True


def test_a_suspected_diagnosis_in_snomed_is_never_a_confirmed_disease():
    """A verificationStatus coded in SNOMED CT (415684004 Suspected, as zib-based profiles send it) was read as no
    status, hence confirmed."""
    packet = translate(bundle(condition(verificationStatus=sct("415684004", "Suspected"))))
    assert not packet.phenopacket.get("diseases")
    (interpretation,) = packet.phenopacket["interpretations"]
    assert interpretation["progressStatus"] == "IN_PROGRESS"
    known_absent = translate(bundle(condition(verificationStatus=sct("410516002", "Known absent"))))
    assert known_absent.phenopacket["diseases"][0]["excluded"] is True


def test_a_verification_status_nobody_understands_is_not_read_as_confirmed():
    status = {"coding": [{"system": "http://example.org/status", "code": "vielleicht"}]}
    packet = translate(bundle(condition(verificationStatus=status)))
    assert not packet.phenopacket.get("diseases")
    assert packet.phenopacket["interpretations"][0]["progressStatus"] == "IN_PROGRESS"
    assert ("unmapped-code", "/entry/1/resource/verificationStatus") in warnings(packet)


def test_modifiers_and_an_onset_term_go_back_to_fhir_as_those_components():
    """The reverse direction warned them 'not exported'; it now writes the components the forward one reads."""
    packet = translate(
        bundle(
            finding(
                {"code": hp("HP:0012823", "Clinical modifier"), "valueCodeableConcept": hp("HP:0031375", "Refractory")},
                {"code": hp("HP:0003674", "Onset"), "valueCodeableConcept": hp("HP:0003577", "Congenital onset")},
            )
        )
    )
    fhir, issues = translate_phenopacket(packet.phenopacket, profile="generic")
    assert not [i for i in issues if "modifiers" in i.location or "onset" in i.location]
    (again,) = translate(fhir).phenopacket["phenotypicFeatures"]
    (feature,) = packet.phenopacket["phenotypicFeatures"]
    assert again["modifiers"] == feature["modifiers"] and again["onset"] == feature["onset"]
