"""Resource by resource without a store: every real Bundle's resources kept one at a time (at-rest form,
as the store keeps them), each write's phenopacket made from its patient's parts
(gateway.services.fhir_incremental) and compared with the whole patient translated at once from the
same kept resources (and the Family a FamilyMemberHistory makes, rebuilt around the merged
phenopacket). The merge falls back to the whole translation nowhere on this corpus. The store-backed golden test is tests/store/test_fhir_resources.py."""

from __future__ import annotations

import copy
import json
from datetime import UTC, datetime

from gateway.services.fhir_incremental import FragmentCache
from gateway.services.fhir_resources import HeldResources, incremental_record, make_phenopacket, supported_types

from .conftest import FHIR

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
