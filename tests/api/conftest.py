"""Fixtures of the FHIR tests: the real MII Marfan Bundle and its Patient stored, and a live FHIR endpoint for
the third-party clients (fhirclient, fhirpy) that speak HTTP only."""

from __future__ import annotations

import json
import threading
from dataclasses import dataclass

import pytest
from werkzeug.serving import make_server

from tests.api.test_fhir_rest import MARFAN, _resource, _send
from tests.conftest import OPERATOR_TOKEN

PATIENT_ID = "patient-marfan-001"


@pytest.fixture
def marfan(reference_dir):
    """The real MII rare-disease Marfan Bundle (../shared/reference)."""
    return json.loads((reference_dir / "fhir" / MARFAN).read_text())


@pytest.fixture
def stored_patient(client, operator, marfan):
    """Its Patient, stored by PUT before the test."""
    patient = _resource(marfan, PATIENT_ID)
    assert _send(client, "PUT", f"/fhir/Patient/{PATIENT_ID}", operator, patient).status_code == 201
    return patient


@dataclass(frozen=True)
class LiveFhir:
    base: str  # http://127.0.0.1:{port}/fhir
    token: str
    app: object


@pytest.fixture
def live_fhir(gateway_config):
    """The gateway served over a real socket on a free port, without a configured base_url: the URLs it
    advertises (Location, fullUrl, links) are the ones the client called, as behind no proxy."""
    from app import create_app

    config = {**gateway_config, "node": {"id": "org.example.test", "name": "Test node"}}
    application = create_app(config)
    server = make_server("127.0.0.1", 0, application, threaded=True)
    thread = threading.Thread(target=server.serve_forever, name="live-fhir", daemon=True)
    thread.start()
    try:
        yield LiveFhir(f"http://127.0.0.1:{server.server_port}/fhir", OPERATOR_TOKEN, application)
    finally:
        server.shutdown()
        thread.join(10)
        application.extensions["gateway"].store.close()
