"""On-disk layout of the variant store, its schema, and the builder that writes one version.

    data_dir/variants/<dataset>/CURRENT              name of the live version file (switched by rename)
    data_dir/variants/<dataset>/v<ns>-<pid>.sqlite   one immutable version per ingest
    data_dir/variants/<dataset>/.build-<pid>-<rand>.sqlite   a version being built (removed if its pid is dead)

A version is built in a temporary file, fsynced, renamed into place, and only then
named by CURRENT (itself written to a temp file, fsynced and renamed): a killed ingest
leaves the previous version live and at most a stale build file behind.
"""

from __future__ import annotations

import contextlib
import os
import queue
import re
import secrets
import shutil
import sqlite3
import threading
import time
from pathlib import Path

import numpy as np

from gateway.errors import GatewayError  # the one exception root
from gateway.ids import DATASET_ID  # the one dataset-id rule (gateway/ids.py)

POINTER = "CURRENT"
LONG_SPAN = 1000  # variants longer than this are found through their own partial index in range queries

# Zygosity codes in the carriers blobs, and their GENO terms.
HET, HOM, HEMI = 1, 2, 3
ZYGOSITY_GENO = {HET: "GENO:0000135", HOM: "GENO:0000136", HEMI: "GENO:0000134"}

SCHEMA = """
CREATE TABLE meta(key TEXT PRIMARY KEY, value TEXT) WITHOUT ROWID;
CREATE TABLE samples(idx INTEGER PRIMARY KEY, name TEXT NOT NULL, individual_id TEXT, biosample_id TEXT);
CREATE TABLE variants(
    id INTEGER PRIMARY KEY, vkey TEXT NOT NULL, chrom TEXT NOT NULL, start INTEGER NOT NULL, end INTEGER NOT NULL,
    ref TEXT NOT NULL, alt TEXT NOT NULL, vclass TEXT NOT NULL, length INTEGER NOT NULL,
    ac INTEGER NOT NULL, an INTEGER NOT NULL, carriers INTEGER NOT NULL DEFAULT 0,
    genes TEXT, aa TEXT, effects TEXT, ids TEXT);
-- carriers of each variant that has any: an encoded sample set (see encode_set) and zygosity codes in sample order
-- (pack_codes: 2 bits each)
CREATE TABLE carriers(vid INTEGER PRIMARY KEY, samples BLOB NOT NULL, zyg BLOB NOT NULL);
CREATE TABLE annotations(gene TEXT NOT NULL, aa TEXT NOT NULL, vid INTEGER NOT NULL, PRIMARY KEY(gene, aa, vid))
    WITHOUT ROWID;
-- the reverse of carriers: per sample and chunk of CHUNK_VARIANTS variant ids, the set of offsets it carries.
-- A rowid table: its ~1 KB bitmaps would each spill into a 4 KB overflow page in a WITHOUT ROWID b-tree.
CREATE TABLE sample_variants(sample INTEGER NOT NULL, chunk INTEGER NOT NULL, vids BLOB NOT NULL,
    PRIMARY KEY(sample, chunk));
-- per sample and chunk, the variants where the sample has other than 2 called alleles (missing, haploid, ...):
-- with them, erasing a sample corrects AN exactly at every variant, carried or not
CREATE TABLE sample_called(sample INTEGER NOT NULL, chunk INTEGER NOT NULL, alleles INTEGER NOT NULL,
    vids BLOB NOT NULL, PRIMARY KEY(sample, chunk, alleles));
-- per sample and chunk, the carried variants where the sample is homozygous for the alternate allele: with it and
-- sample_variants, what erasing a sample takes from AC and the carrier counts is read from the sample's own rows,
-- without reading any carrier set (those grow with the cohort). Files written before it lack the table.
CREATE TABLE sample_hom(sample INTEGER NOT NULL, chunk INTEGER NOT NULL, vids BLOB NOT NULL,
    PRIMARY KEY(sample, chunk));
"""

UNIQUE_INDEX = "CREATE UNIQUE INDEX variants_key ON variants(vkey)"
INDEXES = f"""
CREATE INDEX variants_pos ON variants(chrom, start, end, ref, alt);
-- range counts: short variants by start alone (no per-row test), long ones through their own small index;
-- ac and an make them covering for the observed-variant rule (store._observed: ac > 0, or an = 0 sites-only)
CREATE INDEX variants_short ON variants(chrom, start, end, ac, an) WHERE end - start <= {LONG_SPAN};
CREATE INDEX variants_long ON variants(chrom, start, end, ac, an) WHERE end - start > {LONG_SPAN};
"""


def dataset_dir(data_dir: Path, dataset_id: str) -> Path:
    if not DATASET_ID.match(dataset_id):
        raise ValueError(f"invalid dataset id {dataset_id!r}")
    return Path(data_dir) / "variants" / dataset_id


def current_version(ds_dir: Path) -> str | None:
    try:
        name = (ds_dir / POINTER).read_text().strip()
    except FileNotFoundError:
        return None
    return name or None


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def switch_pointer(ds_dir: Path, version: str | None) -> None:
    """Atomically make `version` the live one (None: the dataset has no live version)."""
    pointer = ds_dir / POINTER
    if version is None:
        with contextlib.suppress(FileNotFoundError):
            pointer.unlink()
        _fsync_dir(ds_dir)
        return
    tmp = ds_dir / f".{POINTER}-{os.getpid()}-{secrets.token_hex(4)}"
    with open(tmp, "w") as f:
        f.write(version + "\n")
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, pointer)
    _fsync_dir(ds_dir)


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:  # a killed process whose parent died may linger unreaped as a zombie: that is dead too
        with open(f"/proc/{pid}/stat", "rb") as f:
            return f.read().rsplit(b")", 1)[1].split()[0] != b"Z"
    except (OSError, IndexError):
        return True


def _writer_pid(name: str) -> int | None:
    """The pid in `.build-<pid>-<hex>.sqlite`, `.CURRENT-<pid>-<hex>` or `v<ns>-<pid>.sqlite`."""
    match = re.match(r"^(?:\.build-(\d+)-|\.CURRENT-(\d+)-|v\d+-(\d+)\.sqlite$)", name)
    if not match:
        return None
    return int(next(g for g in match.groups() if g))


def cleanup_dataset_dir(ds_dir: Path) -> list[str]:
    """Remove files of dead writers that are not the live version; return the names removed.

    A writer that is still alive may be about to switch the pointer to its file, so its files stay.
    """
    removed: list[str] = []
    if not ds_dir.is_dir():
        return removed
    live = current_version(ds_dir)
    for entry in ds_dir.iterdir():
        if entry.name in (POINTER, live):
            continue
        pid = _writer_pid(entry.name)
        if pid is not None and not pid_alive(pid):
            with contextlib.suppress(FileNotFoundError):
                entry.unlink()
            removed.append(entry.name)
    if live is None:
        with contextlib.suppress(OSError):
            ds_dir.rmdir()  # only succeeds when empty
    return removed


CHUNK_VARIANTS = 8192  # variant ids per reverse-index chunk
SAMPLE_BLOCK = 4096  # samples turned from per-variant to per-sample sets together (a multiple of 8: whole bytes)


def encode_set(members: np.ndarray, universe: int) -> bytes:
    """A set of indexes below `universe`: b"L" + uint32 list when sparse, b"B" + little-endian bitmap when dense."""
    if 4 * len(members) <= (universe + 7) // 8:
        return b"L" + members.astype("<u4").tobytes()
    mask = np.zeros(universe, dtype=bool)
    mask[members] = True
    return b"B" + np.packbits(mask, bitorder="little").tobytes()


def decode_set(blob: bytes) -> np.ndarray:
    """The ascending uint32 indexes of an encode_set blob."""
    if blob[:1] == b"B":
        return np.flatnonzero(np.unpackbits(np.frombuffer(blob, dtype=np.uint8, offset=1), bitorder="little")).astype(
            "<u4"
        )
    return np.frombuffer(blob, dtype="<u4", offset=1) if len(blob) > 1 else np.empty(0, dtype="<u4")


def pack_codes(codes: np.ndarray) -> bytes:
    """Zygosity codes (1..3) at 2 bits each, four to a byte, behind a b"P" tag (old versions: 1 byte per code)."""
    padded = np.zeros((len(codes) + 3) // 4 * 4, dtype=np.uint8)
    padded[: len(codes)] = codes
    quads = padded.reshape(-1, 4)
    return b"P" + (quads[:, 0] | quads[:, 1] << 2 | quads[:, 2] << 4 | quads[:, 3] << 6).tobytes()


def unpack_codes(blob: bytes, n: int) -> np.ndarray:
    """The first `n` codes of a pack_codes blob (or of an unpacked one, written before packing)."""
    if blob[:1] != b"P":
        return np.frombuffer(blob, dtype=np.uint8)[:n]
    packed = np.frombuffer(blob, dtype=np.uint8, offset=1)
    return (packed[:, None] >> np.array([0, 2, 4, 6], dtype=np.uint8) & 3).reshape(-1)[:n]


SITE_COLUMNS = ("id", "vkey", "chrom", "start", "end", "ref", "alt", "vclass", "length", "ac", "an", "ids")


class DuplicateVariants(GatewayError):
    """The same variant was written more than once: (vkey, first id, later ids) each."""

    def __init__(self, duplicates: list[tuple[str, int, list[int]]]):
        super().__init__(f"{len(duplicates)} variants appear more than once")
        self.duplicates = duplicates


class VersionBuilder:
    """Writes one new version of a dataset; `finish()` + `publish()` make it live, `abort()` (or a crash) leaves no trace.

    SQLite writes run on a writer thread (sqlite3 releases the GIL while it works), so storing overlaps parsing.
    """

    def __init__(self, data_dir: Path, dataset_id: str, build_dir: Path | None = None):
        """`build_dir`: where the build file goes when not the dataset's folder (a partition's folder)."""
        self.dataset_id = dataset_id
        self.dir = Path(build_dir) if build_dir is not None else dataset_dir(data_dir, dataset_id)
        self.dir.mkdir(parents=True, exist_ok=True)
        self.path = self.dir / f".build-{os.getpid()}-{secrets.token_hex(4)}.sqlite"
        self.conn = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        # A build file is private until published: no journal, no syncs; durability comes from the fsync in finish().
        self.conn.executescript("PRAGMA journal_mode=OFF; PRAGMA synchronous=OFF; PRAGMA cache_size=-32768;")
        self.conn.executescript(SCHEMA)
        self.conn.execute("BEGIN")
        self.n_samples = 0
        # The current chunk's reverse index in memory that does not grow with the number of samples times
        # CHUNK_VARIANTS bytes: carriers as one bit per (variant offset, sample), and the calls with other than
        # 2 alleles as the (offset, samples, alleles) lists they arrive in; both are turned per sample in blocks of
        # SAMPLE_BLOCK samples when the chunk is written (_flush_chunk).
        self._bits: np.ndarray | None = None  # CHUNK_VARIANTS x ceil(samples / 8), little-endian bit order
        self._hom_bits: np.ndarray | None = None  # the same for the homozygous-alternate calls (sample_hom)
        self._scratch: np.ndarray | None = None  # one bool per sample, all False between calls of add_carriers
        self._odd: list[tuple[int, np.ndarray, np.ndarray]] = []
        self._rows_used = 0  # offsets below this have carriers noted in _bits
        self._chunk = 0
        self._queue: queue.Queue = queue.Queue(maxsize=8)
        self._error: BaseException | None = None
        self._writer = threading.Thread(target=self._write_loop, name="variant-store-writer", daemon=True)
        self._writer.start()

    def _write_loop(self) -> None:
        while True:
            item = self._queue.get()
            if item is None:
                return
            if self._error is not None:
                continue
            try:
                for sql, rows in item:
                    if rows is None:  # a schema statement
                        self.conn.execute(sql)
                    elif rows:
                        self.conn.executemany(sql, rows)
            except BaseException as exc:  # surfaced to the parsing thread at its next call
                self._error = exc

    def _submit(self, item: list[tuple[str, list]]) -> None:
        if self._error is not None:
            raise self._error
        self._queue.put(item)

    def add_samples(self, rows: list[tuple[int, str, str | None, str | None]]) -> None:
        self.n_samples = len(rows)
        self._bits = np.zeros((CHUNK_VARIANTS, (max(self.n_samples, 1) + 7) // 8), dtype=np.uint8)
        self._hom_bits = np.zeros(self._bits.shape, dtype=np.uint8)  # zeroed pages are mapped only once written
        self._scratch = np.zeros(max(self.n_samples, 1), dtype=bool)
        self._submit([("INSERT INTO samples VALUES (?,?,?,?)", rows)])

    def add_partitions(
        self, rows: list[tuple[str, str, int, int, int, int, int]], batches: list[tuple[int, int, int, str]]
    ) -> None:
        """Make this build the manifest of a partitioned version (see partitions.py): (file, chrom, start, end,
        max_end, variants, batch) per unit, files relative to the dataset's folder; (batch, first sample, samples,
        source) per sample batch."""
        from .partitions import BATCHES_SCHEMA, PARTITIONS_SCHEMA

        self._submit(
            [
                (PARTITIONS_SCHEMA, None),
                ("INSERT INTO partitions VALUES (?,?,?,?,?,?,?)", rows),
                (BATCHES_SCHEMA, None),
                ("INSERT INTO batches VALUES (?,?,?,?)", batches),
            ]
        )

    def add_variants(
        self,
        rows: list[tuple],
        carriers: list[tuple[int, bytes, bytes]],
        annotations: list[tuple],
        sites: list[tuple] = (),
    ) -> None:
        """Full variant rows, their carriers and annotations; `sites`: rows of SITE_COLUMNS (no carriers, no
        annotations), bound with fewer parameters (binding is most of a bulk insert's cost)."""
        self._submit(
            [
                ("INSERT INTO variants VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)", rows),
                (
                    f"INSERT INTO variants({', '.join(SITE_COLUMNS)}) VALUES ({','.join('?' * len(SITE_COLUMNS))})",
                    sites,
                ),
                ("INSERT INTO carriers VALUES (?,?,?)", carriers),
                ("INSERT OR IGNORE INTO annotations VALUES (?,?,?)", annotations),
            ]
        )

    def _offset(self, vid: int) -> int:
        chunk, offset = divmod(vid - 1, CHUNK_VARIANTS)
        if chunk != self._chunk:
            self._flush_chunk()
            self._chunk = chunk
        return offset

    def add_carriers(self, vid: int, samples: np.ndarray, zygosity: np.ndarray) -> None:
        """Note that variant `vid` (ids ascend from 1) is carried by `samples` with these zygosity codes, for the
        per-sample reverse index and its homozygous part."""
        offset = self._offset(vid)
        scratch = self._scratch
        scratch[samples] = True
        self._bits[offset] = np.packbits(scratch, bitorder="little")
        scratch[samples] = False
        hom = samples[zygosity == HOM]
        if len(hom):
            scratch[hom] = True
            self._hom_bits[offset] = np.packbits(scratch, bitorder="little")
            scratch[hom] = False
        self._rows_used = offset + 1

    def add_called(self, vid: int, samples: np.ndarray, alleles: np.ndarray) -> None:
        """Note the samples whose call at `vid` has other than 2 called alleles (ids ascend, as for add_carriers)."""
        if len(samples):
            self._odd.append((self._offset(vid), samples, alleles))

    def _flush_chunk(self) -> None:
        """Write the chunk's reverse index, SAMPLE_BLOCK samples at a time (memory: CHUNK_VARIANTS x SAMPLE_BLOCK)."""
        if self._bits is None:
            return
        n = max(self.n_samples, 1)
        used = self._rows_used
        for first in range(0, n, SAMPLE_BLOCK):
            last = min(n, first + SAMPLE_BLOCK)
            if used:
                for table, bits in (("sample_variants", self._bits), ("sample_hom", self._hom_bits)):
                    rows = self._sample_rows(bits[:used], first, last)
                    self._submit([(f"INSERT INTO {table} VALUES (?,?,?)", rows)])
            if self._odd:
                self._submit([("INSERT INTO sample_called VALUES (?,?,?,?)", self._called_rows(first, last))])
        if used:
            self._bits[:used] = 0
            self._hom_bits[:used] = 0
        self._rows_used = 0
        self._odd = []

    def _sample_rows(self, bits: np.ndarray, first: int, last: int) -> list[tuple[int, int, bytes]]:
        """(sample, chunk, offsets) rows of samples first..last-1 from a variant x sample bit matrix of the chunk."""
        block = np.unpackbits(bits[:, first // 8 : (last + 7) // 8], axis=1, count=last - first, bitorder="little")
        by_sample = np.ascontiguousarray(block.T)  # sample x offset
        return [
            (first + sample, self._chunk, encode_set(np.flatnonzero(by_sample[sample]), CHUNK_VARIANTS))
            for sample in np.flatnonzero(by_sample.any(axis=1)).tolist()
        ]

    def _called_rows(self, first: int, last: int) -> list[tuple[int, int, int, bytes]]:
        """sample_called rows of samples first..last-1: per (sample, called alleles) the offsets of those calls."""
        called = np.full((CHUNK_VARIANTS, last - first), 2, dtype=np.uint8)
        for offset, samples, alleles in self._odd:
            lo, hi = np.searchsorted(samples, (first, last))
            if hi > lo:
                called[offset, samples[lo:hi] - first] = alleles[lo:hi]
        offsets, samples = np.nonzero(called != 2)
        if not len(offsets):
            return []
        counts = called[offsets, samples]
        samples = samples + first
        order = np.lexsort((offsets, counts, samples))
        keys = np.stack((samples[order], counts[order]), axis=1)
        cuts = np.flatnonzero((keys[1:] != keys[:-1]).any(axis=1)) + 1
        return [
            (int(keys[g[0], 0]), self._chunk, int(keys[g[0], 1]), encode_set(offsets[order][g], CHUNK_VARIANTS))
            for g in np.split(np.arange(len(order)), cuts)
            if len(g)
        ]

    def finish(self, meta: dict[str, str]) -> Path:
        """Complete and fsync the build file (in the parsing process); `publish` then makes it live.

        Raises DuplicateVariants when the unique key index finds a variant twice; after drop_variants, call again.
        """
        if self._writer.is_alive():
            self._flush_chunk()
            self._queue.put(None)
            self._writer.join()
        if self._error is not None:
            raise self._error
        if self.conn.in_transaction:
            self.conn.execute("COMMIT")
        self.conn.executemany("INSERT OR REPLACE INTO meta VALUES (?,?)", sorted(meta.items()))
        # Indexes are built after the load, in one pass each (faster than maintaining them row by row).
        try:
            self.conn.execute(UNIQUE_INDEX)
        except sqlite3.IntegrityError:
            rows = self.conn.execute(
                "SELECT vkey, group_concat(id) FROM variants WHERE vkey IN "
                "(SELECT vkey FROM variants GROUP BY vkey HAVING count(*) > 1) GROUP BY vkey"
            ).fetchall()
            duplicates = []
            for vkey, ids in rows:
                ordered = sorted(int(i) for i in ids.split(","))
                duplicates.append((vkey, ordered[0], ordered[1:]))
            raise DuplicateVariants(sorted(duplicates, key=lambda d: d[2][0])) from None
        self.conn.executescript(INDEXES + "ANALYZE;")
        self.conn.close()
        with open(self.path, "rb+") as f:
            os.fsync(f.fileno())
        return self.path

    def drop_variants(self, vids: list[int]) -> None:
        """Remove variants written in error (later duplicates) with their carriers, annotations and reverse index."""
        conn = self.conn
        conn.execute("BEGIN")
        for vid in vids:
            chunk, offset = divmod(vid - 1, CHUNK_VARIANTS)
            row = conn.execute("SELECT samples FROM carriers WHERE vid = ?", (vid,)).fetchone()
            for sample in decode_set(row[0]).tolist() if row else ():
                for table in ("sample_variants", "sample_hom"):
                    found = conn.execute(
                        f"SELECT vids FROM {table} WHERE sample = ? AND chunk = ?", (sample, chunk)
                    ).fetchone()
                    if found is None:  # sample_hom: no homozygous call of the sample in this chunk
                        continue
                    kept = decode_set(found[0])
                    kept = kept[kept != offset]
                    if len(kept):
                        conn.execute(
                            f"UPDATE {table} SET vids = ? WHERE sample = ? AND chunk = ?",
                            (encode_set(kept, CHUNK_VARIANTS), sample, chunk),
                        )
                    else:
                        conn.execute(f"DELETE FROM {table} WHERE sample = ? AND chunk = ?", (sample, chunk))
            for table, column in (("variants", "id"), ("carriers", "vid"), ("annotations", "vid")):
                conn.execute(f"DELETE FROM {table} WHERE {column} = ?", (vid,))
        conn.execute("COMMIT")

    def commit(self, meta: dict[str, str]) -> str:
        return publish(self.finish(meta))

    def abort(self) -> None:
        with contextlib.suppress(Exception):
            self._error = self._error or RuntimeError("aborted")
            self._queue.put_nowait(None)
            self._writer.join(timeout=5)
        with contextlib.suppress(Exception):
            self.conn.close()
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()
        if current_version(self.dir) is None:
            with contextlib.suppress(OSError):
                self.dir.rmdir()


class VersionMoved(GatewayError):
    """The live version changed while a change built on it was written (another ingest or an erasure published
    first); publishing would drop that change, so nothing is published."""


@contextlib.contextmanager
def pointer_lock(ds_dir: Path):
    """Hold the dataset's pointer for one check-and-switch (an exclusive flock on its folder, across processes)."""
    import fcntl

    fd = os.open(ds_dir, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # releases the lock


def check_based_on(ds_dir: Path, based_on: str | None) -> None:
    """Raise VersionMoved unless the live version is still `based_on` (call under pointer_lock)."""
    live = current_version(ds_dir)
    if live != based_on:
        raise VersionMoved(f"{ds_dir.name}: the live version is now {live}, not {based_on}")


SWEEP_GRACE_S = 3600.0  # a unit folder no manifest names is swept once this old (and the live version this old)
UNITS_PREFIX = "parts-"  # the folders of a partitioned version's units (ingests, erasures, compactions)


class UnitsMissing(GatewayError):
    """A manifest names unit files that are not there (swept, or removed by hand): it is not published."""


def _manifest_dirs(path: Path) -> set[str] | None:
    """The unit folders a version file names ({} for a single-file version; None: unreadable)."""
    from .partitions import partition_dirs

    try:
        conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
        try:
            return partition_dirs(conn)
        finally:
            conn.close()
    except sqlite3.Error:
        return None


def _check_units(build_path: Path) -> None:
    """UnitsMissing unless every unit file the manifest being published names exists (call under pointer_lock:
    a sweep holds the same lock, so a unit it removes is either gone before this check or named by the live
    version afterwards)."""
    from .partitions import read_partitions

    ds_dir = build_path.parent
    conn = sqlite3.connect(f"file:{build_path}?mode=ro", uri=True)
    try:
        files = [p.file for p in read_partitions(conn, ds_dir)]
    finally:
        conn.close()
    missing = [f for f in files if not (ds_dir / f).is_file()]
    if missing:
        raise UnitsMissing(f"{len(missing)} unit files of the manifest are missing, e.g. {missing[0]}")


def _newest_mtime(folder: Path) -> float:
    newest = folder.stat().st_mtime
    for entry in folder.iterdir():
        with contextlib.suppress(FileNotFoundError):
            newest = max(newest, entry.stat().st_mtime)
    return newest


def sweep_unreferenced(ds_dir: Path, grace_s: float = SWEEP_GRACE_S, keep: set[str] = frozenset()) -> list[str]:
    """Remove the unit folders that no version file in `ds_dir` names (nor `keep`); return their names. Call under
    pointer_lock.

    A folder goes only when (1) no manifest present names it (the live one, any not yet unlinked, the build being
    published: `keep`), (2) nothing in it changed for `grace_s` (an interrupted ingest stays resumable that long,
    and a running one writes into it), and (3) the live version was switched at least `grace_s` ago: a folder the
    live manifest does not name was last named by a manifest superseded at or before that switch, which a reader
    may still be using for a while. An unreadable manifest stops the sweep (its folders cannot be told apart)."""
    now = time.time()
    try:
        switched = (ds_dir / POINTER).stat().st_mtime
    except FileNotFoundError:
        return []
    if now - switched < grace_s:
        return []
    named = set(keep)
    folders = []
    for entry in ds_dir.iterdir():
        if entry.is_dir() and entry.name.startswith(UNITS_PREFIX):
            folders.append(entry)
        elif entry.name.startswith("v") and entry.name.endswith(".sqlite"):
            dirs = _manifest_dirs(entry)
            if dirs is None:
                return []
            named |= dirs
    removed = []
    for folder in sorted(folders):
        if folder.name in named:
            continue
        try:
            if now - _newest_mtime(folder) < grace_s:
                continue
        except FileNotFoundError:
            continue
        shutil.rmtree(folder, ignore_errors=True)  # readers of an older manifest were given grace_s to move on
        removed.append(folder.name)
    return removed


def sweep_dataset(data_dir: Path, dataset_id: str, grace_s: float = SWEEP_GRACE_S) -> list[str]:
    """`gateway variants sweep`: sweep_unreferenced under the dataset's pointer lock (FileNotFoundError: no such
    dataset)."""
    ds_dir = dataset_dir(data_dir, dataset_id)
    if not ds_dir.is_dir():
        raise FileNotFoundError(f"no variant store for dataset {dataset_id!r}")
    with pointer_lock(ds_dir):
        return sweep_unreferenced(ds_dir, grace_s)


def publish(build_path: Path, based_on: str | None = None) -> str:
    """Rename a finished build file into a version and switch the dataset's pointer to it; return the version.

    `based_on`: the live version this build extends (a grown manifest): VersionMoved, and nothing published, when
    another writer switched the pointer meanwhile. Without it the build replaces whatever is live."""
    ds_dir = build_path.parent
    version = f"v{time.time_ns()}-{os.getpid()}.sqlite"
    with pointer_lock(ds_dir):
        if based_on is not None:
            check_based_on(ds_dir, based_on)
        _check_units(build_path)
        # Before the switch: the folders the live manifest names are still named (it is present), and the pointer's
        # time is the previous switch's, which the grace period is counted from.
        sweep_unreferenced(ds_dir, keep=_manifest_dirs(build_path) or set())  # readable: _check_units read it
        os.replace(build_path, ds_dir / version)
        _fsync_dir(ds_dir)
        previous = current_version(ds_dir)
        switch_pointer(ds_dir, version)
    if previous and previous != version:
        with contextlib.suppress(FileNotFoundError):
            (ds_dir / previous).unlink()  # open readers keep their file until they close it
    return version
