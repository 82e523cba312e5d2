"""End to end over loopback with three gateway processes (gunicorn, one worker each, own data directories):

- a German-profile node holding MII FHIR data (the Marfan bundle and two MII test-data bundles),
- a generic-profile node holding a generated cohort: FHIR patients and a VCF whose samples map to them,
- a network node over both (`gateway serve --network FILE`).

Network answers find the individuals of the first and the variants of the second, merged counts equal the
sum of the direct answers, and every result set carries its peer's beaconId.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from tests.network.conftest import free_port

pytestmark = pytest.mark.slow  # several seconds: pytest-xdist starts it first (tests/conftest.py)

REPO = Path(__file__).resolve().parents[2]
REFERENCE = (REPO / ".." / "shared" / "reference").resolve()
MII_BUNDLES = [
    REFERENCE / "fhir" / "mii-seltene-erkrankungen" / "Bundle-bundle-marfan-complete.json",
    REFERENCE / "fhir" / "mii-testdata" / "Bundle-mii-exa-test-data-bundle-pat-1.json",
    REFERENCE / "fhir" / "mii-testdata" / "Bundle-mii-exa-test-data-bundle-pat-2.json",
]
# the datasets' policy is declared explicitly, so the security defaults do not change the answers
OPEN = "{profile: open, max_granularity: record}"
VARIANT = {
    "referenceName": "1",
    "start": "999999",
    "referenceBases": "A",
    "alternateBases": "G",
    "assemblyId": "GRCh38",
}


def _cli(env: dict, *args: str) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "gateway.cli", *args], cwd=REPO, env=env, capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr[-2000:]


def _env(root: Path, name: str, config: str) -> dict:
    (root / f"{name}.yaml").write_text(config)
    return {
        **os.environ,
        "GATEWAY_CONFIG": str(root / f"{name}.yaml"),
        "GATEWAY_DATA_DIR": str(root / name),
        "GATEWAY_SECRET_KEY": "22" * 32,
    }


def _generated_cohort(root: Path) -> tuple[Path, Path, Path]:
    patients = [
        {
            "fullUrl": f"urn:uuid:00000000-0000-4000-8000-00000000000{i}",
            "resource": {
                "resourceType": "Patient",
                "id": f"p{i}",
                "identifier": [{"system": "http://example.org/cohort", "value": f"P{i}"}],
                "gender": gender,
                "birthDate": "1980-01-01",
            },
        }
        for i, gender in enumerate(("female", "male", "female"), 1)
    ]
    bundle = root / "patients.json"
    bundle.write_text(json.dumps({"resourceType": "Bundle", "type": "collection", "entry": patients}))
    vcf = root / "cohort.vcf"
    vcf.write_text(
        "##fileformat=VCFv4.2\n##contig=<ID=1,length=248956422>\n"
        '##FORMAT=<ID=GT,Number=1,Type=String,Description="Genotype">\n'
        "#CHROM\tPOS\tID\tREF\tALT\tQUAL\tFILTER\tINFO\tFORMAT\tS1\tS2\tS3\n"
        "1\t1000000\t.\tA\tG\t.\tPASS\t.\tGT\t0/1\t0/0\t1/1\n"
        "1\t2000000\t.\tC\tT\t.\tPASS\t.\tGT\t0/1\t0/1\t0/0\n"
    )
    sample_map = root / "samples.tsv"
    sample_map.write_text("".join(f"S{i}\thttp://example.org/cohort|P{i}\n" for i in (1, 2, 3)))
    return bundle, vcf, sample_map


def _serve(env: dict, port: int, *extra: str) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "gateway.cli", "serve", "--workers", "1", "--port", str(port), *extra],
        cwd=REPO,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


def _wait_ready(url: str, process: subprocess.Popen, seconds: float = 30) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        assert process.poll() is None, f"{url}: the gateway exited with {process.returncode}"
        try:
            with urllib.request.urlopen(url + "/health", timeout=1):
                return
        except OSError:
            time.sleep(0.1)
    raise AssertionError(f"{url} did not become ready in {seconds} s")


def get(base: str, path: str, **params) -> dict:
    query = urllib.parse.urlencode(params)
    try:
        with urllib.request.urlopen(f"{base}{path}?{query}", timeout=15) as response:
            return json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return json.loads(exc.read())


@pytest.fixture(scope="module")
def nodes(tmp_path_factory, reference_dir):
    root = tmp_path_factory.mktemp("e2e")
    de_env = _env(
        root,
        "de",
        f"node: {{id: org.example.de, name: German node}}\nprofile: mii\n"
        f"datasets:\n  - {{id: de-rare, security_level: PUBLIC, policy: {OPEN}}}\n",
    )
    gen_env = _env(
        root,
        "gen",
        f"node: {{id: org.example.gen, name: Generic node}}\nprofile: generic\n"
        f"datasets:\n  - {{id: cohort, security_level: PUBLIC, policy: {OPEN}}}\n",
    )
    _cli(de_env, "ingest", "fhir", *map(str, MII_BUNDLES), "--dataset", "de-rare")
    bundle, vcf, sample_map = _generated_cohort(root)
    _cli(gen_env, "ingest", "fhir", str(bundle), "--dataset", "cohort")
    _cli(
        gen_env,
        "ingest",
        "vcf",
        str(vcf),
        "--dataset",
        "cohort",
        "--assembly",
        "GRCh38",
        "--sample-map",
        str(sample_map),
    )
    ports = {name: free_port() for name in ("de", "gen", "net")}
    urls = {name: f"http://127.0.0.1:{port}" for name, port in ports.items()}
    network_file = root / "network.yaml"
    network_file.write_text(
        "peers:\n"
        f"  - {{url: {urls['de']}/api, beaconId: org.example.de, timeout: 5}}\n"
        f"  - {{url: {urls['gen']}/api, beaconId: org.example.gen, assemblyId: GRCh38}}\n"
    )
    net_env = _env(root, "net", f"node: {{id: org.example.network, base_url: '{urls['net']}'}}\n")
    processes = {
        "de": _serve(de_env, ports["de"]),
        "gen": _serve(gen_env, ports["gen"]),
        "net": _serve(net_env, ports["net"], "--network", str(network_file)),
    }
    try:
        for name, process in processes.items():
            _wait_ready(urls[name], process)
        yield urls
    finally:
        for process in processes.values():
            process.terminate()
        for process in processes.values():
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()


def test_network_finds_the_individuals_of_the_german_node(nodes, official):
    body = get(nodes["net"], "/api/individuals", requestedGranularity="record", limit="50")
    assert official(body) == [], official(body)[:3]
    sets = body["response"]["resultSets"]
    german = [rs for rs in sets if rs["beaconId"] == "org.example.de"]
    assert german and sum(len(rs["results"]) for rs in german) == 3  # the three MII patients
    direct = get(nodes["de"], "/api/individuals", requestedGranularity="record", limit="50")
    assert sorted(r["id"] for rs in german for r in rs["results"]) == sorted(
        r["id"] for rs in direct["response"]["resultSets"] for r in rs["results"]
    )
    assert all(rs["beaconId"] in ("org.example.de", "org.example.gen") for rs in sets)


def test_network_finds_the_variants_of_the_generic_node(nodes, official):
    body = get(nodes["net"], "/api/g_variants", requestedGranularity="record", **VARIANT)
    assert official(body) == [], official(body)[:3]
    assert body["responseSummary"]["exists"] is True
    sets = body["response"]["resultSets"]
    assert [rs["beaconId"] for rs in sets] == ["org.example.gen"]
    assert sets[0]["info"]["assemblyId"] == "GRCh38" and sets[0]["resultsCount"] == 1


@pytest.mark.parametrize(
    "path, params",
    [
        ("/api/individuals", {}),
        ("/api/individuals", {"filters": "NCIT:C16576"}),
        ("/api/g_variants", VARIANT),
        ("/api/g_variants", {"referenceName": "1", "start": "0", "end": "3000000", "assemblyId": "GRCh38"}),
    ],
)
def test_merged_counts_are_the_sum_of_the_direct_answers(nodes, official, path, params):
    merged = get(nodes["net"], path, requestedGranularity="count", **params)
    assert official(merged) == []
    direct = [get(nodes[name], path, requestedGranularity="count", **params) for name in ("de", "gen")]
    totals = [d["responseSummary"].get("numTotalResults", 0) if "responseSummary" in d else 0 for d in direct]
    assert merged["responseSummary"]["numTotalResults"] == sum(totals)
    lines = {p["beaconId"]: p for p in merged["info"]["network"]["peers"]}
    assert set(lines) == {"org.example.de", "org.example.gen"}


def test_the_network_describes_itself(nodes):
    info = get(nodes["net"], "/api/info")
    assert info["response"]["info"]["aggregator"] is True
    assert {p["beaconId"] for p in info["response"]["info"]["peers"]} == {"org.example.de", "org.example.gen"}
    served = get(nodes["net"], "/api/map")["response"]["endpointSets"]
    assert served["individual"]["rootUrl"] == nodes["net"] + "/api/individuals"
    assert served["genomicVariant"]["rootUrl"] == nodes["net"] + "/api/g_variants"
