"""Benchmark (not a test): the cost of writing a resource that belongs to no patient, as its dataset grows.

    python bench/fhir_patient_less_writes.py [--prefills 0,2,8] [--writes 40] [--database-url URL]

A Medication (or a Specimen without subject) belongs to no patient: its write rebuilds the phenopackets of the
patients whose resources reference it, and must find them. This fills one dataset with N copies of the real
corpus (bench/fhir_ingest.py's patients, resource by resource, not timed), keeps one patient whose
MedicationStatement names a Medication, then updates that Medication `--writes` times (alternating two
contents) and reports the median CPU time per write for each N (and the wall time: PostgreSQL's own work is
not our CPU), and the CPU ratio of the largest N to the smallest: 1.0 means the write costs the same in any
dataset. Results go to bench/out/fhir_patient_less_writes.json.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "bench"))

KEY = bytes(range(32))


def _medication(name: str) -> dict:
    coding = {"system": "http://www.whocc.no/atc", "code": "N02BA01", "display": name}
    return {"resourceType": "Medication", "id": "bench-med", "code": {"coding": [coding]}}


def per_write(prefill: int, writes: int, database_url: str | None) -> dict:
    from fhir_ingest import fresh_store_url, load_corpus, patient_resources, tagged

    from gateway.services.fhir_incremental import FragmentCache
    from gateway.services.fhir_resources import ResourceWrite, apply_writes
    from gateway.store import MetadataStore

    def put(store, resource, full_url=None):
        write = ResourceWrite(resource["resourceType"], resource["id"], resource, full_url)
        return apply_writes([write], store=store, key=KEY, dataset_id="bench", cache=cache)

    cache = FragmentCache()
    # one patient per sequence (two Bundles may send one person), then per copy (as fhir_ingest --prefill does)
    sequences = [tagged(resources, f"t{n}") for n, resources in enumerate(patient_resources(load_corpus()))]
    with fresh_store_url(database_url) as url:
        store = MetadataStore.open(url)
        try:
            store.ensure_dataset("bench")
            for copy_number in range(prefill):
                for resources in sequences:
                    for resource, full_url in tagged(resources, f"p{copy_number}"):
                        put(store, resource, full_url)
            put(store, {"resourceType": "Patient", "id": "bench-p", "gender": "female", "birthDate": "1990-01-01"})
            put(store, _medication("aspirin"))
            statement = {
                "resourceType": "MedicationStatement",
                "id": "bench-s",
                "status": "active",
                "subject": {"reference": "Patient/bench-p"},
                "medicationReference": {"reference": "Medication/bench-med"},
            }
            put(store, statement)
            with store.engine.connect() as connection:
                rows = connection.exec_driver_sql("SELECT count(*) FROM fhir_resources").scalar()
            samples, walls = [], []
            for n in range(writes):
                cpu, wall = time.process_time(), time.perf_counter()
                (change,) = put(store, _medication("acetylsalicylic acid" if n % 2 == 0 else "aspirin"))
                samples.append(time.process_time() - cpu)
                walls.append(time.perf_counter() - wall)  # PostgreSQL's own work shows here, not in our CPU
                assert change.status == "updated"
        finally:
            store.close()
    return {
        "prefill": prefill,
        "rows": rows,
        "cpu_ms_per_write": round(statistics.median(samples) * 1000, 3),
        "wall_ms_per_write": round(statistics.median(walls) * 1000, 3),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--prefills", default="0,2,8")
    parser.add_argument("--writes", type=int, default=40)
    parser.add_argument("--database-url")
    args = parser.parse_args()
    figures = [per_write(int(n), args.writes, args.database_url) for n in args.prefills.split(",")]
    report = {
        "store": "postgresql" if args.database_url else "sqlite",
        "per_prefill": figures,
        "largest_to_smallest": round(figures[-1]["cpu_ms_per_write"] / figures[0]["cpu_ms_per_write"], 2),
        "load_average": list(os.getloadavg()),
    }
    print(json.dumps(report, indent=2))
    out = REPO / "bench" / "out"
    out.mkdir(exist_ok=True)
    (out / "fhir_patient_less_writes.json").write_text(json.dumps(report, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
