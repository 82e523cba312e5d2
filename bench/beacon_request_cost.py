"""Benchmark (not a test): the in-process cost of one individuals request, PostgreSQL vs SQLite.

    python bench/beacon_request_cost.py [--individuals 100000] [--requests 400]
                                        [--database-url postgresql+psycopg://postgres@127.0.0.1:5432/test]
                                        [--profile]

The same cohort as bench/beacon_query.py is generated into a SQLite file and into a fresh PostgreSQL schema;
each store is served by the application in this process (Flask's test client: no HTTP, no gunicorn) and the
same requests are sent to both, at count and record granularity, after the term index is warm. Reported per
store and granularity: mean and p50/p99 wall time per request, and the database round trips per request
(every statement, commit and rollback the psycopg driver sends; SQLite has none). On a shared machine the
ratio PostgreSQL/SQLite in the same run is the figure to read; with --profile the cProfile top entries of the
PostgreSQL record requests are printed as well.
"""

from __future__ import annotations

import argparse
import cProfile
import json
import pstats
import random
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from bench.beacon_query import DATASET, _schema, generate, hpo_pool, queries  # noqa: E402


class RoundTrips:
    """Counts what the psycopg driver sends to the server (statements, commits and rollbacks of a transaction)."""

    def __init__(self) -> None:
        self.count = 0

    def install(self) -> None:
        import psycopg

        counter = self

        def counted(method):
            def wrapper(self, *args, **kwargs):
                counter.count += 1
                return method(self, *args, **kwargs)

            return wrapper

        def counted_if_in_transaction(method):
            def wrapper(self, *args, **kwargs):
                if self.pgconn.transaction_status != psycopg.pq.TransactionStatus.IDLE:
                    counter.count += 1
                return method(self, *args, **kwargs)

            return wrapper

        psycopg.Cursor.execute = counted(psycopg.Cursor.execute)  # type: ignore[method-assign]
        psycopg.Connection.commit = counted_if_in_transaction(psycopg.Connection.commit)  # type: ignore[method-assign]
        psycopg.Connection.rollback = counted_if_in_transaction(psycopg.Connection.rollback)  # type: ignore[method-assign]


def make_app(data_dir: Path, url: str | None):
    from app import create_app

    return create_app(
        {
            "data_dir": str(data_dir),
            **({"database_url": url} if url else {}),
            "secret_key": "00" * 32,
            "log_level": "WARNING",
            "node": {"id": "org.example.bench", "base_url": "http://127.0.0.1"},
            "datasets": [{"id": DATASET, "security_level": "PUBLIC", "policy": {"profile": "open"}}],
            "security": {"budget": {"anonymous": None}},
        }
    )


def warm(client, n: int) -> None:
    """Until the term index answers (it is built in a background thread above 20,000 individuals)."""
    deadline = time.time() + max(10.0, n / 5_000)
    while time.time() < deadline:
        client.get("/api/individuals?filters=HP:0000118&requestedGranularity=count")
        time.sleep(0.2)
        from gateway.beacon.individuals import current_snapshot

        app = client.application
        s = app.extensions["gateway"]
        from gateway.beacon.context import QueryContext

        ctx = QueryContext(config=s.config, key=s.key, variants=s.variants, store=s.store, cache=s.beacon_cache)
        if current_snapshot(ctx) is not None:
            return
    raise SystemExit("the term index did not become current")


def measure(client, batch, granularity: str, requests: int, trips: RoundTrips, profile: cProfile.Profile | None):
    rng = random.Random(5)
    times = []
    before = trips.count
    for _ in range(requests):
        body = {"query": {"filters": rng.choice(batch), "requestedGranularity": granularity,
                          "pagination": {"skip": 0, "limit": 10}}}  # fmt: skip
        started = time.perf_counter()
        if profile is not None:
            profile.enable()
        response = client.post("/api/individuals", json=body)
        if profile is not None:
            profile.disable()
        times.append(time.perf_counter() - started)
        assert response.status_code == 200, response.get_data(as_text=True)
    times.sort()
    return {
        "mean_ms": round(1000 * sum(times) / len(times), 3),
        "p50_ms": round(1000 * times[len(times) // 2], 3),
        "p99_ms": round(1000 * times[int(len(times) * 0.99)], 3),
        "round_trips_per_request": round((trips.count - before) / requests, 2),
    }


def build_seconds(app) -> float:
    """The best of three cold builds of the term index (what a fresh worker reads before it answers from memory)."""
    from gateway.beacon.filters import PRESENT_KINDS
    from gateway.beacon.term_index import index_for

    s = app.extensions["gateway"]
    index = index_for(s.store, s.beacon_cache, PRESENT_KINDS)
    best = float("inf")
    for _ in range(3):
        started = time.perf_counter()
        index.source.read(index.source.version(), PRESENT_KINDS)
        best = min(best, time.perf_counter() - started)
    return round(best, 3)


def run_store(n: int, url: str | None, batch, requests: int, trips: RoundTrips, profile: bool) -> list[dict]:
    rows = []
    with tempfile.TemporaryDirectory(prefix="beacon-cost-") as tmp:
        generate(Path(tmp), n, url)
        app = make_app(Path(tmp), url)
        client = app.test_client()
        warm(client, n)
        built = build_seconds(app)
        for granularity in ("count", "record"):
            measure(client, batch, granularity, 50, trips, None)  # warm the mask cache and the code paths
            prof = cProfile.Profile() if profile and url and granularity == "record" else None
            row = {"store": "postgresql" if url else "sqlite", "granularity": granularity, "index_build_s": built}
            row.update(measure(client, batch, granularity, requests, trips, prof))
            rows.append(row)
            print(json.dumps(row), flush=True)
            if prof is not None:
                pstats.Stats(prof).sort_stats("cumulative").print_stats(35)
        app.extensions["gateway"].store.close()
    return rows


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--individuals", type=int, default=100_000)
    parser.add_argument("--requests", type=int, default=400)
    parser.add_argument("--database-url", required=True, help="a PostgreSQL database (a schema per run)")
    parser.add_argument("--profile", action="store_true")
    args = parser.parse_args()
    trips = RoundTrips()
    trips.install()
    _, filter_terms = hpo_pool(random.Random(1))
    batch = queries(random.Random(3), filter_terms)
    rows = run_store(args.individuals, None, batch, args.requests, trips, False)
    with _schema(args.database_url) as url:
        rows += run_store(args.individuals, url, batch, args.requests, trips, args.profile)
    by = {(r["store"], r["granularity"]): r for r in rows}
    for granularity in ("count", "record"):
        ratio = by["postgresql", granularity]["mean_ms"] / by["sqlite", granularity]["mean_ms"]
        print(f"{granularity}: PostgreSQL/SQLite mean time per request x{ratio:.2f}")
    out = REPO / "bench" / "out" / "beacon_request_cost.json"
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps({"individuals": args.individuals, "results": rows}, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
