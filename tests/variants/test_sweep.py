"""Unreferenced unit folders are swept: an erasure killed mid-way, an interrupted compaction, a superseded ingest leave
`parts-…` folders no manifest names; they go (under the pointer lock) once older than the grace period and once the
live version has been live that long (a reader may still hold the manifest before it), at publish and by
`gateway variants sweep`. Live units, young folders and the folder of a resumable ingest within the grace stay."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pysam
import pytest

from gateway.variants.distributed_ingest import ingest_partitioned
from gateway.variants.layout import POINTER, UnitsMissing, publish, sweep_dataset
from gateway.variants.query import VariantQuery
from gateway.variants.store import VariantStore
from tests.beacon.test_g_variants_truth import SAMPLES, _write_vcf

from .conftest import cli_on

ROOT = Path(__file__).resolve().parents[2]
LINKS = {name: f"P{i}" for i, name in enumerate(SAMPLES)}
HOUR = 3600


def _age(path: Path, seconds: float) -> None:
    """Make a folder (and everything in it) look `seconds` old."""
    then = time.time() - seconds
    for entry in [*path.rglob("*"), path] if path.is_dir() else [path]:
        os.utime(entry, (then, then))


@pytest.fixture
def parted(tmp_path):
    plain = tmp_path / "cohort.vcf"
    _write_vcf(plain)
    vcf = tmp_path / "cohort.vcf.gz"
    pysam.tabix_compress(str(plain), str(vcf), force=True)
    data_dir = tmp_path / "data"
    ingest_partitioned(vcf, dataset_id="cohort", data_dir=data_dir, assembly="GRCh38", sample_map=LINKS, span=8_000)
    return data_dir, data_dir / "variants" / "cohort", vcf


def _answers(data_dir: Path) -> tuple:
    store = VariantStore(data_dir)
    try:
        hits, total = store.search(VariantQuery(), limit=10_000)
        return total, [(h.variant_id, h.allele_count, h.allele_number, h.carrier_count) for h in hits]
    finally:
        store.close()


def _folders(ds_dir: Path) -> set[str]:
    return {p.name for p in ds_dir.iterdir() if p.is_dir()}


def _killed_erasure(data_dir: Path, individual: str) -> None:
    """An erasure whose purge is killed (SIGKILL) after its new units are written, before its manifest is: a real
    interruption. (The erasure itself only writes a manifest, pending.py; the purge job rewrites the units.)"""
    store = VariantStore(data_dir)
    try:
        assert store.erase_individual(individual) == 1
    finally:
        store.close()
    script = textwrap.dedent(f"""
        import os, signal
        from gateway.variants import store as module
        real = module._erase_samples
        def erase(source, target, idxs, n_samples, renamed=None):
            if renamed:  # the manifest's turn: every new unit is written
                os.kill(os.getpid(), signal.SIGKILL)
            return real(source, target, idxs, n_samples, renamed)
        module._erase_samples = erase
        module.VariantStore({str(data_dir)!r}).purge_erased()
    """)
    done = subprocess.run([sys.executable, "-c", script], cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert done.returncode == -9


def test_sweep_removes_only_old_unreferenced_folders(parted):
    data_dir, ds_dir, _ = parted
    (live,) = _folders(ds_dir)
    _killed_erasure(data_dir, "P3")
    before = _answers(data_dir)  # the erasure pending, its purge interrupted
    erased = _folders(ds_dir) - {live}
    assert (
        len(erased) == 1 and next(iter(erased)).startswith("parts-e") and any((ds_dir / next(iter(erased))).iterdir())
    )
    compacting = ds_dir / "parts-compact-v1-1"  # an interrupted compaction: a unit under its temporary name
    compacting.mkdir()
    shutil.copy(next((ds_dir / live).glob("*.sqlite")), compacting / ".build-1-ab.sqlite")
    young = ds_dir / "parts-resumable"  # an ingest still within the grace period (resumable)
    young.mkdir()
    for folder in (*erased, compacting.name, live):
        _age(ds_dir / folder, 2 * HOUR)

    _age(ds_dir / POINTER, 60)  # the live version switched a minute ago: a reader may hold the one before it
    assert sweep_dataset(data_dir, "cohort", grace_s=HOUR) == []
    _age(ds_dir / POINTER, 2 * HOUR)
    assert sorted(sweep_dataset(data_dir, "cohort", grace_s=HOUR)) == sorted([*erased, compacting.name])
    assert _folders(ds_dir) == {live, young.name}
    assert _answers(data_dir) == before  # the live version is intact, the purge never happened
    assert sweep_dataset(data_dir, "cohort", grace_s=HOUR) == []


def test_publish_sweeps_and_refuses_a_manifest_whose_units_were_swept(parted):
    data_dir, ds_dir, _ = parted
    (live,) = _folders(ds_dir)
    _killed_erasure(data_dir, "P5")
    (leftover,) = _folders(ds_dir) - {live}
    _age(ds_dir / leftover, 2 * HOUR)
    _age(ds_dir / POINTER, 2 * HOUR)
    store = VariantStore(data_dir)
    try:  # an erasure publishes a new manifest: the old leftover is swept on the way (default grace: 1 hour)
        assert store.erase_individual("P3") == 1
        assert store.purge_erased() == 1  # both pending erasures (P5's purge was killed) go into the units
    finally:
        store.close()
    (live,) = _folders(ds_dir)  # one sample batch: every unit rewritten into the erasure's folder
    assert live not in (leftover,) and live.startswith("parts-e")
    # A manifest naming units that are gone (swept while a resumed ingest was finishing) is never published.
    manifest = ds_dir / (ds_dir / POINTER).read_text().strip()
    build = ds_dir / ".build-1-cd.sqlite"
    shutil.copy(manifest, build)
    shutil.rmtree(ds_dir / live)
    with pytest.raises(UnitsMissing, match=live):
        publish(build)
    assert (ds_dir / POINTER).read_text().strip() == manifest.name


def test_cli_sweep_is_audited(parted, monkeypatch, capsys):
    data_dir, ds_dir, _ = parted
    main = cli_on(monkeypatch, data_dir)
    stale = ds_dir / "parts-e1-1"
    stale.mkdir()
    _age(stale, 3 * HOUR)
    _age(ds_dir / POINTER, 3 * HOUR)
    assert main(["variants", "sweep", "--dataset", "cohort", "--grace-hours", "4"]) == 0
    assert stale.is_dir() and "nothing to sweep" in capsys.readouterr().out
    assert main(["variants", "sweep", "--dataset", "cohort", "--grace-hours", "2"]) == 0
    assert not stale.exists() and "parts-e1-1" in capsys.readouterr().out
    assert main(["variants", "sweep", "--dataset", "no-such"]) == 1
    from gateway.security.audit import AuditLog

    assert AuditLog(data_dir).path.read_text().count('"cli variants sweep"') == 6  # intent and outcome, 3 runs
