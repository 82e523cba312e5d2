"""Applying the Alembic migrations in code: no alembic.ini for users to keep.

`upgrade(engine)` is safe when several processes start at once: on PostgreSQL the
migration runs in one transaction holding an advisory lock (per schema); on SQLite in
one BEGIN IMMEDIATE transaction, so a second process waits and then finds the schema
already at head. DDL is transactional on both, so a failed migration leaves nothing.
"""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Connection, Engine, text

from gateway.errors import GatewayError
from gateway.store.engine import WRITE

MIGRATIONS_DIR = Path(__file__).resolve().parent / "migrations"


class MigrationError(GatewayError, RuntimeError):
    """The metadata store's schema cannot be brought to this version."""


def alembic_config(connection=None) -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR).replace("%", "%%"))
    config.attributes["connection"] = connection
    return config


def head_revision() -> str | None:
    return ScriptDirectory.from_config(alembic_config()).get_current_head()


def current_revision(engine: Engine) -> str | None:
    with engine.connect() as connection:
        return MigrationContext.configure(connection).get_current_revision()


def upgrade(engine: Engine, revision: str = "head") -> None:
    sqlite = engine.dialect.name == "sqlite"
    with engine.connect() as connection:
        if sqlite:
            # SQLite's documented procedure for schema changes: foreign keys off (only
            # possible outside a transaction) so that table rebuilds don't cascade,
            # then a foreign_key_check before commit.
            _raw_pragma(connection, "foreign_keys = OFF")
        try:
            connection.execution_options(**{WRITE: True})
            with connection.begin():
                if engine.dialect.name == "postgresql":
                    connection.execute(
                        text("SELECT pg_advisory_xact_lock(hashtext(current_schema() || :purpose))"),
                        {"purpose": "/gateway-migrations"},
                    )
                command.upgrade(alembic_config(connection), revision)
                if sqlite:
                    broken = connection.exec_driver_sql("PRAGMA foreign_key_check").fetchall()
                    if broken:
                        raise MigrationError(f"migration left {len(broken)} rows with dangling foreign keys")
        finally:
            if sqlite:
                _raw_pragma(connection, "foreign_keys = ON")


def _raw_pragma(connection: Connection, pragma: str) -> None:
    # On the driver connection: SQLAlchemy would first open a transaction, where this
    # PRAGMA is silently ignored.
    driver = connection.connection.driver_connection
    assert driver is not None  # an open connection has its driver's
    driver.execute(f"PRAGMA {pragma}")


def downgrade(engine: Engine, revision: str) -> None:
    """For tests and operators undoing a release; not used by the node itself."""
    with engine.connect() as connection:
        connection.execution_options(**{WRITE: True})
        with connection.begin():
            command.downgrade(alembic_config(connection), revision)
