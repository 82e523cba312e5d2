"""Benchmark (not a test): `gateway ingest fhir` on a FHIR Bulk Data export (NDJSON, a file per type).

    python bench/fhir_bulk_ingest.py [--patients 5 20] [--copies 5] [--order first|last] [--tree DIR]

The export is made from the reference Bundle with the most mapped resources (a real MII oncology patient):
per patient, its resources `--copies` times over (ids suffixed, references rewritten: bench/fhir_patient_growth),
written one file per resource type. It is ingested in process through `gateway.cli.main` into a fresh embedded
store, the Patient file first or last (`--order`: last makes every other resource wait, then apply). Reported:
CPU per resource, next to the floor (a bare `fhir.resources` parse of the same resources, same run), and how the
cost per resource changes with the size of the export (1.0: linear). `--tree DIR`: run another checkout's code
(e.g. the one before a change) on the same files, in a child process.
Results go to bench/out/fhir_bulk_ingest.json.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "bench"))


def export(folder: Path, patients: int, copies: int) -> tuple[list[str], list[dict]]:
    """Write the export; (the files with Patient.ndjson first, every resource written)."""
    import fhir_patient_growth as growth

    _, patient_entry, others = growth.richest_patient(None)
    patient_id = patient_entry["resource"]["id"]
    by_type: dict[str, list[dict]] = {}
    for p in range(patients):
        patient = json.loads(json.dumps(patient_entry["resource"]))
        patient["id"] = f"{patient_id}-p{p}"
        for identifier in patient.get("identifier") or ():
            identifier["value"] = f"{identifier.get('value', '')}-p{p}"
        by_type.setdefault("Patient", []).append(patient)
        for k in range(copies):
            for resource, _ in growth.copy_of(others, k + p * copies):
                text = json.dumps(resource).replace(f'"Patient/{patient_id}"', f'"Patient/{patient_id}-p{p}"')
                moved = json.loads(text)
                if len(moved["id"]) <= 64:  # a FHIR id's limit (long copy suffixes pass it)
                    by_type.setdefault(moved["resourceType"], []).append(moved)
    files = []
    for resource_type, resources in sorted(by_type.items()):
        path = folder / f"{resource_type}.ndjson"
        path.write_text("".join(json.dumps(r) + "\n" for r in resources))
        files.append(str(path))
    files.sort(key=lambda f: not f.endswith("/Patient.ndjson"))
    return files, [r for rs in by_type.values() for r in rs]


def ingest_cpu(files: list[str], data_dir: str) -> float:
    """CPU seconds of `gateway ingest fhir FILES` in this process (stdout and stderr swallowed)."""
    os.environ["GATEWAY_DATA_DIR"] = data_dir
    os.environ.setdefault("GATEWAY_SECRET_KEY", "ab" * 32)
    from gateway.cli import main

    sink = io.StringIO()
    start = time.process_time()
    with contextlib.redirect_stdout(sink), contextlib.redirect_stderr(sink):
        code = main(["ingest", "fhir", *files, "--dataset", "bulk"])
    cpu = time.process_time() - start
    if code != 0:
        raise SystemExit(f"ingest failed ({code}):\n{sink.getvalue()[-2000:]}")
    return cpu


# The other checkout's ingest, in a child whose imports come from it (PYTHONPATH): warm with the first file in
# another store, then CPU seconds of all the files.
_CHILD = """
import contextlib, io, os, sys, time
os.environ.setdefault("GATEWAY_SECRET_KEY", "ab" * 32)
from gateway.cli import main
sink = io.StringIO()
base = os.environ["GATEWAY_DATA_DIR"]
with contextlib.redirect_stdout(sink), contextlib.redirect_stderr(sink):
    os.environ["GATEWAY_DATA_DIR"] = base + "-warm"
    main(["ingest", "fhir", sys.argv[1], "--dataset", "bulk"])
    os.environ["GATEWAY_DATA_DIR"] = base
    start = time.process_time()
    code = main(["ingest", "fhir", *sys.argv[2:], "--dataset", "bulk"])
    cpu = time.process_time() - start
print(cpu if code == 0 else "nan")
"""


def floor_cpu(resources: list[dict]) -> float:
    from fhir.resources.R4B import get_fhir_model_class

    start = time.process_time()
    for resource in resources:
        get_fhir_model_class(resource["resourceType"]).model_validate(resource)
    return time.process_time() - start


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--patients", type=int, nargs="+", default=[5, 20])
    parser.add_argument("--copies", type=int, default=5)
    parser.add_argument("--order", choices=("first", "last"), default="first")
    parser.add_argument("--tree", help="another checkout to run on the same files")
    args = parser.parse_args()
    rows = []
    for patients in args.patients:
        with tempfile.TemporaryDirectory() as tmp:
            files, resources = export(Path(tmp), patients, args.copies)
            if args.order == "last":
                files = [*files[1:], files[0]]
            floor_cpu(resources)  # warm the model classes
            floor = floor_cpu(resources)
            ingest_cpu(files[:1], f"{tmp}/warm")  # imports, mappings, schemas
            cpu = ingest_cpu(files, f"{tmp}/data")
            row = {
                "patients": patients,
                "resources": len(resources),
                "cpu_ms_per_resource": round(cpu / len(resources) * 1000, 2),
                "floor_ms_per_resource": round(floor / len(resources) * 1000, 3),
                "ratio_to_floor": round(cpu / floor, 1),
            }
            if args.tree:
                env = {**os.environ, "PYTHONPATH": args.tree, "GATEWAY_DATA_DIR": f"{tmp}/tree"}
                command = [sys.executable, "-c", _CHILD, files[0], *files]  # the first file twice: warm, then all
                before = float(subprocess.run(command, env=env, capture_output=True, text=True, check=True).stdout)
                row["tree_cpu_ms_per_resource"] = round(before / len(resources) * 1000, 2)
            rows.append(row)
    first, last = rows[0], rows[-1]
    figures = {
        "order": args.order,
        "copies": args.copies,
        "rows": rows,
        "per_resource_last_over_first": round(last["cpu_ms_per_resource"] / first["cpu_ms_per_resource"], 2),
        "load_average": [round(x, 2) for x in os.getloadavg()],
    }
    out = REPO / "bench" / "out"
    out.mkdir(exist_ok=True)
    (out / "fhir_bulk_ingest.json").write_text(json.dumps(figures, indent=2))
    print(json.dumps(figures, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
