"""Record-level g_variants responses with caseLevelData as the cohort grows (in process, not a test).

    python bench/record_response.py /tmp/vmem2500.vcf.gz /tmp/vmem100k.vcf.gz [--limits 10 100] [--repeat 30]

Each VCF is ingested as one dataset (every sample linked to an individual); then the Beacon engine answers a
record-granularity range query over the whole region (`engine.answer`: access rules, handler, records with up to
100 carriers each in caseLevelData, envelope, response validation), with the application's Security built once as
the server does. Printed: the p50 of CPU time and wall time per response, and the ratio to the first (smallest)
cohort in the same run. Issue 14 target: ≤ 50 ms in process at 100,000 samples. The first answer after opening a
version (reading its sample table) is timed apart.
"""

from __future__ import annotations

import argparse
import gzip
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def sample_names(vcf: Path) -> list[str]:
    with gzip.open(vcf, "rt") as fh:
        for line in fh:
            if line.startswith("#CHROM"):
                return line.rstrip("\n").split("\t")[9:]
    return []


def first_contig(vcf: Path) -> str:
    with gzip.open(vcf, "rt") as fh:
        for line in fh:
            if not line.startswith("#"):
                return line.split("\t", 1)[0]
    return "1"


def timed(call, repeat: int) -> tuple[float, float]:
    """p50 (CPU ms, wall ms)."""
    cpu, wall = [], []
    for _ in range(repeat):
        c, w = time.thread_time(), time.perf_counter()
        call()
        cpu.append((time.thread_time() - c) * 1000)
        wall.append((time.perf_counter() - w) * 1000)
    return statistics.median(cpu), statistics.median(wall)


def measure(vcf: Path, data_dir: Path, limits: list[int], repeat: int) -> dict:
    from gateway.beacon.context import QueryContext
    from gateway.beacon.engine import answer
    from gateway.beacon.g_variants import G_VARIANTS
    from gateway.beacon.request import parse_post
    from gateway.config import config_from_mapping
    from gateway.security.service import Security
    from gateway.variants.ingest import ingest_vcf
    from gateway.variants.normalise import normalise_reference_name
    from gateway.variants.store import VariantStore

    names = sample_names(vcf)
    if not (data_dir / "variants").exists():
        ingest_vcf(vcf, dataset_id="bench", data_dir=data_dir, assembly="GRCh38",
                   sample_map={n: f"ind-{i}" for i, n in enumerate(names)})  # fmt: skip
    config = config_from_mapping(
        {"datasets": [{"id": "bench", "security_level": "PUBLIC", "policy": {"profile": "open"}}]}
    )
    key = b"k" * 32
    store = VariantStore(data_dir)
    ctx = QueryContext(config=config, key=key, variants=store, security=Security.from_config(config, key, ()))
    chrom = normalise_reference_name(first_contig(vcf))
    out: dict = {"samples": len(names)}
    for limit in limits:
        body = {"query": {"requestParameters": {"referenceName": chrom, "start": [0], "end": [10**9]},
                          "requestedGranularity": "record", "pagination": {"limit": limit}}}  # fmt: skip
        request = parse_post(G_VARIANTS, body)
        if "first" not in out:
            started = time.perf_counter()
            response, status = answer(ctx, G_VARIANTS, request)
            out["first"] = (time.perf_counter() - started) * 1000
        response, status = answer(ctx, G_VARIANTS, request)
        results = response["response"]["resultSets"][0]["results"]
        assert status == 200 and len(results) == limit, (status, len(results))
        cases = sum(len(r.get("caseLevelData", ())) for r in results)
        out[limit] = (*timed(lambda request=request: answer(ctx, G_VARIANTS, request), repeat), cases)
    store.close()
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("vcfs", type=Path, nargs="+")
    parser.add_argument("--limits", type=int, nargs="+", default=[10, 100])
    parser.add_argument("--repeat", type=int, default=30)
    parser.add_argument("--work", type=Path, default=None, help="keep (and reuse) the stores here")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="record-response-") as tmp:
        work = args.work or Path(tmp)
        got = [measure(vcf, work / vcf.name.split(".")[0], args.limits, args.repeat) for vcf in args.vcfs]
    print(
        f"{'samples':>9} {'first answer':>13} "
        + " ".join(f"{f'{n} records (CPU / wall ms, ratio)':>42}" for n in args.limits)
    )
    for row in got:
        cells = []
        for n in args.limits:
            cpu, wall, cases = row[n]
            cells.append(f"{cpu:8.1f} / {wall:6.1f} ms {cpu / got[0][n][0]:5.2f}x ({cases:>5} cases)")
        print(f"{row['samples']:>9} {row['first']:>10.0f} ms " + " ".join(f"{c:>42}" for c in cells))
    print(f"load average {os.getloadavg()[0]:.1f} ({os.cpu_count()} cores); target: ≤ 50 ms at 100,000 samples")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
