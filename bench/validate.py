"""Benchmark (not a test): `gateway validate` throughput against the parse-only floor.

1. The 300 real phenopackets (HPO checks on) and the FHIR reference examples: files/s for the floor
   (json load + protobuf ParseDict; fhir.resources parse only) and for all checks, and the ratio (target <= 3x).
2. A 10,000-phenopacket corpus (the real ones replicated in a temp dir) timed end to end through the CLI
   (target < 30 s).

Run: python bench/validate.py [--corpus 10000]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
REFERENCE = (REPO / ".." / "shared" / "reference").resolve()
sys.path.insert(0, str(REPO))


def timed(label: str, function, items) -> float:
    start = time.perf_counter()
    for item in items:
        function(item)
    seconds = time.perf_counter() - start
    print(f"  {label:<28} {len(items) / seconds:9.0f} files/s  ({seconds:.3f} s for {len(items)})")
    return seconds


def phenopacket_floor(path: Path) -> None:
    import phenopackets
    from google.protobuf import json_format

    json_format.ParseDict(json.loads(path.read_bytes()), phenopackets.Phenopacket())


def fhir_floor(path: Path) -> None:
    from fhir.resources.R4B import get_fhir_model_class

    doc = json.loads(path.read_bytes())
    with contextlib.suppress(Exception):  # the floor measures parsing, not the verdict
        get_fhir_model_class(doc["resourceType"]).model_validate(doc)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--corpus", type=int, default=10_000)
    args = parser.parse_args()
    from gateway.validation.engine import Options, validate_path
    from gateway.validation.hpo import load_ontology

    load_ontology()  # loaded once per process, outside the timing
    packets = sorted(REFERENCE.glob("phenopackets/*/PMID_*.json"))
    fhir = sorted(p for p in (REFERENCE / "fhir").rglob("*.json") if "vcf2fhir" not in p.parts)
    options = Options()
    for name, files, floor in (("phenopackets", packets, phenopacket_floor), ("FHIR", fhir, fhir_floor)):
        for f in files[:5]:  # warm caches (compiled schemas, model classes)
            floor(f)
            validate_path(str(f), options)
        print(f"{name}: {len(files)} files")
        base = timed("floor (parse only)", floor, files)
        full = timed("all checks", lambda p: validate_path(str(p), options), files)
        print(f"  ratio all/floor: {full / base:.2f}x (target <= 3x)")

    with tempfile.TemporaryDirectory(prefix="validate-bench-") as tmp:
        for i in range(args.corpus):
            shutil.copyfile(packets[i % len(packets)], Path(tmp) / f"p{i:05d}.json")
        files = sorted(str(p) for p in Path(tmp).iterdir())
        command = [
            sys.executable,
            "-c",
            "import sys; from gateway.cli import main; sys.exit(main(sys.argv[1:]))",
            "validate",
            "--format",
            "json",
            *files,
        ]
        start = time.perf_counter()
        done = subprocess.run(command, cwd=REPO, capture_output=True, check=False)
        seconds = time.perf_counter() - start
        results = json.loads(done.stdout)
        ok = sum(r["valid"] for r in results)
        print(
            f"corpus: {len(results)} phenopackets through the CLI in {seconds:.1f} s "
            f"({len(results) / seconds:.0f} files/s, exit {done.returncode}, {ok} valid; target < 30 s)"
        )


if __name__ == "__main__":
    main()
