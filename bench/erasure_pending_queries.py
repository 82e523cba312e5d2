"""What an erasure pending in a partitioned version costs readers until its purge (gateway/variants/pending.py).

    python bench/erasure_pending_queries.py /tmp/es-cohort.vcf.gz [--samples 1000] [--span 100000]

The first `--samples` samples of the VCF are ingested partitioned into one store and copied; in the copy one person
is erased (pending: the units of their batch are read through the delta's views). Warm, in-process query CPU time
per call on both stores, interleaved (exact lookup, carrier count, 10 kb range count, a record's carriers), and the
ratio pending / plain. The same copy is then purged and measured again (ratio purged / plain).
"""

from __future__ import annotations

import argparse
import os
import random
import shutil
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.sample_batches import cut  # noqa: E402
from gateway.variants.distributed_ingest import ingest_partitioned  # noqa: E402
from gateway.variants.query import VariantQuery  # noqa: E402
from gateway.variants.store import VariantStore  # noqa: E402


def per_call_cpu_us(call, args: list) -> float:
    for a in args:  # warm: open units, fill caches
        call(a)
    best = float("inf")
    for _ in range(3):
        started = time.process_time()
        for a in args:
            call(a)
        best = min(best, (time.process_time() - started) / len(args) * 1e6)
    return best


def latencies(store: VariantStore, exact: list, ranges: list, ids: list) -> dict[str, float]:
    return {
        "exact lookup": per_call_cpu_us(store.search, exact),
        "carrier count": per_call_cpu_us(store.carrier_count, exact),
        "10 kb range count": per_call_cpu_us(store.count, ranges),
        "carriers of a record": per_call_cpu_us(lambda v: store.carrier_rows(v, 100), ids),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("vcf", type=Path)
    parser.add_argument("--samples", type=int, default=1000)
    parser.add_argument("--span", type=int, default=100_000)
    args = parser.parse_args()
    print("load:", os.getloadavg())
    with tempfile.TemporaryDirectory(prefix="erasure-pending-") as tmp:
        root = Path(tmp)
        vcf = cut(args.vcf, root / "cohort.vcf.gz", range(args.samples))
        sample_map = {f"SAMPLE{i:03d}": f"I{i}" for i in range(args.samples)}
        plain_dir, pending_dir = root / "plain", root / "pending"
        common = {"dataset_id": "c", "assembly": "GRCh38", "span": args.span, "sample_map": sample_map}
        ingest_partitioned(vcf, data_dir=plain_dir, **common)
        shutil.copytree(plain_dir, pending_dir)
        plain, pending = VariantStore(plain_dir), VariantStore(pending_dir)
        try:
            assert pending.erase_individual("I7") == 1
            hits, _ = plain.search(VariantQuery(), limit=100_000)
            picked = random.Random(1).sample(hits, min(300, len(hits)))
            exact = [VariantQuery(reference_name=h.reference_name, start=h.start, alternate_bases=h.alternate_bases)
                     for h in picked]  # fmt: skip
            ranges = [
                VariantQuery(reference_name=h.reference_name, start=h.start, end=h.start + 10_000) for h in picked
            ]
            ids = [h.variant_id for h in picked]
            base = latencies(plain, exact, ranges, ids)
            held = latencies(pending, exact, ranges, ids)
            assert pending.purge_erased() == 1
            purged = latencies(pending, exact, ranges, ids)
            base_again = latencies(plain, exact, ranges, ids)
        finally:
            plain.close()
            pending.close()
    for name in base:
        floor = (base[name] + base_again[name]) / 2
        print(
            f"{name}: plain {floor:.0f} us, pending {held[name]:.0f} us ({held[name] / floor:.2f}x), "
            f"purged {purged[name]:.0f} us ({purged[name] / floor:.2f}x)"
        )
    print("load:", os.getloadavg())
    return 0


if __name__ == "__main__":
    sys.exit(main())
