"""Sample batches: a cohort ingested as two VCFs of different samples (the second with `add_samples`) answers as the
single ingest of the whole cohort; the pysam truth tests run again over the batched store; an erasure rewrites only
the units of the person's batch."""

from __future__ import annotations

import pysam
import pytest

from gateway.variants.distributed_ingest import ingest_partitioned
from gateway.variants.ingest import VCFRejected, ingest_vcf
from gateway.variants.query import VariantQuery
from gateway.variants.store import VariantStore
from tests.beacon.test_g_variants_truth import SAMPLES, _write_vcf

from .conftest import cli_on, pysam_truth
from .test_partitioned import _same_answers
from .test_truth import (  # noqa: F401  (collected again here, over the batched store of the `generated` fixture)
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
from .vcfgen import split_by_samples, write_vcf

pytestmark = pytest.mark.slow  # several seconds: pytest-xdist starts it first (tests/conftest.py)

# S03 and S08 are one person sequenced twice, in different batches
SAMPLE_MAP = {name: f"P{i}" for i, name in enumerate(SAMPLES)} | {"S08": "P3"}


def ingest_in_batches(plain, root, data_dir, batches: list[list[str]], span: int, **kw):
    first, *more = batches
    common = {"dataset_id": "cohort", "data_dir": data_dir, "assembly": "GRCh38", "span": span, **kw}
    ingest_partitioned(split_by_samples(plain, root / "b0.vcf.gz", first), **common)
    return [
        ingest_partitioned(split_by_samples(plain, root / f"b{i}.vcf.gz", names), add_samples=True, **common)
        for i, names in enumerate(more, 1)
    ]


@pytest.fixture(scope="module")
def stores(tmp_path_factory):
    root = tmp_path_factory.mktemp("batches")
    plain = root / "cohort.vcf"
    _write_vcf(plain)
    ingest_vcf(plain, dataset_id="cohort", data_dir=root / "single", assembly="GRCh38", sample_map=SAMPLE_MAP)
    ingest_in_batches(plain, root, root / "batched", [SAMPLES[:7], SAMPLES[7:]], 8_000, sample_map=SAMPLE_MAP)
    single, batched = VariantStore(root / "single"), VariantStore(root / "batched")
    yield single, batched, root
    single.close()
    batched.close()


def test_two_batches_answer_as_the_single_ingest_of_the_merged_file(stores):
    single, batched, root = stores
    units = sorted((root / "batched" / "variants" / "cohort").glob("parts-*/*.sqlite"))
    assert len(units) >= 8  # two batches of ≥ 4 region units each
    assert batched.sample_count("cohort") == single.sample_count("cohort") == 12
    samples = batched.dataset_samples("cohort").samples
    assert [s.name for s in samples] == SAMPLES
    _same_answers(single, batched)
    for hit in single.search(VariantQuery(), limit=10_000)[0]:  # carriers as manifest sample indexes (cross-links)
        assert batched.carrier_indexes(hit.variant_id).tolist() == single.carrier_indexes(hit.variant_id).tolist()
    assert batched.carrier_indexes("cohort:GRCh38:21-1-A-T") is None
    # P3 is S03 (batch 0) and S08 (batch 1): its variants are united over the batches, without duplicates
    mine, total = batched.variants_of_individual("P3", limit=10_000)
    assert total == len(mine) == len({h.variant_id for h in mine}) == single.variants_of_individual("P3")[1]


def test_samples_already_present_are_refused_and_nothing_changes(stores):
    _, batched, root = stores
    ds_dir = root / "batched" / "variants" / "cohort"
    live = (ds_dir / "CURRENT").read_text()
    plain = root / "cohort.vcf"
    for names in (SAMPLES[7:], ["S11", "S00"], SAMPLES):
        again = split_by_samples(plain, root / "again.vcf.gz", names)
        with pytest.raises(VCFRejected, match="vcf-add-samples") as caught:
            ingest_partitioned(again, dataset_id="cohort", data_dir=root / "batched", span=8_000, add_samples=True)
        issue = next(iter(caught.value.report))
        assert "already in the dataset" in issue.message and min(names) in issue.message
        assert issue.location.startswith("again.vcf.gz:")
    assert (ds_dir / "CURRENT").read_text() == live
    batched.refresh()
    assert batched.sample_count("cohort") == 12
    with pytest.raises(VCFRejected, match="needs a live partitioned version"):
        ingest_partitioned(again, dataset_id="other", data_dir=root / "batched", add_samples=True)


def test_an_counts_the_batches_that_called_the_site(tmp_path):
    """A batch whose VCF leaves out the sites its samples do not carry says nothing about them: AC and carriers equal
    the whole cohort's, AN sums only the batches that have the site (documented in batched.py)."""
    plain = tmp_path / "cohort.vcf"
    _write_vcf(plain)
    first, second = SAMPLES[:6], SAMPLES[6:]
    split_by_samples(plain, tmp_path / "b0.vcf.gz", first)
    trimmed = split_by_samples(plain, tmp_path / "b1.vcf.gz", second, drop_uncarried=True)
    data, single_dir = tmp_path / "data", tmp_path / "single"
    common = {"dataset_id": "cohort", "data_dir": data, "assembly": "GRCh38", "span": 20_000}
    ingest_partitioned(tmp_path / "b0.vcf.gz", **common)
    ingest_partitioned(trimmed, add_samples=True, **common)
    ingest_vcf(plain, dataset_id="cohort", data_dir=single_dir, assembly="GRCh38")
    with pysam.VariantFile(str(trimmed)) as vcf:
        in_second = {(rec.chrom[3:], rec.pos - 1) for rec in vcf}
    single, batched = VariantStore(single_dir), VariantStore(data)
    try:
        expected, _ = single.search(VariantQuery(), limit=10_000)
        got = {h.variant_id: h for h in batched.search(VariantQuery(), limit=10_000)[0]}
        assert set(got) == {h.variant_id for h in expected}
        assert any((h.reference_name, h.start) not in in_second for h in expected)
        for hit in expected:
            mine = got[hit.variant_id]
            assert (mine.allele_count, mine.carrier_count) == (hit.allele_count, hit.carrier_count)
            called = 2 * len(SAMPLES) if (hit.reference_name, hit.start) in in_second else 2 * len(first)
            assert mine.allele_number == called, hit.variant_id
            assert batched.carriers(hit.variant_id) == single.carriers(hit.variant_id)
        for q in (VariantQuery(reference_name="21"), VariantQuery(reference_name="22", start=10_000, end=40_000)):
            assert batched.count(q) == single.count(q) and batched.carrier_count(q) == single.carrier_count(q)
    finally:
        single.close()
        batched.close()


def test_erasure_is_pending_at_once_and_its_purge_rewrites_only_the_units_of_the_persons_batch(tmp_path):
    """The request writes a manifest only (pending.py), and every answer over the batches already agrees with the
    single file erased at once; the purge job then rewrites the units of the person's batch, nothing else."""
    plain = tmp_path / "cohort.vcf"
    _write_vcf(plain)
    data, single_dir = tmp_path / "data", tmp_path / "single"
    ingest_vcf(plain, dataset_id="cohort", data_dir=single_dir, assembly="GRCh38", sample_map=SAMPLE_MAP)
    ingest_in_batches(plain, tmp_path, data, [SAMPLES[:4], SAMPLES[4:9], SAMPLES[9:]], 8_000, sample_map=SAMPLE_MAP)
    ds_dir = data / "variants" / "cohort"

    def units() -> dict[int, set[str]]:
        import sqlite3

        conn = sqlite3.connect(ds_dir / (ds_dir / "CURRENT").read_text().strip())
        try:
            rows = conn.execute("SELECT batch, file FROM partitions").fetchall()
        finally:
            conn.close()
        out: dict[int, set[str]] = {}
        for batch, file in rows:
            out.setdefault(batch, set()).add(file)
            assert (ds_dir / file).is_file()
        return out

    single, batched = VariantStore(single_dir), VariantStore(data)
    try:
        before = units()
        assert sorted(before) == [0, 1, 2]
        assert batched.erase_individual("P10") == single.erase_individual("P10") == 1  # S10: batch 2
        assert units() == before  # pending: no unit written
        _same_answers(single, batched)
        assert batched.purge_erased() == 1
        after = units()
        assert after[0] == before[0] and after[1] == before[1]
        assert not after[2] & before[2]  # every unit of batch 2 rewritten, nothing else
        _same_answers(single, batched)
        assert batched.erase_individual("P3") == single.erase_individual("P3") == 2  # S03 (batch 0), S08 (batch 1)
        assert units() == after
        _same_answers(single, batched)
        assert batched.purge_erased() == 1
        final = units()
        assert final[2] == after[2] and not final[0] & after[0] and not final[1] & after[1]
        _same_answers(single, batched)
        assert batched.variants_of_individual("P3") == ([], 0)
        assert batched.sample_count("cohort") == 9
        # The superseded folders are gone; only the live units' folders remain.
        live = {f.split("/", 1)[0] for files in final.values() for f in files}
        assert {p.name for p in ds_dir.iterdir() if p.is_dir()} == live
    finally:
        single.close()
        batched.close()


def test_regions_join_the_batch_of_their_samples(tmp_path):
    """A batch that was shipped per chromosome: its second chromosome added later joins its own batch."""
    plain = tmp_path / "cohort.vcf"
    _write_vcf(plain)
    lines = plain.read_text().splitlines()
    header = [line for line in lines if line.startswith("#")]
    chr21 = tmp_path / "chr21.vcf"
    chr21.write_text("\n".join(header + [line for line in lines if line.startswith("chr21\t")]) + "\n")
    chr22 = tmp_path / "chr22.vcf"
    chr22.write_text("\n".join(header + [line for line in lines if line.startswith("chr22\t")]) + "\n")
    data = tmp_path / "data"
    common = {"dataset_id": "cohort", "data_dir": data, "assembly": "GRCh38", "span": 20_000, "sample_map": SAMPLE_MAP}
    ingest_partitioned(split_by_samples(chr21, tmp_path / "a21.vcf.gz", SAMPLES[:5]), **common)
    ingest_partitioned(split_by_samples(plain, tmp_path / "b.vcf.gz", SAMPLES[5:]), add_samples=True, **common)
    with pytest.raises(VCFRejected, match="every sample batch"):
        ingest_partitioned(split_by_samples(chr22, tmp_path / "x22.vcf.gz", SAMPLES[:6]), add_regions=True, **common)
    ingest_partitioned(split_by_samples(chr22, tmp_path / "a22.vcf.gz", SAMPLES[:5]), add_regions=True, **common)
    ingest_vcf(plain, dataset_id="cohort", data_dir=tmp_path / "single", assembly="GRCh38", sample_map=SAMPLE_MAP)
    single, batched = VariantStore(tmp_path / "single"), VariantStore(data)
    try:
        _same_answers(single, batched)
    finally:
        single.close()
        batched.close()


def truth_cohort_in_batches(tmp):
    """test_truth's generated cohort (ANN genes, haploid chrX, missing calls, SVs) ingested as three sample
    batches into tmp / "data"; the VCF's path."""
    path = write_vcf(tmp / "gen.vcf", seed=7, n_records=900, n_samples=16)
    names = [f"SAMPLE{i:03d}" for i in range(16)]
    ingest_in_batches(path, tmp, tmp / "data", [names[:5], names[5:11], names[11:]], 2_000_000)
    return path


@pytest.fixture(scope="module")
def generated(tmp_path_factory):
    """The truth cohort as three sample batches."""
    tmp = tmp_path_factory.mktemp("batched-truth")
    path = truth_cohort_in_batches(tmp)
    store = VariantStore(tmp / "data")
    yield path, None, store, pysam_truth(path)
    store.close()


def test_every_allele_is_summed_over_the_batches(generated):
    _, _, store, truth = generated
    assert_every_allele_counted(store, truth)


def ingest_second_batch_unannotated(tmp_path):
    """A generated cohort split into two sample batches, the second with its ANN annotations stripped, ingested
    as dataset "gen" (the first, then the second with add_samples); (the whole VCF, the data directory)."""
    plain = write_vcf(tmp_path / "gen.vcf", seed=3, n_records=200, n_samples=8)
    names = [f"SAMPLE{i:03d}" for i in range(8)]
    first = split_by_samples(plain, tmp_path / "b0.vcf.gz", names[:4])
    bare = tmp_path / "b1-bare.vcf"
    kept = []
    for line in split_by_samples(plain, tmp_path / "b1.vcf.gz", names[4:]).with_suffix("").read_text().splitlines():
        fields = line.split("\t")
        if not line.startswith("#") and "ANN=" in fields[7]:
            fields[7] = ";".join(f for f in fields[7].split(";") if not f.startswith("ANN=")) or "."
        kept.append("\t".join(fields))
    bare.write_text("\n".join(kept) + "\n")
    pysam.tabix_compress(str(bare), str(bare) + ".gz", force=True)
    data = tmp_path / "data"
    ingest_partitioned(first, dataset_id="gen", data_dir=data, span=5_000_000)
    ingest_partitioned(f"{bare}.gz", dataset_id="gen", data_dir=data, span=5_000_000, add_samples=True)
    return plain, data


def assert_gene_queries_counted(store, truth):
    """Each gene of the truth finds exactly its variants, with their AC, and counts the union of their carriers."""
    genes = {g for t in truth for g in t.genes}
    assert genes
    for gene in genes:
        q = VariantQuery(gene_id=gene)
        matching = [t for t in truth if gene in t.genes]
        hits = all_hits(store, q)
        assert {key(h) for h in hits} == {key(t) for t in matching}
        by_key = {key(h): h for h in hits}
        assert all(by_key[key(t)].allele_count == t.ac for t in matching)
        assert store.carrier_count(q) == len(set().union(*(t.carriers for t in matching)))


def test_a_gene_annotated_in_one_batch_counts_the_carriers_of_all(tmp_path):
    """Annotations can differ between batches (annotated separately): a gene query finds the variant through the
    batch that annotates it and sums AC and carriers over every batch."""
    plain, data = ingest_second_batch_unannotated(tmp_path)
    truth = observed(pysam_truth(plain))
    store = VariantStore(data)
    try:
        assert_gene_queries_counted(store, truth)
    finally:
        store.close()


def cli_with_two_batches(tmp_path, monkeypatch):
    """The `gateway` CLI on tmp_path / "data", dataset `cohort` ingested as two sample batches (S00-S05 partitioned,
    S06-S11 added); (main, the plain VCF, the second batch's file, the ingest command's head)."""
    main = cli_on(monkeypatch, tmp_path / "data")
    plain = tmp_path / "cohort.vcf"
    _write_vcf(plain)
    first = split_by_samples(plain, tmp_path / "first.vcf.gz", SAMPLES[:6])
    second = split_by_samples(plain, tmp_path / "second.vcf.gz", SAMPLES[6:])
    base = ["ingest", "vcf", "--dataset", "cohort", "--assembly", "GRCh38"]
    assert main([*base, str(first), "--workers", "1"]) == 0
    assert main([*base, str(second), "--add-samples"]) == 0
    return main, plain, second, base


def test_cli_adds_a_batch_of_samples_and_refuses_one_already_there(tmp_path, monkeypatch, capsys):
    main, plain, second, base = cli_with_two_batches(tmp_path, monkeypatch)
    assert "partitions:" in capsys.readouterr().out
    assert main([*base, str(second), "--add-samples"]) == 1  # the same samples again: refused, nothing changes
    err = capsys.readouterr().err
    assert "second.vcf.gz:" in err and "vcf-add-samples" in err and "S06" in err
    ingest_vcf(plain, dataset_id="cohort", data_dir=tmp_path / "single", assembly="GRCh38")
    single, batched = VariantStore(tmp_path / "single"), VariantStore(tmp_path / "data")
    try:
        assert batched.sample_count("cohort") == 12
        q = VariantQuery(reference_name="22")
        assert batched.count(q) == single.count(q) and batched.carrier_count(q) == single.carrier_count(q)
    finally:
        single.close()
        batched.close()


def test_a_batch_and_an_erasure_published_meanwhile_are_neither_lost(tmp_path, monkeypatch):
    """Two writers grow the same live version: the one that publishes second finds the pointer moved. An ingest is
    then refused (run it again: its units are resumed); an erasure is done again on the new live version."""
    from gateway.variants import distributed_ingest
    from gateway.variants import store as store_module

    plain = tmp_path / "cohort.vcf"
    _write_vcf(plain)
    files = [split_by_samples(plain, tmp_path / f"b{i}.vcf.gz", names)
             for i, names in enumerate((SAMPLES[:4], SAMPLES[4:8], SAMPLES[8:]))]  # fmt: skip
    data = tmp_path / "data"
    common = {"dataset_id": "cohort", "data_dir": data, "assembly": "GRCh38", "span": 20_000, "sample_map": SAMPLE_MAP}
    ingest_partitioned(files[0], **common)
    store = VariantStore(data)
    run_partitions = distributed_ingest._run_partitions

    def erase_meanwhile(*args, **kw):
        results = run_partitions(*args, **kw)
        assert store.erase_individual("P1") == 1  # published while the batch is being ingested
        return results

    monkeypatch.setattr(distributed_ingest, "_run_partitions", erase_meanwhile)
    with pytest.raises(VCFRejected, match="vcf-version-moved"):
        ingest_partitioned(files[1], add_samples=True, **common)
    monkeypatch.setattr(distributed_ingest, "_run_partitions", run_partitions)
    again = ingest_partitioned(files[1], add_samples=True, **common)
    assert all(resumed for _, _, resumed in again.partitions)  # the units written the first time are kept
    store.refresh()
    assert [s.name for s in store.dataset_samples("cohort").samples][:2] == ["S00", "erased-1"]

    losses = store_module._losses  # read while the erasure builds its manifest (pending.py)
    added = []

    def ingest_meanwhile(*args, **kw):
        found = losses(*args, **kw)
        if not added:
            added.append(ingest_partitioned(files[2], add_samples=True, **common))
        return found

    monkeypatch.setattr(store_module, "_losses", ingest_meanwhile)
    assert store.erase_individual("P5") == 1
    store.refresh()
    names = [s.name for s in store.dataset_samples("cohort").samples]
    assert names == ["S00", "erased-1", *SAMPLES[2:5], "erased-5", *SAMPLES[6:]]
    assert store.sample_count("cohort") == 10
    store.close()


def test_a_manifest_written_before_batches_is_one_batch_and_can_grow(tmp_path):
    """Manifests without the batch column and table (every partitioned version before batches) still answer, and
    a batch of new samples can be added to them."""
    import sqlite3

    plain = tmp_path / "cohort.vcf"
    _write_vcf(plain)
    data = tmp_path / "data"
    common = {"dataset_id": "cohort", "data_dir": data, "assembly": "GRCh38", "span": 20_000, "sample_map": SAMPLE_MAP}
    ingest_partitioned(split_by_samples(plain, tmp_path / "a.vcf.gz", SAMPLES[:6]), **common)
    ds_dir = data / "variants" / "cohort"
    manifest = ds_dir / (ds_dir / "CURRENT").read_text().strip()
    conn = sqlite3.connect(manifest)
    conn.executescript(
        "DROP TABLE batches; ALTER TABLE partitions DROP COLUMN batch; DELETE FROM meta WHERE key='span'"
    )
    conn.close()
    store = VariantStore(data)
    try:
        assert store.sample_count("cohort") == 6 and store.count(VariantQuery()) > 0
        ingest_partitioned(split_by_samples(plain, tmp_path / "b.vcf.gz", SAMPLES[6:]), add_samples=True, **common)
        ingest_vcf(plain, dataset_id="cohort", data_dir=tmp_path / "single", assembly="GRCh38", sample_map=SAMPLE_MAP)
        store.refresh()
        single = VariantStore(tmp_path / "single")
        try:
            _same_answers(single, store)
        finally:
            single.close()
    finally:
        store.close()
