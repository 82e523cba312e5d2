"""The read path's mechanisms: pages of stored sets, the bounded pool of open partition files, range counts of small
partitions answered from memory, and per-version facts read once. Each answer is checked against the single-file
store of the same VCF (itself checked against pysam in test_truth.py and tests/beacon/test_g_variants_truth.py)."""

from __future__ import annotations

import os
import random
import resource

import numpy as np
import pysam
import pytest

from gateway.variants import store as store_module
from gateway.variants.distributed_ingest import ingest_partitioned
from gateway.variants.ingest import ingest_vcf
from gateway.variants.layout import decode_set, encode_set, pack_codes, unpack_codes
from gateway.variants.pages import codes_page, positions_of, set_page, set_size
from gateway.variants.query import VariantQuery
from gateway.variants.store import VariantStore, partition_pool_size
from tests.beacon.test_g_variants_truth import SAMPLES, _write_vcf

SAMPLE_MAP = {name: f"P{i}" for i, name in enumerate(SAMPLES)}


@pytest.mark.parametrize("universe", [40, 1000, 100_003])
def test_pages_of_a_stored_set_equal_slices_of_the_whole_set(universe):
    rng = np.random.default_rng(universe)
    for density in (0.001, 0.02, 0.3, 0.9):
        members = np.flatnonzero(rng.random(universe) < density).astype("<u4")
        blob = encode_set(members, universe)
        codes = rng.integers(1, 4, len(members)).astype(np.uint8)
        packed = pack_codes(codes)
        assert set_size(blob) == len(members)
        assert np.array_equal(set_page(blob), decode_set(blob))
        for skip, limit in (
            (0, 1),
            (0, 100),
            (3, 7),
            (len(members) // 2, 50),
            (len(members), 5),
            (len(members) + 9, 3),
        ):
            assert set_page(blob, skip, limit).tolist() == members[skip : skip + limit].tolist(), (density, skip)
            got = codes_page(packed, skip, min(limit, max(len(members) - skip, 0)))
            assert got.tolist() == unpack_codes(packed, len(members))[skip : skip + limit].tolist()
        assert set_page(blob, 0, 0).tolist() == []


@pytest.mark.parametrize("universe", [40, 1000, 100_003])
def test_positions_of_some_samples_in_a_stored_set_equal_their_index_in_the_whole_set(universe):
    """An erasure's delta (pending.py) finds the erased samples' codes without decoding the carrier set."""
    rng = np.random.default_rng(universe + 1)
    for density in (0.001, 0.02, 0.3, 0.9):  # lists and bitmaps
        members = np.flatnonzero(rng.random(universe) < density).astype("<u4")
        blob = encode_set(members, universe)
        asked = np.unique(np.concatenate([rng.integers(0, universe, 5), members[:2], members[-1:]])).astype("<u4")
        expected = [int(np.searchsorted(members, a)) for a in asked if a in set(members.tolist())]
        assert positions_of(blob, asked).tolist() == expected, density
        assert positions_of(blob, np.array([universe - 1], dtype="<u4")).tolist() == (
            [len(members) - 1] if universe - 1 in set(members.tolist()) else []
        )


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """The truth cohort as one file and as ~40 partitions of 2 kb (in process: no cluster needed here)."""
    root = tmp_path_factory.mktemp("tiny")
    plain = root / "cohort.vcf"
    _write_vcf(plain)
    vcf = pysam.tabix_compress(str(plain), str(root / "cohort.vcf.gz"), force=True) or root / "cohort.vcf.gz"
    ingest_vcf(vcf, dataset_id="cohort", data_dir=root / "single", assembly="GRCh38", sample_map=SAMPLE_MAP)
    summary = ingest_partitioned(
        vcf, dataset_id="cohort", data_dir=root / "parted", assembly="GRCh38", sample_map=SAMPLE_MAP, span=2_000
    )
    assert len(summary.partitions) >= 30
    single = VariantStore(root / "single")
    yield single, root / "parted"
    single.close()


def _range_queries(single: VariantStore) -> list[VariantQuery]:
    rng = random.Random(9)
    hits, _ = single.search(VariantQuery(), limit=10_000)
    out = []
    for hit in rng.sample(hits, 80):
        start = max(hit.start - rng.randint(0, 6_000), 0)
        out.append(VariantQuery(reference_name=hit.reference_name, start=start, end=start + rng.randint(1, 12_000)))
    return out


def test_range_counts_of_small_partitions_come_from_memory_and_agree(tiny):
    single, parted_dir = tiny
    parted = VariantStore(parted_dir)
    try:
        queries = _range_queries(single)
        for q in queries:  # the first pass reads each partition's starts and ends once
            assert parted.count(q) == single.count(q), q
        statements: list[str] = []
        version = parted._open("cohort")
        assert version is not None
        for unit in parted._pool().units.values():
            unit.conn.set_trace_callback(statements.append)
        for q in queries:
            assert parted.count(q) == single.count(q), q
            assert parted.exists(q) == single.exists(q), q
        assert statements == []  # answered by bisection over the cached sorted starts and ends
        for q in queries[:30]:
            total = single.count(q)
            for skip, limit in ((0, 3), (2, 5), (total // 2, 4), (max(total - 1, 0), 10)):
                mine, n = parted.search(q, skip=skip, limit=limit)
                theirs, expected = single.search(q, skip=skip, limit=limit)
                assert n == expected == total, q
                assert sorted(h.variant_id for h in mine) == sorted(h.variant_id for h in theirs), (q, skip)
    finally:
        parted.close()


def test_open_partition_files_stay_within_the_pool(tiny):
    single, parted_dir = tiny
    parted = VariantStore(parted_dir, partition_pool=3)
    try:
        for q in [*_range_queries(single), VariantQuery(), VariantQuery(reference_name="22")]:
            assert parted.count(q) == single.count(q), q
            assert parted.carrier_count(q) == single.carrier_count(q), q
            assert len(parted._pool().units) <= 3
        hits, _ = single.search(VariantQuery(), limit=10_000)
        for hit in hits[::7]:
            assert parted.get(hit.variant_id) == hit
        open_units = [
            target
            for fd in os.listdir("/proc/self/fd")
            if "parts-" in (target := os.path.realpath(f"/proc/self/fd/{fd}")) and str(parted_dir) in target
        ]
        assert 0 < len(open_units) <= 3, open_units
    finally:
        parted.close()


def test_the_pool_size_follows_the_file_descriptor_limit(monkeypatch):
    monkeypatch.setattr(resource, "getrlimit", lambda which: (256, 4096))
    assert partition_pool_size() == 256 // store_module._FD_SHARE
    monkeypatch.setattr(resource, "getrlimit", lambda which: (1 << 20, 1 << 20))
    assert partition_pool_size() == store_module._MAX_OPEN_PARTITIONS


def test_record_carriers_decode_only_the_page(tiny, monkeypatch):
    single, _ = tiny
    hits, _ = single.search(VariantQuery(), limit=10_000)
    everything = {h.variant_id: single.carrier_rows(h.variant_id) for h in hits}
    monkeypatch.setattr(store_module, "decode_set", lambda blob: pytest.fail("a whole carrier set was decoded"))
    monkeypatch.setattr(store_module, "unpack_codes", lambda blob, n: pytest.fail("every zygosity was decoded"))
    for variant_id, rows in everything.items():
        assert single.carrier_rows(variant_id, limit=2) == rows[:2]
        indexes = single.carrier_indexes(variant_id)
        assert indexes is not None
        table = single.dataset_samples("cohort")
        assert table is not None
        assert [table.samples[i].name for i in indexes.tolist()] == [r[0] for r in rows]
    assert single.carrier_indexes("cohort:GRCh38:22-1-A-T") is None


def test_per_version_facts_are_read_once(tiny, monkeypatch):
    single, _ = tiny
    first = single.dataset_samples("cohort")
    assert first is not None and single.dataset_samples("cohort") is first
    assert single.sample_count("cohort") == len(SAMPLES)
    monkeypatch.setattr(store_module._Dataset, "sample_table", lambda self: pytest.fail("sample table walked again"))
    assert single.sample_count("cohort") == len(SAMPLES)


def test_variants_of_an_individual_page_within_the_datasets_asked(tiny):
    single, _ = tiny
    everything, total = single.variants_of_individual("P1", limit=10_000)
    assert total > 10
    assert single.variants_of_individual("P1", dataset_ids=("elsewhere",)) == ([], 0)
    page, n = single.variants_of_individual("P1", skip=5, limit=4, dataset_ids=("cohort",))
    assert n == total and page == everything[5:9]
