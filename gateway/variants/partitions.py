"""Region partitions of a dataset version: what the manifest of a partitioned version lists, and which partitions a
query can reach.

A partitioned version (written by distributed_ingest.py) is a manifest file named by CURRENT like any version
(meta, samples and the `partitions` table) plus one immutable variant file per region partition, in a folder
beside it. Every record belongs to the partition whose span holds its POS, so the partitions of one version hold
disjoint sets of variants; a variant may reach past its partition's end (an indel, an SV), which `max_end` records.

Sample batches: a version may hold several batches of samples (a new VCF of new samples added with `--add-samples`
without re-ingesting the others). Each unit then is one (region partition, sample batch): its own immutable file
with the batch's samples numbered from 0; the manifest numbers all samples of the version, batch after batch, and
the `batches` table gives each batch's first manifest index. Within one batch the partitions hold disjoint variants;
across batches the same variant may be in several units (batched.py merges them). A manifest without a `batches`
table (written before batches existed) is one batch holding every sample.
"""

from __future__ import annotations

import sqlite3
from bisect import bisect_left, bisect_right
from dataclasses import dataclass
from itertools import accumulate
from pathlib import Path

from .query import VariantQuery

PARTITIONS_SCHEMA = """CREATE TABLE IF NOT EXISTS partitions(file TEXT PRIMARY KEY, chrom TEXT NOT NULL,
    start INTEGER NOT NULL, end INTEGER NOT NULL, max_end INTEGER NOT NULL, variants INTEGER NOT NULL,
    batch INTEGER NOT NULL DEFAULT 0)"""
BATCHES_SCHEMA = """CREATE TABLE IF NOT EXISTS batches(batch INTEGER PRIMARY KEY, first INTEGER NOT NULL,
    samples INTEGER NOT NULL, source TEXT NOT NULL)"""


@dataclass(frozen=True)
class Partition:
    file: str  # relative to the dataset's folder
    chrom: str  # normalised chromosome name
    start: int  # 0-based span [start, end) of the variants' starts
    end: int
    max_end: int  # the largest variant end inside (0 when empty)
    variants: int
    batch: int = 0  # the sample batch whose samples the unit holds

    def may_answer(self, q: VariantQuery) -> bool:
        """False only when no variant of this partition can match `q` (a cheap, conservative test)."""
        if q.reference_name is not None and q.reference_name != self.chrom:
            return False
        if not self.variants:
            return False
        if q.start is not None and q.end is None and not self.start <= q.start < self.end:
            return False  # an exact start lies in one partition
        if q.start is not None and q.end is not None and not (self.start < q.end and self.max_end > q.start):
            return False
        if q.start_range is not None and not (self.start <= q.start_range[1] and q.start_range[0] < self.end):
            return False
        return not (q.end_range is not None and self.max_end < q.end_range[0])


def read_partitions(conn: sqlite3.Connection, directory: Path) -> list[Partition]:
    """The partitions a version file lists, in their order ([] for a single-file version)."""
    flag = conn.execute("SELECT value FROM meta WHERE key = 'partitioned'").fetchone()
    if flag is None or flag[0] != "1":
        return []
    columns = {row[1] for row in conn.execute("PRAGMA table_info(partitions)")}
    batch = "batch" if "batch" in columns else "0"
    rows = conn.execute(f"SELECT file, chrom, start, end, max_end, variants, {batch} FROM partitions ORDER BY rowid")
    return [Partition(*row) for row in rows.fetchall()]


@dataclass(frozen=True)
class Batch:
    batch: int
    first: int  # manifest index of the batch's sample 0
    samples: int
    source: str  # the VCF it was read from


def read_batches(conn: sqlite3.Connection) -> list[Batch]:
    """The sample batches of a partitioned version's manifest, in order ([] when it has no `batches` table: then
    the one batch is every sample)."""
    if conn.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'batches'").fetchone() is None:
        return []
    return [Batch(*row) for row in conn.execute("SELECT batch, first, samples, source FROM batches ORDER BY batch")]


def partition_dirs(conn: sqlite3.Connection) -> set[str]:
    """The folders (relative to the dataset's) that a version file's partitions live in."""
    return {p.file.split("/", 1)[0] for p in read_partitions(conn, Path("."))}


class PartitionIndex:
    """The partitions of one version by chromosome, so that routing a query costs O(log n + partitions reached)
    rather than a test of every partition (a national call set has thousands)."""

    def __init__(self, partitions: list[Partition]):
        self.partitions = partitions
        by_chrom: dict[str, list[Partition]] = {}
        for partition in partitions:
            by_chrom.setdefault(partition.chrom, []).append(partition)
        self._chroms = {}
        for chrom, parts in by_chrom.items():
            parts.sort(key=lambda p: p.start)
            starts = [p.start for p in parts]
            reach = list(accumulate((p.max_end for p in parts), max))  # non-decreasing: bisectable
            self._chroms[chrom] = (parts, starts, reach)

    def reached_by(self, q: VariantQuery) -> list[Partition]:
        if q.reference_name is None:
            return [p for p in self.partitions if p.may_answer(q)]
        found = self._chroms.get(q.reference_name)
        if found is None:
            return []
        parts, starts, reach = found
        lo, hi = 0, len(parts)
        if q.start is not None and q.end is None:  # exact start: the one partition whose span holds it
            lo = max(bisect_right(starts, q.start) - 1, 0)
            hi = lo + 1
        elif q.start is not None and q.end is not None:  # overlap: starts before the end, reach past the start
            hi = bisect_left(starts, q.end)
            lo = bisect_right(reach, q.start)
        return [p for p in parts[lo:hi] if p.may_answer(q)]

    def chromosomes(self) -> list[str]:
        return list(self._chroms)

    def at(self, chrom: str, position: int) -> Partition | None:
        """The partition whose span holds a variant start `position` (0-based) on `chrom`, by bisection."""
        found = self._chroms.get(chrom)
        if found is None:
            return None
        parts, starts, _ = found
        i = bisect_right(starts, position) - 1
        return parts[i] if i >= 0 and parts[i].start <= position < parts[i].end else None
