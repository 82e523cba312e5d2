"""One error handler per surface (gateway/api/errors.py): every error answers in its surface's own dialect."""

from __future__ import annotations

import pytest


def test_bad_input_on_a_plain_surface_is_problem_json(client, operator):
    resp = client.get("/phenopackets?limit=abc", headers=operator)
    assert resp.status_code == 400
    assert resp.get_json()["error"]["message"] == "query parameter 'limit' must be an integer from 1 to 1000"


def test_missing_credentials_answer_in_each_dialect(client):
    fhir = client.post("/fhir", data=b"{}", headers={"Content-Type": "application/fhir+json"})
    assert fhir.status_code == 401 and fhir.headers["WWW-Authenticate"].startswith("Bearer")
    assert fhir.get_json()["issue"][0]["code"] == "login"
    plain = client.get("/phenopackets")
    assert plain.status_code == 401 and plain.get_json()["error"]["status"] == 401


@pytest.mark.parametrize(
    ("path", "dialect"),
    [("/fhir/Nothing/here", "fhir"), ("/api/nothing_here", "beacon"), ("/nothing/here", "problem")],
)
def test_unknown_routes_answer_in_the_dialect_of_their_surface(client, path, dialect):
    resp = client.get(path)
    assert resp.status_code == 404
    body = resp.get_json()
    if dialect == "fhir":
        assert body["resourceType"] == "OperationOutcome" and body["issue"][0]["code"] == "not-found"
    elif dialect == "beacon":
        assert body["error"]["errorCode"] == 404 and body["meta"]["beaconId"] == "org.example.test"
    else:
        assert body["error"]["status"] == 404


def test_a_malformed_bearer_token_is_a_beacon_error_on_the_beacon_surface(client):
    resp = client.get("/api/individuals", headers={"Authorization": "Bearer not-a-jwt"})
    assert resp.status_code == 401
    assert resp.get_json()["error"]["errorCode"] == 401
