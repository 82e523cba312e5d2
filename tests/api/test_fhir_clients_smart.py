"""The SMART on FHIR Python client (`fhirclient`, its own R4 models) against a live gateway: what a hospital
integrator writing against the FHIR spec does, with no knowledge of the gateway.

Each test names what the client met before its fix."""

from __future__ import annotations

import pytest
import requests
from fhirclient import client as smart_client
from fhirclient.models.bundle import Bundle
from fhirclient.models.capabilitystatement import CapabilityStatement
from fhirclient.models.condition import Condition
from fhirclient.models.medicationstatement import MedicationStatement
from fhirclient.models.observation import Observation
from fhirclient.models.operationoutcome import OperationOutcome
from fhirclient.models.parameters import Parameters
from fhirclient.models.patient import Patient
from fhirclient.models.specimen import Specimen
from fhirclient.server import FHIRNotFoundException

MRN = "http://hospital.example/mrn"
PROBLEM = "http://hospital.example/problem"
CONFIRMED = {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/condition-ver-status", "code": "confirmed"}]}


@pytest.fixture
def smart(live_fhir):
    client = smart_client.FHIRClient(settings={"app_id": "gateway-tests", "api_base": live_fhir.base + "/"})
    client.server.session.headers["Authorization"] = f"Bearer {live_fhir.token}"
    return client.server


def _first_page(search, server):
    return next(search.perform_iter(server))


def _patient(value="MRN-1"):
    return Patient(
        {
            "resourceType": "Patient",
            "identifier": [{"system": MRN, "value": value}],
            "gender": "female",
            "birthDate": "1990-02-03",
        }
    )


def _about(patient_reference):
    """A Condition, Observation, Specimen and MedicationStatement about the Patient, as fhirclient models."""
    subject = {"reference": patient_reference}
    return [
        Condition(
            {
                "resourceType": "Condition",
                "identifier": [{"system": PROBLEM, "value": "P-1"}],
                "subject": subject,
                "verificationStatus": CONFIRMED,
                "code": {"coding": [{"system": "http://www.orpha.net", "code": "558", "display": "Marfan syndrome"}]},
            }
        ),
        Observation(
            {
                "resourceType": "Observation",
                "status": "final",
                "subject": subject,
                "code": {"coding": [{"system": "http://loinc.org", "code": "8302-2", "display": "Body height"}]},
                "valueQuantity": {"value": 171, "unit": "cm", "system": "http://unitsofmeasure.org", "code": "cm"},
            }
        ),
        Specimen(
            {
                "resourceType": "Specimen",
                "subject": subject,
                "type": {"coding": [{"system": "http://snomed.info/sct", "code": "119297000", "display": "Blood"}]},
            }
        ),
        MedicationStatement(
            {
                "resourceType": "MedicationStatement",
                "status": "active",
                "subject": subject,
                "medicationCodeableConcept": {
                    "coding": [{"system": "http://www.whocc.no/atc", "code": "C07AB02", "display": "metoprolol"}]
                },
            }
        ),
    ]


def test_the_capability_statement_parses_with_the_client_s_own_models(smart):
    """fhirclient reads /metadata into its R4 CapabilityStatement model (strict: an unknown or mistyped element
    raises)."""
    statement = smart.capabilityStatement
    assert isinstance(statement, CapabilityStatement)
    assert statement.fhirVersion == "4.0.1"
    (rest,) = statement.rest
    kinds = {r.type: r for r in rest.resource}
    assert {"Patient", "Condition", "Observation", "Specimen", "MedicationStatement"} <= set(kinds)
    condition = kinds["Condition"]
    assert {p.name for p in condition.searchParam} >= {"patient", "subject", "identifier"}


def test_create_answers_the_resource_with_an_absolute_location(smart):
    """FHIR http.html#ops: with no Prefer header a server may answer the resource or nothing, "but not the
    OperationOutcome". Before: an OperationOutcome, so `create()` gave the client no id, and the Location
    `Patient/{id}/_history/1` was relative to the request URL (RFC 3986), naming /fhir/Patient/Patient/{id}."""
    answer = smart.post_json("Patient", _patient().as_json())
    assert answer.status_code == 201
    created = Patient(answer.json())  # the client's model: the body is the Patient
    assert created.id and created.meta.versionId == "1"
    location = answer.headers["Location"]
    assert location == f"{smart.base_uri}Patient/{created.id}/_history/1"
    followed = requests.get(location, headers=dict(smart.session.headers), timeout=30)
    assert followed.status_code == 200 and followed.json()["id"] == created.id
    assert answer.headers["ETag"] == 'W/"1"' and answer.headers["Last-Modified"]


def test_a_patient_and_its_resources_created_searched_updated_and_deleted(smart, live_fhir):
    """The client-driven scenario: create a Patient, then a Condition, Observation, Specimen and
    MedicationStatement about it (each `create()` answers the resource), search by identifier and by patient,
    update, conditional update, delete."""
    patient = Patient(_patient().create(smart))
    reference = f"Patient/{patient.id}"
    made = [type(r)(r.create(smart)) for r in _about(reference)]
    assert all(r.id and r.meta.versionId == "1" for r in made)

    found = _first_page(Patient.where(struct={"identifier": f"{MRN}|MRN-1"}), smart)
    assert isinstance(found, Bundle) and found.type == "searchset" and found.total == 1
    assert found.entry[0].resource.id == patient.id
    assert found.entry[0].fullUrl == f"{smart.base_uri}Patient/{patient.id}"
    (self_link,) = [link.url for link in found.link if link.relation == "self"]
    assert requests.get(self_link, headers=dict(smart.session.headers), timeout=30).json()["total"] == 1
    for kind in (Condition, Observation, Specimen, MedicationStatement):
        assert [r.id for r in kind.where(struct={"patient": reference}).perform_resources_iter(smart)] == [
            m.id for m in made if isinstance(m, kind)
        ]

    stored = Patient.read(patient.id, smart)
    stored.gender = "male"
    updated = Patient(stored.update(smart))
    assert updated.gender == "male" and updated.meta.versionId == "2"

    condition = next(m for m in made if isinstance(m, Condition))
    changed = condition.as_json()
    del changed["id"], changed["meta"]
    changed["note"] = [{"text": "confirmed by the clinic"}]
    answer = smart.put_json(f"Condition?identifier={PROBLEM}|P-1", changed)  # conditional update
    assert answer.status_code == 200
    assert Condition(answer.json()).id == condition.id and answer.json()["meta"]["versionId"] == "2"

    condition.delete(smart)
    with pytest.raises(requests.exceptions.HTTPError) as gone:
        Condition.read(condition.id, smart)
    assert gone.value.response.status_code == 410  # deleted: Gone
    with pytest.raises(FHIRNotFoundException):  # an id never kept: 404
        Condition.read("never-kept", smart)
    assert _first_page(Condition.where(struct={"patient": reference}), smart).total == 0
    packets = live_fhir.app.extensions["gateway"].store.list_phenopackets()[0]
    assert len(packets) == 1 and not packets[0].document.get("diseases")
    assert packets[0].document["measurements"] and packets[0].document["biosamples"]


def test_search_pages_follow_next_links(smart):
    """search.html#count: `_count` pages the searchset, `next` links the rest (fhirclient follows them).
    Before: `_count` was refused (400)."""
    patient = Patient(_patient().create(smart))
    for n in range(5):
        observation = _about(f"Patient/{patient.id}")[1]
        observation.valueQuantity.value = 160 + n
        observation.create(smart)
    first = _first_page(Observation.where(struct={"patient": patient.id, "_count": "2"}), smart)
    assert first.total == 5 and len(first.entry) == 2
    assert {link.relation for link in first.link} == {"self", "next"}
    everything = list(Observation.where(struct={"patient": patient.id, "_count": "2"}).perform_resources_iter(smart))
    assert sorted(o.valueQuantity.value for o in everything) == [160, 161, 162, 163, 164]
    counted = _first_page(Observation.where(struct={"patient": patient.id, "_summary": "count"}), smart)
    assert counted.total == 5 and not counted.entry


def test_prefer_return_operation_outcome_and_minimal(smart):
    """Prefer: return=OperationOutcome answers what happened (the pending warning of a resource whose Patient
    has not arrived); return=minimal no body; several preferences in one header (RFC 7240)."""
    condition = _about("Patient/not-yet-sent")[0]
    answer = smart.session.post(
        f"{smart.base_uri}Condition",
        json=condition.as_json(),
        headers={"Content-Type": "application/fhir+json", "Prefer": "handling=strict, return=OperationOutcome"},
    )
    assert answer.status_code == 201
    outcome = OperationOutcome(answer.json())
    assert "pending" in [i.details.coding[0].code for i in outcome.issue]
    minimal = smart.session.put(
        answer.headers["Location"].split("/_history")[0],
        json={**condition.as_json(), "id": answer.headers["Location"].split("/")[-3]},
        headers={"Content-Type": "application/fhir+json", "Prefer": "return=minimal"},
    )
    assert minimal.status_code == 200 and minimal.content == b"" and "Content-Type" not in minimal.headers


def test_a_transaction_with_conditional_references_and_a_batch_with_a_bad_entry(smart):
    """Bundles built with the client's models: a transaction whose Patient is created only if none matches
    (ifNoneExist) and whose resources name it by urn:uuid; a later transaction naming it by conditional
    reference; a batch where one entry is invalid. Before: created resources in a transaction answered 200 and a
    Patient matched by ifNoneExist 201."""
    urn = "urn:uuid:5f0c4a7e-3c1b-4b0e-9a57-1f2d3c4b5a69"
    patient = _patient("MRN-TX").as_json()
    condition = _about(urn)[0].as_json()
    entries = [
        {"fullUrl": urn, "resource": patient, "request": {"method": "POST", "url": "Patient", "ifNoneExist": ""}},
        {"resource": condition, "request": {"method": "POST", "url": "Condition"}},
    ]
    entries[0]["request"]["ifNoneExist"] = f"identifier={MRN}|MRN-TX"
    transaction = Bundle({"resourceType": "Bundle", "type": "transaction", "entry": entries})
    first = Bundle(transaction.create(smart))
    assert first.type == "transaction-response"
    assert [e.response.status for e in first.entry] == ["201 Created", "201 Created"]
    patient_location = first.entry[0].response.location
    again = Bundle(transaction.create(smart))
    assert again.entry[0].response.status == "200 OK"  # matched: not created
    assert again.entry[0].response.location == patient_location

    by_identifier = {"reference": f"Patient?identifier={MRN}|MRN-TX"}
    observation, specimen = (r.as_json() for r in _about("Patient/x")[1:3])
    later = Bundle(
        {
            "resourceType": "Bundle",
            "type": "transaction",
            "entry": [
                {
                    "resource": {**observation, "subject": by_identifier},
                    "request": {"method": "POST", "url": "Observation"},
                },
                {"resource": {**specimen, "subject": by_identifier}, "request": {"method": "POST", "url": "Specimen"}},
            ],
        }
    )
    answered = Bundle(later.create(smart))
    assert [e.response.status for e in answered.entry] == ["201 Created", "201 Created"]
    patient_id = patient_location.split("/")[1]
    assert _first_page(Observation.where(struct={"patient": patient_id}), smart).total == 1

    bad = {**observation, "subject": by_identifier, "status": "not-a-status"}
    batch = Bundle(
        {
            "resourceType": "Bundle",
            "type": "batch",
            "entry": [
                {
                    "resource": {**observation, "subject": by_identifier},
                    "request": {"method": "POST", "url": "Observation"},
                },
                {"resource": bad, "request": {"method": "POST", "url": "Observation"}},
            ],
        }
    )
    response = smart.post_json(None, batch.as_json())
    assert response.status_code == 200
    statuses = Bundle(response.json())
    assert [e.response.status for e in statuses.entry] == ["201 Created", "422 Unprocessable Entity"]
    assert statuses.entry[1].response.outcome.issue[0].severity == "error"
    assert _first_page(Observation.where(struct={"patient": patient_id}), smart).total == 2


def test_validate_with_the_client_s_parameters_model(smart):
    """`$validate` as the client builds it: a `Parameters` with `resource` and `mode`; the answer parses as the
    client's OperationOutcome, with the wrapped resource's problem located in it."""
    bad = _patient().as_json()
    bad["gender"] = "not-a-gender"
    for resource, errors in ((bad, True), (_patient().as_json(), False)):
        parameters = Parameters(
            {
                "resourceType": "Parameters",
                "parameter": [{"name": "resource", "resource": resource}, {"name": "mode", "valueCode": "create"}],
            }
        )
        answer = smart.post_json("Patient/$validate", parameters.as_json())
        assert answer.status_code == 200
        outcome = OperationOutcome(answer.json())
        found = [i for i in outcome.issue or [] if i.severity in ("error", "fatal")]
        assert bool(found) == errors, answer.json()
        if errors:
            assert "gender" in found[0].diagnostics
