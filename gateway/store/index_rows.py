"""The index rows of stored phenopackets as a write diffs them: terms, biosamples, the Family marker.

A replaced phenopacket's rows are read, compared with the new document's and only the difference is
written (gateway.store.metadata). They are read by primary key (`IndexRows.read`), or ahead, with
the other rows a FHIR write reads anyway (`of_subject`: gateway.store.fhir_resources.assembly_heads),
so that the write costs one round trip less.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

import sqlalchemy as sa

from gateway.store.tables import biosamples, phenopacket_families, phenopacket_terms, phenopackets

_IN_CHUNK = 500  # ids per IN (...) list: far below every backend's bound-parameter limit
_t, _b, _f, _p = phenopacket_terms.c, biosamples.c, phenopacket_families.c, phenopackets.c
PHENOPACKET = "p"  # the row naming the phenopacket itself (of_subject): it may have no index rows


def _index_rows_of(where: Callable[[sa.ColumnElement], sa.ColumnElement[bool]], mark: str = "") -> list[sa.Select]:
    """(phenopacket pk, `mark` + table, a, b, c) per row; statements built once (see gateway.store.fhir_resources)."""
    return [
        sa.select(_t.phenopacket_pk, sa.literal(mark + "t"), _t.kind, _t.term, _t.label).where(
            where(_t.phenopacket_pk)
        ),
        sa.select(_b.phenopacket_pk, sa.literal(mark + "b"), _b.biosample_id, _b.sampled_tissue, sa.null()).where(
            where(_b.phenopacket_pk)
        ),
        sa.select(_f.phenopacket_pk, sa.literal(mark + "f"), sa.null(), sa.null(), sa.null()).where(
            where(_f.phenopacket_pk)
        ),
    ]


_BY_PKS = sa.union_all(*_index_rows_of(lambda pk: pk.in_(sa.bindparam("pks", expanding=True))))
# One phenopacket (a FHIR write): no expanding IN, whose SQL is made again on every execution.
_BY_PK = sa.union_all(*_index_rows_of(lambda pk: pk == sa.bindparam("pk")))


def of_subject(mark: str) -> list[sa.Select]:
    """Selects of the phenopacket of (:dataset_id, :subject_id): its own row (PHENOPACKET), then its index rows,
    each row's table named with `mark` before it (for a caller's union: `ReadAhead.of` takes it off)."""
    pk = (
        sa.select(_p.pk)
        .where(_p.dataset_id == sa.bindparam("dataset_id"), _p.subject_id == sa.bindparam("subject_id"))
        .scalar_subquery()
    )
    own = sa.select(_p.pk, sa.literal(mark + PHENOPACKET), sa.null(), sa.null(), sa.null()).where(
        _p.dataset_id == sa.bindparam("dataset_id"), _p.subject_id == sa.bindparam("subject_id")
    )
    return [own, *_index_rows_of(lambda phenopacket_pk: phenopacket_pk == pk, mark)]


@dataclass
class IndexRows:
    """Term rows ((pk, kind, term) -> label), biosample rows ((pk, biosample id) -> sampled tissue) and the
    phenopackets that have a Family, of some phenopackets."""

    terms: dict[tuple[int, str, str], str | None] = field(default_factory=dict)
    biosamples: dict[tuple[int, str], str | None] = field(default_factory=dict)
    families: set[int] = field(default_factory=set)

    def add(self, pk: int, table: str, a: Any, b: Any, c: Any) -> None:
        if table == "t":
            self.terms[pk, a, b] = c
        elif table == "b":
            self.biosamples[pk, a] = b
        elif table == "f":
            self.families.add(pk)

    @classmethod
    def read(cls, connection: sa.Connection, pks: list[int]) -> IndexRows:
        found = cls()
        for chunk in _chunks(pks):
            one = len(chunk) == 1
            for row in connection.execute(*((_BY_PK, {"pk": chunk[0]}) if one else (_BY_PKS, {"pks": chunk}))):
                found.add(*row)
        return found


@dataclass(frozen=True)
class ReadAhead:
    """One phenopacket's index rows, read before it is replaced (in the same transaction)."""

    pk: int
    rows: IndexRows

    @classmethod
    def of(cls, found: Iterable[tuple[int, str, Any, Any, Any]]) -> ReadAhead | None:
        """From `of_subject`'s rows; None when there is no such phenopacket."""
        pk, rows = None, IndexRows()
        for row in found:
            if row[1] == PHENOPACKET:
                pk = row[0]
            else:
                rows.add(*row)
        return None if pk is None else cls(pk, rows)


def _chunks(values: list[Any], size: int = _IN_CHUNK) -> Iterator[list[Any]]:
    for start in range(0, len(values), size):
        yield values[start : start + size]
