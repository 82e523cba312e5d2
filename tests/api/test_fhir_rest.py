"""The FHIR REST surface on single resources: POST/PUT/DELETE/GET /fhir/{type}[/{id}], $pending,
and Bundles whose entries are about Patients sent before, with real MII examples."""

from __future__ import annotations

import copy
import json

import pytest
import sqlalchemy as sa

from gateway.store.tables import fhir_resources

FHIR = "application/fhir+json"
BASE = "http://localhost/fhir/"  # the test node's base_url: a Location header is absolute ([base]/Type/id/_history/v)
MARFAN = "mii-seltene-erkrankungen/Bundle-bundle-marfan-complete.json"


def _resource(bundle, resource_id):
    return copy.deepcopy(next(e["resource"] for e in bundle["entry"] if e["resource"]["id"] == resource_id))


def _send(client, method, path, headers, body=None):
    """A write asking for the OperationOutcome of what happened (the default answer is the stored resource)."""
    data = None if body is None else json.dumps(body)
    headers = {"Prefer": "return=OperationOutcome", **headers, "Content-Type": FHIR}
    return client.open(path, method=method, data=data, headers=headers)


def _packets(app):
    return app.extensions["gateway"].store.list_phenopackets()[0]


def _codes(outcome):
    return [i["details"]["coding"][0]["code"] for i in outcome["issue"]]


def test_put_creates_then_unchanged_then_updated(client, app, operator, marfan):
    patient = _resource(marfan, "patient-marfan-001")
    first = _send(client, "PUT", "/fhir/Patient/patient-marfan-001", operator, patient)
    assert first.status_code == 201, first.get_data(as_text=True)
    assert first.headers["Location"] == BASE + "Patient/patient-marfan-001/_history/1"
    assert first.get_json()["resourceType"] == "OperationOutcome"
    assert len(_packets(app)) == 1

    again = _send(client, "PUT", "/fhir/Patient/patient-marfan-001", operator, patient)
    assert again.status_code == 200 and "unchanged" in _codes(again.get_json())
    assert again.headers["Location"] == BASE + "Patient/patient-marfan-001/_history/1"

    patient["gender"] = "female" if patient.get("gender") == "male" else "male"
    changed = _send(client, "PUT", "/fhir/Patient/patient-marfan-001", operator, patient)
    assert changed.status_code == 200 and changed.headers["Location"].endswith("/_history/2")
    (packet,) = _packets(app)
    assert packet.document["subject"]["sex"] == patient["gender"].upper()


def test_post_before_the_patient_is_pending_then_applied(client, app, operator, marfan):
    condition = _resource(marfan, "condition-marfan-genetic")
    created = _send(client, "POST", "/fhir/Condition", operator, condition)
    assert created.status_code == 201
    assert created.headers["Location"] == BASE + "Condition/condition-marfan-genetic/_history/1"
    assert "pending" in _codes(created.get_json())
    assert _packets(app) == []

    listed = client.get("/fhir/$pending", headers=operator)
    assert listed.status_code == 200
    assert [e["fullUrl"] for e in listed.get_json()["entry"]] == ["Condition/condition-marfan-genetic"]

    _send(client, "PUT", "/fhir/Patient/patient-marfan-001", operator, _resource(marfan, "patient-marfan-001"))
    (packet,) = _packets(app)
    assert packet.document["diseases"]
    assert client.get("/fhir/$pending", headers=operator).get_json()["total"] == 0


def test_read_and_delete(client, app, operator, marfan):
    _send(client, "PUT", "/fhir/Patient/patient-marfan-001", operator, _resource(marfan, "patient-marfan-001"))
    condition = _resource(marfan, "condition-marfan-genetic")
    _send(client, "PUT", "/fhir/Condition/condition-marfan-genetic", operator, condition)
    (packet,) = _packets(app)
    assert packet.document["diseases"]

    stored_patient = client.get("/fhir/Patient/patient-marfan-001", headers=operator).get_json()
    assert "name" not in stored_patient and stored_patient["identifier"]  # minimised: what no phenopacket needs
    read = client.get("/fhir/Condition/condition-marfan-genetic", headers=operator)
    assert read.status_code == 200 and read.get_json()["meta"]["versionId"] == "1"
    assert read.get_json()["code"] == condition["code"]
    assert client.get("/fhir/Condition/condition-marfan-genetic").status_code == 401  # operator only

    gone = _send(client, "DELETE", "/fhir/Condition/condition-marfan-genetic", operator)
    assert gone.status_code == 200 and "deleted" in _codes(gone.get_json())
    (packet,) = _packets(app)
    assert not packet.document.get("diseases")
    missing = client.get("/fhir/Condition/condition-marfan-genetic", headers=operator)
    assert missing.status_code == 410 and missing.get_json()["resourceType"] == "OperationOutcome"  # Gone


def test_a_transaction_referencing_a_stored_patient_is_applied(client, app, operator, marfan):
    """Before: 422 "subject reference does not resolve to an entry of the Bundle"."""
    _send(client, "PUT", "/fhir/Patient/patient-marfan-001", operator, _resource(marfan, "patient-marfan-001"))
    transaction = copy.deepcopy(marfan)
    transaction["entry"] = [e for e in transaction["entry"] if e["resource"]["resourceType"] != "Patient"]
    resp = client.post("/fhir", data=json.dumps(transaction), headers={**operator, "Content-Type": FHIR})
    assert resp.status_code == 200, resp.get_data(as_text=True)
    body = resp.get_json()
    assert body["type"] == "transaction-response" and len(body["entry"]) == len(transaction["entry"])
    statuses = {e["response"]["status"] for e in body["entry"]}
    assert statuses == {"201 Created", "200 OK"}  # kept types created (Encounters as date traces), the rest not
    kept = [e for e in body["entry"] if e["response"]["status"] == "201 Created"]
    assert all("/_history/1" in e["response"]["location"] for e in kept)
    (packet,) = _packets(app)

    complete = client.post("/fhir", data=json.dumps(marfan), headers={**operator, "Content-Type": FHIR})
    assert complete.status_code == 200
    (again,) = _packets(app)  # the complete Bundle names the same patient: one phenopacket
    assert again.id == packet.id
    assert len(again.document["diseases"]) == len(packet.document["diseases"])


def test_errors_are_operation_outcomes_and_change_nothing(client, app, operator, marfan):
    patient = _resource(marfan, "patient-marfan-001")
    assert _send(client, "PUT", "/fhir/Patient/patient-marfan-001", {}, patient).status_code == 401
    wrong_id = _send(client, "PUT", "/fhir/Patient/other", operator, patient)
    assert wrong_id.status_code == 400 and wrong_id.get_json()["resourceType"] == "OperationOutcome"
    impression = _resource(marfan, "clinical-impression-seltene-assessment")
    unsupported = _send(client, "POST", "/fhir/ClinicalImpression", operator, impression)
    assert unsupported.status_code == 404
    assert _codes(unsupported.get_json()) == ["unknown-resource-type"]
    assert unsupported.get_json()["issue"][0]["code"] == "not-supported"
    assert _send(client, "PUT", "/fhir/Nothing/x", {}, patient).status_code == 404  # not R4: before credentials
    broken = dict(patient, birthDate="yesterday")
    invalid = _send(client, "PUT", "/fhir/Patient/patient-marfan-001", operator, broken)
    assert invalid.status_code == 422 and invalid.get_json()["resourceType"] == "OperationOutcome"
    too_long = _send(client, "DELETE", "/fhir/Patient/" + "x" * 65, operator)
    assert too_long.status_code == 400 and too_long.get_json()["resourceType"] == "OperationOutcome"
    bad_dataset = _send(client, "PUT", "/fhir/Patient/patient-marfan-001?dataset=../x", operator, patient)
    assert bad_dataset.status_code == 400
    assert _packets(app) == []


def test_capability_statement_lists_the_interactions(client):
    statement = client.get("/fhir/metadata").get_json()
    resources = {r["type"]: r for r in statement["rest"][0]["resource"]}
    interactions = {i["code"] for i in resources["Condition"]["interaction"]}
    assert interactions == {"create", "update", "delete", "read", "vread", "search-type"}
    assert "ClinicalImpression" not in resources  # no phenopacket target, nothing dated: not kept
    assert "Encounter" in resources  # kept as a date-only trace: it dates the last encounter


MARFAN_ID = ("https://www.medizininformatik-initiative.de/fhir/sid/patient-id", "MRF-2024-001")
BY_IDENTIFIER = f"Patient?identifier={MARFAN_ID[0]}|{MARFAN_ID[1]}"


def _extra_condition(marfan, new_id, reference):
    """A Condition the hospital records later: the cataract one, another code, another id."""
    condition = _resource(marfan, "condition-cataract")
    condition["id"] = new_id
    condition["code"]["coding"][0]["code"] = "H25.9"
    condition["subject"] = {"reference": reference}
    return condition


def _disease_codes(packet):
    return {d["term"]["id"] for d in packet.document.get("diseases") or ()}


@pytest.mark.parametrize("reference", ["Patient/patient-marfan-001", BY_IDENTIFIER])
def test_a_resource_for_a_patient_sent_as_a_complete_bundle_lands_in_its_phenopacket(
    client, app, operator, marfan, reference
):
    """Before: the Condition stayed pending, for ever: the Bundle channel kept no Patient to attach it to."""
    complete = client.post("/fhir", data=json.dumps(marfan), headers={**operator, "Content-Type": FHIR})
    assert complete.status_code == 200
    (before,) = _packets(app)
    added = _send(client, "POST", "/fhir/Condition", operator, _extra_condition(marfan, "condition-later", reference))
    assert added.status_code == 201, added.get_data(as_text=True)
    assert "pending" not in _codes(added.get_json())
    (after,) = _packets(app)
    assert after.id == before.id and after.subject_id == before.subject_id
    assert _disease_codes(after) == _disease_codes(before) | {"ICD10GM:H25.9"}

    again = client.post("/fhir", data=json.dumps(marfan), headers={**operator, "Content-Type": FHIR})
    assert again.status_code == 200  # the complete Bundle again: the later Condition stays
    (last,) = _packets(app)
    assert _disease_codes(last) == _disease_codes(after)


def test_kept_resources_hold_no_record_number_in_clear(client, app, operator, marfan):
    client.post("/fhir", data=json.dumps(marfan), headers={**operator, "Content-Type": FHIR})
    by_identifier = _extra_condition(marfan, "condition-later", BY_IDENTIFIER)
    _send(client, "POST", "/fhir/Condition", operator, by_identifier)

    with app.extensions["gateway"].store.engine.connect() as connection:
        stored = connection.execute(sa.select(fhir_resources)).mappings().all()
    assert {r["resource_type"] for r in stored} >= {"Patient", "Condition"}
    assert MARFAN_ID[1] not in json.dumps([dict(r) for r in stored], default=str)
    patient = client.get("/fhir/Patient/patient-marfan-001", headers=operator).get_json()
    assert patient["identifier"][0]["value"].startswith("pid-")


def test_a_bundle_with_patients_may_also_reference_a_stored_patient(client, app, operator, marfan, reference_dir):
    """Before: 422 "subject reference does not resolve", because the Bundle holds other Patients."""
    _send(client, "PUT", "/fhir/Patient/patient-marfan-001", operator, _resource(marfan, "patient-marfan-001"))
    other = json.loads(
        (reference_dir / "fhir" / "mii-testdata" / "Bundle-mii-exa-test-data-bundle-pat-11.json").read_text()
    )
    transaction = {
        "resourceType": "Bundle",
        "type": "transaction",
        "entry": [
            *other["entry"],
            {
                "fullUrl": "urn:uuid:2b8f0b52-7f5e-4d4c-9a55-3b1f6f3d0a11",
                "resource": _extra_condition(marfan, "condition-later", "Patient/patient-marfan-001"),
                "request": {"method": "POST", "url": "Condition"},
            },
        ],
    }
    resp = client.post("/fhir", data=json.dumps(transaction), headers={**operator, "Content-Type": FHIR})
    assert resp.status_code == 200, resp.get_data(as_text=True)
    assert resp.get_json()["type"] == "transaction-response"
    packets = _packets(app)
    assert len(packets) == 2
    assert any(_disease_codes(p) == {"ICD10GM:H25.9"} for p in packets)


def test_the_operator_purges_pending_resources_and_the_purge_is_audited(client, app, operator, marfan):
    _send(client, "POST", "/fhir/Condition", operator, _resource(marfan, "condition-marfan-genetic"))
    listed = client.get("/fhir/$pending", headers=operator).get_json()
    assert "dropped after" in listed["entry"][0]["response"]["outcome"]["issue"][0]["diagnostics"]
    assert client.delete("/fhir/$pending?older_than_days=0").status_code == 401
    assert client.delete("/fhir/$pending?older_than_days=-1", headers=operator).status_code == 400
    kept = client.delete("/fhir/$pending", headers=operator)  # default: older than the configured 30 days
    assert kept.status_code == 200 and client.get("/fhir/$pending", headers=operator).get_json()["total"] == 1
    purged = client.delete("/fhir/$pending?older_than_days=0", headers=operator)
    assert purged.status_code == 200 and purged.get_json()["resourceType"] == "OperationOutcome"
    assert "1 pending resource(s)" in purged.get_json()["issue"][0]["diagnostics"]
    assert client.get("/fhir/$pending", headers=operator).get_json()["total"] == 0
    records = list(app.extensions["gateway"].security.audit.records())
    purges = [r for r in records if r.get("endpoint") == "/fhir/$pending" and r.get("method") == "DELETE"]
    assert [r["phase"] for r in purges if r.get("status") == 200][-1:] == ["outcome"]
    assert purges[-1]["datasets"] == ["default"]


def test_if_match_guards_updates_and_deletes(client, app, operator, marfan):
    """Before: If-Match was ignored, so two clients editing the same resource overwrote each other."""
    _send(client, "PUT", "/fhir/Patient/patient-marfan-001", operator, _resource(marfan, "patient-marfan-001"))
    condition = _resource(marfan, "condition-cataract")
    first = _send(client, "PUT", "/fhir/Condition/condition-cataract", operator, condition)
    assert first.headers["ETag"] == 'W/"1"' and first.last_modified is not None
    condition["code"]["coding"][0]["code"] = "H25.9"
    stale = {**operator, "If-Match": 'W/"2"'}
    refused = _send(client, "PUT", "/fhir/Condition/condition-cataract", stale, condition)
    assert refused.status_code == 412 and refused.get_json()["resourceType"] == "OperationOutcome"
    assert "ICD10GM:H25.9" not in _disease_codes(_packets(app)[0])  # nothing changed
    assert _send(client, "DELETE", "/fhir/Condition/condition-cataract", stale).status_code == 412
    bad = _send(client, "PUT", "/fhir/Condition/condition-cataract", {**operator, "If-Match": "yes"}, condition)
    assert bad.status_code == 400

    current = {**operator, "If-Match": 'W/"1"', "Prefer": "return=representation"}
    updated = _send(client, "PUT", "/fhir/Condition/condition-cataract", current, condition)
    assert updated.status_code == 200 and updated.headers["ETag"] == 'W/"2"'
    body = updated.get_json()
    assert body["resourceType"] == "Condition" and body["meta"]["versionId"] == "2" and body["meta"]["lastUpdated"]
    gone = _send(client, "DELETE", "/fhir/Condition/condition-cataract", {**operator, "If-Match": '"2"'})
    assert gone.status_code == 200


def test_vread_and_search_by_patient(client, app, operator, marfan):
    _send(client, "PUT", "/fhir/Patient/patient-marfan-001", operator, _resource(marfan, "patient-marfan-001"))
    for rid in ("condition-cataract", "condition-marfan-genetic"):
        _send(client, "PUT", f"/fhir/Condition/{rid}", operator, _resource(marfan, rid))
    current = client.get("/fhir/Condition/condition-cataract/_history/1", headers=operator)
    assert current.status_code == 200 and current.get_json()["meta"]["versionId"] == "1"
    assert client.get("/fhir/Condition/condition-cataract/_history/7", headers=operator).status_code == 404

    for query in ("patient=Patient/patient-marfan-001", "subject=patient-marfan-001", f"patient={BY_IDENTIFIER}"):
        found = client.get(f"/fhir/Condition?{query}", headers=operator)
        assert found.status_code == 200, query
        body = found.get_json()
        assert body["type"] == "searchset" and body["total"] == 2
        assert {e["resource"]["id"] for e in body["entry"]} == {"condition-cataract", "condition-marfan-genetic"}
    assert client.get("/fhir/Condition?patient=nobody", headers=operator).get_json()["total"] == 0
    assert client.get("/fhir/Condition?code=x", headers=operator).status_code == 400
    assert client.get("/fhir/Condition?patient=Patient/patient-marfan-001").status_code == 401


def test_a_bundle_and_its_kept_resources_are_stored_together_or_not_at_all(client, app, operator, marfan, monkeypatch):
    """Was: the Bundle's phenopackets were committed first and its resources kept in a second transaction, so a
    failure in between left a phenopacket that resources sent later could never meet."""
    import gateway.services.fhir_resources as kept

    def broken(*args, **kwargs):
        raise RuntimeError("disk full while keeping the resources")

    monkeypatch.setattr(kept, "_apply_writes_in", broken)
    failed = client.post("/fhir", data=json.dumps(marfan), headers={**operator, "Content-Type": FHIR})
    assert failed.status_code == 500
    assert failed.get_json()["resourceType"] == "OperationOutcome"
    assert _packets(app) == []  # the phenopacket went with the resources
    with app.extensions["gateway"].store.engine.connect() as connection:
        assert connection.execute(sa.select(sa.func.count()).select_from(fhir_resources)).scalar() == 0

    monkeypatch.undo()
    stored = client.post("/fhir", data=json.dumps(marfan), headers={**operator, "Content-Type": FHIR})
    assert stored.status_code == 200
    assert len(_packets(app)) == 1
