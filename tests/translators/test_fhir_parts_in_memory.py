"""Resource by resource without a store: every real Bundle's resources kept one at a time (at-rest form,
as the store keeps them), each write's phenopacket made from its patient's parts
(gateway.services.fhir_incremental) and compared with the whole patient translated at once from the
same kept resources (and the Family a FamilyMemberHistory makes, rebuilt around the merged
phenopacket). The merge falls back to the whole translation nowhere on this corpus. The store-backed golden test is tests/store/test_fhir_resources.py."""

from __future__ import annotations

import copy
import json
from datetime import UTC, datetime
from functools import partial

from gateway.services.fhir_incremental import FragmentCache, parts_of
from gateway.services.fhir_resources import (
    StoredResource,
    at_rest,
    incremental_record,
    make_phenopacket,
    patient_reference,
    supported_types,
)
from gateway.store.fhir_resources import ResourceHead, content_hash
from translators.fhir.references import BundleIndex

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


def _stored(head: ResourceHead, dataset: str, content: dict) -> StoredResource:
    return StoredResource(
        head.pk,
        dataset,
        head.resource_type,
        head.resource_id,
        1,
        head.full_url,
        None,
        None,
        None,
        head.content_hash,
        content,
        NOW,
        NOW,
    )


def test_every_write_of_every_real_bundle_merges_to_the_whole_translation():
    cache = FragmentCache()
    families = compared = 0
    for n, (name, resources) in enumerate(_sequences()):
        dataset = f"corpus{n}"
        contents: dict[int, dict] = {}
        heads: dict[int, ResourceHead] = {}
        owner_of: dict[int, int | None] = {}
        for pk, (resource, full_url) in enumerate(resources):
            kept = at_rest(copy.deepcopy(resource), KEY)
            contents[pk] = kept
            heads[pk] = ResourceHead(pk, kept["resourceType"], kept["id"], 1, full_url, content_hash(kept))
            patients = [p for p in heads if heads[p].resource_type == "Patient"]
            if kept["resourceType"] == "Patient":
                owner_of[pk] = pk
            else:
                reference = patient_reference(kept)
                entries = [{"resource": contents[p], "fullUrl": heads[p].full_url} for p in patients]
                found = BundleIndex.build(entries).resolve(reference) if reference else None
                owner_of[pk] = None if found is None else patients[found]
            owner = owner_of[pk]
            if owner is None:
                continue
            members = [heads[p] for p, o in owner_of.items() if o == owner and p != owner]
            loose = [heads[p] for p, o in owner_of.items() if o is None]
            load = partial(lambda held, pks: {p: held[p] for p in pks}, contents)
            assembly = parts_of(heads[owner], members, loose, load, cache)
            whole = make_phenopacket(
                [_stored(h, dataset, contents[h.pk]) for h in assembly.heads],
                key=KEY,
                dataset_id=dataset,
                profile=None,
                now=NOW,
            )
            record = incremental_record(assembly, load, cache, KEY, dataset, None, NOW)
            assert record is not None, (name, heads[pk])  # no write fell back to translating the whole patient
            assert _canonical(record.document) == _canonical(whole.document), (name, heads[pk])
            assert _canonical(record.family) == _canonical(whole.family), (name, heads[pk])
            compared += 1
            families += whole.family is not None
    assert compared > 400 and families > 10  # FamilyMemberHistory patients are merged too
    assert cache.whole == 0
    assert cache.translated < 1.1 * compared + 60  # about one part per write (+ each Patient alone)
