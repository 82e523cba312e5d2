"""The metadata store's hot reads for the Beacon side: the change counter and pages of phenopackets by key.

Why a module of its own: an individuals query answered by the in-memory term index (gateway.beacon.term_index)
needs from the database only "has anything changed?" and, at record granularity, the documents of one page.
Through the connection pool each costs three round trips on PostgreSQL (liveness ping, statement, rollback on
return). Here each thread keeps one connection of its own in autocommit, outside the pool, so a read is one round
trip; and a page is read together with the change counter in one statement, so that a record answer costs one
round trip in all and is known to come from the snapshot the index holds.

The change counter is the sum of the `store_version` slots (migrations 0002 and 0006): every committed write to
`phenopackets` or `phenopacket_terms` raises it, in the same transaction, whichever process wrote. SQLite has no
counter (its readers use `PRAGMA data_version`); there pages are read through the engine.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import psycopg
import sqlalchemy as sa

from gateway.store.tables import phenopackets

log = logging.getLogger(__name__)

CHANGE_COUNTER = "SELECT coalesce(sum(version), 0) FROM store_version"

# One statement, one snapshot: the counter and the page agree. LEFT JOIN: the counter comes back with no page.
_PAGE_WITH_COUNTER = (
    "SELECT c.version, p.pk, p.subject_id, p.document"
    " FROM (SELECT coalesce(sum(version), 0) AS version FROM store_version) c"
    " LEFT JOIN phenopackets p ON p.pk = ANY(%s)"
    " ORDER BY p.pk"
)


# The same, with whether any of the pks changed after a reader's MVCC snapshot (the change log, migration 0008:
# rows of transactions that snapshot did not see), valid only while no prune has committed since it.
_PAGE_WITH_COUNTER_SINCE = (
    "SELECT c.version, c.unchanged, p.pk, p.subject_id, p.document"
    " FROM (SELECT (SELECT coalesce(sum(version), 0) FROM store_version) AS version,"
    " (SELECT prunes FROM phenopacket_changes_horizon WHERE id = 1) = %(prunes)s AND NOT EXISTS ("
    "SELECT 1 FROM phenopacket_changes"
    " WHERE xid >= CAST(CAST(pg_snapshot_xmin(CAST(%(snapshot)s AS pg_snapshot)) AS text) AS bigint)"
    " AND phenopacket_pk = ANY(%(pks)s)"
    " AND NOT pg_visible_in_snapshot(CAST(CAST(xid AS text) AS xid8), CAST(%(snapshot)s AS pg_snapshot))"
    ") AS unchanged) c"
    " LEFT JOIN phenopackets p ON p.pk = ANY(%(pks)s)"
    " ORDER BY p.pk"
)


def change_counter(connection: sa.Connection) -> int | None:
    """PostgreSQL's change counter inside the caller's transaction, or None where there is none (SQLite)."""
    if connection.dialect.name != "postgresql":
        return None
    return int(connection.execute(sa.text(CHANGE_COUNTER)).scalar_one())


@dataclass(frozen=True)
class Page:
    """A page read with the change counter: `rows` (pk -> (subject_id, document)) of the pks `asked` are the store
    at `counter`, whether or not that is the version its reader expected (`current`). Why keep a stale page: a
    snapshot patched to exactly `counter` may answer from these rows without reading them again."""

    counter: int
    current: bool
    asked: frozenset[int]
    rows: dict[int, tuple[str, Any]]

    @classmethod
    def of(cls, pks: Sequence[int], rows: list[tuple], expected: int, unchanged: bool) -> Page:
        counter = int(rows[0][0])
        found = {pk: (subject, document) for _, pk, subject, document in rows if pk is not None}
        return cls(counter, counter == expected or unchanged, frozenset(pks), found)

    def serves(self, version: int, pks: Sequence[int]) -> bool:
        """Whether these rows are the page `pks` of the store at `version`."""
        return self.counter == version and self.asked.issuperset(pks)


class PostgresReads:
    """One autocommit connection per thread, out of the engine's pool, for the hot reads."""

    def __init__(self, engine: sa.Engine):
        self.engine = engine
        self._local = threading.local()
        self._lock = threading.Lock()
        self._opened: list[Any] = []

    def change_counter(self) -> int:
        return int(self._run(CHANGE_COUNTER, ())[0][0])

    def one_statement(self, statement: str, parameters: dict) -> list[tuple]:
        """The rows of one read-only statement, in one round trip: one MVCC snapshot for all it reads."""
        return self._run(statement, parameters)

    def page(self, pks: Sequence[int], expected: int, since: tuple[str, int] | None = None) -> Page:
        """The rows of `pks`, current if the counter is still `expected` — or if `since` (a term-index snapshot's
        change-log mark: its MVCC snapshot as text and the prunes it saw) is given and none of `pks` changed after
        it: the page is then the store's as at that snapshot."""
        if since is None:
            rows = self._run(_PAGE_WITH_COUNTER, (list(pks),))
            return Page.of(pks, rows, expected, unchanged=False)
        snapshot, prunes = since
        rows = self._run(_PAGE_WITH_COUNTER_SINCE, {"pks": list(pks), "snapshot": snapshot, "prunes": prunes})
        return Page.of(pks, [(r[0], *r[2:]) for r in rows], expected, unchanged=bool(rows[0][1]))

    def _connection(self) -> Any:
        connection = getattr(self._local, "connection", None)
        if connection is None or connection.closed:
            pooled = self.engine.raw_connection()
            connection = pooled.driver_connection
            assert connection is not None  # a checked-out connection has its driver's
            pooled.detach()  # this thread keeps it; the pool opens another for its own users
            connection.rollback()  # the pool's liveness ping may have opened a transaction
            connection.autocommit = True
            self._local.connection = connection
            with self._lock:
                self._opened.append(connection)
        return connection

    def _run(self, statement: str, parameters: tuple | dict) -> list[tuple]:
        # A read only: after a lost connection (server restart, network, an idle timeout) it is safely run
        # again on a new one, as the pool's liveness ping would have done before handing the connection out.
        for attempt in range(2):
            connection = self._connection()
            try:
                return connection.execute(statement, parameters).fetchall()
            except Exception as error:
                lost = isinstance(error, psycopg.OperationalError | psycopg.InterfaceError)
                self._local.connection = None
                _close(connection)
                if not lost or attempt == 1:
                    raise sa.exc.OperationalError(statement, parameters, error) from error
        raise AssertionError("unreachable")

    def close(self) -> None:
        with self._lock:
            opened, self._opened = self._opened, []
        for connection in opened:
            _close(connection)
        self._local = threading.local()


def _close(connection: Any) -> None:
    try:
        connection.close()
    except Exception:
        log.debug("store reads: closing a connection failed", exc_info=True)


def page_by_pks(engine: sa.Engine, pks: Sequence[int]) -> list[tuple[int, str, Any]]:
    """(pk, subject_id, document) of `pks` in pk order, through the engine's pool (SQLite: no round trips)."""
    if not pks:
        return []
    p = phenopackets.c
    query = sa.select(p.pk, p.subject_id, p.document).where(p.pk.in_(list(pks))).order_by(p.pk)
    with engine.connect() as connection:
        return [(row.pk, row.subject_id, row.document) for row in connection.execute(query)]
