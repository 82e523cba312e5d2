"""One storage test suite, two backends: SQLite (a temporary file) and PostgreSQL.

PostgreSQL runs when GATEWAY_TEST_DATABASE_URL is set (CI sets it); each test gets its
own schema, selected through the connection's search_path and dropped afterwards, so
other test sessions can share the database.
"""

from __future__ import annotations

import uuid

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import make_url

from gateway.store import MetadataStore


@pytest.fixture(params=["sqlite", "postgresql"])
def store_url(request, tmp_path):
    """The URL of an empty database on each backend (nothing migrated yet)."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'store.sqlite'}"
        return
    base = make_url(request.getfixturevalue("postgres_url"))
    schema = f"gw_store_test_{uuid.uuid4().hex[:12]}"
    admin = sa.create_engine(base, poolclass=sa.pool.NullPool)
    with admin.begin() as connection:
        connection.exec_driver_sql(f'CREATE SCHEMA "{schema}"')
    try:
        yield base.update_query_dict({"options": f"-csearch_path={schema}"}).render_as_string(hide_password=False)
    finally:
        with admin.begin() as connection:
            connection.exec_driver_sql(f'DROP SCHEMA "{schema}" CASCADE')
        admin.dispose()


@pytest.fixture
def store(store_url):
    """A migrated store with one dataset, `ds1`, declared."""
    opened = MetadataStore.open(store_url)
    opened.ensure_dataset("ds1", name="Dataset one")
    yield opened
    opened.close()
