"""FHIR as hospitals really send it (issue 11): a batch judged entry by entry, conditional search tokens,
a resource created again under a new id, conditional create. Real MII Marfan resources; the store is read back.
Each test names what the gateway did before its fix."""

from __future__ import annotations

import copy
import json

import pytest

from tests.api.test_fhir_attacks import PATIENT_ID, _condition, _put_entry, _stored, _transaction
from tests.api.test_fhir_rest import BASE, _resource, _send


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
    assert statuses == ["201 Created", "201 Created", "422 Unprocessable Entity", "400 Bad Request"]
    assert "invalid" in _outcome_codes(responses[3])
    assert "not-stored" in _outcome_codes(responses[2])
    (packet,) = app.extensions["gateway"].store.list_phenopackets()[0]
    assert packet.document["diseases"]
    assert ("default", "Patient", "patient-two") not in _kept_ids(app)


def test_a_delete_beside_patients_in_a_batch_is_that_entry_s_422(client, app, operator, marfan, stored_patient):
    """Before: 422 for the whole batch. The DELETE is not performed beside Patients; the Patient and its
    Condition are stored, and the resource the DELETE named is still kept."""
    later = _condition(marfan, "c-later", f"Patient/{PATIENT_ID}")
    assert _send(client, "PUT", "/fhir/Condition/c-later", operator, later).status_code == 201
    first = _condition(marfan, "c-first", f"Patient/{PATIENT_ID}")
    first["note"] = [{"text": "not c-later's content"}]  # else it is c-later sent again (same-resource)
    entries = [
        _put_entry(_resource(marfan, PATIENT_ID)),
        _put_entry(first),
        {"request": {"method": "DELETE", "url": "Condition/c-later"}},
    ]
    responses = _responses(_send(client, "POST", "/fhir", operator, _transaction(*entries, kind="batch")))
    assert [r["status"] for r in responses] == ["200 OK", "201 Created", "422 Unprocessable Entity"]
    assert "not-supported" in _outcome_codes(responses[2])
    assert ("default", "Condition", "c-later") in _kept_ids(app)
    assert ("default", "Condition", "c-first") in _kept_ids(app)


# --- 2. conditional references: FHIR token search values ------------------------------------------------

MII_SYSTEM = "https://www.medizininformatik-initiative.de/fhir/sid/patient-id"
MRN = "MRF-2024-001"  # the Marfan Patient's identifier value, in MII_SYSTEM


def _patient(marfan, patient_id, identifiers):
    patient = _resource(marfan, PATIENT_ID)
    patient["id"] = patient_id
    patient["identifier"] = identifiers
    return patient


def _put_condition(client, operator, marfan, reference, resource_id="c-token"):
    return _send(client, "PUT", f"/fhir/Condition/{resource_id}", operator, _condition(marfan, resource_id, reference))


def _owner(app, resource_id="c-token"):
    return next(owner for _, kind, rid, _, owner in _stored(app)[0] if (kind, rid) == ("Condition", resource_id))


def test_an_identifier_without_system_matches_that_value_in_any_system(client, app, operator, marfan, stored_patient):
    """FHIR search.html#token: `identifier=value` matches the value whatever its system. Before: looked up as
    an identifier without system, so the Condition stayed pending although its Patient was stored."""
    kept = _put_condition(client, operator, marfan, f"Patient?identifier={MRN}")
    assert kept.status_code == 201, kept.get_data(as_text=True)
    assert "pending" not in _outcome_codes({"outcome": kept.get_json()})
    assert _owner(app) == PATIENT_ID
    (packet,) = app.extensions["gateway"].store.list_phenopackets()[0]
    assert packet.document["diseases"]
    found = client.get("/fhir/Condition", query_string={"patient": f"Patient?identifier={MRN}"}, headers=operator)
    assert [e["fullUrl"] for e in found.get_json()["entry"]] == [BASE + "Condition/c-token"]
    kept_reference = client.get("/fhir/Condition/c-token", headers=operator).get_json()["subject"]["reference"]
    assert kept_reference.startswith(f"Patient?identifier={MII_SYSTEM}|pid-")  # the identifier it matched, no MRN


def test_an_empty_system_means_no_system_and_a_system_alone_any_value(client, app, operator, marfan, stored_patient):
    """`|value`: only an identifier without system (the stored one has a system: pending); `system|`: any value
    in that system (one Patient has one: it is the one)."""
    explicit = _put_condition(client, operator, marfan, f"Patient?identifier=|{MRN}", "c-no-system")
    assert explicit.status_code == 201 and "pending" in _outcome_codes({"outcome": explicit.get_json()})
    assert _owner(app, "c-no-system") is None
    by_system = _put_condition(client, operator, marfan, f"Patient?identifier={MII_SYSTEM}|", "c-system")
    assert by_system.status_code == 201 and _owner(app, "c-system") == PATIENT_ID


def test_a_token_matching_several_patients_is_412(client, app, operator, marfan, stored_patient):
    """The same value in another system, another value in the same system: the token names two Patients."""
    other = _patient(
        marfan,
        "patient-other",
        [{"system": "http://hospital.example/mrn", "value": MRN}, {"system": MII_SYSTEM, "value": "X-2"}],
    )
    assert _send(client, "PUT", "/fhir/Patient/patient-other", operator, other).status_code == 201
    before = _stored(app)
    for reference in (f"Patient?identifier={MRN}", f"Patient?identifier={MII_SYSTEM}|"):
        refused = _put_condition(client, operator, marfan, reference)
        assert refused.status_code == 412, reference
        assert "multiple-matches" in _outcome_codes({"outcome": refused.get_json()})
    assert _stored(app) == before
    one = _put_condition(client, operator, marfan, f"Patient?identifier={MII_SYSTEM}|{MRN}")
    assert one.status_code == 201 and _owner(app) == PATIENT_ID


def test_an_escaped_bar_is_part_of_the_value(client, app, operator, marfan):
    """FHIR search.html#escaping: `\\|` is a literal bar. Before: the value after the last bar was taken, so an
    identifier `A|B` could never be named (the Condition waited for `B`)."""
    patient = _patient(marfan, "patient-bar", [{"system": MII_SYSTEM, "value": "A|B"}])
    assert _send(client, "PUT", "/fhir/Patient/patient-bar", operator, patient).status_code == 201
    kept = _put_condition(client, operator, marfan, f"Patient?identifier={MII_SYSTEM}|A\\|B")
    assert kept.status_code == 201 and _owner(app) == "patient-bar"
    unescaped = _put_condition(client, operator, marfan, f"Patient?identifier={MII_SYSTEM}|A|B", "c-unescaped")
    assert unescaped.status_code == 422
    assert "reference-unsupported" in _outcome_codes({"outcome": unescaped.get_json()})


@pytest.mark.parametrize(
    "reference",
    ["Patient?identifier=A-1,B-2", "Patient?identifier=|", "Patient?identifier=a$b", "Patient?identifier=a|b|c"],
)
def test_a_token_that_names_no_single_identifier_is_refused(client, app, operator, marfan, reference):
    """A list of values (`,`), a composite (`$`), a bare bar: no one identifier; before: kept pending for ever."""
    before = _stored(app)
    refused = _put_condition(client, operator, marfan, reference)
    assert refused.status_code == 422, refused.get_data(as_text=True)
    assert _stored(app) == before


@pytest.mark.parametrize(
    "reference", [f"Patient?identifier={MRN}", f"Patient?identifier={MII_SYSTEM}|", "Patient?identifier=A\\|B"]
)
def test_tokens_resolve_inside_a_bundle_too(client, app, operator, marfan, reference):
    """The translator resolves a Bundle's conditional references with the same rules (references.BundleIndex)."""
    bundle = copy.deepcopy(marfan)
    patient = next(e["resource"] for e in bundle["entry"] if e["resource"]["resourceType"] == "Patient")
    patient["identifier"].append({"value": "A|B"})
    for entry in bundle["entry"]:
        if entry["resource"].get("subject"):
            entry["resource"]["subject"] = {"reference": reference}
    answered = _send(client, "POST", "/fhir", operator, bundle)
    assert answered.status_code == 200, answered.get_data(as_text=True)
    (packet,) = app.extensions["gateway"].store.list_phenopackets()[0]
    assert packet.document["diseases"] and packet.document["phenotypicFeatures"]


# --- 3. a resource created again under a new id; conditional create -------------------------------------------


def _kept_condition(client, operator, marfan):
    condition = _condition(marfan, "c-kept", f"Patient/{PATIENT_ID}")
    assert _send(client, "PUT", "/fhir/Condition/c-kept", operator, condition).status_code == 201
    return condition


def _packet_json(app):
    (packet,) = app.extensions["gateway"].store.list_phenopackets()[0]
    return json.dumps(packet.document, sort_keys=True)


@pytest.mark.parametrize("new_id", ["c-sent-again", None])
def test_a_resource_posted_again_under_a_new_id_is_the_kept_one(client, app, operator, marfan, stored_patient, new_id):
    """Hospitals re-send a resource by POST, the id made afresh (or none). Before: a second copy was kept
    (201), the phenopacket citing both."""
    kept = _kept_condition(client, operator, marfan)
    packet = _packet_json(app)
    again = copy.deepcopy(kept)
    again.pop("id")
    if new_id:
        again["id"] = new_id
    again["meta"] = {"lastUpdated": "2026-01-01T00:00:00Z"}
    answered = _send(client, "POST", "/fhir/Condition", operator, again)
    assert answered.status_code == 200, answered.get_data(as_text=True)
    assert answered.headers["Location"].startswith(BASE + "Condition/c-kept/_history/")
    codes = _outcome_codes({"outcome": answered.get_json()})
    assert "same-resource" in codes
    assert [rid for _, kind, rid in _kept_ids(app) if kind == "Condition"] == ["c-kept"]
    assert _packet_json(app).count("FHIR Condition") == packet.count("FHIR Condition")


def test_a_resource_posted_with_other_content_is_created(client, app, operator, marfan, stored_patient):
    kept = _kept_condition(client, operator, marfan)
    other = copy.deepcopy(kept)
    other["id"] = "c-other"
    other["note"] = [{"text": "another diagnosis date"}]
    answered = _send(client, "POST", "/fhir/Condition", operator, other)
    assert answered.status_code == 201 and answered.headers["Location"] == BASE + "Condition/c-other/_history/1"
    assert "same-resource" not in _outcome_codes({"outcome": answered.get_json()})


def test_if_none_exist_creates_once(client, app, operator, marfan, stored_patient):
    """FHIR http.html#ccreate. Before: the header was ignored and every POST created."""
    condition = _condition(marfan, "c-first", f"Patient/{PATIENT_ID}")
    condition["identifier"] = [{"system": "http://hospital.example/problem", "value": "P|1"}]
    header = {**operator, "If-None-Exist": "identifier=http://hospital.example/problem|P\\|1"}
    first = _send(client, "POST", "/fhir/Condition", header, condition)
    assert first.status_code == 201 and first.headers["Location"] == BASE + "Condition/c-first/_history/1"
    changed = copy.deepcopy(condition)
    changed["id"] = "c-second"
    changed["note"] = [{"text": "would be a second resource"}]
    second = _send(client, "POST", "/fhir/Condition", header, changed)
    assert second.status_code == 200 and second.headers["Location"] == BASE + "Condition/c-first/_history/1"
    assert "exists" in _outcome_codes({"outcome": second.get_json()})
    assert [rid for _, kind, rid in _kept_ids(app) if kind == "Condition"] == ["c-first"]
    read = client.get("/fhir/Condition/c-first", headers=operator).get_json()
    assert read["meta"]["versionId"] == "1" and "would be a second resource" not in json.dumps(read)  # not changed

    twice = copy.deepcopy(condition)
    twice["id"] = "c-twin"
    assert _send(client, "PUT", "/fhir/Condition/c-twin", operator, twice).status_code == 201
    ambiguous = _send(client, "POST", "/fhir/Condition", header, {**changed, "id": "c-third"})
    assert ambiguous.status_code == 412
    unsupported = _send(client, "POST", "/fhir/Condition", {**operator, "If-None-Exist": "code=123"}, changed)
    assert unsupported.status_code == 400
    assert [rid for _, kind, rid in _kept_ids(app) if kind == "Condition"] == ["c-first", "c-twin"]


def test_if_none_exist_on_a_patient_matches_its_pseudonymised_identifier(client, app, operator, marfan, stored_patient):
    again = copy.deepcopy(stored_patient)
    again["id"] = "patient-sent-again"
    header = {**operator, "If-None-Exist": f"identifier={MII_SYSTEM}|{MRN}"}
    answered = _send(client, "POST", "/fhir/Patient", header, again)
    assert answered.status_code == 200 and answered.headers["Location"] == BASE + f"Patient/{PATIENT_ID}/_history/1"
    assert [rid for _, kind, rid in _kept_ids(app) if kind == "Patient"] == [PATIENT_ID]


def test_a_bundle_whose_conditional_reference_matches_two_of_its_patients_is_412(client, app, operator, marfan):
    """Before: the first Patient was taken: one person's findings in another's phenopacket."""
    bundle = copy.deepcopy(marfan)
    twin = copy.deepcopy(next(e for e in bundle["entry"] if e["resource"]["resourceType"] == "Patient"))
    twin["fullUrl"] = "urn:uuid:6f1c0c52-0d7c-4a53-9c43-3b1f1a2b9e01"
    twin["resource"]["id"] = "patient-twin"
    twin["resource"]["identifier"] = [{"system": "http://hospital.example/mrn", "value": MRN}]
    bundle["entry"].insert(1, twin)
    for entry in bundle["entry"]:
        if entry["resource"].get("subject"):
            entry["resource"]["subject"] = {"reference": f"Patient?identifier={MRN}"}
    refused = _send(client, "POST", "/fhir", operator, bundle)
    assert refused.status_code == 412, refused.get_data(as_text=True)
    assert "multiple-matches" in _outcome_codes({"outcome": refused.get_json()})
    assert _stored(app) == ([], [])


@pytest.mark.parametrize("kind", ["transaction", "batch"])
def test_if_none_exist_in_a_bundle_entry(client, app, operator, marfan, stored_patient, kind):
    """entry.request.ifNoneExist (http.html#ccreate). Before: ignored, a second copy created."""
    condition = _condition(marfan, "c-first", f"Patient/{PATIENT_ID}")
    condition["identifier"] = [{"system": "http://hospital.example/problem", "value": "P-1"}]
    assert _send(client, "PUT", "/fhir/Condition/c-first", operator, condition).status_code == 201
    again = {**copy.deepcopy(condition), "id": "c-again", "note": [{"text": "sent again"}]}
    other = {**copy.deepcopy(condition), "id": "c-other", "identifier": [{"value": "P-2"}]}
    conditional = "identifier=http://hospital.example/problem|P-1"
    entries = [
        {"resource": again, "request": {"method": "POST", "url": "Condition", "ifNoneExist": conditional}},
        {"resource": other, "request": {"method": "POST", "url": "Condition", "ifNoneExist": "identifier=P-2"}},
    ]
    answered = _send(client, "POST", "/fhir", operator, _transaction(*entries, kind=kind))
    assert answered.status_code == 200, answered.get_data(as_text=True)
    responses = [e["response"] for e in answered.get_json()["entry"]]
    assert [r["status"] for r in responses] == ["200 OK", "201 Created"]
    assert responses[0]["location"] == "Condition/c-first/_history/1" and "exists" in _outcome_codes(responses[0])
    assert [rid for _, kind_, rid in _kept_ids(app) if kind_ == "Condition"] == ["c-first", "c-other"]


PROBLEM = "http://hospital.example/problem"


def _with_problem_id(condition, value):
    return {**condition, "identifier": [{"system": PROBLEM, "value": value}]}


def _conditional_entry(resource, value, full_url=None):
    request = {"method": "POST", "url": resource["resourceType"], "ifNoneExist": f"identifier={PROBLEM}|{value}"}
    return {**({"fullUrl": full_url} if full_url else {}), "resource": resource, "request": request}


@pytest.mark.parametrize("kind", ["transaction", "batch"])
def test_if_none_exist_beside_a_patient(client, app, operator, marfan, stored_patient, kind):
    """http.html#trules in a Bundle with its Patient: a matched entry is not created, its response is 200 with the
    kept resource's location, and the Bundle's references to it (its fullUrl) name the kept one. Before: ignored
    beside Patients, a second copy created."""
    first = _with_problem_id(_condition(marfan, "c-first", f"Patient/{PATIENT_ID}"), "P-1")
    assert _send(client, "PUT", "/fhir/Condition/c-first", operator, first).status_code == 201
    again = {**copy.deepcopy(first), "id": "c-again", "note": [{"text": "sent again"}]}
    new = {**_with_problem_id(_condition(marfan, "c-new", f"Patient/{PATIENT_ID}"), "P-2"), "note": [{"text": "new"}]}
    citing = {**_condition(marfan, "c-citing", f"Patient/{PATIENT_ID}"), "note": [{"text": "cites c-again"}]}
    citing["evidence"] = [{"detail": [{"reference": "urn:uuid:0c0a0a0a-0000-4000-8000-000000000001"}]}]
    entries = [
        _put_entry(stored_patient),
        _conditional_entry(again, "P-1", "urn:uuid:0c0a0a0a-0000-4000-8000-000000000001"),
        _conditional_entry(new, "P-2"),
        _put_entry(citing),
    ]
    answered = _send(client, "POST", "/fhir", operator, _transaction(*entries, kind=kind))
    assert answered.status_code == 200, answered.get_data(as_text=True)
    responses = [e["response"] for e in answered.get_json()["entry"]]
    # the Patient as stored, c-again matched (not created): 200; c-new and c-citing created: 201
    assert [r["status"] for r in responses] == ["200 OK", "200 OK", "201 Created", "201 Created"], responses
    assert responses[1]["location"] == "Condition/c-first/_history/1" and "exists" in _outcome_codes(responses[1])
    assert responses[2]["location"] == "Condition/c-new/_history/1"
    kept = {rid: version for _, kind_, rid, version, _ in _stored(app)[0] if kind_ == "Condition"}
    assert kept == {"c-first": 1, "c-new": 1, "c-citing": 1}  # c-first unchanged, c-again not created
    stored_citing = client.get("/fhir/Condition/c-citing", headers=operator).get_json()
    assert stored_citing["evidence"][0]["detail"][0]["reference"] == "Condition/c-first"
    stored_first = client.get("/fhir/Condition/c-first", headers=operator).get_json()
    assert "note" not in stored_first or stored_first["note"] != again["note"]


def test_if_none_exist_matching_several_beside_a_patient_is_412(client, app, operator, marfan, stored_patient):
    """Several kept resources match: the transaction fails with 412, nothing stored; a batch answers that entry
    412 and judges the rest patient by patient (the entry's patient is not stored)."""
    for n in (1, 2):
        twin = {**_with_problem_id(_condition(marfan, f"c-{n}", f"Patient/{PATIENT_ID}"), "P-1"), "note": [{"text": n}]}
        twin["note"] = [{"text": f"copy {n}"}]
        assert _send(client, "PUT", f"/fhir/Condition/c-{n}", operator, twin).status_code == 201
    before = _stored(app)
    again = _with_problem_id(_condition(marfan, "c-again", f"Patient/{PATIENT_ID}"), "P-1")
    entries = [_put_entry(stored_patient), _conditional_entry(again, "P-1")]
    refused = _send(client, "POST", "/fhir", operator, _transaction(*entries))
    assert refused.status_code == 412, refused.get_data(as_text=True)
    assert "multiple-matches" in [i["details"]["coding"][0]["code"] for i in refused.get_json()["issue"]]
    assert _stored(app) == before
    responses = _responses(_send(client, "POST", "/fhir", operator, _transaction(*entries, kind="batch")))
    assert responses[1]["status"] == "412 Precondition Failed"
    assert "multiple-matches" in _outcome_codes(responses[1])
    assert _stored(app)[0] == before[0]


def test_a_batch_entry_of_any_json_shape_is_refused_on_its_own_never_translated(client, app, operator, marfan):
    """Before: 500 (the translator read a `gender` list). A batch with Patients was translated whole, refused
    entries too; those now reach the translator only as their type, id and patient link."""
    first = _resource(marfan, PATIENT_ID)
    broken = copy.deepcopy(first)
    broken["id"] = "patient-broken"
    broken["identifier"] = [{"system": "http://hospital.example/mrn", "value": "BROKEN-1"}]
    broken["gender"] = ["female", {"a": None}]
    entries = [
        _put_entry(first),
        _put_entry(_condition(marfan, "c-first", f"Patient/{PATIENT_ID}")),
        _put_entry(broken),
        _put_entry(_condition(marfan, "c-broken", "Patient/patient-broken")),
    ]
    responses = _responses(_send(client, "POST", "/fhir", operator, _transaction(*entries, kind="batch")))
    assert [r["status"][:3] for r in responses] == ["201", "201", "422", "422"]
    assert any(i["expression"] == ["Bundle.entry[2].resource.gender"] for i in responses[2]["outcome"]["issue"])
    assert "not-stored" in _outcome_codes(responses[3])
    kept = _kept_ids(app)
    assert ("default", "Patient", PATIENT_ID) in kept and ("default", "Patient", "patient-broken") not in kept
    assert ("default", "Condition", "c-broken") not in kept


@pytest.mark.parametrize("contained_id", [{"x": 1}, ["a"], 7])
def test_a_contained_resource_whose_id_is_not_a_string_is_refused_not_a_crash(
    client, app, operator, marfan, stored_patient, contained_id
):
    """Before: 500 (the reference check hashed the id). Now a 4xx OperationOutcome, nothing stored."""
    condition = _condition(marfan, "c-contained", f"Patient/{PATIENT_ID}")
    condition["contained"] = [{"resourceType": "Practitioner", "id": contained_id}]
    condition["asserter"] = {"reference": "#p1"}
    before = _stored(app)
    for answer in (
        _send(client, "PUT", "/fhir/Condition/c-contained", operator, condition),
        _send(client, "POST", "/fhir", operator, _transaction(_put_entry(condition))),
        _send(client, "POST", "/fhir", operator, _transaction(_put_entry(condition), kind="batch")),
    ):
        assert answer.status_code < 500, answer.get_data(as_text=True)
        body = answer.get_json()
        if answer.status_code >= 400:
            assert body["resourceType"] == "OperationOutcome"
        else:
            assert [e["response"]["status"][:1] for e in body["entry"]] == ["4"]
    assert _stored(app) == before


@pytest.mark.parametrize("kind", ["transaction", "batch"])
@pytest.mark.parametrize("resource_type", [{"a": 1}, ["Condition"], 3])
def test_an_entry_whose_resource_type_is_not_a_string_is_refused_not_a_crash(
    client, app, operator, marfan, stored_patient, kind, resource_type
):
    """Before: 500 (the entry check hashed the resourceType as the resource's identity)."""
    condition = _condition(marfan, "c-typed", f"Patient/{PATIENT_ID}")
    condition["resourceType"] = resource_type
    before = _stored(app)
    answer = _send(
        client, "POST", "/fhir", operator, _transaction(_put_entry(condition, "Condition/c-typed"), kind=kind)
    )
    assert answer.status_code < 500, answer.get_data(as_text=True)
    body = answer.get_json()
    statuses = [e["response"]["status"][:1] for e in body["entry"]] if body["resourceType"] == "Bundle" else ["4"]
    assert statuses == ["4"] and answer.status_code in (200, 400, 422)
    assert _stored(app) == before


@pytest.mark.parametrize("kind", ["transaction", "batch"])
def test_if_none_exist_matching_another_patient_s_resource_adds_nothing_of_it_to_this_patient(
    client, app, operator, marfan, stored_patient, kind
):
    """Before: the matched resource stood in for the entry under the Bundle's Patient, so patient two's
    phenopacket carried patient one's Condition (a disease of another person), although the store kept it
    with patient one. Now the entry is not created (FHIR http.html#ccreate), says whose resource matched
    (not this patient's), and neither phenopacket changes but for what the Bundle itself brings."""
    first = _with_problem_id(_condition(marfan, "c-first", f"Patient/{PATIENT_ID}"), "P-1")
    assert _send(client, "PUT", "/fhir/Condition/c-first", operator, first).status_code == 201
    packets_before = {p.subject_id: p.document for p in app.extensions["gateway"].store.list_phenopackets()[0]}
    two = copy.deepcopy(stored_patient)
    two["id"] = "patient-two"
    two["identifier"] = [{"system": "http://hospital.example/mrn", "value": "TWO-1"}]
    again = _with_problem_id(_condition(marfan, "c-again", "Patient/patient-two"), "P-1")
    entries = [_put_entry(two), _conditional_entry(again, "P-1")]
    answered = _send(client, "POST", "/fhir", operator, _transaction(*entries, kind=kind))
    assert answered.status_code == 200, answered.get_data(as_text=True)
    responses = [e["response"] for e in answered.get_json()["entry"]]
    assert responses[1]["status"] == "200 OK" and responses[1]["location"] == "Condition/c-first/_history/1"
    assert "another-patient" in _outcome_codes(responses[1])
    packets = {p.subject_id: p.document for p in app.extensions["gateway"].store.list_phenopackets()[0]}
    (new_subject,) = set(packets) - set(packets_before)
    assert "diseases" not in packets[new_subject], packets[new_subject]
    assert {s: packets[s] for s in packets_before} == packets_before
    kept = {rid: version for _, kind_, rid, version, _ in _stored(app)[0] if kind_ == "Condition"}
    assert kept == {"c-first": 1}


URN = "urn:uuid:5e0c0a0a-0000-4000-8000-0000000000aa"


def test_references_to_an_entry_s_urn_name_the_resource_as_kept(client, app, operator, marfan, stored_patient):
    """http.html#trules: the server SHALL replace references to an entry's fullUrl by its location. Before: the
    kept Condition still said `urn:uuid:…`, which a client reading it back cannot follow (the gateway resolved
    it internally). Sent again, nothing changes; the phenopacket is the one the urn made."""
    observation = _resource(marfan, "variant-fbn1-001")
    observation.pop("id")
    observation["subject"] = {"reference": f"Patient/{PATIENT_ID}"}
    citing = _condition(marfan, "c-citing", f"Patient/{PATIENT_ID}")
    citing["evidence"] = [{"detail": [{"reference": URN}]}]
    entries = [
        {"fullUrl": URN, "resource": observation, "request": {"method": "POST", "url": "Observation"}},
        _put_entry(citing),
    ]
    answered = _send(client, "POST", "/fhir", operator, _transaction(*entries))
    assert answered.status_code == 200, answered.get_data(as_text=True)
    kept_name = f"Observation/{URN.rsplit(':', 1)[1]}"
    read = client.get("/fhir/Condition/c-citing", headers=operator).get_json()
    assert read["evidence"][0]["detail"][0]["reference"] == kept_name
    assert client.get(f"/fhir/{kept_name}", headers=operator).status_code == 200
    (packet,) = app.extensions["gateway"].store.list_phenopackets()[0]
    assert packet.document["interpretations"]  # the variant reached the phenopacket
    again = _send(client, "POST", "/fhir", operator, _transaction(*entries))
    assert [e["response"]["status"] for e in again.get_json()["entry"]] == ["200 OK", "200 OK"]
    assert all("unchanged" in _outcome_codes(e["response"]) for e in again.get_json()["entry"])


def test_references_to_urns_in_a_bundle_with_its_patient_name_the_resources_as_kept(client, app, operator, marfan):
    """http.html#trules, for a Bundle that carries its Patient (translated whole, then kept for the REST channel).
    Before: the kept Condition said `urn:uuid:…` for its subject and evidence, which a client reading it back
    cannot follow. Now `Type/id`; the phenopacket is the Bundle's, and the same Bundle again changes nothing."""
    patient_urn, variant_urn = (f"urn:uuid:5e0c0a0a-0000-4000-8000-00000000000{n}" for n in (1, 2))
    patient = _resource(marfan, PATIENT_ID)
    variant = _resource(marfan, "variant-fbn1-001")
    variant["subject"] = {"reference": patient_urn}
    citing = _condition(marfan, "c-citing", patient_urn)
    citing["evidence"] = [{"detail": [{"reference": variant_urn}]}]
    entries = [
        {"fullUrl": patient_urn, "resource": patient, "request": {"method": "PUT", "url": f"Patient/{PATIENT_ID}"}},
        {
            "fullUrl": variant_urn,
            "resource": variant,
            "request": {"method": "PUT", "url": f"Observation/{variant['id']}"},
        },
        {**_put_entry(citing), "fullUrl": "urn:uuid:5e0c0a0a-0000-4000-8000-000000000003"},
    ]
    answered = _send(client, "POST", "/fhir", operator, _transaction(*entries))
    assert answered.status_code == 200, answered.get_data(as_text=True)
    read = client.get("/fhir/Condition/c-citing", headers=operator).get_json()
    assert read["subject"]["reference"] == f"Patient/{PATIENT_ID}"
    assert read["evidence"][0]["detail"][0]["reference"] == f"Observation/{variant['id']}"
    kept_variant = client.get(f"/fhir/Observation/{variant['id']}", headers=operator).get_json()
    assert kept_variant["subject"]["reference"] == f"Patient/{PATIENT_ID}"
    (packet,) = app.extensions["gateway"].store.list_phenopackets()[0]
    assert packet.document["interpretations"] and packet.document["diseases"]
    again = _send(client, "POST", "/fhir", operator, _transaction(*entries))
    assert again.status_code == 200, again.get_data(as_text=True)
    (same,) = app.extensions["gateway"].store.list_phenopackets()[0]
    assert {k: v for k, v in same.document.items() if k != "metaData"} == {
        k: v for k, v in packet.document.items() if k != "metaData"
    }
    versions = {(t, rid): v for _, t, rid, v, _ in _stored(app)[0]}
    assert versions[("Condition", "c-citing")] == 1 and versions[("Observation", variant["id"])] == 1


def test_search_by_post_and_by_id_answer_as_the_get(client, operator, marfan, stored_patient):
    """http.html#search: a server that searches SHALL take POST {type}/_search with a form body too (was 405);
    `_id` finds the resource kept under that id (was 400 not-supported), an unknown one none."""
    condition = _condition(marfan, "c-searched", f"Patient/{PATIENT_ID}")
    assert _send(client, "PUT", "/fhir/Condition/c-searched", operator, condition).status_code == 201
    by_get = client.get(f"/fhir/Condition?patient={PATIENT_ID}", headers=operator)
    form = {**operator, "Content-Type": "application/x-www-form-urlencoded"}
    by_post = client.post("/fhir/Condition/_search", data=f"patient={PATIENT_ID}", headers=form)
    assert by_post.status_code == 200, by_post.get_data(as_text=True)
    assert by_post.get_json()["entry"] == by_get.get_json()["entry"] and by_get.get_json()["total"] == 1
    assert by_post.get_json()["link"][0]["url"].endswith(f"/fhir/Condition?patient={PATIENT_ID}")
    by_id = client.post("/fhir/Condition/_search?_id=c-searched", data="", headers=form).get_json()
    assert [e["resource"]["id"] for e in by_id["entry"]] == ["c-searched"]
    assert client.get("/fhir/Condition?_id=nothing-here", headers=operator).get_json()["total"] == 0
    assert client.delete("/fhir/Condition/c-searched", headers=operator).status_code in (200, 204)
    assert client.get("/fhir/Condition?_id=c-searched", headers=operator).get_json()["total"] == 0
    wrong = client.post("/fhir/Condition/_search", json={"patient": PATIENT_ID}, headers=operator)
    assert wrong.status_code == 415 and wrong.get_json()["resourceType"] == "OperationOutcome"
    assert (
        client.post(
            "/fhir/Condition/_search", data="patient=x", headers={"Content-Type": form["Content-Type"]}
        ).status_code
        == 401
    )


# --- a collection Bundle whose fullUrls are relative ---------------------------------------------------------


def test_a_collection_with_relative_full_urls_naming_its_resources_is_stored(client, app, operator, marfan):
    """UK Core NEWS2 shape: fullUrl `Type/id` on every entry. Was 422 for the whole Bundle, nothing stored."""
    bundle = copy.deepcopy(marfan)
    bundle["type"] = "collection"
    for entry in bundle["entry"]:
        entry.pop("request", None)
        entry["fullUrl"] = f"{entry['resource']['resourceType']}/{entry['resource']['id']}"
    answer = _send(client, "POST", BASE, operator, bundle)
    assert answer.status_code == 200, answer.get_data(as_text=True)
    packets, _ = app.extensions["gateway"].store.list_phenopackets()
    assert len(packets) == 1 and packets[0].document["diseases"]


# --- a patient's record as a server exports it: Patient/$everything, a searchset ---------------------------------


def _everything(marfan, *, next_page: bool = False) -> dict:
    """The Marfan record as `GET Patient/{id}/$everything` answers it: a searchset, absolute fullUrls, each entry's
    search mode, an OperationOutcome entry (mode outcome), paging links."""
    entries = [
        {
            "fullUrl": f"https://ehr.example.org/fhir/{e['resource']['resourceType']}/{e['resource']['id']}",
            "resource": e["resource"],
            "search": {"mode": "match" if e["resource"]["resourceType"] == "Patient" else "include"},
        }
        for e in marfan["entry"]
    ]
    outcome = {"resourceType": "OperationOutcome", "issue": [{"severity": "information", "code": "informational"}]}
    entries.append({"resource": outcome, "search": {"mode": "outcome"}})
    links = [{"relation": "self", "url": f"https://ehr.example.org/fhir/Patient/{PATIENT_ID}/$everything"}]
    if next_page:
        links.append({"relation": "next", "url": "https://ehr.example.org/fhir?_getpages=x&_offset=50"})
    return {"resourceType": "Bundle", "type": "searchset", "total": len(entries) - 1, "link": links, "entry": entries}


def test_a_patient_s_record_exported_by_everything_is_stored_as_its_bundle(client, app, operator, marfan):
    """Before: 422 "Bundle type 'searchset' is not accepted", although `Patient/$everything` is how an EHR exports
    one patient's record. Now read as a collection: the phenopacket the Bundle makes; a page of a longer export
    (link `next`) is stored with a warning that the rest was not sent."""
    answered = _send(client, "POST", BASE, operator, _everything(marfan))
    assert answered.status_code == 200, answered.get_data(as_text=True)
    (packet,) = app.extensions["gateway"].store.list_phenopackets()[0]
    assert packet.document["diseases"] and packet.document["phenotypicFeatures"]
    paged = _send(client, "POST", BASE, operator, _everything(marfan, next_page=True))
    assert paged.status_code == 200, paged.get_data(as_text=True)
    said = [i for e in paged.get_json()["entry"] for i in e["response"].get("outcome", {}).get("issue", [])]
    incomplete = [i for i in said if i["details"]["coding"][0]["code"] == "incomplete"]
    assert len(incomplete) == 1 and incomplete[0]["severity"] == "warning", said
    assert incomplete[0]["expression"] == ["Bundle.link[1]"] and "next" in incomplete[0]["details"]["text"]
    (again,) = app.extensions["gateway"].store.list_phenopackets()[0]  # the same record: no second phenopacket
    assert again.id == packet.id
