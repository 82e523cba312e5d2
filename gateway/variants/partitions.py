"""Region partitions of a dataset version: what the manifest of a partitioned version lists, and which partitions a
query can reach.

A partitioned version (written by distributed_ingest.py) is a manifest file named by CURRENT like any version
(meta, samples and the `partitions` table) plus one immutable variant file per region partition, in a folder
beside it. Every record belongs to the partition whose span holds its POS, so the partitions of one version hold
disjoint sets of variants; a variant may reach past its partition's end (an indel, an SV), which `max_end` records.
"""

from __future__ import annotations

import sqlite3
from bisect import bisect_left, bisect_right
from dataclasses import dataclass
from itertools import accumulate
from pathlib import Path

from .query import VariantQuery

PARTITIONS_SCHEMA = """CREATE TABLE IF NOT EXISTS partitions(file TEXT PRIMARY KEY, chrom TEXT NOT NULL,
    start INTEGER NOT NULL, end INTEGER NOT NULL, max_end INTEGER NOT NULL, variants INTEGER NOT NULL)"""


@dataclass(frozen=True)
class Partition:
    file: str  # relative to the dataset's folder
    chrom: str  # normalised chromosome name
    start: int  # 0-based span [start, end) of the variants' starts
    end: int
    max_end: int  # the largest variant end inside (0 when empty)
    variants: int

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
    rows = conn.execute("SELECT file, chrom, start, end, max_end, variants FROM partitions ORDER BY rowid").fetchall()
    return [Partition(*row) for row in rows]


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
