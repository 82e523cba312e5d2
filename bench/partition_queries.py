"""Query latency as the number of partitions grows: the same VCF as one file and as 10 / 100 / 1,000 partitions.

    python bench/partition_queries.py /tmp/vcohort2500.vcf.gz [--spans 200000 20000 2000] [--queries 300]

Exact lookup (search of one position and allele), carrier count of that variant, and a 10 kb range count, in
process, warm (every partition opened once before timing); ratio to the single-file store in the same run
(issue 14 target: within 1.5x). The partitioned stores are written by a LocalCluster of 2 workers.
"""

from __future__ import annotations

import argparse
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from gateway.variants.distributed_ingest import ingest_partitioned  # noqa: E402
from gateway.variants.ingest import ingest_vcf  # noqa: E402
from gateway.variants.query import VariantQuery  # noqa: E402
from gateway.variants.store import VariantStore  # noqa: E402


def per_call_us(call, queries) -> float:
    for q in queries:  # warm: connections and pages
        call(q)
    rounds = []
    for _ in range(3):
        started = time.perf_counter()
        for q in queries:
            call(q)
        rounds.append((time.perf_counter() - started) / len(queries) * 1e6)
    return statistics.median(rounds)


def measure(store: VariantStore, exact: list, ranges: list) -> dict[str, float]:
    return {
        "exact lookup": per_call_us(lambda q: store.search(q, limit=10), exact),
        "carrier count": per_call_us(store.carrier_count, exact),
        "10 kb range count": per_call_us(store.count, ranges),
    }


def main(argv: list[str] | None = None) -> int:
    from distributed import LocalCluster

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("vcf", type=Path)
    parser.add_argument("--spans", type=int, nargs="+", default=[200_000, 20_000, 2_000])
    parser.add_argument("--queries", type=int, default=300)
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="partition-queries-") as tmp:
        root = Path(tmp)
        ingest_vcf(args.vcf, dataset_id="q", data_dir=root / "single", assembly="GRCh38")
        single = VariantStore(root / "single")
        hits, _ = single.search(VariantQuery(), limit=1_000_000)
        rng = random.Random(3)
        chosen = rng.sample(hits, min(args.queries, len(hits)))
        exact = [VariantQuery(reference_name=h.reference_name, start=h.start, alternate_bases=h.alternate_bases)
                 for h in chosen]  # fmt: skip
        ranges = []
        for h in chosen:
            start = max(h.start - rng.randint(0, 10_000), 0)
            ranges.append(VariantQuery(reference_name=h.reference_name, start=start, end=start + 10_000))
        floor = measure(single, exact, ranges)
        print(f"{'store':<22} " + " ".join(f"{name:>26}" for name in floor))
        print(f"{'single file':<22} " + " ".join(f"{floor[n]:>17.1f} µs 1.00x" for n in floor), flush=True)
        with LocalCluster(n_workers=2, threads_per_worker=1, host="127.0.0.1", dashboard_address=None) as cluster:
            for span in args.spans:
                data = root / f"span{span}"
                started = time.perf_counter()
                summary = ingest_partitioned(args.vcf, dataset_id="q", data_dir=data, assembly="GRCh38", span=span,
                                             cluster=cluster.scheduler_address)  # fmt: skip
                took = time.perf_counter() - started
                store = VariantStore(data)
                assert store.count(VariantQuery()) == single.count(VariantQuery())
                got = measure(store, exact, ranges)
                label = f"{len(summary.partitions)} partitions"
                print(f"{label:<22} " + " ".join(f"{got[n]:>17.1f} µs {got[n] / floor[n]:.2f}x" for n in got)
                      + f"   (ingest {took:.0f} s)", flush=True)  # fmt: skip
                store.close()
        single.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
