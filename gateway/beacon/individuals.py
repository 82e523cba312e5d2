"""The `individuals` and `biosamples` entry types, answered from the metadata store.

Counts and existence are single SQL statements over the indexed columns and `phenopacket_terms`
(never a document load); only the page of records asked for at record granularity reads its
phenopacket documents, which the pure translator turns into Beacon records. Individual ids are the
subjects' keyed pseudonyms, the same ids the variant store links VCF samples to.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import re
import secrets
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import ARRAY

from gateway.beacon.context import QueryContext
from gateway.beacon.filters import PRESENT_KINDS, FilterPlan, missing_terms, plan_filters
from gateway.beacon.registry import EntryType, ParsedParameters
from gateway.beacon.request import BeaconRequest, BeaconRequestError
from gateway.beacon.response import EntryAnswer, ResultSet
from gateway.beacon.term_index import Snapshot, index_for
from gateway.issues import Issue
from gateway.security.policy import Granularity
from gateway.store.reads import Page, page_by_pks
from gateway.store.tables import biosamples, phenopacket_terms, phenopackets
from translators.phenopacket_to_beacon import biosample_records, individual_record

_RECORD_ID = re.compile(r"^[^\s/\\]{1,255}$")


def no_parameters(group: str) -> Callable[[Mapping[str, Any], str], ParsedParameters]:
    """A parser for entry types without request parameters of their own: anything given is an error."""

    def parse(raw: Mapping[str, Any], prefix: str) -> ParsedParameters:
        if raw:
            name = sorted(raw)[0]
            raise BeaconRequestError(
                [
                    Issue.error(
                        "beacon-request",
                        f"{group} takes no request parameter {name!r} (use filters; datasetIds selects datasets)",
                        prefix + name,
                    )
                ]
            )
        return ParsedParameters(None, {})

    return parse


def check_record_id(record_id: str | None) -> str:
    """The id of /{entry}/{id}…; a cross-link handler always has one, so None is as malformed as a bad id."""
    if record_id is None or not _RECORD_ID.fullmatch(record_id):
        raise BeaconRequestError([Issue.error("beacon-request", "the id in the path is malformed", "/path/id")])
    return record_id


def require_store(ctx):
    return ctx.store


def filter_prefix(request: BeaconRequest) -> str:
    return "/query/filters/"


# --- the shared query ----------------------------------------------------------------------


class Selection:
    """What one request selects: the FROM clause, the conditions, the record builder."""

    def __init__(
        self,
        kind: str,
        datasets: tuple[str, ...],
        plan: FilterPlan,
        extra: Sequence = (),
        snapshot: Snapshot | None = None,
        around: Callable[[Snapshot], bool] | None = None,
    ):
        self.kind = kind
        # Whether a record page may be read as at the snapshot though the store moved on (TermIndex.answers_around).
        self.around = around
        self.datasets = datasets
        self.plan = plan
        self.extra = extra
        # The in-memory index answers individuals selections whose every condition it holds; else SQL.
        self.snapshot = snapshot if kind == "individuals" and not extra and plan.indexable else None
        p = phenopackets.c
        self.source: sa.FromClause
        self.order: sa.ColumnElement[Any] | tuple[sa.ColumnElement[Any], ...]
        if kind == "individuals":
            self.source = phenopackets
            self.dataset_col = p.dataset_id
            self.order = p.pk
        else:
            self.source = biosamples.join(phenopackets, biosamples.c.phenopacket_pk == p.pk)
            self.dataset_col = biosamples.c.dataset_id
            self.order = (biosamples.c.phenopacket_pk, biosamples.c.biosample_id)

    @property
    def where(self) -> list:
        return [self.dataset_col.in_(self.datasets), *self.plan.conditions, *self.extra]

    def count_by_dataset(self, connection) -> dict[str, int]:
        query = (
            sa.select(self.dataset_col, sa.func.count())
            .select_from(self.source)
            .where(*self.where)
            .group_by(self.dataset_col)
        )
        return {d: n for d, n in connection.execute(query)}

    def count(self, connection) -> int:
        return connection.execute(sa.select(sa.func.count()).select_from(self.source).where(*self.where)).scalar_one()

    def exists(self, connection) -> bool:
        return (
            connection.execute(sa.select(sa.literal(1)).select_from(self.source).where(*self.where).limit(1)).first()
            is not None
        )

    def page(self, connection, dataset_id: str, offset: int, limit: int) -> list[dict]:
        p = phenopackets.c
        order = self.order if isinstance(self.order, tuple) else (self.order,)
        columns = [p.subject_id, p.document]
        if self.kind == "biosamples":
            columns.append(biosamples.c.biosample_id)
        query = (
            sa.select(*columns)
            .select_from(self.source)
            .where(*self.where, self.dataset_col == dataset_id)
            .order_by(*order)
            .offset(offset)
            .limit(limit)
        )
        return self._records(connection.execute(query), dataset_id)

    def _records(self, rows, dataset_id: str) -> list[dict]:
        out = []
        for row in rows:
            if self.kind == "individuals":
                out.append(individual_of(row.subject_id, row.document, dataset_id))
            else:
                document = row.document if isinstance(row.document, dict) else {}
                wanted = [
                    b for b in biosample_records(document, individual_id=row.subject_id) if b["id"] == row.biosample_id
                ]
                out.extend(wanted[:1])
        return out


def individual_of(subject_id: str, document: Any, dataset_id: str) -> dict:
    record = individual_record(document if isinstance(document, dict) else {}, individual_id=subject_id)
    record.setdefault("info", {})["datasetId"] = dataset_id
    return record


def answer_selection(
    ctx, request: BeaconRequest, granularity: str, selection: Selection, scope: Callable | None = None
) -> EntryAnswer:
    """`scope(connection)`: a context manager entered on the SQL path's connection before its statements (a
    cross-link's temporary table of ids, which the selection's conditions join)."""
    store = require_store(ctx)
    info: dict = {}
    if selection.plan.warnings:
        info["warnings"] = list(selection.plan.warnings)
    if store is None or selection.plan.unanswerable or not selection.datasets:  # no metadata store: nothing held
        return EntryAnswer(exists=False, total=0, result_sets=_empty_sets(selection.datasets), info=info)
    if selection.snapshot is not None:
        answered = _index_answer(store, request, granularity, selection, info)
        if isinstance(answered, EntryAnswer):
            return answered
        return _answer_after_stale_page(ctx, request, granularity, selection, answered)
    with store.engine.connect() as connection, scope(connection) if scope else contextlib.nullcontext():
        if granularity == "boolean":
            exists = selection.exists(connection)
            total = None
            result_sets: list[ResultSet] = []
        elif granularity == "count":
            total = selection.count(connection)
            exists = total > 0
            result_sets = []
        else:
            counts = selection.count_by_dataset(connection)
            total = sum(counts.values())
            exists = total > 0
            result_sets = []
            for dataset_id in selection.datasets:
                n = counts.get(dataset_id, 0)
                records = (
                    selection.page(connection, dataset_id, request.offset, request.limit) if n > request.offset else []
                )
                result_sets.append(ResultSet(id=dataset_id, count=n, records=records))
        if not exists and selection.plan.term_checks:
            absent = missing_terms(connection, selection.plan, selection.datasets)
            if absent:
                info.setdefault("warnings", []).append(
                    f"no individual in the queried datasets is annotated with {', '.join(absent)} "
                    "(or a descendant); see /filtering_terms for the terms present"
                )
    return EntryAnswer(exists=exists, total=total, result_sets=result_sets, info=info)


STALE_PAGE_ATTEMPTS = 3  # checked snapshots tried after a stale page before the answer goes to SQL


def _answer_after_stale_page(
    ctx, request: BeaconRequest, granularity: str, stale: Selection, page: Page
) -> EntryAnswer:
    """The store changed after the snapshot a page was chosen from (`page`: what that read found): plan again on
    a snapshot patched to at least the counter the page read saw (no second counter read), a few times while
    writes keep landing in between, and on SQL if it stays stale. Why a few: on a node that keeps ingesting, a
    second write during the patch is common, and the SQL answer of a broad filter costs hundreds of ms at 100,000
    individuals (and loads the database further). The rows a stale read returned are the store at its counter:
    a snapshot patched to exactly that counter answers from them when its page is among them, without a second
    read (under load each round trip costs milliseconds)."""
    kind, datasets, extra = stale.kind, stale.datasets, stale.extra
    for _ in range(STALE_PAGE_ATTEMPTS):
        again = selection_for(kind, request, datasets, extra, ctx, exact=True, seen=page.counter)
        if again.snapshot is None:
            break
        info = {"warnings": list(again.plan.warnings)} if again.plan.warnings else {}
        answered = _index_answer(ctx.store, request, granularity, again, info, known=page)
        if isinstance(answered, EntryAnswer):
            return answered
        page = answered
    return answer_selection(
        ctx, request, granularity, selection_for(kind, request, datasets, extra, ctx, use_index=False)
    )


def _answer_from_index(
    store, request: BeaconRequest, granularity: str, selection: Selection, info: dict, within: np.ndarray | None = None
) -> EntryAnswer | None:
    """The same answer as the SQL path, from the in-memory index; only a record page reads the database.
    `within`: a mask over the index's positions the answer is restricted to (a cross-link's individuals).

    None when the page read finds the store changed since the snapshot (PostgreSQL; the caller answers on SQL)."""
    answered = _index_answer(store, request, granularity, selection, info, within)
    return answered if isinstance(answered, EntryAnswer) else None


def _index_answer(
    store,
    request: BeaconRequest,
    granularity: str,
    selection: Selection,
    info: dict,
    within: np.ndarray | None = None,
    known: Page | None = None,
) -> EntryAnswer | Page:
    """`_answer_from_index`, or the stale page read that found the store changed since the snapshot (PostgreSQL).
    `known`: a page read earlier, used where it is the store at this snapshot's version."""
    snapshot, plan, datasets = selection.snapshot, selection.plan, selection.datasets
    assert snapshot is not None  # the caller chose this path because the selection has a snapshot
    mask = snapshot.select(datasets, plan.sexes, plan.term_sets)
    if within is not None:
        mask = mask & within
    result_sets: list[ResultSet] = []
    total: int | None
    if granularity == "boolean":
        exists, total = bool(mask.any()), None
    elif granularity == "count":
        total = int(mask.sum())
        exists = total > 0
    else:
        counts = snapshot.count_by_dataset(mask)
        total = sum(counts.values())
        exists = total > 0
        pages = {
            d: snapshot.page(mask, d, request.offset, request.limit) if counts.get(d, 0) > request.offset else []
            for d in datasets
        }
        page = _documents(store, snapshot, [pk for pks in pages.values() for pk in pks], selection.around, known)
        if not page.current:
            return page
        documents = page.rows
        for dataset_id, pks in pages.items():
            records = [individual_of(*documents[pk], dataset_id) for pk in pks if pk in documents]
            result_sets.append(ResultSet(id=dataset_id, count=counts.get(dataset_id, 0), records=records))
    if not exists and plan.term_checks:
        in_datasets = snapshot.dataset_mask(datasets)
        absent = [
            fid for fid, _, terms in plan.term_checks if not (snapshot.terms_mask(frozenset(terms)) & in_datasets).any()
        ]
        if absent:
            info.setdefault("warnings", []).append(
                f"no individual in the queried datasets is annotated with {', '.join(absent)} "
                "(or a descendant); see /filtering_terms for the terms present"
            )
    return EntryAnswer(exists=exists, total=total, result_sets=result_sets, info=info)


def _documents(
    store,
    snapshot: Snapshot,
    pks: list[int],
    around: Callable[[Snapshot], bool] | None = None,
    known: Page | None = None,
) -> Page:
    """The page's rows (pk -> (subject_id, document)); on PostgreSQL in one round trip that also checks that the
    store is still at the snapshot's version (else the page is not `current`) — or, while another thread patches
    the index (`around`), that none of the page's rows changed after the snapshot: the answer is then the store as
    at the snapshot, as a count answered meanwhile is. Read even for an empty page: the check is the point —
    unless `known` was read at exactly this snapshot's version and holds the page."""
    if store.reads is None:
        rows = {pk: (subject, document) for pk, subject, document in page_by_pks(store.engine, pks)}
        return Page(snapshot.version, True, frozenset(pks), rows)
    if known is not None and known.serves(snapshot.version, pks):
        return dataclasses.replace(known, current=True)
    since = snapshot.log_mark if around is not None and snapshot.log_mark is not None and around(snapshot) else None
    return store.reads.page(pks, snapshot.version, since)


def _empty_sets(datasets: tuple[str, ...]) -> list[ResultSet]:
    return [ResultSet(id=d, count=0, records=[]) for d in datasets]


def present_terms(ctx) -> frozenset[str] | None:
    """The terms in `phenopacket_terms` (what a broad filter is cut down to on the SQL path), cached and, after
    writes, extended with the terms written since rather than read whole again (hundreds of thousands of rows at
    100,000 individuals, after every write of a node that keeps ingesting). A term whose last row went may stay:
    a filter on it then matches nothing, as without the cut; a new term is never missed.

    SQLite: keyed on max(rowid), which grows with every insert (a replaced patient's terms are re-inserted): the
    rows past the cached one are read. PostgreSQL: keyed on the change counter that every writing transaction
    raises (gateway.store.reads), so a term stored through another process is seen by the next query here; the
    terms of the phenopackets the change log names since the cached read are read, in one statement with the
    counter (`_PG_TERMS_SINCE`).
    """
    store = ctx.store
    if store is None:
        return None
    cached = ctx.cache.get("present_terms")
    if store.reads is not None:
        found = _present_terms_postgres(store.reads, cached)
    else:
        with store.engine.connect() as connection:
            found = _present_terms_sqlite(connection, cached)
    ctx.cache["present_terms"] = found
    return found[-1]


_ALL_TERMS = sa.select(phenopacket_terms.c.term).distinct()
_PG_XMIN = "CAST(CAST(pg_snapshot_xmin(CAST(%(mark)s AS pg_snapshot)) AS text) AS bigint)"
# The counter and the MVCC snapshot of now, and the terms of every phenopacket changed since the cached read's
# snapshot (migration 0008) — or, where the log cannot tell (a prune that may have taken a row it did not see), or
# on the first read (mark NULL), every term.
_PG_TERMS_SINCE = f"""
WITH h AS (
  SELECT (SELECT coalesce(sum(version), 0) FROM store_version) AS version, CAST(pg_current_snapshot() AS text) AS mark,
         prunes, CAST(%(mark)s AS text) IS NOT NULL AND (prunes = %(prunes)s OR pruned_xid < {_PG_XMIN}) AS readable
  FROM phenopacket_changes_horizon WHERE id = 1)
SELECT h.version, h.mark, h.prunes, h.readable, CASE
  WHEN h.version = %(version)s THEN NULL
  WHEN h.readable THEN (SELECT array_agg(DISTINCT t.term) FROM phenopacket_terms t WHERE t.phenopacket_pk IN (
    SELECT phenopacket_pk FROM phenopacket_changes WHERE xid >= {_PG_XMIN}
    AND NOT pg_visible_in_snapshot(CAST(CAST(xid AS text) AS xid8), CAST(%(mark)s AS pg_snapshot))))
  ELSE (SELECT array_agg(term) FROM (SELECT DISTINCT term FROM phenopacket_terms) every) END
FROM h
"""


def _present_terms_postgres(reads, cached: tuple | None) -> tuple:
    """(counter, (mark, prunes), terms) now, one round trip on the thread's own connection."""
    version, (mark, prunes), terms = cached if cached is not None else (None, (None, 0), frozenset())
    row = reads.one_statement(_PG_TERMS_SINCE, {"version": version, "mark": mark, "prunes": prunes})[0]
    now, now_mark, now_prunes, readable, read = row
    if cached is not None and int(now) == version:
        return cached
    found = frozenset(read or ())
    return int(now), (now_mark, int(now_prunes)), terms | found if readable else found


def _present_terms_sqlite(connection, cached: tuple | None) -> tuple:
    """(max rowid, terms) now: the rows past the cached max rowid read, or every row if it went down (deletes)."""
    marker = connection.execute(sa.text("SELECT max(rowid) FROM phenopacket_terms")).scalar()
    if cached is not None and cached[0] == marker:
        return cached
    if cached is not None and cached[0] is not None and marker is not None and marker > cached[0]:
        added = connection.execute(sa.text("SELECT DISTINCT term FROM phenopacket_terms WHERE rowid > :seen"),
                                   {"seen": cached[0]})  # fmt: skip
        return marker, cached[1] | frozenset(r[0] for r in added)
    return marker, frozenset(r[0] for r in connection.execute(_ALL_TERMS))


def current_snapshot(
    ctx, *, checked_by_page: bool = False, exact: bool = False, seen: int | None = None
) -> Snapshot | None:
    """The in-memory index of the store if it is up to date (see term_index.py), else None.

    With `checked_by_page` the snapshot last built is returned unchecked: the caller's record page read
    checks the store's version in the same round trip (PostgreSQL), and answers on SQL if it changed.
    With `exact` a patch in flight is waited for, never answered around (TermIndex.current); `seen`: the store's
    version as the caller just read it (no second read)."""
    if ctx is None or ctx.store is None:
        return None
    index = index_for(ctx.store, ctx.cache, PRESENT_KINDS)
    if index is None:
        return None
    if checked_by_page and ctx.store.reads is not None:
        latest = index.latest()
        if latest is not None:
            return latest
    return index.current(wait=exact, seen=seen)


def selection_for(
    kind: str,
    request: BeaconRequest,
    datasets: tuple[str, ...],
    extra: Sequence = (),
    ctx=None,
    *,
    use_index: bool = True,
    record_page: bool = False,
    exact: bool = False,
    seen: int | None = None,
) -> Selection:
    """What the request selects; `record_page`: a record answer will be read, so its page read checks the index;
    `exact`: the snapshot must be the store's version now, or `seen` (see current_snapshot)."""
    indexed = use_index and kind == "individuals" and not extra
    snapshot = current_snapshot(ctx, checked_by_page=record_page, exact=exact, seen=seen) if indexed else None
    present: Callable[[], frozenset[str] | None] | None
    if snapshot is not None:
        present = snapshot.present_terms
    else:
        present = (lambda: present_terms(ctx)) if ctx is not None else None
    plan = plan_filters(request.filters, datasets, kind, filter_prefix(request), present=present)
    index = index_for(ctx.store, ctx.cache, PRESENT_KINDS) if snapshot is not None else None
    return Selection(kind, datasets, plan, extra, snapshot, index.answers_around if index is not None else None)


# --- handlers ------------------------------------------------------------------------------


def answer_individuals(
    ctx: QueryContext,
    request: BeaconRequest,
    granularity: Granularity,
    datasets: tuple[str, ...],
    record_id: str | None = None,
) -> EntryAnswer:
    extra = [phenopackets.c.subject_id == check_record_id(record_id)] if record_id is not None else []
    selection = selection_for("individuals", request, datasets, extra, ctx, record_page=granularity == "record")
    return answer_selection(ctx, request, granularity, selection)


def answer_biosamples(
    ctx: QueryContext,
    request: BeaconRequest,
    granularity: Granularity,
    datasets: tuple[str, ...],
    record_id: str | None = None,
) -> EntryAnswer:
    extra = [biosamples.c.biosample_id == check_record_id(record_id)] if record_id is not None else []
    return answer_selection(ctx, request, granularity, selection_for("biosamples", request, datasets, extra, ctx))


def answer_with_ids(ctx, request, granularity, kind: str, datasets, ids: Sequence[str]) -> EntryAnswer:
    """The individuals (by subject id) or biosamples (by biosample id) answer restricted to `ids`, a cross-link's
    carriers, joined in SQL from one parameter, so the database counts and pages the joined rows itself; no
    statement carries a list of the ids, whatever their number (PostgreSQL's 65,535 parameters, SQLite's 250,000).

    PostgreSQL: one text array unnested inside the statement. No temporary table: creating one is DDL, refused in
    a read-only transaction, so a node reading from a hot-standby replica could not answer (and each one churns
    the system catalogs). SQLite: a temporary table loaded from one JSON parameter (SQLite's temporary tables live
    in their own file, writable even when the store is not)."""
    column = phenopackets.c.subject_id if kind == "individuals" else biosamples.c.biosample_id
    if require_store(ctx).engine.dialect.name == "postgresql":
        array = sa.bindparam(None, list(ids), type_=ARRAY(sa.Text))
        extra = [column.in_(sa.select(sa.func.unnest(array)))]
        return answer_selection(ctx, request, granularity, selection_for(kind, request, datasets, extra, ctx))
    table = sa.Table(
        f"xlink_{secrets.token_hex(6)}",
        sa.MetaData(),
        sa.Column("id", sa.Text, primary_key=True),
        prefixes=["TEMPORARY"],
    )
    extra = [column.in_(sa.select(table.c.id))]

    @contextlib.contextmanager
    def loaded(connection):
        table.create(connection)
        try:
            if ids:
                load = sa.text(f"INSERT OR IGNORE INTO {table.name} (id) SELECT value FROM json_each(:ids)")
                connection.execute(load, {"ids": json.dumps(list(ids))})
            yield
        finally:
            # after a failed statement the table lives on (under a random name) unless dropped
            with contextlib.suppress(sa.exc.DBAPIError):
                table.drop(connection)

    selection = selection_for(kind, request, datasets, extra, ctx)
    return answer_selection(ctx, request, granularity, selection, scope=loaded)


def individuals_within(
    ctx, request: BeaconRequest, granularity: str, datasets: tuple[str, ...], rows_of: Callable[[Snapshot], Any]
) -> EntryAnswer | None:
    """The individuals answer (filters, datasets, counts, pages in pk order) restricted to the positions of the
    in-memory index that `rows_of(snapshot)` marks (a boolean mask, or None: it cannot tell). None when the index
    cannot answer (not built or stale, filters it does not hold): the caller then asks SQL. Only the page's
    records are read from the database."""
    selection = selection_for("individuals", request, datasets, (), ctx)
    store = require_store(ctx)
    if selection.snapshot is None or store is None:
        return None
    info: dict = {"warnings": list(selection.plan.warnings)} if selection.plan.warnings else {}
    if selection.plan.unanswerable or not selection.datasets:
        return EntryAnswer(exists=False, total=0, result_sets=_empty_sets(selection.datasets), info=info)
    within = rows_of(selection.snapshot)
    if within is None:
        return None
    return _answer_from_index(store, request, granularity, selection, info, within)


def biosamples_of_individual(
    ctx: QueryContext,
    request: BeaconRequest,
    granularity: Granularity,
    datasets: tuple[str, ...],
    record_id: str | None,
) -> EntryAnswer:
    extra = [phenopackets.c.subject_id == check_record_id(record_id)]
    return answer_selection(ctx, request, granularity, selection_for("biosamples", request, datasets, extra, ctx))


def individual_of_biosample(ctx, biosample_id: str, datasets: tuple[str, ...]) -> list[str]:
    store = require_store(ctx)
    if store is None:
        return []
    query = (
        sa.select(phenopackets.c.subject_id)
        .select_from(biosamples.join(phenopackets, biosamples.c.phenopacket_pk == phenopackets.c.pk))
        .where(biosamples.c.biosample_id == check_record_id(biosample_id), biosamples.c.dataset_id.in_(datasets))
    )
    with store.engine.connect() as connection:
        return [r[0] for r in connection.execute(query)]


INDIVIDUALS = EntryType(
    id="individual",
    path="individuals",
    name="Individuals",
    description="The individuals of the node's datasets, derived from their stored phenopackets.",
    schema_id="beacon-individual-v2.0.0",
    default_schema="individuals/defaultSchema.json",
    ontology_term={"id": "NCIT:C25190", "label": "Person"},
    parameter_group="individual",
    parse_parameters=no_parameters("individuals"),
    handler=answer_individuals,
    accepts_filters=True,
)

BIOSAMPLES = EntryType(
    id="biosample",
    path="biosamples",
    name="Biosamples",
    description="The biosamples of the node's individuals, derived from their stored phenopackets.",
    schema_id="beacon-biosample-v2.0.0",
    default_schema="biosamples/defaultSchema.json",
    ontology_term={"id": "NCIT:C70699", "label": "Biospecimen"},
    parameter_group="biosample",
    parse_parameters=no_parameters("biosamples"),
    handler=answer_biosamples,
    accepts_filters=True,
)
