"""Engines for the metadata store: SQLite with zero set-up, PostgreSQL for production."""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import orjson
import sqlalchemy as sa
from sqlalchemy import event
from sqlalchemy.engine import URL, Engine, make_url
from sqlalchemy.pool import StaticPool

log = logging.getLogger(__name__)

# Seconds a writer waits for another writer's lock before SQLite gives up.
SQLITE_BUSY_TIMEOUT_S = 60.0
# Execution option: begin this connection's transactions as a writer (SQLite BEGIN IMMEDIATE).
WRITE = "gateway_write"


# Subclasses, dataclasses and datetimes are handed back to `json` (which refuses them, as before).
_ORJSON_OPTIONS = (
    orjson.OPT_NON_STR_KEYS
    | orjson.OPT_PASSTHROUGH_SUBCLASS
    | orjson.OPT_PASSTHROUGH_DATACLASS
    | orjson.OPT_PASSTHROUGH_DATETIME
)


def _json_dumps(value: Any) -> str:
    """Compact JSON, no NaN/Infinity. orjson (several times faster: every FHIR write stores its patient's
    whole phenopacket) writes NaN as null, so a text with a null, or a value orjson rejects, is made by
    `json.dumps(allow_nan=False)` instead: what `json` refuses is still refused."""
    try:
        text = orjson.dumps(value, option=_ORJSON_OPTIONS)
    except (orjson.JSONEncodeError, TypeError):
        text = None
    if text is None or b"null" in text:
        return json.dumps(value, ensure_ascii=False, separators=(",", ":"), allow_nan=False)
    return text.decode()


def create_store_engine(url: str | URL) -> Engine:
    url = make_url(url)
    if url.get_backend_name() == "sqlite":
        return _sqlite_engine(url)
    if url.get_backend_name() == "postgresql":
        return sa.create_engine(
            url, json_serializer=_json_dumps, pool_pre_ping=True, pool_size=5, max_overflow=10, future=True
        )
    raise ValueError(f"unsupported database URL scheme {url.drivername!r}: use sqlite:/// or postgresql+psycopg://")


def _sqlite_engine(url: URL) -> Engine:
    in_memory = url.database in (None, "", ":memory:")
    if in_memory:
        # One shared connection, or every checkout would see a fresh empty database.
        engine = sa.create_engine(
            url,
            json_serializer=_json_dumps,
            poolclass=StaticPool,
            connect_args={"check_same_thread": False},
        )
    else:
        Path(url.database or "").expanduser().resolve().parent.mkdir(parents=True, exist_ok=True)
        engine = sa.create_engine(
            url,
            json_serializer=_json_dumps,
            connect_args={"timeout": SQLITE_BUSY_TIMEOUT_S, "check_same_thread": False},
        )

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        # Let SQLAlchemy, not the sqlite3 module, decide where transactions begin
        # (the module's implicit BEGIN would defer and then fail to upgrade a read lock).
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute(f"PRAGMA busy_timeout = {int(SQLITE_BUSY_TIMEOUT_S * 1000)}")
        cursor.execute("PRAGMA foreign_keys = ON")
        # Deleted rows (an erased subject, a replaced document) are zeroed, not just unlinked from the b-tree:
        # their bytes would stay in free pages and cells. ON, not FAST (FAST leaves freed pages as they were), and
        # set here because the compile-time default differs between builds. Cost: bench/erasure_bytes.py.
        cursor.execute("PRAGMA secure_delete = ON")
        if not in_memory:
            # WAL: readers never block the writer. NORMAL sync keeps the database consistent
            # after any crash; a power cut may lose only the last commits.
            cursor.execute("PRAGMA journal_mode = WAL")
            cursor.execute("PRAGMA synchronous = NORMAL")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(connection: sa.Connection) -> None:
        # A writer takes the write lock up front, so concurrent writers queue on the busy
        # timeout instead of failing with SQLITE_BUSY when upgrading a read lock.
        write = connection.get_execution_options().get(WRITE, False)
        connection.exec_driver_sql("BEGIN IMMEDIATE" if write else "BEGIN")

    return engine


def purge_deleted(engine: Engine, tables: Sequence[str]) -> bool:
    """After an erasure has committed: leave no copy of the deleted rows where the database keeps old pages.

    SQLite: the WAL still holds the frames written before the deletion (the rows as they were); a TRUNCATE
    checkpoint copies the zeroed pages into the database file and empties the WAL (it waits, on the busy timeout,
    for readers of older snapshots). PostgreSQL: a deleted tuple stays in its page until VACUUM prunes it; VACUUM
    (outside any transaction) makes its space free, but neither zeroes those bytes nor touches the WAL segments
    and backups already written (docs/ERASURE.md). False when this could not be done completely (logged)."""
    if engine.dialect.name == "sqlite":
        if engine.url.database in (None, "", ":memory:"):
            return True
        with engine.connect() as connection:
            busy, _, _ = connection.exec_driver_sql("PRAGMA wal_checkpoint(TRUNCATE)").one()
            connection.commit()
        if busy:
            log.warning("after an erasure the SQLite WAL could not be truncated (a reader held an older snapshot)")
        return not busy
    if engine.dialect.name == "postgresql":
        with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as connection:
            for table in tables:
                # INDEX_CLEANUP ON: with few dead tuples (one person in a large table) VACUUM would otherwise skip the
                # indexes, and their entries (the subject's pseudonym as a key) would stay until a later VACUUM.
                connection.exec_driver_sql(f'VACUUM (INDEX_CLEANUP ON) "{table}"')
        return True
    return False
