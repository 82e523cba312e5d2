"""Gateway workers are stateless: two gateway processes over one store serve what either of them ingested.

Two `gateway serve` processes on two loopback ports share one data directory (the variant store), one
PostgreSQL metadata database (a schema of the test database) and one Redis (the query budget). Both answer
a query first, so that every per-process cache (term index, present terms, the variant store's pointer) is
warm; then a FHIR bundle and a VCF are ingested over HTTP through the first, and the next answers of both
count them.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

import pytest

from gateway.beacon import ontology
from tests.beacon.real_node import reference_phenopackets
from tests.network.conftest import free_port
from tests.network.test_e2e_processes import VARIANT, _generated_cohort, _wait_ready
from tests.pg_schema import fresh_schema

pytestmark = pytest.mark.slow  # several seconds: pytest-xdist starts it first (tests/conftest.py)

REPO = Path(__file__).resolve().parents[2]
TOKEN = "two-gateways-operator-token"
BROAD = "HP:0000118"  # Phenotypic abnormality, descendants included


@pytest.fixture
def schema_url(postgres_url):
    with fresh_schema(postgres_url, "gw_two_gateways") as url:
        yield url


@pytest.fixture
def redis_url():
    url = os.environ.get("GATEWAY_TEST_REDIS_URL")
    if not url:
        pytest.skip("GATEWAY_TEST_REDIS_URL is not set (CI sets it to redis://127.0.0.1:6379/15)")
    return url


@pytest.fixture
def two_gateways(tmp_path, schema_url, redis_url):
    config = tmp_path / "gateway.yaml"
    config.write_text(
        json.dumps(
            {
                "node": {"id": "org.example.shared", "base_url": "http://127.0.0.1"},
                "database_url": schema_url,
                "datasets": [
                    {
                        "id": "cohort",
                        "security_level": "PUBLIC",
                        "policy": {"profile": "open", "max_granularity": "record"},
                    }
                ],
                "security": {"redis_url": redis_url, "budget": {"anonymous": None}},
            }
        )
    )
    env = {
        **os.environ,
        "GATEWAY_CONFIG": str(config),
        "GATEWAY_DATA_DIR": str(tmp_path / "shared-data"),
        "GATEWAY_SECRET_KEY": "33" * 32,
        "GATEWAY_OPERATOR_TOKEN": TOKEN,
    }
    ports = [free_port(), free_port()]
    logs = [tmp_path / f"gateway-{port}.log" for port in ports]
    processes = [
        subprocess.Popen(
            [sys.executable, "-m", "gateway.cli", "serve", "--workers", "1", "--port", str(port)],
            cwd=REPO,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=log.open("wb"),  # kept: a gateway that fails to start says why in the assertion
        )
        for port, log in zip(ports, logs, strict=True)
    ]
    urls = [f"http://127.0.0.1:{port}" for port in ports]
    try:
        for url, process, log in zip(urls, processes, logs, strict=True):
            try:
                _wait_ready(url, process, seconds=60)
            except AssertionError as failed:
                raise AssertionError(f"{failed}\n{log.read_text(errors='replace')[-4000:]}") from None
        yield urls, tmp_path
    finally:
        for process in processes:
            process.terminate()
        for process in processes:
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()


def _call(url: str, method: str = "GET", body: bytes | None = None, content_type: str = "") -> tuple[int, dict]:
    headers = {"Authorization": f"Bearer {TOKEN}"}
    if content_type:
        headers["Content-Type"] = content_type
    request = urllib.request.Request(url, data=body, method=method, headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def _individuals(base: str, filters: str = "") -> int:
    query = urllib.parse.urlencode({"requestedGranularity": "count", **({"filters": filters} if filters else {})})
    status, body = _call(f"{base}/api/individuals?{query}")
    assert status == 200, body
    return body["responseSummary"]["numTotalResults"]


def _variant_found(base: str) -> bool:
    status, body = _call(
        f"{base}/api/g_variants?{urllib.parse.urlencode({**VARIANT, 'requestedGranularity': 'count'})}"
    )
    assert status == 200, body
    return bool(body["responseSummary"]["exists"])


def _phenotyped(docs: list[dict]) -> list[dict]:
    """The documents with an observed phenotype under BROAD, each with a subject id of its own."""
    under = ontology.hpo_descendants(BROAD)
    chosen = {}
    for doc in docs:
        observed = {f["type"]["id"] for f in doc.get("phenotypicFeatures", ()) if not f.get("excluded")}
        if observed & under:
            chosen.setdefault(doc["subject"]["id"], doc)
    assert len(chosen) >= 3
    return list(chosen.values())


def test_an_ingest_through_one_gateway_is_served_by_both(two_gateways):
    (first, second), root = two_gateways
    for log in root.glob("gateway-*.log"):  # gunicorn >= 25.1's control socket: one path per user, two nodes
        assert "Control socket" not in log.read_text(errors="replace"), log
    bundle, vcf, sample_map = _generated_cohort(root)
    for base in (first, second):  # warm: every per-process cache has seen the empty store
        assert _individuals(base) == 0
        assert _individuals(base, "NCIT:C16576") == 0
        assert _individuals(base, BROAD) == 0
        assert not _variant_found(base)

    status, outcome = _call(f"{first}/fhir?dataset=cohort", "POST", bundle.read_bytes(), "application/fhir+json")
    assert status == 200, outcome
    for base in (first, second):  # the metadata store: the very next query, no waiting
        assert _individuals(base) == 3
        assert _individuals(base, "NCIT:C16576") == 2  # two female patients: the term index is current too

    # Real phenopackets through the first: a broad HPO filter (descendants of terms now present) finds them
    # on both, within the time the warm caches would otherwise have been reused.
    packets = _phenotyped(reference_phenopackets()[:6])
    status, stored = _call(
        f"{first}/phenopackets?dataset=cohort", "POST", json.dumps(packets).encode(), "application/json"
    )
    assert status == 201 and len(stored["stored"]) == len(packets), stored
    for base in (first, second):
        assert _individuals(base, BROAD) == len(packets)
        assert _individuals(base) == 3 + len(packets)

    status, upload = _call(f"{first}/uploads", "POST", sample_map.read_bytes(), "text/tab-separated-values")
    assert status == 201, upload
    status, job = _call(
        f"{first}/datasets/cohort/vcf?assembly=GRCh38&sample_map={upload['id']}", "POST", vcf.read_bytes(), "text/plain"
    )
    assert status == 202, job
    deadline = time.monotonic() + 90
    while (state := _call(first + job["href"])[1])["status"] == "running":
        assert time.monotonic() < deadline, state
        time.sleep(0.2)
    assert state["status"] == "done", state
    # The variant store's version pointer is re-read at most every 0.5 s: both serve it within a few seconds.
    deadline = time.monotonic() + 10
    while not all(_variant_found(base) for base in (first, second)):
        assert time.monotonic() < deadline, "a gateway never served the new dataset version"
        time.sleep(0.2)
    for base in (first, second):
        query = urllib.parse.urlencode({**VARIANT, "requestedGranularity": "count"})
        status, body = _call(f"{base}/api/g_variants?{query}")
        assert status == 200 and body["responseSummary"]["numTotalResults"] == 1, body
