"""Query latency as the number of partitions grows: the same VCF as one file and as 10 / 100 / 1,000 partitions.

    python bench/partition_queries.py /tmp/vcohort2500.vcf.gz [--spans 200000 20000 2000] [--queries 300]
        [--rounds 9] [--work DIR]

Exact lookup (search of one position and allele), carrier count of that variant, a 10 kb range count, and an
individual's variants (`/individuals/{id}/g_variants`: the first page of 10 and its total; every sample is linked to
an individual), in process, warm (every partition opened once before timing); ratio to the single-file store in the
same run (issue 14 target: within 1.5x). The stores are measured interleaved (every round times each store in turn, the
figure is the median round), so that a change of machine load during the run moves all of them alike. The
partitioned stores are written by a LocalCluster of 2 workers; `--work DIR` keeps them for a later run.
"""

from __future__ import annotations

import argparse
import os
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from record_response import sample_names  # noqa: E402 (bench/ is this script's own folder on sys.path)

from gateway.variants.distributed_ingest import ingest_partitioned  # noqa: E402
from gateway.variants.ingest import ingest_vcf  # noqa: E402
from gateway.variants.query import VariantQuery  # noqa: E402
from gateway.variants.store import VariantStore  # noqa: E402

KINDS = ("exact lookup", "carrier count", "10 kb range count", "individual's page", "person's first page")
INDIVIDUAL_QUERIES = 30  # individuals whose page is asked per pass (a call reaches every unit holding the person)


def one_pass_us(call, queries) -> tuple[float, float]:
    """(wall, CPU) µs per call over one pass: on a shared machine the wall time also holds the waits for a core,
    which the thread's CPU time does not."""
    wall, cpu = time.perf_counter(), time.thread_time()
    for q in queries:
        call(q)
    return (time.perf_counter() - wall) / len(queries) * 1e6, (time.thread_time() - cpu) / len(queries) * 1e6


def calls(store: VariantStore, exact: list, ranges: list, people: list[str]) -> dict[str, tuple]:
    return {
        "exact lookup": (lambda q: store.search(q, limit=10), exact),
        "carrier count": (store.carrier_count, exact),
        "10 kb range count": (store.count, ranges),
        "individual's page": (lambda person: store.variants_of_individual(person, limit=10), people),
        # the same with the person's per-unit counts not yet read (store._Dataset.carried_counts keeps them)
        "person's first page": (lambda person: first_page(store, person), people),
    }


def first_page(store: VariantStore, person: str):
    """The person's page as if asked first: the per-unit counts the version keeps for people set aside meanwhile."""
    version = store._open("q")
    if version is None or not version.partitions:
        return store.variants_of_individual(person, limit=10)
    kept, version._carried = version._carried, type(version._carried)()
    try:
        return store.variants_of_individual(person, limit=10)
    finally:
        version._carried = kept


def measure(
    stores: dict[str, VariantStore], exact: list, ranges: list, people: list[str], rounds: int
) -> dict[str, dict[str, tuple[float, float]]]:
    """Median (wall, CPU) µs per call per store and kind, the stores timed in turn within each round."""
    plans = {name: calls(store, exact, ranges, people) for name, store in stores.items()}
    for plan in plans.values():  # warm: every partition reached once, statements prepared
        for call, queries in plan.values():
            one_pass_us(call, queries)
    times: dict[str, dict[str, list[tuple[float, float]]]] = {name: {k: [] for k in KINDS} for name in stores}
    for _ in range(rounds):
        for name, plan in plans.items():
            for kind, (call, queries) in plan.items():
                times[name][kind].append(one_pass_us(call, queries))
    return {
        name: {k: (statistics.median(t[0] for t in v), statistics.median(t[1] for t in v)) for k, v in by_kind.items()}
        for name, by_kind in times.items()
    }


def build(vcf: Path, root: Path, spans: list[int]) -> dict[str, Path]:
    """The single-file store and one partitioned store per span (kept when already in `root`)."""
    from distributed import LocalCluster

    dirs = {"single file": root / "single"}
    links = {name: f"ind-{i}" for i, name in enumerate(sample_names(vcf))}
    if not dirs["single file"].exists():
        ingest_vcf(vcf, dataset_id="q", data_dir=dirs["single file"], assembly="GRCh38", sample_map=links)
    missing = [span for span in spans if not (root / f"span{span}").exists()]
    if missing:
        with LocalCluster(n_workers=2, threads_per_worker=1, host="127.0.0.1", dashboard_address=None) as cluster:
            for span in missing:
                started = time.perf_counter()
                ingest_partitioned(vcf, dataset_id="q", data_dir=root / f"span{span}", assembly="GRCh38", span=span,
                                   sample_map=links, cluster=cluster.scheduler_address)  # fmt: skip
                print(f"span {span}: ingest {time.perf_counter() - started:.0f} s", flush=True)
    for span in spans:
        dirs[f"span {span}"] = root / f"span{span}"
    return dirs


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("vcf", type=Path)
    parser.add_argument("--spans", type=int, nargs="+", default=[200_000, 20_000, 2_000])
    parser.add_argument("--queries", type=int, default=300)
    parser.add_argument("--rounds", type=int, default=9)
    parser.add_argument("--work", type=Path, default=None, help="keep (and reuse) the stores here")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="partition-queries-") as tmp:
        dirs = build(args.vcf, args.work or Path(tmp), args.spans)
        stores = {name: VariantStore(path) for name, path in dirs.items()}
        single = stores["single file"]
        hits, _ = single.search(VariantQuery(), limit=1_000_000)
        rng = random.Random(3)
        chosen = rng.sample(hits, min(args.queries, len(hits)))
        exact = [VariantQuery(reference_name=h.reference_name, start=h.start, alternate_bases=h.alternate_bases)
                 for h in chosen]  # fmt: skip
        ranges = []
        for h in chosen:
            start = max(h.start - rng.randint(0, 10_000), 0)
            ranges.append(VariantQuery(reference_name=h.reference_name, start=start, end=start + 10_000))
        people = [f"ind-{i}" for i in rng.sample(range(len(sample_names(args.vcf))), INDIVIDUAL_QUERIES)]
        for name, store in stores.items():
            assert [store.count(q) for q in ranges] == [single.count(q) for q in ranges], name
            assert [store.carrier_count(q) for q in exact] == [single.carrier_count(q) for q in exact], name
            pages = [store.variants_of_individual(p, limit=10) for p in people]
            assert pages == [single.variants_of_individual(p, limit=10) for p in people], name
        load_before = os.getloadavg()[0]
        got = measure(stores, exact, ranges, people, args.rounds)
        load_after = os.getloadavg()[0]
        floor = got["single file"]
        for which, title in ((1, "CPU time per call"), (0, "wall time per call")):
            print(f"{title:<22} " + " ".join(f"{name:>26}" for name in KINDS))
            for name, store in stores.items():
                version = store._open("q")
                label = f"{len(version.partitions)} partitions" if version and version.partitions else name
                cells = (f"{got[name][k][which]:>17.1f} µs {got[name][k][which] / floor[k][which]:.2f}x" for k in KINDS)
                print(f"{label:<22} " + " ".join(cells))
        print(f"load average {load_before:.1f} before, {load_after:.1f} after ({os.cpu_count()} cores)")
        for store in stores.values():
            store.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
