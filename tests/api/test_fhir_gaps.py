"""Issue 11, named gaps on the REST path: the IPS Composition is kept (its type selects the profile of
its patient), and two Patient ids of one person never overwrite each other's phenopacket."""

from __future__ import annotations

import json

import mappings
from gateway.services import fhir_resources as service
from gateway.services.fhir_incremental import FragmentCache, assemble_parts
from gateway.store import fhir_resources as rows

FHIR = "application/fhir+json"
IPS = "ips-1.1.0"


def _read(reference_dir, name):
    return json.loads((reference_dir / "fhir" / IPS / f"{name}.json").read_text())


def _send(client, method, path, headers, body=None):
    data = None if body is None else json.dumps(body)
    return client.open(path, method=method, data=data, headers={**headers, "Content-Type": FHIR})


def _severities(response):
    return {i["severity"] for i in response.get_json().get("issue", ())}


def _profile_of(app, patient_id):
    store = app.extensions["gateway"].store
    with store.engine.connect() as connection:
        resources = service.assemble(connection, "default", patient_id)
        assert resources is not None
        whole = mappings.detect_profile(
            {"resourceType": "Bundle", "entry": [{"resource": r.resource} for r in resources]}
        )
        parts = assemble_parts(connection, "default", patient_id, FragmentCache())
        assert parts is not None
        return whole, parts.profile


def test_an_ips_composition_is_kept_and_selects_the_ips_profile(client, app, operator, reference_dir):
    """Was: POST /fhir/Composition 404, so a patient summary sent resource by resource was read as generic."""
    for name in ("Patient-eumfh-39-07", "Condition-eumfh-39-07-1"):
        resource = _read(reference_dir, name)
        sent = _send(client, "PUT", f"/fhir/{resource['resourceType']}/{resource['id']}", operator, resource)
        assert sent.status_code == 201, sent.get_data(as_text=True)
    assert _profile_of(app, "eumfh-39-07") == ("generic", "generic")

    composition = _read(reference_dir, "Composition-composition-minimal")
    composition["subject"] = {"reference": "Patient/eumfh-39-07"}
    kept = _send(client, "POST", "/fhir/Composition", operator, composition)
    assert kept.status_code == 201, kept.get_data(as_text=True)
    assert "warning" not in _severities(kept) and "error" not in _severities(kept)  # maps to nothing else: no warning
    assert _profile_of(app, "eumfh-39-07") == ("ips", "ips")
    (packet,) = app.extensions["gateway"].store.list_phenopackets()[0]
    assert not [i for i in packet.issues if "Composition" in i.get("location", "") and i["severity"] != "information"]

    gone = _send(client, "DELETE", "/fhir/Composition/composition-minimal", operator)
    assert gone.status_code in (200, 204)
    assert _profile_of(app, "eumfh-39-07") == ("generic", "generic")
    with app.extensions["gateway"].store.engine.connect() as connection:
        assert rows.get(connection, "default", "Composition", "composition-minimal") is None
