"""Compaction of sample batches: a partitioned version grown by several sample batches (partitions.py, batched.py)
is rewritten as one batch, one unit per region, from its own units (no VCF is read again).

Why: a query over k batches merges k units per region in Python (batched.py), so its cost grows with the number of
batches; after compaction the version answers through the single-batch SQL path again.

What a merged unit holds (the rule of batched.py, written once instead of applied at every query):
- one row per variant key: AC, AN and carrier counts summed over the batches, genes/protein changes/effects/ids
  united (batched._fold), ids numbered in position order (ties: the first batch holding the variant, its order);
- carriers over the union of the samples, numbered in manifest order, zygosity codes with them; the per-sample
  reverse index and the called-allele exceptions rebuilt by VersionBuilder from those;
- a batch whose VCF lacked a site contributed nothing to its AN: its samples are written as called with 0 alleles
  there, so that a later erasure still corrects AN exactly;
- erased samples stay erased: their carriers and exceptions were already removed from the units, and the manifest
  keeps their `erased-<n>` rows.

All-or-nothing and resumable: the units are written into `parts-compact-<live version>/`, each under a temporary name and
renamed when complete; the manifest is published only if the live version is still the one compacted (VersionMoved
otherwise: nothing switched, the folder removed). A crash leaves the old version live; running again re-uses the
units already renamed into place.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import sqlite3
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from gateway.errors import GatewayError

from .batched import _fold
from .distributed_ingest import LiveVersion, _read_live
from .layout import (
    CHUNK_VARIANTS,
    VersionBuilder,
    VersionMoved,
    _writer_pid,
    dataset_dir,
    decode_set,
    encode_set,
    pack_codes,
    pid_alive,
    publish,
    unpack_codes,
)
from .partitions import Partition
from .store import purge_before_write

_COLUMNS = "id, vkey, chrom, start, end, ref, alt, vclass, length, ac, an, carriers, genes, aa, effects, ids"
_FLUSH = 5000  # merged rows handed to the writer at a time


class CompactionRefused(GatewayError):
    """The dataset cannot be compacted (no live partitioned version)."""


@dataclass(frozen=True)
class CompactSummary:
    dataset_id: str
    batches_before: int
    units_before: int
    units_after: int
    variants: int
    seconds: float
    version: str | None  # the new live version (None: nothing to do)


def compact_dataset(data_dir: Path, dataset_id: str) -> CompactSummary:
    """Merge the live version's sample batches into one (see the module docstring); a one-batch version is left as
    it is. CompactionRefused when the dataset has no live partitioned version; VersionMoved when another writer
    published meanwhile (nothing switched; run again)."""
    started = time.monotonic()
    ds_dir = dataset_dir(data_dir, dataset_id)
    purge_before_write(data_dir, dataset_id)  # the merged units are read from the files: pending erasures first
    live = _read_live(ds_dir)
    if live is None:
        raise CompactionRefused(f"{dataset_id}: no live partitioned version to compact (ingest with --workers)")
    if len(live.batches) <= 1:
        n = len(live.partitions)
        return CompactSummary(dataset_id, 1, n, n, sum(p.variants for p in live.partitions), 0.0, None)
    folder = ds_dir / f"parts-compact-{Path(live.version).stem}"
    folder.mkdir(exist_ok=True)
    _drop_dead_builds(folder)
    rows = []
    for region in regions_of(live.partitions):
        rows.append(_compact_region(data_dir, dataset_id, ds_dir, folder, live, region))
    version = _publish_manifest(data_dir, dataset_id, ds_dir, folder, live, rows)
    for old in {p.file.split("/", 1)[0] for p in live.partitions} - {folder.name}:
        shutil.rmtree(ds_dir / old, ignore_errors=True)  # open readers keep their unlinked files
    return CompactSummary(
        dataset_id,
        len(live.batches),
        len(live.partitions),
        len(rows),
        sum(r[5] for r in rows),
        time.monotonic() - started,
        version,
    )


def regions_of(partitions: list[Partition]) -> list[list[Partition]]:
    """The units grouped by region: units of different batches whose spans overlap form one region (batches share
    the live grid, so their spans are equal or disjoint; overlap is the general rule). In manifest chromosome order."""
    rank: dict[str, int] = {}
    for p in partitions:
        rank.setdefault(p.chrom, len(rank))
    groups: list[list[Partition]] = []
    for p in sorted(partitions, key=lambda p: (rank[p.chrom], p.start, p.batch)):
        last = groups[-1] if groups else None
        if last and last[0].chrom == p.chrom and p.start < max(q.end for q in last):
            last.append(p)
        else:
            groups.append([p])
    return groups


def _drop_dead_builds(folder: Path) -> None:
    for entry in folder.glob(".build-*"):
        pid = _writer_pid(entry.name)
        if pid is not None and not pid_alive(pid):
            entry.unlink(missing_ok=True)


def _compact_region(data_dir, dataset_id, ds_dir, folder, live: LiveVersion, region: list[Partition]) -> tuple:
    """The merged unit of one region (written unless an earlier run renamed it into place): its manifest row."""
    chrom, start, end = region[0].chrom, min(p.start for p in region), max(p.end for p in region)
    final = folder / f"{chrom}-{start}-{end}.sqlite"
    if not final.is_file():
        builder = VersionBuilder(data_dir, dataset_id, build_dir=folder)
        try:
            meta = _write_merged(builder, ds_dir, live, region)
            os.replace(builder.finish(meta), final)
        except BaseException:
            builder.abort()
            raise
    conn = sqlite3.connect(f"file:{final}?mode=ro", uri=True)
    try:
        max_end, variants = conn.execute("SELECT coalesce(max(end), 0), count(*) FROM variants").fetchone()
    finally:
        conn.close()
    return (f"{folder.name}/{final.name}", chrom, start, end, max_end, variants, 0)


@dataclass
class _Unit:
    first: int  # manifest index of the batch's sample 0
    size: int  # samples in the batch
    rows: list[tuple]
    carriers: dict[int, tuple[bytes, bytes]]
    annotations: list[tuple[str, str, int]]
    called: list[tuple[int, int, int, bytes]]  # sample_called rows
    meta: dict[str, str]


def _read_unit(path: Path, first: int, size: int) -> _Unit:
    conn = sqlite3.connect(f"file:{path}?mode=ro&immutable=1", uri=True)
    try:
        return _Unit(
            first,
            size,
            conn.execute(f"SELECT {_COLUMNS} FROM variants ORDER BY id").fetchall(),
            {vid: (s, z) for vid, s, z in conn.execute("SELECT vid, samples, zyg FROM carriers")},
            conn.execute("SELECT gene, aa, vid FROM annotations").fetchall(),
            conn.execute("SELECT sample, chunk, alleles, vids FROM sample_called").fetchall(),
            dict(conn.execute("SELECT key, value FROM meta").fetchall()),
        )
    finally:
        conn.close()


def _write_merged(builder: VersionBuilder, ds_dir: Path, live: LiveVersion, region: list[Partition]) -> dict:
    """Feed `builder` the merged rows, carriers, annotations and exceptions of the region's units; return its meta."""
    sizes = {b.batch: (b.first, b.samples) for b in live.batches}
    units = [_read_unit(ds_dir / p.file, *sizes[p.batch]) for p in sorted(region, key=lambda p: p.batch)]
    merged: dict[str, list] = {}
    holders: dict[str, list[tuple[int, int]]] = {}  # key -> (unit number, old id) per unit holding it
    for u, unit in enumerate(units):
        for row in unit.rows:
            _fold(merged, row)
            holders.setdefault(row[1], []).append((u, row[0]))
    order = sorted(merged, key=lambda k: (merged[k][3], *holders[k][0]))
    new_id = {(u, old): vid for vid, k in enumerate(order, 1) for u, old in holders[k]}
    exact = all(unit.meta.get("called_index") == "1" for unit in units)
    called = _called_by_variant(units, new_id)
    n_total = len(live.samples)
    erased = {idx for idx, name, individual, _ in live.samples if name == f"erased-{idx}" and individual is None}
    builder.add_samples(live.samples)
    rows: list[tuple] = []
    carriers: list[tuple[int, bytes, bytes]] = []
    for vid, k in enumerate(order, 1):
        held = {u: old for u, old in holders[k]}
        samples, codes = _united_carriers(units, held)
        variant = merged[k]
        variant[0], variant[11] = vid, len(samples)
        rows.append(tuple(variant))
        if len(samples):
            carriers.append((vid, encode_set(samples, n_total), pack_codes(codes)))
            builder.add_carriers(vid, samples, codes)
        odd = called.get(vid, [])
        if exact:
            odd += [_uncalled(unit, erased) for u, unit in enumerate(units) if u not in held]
        if odd:
            s = np.concatenate([x for x, _ in odd])
            a = np.concatenate([y for _, y in odd])
            keep = np.argsort(s, kind="stable")
            builder.add_called(vid, s[keep], a[keep])
        if len(rows) >= _FLUSH:
            builder.add_variants(rows, carriers, [])
            rows, carriers = [], []
    annotations = sorted({(g, aa, new_id[(u, old)]) for u, unit in enumerate(units) for g, aa, old in unit.annotations})
    builder.add_variants(rows, carriers, annotations)
    meta = dict(units[0].meta)
    meta.update(
        source=",".join(unit.meta.get("source", "") for unit in units),
        created=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        records_read=str(sum(int(unit.meta.get("records_read", 0)) for unit in units)),
        records_written=str(len(order)),
        samples=str(n_total),
        called_index="1" if exact else "0",
    )
    return meta


def _united_carriers(units: list[_Unit], held: dict[int, int]) -> tuple[np.ndarray, np.ndarray]:
    """A variant's carriers over the batches holding it, as manifest indexes (ascending) and zygosity codes."""
    samples, codes = [np.empty(0, dtype=np.int64)], [np.empty(0, dtype=np.uint8)]
    for u, old in sorted(held.items()):
        found = units[u].carriers.get(old)
        if found is None:
            continue
        members = decode_set(found[0])
        samples.append(members.astype(np.int64) + units[u].first)
        codes.append(unpack_codes(found[1], len(members)))
    return np.concatenate(samples), np.concatenate(codes)


def _called_by_variant(units: list[_Unit], new_id: dict) -> dict[int, list[tuple[np.ndarray, np.ndarray]]]:
    """Each unit's called-allele exceptions by new variant id: (manifest sample indexes, alleles)."""
    found: dict[int, tuple[list[int], list[int]]] = {}
    for u, unit in enumerate(units):
        for sample, chunk, alleles, blob in unit.called:
            for offset in decode_set(blob).tolist():
                samples, counts = found.setdefault(new_id[(u, chunk * CHUNK_VARIANTS + offset + 1)], ([], []))
                samples.append(sample + unit.first)
                counts.append(alleles)
    return {vid: [(np.array(s, dtype=np.int64), np.array(a, dtype=np.uint8))] for vid, (s, a) in found.items()}


def _uncalled(unit: _Unit, erased: set[int]) -> tuple[np.ndarray, np.ndarray]:
    """The samples of a batch that lacks a site: called with 0 alleles there (erased samples have no exceptions)."""
    members = np.array([i for i in range(unit.first, unit.first + unit.size) if i not in erased], dtype=np.int64)
    return members, np.zeros(len(members), dtype=np.uint8)


def _publish_manifest(data_dir, dataset_id, ds_dir: Path, folder: Path, live: LiveVersion, rows: list[tuple]) -> str:
    """Write the one-batch manifest and switch to it if the live version is still the one compacted."""
    builder = VersionBuilder(data_dir, dataset_id)
    try:
        builder.add_samples(live.samples)
        source = ",".join(b.source for b in live.batches)
        builder.add_partitions(rows, [(0, 0, len(live.samples), source)])
        meta = dict(live.meta)
        meta.update(
            created=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            records_written=str(sum(r[5] for r in rows)),
            compacted_from=live.version,
        )
        build_path = builder.finish(meta)
    except BaseException:
        builder.abort()
        raise
    try:
        return publish(build_path, live.version)
    except VersionMoved:
        build_path.unlink(missing_ok=True)
        now = _read_live(ds_dir)
        if now is None or not any(p.file.startswith(f"{folder.name}/") for p in now.partitions):
            with contextlib.suppress(OSError):  # unless a compaction of the same version published it meanwhile
                shutil.rmtree(folder)
        raise
