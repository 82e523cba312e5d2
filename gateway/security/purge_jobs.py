"""The second phase of an erasure: purging the old copies of the deleted rows, as a durable background job.

An erasure (gateway.security.erasure) takes the person out of every answer in its own transaction, and in that
transaction queues a row in `erasure_purges`. The bytes of the deleted rows stay where the database keeps old pages
until a purge (gateway.store.engine.purge_deleted): PostgreSQL's dead tuples and index entries until
`VACUUM (INDEX_CLEANUP ON)` — a scan of the personal tables' indexes, growing with the cohort — and SQLite's WAL
until a TRUNCATE checkpoint, which waits for readers of older snapshots. Neither belongs in the request.

`run_due` claims every due job (a lease in `not_before`, so two workers do not purge for the same job at once),
runs one purge for all of them (it is idempotent and covers every erasure committed before it), and marks them
done; a failure leaves them pending with the error and a back-off. A `PurgeWorker` thread runs it in the server
after each erasure and at start-up (jobs a restart left behind); `gateway erasure purge` runs it from the command
line. Each job's outcome is audited under the erasure's keyed reference (docs/ERASURE.md).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa

from gateway.store.engine import purge_deleted
from gateway.store.tables import erasure_purges

if TYPE_CHECKING:
    from gateway.security.audit import AuditLog
    from gateway.store.metadata import MetadataStore
    from gateway.variants.protocol import VariantStore

log = logging.getLogger(__name__)

PENDING, DONE = "pending", "done"
PURGE_ACTION = "erase-purge"  # the audit records of the second phase (the first is erase-subject / erase-dataset)
# The metadata tables an erasure deletes from (cascades included): the tables a purge vacuums on PostgreSQL.
PERSONAL_TABLES = (
    "phenopackets",
    "phenopacket_terms",
    "biosamples",
    "phenopacket_families",
    "fhir_resources",
    "fhir_resource_references",  # a resource's references by key (ids and fullUrls a hospital sent)
    "fhir_identifiers",  # a resource's identifiers (a Patient's as pseudonyms, others as sent)
)
LEASE = timedelta(minutes=15)  # a claimed job whose worker died is claimed again after this (a VACUUM takes seconds)
FIRST_RETRY_S, LAST_RETRY_S = 30.0, 3600.0  # back-off after a failed attempt: doubling, capped
_ERROR_CHARS = 500


def _now() -> datetime:
    return datetime.now(UTC)


def enqueue_in(connection: sa.Connection, action: str, reference: str) -> int:
    """Queue the purge for an erasure, inside the erasure's transaction (both commit, or neither); its job id."""
    now = _now()
    row = {"action": action, "reference": reference, "status": PENDING, "attempts": 0, "last_error": ""}
    return int(
        connection.execute(
            sa.insert(erasure_purges).values(**row, created_at=now, updated_at=now).returning(erasure_purges.c.id)
        ).scalar_one()
    )


@dataclass(frozen=True)
class PurgeRun:
    done: tuple[int, ...] = ()
    failed: tuple[int, ...] = ()
    error: str = ""
    next_in: float | None = None  # seconds until the next pending job is due (None: nothing pending)


def _backoff(attempts: int) -> timedelta:
    return timedelta(seconds=min(LAST_RETRY_S, FIRST_RETRY_S * 2 ** max(attempts - 1, 0)))


def _claim(store: MetadataStore, force: bool) -> list[Any]:
    """Take the due jobs (all pending ones with `force`): their lease runs from now; the attempt is counted here,
    so a worker that dies mid-purge still counts it."""
    now = _now()
    due = erasure_purges.c.status == PENDING
    if not force:
        due = due & (erasure_purges.c.not_before.is_(None) | (erasure_purges.c.not_before <= now))
    claim = (
        sa.update(erasure_purges)
        .where(due)
        .values(not_before=now + LEASE, attempts=erasure_purges.c.attempts + 1, updated_at=now)
        .returning(erasure_purges.c.id, erasure_purges.c.action, erasure_purges.c.reference, erasure_purges.c.attempts)
    )
    with store.transaction() as connection:
        return sorted(connection.execute(claim).all())


def _purge(store: MetadataStore, variants: VariantStore | None) -> str:
    """'' when the old copies are gone; else why not (for the job row and the audit log: no data in it). The
    variant store's pending erasures first: its units still hold the genotypes of the people erased."""
    try:
        if variants is not None:
            variants.purge_erased()
        if purge_deleted(store.engine, PERSONAL_TABLES):
            return ""
        return "a reader held an older snapshot of the database"
    except Exception as exc:  # retried later: the job stays pending with the error
        log.exception("purging the old copies of erased rows failed")
        return f"{type(exc).__name__}: {exc}"[:_ERROR_CHARS]


def run_due(
    store: MetadataStore,
    variants: VariantStore | None = None,
    *,
    audit: AuditLog | None = None,
    force: bool = False,
    **who: Any,
) -> PurgeRun:
    """Purge for every due job (with `force`, every pending one: the operator asked now) and record the outcome."""
    jobs = _claim(store, force)
    if not jobs:
        return PurgeRun(next_in=next_due_in(store))
    error = _purge(store, variants)
    now = _now()
    ids = [job.id for job in jobs]
    with store.transaction() as connection:
        if not error:
            connection.execute(
                sa.update(erasure_purges)
                .where(erasure_purges.c.id.in_(ids))
                .values(status=DONE, done_at=now, updated_at=now, not_before=None, last_error="")
            )
        else:
            for job in jobs:
                connection.execute(
                    sa.update(erasure_purges)
                    .where(erasure_purges.c.id == job.id)
                    .values(not_before=now + _backoff(job.attempts), updated_at=now, last_error=error)
                )
    for job in jobs:
        outcome = "old copies of the deleted rows purged" if not error else f"purge attempt {job.attempts} failed"
        _audit(audit, who, reason=f"{job.action} {job.reference}: {outcome} (purge job {job.id})")
    done, failed = (tuple(ids), ()) if not error else ((), tuple(ids))
    return PurgeRun(done, failed, error, next_due_in(store))


def _audit(audit: AuditLog | None, who: dict[str, Any], **fields: Any) -> None:
    if audit is None:
        return
    try:
        audit.append(phase="outcome", decision="allowed", action=PURGE_ACTION, **fields, **who)
    except OSError:  # the purge happened (or not) either way; the job row says which
        log.exception("audit record of an erasure purge not written")


def next_due_in(store: MetadataStore) -> float | None:
    """Seconds until the earliest pending job is due (0: now); None when nothing is pending."""
    with store.engine.connect() as connection:
        row = connection.execute(
            sa.select(
                sa.func.count(), sa.func.count(erasure_purges.c.not_before), sa.func.min(erasure_purges.c.not_before)
            ).where(erasure_purges.c.status == PENDING)
        ).one()
    pending, leased, earliest = row
    if not pending:
        return None
    if pending > leased or earliest is None:
        return 0.0
    if earliest.tzinfo is None:  # SQLite keeps the UTC time without its zone
        earliest = earliest.replace(tzinfo=UTC)
    return max(0.0, (earliest - _now()).total_seconds())


def pending_count(store: MetadataStore) -> int:
    with store.engine.connect() as connection:
        query = sa.select(sa.func.count()).where(erasure_purges.c.status == PENDING)
        return int(connection.execute(query).scalar_one())


def jobs(store: MetadataStore, *, status: str | None = None, limit: int = 100) -> list[dict[str, Any]]:
    """The newest jobs first (all, or of one status), for the operator."""
    query = sa.select(erasure_purges).order_by(erasure_purges.c.id.desc()).limit(limit)
    if status is not None:
        query = query.where(erasure_purges.c.status == status)
    with store.engine.connect() as connection:
        rows = connection.execute(query).mappings().all()
    return [{k: (v.isoformat() if isinstance(v, datetime) else v) for k, v in row.items()} for row in rows]


class PurgeWorker:
    """A daemon thread of the server process that runs `run_due` at start-up (jobs left by a restart), whenever an
    erasure wakes it, and when the next pending job is due (a retry, or another worker's expired lease)."""

    def __init__(self, run: Callable[[], PurgeRun], *, min_wait_s: float = 1.0):
        self._run = run
        self._min_wait_s = min_wait_s
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._loop, name="erasure-purge", daemon=True)
            self._thread.start()

    def wake(self) -> None:
        self._wake.set()

    def stop(self, timeout: float = 10.0) -> None:
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout)

    def _loop(self) -> None:
        while not self._stop.is_set():
            self._wake.clear()
            wait: float | None = None
            try:
                wait = self._run().next_in
            except Exception:  # the database is unreachable: try again later, the jobs are durable
                log.exception("erasure purge worker: run failed")
                wait = FIRST_RETRY_S
            self._wake.wait(None if wait is None else max(wait, self._min_wait_s))
