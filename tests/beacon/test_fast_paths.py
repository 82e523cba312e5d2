"""The per-request fast paths keep the slow paths' answers: strict JSON, carrier tuples, cached dataset listing."""

from __future__ import annotations

import json
import os

import pytest

from gateway.api.render import dumps_strict
from gateway.beacon import g_variants
from gateway.beacon.context import QueryContext
from gateway.config import Config
from gateway.variants.query import Carrier
from gateway.variants.store import VariantStore
from tests.beacon.fake_store import FakeVariantStore, hit


@pytest.mark.parametrize(
    "body",
    [
        {"a": [1, 2.5, "é", True, None], "b": {"c": 1e-05}},
        {"nullable": "the word null in a string", "n": 2**40},
        [{"x": "y"}],
        {1: "an int key, as json writes it"},
    ],
)
def test_strict_json_is_the_json_module_output_parsed_back(body):
    expected = json.loads(json.dumps(body, allow_nan=False))
    assert json.loads(dumps_strict(body)) == expected


@pytest.mark.parametrize("bad", [{"a": float("nan")}, {"a": [float("inf")]}, {"a": object()}, {"a": {1, 2}}])
def test_strict_json_refuses_what_json_refuses(bad):
    with pytest.raises((ValueError, TypeError)):
        json.dumps(bad, allow_nan=False)
    with pytest.raises((ValueError, TypeError)):
        dumps_strict(bad)


def test_case_level_data_is_the_same_from_carrier_objects_and_tuples():
    h = hit("ds", "1", 100, "A", "G", "SNP", allele_count=3, allele_number=10, carrier_count=3)
    carriers = [
        Carrier("S1", "bs-1", "ind-1", "GENO:0000135"),
        Carrier("S2", None, None, "GENO:0000136"),
        Carrier("S3", None, "ind-3", ""),
    ]
    store = FakeVariantStore([h], {h.variant_id: carriers})
    rows = g_variants.carrier_rows(store, h.variant_id)
    assert rows == [(c.sample_id, c.biosample_id, c.individual_id, c.zygosity) for c in carriers]
    ctx = QueryContext(config=Config(), key=b"k" * 32)
    from_objects = g_variants._case_level(ctx, h, carriers)
    assert g_variants._case_level(ctx, h, rows) == from_objects
    assert from_objects[0] == {"biosampleId": "bs-1", "individualId": "ind-1", "zygosity": from_objects[0]["zygosity"]}
    assert from_objects[1]["biosampleId"] == g_variants._unlinked_biosample(b"k" * 32, "ds", "S2") != "S2"
    assert from_objects[2]["zygosity"]["id"] == "GENO:0000137"  # unspecified


def test_the_cached_variant_dataset_listing_sees_new_datasets_and_finished_ingests(tmp_path):
    store = VariantStore(tmp_path)  # the SQLite variant store: its `datasets()` reuses the directory listing
    root = tmp_path / "variants"
    (root / "a").mkdir(parents=True)
    (root / "a" / "CURRENT").write_text("v1")
    (root / "b").mkdir()  # an ingest in progress: no live version yet
    os.utime(root, ns=(10**9, 10**9))  # an old, settled directory: its listing is cached
    assert store.datasets() == ["a"]
    assert store._listing is not None  # the listing was kept
    (root / "b" / "CURRENT").write_text("v1")  # the ingest finishes (the root directory does not change)
    assert store.datasets() == ["a", "b"]
    (root / "c").mkdir()
    (root / "c" / "CURRENT").write_text("v1")
    assert store.datasets() == ["a", "b", "c"]
    (root / "a" / "CURRENT").unlink()
    assert store.datasets() == ["b", "c"]
