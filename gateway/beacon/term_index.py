"""An in-memory inverted index of the metadata store for individuals counts, per worker process.

Why: on 100,000 individuals one SQL count with broad HPO filters costs 5 ms at the median and
over 100 ms at the tail (SQLite materialises tens of thousands of phenopacket keys per filter).
Here every individual is one position in numpy arrays (pk, dataset, sex), and every present
term (the kinds a filter matches: phenotype, disease, …) a sorted array of positions; a filter
is a boolean mask (cached per term set), a query the AND of its masks.

Correctness over speed: a snapshot is used only while the database is unchanged since it was
read. On SQLite that is `PRAGMA data_version` on a dedicated connection that never writes: it
changes whenever any other connection — another thread, worker or CLI process — commits. On
PostgreSQL it is the store's change counter (gateway.store.reads: the sum of the `store_version` slots,
raised by a trigger in every writing transaction, migrations 0002 and 0006), read once per request on the
thread's own connection; a record page is read together with the counter in one statement and used only
if the counter is the snapshot's. A stale snapshot is never
consulted: the request falls back to SQL while a new one is built (inline for small stores, in a
background thread for large ones). In-memory SQLite has no marker: the index is off there.
Memory: ≈ 4 bytes per (individual, term) plus the mask cache (MASK_CACHE_BYTES).

A node keeps ingesting while it is queried, and every write makes the snapshot stale. Reading the whole
store again (≈ 1 to 3 s at 100,000 individuals) after each write would leave every query on SQL, so a stale
snapshot is patched instead (`patched`): the store's change log (`phenopacket_changes`, written by triggers in
every writing transaction, migration 0008) names the phenopackets inserted, replaced or deleted since the
snapshot's `log_mark` (SQLite: the last log `seq` read; PostgreSQL: the MVCC snapshot read at, since sequence
order is not commit order there); the rows of those pks, and their terms, are read again in the same read
transaction: a patch costs the changes, not the store's size. Where the log cannot tell (pruned past the mark)
one read of every phenopacket's (pk, row version) finds the rows that are new, changed or gone (the row
version folds `revision`, which the store raises on every replacement, with the creation time, since SQLite may
give a deleted last row's pk to the next insert). One thread patches; the others wait for it briefly rather
than go to SQL (and, if it takes longer on a loaded machine, go to SQL for that request alone: the patch in
flight will finish, so no full read starts). A patch that would read more than PATCH_MAX_SHARE of the rows is a
full rebuild. Where old rows keep their places (inserts, replacements) a patch copies no per-row array by
gathering, renews only the position lists of the terms of the rows it re-read, and carries the cached masks
over (`_MaskBuffer`), each when first asked for (`_Origin`): the requests after a write do not build their masks
again, and the patch itself does not touch them.

Readers do not queue behind a patch: while one thread patches, the others answer from the snapshot before
it — stale by the writes that patch is taking in, i.e. as if the request had arrived a moment earlier — unless
this process has committed a write that snapshot lacks (`MetadataStore.local_writes`): a client that wrote
through this worker and then asks it reads its write. Callers that need the store's exact version (a record
page checked against the change counter) wait for the patch instead (`current(wait=True)`).
"""

from __future__ import annotations

import logging
import sqlite3
import threading
import urllib.parse
from collections import OrderedDict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import sqlalchemy as sa

from gateway.store.reads import PostgresReads, change_counter

log = logging.getLogger(__name__)

INLINE_BUILD_MAX_ROWS = 20_000  # smaller stores are rebuilt on the request that finds them changed
MASK_CACHE_BYTES = 32 * 1024 * 1024
PATCH_MAX_SHARE = 0.2  # past this share of changed rows, reading everything again is as cheap
PATCH_WAIT_SECONDS = 1.0  # how long a request waits for another thread's patch before it goes to SQL
_FETCH_CHUNK = 500


@dataclass
class Snapshot:
    """The store as it was at `version`: immutable once built."""

    version: int
    pks: np.ndarray  # phenopackets.pk, ascending
    dataset_codes: np.ndarray  # int32 per position
    dataset_code: dict[str, int]
    sex_codes: np.ndarray  # int32 per position
    sex_code: dict[str | None, int]
    postings: dict[str, np.ndarray]  # term -> ascending positions (rows of the matched kinds)
    # phenopackets.subject_id per position (the individual ids samples link to); an object array, so that a patch
    # copies pointers, not 100,000 Python references one by one; empty when read without them
    subjects: np.ndarray = field(default_factory=lambda: np.empty(0, dtype=object))
    versions: np.ndarray | None = None  # row version per position (_ROW_VERSION): what a patch compares
    log_mark: Any = None  # where in the change log this snapshot stands (PatchReads.changes): patches start there
    local_writes: int = 0  # the store's count of this process's commits before the snapshot was read: all in it
    _masks: OrderedDict = field(default_factory=OrderedDict)  # key -> (_MaskBuffer, its view of this size)
    _mask_lock: threading.Lock = field(default_factory=threading.Lock)
    # the snapshot this one was patched from, whose masks it carries when asked
    _origin: _Origin | None = field(default=None, repr=False, compare=False)

    @property
    def size(self) -> int:
        return len(self.pks)

    def present_terms(self) -> frozenset[str]:
        """The terms a filter can match (cuts broad descendant sets, as `individuals.present_terms` does)."""
        found = self.__dict__.get("_present")
        if found is None:
            found = self.__dict__["_present"] = frozenset(self.postings)
        return found

    def dataset_mask(self, datasets: Iterable[str]) -> np.ndarray:
        codes = [self.dataset_code[d] for d in datasets if d in self.dataset_code]
        return self._cached(("datasets", tuple(codes)), lambda: np.isin(self.dataset_codes, codes))

    def sex_mask(self, sexes: Iterable[str | None]) -> np.ndarray:
        codes = [self.sex_code[s] for s in sexes if s in self.sex_code]
        return self._cached(("sex", tuple(codes)), lambda: np.isin(self.sex_codes, codes))

    def terms_mask(self, terms: frozenset[str]) -> np.ndarray:
        def build() -> np.ndarray:
            mask = np.zeros(self.size, dtype=bool)
            for term in terms:
                positions = self.postings.get(term)
                if positions is not None:
                    mask[positions] = True
            return mask

        return self._cached(("terms", terms), build)

    def _cached(self, key, build) -> np.ndarray:
        found = self.held_mask(key)
        if found is not None:
            return found
        buffer = _MaskBuffer.holding(build())
        self._keep(key, buffer)
        return buffer.view(self.size)

    def held_mask(self, key) -> np.ndarray | None:
        """The cached mask `key`, or the one the snapshot this was patched from holds, carried over now (and kept);
        None if neither holds it."""
        with self._mask_lock:
            found = self._masks.get(key)
            if found is not None:
                self._masks.move_to_end(key)
                return found[1]
        buffer = self._carried(key)
        if buffer is None:
            return None
        self._keep(key, buffer)
        return buffer.view(self.size)

    def _carried(self, key) -> _MaskBuffer | None:
        origin = self._origin
        if origin is None:
            return None
        with origin.parent._mask_lock:
            found = origin.parent._masks.get(key)
        buffer = found[0] if found is not None else origin.parent._carried(key)
        return None if buffer is None else origin.carry(key, buffer, self.size)

    def _keep(self, key, buffer: _MaskBuffer) -> None:
        self.keep_all([(key, buffer)])

    def keep_all(self, masks: list[tuple[Any, _MaskBuffer]]) -> None:
        """Cache (key, buffer) masks, the last most recently used."""
        views = [(key, (buffer, buffer.view(self.size))) for key, buffer in masks]
        with self._mask_lock:
            self._masks.update(views)
            limit = max(8, MASK_CACHE_BYTES // max(self.size, 1))
            while len(self._masks) > limit:
                self._masks.popitem(last=False)

    def cached_masks(self) -> list[tuple[Any, _MaskBuffer]]:
        """(key, buffer) of every mask held, least recently used first: what a patch carries over."""
        with self._mask_lock:
            return [(key, buffer) for key, (buffer, _) in self._masks.items()]

    def select(self, datasets: tuple[str, ...], sexes: list[tuple[str | None, ...]], term_sets: list[frozenset[str]]):
        """The mask of individuals in `datasets` with one of each `sexes` and a term of each `term_sets`."""
        mask = self.dataset_mask(datasets)
        for group in sexes:
            mask = mask & self.sex_mask(group)
        for terms in term_sets:
            mask = mask & self.terms_mask(terms)
        return mask

    def positions_of(self, subject_ids: Iterable[str | None]) -> tuple[np.ndarray, np.ndarray]:
        """(i, position) for every i-th id that is a subject here, once per phenopacket of that subject (an
        individual may be held in several datasets): how a cross-link maps VCF samples onto individuals."""
        where: dict[str, list[int]] = {}
        for position, subject in enumerate(self.subjects):
            where.setdefault(subject, []).append(position)
        pairs = [
            (i, position) for i, subject in enumerate(subject_ids) if subject for position in where.get(subject, ())
        ]
        if not pairs:
            return np.empty(0, dtype=np.int64), np.empty(0, dtype=np.int64)
        found = np.array(pairs, dtype=np.int64)
        return found[:, 0], found[:, 1]

    def count_by_dataset(self, mask: np.ndarray) -> dict[str, int]:
        counts = np.bincount(self.dataset_codes[mask], minlength=len(self.dataset_code))
        return {d: int(counts[c]) for d, c in self.dataset_code.items() if counts[c]}

    def page(self, mask: np.ndarray, dataset_id: str, offset: int, limit: int) -> list[int]:
        """The pks of one dataset's matches, in pk order, from `offset` on."""
        code = self.dataset_code.get(dataset_id)
        if code is None:
            return []
        positions = np.flatnonzero(mask & (self.dataset_codes == code))
        return [int(p) for p in self.pks[positions[offset : offset + limit]]]


class _MaskBuffer:
    """A cached mask's booleans, with room for rows appended later.

    Why: every write makes a new snapshot, and an empty mask cache would make the requests after each write build
    their masks again (≈ 0.5 ms per term set at 100,000 individuals; a node ingesting 5 documents a second would
    spend half a core on it). A patch that only appends rows and re-reads a few carries the masks over instead
    (`_Origin.carry`): a snapshot reads its own prefix `data[:size]`, so the patched one may write the bits of its
    new rows past the old size into the same buffer — only the one snapshot whose size is `claimed` may, so two
    snapshots never write one byte — and copies the buffer only where a re-read row's bit changed."""

    __slots__ = ("claimed", "data")
    _claims = threading.Lock()

    def __init__(self, data: np.ndarray, claimed: int):
        self.data = data
        self.claimed = claimed

    @classmethod
    def holding(cls, mask: np.ndarray, spare: int | None = None) -> _MaskBuffer:
        size = len(mask)
        data = np.empty(size + (_spare_rows(size) if spare is None else spare), dtype=bool)
        data[:size] = mask
        data[size:] = False
        return cls(data, size)

    def view(self, size: int) -> np.ndarray:
        found = self.data[:size]
        found.flags.writeable = False
        return found

    def grown(self, old_size: int, size: int) -> np.ndarray | None:
        """The buffer's array to write rows old_size..size of a patched snapshot into, if the snapshot of
        `old_size` holds the claim and there is room (the claim moves to `size`); None: copy instead."""
        with self._claims:
            if self.claimed != old_size or len(self.data) < size:
                return None
            self.claimed = size
            return self.data


def _spare_rows(size: int) -> int:
    return max(256, size // 32)  # a copy per ≈ 3 % of growth: at 100,000 rows, one per 3,125 documents stored


_TERM_ROWS = (
    # Term rows count only where they sit in their individual's dataset, as the SQL filter requires.
    "SELECT t.term, t.phenopacket_pk FROM phenopacket_terms t JOIN phenopackets p ON p.pk = t.phenopacket_pk"
    " WHERE t.kind IN ({kinds}) AND t.dataset_id = p.dataset_id"
)
# A row's version: its revision and its creation time (ms) in one integer (revisions below 2**20; good until
# the year 2250). Two versions of one pk differ whenever the row was replaced or deleted and inserted anew.
_ROW_VERSION = {
    "sqlite": "(revision + 1048576 * CAST((julianday(created_at) - 2440587.5) * 86400000 AS INTEGER))",
    "postgresql": "(revision + 1048576 * CAST(EXTRACT(EPOCH FROM created_at) * 1000 AS BIGINT))",
}
_INDIVIDUAL_ROWS = "SELECT pk, dataset_id, sex, subject_id, {version} FROM phenopackets ORDER BY pk"
_CHANGED_ROWS = "SELECT pk, dataset_id, sex, subject_id, {version} FROM phenopackets WHERE pk "
# The change log (migration 0008). SQLite: the highest seq read (or the pruned horizon, if higher) is the mark.
_SQLITE_MARK = (
    "SELECT coalesce((SELECT max(seq) FROM phenopacket_changes), 0), pruned_seq"
    " FROM phenopacket_changes_horizon WHERE id = 1"
)
_SQLITE_CHANGES = "SELECT DISTINCT phenopacket_pk FROM phenopacket_changes WHERE seq > ? AND seq <= ? LIMIT ?"
# PostgreSQL: the mark is the reader's MVCC snapshot; the rows it did not see are those of transactions it did not
# see, all at or past its xmin (every transaction below xmin had ended, and was seen if it committed).
_PG_MARK = "SELECT CAST(pg_current_snapshot() AS text), prunes FROM phenopacket_changes_horizon WHERE id = 1"
_PG_XMIN = "CAST(CAST(pg_snapshot_xmin(CAST(:mark AS pg_snapshot)) AS text) AS bigint)"
# After a prune since the mark: every pruned row's transaction below the mark's xmin had ended before the mark, and
# its changes were read then.
_PG_READABLE = f"SELECT pruned_xid < {_PG_XMIN} FROM phenopacket_changes_horizon WHERE id = 1"
_PG_CHANGES = (
    f"SELECT DISTINCT phenopacket_pk FROM phenopacket_changes WHERE xid >= {_PG_XMIN}"
    " AND NOT pg_visible_in_snapshot(CAST(CAST(xid AS text) AS xid8), CAST(:mark AS pg_snapshot)) LIMIT :cap"
)
# PostgreSQL: everything a patch reads, in one statement on the thread's own autocommit connection (one round trip,
# one MVCC snapshot, no pool checkout nor transaction): the counter, the mark of now, whether the log can tell what
# changed since the old mark (no prune since, or none that may have taken a row it did not see), the pks it names,
# their rows (parallel arrays, in pk order) and their terms grouped. Why: the patch runs on the path of the request
# that finds the snapshot stale, and under load each round trip costs milliseconds (eight before: the pool's ping,
# BEGIN, five statements, COMMIT).
_PG_ONE_READ = """
WITH h AS (
  SELECT (SELECT coalesce(sum(version), 0) FROM store_version) AS version,
         CAST(pg_current_snapshot() AS text) AS mark, prunes,
         prunes = %(prunes)s OR pruned_xid < {xmin} AS readable
  FROM phenopacket_changes_horizon WHERE id = 1),
changed AS (
  SELECT DISTINCT phenopacket_pk AS pk FROM phenopacket_changes
  WHERE xid >= {xmin}
    AND NOT pg_visible_in_snapshot(CAST(CAST(xid AS text) AS xid8), CAST(%(mark)s AS pg_snapshot))
  LIMIT %(cap)s),
fresh AS (
  SELECT pk, dataset_id, sex, subject_id, {version} AS row_version FROM phenopackets WHERE pk IN (SELECT pk FROM changed)),
grouped AS (
  SELECT t.term, array_agg(t.phenopacket_pk) AS pks FROM phenopacket_terms t JOIN fresh p ON p.pk = t.phenopacket_pk
  WHERE t.kind = ANY(%(kinds)s) AND t.dataset_id = p.dataset_id GROUP BY t.term)
SELECT h.version, h.mark, h.prunes, h.readable,
  (SELECT array_agg(pk) FROM changed),
  (SELECT array_agg(pk ORDER BY pk) FROM fresh), (SELECT array_agg(dataset_id ORDER BY pk) FROM fresh),
  (SELECT array_agg(sex ORDER BY pk) FROM fresh), (SELECT array_agg(subject_id ORDER BY pk) FROM fresh),
  (SELECT array_agg(row_version ORDER BY pk) FROM fresh),
  (SELECT json_object_agg(term, pks) FROM grouped)
FROM h
""".format(
    xmin="CAST(CAST(pg_snapshot_xmin(CAST(%(mark)s AS pg_snapshot)) AS text) AS bigint)",
    version=_ROW_VERSION["postgresql"],
)
# PostgreSQL groups the term rows itself: one row per term with its individuals (a few thousand rows, not
# half a million (term, pk) tuples for 100,000 individuals).
_TERM_POSTINGS = (
    "SELECT t.term, array_agg(t.phenopacket_pk) FROM phenopacket_terms t JOIN phenopackets p ON p.pk = t.phenopacket_pk"
    " WHERE t.kind IN ({kinds}) AND t.dataset_id = p.dataset_id GROUP BY t.term"
)


def build_snapshot(connection: sqlite3.Connection, version: int, kinds: tuple[str, ...]) -> Snapshot:
    """Read the store in one read transaction (the snapshot is consistent with itself)."""
    connection.execute("BEGIN")
    try:
        log_mark = _SqliteReads(connection, kinds).mark()[0]
        rows = connection.execute(_INDIVIDUAL_ROWS.format(version=_ROW_VERSION["sqlite"])).fetchall()
        term_rows = connection.execute(_TERM_ROWS.format(kinds=",".join("?" * len(kinds))), kinds).fetchall()
    finally:
        connection.execute("COMMIT")
    snapshot = snapshot_from(version, rows, term_rows)
    snapshot.log_mark = log_mark
    return snapshot


def snapshot_from(version: int, rows: Sequence, term_rows: Iterable, grouped: dict | None = None) -> Snapshot:
    """The arrays of a snapshot from (pk, dataset_id, sex[, subject_id]) rows in pk order and (term, pk) rows
    (or `grouped`, term -> its pks, when the database grouped them)."""
    pks = np.fromiter((r[0] for r in rows), dtype=np.int64, count=len(rows))
    dataset_code: dict[str, int] = {}
    sex_code: dict[str | None, int] = {}
    dataset_codes = np.fromiter(
        (dataset_code.setdefault(r[1], len(dataset_code)) for r in rows), dtype=np.int32, count=len(rows)
    )
    sex_codes = np.fromiter((sex_code.setdefault(r[2], len(sex_code)) for r in rows), dtype=np.int32, count=len(rows))
    if grouped is None:
        grouped = {}
        for term, pk in term_rows:
            grouped.setdefault(term, []).append(pk)
    postings = {
        term: np.unique(np.searchsorted(pks, np.array(members, dtype=np.int64))).astype(np.int32)
        for term, members in grouped.items()
    }
    subjects = np.array([r[3] for r in rows] if rows and len(rows[0]) > 3 else [], dtype=object)
    versions = (
        np.fromiter((r[4] for r in rows), dtype=np.int64, count=len(rows)) if not rows or len(rows[0]) > 4 else None
    )
    return Snapshot(
        version, pks, dataset_codes, dataset_code, sex_codes, sex_code, postings, subjects=subjects, versions=versions
    )


def _merged_positions(previous: np.ndarray, added: np.ndarray) -> np.ndarray:
    """Two ascending position arrays as one, without duplicates: an insert into the sorted array (a copy), not
    a sort of both (a common term holds tens of thousands of positions)."""
    place = np.searchsorted(previous, added)
    there = (place < len(previous)) & (previous[np.minimum(place, len(previous) - 1)] == added)
    if there.all():
        return previous
    return np.insert(previous, place[~there], added[~there])


# (pk, dataset_id, sex, subject_id, row version) rows and term -> pks, of the given pks: what a patch reads
Fetch = Callable[[list[int]], tuple[list[Sequence], dict[str, list[int]]]]


def patched(
    old: Snapshot, version: int, pks: np.ndarray, versions: np.ndarray, fetch: Fetch, reread: np.ndarray | None = None
) -> Snapshot | None:
    """`old` brought to the store whose phenopackets are now `pks` (ascending) at row `versions`, reading only
    the rows that are new or replaced (and those of `reread`, known changed); None when `old` cannot be patched
    or patching would not pay."""
    if old.versions is None or (old.size and not len(old.subjects)):
        return None
    n = len(pks)
    # Old rows at their old places (no row gone, new keys after the old ones): the common case of ingest.
    stable = old.size <= n and bool(np.array_equal(pks[: old.size], old.pks))
    if stable:  # no gathers over every row: the places are the same
        kept = versions[: old.size] == old.versions  # old rows at the same row version
        if reread is not None and len(reread) and old.size:  # an empty snapshot has no old row to re-read
            place = np.searchsorted(old.pks, reread)
            kept[place[(place < old.size) & (old.pks[np.minimum(place, max(old.size - 1, 0))] == reread)]] = False
        kept_old = kept_new = np.empty(0, dtype=np.int64)  # unused: every kept row stays where it is
        fresh = np.concatenate([np.flatnonzero(~kept), np.arange(old.size, n)])  # places whose rows are read again
    else:
        where = np.searchsorted(pks, old.pks)  # each old row's place among the rows now
        found = where < n
        found[found] = pks[where[found]] == old.pks[found]
        kept = found.copy()  # old rows still there at the same row version
        kept[found] = versions[where[found]] == old.versions[found]
        if reread is not None and len(reread):
            kept &= ~np.isin(old.pks, reread)
        kept_old = np.flatnonzero(kept)
        kept_new = where[kept_old]
        carried = np.zeros(n, dtype=bool)
        carried[kept_new] = True
        fresh = np.flatnonzero(~carried)  # places whose rows are read again
    if len(fresh) > max(64, PATCH_MAX_SHARE * n):
        return None
    rows, grouped = fetch([int(pk) for pk in pks[fresh]]) if len(fresh) else ([], {})
    by_pk = {int(r[0]): r for r in rows}
    if len(by_pk) != len(fresh):
        return None  # a row went between the two reads: not in one transaction, start again from scratch

    dataset_code, sex_code = dict(old.dataset_code), dict(old.sex_code)
    if stable:  # every old row at its place: copies of the arrays, no gather of 100,000 elements
        dataset_codes, sex_codes, new_versions, subjects = (
            _extended(a, n) for a in (old.dataset_codes, old.sex_codes, old.versions, old.subjects)
        )
    else:
        dataset_codes = np.empty(n, dtype=np.int32)
        sex_codes = np.empty(n, dtype=np.int32)
        new_versions = np.empty(n, dtype=np.int64)
        subjects = np.empty(n, dtype=object)
        dataset_codes[kept_new] = old.dataset_codes[kept_old]
        sex_codes[kept_new] = old.sex_codes[kept_old]
        new_versions[kept_new] = old.versions[kept_old]
        subjects[kept_new] = old.subjects[kept_old]
    for place in fresh.tolist():
        row = by_pk[int(pks[place])]
        dataset_codes[place] = dataset_code.setdefault(row[1], len(dataset_code))
        sex_codes[place] = sex_code.setdefault(row[2], len(sex_code))
        subjects[place] = row[3]
        new_versions[place] = row[4]

    if stable:
        dropped = fresh[fresh < old.size]  # re-read old rows: their old terms go, their terms now come back below
        postings = _without_positions(old.postings, dropped)
    else:
        moved = np.full(old.size, -1, dtype=np.int64)
        moved[kept_old] = kept_new
        postings = _moved_postings(old.postings, moved)
    for term, members in grouped.items():
        added = np.unique(np.searchsorted(pks, np.array(members, dtype=np.int64)).astype(np.int32))
        previous = postings.get(term)
        postings[term] = added if previous is None else _merged_positions(previous, added)
    snapshot = Snapshot(
        version,
        pks.astype(np.int64),
        dataset_codes,
        dataset_code,
        sex_codes,
        sex_code,
        postings,
        subjects=subjects,
        versions=new_versions,
    )
    if stable:
        terms_at: dict[int, set[str]] = {}
        for term, members in grouped.items():
            for place in np.searchsorted(pks, np.array(members, dtype=np.int64)).tolist():
                terms_at.setdefault(place, set()).add(term)
        _Origin.link(old, snapshot, fresh, terms_at)
    return snapshot


def _extended(values: np.ndarray, n: int) -> np.ndarray:
    """`values` followed by room for the rows appended (filled by the caller)."""
    out = np.empty(n, dtype=values.dtype)
    out[: len(values)] = values
    return out


def _flat(postings: dict[str, np.ndarray]) -> tuple[list[str], list[np.ndarray], np.ndarray, np.ndarray]:
    """(terms, their position arrays, all positions one after the other, where each term's run ends): one numpy
    pass over every (term, individual) pair instead of a few numpy calls per term (thousands of terms)."""
    terms = list(postings)
    arrays = list(postings.values())
    ends = np.cumsum(np.fromiter((len(a) for a in arrays), dtype=np.int64, count=len(arrays)))
    flat = np.concatenate(arrays) if arrays else np.empty(0, dtype=np.int32)
    return terms, arrays, flat, ends


def _without_positions(postings: dict[str, np.ndarray], dropped: np.ndarray) -> dict[str, np.ndarray]:
    """`postings` without the positions `dropped` (rows replaced in place); only the lists holding one of them
    are copied, the others are shared with the old snapshot."""
    out = dict(postings)
    if not len(dropped) or not postings:
        return out
    terms, arrays, flat, ends = _flat(postings)
    holding = np.unique(np.searchsorted(ends, np.flatnonzero(np.isin(flat, dropped)), side="right"))
    for i in holding.tolist():
        rest = arrays[i][~np.isin(arrays[i], dropped)]
        if len(rest):
            out[terms[i]] = rest
        else:
            del out[terms[i]]
    return out


def _moved_postings(postings: dict[str, np.ndarray], moved: np.ndarray) -> dict[str, np.ndarray]:
    """`postings` with every old position at its new place (`moved`; -1: the row went or is read again)."""
    if not postings:
        return {}
    terms, _, flat, ends = _flat(postings)
    placed = moved[flat]
    going = np.flatnonzero(placed < 0)
    # each term's run in the kept positions ends where it ended, less the positions that went before that end
    bounds = np.concatenate([[0], ends - np.searchsorted(going, ends, side="left")])
    kept = np.delete(placed, going).astype(np.int32)
    return {term: kept[bounds[i] : bounds[i + 1]] for i, term in enumerate(terms) if bounds[i + 1] > bounds[i]}


MASK_ORIGINS = 4  # how many snapshots back a mask is carried from (each older one held costs ≈ 3 MB at 100,000)


@dataclass(frozen=True)
class _Origin:
    """How a patched snapshot carries the masks of the one it was patched from (`parent`: old rows at their places,
    rows `fresh` read again, `terms_at` their terms), one mask when it is first asked for.

    Why lazily: a node ingesting 5 documents a second patches 5 times a second, and carrying every cached mask at
    each patch (hundreds at 100,000 individuals) cost ≈ 3-6 ms of CPU on the path of the request that patches, with
    every other request thread of the worker waiting on the GIL; most masks are not asked for before the next patch.
    """

    parent: Snapshot
    rows: list[int]
    inside: list[int]  # the fresh rows that were already there (replaced in place)
    terms_at: dict[int, set[str]]
    codes_at: dict[str, list[int]]

    @classmethod
    def link(cls, old: Snapshot, new: Snapshot, fresh: np.ndarray, terms_at: dict[int, set[str]]) -> None:
        """Let `new` carry `old`'s masks, and drop the link MASK_ORIGINS snapshots back (the older ones may go)."""
        rows = fresh.tolist()
        codes_at = {"datasets": new.dataset_codes[fresh].tolist(), "sex": new.sex_codes[fresh].tolist()}
        new._origin = cls(old, rows, [place for place in rows if place < old.size], terms_at, codes_at)
        ancestor = old
        for _ in range(MASK_ORIGINS - 1):
            if ancestor._origin is None:
                return
            ancestor = ancestor._origin.parent
        ancestor._origin = None

    def carry(self, key, buffer: _MaskBuffer, size: int) -> _MaskBuffer:
        """The mask `key` of the patched snapshot (of `size` rows) from the parent's `buffer`: the bits of the fresh
        rows set as a build on the patched snapshot would set them, written past the parent's rows into the same
        buffer where it may (_MaskBuffer.grown), else into a copy."""
        old_size = self.parent.size
        kind, what = key
        if kind == "terms":
            bits = [not what.isdisjoint(self.terms_at.get(place, ())) for place in self.rows]
        else:
            bits = [code in what for code in self.codes_at[kind]]
        changed_inside = any(bool(buffer.data[place]) != bit for place, bit in zip(self.inside, bits, strict=False))
        data = None if changed_inside else buffer.grown(old_size, size)
        if data is None:  # a bit of an old row changed, or another snapshot grew this buffer: a copy of its own
            buffer = _MaskBuffer.holding(buffer.data[:old_size], spare=size - old_size + _spare_rows(size))
            buffer.claimed = size
            data = buffer.data
        for place, bit in zip(self.rows, bits, strict=True):
            data[place] = bit
        return buffer


def _with_keys(pks: np.ndarray, more: np.ndarray) -> np.ndarray:
    """The sorted union of `pks` and `more` (sorted): a copy with an appended tail when the new keys all come
    after the old ones (inserts), else a full union."""
    if not len(pks):
        return more.copy()
    place = np.searchsorted(pks, more)
    known = (place < len(pks)) & (pks[np.minimum(place, len(pks) - 1)] == more)
    new = more[~known]
    if not len(new):
        return pks
    if new[0] > pks[-1]:
        return np.concatenate([pks, new])
    return np.union1d(pks, new)


def patch_from(reads: PatchReads, old: Snapshot, version: int) -> Snapshot | None:
    """`old` patched to the store `reads` sees: the rows the change log names since `old.log_mark`, or, where the
    log cannot tell, the rows whose version differs from the snapshot's."""
    cap = patch_cap(old.size)
    changed, mark = reads.changes(old.log_mark, cap)
    if changed is None:
        pks, versions = reads.keys()
        return _marked(patched(old, version, pks, versions, reads.fetch), mark)
    if len(changed) > cap or old.versions is None:
        return None  # a bulk change: reading everything again is as cheap
    rows, grouped = reads.fetch(sorted(changed)) if changed else ([], {})
    present = {int(r[0]): r for r in rows}
    gone = np.array(sorted(set(changed) - set(present)), dtype=np.int64)
    base_pks, base_versions = old.pks, old.versions
    if len(gone):
        staying = ~np.isin(base_pks, gone)
        base_pks, base_versions = base_pks[staying], base_versions[staying]
    upserted = np.array(sorted(present), dtype=np.int64)
    pks = _with_keys(base_pks, upserted)
    versions = np.zeros(len(pks), dtype=np.int64)
    if len(pks) >= len(base_pks) and np.array_equal(pks[: len(base_pks)], base_pks):
        versions[: len(base_pks)] = base_versions  # new keys appended (inserts): the old ones in place
    else:
        versions[np.searchsorted(pks, base_pks)] = base_versions
    versions[np.searchsorted(pks, upserted)] = [present[pk][4] for pk in upserted.tolist()]

    def fetch(wanted: list[int]) -> tuple[list[Sequence], dict[str, list[int]]]:
        return [present[pk] for pk in wanted], grouped  # `wanted` is `upserted`: every changed row is read again

    return _marked(patched(old, version, pks, versions, fetch, reread=upserted), mark)


def patch_cap(size: int) -> int:
    """How many changed rows a patch of a `size`-row snapshot reads at most (past it, a full read is as cheap)."""
    return int(max(64, PATCH_MAX_SHARE * size))


def _marked(snapshot: Snapshot | None, log_mark: Any) -> Snapshot | None:
    if snapshot is not None:
        snapshot.log_mark = log_mark
    return snapshot


class PatchReads:
    """What a patch reads, in the caller's read transaction: one per dialect."""

    def mark(self) -> tuple[Any, Any]:
        """(where the change log stands now, as `Snapshot.log_mark`; the pruned horizon)."""
        raise NotImplementedError

    def changes(self, mark: Any, cap: int) -> tuple[list[int] | None, Any]:
        """(the pks the change log names since `mark`, at most cap + 1 of them, or None where the log cannot tell:
        no mark, or rows past it pruned; the mark of now)."""
        raise NotImplementedError

    def keys(self) -> tuple[np.ndarray, np.ndarray]:
        raise NotImplementedError

    def terms(self, wanted: list[int]) -> dict[str, list[int]]:
        raise NotImplementedError

    def fetch(self, wanted: list[int]) -> tuple[list[Sequence], dict[str, list[int]]]:
        raise NotImplementedError


class _SqliteReads(PatchReads):
    def __init__(self, connection: sqlite3.Connection, kinds: tuple[str, ...]):
        self.connection = connection
        self.kinds = kinds

    def mark(self) -> tuple[Any, Any]:
        # One writer at a time: `seq` is commit order, and the highest one read is a high-water mark.
        top, pruned = self.connection.execute(_SQLITE_MARK).fetchone()
        return max(int(top), int(pruned)), int(pruned)

    def changes(self, mark: Any, cap: int) -> tuple[list[int] | None, Any]:
        now, pruned = self.mark()
        if mark is None or pruned > mark:
            return None, now
        rows = self.connection.execute(_SQLITE_CHANGES, (mark, now, cap + 1)).fetchall()
        return [int(r[0]) for r in rows], now

    def keys(self) -> tuple[np.ndarray, np.ndarray]:
        keys = self.connection.execute(f"SELECT pk, {_ROW_VERSION['sqlite']} FROM phenopackets ORDER BY pk").fetchall()
        both = np.array(keys, dtype=np.int64).reshape(len(keys), 2)
        return both[:, 0].copy(), both[:, 1].copy()

    def terms(self, wanted: list[int]) -> dict[str, list[int]]:
        return self._read(wanted, rows=False)[1]

    def fetch(self, wanted: list[int]) -> tuple[list[Sequence], dict[str, list[int]]]:
        return self._read(wanted, rows=True)

    def _read(self, wanted: list[int], rows: bool) -> tuple[list[Sequence], dict[str, list[int]]]:
        found: list[Sequence] = []
        grouped: dict[str, list[int]] = {}
        for start in range(0, len(wanted), _FETCH_CHUNK):
            chunk = wanted[start : start + _FETCH_CHUNK]
            marks = ",".join("?" * len(chunk))
            if rows:
                query = _CHANGED_ROWS.format(version=_ROW_VERSION["sqlite"]) + f"IN ({marks})"
                found += self.connection.execute(query, chunk).fetchall()
            term_rows = _TERM_ROWS.format(kinds=",".join("?" * len(self.kinds))) + f" AND p.pk IN ({marks})"
            for term, pk in self.connection.execute(term_rows, (*self.kinds, *chunk)):
                grouped.setdefault(term, []).append(pk)
        return found, grouped


class _PostgresReads(PatchReads):
    def __init__(self, connection: sa.Connection, kinds: tuple[str, ...]):
        self.connection = connection
        self.names = {f"kind{i}": kind for i, kind in enumerate(kinds)}
        self.row_version = _ROW_VERSION["postgresql"]

    def mark(self) -> tuple[Any, Any]:
        # The MVCC snapshot of this read (sequence order is not commit order here, see migration 0008) and the
        # number of prunes it sees: a prune committed later may have taken rows this snapshot did not see.
        snapshot, prunes = self.connection.execute(sa.text(_PG_MARK)).one()
        return (snapshot, int(prunes)), int(prunes)

    def changes(self, mark: Any, cap: int) -> tuple[list[int] | None, Any]:
        now, prunes = self.mark()
        if mark is None:
            return None, now
        snapshot, prunes_then = mark
        if prunes != prunes_then:
            readable = self.connection.execute(sa.text(_PG_READABLE), {"mark": snapshot}).scalar_one()
            if not readable:
                return None, now
        rows = self.connection.execute(sa.text(_PG_CHANGES), {"mark": snapshot, "cap": cap + 1}).all()
        return [int(r[0]) for r in rows], now

    def keys(self) -> tuple[np.ndarray, np.ndarray]:
        # two arrays in one row: far fewer Python objects than 100,000 (pk, version) tuples
        keys, row_versions = self.connection.execute(
            sa.text(f"SELECT array_agg(pk ORDER BY pk), array_agg({self.row_version} ORDER BY pk) FROM phenopackets")
        ).one()
        return np.array(keys or [], dtype=np.int64), np.array(row_versions or [], dtype=np.int64)

    def terms(self, wanted: list[int]) -> dict[str, list[int]]:
        in_kinds = ",".join(f":{name}" for name in self.names)
        term_rows = sa.text(
            _TERM_POSTINGS.format(kinds=in_kinds).replace(" GROUP BY", " AND p.pk = ANY(:pks) GROUP BY")
        )
        return dict(self.connection.execute(term_rows, {**self.names, "pks": wanted}).all())

    def fetch(self, wanted: list[int]) -> tuple[list[Sequence], dict[str, list[int]]]:
        rows = self.connection.execute(
            sa.text(_CHANGED_ROWS.format(version=self.row_version) + "= ANY(:pks)"), {"pks": wanted}
        ).all()
        return list(rows), self.terms(wanted)


class _PostgresOneRead(PatchReads):
    """What `_PG_ONE_READ` read for a patch, served to `patch_from` (which asks for exactly the rows it names)."""

    def __init__(self, now: Any, changed: list[int], rows: list[Sequence], grouped: dict[str, list[int]]):
        self.now = now
        self.changed = changed
        self.rows = rows
        self.grouped = grouped

    def changes(self, mark: Any, cap: int) -> tuple[list[int] | None, Any]:
        return self.changed, self.now

    def fetch(self, wanted: list[int]) -> tuple[list[Sequence], dict[str, list[int]]]:
        return self.rows, self.grouped


class SqliteSource:
    """Version marker and reads of one SQLite file, on connections of their own."""

    def __init__(self, database_path: str):
        self.database_path = database_path
        self._monitor: sqlite3.Connection | None = None
        self._monitor_lock = threading.Lock()

    def _connect(self) -> sqlite3.Connection:
        connection = sqlite3.connect(
            f"file:{urllib.parse.quote(self.database_path)}?mode=ro",
            uri=True,
            check_same_thread=False,
            isolation_level=None,
        )
        connection.execute("PRAGMA busy_timeout = 5000")
        return connection

    def version(self) -> int:
        # data_version is meaningful only on this one connection, which never writes.
        with self._monitor_lock:
            if self._monitor is None:
                self._monitor = self._connect()
            return int(self._monitor.execute("PRAGMA data_version").fetchone()[0])

    def read(self, version: int, kinds: tuple[str, ...]) -> Snapshot:
        connection = self._connect()
        try:
            return build_snapshot(connection, version, kinds)
        finally:
            connection.close()

    def patch(self, old: Snapshot, version: int, kinds: tuple[str, ...]) -> Snapshot | None:
        """`old` patched to the store as it is now, in one read transaction (see `patch_from`)."""
        connection = self._connect()
        try:
            connection.execute("BEGIN")
            try:
                return patch_from(_SqliteReads(connection, kinds), old, version)
            finally:
                connection.execute("COMMIT")
        finally:
            connection.close()

    def close(self) -> None:
        with self._monitor_lock:
            if self._monitor is not None:
                self._monitor.close()
                self._monitor = None


class PostgresSource:
    """Version marker and reads of a PostgreSQL store: the change counter (gateway.store.reads).

    The counter rises inside every transaction that writes the phenopacket tables, so reading it is one
    round trip per request (on the thread's own connection, no lock held), and a snapshot read in one
    REPEATABLE READ transaction together with the counter is exactly the store at that version.
    """

    def __init__(self, engine: sa.Engine, reads: PostgresReads):
        self.engine = engine
        self.reads = reads

    def version(self) -> int:
        return self.reads.change_counter()

    def read(self, version: int, kinds: tuple[str, ...]) -> Snapshot:
        del version  # the version is re-read inside the snapshot's own transaction
        names = {f"kind{i}": kind for i, kind in enumerate(kinds)}
        term_rows = sa.text(_TERM_POSTINGS.format(kinds=",".join(f":{name}" for name in names)))
        with (
            self.engine.connect().execution_options(isolation_level="REPEATABLE READ") as connection,
            connection.begin(),
        ):
            seen = change_counter(connection)
            assert seen is not None  # a PostgreSQL connection has the counter
            log_mark = _PostgresReads(connection, kinds).mark()[0]
            rows = connection.execute(sa.text(_INDIVIDUAL_ROWS.format(version=_ROW_VERSION["postgresql"]))).all()
            grouped: dict[str, list[int]] = dict(connection.execute(term_rows, names).all())
        snapshot = snapshot_from(seen, rows, (), grouped)
        snapshot.log_mark = log_mark
        return snapshot

    def patch(self, old: Snapshot, version: int, kinds: tuple[str, ...]) -> Snapshot | None:
        """`old` patched to the store as it is now: from one statement (`_PG_ONE_READ`) where the change log can
        tell what changed since the snapshot's mark, else in one REPEATABLE READ transaction with the counter."""
        del version
        if old.log_mark is not None:
            read = self._one_read(old, kinds)
            if read is not None:
                now, reads = read
                return old if now == old.version else patch_from(reads, old, now)
        with (
            self.engine.connect().execution_options(isolation_level="REPEATABLE READ") as connection,
            connection.begin(),
        ):
            seen = change_counter(connection)
            assert seen is not None
            if seen == old.version:
                return old
            return patch_from(_PostgresReads(connection, kinds), old, seen)

    def _one_read(self, old: Snapshot, kinds: tuple[str, ...]) -> tuple[int, _PostgresOneRead] | None:
        """(the counter, what changed since `old.log_mark`) in one round trip; None where the log cannot tell."""
        snapshot, prunes = old.log_mark
        parameters = {"mark": snapshot, "prunes": prunes, "cap": patch_cap(old.size) + 1, "kinds": list(kinds)}
        row = self.reads.one_statement(_PG_ONE_READ, parameters)[0]
        version, now, prunes_now, readable, changed, pks, datasets, sexes, subjects, row_versions, grouped = row
        if not readable:
            return None
        rows: list[Sequence] = list(
            zip(pks or [], datasets or [], sexes or [], subjects or [], row_versions or [], strict=True)
        )
        reads = _PostgresOneRead((now, int(prunes_now)), [int(pk) for pk in changed or []], rows, grouped or {})
        return int(version), reads

    def close(self) -> None:
        """The connections belong to the store (closed with it)."""


_ERRORS: tuple[type[Exception], ...] = (sqlite3.Error, sa.exc.SQLAlchemyError)
_STALE = object()  # TermIndex._answer: neither current nor being rebuilt
_IN_FLIGHT = object()  # TermIndex._patch: waited PATCH_WAIT_SECONDS for another thread's patch, in vain


class TermIndex:
    """The current snapshot of one store, or None while it is being (re)built."""

    def __init__(
        self, source: SqliteSource | PostgresSource, kinds: tuple[str, ...], local_writes: Callable[[], int] = lambda: 0
    ):
        self.source = source
        self.kinds = kinds
        self.local_writes = local_writes  # how many writes this process has committed to the store
        self._lock = threading.Lock()
        self._snapshot: Snapshot | None = None
        self._building = False
        self._patching = threading.Lock()  # one patch at a time; the others answer from the snapshot before it
        self.patches = 0  # snapshots made by patching (tests and benchmarks look at it)
        self.stale_answers = 0  # answers from the previous snapshot while a patch ran

    def answers_around(self, snapshot: Snapshot) -> bool:
        """Whether an answer may come from `snapshot` though the store moved on: a patch is in flight (the answer
        is as if the request had come a moment earlier) and the snapshot holds this process's writes."""
        return self._patching.locked() and snapshot.local_writes >= self.local_writes()

    def latest(self) -> Snapshot | None:
        """The snapshot last built, unchecked: for a caller that checks its version in its own read."""
        return self._snapshot

    def current(self, wait: bool = False, seen: int | None = None) -> Snapshot | None:
        """The snapshot if it matches the database as it is now (or as the caller `seen` it: a version it has just
        read); else None (use SQL) and a rebuild starts.

        A stale snapshot is patched first, by one thread; meanwhile the others answer from the snapshot before
        the patch if it holds this process's writes, else (or with `wait`) wait for it (PATCH_WAIT_SECONDS)."""
        try:
            # no lock held over the round trip: threads do not queue here
            version = self.source.version() if seen is None else seen
            with self._lock:
                snapshot, answer = self._answer(version)
            if answer is not _STALE:
                return answer
            if snapshot is not None and snapshot.versions is not None:
                found = self._patch(version, wait)
                if found is _IN_FLIGHT:
                    return None  # another thread's patch is slow (a loaded machine): SQL for this request alone
                if found is not None:
                    return found
            with self._lock:
                snapshot, answer = self._answer(version)
                if answer is not _STALE:
                    return answer
                self._building = True
                inline = snapshot is None or snapshot.size <= INLINE_BUILD_MAX_ROWS
        except _ERRORS:
            log.debug("term index: no version marker for %s", self.source, exc_info=True)
            return None
        if inline:
            snapshot = self._rebuild(version)
            # On PostgreSQL the snapshot carries the version it read, which may be newer than `version`.
            return snapshot if snapshot is not None and snapshot.version == version else None
        threading.Thread(target=self._rebuild, args=(version,), name="term-index", daemon=True).start()
        return None

    def _answer(self, version: int) -> tuple[Snapshot | None, Any]:
        """(the snapshot held, what `current` answers now: the snapshot if current for `version`, None while a
        rebuild runs, else _STALE); called with the lock held."""
        snapshot = self._snapshot
        # Counters only rise: a snapshot newer than what this request saw is current for it too.
        if snapshot is not None and snapshot.version >= version:
            return snapshot, snapshot
        return snapshot, None if self._building else _STALE

    def _patch(self, version: int, wait: bool) -> Any:
        """The snapshot patched to at least `version` by this thread or by the one already patching, or (without
        `wait`) the snapshot before a patch in flight if it holds this process's writes; _IN_FLIGHT when the patch
        in flight takes too long; None when a patch does not pay (the caller rebuilds)."""
        if not self._patching.acquire(blocking=False):
            if not wait:
                with self._lock:
                    held = self._snapshot
                if held is not None and self.answers_around(held):
                    self.stale_answers += 1
                    return held
            if not self._patching.acquire(timeout=PATCH_WAIT_SECONDS):
                # Not None: that would start a full read of the store (seconds at 100,000 individuals, every
                # request on SQL meanwhile) though the patch in flight will bring the snapshot up to date.
                return _IN_FLIGHT
        try:
            with self._lock:
                snapshot = self._snapshot
            if snapshot is None:
                return None
            if snapshot.version >= version:  # another thread patched while this one waited
                return snapshot
            writes = self.local_writes()  # before the read: every write counted here is in what it reads
            try:
                fresh = self.source.patch(snapshot, version, self.kinds)
            except (sqlite3.Error, sa.exc.SQLAlchemyError, ValueError):
                log.warning("term index: patch failed; rebuilding", exc_info=True)
                return None
            if fresh is not None:
                fresh.local_writes = writes
                with self._lock:
                    if self._snapshot is None or self._snapshot.version <= fresh.version:
                        self._snapshot = fresh
                self.patches += 1
            # On PostgreSQL the patch carries the version it read, at least `version`.
            return fresh if fresh is not None and fresh.version >= version else None
        finally:
            self._patching.release()

    def _rebuild(self, version: int) -> Snapshot | None:
        writes = self.local_writes()
        try:
            snapshot: Snapshot | None = self.source.read(version, self.kinds)
            if snapshot is not None:
                snapshot.local_writes = writes
        except (sqlite3.Error, sa.exc.SQLAlchemyError, ValueError):
            log.warning("term index: rebuild failed; queries use SQL", exc_info=True)
            snapshot = None
        with self._lock:
            self._building = False
            if snapshot is not None:
                self._snapshot = snapshot
        return snapshot

    def close(self) -> None:
        with self._lock:
            self.source.close()
            self._snapshot = None


def index_for(store, cache: dict, kinds: tuple[str, ...]) -> TermIndex | None:
    """The store's TermIndex (one per store and application cache), or None where the index cannot be kept."""
    found = cache.get("term_index")
    if found is not None and found[0] is store:
        return found[1]
    engine = store.engine
    index: TermIndex | None = None
    if store.reads is not None:
        index = TermIndex(PostgresSource(engine, store.reads), kinds, lambda: store.local_writes)
    elif engine.url.database and engine.url.database != ":memory:":
        index = TermIndex(SqliteSource(engine.url.database), kinds, lambda: store.local_writes)
    cache["term_index"] = (store, index)
    return index
