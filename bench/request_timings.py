"""Benchmark aid (not a test): where an individuals request's time goes, per request, inside gunicorn workers.

    BENCH_TIMINGS_DIR=/tmp/timings GUNICORN_CMD_ARGS="--config bench/request_timings.py" \
        python3 bench/beacon_query.py ...
    python3 bench/request_timings.py /tmp/timings [TREE]  # the summary: slowest requests and what they spent
                                                          # (TREE: the served checkout's directory name)

A gunicorn config file: after a worker forks, the functions of the individuals path are wrapped with wall and
CPU (thread) timers that add into the current request's record; each worker writes its records to
BENCH_TIMINGS_DIR/<pid>.json when it exits. Nested parts are inclusive (a stale page's second try contains its
own page read). Measures the code as it is, nothing is changed but the timers.
"""

from __future__ import annotations

import functools
import json
import os
import sys
import threading
import time
from pathlib import Path

_local = threading.local()
_records: list[dict] = []
_lock = threading.Lock()

# module, attribute (Class.method for methods), label
_PARTS = [
    ("gateway.beacon.individuals", "selection_for", "selection_for"),
    ("gateway.beacon.individuals", "current_snapshot", "current_snapshot"),
    ("gateway.beacon.individuals", "present_terms", "present_terms_sql"),
    ("gateway.beacon.individuals", "plan_filters", "plan_filters"),
    ("gateway.beacon.individuals", "_index_answer", "answer_from_index"),
    ("gateway.beacon.individuals", "_answer_after_stale_page", "stale_page_retry"),
    ("gateway.beacon.individuals", "_documents", "page_read"),
    ("gateway.beacon.individuals", "individual_of", "render"),
    ("gateway.beacon.individuals", "Selection.count_by_dataset", "sql_count_by_dataset"),
    ("gateway.beacon.individuals", "Selection.page", "sql_page"),
    ("gateway.beacon.individuals", "Selection.count", "sql_count"),
    ("gateway.beacon.term_index", "Snapshot.select", "mask"),
    ("gateway.beacon.term_index", "TermIndex.current", "index_current"),
    ("gateway.beacon.term_index", "TermIndex._patch", "index_patch_or_wait"),
    ("gateway.beacon.term_index", "TermIndex._rebuild", "index_rebuild"),
    ("gateway.beacon.term_index", "PostgresSource.patch", "patch_read_and_apply"),
    ("gateway.beacon.term_index", "patched", "patch_apply"),
    ("gateway.store.reads", "PostgresReads.change_counter", "counter_read"),
    ("gateway.store.reads", "PostgresReads.page", "page_db_read"),  # page_read less this: a stale read's rows reused
    ("gateway.store.metadata", "MetadataStore.save_phenopackets", "write_save"),
]


def _timed(label: str, function):
    @functools.wraps(function)
    def wrapper(*args, **kwargs):
        record = getattr(_local, "record", None)
        if record is None:
            return function(*args, **kwargs)
        wall, cpu = time.perf_counter(), time.thread_time()
        try:
            return function(*args, **kwargs)
        finally:
            part = record["parts"].setdefault(label, [0, 0.0, 0.0])
            part[0] += 1
            part[1] += time.perf_counter() - wall
            part[2] += time.thread_time() - cpu

    return wrapper


def _request_root(function, label: str):
    @functools.wraps(function)
    def wrapper(*args, **kwargs):
        if getattr(_local, "record", None) is not None:
            return function(*args, **kwargs)
        record = {"kind": label, "parts": {}}
        if label == "individuals":
            record["granularity"] = str(args[2] if len(args) > 2 else kwargs.get("granularity"))
        _local.record = record
        wall, cpu = time.perf_counter(), time.thread_time()
        try:
            return function(*args, **kwargs)
        finally:
            record["wall"] = time.perf_counter() - wall
            record["cpu"] = time.thread_time() - cpu
            record["at"] = time.time()
            _local.record = None
            with _lock:
                _records.append(record)

    return wrapper


def _install() -> None:
    import importlib

    for module_name, attribute, label in _PARTS:
        module = importlib.import_module(module_name)
        owner: object = module
        name = attribute
        if "." in attribute:
            class_name, name = attribute.split(".")
            owner = getattr(module, class_name)
        setattr(owner, name, _timed(label, getattr(owner, name)))
    from gateway.beacon import individuals
    from gateway.store import metadata

    wrapped = _request_root(individuals.answer_individuals, "individuals")
    individuals.answer_individuals = wrapped
    object.__setattr__(individuals.INDIVIDUALS, "handler", wrapped)  # a frozen dataclass the engine calls from
    store = metadata.MetadataStore
    store.save_phenopackets = _request_root(store.save_phenopackets, "write")


def post_fork(server, worker) -> None:  # gunicorn hook
    _install()


def worker_exit(server, worker) -> None:  # gunicorn hook
    out = os.environ.get("BENCH_TIMINGS_DIR")
    if not out:
        return
    Path(out).mkdir(parents=True, exist_ok=True)
    with _lock:
        records = list(_records)
    Path(out, f"{Path.cwd().name}-{os.getpid()}.json").write_text(json.dumps(records))  # cwd: the tree served


def summary(directory: Path, tree: str = "") -> None:
    records = [r for f in sorted(directory.glob(f"{tree}*.json")) for r in json.loads(f.read_text())]
    for kind, granularity in sorted({(r["kind"], r.get("granularity")) for r in records}, key=str):
        rows = sorted((r for r in records if r["kind"] == kind and r.get("granularity") == granularity),
                      key=lambda r: r["wall"])  # fmt: skip
        if not rows:
            continue
        n = len(rows)
        print(f"\n{kind} {granularity}: {n} requests, in-handler wall p50 {1000 * rows[n // 2]['wall']:.1f} ms"
              f" p99 {1000 * rows[int(n * 0.99)]['wall']:.1f} ms, cpu p50 {1000 * rows[n // 2]['cpu']:.1f} ms")  # fmt: skip
        for share, chosen in (("all", rows), ("slowest 2%", rows[int(n * 0.98):])):  # fmt: skip
            totals: dict[str, list[float]] = {}
            for r in chosen:
                for label, (calls, wall, cpu) in r["parts"].items():
                    t = totals.setdefault(label, [0, 0.0, 0.0, 0])
                    t[0] += calls
                    t[1] += wall
                    t[2] += cpu
                    t[3] += 1
            m = len(chosen)
            print(f"  {share} ({m}): mean wall {1000 * sum(r['wall'] for r in chosen) / m:.1f} ms,"
                  f" cpu {1000 * sum(r['cpu'] for r in chosen) / m:.1f} ms per request")  # fmt: skip
            for label, (calls, wall, cpu, present) in sorted(totals.items(), key=lambda kv: -kv[1][1]):
                print(f"    {label:24s} in {present:5d} req, {calls / m:5.2f} calls/req,"
                      f" wall {1000 * wall / m:7.2f} ms/req, cpu {1000 * cpu / m:7.2f} ms/req")  # fmt: skip


if __name__ == "__main__":
    summary(Path(sys.argv[1]), *sys.argv[2:])
