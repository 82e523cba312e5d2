"""Run third-party Beacon verifiers and clients against a live `gateway serve --demo` and print their verdicts
(not a test: the tools are other people's code, fetched or installed by hand; tests/conformance replays what
they send without needing them).

    python bench/third_party_verifiers.py [--ega-verifier DIR] [--ai4gh-python PYTHON] [--port 0]

- `gateway verify` (this project's own verifier) always runs, as the reference verdict.
- EGA beacon-verifier-v2: DIR is its `pydantic/` folder (a checkout of EGA-archive/beacon-verifier-v2; it needs
  pydantic 2, python-dateutil and requests). Its `verifier.py -url <root>` prints "… is OK" or "… got the next
  validation errors" per document; both are counted, and a crash is reported with its last line.
- ai4gh (`pip install ai4gh`): its Beacon compliance suite (ai4gh.compliance.suites.beacon), run with PYTHON
  (default: this interpreter) when that interpreter can import it.
- bycon (`pip install bycon`) is a Beacon *server* framework (MongoDB behind it) with no HTTP client to run; the
  request shapes of its beaconplus web client are replayed here (trailing slash, repeated arrays, testModeCount,
  requestedGranularity=aggregated, includeHandovers) and each answer is checked by `gateway validate`'s schemas.
A tool that is not available is listed as such, never silently left out.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

AI4GH_SNIPPET = """
import asyncio, json, sys
from ai4gh.compliance.suites.beacon import BeaconComplianceSuite
from importlib.metadata import version
result = asyncio.run(BeaconComplianceSuite(sys.argv[1]).run())
print(json.dumps({"version": version("ai4gh"), "results": [[r.name, r.status.value, r.message] for r in result.results]}))
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_demo(port: int, data_dir: Path) -> subprocess.Popen:
    env = {**os.environ, "GATEWAY_DATA_DIR": str(data_dir), "PYTHONPATH": str(ROOT)}
    command = [sys.executable, "-m", "gateway.cli", "serve", "--demo", "--port", str(port), "--workers", "0"]
    process = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/info", timeout=2) as response:
                if response.status == 200:
                    return process
        except OSError:
            time.sleep(0.5)
    process.kill()
    raise SystemExit("the demo node did not start within 120 s")


def own_verifier(root: str) -> tuple[str, str, str]:
    from gateway.conformance import verify

    report = verify(root, timeout=20)
    failed = [f"{c.entity or 'node'}: {c.name}" for c in report.failures]
    verdict = "pass" if report.ok else "fail"
    return "gateway verify", verdict, f"{len(report.checks)} checks, {len(failed)} failed, {report.requests} requests"


def ega_verifier(root: str, folder: str | None) -> tuple[str, str, str]:
    name = "EGA beacon-verifier-v2"
    if not folder or not (Path(folder) / "verifier.py").is_file():
        return name, "not run", "no checkout given (--ega-verifier DIR with its pydantic/verifier.py)"
    run = subprocess.run(
        [sys.executable, "verifier.py", "-url", root], cwd=folder, capture_output=True, text=True, timeout=300
    )
    lines = run.stdout.splitlines()
    ok = [line for line in lines if line.endswith("is OK")]
    bad = [line for line in lines if "got the next validation errors" in line]
    details = []
    for line in bad:  # the pydantic message after each failure names the field
        following = lines[lines.index(line) + 1 : lines.index(line) + 4]
        details.append(f"{line.split(' got ')[0]}: {' / '.join(f.strip() for f in following)[:160]}")
    if run.returncode != 0:
        last = (run.stderr.strip().splitlines() or ["(no message)"])[-1]
        return name, "crashed", f"{len(ok)} OK, {len(bad)} failed before the crash; {last[:200]}" + _join(details)
    return name, "pass" if not bad else "fail", f"{len(ok)} documents OK, {len(bad)} failed" + _join(details)


def _join(details: list[str]) -> str:
    return ("; " + "; ".join(details)) if details else ""


def ai4gh_suite(root: str, python: str) -> tuple[str, str, str]:
    run = subprocess.run([python, "-c", AI4GH_SNIPPET, root], capture_output=True, text=True, timeout=300)
    if run.returncode != 0:
        last = (run.stderr.strip().splitlines() or ["(no message)"])[-1]
        return "ai4gh compliance (beacon)", "not run", f"not importable with {python}: {last[:160]}"
    report = json.loads(run.stdout.strip().splitlines()[-1])
    failed = [f"{n}: {m}" for n, status, m in report["results"] if status != "pass"]
    verdict = "pass" if not failed else "fail"
    name = f"ai4gh {report['version']} compliance (beacon)"
    return name, verdict, f"{len(report['results']) - len(failed)}/{len(report['results'])} tests pass" + _join(failed)


BEACONPLUS_SHAPES = (
    "/biosamples/?includeHandovers=true&requestedGranularity=aggregated&filters=HP:0001250&filters=HP:0001263",
    "/biosamples/?requestedGranularity=aggregated&testMode=true&testModeCount=1000",
    "/individuals/?filters=HP:0001250&datasetIds=synthetic-demo&limit=1",
    "/g_variants/?referenceName=17&start=43044294&start=43125482&end=43044295&end=43125483",
    "/datasets/synthetic-demo?requestedGranularity=aggregated",
)


def beaconplus_shapes(root: str, python: str) -> tuple[str, str, str]:
    from gateway.validation.beacon import validate_beacon_response

    probe = subprocess.run(
        [python, "-c", "from importlib.metadata import version; print(version('bycon'))"],
        capture_output=True,
        text=True,
    )
    installed = f"bycon {probe.stdout.strip()} installed" if probe.returncode == 0 else "bycon not installed"
    failed = []
    for shape in BEACONPLUS_SHAPES:
        try:
            with urllib.request.urlopen(root + shape, timeout=20) as response:
                body = json.loads(response.read())
        except (OSError, ValueError) as exc:
            failed.append(f"{shape}: {exc}")
            continue
        report = validate_beacon_response(body)
        if not report.ok:
            failed.append(f"{shape}: {report.errors[0].message}")
    verdict = "pass" if not failed else "fail"
    detail = f"{installed} (a server, no client to run); {len(BEACONPLUS_SHAPES) - len(failed)}/"
    return (
        "bycon / beaconplus request shapes (replayed)",
        verdict,
        detail + f"{len(BEACONPLUS_SHAPES)} answered" + _join(failed),
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ega-verifier", default=os.environ.get("EGA_VERIFIER_DIR"))
    parser.add_argument("--ai4gh-python", default=sys.executable, help="interpreter with ai4gh / bycon installed")
    parser.add_argument("--port", type=int, default=0)
    args = parser.parse_args()
    port = args.port or free_port()
    with tempfile.TemporaryDirectory(prefix="verifiers-") as data_dir:
        process = start_demo(port, Path(data_dir))
        root = f"http://127.0.0.1:{port}/api"
        try:
            rows = [
                own_verifier(root),
                ega_verifier(root, args.ega_verifier),
                ai4gh_suite(root, args.ai4gh_python),
                beaconplus_shapes(root, args.ai4gh_python),
            ]
        finally:
            process.terminate()
            process.wait(timeout=20)
    print(f"against a fresh `gateway serve --demo` at {root}\n")
    print("| client / verifier | verdict | detail |")
    print("| --- | --- | --- |")
    for name, verdict, detail in rows:
        print(f"| {name} | {verdict} | {detail.replace('|', '/')} |")


if __name__ == "__main__":
    main()
