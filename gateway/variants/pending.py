"""Erasures pending in a partitioned version: the person is out of every answer, their genotypes still in the units.

An erasure's request (phase one, store.VariantStore.erase_individual) writes a new manifest only: the erased
samples' rows renamed `erased-<n>` and unlinked, and a delta read from their own reverse index and called-allele
exceptions (cost ∝ the person's data, not the batch's): per unit of their batch the sample numbers to drop, the AN
every variant loses (2 per erased sample when the unit records exact called alleles), and per variant they carry
or were called at otherwise the AC, further AN and carrier count lost. The units are not touched.

Readers apply the delta where they read a unit: a unit with pending erasures is opened with TEMP views named
`variants` and `carriers` over its own tables (SQLite resolves an unqualified name to the temp schema first), so
every SQL statement, and every in-memory summary built from one, sees corrected AC/AN/carrier counts (a variant
whose only carriers were erased is no longer observed: AC 0) and carrier sets without the erased samples. Units are
pooled per thread by path and shared between versions, so an overlaid unit is keyed by its version too.

The purge job (phase two, VariantStore.purge_erased) rewrites those units without the samples, as a physical
erasure does, and writes a manifest with no pending table. A writer that builds a version from the live one
(`--add-samples`, `--add-regions`, compaction) purges first (store.purge_pending_before_write).
"""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass

import numpy as np

from .layout import decode_set, encode_set, pack_codes, unpack_codes

TABLES = {
    "pending_units": "file TEXT PRIMARY KEY, samples BLOB NOT NULL, an_shift INTEGER NOT NULL, universe INTEGER NOT NULL",
    "pending_delta": "file TEXT NOT NULL, vid INTEGER NOT NULL, ac INTEGER NOT NULL, an INTEGER NOT NULL,"
    " carriers INTEGER NOT NULL, PRIMARY KEY(file, vid)",
    "pending_samples": "idx INTEGER PRIMARY KEY",
}
_COLUMNS = "id, vkey, chrom, start, end, ref, alt, vclass, length, ac, an, carriers, genes, aa, effects, ids"


@dataclass(frozen=True)
class PendingUnit:
    samples: np.ndarray  # the unit's own (batch-local) sample numbers to drop, ascending
    an_shift: int  # AN every variant of the unit loses
    universe: int  # the unit's number of samples (its carrier sets' universe)


def _has_pending(conn: sqlite3.Connection) -> bool:
    return conn.execute("SELECT 1 FROM sqlite_master WHERE name = 'pending_units'").fetchone() is not None


def read_units(manifest: sqlite3.Connection) -> dict[str, PendingUnit]:
    """The manifest's units with pending erasures (one row each; none in most versions)."""
    if not _has_pending(manifest):
        return {}
    rows = manifest.execute("SELECT file, samples, an_shift, universe FROM pending_units").fetchall()
    return {file: PendingUnit(np.frombuffer(blob, dtype="<u4"), shift, n) for file, blob, shift, n in rows}


def pending_samples(manifest: sqlite3.Connection) -> list[int]:
    """Manifest sample numbers erased from the answers but not yet from the units."""
    if not _has_pending(manifest):
        return []
    return [idx for (idx,) in manifest.execute("SELECT idx FROM pending_samples ORDER BY idx")]


def record(
    manifest: sqlite3.Connection, file: str, unit: PendingUnit, delta: dict[int, list[int]], idxs: list[int]
) -> None:
    """Add one unit's erasure to a manifest being written (inside its transaction); adds to what is pending."""
    for name, columns in TABLES.items():  # statement by statement: executescript would commit the transaction
        manifest.execute(f"CREATE TABLE IF NOT EXISTS {name}({columns})")
    row = manifest.execute("SELECT samples, an_shift FROM pending_units WHERE file = ?", (file,)).fetchone()
    samples, shift = unit.samples, unit.an_shift
    if row is not None:
        samples = np.union1d(np.frombuffer(row[0], dtype="<u4"), samples).astype("<u4")
        shift += row[1]
    manifest.execute(
        "INSERT OR REPLACE INTO pending_units VALUES (?, ?, ?, ?)",
        (file, samples.astype("<u4").tobytes(), shift, unit.universe),
    )
    manifest.executemany(
        "INSERT INTO pending_delta VALUES (?, ?, ?, ?, ?) ON CONFLICT(file, vid) DO UPDATE SET "
        "ac = ac + excluded.ac, an = an + excluded.an, carriers = carriers + excluded.carriers",
        ((file, vid, ac, an, n) for vid, (ac, an, n) in delta.items()),
    )
    manifest.executemany("INSERT OR IGNORE INTO pending_samples VALUES (?)", ((i,) for i in idxs))


def drop(manifest: sqlite3.Connection) -> None:
    """A manifest written by the purge: nothing pending any more (inside its transaction)."""
    for name in TABLES:
        manifest.execute(f"DROP TABLE IF EXISTS {name}")


def overlay(conn: sqlite3.Connection, manifest: sqlite3.Connection, file: str, unit: PendingUnit) -> None:
    """Make `conn` (one unit, opened read-only) answer without the unit's pending samples (module docstring)."""
    conn.execute("CREATE TEMP TABLE erased_delta(vid INTEGER PRIMARY KEY, ac INTEGER, an INTEGER, carriers INTEGER)")
    rows = manifest.execute("SELECT vid, ac, an, carriers FROM pending_delta WHERE file = ?", (file,))
    conn.executemany("INSERT INTO temp.erased_delta VALUES (?, ?, ?, ?)", rows)
    conn.commit()  # the module's implicit transaction: a unit connection must stay outside one (VACUUM INTO)
    erased, universe = unit.samples, unit.universe

    def without(samples_blob: bytes, zyg_blob: bytes, codes: int) -> bytes:
        samples = decode_set(samples_blob)
        keep = ~np.isin(samples, erased)
        if codes:
            return pack_codes(unpack_codes(zyg_blob, len(samples))[keep])
        return encode_set(samples[keep], universe)

    conn.create_function("gw_without_erased", 3, without, deterministic=True)
    corrected = {
        "ac": "v.ac - coalesce(d.ac, 0)",
        "an": f"max(v.an - {int(unit.an_shift)} - coalesce(d.an, 0), 0)",
        "carriers": "v.carriers - coalesce(d.carriers, 0)",
    }
    columns = ", ".join(f"{corrected[c]} AS {c}" if c in corrected else f"v.{c} AS {c}" for c in _COLUMNS.split(", "))
    conn.execute(
        f"CREATE TEMP VIEW variants AS SELECT {columns} FROM main.variants v LEFT JOIN temp.erased_delta d ON d.vid = v.id"
    )
    conn.execute(
        "CREATE TEMP VIEW carriers AS SELECT c.vid AS vid,"
        " CASE WHEN d.vid IS NULL THEN c.samples ELSE gw_without_erased(c.samples, c.zyg, 0) END AS samples,"
        " CASE WHEN d.vid IS NULL THEN c.zyg ELSE gw_without_erased(c.samples, c.zyg, 1) END AS zyg"
        " FROM main.carriers c LEFT JOIN temp.erased_delta d ON d.vid = c.vid"
    )
