"""Cross-links whose carrier set is larger than a database's parameter limit.

`/g_variants/{id}/individuals` once sent every carrier's individual id as one SQL `IN` list: PostgreSQL refuses a
statement with more than 65,535 parameters, so a variant carried by more people than that answered 500. The same
request now pages over the carriers' sample indexes mapped onto the in-memory individuals index (on PostgreSQL and
SQLite alike; tests/beacon/test_cross_link_paging.py), and without that index passes the ids as one array parameter
(PostgreSQL) or one JSON parameter (SQLite) and pages in SQL.
`/individuals/{id}/g_variants` builds only the carriers a record shows (MAX_CASE_LEVEL), not every carrier set.
"""

from __future__ import annotations

import pytest

from gateway.store import MetadataStore, PhenopacketRecord
from gateway.variants.query import Carrier
from tests.beacon.conftest import FAKE_DATASETS, make_app
from tests.beacon.fake_store import FakeVariantStore, hit
from tests.pg_schema import empty_database, fresh_schema
from tests.store.store_workers import document

pytestmark = pytest.mark.slow  # several seconds: pytest-xdist starts it first (tests/conftest.py)

CARRIERS = 70_000  # above PostgreSQL's 65,535 bind parameters per statement
STORED = ("P00007", "P35000", "P69999", "P70500")  # the last carries nothing


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request, tmp_path):
    with empty_database(request, tmp_path, "gw_xlink", "gateway.sqlite") as url:
        yield url


class CountingStore(FakeVariantStore):
    """The fake store, noting how many carriers each `carriers` call built."""

    def __init__(self, *args):
        super().__init__(*args)
        self.built: list[int] = []

    def carriers(self, variant_id, limit=None):
        out = super().carriers(variant_id, limit)
        self.built.append(len(out))
        return out


def _node(database_url):
    common = hit("ds1", "1", 1000, "A", "G", "SNP", carrier_count=CARRIERS)
    carriers = [
        Carrier(f"S{i:05d}", f"B{i:05d}", f"P{i:05d}", "GENO:0000135" if i % 3 else "GENO:0000136")
        for i in range(CARRIERS)
    ]
    variants = CountingStore([common], {common.variant_id: carriers})
    app = make_app(variants, database_url=database_url)
    store: MetadataStore = app.extensions["gateway"].store
    for dataset in FAKE_DATASETS:
        store.ensure_dataset(dataset["id"], name=dataset["name"])
    store.save_phenopackets(
        [PhenopacketRecord(f"pp-{s}", "ds1", s, document(s, "HP:0001250"), source="Bundle/b1") for s in STORED]
    )
    return app, common, variants


def test_individuals_of_a_variant_with_more_carriers_than_postgres_parameters(database_url):
    app, common, variants = _node(database_url)
    try:
        client = app.test_client()
        url = f"/api/g_variants/{common.variant_id}/individuals"
        answer = client.get(url, query_string={"requestedGranularity": "record", "limit": 2})
        assert answer.status_code == 200, answer.get_data(as_text=True)[:500]
        body = answer.get_json()
        assert body["responseSummary"]["numTotalResults"] == 3
        (result_set,) = [r for r in body["response"]["resultSets"] if r["id"] == "ds1"]
        assert [r["id"] for r in result_set["results"]] == ["P00007", "P35000"]
        second = client.get(url, query_string={"requestedGranularity": "record", "limit": 2, "skip": 1}).get_json()
        (result_set,) = [r for r in second["response"]["resultSets"] if r["id"] == "ds1"]
        assert [r["id"] for r in result_set["results"]] == ["P69999"]
        count = client.get(url, query_string={"requestedGranularity": "count"}).get_json()
        assert count["responseSummary"]["numTotalResults"] == 3
        assert variants.built == []  # paged from the sample indexes and the in-memory index: no carrier built
    finally:
        app.extensions["gateway"].store.close()


def test_variants_of_an_individual_build_only_the_carriers_a_record_shows(tmp_path):
    app, common, variants = _node(f"sqlite:///{tmp_path / 'gateway.sqlite'}")
    try:
        variants.variants_of_individual = lambda individual_id, skip=0, limit=10: ([common], 1)
        answer = app.test_client().get(
            "/api/individuals/P00007/g_variants", query_string={"requestedGranularity": "record"}
        )
        assert answer.status_code == 200, answer.get_data(as_text=True)[:500]
        (record,) = [r for rs in answer.get_json()["response"]["resultSets"] for r in rs["results"]]
        assert record["variantInternalId"] == common.variant_id
        assert variants.built and max(variants.built) <= 100, variants.built  # MAX_CASE_LEVEL, not 70,000
    finally:
        app.extensions["gateway"].store.close()


def _with_biosamples(store: MetadataStore) -> None:
    """The stored patients' phenopackets with their biosample (the carriers' biosample ids B…)."""
    records = []
    for subject in STORED:
        packet = document(subject, "HP:0001250")
        packet["biosamples"] = [{"id": f"B{subject[1:]}", "individualId": subject}]
        records.append(PhenopacketRecord(f"pp-{subject}", "ds1", subject, packet, source="Bundle/b1"))
    store.save_phenopackets(records)


def test_biosamples_of_a_variant_with_more_carriers_than_postgres_parameters(database_url):
    """/g_variants/{id}/biosamples: the carriers' biosample ids are gathered from the sample indexes (no carrier
    built) and joined in SQL from one parameter (PostgreSQL: an unnested array; SQLite: a temporary table loaded in
    one statement)."""
    app, common, variants = _node(database_url)
    try:
        _with_biosamples(app.extensions["gateway"].store)
        client = app.test_client()
        url = f"/api/g_variants/{common.variant_id}/biosamples"
        answer = client.get(url, query_string={"requestedGranularity": "record", "limit": 2})
        assert answer.status_code == 200, answer.get_data(as_text=True)[:500]
        body = answer.get_json()
        assert body["responseSummary"]["numTotalResults"] == 3
        (result_set,) = [r for r in body["response"]["resultSets"] if r["id"] == "ds1"]
        assert [r["id"] for r in result_set["results"]] == ["B00007", "B35000"]
        second = client.get(url, query_string={"requestedGranularity": "record", "limit": 2, "skip": 1}).get_json()
        (result_set,) = [r for r in second["response"]["resultSets"] if r["id"] == "ds1"]
        assert [r["id"] for r in result_set["results"]] == ["B69999"]
        count = client.get(url, query_string={"requestedGranularity": "count"}).get_json()
        assert count["responseSummary"]["numTotalResults"] == 3
        assert variants.built == []  # no Carrier per carrier: 70,000 sample indexes mapped in one step
    finally:
        app.extensions["gateway"].store.close()


def test_individuals_of_a_variant_on_sql_when_the_index_cannot_answer(database_url, monkeypatch):
    """The SQL path of /g_variants/{id}/individuals (the in-memory index stale or not holding the filters): the
    carriers' individual ids from one parameter, no carrier built."""
    from gateway.beacon import links

    monkeypatch.setattr(links, "_carrier_individuals_from_index", lambda *args: None)
    app, common, variants = _node(database_url)
    try:
        client = app.test_client()
        url = f"/api/g_variants/{common.variant_id}/individuals"
        for skip, page in ((0, ["P00007", "P35000"]), (1, ["P69999"])):  # skip counts pages
            query = {"requestedGranularity": "record", "limit": 2, "skip": skip}
            body = client.get(url, query_string=query).get_json()
            assert body["responseSummary"]["numTotalResults"] == 3
            (result_set,) = [r for r in body["response"]["resultSets"] if r["id"] == "ds1"]
            assert [r["id"] for r in result_set["results"]] == page
        assert client.get(url).get_json()["responseSummary"]["exists"] is True
        assert variants.built == []
    finally:
        app.extensions["gateway"].store.close()


def _read_only(store: MetadataStore) -> None:
    """Every connection of the store from now on in read-only transactions, as on a hot-standby replica."""
    import sqlalchemy as sa

    def on_connect(dbapi_connection, _record) -> None:
        with dbapi_connection.cursor() as cursor:
            cursor.execute("SET default_transaction_read_only = on")
        dbapi_connection.commit()

    sa.event.listen(store.engine, "connect", on_connect)
    store.engine.dispose()
    assert store.reads is not None
    store.reads.close()


def test_cross_links_on_sql_answer_from_a_read_only_postgres(postgres_url, monkeypatch):
    """A node reading from a read-only PostgreSQL (hot standby): the SQL path of /g_variants/{id}/individuals and
    /biosamples joins the carriers' ids without creating anything (a temporary table is refused there)."""
    import sqlalchemy as sa

    from gateway.beacon import links

    monkeypatch.setattr(links, "_carrier_individuals_from_index", lambda *args: None)
    with fresh_schema(postgres_url, "gw_xlink_ro") as url:
        app, common, variants = _node(url)
        store = app.extensions["gateway"].store
        try:
            _with_biosamples(store)
            _read_only(store)
            with pytest.raises(sa.exc.DBAPIError, match="read-only transaction"):
                store.ensure_dataset("not-on-a-replica", name="x")
            client = app.test_client()
            for entry, page in (("individuals", ["P00007", "P35000"]), ("biosamples", ["B00007", "B35000"])):
                url = f"/api/g_variants/{common.variant_id}/{entry}"
                answer = client.get(url, query_string={"requestedGranularity": "record", "limit": 2})
                assert answer.status_code == 200, answer.get_data(as_text=True)[:500]
                body = answer.get_json()
                assert body["responseSummary"]["numTotalResults"] == 3
                (result_set,) = [r for r in body["response"]["resultSets"] if r["id"] == "ds1"]
                assert [r["id"] for r in result_set["results"]] == page
            assert variants.built == []
        finally:
            store.close()
