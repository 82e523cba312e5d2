"""POST /fhir end to end: status codes, transaction-response, all-or-nothing, idempotence."""

from __future__ import annotations

import copy
import json
import uuid

import pytest

from gateway.services.fhir_resources import supported_types

FHIR = "application/fhir+json"


def _load(reference_dir, rel):
    return json.loads((reference_dir / "fhir" / rel).read_text())


@pytest.fixture
def marfan(reference_dir):
    return _load(reference_dir, "mii-seltene-erkrankungen/Bundle-bundle-marfan-complete.json")


def _post(client, body, headers, path="/fhir", **kw):
    data = body if isinstance(body, (bytes, str)) else json.dumps(body)
    return client.post(path, data=data, headers={**headers, "Content-Type": FHIR}, **kw)


def _count(app):
    return app.extensions["gateway"].store.list_phenopackets(limit=1)[1]


def test_transaction_is_translated_stored_and_served_back(client, app, operator, marfan):
    resp = _post(client, marfan, operator)
    assert resp.status_code == 200, resp.get_data(as_text=True)
    body = resp.get_json()
    assert body["resourceType"] == "Bundle" and body["type"] == "transaction-response"
    assert len(body["entry"]) == len(marfan["entry"])  # one response entry per input entry, in order
    # each entry's location is its resource as kept (FHIR http.html: Type/id/_history/version), with its ETag
    kept_types = set(supported_types())
    kept = [
        (s, a)
        for s, a in zip(marfan["entry"], body["entry"], strict=True)
        if s["resource"]["resourceType"] in kept_types
    ]
    assert len(kept) >= 15
    for sent, answered in kept:
        resource, response = sent["resource"], answered["response"]
        assert response["location"] == f"{resource['resourceType']}/{resource['id']}/_history/1"
        assert response["etag"] == 'W/"1"'
        assert client.get("/fhir/" + response["location"].split("/_history")[0], headers=operator).status_code == 200
    # every kept entry was created: 201 (http.html#transaction-response), the others (not kept) 200
    created = [e for e in body["entry"] if e["response"]["status"] == "201 Created"]
    assert len(created) == len(kept)
    # the phenopacket made is named in the Patient entry's outcome
    named = [
        i["location"][0]
        for i in created[0]["response"]["outcome"]["issue"]
        if i["details"]["coding"][0]["code"] == "phenopacket"
    ]
    assert len(named) == 1 and named[0].startswith("phenopackets/")
    location = named[0]

    packet = client.get("/" + location, headers=operator).get_json()
    assert packet["id"] == location.split("/", 1)[1]
    assert packet["subject"]["id"].startswith("pid-")
    assert packet["metaData"]["phenopacketSchemaVersion"] == "2.0.2"
    assert _count(app) == 1


def test_reposting_the_same_bundle_updates_never_duplicates(client, app, operator, marfan):
    first = _post(client, marfan, operator).get_json()
    second = _post(client, marfan, operator).get_json()
    assert _count(app) == 1
    loc1 = {e["response"].get("location") for e in first["entry"]}
    loc2 = {e["response"].get("location") for e in second["entry"]}
    assert loc1 == loc2
    assert not any(e["response"]["status"] == "201 Created" for e in second["entry"])


def test_writing_needs_an_operator(client, app, marfan):
    resp = _post(client, marfan, {})
    assert resp.status_code == 401
    assert resp.get_json()["resourceType"] == "OperationOutcome"
    resp = _post(client, marfan, {"Authorization": "Bearer wrong"})
    assert resp.status_code == 401  # a credential that fails verification (gateway.security): never 403
    assert _count(app) == 0


@pytest.mark.parametrize(
    ("body", "code"),
    [
        (b"{not json", "json-syntax"),
        (b'{"resourceType": "Bundle", "type": "transaction", "x": NaN}', "json-nan"),
        (b'{"resourceType": "Bundle", "resourceType": "Bundle"}', "json-duplicate-key"),
        (b'{"a":' * 200 + b"1" + b"}" * 200, "json-too-deep"),
        (b'{"hello": "world"}', None),
    ],
)
def test_unparseable_input_is_400_with_operation_outcome(client, app, operator, body, code):
    resp = _post(client, body, operator)
    assert resp.status_code == 400
    outcome = resp.get_json()
    assert outcome["resourceType"] == "OperationOutcome"
    assert outcome["issue"][0]["severity"] == "error"
    if code:
        assert outcome["issue"][0]["details"]["coding"][0]["code"] == code
    assert _count(app) == 0


def test_invalid_r4_is_422_with_expression_and_nothing_stored(client, app, operator, marfan):
    broken = copy.deepcopy(marfan)
    patient_index = next(i for i, e in enumerate(broken["entry"]) if e["resource"]["resourceType"] == "Patient")
    broken["entry"][patient_index]["resource"]["birthDate"] = "not-a-date"
    resp = _post(client, broken, operator)
    assert resp.status_code == 422
    outcome = resp.get_json()
    expressions = [x for i in outcome["issue"] for x in i.get("expression", [])]
    assert any(f"entry[{patient_index}]" in x and "birthDate" in x for x in expressions), expressions
    assert _count(app) == 0


def test_unknown_resource_type_and_dangling_subject_are_rejected(client, app, operator, marfan):
    unknown = copy.deepcopy(marfan)
    unknown["entry"][0]["resource"]["resourceType"] = "Spaceship"
    assert _post(client, unknown, operator).status_code in (400, 422)

    dangling = copy.deepcopy(marfan)
    obs = next(e for e in dangling["entry"] if e["resource"]["resourceType"] == "Observation")
    obs["resource"]["subject"] = {"reference": "Patient/does-not-exist"}
    resp = _post(client, dangling, operator)
    assert resp.status_code == 422
    codes = [c["code"] for i in resp.get_json()["issue"] for c in i["details"]["coding"]]
    assert "reference-dangling" in codes
    assert _count(app) == 0


def test_oversized_body_is_413_and_server_stays_up(tmp_path, operator):
    from app import create_app

    app = create_app({"data_dir": tmp_path, "operator_tokens": ["test-operator-token"], "max_body_bytes": 1000})
    client = app.test_client()
    resp = _post(client, b'{"resourceType": "Bundle", "type": "batch", "entry": []' + b" " * 2000 + b"}", operator)
    assert resp.status_code == 413
    assert resp.get_json()["resourceType"] == "OperationOutcome"
    assert client.get("/health").status_code == 200


def test_validate_operation_stores_nothing(client, app, marfan):
    resp = client.post("/fhir/Bundle/$validate", data=json.dumps(marfan), headers={"Content-Type": FHIR})
    assert resp.status_code == 200
    assert resp.get_json()["resourceType"] == "OperationOutcome"
    assert _count(app) == 0


def test_resources_without_target_give_warnings_not_errors(client, app, operator, marfan):
    resp = _post(client, marfan, operator)
    body = resp.get_json()
    kinds = [e["resource"]["resourceType"] for e in marfan["entry"]]
    if "Encounter" not in kinds:
        pytest.fail("the Marfan bundle is expected to hold an Encounter")
    index = kinds.index("Encounter")
    outcome = body["entry"][index]["response"].get("outcome")
    assert outcome and all(i["severity"] != "error" for i in outcome["issue"])


def test_batch_is_judged_patient_by_patient(client, app, operator):
    def patient(pid, birth):
        return {
            "fullUrl": f"urn:uuid:{uuid.uuid5(uuid.NAMESPACE_URL, pid)}",
            "resource": {"resourceType": "Patient", "id": pid, "gender": "female", "birthDate": birth},
            "request": {"method": "POST", "url": "Patient"},
        }

    batch = {
        "resourceType": "Bundle",
        "type": "batch",
        "entry": [patient("a1", "1990-01-01"), patient("b2", "1985-05-05")],
    }
    resp = _post(client, batch, operator)
    assert resp.status_code == 200
    body = resp.get_json()
    assert body["type"] == "batch-response"
    assert [e["response"]["status"] for e in body["entry"]] == ["201 Created", "201 Created"]
    assert _count(app) == 2


def test_metadata_and_health(client):
    cap = client.get("/fhir/metadata").get_json()
    assert cap["resourceType"] == "CapabilityStatement" and cap["fhirVersion"] == "4.0.1"
    assert client.get("/health").get_json()["status"] == "UP"
    ready = client.get("/ready")
    assert ready.status_code == 200 and ready.get_json()["checks"]["migrations"] is True


def test_responses_carry_security_headers(client):
    resp = client.get("/health")
    assert resp.headers["X-Content-Type-Options"] == "nosniff"
    assert resp.headers["X-Request-ID"]


# --- issue 11: FHIR conventions ---------------------------------------------------------------------------------


def test_validate_accepts_the_standard_parameters_wrapper(client, marfan):
    """Was: a Parameters body validated nothing and answered 200 'valid'."""
    broken = copy.deepcopy(marfan)
    broken["entry"][0]["resource"]["gender"] = "femal"  # outside the required binding
    parameters = {
        "resourceType": "Parameters",
        "parameter": [{"name": "mode", "valueCode": "create"}, {"name": "resource", "resource": broken}],
    }
    resp = client.post("/fhir/Bundle/$validate", data=json.dumps(parameters), headers={"Content-Type": FHIR})
    assert resp.status_code == 200
    errors = [i for i in resp.get_json()["issue"] if i["severity"] == "error"]
    assert errors and all("parameter[1].resource.entry[0].resource.gender" in e["expression"][0] for e in errors)
    empty = {"resourceType": "Parameters", "parameter": [{"name": "mode", "valueCode": "create"}]}
    resp = client.post("/fhir/$validate", data=json.dumps(empty), headers={"Content-Type": FHIR})
    assert resp.status_code == 400 and resp.get_json()["resourceType"] == "OperationOutcome"


def test_batch_with_one_bad_patient_stores_the_others(client, app, operator):
    """Was: a batch with one invalid patient was refused whole although documented as judged patient by patient."""

    def patient(pid, gender):
        return {
            "fullUrl": f"urn:uuid:{uuid.uuid5(uuid.NAMESPACE_URL, pid)}",
            "resource": {"resourceType": "Patient", "id": pid, "gender": gender, "birthDate": "1990-01-01"},
            "request": {"method": "POST", "url": "Patient"},
        }

    batch = {"resourceType": "Bundle", "type": "batch", "entry": [patient("a1", "female"), patient("b2", "femal")]}
    resp = _post(client, batch, operator)
    assert resp.status_code == 200, resp.get_data(as_text=True)
    body = resp.get_json()
    assert [e["response"]["status"] for e in body["entry"]] == ["201 Created", "422 Unprocessable Entity"]
    assert _count(app) == 1
    transaction = {**batch, "type": "transaction"}
    assert _post(client, transaction, operator).status_code == 422  # a transaction stays all or nothing


@pytest.mark.parametrize("media_type", ["application/fhir+json", "application/json+fhir", "application/json"])
def test_fhir_media_types_and_the_bundle_synonym(client, app, operator, marfan, media_type):
    """Was: application/json+fhir refused (415/400) and POST /fhir/Bundle a 404."""
    resp = client.post(
        "/fhir/Bundle", data=json.dumps(marfan), headers={**operator, "Content-Type": f"{media_type}; charset=utf-8"}
    )
    assert resp.status_code == 200, resp.get_data(as_text=True)
    assert resp.get_json()["type"] == "transaction-response"
    assert _count(app) == 1
