"""Partitioned ingest on Dask against the single-file ingest of the same BGZF VCF, in one run (ratios, not times).

    python bench/make_vcf.py --samples 2500 --megabases 2 --seed 2 -o /tmp/vcohort2500.vcf.gz
    python bench/partitioned_ingest.py /tmp/vcohort2500.vcf.gz --span 500000 [--workers 2] [--repeat 2]

Rows: the single-file ingest (one parsing child), the partitioned ingest with one local process (partitions one
after the other, each in the ingest child), and with N Dask worker processes on a LocalCluster (cluster start-up
included). The speed-up of N workers is bounded by the cores that are free: this machine has 2, shared.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from gateway.variants.distributed_ingest import ingest_partitioned  # noqa: E402
from gateway.variants.ingest import ingest_vcf  # noqa: E402


def timed(run) -> tuple[float, int]:
    with tempfile.TemporaryDirectory(prefix="partitioned-bench-") as data:
        started = time.perf_counter()
        summary = run(Path(data))
        return time.perf_counter() - started, len(summary.partitions) or 1


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("vcf", type=Path)
    parser.add_argument("--span", type=int, default=500_000, help="bp per partition")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--repeat", type=int, default=2)
    parser.add_argument("--assembly", default="GRCh38")
    args = parser.parse_args(argv)
    common = {"dataset_id": "bench", "assembly": args.assembly}
    runs = {
        "single file": lambda d: ingest_vcf(args.vcf, data_dir=d, **common),
        "partitioned, 1 local process": lambda d: ingest_partitioned(args.vcf, data_dir=d, span=args.span, **common),
        f"partitioned, {args.workers} Dask workers": lambda d: ingest_partitioned(
            args.vcf, data_dir=d, span=args.span, workers=args.workers, **common
        ),
    }
    seconds: dict[str, list[float]] = {name: [] for name in runs}
    partitions = {}
    for _ in range(args.repeat):  # interleaved, so that machine load hits every row alike
        for name, run in runs.items():
            elapsed, partitions[name] = timed(run)
            seconds[name].append(elapsed)
    floor = statistics.median(seconds["single file"])
    for name, values in seconds.items():
        median = statistics.median(values)
        print(
            f"{name:<34} {partitions[name]:>4} unit(s)  {median:7.2f} s   speed-up vs single file {floor / median:5.2f}x"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
