"""Resource by resource without a store: every real Bundle's resources kept one at a time (at-rest form,
as the store keeps them), each write's phenopacket made from its patient's parts
(gateway.services.fhir_incremental) and compared with the whole patient translated at once from the
same kept resources (and the Family a FamilyMemberHistory makes, rebuilt around the merged
phenopacket). The merge falls back to the whole translation nowhere on this corpus. The store-backed golden test is tests/store/test_fhir_resources.py."""

from __future__ import annotations

import copy
import json
from datetime import UTC, datetime

import pytest

from gateway.services.fhir_incremental import FragmentCache
from gateway.services.fhir_resources import HeldResources, incremental_record, make_phenopacket, supported_types

from .conftest import FHIR

pytestmark = pytest.mark.slow  # several seconds: pytest-xdist starts it first (tests/conftest.py)

KEY = bytes(range(32))
NOW = datetime(2026, 11, 30, 12, 0, tzinfo=UTC)


def _canonical(value):
    if isinstance(value, dict):
        return {k: _canonical(v) for k, v in value.items() if k != "created"}
    if isinstance(value, list):
        return sorted((_canonical(v) for v in value), key=lambda v: json.dumps(v, sort_keys=True))
    return value


def _sequences():
    for path in sorted(FHIR.rglob("Bundle-*.json")):
        if "vcf2fhir" in path.parts:
            continue
        bundle = json.loads(path.read_text())
        kept = [
            (e["resource"], e.get("fullUrl"))
            for e in bundle.get("entry") or ()
            if e["resource"]["resourceType"] in supported_types()
        ]
        patients = [k for k in kept if k[0]["resourceType"] == "Patient"]
        if patients:
            yield path.name, [*patients, *(k for k in kept if k[0]["resourceType"] != "Patient")]


def test_every_write_of_every_real_bundle_merges_to_the_whole_translation():
    cache = FragmentCache()
    families = compared = 0
    for n, (name, resources) in enumerate(_sequences()):
        dataset = f"corpus{n}"
        held = HeldResources(KEY, dataset)
        for resource, full_url in resources:
            assembly = held.keep(copy.deepcopy(resource), full_url, cache)
            if assembly is None:
                continue
            whole = make_phenopacket(
                [held.stored(h, NOW) for h in assembly.heads], key=KEY, dataset_id=dataset, profile=None, now=NOW
            )
            record = incremental_record(assembly, held.load, cache, KEY, dataset, None, NOW)
            write = (name, resource["resourceType"], resource["id"])
            assert record is not None, write  # no write fell back to translating the whole patient
            assert _canonical(record.document) == _canonical(whole.document), write
            assert _canonical(record.family) == _canonical(whole.family), write
            compared += 1
            families += whole.family is not None
    assert compared > 400 and families > 10  # FamilyMemberHistory patients are merged too
    assert cache.whole == 0
    assert cache.translated < 1.1 * compared + 60  # about one part per write (+ each Patient alone)


def _copy(resources, k):
    """Copy k of a patient's resources: ids, fullUrls and the references among them suffixed with -k."""
    ids = {f"{r['resourceType']}/{r['id']}" for r, _ in resources}
    urls = {u for _, u in resources if u}

    def rename(value):
        if isinstance(value, dict):
            return {key: rename(v) for key, v in value.items()}
        if isinstance(value, list):
            return [rename(v) for v in value]
        if isinstance(value, str) and (value in ids or value in urls):
            return f"{value}-{k}"
        return value

    return [({**rename(r), "id": f"{r['id']}-{k}"}, f"{u}-{k}" if u else None) for r, u in resources]


def test_a_record_that_repeats_itself_merges_part_by_part_and_no_part_grows():
    """The real MII oncology patient's resources sent three times over (new ids each time, as a long-lived
    record repeats its diagnoses, TNM findings, ICD-10-GM versions and death): the same disease comes from
    a Condition in each copy, each with its TNM Observations, one version of ICD-10-GM from three
    Conditions and a cause of death from three Observations. Each merged element knows the resource it
    came from, so no parts are joined: every part stays a group of linked resources (at most one
    Condition), and every write still equals the whole translation."""
    bundle = json.loads((FHIR / "mii-testdata" / "Bundle-mii-exa-test-data-bundle-onkologie-1.json").read_text())
    kept = [
        (e["resource"], e.get("fullUrl")) for e in bundle["entry"] if e["resource"]["resourceType"] in supported_types()
    ]
    patient = [k for k in kept if k[0]["resourceType"] == "Patient"]
    others = [k for k in kept if k[0]["resourceType"] != "Patient"]
    cache, held = FragmentCache(), HeldResources(KEY, "repeats")
    writes = 0
    for resource, full_url in [*patient, *_copy(others, 0), *_copy(others, 1), *_copy(others, 2)]:
        assembly = held.keep(copy.deepcopy(resource), full_url, cache)
        assert assembly is not None
        whole = make_phenopacket(
            [held.stored(h, NOW) for h in assembly.heads], key=KEY, dataset_id="repeats", profile=None, now=NOW
        )
        record = incremental_record(assembly, held.load, cache, KEY, "repeats", None, NOW)
        assert record is not None
        assert _canonical(record.document) == _canonical(whole.document), (resource["resourceType"], resource["id"])
        writes += 1
    assert writes == 1 + 3 * len(others)
    assert len(whole.document["diseases"]) == 2  # C56 and C50.4, each from three Conditions
    assert cache.joined == 0 and cache.whole == 0
    largest = max((key[-1] for key in cache.fragments), key=len)
    assert sum(1 for head in largest if head[0] == "Condition") == 1


LATER = ("DateTime", "Date", "issued", "start", "end")  # date elements a later visit records anew


def _later_visit(resources, k):
    """Copy k as a later visit would record it: new ids, every date a year on, and each HPO assessment's
    presence answer turned round (a symptom present then excluded, one excluded then present)."""
    flip = {"LA9633-4": ("LA9634-2", "Absent"), "LA9634-2": ("LA9633-4", "Present")}

    def later(value, name=""):
        if isinstance(value, dict):
            if value.get("system") == "http://loinc.org" and value.get("code") in flip:
                code, display = flip[value["code"]]
                return {**value, "code": code, "display": display}
            return {key: later(v, key) for key, v in value.items()}
        if isinstance(value, list):
            return [later(v, name) for v in value]
        if isinstance(value, str) and name.endswith(LATER) and value[:4].isdigit():
            return f"{int(value[:4]) + 1}{value[4:]}"
        return value

    return [(later(r), u) for r, u in _copy(resources, k)]


def _feature_sends(name):
    bundle = json.loads((FHIR / name).read_text())
    kept = [
        (e["resource"], e.get("fullUrl")) for e in bundle["entry"] if e["resource"]["resourceType"] in supported_types()
    ]
    others = [k for k in kept if k[0]["resourceType"] != "Patient"]
    first, again = _copy(others, 0), _later_visit(others, 1)
    patient = [k for k in kept if k[0]["resourceType"] == "Patient"]
    return {"in order": [*patient, *first, *again], "reversed": [*patient, *reversed(again), *reversed(first)]}


@pytest.mark.parametrize(
    "name",
    [
        "mii-testdata/Bundle-mii-exa-test-data-bundle-seltene-1.json",
        "mii-seltene-erkrankungen/Bundle-bundle-marfan-complete.json",
    ],
)
def test_phenotypic_features_recorded_again_at_a_later_visit_merge_without_joining_parts(name):
    """A rare-disease patient (MII Seltene Erkrankungen) seen twice: the second visit records the same HPO
    findings again as new resources (new ids, dates a year on, presence answers turned round), sent
    resource by resource, in order and in reverse. The same term comes from an Observation or Condition
    of each visit, and a Condition's evidence links its HPO assessments into one part of several feature
    sources. Each feature knows the resource it came from, so the translator's rule for a repeated feature
    (the first in its processing order wins, with its onset and severity) is applied by the merge: every
    write equals the whole translation and no part holds resources of both visits."""
    for order, sends in _feature_sends(name).items():
        cache, held = FragmentCache(), HeldResources(KEY, "visits")
        whole = None
        for resource, full_url in sends:
            assembly = held.keep(copy.deepcopy(resource), full_url, cache)
            if assembly is None:
                continue
            whole = make_phenopacket(
                [held.stored(h, NOW) for h in assembly.heads], key=KEY, dataset_id="visits", profile=None, now=NOW
            )
            record = incremental_record(assembly, held.load, cache, KEY, "visits", None, NOW)
            assert record is not None
            assert _canonical(record.document) == _canonical(whole.document), (order, resource["id"])
        assert whole is not None
        assert len(whole.document["phenotypicFeatures"]) >= 7
        assert cache.joined == 0 and cache.whole == 0, order
        for key in cache.fragments:
            visits = {head[1].rsplit("-", 1)[-1] for head in key[-1] if head[0] != "Patient"}
            assert len(visits) <= 1, (order, sorted(key[-1]))
