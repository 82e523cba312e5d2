"""FHIR R4 input validation: every real example passes; broken Bundles give the expected codes and pointers."""

from __future__ import annotations

import json

import pytest

from gateway.issues import Severity
from gateway.validation import ALL_BUNDLE_TYPES, check_fhir, validate_fhir

PATIENT_URL = "urn:uuid:546740dd-771d-41e4-a2a5-e8d6a2b5c505"


def load(path):
    return json.loads(path.read_text(encoding="utf-8"))


def codes_at(report) -> list[tuple[str, str]]:
    return [(i.code, i.location) for i in report]


def resolve(doc, pointer: str):
    node = doc
    for token in pointer.lstrip("/").split("/") if pointer else []:
        node = node[int(token)] if isinstance(node, list) else node[token]
    return node


def test_every_reference_example_validates_without_errors(fhir_dir):
    files = sorted(p for p in fhir_dir.rglob("*.json") if "vcf2fhir" not in p.parts)
    assert len(files) > 250
    failures = {}
    for path in files:
        report = validate_fhir(load(path))
        if not report.ok:
            failures[str(path.relative_to(fhir_dir))] = report.to_text()
    assert failures == {}


def test_vcf2fhir_outputs_with_blanked_ids_are_rejected(fhir_dir):
    path = next((fhir_dir / "vcf2fhir").glob("expected_*.json"))
    report = validate_fhir(load(path))
    assert ("fhir-value", "/id") in codes_at(report)
    assert all(i.code.startswith("fhir-") for i in report.errors)


def test_check_fhir_hands_back_one_model_per_entry(marfan):
    check = check_fhir(marfan)
    assert check.ok and check.bundle_type == "transaction"
    assert len(check.entries) == len(marfan["entry"])
    assert [type(m).__name__ for m in check.entries] == [e["resource"]["resourceType"] for e in marfan["entry"]]


def test_single_resource(fhir_dir):
    doc = load(fhir_dir / "mii-seltene-erkrankungen" / "Patient-patient-marfan-001.json")
    check = check_fhir(doc)
    assert check.ok and type(check.resource).__name__ == "Patient" and check.entries == []


@pytest.mark.parametrize("doc", [{}, {"id": "x"}, [], "Patient"])
def test_not_fhir(doc):
    assert codes_at(validate_fhir(doc)) == [("not-fhir", "")]


@pytest.mark.parametrize("resource_type", ["Foo", "CodeableConcept", "SubscriptionTopic", 7])
def test_unknown_resource_type(resource_type):
    assert codes_at(validate_fhir({"resourceType": resource_type})) == [("unknown-resource-type", "/resourceType")]


def test_r4_type_without_r4b_model_is_accepted_with_a_warning():
    report = validate_fhir({"resourceType": "MedicinalProduct", "id": "m1"})
    assert report.ok and [(i.severity, i.code) for i in report] == [(Severity.WARNING, "fhir-not-checked")]


@pytest.mark.parametrize("bundle_type", ["history", "batch-response", "transaction-response"])
def test_bundle_types_outside_ingest_are_unsupported(bundle_type):
    doc = {"resourceType": "Bundle", "type": bundle_type}
    assert codes_at(validate_fhir(doc)) == [("unsupported-bundle-type", "/type")]
    assert validate_fhir(doc, bundle_types=ALL_BUNDLE_TYPES).ok


def test_bundle_type_missing_or_bogus():
    assert ("fhir-required", "/type") in codes_at(validate_fhir({"resourceType": "Bundle"}))
    assert ("fhir-value", "/type") in codes_at(validate_fhir({"resourceType": "Bundle", "type": "pile"}))


def test_structure_errors_point_into_the_entry(marfan):
    condition = marfan["entry"][1]["resource"]
    del marfan["entry"][5]["resource"]["status"]  # Observation.status is 1..1
    condition["severity"] = "bad"  # a CodeableConcept, not a string
    condition["colour"] = "red"  # no such element
    condition["recordedDate"] = "2020-13-45"
    report = validate_fhir(marfan)
    assert set(codes_at(report)) == {
        ("fhir-required", "/entry/5/resource/status"),
        ("fhir-structure", "/entry/1/resource/severity"),
        ("fhir-structure", "/entry/1/resource/colour"),
        ("fhir-value", "/entry/1/resource/recordedDate"),
    }
    assert "Observation.status is required" in report.to_text()


def test_missing_resource_type_inside_a_bundle(marfan):
    del marfan["entry"][3]["resource"]["resourceType"]
    report = validate_fhir(marfan)
    assert [(i.code, i.location) for i in report.errors] == [("fhir-required", "/entry/3/resource/resourceType")]
    # the untyped resource cannot be found by Condition/id: references to it only warn
    assert {i.code for i in report.warnings} == {"reference-dangling"}


def test_transaction_entries_need_a_request(marfan):
    del marfan["entry"][2]["request"]
    marfan["entry"][4]["request"] = {"method": "POST"}  # no url
    marfan["entry"][6]["request"]["method"] = "FETCH"
    report = validate_fhir(marfan)
    assert ("fhir-required", "/entry/2/request") in codes_at(report)
    assert ("fhir-required", "/entry/4/request/url") in codes_at(report)
    assert ("fhir-value", "/entry/6/request/method") in codes_at(report)


def test_collection_entries_may_not_carry_a_request(marfan):
    marfan["type"] = "collection"
    report = validate_fhir(marfan)
    assert len(report.errors) == len(marfan["entry"])
    assert report.errors[0].location == "/entry/0/request"


def test_full_urls(marfan):
    marfan["entry"][1]["fullUrl"] = marfan["entry"][0]["fullUrl"]
    marfan["entry"][2]["fullUrl"] = "urn:uuid:not-a-uuid"
    marfan["entry"][3]["fullUrl"] = "Condition/c3"
    marfan["entry"][4]["fullUrl"] = "http://example.org/fhir/Condition/c4/_history/2"
    report = validate_fhir(marfan)
    assert set(codes_at(report)) == {
        ("duplicate", "/entry/1/fullUrl"),
        ("fhir-value", "/entry/2/fullUrl"),
        ("fhir-value", "/entry/3/fullUrl"),
        ("fhir-value", "/entry/4/fullUrl"),
    }


def test_document_must_start_with_a_composition(fhir_dir):
    doc = load(fhir_dir / "ips-1.1.0" / "Bundle-bundle-minimal.json")
    doc["entry"].append(doc["entry"].pop(0))
    assert ("fhir-structure", "/entry/0") in codes_at(validate_fhir(doc))


def test_dangling_subject_is_an_error_other_references_warn(marfan):
    marfan["entry"][7]["resource"]["subject"]["reference"] = "Patient/someone-else"
    del marfan["entry"][22]  # Encounter/encounter-cardiology, referenced by entries 2 and 19
    report = validate_fhir(marfan)
    assert [(i.severity, i.code, i.location) for i in report] == [
        (Severity.WARNING, "reference-dangling", "/entry/2/resource/encounter/reference"),
        (Severity.ERROR, "reference-dangling", "/entry/7/resource/subject/reference"),
        (Severity.WARNING, "reference-dangling", "/entry/19/resource/encounter/reference"),
    ]
    for issue in report:  # every pointer leads to the offending reference in the input
        assert resolve(marfan, issue.location) in ("Patient/someone-else", "Encounter/encounter-cardiology")


def _bundle(*entries, bundle_type="collection") -> dict:
    return {"resourceType": "Bundle", "type": bundle_type, "entry": list(entries)}


def _patient(full_url: str, patient_id: str | None = None, identifier: dict | None = None) -> dict:
    resource: dict = {"resourceType": "Patient"}
    if patient_id:
        resource["id"] = patient_id
    if identifier:
        resource["identifier"] = [identifier]
    return {"fullUrl": full_url, "resource": resource}


def _finding(subject: str) -> dict:
    resource = {
        "resourceType": "Observation",
        "status": "final",
        "code": {"text": "x"},
        "subject": {"reference": subject},
    }
    return {"fullUrl": "urn:uuid:00000000-0000-4000-8000-000000000009", "resource": resource}


@pytest.mark.parametrize(
    ("patient", "reference"),
    [
        (_patient(PATIENT_URL), PATIENT_URL),
        (_patient("http://example.org/fhir/Patient/p1"), "http://example.org/fhir/Patient/p1"),
        (_patient("http://example.org/fhir/Patient/p1"), "Patient/p1"),  # relative to the same base
        (_patient("urn:uuid:00000000-0000-4000-8000-000000000001", "p1"), "Patient/p1"),
        (
            _patient(PATIENT_URL, identifier={"system": "urn:oid:1.2.3", "value": "42"}),
            "Patient?identifier=urn:oid:1.2.3|42",
        ),
    ],
)
def test_reference_forms_that_resolve(patient, reference):
    assert len(validate_fhir(_bundle(patient, _finding(reference)))) == 0


@pytest.mark.parametrize(
    "reference",
    [
        "urn:uuid:11111111-1111-4111-8111-111111111111",
        "Patient/p2",
        "http://other.org/fhir/Patient/p1",
        "Patient?name=x",
    ],
)
def test_reference_forms_that_dangle(reference):
    report = validate_fhir(_bundle(_patient("http://example.org/fhir/Patient/p1", "p1"), _finding(reference)))
    assert codes_at(report) == [("reference-dangling", "/entry/1/resource/subject/reference")]


def test_contained_references():
    resource = {
        "resourceType": "Observation",
        "status": "final",
        "code": {"text": "x"},
        "contained": [{"resourceType": "Specimen", "id": "s1"}],
        "specimen": {"reference": "#s1"},
        "device": {"reference": "#missing"},
        "subject": {"reference": "Patient/elsewhere"},  # a lone resource may point outside itself
    }
    report = validate_fhir(resource)
    assert [(i.severity, i.code, i.location) for i in report] == [
        (Severity.WARNING, "reference-dangling", "/device/reference"),
    ]


def test_required_code_bindings(marfan):
    marfan["entry"][0]["resource"]["gender"] = "M"
    marfan["entry"][5]["resource"]["status"] = "done"
    marfan["entry"][1]["resource"]["verificationStatus"]["coding"][0]["code"] = "maybe"
    report = validate_fhir(marfan)
    assert set(codes_at(report)) == {
        ("fhir-value", "/entry/0/resource/gender"),
        ("fhir-value", "/entry/5/resource/status"),
        ("fhir-value", "/entry/1/resource/verificationStatus/coding/0/code"),
    }
    assert "Patient.gender" in report.to_text()


def test_a_relative_full_url_naming_the_resource_itself_is_a_warning(marfan):
    """UK Core's published NEWS2 Bundle names each entry `Observation/<its id>`: the whole Bundle was refused (422)
    for it. Unambiguous, so a warning; any other relative fullUrl stays an error (test_full_urls)."""
    resource = marfan["entry"][3]["resource"]
    marfan["entry"][3]["fullUrl"] = f"{resource['resourceType']}/{resource['id']}"
    report = validate_fhir(marfan)
    assert not report.errors
    assert [(i.severity.value, i.code, i.location) for i in report if i.location == "/entry/3/fullUrl"] == [
        ("warning", "fhir-value", "/entry/3/fullUrl")
    ]
