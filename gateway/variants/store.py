"""The variant store: one immutable SQLite file per dataset version, queried with raw sqlite3.

Every answer comes from indexed tables filled at ingest (allele counts, carrier lists,
the per-sample reverse index): no query path decodes a genotype or scans a dataset.
See layout.py for the files and schema.
"""

from __future__ import annotations

import os
import resource
import secrets
import shutil
import sqlite3
import threading
import time
from array import array
from bisect import bisect_left, bisect_right
from collections import OrderedDict
from collections.abc import Iterator
from functools import lru_cache
from pathlib import Path

import numpy as np

from . import pending
from .batched import BatchedUnits, BatchedVersion, batches_of, erased_by_batch
from .layout import (
    CHUNK_VARIANTS,
    DATASET_ID,
    HEMI,
    HET,
    HOM,
    LONG_SPAN,
    ZYGOSITY_GENO,
    VersionMoved,
    check_based_on,
    cleanup_dataset_dir,
    current_version,
    dataset_dir,
    decode_set,
    encode_set,
    pack_codes,
    pointer_lock,
    sweep_unreferenced,
    switch_pointer,
    unpack_codes,
)
from .pages import codes_page, positions_of, set_page, set_size
from .partitions import Partition, PartitionIndex, read_batches, read_partitions
from .protocol import DatasetSamples, SampleRow
from .query import Carrier, VariantHit, VariantQuery

_COLUMNS = "id, vkey, chrom, start, end, ref, alt, vclass, length, ac, an, carriers, genes, aa, effects, ids"
_MAX_OPEN_PER_THREAD = 64  # open dataset connections kept per thread (least recently opened closed first)
_STABLE_DIR_S = 1.0  # a directory listing is reused once the directory has not changed for this long
_MAX_OPEN_PARTITIONS = 1024  # open partition files per thread at most (a genome in 5 Mb partitions: ~620)
_FD_SHARE = 8  # a thread's partition pool takes at most this fraction of the process's file-descriptor limit
_SUMMARY_MAX_VARIANTS = 16_384  # partitions this small keep their variants' starts and ends in memory once read
_SUMMARY_BUDGET = 1 << 20  # starts and ends (8 bytes each) kept per open version and thread: at most 16 MB
_CARRIED_CACHE = 256  # people whose per-unit variant counts an open partitioned version keeps (per thread)
_POINTER_RECHECK_S = 0.5  # how stale a reader may be after another process switched a version


def variant_id(dataset_id: str, assembly: str, vkey: str) -> str:
    return f"{dataset_id}:{assembly}:{vkey}"


def split_variant_id(value: str) -> tuple[str, str, str] | None:
    parts = value.split(":", 2)
    if len(parts) != 3 or not DATASET_ID.match(parts[0]):
        return None
    return parts[0], parts[1], parts[2]


def _split(text: str | None) -> tuple[str, ...]:
    return tuple(text.split("|")) if text else ()


def _glob(bases: str) -> tuple[str, bool]:
    """Beacon's "N" matches any base: turn it into a GLOB pattern (True) or keep an exact match (False)."""
    upper = bases.upper()
    if "N" in upper and not upper.startswith("<"):
        escaped = upper.replace("[", "[[]").replace("*", "[*]").replace("?", "[?]")
        return escaped.replace("N", "?"), True
    return upper if not upper.startswith("<") else bases, False


def build_where(q: VariantQuery) -> list[tuple[str, list]]:
    """The SQL conditions (over table `variants`) for a query inside one dataset, with their parameters.

    More than one condition means disjoint branches whose rows together answer the query.
    """
    clauses: list[str] = []
    params: list = []
    range_branches: list[tuple[str, list]] = []
    if q.reference_name is not None:
        clauses.append("chrom = ?")
        params.append(q.reference_name)
    if q.start is not None and q.end is None:
        clauses.append("start = ?")
        params.append(q.start)
    elif q.start is not None and q.end is not None:
        # Overlap of [start, end), in three disjoint branches so that no query scans a chromosome and the bulk of
        # the rows is counted without a per-row test: short variants starting inside the range (end > start is
        # guaranteed at ingest), short ones starting at most LONG_SPAN before it, and long ones (own partial index).
        range_branches = [
            (f"start >= ? AND start < ? AND end - start <= {LONG_SPAN}", [q.start, q.end]),
            (
                f"start >= ? AND start < ? AND end > ? AND end - start <= {LONG_SPAN}",
                [q.start - LONG_SPAN, min(q.start, q.end), q.start],
            ),
            (f"end - start > {LONG_SPAN} AND start < ? AND end > ?", [q.end, q.start]),
        ]
    elif q.end is not None:
        clauses.append("end = ?")
        params.append(q.end)
    if q.start_range is not None:
        clauses.append("start BETWEEN ? AND ?")
        params += list(q.start_range)
    if q.end_range is not None:
        clauses.append("end BETWEEN ? AND ?")
        params += list(q.end_range)
    for column, bases in (("ref", q.reference_bases), ("alt", q.alternate_bases)):
        if bases:
            pattern, wildcard = _glob(bases)
            clauses.append(f"{column} GLOB ?" if wildcard else f"{column} = ?")
            params.append(pattern)
    if q.variant_types:
        clauses.append(f"vclass IN ({','.join('?' * len(q.variant_types))})")
        params += list(q.variant_types)
    if q.min_length is not None:
        clauses.append("length >= ?")
        params.append(q.min_length)
    if q.max_length is not None:
        clauses.append("length <= ?")
        params.append(q.max_length)
    if q.gene_id or q.aa_change:
        sub = "SELECT vid FROM annotations WHERE "
        conds, sub_params = [], []
        if q.gene_id:
            conds.append("gene = ?")
            sub_params.append(q.gene_id)
        if q.aa_change:
            conds.append("aa = ?")
            sub_params.append(q.aa_change)
        clauses.append(f"id IN ({sub}{' AND '.join(conds)})")
        params += sub_params
    common = " AND ".join(clauses)
    if not range_branches:
        return [(common or "1", params)]
    # The chromosome goes first in each branch so the (chrom, start, ...) indexes serve it.
    return [(f"{common} AND {cond}" if common else cond, params + extra) for cond, extra in range_branches]


def _carried_variants(conn: sqlite3.Connection, sample_idxs: list[int]) -> np.ndarray:
    """Ascending ids of the variants any of these samples carries, from the per-sample reverse index."""
    rows = conn.execute(
        f"SELECT chunk, vids FROM sample_variants WHERE sample IN ({','.join('?' * len(sample_idxs))}) ORDER BY chunk",
        sample_idxs,
    ).fetchall()
    if not rows:
        return np.empty(0, dtype=np.int64)
    vids = np.concatenate([decode_set(blob).astype(np.int64) + chunk * CHUNK_VARIANTS + 1 for chunk, blob in rows])
    return np.unique(vids) if len(sample_idxs) > 1 else vids


def _carried_total(conn: sqlite3.Connection, sample_idxs: list[int]) -> int:
    """How many variants any of these samples carries in one file: one sample's from its stored set sizes (nothing
    decoded), several samples' from their union."""
    if len(sample_idxs) > 1:
        return len(_carried_variants(conn, sample_idxs))
    rows = conn.execute("SELECT vids FROM sample_variants WHERE sample = ?", sample_idxs)
    return sum(set_size(blob) for (blob,) in rows)


def _page_of(ds: _Dataset, vids: np.ndarray, offset: int, need: int) -> list[VariantHit]:
    """The hits of carried variants `vids` (ascending ids of one file) offset … offset+need-1."""
    page = vids[offset : offset + need].tolist() if need > 0 else []
    if not page:
        return []
    rows = ds.conn.execute(
        f"SELECT {_COLUMNS} FROM variants WHERE id IN ({','.join('?' * len(page))}) ORDER BY id", page
    ).fetchall()
    return [ds.hit(r) for r in rows]


def partition_pool_size() -> int:
    """How many partition files one thread keeps open: bounded by the file-descriptor limit (each open unit holds
    one descriptor), so that several threads, datasets and the process's sockets still fit under it."""
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    budget = _MAX_OPEN_PARTITIONS if soft == resource.RLIM_INFINITY else soft // _FD_SHARE
    return max(4, min(_MAX_OPEN_PARTITIONS, budget))


class _PartitionPool:
    """One thread's open partition files, least recently used closed first. Opening a unit costs a file open and a
    schema read (~100 µs); a query that reaches a unit already open pays neither. Keyed by the file's path text."""

    __slots__ = ("capacity", "units")

    def __init__(self, capacity: int):
        self.capacity = max(2, capacity)  # the unit in use is never the least recently used one
        self.units: OrderedDict[str, _Dataset] = OrderedDict()

    def open(self, key: str, open_unit) -> _Dataset:
        while len(self.units) >= self.capacity:
            self.units.popitem(last=False)[1].conn.close()
        unit = self.units[key] = open_unit()
        return unit

    def close_keys(self, keys: list[str]) -> None:
        for key in keys:
            unit = self.units.pop(key, None)
            if unit is not None:
                unit.conn.close()


class _Dataset:
    """An open version of one dataset (per thread)."""

    __slots__ = (
        "_carried",
        "_held",
        "_index",
        "_live",
        "_pending",
        "_pool",
        "_prefix",
        "_samples_info",
        "_sites",
        "_summaries",
        "_summary_room",
        "_totals",
        "assembly",
        "batched",
        "batches",
        "conn",
        "dataset_id",
        "dir",
        "observed",
        "partitions",
        "samples",
        "version",
    )

    def __init__(
        self,
        dataset_id: str,
        path: Path,
        version: str,
        samples: list | None = None,
        pool: _PartitionPool | None = None,
    ):
        self.dataset_id = dataset_id
        self.version = version
        self.dir = path.parent
        self._prefix = f"{self.dir}{os.sep}"
        self.conn = sqlite3.connect(f"file:{path}?mode=ro&immutable=1", uri=True, check_same_thread=False)
        self.conn.execute("PRAGMA cache_size=-2048")  # small per-dataset cache: memory must not grow with datasets
        self.assembly = self.conn.execute("SELECT value FROM meta WHERE key='assembly'").fetchone()[0]
        self.samples: list[tuple[str, str | None, str | None]] | None = samples
        self.observed = _observed(self)
        # A partitioned version (partitions.py): this file is its manifest (meta, samples, the partition list);
        # the variants live in one immutable file per region partition, opened when a query reaches it.
        self.partitions: list[Partition] = read_partitions(self.conn, self.dir)
        self._index = PartitionIndex(self.partitions) if self.partitions else None
        # Several sample batches (batched.py): units of different batches hold the same variants; answers merge.
        self.batches = read_batches(self.conn) if self.partitions else []
        self.batched = BatchedVersion(self, _COLUMNS, _carried_variants) if len(self.batches) > 1 else None
        # Erasures not yet purged from the units (pending.py): those units are read through the delta.
        self._pending = pending.read_units(self.conn) if self.partitions else {}
        self._pool = pool if pool is not None else _PartitionPool(partition_pool_size())
        self._totals: dict[str, int] = {}  # partition file -> observed variants (files are immutable)
        self._summaries: dict[str, tuple[array, array] | None] = {}  # partition file -> sorted starts, sorted ends
        self._sites: dict[str, _Sites | None] = {}  # partition file -> its carried variants by start
        self._summary_room = _SUMMARY_BUDGET
        self._held: dict[str, list[int]] | None = None  # individual -> sample indexes
        self._carried: OrderedDict[tuple[int, ...], array] = OrderedDict()  # samples -> running totals per unit
        self._samples_info: DatasetSamples | None = None
        self._live: int | None = None

    def close(self) -> None:
        self._pool.close_keys([self._unit_key(p) for p in self.partitions])
        self.conn.close()

    def _unit_key(self, partition: Partition) -> str:
        """A unit's key in the thread's pool: its path, and this version for a unit read through a pending erasure's
        delta (the same file is read plainly by the version before, and differently by a later one)."""
        path = self._prefix + partition.file
        return f"{path}\0{self.version}" if partition.file in self._pending else path

    def _part(self, partition: Partition) -> _Dataset:
        key = self._unit_key(partition)
        units = self._pool.units
        unit = units.get(key)
        if unit is not None:
            units.move_to_end(key)
            return unit
        return self._pool.open(key, lambda: self._open_unit(partition))

    def _open_unit(self, partition: Partition) -> _Dataset:
        path = Path(self._prefix + partition.file)
        unit = _Dataset(self.dataset_id, path, self.version, self.sample_table(), self._pool)
        erased = self._pending.get(partition.file)
        if erased is not None:
            pending.overlay(unit.conn, self.conn, partition.file, erased)
        return unit

    def reached(self, q: VariantQuery) -> list[Partition]:
        """The partitions whose variants could answer `q` (bisection per chromosome, partitions.PartitionIndex)."""
        return self._index.reached_by(q) if self._index is not None else []

    def units(self, q: VariantQuery | None = None) -> Iterator[_Dataset]:
        """The files holding this version's variants (itself when not partitioned); with `q`, only the partitions
        whose variants could answer it (same chromosome, and for positional queries an overlapping span)."""
        if not self.partitions:
            yield self
            return
        for partition in self.partitions if q is None else self.reached(q):
            yield self._part(partition)

    def unit_at(self, chrom: str, start: int) -> _Dataset | BatchedUnits | None:
        """The file that holds variants starting at `start` (0-based) on `chrom` (the files, over sample batches)."""
        if self._index is None:
            return self
        if self.batched is not None:
            found = self.batched.at(chrom, start)
            return found if found.units else None
        partition = self._index.at(chrom, start)
        return self._part(partition) if partition is not None else None

    def observed_total(self, partition: Partition) -> int:
        """The observed variants of one partition, counted once (a unit never changes)."""
        total = self._totals.get(partition.file)
        if total is None:
            unit = self._part(partition)
            total = self._totals[partition.file] = unit.conn.execute(
                f"SELECT count(*) FROM variants WHERE 1{unit.observed}"
            ).fetchone()[0]
        return total

    def range_total(self, partition: Partition, start: int, end: int) -> int | None:
        """Observed variants of one partition overlapping [start, end), answered from memory; None: ask SQL.

        A variant overlaps when it starts before `end` and ends after `start`; one that ends at or before `start`
        also starts before `end`, so the count is #(starts < end) - #(ends <= start): two bisections over the
        partition's sorted starts and ends. Small partitions keep both (read once: units are immutable); a
        partition wholly inside the range needs only its total.
        """
        summary = self._summary(partition)
        if summary is not None:
            starts, ends = summary
            return bisect_left(starts, end) - bisect_right(ends, start)
        if start <= partition.start and partition.end <= end:
            return self.observed_total(partition)
        return None

    def _summary(self, partition: Partition) -> tuple[array, array] | None:
        if partition.file in self._summaries:
            return self._summaries[partition.file]
        summary = None
        if partition.variants <= min(_SUMMARY_MAX_VARIANTS, self._summary_room):
            unit = self._part(partition)
            rows = unit.conn.execute(f"SELECT start, end FROM variants WHERE 1{unit.observed} ORDER BY start")
            starts, ends = array("q"), array("q")
            for row_start, row_end in rows:
                starts.append(row_start)
                ends.append(row_end)
            summary = (starts, array("q", sorted(ends)))
            self._summary_room -= 2 * len(starts)
            self._totals[partition.file] = len(starts)
        self._summaries[partition.file] = summary
        return summary

    def carried_at(self, partition: Partition, start: int, ref: str | None, alt: str | None) -> list | None:
        """(variant id, carrier count) of the observed, carried variants of one partition starting at `start` with
        these exact bases (None: any), answered from memory; None: ask SQL (a partition too large to keep).

        An exact carrier count over tiny partitions otherwise pays one statement on a connection whose caches are
        cold (a thousand partitions take turns); small partitions keep their carried variants' starts, ids, counts
        and alleles (read once: units are immutable; one-base alleles are shared string objects)."""
        sites = self._sites.get(partition.file, False)
        if sites is False:
            sites = None
            if partition.variants <= min(_SUMMARY_MAX_VARIANTS, self._summary_room):
                unit = self._part(partition)
                rows = unit.conn.execute(
                    f"SELECT start, id, carriers, ref, alt FROM variants WHERE carriers > 0{unit.observed} ORDER BY start"
                ).fetchall()
                sites = _Sites(rows)
                self._summary_room -= 5 * len(rows)
            self._sites[partition.file] = sites
        if sites is None:
            return None
        return sites.at(start, ref, alt)

    def carried_counts(self, idxs: list[int]) -> array:
        """Running totals, unit by unit in manifest order, of the variants these samples carry (the last is the
        total): one statement per unit reading stored set sizes, once per person while the version is open (a
        page further on then opens only the units it falls in)."""
        key = tuple(idxs)
        ends = self._carried.get(key)
        if ends is not None:
            self._carried.move_to_end(key)
            return ends
        ends, total = array("q"), 0
        for partition in self.partitions:
            if partition.variants:
                total += _carried_total(self._part(partition).conn, idxs)
            ends.append(total)
        if len(self._carried) >= _CARRIED_CACHE:
            self._carried.popitem(last=False)
        self._carried[key] = ends
        return ends

    def sample_table(self) -> list[tuple[str, str | None, str | None]]:
        if self.samples is None:
            rows = self.conn.execute(
                "SELECT idx, name, individual_id, biosample_id FROM samples ORDER BY idx"
            ).fetchall()
            table: list = [("", None, None)] * (rows[-1][0] + 1 if rows else 0)
            for idx, name, individual, biosample in rows:
                table[idx] = (name, individual, biosample)
            self.samples = table
        return self.samples

    def samples_of(self, individual_id: str) -> list[int]:
        """The sample indexes linked to an individual (from the sample table, read once per version)."""
        if self._held is None:
            held: dict[str, list[int]] = {}
            for idx, (_, individual, _) in enumerate(self.sample_table()):
                if individual:
                    held.setdefault(individual, []).append(idx)
            self._held = held
        return self._held.get(individual_id, [])

    def linked_samples(self, individual_id: str) -> list[int]:
        """samples_of without building the sample table: one scan in SQLite (an erasure opens each version once, so
        a table built in Python, ∝ the cohort, would not be reused)."""
        rows = self.conn.execute("SELECT idx FROM samples WHERE individual_id = ? ORDER BY idx", (individual_id,))
        return [idx for (idx,) in rows]

    def sample_total(self) -> int:
        """The number of sample rows (erased ones included), from the largest index: no row read."""
        return self.conn.execute("SELECT coalesce(max(idx) + 1, 0) FROM samples").fetchone()[0]

    def chromosomes(self) -> list[str]:
        return self._index.chromosomes() if self._index is not None else []

    def live_samples(self) -> int:
        """Samples not erased (asked by the access rules on every request: counted once per version)."""
        if self._live is None:
            self._live = sum(1 for name, _, _ in self.sample_table() if name and not name.startswith("erased-"))
        return self._live

    def samples_info(self) -> DatasetSamples:
        """The version's samples and facts, read once (a version never changes)."""
        if self._samples_info is None:
            meta = dict(self.conn.execute("SELECT key, value FROM meta").fetchall())
            self._samples_info = DatasetSamples(
                dataset_id=self.dataset_id,
                version=self.version,
                created=meta.get("created") or "1970-01-01",
                assembly=meta.get("assembly", ""),
                records=int(meta.get("records_written") or 0),
                samples=tuple(
                    SampleRow(name, individual, biosample) for name, individual, biosample in self.sample_table()
                ),
            )
        return self._samples_info

    def hit(self, row: tuple) -> VariantHit:
        (_, vkey, chrom, start, end, ref, alt, vclass, length, ac, an, carriers, genes, aa, effects, ids) = row
        return VariantHit(
            variant_id=variant_id(self.dataset_id, self.assembly, vkey),
            dataset_id=self.dataset_id,
            assembly=self.assembly,
            reference_name=chrom,
            start=start,
            end=end,
            reference_bases=ref,
            alternate_bases=alt,
            variant_type=vclass,
            genes=_split(genes),
            aa_changes=_split(aa),
            molecular_effects=_split(effects),
            identifiers=_split(ids),
            allele_count=ac,
            allele_number=an,
            carrier_count=carriers,
            extra={"length": length},
        )


class _Sites:
    """One small partition's carried variants sorted by start: start, id and carrier count in arrays, the alleles
    in lists (the bulk are one-base strings, which Python shares)."""

    __slots__ = ("alts", "carriers", "refs", "starts", "vids")

    def __init__(self, rows: list[tuple[int, int, int, str, str]]):
        self.starts = array("q", (r[0] for r in rows))
        self.vids = array("q", (r[1] for r in rows))
        self.carriers = array("q", (r[2] for r in rows))
        self.refs = [r[3] for r in rows]
        self.alts = [r[4] for r in rows]

    def at(self, start: int, ref: str | None, alt: str | None) -> list[tuple[int, int]]:
        lo, hi = bisect_left(self.starts, start), bisect_right(self.starts, start)
        return [
            (self.vids[i], self.carriers[i])
            for i in range(lo, hi)
            if (ref is None or self.refs[i] == ref) and (alt is None or self.alts[i] == alt)
        ]


def _exact_bases(q: VariantQuery) -> tuple[int, str | None, str | None] | None:
    """(start, ref, alt) of a query that asks for nothing but variants at one start on one chromosome with these
    bases (None: any); None for any other query (or a base pattern with N, matched by SQL's GLOB)."""
    if (
        q.reference_name is None
        or q.start is None
        or q.end is not None
        or q.start_range is not None
        or q.end_range is not None
        or q.variant_types
        or q.min_length is not None
        or q.max_length is not None
        or q.gene_id is not None
        or q.aa_change is not None
        or q.variant_ids
    ):
        return None
    bases: list[str | None] = []
    for given in (q.reference_bases, q.alternate_bases):
        if not given:
            bases.append(None)
            continue
        pattern, wildcard = _glob(given)
        if wildcard:
            return None
        bases.append(pattern)
    return q.start, bases[0], bases[1]


def _observed(ds: _Dataset) -> str:
    """The condition that a variant was observed: an alternate allele counted in the dataset's genotypes (AC > 0;
    a site whose samples are all 0/0, or whose carriers were erased, is not). A sites-only file (no samples)
    asserts its sites: there AC comes from INFO, and a site without AC/AN in INFO (AN = 0) counts as observed."""
    return " AND ac > 0" if ds.sample_table() else " AND (ac > 0 OR an = 0)"


@lru_cache(maxsize=256)
def _count_sql(wheres: tuple[str, ...]) -> str:
    return "SELECT " + " + ".join(f"(SELECT count(*) FROM variants WHERE {w})" for w in wheres)


@lru_cache(maxsize=256)
def _page_sql(wheres: tuple[str, ...]) -> str:
    union = " UNION ALL ".join(f"SELECT {_COLUMNS} FROM variants WHERE {w}" for w in wheres)
    return f"{union} ORDER BY id LIMIT ? OFFSET ?"


@lru_cache(maxsize=256)
def _carried_sql(wheres: tuple[str, ...]) -> str:
    """Matching variants that have carriers, with their stored carrier counts (no carrier set read)."""
    return " UNION ALL ".join(f"SELECT id, carriers FROM variants WHERE {w} AND carriers > 0" for w in wheres)


def _count(ds: _Dataset, parts: list[tuple[str, list]]) -> int:
    """Rows matching any of the disjoint branches, in one statement (one round trip; the text is built once per
    query shape and sqlite3's per-connection statement cache keeps it prepared)."""
    return ds.conn.execute(_count_sql(tuple(w for w, _ in parts)), [x for _, p in parts for x in p]).fetchone()[0]


def _page(ds: _Dataset, parts: list[tuple[str, list]], n_rows: int, offset: int) -> list[tuple]:
    params = [x for _, p in parts for x in p]
    return ds.conn.execute(_page_sql(tuple(w for w, _ in parts)), [*params, n_rows, offset]).fetchall()


def _range_only(q: VariantQuery) -> bool:
    """A query that asks for nothing but overlap with [start, end) on one chromosome: a partition lying wholly inside
    the range then answers with all its observed variants (each starts inside, and ends after its start)."""
    return (
        q.reference_name is not None
        and q.start is not None
        and q.end is not None
        and q.start_range is None
        and q.end_range is None
        and not q.reference_bases
        and not q.alternate_bases
        and not q.variant_types
        and q.min_length is None
        and q.max_length is None
        and q.gene_id is None
        and q.aa_change is None
        and not q.variant_ids
    )


class VariantStore:
    """Reads every dataset's live version under `data_dir/variants/`; safe to share across threads."""

    def __init__(self, data_dir: Path, *, partition_pool: int | None = None):
        """`partition_pool`: partition files one thread keeps open (default: partition_pool_size())."""
        self.data_dir = Path(data_dir)
        self.root = self.data_dir / "variants"
        self._local = threading.local()
        self._pool_capacity = partition_pool
        self._pointer_cache: dict[str, tuple[float, str | None]] = {}
        self.cleanup()

    # --- housekeeping -----------------------------------------------------------------

    def cleanup(self) -> list[str]:
        """Remove leftovers of killed ingests (and superseded versions); return what was removed."""
        removed: list[str] = []
        if self.root.is_dir():
            for ds_dir in self.root.iterdir():
                if ds_dir.is_dir():
                    removed += [f"{ds_dir.name}/{name}" for name in cleanup_dataset_dir(ds_dir)]
        return removed

    def refresh(self) -> None:
        """Forget cached version pointers (call after an ingest in this process)."""
        self._pointer_cache.clear()

    _listing: tuple[int, list[str]] | None = None  # (directory mtime, dataset directory names)

    def datasets(self) -> list[str]:
        """Datasets with a live version, sorted; asked on every Beacon request.

        The directory listing is reused while the directory is unchanged (its mtime; trusted only
        when older than the filesystem's timestamp granularity); whether each dataset has a live
        version (its CURRENT pointer) is still checked on every call, so a finished ingest shows at once.
        """
        root = os.fspath(self.root)
        try:
            mtime = os.stat(root).st_mtime_ns
        except OSError:
            return []
        cached = self._listing
        if cached is not None and cached[0] == mtime:
            names = cached[1]
        else:
            names = sorted(n for n in os.listdir(root) if DATASET_ID.match(n))
            if time.time_ns() - mtime >= _STABLE_DIR_S * 1e9:  # a change within the same tick is invisible
                self._listing = (mtime, names)
        return [n for n in names if os.path.exists(os.path.join(root, n, "CURRENT"))]

    def _version(self, dataset_id: str) -> str | None:
        now = time.monotonic()
        cached = self._pointer_cache.get(dataset_id)
        if cached and now - cached[0] < _POINTER_RECHECK_S:
            return cached[1]
        version = current_version(dataset_dir(self.data_dir, dataset_id))
        self._pointer_cache[dataset_id] = (now, version)
        return version

    def _open(self, dataset_id: str) -> _Dataset | None:
        if not DATASET_ID.match(dataset_id):
            return None
        version = self._version(dataset_id)
        conns: dict[str, _Dataset] | None = getattr(self._local, "datasets", None)
        if conns is None:
            conns = self._local.datasets = {}
        ds = conns.get(dataset_id)
        if ds is not None and ds.version == version:
            return ds
        if ds is not None:
            ds.close()
            del conns[dataset_id]
        if version is None:
            return None
        try:
            ds = _Dataset(dataset_id, dataset_dir(self.data_dir, dataset_id) / version, version, pool=self._pool())
        except sqlite3.OperationalError:  # switched or deleted between reading the pointer and opening
            self._pointer_cache.pop(dataset_id, None)
            return None
        if len(conns) >= _MAX_OPEN_PER_THREAD:  # memory must not grow with the number of datasets
            oldest = next(iter(conns))
            conns.pop(oldest).close()
        conns[dataset_id] = ds
        return ds

    def _pool(self) -> _PartitionPool:
        """This thread's pool of open partition files, shared by its datasets."""
        pool: _PartitionPool | None = getattr(self._local, "pool", None)
        if pool is None:
            pool = self._local.pool = _PartitionPool(self._pool_capacity or partition_pool_size())
        return pool

    def _versions(self, q: VariantQuery) -> Iterator[_Dataset]:
        """The datasets a query covers, in name order, opened one at a time."""
        names = q.dataset_ids if q.dataset_ids is not None else self.datasets()
        for name in sorted(set(names)) if len(names) > 1 else names:
            ds = self._open(name)
            if ds is not None and (q.assembly is None or ds.assembly == q.assembly):
                yield ds

    @staticmethod
    def _ids_clause(ds: _Dataset, q: VariantQuery) -> tuple[str, list] | None:
        """Restrict to the requested variant ids of this dataset; None when none of them is in it."""
        if not q.variant_ids:
            return "", []
        keys = []
        for value in q.variant_ids:
            parts = split_variant_id(value)
            if parts and parts[0] == ds.dataset_id and parts[1] == ds.assembly:
                keys.append(parts[2])
        if not keys:
            return None
        return f" AND vkey IN ({','.join('?' * len(keys))})", keys

    # --- queries ----------------------------------------------------------------------

    def _branches(
        self, ds: _Dataset, q: VariantQuery, branches: list[tuple[str, list]]
    ) -> list[tuple[str, list]] | None:
        ids = self._ids_clause(ds, q)
        if ids is None:
            return None
        if not ids[0]:
            return [(where + ds.observed, params) for where, params in branches]
        return [(where + ids[0] + ds.observed, params + ids[1]) for where, params in branches]

    def _slices(self, q: VariantQuery) -> Iterator[tuple[_Dataset, Partition | None]]:
        """(version, partition) for every unit a query reaches, in answer order; None for a single-file version."""
        for ds in self._versions(q):
            if not ds.partitions or ds.batched is not None:  # several sample batches: merged by batched.py
                yield ds, None
            else:
                for partition in ds.reached(q):
                    yield ds, partition

    def _unit_total(
        self, ds: _Dataset, partition: Partition | None, q: VariantQuery, branches: list[tuple[str, list]], whole: bool
    ) -> int:
        """Matches in one unit. For a range-only query (`whole`) a partition answers from memory when it can
        (`_Dataset.range_total`): a 10 kb range over 2 kb partitions then runs no SQL at all."""
        if ds.batched is not None:
            return self._batched_answer(ds.batched.reached(q), q, branches, BatchedUnits.count, 0)
        if partition is not None and whole:
            found = ds.range_total(partition, q.start or 0, q.end or 0)
            if found is not None:
                return found
        unit = ds if partition is None else ds._part(partition)
        parts = self._branches(ds, q, branches)
        return _count(unit, parts) if parts else 0

    def search(self, q: VariantQuery, *, skip: int = 0, limit: int = 10) -> tuple[list[VariantHit], int]:
        branches = build_where(q)
        whole = _range_only(q)
        hits: list[VariantHit] = []
        total = 0
        for ds, partition in self._slices(q):
            # Pagination runs over the datasets in name order, each in file (partition) order.
            need, offset = limit - len(hits), max(skip - total, 0)
            if ds.batched is not None:
                page, n = self._batched_search(ds.batched.reached(q), q, branches, offset, need)
                hits, total = hits + page, total + n
                continue
            if need <= 0 or (offset and partition is not None and whole):
                n = self._unit_total(ds, partition, q, branches, whole)  # counted, not read
                if need > 0 and offset < n:
                    hits += self._unit_page(ds, partition, q, branches, need, offset)
                total += n
                continue
            unit = ds if partition is None else ds._part(partition)
            parts = self._branches(ds, q, branches)
            if parts is None:
                continue
            if offset == 0:
                rows = _page(unit, parts, need, 0)
                # a short first page is the whole answer
                n = len(rows) if len(rows) < need else self._unit_total(ds, partition, q, branches, whole)
            else:
                n = _count(unit, parts)
                rows = _page(unit, parts, need, offset) if n and offset < n else []
            hits += [ds.hit(r) for r in rows]
            total += n
        return hits, total

    def _unit_page(
        self, ds: _Dataset, partition: Partition | None, q: VariantQuery, branches: list, n_rows: int, offset: int
    ) -> list[VariantHit]:
        unit = ds if partition is None else ds._part(partition)
        parts = self._branches(ds, q, branches)
        return [ds.hit(r) for r in _page(unit, parts, n_rows, offset)] if parts else []

    def count(self, q: VariantQuery) -> int:
        branches = build_where(q)
        whole = _range_only(q)
        return sum(self._unit_total(ds, partition, q, branches, whole) for ds, partition in self._slices(q))

    def exists(self, q: VariantQuery) -> bool:
        branches = build_where(q)
        whole = _range_only(q)
        for ds, partition in self._slices(q):
            if ds.batched is not None:
                if self._batched_answer(ds.batched.reached(q), q, branches, BatchedUnits.exists, False):
                    return True
                continue
            found = ds.range_total(partition, q.start or 0, q.end or 0) if partition is not None and whole else None
            if found is not None:
                if found:
                    return True
                continue
            unit = ds if partition is None else ds._part(partition)
            for where, params in self._branches(ds, q, branches) or ():
                if unit.conn.execute(f"SELECT 1 FROM variants WHERE {where} LIMIT 1", params).fetchone():
                    return True
        return False

    def _batched_parts(self, view: BatchedUnits, q: VariantQuery, branches: list[tuple[str, list]]):
        """The WHERE branches for a multi-batch version's units: the query's and its ids, without the observed
        rule (batched.py applies it to the summed AC)."""
        ids = self._ids_clause(view.version.dataset, q)
        return None if ids is None else [(where + ids[0], params + ids[1]) for where, params in branches]

    def _batched_answer(self, view: BatchedUnits, q: VariantQuery, branches, answer, empty):
        parts = self._batched_parts(view, q, branches)
        return empty if parts is None else answer(view, parts, bool(q.gene_id or q.aa_change))

    def _batched_search(self, view: BatchedUnits, q: VariantQuery, branches, skip: int, need: int):
        parts = self._batched_parts(view, q, branches)
        return ([], 0) if parts is None else view.search(parts, bool(q.gene_id or q.aa_change), skip, need)

    def carrier_count(self, q: VariantQuery) -> int:
        """Distinct samples carrying any matching variant (summed over datasets). One matching variant answers
        from its stored carrier count; only several in one dataset read and unite their carrier sets."""
        branches = build_where(q)
        exact = _exact_bases(q)
        found: dict[str, list[tuple[_Dataset, Partition | None, int, int]]] = {}  # the partitions share samples
        batched = 0  # a multi-batch version's distinct carriers, counted over its batches by batched.py
        for ds, partition in self._slices(q):
            if ds.batched is not None:
                batched += self._batched_answer(ds.batched.reached(q), q, branches, BatchedUnits.carrier_count, 0)
                continue
            held = ds.carried_at(partition, *exact) if exact is not None and partition is not None else None
            if held is not None:
                found.setdefault(ds.dataset_id, []).extend((ds, partition, vid, n) for vid, n in held)
                continue
            parts = self._branches(ds, q, branches)
            if parts is None:
                continue
            conn = ds.conn if partition is None else ds._part(partition).conn
            rows = conn.execute(_carried_sql(tuple(w for w, _ in parts)), [x for _, p in parts for x in p]).fetchall()
            found.setdefault(ds.dataset_id, []).extend((ds, partition, vid, n) for vid, n in rows)
        total = batched
        for rows in found.values():
            if len(rows) == 1:
                total += rows[0][3]
            elif rows:
                total += len(np.unique(np.concatenate(list(self._carrier_sets(rows)))))
        return total

    @staticmethod
    def _carrier_sets(rows: list[tuple[_Dataset, Partition | None, int, int]]) -> Iterator[np.ndarray]:
        """The carrier sets of (version, partition, variant id, carriers) rows, one statement per unit (a unit is
        reopened through the pool if it was closed meanwhile)."""
        by_unit: dict[tuple[int, str], tuple[_Dataset, Partition | None, list[int]]] = {}
        for ds, partition, vid, _ in rows:
            key = (id(ds), partition.file if partition is not None else "")
            by_unit.setdefault(key, (ds, partition, []))[2].append(vid)
        for ds, partition, vids in by_unit.values():
            conn = ds.conn if partition is None else ds._part(partition).conn
            for start in range(0, len(vids), 10_000):
                chunk = vids[start : start + 10_000]
                sql = f"SELECT samples FROM carriers WHERE vid IN ({','.join('?' * len(chunk))})"
                yield from (decode_set(blob) for (blob,) in conn.execute(sql, chunk))

    def get(self, variant_id: str) -> VariantHit | None:
        parts = split_variant_id(variant_id)
        if parts is None:
            return None
        ds = self._unit_of(parts)
        if ds is None:
            return None
        if isinstance(ds, BatchedUnits):
            return ds.get(parts[2])
        row = ds.conn.execute(f"SELECT {_COLUMNS} FROM variants WHERE vkey = ?{ds.observed}", (parts[2],)).fetchone()
        return ds.hit(row) if row else None

    def _unit_of(self, parts: tuple[str, str, str] | None) -> _Dataset | BatchedUnits | None:
        """The file holding a variant id's variant: its dataset's version, or the partition of its position."""
        ds = self._open(parts[0]) if parts else None
        if ds is None or ds.assembly != parts[1]:
            return None
        if not ds.partitions:
            return ds
        # The key is "<chrom>-<pos>-…" and a contig name may hold "-" itself (HLA-A): try the version's chromosomes.
        for chrom in ds.chromosomes():
            if parts[2].startswith(chrom + "-"):
                position = parts[2][len(chrom) + 1 :].partition("-")[0]
                unit = ds.unit_at(chrom, int(position) - 1) if position.isdigit() else None
                if unit is not None:
                    return unit
        return None

    def carriers(self, variant_id: str, limit: int | None = None) -> list[Carrier]:
        """The variant's carriers in sample order; `limit` builds only the first ones (records show 100)."""
        return [Carrier(*row) for row in self.carrier_rows(variant_id, limit)]

    def carrier_rows(self, variant_id: str, limit: int | None = None) -> list[tuple[str, str | None, str | None, str]]:
        """`carriers` as plain tuples in Carrier's field order (sample_id, biosample_id, individual_id, zygosity):
        the record builder's fast path (a frozen dataclass per carrier costs ~1 µs, ~50 µs a record). Only the
        first `limit` carriers and their zygosity codes are decoded (pages.py), whatever the cohort's size."""
        found = self._carrier_blobs(variant_id)
        if found is None:
            return []
        if isinstance(found, BatchedUnits):
            return found.carrier_rows(variant_id.split(":", 2)[2], limit)
        ds, samples_blob, zyg_blob = found
        table = ds.sample_table()
        idxs = set_page(samples_blob, 0, limit).tolist()
        zygs = codes_page(zyg_blob, 0, len(idxs)).tolist()
        out = []
        for idx, zyg in zip(idxs, zygs, strict=True):
            name, individual, biosample = table[idx]
            out.append((name, biosample, individual, ZYGOSITY_GENO[zyg]))
        return out

    def _carrier_blobs(self, variant_id: str) -> tuple[_Dataset, bytes, bytes] | BatchedUnits | None:
        """The carrier set and zygosity codes of a variant, or the units of several sample batches holding it."""
        parts = split_variant_id(variant_id)
        ds = self._unit_of(parts)
        if ds is None or parts is None:
            return None
        if isinstance(ds, BatchedUnits):
            return ds
        row = ds.conn.execute(
            "SELECT c.samples, c.zyg FROM variants v JOIN carriers c ON c.vid = v.id WHERE v.vkey = ?", (parts[2],)
        ).fetchone()
        return (ds, row[0], row[1]) if row is not None else None

    def carrier_indexes(self, variant_id: str) -> np.ndarray | None:
        """The variant's carriers as ascending sample indexes (positions in `dataset_samples(...).samples`), decoded
        in one vectorised step, no Python object per carrier; None for an unknown variant."""
        found = self._carrier_blobs(variant_id)
        if isinstance(found, BatchedUnits):
            return found.carrier_indexes(variant_id.split(":", 2)[2])
        if found is None:
            return None if self.get(variant_id) is None else np.empty(0, dtype="<u4")
        return set_page(found[1])

    def _datasets_holding(self, individual_id: str, dataset_ids: tuple[str, ...] | None = None):
        """(dataset name, open dataset, sample indexes) for every dataset with samples of this individual."""
        for name in self.datasets() if dataset_ids is None else sorted(set(dataset_ids)):
            ds = self._open(name)
            if ds is None:
                continue
            idxs = ds.samples_of(individual_id)
            if idxs:
                yield name, ds, idxs

    def variants_of_individual(
        self, individual_id: str, *, skip: int = 0, limit: int = 10, dataset_ids: tuple[str, ...] | None = None
    ) -> tuple[list[VariantHit], int]:
        """One page of the variants an individual carries, and their number; `dataset_ids` restricts the datasets
        (the page is then cut in the store, not from every variant of the person)."""
        hits: list[VariantHit] = []
        total = 0
        for _, dataset, idxs in self._datasets_holding(individual_id, dataset_ids):
            if dataset.batched is not None:
                page, n = dataset.batched.variants_of(idxs, max(skip - total, 0), limit - len(hits))
                hits, total = hits + page, total + n
                continue
            if not dataset.partitions:
                vids = _carried_variants(dataset.conn, idxs)
                hits += _page_of(dataset, vids, max(skip - total, 0), limit - len(hits))
                total += len(vids)
                continue
            # A partitioned version: the units' counts first (stored set sizes, no set decoded: read once per person
            # and version), then only the units the page falls in are decoded and read, in genomic order.
            ends = dataset.carried_counts(idxs)
            n = ends[-1] if ends else 0
            offset, need = max(skip - total, 0), limit - len(hits)
            i = bisect_right(ends, offset)
            while need > 0 and i < len(ends):
                before = ends[i - 1] if i else 0
                if ends[i] > before:
                    unit = dataset._part(dataset.partitions[i])
                    page = _page_of(unit, _carried_variants(unit.conn, idxs), max(offset - before, 0), need)
                    hits += page
                    need -= len(page)
                i += 1
            total += n
        return hits, total

    # --- samples (the VariantReader protocol, gateway/variants/protocol.py) --------------

    def sample_count(self, dataset_id: str) -> int:
        """Samples of the live version that are not erased; 0 for an unknown dataset (counted once per version)."""
        ds = self._open(dataset_id)
        if ds is None:
            return 0
        return ds.live_samples()

    def dataset_samples(self, dataset_id: str) -> DatasetSamples | None:
        """The live version's samples (erased ones included, as they are stored) and its facts; read once per
        version (asked on every cross-link request)."""
        ds = self._open(dataset_id)
        return ds.samples_info() if ds is not None else None

    # --- changes ----------------------------------------------------------------------

    def delete_dataset(self, dataset_id: str) -> None:
        ds_dir = dataset_dir(self.data_dir, dataset_id)
        if not ds_dir.is_dir():
            return
        switch_pointer(ds_dir, None)
        self._pointer_cache.pop(dataset_id, None)
        for entry in ds_dir.iterdir():
            if entry.is_dir():  # the partitions of a partitioned version
                shutil.rmtree(entry, ignore_errors=True)
            else:
                entry.unlink(missing_ok=True)  # open readers keep their unlinked file until they close it
        ds_dir.rmdir()

    def erase_individual(self, individual_id: str) -> int:
        """Take an individual out of every dataset's answers; return the number of samples erased.

        Written as a new version (copy, change, switch), so readers never see a half-erased dataset. AC and
        carrier counts are corrected exactly, and AN at every variant (from the per-sample called-allele exceptions;
        versions written before those existed correct AN at the carried variants only). A single-file version is
        rewritten without the samples at once; a partitioned version gets a new manifest only, with the erasure
        pending (pending.py: cost ∝ the person's data), and `purge_erased` later rewrites its units.
        """
        erased = sum(self._erase_in_dataset(name, individual_id) for name in self.datasets())
        self.refresh()
        return erased

    def _erase_in_dataset(self, dataset_id: str, individual_id: str, attempts: int = 3) -> int:
        """Erase from the live version; when another writer switches the pointer meanwhile (an ingest adding a
        batch), the erasure is not published over it but done again on the new live version."""
        for attempt in range(attempts):
            self._pointer_cache.pop(dataset_id, None)
            ds = self._open(dataset_id)
            idxs = ds.linked_samples(individual_id) if ds is not None else []
            if ds is None or not idxs:
                return 0
            try:
                if ds.partitions:
                    self._erase_pending(dataset_id, ds, idxs)
                else:
                    self._rewrite_without(dataset_id, ds, idxs)
                self._close_version(dataset_id)
                return len(idxs)
            except VersionMoved:
                if attempt == attempts - 1:
                    raise
        return 0

    def _close_version(self, dataset_id: str) -> None:
        """Close this thread's handles on the version an erasure replaced: an unlinked file keeps its bytes on disk
        while open. (Other threads close theirs at their next query of the dataset, _open.)"""
        conns: dict[str, _Dataset] | None = getattr(self._local, "datasets", None)
        ds = conns.pop(dataset_id, None) if conns is not None else None
        if ds is not None:
            ds.close()

    def _rewrite_without(self, dataset_id: str, ds: _Dataset, idxs: list[int]) -> None:
        """A new version without the samples `idxs`; in a partitioned version only the units of the batches holding
        them are rewritten (into a new folder; AN changes at every variant of those batches), the others are kept,
        and a new manifest is switched in one step like any version."""
        ds_dir = dataset_dir(self.data_dir, dataset_id)
        tmp = ds_dir / f".build-{os.getpid()}-{secrets.token_hex(4)}.sqlite"
        n_samples = ds.sample_total()
        new_dir = ds_dir / f"parts-e{time.time_ns()}-{os.getpid()}" if ds.partitions else None
        try:
            renamed = {}
            if new_dir is not None:
                new_dir.mkdir()
                renamed = _erase_in_units(ds, new_dir, idxs, n_samples)
            _erase_samples(ds.conn, tmp, idxs, n_samples, renamed)
            _publish(ds_dir, ds, tmp, new_dir, renamed)
        except BaseException:
            if new_dir is not None:
                shutil.rmtree(new_dir, ignore_errors=True)
            raise
        finally:
            tmp.unlink(missing_ok=True)

    def _erase_pending(self, dataset_id: str, ds: _Dataset, idxs: list[int]) -> None:
        """Phase one on a partitioned version: a new manifest with the samples unlinked and their delta recorded
        (pending.py), read from their own reverse-index and called-allele rows in the units of their batch; no
        unit is copied or written."""
        ds_dir = dataset_dir(self.data_dir, dataset_id)
        tmp = ds_dir / f".build-{os.getpid()}-{secrets.token_hex(4)}.sqlite"
        touched = erased_by_batch(batches_of(ds.batches, ds.sample_total()), idxs)
        try:
            conn = _copy_for_erasure(ds.conn, tmp)
            conn.execute("BEGIN")
            for partition in ds.partitions:
                if partition.batch in touched:
                    local, size = touched[partition.batch]
                    # an empty unit loses nothing, but is still listed: the purge rewrites its sample table too
                    shift, delta = _losses(ds_dir / partition.file, local) if partition.variants else (0, {})
                    unit = pending.PendingUnit(np.array(local, dtype="<u4"), shift, size)
                    pending.record(conn, partition.file, unit, delta, idxs)
            _unlink_samples(conn, idxs)
            conn.execute("COMMIT")
            conn.close()
            _fsync(tmp)
            _publish(ds_dir, ds, tmp, None, {})
        finally:
            tmp.unlink(missing_ok=True)

    def purge_erased(self, dataset_ids: list[str] | None = None) -> int:
        """Phase two: rewrite the units holding erasures still pending (pending.py) without those samples, as
        `_rewrite_without` does for an erasure at once, and publish a manifest with nothing pending; the number of
        datasets purged. Idempotent; another writer publishing meanwhile makes it start again on the new version."""
        purged = 0
        for name in self.datasets() if dataset_ids is None else dataset_ids:
            for attempt in range(3):
                self._pointer_cache.pop(name, None)
                ds = self._open(name)
                idxs = pending.pending_samples(ds.conn) if ds is not None and ds.partitions else []
                if not idxs:
                    break
                try:
                    self._rewrite_without(name, ds, idxs)
                    self._close_version(name)
                    purged += 1
                    break
                except VersionMoved:
                    if attempt == 2:
                        raise
        self.refresh()
        return purged

    def close(self) -> None:
        conns: dict[str, _Dataset] | None = getattr(self._local, "datasets", None)
        for ds in (conns or {}).values():
            ds.close()
        self._local = threading.local()


def purge_before_write(data_dir: Path, dataset_id: str) -> None:
    """For a writer about to build a version from the live one (an added batch or region, a compaction): the
    erasures pending in it purged first, or the new version, written without their delta, would bring them back."""
    store = VariantStore(data_dir)
    try:
        store.purge_erased([dataset_id])
    finally:
        store.close()


def _publish(ds_dir: Path, ds: _Dataset, tmp: Path, new_dir: Path | None, renamed: dict[str, str]) -> None:
    """Switch the dataset to the version built in `tmp` over `ds` (VersionMoved: another writer switched first,
    nothing done), then remove the replaced manifest and the unit files it replaced."""
    version = f"v{time.time_ns()}-{os.getpid()}.sqlite"
    with pointer_lock(ds_dir):
        check_based_on(ds_dir, ds.version)  # VersionMoved: nothing switched, the caller tries again
        sweep_unreferenced(ds_dir, keep={new_dir.name} if new_dir is not None else set())
        os.replace(tmp, ds_dir / version)
        previous = current_version(ds_dir)
        switch_pointer(ds_dir, version)
    if previous and previous != version:
        (ds_dir / previous).unlink(missing_ok=True)
    _drop_superseded(ds_dir, [p.file for p in ds.partitions], renamed)


def _losses(unit_path: Path, local: list[int]) -> tuple[int, dict[int, list[int]]]:
    """What erasing the unit's samples `local` takes from it, read from their own rows: (AN every variant loses,
    {variant id: [AC, further AN, carriers] lost}) — the same corrections _erase_samples writes."""
    conn = _read_only(unit_path)
    try:
        delta: dict[int, list[int]] = {}
        exact_an = conn.execute("SELECT value FROM meta WHERE key = 'called_index'").fetchone() == ("1",)
        if exact_an:
            for vids, alleles in _called_exceptions(conn, local):
                for vid in vids.tolist():
                    delta.setdefault(vid, [0, 0, 0])[1] += alleles - 2
        if exact_an and _has_table(conn, "sample_hom"):
            _carried_losses(conn, local, delta)
        else:
            _carried_losses_from_sets(conn, local, exact_an, delta)
        return (2 * len(local) if exact_an else 0), delta
    finally:
        conn.close()


def _carried_losses(conn: sqlite3.Connection, local: list[int], delta: dict[int, list[int]]) -> None:
    """AC and carriers lost at the variants the samples carry, from their own reverse index and its homozygous part
    (sample_hom): a carrier takes 1 allele and 2 when homozygous (a hemizygous call is 1, as a heterozygous one).
    Nothing read grows with the cohort; AN is corrected from the called-allele exceptions (exact units only)."""
    carried = _sample_offsets(conn, "sample_variants", local)
    hom = _sample_offsets(conn, "sample_hom", local)
    vids, carriers = np.unique(carried, return_counts=True)
    alleles = carriers.copy()
    if len(hom):
        hom_vids, hom_counts = np.unique(hom, return_counts=True)
        alleles[np.searchsorted(vids, hom_vids)] += hom_counts  # a homozygous call is a carried one
    for vid, ac, n in zip(vids.tolist(), alleles.tolist(), carriers.tolist(), strict=True):
        lost = delta.setdefault(vid, [0, 0, 0])
        lost[0] += ac
        lost[2] += n


def _sample_offsets(conn: sqlite3.Connection, table: str, samples: list[int]) -> np.ndarray:
    """The variant ids in one per-sample table (sample_variants, sample_hom) of these samples, each sample's in
    turn (an id held by two samples comes twice)."""
    rows = conn.execute(
        f"SELECT chunk, vids FROM {table} WHERE sample IN ({','.join('?' * len(samples))})", samples
    ).fetchall()
    if not rows:
        return np.empty(0, dtype=np.int64)
    return np.concatenate([decode_set(blob).astype(np.int64) + chunk * CHUNK_VARIANTS + 1 for chunk, blob in rows])


def _carried_losses_from_sets(
    conn: sqlite3.Connection, local: list[int], exact_an: bool, delta: dict[int, list[int]]
) -> None:
    """The same for a unit written before sample_hom (or without exact AN): each carried variant's carrier row is
    read for the samples' zygosity codes (only their codes decoded, but the row's bytes grow with the batch)."""
    drop = np.array(sorted(local), dtype="<u4")
    carried = _carried_variants(conn, local).tolist()
    for first in range(0, len(carried), 500):
        some = carried[first : first + 500]
        sql = f"SELECT vid, samples, zyg FROM carriers WHERE vid IN ({','.join('?' * len(some))})"
        for vid, samples_blob, zyg_blob in conn.execute(sql, some).fetchall():
            codes = [int(codes_page(zyg_blob, int(at), 1)[0]) for at in positions_of(samples_blob, drop)]
            alleles, called = _alleles_lost(codes, exact_an)
            lost = delta.setdefault(vid, [0, 0, 0])
            lost[0] += alleles
            lost[1] += called
            lost[2] += len(codes)


def _has_table(conn: sqlite3.Connection, name: str) -> bool:
    return conn.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?", (name,)).fetchone() is not None


def _called_exceptions(conn: sqlite3.Connection, idxs: list[int]) -> Iterator[tuple[np.ndarray, int]]:
    """(variant ids, called alleles) where these samples have other than 2 called alleles (sample_called)."""
    rows = conn.execute(
        f"SELECT chunk, alleles, vids FROM sample_called WHERE sample IN ({','.join('?' * len(idxs))})", idxs
    ).fetchall()
    for chunk, alleles, blob in rows:
        yield decode_set(blob).astype(np.int64) + chunk * CHUNK_VARIANTS + 1, alleles


def _unlink_samples(conn: sqlite3.Connection, idxs: list[int]) -> None:
    conn.execute(
        f"UPDATE samples SET name='erased-'||idx, individual_id=NULL, biosample_id=NULL "
        f"WHERE idx IN ({','.join('?' * len(idxs))})",
        idxs,
    )


def _fsync(path: Path) -> None:
    with open(path, "rb+") as f:
        os.fsync(f.fileno())


def _erase_in_units(ds: _Dataset, new_dir: Path, idxs: list[int], n_samples: int) -> dict[str, str]:
    """Rewrite into `new_dir` the units of the batches holding manifest samples `idxs` (each without them, numbered
    as its batch numbers them); return old file -> new file for the manifest. Other batches' units are untouched:
    an erasure costs the size of the person's batch, not of the cohort."""
    batches = batches_of(ds.batches, n_samples)
    touched = erased_by_batch(batches, idxs)
    renamed = {}
    for partition in ds.partitions:
        if partition.batch not in touched:
            continue
        local, size = touched[partition.batch]
        name = Path(partition.file).name if len(batches) == 1 else f"b{partition.batch}-{Path(partition.file).name}"
        # A unit read through a pending erasure's views is copied from a plain connection (VACUUM INTO would
        # resolve its schema's table names to the views).
        plain = _read_only(ds.dir / partition.file) if partition.file in ds._pending else None
        try:
            _erase_samples(plain or ds._part(partition).conn, new_dir / name, local, size)
        finally:
            if plain is not None:
                plain.close()
        renamed[partition.file] = f"{new_dir.name}/{name}"
    return renamed


def _read_only(path: Path) -> sqlite3.Connection:
    return sqlite3.connect(f"file:{path}?mode=ro&immutable=1", uri=True)


def _drop_superseded(ds_dir: Path, files: list[str], renamed: dict[str, str]) -> None:
    """Remove the unit files an erasure replaced, and their folders once no kept unit lives there (open readers
    keep their unlinked files)."""
    kept_dirs = {f.split("/", 1)[0] for f in files if f not in renamed}
    for old in renamed:
        (ds_dir / old).unlink(missing_ok=True)
    for folder in {f.split("/", 1)[0] for f in renamed} - kept_dirs:
        shutil.rmtree(ds_dir / folder, ignore_errors=True)


def _without_carriers(
    conn: sqlite3.Connection, vids: list[int], drop: np.ndarray, n_samples: int, exact_an: bool
) -> tuple[list[tuple], list[tuple]]:
    """For the variants `vids` that the samples `drop` carry: their carrier rows without them, and what AC, AN and
    the carrier count lose — read in one pass, written by the caller with executemany (an erasure's cost per
    carried variant is then a few numpy calls, not statements)."""
    carriers: list[tuple] = []
    variants: list[tuple] = []
    for first in range(0, len(vids), 500):
        some = vids[first : first + 500]
        rows = conn.execute(f"SELECT vid, samples, zyg FROM carriers WHERE vid IN ({','.join('?' * len(some))})", some)
        for vid, samples_blob, zyg_blob in rows.fetchall():
            samples = decode_set(samples_blob)
            zyg = unpack_codes(zyg_blob, len(samples))
            gone = samples == drop[0] if len(drop) == 1 else np.isin(samples, drop)
            codes = zyg[gone].tolist()
            alleles, called = _alleles_lost(codes, exact_an)
            carriers.append((encode_set(samples[~gone], n_samples), pack_codes(zyg[~gone]), vid))
            variants.append((alleles, called, len(codes), vid))
    return carriers, variants


def _alleles_lost(codes: list[int], exact_an: bool) -> tuple[int, int]:
    """The alternate alleles (AC) and, unless AN is corrected exactly elsewhere, the called alleles (AN) that
    carriers with these zygosity codes take away from a variant."""
    alleles = sum(2 if c == HOM else 1 for c in codes if c in (HOM, HET, HEMI))
    called = 0 if exact_an else sum(2 if c in (HOM, HET) else 1 for c in codes if c in (HOM, HET, HEMI))
    return alleles, called


def _copy_for_erasure(source: sqlite3.Connection, target: Path) -> sqlite3.Connection:
    """`source`'s live rows in a new file `target`, opened for the erasure's writes (see _erase_samples)."""
    source.execute("VACUUM INTO ?", (os.fspath(target),))
    conn = sqlite3.connect(target, isolation_level=None)
    conn.execute("PRAGMA secure_delete = ON")
    conn.execute("PRAGMA journal_mode = MEMORY")
    return conn


def _erase_samples(
    source: sqlite3.Connection, target: Path, idxs: list[int], n_samples: int, renamed: dict[str, str] | None = None
) -> None:
    """Copy a version file to `target` without the samples `idxs` (AC, AN, carriers, reverse index and links
    corrected exactly), fsynced; `renamed` moves a manifest's partition files (old name -> new).

    No byte of the erased samples is left in `target`: VACUUM INTO writes only the live rows (a page copy would
    carry the source's free pages and freed cells, which may hold them), and secure_delete=ON zeroes every cell and
    page the erasure frees (FAST leaves freed pages unzeroed; the compile-time default differs between builds). The
    rollback journal stays in memory, so no -journal file ever holds the original pages: a build that fails is
    discarded anyway."""
    conn = _copy_for_erasure(source, target)
    conn.execute("BEGIN")
    drop = np.array(idxs, dtype="<u4")
    place = ",".join("?" * len(idxs))
    exact_an = conn.execute("SELECT value FROM meta WHERE key = 'called_index'").fetchone() == ("1",)
    if exact_an:
        # Every variant loses the erased samples' called alleles: 2 each, except where sample_called says
        # otherwise (missing or haploid calls, records without GT).
        conn.execute("UPDATE variants SET an = an - ?", (2 * len(idxs),))
        for vids, alleles in list(_called_exceptions(conn, idxs)):
            conn.executemany("UPDATE variants SET an = an + ? WHERE id = ?", ((2 - alleles, v) for v in vids.tolist()))
        conn.execute(f"DELETE FROM sample_called WHERE sample IN ({place})", idxs)
    carriers, variants = _without_carriers(conn, _carried_variants(conn, idxs).tolist(), drop, n_samples, exact_an)
    conn.executemany("UPDATE carriers SET samples=?, zyg=? WHERE vid=?", carriers)
    conn.executemany("UPDATE variants SET ac=ac-?, an=max(an-?,0), carriers=carriers-? WHERE id=?", variants)
    conn.execute(f"DELETE FROM sample_variants WHERE sample IN ({place})", idxs)
    if _has_table(conn, "sample_hom"):
        conn.execute(f"DELETE FROM sample_hom WHERE sample IN ({place})", idxs)
    _unlink_samples(conn, idxs)
    for old, new in (renamed or {}).items():
        conn.execute("UPDATE partitions SET file = ? WHERE file = ?", (new, old))
    pending.drop(conn)  # a manifest's pending erasures are now in its rewritten units
    conn.execute("COMMIT")
    conn.close()
    _fsync(target)
