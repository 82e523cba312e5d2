"""HTTP as interface engines built on HAPI FHIR use it: media types and their fhirVersion parameter, an
OperationOutcome with every error, and a CapabilityStatement that advertises exactly what works.

Each test names what the gateway did before its fix."""

from __future__ import annotations

import json

import pytest
import sqlalchemy as sa
from fhir.resources.R4B import get_fhir_model_class

from gateway.services.fhir_resources import supported_types
from gateway.store.tables import fhir_resources
from tests.api.test_fhir_rest import FHIR

MRN = "http://hospital.example/mrn"
LINK = "http://hospital.example/record"
# HAPI FHIR's generic client sends this Accept header unless told otherwise.
HAPI_ACCEPT = (
    "application/fhir+xml;q=1.0, application/fhir+json;q=1.0, application/xml+fhir;q=0.9, application/json+fhir;q=0.9"
)


def _write(client, method, path, operator, body=None, **headers):
    data = None if body is None else json.dumps(body)
    return client.open(path, method=method, data=data, headers={**operator, "Content-Type": FHIR, **headers})


@pytest.fixture
def patient(client, operator):
    body = {"resourceType": "Patient", "id": "p-1", "identifier": [{"system": MRN, "value": "M-1"}], "gender": "male"}
    assert _write(client, "PUT", "/fhir/Patient/p-1", operator, body).status_code == 201
    return body


@pytest.mark.parametrize(
    ("accept", "status"),
    [
        ("application/fhir+json; fhirVersion=4.0", 200),
        ("application/fhir+json; fhirVersion=4.0.1", 200),
        ("application/fhir+json;fhirVersion=3.0", 406),
        ("application/json+fhir", 200),
        (HAPI_ACCEPT, 200),
        ("application/fhir+xml", 406),
    ],
)
def test_accept_with_the_fhir_version_parameter(client, operator, patient, accept, status):
    """http.html#version-parameter: `fhirVersion` names the FHIR version a client reads. Before: an Accept with
    the parameter (`fhirVersion=4.0`) was 406, as if it took no JSON."""
    answer = client.get("/fhir/Patient/p-1", headers={**operator, "Accept": accept})
    assert answer.status_code == status, answer.get_data(as_text=True)
    assert answer.get_json()["resourceType"] == ("Patient" if status == 200 else "OperationOutcome")


def test_a_body_of_another_media_type_is_415(client, operator, patient):
    """RFC 9110: a body the server cannot read for its media type is 415 Unsupported Media Type (as HAPI
    answers). Before: 400, as if the JSON were malformed. A Content-Type with fhirVersion is read."""
    for method, path in (("PUT", "/fhir/Patient/p-1"), ("POST", "/fhir"), ("POST", "/fhir/Patient/$validate")):
        refused = _write(client, method, path, operator, patient, **{"Content-Type": "application/xml"})
        assert refused.status_code == 415, (path, refused.get_data(as_text=True))
        assert refused.get_json()["issue"][0]["details"]["coding"][0]["code"] == "not-fhir"
    with_version = _write(
        client, "PUT", "/fhir/Patient/p-1", operator, patient, **{"Content-Type": FHIR + "; fhirVersion=4.0"}
    )
    assert with_version.status_code == 200


def test_every_error_is_an_operation_outcome(client, operator, patient):
    """Each kind of refusal a client meets answers an OperationOutcome in application/fhir+json."""
    answers = {
        401: client.get("/fhir/Patient/p-1"),
        404: client.get("/fhir/Patient/no-such-id", headers=operator),
        405: client.patch("/fhir/Patient/p-1", headers=operator),
        406: client.get("/fhir/Patient/p-1", headers={**operator, "Accept": "application/fhir+xml"}),
        412: _write(client, "PUT", "/fhir/Patient/p-1", operator, patient, **{"If-Match": 'W/"9"'}),
        415: _write(client, "PUT", "/fhir/Patient/p-1", operator, patient, **{"Content-Type": "text/plain"}),
        422: _write(client, "PUT", "/fhir/Patient/p-1", operator, {**patient, "gender": "x"}),
        400: client.get("/fhir/Patient?_count=-1&identifier=M-1", headers=operator),
    }
    for status, answer in answers.items():
        assert answer.status_code == status, (status, answer.get_data(as_text=True))
        assert answer.mimetype == FHIR and answer.get_json()["resourceType"] == "OperationOutcome", status
        assert answer.get_json()["issue"][0]["severity"] in ("error", "fatal")


def _minimal(resource_type, n):
    """A small valid resource of each kept type, about Patient/p-1, with a business identifier."""
    about = {"reference": "Patient/p-1"}
    code = {"coding": [{"system": "http://snomed.info/sct", "code": "404684003", "display": "Clinical finding"}]}
    drug = {"coding": [{"system": "http://www.whocc.no/atc", "code": "C07AB02", "display": "metoprolol"}]}
    body = {
        "Composition": {
            "status": "final",
            "type": code,
            "subject": about,
            "date": "2024-01-02",
            "author": [about],
            "title": "t",
        },
        "Condition": {"subject": about, "code": code},
        "DiagnosticReport": {"status": "final", "code": code, "subject": about},
        "Encounter": {
            "status": "finished",
            "class": {"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "AMB"},
            "subject": about,
            "period": {"start": "2024-01-02"},
        },
        "Immunization": {
            "status": "completed",
            "vaccineCode": code,
            "patient": about,
            "occurrenceDateTime": "2024-01-02",
        },
        "AllergyIntolerance": {"patient": about, "code": code, "recordedDate": "2024-01-02"},
        "FamilyMemberHistory": {
            "status": "completed",
            "patient": about,
            "relationship": {
                "coding": [{"system": "http://terminology.hl7.org/CodeSystem/v3-RoleCode", "code": "MTH"}]
            },
        },
        "Medication": {"code": drug},
        "MedicationAdministration": {
            "status": "completed",
            "medicationCodeableConcept": drug,
            "subject": about,
            "effectiveDateTime": "2024-01-02",
        },
        "MedicationRequest": {
            "status": "active",
            "intent": "order",
            "medicationCodeableConcept": drug,
            "subject": about,
        },
        "MedicationStatement": {"status": "active", "medicationCodeableConcept": drug, "subject": about},
        "Observation": {"status": "final", "code": code, "subject": about},
        "Patient": {"gender": "female"},
        "Procedure": {"status": "completed", "subject": about, "code": code},
        "Specimen": {"subject": about, "type": code},
    }[resource_type]
    identifier = {"system": LINK, "value": f"{resource_type}-{n}"}
    # Composition.identifier is 0..1 in R4, every other kept type's 0..*
    return {
        "resourceType": resource_type,
        "identifier": identifier if resource_type == "Composition" else [identifier],
        **body,
    }


def test_the_capability_statement_advertises_exactly_what_works(client, operator, patient):
    """Every interaction, search parameter, conditional and operation the CapabilityStatement names works for
    every type it names, and the type interactions it leaves out are refused. Before: `identifier` was searched
    but not advertised, `$validate` worked for every type but was advertised for Bundle only."""
    statement = client.get("/fhir/metadata").get_json()
    (rest,) = statement["rest"]
    kept = {r["type"]: r for r in rest["resource"] if r["type"] != "Bundle"}
    assert set(kept) == set(supported_types()) - {"Bundle"}
    all_interactions = {
        "read",
        "vread",
        "update",
        "patch",
        "delete",
        "history-instance",
        "history-type",
        "create",
        "search-type",
    }
    for resource_type, advertised in kept.items():
        codes = {i["code"] for i in advertised["interaction"]}
        resource = _minimal(resource_type, 1)
        token = f"{LINK}|{resource_type}-1"
        base = f"/fhir/{resource_type}"
        done = {}
        created = _write(client, "POST", base, operator, resource)
        done["create"] = created.status_code == 201
        rid = created.get_json()["id"]
        done["read"] = client.get(f"{base}/{rid}", headers=operator).status_code == 200
        done["vread"] = client.get(f"{base}/{rid}/_history/1", headers=operator).status_code == 200
        changed = {**resource, "id": rid, "language": "en"}
        done["update"] = _write(client, "PUT", f"{base}/{rid}", operator, changed).status_code == 200
        done["patch"] = client.patch(f"{base}/{rid}", headers=operator).status_code < 400
        done["history-instance"] = client.get(f"{base}/{rid}/_history", headers=operator).status_code == 200
        done["history-type"] = client.get(f"{base}/_history", headers=operator).status_code == 200
        for param in advertised["searchParam"]:
            value = {"identifier": token, "_id": rid}.get(param["name"], "Patient/p-1")
            found = client.get(base, query_string={param["name"]: value}, headers=operator)
            assert found.status_code == 200 and found.get_json()["total"] >= 1, (resource_type, param, found.get_json())
        done["search-type"] = True
        for operation in advertised.get("operation", []):
            checked = _write(client, "POST", f"{base}/${operation['name']}", operator, resource)
            assert checked.status_code == 200, (resource_type, operation)
        if advertised.get("conditionalCreate"):
            again = _write(
                client, "POST", base, operator, _minimal(resource_type, 1), **{"If-None-Exist": f"identifier={token}"}
            )
            assert again.status_code == 200 and again.get_json()["id"] == rid, resource_type
        if advertised.get("conditionalUpdate"):
            by_token = _write(client, "PUT", f"{base}?identifier={token}", operator, {**resource, "language": "de"})
            assert by_token.status_code == 200 and by_token.get_json()["id"] == rid, resource_type
        if advertised.get("conditionalDelete") in ("single", "multiple"):
            other = _minimal(resource_type, 2)
            assert _write(client, "POST", base, operator, other).status_code == 201
            gone = client.delete(f"{base}?identifier={LINK}|{resource_type}-2", headers=operator)
            assert gone.status_code == 200
            assert (
                client.get(base, query_string={"identifier": f"{LINK}|{resource_type}-2"}, headers=operator).get_json()[
                    "total"
                ]
                == 0
            )
        done["delete"] = client.delete(f"{base}/{rid}", headers=operator).status_code == 200
        assert client.get(f"{base}/{rid}", headers=operator).status_code == 410  # deleted: Gone
        assert {c for c in all_interactions if done.get(c)} == codes, resource_type
        if resource_type == "Patient":  # the other types were written about it: send it again
            assert _write(client, "PUT", "/fhir/Patient/p-1", operator, patient).status_code in (200, 201)
    system = {i["code"] for i in rest["interaction"]}
    assert system == {"transaction", "batch"}
    for operation in rest["operation"]:  # system level: any resource (a message carrying it, for messaging)
        body = _carried_in_a_message(patient) if operation["name"] == "process-message" else patient
        assert _write(client, "POST", f"/fhir/${operation['name']}", operator, body).status_code == 200
    assert client.get("/fhir", headers=operator).status_code >= 400  # search-system: not advertised
    assert client.get("/fhir/_history", headers=operator).status_code >= 400  # history-system: not advertised


def test_a_composition_is_matched_by_its_one_identifier(client, app, operator, patient):
    """R4's Composition.identifier is one Identifier, not a list, and the identifier index read lists only: a
    conditional create or update of a Composition matched nothing and kept a second copy each time (then refused,
    400). Now indexed (store migration 0016): matched like any other type's, one row kept."""
    first = _write(client, "POST", "/fhir/Composition", operator, _minimal("Composition", 1))
    assert first.status_code == 201
    composition = first.get_json()  # as kept, with the id it was given
    token = f"identifier={LINK}|Composition-1"
    again = {**_minimal("Composition", 1), "id": "another-id"}
    created = _write(client, "POST", "/fhir/Composition", operator, again, **{"If-None-Exist": token})
    assert created.status_code == 200, created.get_data(as_text=True)  # exists: nothing written
    found = client.get(f"/fhir/Composition?{token}", headers=operator).get_json()
    assert found["total"] == 1 and found["entry"][0]["resource"]["id"] == composition["id"]
    changed = {k: v for k, v in composition.items() if k != "meta"} | {"title": "again"}
    updated = _write(client, "PUT", f"/fhir/Composition?{token}", operator, changed)
    assert updated.status_code == 200, updated.get_data(as_text=True)
    with app.extensions["gateway"].store.engine.connect() as connection:
        rows = connection.execute(
            sa.select(sa.func.count()).where(fhir_resources.c.resource_type == "Composition")
        ).scalar_one()
    assert rows == 1
    assert client.delete(f"/fhir/Composition?{token}", headers=operator).status_code == 200
    assert client.get(f"/fhir/Composition/{composition['id']}", headers=operator).status_code == 410


def test_every_answer_is_a_valid_r4_resource(client, operator, patient):
    """What a client parses: the CapabilityStatement, a paged searchset, a batch-response, the $pending list and
    the OperationOutcomes of success and failure all validate against the R4 models of `fhir.resources`."""
    batch = {
        "resourceType": "Bundle",
        "type": "batch",
        "entry": [
            {"resource": _minimal("Condition", 1), "request": {"method": "POST", "url": "Condition"}},
            {
                "resource": {**_minimal("Condition", 2), "status": "x"},
                "request": {"method": "POST", "url": "Condition"},
            },
        ],
    }
    answers = [
        client.get("/fhir/metadata"),
        client.get("/fhir/Patient?identifier=M-1&_count=1", headers=operator),
        client.get("/fhir/Patient/p-1", headers=operator),
        client.get("/fhir/Patient/no-such-id", headers=operator),
        client.get("/fhir/Patient/p-1"),
        _write(client, "PUT", "/fhir/Patient/p-1", operator, patient, Prefer="return=OperationOutcome"),
        _write(client, "PUT", "/fhir/Patient/p-1", operator, {**patient, "gender": "x"}),
        _write(client, "POST", "/fhir", operator, batch),
        client.get("/fhir/$pending", headers=operator),
    ]
    for answer in answers:
        body = answer.get_json()
        get_fhir_model_class(body["resourceType"]).model_validate(body)  # raises on an invalid answer
    assert [a.get_json()["resourceType"] for a in answers].count("OperationOutcome") == 4


def _carried_in_a_message(resource: dict) -> dict:
    header = {
        "resourceType": "MessageHeader",
        "id": "m-1",
        "eventUri": "http://example.org/fhir/message-events/record-update",
        "source": {"endpoint": "https://his.example.org/fhir"},
        "focus": [{"reference": f"{resource['resourceType']}/{resource['id']}"}],
    }
    return {
        "resourceType": "Bundle",
        "type": "message",
        "timestamp": "2026-12-01T10:00:00Z",
        "entry": [
            {"fullUrl": "urn:uuid:0c3a2f5e-9d1b-4c1e-8a51-2f0e4f7b9a12", "resource": header},
            {
                "fullUrl": f"https://his.example.org/fhir/{resource['resourceType']}/{resource['id']}",
                "resource": resource,
            },
        ],
    }
