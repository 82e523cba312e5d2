"""The variant store: one immutable SQLite file per dataset version, queried with raw sqlite3.

Every answer comes from indexed tables filled at ingest (allele counts, carrier lists,
the per-sample reverse index): no query path decodes a genotype or scans a dataset.
See layout.py for the files and schema.
"""

from __future__ import annotations

import os
import secrets
import shutil
import sqlite3
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np

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
    switch_pointer,
    unpack_codes,
)
from .partitions import Partition, PartitionIndex, read_batches, read_partitions
from .protocol import DatasetSamples, SampleRow
from .query import Carrier, VariantHit, VariantQuery

_COLUMNS = "id, vkey, chrom, start, end, ref, alt, vclass, length, ac, an, carriers, genes, aa, effects, ids"
_MAX_OPEN_PER_THREAD = 64  # open dataset connections kept per thread (least recently opened closed first)
_STABLE_DIR_S = 1.0  # a directory listing is reused once the directory has not changed for this long
_MAX_OPEN_PARTITIONS = 1024  # open partition files per dataset and thread (a genome in 5 Mb partitions: ~620)
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


class _Dataset:
    """An open version of one dataset (per thread)."""

    __slots__ = (
        "_index", "_opened", "assembly", "batched", "batches", "conn", "dataset_id", "dir", "partitions", "samples",
        "version",
    )  # fmt: skip

    def __init__(self, dataset_id: str, path: Path, version: str, samples: list | None = None):
        self.dataset_id = dataset_id
        self.version = version
        self.dir = path.parent
        self.conn = sqlite3.connect(f"file:{path}?mode=ro&immutable=1", uri=True, check_same_thread=False)
        self.conn.execute("PRAGMA cache_size=-2048")  # small per-dataset cache: memory must not grow with datasets
        self.assembly = self.conn.execute("SELECT value FROM meta WHERE key='assembly'").fetchone()[0]
        self.samples: list[tuple[str, str | None, str | None]] | None = samples
        # A partitioned version (partitions.py): this file is its manifest (meta, samples, the partition list);
        # the variants live in one immutable file per region partition, opened when a query reaches it.
        self.partitions: list[Partition] = read_partitions(self.conn, self.dir)
        self._index = PartitionIndex(self.partitions) if self.partitions else None
        # Several sample batches (batched.py): units of different batches hold the same variants; answers merge.
        self.batches = read_batches(self.conn) if self.partitions else []
        self.batched = BatchedVersion(self, _COLUMNS, _carried_variants) if len(self.batches) > 1 else None
        self._opened: dict[str, _Dataset] = {}

    def close(self) -> None:
        for part in self._opened.values():
            part.conn.close()
        self._opened.clear()
        self.conn.close()

    def _part(self, partition: Partition) -> _Dataset:
        part = self._opened.get(partition.file)
        if part is None:
            if len(self._opened) >= _MAX_OPEN_PARTITIONS:  # callers finish with a partition before the next one
                self._opened.pop(next(iter(self._opened))).conn.close()
            part = _Dataset(self.dataset_id, self.dir / partition.file, self.version, self.sample_table())
            self._opened[partition.file] = part
        return part

    def units(self, q: VariantQuery | None = None) -> Iterator[_Dataset | BatchedUnits]:
        """The files holding this version's variants (itself when not partitioned); with `q`, only the partitions
        whose variants could answer it (same chromosome, and for positional queries an overlapping span).
        A version of several sample batches yields one BatchedUnits, which merges its units' answers."""
        if self.batched is not None:
            yield self.batched.reached(q)
            return
        if not self.partitions:
            yield self
            return
        for partition in self.partitions if q is None else self._index.reached_by(q):
            yield self._part(partition)

    def unit_at(self, chrom: str, start: int) -> _Dataset | BatchedUnits | None:
        """The file that holds variants starting at `start` (0-based) on `chrom` (the files, over sample batches)."""
        if not self.partitions:
            return self
        if self.batched is not None:
            found = self.batched.at(chrom, start)
            return found if found.units else None
        for partition in self.partitions:
            if partition.chrom == chrom and partition.start <= start < partition.end:
                return self._part(partition)
        return None

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


def _observed(ds: _Dataset) -> str:
    """The condition that a variant was observed: an alternate allele counted in the dataset's genotypes (AC > 0;
    a site whose samples are all 0/0, or whose carriers were erased, is not). A sites-only file (no samples)
    asserts its sites: there AC comes from INFO, and a site without AC/AN in INFO (AN = 0) counts as observed."""
    return " AND ac > 0" if ds.sample_table() else " AND (ac > 0 OR an = 0)"


def _count(ds: _Dataset, parts: list[tuple[str, list]]) -> int:
    """Rows matching any of the disjoint branches, in one statement (one round trip)."""
    sql = "SELECT " + " + ".join(f"(SELECT count(*) FROM variants WHERE {w})" for w, _ in parts)
    return ds.conn.execute(sql, [x for _, p in parts for x in p]).fetchone()[0]


def _page(ds: _Dataset, parts: list[tuple[str, list]], n_rows: int, offset: int) -> list[tuple]:
    union = " UNION ALL ".join(f"SELECT {_COLUMNS} FROM variants WHERE {w}" for w, _ in parts)
    params = [x for _, p in parts for x in p]
    return ds.conn.execute(f"{union} ORDER BY id LIMIT ? OFFSET ?", [*params, n_rows, offset]).fetchall()


class VariantStore:
    """Reads every dataset's live version under `data_dir/variants/`; safe to share across threads."""

    def __init__(self, data_dir: Path):
        self.data_dir = Path(data_dir)
        self.root = self.data_dir / "variants"
        self._local = threading.local()
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
            ds = _Dataset(dataset_id, dataset_dir(self.data_dir, dataset_id) / version, version)
        except sqlite3.OperationalError:  # switched or deleted between reading the pointer and opening
            self._pointer_cache.pop(dataset_id, None)
            return None
        if len(conns) >= _MAX_OPEN_PER_THREAD:  # memory must not grow with the number of datasets
            oldest = next(iter(conns))
            conns.pop(oldest).close()
        conns[dataset_id] = ds
        return ds

    def _targets(self, q: VariantQuery) -> Iterator[_Dataset | BatchedUnits]:
        """The datasets a query covers, opened one at a time (lazily: the open-connection cap may close earlier ones)."""
        names = q.dataset_ids if q.dataset_ids is not None else self.datasets()
        for name in sorted(set(names)):
            ds = self._open(name)
            if ds is not None and (q.assembly is None or ds.assembly == q.assembly):
                yield from ds.units(q)

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
        observed = _observed(ds)
        return [(where + ids[0] + observed, params + ids[1]) for where, params in branches]

    def search(self, q: VariantQuery, *, skip: int = 0, limit: int = 10) -> tuple[list[VariantHit], int]:
        branches = build_where(q)
        hits: list[VariantHit] = []
        total = 0
        for ds in self._targets(q):
            if isinstance(ds, BatchedUnits):
                page, n = self._batched_search(ds, q, branches, max(skip - total, 0), limit - len(hits))
                hits, total = hits + page, total + n
                continue
            parts = self._branches(ds, q, branches)
            if parts is None:
                continue
            # Pagination runs over the datasets in name order, each in file order.
            need, offset = limit - len(hits), max(skip - total, 0)
            if need > 0 and offset == 0:
                rows = _page(ds, parts, need, 0)
                n = len(rows) if len(rows) < need else _count(ds, parts)  # a short first page is the whole answer
            else:
                n = _count(ds, parts)
                rows = _page(ds, parts, need, offset) if n and need > 0 and offset < n else []
            hits += [ds.hit(r) for r in rows]
            total += n
        return hits, total

    def count(self, q: VariantQuery) -> int:
        branches = build_where(q)
        total = 0
        for ds in self._targets(q):
            if isinstance(ds, BatchedUnits):
                total += self._batched_answer(ds, q, branches, BatchedUnits.count, 0)
                continue
            parts = self._branches(ds, q, branches)
            if parts:
                total += _count(ds, parts)
        return total

    def exists(self, q: VariantQuery) -> bool:
        branches = build_where(q)
        for ds in self._targets(q):
            if isinstance(ds, BatchedUnits):
                if self._batched_answer(ds, q, branches, BatchedUnits.exists, False):
                    return True
                continue
            for where, params in self._branches(ds, q, branches) or ():
                if ds.conn.execute(f"SELECT 1 FROM variants WHERE {where} LIMIT 1", params).fetchone():
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
        """Distinct samples carrying any matching variant (summed over datasets)."""
        branches = build_where(q)
        rows_of: dict[str, list] = {}  # per dataset: the partitions of one dataset share its samples
        batched = 0  # a multi-batch version's distinct carriers, counted over its batches by batched.py
        for ds in self._targets(q):
            if isinstance(ds, BatchedUnits):
                batched += self._batched_answer(ds, q, branches, BatchedUnits.carrier_count, 0)
                continue
            parts = self._branches(ds, q, branches)
            if parts is None:
                continue
            union = " UNION ALL ".join(f"SELECT id FROM variants WHERE {w}" for w, _ in parts)
            rows_of.setdefault(ds.dataset_id, []).extend(
                ds.conn.execute(
                    f"SELECT v.carriers, c.samples FROM variants v JOIN carriers c ON c.vid = v.id "
                    f"WHERE v.id IN ({union})",
                    [x for _, p in parts for x in p],
                ).fetchall()
            )
        total = batched
        for rows in rows_of.values():
            if len(rows) == 1:
                total += rows[0][0]
            elif rows:
                total += len(np.unique(np.concatenate([decode_set(r[1]) for r in rows])))
        return total

    def get(self, variant_id: str) -> VariantHit | None:
        parts = split_variant_id(variant_id)
        if parts is None:
            return None
        ds = self._unit_of(parts)
        if ds is None:
            return None
        if isinstance(ds, BatchedUnits):
            return ds.get(parts[2])
        row = ds.conn.execute(f"SELECT {_COLUMNS} FROM variants WHERE vkey = ?{_observed(ds)}", (parts[2],)).fetchone()
        return ds.hit(row) if row else None

    def _unit_of(self, parts: tuple[str, str, str] | None) -> _Dataset | BatchedUnits | None:
        """The file holding a variant id's variant: its dataset's version, or the partition of its position."""
        ds = self._open(parts[0]) if parts else None
        if ds is None or ds.assembly != parts[1]:
            return None
        if not ds.partitions:
            return ds
        # The key is "<chrom>-<pos>-…" and a contig name may hold "-" itself (HLA-A): try the version's chromosomes.
        for chrom in {p.chrom for p in ds.partitions}:
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
        the record builder's fast path (a frozen dataclass per carrier costs ~1 µs, ~50 µs a record)."""
        ds = self._unit_of(split_variant_id(variant_id))
        if ds is None:
            return []
        if isinstance(ds, BatchedUnits):
            return ds.carrier_rows(split_variant_id(variant_id)[2], limit)
        row = ds.conn.execute(
            "SELECT c.samples, c.zyg FROM variants v JOIN carriers c ON c.vid = v.id WHERE v.vkey = ?",
            (split_variant_id(variant_id)[2],),
        ).fetchone()
        if row is None:
            return []
        table = ds.sample_table()
        idxs = decode_set(row[0])[:limit].tolist()
        zygs = unpack_codes(row[1], len(idxs)).tolist()
        out = []
        for idx, zyg in zip(idxs, zygs, strict=True):
            name, individual, biosample = table[idx]
            out.append((name, biosample, individual, ZYGOSITY_GENO[zyg]))
        return out

    def _sample_indexes(self, ds: _Dataset, individual_id: str) -> list[int]:
        return [r[0] for r in ds.conn.execute("SELECT idx FROM samples WHERE individual_id = ?", (individual_id,))]

    def _datasets_holding(self, individual_id: str):
        """(dataset name, open dataset, sample indexes) for every dataset with samples of this individual."""
        for name in self.datasets():
            ds = self._open(name)
            if ds is None:
                continue
            idxs = self._sample_indexes(ds, individual_id)
            if idxs:
                yield name, ds, idxs

    def variants_of_individual(
        self, individual_id: str, *, skip: int = 0, limit: int = 10
    ) -> tuple[list[VariantHit], int]:
        hits: list[VariantHit] = []
        total = 0
        for _, dataset, idxs in self._datasets_holding(individual_id):
            if dataset.batched is not None:
                page, n = dataset.batched.variants_of(idxs, max(skip - total, 0), limit - len(hits))
                hits, total = hits + page, total + n
                continue
            for ds in dataset.units():
                vids = _carried_variants(ds.conn, idxs)
                n = len(vids)
                if limit > len(hits) and skip < total + n:
                    offset = max(skip - total, 0)
                    page = vids[offset : offset + limit - len(hits)].tolist()
                    rows = ds.conn.execute(
                        f"SELECT {_COLUMNS} FROM variants WHERE id IN ({','.join('?' * len(page))}) ORDER BY id", page
                    ).fetchall()
                    hits += [ds.hit(r) for r in rows]
                total += n
        return hits, total

    # --- samples (the VariantReader protocol, gateway/variants/protocol.py) --------------

    def sample_count(self, dataset_id: str) -> int:
        """Samples of the live version that are not erased; 0 for an unknown dataset."""
        ds = self._open(dataset_id)
        if ds is None:
            return 0
        return sum(1 for name, _, _ in ds.sample_table() if name and not name.startswith("erased-"))

    def dataset_samples(self, dataset_id: str) -> DatasetSamples | None:
        """The live version's samples (erased ones included, as they are stored) and its facts."""
        ds = self._open(dataset_id)
        if ds is None:
            return None
        meta = dict(ds.conn.execute("SELECT key, value FROM meta").fetchall())
        rows = ds.conn.execute("SELECT name, individual_id, biosample_id FROM samples ORDER BY idx").fetchall()
        return DatasetSamples(
            dataset_id=dataset_id,
            version=ds.version,
            created=meta.get("created") or "1970-01-01",
            assembly=meta.get("assembly", ""),
            records=int(meta.get("records_written") or 0),
            samples=tuple(SampleRow(*row) for row in rows),
        )

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
        """Remove an individual's genotypes and links from every dataset; return the number of samples erased.

        Written as a new version (copy, change, switch), so readers never see a half-erased dataset. AC and
        carrier counts are corrected exactly, and AN at every variant (from the per-sample called-allele exceptions;
        versions written before those existed correct AN at the carried variants only).
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
            idxs = self._sample_indexes(ds, individual_id) if ds is not None else []
            if ds is None or not idxs:
                return 0
            try:
                self._rewrite_without(dataset_id, ds, idxs)
                return len(idxs)
            except VersionMoved:
                if attempt == attempts - 1:
                    raise
        return 0

    def _rewrite_without(self, dataset_id: str, ds: _Dataset, idxs: list[int]) -> None:
        """A new version without the samples `idxs`; in a partitioned version only the units of the batches holding
        them are rewritten (into a new folder; AN changes at every variant of those batches), the others are kept,
        and a new manifest is switched in one step like any version."""
        ds_dir = dataset_dir(self.data_dir, dataset_id)
        tmp = ds_dir / f".build-{os.getpid()}-{secrets.token_hex(4)}.sqlite"
        n_samples = len(ds.sample_table())
        new_dir = ds_dir / f"parts-e{time.time_ns()}-{os.getpid()}" if ds.partitions else None
        try:
            renamed = {}
            if new_dir is not None:
                new_dir.mkdir()
                renamed = _erase_in_units(ds, new_dir, idxs, n_samples)
            _erase_samples(ds.conn, tmp, idxs, n_samples, renamed)
            version = f"v{time.time_ns()}-{os.getpid()}.sqlite"
            with pointer_lock(ds_dir):
                check_based_on(ds_dir, ds.version)  # VersionMoved: nothing switched, the caller tries again
                os.replace(tmp, ds_dir / version)
                previous = current_version(ds_dir)
                switch_pointer(ds_dir, version)
            if previous and previous != version:
                (ds_dir / previous).unlink(missing_ok=True)
            _drop_superseded(ds_dir, [p.file for p in ds.partitions], renamed)
        except BaseException:
            if new_dir is not None:
                shutil.rmtree(new_dir, ignore_errors=True)
            raise
        finally:
            tmp.unlink(missing_ok=True)

    def close(self) -> None:
        conns: dict[str, _Dataset] | None = getattr(self._local, "datasets", None)
        for ds in (conns or {}).values():
            ds.close()
        self._local = threading.local()


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
        _erase_samples(ds._part(partition).conn, new_dir / name, local, size)
        renamed[partition.file] = f"{new_dir.name}/{name}"
    return renamed


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
            alleles = sum(2 if c == HOM else 1 for c in codes if c in (HOM, HET, HEMI))
            called = 0 if exact_an else sum(2 if c in (HOM, HET) else 1 for c in codes if c in (HOM, HET, HEMI))
            carriers.append((encode_set(samples[~gone], n_samples), pack_codes(zyg[~gone]), vid))
            variants.append((alleles, called, len(codes), vid))
    return carriers, variants


def _erase_samples(
    source: sqlite3.Connection, target: Path, idxs: list[int], n_samples: int, renamed: dict[str, str] | None = None
) -> None:
    """Copy a version file to `target` without the samples `idxs` (AC, AN, carriers, reverse index and links
    corrected exactly), fsynced; `renamed` moves a manifest's partition files (old name -> new)."""
    with sqlite3.connect(target) as copy:
        source.backup(copy)
    conn = sqlite3.connect(target, isolation_level=None)
    conn.execute("BEGIN")
    drop = np.array(idxs, dtype="<u4")
    place = ",".join("?" * len(idxs))
    exact_an = conn.execute("SELECT value FROM meta WHERE key = 'called_index'").fetchone() == ("1",)
    if exact_an:
        # Every variant loses the erased samples' called alleles: 2 each, except where sample_called says
        # otherwise (missing or haploid calls, records without GT).
        conn.execute("UPDATE variants SET an = an - ?", (2 * len(idxs),))
        for chunk, alleles, blob in conn.execute(
            f"SELECT chunk, alleles, vids FROM sample_called WHERE sample IN ({place})", idxs
        ).fetchall():
            vids = decode_set(blob).astype(np.int64) + chunk * CHUNK_VARIANTS + 1
            conn.executemany("UPDATE variants SET an = an + ? WHERE id = ?", ((2 - alleles, v) for v in vids.tolist()))
        conn.execute(f"DELETE FROM sample_called WHERE sample IN ({place})", idxs)
    carriers, variants = _without_carriers(conn, _carried_variants(conn, idxs).tolist(), drop, n_samples, exact_an)
    conn.executemany("UPDATE carriers SET samples=?, zyg=? WHERE vid=?", carriers)
    conn.executemany("UPDATE variants SET ac=ac-?, an=max(an-?,0), carriers=carriers-? WHERE id=?", variants)
    conn.execute(f"DELETE FROM sample_variants WHERE sample IN ({place})", idxs)
    conn.execute(
        f"UPDATE samples SET name='erased-'||idx, individual_id=NULL, biosample_id=NULL WHERE idx IN ({place})",
        idxs,
    )
    for old, new in (renamed or {}).items():
        conn.execute("UPDATE partitions SET file = ? WHERE file = ?", (new, old))
    conn.execute("COMMIT")
    conn.close()
    with open(target, "rb+") as f:
        os.fsync(f.fileno())
