"""How a partition task works (what makes partitioned ingest scale): it seeks to its region through the tabix
index instead of reading the file from its start, the local ingest starts one parsing child for all partitions,
and a parse is not slowed by the allocator setting Dask gives its workers."""

from __future__ import annotations

import os
import random
import struct
import subprocess
import sys
import textwrap

import pysam
import pytest

from gateway.variants.distributed_ingest import (
    SampleLinks,
    _read_header,
    _run_partitions,
    ensure_index,
    ingest_partition,
    plan_regions,
    tabix_windows,
)
from gateway.variants.ingest import VCFRejected, ingest_vcf
from gateway.variants.query import VariantQuery
from gateway.variants.reader import ReadOptions
from gateway.variants.store import VariantStore

SAMPLES = [f"S{i:03d}" for i in range(150)]


def _wide_vcf(tmp_path, records: int = 3000, samples: list[str] = SAMPLES):
    """One contig, many BGZF blocks (≈ 600 bytes a record, 64 KB a block), seeded genotypes; no sample columns
    with `samples=[]` (a sites-only file, read by the reader's block path)."""
    rng = random.Random(11)
    columns = "#CHROM\tPOS\tID\tREF\tALT\tQUAL\tFILTER\tINFO"
    lines = [
        "##fileformat=VCFv4.2",
        '##FORMAT=<ID=GT,Number=1,Type=String,Description="Genotype">',
        "##contig=<ID=chr22,length=50818468>",
        columns + ("\tFORMAT\t" + "\t".join(samples) if samples else ""),
    ]
    pos = 100_000
    for _ in range(records):
        pos += rng.randint(1, 60)
        ref, alt = rng.sample("ACGT", 2)
        calls = "\t".join(rng.choice(("0|0", "0|0", "0|1", "1|0", "1|1")) for _ in samples)
        lines.append(f"chr22\t{pos}\t.\t{ref}\t{alt}\t50\tPASS\t." + (f"\tGT\t{calls}" if samples else ""))
    plain = tmp_path / "wide.vcf"
    plain.write_text("\n".join(lines) + "\n")
    vcf = tmp_path / "wide.vcf.gz"
    pysam.tabix_compress(str(plain), str(vcf), force=True)
    return vcf


def _blocks(data: bytes) -> list[tuple[int, int]]:
    """(offset, size) of every BGZF block (BSIZE is in the gzip extra field)."""
    blocks, at = [], 0
    while at < len(data):
        size = struct.unpack_from("<H", data, at + 16)[0] + 1
        blocks.append((at, size))
        at += size
    return blocks


def _options(tmp_path) -> ReadOptions:
    return ReadOptions(dataset_id="wide", data_dir=tmp_path / "data", assembly="GRCh38")


def test_a_partition_reads_from_its_index_offset_and_never_the_records_before(tmp_path):
    vcf = _wide_vcf(tmp_path)
    parts = tmp_path / "parts"
    parts.mkdir()
    index = ensure_index(vcf, parts)
    regions = plan_regions(vcf, index, _read_header(vcf), span=40_000)
    assert len(regions) >= 3
    with pysam.TabixFile(str(vcf), index=str(index)) as tbx:  # the linear index as htslib reads it
        first_line = next(tbx.fetch(regions[-1].contig, regions[-1].start, regions[-1].end))
    last = regions[-1]
    assert tabix_windows(index)["chr22"][last.start >> 14] == last.offset > 0
    # Destroy every block between the header's and the last region's: only a reader that seeks survives.
    data = bytearray(vcf.read_bytes())
    doomed = [(at, size) for at, size in _blocks(bytes(data))[1:] if at + size <= last.offset >> 16]
    assert len(doomed) >= 5
    for at, size in doomed:
        data[at + 18 : at + size - 8] = b"\xff" * (size - 26)  # deflate block type 3: invalid
    vcf.write_bytes(bytes(data))
    with pytest.raises(VCFRejected, match="vcf-compression"):
        ingest_vcf(vcf, dataset_id="whole", data_dir=tmp_path / "data", assembly="GRCh38")
    result = ingest_partition(
        str(vcf), last, str(parts), _options(tmp_path), SampleLinks([(None, None)] * len(SAMPLES))
    )
    assert "rejected" not in result and result["records_read"] > 100
    assert not list(parts.glob("*.vcf"))  # no plain copy of the region was written
    expected = sum(
        1 for line in pysam.TabixFile(str(vcf), index=str(index)).fetch(last.contig, last.start, last.end)
        if last.start < int(line.split("\t")[1]) <= last.end
    )  # fmt: skip
    assert result["records_read"] == expected
    assert int(first_line.split("\t")[1]) > last.start


def test_the_local_ingest_parses_every_partition_in_one_child(tmp_path):
    vcf = _wide_vcf(tmp_path, records=1200)
    parts = tmp_path / "parts"
    parts.mkdir()
    index = ensure_index(vcf, parts)
    regions = plan_regions(vcf, index, _read_header(vcf), span=10_000)
    assert len(regions) >= 4
    results = _run_partitions(None, vcf, regions, parts, _options(tmp_path), [(None, None)] * len(SAMPLES), None)
    pids = {r["pid"] for r in results}
    assert len(pids) == 1 and os.getpid() not in pids  # one child, started once, apart from the caller
    assert sum(r["records_read"] for r in results) == 1200


@pytest.mark.parametrize("samples", [SAMPLES, []], ids=["genotypes", "sites-only"])
def test_partitions_store_what_the_whole_file_stores(tmp_path, samples):
    from gateway.variants.distributed_ingest import ingest_partitioned

    vcf = _wide_vcf(tmp_path, records=1500, samples=samples)
    ingest_vcf(vcf, dataset_id="whole", data_dir=tmp_path / "single", assembly="GRCh38")
    summary = ingest_partitioned(vcf, dataset_id="whole", data_dir=tmp_path / "parted", assembly="GRCh38", span=7_000)
    assert len(summary.partitions) >= 5
    single, parted = VariantStore(tmp_path / "single"), VariantStore(tmp_path / "parted")
    try:
        everything = VariantQuery()
        assert parted.count(everything) == single.count(everything) == 1500
        first, _ = single.search(everything, limit=2000)
        again, _ = parted.search(everything, limit=2000)
        assert [v.variant_id for v in first] == [v.variant_id for v in again]
        for hit in first[::50] if samples else ():
            one = VariantQuery(variant_ids=(hit.variant_id,))
            assert parted.carrier_count(one) == single.carrier_count(one) > 0
    finally:
        single.close()
        parted.close()


_FAULTS = textwrap.dedent(
    """
    import resource
    from gateway.variants.allocator import kept_freed_memory

    def faults(rounds=300):
        before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
        for _ in range(rounds):
            block = bytearray(1 << 20)  # a wide record's worth of temporaries, freed again
            del block
        return resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before

    plain = faults()
    with kept_freed_memory():
        kept = faults()
    print(plain, kept, faults())
    """
)


def test_a_parse_keeps_freed_memory_under_the_dask_worker_setting():
    """Dask's nanny starts workers with MALLOC_TRIM_THRESHOLD_=65536: every freed MB goes back to the system and
    is faulted in again. Inside kept_freed_memory it is reused; after it, the worker's setting holds again."""
    env = {**os.environ, "MALLOC_TRIM_THRESHOLD_": "65536"}
    out = subprocess.run([sys.executable, "-c", _FAULTS], env=env, capture_output=True, text=True, check=True)
    plain, kept, after = map(int, out.stdout.split())
    assert plain > 300 * 200  # ≈ 256 page faults per freed and reallocated MB
    assert kept < plain / 20
    assert after > 300 * 200


def test_tasks_are_ranked_largest_first_by_their_compressed_bytes(tmp_path):
    """Dask runs the highest priority first: the largest region gets the highest rank, so the last tasks to start
    are the shortest and the workers end together."""
    from gateway.variants.distributed_ingest import _size_ranks
    from gateway.variants.reader import Region

    vcf = tmp_path / "file.vcf.gz"
    vcf.write_bytes(b"\0" * 1000)
    # Regions start at compressed offsets 0, 100, 700 (virtual offsets: << 16): sizes 100, 600, 300 (to the end).
    regions = [Region("chr1", i * 10, (i + 1) * 10, at << 16) for i, at in enumerate((0, 100, 700))]
    assert _size_ranks(vcf, regions) == [0, 2, 1]
