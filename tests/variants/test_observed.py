"""A variant exists only where an alternate allele was observed (issue 13): a site whose samples are all 0/0,
or whose only carriers were erased, is not found; a sites-only file asserts its sites (AC from INFO)."""

from __future__ import annotations

from gateway.variants.query import VariantQuery
from gateway.variants.store import VariantStore

from .test_ingest import ingest, lines_of, rec, write


def _query(start: int) -> VariantQuery:
    return VariantQuery(reference_name="1", start=start - 1, alternate_bases="G")


def test_a_site_without_an_observed_alternate_allele_does_not_exist(tmp_path):
    body = [rec("100", gts=("0/0", "0/0")), rec("200", gts=("0/1", "0/0")), rec("300", gts=("./.", "0/0"))]
    ingest(write(tmp_path / "v.vcf", lines_of(body=body)), tmp_path / "data")
    store = VariantStore(tmp_path / "data")
    assert [store.exists(_query(p)) for p in (100, 200, 300)] == [False, True, False]
    assert [store.count(_query(p)) for p in (100, 200, 300)] == [0, 1, 0]
    ranged = VariantQuery(reference_name="1", start=0, end=1000)
    hits, total = store.search(ranged, limit=10)
    assert total == 1 and [h.start for h in hits] == [199]
    assert store.count(ranged) == 1 and store.carrier_count(ranged) == 1


def test_erasing_the_only_carrier_makes_the_variant_absent(tmp_path):
    body = [rec("100", gts=("0/1", "0/0")), rec("200", gts=("1/1", "0/1"))]

    def link(sample: str):
        return (f"pid-{sample}", None)

    ingest(write(tmp_path / "v.vcf", lines_of(body=body)), tmp_path / "data", link_sample=link)
    store = VariantStore(tmp_path / "data")
    hit = store.search(_query(100))[0][0]
    assert store.exists(_query(100)) and store.get(hit.variant_id) is not None
    assert store.erase_individual("pid-A") == 1
    assert store.exists(_query(100)) is False and store.count(_query(100)) == 0
    assert store.get(hit.variant_id) is None
    assert store.exists(_query(200)) and store.search(_query(200))[0][0].allele_count == 1


def test_sites_only_files_assert_their_sites_unless_info_says_ac_0(tmp_path):
    lines = [
        "##fileformat=VCFv4.2",
        '##INFO=<ID=AC,Number=A,Type=Integer,Description="allele count">',
        '##INFO=<ID=AN,Number=1,Type=Integer,Description="allele number">',
        "##contig=<ID=chr1,length=248956422>",
        "#CHROM\tPOS\tID\tREF\tALT\tQUAL\tFILTER\tINFO",
        "chr1\t100\t.\tA\tG\t.\tPASS\t.",
        "chr1\t200\t.\tA\tG\t.\tPASS\tAC=0;AN=10",
        "chr1\t300\t.\tA\tG\t.\tPASS\tAC=3;AN=10",
    ]
    ingest(write(tmp_path / "s.vcf", lines), tmp_path / "data")
    store = VariantStore(tmp_path / "data")
    assert [store.exists(_query(p)) for p in (100, 200, 300)] == [True, False, True]


def test_beacon_exists_only_where_a_visible_dataset_observed_the_allele(tmp_path):
    """The allele is carried in a CONTROLLED dataset only; the PUBLIC one has the site with every sample 0/0.
    An anonymous caller (who sees only the PUBLIC dataset) is told it does not exist; a grant-holder sees it."""
    from tests.beacon.conftest import make_app

    datasets = (
        {"id": "open-ds", "security_level": "PUBLIC", "policy": {"profile": "open"}},
        {"id": "closed-ds", "security_level": "CONTROLLED"},
    )
    app = make_app(None, datasets=datasets, data_dir=str(tmp_path / "node"), operator_tokens=["observed-op"])
    services = app.extensions["gateway"]
    data_dir = services.config.data_dir
    ingest(write(tmp_path / "o.vcf", lines_of(body=[rec("100", gts=("0/0", "0/0"))])), data_dir, dataset_id="open-ds")
    ingest(write(tmp_path / "c.vcf", lines_of(body=[rec("100", gts=("0/1", "0/0"))])), data_dir, dataset_id="closed-ds")
    services.variants.refresh()
    client = app.test_client()
    query = "/api/g_variants?referenceName=1&start=99&alternateBases=G&referenceBases=A"
    anonymous = client.get(query + "&requestedGranularity=count").json
    assert anonymous["responseSummary"] == {"exists": False, "numTotalResults": 0}
    seen = client.get(query + "&requestedGranularity=count", headers={"Authorization": "Bearer observed-op"}).json
    assert seen["responseSummary"] == {"exists": True, "numTotalResults": 1}
    services.store.close()
