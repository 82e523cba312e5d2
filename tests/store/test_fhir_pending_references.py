"""Pending resources named by a conditional patient reference, in every FHIR token form (search.html#token),
adopted by the Patient that arrives later — before and after a key rotation — on SQLite and PostgreSQL.

    value          the value in any system: a Patient with {system: X, value} adopts it
    |value         only an identifier without system
    system|value   that identifier
    system|        any value in that system
"""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from gateway.security.pseudonym import ChainedKey
from gateway.security.rotation import rotate_metadata
from gateway.services.fhir_resources import ResourceWrite, apply_writes, read_resource

KEY = bytes(range(32))
NEXT_KEY = b"the-next-key-in-the-chain-000000"
NOW = datetime(2026, 11, 30, 12, 0, tzinfo=UTC)
SYSTEM = "http://hospital.example/mrn"
MRN = "MRN-1"
MARFAN = {"system": "http://www.orpha.net", "code": "558", "display": "Marfan syndrome"}


def _put(store, resource, key=KEY):
    (change,) = apply_writes(
        [ResourceWrite(resource["resourceType"], resource["id"], resource)],
        store=store,
        key=key,
        dataset_id="ds1",
        now=NOW,
    )
    return change


def _condition(reference, resource_id="c1"):
    return {
        "resourceType": "Condition",
        "id": resource_id,
        "subject": {"reference": reference},
        "verificationStatus": {
            "coding": [{"system": "http://terminology.hl7.org/CodeSystem/condition-ver-status", "code": "confirmed"}]
        },
        "code": {"coding": [MARFAN]},
    }


def _patient(identifiers, resource_id="p1"):
    return {
        "resourceType": "Patient",
        "id": resource_id,
        "gender": "female",
        "birthDate": "1990-01-01",
        "identifier": identifiers,
    }


def _diseases(store):
    (packet,) = store.list_phenopackets(dataset_id="ds1")[0]
    return [d["term"]["id"] for d in packet.document.get("diseases") or []]


# (the reference the Condition sends, the identifier of the Patient that must adopt it)
ADOPTED = {
    "value, Patient in a system": (f"Patient?identifier={MRN}", {"system": SYSTEM, "value": MRN}),
    "value, Patient without system": (f"Patient?identifier={MRN}", {"value": MRN}),
    "|value, Patient without system": (f"Patient?identifier=|{MRN}", {"value": MRN}),
    "system|value": (f"Patient?identifier={SYSTEM}|{MRN}", {"system": SYSTEM, "value": MRN}),
    "system|": (f"Patient?identifier={SYSTEM}|", {"system": SYSTEM, "value": MRN}),
}


@pytest.mark.parametrize("rotated", [False, True], ids=["same-key", "rotated"])
@pytest.mark.parametrize(("reference", "identifier"), list(ADOPTED.values()), ids=list(ADOPTED))
def test_a_pending_resource_is_adopted_by_the_patient_its_token_names(store, reference, identifier, rotated):
    """Before: `Patient?identifier=value` waited for a Patient whose identifier had no system only (its pseudonym
    was the value's alone), and a rotation did not carry a reference without a bar forward."""
    pending = _put(store, _condition(reference))
    assert pending.pending and pending.patient_id is None
    key = KEY
    if rotated:
        rotate_metadata(store, NEXT_KEY)
        key = ChainedKey(KEY, (NEXT_KEY,))
    patient = _put(store, _patient([identifier]), key=key)
    assert patient.status == "created"
    kept = read_resource(store, "ds1", "Condition", "c1")
    assert (kept.patient_id, kept.pending) == ("p1", False)
    assert _diseases(store) == ["ORPHA:558"]
    assert MRN not in kept.patient_ref and MRN not in str(kept.resource)  # still no identifier in clear


def test_a_value_without_system_is_kept_as_the_identifier_that_adopted_it(store):
    """As when its Patient is stored already (http.html#trules: a conditional reference becomes its match): the
    pending reference is rewritten to the system and pseudonym of the identifier that matched it, so that the
    assembled Bundle resolves it and a Patient sent again by identifier meets it."""
    _put(store, _condition(f"Patient?identifier={MRN}"))
    _put(store, _patient([{"system": SYSTEM, "value": MRN}]))
    kept = read_resource(store, "ds1", "Condition", "c1")
    assert kept.patient_ref.startswith(f"Patient?identifier={SYSTEM}|pid-")
    assert kept.resource["subject"]["reference"] == kept.patient_ref
    assert kept.version == 1  # the content the client sent is the same


@pytest.mark.parametrize("rotated", [False, True], ids=["same-key", "rotated"])
def test_an_empty_system_still_means_no_system(store, rotated):
    """`|value` names an identifier without system only: a Patient with that value in a system does not adopt
    it; `system|value` is not adopted by the value in another system."""
    _put(store, _condition(f"Patient?identifier=|{MRN}", "c-no-system"))
    _put(store, _condition(f"Patient?identifier=http://other.example|{MRN}", "c-other-system"))
    key = KEY
    if rotated:
        rotate_metadata(store, NEXT_KEY)
        key = ChainedKey(KEY, (NEXT_KEY,))
    _put(store, _patient([{"system": SYSTEM, "value": MRN}]), key=key)
    for resource_id in ("c-no-system", "c-other-system"):
        assert read_resource(store, "ds1", "Condition", resource_id).pending
    assert _diseases(store) == []


def test_another_value_is_not_adopted(store):
    _put(store, _condition("Patient?identifier=MRN-2"))
    _put(store, _patient([{"system": SYSTEM, "value": MRN}]))
    assert read_resource(store, "ds1", "Condition", "c1").pending
