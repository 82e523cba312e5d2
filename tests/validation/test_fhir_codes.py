"""Required bindings of `code` elements, checked for every type the models list codes for, on real resources."""

from __future__ import annotations

import copy
import json

import pytest

from gateway.validation import validate_fhir
from gateway.validation.fhir_codes import unbound_codes
from gateway.validation.fhir_shape import plainly_valid

from .test_fhir_shape import _real


def _errors_at(resource) -> dict[str, str]:
    return {i.location: i.message for i in validate_fhir(resource).errors}


def test_no_real_resource_has_a_code_outside_its_required_value_set(fhir_dir):
    resources = _real(fhir_dir)
    assert len(resources) > 1000
    assert [(r["resourceType"], hit[:2]) for r in resources for hit in unbound_codes(r)] == []


def test_codes_of_data_types_anywhere_are_checked(reference_dir):
    patient = json.loads((reference_dir / "fhir" / "ips-1.1.0" / "Patient-eumfh-39-07.json").read_text())
    changed = copy.deepcopy(patient)
    changed["text"]["status"] = "made-up"  # Narrative.status
    changed["name"][0]["use"] = "nickname-ish"  # HumanName.use
    # the fast path vouches for no unbound code: the resource is parsed, and the codes walked (one walk otherwise)
    assert plainly_valid(patient) and not plainly_valid(changed)
    errors = _errors_at(changed)
    assert "/text/status" in errors and "'made-up' is not one of" in errors["/text/status"]
    assert "/name/0/use" in errors and "official" in errors["/name/0/use"]
    assert all("required binding" in m for m in errors.values())
    assert not validate_fhir(patient).errors


def test_contained_resources_and_bundle_entries_are_checked(reference_dir):
    allergy = json.loads(
        (
            reference_dir / "fhir" / "ips-1.1.0" / "AllergyIntolerance-allergyintolerance-multiple-codings.json"
        ).read_text()
    )
    allergy["criticality"] = "deadly"
    holder = {
        "resourceType": "Condition",
        "subject": {"reference": "Patient/p"},
        "contained": [allergy],
    }
    assert [hit[:2] for hit in unbound_codes(holder)] == [("/contained/0/criticality", "deadly")]
    bundle = {"resourceType": "Bundle", "type": "collection", "entry": [{"resource": allergy}]}
    errors = _errors_at(bundle)
    assert any(place.endswith("/entry/0/resource/criticality") for place in errors), errors


def test_a_code_the_schema_also_checks_is_reported_once():
    patient = {"resourceType": "Patient", "gender": "femal"}
    errors = [i for i in validate_fhir(patient).errors if i.location == "/gender"]
    assert len(errors) == 1


def test_a_value_set_the_model_lists_cut_short_is_not_checked():
    """fhir.resources ends long lists with "+": such a code cannot be judged from the list, so it is not."""
    from fhir.resources.R4B.observation import Observation

    assert "+" in Observation.model_fields["status"].json_schema_extra["enum_values"]
    observation = {"resourceType": "Observation", "status": "cancelled", "code": {"text": "x"}}
    assert list(unbound_codes(observation)) == []
    assert not validate_fhir(observation).errors  # "cancelled" is in R4's value set, past the list's "+"


@pytest.mark.parametrize(
    "contained",
    [{"resourceType": None}, {"resourceType": "2020-13-45"}, {"resourceType": ["Observation"]}, {"id": "x"}],
)
def test_a_contained_resource_without_a_type_is_an_error_not_a_crash(contained):
    """Before: TypeError / KeyError out of fhir_core's validators (a 500, or the validator CLI's traceback) for
    a contained resource of no or a wrong type, or none at all (the model took one with no resourceType)."""
    report = {"resourceType": "DiagnosticReport", "status": "final", "code": {"text": "x"}, "contained": [contained]}
    errors = validate_fhir(report).errors
    assert [i.location for i in errors] == ["/contained/0"]
    bundle = {"resourceType": "Bundle", "type": "collection", "entry": [{"resource": report}]}
    assert any(i.location.startswith("/entry/0/resource") for i in validate_fhir(bundle).errors)
