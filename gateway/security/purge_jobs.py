"""The second phase of an erasure: purging the old copies of the deleted rows, as a durable background job.

An erasure (gateway.security.erasure) takes the person out of every answer in its own transaction, and in that
transaction queues a row in `erasure_purges`. The bytes of the deleted rows stay where the database keeps old pages
until a purge (gateway.store.engine.purge_deleted): PostgreSQL's dead tuples and index entries until
`VACUUM (INDEX_CLEANUP ON)` — a scan of the personal tables' indexes, growing with the cohort — and SQLite's WAL
until a TRUNCATE checkpoint, which waits for readers of older snapshots. Neither belongs in the request.

`run_due` claims every due job (a lease in `not_before`, so two workers do not purge for the same job at once),
runs one purge for all of them (it is idempotent and covers every erasure committed before it), and marks them
done; a failure leaves them pending with the error and a back-off, and after `max_attempts` failed attempts marks
them failed: no worker retries them any more, the operator sees them (`gateway erasure status`, `GET
/admin/erasure/purges?status=failed`) and `gateway erasure purge` tries them again once the cause is fixed.

A `PurgeWorker` thread runs it in the server: at start-up (jobs a restart left behind), after each erasure the
process serves, and on jobs queued by other processes (other gateway workers or hosts, a `gateway erase` whose
own purge failed): on PostgreSQL the queuing transaction sends a NOTIFY that a listener thread receives, and every
store is polled for due jobs (a read of one index) every few seconds. Each job's outcome is audited under the
erasure's keyed reference (docs/ERASURE.md).
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

PENDING, DONE, FAILED = "pending", "done", "failed"
STATUSES = (PENDING, DONE, FAILED)
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
    "fhir_deleted",  # tombstones of REST deletes (a resource id and the person's pseudonym)
)
LEASE = timedelta(minutes=15)  # a claimed job whose worker died is claimed again after this (a VACUUM takes seconds)
FIRST_RETRY_S, LAST_RETRY_S = 30.0, 3600.0  # back-off after a failed attempt: doubling, capped
MAX_ATTEMPTS = 8  # then the job is failed (≈ 1 h 4 min of back-off after the first attempt): the operator's turn
POLL_S = 5.0  # how often a worker looks for due jobs queued by other processes (a NOTIFY is sooner on PostgreSQL)
CHANNEL = "gateway_erasure_purges"  # the PostgreSQL NOTIFY channel of newly queued jobs
_ERROR_CHARS = 500


def _now() -> datetime:
    return datetime.now(UTC)


def enqueue_in(connection: sa.Connection, action: str, reference: str) -> int:
    """Queue the purge for an erasure, inside the erasure's transaction (both commit, or neither); its job id."""
    now = _now()
    row = {"action": action, "reference": reference, "status": PENDING, "attempts": 0, "last_error": ""}
    job = int(
        connection.execute(
            sa.insert(erasure_purges).values(**row, created_at=now, updated_at=now).returning(erasure_purges.c.id)
        ).scalar_one()
    )
    if connection.dialect.name == "postgresql":  # delivered at commit, to every listening worker (PurgeListener)
        connection.execute(sa.text("SELECT pg_notify(:channel, '')"), {"channel": CHANNEL})
    return job


@dataclass(frozen=True)
class PurgeRun:
    done: tuple[int, ...] = ()
    failed: tuple[int, ...] = ()
    error: str = ""
    next_in: float | None = None  # seconds until the next pending job is due (None: nothing pending)


def _backoff(attempts: int) -> timedelta:
    return timedelta(seconds=min(LAST_RETRY_S, FIRST_RETRY_S * 2 ** max(attempts - 1, 0)))


def _claim(store: MetadataStore, force: bool) -> list[Any]:
    """Take the due jobs (with `force`, all pending and failed ones: the operator asked): their lease runs from now;
    the attempt is counted here, so a worker that dies mid-purge still counts it."""
    now = _now()
    due: sa.ColumnElement[bool]
    if force:
        due = erasure_purges.c.status.in_((PENDING, FAILED))
    else:
        due = (erasure_purges.c.status == PENDING) & (
            erasure_purges.c.not_before.is_(None) | (erasure_purges.c.not_before <= now)
        )
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
    max_attempts: int = MAX_ATTEMPTS,
    **who: Any,
) -> PurgeRun:
    """Purge for every due job (with `force`, every pending or failed one: the operator asked now) and record the
    outcome; a job whose attempt `max_attempts` (or later) failed is marked failed instead of retried."""
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
                gave_up = job.attempts >= max_attempts
                connection.execute(
                    sa.update(erasure_purges)
                    .where(erasure_purges.c.id == job.id)
                    .values(
                        status=FAILED if gave_up else PENDING,
                        not_before=None if gave_up else now + _backoff(job.attempts),
                        updated_at=now,
                        last_error=error,
                    )
                )
    for job in jobs:
        if not error:
            outcome = "old copies of the deleted rows purged"
        elif job.attempts >= max_attempts:
            outcome = f"purge attempt {job.attempts} failed; no more retries (`gateway erasure purge` tries again)"
        else:
            outcome = f"purge attempt {job.attempts} failed"
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


def pending_count(store: MetadataStore, status: str = PENDING) -> int:
    """How many jobs have this status (pending by default; failed: those the operator must look at)."""
    with store.engine.connect() as connection:
        query = sa.select(sa.func.count()).where(erasure_purges.c.status == status)
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
    """A daemon thread of the server process that runs `run_due` at start-up (jobs left by a restart), whenever it
    is woken (an erasure in this process, a NOTIFY from another: PurgeListener), and when a poll every `poll_s`
    finds a job due (queued by another process, a retry after its back-off, another worker's expired lease)."""

    def __init__(
        self,
        run: Callable[[], PurgeRun],
        *,
        due_in: Callable[[], float | None] | None = None,
        poll_s: float = POLL_S,
    ):
        self._run = run
        self._due_in = due_in
        self._poll_s = poll_s
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.listener: PurgeListener | None = None  # started and stopped with the worker

    def start(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._loop, name="erasure-purge", daemon=True)
            self._thread.start()
            if self.listener is not None:
                self.listener.start()

    def wake(self) -> None:
        self._wake.set()

    def stop(self, timeout: float = 10.0) -> None:
        if self.listener is not None:
            self.listener.stop(timeout)
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout)

    def _loop(self) -> None:
        while not self._stop.is_set():
            self._wake.clear()
            try:
                self._run()
            except Exception:  # the database is unreachable: the next poll tries again, the jobs are durable
                log.exception("erasure purge worker: run failed")
            self._sleep_until_due()

    def _sleep_until_due(self) -> None:
        """Until woken, stopped, or a poll finds a job due (a read: no write lock taken while nothing is due)."""
        while not self._wake.wait(self._poll_s):
            if self._due_in is None:
                return
            try:
                due = self._due_in()
            except Exception:
                log.exception("erasure purge worker: poll failed")
                continue
            if due is not None and due <= 0:
                return


class PurgeListener:
    """On PostgreSQL, a thread holding one connection that LISTENs on CHANNEL and wakes the worker when another
    process queues a job (enqueue_in's NOTIFY, delivered at its commit). A lost connection is opened again, and the
    worker woken then (a job may have been queued meanwhile); the worker's poll covers the gap."""

    def __init__(self, conninfo: str, wake: Callable[[], None], *, check_s: float = 0.5):
        self._conninfo = conninfo
        self._wake = wake
        self._check_s = check_s  # how long one wait for notifications lasts before the stop flag is looked at
        self._stop = threading.Event()
        self.listening = threading.Event()  # set once LISTEN is in place (tests wait for it)
        self._thread: threading.Thread | None = None

    @classmethod
    def for_store(cls, store: MetadataStore, wake: Callable[[], None]) -> PurgeListener | None:
        """A listener for a PostgreSQL store (None for SQLite: the poll alone serves it)."""
        url = store.engine.url
        if url.get_backend_name() != "postgresql":
            return None
        return cls(url.set(drivername="postgresql").render_as_string(hide_password=False), wake)

    def start(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._loop, name="erasure-purge-listen", daemon=True)
            self._thread.start()

    def stop(self, timeout: float = 10.0) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)

    def _loop(self) -> None:
        import psycopg

        while not self._stop.is_set():
            try:
                with psycopg.connect(self._conninfo, autocommit=True) as connection:
                    connection.execute(f"LISTEN {CHANNEL}")
                    self.listening.set()
                    self._wake()  # anything queued before LISTEN took effect
                    while not self._stop.is_set():
                        for _ in connection.notifies(timeout=self._check_s):
                            self._wake()
            except Exception:  # the database went away: listen again after a pause
                log.exception("erasure purge listener: connection lost")
                self.listening.clear()
                self._stop.wait(FIRST_RETRY_S)
