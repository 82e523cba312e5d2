"""FHIR ingest benchmark: floor vs translate+validate vs full POST /fhir, in one run.

    python bench/fhir_ingest.py [--seconds 3] [--clients 4] [--workers 2]
    python bench/fhir_ingest.py --resource-by-resource [--seconds 3]

Corpus: every real Bundle under ../shared/reference/fhir (IPS, Genomics Reporting,
MII), with Patient identifiers varied per post so that the end-to-end phase creates
new patients rather than updating the same ones.

- floor:             `fhir.resources` R4B parse of every entry resource, nothing else
- translate+validate: the gateway's pipeline without storage (structure, references,
                      translation, phenopacket protobuf + schema + semantic checks)
- end to end:         POST /fhir to `gateway serve` (gunicorn, N workers) from concurrent
                      client threads, SQLite store, operator token

--resource-by-resource: the same Bundles sent as hospitals send them, the Patient first and then each
other mapped resource on its own (gateway.services.fhir_resources, in-process): per resource the
check of that resource (R4B parse + reference and binding rules), the translation and validation of
its patient's phenopacket and its assembly; once without the store (`make_phenopacket` on the
patient's resources so far, held in memory) and once through `apply_writes` into a SQLite store.
Both as a ratio to the floor: a bare `fhir.resources` parse of the same resources.

Not a test: it prints figures and ratios and writes bench/out/fhir_ingest.json.
"""

from __future__ import annotations

import argparse
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


def one_by_one_in_memory(sequences: list[list[tuple[dict, str | None]]], key: bytes) -> None:
    """The service path without the store: check the new resource, make its patient's phenopacket
    from the patient's resources so far (held in memory, as the store would hand them back)."""
    from datetime import UTC, datetime

    from gateway.services.fhir_resources import check_resource, make_phenopacket, patient_reference
    from gateway.store.fhir_resources import StoredResource
    from translators.fhir.references import BundleIndex

    now = datetime.now(UTC)
    for resources in sequences:
        held: dict[int, list[StoredResource]] = {}  # position of the Patient -> its resources so far
        patients: list[dict] = []
        loose: list[StoredResource] = []
        for n, (resource, full_url) in enumerate(resources):
            check_resource(resource, resource["resourceType"], resource["id"])
            rtype = resource["resourceType"]
            stored = StoredResource(
                n, "bench", rtype, resource["id"], 1, full_url, None, None, None, "", resource, now, now
            )
            if rtype == "Patient":
                held[len(patients)] = [stored]
                patients.append({"resource": resource, **({"fullUrl": full_url} if full_url else {})})
                touched = [len(patients) - 1]
            else:
                reference = patient_reference(resource)
                owner = BundleIndex.build(patients).resolve(reference) if reference else None
                if reference is None:
                    loose.append(stored)
                    touched = list(held)
                elif owner is None:
                    continue  # pending
                else:
                    held[owner].append(stored)
                    touched = [owner]
            for owner in touched:
                own = held[owner]
                ordered = [own[0], *sorted([*own[1:], *loose], key=lambda r: (r.resource_type, r.resource_id))]
                make_phenopacket(ordered, key=key, dataset_id="bench", profile=None, now=now)


def one_by_one_stored(sequences: list[list[tuple[dict, str | None]]], key: bytes) -> None:
    """The service path with the store: `apply_writes` per resource into a fresh SQLite store."""
    from gateway.services.fhir_resources import ResourceWrite, apply_writes
    from gateway.store import MetadataStore

    with tempfile.TemporaryDirectory() as tmp:
        store = MetadataStore.open(f"sqlite:///{tmp}/bench.db")
        try:
            store.ensure_dataset("bench")
            for resources in sequences:
                for resource, full_url in resources:
                    write = ResourceWrite(resource["resourceType"], resource["id"], resource, full_url)
                    apply_writes([write], store=store, key=key, dataset_id="bench")
        finally:
            store.close()


def resource_by_resource(seconds: float, pairs: int) -> dict:
    sequences = patient_resources(load_corpus())
    n = sum(len(r) for r in sequences)
    key = bytes(32)
    one_by_one_in_memory(sequences, key)  # warm
    floor_parse_resources(sequences)
    ratios: dict[str, list[float]] = {"in_memory": [], "stored": []}
    for _ in range(pairs):
        start = time.perf_counter()
        floor_parse_resources(sequences)
        floor = time.perf_counter() - start
        start = time.perf_counter()
        one_by_one_in_memory(sequences, key)
        ratios["in_memory"].append((time.perf_counter() - start) / floor)
        start = time.perf_counter()
        floor_parse_resources(sequences)
        floor = time.perf_counter() - start
        start = time.perf_counter()
        one_by_one_stored(sequences, key)
        ratios["stored"].append((time.perf_counter() - start) / floor)
    largest = max(len(r) for r in sequences)
    return {
        "patients_bundles": len(sequences),
        "resources": n,
        "largest_patient_resources": largest,
        "time_ratio_to_floor_without_store": round(statistics.median(ratios["in_memory"]), 2),
        "time_ratio_to_floor_with_sqlite_store": round(statistics.median(ratios["stored"]), 2),
        "pairs": pairs,
        "load_average": os.getloadavg(),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=6.0)
    parser.add_argument("--clients", type=int, default=4)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--pairs", type=int, default=7, help="alternating floor/pipeline measurements")
    parser.add_argument("--resource-by-resource", action="store_true", help="the REST path, one resource at a time")
    args = parser.parse_args()
    if args.resource_by_resource:
        figures = resource_by_resource(args.seconds, args.pairs)
        out = REPO / "bench" / "out"
        out.mkdir(exist_ok=True)
        (out / "fhir_ingest_resources.json").write_text(json.dumps(figures, indent=2))
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
