"""The hostile inputs of issue 12 §4 against a real gunicorn worker: none may kill it (its timeout is 30 s, the
work limit 20 s), each is answered with a 4xx or a report, and /health answers throughout. Before the fixes, a
342-byte YAML alias bomb to /validate took both workers down (/health 28-42 s)."""

from __future__ import annotations

import gzip
import json
import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from tests.conftest import OPERATOR_TOKEN

pytestmark = pytest.mark.slow  # several seconds: pytest-xdist starts it first (tests/conftest.py)

ROOT = Path(__file__).resolve().parents[2]
ALIAS_BOMB = (
    b'a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]\n'
    b"b: &b [*a,*a,*a,*a,*a,*a,*a,*a,*a]\nc: &c [*b,*b,*b,*b,*b,*b,*b,*b,*b]\n"
    b"d: &d [*c,*c,*c,*c,*c,*c,*c,*c,*c]\ne: &e [*d,*d,*d,*d,*d,*d,*d,*d,*d]\n"
    b"f: &f [*e,*e,*e,*e,*e,*e,*e,*e,*e]\ng: &g [*f,*f,*f,*f,*f,*f,*f,*f,*f]\n"
    b"h: &h [*g,*g,*g,*g,*g,*g,*g,*g,*g]\nmetaData: *h\n"
)
VCF_HEAD = b"##fileformat=VCFv4.2\n##contig=<ID=chr1,length=248956422>\n"


def _gzip_bomb() -> bytes:
    head = VCF_HEAD + b"#CHROM\tPOS\tID\tREF\tALT\tQUAL\tFILTER\tINFO\n"
    return gzip.compress(head + b"chr1\t1000\t.\tA\tG\t50\tPASS\t.\n" * 2_000_000, 6)


def _wide_header() -> bytes:
    names = "\t".join(f"S{i:07d}" for i in range(1_000_000)).encode()
    return gzip.compress(VCF_HEAD + b"#CHROM\tPOS\tID\tREF\tALT\tQUAL\tFILTER\tINFO\tFORMAT\t" + names + b"\n", 6)


ATTACKS = [
    ("yaml alias bomb", "POST", "/validate?type=phenopacket", ALIAS_BOMB, {}),
    ("deep yaml", "POST", "/validate?type=phenopacket", b"a: " + b"[" * 50_000, {}),
    ("5000-digit integer", "POST", "/api/individuals", b'{"query": {"pagination": {"limit": ' + b"1" * 5000 + b"}}}",
     {"Content-Type": "application/json"}),
    ("gzip bomb VCF", "POST", "/validate?type=vcf&name=bomb.vcf.gz", None, {}),
    ("1e6-sample VCF header", "POST", "/validate?type=vcf&name=wide.vcf.gz", None, {}),
    ("50 broad HPO filters", "POST", "/api/individuals",
     json.dumps({"query": {"filters": [{"id": "HP:0000118"}] * 50}}).encode(), {"Content-Type": "application/json"}),
    ("8000-character request id", "GET", "/api/info", None, {"X-Request-ID": "x" * 8000}),
    ("NUL in an id", "GET", "/api/individuals/a%00b", None, {}),
    ("long dataset id", "POST", "/fhir?dataset=" + "a" * 300, b"{}",
     {"Content-Type": "application/fhir+json", "Authorization": f"Bearer {OPERATOR_TOKEN}"}),
    ("deep JSON to $validate", "POST", "/fhir/Bundle/$validate", b"[" * 100_000, {"Content-Type": "application/fhir+json"}),
]  # fmt: skip


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _request(base: str, method: str, path: str, body: bytes | None, headers: dict) -> tuple[int, bytes, float]:
    started = time.monotonic()
    req = urllib.request.Request(base + path, data=body, method=method, headers=headers)
    try:
        with urllib.request.urlopen(req, timeout=60) as resp:
            return resp.status, resp.read(), time.monotonic() - started
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read(), time.monotonic() - started


@pytest.fixture(scope="module")
def live(tmp_path_factory):
    work = tmp_path_factory.mktemp("live")
    port = _free_port()
    log = work / "gunicorn.log"
    env = {
        **os.environ,
        "PYTHONPATH": str(ROOT),
        "GATEWAY_DATA_DIR": str(work / "data"),
        "GATEWAY_SECRET_KEY": "00" * 32,
        "GATEWAY_OPERATOR_TOKEN": OPERATOR_TOKEN,
    }
    proc = subprocess.Popen(
        [sys.executable, "-m", "gunicorn", "-w", "1", "--timeout", "30", "-b", f"127.0.0.1:{port}",
         "--error-logfile", str(log), "app:create_app()"],
        cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            if _request(base, "GET", "/health", None, {})[0] == 200:
                break
        except OSError:
            time.sleep(0.2)
    else:
        proc.kill()
        pytest.fail("gunicorn did not start: " + log.read_text()[-2000:])
    yield base, log
    proc.terminate()
    proc.wait(30)


def test_no_attack_kills_a_worker_or_gets_a_5xx(live):
    base, log = live
    bodies = {"gzip bomb VCF": _gzip_bomb(), "1e6-sample VCF header": _wide_header()}
    results = {}
    for name, method, path, body, headers in ATTACKS:
        status, answer, seconds = _request(base, method, path, bodies.get(name, body), headers)
        results[name] = {"status": status, "seconds": round(seconds, 2)}
        assert status < 500, (name, status, answer[:300])
        assert b"Traceback" not in answer
        health, _, health_s = _request(base, "GET", "/health", None, {})
        assert health == 200 and health_s < 2, (name, health, health_s)
    text = log.read_text()
    boots = text.count("Booting worker")
    assert boots == 1 and "WORKER TIMEOUT" not in text and "was sent SIGKILL" not in text, text[-2000:]
    report = os.environ.get("GATEWAY_ATTACK_REPORT")
    if report:
        Path(report).write_text(json.dumps({"attacks": results, "worker_boots": boots}, indent=1))
