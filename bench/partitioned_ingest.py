"""Partitioned ingest on Dask against the single-file ingest of the same BGZF VCF, in one run (ratios, not times).

    python3 bench/make_vcf.py --samples 25000 --megabases 2 --seed 3 -o /tmp/dask25k.vcf.gz
    tabix -p vcf /tmp/dask25k.vcf.gz      # a call set ships with its index (else the bench makes it, once)
    python3 bench/partitioned_ingest.py /tmp/dask25k.vcf.gz --span 250000 --repeat 2

Rows, interleaved per repeat so that the machine's load hits each alike: the single-file ingest (one parsing
child), the partitioned ingest in one local process (one parsing child for every partition), and the same
partitions on a LocalCluster of 1 and of 2 Dask worker processes (the gateway's own `local_cluster`, as
`--workers N` starts it), started before the clock as a deployed cluster would be (start-up printed apart). Wall
time, CPU seconds of every process involved (this one with the scheduler and nannies, the parsing children, the
workers), the load average when the row ended, and per partition the wall and CPU seconds inside its task. CPU
seconds do not depend on the machine's load the way wall time does: on a shared machine the speed-up in CPU terms
(total CPU of 1 worker over that of 2 workers) says whether the work split; the wall ratio says whether free cores
were there to run it.

The serial part of a partitioned ingest is measured apart: the head (from the call to the first task's start:
header, sample links, plan, client, the links sent to the workers) and the tail (from the last task's end to the
return: manifest, publish). From these and the tasks' CPU the bench computes the wall ratio that two free cores
would give (head + tail + the tasks' CPU with 1 worker, over head + tail + the busier worker's task CPU with 2):
the figure to compare with the target on a shared machine, whose own wall ratio mostly measures the load.
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from gateway.variants import distributed_ingest  # noqa: E402
from gateway.variants.ingest import ingest_vcf  # noqa: E402


def _own_cpu() -> float:
    own, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + kids.ru_utime + kids.ru_stime


def _process_cpu() -> float:
    import psutil

    times = psutil.Process().cpu_times()
    return times.user + times.system


def _workers_cpu(client) -> float:
    return sum(client.run(_process_cpu).values()) if client is not None else 0.0


class _Tasks:
    """Catches the per-partition summaries (wall, CPU, pid of each task) on their way to the publish step."""

    def __init__(self):
        self.results: list[dict] = []
        self._run = distributed_ingest._run_partitions

    def __enter__(self):
        def spy(*args, **kwargs):
            results = self._run(*args, **kwargs)
            self.results = results
            return results

        distributed_ingest._run_partitions = spy
        return self

    def __exit__(self, *exc):
        distributed_ingest._run_partitions = self._run


def measure(run, client) -> dict:
    with tempfile.TemporaryDirectory(prefix="partitioned-bench-") as data, _Tasks() as tasks:
        own, workers = _own_cpu(), _workers_cpu(client)
        started, epoch = time.perf_counter(), time.time()
        summary = run(Path(data))
        wall, ended = time.perf_counter() - started, time.time()
        own = _own_cpu() - own
        workers = _workers_cpu(client) - workers
    timed = [t for t in tasks.results if "started" in t]
    return {
        "wall": wall,
        "cpu": own + workers,
        "own_cpu": own,  # this process: the coordinator, the client, and a LocalCluster's scheduler and nannies
        "workers_cpu": workers,
        # the serial parts: before the first task started, after the last one ended (wall)
        "head": min(t["started"] for t in timed) - epoch if timed else 0.0,
        "tail": ended - max(t["ended"] for t in timed) if timed else 0.0,
        "load": os.getloadavg()[0],
        "units": len(summary.partitions) or 1,
        "records": summary.records_read,
        "tasks": tasks.results,
    }


def _start_clusters(sizes: list[int]) -> dict:
    from distributed import Client

    clusters = {}
    for n in sizes:
        started = time.perf_counter()
        cluster = distributed_ingest.local_cluster(n)  # the gateway's own (--workers N)
        client = Client(cluster)
        print(f"LocalCluster of {n} worker(s) started in {time.perf_counter() - started:.1f} s (not in the rows)")
        clusters[n] = (cluster, client)
    return clusters


def _report(rows: dict[str, list[dict]], floor_name: str, one: str, two: str) -> None:
    def med(name: str, key: str) -> float:
        return statistics.median(r[key] for r in rows[name])

    floor = med(floor_name, "wall")
    print(f"\n{'row':<34} {'units':>5} {'wall s':>8} {'CPU s':>8} {'vs single':>9}  load average per repeat")
    for name, runs in rows.items():
        loads = " ".join(f"{r['load']:.1f}" for r in runs)
        walls = " ".join(f"{r['wall']:.1f}" for r in runs)
        print(
            f"{name:<34} {runs[0]['units']:>5} {med(name, 'wall'):8.2f} {med(name, 'cpu'):8.2f} "
            f"{floor / med(name, 'wall'):8.2f}x  [{loads}]  (walls {walls})"
        )
    per_repeat = " ".join(f"{a['wall'] / b['wall']:.2f}" for a, b in zip(rows[one], rows[two], strict=True))
    print(
        f"\n2 workers / 1 worker: wall speed-up {med(one, 'wall') / med(two, 'wall'):.2f}x (per repeat: {per_repeat}); "
        f"CPU 2w/1w {med(two, 'cpu') / med(one, 'cpu'):.2f}"
    )
    print(
        "CPU-time speed-up (load-independent; the busiest worker's task CPU in the 2-worker run against the 1-worker "
        f"run's task CPU, per repeat): {' '.join(f'{x:.2f}' for x in _cpu_speedups(rows[one], rows[two]))}"
    )
    print("\nserial part and overheads (median over repeats; head/tail are wall, so they grow with the load):")
    for name in (one, two):
        head, tail = med(name, "head"), med(name, "tail")
        tasks = statistics.median(sum(t["cpu_seconds"] for t in r["tasks"]) for r in rows[name])
        print(
            f"  {name:<28} head {head:5.2f} s, tail {tail:5.2f} s; CPU: this process {med(name, 'own_cpu'):5.2f} s, "
            f"workers {med(name, 'workers_cpu'):5.2f} s of which tasks {tasks:5.2f} s"
        )
    projected = [_projected(a, b) for a, b in zip(rows[one], rows[two], strict=True)]
    print(
        "wall ratio 2w/1w on two free cores, from the measured parts (head + tail + the tasks' CPU of 1 worker, over "
        "head + tail + the busier worker's task CPU of 2 workers), per repeat: "
        + " ".join(f"{x:.2f}" for x in projected)
    )
    for name in (one, two):
        print(f"\nper partition, {name} (last repeat): wall s / CPU s / worker pid")
        for task in rows[name][-1]["tasks"]:
            print(f"  {task['region']:<24} {task['seconds']:6.2f} {task['cpu_seconds']:6.2f}  {task['pid']}")


def _projected(one: dict, two: dict) -> float:
    """The wall ratio that free cores would give: serial parts (head, tail) plus the parallel part (task CPU)."""
    per_worker: dict[int, float] = {}
    for task in two["tasks"]:
        per_worker[task["pid"]] = per_worker.get(task["pid"], 0.0) + task["cpu_seconds"]
    serial_one, serial_two = one["head"] + one["tail"], two["head"] + two["tail"]
    return (serial_one + sum(t["cpu_seconds"] for t in one["tasks"])) / (serial_two + max(per_worker.values()))


def _cpu_speedups(ones: list[dict], twos: list[dict]) -> list[float]:
    """What 2 workers would gain with two free cores: the tasks' CPU on one worker over the CPU of the busier of
    the two workers (the critical path, the coordinator's few tenths of a second left out)."""
    out = []
    for one, two in zip(ones, twos, strict=True):
        per_worker: dict[int, float] = {}
        for task in two["tasks"]:
            per_worker[task["pid"]] = per_worker.get(task["pid"], 0.0) + task["cpu_seconds"]
        out.append(sum(t["cpu_seconds"] for t in one["tasks"]) / max(per_worker.values()))
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("vcf", type=Path)
    parser.add_argument("--span", type=int, default=250_000, help="bp per partition")
    parser.add_argument("--repeat", type=int, default=2)
    parser.add_argument("--assembly", default="GRCh38")
    parser.add_argument("--skip-local", action="store_true", help="leave out the one-local-process row")
    args = parser.parse_args(argv)
    if not Path(f"{args.vcf}.tbi").is_file():
        started = time.perf_counter()
        subprocess.run(["tabix", "-p", "vcf", str(args.vcf)], check=True)
        print(f"tabix index made in {time.perf_counter() - started:.1f} s (once, not in the rows)")
    common = {"dataset_id": "bench", "assembly": args.assembly}
    clusters = _start_clusters([1, 2])
    one, two = "partitioned, 1 Dask worker", "partitioned, 2 Dask workers"
    runs = {"single file": (lambda d: ingest_vcf(args.vcf, data_dir=d, **common), None)}
    if not args.skip_local:
        runs["partitioned, 1 local process"] = (
            lambda d: distributed_ingest.ingest_partitioned(args.vcf, data_dir=d, span=args.span, **common),
            None,
        )
    for name, n in ((one, 1), (two, 2)):
        cluster, client = clusters[n]
        runs[name] = (
            lambda d, address=cluster.scheduler_address: distributed_ingest.ingest_partitioned(
                args.vcf, data_dir=d, span=args.span, cluster=address, **common
            ),
            client,
        )
    print(f"{args.vcf}: load average before {os.getloadavg()}")
    rows: dict[str, list[dict]] = {name: [] for name in runs}
    try:
        for repeat in range(args.repeat):
            for name, (run, client) in runs.items():
                rows[name].append(measure(run, client))
                last = rows[name][-1]
                print(
                    f"  repeat {repeat + 1} {name:<32} {last['wall']:7.2f} s wall {last['cpu']:7.2f} s CPU "
                    f"load {last['load']:.1f}",
                    flush=True,
                )
    finally:
        for cluster, client in clusters.values():
            client.close()
            cluster.close()
    _report(rows, "single file", one, two)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
