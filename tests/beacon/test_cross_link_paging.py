"""/g_variants/{id}/individuals pages in memory, on the real stores: the carriers' sample indexes go through the
linked-sample index onto the in-memory individuals index; no carrier id is built or sent to the database.

The answer must be the one the SQL path gives (every carrier's id sent as one array): the caller's datasets only,
filters applied, samples without a stored phenopacket or unlinked count for nobody, an erased sample is gone,
a phenopacket stored later is seen; pages in the same (pk) order. Truth: pysam's carriers of the VCF.
"""

from __future__ import annotations

import pysam
import pytest

from gateway.beacon import links
from gateway.store import PhenopacketRecord
from gateway.variants.ingest import ingest_vcf
from gateway.variants.query import VariantQuery
from gateway.variants.store import VariantStore
from tests.beacon.conftest import OPEN, make_app
from tests.beacon.test_g_variants_truth import SAMPLES, _write_vcf
from tests.store.store_workers import document

LINKED = {name: f"P{i}" for i, name in enumerate(SAMPLES[:10])}  # S10, S11 stay unlinked
SEIZURE, ATAXIA = "HP:0001250", "HP:0001251"
DATASETS = [{"id": "cohort", "name": "Cohort", **OPEN}, {"id": "closed", "name": "Closed"}]  # closed: not public


@pytest.fixture
def node(tmp_path):
    vcf = tmp_path / "cohort.vcf"
    _write_vcf(vcf)
    ingest_vcf(vcf, dataset_id="cohort", data_dir=tmp_path / "variants", assembly="GRCh38", sample_map=LINKED)
    variants = VariantStore(tmp_path / "variants")
    app = make_app(variants, datasets=DATASETS, database_url=f"sqlite:///{tmp_path / 'gateway.sqlite'}")
    store = app.extensions["gateway"].store
    store.ensure_dataset("cohort", name="Cohort")
    store.ensure_dataset("closed", name="Closed")
    records = [
        PhenopacketRecord(f"pp-P{i}", "cohort", f"P{i}", document(f"P{i}", SEIZURE if i % 2 else ATAXIA), "Bundle/b")
        for i in range(8)
    ]
    records.append(PhenopacketRecord("pp-P8", "closed", "P8", document("P8", SEIZURE), "Bundle/b"))  # hidden
    store.save_phenopackets(records)  # P9 is linked but has no phenopacket
    truth = _carriers_by_variant(vcf)
    yield app, variants, truth
    store.close()
    variants.close()


def _carriers_by_variant(vcf) -> dict[tuple[str, int, str, str], set[str]]:
    out = {}
    with pysam.VariantFile(str(vcf)) as f:
        for rec in f:
            for index, alt in enumerate(rec.alts, start=1):
                carriers = {s for s in SAMPLES if index in (rec.samples[s]["GT"] or ())}
                out[(rec.chrom.removeprefix("chr"), rec.pos - 1, rec.ref, alt)] = carriers
    return out


def _individuals(client, variant_id: str, limit: int = 2, **query) -> tuple[int, list[str]]:
    """Every page of the cross-link, walked with `limit` (Beacon's skip counts pages); (total, ids in page order)."""
    url = f"/api/g_variants/{variant_id}/individuals"
    ids: list[str] = []
    total = None
    skip = 0
    while True:
        body = {"query": {"requestedGranularity": "record", "pagination": {"skip": skip, "limit": limit}, **query}}
        answer = client.post(url, json=body)
        assert answer.status_code == 200, answer.get_data(as_text=True)[:400]
        payload = answer.get_json()
        total = payload["responseSummary"]["numTotalResults"]
        page = [r["id"] for rs in payload["response"]["resultSets"] for r in rs["results"]]
        assert len(page) <= limit
        ids += page
        skip += 1
        if skip * limit >= total:
            return total, ids


def _chosen(variants: VariantStore, truth) -> list:
    hits = []
    skip = 0
    while True:
        page, total = variants.search(VariantQuery(dataset_ids=("cohort",)), skip=skip, limit=500)
        hits += page
        skip += 500
        if skip >= total:
            break
    chosen = [h for h in hits if len(truth[(h.reference_name, h.start, h.reference_bases, h.alternate_bases)]) >= 3]
    assert len(chosen) >= 20
    return chosen[:25]


def _expected(truth, hit, phenotype: str | None = None) -> list[str]:
    carriers = truth[(hit.reference_name, hit.start, hit.reference_bases, hit.alternate_bases)]
    ids = sorted(int(LINKED[s][1:]) for s in carriers if s in LINKED and int(LINKED[s][1:]) < 8)
    if phenotype is not None:
        ids = [i for i in ids if (phenotype == SEIZURE) == bool(i % 2)]
    return [f"P{i}" for i in ids]  # pk order is insertion order, P0 … P7


def test_individuals_of_a_variant_page_from_the_index_and_equal_the_truth(node, monkeypatch):
    app, variants, truth = node
    client = app.test_client()
    chosen = _chosen(variants, truth)
    client.post(f"/api/g_variants/{chosen[0].variant_id}/individuals", json={})  # the index is built on first use
    monkeypatch.setattr(VariantStore, "carriers", lambda *a, **k: pytest.fail("every carrier was built"))
    monkeypatch.setattr(VariantStore, "carrier_rows", lambda *a, **k: pytest.fail("every carrier was built"))
    for hit in chosen:
        expected = _expected(truth, hit)
        assert _individuals(client, hit.variant_id) == (len(expected), expected), hit.variant_id
        filtered = _expected(truth, hit, SEIZURE)
        filters = {"filters": [{"id": SEIZURE}]}
        assert _individuals(client, hit.variant_id, limit=3, **filters) == (len(filtered), filtered)
        count = client.post(
            f"/api/g_variants/{hit.variant_id}/individuals", json={"query": {"requestedGranularity": "count"}}
        ).get_json()
        assert count["responseSummary"]["numTotalResults"] == len(expected)


def test_the_index_path_answers_as_the_sql_path(node, monkeypatch):
    app, variants, truth = node
    client = app.test_client()
    chosen = _chosen(variants, truth)
    by_index = [_individuals(client, h.variant_id, limit=3) for h in chosen]
    monkeypatch.setattr(links, "_carrier_individuals_from_index", lambda *a: None)
    assert [_individuals(client, h.variant_id, limit=3) for h in chosen] == by_index


def test_an_erased_sample_and_a_later_phenopacket_are_seen(node):
    app, variants, truth = node
    client = app.test_client()
    chosen = _chosen(variants, truth)
    carried_by_p2 = next(h for h in chosen if "P2" in _expected(truth, h))
    carried_by_p9 = next(
        h for h in chosen if "S09" in truth[(h.reference_name, h.start, h.reference_bases, h.alternate_bases)]
    )
    assert "P2" in _individuals(client, carried_by_p2.variant_id)[1]
    assert variants.erase_individual("P2") == 1
    variants.refresh()
    assert "P2" not in _individuals(client, carried_by_p2.variant_id)[1]
    assert "P9" not in _individuals(client, carried_by_p9.variant_id)[1]
    store = app.extensions["gateway"].store
    store.save_phenopackets([PhenopacketRecord("pp-P9", "cohort", "P9", document("P9", SEIZURE), "Bundle/c")])
    assert "P9" in _individuals(client, carried_by_p9.variant_id)[1]
