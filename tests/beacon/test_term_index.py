"""The in-memory term index answers exactly what SQL answers, and never from a stale snapshot."""

from __future__ import annotations

import random
import sqlite3
import subprocess
import sys

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import make_url

from gateway.beacon.context import QueryContext
from gateway.beacon.filters import PRESENT_KINDS
from gateway.beacon.individuals import INDIVIDUALS, Selection, answer_selection, current_snapshot, selection_for
from gateway.beacon.request import parse_post
from gateway.beacon.term_index import index_for
from tests.beacon.real_node import PXF_DATASET, reference_phenopackets
from tests.beacon.test_beacon_api import real_app  # noqa: F401  (the session node over the reference phenopackets)
from tests.pg_schema import fresh_schema

BROAD = ["HP:0000118", "HP:0000707", "HP:0001250", "HP:0000152", "HP:0001507", "HP:0000478"]
SEX = ["NCIT:C16576", "NCIT:C20197", "NCIT:C17998"]


def _context(app) -> QueryContext:
    s = app.extensions["gateway"]
    return QueryContext(config=s.config, key=s.key, variants=s.variants, store=s.store, cache=s.beacon_cache)


def _both(ctx, body: dict, datasets: tuple[str, ...]):
    request = parse_post(INDIVIDUALS, body)
    indexed = selection_for("individuals", request, datasets, (), ctx)
    assert indexed.snapshot is not None
    plain = Selection("individuals", datasets, indexed.plan)  # no snapshot: the SQL path
    return (
        answer_selection(ctx, request, request.requested_granularity, indexed),
        answer_selection(ctx, request, request.requested_granularity, plain),
    )


def _summary(answer) -> tuple:
    sets = [(rs.id, rs.count, [r["id"] for r in rs.records or ()]) for rs in answer.result_sets]
    return answer.exists, answer.total, sets, answer.info


def test_index_and_sql_agree_on_random_filter_combinations(real_app):  # noqa: F811
    ctx = _context(real_app)
    snapshot = current_snapshot(ctx)
    assert snapshot is not None and snapshot.size >= 250
    rng = random.Random(11)
    held = sorted(snapshot.postings)
    pool = BROAD + rng.sample(held, 40) + ["HP:0000001", "ORPHA:999999999"]
    datasets_choices = [(PXF_DATASET,), (PXF_DATASET, "synthetic-demo"), ("synthetic-demo",)]
    compared = 0
    for _ in range(150):
        filters = [{"id": t} for t in rng.sample(pool, rng.randint(1, 3))]
        if rng.random() < 0.3:
            filters[0]["includeDescendantTerms"] = False
        if rng.random() < 0.5:
            filters.append({"id": rng.choice(SEX)})
        granularity = rng.choice(["boolean", "count", "record"])
        body = {
            "query": {
                "filters": filters,
                "requestedGranularity": granularity,
                "pagination": {"skip": rng.randint(0, 2), "limit": rng.choice([1, 5, 50])},
            }
        }
        via_index, via_sql = _both(ctx, body, rng.choice(datasets_choices))
        assert _summary(via_index) == _summary(via_sql), filters
        compared += via_sql.total or 0
    assert compared > 0  # some combinations matched individuals, not only empty answers


def test_filters_without_an_index_form_use_sql(real_app):  # noqa: F811
    ctx = _context(real_app)
    for filters in (
        [{"id": "age", "operator": ">=", "value": "P10Y"}],
        [{"id": "excluded:HP:0001250"}],
        [{"id": "sex", "operator": "!", "value": "NCIT:C16576"}],
    ):
        request = parse_post(INDIVIDUALS, {"query": {"filters": filters, "requestedGranularity": "count"}})
        assert selection_for("individuals", request, (PXF_DATASET,), (), ctx).snapshot is None


@pytest.fixture
def small_node(tmp_path):
    from gateway.services.ingest import ingest_phenopackets
    from tests.beacon.conftest import make_app

    app = make_app(None, datasets=[{"id": "d1", "security_level": "PUBLIC", "policy": {"profile": "open"}}])
    s = app.extensions["gateway"]
    for doc in reference_phenopackets()[:40]:
        ingest_phenopackets([doc], store=s.store, key=s.key, dataset_id="d1")
    yield app
    s.store.close()


def _count(client, *filters: str) -> int:
    body = {"query": {"filters": list(filters), "requestedGranularity": "count"}}
    response = client.post("/api/individuals", json=body)
    assert response.status_code == 200
    return response.get_json()["responseSummary"]["numTotalResults"]


def test_a_change_from_any_connection_is_seen_by_the_next_query(small_node):
    client = small_node.test_client()
    ctx = _context(small_node)
    before = _count(client)
    first = current_snapshot(ctx)
    assert before > 2 and first is not None
    # Another process's write: a plain sqlite3 connection deletes two individuals (terms go by cascade).
    path = small_node.extensions["gateway"].store.engine.url.database
    with sqlite3.connect(path) as other:
        other.execute("PRAGMA foreign_keys = ON")
        other.execute("DELETE FROM phenopackets WHERE pk IN (SELECT pk FROM phenopackets ORDER BY pk LIMIT 2)")
    assert _count(client) == before - 2
    assert current_snapshot(ctx) is not first  # rebuilt, not patched
    for term in BROAD:  # term postings follow too: the index answers as SQL does on the changed data
        body = {"query": {"filters": [term], "requestedGranularity": "record", "pagination": {"limit": 100}}}
        via_index, via_sql = _both(ctx, body, ("d1",))
        assert _summary(via_index) == _summary(via_sql)
    # The store's own erasure path (same process, its pooled connection) is seen as well.
    store = small_node.extensions["gateway"].store
    subject = store.list_phenopackets(dataset_id="d1", limit=1)[0][0].subject_id
    assert store.delete_subject(subject) == 1
    assert _count(client) == before - 3


# --- PostgreSQL: the same index, kept current by the store_version row (migration 0002) ---------


@pytest.fixture
def pg_node(request, postgres_url):
    """A node on its own PostgreSQL schema holding the first 40 reference phenopackets in dataset d1."""
    from gateway.services.ingest import ingest_phenopackets
    from tests.beacon.conftest import make_app

    with fresh_schema(postgres_url, "gw_term_index") as url:
        app = make_app(
            None, datasets=[{"id": "d1", "security_level": "PUBLIC", "policy": {"profile": "open"}}], database_url=url
        )
        s = app.extensions["gateway"]
        try:
            for doc in reference_phenopackets()[:40]:
                ingest_phenopackets([doc], store=s.store, key=s.key, dataset_id="d1")
            yield app, url
        finally:
            s.store.close()


def test_postgres_index_and_sql_agree(pg_node):
    app, _ = pg_node
    ctx = _context(app)
    assert app.extensions["gateway"].store.engine.dialect.name == "postgresql"
    snapshot = current_snapshot(ctx)
    assert snapshot is not None and snapshot.size == _count(app.test_client()) > 30
    rng = random.Random(5)
    pool = BROAD + rng.sample(sorted(snapshot.postings), 20) + ["ORPHA:999999999"]
    matched = 0
    for _ in range(60):
        filters = [{"id": t} for t in rng.sample(pool, rng.randint(1, 2))]
        if rng.random() < 0.5:
            filters.append({"id": rng.choice(SEX)})
        granularity = rng.choice(["boolean", "count", "record"])
        body = {"query": {"filters": filters, "requestedGranularity": granularity, "pagination": {"limit": 50}}}
        via_index, via_sql = _both(ctx, body, ("d1",))
        assert _summary(via_index) == _summary(via_sql), filters
        matched += via_sql.total or 0
    assert matched > 0


def test_postgres_write_from_another_process_is_seen_by_the_next_query(pg_node):
    app, url = pg_node
    client = app.test_client()
    ctx = _context(app)
    before = _count(client)
    first = current_snapshot(ctx)
    assert first is not None and before == first.size > 30
    # Another process: plain psycopg, no gateway code, deletes two individuals (terms go by cascade).
    dsn = make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)
    script = (
        "import sys, psycopg\n"
        "with psycopg.connect(sys.argv[1]) as c:\n"
        "    c.execute('DELETE FROM phenopackets WHERE pk IN (SELECT pk FROM phenopackets ORDER BY pk LIMIT 2)')\n"
    )
    subprocess.run([sys.executable, "-c", script, dsn], check=True, timeout=60)
    # First a record answer: its page is read with the change counter in one statement, which finds the
    # snapshot stale, so the answer comes from SQL (the stale snapshot would still count the two).
    assert index_for(ctx.store, ctx.cache, PRESENT_KINDS).latest() is first
    body = {"query": {"requestedGranularity": "record", "pagination": {"limit": 100}}}
    response = client.post("/api/individuals", json=body).get_json()
    assert response["responseSummary"]["numTotalResults"] == before - 2
    assert len(response["response"]["resultSets"][0]["results"]) == before - 2
    # ... and that request set the index right (inline for a store this small): record traffic alone keeps it current.
    latest = index_for(ctx.store, ctx.cache, PRESENT_KINDS).latest()
    assert latest is not first and latest is not None and latest.size == before - 2
    assert _count(client) == before - 2
    second = current_snapshot(ctx)
    assert second is not None and second is not first and second.size == before - 2
    for term in BROAD:
        body = {"query": {"filters": [term], "requestedGranularity": "record", "pagination": {"limit": 100}}}
        via_index, via_sql = _both(ctx, body, ("d1",))
        assert _summary(via_index) == _summary(via_sql)
    # A write that is rolled back changes nothing the index could see: the snapshot stays.
    other = sa.create_engine(url, poolclass=sa.pool.NullPool)
    with other.connect() as connection:
        connection.execute(sa.text("DELETE FROM phenopackets"))
        connection.rollback()
    other.dispose()
    assert _count(client) == before - 2
    assert current_snapshot(ctx) is second
    # The store's own erasure path is seen as well.
    store = app.extensions["gateway"].store
    subject = store.list_phenopackets(dataset_id="d1", limit=1)[0][0].subject_id
    assert store.delete_subject(subject) == 1
    assert _count(client) == before - 3
