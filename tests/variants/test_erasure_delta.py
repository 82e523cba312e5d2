"""An erasure request's delta (gateway/variants/pending.py) is read from the person's own rows: their reverse index,
its homozygous part (sample_hom) and their called-allele exceptions, never the carrier sets of the cohort. The
pysam truth tests (tests/beacon/test_g_variants_truth.py, "erased-pending") check the answers; these check the
mechanism."""

from __future__ import annotations

import shutil
import sqlite3

import numpy as np
import pysam
import pytest

from gateway.variants.distributed_ingest import ingest_partitioned
from gateway.variants.layout import HEMI, HOM, decode_set, unpack_codes
from gateway.variants.store import VariantStore, _carried_losses, _carried_losses_from_sets, _sample_offsets

from .vcfgen import write_vcf

SAMPLES = 40


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    root = tmp_path_factory.mktemp("erasure-delta")
    plain = write_vcf(root / "cohort.vcf", seed=7, n_records=600, n_samples=SAMPLES)
    pysam.tabix_compress(str(plain), str(root / "cohort.vcf.gz"))
    links = {f"SAMPLE{i:03d}": f"P{i}" for i in range(SAMPLES)} | {"SAMPLE031": "P3"}  # P3 sequenced twice
    ingest_partitioned(root / "cohort.vcf.gz", dataset_id="c", data_dir=root / "data", assembly="GRCh38", span=5_000_000,
                       sample_map=links)  # fmt: skip
    return root / "data"


def _units(data_dir):
    return sorted(data_dir.glob("variants/c/parts-*/*.sqlite"))


def test_the_homozygous_index_holds_each_samples_homozygous_carried_variants(data_dir):
    seen = {HOM: 0, HEMI: 0}
    for path in _units(data_dir):
        conn = sqlite3.connect(path)
        try:
            expected: dict[int, set[int]] = {}
            for vid, samples, zyg in conn.execute("SELECT vid, samples, zyg FROM carriers"):
                members = decode_set(samples)
                codes = unpack_codes(zyg, len(members))
                for code in (HOM, HEMI):
                    seen[code] += int((codes == code).sum())
                for sample in members[codes == HOM].tolist():
                    expected.setdefault(sample, set()).add(vid)
            for sample in range(SAMPLES):
                assert set(_sample_offsets(conn, "sample_hom", [sample]).tolist()) == expected.get(sample, set())
        finally:
            conn.close()
    assert seen[HOM] > 100 and seen[HEMI] > 10, "the generator writes homozygous and haploid calls"


@pytest.mark.parametrize("samples", [[0], [7], [3, 31], list(range(0, SAMPLES, 3))])
def test_the_delta_from_the_persons_rows_equals_the_one_read_from_the_carrier_sets(data_dir, samples):
    for path in _units(data_dir):
        conn = sqlite3.connect(path)
        try:
            assert conn.execute("SELECT value FROM meta WHERE key = 'called_index'").fetchone() == ("1",)
            from_rows: dict[int, list[int]] = {}
            from_sets: dict[int, list[int]] = {}
            _carried_losses(conn, samples, from_rows)
            _carried_losses_from_sets(conn, samples, True, from_sets)
            assert from_rows == from_sets, path.name
        finally:
            conn.close()


def _pending(data_dir) -> tuple:
    ds = data_dir / "variants" / "c"
    manifest = sqlite3.connect(ds / (ds / "CURRENT").read_text().strip())
    try:
        return tuple(
            sorted(manifest.execute(f"SELECT * FROM {table}").fetchall())
            for table in ("pending_units", "pending_delta", "pending_samples")
        )
    finally:
        manifest.close()


def test_an_erasure_request_reads_no_carrier_set(data_dir, tmp_path):
    """The same erasure on a copy of the store whose carrier rows are all gone writes the same pending delta: the
    request reads nothing that grows with the cohort (the carrier sets), only the person's rows."""
    intact, stripped = tmp_path / "intact", tmp_path / "stripped"
    shutil.copytree(data_dir, intact)
    shutil.copytree(data_dir, stripped)
    for path in _units(stripped):
        conn = sqlite3.connect(path)
        conn.execute("DELETE FROM carriers")
        conn.commit()
        conn.close()
    for root in (intact, stripped):
        store = VariantStore(root)
        try:
            assert store.erase_individual("P3") == 2
        finally:
            store.close()
    written = _pending(intact)
    assert written == _pending(stripped)
    units, delta, erased = written
    assert erased == [(3,), (31,)]
    assert len(delta) > 50 and all(ac >= carriers > 0 for _, _, ac, _, carriers in delta if carriers)
    assert all(np.frombuffer(samples, dtype="<u4").tolist() == [3, 31] for _, samples, _, _ in units)
