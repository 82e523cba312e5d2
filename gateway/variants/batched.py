"""Queries over a partitioned version with more than one sample batch (partitions.py): the same variant may be held
by one unit per batch, so answers are merged across the batches' units.

The rule for merged answers:
- a variant is the union of its units' rows: AC, AN and the carrier count are sums over the batches that hold it;
  genes, protein changes, effects and identifiers are united;
- a variant is observed when the summed AC is > 0 (every batch has samples: a sites-only batch is refused);
- AN counts only the batches whose VCF has the site. A batch without the site contributes nothing to AN: its
  samples were not called there as far as the store knows (a plain VCF does not say whether a missing site is
  hom-ref or uncalled; only a gVCF-like batch would). For batches cut from one joint call set (every site in every
  batch, as `bcftools view -s` writes them) the sums equal the single ingest of the whole cohort exactly;
- carriers are united, each batch's sample numbers shifted by its first manifest index, so carrier lists come in
  manifest order (batch after batch).

Cost: single-batch versions never come here (store.py keeps its SQL path); here each reached unit is queried and
rows merged by variant key in Python: O(matching rows x batches). Boolean and count answers still read no
genotypes (keys and AC only), and a carrier count reads the carrier sets only as a single-batch one does.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import numpy as np

from .layout import ZYGOSITY_GENO, decode_set, unpack_codes
from .partitions import Batch, Partition, PartitionIndex
from .query import VariantHit, VariantQuery

Parts = list[tuple[str, list]]  # disjoint WHERE branches over `variants`, with their parameters
_IN_CHUNK = 500  # variant keys per `IN` lookup
# positions in a row of store._COLUMNS
_VKEY, _CHROM, _START, _END, _AC, _AN, _CARRIERS = 1, 2, 3, 4, 9, 10, 11
_UNITED = (12, 13, 14, 15)  # genes, aa, effects, ids: "|"-joined


def batches_of(batches: list[Batch], n_samples: int) -> list[Batch]:
    """The batches of a version, the implied single batch for manifests without a `batches` table."""
    return batches or [Batch(0, 0, n_samples, "")]


def erased_by_batch(batches: list[Batch], idxs: list[int]) -> dict[int, tuple[list[int], int]]:
    """Per batch holding any of the manifest sample indexes `idxs`: (the batch's own indexes of them, batch size)."""
    out: dict[int, tuple[list[int], int]] = {}
    for b in batches:
        local = [i - b.first for i in idxs if b.first <= i < b.first + b.samples]
        if local:
            out[b.batch] = (local, b.samples)
    return out


class BatchedVersion:
    """Routing of one open multi-batch version: a partition index per batch (spans are disjoint within a batch)."""

    def __init__(self, dataset: Any, columns: str, carried: Callable):
        self.dataset = dataset  # store._Dataset of the manifest: partitions, batches, _part(), hit(), sample_table()
        self.columns = columns
        self.carried = carried  # store._carried_variants: a unit's reverse index for some samples
        self.first = {b.batch: b.first for b in dataset.batches}
        by_batch: dict[int, list[Partition]] = {}
        for p in dataset.partitions:
            by_batch.setdefault(p.batch, []).append(p)
        self.indexes = {b: PartitionIndex(parts) for b, parts in sorted(by_batch.items())}
        self.rank: dict[str, int] = {}  # chromosome order for merged pagination: as the manifest first lists them
        for p in dataset.partitions:
            self.rank.setdefault(p.chrom, len(self.rank))

    def reached(self, q: VariantQuery | None) -> BatchedUnits:
        found = []
        for batch, index in self.indexes.items():
            parts = index.partitions if q is None else index.reached_by(q)
            found += [(self.first[batch], p) for p in parts]
        return BatchedUnits(self, found)

    def at(self, chrom: str, start: int) -> BatchedUnits:
        """The units (one per batch at most) whose span holds variants starting at `start` on `chrom`."""
        return self.reached(VariantQuery(reference_name=chrom, start=start))

    def variants_of(self, idxs: list[int], skip: int, need: int) -> tuple[list[VariantHit], int]:
        """The merged variants carried by the manifest samples `idxs`: one page (`skip`, `need`) and the total."""
        mine = erased_by_batch(self.dataset.batches, idxs)
        units = [p for _, p in self.reached(None).units if p.batch in mine]
        found: dict[str, tuple[str, int]] = {}  # the page's keys and positions, in order
        if len(mine) == 1:  # the usual case: unit after unit of one batch, as a single-batch version pages
            total = 0
            for partition in units:
                unit = self.dataset._part(partition)
                vids = self.carried(unit.conn, mine[partition.batch][0])
                if need > len(found) and skip < total + len(vids):
                    page = vids[max(skip - total, 0) :][: need - len(found)].tolist()
                    found.update(_positions_of(unit.conn, page))
                total += len(vids)
        else:  # samples in several batches: unite by key
            for partition in units:
                unit = self.dataset._part(partition)
                found.update(_positions_of(unit.conn, self.carried(unit.conn, mine[partition.batch][0]).tolist()))
            total = len(found)
            found = dict(list(found.items())[skip : skip + need])
        rows: dict[str, list] = {}
        self.fold_from_batches(rows, found, {})
        return [self.dataset.hit(tuple(rows[k])) for k in found if k in rows], total

    def fold_from_batches(
        self, merged: dict[str, list], positions: dict[str, tuple[str, int]], held: dict[str, set[int]]
    ) -> None:
        """Fold into `merged` the rows of the variants at `positions` (key -> chromosome, start) from every batch
        not in `held[key]`, each looked up in the one unit of the batch whose span holds it."""
        for batch, index in self.indexes.items():
            by_partition: dict[str, tuple[Partition, list[str]]] = {}
            for key, (chrom, start) in positions.items():
                if batch in held.get(key, ()):
                    continue
                for p in index.reached_by(VariantQuery(reference_name=chrom, start=start)):
                    by_partition.setdefault(p.file, (p, []))[1].append(key)
            for partition, keys in by_partition.values():
                for row in _rows_by_key(self.dataset._part(partition).conn, self.columns, keys):
                    _fold(merged, row)


class BatchedUnits:
    """The units of a multi-batch version that a query reaches, with the manifest index of each one's sample 0."""

    def __init__(self, version: BatchedVersion, units: list[tuple[int, Partition]]):
        self.version = version
        self.units = units

    def _open(self) -> Iterator[tuple[Partition, Any]]:
        for _, partition in self.units:
            yield partition, self.version.dataset._part(partition)  # one at a time: the open-file cap may close others

    def _offset(self, partition: Partition) -> int:
        return self.version.first[partition.batch]

    # --- merging ------------------------------------------------------------------

    def _merged(self, parts: Parts, annotated: bool) -> dict[str, list]:
        """Observed variants matching `parts`, merged over batches. `annotated`: the query filters on annotations,
        which a batch may lack for a variant another batch annotates; those rows are then looked up by key."""
        union = " UNION ALL ".join(f"SELECT {self.version.columns} FROM variants WHERE {w}" for w, _ in parts)
        params = [x for _, p in parts for x in p]
        merged: dict[str, list] = {}
        held: dict[str, set[int]] = {}
        for partition, unit in self._open():
            for row in unit.conn.execute(union, params):
                _fold(merged, row)
                held.setdefault(row[_VKEY], set()).add(partition.batch)
        if annotated:
            positions = {key: (row[_CHROM], row[_START]) for key, row in merged.items()}
            self.version.fold_from_batches(merged, positions, held)
        return {k: row for k, row in merged.items() if row[_AC] > 0}

    def _ordered(self, merged: dict[str, list]) -> list[list]:
        rank = self.version.rank
        return sorted(merged.values(), key=lambda r: (rank.get(r[_CHROM], len(rank)), r[_START], r[_END], r[_VKEY]))

    def rows_of(self, keys: list[str]) -> dict[str, list]:
        """Merged rows of these variant keys (observed or not), looked up in every unit reached."""
        merged: dict[str, list] = {}
        for _, unit in self._open():
            for row in _rows_by_key(unit.conn, self.version.columns, keys):
                _fold(merged, row)
        return merged

    # --- the answers store.py asks for -------------------------------------------

    def search(self, parts: Parts, annotated: bool, skip: int, need: int) -> tuple[list[VariantHit], int]:
        ordered = self._ordered(self._merged(parts, annotated))
        page = ordered[skip : skip + need] if need > 0 else []
        return [self.version.dataset.hit(tuple(r)) for r in page], len(ordered)

    def count(self, parts: Parts, annotated: bool) -> int:
        if annotated:
            return len(self._merged(parts, annotated))
        # Observed = some batch has AC > 0 (AC >= 0 everywhere): the union of each unit's observed keys.
        keys: set[str] = set()
        union = " UNION ALL ".join(f"SELECT vkey FROM variants WHERE {w} AND ac > 0" for w, _ in parts)
        sql = f"SELECT group_concat(vkey, char(31)) FROM ({union})"  # one string per unit: no Python row per key
        params = [x for _, p in parts for x in p]
        for _, unit in self._open():
            (joined,) = unit.conn.execute(sql, params).fetchone()
            if joined:
                keys.update(joined.split("\x1f"))  # a key is <chrom>-<pos>-<ref>-<alt>: never a control character
        return len(keys)

    def exists(self, parts: Parts, annotated: bool) -> bool:
        for _, unit in self._open():
            for where, params in parts:
                if unit.conn.execute(f"SELECT 1 FROM variants WHERE {where} AND ac > 0 LIMIT 1", params).fetchone():
                    return True
        return annotated and bool(self._merged(parts, annotated))

    def carrier_count(self, parts: Parts, annotated: bool) -> int:
        """Distinct samples (over all batches) carrying any matching observed variant."""
        sets: list[tuple[int, int, bytes]] = []
        if annotated:
            keys = list(self._merged(parts, annotated))
            for partition, unit in self._open():
                offset = self._offset(partition)
                for chunk in range(0, len(keys), _IN_CHUNK):
                    some = keys[chunk : chunk + _IN_CHUNK]
                    sql = (
                        "SELECT v.carriers, c.samples FROM variants v JOIN carriers c ON c.vid = v.id "
                        f"WHERE v.vkey IN ({','.join('?' * len(some))})"
                    )
                    sets += [(offset, n, blob) for n, blob in unit.conn.execute(sql, some)]
        else:
            union = " UNION ALL ".join(f"SELECT id FROM variants WHERE {w} AND ac > 0" for w, _ in parts)
            params = [x for _, p in parts for x in p]
            sql = (
                f"SELECT v.carriers, c.samples FROM variants v JOIN carriers c ON c.vid = v.id WHERE v.id IN ({union})"
            )
            for partition, unit in self._open():
                sets += [(self._offset(partition), n, blob) for n, blob in unit.conn.execute(sql, params)]
        # Batches hold disjoint samples: count each batch's distinct carriers apart, and a batch with one carrying
        # variant by its stored count, without decoding (as the single-batch path does).
        by_batch: dict[int, list[tuple[int, bytes]]] = {}
        for offset, n, blob in sets:
            by_batch.setdefault(offset, []).append((n, blob))
        return sum(
            rows[0][0] if len(rows) == 1 else len(np.unique(np.concatenate([decode_set(b) for _, b in rows])))
            for rows in by_batch.values()
        )

    def get(self, vkey: str) -> VariantHit | None:
        row = self.rows_of([vkey]).get(vkey)
        return self.version.dataset.hit(tuple(row)) if row is not None and row[_AC] > 0 else None

    def carrier_indexes(self, vkey: str) -> np.ndarray | None:
        """The variant's carriers as ascending manifest sample indexes; None when no batch observes it."""
        if self.get(vkey) is None:
            return None
        sets = [np.empty(0, dtype=np.int64)]
        for partition in sorted((p for _, p in self.units), key=lambda p: p.batch):
            unit = self.version.dataset._part(partition)
            sql = "SELECT c.samples FROM variants v JOIN carriers c ON c.vid = v.id WHERE v.vkey = ?"
            row = unit.conn.execute(sql, (vkey,)).fetchone()
            if row is not None:
                sets.append(decode_set(row[0]).astype(np.int64) + self._offset(partition))
        return np.concatenate(sets).astype("<u4")

    def carrier_rows(self, vkey: str, limit: int | None) -> list[tuple[str, str | None, str | None, str]]:
        """The variant's carriers over all batches, in manifest sample order; only the first `limit` are built."""
        table = self.version.dataset.sample_table()
        out: list[tuple[str, str | None, str | None, str]] = []
        for partition in sorted((p for _, p in self.units), key=lambda p: p.batch):
            offset, unit = self._offset(partition), self.version.dataset._part(partition)
            left = None if limit is None else limit - len(out)
            if left is not None and left <= 0:
                break
            row = unit.conn.execute(
                "SELECT c.samples, c.zyg FROM variants v JOIN carriers c ON c.vid = v.id WHERE v.vkey = ?", (vkey,)
            ).fetchone()
            if row is None:
                continue
            idxs = decode_set(row[0])[:left].tolist()
            for idx, zyg in zip(idxs, unpack_codes(row[1], len(idxs)).tolist(), strict=True):
                name, individual, biosample = table[offset + idx]
                out.append((name, biosample, individual, ZYGOSITY_GENO[zyg]))
        return out


def _fold(merged: dict[str, list], row: tuple) -> None:
    """Add one unit's row of a variant into the merged rows (sums and unions as the module docstring says)."""
    have = merged.get(row[_VKEY])
    if have is None:
        merged[row[_VKEY]] = list(row)
        return
    for column in (_AC, _AN, _CARRIERS):
        have[column] += row[column]
    for column in _UNITED:
        if row[column] and row[column] != have[column]:
            values = dict.fromkeys((have[column] or "").split("|") + row[column].split("|"))
            have[column] = "|".join(v for v in values if v)


def _rows_by_key(conn: Any, columns: str, keys: list[str]) -> Iterator[tuple]:
    for chunk in range(0, len(keys), _IN_CHUNK):
        some = keys[chunk : chunk + _IN_CHUNK]
        yield from conn.execute(f"SELECT {columns} FROM variants WHERE vkey IN ({','.join('?' * len(some))})", some)


def _positions_of(conn: Any, vids: list[int]) -> dict[str, tuple[str, int]]:
    """Variant key -> (chromosome, start) of these ids of one unit, in id order."""
    found: dict[str, tuple[str, int]] = {}
    for chunk in range(0, len(vids), _IN_CHUNK):
        some = vids[chunk : chunk + _IN_CHUNK]
        sql = f"SELECT vkey, chrom, start FROM variants WHERE id IN ({','.join('?' * len(some))}) ORDER BY id"
        found.update((k, (c, s)) for k, c, s in conn.execute(sql, some))
    return found
