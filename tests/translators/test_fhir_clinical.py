"""Issue 11, clinical classes: measurements, procedures, dose intervals, laterality, local code systems.

Real examples from ../shared/reference/fhir first (a whole Bundle or one patient's files), then one
small unit case per mechanism. Every emitted phenopacket must parse with the official classes.
"""

import phenopackets
import pytest
from google.protobuf import json_format

from gateway.validation.phenopacket import validate_phenopacket
from mappings import detect_profile, load_profile, load_registry
from tests.translators.conftest import NOW, TEST_IDS, read_fhir
from translators.fhir_to_phenopacket import as_bundle, translate_bundle

LOINC = "http://loinc.org"
SCT = "http://snomed.info/sct"
UCUM = "http://unitsofmeasure.org"
PATIENT = {"resourceType": "Patient", "id": "p1", "gender": "female", "birthDate": "1980-01-01"}


def translate(bundle: dict, profile: str | None = None):
    result = translate_bundle(bundle, profile=load_profile(profile or detect_profile(bundle)), ids=TEST_IDS, now=NOW)
    for packet in result.packets:
        json_format.ParseDict(packet.phenopacket, phenopackets.Phenopacket())
        assert not [i for i in validate_phenopacket(packet.phenopacket).issues if i.is_error]
    assert len(result.packets) == 1
    return result.packets[0]


def bundle(*resources) -> dict:
    entries = [{"fullUrl": "urn:uuid:patient", "resource": PATIENT}]
    entries += [
        {"fullUrl": f"urn:uuid:r{k}", "resource": {"subject": {"reference": "urn:uuid:patient"}, **r}}
        for k, r in enumerate(resources)
    ]
    return {"resourceType": "Bundle", "type": "collection", "entry": entries}


def warnings(packet) -> set[tuple[str, str]]:
    return {(i.code, i.location) for i in packet.issues if i.severity.value == "warning"}


def cc(system: str, code: str, display: str = "x") -> dict:
    return {"coding": [{"system": system, "code": code, "display": display}]}


# --- real examples ----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def onkologie():
    source = as_bundle(read_fhir("mii-testdata/Bundle-mii-exa-test-data-bundle-onkologie-1.json"))
    return source, translate(source)


def test_tnm_icdo_and_mii_local_values_are_measurements(onkologie):
    """Was: TNM, ICD-O-3 and MII local coded values were 'in no code system' and the facts dropped."""
    _, packet = onkologie
    values = {m["value"].get("ontologyClass", {}).get("id") for m in packet.phenopacket["measurements"]}
    assert {"TNM:T3c", "TNM:N0", "TNM:M1b", "ICDO:8441/3"} <= values
    assert "MII:ext/modul-onko/CodeSystem/mii-cs-onko-grading#3" in values
    assert "MII:ext/modul-onko/CodeSystem/mii-cs-onko-residualstatus#R0" in values


def test_onkologie_condition_body_site_gives_site_and_laterality(onkologie):
    """bodySite with a laterality coding (MII Seitenlokalisation L) and an ICD-O-3 topography."""
    _, packet = onkologie
    disease = next(d for d in packet.phenopacket["diseases"] if d["term"]["id"] == "ICD10GM:C56")
    assert disease["primarySite"]["id"] == "ICDO:C56.9"
    assert disease["laterality"] == {"id": "HP:0012835", "label": "Left"}


def test_every_value_a_measured_observation_leaves_out_is_warned(onkologie):
    """A coded value in an unknown system, or a quantity without a unit, is a warning at its pointer."""
    source, packet = onkologie
    psa = next(i for i, e in enumerate(source["entry"]) if e["resource"]["id"].endswith("prostata-psa-1"))
    # The PSA value has no unit at all: the warning points at the quantity (a pointer that resolves).
    assert ("fhir-value", f"/entry/{psa}/resource/valueQuantity") in warnings(packet)


def test_mii_local_therapy_type_is_a_procedure_and_writes_back():
    """Was: a Procedure coded only in an MII CodeSystem was 'in no code system this profile maps'."""
    source = as_bundle(read_fhir("mii-testdata/Bundle-mii-exa-test-data-bundle-seltene-1.json"))
    packet = translate(source)
    codes = [a["procedure"]["code"]["id"] for a in packet.phenopacket["medicalActions"] if "procedure" in a]
    term = "MII:ext/modul-seltene/CodeSystem/mii-cs-seltene-narse-therapietyp#pharmakotherapie"
    assert term in codes
    system = load_registry().system_for_prefix("MII")
    assert system.fhir_system(term) == (
        "https://www.medizininformatik-initiative.de/fhir/ext/modul-seltene/CodeSystem/mii-cs-seltene-narse-therapietyp"
    )
    assert system.fhir_code(term) == "pharmakotherapie"


def test_hpo_components_of_a_measured_observation_are_phenotypes():
    """Was: a body height (a measurement) with an HPO component 'Tall stature' lost the phenotype."""
    packet = translate(as_bundle(read_fhir("mii-seltene-erkrankungen/Bundle-bundle-marfan-complete.json")))
    features = {f["type"]["id"] for f in packet.phenopacket["phenotypicFeatures"]}
    assert {"HP:0000098", "HP:0100559"} <= features
    height = next(m for m in packet.phenopacket["measurements"] if m["assay"]["id"] == "LOINC:8302-2")
    assert height["value"]["quantity"]["unit"]["id"] == "UCUM:cm"


def test_ips_medication_with_dates_has_a_dose_interval():
    """A MedicationStatement with a dose, a daily rhythm and a dated period -> Treatment.doseIntervals."""
    source = as_bundle(read_fhir("mii-testdata/Bundle-mii-exa-test-data-bundle-pat-1.json"))
    packet = translate(source)
    intervals = [
        d for a in packet.phenopacket.get("medicalActions", ()) for d in a.get("treatment", {}).get("doseIntervals", ())
    ]
    assert intervals, "no dose interval in a bundle whose administrations are dated"
    for interval in intervals:
        assert interval["quantity"]["unit"]["id"].startswith("UCUM:")
        assert interval["scheduleFrequency"]["id"].startswith("NCIT:")
        assert interval["interval"]["start"] <= interval["interval"]["end"]


# --- one mechanism each -----------------------------------------------------------------------------


def statement(**extra) -> dict:
    return {
        "resourceType": "MedicationStatement",
        "status": "active",
        "medicationCodeableConcept": cc("http://www.whocc.no/atc", "C09AA05", "ramipril"),
        **extra,
    }


DAILY_5MG = {
    "doseAndRate": [{"doseQuantity": {"value": 5, "unit": "mg", "system": UCUM, "code": "mg"}}],
    "timing": {"repeat": {"frequency": 2, "period": 1.0, "periodUnit": "d"}},  # a decimal period names the same rhythm
    "route": cc(SCT, "26643006", "Oral route"),
}


def test_dose_schedule_and_period_make_a_dose_interval():
    packet = translate(bundle(statement(effectivePeriod={"start": "2020-03", "end": "2020-04-15"}, dosage=[DAILY_5MG])))
    treatment = packet.phenopacket["medicalActions"][0]["treatment"]
    assert treatment["doseIntervals"] == [
        {
            "quantity": {"unit": {"id": "UCUM:mg", "label": "mg"}, "value": 5},
            "scheduleFrequency": {"id": "NCIT:C64496", "label": "Twice Daily"},
            "interval": {"start": "2020-03-01T00:00:00Z", "end": "2020-04-15T00:00:00Z"},
        }
    ]
    assert treatment["routeOfAdministration"]["id"] == "SNOMEDCT:26643006"
    resources = {r["namespacePrefix"] for r in packet.phenopacket["metaData"]["resources"]}
    assert {"NCIT", "UCUM"} <= resources


def test_timing_code_and_bounds_period_are_read():
    dosage = {**DAILY_5MG, "timing": {"code": cc("http://terminology.hl7.org/CodeSystem/v3-GTSAbbreviation", "TID")}}
    dosage["timing"]["repeat"] = {"boundsPeriod": {"start": "2021-01-01", "end": "2021-01-10"}}
    packet = translate(bundle(statement(dosage=[dosage])))
    (interval,) = packet.phenopacket["medicalActions"][0]["treatment"]["doseIntervals"]
    assert interval["scheduleFrequency"]["id"] == "NCIT:C64527"
    assert interval["interval"] == {"start": "2021-01-01T00:00:00Z", "end": "2021-01-10T00:00:00Z"}


def test_open_ended_dose_is_a_warning_and_names_no_unused_resource():
    packet = translate(bundle(statement(effectivePeriod={"start": "2020-03"}, dosage=[DAILY_5MG])))
    treatment = packet.phenopacket["medicalActions"][0]["treatment"]
    assert "doseIntervals" not in treatment
    assert ("unmapped-element", "/entry/1/resource/dosage/0/doseAndRate/0/doseQuantity") in warnings(packet)
    resources = {r["namespacePrefix"] for r in packet.phenopacket["metaData"]["resources"]}
    assert "NCIT" not in resources and "UCUM" not in resources


def test_as_needed_and_unknown_rhythm_are_never_rounded_to_a_schedule():
    prn = {**DAILY_5MG, "asNeededBoolean": True}
    odd = {**DAILY_5MG, "timing": {"repeat": {"frequency": 5, "period": 1.0, "periodUnit": "d"}}}
    packet = translate(bundle(statement(effectiveDateTime="2020-03-01", dosage=[prn, odd])))
    assert "doseIntervals" not in packet.phenopacket["medicalActions"][0]["treatment"]
    found = warnings(packet)
    assert ("unmapped-element", "/entry/1/resource/dosage/0/asNeededBoolean") in found
    assert ("unmapped-code", "/entry/1/resource/dosage/1/timing") in found


def test_an_administration_is_given_once_and_its_rate_is_warned():
    administration = {
        "resourceType": "MedicationAdministration",
        "status": "completed",
        "medicationCodeableConcept": cc("http://www.whocc.no/atc", "L01XC02", "rituximab"),
        "effectivePeriod": {"start": "2024-02-16T10:20:00+01:00", "end": "2024-02-16T10:50:00+01:00"},
        "dosage": {
            "dose": {"value": 500, "unit": "mg", "system": UCUM, "code": "mg"},
            "rateQuantity": {"value": 50, "system": UCUM, "code": "mg/h"},
        },
    }
    packet = translate(bundle(administration))
    (interval,) = packet.phenopacket["medicalActions"][0]["treatment"]["doseIntervals"]
    assert interval["scheduleFrequency"] == {"id": "NCIT:C64576", "label": "Once"}
    assert interval["interval"]["start"] == "2024-02-16T00:00:00Z"
    assert ("unmapped-element", "/entry/1/resource/dosage/rateQuantity") in warnings(packet)


def observation(**extra) -> dict:
    return {"resourceType": "Observation", "status": "final", "code": cc(LOINC, "2857-1", "PSA"), **extra}


def test_unit_text_without_a_ucum_code_is_read_through_the_table_only():
    percent = translate(bundle(observation(valueQuantity={"value": 65, "unit": "%"})))
    assert percent.phenopacket["measurements"][0]["value"]["quantity"]["unit"] == {"id": "UCUM:%", "label": "%"}
    unknown = translate(bundle(observation(valueQuantity={"value": 3, "unit": "Tabletten"})))
    assert "measurements" not in unknown.phenopacket
    assert ("unmapped-code", "/entry/1/resource/valueQuantity/unit") in warnings(unknown)


def test_a_comparator_leaves_the_value_out():
    packet = translate(
        bundle(observation(valueQuantity={"value": 0.1, "comparator": "<", "system": UCUM, "code": "ng/mL"}))
    )
    assert "measurements" not in packet.phenopacket
    assert ("unmapped-element", "/entry/1/resource/valueQuantity/comparator") in warnings(packet)


def test_method_and_body_site_become_the_measurement_procedure():
    obs = observation(
        valueQuantity={"value": 4, "system": UCUM, "code": "ng/mL"},
        method=cc(SCT, "703452004", "Electrical impedance technique"),
        bodySite=cc(SCT, "368209003", "Right arm"),
        interpretation=[cc("http://terminology.hl7.org/CodeSystem/v3-ObservationInterpretation", "H")],
    )
    packet = translate(bundle(obs))
    (measurement,) = packet.phenopacket["measurements"]
    assert measurement["procedure"]["code"]["id"] == "SNOMEDCT:703452004"
    assert measurement["procedure"]["bodySite"]["id"] == "SNOMEDCT:368209003"
    assert ("unmapped-element", "/entry/1/resource/interpretation") in warnings(packet)


def test_a_component_whose_value_has_no_home_is_warned():
    """Was: a component with a text-only value beside a measured one vanished without a word."""
    obs = observation(
        valueQuantity={"value": 4, "system": UCUM, "code": "ng/mL"},
        component=[{"code": cc(LOINC, "92004-1"), "valueCodeableConcept": {"text": "SMN1 deleted"}}],
    )
    packet = translate(bundle(obs))
    assert ("unmapped-element", "/entry/1/resource/component/0/valueCodeableConcept") in warnings(packet)


def test_laterality_from_snomed_and_from_an_icd_side_extension():
    side = {"url": "http://fhir.de/StructureDefinition/seitenlokalisation"}
    side["valueCoding"] = {"system": "https://fhir.kbv.de/CodeSystem/KBV_CS_SFHIR_ICD_SEITENLOKALISATION", "code": "R"}
    coded = {"system": "http://fhir.de/CodeSystem/bfarm/icd-10-gm", "code": "H40.1", "display": "Glaukom"}
    condition = {"resourceType": "Condition", "code": {"coding": [{**coded, "extension": [side]}]}}
    packet = translate(bundle(condition), "mii")
    assert packet.phenopacket["diseases"][0]["laterality"] == {"id": "HP:0012834", "label": "Right"}
    both = {"resourceType": "Condition", "code": {"coding": [coded]}, "bodySite": [cc(SCT, "51440002", "both")]}
    disease = translate(bundle(both), "mii").phenopacket["diseases"][0]
    assert disease["laterality"]["id"] == "HP:0012832" and "primarySite" not in disease


def test_unconfirmed_diagnosis_keeps_its_other_codings():
    """Was: a provisional diagnosis kept only its primary coding (ICD-10-GM and SNOMED were lost)."""
    codes = [
        {"system": "http://www.orpha.net", "code": "558", "display": "Marfan"},
        {"system": "http://fhir.de/CodeSystem/bfarm/icd-10-gm", "code": "Q87.4", "display": "Marfan-Syndrom"},
    ]
    status = cc("http://terminology.hl7.org/CodeSystem/condition-ver-status", "provisional")
    condition = {"resourceType": "Condition", "code": {"coding": codes}, "verificationStatus": status}
    packet = translate(bundle(condition), "mii")
    assert "diseases" not in packet.phenopacket
    references = {r["id"] for r in packet.phenopacket["metaData"]["externalReferences"]}
    assert "ICD10GM:Q87.4" in references


def test_a_statement_of_absence_is_no_fact_and_no_warning():
    """IPS 'no-medication-info' / 'no-problem-info': nothing to carry, so an information issue only."""
    absent = cc("http://hl7.org/fhir/uv/ips/CodeSystem/absent-unknown-uv-ips", "no-medication-info")
    problem = cc("http://hl7.org/fhir/uv/ips/CodeSystem/absent-unknown-uv-ips", "no-problem-info")
    packet = translate(
        bundle(statement(medicationCodeableConcept=absent), {"resourceType": "Condition", "code": problem}), "ips"
    )
    assert "medicalActions" not in packet.phenopacket and "diseases" not in packet.phenopacket
    assert not warnings(packet)
    notes = {(i.code, i.location) for i in packet.issues}
    assert ("no-fact", "/entry/1/resource/medicationCodeableConcept") in notes
    assert ("no-fact", "/entry/2/resource/code") in notes


def test_an_uncoded_genomic_study_analysis_is_named_by_its_method_type():
    """Procedure.code is optional in FHIR: the Genomics Reporting method-type extension says what was done."""
    method = "http://hl7.org/fhir/uv/genomics-reporting/StructureDefinition/genomic-study-analysis-method-type"
    analysis = {
        "resourceType": "Procedure",
        "status": "completed",
        "extension": [{"url": method, "valueCodeableConcept": cc(LOINC, "LA26398-0", "Sequencing")}],
    }
    packet = translate(bundle(analysis))
    assert packet.phenopacket["medicalActions"] == [
        {"procedure": {"code": {"id": "LOINC:LA26398-0", "label": "Sequencing"}}}
    ]
    uncoded = translate(bundle({"resourceType": "Procedure", "status": "completed"}))
    assert ("unmapped-code", "/entry/1/resource/code") in warnings(uncoded)


def test_an_integer_score_is_a_dimensionless_measurement():
    packet = translate(bundle(observation(code=cc(LOINC, "89247-1", "ECOG score"), valueInteger=1)))
    (measurement,) = packet.phenopacket["measurements"]
    assert measurement["value"] == {"quantity": {"unit": {"id": "UCUM:1", "label": "1 (dimensionless)"}, "value": 1}}


def test_an_observation_without_a_value_for_a_stated_reason_is_not_a_warning():
    absent = cc("http://terminology.hl7.org/CodeSystem/data-absent-reason", "not-performed")
    packet = translate(bundle(observation(dataAbsentReason=absent)))
    assert "measurements" not in packet.phenopacket and not warnings(packet)


def test_tnm_values_focused_on_a_condition_are_its_clinical_tnm_findings(onkologie):
    _, packet = onkologie
    disease = next(d for d in packet.phenopacket["diseases"] if d["term"]["id"] == "ICD10GM:C56")
    findings = {f["id"] for f in disease["clinicalTnmFinding"]}
    assert {"TNM:T3c", "TNM:N0", "TNM:M1b"} <= findings
    measured = {m["value"].get("ontologyClass", {}).get("id") for m in packet.phenopacket["measurements"]}
    assert findings <= measured  # the measurement keeps assay and time; the finding ties it to the disease


def test_stage_site_and_laterality_go_back_to_fhir_and_return():
    from translators.phenopacket_to_fhir import translate_phenopacket

    condition = {
        "resourceType": "Condition",
        "code": cc("http://fhir.de/CodeSystem/bfarm/icd-10-gm", "C50.4", "Mammakarzinom"),
        "stage": [{"summary": cc(SCT, "786005", "Clinical stage I")}],
        "bodySite": [cc("http://terminology.hl7.org/CodeSystem/icd-o-3", "C50.4", "Brust"), cc(SCT, "7771000", "Left")],
    }
    first = translate(bundle(condition), "mii").phenopacket
    written, issues = translate_phenopacket(first, profile="mii")
    assert not [i for i in issues if i.location.startswith("/diseases/0/") and i.severity.value == "warning"]
    again = translate(written, "mii").phenopacket
    for key in ("diseaseStage", "primarySite", "laterality"):
        assert again["diseases"][0][key] == first["diseases"][0][key], key
