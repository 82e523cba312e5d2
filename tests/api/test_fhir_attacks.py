"""The FHIR surface as an attacker or a careless integrator sees it: each refused request answers an
OperationOutcome with the HTTP status FHIR prescribes, changes nothing in the store (read back), and the
server keeps answering. Each test names what the gateway did before its fix."""

from __future__ import annotations

import copy
import json

import pytest
import sqlalchemy as sa

from gateway.store.tables import fhir_resources
from tests.api.conftest import PATIENT_ID
from tests.api.test_fhir_rest import FHIR, _resource, _send


def _codes(response):
    body = response.get_json()
    assert body["resourceType"] == "OperationOutcome", body
    return [i["details"]["coding"][0]["code"] for i in body["issue"]]


def _stored(app):
    """Everything the store holds: kept resources (with versions) and phenopackets (with their content)."""
    store = app.extensions["gateway"].store
    with store.engine.connect() as connection:
        columns = (fhir_resources.c.dataset_id, fhir_resources.c.resource_type, fhir_resources.c.resource_id)
        kept = sorted(connection.execute(sa.select(*columns, fhir_resources.c.version, fhir_resources.c.patient_id)))
    packets = sorted((p.id, json.dumps(p.document, sort_keys=True)) for p in store.list_phenopackets()[0])
    return kept, packets


def _condition(marfan, resource_id, reference):
    condition = _resource(marfan, "condition-cataract")
    condition["id"] = resource_id
    condition["subject"] = {"reference": reference}
    return condition


def _transaction(*entries, kind="transaction"):
    return {"resourceType": "Bundle", "type": kind, "entry": list(entries)}


def _put_entry(resource, url=None):
    url = url or f"{resource['resourceType']}/{resource['id']}"
    return {"resource": resource, "request": {"method": "PUT", "url": url}}


# --- ids ------------------------------------------------------------------------------------------


def test_a_created_resource_with_an_id_longer_than_64_characters_is_refused(
    client, app, operator, marfan, stored_patient
):
    """Before: POST /fhir/Condition with a 65-character body id was stored (201): the URL check saw no id."""
    before = _stored(app)
    too_long = _send(client, "POST", "/fhir/Condition", operator, _condition(marfan, "a" * 65, f"Patient/{PATIENT_ID}"))
    assert too_long.status_code == 400
    assert _codes(too_long) == ["fhir-value"]
    assert _stored(app) == before


@pytest.mark.parametrize("kind", ["transaction", "batch"])
def test_a_bundle_entry_with_an_id_longer_than_64_characters_is_refused(
    client, app, operator, marfan, stored_patient, kind
):
    """Before: a transaction entry with a 65-character id was stored. A transaction is refused whole (400);
    a batch answers 200 with the entry's own 400 (tests/api/test_fhir_conventions.py)."""
    before = _stored(app)
    condition = _condition(marfan, "q" * 65, f"Patient/{PATIENT_ID}")
    refused = _send(client, "POST", "/fhir", operator, _transaction(_put_entry(condition), kind=kind))
    if kind == "batch":
        assert refused.status_code == 200
        (entry,) = refused.get_json()["entry"]
        assert entry["response"]["status"] == "400 Bad Request"
        assert "fhir-value" in [i["details"]["coding"][0]["code"] for i in entry["response"]["outcome"]["issue"]]
    else:
        assert refused.status_code == 400
        assert "fhir-value" in _codes(refused)
    assert _stored(app) == before


# --- entry.request ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "what"),
    [
        ("Observation/condition-cataract", "a Condition PUT to an Observation url"),
        ("Condition/other-id", "a Condition whose id differs from its url's id"),
        ("Condition/../x", "an url id that is not a FHIR id"),
    ],
)
def test_an_entry_whose_request_url_disagrees_with_its_resource_is_refused(
    client, app, operator, marfan, stored_patient, url, what
):
    """Before: stored anyway (a Condition under the url's id, or under the resource's when the url's type differed)."""
    before = _stored(app)
    condition = _condition(marfan, "condition-cataract", f"Patient/{PATIENT_ID}")
    refused = _send(client, "POST", "/fhir", operator, _transaction(_put_entry(condition, url)))
    assert refused.status_code == 400, what
    assert refused.get_json()["resourceType"] == "OperationOutcome"
    assert _stored(app) == before


@pytest.mark.parametrize("method", ["PATCH", "GET", "HEAD", "FROB"])
def test_an_entry_method_the_gateway_does_not_perform_is_refused(client, app, operator, marfan, stored_patient, method):
    """Before: PATCH was taken as PUT (the body stored as a whole resource), GET answered 200 having done nothing."""
    before = _stored(app)
    condition = _condition(marfan, "condition-cataract", f"Patient/{PATIENT_ID}")
    entry = {"resource": condition, "request": {"method": method, "url": "Condition/condition-cataract"}}
    refused = _send(client, "POST", "/fhir", operator, _transaction(entry))
    assert refused.status_code == 400
    assert "not-supported" in _codes(refused)
    assert _stored(app) == before


def test_a_transaction_naming_one_resource_twice_is_refused(client, app, operator, marfan, stored_patient):
    """FHIR http.html#trules: resource identities may not overlap in a transaction. Before: the last entry won."""
    before = _stored(app)
    first = _condition(marfan, "condition-cataract", f"Patient/{PATIENT_ID}")
    second = copy.deepcopy(first)
    second["note"] = [{"text": "the second one"}]
    refused = _send(client, "POST", "/fhir", operator, _transaction(_put_entry(first), _put_entry(second)))
    assert refused.status_code == 400
    assert "duplicate" in _codes(refused)
    assert _stored(app) == before


def test_a_transaction_of_deletes_deletes(client, app, operator, marfan, stored_patient):
    """Before: a Bundle with only DELETE entries answered 200 "no Patient, no phenopacket" and deleted nothing."""
    condition = _condition(marfan, "condition-cataract", f"Patient/{PATIENT_ID}")
    assert _send(client, "PUT", "/fhir/Condition/condition-cataract", operator, condition).status_code == 201
    delete = {"request": {"method": "DELETE", "url": "Condition/condition-cataract"}}
    done = _send(client, "POST", "/fhir", operator, _transaction(delete))
    assert done.status_code == 200, done.get_data(as_text=True)
    assert done.get_json()["entry"][0]["response"]["status"] == "200 OK"
    assert client.get("/fhir/Condition/condition-cataract", headers=operator).status_code == 410  # deleted: Gone
    (packet,) = app.extensions["gateway"].store.list_phenopackets()[0]
    assert not packet.document.get("diseases")


def test_a_delete_inside_a_bundle_with_patients_is_refused_not_ignored(client, app, operator, marfan, stored_patient):
    """Before: the DELETE entry of a Bundle that also carries a Patient was dropped silently (200)."""
    condition = _condition(marfan, "condition-later", f"Patient/{PATIENT_ID}")
    assert _send(client, "PUT", "/fhir/Condition/condition-later", operator, condition).status_code == 201
    before = _stored(app)
    bundle = copy.deepcopy(marfan)
    bundle["type"] = "transaction"
    bundle["entry"].append({"request": {"method": "DELETE", "url": "Condition/condition-later"}})
    refused = _send(client, "POST", "/fhir", operator, bundle)
    assert refused.status_code == 422
    assert "not-supported" in _codes(refused)
    assert _stored(app) == before


# --- conditional references --------------------------------------------------------------------------


def _second_patient(marfan, patient_id, identifiers):
    patient = _resource(marfan, PATIENT_ID)
    patient["id"] = patient_id
    patient["identifier"] = identifiers
    return patient


def test_a_conditional_reference_matching_several_patients_is_412(client, app, operator, marfan):
    """FHIR http.html#trules: a conditional reference with several matches fails (412). Before: the resource was
    attached to whichever Patient came first: clinical data in the wrong person's phenopacket."""
    shared = {"system": "http://hospital.example/insurance", "value": "SHARED-1"}
    for patient_id, own in (("pa", "A-1"), ("pb", "B-1")):
        patient = _second_patient(marfan, patient_id, [{"system": "http://hospital.example/mrn", "value": own}, shared])
        assert _send(client, "PUT", f"/fhir/Patient/{patient_id}", operator, patient).status_code == 201
    before = _stored(app)
    reference = f"Patient?identifier={shared['system']}|{shared['value']}"
    condition = _condition(marfan, "condition-cataract", reference)

    refused = _send(client, "PUT", "/fhir/Condition/condition-cataract", operator, condition)
    assert refused.status_code == 412
    assert _codes(refused) == ["multiple-matches"]
    transaction = _send(client, "POST", "/fhir", operator, _transaction(_put_entry(condition)))
    assert transaction.status_code == 412
    assert "multiple-matches" in _codes(transaction)
    assert _stored(app) == before
    searched = client.get(f"/fhir/Condition?patient={reference}", headers=operator)
    assert searched.status_code == 412

    one = "Patient?identifier=http://hospital.example/mrn|A-1"  # a selective one still works
    kept = _send(
        client, "PUT", "/fhir/Condition/condition-cataract", operator, _condition(marfan, "condition-cataract", one)
    )
    assert kept.status_code == 201 and "phenopacket" in _codes(kept)


@pytest.mark.parametrize(
    "reference",
    [
        "Patient?",
        "Patient?identifier=",
        "Patient?identifier=a|b&identifier=c|d",
        "Patient?name=smith",
        "Patient/../Patient/patient-marfan-001",
        "Patient/" + "x" * 65,
        "Group/patient-marfan-001",
    ],
)
def test_a_patient_reference_that_can_never_resolve_is_refused_not_left_pending(
    client, app, operator, marfan, reference
):
    """Before: kept pending (201) until expiry: no Patient can ever match it, so the resource was silently lost."""
    before = _stored(app)
    condition = _condition(marfan, "condition-cataract", reference)
    refused = _send(client, "PUT", "/fhir/Condition/condition-cataract", operator, condition)
    assert refused.status_code == 422, refused.get_data(as_text=True)
    assert "reference-unsupported" in _codes(refused)
    in_bundle = _send(client, "POST", "/fhir", operator, _transaction(_put_entry(condition)))
    assert in_bundle.status_code == 422
    assert _stored(app) == before
    assert client.get("/fhir/metadata").status_code == 200


# --- size -----------------------------------------------------------------------------------------


def test_a_bundle_above_the_entry_cap_is_413_and_changes_nothing(client, app, operator, stored_patient):
    """Before: 100,000 entries were kept in one request (94 s, 1.2 GB, one database transaction holding its locks)."""
    from gateway.api.fhir_requests import MAX_BUNDLE_ENTRIES

    before = _stored(app)
    entries = [
        _put_entry(
            {
                "resourceType": "Condition",
                "id": f"c{n}",
                "subject": {"reference": f"Patient/{PATIENT_ID}"},
                "code": {"text": "x"},
            }
        )
        for n in range(MAX_BUNDLE_ENTRIES + 1)
    ]
    refused = _send(client, "POST", "/fhir", operator, _transaction(*entries))
    assert refused.status_code == 413
    assert _codes(refused) == ["too-costly"]
    assert _stored(app) == before
    assert client.get("/fhir/metadata").status_code == 200


# --- what held already: kept as guards ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("path", "body", "content_type", "code"),
    [
        ("/fhir", b"[" * 10_000 + b"]" * 10_000, FHIR, "json-too-deep"),
        (
            "/fhir/Condition/condition-cataract",
            b'{"resourceType":"Condition","id":"a","id":"b"}',
            FHIR,
            "json-duplicate-key",
        ),
        ("/fhir", b'{"resourceType":"Bundle","type":"batch","total":NaN}', FHIR, "json-nan"),
        ("/fhir/Condition/condition-cataract", b'{"resourceType":"Condition\xff"}', FHIR, "json-syntax"),
        ("/fhir", b"", FHIR, "json-syntax"),
        (
            "/fhir/Condition/condition-cataract",
            b'{"resourceType":"Condition","note":[{"text":"\\u0000"}]}',
            FHIR,
            "json-nul",
        ),
    ],
)
def test_unreadable_bodies_are_400_and_change_nothing(
    client, app, operator, stored_patient, path, body, content_type, code
):
    before = _stored(app)
    method = "POST" if path == "/fhir" else "PUT"
    refused = client.open(path, method=method, data=body, headers={**operator, "Content-Type": content_type})
    assert refused.status_code == 400
    assert _codes(refused) == [code]
    assert _stored(app) == before
    assert client.get("/fhir/metadata").status_code == 200


def test_a_resource_moved_to_another_patient_leaves_the_first(client, app, operator, marfan, stored_patient):
    other = _second_patient(marfan, "pb", [{"system": "http://hospital.example/mrn", "value": "B-1"}])
    assert _send(client, "PUT", "/fhir/Patient/pb", operator, other).status_code == 201
    condition = _condition(marfan, "condition-cataract", f"Patient/{PATIENT_ID}")
    assert _send(client, "PUT", "/fhir/Condition/condition-cataract", operator, condition).status_code == 201
    condition["subject"] = {"reference": "Patient/pb"}
    assert _send(client, "PUT", "/fhir/Condition/condition-cataract", operator, condition).status_code == 200
    diseases = {
        p.subject_id: [d["term"]["id"] for d in p.document.get("diseases") or ()]
        for p in app.extensions["gateway"].store.list_phenopackets()[0]
    }
    assert sorted(map(len, diseases.values())) == [0, 1]  # A lost it, B gained it: in one phenopacket only


def test_a_patient_of_another_dataset_is_not_reached(client, app, operator, marfan):
    patient = _resource(marfan, PATIENT_ID)
    assert _send(client, "PUT", f"/fhir/Patient/{PATIENT_ID}?dataset=ds-b", operator, patient).status_code == 201
    condition = _condition(marfan, "condition-cataract", f"Patient/{PATIENT_ID}")
    kept = _send(client, "PUT", "/fhir/Condition/condition-cataract?dataset=ds-a", operator, condition)
    assert kept.status_code == 201 and "pending" in _codes(kept)  # waits for ds-a's own Patient
    (packet,) = app.extensions["gateway"].store.list_phenopackets()[0]
    assert packet.dataset_id == "ds-b" and not packet.document.get("diseases")
    assert client.get(f"/fhir/Patient/{PATIENT_ID}?dataset=ds-a", headers=operator).status_code == 404
    searched = client.get(f"/fhir/Condition?patient={PATIENT_ID}&dataset=ds-b", headers=operator)
    assert searched.get_json()["total"] == 0


# --- concurrency, on PostgreSQL (the production store) ------------------------------------------------


@pytest.fixture
def pg_app(gateway_config, postgres_url):
    from app import create_app
    from tests.pg_schema import fresh_schema

    with fresh_schema(postgres_url, "gw_fhir_attacks") as url:
        application = create_app({**gateway_config, "database_url": url})
        yield application
        application.extensions["gateway"].store.close()


def _in_threads(app, headers, bodies):
    """PUT each body to Condition/condition-cataract at once, one thread and client each; (status, ETag) each."""
    import threading

    results: list[tuple[int, str | None]] = []
    start = threading.Barrier(len(bodies))

    def put(body):
        client = app.test_client()
        start.wait()
        response = _send(client, "PUT", "/fhir/Condition/condition-cataract", headers, body)
        results.append((response.status_code, response.headers.get("ETag")))

    threads = [threading.Thread(target=put, args=(b,)) for b in bodies]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return results


def test_concurrent_updates_lose_nothing_and_a_stale_if_match_is_412(pg_app, operator, marfan):
    client = pg_app.test_client()
    assert (
        _send(client, "PUT", f"/fhir/Patient/{PATIENT_ID}", operator, _resource(marfan, PATIENT_ID)).status_code == 201
    )
    condition = _condition(marfan, "condition-cataract", f"Patient/{PATIENT_ID}")
    assert _send(client, "PUT", "/fhir/Condition/condition-cataract", operator, condition).status_code == 201

    guarded = [{**condition, "note": [{"text": f"guarded {n}"}]} for n in range(4)]
    results = _in_threads(pg_app, {**operator, "If-Match": 'W/"1"'}, guarded)
    assert sorted(status for status, _ in results) == [200, 412, 412, 412]  # one wins, the others read again

    free = [{**condition, "note": [{"text": f"free {n}"}]} for n in range(4)]
    results = _in_threads(pg_app, operator, free)
    assert [status for status, _ in results] == [200] * 4
    assert sorted(etag for _, etag in results) == [f'W/"{v}"' for v in (3, 4, 5, 6)]  # each its own version
    stored = client.get("/fhir/Condition/condition-cataract", headers=operator).get_json()
    assert stored["meta"]["versionId"] == "6"
    assert stored["note"] in [b["note"] for b in free]
    (packet,) = pg_app.extensions["gateway"].store.list_phenopackets()[0]
    assert len(packet.document["diseases"]) == 1


def test_a_search_naming_the_patient_twice_is_refused(client, operator, marfan, stored_patient):
    """Before: `?patient=a&patient=b` answered the resources of `a` (FHIR reads a repeated parameter as AND)."""
    condition = _condition(marfan, "condition-cataract", f"Patient/{PATIENT_ID}")
    assert _send(client, "PUT", "/fhir/Condition/condition-cataract", operator, condition).status_code == 201
    refused = client.get(f"/fhir/Condition?patient={PATIENT_ID}&patient=someone-else", headers=operator)
    assert refused.status_code == 400
    assert _codes(refused) == ["not-supported"]


def test_deleting_a_patient_leaves_its_resources_pending_and_a_new_put_takes_them_back(
    client, app, operator, marfan, stored_patient
):
    condition = _condition(marfan, "condition-cataract", f"Patient/{PATIENT_ID}")
    assert _send(client, "PUT", "/fhir/Condition/condition-cataract", operator, condition).status_code == 201
    assert _send(client, "DELETE", f"/fhir/Patient/{PATIENT_ID}", operator).status_code == 200
    assert app.extensions["gateway"].store.list_phenopackets()[0] == []  # no half-state: the phenopacket went too
    pending = client.get("/fhir/$pending", headers=operator).get_json()
    assert [e["fullUrl"] for e in pending["entry"]] == ["Condition/condition-cataract"]

    assert _send(client, "PUT", f"/fhir/Patient/{PATIENT_ID}", operator, stored_patient).status_code == 201
    (packet,) = app.extensions["gateway"].store.list_phenopackets()[0]
    assert len(packet.document["diseases"]) == 1
    assert client.get("/fhir/$pending", headers=operator).get_json()["total"] == 0


def test_in_a_batch_an_ambiguous_reference_or_stale_version_is_that_entry_s_412(client, app, operator, marfan):
    """Before: the entry answered 422 Unprocessable Entity; FHIR says a failed precondition is 412."""
    shared = {"system": "http://hospital.example/insurance", "value": "SHARED-1"}
    for patient_id, own in (("pa", "A-1"), ("pb", "B-1")):
        patient = _second_patient(marfan, patient_id, [{"system": "http://hospital.example/mrn", "value": own}, shared])
        assert _send(client, "PUT", f"/fhir/Patient/{patient_id}", operator, patient).status_code == 201
    ambiguous = _condition(marfan, "c-ambiguous", f"Patient?identifier={shared['system']}|{shared['value']}")
    fine = _condition(marfan, "c-fine", "Patient/pa")
    stale = {
        **_put_entry(_condition(marfan, "c-stale", "Patient/pa")),
        "request": {"method": "PUT", "url": "Condition/c-stale", "ifMatch": 'W/"3"'},
    }
    answered = _send(
        client, "POST", "/fhir", operator, _transaction(_put_entry(ambiguous), _put_entry(fine), stale, kind="batch")
    )
    assert answered.status_code == 200
    statuses = [e["response"]["status"] for e in answered.get_json()["entry"]]
    assert statuses == ["412 Precondition Failed", "201 Created", "412 Precondition Failed"]
    assert client.get("/fhir/Condition/c-ambiguous", headers=operator).status_code == 404
    assert client.get("/fhir/Condition/c-fine", headers=operator).status_code == 200


def test_a_write_that_waits_out_the_sqlite_lock_is_503_retry_after(gateway_config, operator, marfan, monkeypatch):
    """Before: concurrent writers on the SQLite store (the single-node default) that waited out the busy timeout
    answered 500 "internal error"; the write was rolled back, so it is a 503 the client may retry."""
    import sqlite3

    import gateway.store.engine as engine
    from app import create_app

    monkeypatch.setattr(engine, "SQLITE_BUSY_TIMEOUT_S", 0.2)  # the wait itself is not under test
    app = create_app(gateway_config)
    client = app.test_client()
    patient = _resource(marfan, PATIENT_ID)
    other_writer = sqlite3.connect(app.extensions["gateway"].store.engine.url.database, isolation_level=None)
    try:
        other_writer.execute("BEGIN IMMEDIATE")
        busy = _send(client, "PUT", f"/fhir/Patient/{PATIENT_ID}", operator, patient)
        assert busy.status_code == 503
        assert busy.headers["Retry-After"].isdigit()
        assert _codes(busy) == ["busy"]
        other_writer.execute("ROLLBACK")
        assert _stored(app) == ([], [])
        assert _send(client, "PUT", f"/fhir/Patient/{PATIENT_ID}", operator, patient).status_code == 201
    finally:
        other_writer.close()
        app.extensions["gateway"].store.close()
