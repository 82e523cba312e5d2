"""A resource deleted through the REST API (FHIR http.html#delete, #read): a read answers 410 Gone, and the same
id created again continues its versions, so an If-Match from before the delete no longer matches. An erasure of
the person leaves no tombstone. Each test names what the gateway did before (migration 0014)."""

from __future__ import annotations

import json

import pytest
import sqlalchemy as sa

from gateway.store.tables import fhir_deleted
from tests.api.test_fhir_attacks import PATIENT_ID, _condition
from tests.api.test_fhir_rest import _send


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def app(request, gateway_config):
    """Both stores: the version of a created row is worked out by the INSERT itself (dialect SQL)."""
    from app import create_app
    from tests.pg_schema import fresh_schema

    if request.param == "sqlite":
        application = create_app(gateway_config)
        yield application
        application.extensions["gateway"].store.close()
        return
    with fresh_schema(request.getfixturevalue("postgres_url"), "gw_fhir_deleted") as url:
        application = create_app({**gateway_config, "database_url": url})
        yield application
        application.extensions["gateway"].store.close()


def _tombstones(app):
    with app.extensions["gateway"].store.engine.connect() as connection:
        return sorted(
            tuple(r)
            for r in connection.execute(
                sa.select(fhir_deleted.c.resource_type, fhir_deleted.c.resource_id, fhir_deleted.c.version)
            )
        )


def test_a_deleted_resource_reads_410_and_a_never_kept_one_404(client, app, operator, marfan, stored_patient):
    """Before: 404 for both."""
    condition = _condition(marfan, "c-1", f"Patient/{PATIENT_ID}")
    assert _send(client, "PUT", "/fhir/Condition/c-1", operator, condition).status_code == 201
    changed = {**condition, "note": [{"text": "second version"}]}
    assert _send(client, "PUT", "/fhir/Condition/c-1", operator, changed).status_code == 200
    assert _send(client, "DELETE", "/fhir/Condition/c-1", operator).status_code == 200
    gone = client.get("/fhir/Condition/c-1", headers=operator)
    assert gone.status_code == 410
    body = gone.get_json()
    assert body["resourceType"] == "OperationOutcome" and body["issue"][0]["code"] == "deleted"
    assert client.get("/fhir/Condition/c-1/_history/2", headers=operator).status_code == 410
    assert client.get("/fhir/Condition/never", headers=operator).status_code == 404
    assert _tombstones(app) == [("Condition", "c-1", 2)]


def test_an_id_created_again_continues_its_versions_and_a_stale_if_match_fails(
    client, app, operator, marfan, stored_patient
):
    """Before: the new incarnation restarted at version 1, so `If-Match: W/"1"` read before the delete
    overwrote it (a lost update)."""
    condition = _condition(marfan, "c-1", f"Patient/{PATIENT_ID}")
    assert _send(client, "PUT", "/fhir/Condition/c-1", operator, condition).status_code == 201
    assert _send(client, "DELETE", "/fhir/Condition/c-1", operator).status_code == 200
    again = _send(client, "PUT", "/fhir/Condition/c-1", operator, condition)
    assert again.status_code == 201
    assert client.get("/fhir/Condition/c-1", headers=operator).get_json()["meta"]["versionId"] == "2"
    assert _tombstones(app) == []  # the resource is back: nothing is gone
    stale = client.open(
        "/fhir/Condition/c-1",
        method="PUT",
        data=json.dumps({**condition, "note": [{"text": "from a stale read"}]}),
        headers={**operator, "Content-Type": "application/fhir+json", "If-Match": 'W/"1"'},
    )
    assert stale.status_code == 412
    assert client.get("/fhir/Condition/c-1", headers=operator).get_json()["note"] == condition["note"]


def test_erasing_the_person_removes_their_tombstones(client, app, operator, marfan, stored_patient):
    """A tombstone names the person it was about by pseudonym; erasing them leaves none (nothing of the person)."""
    condition = _condition(marfan, "c-1", f"Patient/{PATIENT_ID}")
    assert _send(client, "PUT", "/fhir/Condition/c-1", operator, condition).status_code == 201
    assert _send(client, "DELETE", "/fhir/Condition/c-1", operator).status_code == 200
    assert _tombstones(app) == [("Condition", "c-1", 1)]
    (packet,) = app.extensions["gateway"].store.list_phenopackets()[0]
    erased = client.delete(f"/admin/subjects/{packet.subject_id}", headers=operator)
    assert erased.status_code == 200, erased.get_data(as_text=True)
    assert _tombstones(app) == []
    assert client.get("/fhir/Condition/c-1", headers=operator).status_code == 404
