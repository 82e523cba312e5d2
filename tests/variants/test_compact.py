"""Compaction of sample batches: a store grown by three batches, compacted, answers exactly as the single ingest of
the merged VCF (pages in the same order, carriers, cross-links), the pysam truth tests pass over it, erased samples
stay erased, a one-batch store is left as it is, and a compaction that finds the version moved publishes nothing."""

from __future__ import annotations

import sqlite3

import pytest

from gateway.variants.compact import CompactionRefused, compact_dataset
from gateway.variants.distributed_ingest import ingest_partitioned
from gateway.variants.ingest import ingest_vcf
from gateway.variants.layout import VersionMoved
from gateway.variants.query import VariantQuery
from gateway.variants.store import VariantStore
from tests.beacon.test_g_variants_truth import SAMPLES, _write_vcf

from .conftest import pysam_truth
from .test_partitioned import _queries, _same_answers
from .test_sample_batches import (
    SAMPLE_MAP,
    assert_gene_queries_counted,
    cli_with_two_batches,
    ingest_in_batches,
    ingest_second_batch_unannotated,
    truth_cohort_in_batches,
)
from .test_truth import (  # noqa: F401  (collected again here, over the compacted store of the `generated` fixture)
    all_hits,
    assert_every_allele_counted,
    key,
    observed,
    test_bracket_queries,
    test_exact_queries,
    test_gene_and_carrier_queries,
    test_pagination_is_stable,
    test_range_queries,
)

pytestmark = pytest.mark.slow  # several seconds: pytest-xdist starts it first (tests/conftest.py)


def _manifest(ds_dir) -> tuple[list, list]:
    conn = sqlite3.connect(ds_dir / (ds_dir / "CURRENT").read_text().strip())
    try:
        return conn.execute("SELECT batch, file FROM partitions").fetchall(), conn.execute(
            "SELECT * FROM batches"
        ).fetchall()
    finally:
        conn.close()


def _identical_answers(single: VariantStore, compacted: VariantStore) -> None:
    """The same hits in the same order (not only the same sets) for every query, and the same carriers."""
    _same_answers(single, compacted)
    for q in _queries(single):
        assert compacted.search(q, limit=10_000) == single.search(q, limit=10_000), q
    for hit in single.search(VariantQuery(), limit=10_000)[0]:
        assert compacted.carrier_indexes(hit.variant_id).tolist() == single.carrier_indexes(hit.variant_id).tolist()
        assert compacted.carrier_rows(hit.variant_id) == single.carrier_rows(hit.variant_id)


def test_three_batches_compacted_answer_as_the_single_ingest(tmp_path):
    plain = tmp_path / "cohort.vcf"
    _write_vcf(plain)
    data = tmp_path / "data"
    ingest_in_batches(plain, tmp_path, data, [SAMPLES[:4], SAMPLES[4:9], SAMPLES[9:]], 8_000, sample_map=SAMPLE_MAP)
    ingest_vcf(plain, dataset_id="cohort", data_dir=tmp_path / "single", assembly="GRCh38", sample_map=SAMPLE_MAP)
    ds_dir = data / "variants" / "cohort"
    before, _ = _manifest(ds_dir)
    single, store = VariantStore(tmp_path / "single"), VariantStore(data)
    try:
        assert store.erase_individual("P10") == single.erase_individual("P10") == 1  # erased before compaction
        summary = compact_dataset(data, "cohort")
        assert summary.batches_before == 3 and summary.units_before == len(before)
        parts, batches = _manifest(ds_dir)
        assert {b for b, _ in parts} == {0} and len(parts) == summary.units_after == len(before) // 3
        assert batches == [(0, 0, 12, "b0.vcf.gz,b1.vcf.gz,b2.vcf.gz")]
        assert {p.name for p in ds_dir.iterdir() if p.is_dir()} == {parts[0][1].split("/")[0]}  # old units gone
        store.refresh()
        assert store._open("cohort").batched is None  # the single-batch path answers
        _identical_answers(single, store)
        assert store.variants_of_individual("P10") == ([], 0)
        # an erasure after compaction is exact too (AN from the called-allele exceptions of every batch)
        assert store.erase_individual("P3") == single.erase_individual("P3") == 2
        _identical_answers(single, store)
        assert compact_dataset(data, "cohort").version is None  # one batch: nothing to do
    finally:
        single.close()
        store.close()


def test_one_batch_is_left_as_it_is_and_a_plain_version_is_refused(tmp_path):
    plain = tmp_path / "cohort.vcf"
    _write_vcf(plain)
    data = tmp_path / "data"
    ingest_in_batches(plain, tmp_path, data, [SAMPLES], 8_000)
    ds_dir = data / "variants" / "cohort"
    live = (ds_dir / "CURRENT").read_text()
    files = sorted(p.relative_to(ds_dir) for p in ds_dir.rglob("*"))
    summary = compact_dataset(data, "cohort")
    assert summary.version is None and summary.units_after == summary.units_before
    assert (ds_dir / "CURRENT").read_text() == live
    assert sorted(p.relative_to(ds_dir) for p in ds_dir.rglob("*")) == files
    ingest_vcf(plain, dataset_id="flat", data_dir=data, assembly="GRCh38")
    with pytest.raises(CompactionRefused, match="no live partitioned version"):
        compact_dataset(data, "flat")


def test_a_version_moved_meanwhile_publishes_nothing_and_a_crash_resumes(tmp_path, monkeypatch):
    from gateway.variants import compact

    plain = tmp_path / "cohort.vcf"
    _write_vcf(plain)
    data = tmp_path / "data"
    ingest_in_batches(plain, tmp_path, data, [SAMPLES[:6], SAMPLES[6:]], 8_000, sample_map=SAMPLE_MAP)
    ds_dir = data / "variants" / "cohort"
    store = VariantStore(data)
    live = (ds_dir / "CURRENT").read_text()
    write_region = compact._compact_region
    calls = []

    def crash_after_two(*args, **kw):
        if len(calls) == 2:
            raise KeyboardInterrupt
        calls.append(write_region(*args, **kw))
        return calls[-1]

    monkeypatch.setattr(compact, "_compact_region", crash_after_two)
    with pytest.raises(KeyboardInterrupt):
        compact_dataset(data, "cohort")
    assert (ds_dir / "CURRENT").read_text() == live  # the old version stays live
    done = sorted(ds_dir.glob("parts-compact-*/*.sqlite"))
    assert len(done) == 2
    stamps = [p.stat().st_mtime_ns for p in done]
    monkeypatch.setattr(compact, "_compact_region", write_region)
    erase = compact._publish_manifest

    def erase_meanwhile(*args, **kw):
        assert store.erase_individual("P1") == 1
        return erase(*args, **kw)

    monkeypatch.setattr(compact, "_publish_manifest", erase_meanwhile)
    with pytest.raises(VersionMoved):
        compact_dataset(data, "cohort")
    assert [p.stat().st_mtime_ns for p in done if p.exists()] in ([], stamps)
    assert not list(ds_dir.glob("parts-compact-*"))  # nothing of the compaction left
    store.refresh()
    assert len(store._open("cohort").batches) == 2 and store.sample_count("cohort") == 11
    monkeypatch.setattr(compact, "_publish_manifest", erase)
    # resumed: the units of the first run are re-used when the live version is still the same
    live = (ds_dir / "CURRENT").read_text()
    monkeypatch.setattr(compact, "_compact_region", crash_after_two)
    calls.clear()
    with pytest.raises(KeyboardInterrupt):
        compact_dataset(data, "cohort")
    done = sorted(ds_dir.glob("parts-compact-*/*.sqlite"))
    stamps = [p.stat().st_mtime_ns for p in done]
    monkeypatch.setattr(compact, "_compact_region", write_region)
    compact_dataset(data, "cohort")
    assert [p.stat().st_mtime_ns for p in done] == stamps
    assert (ds_dir / "CURRENT").read_text() != live
    store.refresh()
    assert store.sample_count("cohort") == 11 and len(store._open("cohort").batches) == 1
    store.close()


@pytest.fixture(scope="module")
def generated(tmp_path_factory):
    """The truth cohort as three sample batches, compacted."""
    tmp = tmp_path_factory.mktemp("compacted-truth")
    path = truth_cohort_in_batches(tmp)
    compact_dataset(tmp / "data", "cohort")
    store = VariantStore(tmp / "data")
    yield path, None, store, pysam_truth(path)
    store.close()


def test_every_allele_is_summed_in_the_compacted_units(generated):
    _, _, store, truth = generated
    assert len(store._open("cohort").batches) == 1
    assert_every_allele_counted(store, truth)


def test_cli_compacts_a_batched_dataset_and_refuses_a_plain_one(tmp_path, monkeypatch, capsys):
    main, plain, _, _ = cli_with_two_batches(tmp_path, monkeypatch)
    capsys.readouterr()
    assert main(["variants", "compact", "--dataset", "cohort"]) == 0
    assert "2 sample batches compacted into one" in capsys.readouterr().out
    assert main(["variants", "compact", "--dataset", "cohort"]) == 0
    assert "nothing to do" in capsys.readouterr().out
    ingest_vcf(plain, dataset_id="cohort", data_dir=tmp_path / "single", assembly="GRCh38")
    single, store = VariantStore(tmp_path / "single"), VariantStore(tmp_path / "data")
    try:
        assert len(store._open("cohort").batches) == 1
        _identical_answers(single, store)
    finally:
        single.close()
        store.close()
    assert main(["ingest", "vcf", str(plain), "--dataset", "flat", "--assembly", "GRCh38"]) == 0
    assert main(["variants", "compact", "--dataset", "flat"]) == 1
    assert "no live partitioned version" in capsys.readouterr().err


def _answers(store: VariantStore) -> list:
    """Every hit with its carriers, by variant id (the batched path orders ties at one position by key, a single
    ingest and a compacted unit in file order)."""
    hits, total = store.search(VariantQuery(), limit=10_000)
    return [total, *((h, store.carrier_rows(h.variant_id)) for h in sorted(hits, key=lambda h: h.variant_id))]


def test_batches_called_apart_keep_their_an_after_compaction_and_erasure(tmp_path):
    """A batch whose VCF lacks sites (AN then counts only the batches that called the site, batched.py): the
    compacted store answers as the batched one, and erasing a person of that batch afterwards changes AN exactly as
    in the batched store (the batch's samples are recorded as uncalled where its VCF had no record)."""
    import shutil

    from tests.variants.vcfgen import split_by_samples

    plain = tmp_path / "cohort.vcf"
    _write_vcf(plain)
    split_by_samples(plain, tmp_path / "b0.vcf.gz", SAMPLES[:6])
    trimmed = split_by_samples(plain, tmp_path / "b1.vcf.gz", SAMPLES[6:], drop_uncarried=True)
    batched_dir, compacted_dir = tmp_path / "batched", tmp_path / "compacted"
    common = {"dataset_id": "cohort", "assembly": "GRCh38", "span": 20_000, "sample_map": SAMPLE_MAP}
    ingest_partitioned(tmp_path / "b0.vcf.gz", data_dir=batched_dir, **common)
    ingest_partitioned(trimmed, data_dir=batched_dir, add_samples=True, **common)
    shutil.copytree(batched_dir, compacted_dir)
    compact_dataset(compacted_dir, "cohort")
    batched, compacted = VariantStore(batched_dir), VariantStore(compacted_dir)
    try:
        assert len(compacted._open("cohort").batches) == 1
        assert _answers(compacted) == _answers(batched)
        for person in ("P7", "P3"):  # S07 (batch 1 only); S03 and S08 (both batches)
            assert compacted.erase_individual(person) == batched.erase_individual(person)
            assert _answers(compacted) == _answers(batched)
    finally:
        batched.close()
        compacted.close()


def test_a_gene_annotated_in_one_batch_is_found_after_compaction(tmp_path):
    """Batches annotated apart: the compacted unit unites the annotations, so a gene query finds the variant and
    counts the carriers of every batch."""
    plain, data = ingest_second_batch_unannotated(tmp_path)
    compact_dataset(data, "gen")
    truth = observed(pysam_truth(plain))
    store = VariantStore(data)
    try:
        assert len(store._open("gen").batches) == 1
        assert_gene_queries_counted(store, truth)
    finally:
        store.close()


def test_two_compactions_of_one_version_publish_one_and_keep_its_units(tmp_path, monkeypatch):
    from gateway.variants import compact

    plain = tmp_path / "cohort.vcf"
    _write_vcf(plain)
    data = tmp_path / "data"
    ingest_in_batches(plain, tmp_path, data, [SAMPLES[:6], SAMPLES[6:]], 8_000, sample_map=SAMPLE_MAP)
    publish_manifest = compact._publish_manifest
    other = []

    def another_compaction_first(*args, **kw):
        if not other:
            monkeypatch.setattr(compact, "_publish_manifest", publish_manifest)
            other.append(compact_dataset(data, "cohort"))
        return publish_manifest(*args, **kw)

    monkeypatch.setattr(compact, "_publish_manifest", another_compaction_first)
    with pytest.raises(VersionMoved):
        compact_dataset(data, "cohort")
    assert other[0].version is not None
    store = VariantStore(data)
    try:
        assert len(store._open("cohort").batches) == 1
        assert store.count(VariantQuery()) > 0  # the published units were not removed by the loser
    finally:
        store.close()
