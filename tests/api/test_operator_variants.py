"""The operator page's variant counts for a partitioned version: summed from the manifest's units (the manifest
itself holds no variant rows), equal to the single-file store of the same VCF."""

from __future__ import annotations

import pysam

from gateway.variants.distributed_ingest import ingest_partitioned
from gateway.variants.ingest import ingest_vcf
from gateway.variants.query import VariantQuery
from gateway.variants.store import VariantStore
from tests.beacon.test_g_variants_truth import _write_vcf


def _app(gateway_config):
    from app import create_app

    return create_app({**gateway_config, "datasets": [{"id": "parted"}, {"id": "single"}]})


def test_operator_datasets_count_the_variants_of_a_partitioned_version(gateway_config, operator, tmp_path):
    plain = tmp_path / "cohort.vcf"
    _write_vcf(plain)
    vcf = tmp_path / "cohort.vcf.gz"
    pysam.tabix_compress(str(plain), str(vcf), force=True)
    data_dir = gateway_config["data_dir"]
    ingest_vcf(vcf, dataset_id="single", data_dir=data_dir, assembly="GRCh38")
    summary = ingest_partitioned(vcf, dataset_id="parted", data_dir=data_dir, assembly="GRCh38", span=8_000)
    assert len(summary.partitions) > 3  # several units: the count is a sum over them
    app = _app(gateway_config)
    try:
        body = app.test_client().get("/operator/datasets", headers=operator).get_json()
        by_id = {d["id"]: d["variantStore"] for d in body["datasets"]}
        single, parted = by_id["single"], by_id["parted"]
        assert single["variants"] > 0
        assert parted["variants"] == single["variants"]
        assert parted["samples"] == single["samples"] == 12
        assert parted["partitions"] == len(summary.partitions) and single["partitions"] == 0
        store = VariantStore(data_dir)
        try:  # every stored row (observed or not): the single file's own count(*)
            assert single["variants"] >= store.count(VariantQuery(dataset_ids=("single",)))
        finally:
            store.close()
    finally:
        app.extensions["gateway"].store.close()
