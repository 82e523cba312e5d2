"""What a conditional write costs as its dataset grows: `PUT Patient?identifier=system|value` (a hospital upserting
its patient by MRN) and a Condition whose subject is `Patient?identifier=value` (no system), against the same
update by id (the floor: what a write costs when the client knows the id), in one run.

    python bench/fhir_conditional_writes.py [--patients 1000 4000 16000] [--database-url postgresql+psycopg://…]

CPU time of this process (time.process_time), best of `--repeat`, per write; the dataset is filled in batches of
500 Patients per transaction (not timed).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from gateway.services.fhir_incremental import FragmentCache
from gateway.services.fhir_resources import ResourceWrite, apply_writes, conditional_search
from gateway.store import MetadataStore

KEY = bytes(32)
MRN = "http://hospital.example/mrn"


def patient(n: int, version: int = 0, with_id: bool = True) -> dict:
    """Patient n; each `version` another birth year, so that every timed write changes it (an unchanged one
    writes nothing: a best-of would time that)."""
    resource = {
        "resourceType": "Patient",
        "identifier": [{"system": MRN, "value": f"A-{n}"}],
        "gender": "female",
        "birthDate": f"{1900 + version % 100}-01-01",
    }
    return {"id": f"p{n}", **resource} if with_id else resource


def condition(n: int, subject: str) -> dict:
    return {
        "resourceType": "Condition",
        "id": f"c{n}",
        "code": {"coding": [{"system": "http://fhir.de/CodeSystem/bfarm/icd-10-gm", "code": "Q87.4"}]},
        "subject": {"reference": subject},
    }


@contextlib.contextmanager
def store_at(database_url: str | None):
    if database_url is None:
        with tempfile.TemporaryDirectory() as tmp:
            store = MetadataStore.open(f"sqlite:///{tmp}/bench.db")
            yield store
            store.close()
        return
    from tests.pg_schema import fresh_schema

    with fresh_schema(database_url, "bench_cond") as url:
        store = MetadataStore.open(url)
        yield store
        store.close()


def best_cpu(write, repeat: int) -> float:
    times = []
    for i in range(repeat):
        started = time.process_time()
        write(i)
        times.append(time.process_time() - started)
    return min(times)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--patients", type=int, nargs="+", default=[1000, 4000, 16000])
    parser.add_argument("--repeat", type=int, default=7)
    parser.add_argument("--database-url")
    args = parser.parse_args()
    rows = []
    with store_at(args.database_url) as store:
        store.ensure_dataset("d")
        cache = FragmentCache()

        def apply(*writes: ResourceWrite) -> None:
            apply_writes(list(writes), store=store, key=KEY, dataset_id="d", cache=cache)

        filled = 0
        for target in sorted(args.patients):
            while filled < target:
                batch = range(filled, min(target, filled + 500))
                apply(*(ResourceWrite("Patient", f"p{n}", patient(n)) for n in batch))
                filled = batch[-1] + 1
            n = target // 2
            by_mrn = conditional_search("Patient", f"identifier={MRN}|A-{n}")
            by_id = best_cpu(lambda i, n=n: apply(ResourceWrite("Patient", f"p{n}", patient(n, 1 + i))), args.repeat)
            conditional = best_cpu(
                lambda i, n=n, by_mrn=by_mrn: apply(
                    ResourceWrite("Patient", None, patient(n, 50 + i, False), conditional=by_mrn)
                ),
                args.repeat,
            )
            referenced = best_cpu(
                lambda i, n=n: apply(
                    ResourceWrite("Condition", f"c{n}-{i}", condition(n, f"Patient?identifier=A-{n}"))
                ),
                args.repeat,
            )
            rows.append(
                {
                    "patients": target,
                    "update_by_id_ms": round(1000 * by_id, 2),
                    "conditional_update_ms": round(1000 * conditional, 2),
                    "conditionally_referenced_write_ms": round(1000 * referenced, 2),
                    "conditional_update_x_by_id": round(conditional / by_id, 2),
                }
            )
            print(json.dumps(rows[-1]), file=sys.stderr)
    store_name = "postgresql" if args.database_url else "sqlite"
    print(json.dumps({"store": store_name, "rows": rows, "load_average": [round(x, 2) for x in os.getloadavg()]}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
