"""gateway.services.fhir_same_resource on its edges (the real IPS document sent again is
tests/api/test_fhir_gaps.py): equal resources are claimed once each, a resource is matched after the
resources it names, a cycle is never matched, and what differs in anything but id/meta/narrative is new."""

from __future__ import annotations

from gateway.services.fhir_resources import ResourceWrite
from gateway.services.fhir_same_resource import renamed, same_resources
from gateway.store.fhir_resources import StoredResource


def _kept(rtype, rid, **content):
    resource = {"resourceType": rtype, "id": rid, **content}
    return StoredResource(0, "ds", rtype, rid, 1, None, None, None, None, "", resource, None, None)  # type: ignore[arg-type]


def _sent(rtype, rid, **content):
    return ResourceWrite(rtype, rid, {"resourceType": rtype, "id": rid, **content})


def _obs(value, **more):
    return {"subject": {"reference": "Patient/p"}, "code": {"text": "Hb"}, "valueQuantity": {"value": value}, **more}


def test_equal_resources_are_claimed_once_each_and_references_follow_their_targets():
    kept = [
        _kept("Patient", "p"),
        _kept("Observation", "o1", **_obs(7)),
        _kept("Observation", "o2", **_obs(7)),
        _kept("Medication", "m1", code={"text": "x"}),
        _kept(
            "MedicationStatement",
            "s1",
            subject={"reference": "Patient/p"},
            medicationReference={"reference": "Medication/m1"},
        ),
    ]
    writes = [
        _sent("Patient", "p"),
        _sent(
            "MedicationStatement",
            "s9",
            subject={"reference": "Patient/p"},
            medicationReference={"reference": "Medication/m9"},
        ),
        _sent("Observation", "n1", **_obs(7), meta={"lastUpdated": "2026-11-30"}, text={"div": "<div>n1</div>"}),
        _sent("Observation", "n2", **_obs(7)),
        _sent("Observation", "n3", **_obs(7)),  # a third equal one: nothing left to be
        _sent("Observation", "n4", **_obs(8)),  # another value: new
        _sent("Medication", "m9", code={"text": "x"}),
    ]
    adopted = same_resources(writes, kept, lambda r: r)
    assert sorted((a.sent_id, a.kept_id) for a in adopted) == [("m9", "m1"), ("n1", "o1"), ("n2", "o2"), ("s9", "s1")]
    out = renamed(writes, adopted)
    assert out[1].resource_id == "s1" and out[1].resource["medicationReference"] == {"reference": "Medication/m1"}
    assert [w.resource_id for w in out[4:6]] == ["n3", "n4"]


def test_resources_that_name_each_other_in_a_cycle_are_kept_as_new():
    kept = [
        _kept("Patient", "p"),
        _kept("Observation", "a", hasMember=[{"reference": "Observation/b"}]),
        _kept("Observation", "b", hasMember=[{"reference": "Observation/a"}]),
    ]
    writes = [
        _sent("Patient", "p"),
        _sent("Observation", "x", hasMember=[{"reference": "Observation/y"}]),
        _sent("Observation", "y", hasMember=[{"reference": "Observation/x"}]),
    ]
    assert same_resources(writes, kept, lambda r: r) == []
