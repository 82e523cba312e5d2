"""A phenotypic feature recorded more than once (the same HPO term from several Conditions or Observations of one
patient): a repeat that adds nothing to a feature kept already is dropped; one that differs (another onset,
severity, evidence) is its own feature, so no onset or severity a hospital sent is lost. Resource by resource,
in any order, the merged phenopacket equals the complete translation (gateway.services.fhir_incremental)."""

from __future__ import annotations

import copy
import json
from datetime import UTC, datetime

import mappings
from gateway.services.fhir_incremental import FragmentCache
from gateway.services.fhir_resources import HeldResources, incremental_record, make_phenopacket
from translators.fhir_to_phenopacket import translate_bundle

from .conftest import FHIR, NOW, TEST_IDS
from .test_fhir_parts_in_memory import _canonical

KEY = bytes(range(32))
HELD_NOW = datetime(2026, 11, 30, 12, 0, tzinfo=UTC)
CATARACT = "HP:0000518"
SEVERITY = {"mild": ("HP:0012825", "Mild"), "severe": ("HP:0012828", "Severe")}


def _marfan():
    return json.loads((FHIR / "mii-seltene-erkrankungen" / "Bundle-bundle-marfan-complete.json").read_text())


def _cataract(bundle, resource_id, onset=None, severity=None):
    """The Marfan cataract Condition coded with HPO only (a phenotypic feature), with its own onset and severity."""
    condition = copy.deepcopy(
        next(e["resource"] for e in bundle["entry"] if e["resource"]["id"] == "condition-cataract")
    )
    condition["id"] = resource_id
    condition["code"] = {"coding": [c for c in condition["code"]["coding"] if c["code"] == CATARACT]}
    condition.pop("meta", None)
    if onset:
        condition["onsetDateTime"] = onset
    if severity:
        code, display = SEVERITY[severity]
        condition["severity"] = {
            "coding": [{"system": "http://human-phenotype-ontology.org", "code": code, "display": display}]
        }
    return condition


def _resources():
    bundle = _marfan()
    patient = next(e["resource"] for e in bundle["entry"] if e["resource"]["resourceType"] == "Patient")
    return patient, [
        _cataract(bundle, "cataract-a", "2020-05-01", "mild"),
        _cataract(bundle, "cataract-b", "2023-02-01", "severe"),
        _cataract(bundle, "cataract-c", "2020-05-01", "mild"),  # the same as a: adds nothing
        _cataract(bundle, "cataract-d"),  # no onset, no severity: adds nothing to a
    ]


def _features(patient, resources):
    bundle = {"resourceType": "Bundle", "type": "collection", "entry": [{"resource": r} for r in [patient, *resources]]}
    profile = mappings.load_profile(mappings.detect_profile(bundle))
    (packet,) = translate_bundle(bundle, profile=profile, ids=TEST_IDS, now=NOW).packets
    return [f for f in packet.phenopacket["phenotypicFeatures"] if f["type"]["id"] == CATARACT]


def test_a_repeated_feature_keeps_its_own_onset_and_severity():
    """Before: the second Condition's feature was dropped as a duplicate, its onset (2023) and severity lost."""
    patient, resources = _resources()
    features = _features(patient, resources)
    assert len(features) == 2
    assert [f["severity"]["id"] for f in features] == ["HP:0012825", "HP:0012828"]
    assert features[0]["onset"] != features[1]["onset"]
    alone = _features(patient, resources[:1])
    assert features[0] == alone[0]  # the first as it is alone


def test_a_repeat_that_adds_nothing_is_one_feature_and_not_a_duplicate_warning():
    from gateway.validation.phenopacket import validate_phenopacket

    patient, resources = _resources()
    assert len(_features(patient, [resources[0], resources[2], resources[3]])) == 1
    bundle = {"resourceType": "Bundle", "type": "collection", "entry": [{"resource": r} for r in [patient, *resources]]}
    profile = mappings.load_profile(mappings.detect_profile(bundle))
    (packet,) = translate_bundle(bundle, profile=profile, ids=TEST_IDS, now=NOW).packets
    # a feature seen at two times is two observations, not a listing twice
    assert "duplicate-feature" not in {i.code for i in validate_phenopacket(packet.phenopacket, target="output")}


def test_resource_by_resource_in_any_order_equals_the_complete_translation():
    patient, resources = _resources()
    orders = {
        "in order": resources,
        "reversed": resources[::-1],
        "interleaved": [resources[3], resources[1], resources[2], resources[0]],
    }
    for order, sends in orders.items():
        cache, held = FragmentCache(), HeldResources(KEY, "repeats")
        held.keep(copy.deepcopy(patient), None, cache)
        for resource in sends:
            assembly = held.keep(copy.deepcopy(resource), None, cache)
            assert assembly is not None
            whole = make_phenopacket(
                [held.stored(h, HELD_NOW) for h in assembly.heads],
                key=KEY,
                dataset_id="repeats",
                profile=None,
                now=HELD_NOW,
            )
            record = incremental_record(assembly, held.load, cache, KEY, "repeats", None, HELD_NOW)
            assert record is not None
            assert _canonical(record.document) == _canonical(whole.document), (order, resource["id"])
        cataracts = [f for f in whole.document["phenotypicFeatures"] if f["type"]["id"] == CATARACT]
        assert len(cataracts) == 2, order
        assert cache.whole == 0, order
