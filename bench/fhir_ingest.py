"""FHIR ingest benchmark: floor vs translate+validate vs full POST /fhir, in one run.

    python bench/fhir_ingest.py [--seconds 3] [--clients 4] [--workers 2]
    python bench/fhir_ingest.py --resource-by-resource [--pairs 3] [--modes in-memory,bare-keep,keep-only,incremental,whole]
        [--database-url postgresql+psycopg://user@host/db] [--prefill N] [--leave-out DiagnosticReport]
    python bench/fhir_ingest.py --bundle-keep-cost [--pairs 3]

Corpus: every real Bundle under ../shared/reference/fhir (IPS, Genomics Reporting,
MII), with Patient identifiers varied per post so that the end-to-end phase creates
new patients rather than updating the same ones.

- floor:             `fhir.resources` R4B parse of every entry resource, nothing else
- translate+validate: the gateway's pipeline without storage (structure, references,
                      translation, phenopacket protobuf + schema + semantic checks)
- end to end:         POST /fhir to `gateway serve` (gunicorn, N workers) from concurrent
                      client threads, SQLite store, operator token

--resource-by-resource: the same Bundles sent as hospitals send them, the Patient first and then each
other mapped resource on its own, in-process through `apply_writes` (gateway.services.fhir_resources)
into a SQLite store, as a ratio to the floor: a bare `fhir.resources` parse of the same resources.
Per write: keep the resource, assemble its patient, translate and validate the part it changed,
merge the parts, write the phenopacket. Modes: `in-memory` (the service path without the store: the
check of the resource — R4B parse, references, bindings —, assembly, translation and validation of
the changed part, merge; see `in_memory`), `no-phenopacket-write` (through the store, but the
phenopacket's own write left out), `keep-only` (through the store, no phenopacket at all: each write's
check of references, pseudonymised keep, heads, reference keys and identifiers, pending bookkeeping — what a
design that deferred every phenopacket rebuild would still pay per write), `incremental` (all of it, through the SQLite store: what
`gateway serve` does after the HTTP layer's check of the resource), `whole` (no fragment cache:
every write translates the whole patient, the design before), `bare-keep` (a second floor: the parse
and one INSERT of the resource's JSON with its own COMMIT, through the store's engine — what any
design that keeps each resource durably as it arrives costs at least; see `bare_keep`). `--database-url`: the store modes run
on that PostgreSQL database instead (a fresh schema per run, dropped after), so that both backends are
reported; `statements_per_write` counts the SQL statements the store modes executed (BEGIN, COMMIT aside).
`--prefill N`: the store modes write every patient into one dataset that holds N copies of the corpus
already (written before the clock starts), as a hospital's dataset would: a write's cost must not grow
with the patients around it.

Not a test: it prints figures and ratios and writes bench/out/fhir_ingest.json.
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import http.client
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
REFERENCE = (REPO / ".." / "shared" / "reference" / "fhir").resolve()


def load_corpus() -> list[dict]:
    bundles = []
    for path in sorted(REFERENCE.rglob("Bundle-*.json")):
        if "vcf2fhir" in path.parts:
            continue
        bundles.append(json.loads(path.read_text()))
    return bundles


def resource_count(bundles: list[dict]) -> int:
    return sum(len(b.get("entry") or ()) for b in bundles)


def timed_rounds(fn, seconds: float) -> tuple[int, float]:
    """Run fn() repeatedly for at least `seconds`; (rounds, elapsed)."""
    rounds, start = 0, time.perf_counter()
    while True:
        fn()
        rounds += 1
        elapsed = time.perf_counter() - start
        if elapsed >= seconds:
            return rounds, elapsed


def floor_parse(bundles: list[dict]) -> None:
    from fhir.resources.R4B import get_fhir_model_class

    for bundle in bundles:
        for entry in bundle.get("entry") or ():
            resource = entry["resource"]
            get_fhir_model_class(resource["resourceType"]).model_validate(resource)


def pipeline(bundles: list[dict], key: bytes) -> None:
    from gateway.services.ingest import process_fhir

    for bundle in bundles:
        outcome = process_fhir(bundle, key=key, dataset_id="bench")
        assert outcome.packets or not any(e["resource"]["resourceType"] == "Patient" for e in bundle.get("entry") or ())


def varied(bundle: dict, n: int) -> dict:
    """The bundle with its patients' identifiers and ids made unique for post number n."""
    doc = copy.deepcopy(bundle)
    if doc.get("type") == "document":
        doc["type"] = "collection"  # documents need a Composition first; collections keep the same content
    for entry in doc.get("entry") or ():
        resource = entry["resource"]
        if resource["resourceType"] == "Patient":
            for ident in resource.get("identifier") or ():
                if "value" in ident:
                    ident["value"] = f"{ident['value']}-{n}"
    return doc


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def end_to_end(bundles: list[dict], seconds: float, clients: int, workers: int) -> dict:
    token = "bench-operator"
    with tempfile.TemporaryDirectory() as data_dir:
        port = free_port()
        env = {
            **os.environ,
            "GATEWAY_DATA_DIR": data_dir,
            "GATEWAY_OPERATOR_TOKEN": token,
            "GATEWAY_LOG_LEVEL": "WARNING",
        }
        server = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "gunicorn",
                "-w",
                str(workers),
                "-b",
                f"127.0.0.1:{port}",
                "--log-level",
                "warning",
                "app:create_app()",
            ],
            cwd=REPO,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        try:
            deadline = time.time() + 60
            while time.time() < deadline:
                try:
                    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
                    conn.request("GET", "/ready")
                    if conn.getresponse().status == 200:
                        break
                except OSError:
                    time.sleep(0.2)
            else:
                raise RuntimeError("server did not become ready")
            # Pre-serialise the request bodies: the client's own JSON work is not the server's cost.
            bodies = [(json.dumps(varied(b, n)).encode(), len(b.get("entry") or ())) for n in range(8) for b in bundles]
            # Warm both workers (imports, caches, first SQLite pages) before the clock starts.
            for body, _ in bodies[: 2 * len(bundles)]:
                conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
                conn.request(
                    "POST",
                    "/fhir",
                    body=body,
                    headers={"Content-Type": "application/fhir+json", "Authorization": f"Bearer {token}"},
                )
                conn.getresponse().read()
                conn.close()
            stop = time.perf_counter() + seconds
            totals = {"resources": 0, "requests": 0, "errors": 0}
            lock = threading.Lock()

            def client(offset: int) -> None:
                conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
                i = offset
                while time.perf_counter() < stop:
                    body, count = bodies[i % len(bodies)]
                    i += clients
                    conn.request(
                        "POST",
                        "/fhir",
                        body=body,
                        headers={"Content-Type": "application/fhir+json", "Authorization": f"Bearer {token}"},
                    )
                    resp = conn.getresponse()
                    resp.read()
                    with lock:
                        totals["requests"] += 1
                        if resp.status == 200:
                            totals["resources"] += count
                        else:
                            totals["errors"] += 1

            start = time.perf_counter()
            threads = [threading.Thread(target=client, args=(k,)) for k in range(clients)]
            for t in threads:
                t.start()
            for t in threads:
                t.join()
            elapsed = time.perf_counter() - start
        finally:
            server.terminate()
            server.wait(10)
    return {**totals, "seconds": elapsed, "resources_per_s": totals["resources"] / elapsed}


def patient_resources(bundles: list[dict]) -> list[list[tuple[dict, str | None]]]:
    """Per Bundle with a Patient: its mapped resources with their fullUrl, the Patient(s) first."""
    from gateway.services.fhir_resources import supported_types

    sent = []
    for bundle in bundles:
        kept = [
            (e["resource"], e.get("fullUrl"))
            for e in bundle.get("entry") or ()
            if e["resource"]["resourceType"] in supported_types()
        ]
        patients = [k for k in kept if k[0]["resourceType"] == "Patient"]
        if patients:
            sent.append([*patients, *(k for k in kept if k[0]["resourceType"] != "Patient")])
    return sent


def floor_parse_resources(sequences: list[list[tuple[dict, str | None]]]) -> None:
    from fhir.resources.R4B import get_fhir_model_class

    for resources in sequences:
        for resource, _ in resources:
            get_fhir_model_class(resource["resourceType"]).model_validate(resource)


def in_memory(sequences: list[list[tuple[dict, str | None]]], key: bytes) -> tuple[float, dict]:
    """The service path without the store: per write, check the resource (R4B parse, references,
    bindings: what the HTTP layer does first), keep it in memory as the store would (at-rest form,
    content hash), assemble its patient's parts, translate and validate the changed part, merge;
    whole translation where the merge cannot be sure. Nothing is read from or written to a database."""
    from datetime import UTC, datetime

    from gateway.services.fhir_incremental import FragmentCache
    from gateway.services.fhir_resources import HeldResources, check_resource, incremental_record, make_phenopacket

    cache = FragmentCache()
    start = time.perf_counter()
    cpu = time.process_time()
    for n, resources in enumerate(sequences):
        dataset, now = f"bench{n}", datetime.now(UTC)
        held = HeldResources(key, dataset)
        for resource, full_url in resources:
            check_resource(resource, resource["resourceType"], resource["id"])
            assembly = held.keep(resource, full_url, cache)
            if assembly is None:
                continue
            record = incremental_record(assembly, held.load, cache, key, dataset, None, now)
            if record is None:
                whole = [held.stored(h, now) for h in assembly.heads]
                make_phenopacket(whole, key=key, dataset_id=dataset, profile=None, now=now)
    elapsed = time.perf_counter() - start
    return elapsed, {
        "translated": cache.translated,
        "merged": cache.merged,
        "whole": cache.whole,
        "joined": cache.joined,
        "cpu_seconds": time.process_time() - cpu,
    }


@contextlib.contextmanager
def fresh_store_url(database_url: str | None):
    """A URL of an empty store: a SQLite file in a temporary directory, or a new schema of the PostgreSQL
    database `database_url` (dropped on exit)."""
    if database_url is None:
        with tempfile.TemporaryDirectory() as tmp:
            yield f"sqlite:///{tmp}/bench.db"
        return
    from tests.pg_schema import fresh_schema

    with fresh_schema(database_url, "bench_rbr") as url:
        yield url


def tagged(resources: list[tuple[dict, str | None]], tag: str) -> list[tuple[dict, str | None]]:
    """A patient's resources as another patient: ids, fullUrls, Patient identifiers and the references
    between them end in `-tag` (so that many copies can share one dataset)."""
    names = {f"{r['resourceType']}/{r['id']}" for r, _ in resources} | {u for _, u in resources if u}

    def rewrite(node):
        if isinstance(node, dict):
            return {
                k: (f"{v}-{tag}" if v in names else v) if k == "reference" and isinstance(v, str) else rewrite(v)
                for k, v in node.items()
            }
        if isinstance(node, list):
            return [rewrite(v) for v in node]
        return node

    out = []
    for resource, full_url in resources:
        copied = rewrite(resource)
        copied["id"] = f"{resource['id'][:50]}-{tag}"
        if copied["resourceType"] == "Patient":
            for ident in copied.get("identifier") or ():
                if isinstance(ident, dict) and "value" in ident:
                    ident["value"] = f"{ident['value']}-{tag}"
        out.append((copied, f"{full_url}-{tag}" if full_url else None))
    return out


def one_by_one(
    sequences: list[list[tuple[dict, str | None]]],
    key: bytes,
    mode: str,
    database_url: str | None = None,
    prefill: int = 0,
) -> tuple[float, dict]:
    """Send every resource through `apply_writes` into a fresh store (SQLite, or a fresh schema of
    `database_url`); (seconds, counters: the cache's, and the SQL statements per write).

    mode "incremental": with the FragmentCache (what `gateway serve` does); "no-phenopacket-write": the
    same, with the phenopacket's own write left out (the resource rows are still kept: they are the
    source of truth); "keep-only": the resource rows kept, no patient rebuilt (no translation either); "whole": without a cache, each write translates all the patient's resources.
    `prefill` > 0: every patient goes into one dataset that already holds `prefill` copies of the corpus
    (written first, not timed): what a write costs in a hospital's dataset rather than in an empty one.
    """
    import sqlalchemy as sa

    from gateway.services import fhir_resources
    from gateway.services.fhir_incremental import FragmentCache
    from gateway.services.fhir_resources import ResourceWrite, apply_writes
    from gateway.store import MetadataStore

    cache = None if mode == "whole" else FragmentCache()
    statements = [0]

    def count(_connection, _cursor, statement, *_args) -> None:
        if statement.strip().upper() not in ("BEGIN", "BEGIN IMMEDIATE", "COMMIT", "ROLLBACK"):
            statements[0] += 1

    with fresh_store_url(database_url) as url:
        store = MetadataStore.open(url)
        if mode == "no-phenopacket-write":
            store.save_phenopackets_in = lambda connection, records, **_: []  # type: ignore[method-assign]
        rebuild = fhir_resources._rebuild
        if mode == "keep-only":
            fhir_resources._rebuild = lambda *_args, **_kw: None
        try:
            datasets = ["bench"] * len(sequences) if prefill else [f"bench{n}" for n in range(len(sequences))]
            if prefill:
                sequences = [tagged(resources, f"t{n}") for n, resources in enumerate(sequences)]
            for dataset in sorted(set(datasets)):
                store.ensure_dataset(dataset)
            for copy_number in range(prefill):
                for resources in sequences:
                    for resource, full_url in tagged(resources, f"p{copy_number}"):
                        write = ResourceWrite(resource["resourceType"], resource["id"], resource, full_url)
                        apply_writes([write], store=store, key=key, dataset_id="bench", cache=cache)
            if cache is not None:  # the counters say what the timed writes did
                cache.translated = cache.merged = cache.whole = 0
            sa.event.listen(store.engine, "before_cursor_execute", count)
            start = time.perf_counter()
            cpu = time.process_time()
            for dataset, resources in zip(datasets, sequences, strict=True):
                for resource, full_url in resources:
                    write = ResourceWrite(resource["resourceType"], resource["id"], resource, full_url)
                    apply_writes([write], store=store, key=key, dataset_id=dataset, cache=cache)
            elapsed = time.perf_counter() - start
            cpu = time.process_time() - cpu
            sa.event.remove(store.engine, "before_cursor_execute", count)
        finally:
            fhir_resources._rebuild = rebuild
            store.close()
    counters = {"translated": cache.translated, "merged": cache.merged, "whole": cache.whole} if cache else {}
    counters["statements_per_write"] = round(statements[0] / sum(len(r) for r in sequences), 2)
    counters["cpu_seconds"] = cpu
    return elapsed, counters


def bare_keep(sequences: list[list[tuple[dict, str | None]]], database_url: str | None = None) -> tuple[float, dict]:
    """The floor of any design that keeps each resource durably as it arrives: per resource, the R4B parse
    (the floor) and one INSERT of its JSON in a transaction of its own, through the store's engine (same
    SQLite pragmas, or the same PostgreSQL database) into a table of two columns. No translation, no
    index, no phenopacket."""
    import sqlalchemy as sa
    from fhir.resources.R4B import get_fhir_model_class

    from gateway.store.engine import create_store_engine

    with fresh_store_url(database_url) as url:
        engine = create_store_engine(url)
        table = sa.Table(
            "bare_keep", sa.MetaData(), sa.Column("pk", sa.Integer, primary_key=True), sa.Column("doc", sa.Text)
        )
        table.create(engine)
        insert = table.insert()
        try:
            start, cpu = time.perf_counter(), time.process_time()
            for resources in sequences:
                for resource, _ in resources:
                    get_fhir_model_class(resource["resourceType"]).model_validate(resource)
                    with engine.begin() as connection:
                        connection.execute(insert, {"doc": json.dumps(resource)})
            elapsed, cpu = time.perf_counter() - start, time.process_time() - cpu
        finally:
            engine.dispose()
    return elapsed, {"cpu_seconds": cpu}


def resource_by_resource(
    pairs: int, modes: list[str], database_url: str | None = None, prefill: int = 0, leave_out: frozenset = frozenset()
) -> dict:
    sequences = patient_resources(load_corpus())
    # --leave-out: the corpus of a tree that keeps fewer types (DiagnosticReport is kept since 2026-12-01)
    sequences = [[(r, u) for r, u in s if r["resourceType"] not in leave_out] for s in sequences]
    n = sum(len(r) for r in sequences)
    key = bytes(32)
    one_by_one(sequences, key, "incremental", database_url)  # warm (imports, mappings, schemas)
    floor_parse_resources(sequences)
    ratios: dict[str, list[float]] = {m: [] for m in modes}
    cpu_ratios: dict[str, list[float]] = {m: [] for m in modes}
    counters: dict[str, dict] = {}
    for _ in range(pairs):
        for mode in modes:  # each measurement paired with a floor measured just before it
            start, cpu = time.perf_counter(), time.process_time()
            floor_parse_resources(sequences)
            floor, floor_cpu = time.perf_counter() - start, time.process_time() - cpu
            if mode == "in-memory":
                run = in_memory(sequences, key)
            elif mode == "bare-keep":
                run = bare_keep(sequences, database_url)
            else:
                run = one_by_one(sequences, key, mode, database_url, prefill)
            elapsed, counters[mode] = run
            ratios[mode].append(elapsed / floor)
            cpu_ratios[mode].append(counters[mode].pop("cpu_seconds") / floor_cpu)
    return {
        "store": "sqlite" if database_url is None else "postgresql",
        "bundles_with_patients": len(sequences),
        "resources_sent_one_by_one": n,
        "largest_patient_resources": max(len(r) for r in sequences),
        "time_ratio_to_floor": {m: round(statistics.median(r), 2) for m, r in ratios.items()},
        "ratios_per_pair": {m: [round(x, 2) for x in r] for m, r in ratios.items()},
        # CPU time of this process (time.process_time): steadier on a shared machine, but without the time
        # a PostgreSQL server spends or the client waits for it.
        "cpu_ratio_to_floor": {m: round(statistics.median(r), 2) for m, r in cpu_ratios.items()},
        "cache_counters": {m: c for m, c in counters.items() if c},
        "pairs": pairs,
        "prefilled_corpus_copies": prefill,
        "load_average": [round(x, 2) for x in os.getloadavg()],
    }


def bundle_keep_cost(pairs: int) -> dict:
    """What keeping a Bundle's resources for the REST channel adds to storing its phenopackets:
    `ingest_fhir` alone vs `ingest_fhir` + `keep_bundle`, every real Bundle twice (varied patients),
    into a fresh SQLite store, in-process; the ratio of the two times, paired."""
    from gateway.services.fhir_incremental import FragmentCache
    from gateway.services.fhir_resources import keep_bundle, stored_entries
    from gateway.services.ingest import ingest_fhir
    from gateway.store import MetadataStore

    bundles, key = load_corpus(), bytes(32)

    def run(keep: bool) -> float:
        with tempfile.TemporaryDirectory() as tmp:
            store = MetadataStore.open(f"sqlite:///{tmp}/bench.db")
            store.ensure_dataset("bench")
            cache = FragmentCache()
            docs = [varied(b, n) for n in range(2) for b in bundles]
            start = time.perf_counter()
            for doc in docs:
                outcome = ingest_fhir(doc, store=store, key=key, dataset_id="bench")
                if keep and outcome.stored:
                    keep_bundle(doc, stored_entries(outcome), store=store, key=key, dataset_id="bench", cache=cache)
            elapsed = time.perf_counter() - start
            store.close()
        return elapsed

    run(True)  # warm
    ratios = [run(True) / run(False) for _ in range(pairs)]
    return {
        "keep_over_ingest_alone": round(statistics.median(ratios), 2),
        "per_pair": [round(r, 2) for r in ratios],
        "load_average": [round(x, 2) for x in os.getloadavg()],
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=6.0)
    parser.add_argument("--clients", type=int, default=4)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--pairs", type=int, default=7, help="alternating floor/pipeline measurements")
    parser.add_argument("--resource-by-resource", action="store_true", help="the REST path, one resource at a time")
    parser.add_argument(
        "--modes", default="in-memory,bare-keep,incremental,whole", help="with --resource-by-resource: which paths"
    )
    parser.add_argument(
        "--database-url", help="with --resource-by-resource: run the store modes on this PostgreSQL database"
    )
    parser.add_argument(
        "--prefill",
        type=int,
        default=0,
        help="with --resource-by-resource: one dataset, holding this many copies of the corpus before the timed run",
    )
    parser.add_argument(
        "--leave-out",
        default="",
        help="with --resource-by-resource: resource types left out of the corpus (comma-separated), so that the code "
        "before, which kept fewer types, is compared on the same resources",
    )
    parser.add_argument("--bundle-keep-cost", action="store_true", help="the Bundle channel with and without keeping")
    args = parser.parse_args()
    if args.bundle_keep_cost:
        print(json.dumps(bundle_keep_cost(args.pairs), indent=2))
        return 0
    if args.resource_by_resource:
        leave_out = frozenset(t for t in args.leave_out.split(",") if t)
        figures = resource_by_resource(args.pairs, args.modes.split(","), args.database_url, args.prefill, leave_out)
        out = REPO / "bench" / "out"
        out.mkdir(exist_ok=True)
        name = "fhir_ingest_resources" + ("_postgresql" if args.database_url else "")
        name += f"_prefill{args.prefill}" if args.prefill else ""
        (out / f"{name}.json").write_text(json.dumps(figures, indent=2))
        print(json.dumps(figures, indent=2))
        return 0

    bundles = load_corpus()
    n = resource_count(bundles)
    key = bytes(32)
    pipeline(bundles, key)  # warm caches (mappings, schemas, model classes)
    floor_parse(bundles)

    # Paired and alternated, so that load from elsewhere on the machine hits both alike;
    # the ratio reported is the median of the pairs' ratios.
    floor_rates, pipe_rates, ratios = [], [], []
    for _ in range(args.pairs):
        rounds, elapsed = timed_rounds(lambda: floor_parse(bundles), args.seconds / args.pairs)
        floor_rates.append(n * rounds / elapsed)
        rounds, elapsed = timed_rounds(lambda: pipeline(bundles, key), args.seconds / args.pairs)
        pipe_rates.append(n * rounds / elapsed)
        ratios.append(floor_rates[-1] / pipe_rates[-1])
    floor_rate, pipe_rate = statistics.median(floor_rates), statistics.median(pipe_rates)
    ratio = statistics.median(ratios)
    e2e = end_to_end(bundles, args.seconds * 2, args.clients, args.workers)

    result = {
        "bundles": len(bundles),
        "resources_per_pass": n,
        "floor_parse_resources_per_s": round(floor_rate),
        "translate_validate_resources_per_s": round(pipe_rate),
        "translate_validate_time_ratio_to_floor": round(ratio, 2),
        "end_to_end": {k: round(v, 2) if isinstance(v, float) else v for k, v in e2e.items()},
        "end_to_end_vs_hapi_2214": round(e2e["resources_per_s"] / 2214, 2),
        "workers": args.workers,
        "clients": args.clients,
    }
    out = REPO / "bench" / "out"
    out.mkdir(exist_ok=True)
    (out / "fhir_ingest.json").write_text(json.dumps(result, indent=2))
    print(f"corpus: {len(bundles)} real bundles, {n} resources per pass")
    print(f"floor (fhir.resources R4B parse only): {floor_rate:10,.0f} resources/s")
    print(
        f"translate + validate:                  {pipe_rate:10,.0f} resources/s  = {ratio:.2f}x the floor's time (target <= 2x)"
    )
    print(
        f"end to end POST /fhir ({args.workers} workers, {args.clients} clients): {e2e['resources_per_s']:10,.0f} resources/s"
        f"  ({e2e['requests']} requests, {e2e['errors']} errors; HAPI 20 threads: 2,214/s)"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
