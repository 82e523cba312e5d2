"""A PostgreSQL schema of its own for one test: created empty, dropped with everything in it afterwards."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import sqlalchemy as sa
from sqlalchemy.engine import make_url


@contextmanager
def fresh_schema(postgres_url: str, prefix: str) -> Iterator[str]:
    """Yield a database URL whose search_path is a new, empty schema named `<prefix>_<random>`."""
    base = make_url(postgres_url)
    schema = f"{prefix}_{uuid.uuid4().hex[:12]}"
    admin = sa.create_engine(base, poolclass=sa.pool.NullPool)
    with admin.begin() as connection:
        connection.exec_driver_sql(f'CREATE SCHEMA "{schema}"')
    try:
        yield base.update_query_dict({"options": f"-csearch_path={schema}"}).render_as_string(hide_password=False)
    finally:
        with admin.begin() as connection:
            connection.exec_driver_sql(f'DROP SCHEMA "{schema}" CASCADE')
        admin.dispose()


@contextmanager
def empty_database(request, tmp_path: Path, prefix: str, sqlite_name: str) -> Iterator[str]:
    """For a fixture parametrised by backend: the URL of an empty database on `request.param` ("sqlite": a file in
    tmp_path; "postgresql": a fresh schema; the `postgres_url` fixture is asked for only then)."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / sqlite_name}"
        return
    with fresh_schema(request.getfixturevalue("postgres_url"), prefix) as url:
        yield url
