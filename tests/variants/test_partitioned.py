"""Partitioned ingest on Dask distributed: a real LocalCluster of worker processes on loopback writes one file per
region partition; the partitioned store answers every query as the single-file store of the same VCF does."""

from __future__ import annotations

import os
import random

import pysam
import pytest

from gateway.variants.distributed_ingest import ingest_partitioned
from gateway.variants.ingest import VCFRejected, ingest_vcf
from gateway.variants.query import VariantQuery
from gateway.variants.store import VariantStore
from tests.beacon.test_g_variants_truth import SAMPLES, _write_vcf

from .conftest import cli_on

pytestmark = pytest.mark.slow  # several seconds: pytest-xdist starts it first (tests/conftest.py)

SAMPLE_MAP = {name: f"P{i}" for i, name in enumerate(SAMPLES)}


def _bgzip(plain, out):
    pysam.tabix_compress(str(plain), str(out), force=True)
    return out


@pytest.fixture(scope="module")
def stores(tmp_path_factory):
    root = tmp_path_factory.mktemp("partitioned")
    plain = root / "cohort.vcf"
    _write_vcf(plain)
    vcf = _bgzip(plain, root / "cohort.vcf.gz")
    single_dir, parted_dir = root / "single", root / "parted"
    ingest_vcf(vcf, dataset_id="cohort", data_dir=single_dir, assembly="GRCh38", sample_map=SAMPLE_MAP)
    summary, dependencies = _ingest_on_cluster(vcf, parted_dir)
    single, parted = VariantStore(single_dir), VariantStore(parted_dir)
    yield single, parted, summary, vcf, parted_dir, dependencies
    single.close()
    parted.close()


def _dependencies_plugin(scheduler):
    """A scheduler plugin: how many keys each task waited for when it was sent to a worker."""
    from distributed.diagnostics.plugin import SchedulerPlugin

    class Dependencies(SchedulerPlugin):
        name = "dependencies"

        def __init__(self):
            self.counts = {}

        def transition(self, key, start, finish, *args, **kwargs):
            if finish == "processing":
                self.counts[key] = len(scheduler.tasks[key].dependencies)

    return Dependencies()


def _ingest_on_cluster(vcf, data_dir):
    """A real LocalCluster: two worker processes on loopback, reached by its scheduler address (--cluster);
    (the summary, the number of dependencies of each partition task)."""
    from distributed import Client, LocalCluster

    with (
        LocalCluster(
            n_workers=2, threads_per_worker=1, processes=True, host="127.0.0.1", dashboard_address=None
        ) as cluster,
        Client(cluster) as client,
    ):
        pids = set(client.run(os.getpid).values())
        assert len(pids) == 2 and os.getpid() not in pids  # separate worker processes
        assert cluster.scheduler_address.startswith("tcp://127.0.0.1:")
        plugin = _dependencies_plugin(cluster.scheduler)
        cluster.scheduler.add_plugin(plugin)
        summary = ingest_partitioned(
            vcf, dataset_id="cohort", data_dir=data_dir, assembly="GRCh38", sample_map=SAMPLE_MAP,
            cluster=cluster.scheduler_address, span=8_000,
        )  # fmt: skip
        return summary, [n for key, n in plugin.counts.items() if "ingest_partition" in str(key)]


def _queries(single: VariantStore) -> list[VariantQuery]:
    """Exact, range, bracket, type and gene-free queries around every stored variant (seeded)."""
    rng = random.Random(5)
    hits, _ = single.search(VariantQuery(), limit=10_000)
    queries = [VariantQuery(), VariantQuery(reference_name="21"), VariantQuery(reference_name="22")]
    for hit in rng.sample(hits, 60):
        start = max(hit.start - rng.randint(0, 3000), 0)
        queries += [
            VariantQuery(reference_name=hit.reference_name, start=hit.start, alternate_bases=hit.alternate_bases),
            # exact starts: carrier counts over small partitions answer from memory (store._Sites), so vary the bases
            VariantQuery(reference_name=hit.reference_name, start=hit.start),
            VariantQuery(
                reference_name=hit.reference_name, start=hit.start, reference_bases=hit.reference_bases.lower()
            ),
            VariantQuery(
                reference_name=hit.reference_name, start=hit.start, alternate_bases="N" * len(hit.alternate_bases)
            ),
            VariantQuery(reference_name=hit.reference_name, start=hit.start, reference_bases="T", alternate_bases="A"),
            VariantQuery(reference_name=hit.reference_name, start=hit.start + 1, alternate_bases=hit.alternate_bases),
            VariantQuery(reference_name=hit.reference_name, start=start, end=start + rng.randint(1, 20_000)),
            VariantQuery(reference_name=hit.reference_name, start=start, end=hit.end + 50, variant_types=("DEL",)),
            VariantQuery(
                reference_name=hit.reference_name, start_range=(start, hit.start), end_range=(hit.end, hit.end + 9)
            ),
            VariantQuery(variant_ids=(hit.variant_id,)),
        ]
    return queries


def _same_answers(single: VariantStore, parted: VariantStore) -> None:
    for q in _queries(single):
        expected, total = single.search(q, limit=10_000)
        got, got_total = parted.search(q, limit=10_000)
        assert got_total == total, q
        assert sorted(h.variant_id for h in got) == sorted(h.variant_id for h in expected), q
        assert [
            (h.allele_count, h.allele_number, h.carrier_count) for h in sorted(got, key=lambda h: h.variant_id)
        ] == [
            (h.allele_count, h.allele_number, h.carrier_count) for h in sorted(expected, key=lambda h: h.variant_id)
        ], q
        assert parted.count(q) == single.count(q), q
        assert parted.exists(q) == single.exists(q), q
        assert parted.carrier_count(q) == single.carrier_count(q), q
    hits, _ = single.search(VariantQuery(), limit=10_000)
    for hit in hits:
        assert parted.get(hit.variant_id) == hit
        assert parted.carriers(hit.variant_id) == single.carriers(hit.variant_id)
        assert parted.carrier_indexes(hit.variant_id).tolist() == single.carrier_indexes(hit.variant_id).tolist()
    for individual in SAMPLE_MAP.values():
        for skip, limit in ((0, 10), (7, 25), (0, 10_000)):
            mine, total = parted.variants_of_individual(individual, skip=skip, limit=limit)
            theirs, expected_total = single.variants_of_individual(individual, skip=0, limit=10_000)
            assert total == expected_total
            assert {h.variant_id for h in mine} <= {h.variant_id for h in theirs}
        everything, _ = parted.variants_of_individual(individual, limit=10_000)
        assert sorted(h.variant_id for h in everything) == sorted(h.variant_id for h in theirs)


def test_a_local_cluster_writes_one_unit_per_partition_and_answers_as_one_file(stores):
    single, parted, summary, _, data_dir, _ = stores
    assert len(summary.partitions) >= 4 and not any(resumed for _, _, resumed in summary.partitions)
    units = sorted((data_dir / "variants" / "cohort").glob("parts-*/*.sqlite"))
    assert len(units) == len(summary.partitions)
    assert summary.records_read == 300
    _same_answers(single, parted)


def test_each_partition_task_waits_for_one_shared_sample_list_not_one_key_per_sample(stores):
    *_, dependencies = stores
    # The sample links are scattered once as one object: a list scattered as such becomes one key per sample, and
    # every task then depends on all of them (at 25,000 samples, seconds of scheduler and client CPU per ingest).
    assert len(SAMPLES) > 1 and len(dependencies) >= 4
    assert dependencies == [1] * len(dependencies)


def _unit_files(data_dir) -> set[str]:
    return {str(p.relative_to(data_dir)) for p in (data_dir / "variants" / "cohort").glob("parts-*/*.sqlite")}


def test_erasure_is_pending_at_once_then_purged_into_the_partitions_and_still_agrees(stores, tmp_path):
    """Phase one (the request) writes a manifest only: every answer already agrees with the single file erased at
    once (rewritten); phase two (the purge job) rewrites the units and still agrees."""
    single, parted, _, _, data_dir, _ = stores
    units = _unit_files(data_dir)
    assert parted.erase_individual("P3") == single.erase_individual("P3") == 1
    assert _unit_files(data_dir) == units  # no unit written: the erasure is pending in the manifest
    _same_answers(single, parted)
    assert parted.variants_of_individual("P3") == ([], 0)
    assert parted.erase_individual("P5") == single.erase_individual("P5") == 1  # a second one adds to the delta
    _same_answers(single, parted)
    assert parted.purge_erased() == 1
    assert _unit_files(data_dir) != units and parted.purge_erased() == 0  # rewritten; nothing left to purge
    _same_answers(single, parted)
    assert parted.variants_of_individual("P3") == ([], 0)


def test_answers_hold_when_few_partitions_may_stay_open(stores, monkeypatch):
    from gateway.variants import store as store_module

    single, _, _, _, data_dir, _ = stores
    monkeypatch.setattr(store_module, "_MAX_OPEN_PARTITIONS", 2)
    fresh = VariantStore(data_dir)
    try:
        _same_answers(single, fresh)
    finally:
        fresh.close()


def test_one_local_process_resumes_and_publishes_only_complete_versions(tmp_path):
    plain = tmp_path / "cohort.vcf"
    _write_vcf(plain)
    vcf = _bgzip(plain, tmp_path / "cohort.vcf.gz")
    data_dir = tmp_path / "data"
    first = ingest_partitioned(vcf, dataset_id="cohort", data_dir=data_dir, assembly="GRCh38", span=20_000)
    ds_dir = data_dir / "variants" / "cohort"
    units = sorted(ds_dir.glob("parts-*/*.sqlite"))
    assert len(units) == len(first.partitions) >= 2
    units[0].unlink()  # a partition lost (or never finished): the same ingest again runs that one alone
    again = ingest_partitioned(vcf, dataset_id="cohort", data_dir=data_dir, assembly="GRCh38", span=20_000)
    assert [resumed for _, _, resumed in again.partitions] == [False] + [True] * (len(units) - 1)
    store = VariantStore(data_dir)
    try:
        assert store.count(VariantQuery()) == first.records_written == again.records_written
        live = (ds_dir / "CURRENT").read_text().strip()
        # A partition that fails: nothing is published, the live version stays.
        broken = tmp_path / "broken.vcf"
        lines = plain.read_text().splitlines()
        lines[-1] = lines[-1].replace("\tPASS\t", "\tPASS\t", 1).replace(lines[-1].split("\t")[3], "Q", 1)
        broken.write_text("\n".join(lines) + "\n")
        with pytest.raises(VCFRejected, match="vcf-ref"):
            ingest_partitioned(_bgzip(broken, tmp_path / "broken.vcf.gz"), dataset_id="cohort", data_dir=data_dir,
                               assembly="GRCh38", span=20_000)  # fmt: skip
        assert (ds_dir / "CURRENT").read_text().strip() == live
        store.refresh()
        assert store.count(VariantQuery()) == first.records_written
    finally:
        store.close()


def test_partitioned_ingest_refuses_what_it_cannot_split(tmp_path):
    plain = tmp_path / "cohort.vcf"
    _write_vcf(plain)
    with pytest.raises(VCFRejected, match="vcf-partitioned-input"):
        ingest_vcf(plain, dataset_id="cohort", data_dir=tmp_path / "data", assembly="GRCh38", workers=2)
    assert not (tmp_path / "data" / "variants" / "cohort" / "CURRENT").exists()


def test_cli_workers_runs_a_local_cluster(tmp_path, monkeypatch, capsys):
    main = cli_on(monkeypatch, tmp_path / "data")
    plain = tmp_path / "cohort.vcf"
    _write_vcf(plain)
    vcf = _bgzip(plain, tmp_path / "cohort.vcf.gz")
    args = ["ingest", "vcf", str(vcf), "--dataset", "cohort", "--assembly", "GRCh38", "--workers", "2"]
    assert main(args) == 0
    out = capsys.readouterr().out
    assert "partitions: 2 (0 committed by an earlier run)" in out  # chr21 and chr22, one 5 Mb partition each
    store = VariantStore(tmp_path / "data")
    try:
        assert store.count(VariantQuery()) == int(out.split(" variants written")[0].rsplit(" ", 1)[1])
    finally:
        store.close()


def test_partition_index_reaches_exactly_the_partitions_that_may_answer():
    from gateway.variants.partitions import Partition, PartitionIndex

    rng = random.Random(9)
    partitions = []
    for chrom in ("1", "2", "X"):
        for start in range(0, 200_000, 10_000):
            n = rng.choice([0, 3, 50])
            reach = start + rng.choice([10_000, 10_005, 40_000]) if n else 0  # some variants reach far past the end
            partitions.append(Partition(f"p/{chrom}-{start}.sqlite", chrom, start, start + 10_000, reach, n))
    index = PartitionIndex(partitions)
    for _ in range(2_000):
        chrom = rng.choice(["1", "2", "X", "Y", None])
        start = rng.randrange(0, 210_000)
        kind = rng.choice(["exact", "range", "bracket", "none"])
        q = {
            "exact": VariantQuery(reference_name=chrom, start=start),
            "range": VariantQuery(reference_name=chrom, start=start, end=start + rng.randrange(1, 60_000)),
            "bracket": VariantQuery(
                reference_name=chrom, start_range=(start, start + 5_000), end_range=(start, start + 9)
            ),
            "none": VariantQuery(reference_name=chrom),
        }[kind]
        assert index.reached_by(q) == [p for p in partitions if p.may_answer(q)], q


def test_a_call_set_shipped_per_chromosome_grows_by_added_regions(tmp_path):
    fresh_single = None
    plain = tmp_path / "cohort.vcf"
    _write_vcf(plain)
    lines = plain.read_text().splitlines()
    header = [line for line in lines if line.startswith("#")]
    files = {}
    for contig in ("chr21", "chr22"):
        part = tmp_path / f"{contig}.vcf"
        part.write_text("\n".join(header + [line for line in lines if line.startswith(contig + "\t")]) + "\n")
        files[contig] = _bgzip(part, tmp_path / f"{contig}.vcf.gz")
    data_dir = tmp_path / "data"
    common = {"dataset_id": "cohort", "data_dir": data_dir, "assembly": "GRCh38", "sample_map": SAMPLE_MAP}
    ingest_partitioned(files["chr21"], span=20_000, **common)
    with pytest.raises(VCFRejected, match="vcf-add-regions"):  # chr21 is held already: nothing changes
        ingest_partitioned(files["chr21"], span=5_000, add_regions=True, **common)
    added = ingest_partitioned(files["chr22"], span=20_000, add_regions=True, **common)
    assert added.records_read == 150
    grown = VariantStore(data_dir)
    try:
        fresh_single = VariantStore(tmp_path / "single")
        ingest_vcf(plain, dataset_id="cohort", data_dir=tmp_path / "single", assembly="GRCh38", sample_map=SAMPLE_MAP)
        fresh_single.refresh()
        _same_answers(fresh_single, grown)  # the same answers as the whole file in one version
    finally:
        grown.close()
        if fresh_single is not None:
            fresh_single.close()


def test_contigs_with_dashes_are_found_by_variant_id(tmp_path):
    lines = [
        "##fileformat=VCFv4.2",
        '##FORMAT=<ID=GT,Number=1,Type=String,Description="Genotype">',
        "##contig=<ID=HLA-A,length=3503>",
        "##contig=<ID=chr1,length=248956422>",
        "#CHROM\tPOS\tID\tREF\tALT\tQUAL\tFILTER\tINFO\tFORMAT\tS1\tS2",
        "chr1\t100\t.\tA\tG\t50\tPASS\t.\tGT\t0/1\t0/0",
        "HLA-A\t200\t.\tC\tT\t50\tPASS\t.\tGT\t1/1\t0/1",
        "HLA-A\t3000\t.\tG\tGA\t50\tPASS\t.\tGT\t0/0\t0/1",
    ]
    plain = tmp_path / "hla.vcf"
    plain.write_text("\n".join(lines) + "\n")
    vcf = _bgzip(plain, tmp_path / "hla.vcf.gz")
    ingest_partitioned(vcf, dataset_id="hla", data_dir=tmp_path / "data", assembly="GRCh38", span=1_000)
    store = VariantStore(tmp_path / "data")
    try:
        hits, total = store.search(VariantQuery(), limit=10)
        assert total == 3
        for hit in hits:
            assert store.get(hit.variant_id) == hit
            assert store.carriers(hit.variant_id)
    finally:
        store.close()


def test_an_individuals_page_decodes_only_the_units_it_falls_in(stores, monkeypatch):
    """`/individuals/{id}/g_variants` on a partitioned version: the units' counts come from stored set sizes (no set
    decoded), then only the units a page falls in are decoded; pages in order make up the whole list."""
    from gateway.variants import store as store_module

    single, _, _, _, data_dir, _ = stores
    parted = VariantStore(data_dir)
    decoded: list[int] = []
    real = store_module._carried_variants

    def counting(conn, idxs):
        decoded.append(len(idxs))
        return real(conn, idxs)

    monkeypatch.setattr(store_module, "_carried_variants", counting)
    try:
        version = parted._open("cohort")
        assert len(version.partitions) >= 4
        for individual in ("P1", "P7"):
            everything, total = single.variants_of_individual(individual, limit=10_000)
            decoded.clear()
            first, got_total = parted.variants_of_individual(individual, limit=1)
            assert got_total == total > 0 and first == everything[:1]
            assert decoded == [1]  # one unit decoded: the counts read set sizes only
            pages = []
            for skip in range(0, total, 7):
                decoded.clear()
                page, _ = parted.variants_of_individual(individual, skip=skip, limit=7)
                pages += page
                assert len(decoded) <= 7  # at most one unit per variant of the page (most hold several)
            assert pages == everything  # genomic order, as the single file pages
            assert parted.variants_of_individual(individual, skip=total, limit=5) == ([], total)
    finally:
        parted.close()


def test_a_local_cluster_leaves_the_callers_environment_as_it_was(monkeypatch):
    """Dask's nannies set MALLOC_TRIM_THRESHOLD_ (pre-spawn-environ) in the process that starts them; what the
    gateway spawns after a LocalCluster started must inherit the caller's environment, not Dask's."""
    import subprocess
    import sys

    from distributed import Client

    from gateway.variants.distributed_ingest import local_cluster

    monkeypatch.delenv("MALLOC_TRIM_THRESHOLD_", raising=False)
    monkeypatch.setenv("GATEWAY_ENV_PROBE", "kept")
    before = dict(os.environ)
    with local_cluster(1) as cluster, Client(cluster) as client:
        assert dict(os.environ) == before
        # Dask's setting still reaches its own workers.
        worker_setting = client.run(lambda: os.environ.get("MALLOC_TRIM_THRESHOLD_"))  # read there, not pickled
        assert list(worker_setting.values()) == ["65536"]
        probe = "import os; print(os.environ.get('MALLOC_TRIM_THRESHOLD_'), os.environ.get('GATEWAY_ENV_PROBE'))"
        child = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
        assert child.stdout.split() == ["None", "kept"]
