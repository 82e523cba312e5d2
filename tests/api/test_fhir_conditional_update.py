"""Conditional update and delete (FHIR R4 http.html#cond-update, #cdelete): hospitals upsert a Patient by the
identifier they know (`PUT Patient?identifier=system|value`), not by the gateway's id — on its own or as a
transaction entry with a new `urn:uuid` each time. Real MII Marfan resources; the store is read back.

Before: `PUT`/`DELETE /fhir/{type}?identifier=…` were 405; in a transaction the entry's search was dropped, so the
second message was refused 422 ("one person, two Patient ids") and its findings were lost."""

from __future__ import annotations

import copy
import uuid

import pytest

from tests.api.test_fhir_attacks import PATIENT_ID, _condition, _stored, _transaction
from tests.api.test_fhir_conventions import MII_SYSTEM, MRN, _kept_ids, _outcome_codes, _packet_json
from tests.api.test_fhir_rest import BASE, _resource, _send

BY_MRN = f"identifier={MII_SYSTEM}|{MRN}"


def _urn() -> str:
    return f"urn:uuid:{uuid.uuid4()}"


def _message(marfan, condition_code: str):
    """What a hospital's interface engine sends: its Patient by MRN (no server id), and a new finding, each
    entry under a fresh urn."""
    patient = _resource(marfan, PATIENT_ID)
    del patient["id"]
    patient_url = _urn()
    condition = _condition(marfan, "unused", patient_url)
    del condition["id"]
    condition["code"] = {"coding": [{"system": "http://fhir.de/CodeSystem/bfarm/icd-10-gm", "code": condition_code}]}
    return _transaction(
        {"fullUrl": patient_url, "resource": patient, "request": {"method": "PUT", "url": f"Patient?{BY_MRN}"}},
        {"fullUrl": _urn(), "resource": condition, "request": {"method": "POST", "url": "Condition"}},
    )


def test_a_transaction_upserts_its_patient_by_identifier(client, app, operator, marfan):
    first = _send(client, "POST", "/fhir", operator, _message(marfan, "H26.9"))
    assert first.status_code == 200, first.get_data(as_text=True)
    created = first.get_json()["entry"][0]["response"]
    assert created["status"] == "201 Created"
    patient_id = created["location"].split("/")[1]

    second = _send(client, "POST", "/fhir", operator, _message(marfan, "H25.9"))
    assert second.status_code == 200, second.get_data(as_text=True)
    updated = second.get_json()["entry"][0]["response"]
    assert updated["status"] == "200 OK" and updated["location"].startswith(f"Patient/{patient_id}/_history/")
    assert [rid for _, kind, rid in _kept_ids(app) if kind == "Patient"] == [patient_id]
    packet = _packet_json(app)  # one person, one phenopacket, the findings of both messages
    assert "H26.9" in packet and "H25.9" in packet


def test_put_by_identifier_creates_then_updates_the_match(client, app, operator, marfan):
    patient = _resource(marfan, PATIENT_ID)
    del patient["id"]
    created = _send(client, "PUT", f"/fhir/Patient?{BY_MRN}", operator, patient)
    assert created.status_code == 201, created.get_data(as_text=True)
    patient_id = created.headers["Location"].removeprefix(BASE).split("/")[1]

    patient["gender"] = "female" if patient.get("gender") != "female" else "male"
    updated = _send(client, "PUT", f"/fhir/Patient?{BY_MRN}", operator, patient)
    assert updated.status_code == 200, updated.get_data(as_text=True)
    assert updated.headers["Location"] == BASE + f"Patient/{patient_id}/_history/2"
    read = client.get(f"/fhir/Patient/{patient_id}", headers=operator).get_json()
    assert read["gender"] == patient["gender"]

    # the body may name the match's id; another id is the client's mistake (400), and changes nothing
    named = _send(client, "PUT", f"/fhir/Patient?{BY_MRN}", operator, {**patient, "id": patient_id})
    assert named.status_code == 200
    before = _stored(app)
    other = _send(client, "PUT", f"/fhir/Patient?{BY_MRN}", operator, {**patient, "id": "someone-else"})
    assert other.status_code == 400 and _stored(app) == before


def test_put_by_identifier_of_a_condition_updates_the_one_match(client, app, operator, marfan):
    patient = _resource(marfan, PATIENT_ID)
    assert _send(client, "PUT", f"/fhir/Patient/{PATIENT_ID}", operator, patient).status_code == 201
    condition = _condition(marfan, "c-first", f"Patient/{PATIENT_ID}")
    condition["identifier"] = [{"system": "http://hospital.example/problem", "value": "P-1"}]
    assert _send(client, "PUT", "/fhir/Condition/c-first", operator, condition).status_code == 201
    changed = {k: v for k, v in copy.deepcopy(condition).items() if k != "id"}
    changed["code"]["coding"][0]["code"] = "H25.9"
    search = "identifier=http://hospital.example/problem|P-1"
    answered = _send(client, "PUT", f"/fhir/Condition?{search}", operator, changed)
    assert answered.status_code == 200 and answered.headers["Location"] == BASE + "Condition/c-first/_history/2"
    assert [rid for _, kind, rid in _kept_ids(app) if kind == "Condition"] == ["c-first"]
    assert "H25.9" in _packet_json(app)

    # two kept resources match: the client's criteria are not selective enough (412), nothing changes
    twin = {**copy.deepcopy(condition), "id": "c-twin"}
    assert _send(client, "PUT", "/fhir/Condition/c-twin", operator, twin).status_code == 201
    before = _stored(app)
    ambiguous = _send(client, "PUT", f"/fhir/Condition?{search}", operator, changed)
    assert ambiguous.status_code == 412 and "multiple-matches" in _outcome_codes({"outcome": ambiguous.get_json()})
    assert _stored(app) == before


def test_delete_by_identifier(client, app, operator, marfan):
    patient = _resource(marfan, PATIENT_ID)
    assert _send(client, "PUT", f"/fhir/Patient/{PATIENT_ID}", operator, patient).status_code == 201
    condition = _condition(marfan, "c-first", f"Patient/{PATIENT_ID}")
    condition["identifier"] = [{"system": "http://hospital.example/problem", "value": "P-1"}]
    assert _send(client, "PUT", "/fhir/Condition/c-first", operator, condition).status_code == 201
    deleted = _send(client, "DELETE", "/fhir/Condition?identifier=P-1", operator)
    assert deleted.status_code == 200 and "deleted" in _outcome_codes({"outcome": deleted.get_json()})
    assert [kind for _, kind, _ in _kept_ids(app)] == ["Patient"]
    again = _send(client, "DELETE", "/fhir/Condition?identifier=P-1", operator)  # FHIR: nothing matches, no error
    assert again.status_code == 200 and "absent" in _outcome_codes({"outcome": again.get_json()})


@pytest.mark.parametrize("method", ["PUT", "DELETE"])
def test_a_conditional_write_needs_one_identifier_search(client, app, operator, marfan, method):
    patient = _resource(marfan, PATIENT_ID)
    del patient["id"]
    body = patient if method == "PUT" else None
    before = _stored(app)
    for query in ("", "?name=Doe", f"?{BY_MRN}&identifier=other", "?identifier="):
        answered = _send(client, method, f"/fhir/Patient{query}", operator, body)
        assert answered.status_code == 400, (query, answered.get_data(as_text=True))
    assert _stored(app) == before


def test_a_batch_answers_an_ambiguous_conditional_entry_alone(client, app, operator, marfan):
    patient = _resource(marfan, PATIENT_ID)
    assert _send(client, "PUT", f"/fhir/Patient/{PATIENT_ID}", operator, patient).status_code == 201
    for rid in ("c-1", "c-2"):
        condition = _condition(marfan, rid, f"Patient/{PATIENT_ID}")
        condition["identifier"] = [{"system": "http://hospital.example/problem", "value": "P-1"}]
        assert _send(client, "PUT", f"/fhir/Condition/{rid}", operator, condition).status_code == 201
    fresh = _condition(marfan, "c-3", f"Patient/{PATIENT_ID}")
    fresh["identifier"] = [{"value": "P-3"}]
    ambiguous = {k: v for k, v in fresh.items() if k != "id"}
    answered = _send(
        client,
        "POST",
        "/fhir",
        operator,
        _transaction(
            {"resource": ambiguous, "request": {"method": "PUT", "url": "Condition?identifier=P-1"}},
            {"resource": fresh, "request": {"method": "PUT", "url": "Condition?identifier=P-3"}},
            {"request": {"method": "DELETE", "url": "Condition?identifier=nothing-has-it"}},
            kind="batch",
        ),
    )
    assert answered.status_code == 200, answered.get_data(as_text=True)
    responses = [e["response"] for e in answered.get_json()["entry"]]
    assert [r["status"] for r in responses] == ["412 Precondition Failed", "201 Created", "200 OK"]
    assert responses[1]["location"] == "Condition/c-3/_history/1"
    assert [rid for _, kind, rid in _kept_ids(app) if kind == "Condition"] == ["c-1", "c-2", "c-3"]


def test_a_patient_document_made_afresh_keeps_what_earlier_messages_linked_by_urn(client, app, operator, marfan):
    """A second document about the same person (new Patient id, new urns, another finding): the findings of the
    first, linked to their Patient by the first message's urn, stay in the phenopacket. Before: the Patient's
    fullUrl became the second urn and the first message's Condition fell out of the phenopacket (its link
    named no entry of the patient's resources any more)."""
    for n, code in enumerate(("H26.9", "H25.9")):
        message = _message(marfan, code)
        message["type"] = "collection"
        patient = message["entry"][0]
        patient["resource"]["id"] = f"sent-{n}"
        for entry in message["entry"]:
            del entry["request"]
        answered = _send(client, "POST", "/fhir", operator, message)
        assert answered.status_code == 200, answered.get_data(as_text=True)
    assert len([kind for _, kind, _ in _kept_ids(app) if kind == "Patient"]) == 1
    packet = _packet_json(app)
    assert "H26.9" in packet and "H25.9" in packet


def test_the_capability_statement_says_so(client):
    from fhir.resources.R4B.capabilitystatement import CapabilityStatement

    cap = client.get("/fhir/metadata").get_json()
    CapabilityStatement.model_validate(cap)  # conditionalDelete is a code of its required binding
    kept = {r["type"]: r for r in cap["rest"][0]["resource"] if "conditionalUpdate" in r}
    assert {"Patient", "Condition", "Observation"} <= set(kept)
    assert all(r["conditionalUpdate"] is True and r["conditionalDelete"] == "single" for r in kept.values())


def test_search_by_identifier_finds_what_a_conditional_update_would_match(client, app, operator, marfan):
    """Before: 400 (only patient= and subject= were searched): a client could not look before it wrote."""
    patient = _resource(marfan, PATIENT_ID)
    assert _send(client, "PUT", f"/fhir/Patient/{PATIENT_ID}", operator, patient).status_code == 201
    found = client.get(f"/fhir/Patient?{BY_MRN}", headers=operator)
    assert found.status_code == 200, found.get_data(as_text=True)
    body = found.get_json()
    assert body["type"] == "searchset" and body["total"] == 1
    assert body["entry"][0]["resource"]["id"] == PATIENT_ID
    assert MRN not in found.get_data(as_text=True)  # the identifier is shown as kept: its pseudonym
    (self_link,) = [link["url"] for link in body["link"] if link["relation"] == "self"]
    again = client.get(self_link.removeprefix("http://localhost"), headers=operator).get_json()  # the same search
    assert again["total"] == 1 and again["entry"][0]["resource"]["id"] == PATIENT_ID
    assert client.get(f"/fhir/Patient?identifier={MRN}", headers=operator).get_json()["total"] == 1  # any system
    assert client.get("/fhir/Patient?identifier=no-such-mrn", headers=operator).get_json()["total"] == 0
    assert client.get("/fhir/Patient?identifier=", headers=operator).status_code == 400


def test_format_parameters_are_read_as_fhir_says(client, app, operator, marfan):
    """`_format` and `_pretty` belong to every interaction (http.html#parameters). Before: a search with
    `_format=json` was 400 (an unknown search parameter), and `_format=xml` answered JSON with 200."""
    patient = _resource(marfan, PATIENT_ID)
    assert _send(client, "PUT", f"/fhir/Patient/{PATIENT_ID}", operator, patient).status_code == 201
    for general in ("_format=json", "_format=application/fhir%2Bjson", "_pretty=true"):
        found = client.get(f"/fhir/Patient?{BY_MRN}&{general}", headers=operator)
        assert found.status_code == 200 and found.get_json()["total"] == 1, (general, found.get_data(as_text=True))
    updated = _send(client, "PUT", f"/fhir/Patient?{BY_MRN}&_format=json", operator, {**patient, "id": PATIENT_ID})
    assert updated.status_code == 200, updated.get_data(as_text=True)
    for query, accept in (("?_format=xml", "*/*"), ("", "application/fhir+xml"), ("?_format=text/turtle", "*/*")):
        refused = client.get(f"/fhir/metadata{query}", headers={"Accept": accept})
        assert refused.status_code == 406 and refused.get_json()["resourceType"] == "OperationOutcome", query
    for accept in ("application/fhir+json", "application/json", "*/*", "application/fhir+xml;q=0.9, */*;q=0.1"):
        assert client.get("/fhir/metadata", headers={"Accept": accept}).status_code == 200, accept
