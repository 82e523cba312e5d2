"""The metadata store: phenopackets, their datasets and the fields queries filter on.

One small interface over SQLAlchemy Core (no ORM on the hot path). SQLite by default,
with zero set-up; PostgreSQL (`postgresql+psycopg://…`) in production. The schema comes
only from the Alembic migrations (`migrate()`), never from `create_all`.

Saving is all-or-nothing and idempotent: one transaction per call; a patient is keyed
by (dataset_id, subject_id) and saving it again replaces its document and index terms
(INSERT … ON CONFLICT DO UPDATE, so concurrent saves from threads or processes never
duplicate and never hit an integrity error).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any, TypeVar

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql as pg_dialect
from sqlalchemy.dialects import sqlite as sqlite_dialect

from gateway.errors import BadInput
from gateway.ids import check_dataset_id
from gateway.store import families, fhir_resources
from gateway.store import migrate as migrations
from gateway.store.engine import WRITE, create_store_engine
from gateway.store.index_rows import IndexRows, ReadAhead
from gateway.store.indexing import index_fields
from gateway.store.reads import PostgresReads
from gateway.store.records import PhenopacketRecord, SaveResult, StoredFamily, StoredPhenopacket
from gateway.store.tables import (
    DISEASE,
    EXCLUDED_DISEASE,
    EXCLUDED_PHENOTYPE,
    PHENOTYPE,
    biosamples,
    datasets,
    phenopacket_families,
    phenopacket_terms,
    phenopackets,
)

T = TypeVar("T")

__all__ = ["MetadataStore", "StoreError", "UnknownDatasetError", "index_fields"]

MAX_PAGE_SIZE = 1000
_IN_CHUNK = 500  # ids per IN (...) list: far below every backend's bound-parameter limit
_ROW_CHUNK = 300  # (pk, kind, term) keys per row-value IN list: 900 parameters
_DEADLOCK_RETRIES = 3
_RETRYABLE_SQLSTATES = {"40P01", "40001"}  # PostgreSQL deadlock / serialization failure


class StoreError(BadInput):
    """A request the store refuses before touching the database."""


class UnknownDatasetError(StoreError, LookupError):
    def __init__(self, dataset_ids: Sequence[str]):
        super().__init__(f"unknown dataset(s): {', '.join(sorted(dataset_ids))}; declare them first (ensure_dataset)")
        self.dataset_ids = tuple(sorted(dataset_ids))


class MetadataStore:
    def __init__(self, url: str):
        self.url = url
        self.engine = create_store_engine(url)
        self._postgres = self.engine.dialect.name == "postgresql"
        self._insert = pg_dialect.insert if self._postgres else sqlite_dialect.insert
        self._upsert = self._upsert_statement()  # built once: constructing it costs more than running it
        # PostgreSQL: the hot reads of the Beacon side, one round trip each (gateway.store.reads).
        self.reads: PostgresReads | None = PostgresReads(self.engine) if self._postgres else None
        # Write transactions this process has committed: a reader that may answer from a snapshot taken before the
        # latest commits (gateway.beacon.term_index) checks that it holds this process's own writes.
        self.local_writes = 0
        self._local_writes_lock = threading.Lock()
        self._on_close: list[Callable[[], None]] = []  # threads that use the store stop before it closes

    @classmethod
    def open(cls, url: str, *, migrate: bool = True) -> MetadataStore:
        store = cls(url)
        if migrate:
            store.migrate()
        return store

    # -- schema ---------------------------------------------------------------------

    def migrate(self) -> None:
        migrations.upgrade(self.engine)

    def migrations_current(self) -> bool:
        """True when the database is at the code's head revision (False if unreachable)."""
        try:
            return migrations.current_revision(self.engine) == migrations.head_revision()
        except sa.exc.SQLAlchemyError:
            return False

    def ping(self) -> bool:
        try:
            with self.engine.connect() as connection:
                return connection.execute(sa.text("SELECT 1")).scalar() == 1
        except sa.exc.SQLAlchemyError:
            return False

    def on_close(self, stop: Callable[[], None]) -> None:
        """Run `stop` when the store is closed, before its connections go (a background thread of the store's)."""
        self._on_close.append(stop)

    def close(self) -> None:
        while self._on_close:
            self._on_close.pop()()
        if self.reads is not None:
            self.reads.close()
        self.engine.dispose()

    @contextmanager
    def transaction(self) -> Iterator[sa.Connection]:
        """A write transaction (committed on exit, rolled back on error) for callers that
        must change the store together with their own rows (erasure + audit record)."""
        with self.engine.connect() as connection:
            connection.execution_options(**{WRITE: True})
            with connection.begin():
                yield connection
        with self._local_writes_lock:  # after the commit: a snapshot read before this line may lack the write
            self.local_writes += 1

    def in_transaction(self, work: Callable[[sa.Connection], T]) -> T:
        """`work` in one write transaction, all or nothing, run again on a deadlock (PostgreSQL)."""

        def attempt() -> T:
            with self.transaction() as connection:
                return work(connection)

        return self._retry_deadlocks(attempt)

    # -- datasets -------------------------------------------------------------------

    def ensure_dataset_in(self, connection: sa.Connection, dataset_id: str) -> None:
        """Create the dataset if missing, inside the caller's transaction (gone with it on a rollback)."""
        check_dataset_id(dataset_id)
        if not self.dataset_exists_in(connection, dataset_id):
            now = _now()
            statement = self._insert(datasets).values(
                id=dataset_id, name="", description="", created_at=now, updated_at=now
            )
            connection.execute(statement.on_conflict_do_nothing(index_elements=["id"]))

    def ensure_dataset(self, dataset_id: str, *, name: str = "", description: str = "") -> None:
        """Create the dataset if missing; update its name/description when given."""
        _require_text("dataset_id", dataset_id)
        check_dataset_id(dataset_id)  # the last line of defence: every entry point checked already
        now = _now()
        statement = self._insert(datasets).values(
            id=dataset_id, name=name, description=description, created_at=now, updated_at=now
        )
        changes = {k: v for k, v in (("name", name), ("description", description)) if v}
        if not changes:
            # Called on every ingest: a read is enough when the dataset exists already.
            with self.engine.connect() as connection:
                if connection.execute(sa.select(datasets.c.id).where(datasets.c.id == dataset_id)).first():
                    return
        if changes:
            statement = statement.on_conflict_do_update(index_elements=["id"], set_={**changes, "updated_at": now})
        else:
            statement = statement.on_conflict_do_nothing(index_elements=["id"])
        with self.transaction() as connection:
            connection.execute(statement)

    def dataset_ids(self) -> list[str]:
        """Every dataset's id, sorted (asked on every Beacon request: no join, no count)."""
        with self.engine.connect() as connection:
            return [r[0] for r in connection.execute(sa.select(datasets.c.id).order_by(datasets.c.id))]

    @staticmethod
    def dataset_exists_in(connection: sa.Connection, dataset_id: str) -> bool:
        return connection.execute(sa.select(datasets.c.id).where(datasets.c.id == dataset_id)).first() is not None

    def list_datasets(self) -> list[dict[str, Any]]:
        count = sa.func.count(phenopackets.c.pk).label("phenopackets")
        query = (
            sa.select(datasets, count)
            .select_from(datasets.outerjoin(phenopackets, phenopackets.c.dataset_id == datasets.c.id))
            .group_by(*datasets.c)
            .order_by(datasets.c.id)
        )
        with self.engine.connect() as connection:
            rows = connection.execute(query).mappings().all()
        return [
            {**row, "created_at": _aware(row["created_at"]), "updated_at": _aware(row["updated_at"])} for row in rows
        ]

    def delete_dataset(self, dataset_id: str) -> int:
        """Withdraw a dataset and everything in it; returns the number of phenopackets removed."""
        with self.transaction() as connection:
            return self.delete_dataset_in(connection, dataset_id)

    @staticmethod
    def delete_dataset_in(connection: sa.Connection, dataset_id: str) -> int:
        """The same inside a caller's `transaction()` (a withdrawal queues its purge job with it)."""
        removed = connection.execute(sa.delete(phenopackets).where(phenopackets.c.dataset_id == dataset_id)).rowcount
        connection.execute(sa.delete(datasets).where(datasets.c.id == dataset_id))
        return removed

    # -- phenopackets ---------------------------------------------------------------

    def save_phenopackets(self, records: Sequence[PhenopacketRecord]) -> list[SaveResult]:
        """Store all records in one transaction, or none of them.

        Results follow the input order. Within one call the same (dataset_id, subject_id)
        may appear more than once: the last one is stored, and only its first mention
        can report `created=True`.
        """
        records = list(records)
        for position, record in enumerate(records):
            _check_record(position, record)
        if not records:
            return []
        # Last mention of a patient wins; rows in key order so that concurrent batches
        # lock patients in the same order (no deadlocks on PostgreSQL).
        latest = {(r.dataset_id, r.subject_id): r for r in records}
        keys = sorted(latest)
        now = _now()
        fields = {key: index_fields(latest[key].document) for key in keys}
        rows = [_phenopacket_row(latest[key], fields[key], now) for key in keys]
        families = {key: latest[key].family for key in keys}
        kept = _families_kept(latest)
        stored = self._retry_deadlocks(lambda: self._save_rows(rows, fields, families, kept))
        return _results(records, latest, stored)

    def save_phenopackets_in(
        self,
        connection: sa.Connection,
        records: Sequence[PhenopacketRecord],
        *,
        dataset_checked: bool = False,
        read_ahead: ReadAhead | None = None,
    ) -> list[SaveResult]:
        """The same inside a caller's `transaction()` (FHIR resources and the phenopacket they make).
        `dataset_checked`: the caller read the records' datasets in this transaction already. `read_ahead`:
        the index rows of the one phenopacket these records replace, read in this transaction already."""
        records = list(records)
        for position, record in enumerate(records):
            _check_record(position, record)
        latest = {(r.dataset_id, r.subject_id): r for r in records}
        now = _now()
        fields = {key: index_fields(latest[key].document) for key in sorted(latest)}
        rows = [_phenopacket_row(latest[key], fields[key], now) for key in sorted(latest)]
        families = {key: record.family for key, record in latest.items()}
        kept = _families_kept(latest)
        stored = (
            self._save_rows_in(connection, rows, fields, families, dataset_checked, read_ahead, kept) if rows else {}
        )
        return _results(records, latest, stored)

    def _save_rows(
        self,
        rows: list[dict[str, Any]],
        fields: dict[tuple[str, str], dict[str, Any]],
        families: dict[tuple[str, str], dict[str, Any] | None],
        kept: frozenset[tuple[str, str]] = frozenset(),
    ) -> dict[tuple[str, str], bool]:
        with self.transaction() as connection:
            return self._save_rows_in(connection, rows, fields, families, kept=kept)

    def _save_rows_in(
        self,
        connection: sa.Connection,
        rows: list[dict[str, Any]],
        fields: dict[tuple[str, str], dict[str, Any]],
        families: dict[tuple[str, str], dict[str, Any] | None],
        dataset_checked: bool = False,
        read_ahead: ReadAhead | None = None,
        kept: frozenset[tuple[str, str]] = frozenset(),
    ) -> dict[tuple[str, str], bool]:
        """`kept`: the keys whose stored Family stays as it is (PhenopacketRecord.keep_family)."""
        if not dataset_checked:
            wanted = {row["dataset_id"] for row in rows}
            known = set(connection.execute(sa.select(datasets.c.id).where(datasets.c.id.in_(wanted))).scalars())
            if wanted - known:
                raise UnknownDatasetError(sorted(wanted - known))

        pk_of: dict[tuple[str, str], int] = {}
        created: dict[tuple[str, str], bool] = {}
        for pk, dataset_id, subject_id, revision in connection.execute(self._upsert, rows):
            pk_of[dataset_id, subject_id] = pk
            created[dataset_id, subject_id] = revision == 1

        # A replaced phenopacket's index rows are diffed against the stored ones: a write that adds one
        # resource mostly adds a term or none, so most rows stay as they are (no delete, no re-insert).
        replaced = [pk_of[key] for key, is_new in created.items() if not is_new]
        if read_ahead is not None and replaced == [read_ahead.pk]:
            before = read_ahead.rows
        else:
            before = IndexRows.read(connection, replaced)
        after = IndexRows()
        for key, indexed in fields.items():
            pk = pk_of[key]
            for kind, term, label in indexed["terms"]:
                after.terms[pk, kind, term] = label
            for sample in indexed["biosamples"]:
                after.biosamples[pk, sample["id"]] = sample["sampled_tissue"]
        self._write_index_diff(connection, before, after, dataset_of={pk: key[0] for key, pk in pk_of.items()})

        family_rows = [
            _family_row(pk_of[key], key[0], family, _now())
            for key, family in families.items()
            if family is not None and key in pk_of
        ]
        staying = {pk_of[key] for key in kept if key in pk_of}
        for chunk in _chunks(sorted(before.families - staying)):  # rare (family history): replaced whole
            connection.execute(_DELETE_FAMILIES, {"pks": chunk})
        if family_rows:  # a JSON column: a plain executemany
            connection.execute(_INSERT[phenopacket_families.name], family_rows)
        return created

    def subject_labels_in(
        self, connection: sa.Connection, dataset_id: str, subject_ids: Sequence[str]
    ) -> dict[str, str | None]:
        """The stored subject label pseudonyms of these subjects' phenopackets in a dataset (absent: none stored)."""
        table = phenopackets.c
        found: dict[str, str | None] = {}
        for chunk in _chunks(sorted(set(subject_ids))):
            query = sa.select(table.subject_id, table.subject_label).where(
                table.dataset_id == dataset_id, table.subject_id.in_(chunk)
            )
            found.update((subject, label) for subject, label in connection.execute(query))
        return found

    def rebuild_index(
        self, *, dataset_id: str | None = None, batch: int = 500, progress: Callable[[int, int], None] | None = None
    ) -> int:
        """Make every stored phenopacket's index (its term and biosample rows, and the row's sex, age and vital
        status) again from its document, as `index_fields` makes it now; how many changed.

        Why: a new version may index more of a document (a new term kind, another reading of it); rows stored
        before keep the old index until they are written again, and a Beacon filter would miss them silently.
        Batches of `batch` phenopackets in storage order, each its own transaction (an interrupted run is resumed
        by running again: an unchanged row costs a read). A changed row has its `revision` raised in the same
        transaction, so that the term indexes of running nodes patch themselves (the change log, migration 0008).
        `progress(changed so far, last pk done)` after each batch."""
        if dataset_id is not None:
            check_dataset_id(dataset_id)
        table = phenopackets.c
        derived = ("sex", "age_iso", "age_days", "vital_status")
        last, changed = 0, 0
        while True:
            with self.transaction() as connection:
                query = sa.select(table.pk, table.dataset_id, table.document, *(table[c] for c in derived))
                query = query.where(table.pk > last).order_by(table.pk).limit(batch)
                if dataset_id is not None:
                    query = query.where(table.dataset_id == dataset_id)
                found = connection.execute(query).all()
                if not found:
                    return changed
                before = IndexRows.read(connection, [row.pk for row in found])
                after, columns = IndexRows(), {}
                for row in found:
                    indexed = index_fields(row.document)
                    for kind, term, label in indexed["terms"]:
                        after.terms[row.pk, kind, term] = label
                    for sample in indexed["biosamples"]:
                        after.biosamples[row.pk, sample["id"]] = sample["sampled_tissue"]
                    stored = {c: getattr(row, c) for c in derived}
                    if {c: indexed[c] for c in derived} != stored:
                        columns[row.pk] = {c: indexed[c] for c in derived}
                differs = sorted(
                    {pk for pk, *_ in before.terms.keys() ^ after.terms.keys()}
                    | {pk for pk, *_ in before.biosamples.keys() ^ after.biosamples.keys()}
                    | {
                        key[0]
                        for key in before.terms.keys() & after.terms.keys()
                        if before.terms[key] != after.terms[key]
                    }
                    | {
                        k[0]
                        for k in before.biosamples.keys() & after.biosamples.keys()
                        if before.biosamples[k] != after.biosamples[k]
                    }
                    | set(columns)
                )
                if differs:
                    self._write_index_diff(connection, before, after, {row.pk: row.dataset_id for row in found})
                    for pk in differs:
                        values = {"revision": table.revision + 1, **columns.get(pk, {})}
                        connection.execute(sa.update(phenopackets).where(table.pk == pk).values(**values))
                changed += len(differs)
                last = found[-1].pk
            if progress is not None:
                progress(changed, last)

    def _write_index_diff(
        self, connection: sa.Connection, before: IndexRows, after: IndexRows, dataset_of: dict[int, str]
    ) -> None:
        """Make the stored term and biosample rows of these phenopackets `after`. New rows go in before
        removed ones go out: SQLite's max(rowid) of phenopacket_terms (gateway.beacon.individuals'
        present-terms marker) then grows with every write that adds a term."""
        terms = [
            {"phenopacket_pk": pk, "dataset_id": dataset_of[pk], "kind": kind, "term": term, "label": label}
            for (pk, kind, term), label in after.terms.items()
            if (pk, kind, term) not in before.terms
        ]
        self._insert_rows(connection, phenopacket_terms, terms)
        relabelled = [
            {"b_pk": pk, "b_kind": kind, "b_term": term, "label": label}
            for (pk, kind, term), label in after.terms.items()
            if (pk, kind, term) in before.terms and before.terms[pk, kind, term] != label
        ]
        if relabelled:
            connection.execute(_RELABEL_TERM, relabelled)
        gone_terms = [key for key in before.terms if key not in after.terms]
        self._delete_rows(connection, phenopacket_terms, ("phenopacket_pk", "kind", "term"), gone_terms)

        samples = [
            {"phenopacket_pk": pk, "dataset_id": dataset_of[pk], "biosample_id": sample, "sampled_tissue": tissue}
            for (pk, sample), tissue in after.biosamples.items()
            if (pk, sample) not in before.biosamples
        ]
        self._insert_rows(connection, biosamples, samples)
        retissued = [
            {"b_pk": pk, "b_sample": sample, "sampled_tissue": tissue}
            for (pk, sample), tissue in after.biosamples.items()
            if (pk, sample) in before.biosamples and before.biosamples[pk, sample] != tissue
        ]
        if retissued:
            connection.execute(_RETISSUE_BIOSAMPLE, retissued)
        gone_samples = [key for key in before.biosamples if key not in after.biosamples]
        self._delete_rows(connection, biosamples, ("phenopacket_pk", "biosample_id"), gone_samples)

    def _delete_rows(
        self, connection: sa.Connection, table: sa.Table, names: tuple[str, ...], keys: list[tuple[Any, ...]]
    ) -> None:
        """Delete rows by key, set-based (a replaced batch may drop many)."""
        if not keys:
            return
        if not self._postgres:  # a row-value IN list per chunk
            for chunk in _chunks(keys, _ROW_CHUNK):
                connection.execute(_DELETE_BY_KEY[table.name], {"keys": chunk})
            return
        # PostgreSQL plans a long row-value IN list slowly: a join with arrays instead, as _insert_rows does.
        arrays = ", ".join(f"CAST(:{name} AS {_pg_array_type(table.c[name])})" for name in names)
        matches = " AND ".join(f"t.{name} = g.{name}" for name in names)
        statement = sa.text(
            f"DELETE FROM {table.name} t USING unnest({arrays}) AS g({', '.join(names)}) WHERE {matches}"
        )
        connection.execute(statement, {name: [key[i] for key in keys] for i, name in enumerate(names)})

    def get_phenopacket(self, phenopacket_id: str) -> StoredPhenopacket | None:
        found = self._select(sa.select(phenopackets).where(phenopackets.c.id == phenopacket_id))
        return found[0] if found else None

    def get_family(self, phenopacket_id: str) -> StoredFamily | None:
        """The Family around a phenopacket, its proband being that phenopacket as stored now."""
        query = (
            sa.select(
                phenopackets,
                phenopacket_families.c.document.label("family"),
                phenopacket_families.c.updated_at.label("family_updated_at"),
            )
            .join(phenopacket_families, phenopacket_families.c.phenopacket_pk == phenopackets.c.pk)
            .where(phenopackets.c.id == phenopacket_id)
        )
        with self.engine.connect() as connection:
            row = connection.execute(query).mappings().first()
        if row is None:
            return None
        family = dict(row["family"])
        document = {"id": family.pop("id"), "proband": row["document"], **family}
        return StoredFamily(
            id=document["id"],
            phenopacket_id=row["id"],
            dataset_id=row["dataset_id"],
            subject_id=row["subject_id"],
            document=document,
            updated_at=_aware(row["family_updated_at"]),
        )

    def with_family(self, phenopacket_ids: Sequence[str]) -> set[str]:
        """Those of these phenopackets that have a Family (one query per page of results)."""
        found: set[str] = set()
        with self.engine.connect() as connection:
            for chunk in _chunks(sorted(set(phenopacket_ids))):
                query = (
                    sa.select(phenopackets.c.id)
                    .join(phenopacket_families, phenopacket_families.c.phenopacket_pk == phenopackets.c.pk)
                    .where(phenopackets.c.id.in_(chunk))
                )
                found.update(connection.execute(query).scalars())
        return found

    def list_phenopackets(
        self, *, dataset_id: str | None = None, offset: int = 0, limit: int = 100
    ) -> tuple[list[StoredPhenopacket], int]:
        """One page in storage order (oldest first) and the total before paging."""
        if not isinstance(offset, int) or offset < 0:
            raise StoreError(f"offset must be a non-negative integer, got {offset!r}")
        if not isinstance(limit, int) or not 0 <= limit <= MAX_PAGE_SIZE:
            raise StoreError(f"limit must be an integer from 0 to {MAX_PAGE_SIZE}, got {limit!r}")
        where = [] if dataset_id is None else [phenopackets.c.dataset_id == dataset_id]
        with self.engine.connect() as connection:
            total = connection.execute(sa.select(sa.func.count()).select_from(phenopackets).where(*where)).scalar_one()
            page = self._select(
                sa.select(phenopackets).where(*where).order_by(phenopackets.c.pk).offset(offset).limit(limit),
                connection,
            )
        return page, total

    def find_by_subject(self, subject_id: str, dataset_id: str | None = None) -> list[StoredPhenopacket]:
        query = sa.select(phenopackets).where(phenopackets.c.subject_id == subject_id)
        if dataset_id is not None:
            query = query.where(phenopackets.c.dataset_id == dataset_id)
        return self._select(query.order_by(phenopackets.c.dataset_id))

    def delete_subject(self, subject_id: str, dataset_id: str | None = None) -> int:
        """Erase a subject's phenopackets (and by cascade their terms and biosamples) in
        one transaction; returns how many phenopackets were removed."""
        with self.transaction() as connection:
            return self.delete_subject_in(connection, subject_id, dataset_id)

    @staticmethod
    def delete_subject_in(connection: sa.Connection, subject_id: str, dataset_id: str | None = None) -> int:
        """The same inside a caller's `transaction()`, e.g. together with an audit record.

        The FHIR resources the phenopacket was made from go too: kept, they would make it again."""
        fhir_resources.erase_subject(connection, subject_id, dataset_id)
        return MetadataStore.delete_phenopackets_in(connection, subject_id, dataset_id)

    @staticmethod
    def erase_relative_in(
        connection: sa.Connection, person_id: str, dataset_id: str | None = None
    ) -> list[tuple[str, str]]:
        """Take a person out of every Family naming them as a relative; (dataset, proband subject) of each."""
        pks = families.erase_person(connection, person_id, dataset_id)
        found: list[tuple[str, str]] = []
        for chunk in _chunks(pks):
            query = sa.select(phenopackets.c.dataset_id, phenopackets.c.subject_id).where(phenopackets.c.pk.in_(chunk))
            found += [(dataset, subject) for dataset, subject in connection.execute(query)]
        return sorted(found)

    @staticmethod
    def delete_phenopackets_in(connection: sa.Connection, subject_id: str, dataset_id: str | None = None) -> int:
        """Only the subject's phenopackets (a Patient's resources changed who it is, or it was deleted)."""
        statement = sa.delete(phenopackets).where(phenopackets.c.subject_id == subject_id)
        if dataset_id is not None:
            statement = statement.where(phenopackets.c.dataset_id == dataset_id)
        return connection.execute(statement).rowcount

    # -- internals ------------------------------------------------------------------

    def _upsert_statement(self) -> sa.Insert:
        table = phenopackets.c
        statement = self._insert(phenopackets)
        replaced = (
            *("id", "sex", "age_iso", "age_days", "vital_status", "document", "source", "subject_label", "issues"),
            "updated_at",
        )
        return statement.on_conflict_do_update(
            index_elements=["dataset_id", "subject_id"],
            set_={**{name: statement.excluded[name] for name in replaced}, "revision": table.revision + 1},
        ).returning(table.pk, table.dataset_id, table.subject_id, table.revision)

    def _insert_rows(self, connection: sa.Connection, table: sa.Table, rows: list[dict[str, Any]]) -> None:
        if not rows:
            return
        if not self._postgres:
            connection.execute(_INSERT[table.name], rows)  # sqlite3's executemany: one C loop
            return
        # PostgreSQL: one statement over arrays instead of a round trip per row.
        names = list(rows[0])
        arrays = ", ".join(f"CAST(:{name} AS {_pg_array_type(table.c[name])})" for name in names)
        statement = sa.text(f"INSERT INTO {table.name} ({', '.join(names)}) SELECT * FROM unnest({arrays})")
        connection.execute(statement, {name: [row[name] for row in rows] for name in names})

    def _select(self, query: sa.Select, connection: sa.Connection | None = None) -> list[StoredPhenopacket]:
        if connection is None:
            with self.engine.connect() as own:
                return self._select(query, own)
        rows = connection.execute(query).mappings().all()
        terms: dict[int, dict[str, list[str]]] = {row["pk"]: {} for row in rows}
        for chunk in _chunks(list(terms)):
            found = connection.execute(
                sa.select(phenopacket_terms.c.phenopacket_pk, phenopacket_terms.c.kind, phenopacket_terms.c.term)
                .where(phenopacket_terms.c.phenopacket_pk.in_(chunk))
                .order_by(phenopacket_terms.c.phenopacket_pk, phenopacket_terms.c.kind, phenopacket_terms.c.term)
            )
            for pk, kind, term in found:
                terms[pk].setdefault(kind, []).append(term)
        return [_stored(row, terms[row["pk"]]) for row in rows]

    def _retry_deadlocks(self, work):
        for attempt in range(_DEADLOCK_RETRIES):
            try:
                return work()
            except (sa.exc.OperationalError, sa.exc.IntegrityError) as error:
                if not _is_transient(error) or attempt == _DEADLOCK_RETRIES - 1:
                    raise
                time.sleep(0.01 * (attempt + 1))
        raise AssertionError("unreachable")


_t, _b, _f = phenopacket_terms.c, biosamples.c, phenopacket_families.c


_INSERT = {table.name: sa.insert(table) for table in (phenopacket_terms, biosamples, phenopacket_families)}
_RELABEL_TERM = (
    sa.update(phenopacket_terms)
    .where(
        _t.phenopacket_pk == sa.bindparam("b_pk"), _t.kind == sa.bindparam("b_kind"), _t.term == sa.bindparam("b_term")
    )
    .values(label=sa.bindparam("label"))
)
_DELETE_BY_KEY = {
    phenopacket_terms.name: sa.delete(phenopacket_terms).where(
        sa.tuple_(_t.phenopacket_pk, _t.kind, _t.term).in_(sa.bindparam("keys", expanding=True))
    ),
    biosamples.name: sa.delete(biosamples).where(
        sa.tuple_(_b.phenopacket_pk, _b.biosample_id).in_(sa.bindparam("keys", expanding=True))
    ),
}
_RETISSUE_BIOSAMPLE = (
    sa.update(biosamples)
    .where(_b.phenopacket_pk == sa.bindparam("b_pk"), _b.biosample_id == sa.bindparam("b_sample"))
    .values(sampled_tissue=sa.bindparam("sampled_tissue"))
)
_DELETE_FAMILIES = sa.delete(phenopacket_families).where(_f.phenopacket_pk.in_(sa.bindparam("pks", expanding=True)))


def _results(
    records: list[PhenopacketRecord],
    latest: dict[tuple[str, str], PhenopacketRecord],
    stored: dict[tuple[str, str], bool],
) -> list[SaveResult]:
    """Results in input order; only a patient's first mention can report `created=True`."""
    results: list[SaveResult] = []
    reported: set[tuple[str, str]] = set()
    for record in records:
        key = (record.dataset_id, record.subject_id)
        created = stored[key] and key not in reported
        reported.add(key)
        results.append(SaveResult(id=latest[key].id, subject_id=record.subject_id, created=created))
    return results


def _is_transient(error: sa.exc.DBAPIError) -> bool:
    """A failure that the same transaction, run again, will not meet.

    Besides deadlocks: on PostgreSQL, `ON CONFLICT (dataset_id, subject_id)` arbitrates only
    that index. Two transactions inserting the same new patient at once can both pass it and
    then collide on the phenopacket id's unique index instead; run again, the row exists and the
    upsert takes its update path.
    """
    orig = error.orig
    sqlstate = getattr(orig, "sqlstate", None)
    if sqlstate in _RETRYABLE_SQLSTATES:
        return True
    diag = getattr(orig, "diag", None)
    return sqlstate == "23505" and getattr(diag, "constraint_name", None) == "uq_phenopackets_id"


def _check_record(position: int, record: Any) -> None:
    if not isinstance(record, PhenopacketRecord):
        raise StoreError(f"record {position}: expected PhenopacketRecord, got {type(record).__name__}")
    for name in ("id", "dataset_id", "subject_id"):
        _require_text(f"record {position}: {name}", getattr(record, name))
    if not isinstance(record.document, dict):
        raise StoreError(f"record {position}: document must be a JSON object")
    if record.family is not None:
        if not isinstance(record.family, dict):
            raise StoreError(f"record {position}: family must be a JSON object")
        _require_text(f"record {position}: family id", record.family.get("id"))


def _require_text(name: str, value: Any) -> None:
    if not isinstance(value, str) or not value or len(value) > 255:
        raise StoreError(f"{name} must be a non-empty string of at most 255 characters, got {value!r}")


def _phenopacket_row(record: PhenopacketRecord, indexed: dict[str, Any], now: datetime) -> dict[str, Any]:
    return {
        "id": record.id,
        "dataset_id": record.dataset_id,
        "subject_id": record.subject_id,
        "sex": indexed["sex"],
        "age_iso": indexed["age_iso"],
        "age_days": indexed["age_days"],
        "vital_status": indexed["vital_status"],
        "document": record.document,
        "source": record.source,
        "subject_label": record.subject_label,
        "issues": list(record.issues),
        "revision": 1,
        "created_at": now,
        "updated_at": now,
    }


def _families_kept(latest: dict[tuple[str, str], PhenopacketRecord]) -> frozenset[tuple[str, str]]:
    return frozenset(key for key, record in latest.items() if record.keep_family and record.family is None)


def _family_row(phenopacket_pk: int, dataset_id: str, family: dict[str, Any], now: datetime) -> dict[str, Any]:
    """The Family without its proband (the phenopacket row is the proband)."""
    document = {k: v for k, v in family.items() if k != "proband"}
    relatives = document.get("relatives")
    return {
        "phenopacket_pk": phenopacket_pk,
        "id": family["id"],
        "dataset_id": dataset_id,
        "relatives": len(relatives) if isinstance(relatives, list) else 0,
        "document": document,
        "updated_at": now,
    }


def _stored(row: Any, terms: dict[str, list[str]]) -> StoredPhenopacket:
    return StoredPhenopacket(
        id=row["id"],
        dataset_id=row["dataset_id"],
        subject_id=row["subject_id"],
        sex=row["sex"],
        phenotypes=tuple(terms.get(PHENOTYPE, ())),
        excluded_phenotypes=tuple(terms.get(EXCLUDED_PHENOTYPE, ())),
        diseases=tuple(terms.get(DISEASE, ())),
        document=row["document"],
        source=row["source"],
        issues=tuple(row["issues"] or ()),
        created_at=_aware(row["created_at"]),
        updated_at=_aware(row["updated_at"]),
        extra={
            "revision": row["revision"],
            "age_iso": row["age_iso"],
            "age_days": row["age_days"],
            "vital_status": row["vital_status"],
            "excluded_diseases": tuple(terms.get(EXCLUDED_DISEASE, ())),
            "terms": {kind: tuple(values) for kind, values in terms.items()},
        },
    )


def _pg_array_type(column: sa.Column) -> str:
    return "bigint[]" if isinstance(column.type, sa.BigInteger | sa.Integer) else "text[]"


def _chunks(values: list[Any], size: int = _IN_CHUNK) -> Iterator[list[Any]]:
    for start in range(0, len(values), size):
        yield values[start : start + size]


def _now() -> datetime:
    return datetime.now(UTC)


def _aware(value: datetime) -> datetime:
    # SQLite keeps no zone; everything is written in UTC.
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
