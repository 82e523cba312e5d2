"""Benchmark of g_variants queries (not a test).

    python bench/gvariants_query.py [--sites 20000] [--samples 200] [--scales 1 10] [--http-seconds 5] [--clients 4]

In process: exact lookup, carrier count, range count over 10 kb and 1 Mb against an
indexed SQLite scan of the same rows (the floor); the runtime validation of a 100-record
`record` response. Over HTTP: gunicorn (2 workers) serving the node; a second process runs
concurrent keep-alive clients; sequence-query p50/p99 against two empty endpoints of the same
app (`app.create_app`, so the same authentication, audit record and security headers):
`/api/_empty`, a bare route that also charges the caller's query budget, and `/api/_empty_entry`,
an entry type whose handler finds nothing (parsing, budget, policy, envelope and response
validation included: everything but the variant lookup). The dataset is served with the open
policy (no rare-allele scan). Each figure is printed with its floor and ratio, for the dataset
at 1x and 10x its sites (`--scales`).
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import random
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from multiprocessing import Process, Queue
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


def make_vcf(path: Path, sites: int, samples: int, seed: int = 2) -> list[tuple[str, int, str, str]]:
    rng = random.Random(seed)
    names = [f"S{i:05d}" for i in range(samples)]
    rows = []
    with path.open("w") as fh:
        fh.write('##fileformat=VCFv4.2\n##FORMAT=<ID=GT,Number=1,Type=String,Description="Genotype">\n')
        fh.write("##contig=<ID=22,length=50818468>\n")
        fh.write("#CHROM\tPOS\tID\tREF\tALT\tQUAL\tFILTER\tINFO\tFORMAT\t" + "\t".join(names) + "\n")
        pos = 16_000_000
        for _ in range(sites):
            pos += rng.randint(1, 2 * 25_000_000 // sites)
            ref = rng.choice("ACGT")
            alt = rng.choice([b for b in "ACGT" if b != ref])
            freq = rng.random() ** 3
            gts = "\t".join(f"{int(rng.random() < freq)}|{int(rng.random() < freq)}" for _ in names)
            fh.write(f"22\t{pos}\t.\t{ref}\t{alt}\t.\tPASS\t.\tGT\t{gts}\n")
            rows.append(("22", pos - 1, ref, alt))
    return rows


def timed(fn, repeat: int) -> float:
    """p50 in milliseconds."""
    fn()
    samples = []
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        samples.append((time.perf_counter() - t) * 1000)
    return statistics.median(samples)


def in_process(data_dir: Path, rows) -> None:
    from gateway.beacon.context import QueryContext
    from gateway.beacon.engine import answer
    from gateway.beacon.g_variants import G_VARIANTS
    from gateway.beacon.request import parse_post
    from gateway.beacon.validation import validate_response
    from gateway.config import config_from_mapping
    from gateway.variants.query import VariantQuery
    from gateway.variants.store import VariantStore

    store = VariantStore(data_dir)
    floor = sqlite3.connect(":memory:")
    floor.execute("CREATE TABLE v (chrom TEXT, start INT, end INT, ref TEXT, alt TEXT)")
    floor.executemany("INSERT INTO v VALUES (?,?,?,?,?)", [(c, s, s + len(r), r, a) for c, s, r, a in rows])
    floor.execute("CREATE INDEX v_pos ON v (chrom, start)")
    rng = random.Random(1)
    probes = [rng.choice(rows) for _ in range(200)]
    it = iter(probes * 50)

    def exact():
        c, s, r, a = next(it)
        store.search(VariantQuery(reference_name=c, start=s, reference_bases=r, alternate_bases=a), limit=10)

    def exact_floor():
        c, s, r, a = next(it)
        floor.execute("SELECT * FROM v WHERE chrom=? AND start=? AND ref=? AND alt=?", (c, s, r, a)).fetchall()

    def carriers():
        c, s, r, a = next(it)
        store.carrier_count(VariantQuery(reference_name=c, start=s, reference_bases=r, alternate_bases=a))

    def range_count(span):
        def run():
            _, s, _, _ = next(it)
            store.count(VariantQuery(reference_name="22", start=s, end=s + span))

        return run

    def range_floor(span):
        def run():
            _, s, _, _ = next(it)
            floor.execute(
                "SELECT count(*) FROM v WHERE chrom='22' AND start >= ? AND start < ? AND end > ?", (s - 1, s + span, s)
            ).fetchone()

        return run

    print(f"{'in process (p50, ms)':40s} {'ours':>9s} {'floor':>9s} {'ratio':>7s}")
    for name, ours, base in [
        ("exact lookup", exact, exact_floor),
        ("carrier count (exact)", carriers, exact_floor),
        ("range count 10 kb", range_count(10_000), range_floor(10_000)),
        ("range count 1 Mb", range_count(1_000_000), range_floor(1_000_000)),
    ]:
        a, b = timed(ours, 300), timed(base, 300)
        print(f"{name:40s} {a:9.4f} {b:9.4f} {a / b:7.2f}")

    config = config_from_mapping(
        {"datasets": [{"id": "bench", "security_level": "PUBLIC", "policy": {"profile": "open"}}]}
    )
    ctx = QueryContext(config=config, key=b"k" * 32, variants=store)
    body = {"query": {"requestParameters": {"referenceName": "22", "start": [0], "end": [10**8]},
                      "requestedGranularity": "record", "pagination": {"limit": 100}}}  # fmt: skip
    request = parse_post(G_VARIANTS, body)
    response, status = answer(ctx, G_VARIANTS, request)
    assert status == 200 and len(response["response"]["resultSets"][0]["results"]) == 100
    print(
        f"{'record response, 100 records: build+validate':40s} {timed(lambda: answer(ctx, G_VARIANTS, request), 30):9.3f}"
    )
    print(f"{'  of which validation (jsonschema-rs)':40s} {timed(lambda: validate_response(G_VARIANTS, 'record', response), 100):9.3f}"
          f" {'≤ 5 ms target':>17s}")  # fmt: skip


WSGI = """
import json, os
from gateway.beacon.g_variants import parse_parameters
from gateway.beacon.entry_types import BEACON_ENTRY_TYPES
from gateway.beacon.registry import EntryType
from gateway.beacon.response import EntryAnswer

# Given to the app with the built-in ones, so the router serves it like any entry type (benchmark only).
EMPTY_ENTRY = EntryType(
    id="benchEmpty", path="_empty_entry", name="Empty", description="benchmark: finds nothing",
    schema_id="bench-empty-v0", default_schema="", ontology_term={"id": "SO:0000735", "label": "x"},
    parameter_group="g_variant", parse_parameters=parse_parameters,
    handler=lambda ctx, request, granularity, datasets, record_id=None: EntryAnswer(exists=False, total=0),
)

def app():
    from app import create_app
    from gateway.api.render import json_response
    from gateway.api.hooks import current_caller, security

    security_settings = {"budget": {"anonymous": 10**9}}
    if os.environ.get("BENCH_REDIS"):
        security_settings["redis_url"] = os.environ["BENCH_REDIS"]
    a = create_app({
        "data_dir": os.environ["BENCH_DATA"], "secret_key": "00" * 32, "log_level": "WARNING",
        "node": {"id": "org.example.bench", "base_url": "http://127.0.0.1"},
        "datasets": [{"id": "bench", "security_level": "PUBLIC", "policy": {"profile": "open"}}],
        "security": security_settings,
    }, entry_types=BEACON_ENTRY_TYPES.adding(EMPTY_ENTRY))

    def empty():
        allowed = security().budget.charge(current_caller())  # the same budget the Beacon guard charges
        return json_response({"budget": allowed})

    a.add_url_rule("/api/_empty", "empty", empty)
    return a
"""


KINDS = ("empty", "empty_entry", "query")


def _client(port: int, paths: list[str], seconds: float, clients: int, out: Queue) -> None:
    def worker(k):
        conn = http.client.HTTPConnection("127.0.0.1", port)
        lat = {kind: [] for kind in KINDS}
        deadline = time.monotonic() + seconds
        i = k
        while time.monotonic() < deadline:
            kind = KINDS[i % 3]
            path = paths[i % len(paths)]
            if kind == "empty":  # the same request (query string included) to a route that does nothing
                path = path.replace("/api/g_variants?", "/api/_empty?")
            elif kind == "empty_entry":
                path = path.replace("/api/g_variants?", "/api/_empty_entry?")
            t = time.perf_counter()
            conn.request("GET", path)
            resp = conn.getresponse()
            resp.read()
            lat[kind].append((time.perf_counter() - t) * 1000)
            assert resp.status == 200
            i += 1
        return lat

    with ThreadPoolExecutor(clients) as pool:
        results = list(pool.map(worker, range(clients)))
    out.put({k: [x for r in results for x in r[k]] for k in KINDS})


def over_http(data_dir: Path, rows, seconds: float, clients: int, redis_url: str | None) -> dict:
    port = 18000 + os.getpid() % 1000
    with tempfile.TemporaryDirectory() as tmp:
        (Path(tmp) / "bench_wsgi.py").write_text(WSGI)
        env = {**os.environ, "BENCH_DATA": str(data_dir), "PYTHONPATH": f"{tmp}:{REPO}", "BENCH_REDIS": redis_url or ""}
        server = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "gunicorn",
                "-w",
                "2",
                "-b",
                f"127.0.0.1:{port}",
                "bench_wsgi:app()",
                "--log-level",
                "warning",
            ],
            env=env,
        )
        try:
            for _ in range(300):
                try:
                    probe = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
                    probe.request("GET", "/api/_empty")
                    if probe.getresponse().status == 200:
                        break
                except OSError:
                    time.sleep(0.1)
            warm = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
            for c, s, r, a in rows[:40]:  # both workers: imports, validators, dataset caches
                for prefix in ("g_variants", "_empty_entry"):
                    warm.request(
                        "GET", f"/api/{prefix}?referenceName={c}&start={s}&referenceBases={r}&alternateBases={a}"
                    )
                    warm.getresponse().read()
            rng = random.Random(3)
            paths = []
            for c, s, r, a in rng.sample(rows, 200):
                paths.append(f"/api/g_variants?referenceName={c}&start={s}&referenceBases={r}&alternateBases={a}")
            out: Queue = Queue()
            proc = Process(target=_client, args=(port, paths, seconds, clients, out))
            proc.start()
            lat = out.get()
            proc.join()
        finally:
            server.terminate()
            server.wait()
    q = {k: (statistics.median(v), statistics.quantiles(v, n=100)[98], len(v)) for k, v in lat.items()}
    print(f"\nHTTP, gunicorn -w 2, {clients} clients, {seconds:.0f} s   p50 ms   p99 ms   requests")
    for k in KINDS:
        print(f"  {k:38s} {q[k][0]:7.3f} {q[k][1]:8.3f} {q[k][2]:9d}")
    for floor in ("empty", "empty_entry"):
        print(f"  sequence query p50 - {floor} p50 = {q['query'][0] - q[floor][0]:.3f} ms (target ≤ 0.5); "
              f"p99 ratio {q['query'][1] / q[floor][1]:.2f} (target ≤ 2)")  # fmt: skip
    return {k: {"p50_ms": round(v[0], 3), "p99_ms": round(v[1], 3), "requests": v[2]} for k, v in q.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sites", type=int, default=20_000)
    parser.add_argument("--samples", type=int, default=200)
    parser.add_argument("--http-seconds", type=float, default=5)
    parser.add_argument("--clients", type=int, default=4)
    parser.add_argument("--scales", type=int, nargs="+", default=[1, 10], help="dataset sizes as multiples of --sites")
    parser.add_argument("--redis-url", default=None, help="budget backend for the HTTP part (default in-process)")
    args = parser.parse_args()
    from gateway.variants.ingest import ingest_vcf

    results = []
    for scale in args.scales:
        sites = args.sites * scale
        with tempfile.TemporaryDirectory() as tmp:
            vcf = Path(tmp) / "bench.vcf"
            rows = make_vcf(vcf, sites, args.samples)
            t = time.perf_counter()
            ingest_vcf(vcf, dataset_id="bench", data_dir=Path(tmp) / "data", assembly="GRCh38")
            print(json.dumps({"sites": sites, "samples": args.samples, "ingest_s": round(time.perf_counter() - t, 2)}))
            in_process(Path(tmp) / "data", rows)
            served = over_http(Path(tmp) / "data", rows, args.http_seconds, args.clients, args.redis_url)
            results.append({"sites": sites, "samples": args.samples, "http": served})
    out = REPO / "bench" / "out" / "gvariants_query.json"
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps({"clients": args.clients, "results": results}, indent=2) + "\n")


if __name__ == "__main__":
    main()
