"""Benchmark (not a test): what the issue-12 defences cost, as ratios against a floor in the same run.

1. Bounded validation: `validate_bytes` on real phenopackets and a real FHIR bundle, in process (the floor) and
   through `run_bounded` (a forked child with time and memory limits, as `POST /validate` runs it).
2. Audit append: a keyed, head-tracked record (`AuditLog.append`) against the floor of one `os.write` of a line
   of the same size to an O_APPEND file under `flock`.

Run: python bench/hardening_cost.py [--rounds 200]
"""

from __future__ import annotations

import argparse
import fcntl
import json
import os
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
REFERENCE = (REPO / ".." / "shared" / "reference").resolve()
sys.path.insert(0, str(REPO))


def per_call(function, rounds: int) -> float:
    start = time.perf_counter()
    for _ in range(rounds):
        function()
    return (time.perf_counter() - start) / rounds


def bounded_validation(rounds: int) -> None:
    from gateway.bounded import run_bounded
    from gateway.validation.engine import Options, validate_bytes

    samples = {
        "phenopacket": (REFERENCE / "phenopackets" / "TRIM63" / "PMID_25801283_proband_III_4.json").read_bytes(),
        "FHIR bundle": (
            REFERENCE / "fhir" / "mii-seltene-erkrankungen" / "Bundle-bundle-marfan-complete.json"
        ).read_bytes(),
    }
    options = Options()
    for name, data in samples.items():
        validate_bytes(data, "x.json", options)  # warm the caches (HPO, schemas) the child inherits
        floor = per_call(lambda data=data: validate_bytes(data, "x.json", options), rounds)
        bounded = per_call(
            lambda data=data: run_bounded(validate_bytes, data, "x.json", options, seconds=20, memory_bytes=2**30),
            rounds,
        )
        print(
            f"  {name:<12} in process {floor * 1e3:7.2f} ms   bounded child {bounded * 1e3:7.2f} ms   "
            f"ratio {bounded / floor:5.2f}x   (+{(bounded - floor) * 1e3:.2f} ms)"
        )


def audit_append(rounds: int) -> None:
    from gateway.security.audit import AuditLog

    with tempfile.TemporaryDirectory() as tmp:
        log = AuditLog(tmp)
        fields = dict(decision="allowed", endpoint="/api/individuals", request_id="r", caller="anonymous")
        log.append(**fields)
        keyed = per_call(lambda: log.append(**fields), rounds)
        line = (json.dumps(list(log.records())[-1]) + "\n").encode()
        path = Path(tmp) / "floor.jsonl"

        def floor_write() -> None:
            fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_APPEND, 0o600)
            fcntl.flock(fd, fcntl.LOCK_EX)
            os.write(fd, line)
            fcntl.flock(fd, fcntl.LOCK_UN)
            os.close(fd)

        floor = per_call(floor_write, rounds)
        print(
            f"  audit append  floor {floor * 1e6:7.1f} µs   keyed + head + checkpoints {keyed * 1e6:7.1f} µs   "
            f"ratio {keyed / floor:5.2f}x"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=200)
    args = parser.parse_args()
    print("bounded validation (POST /validate, /fhir/$validate, POST /fhir):")
    bounded_validation(max(args.rounds // 4, 10))
    print("audit:")
    audit_append(args.rounds * 10)


if __name__ == "__main__":
    main()
