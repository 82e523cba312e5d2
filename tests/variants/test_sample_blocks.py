"""The reverse index is written in blocks of samples (memory flat in the number of samples): the blocks must not
show in the store. A file read with blocks of 8 samples gives the same tables as one read in a single block."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from gateway.variants import layout
from gateway.variants.reader import ReadOptions, read_vcf
from tests.variants.vcfgen import write_vcf

TABLES = {
    "sample_variants": "SELECT sample, chunk, vids FROM sample_variants ORDER BY sample, chunk",
    "sample_called": "SELECT sample, chunk, alleles, vids FROM sample_called ORDER BY sample, chunk, alleles",
    "carriers": "SELECT vid, samples, zyg FROM carriers ORDER BY vid",
}


def _tables(vcf: Path, data_dir: Path) -> dict[str, list]:
    result = read_vcf(vcf, ReadOptions(dataset_id="blocks", data_dir=data_dir, assembly="GRCh38"))
    conn = sqlite3.connect(result.build_path)
    try:
        return {name: conn.execute(sql).fetchall() for name, sql in TABLES.items()}
    finally:
        conn.close()


def test_blocks_of_samples_write_the_same_reverse_index(tmp_path, monkeypatch):
    vcf = write_vcf(tmp_path / "wide.vcf", seed=7, n_records=400, n_samples=53)  # 53: a last block of 5
    monkeypatch.setattr(layout, "CHUNK_VARIANTS", 64)  # several chunks, each written in blocks
    whole = _tables(vcf, tmp_path / "whole")
    monkeypatch.setattr(layout, "SAMPLE_BLOCK", 8)
    blocks = _tables(vcf, tmp_path / "blocks")
    assert whole["sample_called"], "the generator writes missing and haploid calls"
    assert len({chunk for _, chunk, _ in whole["sample_variants"]}) > 3
    assert blocks == whole
