"""One storage test suite, two backends: SQLite (a temporary file) and PostgreSQL.

PostgreSQL runs when GATEWAY_TEST_DATABASE_URL is set (CI sets it); each test gets its
own schema, selected through the connection's search_path and dropped afterwards, so
other test sessions can share the database.
"""

from __future__ import annotations

import pytest

from gateway.store import MetadataStore
from tests.conftest import place_migrated
from tests.pg_schema import empty_database


@pytest.fixture(params=["sqlite", "postgresql"])
def store_url(request, tmp_path):
    """The URL of an empty database on each backend (nothing migrated yet)."""
    with empty_database(request, tmp_path, "gw_store_test", "store.sqlite") as url:
        yield url


@pytest.fixture
def store(store_url, request):
    """A migrated store with one dataset, `ds1`, declared (on SQLite, from a copy of a file migrated once)."""
    if store_url.startswith("sqlite"):
        place_migrated(request.getfixturevalue("migrated_sqlite"), store_url)
    opened = MetadataStore.open(store_url)
    opened.ensure_dataset("ds1", name="Dataset one")
    yield opened
    opened.close()
