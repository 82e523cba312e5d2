"""HL7 Europe Laboratory Report (hl7.fhir.eu.laboratory) shapes: a laboratory may report on an animal (the
PatientAnimalEu profile: the core patient-animal extension) or on a specimen taken from something other than its
subject of record (the specimen-focus extension). Small hand-written inputs with the facts of the IG's examples
`Patient-animal-example` and `Specimen-animal-example`."""

from __future__ import annotations

from mappings import load_profile
from tests.translators.conftest import NOW, TEST_IDS
from translators.fhir_to_phenopacket import translate_bundle

SCT = "http://snomed.info/sct"
CAT = {"coding": [{"system": SCT, "code": "448169003", "display": "Domestic cat"}]}
ANIMAL = "http://hl7.org/fhir/StructureDefinition/patient-animal"


def patient(**extra) -> dict:
    return {"resourceType": "Patient", "id": "p1", "gender": "female", "birthDate": "2021-04-13", **extra}


def blood(**extra) -> dict:
    return {
        "resourceType": "Specimen",
        "id": "s1",
        "subject": {"reference": "Patient/p1"},
        "type": {"coding": [{"system": SCT, "code": "119297000", "display": "Blood specimen"}]},
        "collection": {"collectedDateTime": "2022-10-25T13:35:00+01:00"},
        **extra,
    }


def run(*resources: dict):
    entries = [{"fullUrl": f"https://lab.example/fhir/{r['resourceType']}/{r['id']}", "resource": r} for r in resources]
    bundle = {"resourceType": "Bundle", "type": "collection", "entry": entries}
    result = translate_bundle(bundle, profile=load_profile("generic"), ids=TEST_IDS, now=NOW)
    (packet,) = result.packets
    return packet


def warnings(packet) -> set[tuple[str, str]]:
    return {(i.code, i.location) for i in packet.issues if i.severity.value == "warning"}


def test_an_animal_patient_is_not_homo_sapiens():
    """Was: a cat (patient-animal species SNOMED CT 448169003) became an Individual and biosamples of taxonomy
    NCBITaxon:9606 Homo sapiens, without a word."""
    cat = patient(extension=[{"url": ANIMAL, "extension": [{"url": "species", "valueCodeableConcept": CAT}]}])
    packet = run(cat, blood())
    species = {"id": "SNOMEDCT:448169003", "label": "Domestic cat"}
    assert packet.phenopacket["subject"]["taxonomy"] == species
    (sample,) = packet.phenopacket["biosamples"]
    assert sample["taxonomy"] == species


def test_an_animal_of_an_unknown_species_code_has_no_taxonomy_and_a_warning():
    local = {"coding": [{"system": "http://vet.example/species", "code": "felis"}]}
    versioned = f"{ANIMAL}|5.2.0"  # the EU laboratory IG pins the extension's version in its canonical
    cat = patient(extension=[{"url": versioned, "extension": [{"url": "species", "valueCodeableConcept": local}]}])
    packet = run(cat, blood())
    assert "taxonomy" not in packet.phenopacket["subject"]
    assert "taxonomy" not in packet.phenopacket["biosamples"][0]
    assert ("unmapped-code", "/entry/0/resource/extension/0/extension/0/valueCodeableConcept") in warnings(packet)


def test_a_human_patient_stays_homo_sapiens():
    packet = run(patient(), blood())
    assert packet.phenopacket["subject"]["taxonomy"]["id"] == "NCBITaxon:9606"
    assert packet.phenopacket["biosamples"][0]["taxonomy"]["id"] == "NCBITaxon:9606"


def test_a_specimen_taken_from_something_else_than_the_patient_is_no_biosample_of_the_patient():
    """Was: the blood of the patient's cat (specimen-focus: the animal) became a biosample of the patient, a
    human."""
    focus = {
        "url": "http://hl7.eu/fhir/laboratory/StructureDefinition/specimen-focus",
        "valueReference": {"reference": "RelatedPerson/cat"},
    }
    packet = run(patient(), blood(extension=[focus]))
    assert not packet.phenopacket.get("biosamples")
    assert ("no-phenopacket-target", "/entry/1/resource/extension/0") in warnings(packet)


def albumin(ratio: dict) -> dict:
    return {
        "resourceType": "Observation",
        "id": "o1",
        "status": "final",
        "code": {"coding": [{"system": "http://loinc.org", "code": "1755-8", "display": "Albumin 24 hour Urine"}]},
        "subject": {"reference": "Patient/p1"},
        "effectiveDateTime": "2023-03-27T11:24:26+01:00",
        "valueRatio": ratio,
    }


def ucum(value, code: str) -> dict:
    return {"value": value, "unit": code, "system": "http://unitsofmeasure.org", "code": code}


def test_a_ratio_of_two_ucum_quantities_is_one_quantity():
    """The EU laboratory ratio example (albumin 15 mg / 24 h) was 'valueRatio has no phenopacket home'."""
    packet = run(patient(), albumin({"numerator": ucum(15, "mg"), "denominator": ucum(24, "h")}))
    (measurement,) = packet.phenopacket["measurements"]
    assert measurement["value"]["quantity"] == {"unit": {"id": "UCUM:mg/(24.h)", "label": "mg/(24.h)"}, "value": 15}
    assert not warnings(packet)


def test_a_ratio_without_units_stays_warned():
    titer = {"numerator": {"value": 1}, "denominator": {"value": 64}}
    packet = run(patient(), albumin(titer))
    assert not packet.phenopacket.get("measurements")
    assert any(location == "/entry/1/resource/valueRatio" for _, location in warnings(packet))


def test_an_npu_coded_laboratory_result_is_a_measurement():
    """Nordic laboratories code results in NPU (http://npu-terminology.org) only: was 'neither an HPO finding, a
    measurement nor a variant'."""
    insulin = {
        "resourceType": "Observation",
        "id": "o1",
        "status": "final",
        "code": {"coding": [{"system": "http://npu-terminology.org", "code": "NPU02496", "display": "P-Insulin"}]},
        "subject": {"reference": "Patient/p1"},
        "valueQuantity": ucum(50, "m[iU]/L"),
    }
    packet = run(patient(), insulin)
    (measurement,) = packet.phenopacket["measurements"]
    assert measurement["assay"] == {"id": "NPU:NPU02496", "label": "P-Insulin"}
    assert not warnings(packet)
