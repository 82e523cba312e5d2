"""Patient links given only by the Patient's identifier (`"subject": {"identifier": {system, value}}`, FHIR's logical
reference): what a sender writes that knows the patient's record number but not the receiver's resource ids.

Before: in a Bundle, "Condition names no subject patient" and the fact was lost; sent on its own, the resource was
kept attached to nobody — with the hospital's record number in clear in the row (the Patient's own identifiers are
pseudonymised at rest). Now such a link resolves as the conditional reference `Patient?identifier=system|value`
(in the Bundle, against the stored Patients, or pending until the Patient comes), and its value is kept as a
pseudonym. The input is the real MII Marfan Bundle (../shared/reference) with its links rewritten so.
"""

from __future__ import annotations

import copy
import json

import sqlalchemy as sa

from gateway.store.tables import fhir_resources
from tests.api.test_fhir_rest import _codes, _packets, _resource, _send

PATIENT_ID = "patient-marfan-001"


def _by_identifier(resource: dict, patient: dict) -> dict:
    """The resource with its patient link written as the Patient's identifier."""
    linked = copy.deepcopy(resource)
    (identifier,) = patient["identifier"]
    for link in ("subject", "patient"):
        if link in linked:
            linked[link] = {"type": "Patient", "identifier": dict(identifier)}
    return linked


def _logical(marfan: dict) -> dict:
    bundle = copy.deepcopy(marfan)
    patient = next(e["resource"] for e in bundle["entry"] if e["resource"]["resourceType"] == "Patient")
    for entry in bundle["entry"]:
        if entry["resource"]["resourceType"] != "Patient":
            entry["resource"] = _by_identifier(entry["resource"], patient)
    return bundle


def _diseases(app) -> list[str]:
    (packet,) = _packets(app)
    return sorted(d["term"]["id"] for d in packet.document.get("diseases", ()))


def _rows_text(app) -> str:
    with app.extensions["gateway"].store.engine.connect() as connection:
        return json.dumps([row for (row,) in connection.execute(sa.select(fhir_resources.c.resource))])


def test_a_bundle_whose_resources_name_their_patient_by_identifier_keeps_their_facts(client, app, operator, marfan):
    answer = client.post("/fhir?dataset=logical", json=_logical(marfan), headers=operator)
    assert answer.status_code in (200, 201), answer.get_data(as_text=True)
    text = answer.get_data(as_text=True)
    assert "names no subject patient" not in text
    logical = _packets(app)[0].document

    other = client.post("/fhir?dataset=literal", json=marfan, headers=operator)
    assert other.status_code in (200, 201)
    literal = next(p.document for p in _packets(app) if p.dataset_id == "literal")
    for element in ("diseases", "phenotypicFeatures", "measurements", "medicalActions", "interpretations"):
        assert len(logical.get(element, ())) == len(literal.get(element, ())) > 0, element
    assert "MRF-2024-001" not in _rows_text(app)


def test_a_resource_sent_alone_naming_its_patient_by_identifier_joins_its_phenopacket(client, app, operator, marfan):
    patient = _resource(marfan, PATIENT_ID)
    assert _send(client, "PUT", f"/fhir/Patient/{PATIENT_ID}", operator, patient).status_code == 201
    condition = _by_identifier(_resource(marfan, "condition-marfan-genetic"), patient)
    answer = _send(client, "PUT", "/fhir/Condition/condition-marfan-genetic", operator, condition)
    assert answer.status_code == 201 and "pending" not in _codes(answer.get_json())
    assert _diseases(app)  # the Condition reached the patient's phenopacket
    stored = client.get("/fhir/Condition/condition-marfan-genetic", headers=operator).get_json()
    assert stored["subject"]["identifier"]["value"] != "MRF-2024-001"  # a pseudonym, as the Patient's own
    assert "MRF-2024-001" not in _rows_text(app)


def test_one_sent_before_its_patient_is_pending_then_applied(client, app, operator, marfan):
    patient = _resource(marfan, PATIENT_ID)
    condition = _by_identifier(_resource(marfan, "condition-marfan-genetic"), patient)
    first = _send(client, "PUT", "/fhir/Condition/condition-marfan-genetic", operator, condition)
    assert first.status_code == 201 and "pending" in _codes(first.get_json())
    assert _packets(app) == []
    assert _send(client, "PUT", f"/fhir/Patient/{PATIENT_ID}", operator, patient).status_code == 201
    assert _diseases(app)
    assert client.get("/fhir/$pending", headers=operator).get_json()["total"] == 0


def test_a_link_typed_as_another_resource_is_not_taken_for_a_patient(client, app, operator, marfan):
    patient = _resource(marfan, PATIENT_ID)
    assert _send(client, "PUT", f"/fhir/Patient/{PATIENT_ID}", operator, patient).status_code == 201
    condition = _by_identifier(_resource(marfan, "condition-marfan-genetic"), patient)
    condition["subject"]["type"] = "Group"
    _send(client, "PUT", "/fhir/Condition/condition-marfan-genetic", operator, condition)
    assert _diseases(app) == []
