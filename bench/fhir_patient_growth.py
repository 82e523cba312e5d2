"""Benchmark (not a test): the cost of one resource write as a patient's record grows.

    python bench/fhir_patient_growth.py [--copies 40] [--bundle NAME] [--database-url URL]

A hospital sends a long-lived patient's record resource by resource for years: hundreds of Conditions,
lab Observations and medications. Each write rebuilds the patient's phenopacket, so a write whose cost grows
with the record makes the whole history quadratic. This sends one real patient (the reference Bundle with
the most mapped resources, or --bundle) through `apply_writes` into a fresh store: the Patient, then its
other resources `--copies` times over (copy k has every id suffixed `-k`, its references among themselves
rewritten the same way, so every copy is a new group of the same shapes). It reports the median time of a
write per block of the record's size, next to the floor (a bare `fhir.resources` parse of the same resource)
and the ratio of the last block to the first: 1.0 means a write costs the same at any record size.
Results go to bench/out/fhir_patient_growth.json.
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
REFERENCE = (REPO / ".." / "shared" / "reference" / "fhir").resolve()


def richest_patient(name: str | None) -> tuple[str, dict, list[tuple[dict, str | None]]]:
    """(file, Patient entry, its other mapped resources with their fullUrl) of the chosen reference Bundle."""
    from gateway.services.fhir_resources import supported_types

    best: tuple[int, str, dict, list] | None = None
    for path in sorted(REFERENCE.rglob("Bundle-*.json")):
        if name and path.name != name:
            continue
        bundle = json.loads(path.read_text())
        entries = [e for e in bundle.get("entry") or () if e["resource"]["resourceType"] in supported_types()]
        patients = [e for e in entries if e["resource"]["resourceType"] == "Patient"]
        if len(patients) != 1:
            continue
        others = [(e["resource"], e.get("fullUrl")) for e in entries if e is not patients[0]]
        if best is None or len(others) > best[0]:
            best = (len(others), path.name, patients[0], others)
    if best is None:
        raise SystemExit(f"no reference Bundle with one Patient{' named ' + name if name else ''}")
    return best[1], best[2], best[3]


def copy_of(resources: list[tuple[dict, str | None]], k: int) -> list[tuple[dict, str | None]]:
    """Copy k of the resources: ids, fullUrls and the references among them suffixed with -k."""
    ids = {(r["resourceType"], r["id"]) for r, _ in resources}
    urls = {u for _, u in resources if u}

    def rewrite(value):
        if isinstance(value, dict):
            return {key: rewrite(v) for key, v in value.items()}
        if isinstance(value, list):
            return [rewrite(v) for v in value]
        if isinstance(value, str):
            if value in urls:
                return f"{value}-{k}"
            rtype, _, rid = value.partition("/")
            if (rtype, rid) in ids:
                return f"{rtype}/{rid}-{k}"
        return value

    out = []
    for resource, url in resources:
        clone = rewrite(copy.deepcopy(resource))
        clone["id"] = f"{resource['id']}-{k}"
        out.append((clone, f"{url}-{k}" if url else None))
    return out


def floor_of(resource: dict) -> float:
    from fhir.resources.R4B import get_fhir_model_class

    started = time.perf_counter()
    get_fhir_model_class(resource["resourceType"]).model_validate(resource)
    return time.perf_counter() - started


def run(copies: int, name: str | None, database_url: str | None) -> dict:
    from gateway.services.fhir_incremental import FragmentCache
    from gateway.services.fhir_resources import ResourceWrite, apply_writes
    from gateway.store import MetadataStore

    source, patient, others = richest_patient(name)
    sequence = [(patient["resource"], patient.get("fullUrl"))]
    for k in range(copies):
        sequence += copy_of(others, k)
    key = bytes(32)
    with tempfile.TemporaryDirectory() as tmp:
        store = MetadataStore.open(database_url or f"sqlite:///{tmp}/bench.db")
        dataset = f"growth{os.getpid()}"
        store.ensure_dataset(dataset)
        cache = FragmentCache()
        writes, floors = [], []
        try:
            for resource, url in sequence:
                floors.append(floor_of(resource))
                write = ResourceWrite(resource["resourceType"], resource["id"], resource, url)
                started = time.perf_counter()
                apply_writes([write], store=store, key=key, dataset_id=dataset, cache=cache)
                writes.append(time.perf_counter() - started)
        finally:
            if database_url:
                store.delete_dataset(dataset)
            store.close()
    block = max(1, len(writes) // 8)
    blocks = []
    for start in range(1, len(writes), block):  # the Patient (write 0) apart
        part, floor = writes[start : start + block], floors[start : start + block]
        blocks.append(
            {
                "record_size": start + len(part),
                "write_ms_median": round(1000 * statistics.median(part), 2),
                "floor_ms_median": round(1000 * statistics.median(floor), 3),
                "ratio_to_floor": round(statistics.median(part) / statistics.median(floor), 1),
            }
        )
    return {
        "bundle": source,
        "resources_per_copy": len(others),
        "copies": copies,
        "writes": len(writes),
        "store": "postgresql" if database_url else "sqlite",
        "blocks": blocks,
        "last_block_over_first": round(blocks[-1]["write_ms_median"] / blocks[0]["write_ms_median"], 2),
        "total_s": round(sum(writes), 2),
        "cache": {"translated": cache.translated, "merged": cache.merged, "whole": cache.whole, "joined": cache.joined},
        "largest_part": largest_part(cache),
        "load_average": [round(x, 2) for x in os.getloadavg()],
    }


def largest_part(cache) -> dict:
    """The most resources one translated part held (a part that grows with the record makes writes grow)."""
    parts = [key[-1] for key in cache.fragments]  # a fragment's key ends with its part's heads
    biggest = max(parts, key=len, default=())
    types: dict[str, int] = {}
    for head in biggest:
        types[head[0]] = types.get(head[0], 0) + 1
    return {"resources": len(biggest), "by_type": types}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--copies", type=int, default=40)
    parser.add_argument("--bundle", help="a reference Bundle's file name (default: the one with most resources)")
    parser.add_argument("--database-url", help="PostgreSQL instead of a fresh SQLite file")
    args = parser.parse_args()
    figures = run(args.copies, args.bundle, args.database_url)
    out = REPO / "bench" / "out"
    out.mkdir(exist_ok=True)
    (out / "fhir_patient_growth.json").write_text(json.dumps(figures, indent=2))
    print(json.dumps(figures, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
