"""FHIR's Resource-validate at type and instance level ([base]/[type]/$validate, [base]/[type]/[id]/$validate),
as FHIR clients and validators call it, on real resources of the reference material."""

from __future__ import annotations

import copy
import json

import pytest

FHIR = "application/fhir+json"
CONDITION = "genomics-reporting-2.0.0/Observation-GenotypeExample1.json"


@pytest.fixture
def observation(reference_dir):
    return json.loads((reference_dir / "fhir" / CONDITION).read_text())


@pytest.fixture
def ips_condition(reference_dir):
    return json.loads((reference_dir / "fhir" / "ips-1.1.0" / "Condition-eumfh-39-07-1.json").read_text())


def _validate(client, path, body, **kw):
    return client.post(path, data=json.dumps(body), headers={"Content-Type": FHIR}, **kw)


def _errors(resp) -> list[dict]:
    return [i for i in resp.get_json()["issue"] if i["severity"] in ("error", "fatal")]


def test_type_level_validate_checks_a_real_resource_and_stores_nothing(client, app, ips_condition):
    resp = _validate(client, "/fhir/Condition/$validate", ips_condition)
    assert resp.status_code == 200 and resp.get_json()["resourceType"] == "OperationOutcome"
    assert not _errors(resp)
    assert app.extensions["gateway"].store.list_phenopackets(limit=1)[1] == 0


def test_type_level_validate_reports_an_invalid_resource_with_its_place(client, ips_condition):
    broken = copy.deepcopy(ips_condition)
    broken["clinicalStatus"] = "active"  # a CodeableConcept expected
    resp = _validate(client, "/fhir/Condition/$validate", broken)
    assert resp.status_code == 200
    errors = _errors(resp)
    assert errors and any("clinicalStatus" in e["expression"][0] for e in errors)


def test_type_level_validate_unwraps_parameters(client, ips_condition):
    broken = copy.deepcopy(ips_condition)
    broken["clinicalStatus"] = "active"
    parameters = {"resourceType": "Parameters", "parameter": [{"name": "resource", "resource": broken}]}
    resp = _validate(client, "/fhir/Condition/$validate", parameters)
    errors = _errors(resp)
    assert resp.status_code == 200 and errors
    assert all(e["expression"][0].startswith("Parameters.parameter[0].resource.") for e in errors)


def test_a_resource_of_another_type_than_the_url_is_400(client, observation, ips_condition):
    resp = _validate(client, "/fhir/Condition/$validate", observation)
    assert resp.status_code == 400
    assert "Observation" in resp.get_json()["issue"][0]["diagnostics"]
    wrapped = {"resourceType": "Parameters", "parameter": [{"name": "resource", "resource": observation}]}
    assert _validate(client, "/fhir/Condition/$validate", wrapped).status_code == 400


def test_instance_level_validate_wants_the_urls_id(client, ips_condition):
    same = _validate(client, f"/fhir/Condition/{ips_condition['id']}/$validate", ips_condition)
    assert same.status_code == 200 and not _errors(same)
    other = _validate(client, "/fhir/Condition/another-id/$validate", ips_condition)
    assert other.status_code == 400
    assert other.get_json()["issue"][0]["expression"] == ["id"] or "id" in other.get_json()["issue"][0]["diagnostics"]


def test_unknown_type_and_bad_id_are_refused(client, ips_condition):
    assert _validate(client, "/fhir/Conditoin/$validate", ips_condition).status_code == 404
    assert _validate(client, "/fhir/Condition/bad_id!/$validate", ips_condition).status_code == 400


def test_a_type_the_gateway_does_not_map_is_still_validated(client, reference_dir):
    """Validation is of FHIR R4, whatever the gateway keeps: an AllergyIntolerance is checked, not refused."""
    allergy = json.loads(
        (
            reference_dir / "fhir" / "ips-1.1.0" / "AllergyIntolerance-allergyintolerance-multiple-codings.json"
        ).read_text()
    )
    resp = _validate(client, "/fhir/AllergyIntolerance/$validate", allergy)
    assert resp.status_code == 200 and not _errors(resp)
    allergy["criticality"] = "deadly"  # outside the required value set
    assert _errors(_validate(client, "/fhir/AllergyIntolerance/$validate", allergy))


def test_delete_mode_needs_no_resource(client):
    parameters = {"resourceType": "Parameters", "parameter": [{"name": "mode", "valueCode": "delete"}]}
    resp = _validate(client, "/fhir/Condition/c1/$validate", parameters)
    assert resp.status_code == 200 and not _errors(resp)
    assert resp.get_json()["issue"][0]["severity"] == "information"
    # without mode=delete, a Parameters without a resource is still a malformed request
    empty = {"resourceType": "Parameters", "parameter": [{"name": "mode", "valueCode": "update"}]}
    assert _validate(client, "/fhir/Condition/c1/$validate", empty).status_code == 400


def test_validation_at_type_level_is_not_an_audited_change(client, app, ips_condition):
    from gateway.security.audit import is_change

    assert not is_change("POST", "/fhir/Condition/$validate")
    assert not is_change("POST", "/fhir/Condition/c1/$validate")
    assert is_change("POST", "/fhir/Condition")
    assert is_change("PUT", "/fhir/Condition/c1")


def test_expressions_start_at_the_bodys_resource_type(client, operator, ips_condition):
    """Was: every expression began with `Bundle.`, also for a lone resource or a Parameters body."""
    broken = copy.deepcopy(ips_condition)
    broken["clinicalStatus"] = "active"
    validated = _validate(client, "/fhir/$validate", broken)
    assert [e["expression"][0] for e in _errors(validated)] == ["Condition.clinicalStatus"]
    posted = client.post("/fhir", data=json.dumps(broken), headers={**operator, "Content-Type": FHIR})
    assert posted.status_code in (400, 422)
    expressions = [e["expression"][0] for e in _errors(posted) if "expression" in e]
    assert expressions and all(x.startswith("Condition.") for x in expressions), expressions
