"""`fhirpy` (the synchronous client) against a live gateway: its resources are dicts that `save()` fills from the
server's answer, its searches page with `_count`.

Each test names what the client met before its fix."""

from __future__ import annotations

import pytest
from fhirpy import SyncFHIRClient
from fhirpy.base.exceptions import MultipleResourcesFound, OperationOutcome, ResourceNotFound

MRN = "http://hospital.example/mrn"
PROBLEM = "http://hospital.example/problem"


@pytest.fixture
def fhirpy(live_fhir):
    return SyncFHIRClient(live_fhir.base, authorization=f"Bearer {live_fhir.token}")


def _patient(client, value):
    return client.resource("Patient", identifier=[{"system": MRN, "value": value}], gender="female")


def _condition(client, subject, value="P-1"):
    return client.resource(
        "Condition",
        identifier=[{"system": PROBLEM, "value": value}],
        subject=subject,
        code={"coding": [{"system": "http://www.orpha.net", "code": "558", "display": "Marfan syndrome"}]},
    )


def test_save_fills_in_the_id_and_version(fhirpy):
    """`save()` replaces the resource with the server's answer. Before: the answer was an OperationOutcome, so
    the saved Patient had no id and `to_reference()` raised."""
    patient = _patient(fhirpy, "FP-1")
    patient.save()
    assert patient.id and patient["meta"]["versionId"] == "1" and patient.resource_type == "Patient"
    condition = _condition(fhirpy, patient.to_reference())
    condition.save()
    assert condition["subject"]["reference"] == f"Patient/{patient.id}"
    patient["gender"] = "male"
    patient.save()
    assert patient["meta"]["versionId"] == "2"
    assert fhirpy.reference("Patient", patient.id).to_resource()["gender"] == "male"


def test_searches_first_get_and_fetch_all(fhirpy):
    """`first()` and `get()` search with `_count`. Before: 400 (`_count` not supported)."""
    patient = _patient(fhirpy, "FP-2")
    patient.save()
    for n in range(3):
        _condition(fhirpy, patient.to_reference(), f"P-{n}").save()
    conditions = fhirpy.resources("Condition").search(patient=patient.id)
    assert len(conditions.fetch_all()) == 3
    assert conditions.first()["subject"]["reference"] == f"Patient/{patient.id}"
    assert fhirpy.resources("Patient").search(identifier=f"{MRN}|FP-2").get().id == patient.id
    with pytest.raises(MultipleResourcesFound):
        conditions.get()  # three match
    assert len(conditions.limit(2).fetch()) == 2


def test_count_with_lenient_handling(live_fhir):
    """fhirpy's `count()` adds `_totalMethod` (not FHIR): refused by default (strict), ignored with
    `Prefer: handling=lenient` (search.html#errors). Before: 400 either way."""
    strict = SyncFHIRClient(live_fhir.base, authorization=f"Bearer {live_fhir.token}")
    lenient = SyncFHIRClient(
        live_fhir.base, authorization=f"Bearer {live_fhir.token}", extra_headers={"Prefer": "handling=lenient"}
    )
    patient = _patient(strict, "FP-3")
    patient.save()
    with pytest.raises(OperationOutcome, match="_totalMethod"):
        strict.resources("Patient").search(identifier=f"{MRN}|FP-3").count()
    assert lenient.resources("Patient").search(identifier=f"{MRN}|FP-3").count() == 1


def test_conditional_update_and_delete_through_a_searchset(fhirpy):
    """fhirpy's searchset `update()` / `delete()` are FHIR's conditional update and delete."""
    patient = _patient(fhirpy, "FP-4")
    patient.save()
    by_problem = fhirpy.resources("Condition").search(identifier=f"{PROBLEM}|P-9")
    created, was_created = by_problem.update(_condition(fhirpy, patient.to_reference(), "P-9"))
    assert was_created and created.id
    changed = _condition(fhirpy, patient.to_reference(), "P-9")
    changed["note"] = [{"text": "updated by identifier"}]
    updated, was_created = by_problem.update(changed)
    assert not was_created and updated.id == created.id and updated["meta"]["versionId"] == "2"
    by_problem.delete()
    with pytest.raises(ResourceNotFound):
        fhirpy.reference("Condition", created.id).to_resource()


def test_an_invalid_resource_raises_the_server_s_operation_outcome(fhirpy):
    with pytest.raises(OperationOutcome) as raised:
        fhirpy.resource("Patient", gender="not-a-gender").save()
    assert raised.value.resource["resourceType"] == "OperationOutcome"
    assert "gender" in raised.value.resource["issue"][0]["diagnostics"]


def test_a_conditional_create_in_the_url_is_refused_not_ignored(fhirpy, live_fhir):
    """fhirpy's `create(**search)` puts the search in the POST's query (Aidbox's way), not in If-None-Exist
    (FHIR http.html#ccreate). Before: the query was ignored and a second Condition created each time; now 400,
    naming If-None-Exist."""
    patient = _patient(fhirpy, "FP-5")
    patient.save()
    first = _condition(fhirpy, patient.to_reference(), "P-5")
    first.save()
    again = _condition(fhirpy, patient.to_reference(), "P-5")
    with pytest.raises(OperationOutcome, match="If-None-Exist"):
        again.create(identifier=f"{PROBLEM}|P-5")
    assert len(fhirpy.resources("Condition").search(identifier=f"{PROBLEM}|P-5").fetch_all()) == 1
