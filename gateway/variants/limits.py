"""Bounds on what one VCF may make the reader do, checked before htslib or numpy see the data.

A hostile file is cheap to make and expensive to read: a 1e6-sample header makes htslib and
the genotype decoder allocate per sample, a 1 GB INFO field is one line read whole into memory,
a gzip bomb inflates ~1000:1. The reader checks the header (line length, sample count) before
htslib parses it, and every record line and the inflation of compressed input as it reads.
Each bound can be raised through the environment (GATEWAY_VCF_MAX_SAMPLES, …) for a node
that really holds such files; the child process's memory limit stays the last defence.
"""

from __future__ import annotations

import os

from gateway.issues import Issue


def _env_int(name: str, default: int) -> int:
    try:
        return int(os.environ.get(name, default))
    except ValueError:
        return default


MAX_SAMPLES = _env_int("GATEWAY_VCF_MAX_SAMPLES", 200_000)
MAX_LINE_BYTES = _env_int("GATEWAY_VCF_MAX_LINE_BYTES", 32 * 2**20)  # 200k samples x ~150 bytes of FORMAT
MAX_HEADER_BYTES = _env_int("GATEWAY_VCF_MAX_HEADER_BYTES", 64 * 2**20)
# Decompressed : compressed. Real VCFs stay below ~60 (1000 Genomes genotypes); gzip peaks near 1032.
MAX_INFLATION = _env_int("GATEWAY_VCF_MAX_INFLATION", 250)
INFLATION_GRACE = 2 * 2**20  # a small file may inflate freely: the ratio is judged past this many bytes


def line_issue(length: int, where: str) -> Issue | None:
    if length > MAX_LINE_BYTES:
        return Issue.error(
            "vcf-line-too-long", f"a line longer than {MAX_LINE_BYTES // 2**20} MB (limit of this node)", where
        )
    return None


def header_issue(total_bytes: int, where: str) -> Issue | None:
    if total_bytes > MAX_HEADER_BYTES:
        return Issue.error("vcf-header-too-large", f"the header exceeds {MAX_HEADER_BYTES // 2**20} MB", where)
    return None


def samples_issue(count: int, where: str) -> Issue | None:
    if count > MAX_SAMPLES:
        return Issue.error(
            "vcf-too-many-samples", f"{count:,} samples; this node reads at most {MAX_SAMPLES:,} per file", where
        )
    return None


def inflation_issue(decompressed: int, compressed: int, where: str) -> Issue | None:
    """A gzip/BGZF stream that inflates beyond any real VCF (a decompression bomb)."""
    if decompressed > INFLATION_GRACE and decompressed > MAX_INFLATION * max(compressed, 1):
        return Issue.error(
            "vcf-decompression-bomb",
            f"the compressed data inflates more than {MAX_INFLATION}:1 ({decompressed:,} bytes from {compressed:,})",
            where,
        )
    return None
