"""Issue 11, the last named gaps: an order date is no treatment period, Condition.severity, TNM findings
written back, the IPS Composition and 'no known allergies' (each first on the real examples)."""

import json

from tests.translators.conftest import read_fhir
from tests.translators.test_fhir_clinical import DAILY_5MG, SCT, bundle, cc, translate, warnings
from translators.fhir_to_phenopacket import as_bundle

ATC = "http://fhir.de/CodeSystem/bfarm/atc"


def request(**extra) -> dict:
    return {
        "resourceType": "MedicationRequest",
        "status": "active",
        "intent": "order",
        "medicationCodeableConcept": cc(ATC, "C09CA01", "Losartan"),
        **extra,
    }


def test_an_order_date_is_not_a_treatment_period():
    """Was: a vague 'no dated start and end' at the dose; authoredOn is when the order was written."""
    packet = translate(bundle(request(authoredOn="2024-03-01", dosageInstruction=[DAILY_5MG])))
    treatment = packet.phenopacket["medicalActions"][0]["treatment"]
    assert "doseIntervals" not in treatment  # no interval invented from the order date
    found = [i for i in packet.issues if i.location == "/entry/1/resource/authoredOn"]
    assert [i.severity.value for i in found] == ["warning"]
    assert "order" in found[0].message and "boundsPeriod" in found[0].message
    assert ("unmapped-element", "/entry/1/resource/dosageInstruction/0/doseAndRate/0/doseQuantity") not in warnings(
        packet
    )


def test_an_order_with_a_bounded_timing_has_its_interval_and_no_order_date_warning():
    dosage = {**DAILY_5MG, "timing": {"repeat": {**DAILY_5MG["timing"]["repeat"]}}}
    dosage["timing"]["repeat"]["boundsPeriod"] = {"start": "2024-03-02", "end": "2024-04-01"}
    packet = translate(bundle(request(authoredOn="2024-03-01", dosageInstruction=[dosage])))
    (interval,) = packet.phenopacket["medicalActions"][0]["treatment"]["doseIntervals"]
    assert interval["interval"] == {"start": "2024-03-02T00:00:00Z", "end": "2024-04-01T00:00:00Z"}
    assert not [w for w in warnings(packet) if w[1].endswith("/authoredOn")]


def test_real_mii_orders_warn_at_their_order_date_and_recommendations_are_no_treatment():
    """MII orders carry authoredOn and no dosage: the date is warned, not dropped. The onkologie tumour board's
    therapy recommendations (intent proposal / option) were carried as PRESCRIPTION treatments, so a Beacon
    query for the drug counted a patient who never got it: now no treatment, a warning at the intent."""
    for name in ("onkologie-1", "pat-1"):
        source = as_bundle(read_fhir(f"mii-testdata/Bundle-mii-exa-test-data-bundle-{name}.json"))
        packet = translate(source)
        requests = {
            n: e["resource"]
            for n, e in enumerate(source["entry"])
            if e["resource"]["resourceType"] == "MedicationRequest" and e["resource"]["status"] != "cancelled"
        }
        found = warnings(packet)
        recommended = [n for n, r in requests.items() if r["intent"] in ("proposal", "option")]
        assert recommended
        for n, request in requests.items():
            if n in recommended:
                assert ("no-phenopacket-target", f"/entry/{n}/resource/intent") in found
            elif "authoredOn" in request and "dosageInstruction" not in request:
                assert ("unmapped-element", f"/entry/{n}/resource/authoredOn") in found
        prescriptions = [
            a for a in packet.phenopacket.get("medicalActions", ()) if a.get("treatment", {}).get("drugType")
        ]
        assert len(prescriptions) == len(requests) - len(recommended)


# --- Condition.severity ------------------------------------------------------------------------------


def test_severity_of_a_phenotype_condition_is_carried_real_mii():
    """Was: the MII symptom Condition's severity (HP:0012825 Mild) dropped without a word."""
    condition = read_fhir("mii-seltene-erkrankungen/Condition-mii-exa-seltene-symptom-condition.json")
    condition.pop("subject", None)
    packet = translate(bundle(condition), "mii")
    (feature,) = packet.phenopacket["phenotypicFeatures"]
    assert feature["type"]["id"] == "HP:0001324"
    assert feature["severity"] == {"id": "HP:0012825", "label": "Mild"}


def test_severity_of_a_disease_is_a_warning_at_its_pointer():
    condition = {
        "resourceType": "Condition",
        "code": cc("http://www.orpha.net", "558", "Marfan syndrome"),
        "severity": cc(SCT, "24484000", "Severe"),
    }
    packet = translate(bundle(condition), "mii")
    assert packet.phenopacket["diseases"][0]["term"]["id"] == "ORPHA:558"
    assert ("unmapped-element", "/entry/1/resource/severity") in warnings(packet)


def test_a_phenotype_severity_in_no_known_system_is_warned():
    condition = {
        "resourceType": "Condition",
        "code": cc("http://human-phenotype-ontology.org", "HP:0001324", "Muscle weakness"),
        "severity": {"text": "quite bad"},
    }
    packet = translate(bundle(condition), "mii")
    assert "severity" not in packet.phenopacket["phenotypicFeatures"][0]
    assert ("unmapped-code", "/entry/1/resource/severity") in warnings(packet)


# --- TNM findings back to FHIR ----------------------------------------------------------------------


def test_tnm_findings_go_back_to_fhir_as_observations_about_the_condition():
    """Was: clinicalTnmFinding 'not exported'; now the TNM measurement is written with focus -> Condition."""
    from translators.phenopacket_to_fhir import translate_phenopacket

    source = as_bundle(read_fhir("mii-testdata/Bundle-mii-exa-test-data-bundle-onkologie-1.json"))
    first = translate(source).phenopacket
    written, issues = translate_phenopacket(first, profile="mii")
    assert not [i for i in issues if "clinicalTnmFinding" in i.location]
    urls = {e["fullUrl"]: e["resource"] for e in written["entry"]}
    focused = [r for r in urls.values() if r["resourceType"] == "Observation" and r.get("focus")]
    assert focused and all(urls[f["reference"]]["resourceType"] == "Condition" for r in focused for f in r["focus"])
    again = translate(written, "mii").phenopacket

    def findings(packet):
        return {(d["term"]["id"], f["id"]) for d in packet["diseases"] for f in d.get("clinicalTnmFinding", ())}

    assert findings(first) and findings(again) == findings(first)


def test_a_tnm_finding_without_its_measurement_is_warned_at_the_finding():
    from translators.phenopacket_to_fhir import translate_phenopacket

    packet = {
        "id": "p",
        "subject": {"id": "s"},
        "diseases": [
            {"term": {"id": "ICD10GM:C56", "label": "Ovary"}, "clinicalTnmFinding": [{"id": "TNM:T1", "label": "T1"}]}
        ],
        "metaData": {"created": "2024-01-01T00:00:00Z", "createdBy": "t", "phenopacketSchemaVersion": "2.0"},
    }
    _, issues = translate_phenopacket(packet, profile="mii")
    assert [(i.severity.value, i.location) for i in issues if "TNM" in i.message] == [
        ("warning", "/diseases/0/clinicalTnmFinding/0")
    ]


# --- statements of absence of another type ----------------------------------------------------------


def test_no_known_allergies_is_a_note_not_a_warning_real_ips():
    """Was: IPS 'no-known-food-allergies' warned 'AllergyIntolerance has no phenopacket target'."""
    source = as_bundle(read_fhir("ips-1.1.0/Bundle-IPS-examples-Bundle-01.json"))
    packet = translate(source, "ips")
    allergies = {
        n: e["resource"] for n, e in enumerate(source["entry"]) if e["resource"]["resourceType"] == "AllergyIntolerance"
    }
    absent = [n for n, r in allergies.items() if "absent-unknown" in json.dumps(r.get("code"))]
    present = [n for n in allergies if n not in absent]
    assert absent and present
    for n in absent:
        where = f"/entry/{n}/resource"
        assert not [i for i in packet.issues if i.location.startswith(where) and i.severity.value != "information"]
        assert ("no-fact", where + "/code") in {(i.code, i.location) for i in packet.issues}
    for n in present:  # a real allergy is a fact the phenopacket cannot hold: still warned
        assert ("no-phenopacket-target", f"/entry/{n}/resource") in warnings(packet)


def test_two_patients_of_one_bundle_with_one_identifier_are_an_error_real_mii():
    """Was: `gateway convert fhir` made two phenopackets of one subject from two Patient records of one person."""
    from mappings import detect_profile, load_profile
    from tests.translators.test_fhir_clinical import NOW, TEST_IDS
    from translators.fhir_to_phenopacket import translate_bundle

    def run(document):
        profile = load_profile(detect_profile(document))
        return translate_bundle(document, profile=profile, ids=TEST_IDS, now=NOW)

    original = read_fhir("mii-seltene-erkrankungen/Bundle-bundle-marfan-complete.json")
    (entry,) = [e for e in original["entry"] if e["resource"]["resourceType"] == "Patient"]
    twin = json.loads(json.dumps(entry))
    twin["resource"]["id"] = "marfan-second-record"
    twin["fullUrl"] = "https://hospital.example/fhir/Patient/marfan-second-record"
    doubled = {**original, "entry": [*original["entry"], twin]}
    result = run(doubled)
    errors = [i for i in result.issues if i.severity.value == "error"]
    last = len(doubled["entry"]) - 1
    assert [(i.code, i.location) for i in errors] == [("duplicate", f"/entry/{last}/resource/identifier")]
    assert "two Patients with one patient identifier" in errors[0].message
    assert not [i for i in run(original).issues if i.code == "duplicate"]
