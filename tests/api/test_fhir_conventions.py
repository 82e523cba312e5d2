"""FHIR as hospitals really send it (issue 11): a batch judged entry by entry, conditional search tokens,
a resource created again under a new id, conditional create. Real MII Marfan resources; the store is read back.
Each test names what the gateway did before its fix."""

from __future__ import annotations

import copy
import json

import pytest

from tests.api.test_fhir_attacks import PATIENT_ID, _condition, _put_entry, _stored, _transaction
from tests.api.test_fhir_rest import MARFAN, _resource, _send


@pytest.fixture
def marfan(reference_dir):
    return json.loads((reference_dir / "fhir" / MARFAN).read_text())


@pytest.fixture
def stored_patient(client, operator, marfan):
    patient = _resource(marfan, PATIENT_ID)
    assert _send(client, "PUT", f"/fhir/Patient/{PATIENT_ID}", operator, patient).status_code == 201
    return patient


def _responses(answer):
    assert answer.status_code == 200, answer.get_data(as_text=True)
    body = answer.get_json()
    assert body["resourceType"] == "Bundle" and body["type"] == "batch-response"
    return [e["response"] for e in body["entry"]]


def _outcome_codes(response):
    return [i["details"]["coding"][0]["code"] for i in response["outcome"]["issue"]]


def _kept_ids(app):
    return sorted((dataset, kind, rid) for dataset, kind, rid, *_ in _stored(app)[0])


# --- 1. a batch is judged entry by entry ------------------------------------------------------------------


def _malformed_and_fine(marfan):
    """Entries of a Patient-less batch: malformed requests between two good ones (index: what is wrong)."""
    good = _condition(marfan, "c-good", f"Patient/{PATIENT_ID}")
    also_good = _condition(marfan, "c-also-good", f"Patient/{PATIENT_ID}")
    return [
        {
            "resource": _condition(marfan, "c-patch", f"Patient/{PATIENT_ID}"),
            "request": {"method": "PATCH", "url": "Condition/c-patch"},
        },
        _put_entry(good),
        _put_entry(_condition(marfan, "c-wrong-type", f"Patient/{PATIENT_ID}"), "Observation/c-wrong-type"),
        _put_entry(_condition(marfan, "c-own-id", f"Patient/{PATIENT_ID}"), "Condition/c-other-id"),
        {"request": {"method": "DELETE", "url": "Condition"}},
        _put_entry(_condition(marfan, "q" * 65, f"Patient/{PATIENT_ID}")),
        {"resource": also_good, "request": {"method": "POST", "url": "Condition"}},
        _put_entry(_condition(marfan, "c-never", "Group/patient-marfan-001")),
    ]


def test_a_batch_answers_a_malformed_entry_in_its_own_response_and_processes_the_others(
    client, app, operator, marfan, stored_patient
):
    """Before: one malformed entry request refused the whole batch with 400; nothing of it was stored."""
    answered = _send(client, "POST", "/fhir", operator, _transaction(*_malformed_and_fine(marfan), kind="batch"))
    responses = _responses(answered)
    assert [r["status"] for r in responses] == [
        "400 Bad Request",
        "201 Created",
        "400 Bad Request",
        "400 Bad Request",
        "400 Bad Request",
        "400 Bad Request",
        "201 Created",
        "422 Unprocessable Entity",
    ]
    for n in (0, 2, 3, 4, 5, 7):
        outcome = responses[n]["outcome"]
        assert outcome["resourceType"] == "OperationOutcome"
        assert any(i["severity"] == "error" for i in outcome["issue"]), n
        assert all(i["expression"][0].startswith(f"Bundle.entry[{n}]") for i in outcome["issue"] if "expression" in i)
        assert "location" not in responses[n] and "etag" not in responses[n]
    assert "not-supported" in _outcome_codes(responses[0])
    assert "reference-unsupported" in _outcome_codes(responses[7])
    assert responses[1]["location"] == "Condition/c-good/_history/1" and responses[1]["etag"] == 'W/"1"'
    assert responses[6]["location"] == "Condition/c-also-good/_history/1" and responses[6]["etag"] == 'W/"1"'
    assert _kept_ids(app) == [
        ("default", "Condition", "c-also-good"),
        ("default", "Condition", "c-good"),
        ("default", "Patient", PATIENT_ID),
    ]
    (packet,) = app.extensions["gateway"].store.list_phenopackets()[0]
    assert len(packet.document["diseases"]) == 1  # the two good Conditions name the same disease


def test_a_batch_sent_again_answers_unchanged_then_updated_in_order(client, app, operator, marfan, stored_patient):
    """Each batch-response entry carries the kept resource's version: unchanged stays 1, a change makes 2."""
    batch = _transaction(*_malformed_and_fine(marfan), kind="batch")
    _responses(_send(client, "POST", "/fhir", operator, batch))
    again = _responses(_send(client, "POST", "/fhir", operator, batch))
    assert [r["status"] for r in again][1::5] == ["200 OK", "200 OK"]
    assert again[1]["location"] == "Condition/c-good/_history/1" and again[1]["etag"] == 'W/"1"'
    assert "unchanged" in _outcome_codes(again[1])
    changed = copy.deepcopy(batch)
    changed["entry"][6]["resource"]["note"] = [{"text": "seen again"}]
    third = _responses(_send(client, "POST", "/fhir", operator, changed))
    assert third[6]["location"] == "Condition/c-also-good/_history/2" and third[6]["etag"] == 'W/"2"'
    assert third[1]["etag"] == 'W/"1"'


def test_a_transaction_with_the_same_malformed_entries_stays_all_or_nothing(
    client, app, operator, marfan, stored_patient
):
    before = _stored(app)
    refused = _send(client, "POST", "/fhir", operator, _transaction(*_malformed_and_fine(marfan)))
    assert refused.status_code == 400
    assert refused.get_json()["resourceType"] == "OperationOutcome"
    assert _stored(app) == before


def test_a_batch_with_patients_refuses_only_the_patient_of_a_malformed_entry(client, app, operator, marfan):
    """Before: 400 for the whole batch. The gateway makes one phenopacket of a patient's entries, so a batch
    with Patients stands patient by patient: the malformed entry answers 400, its patient's others 422 saying
    why, and the other patient is stored."""
    first = _resource(marfan, PATIENT_ID)
    second = copy.deepcopy(first)
    second["id"] = "patient-two"
    second["identifier"] = [{"system": "http://hospital.example/mrn", "value": "TWO-1"}]
    entries = [
        _put_entry(first),
        _put_entry(_condition(marfan, "c-first", f"Patient/{PATIENT_ID}")),
        _put_entry(second),
        _put_entry(_condition(marfan, "c-second", "Patient/patient-two"), "Observation/c-second"),
    ]
    responses = _responses(_send(client, "POST", "/fhir", operator, _transaction(*entries, kind="batch")))
    statuses = [r["status"] for r in responses]
    assert statuses == ["201 Created", "200 OK", "422 Unprocessable Entity", "400 Bad Request"]
    assert "invalid" in _outcome_codes(responses[3])
    assert "not-stored" in _outcome_codes(responses[2])
    (packet,) = app.extensions["gateway"].store.list_phenopackets()[0]
    assert packet.document["diseases"]
    assert ("default", "Patient", "patient-two") not in _kept_ids(app)
