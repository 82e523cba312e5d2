"""Store size per carrier entry, per site and per genotype of one ingested VCF (issue 14's sizing inputs).

python bench/store_size.py /tmp/vmem2500.vcf.gz [/tmp/vmem25k.vcf.gz ...]
"""

from __future__ import annotations

import sqlite3
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from gateway.variants.ingest import ingest_vcf  # noqa: E402


def measure(path: Path) -> str:
    with tempfile.TemporaryDirectory(prefix="store-size-") as data:
        started = time.perf_counter()
        summary = ingest_vcf(path, dataset_id="size", data_dir=Path(data), assembly="GRCh38")
        seconds = time.perf_counter() - started
        (version,) = Path(data).rglob("v*.sqlite")
        conn = sqlite3.connect(version)
        entries, sites = conn.execute("SELECT sum(carriers), count(*) FROM variants").fetchone()
        conn.close()
        size = version.stat().st_size
    return (
        f"{path.name}: {summary.samples} samples, {sites} variants, ingest {seconds:.1f} s, store {size / 1e6:.1f} MB, "
        f"{entries / sites:.0f} carriers per site, {size / entries:.2f} B per carrier entry, {size / sites:,.0f} B per "
        f"site, {size / (summary.samples * sites):.3f} B per genotype"
    )


if __name__ == "__main__":
    for arg in sys.argv[1:]:
        print(measure(Path(arg)), flush=True)
