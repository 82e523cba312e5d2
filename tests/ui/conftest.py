"""The web pages end to end: a real gateway process (gunicorn, `gateway serve --demo`) and headless Chromium.

The node holds the synthetic demo cohort, declared here with the default ceilings of a PUBLIC dataset
(public yes/no, registered counts, controlled records; granted by a visa) but a public catalogue, plus 80 real phenopackets from
../shared/reference in a second PUBLIC dataset, so that pages meet suppression, rounding and two datasets.
Tokens are minted with the security tests' keys (tests/security/sechelpers.py).

Chromium and chromedriver come from the OS packages (`apt-get install chromium chromium-driver`; .ci/run
installs them). Without them these tests skip on a developer's machine and fail in CI (CI=true).
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import shutil
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest
import yaml

from tests.network.conftest import free_port
from tests.security.sechelpers import AUDIENCE, ISSUER, VISA_ISSUER, jwks_files, keys, mint  # noqa: F401

REPO = Path(__file__).resolve().parents[2]
REFERENCE = (REPO / ".." / "shared" / "reference").resolve()
OPERATOR_TOKEN = "ui-test-operator-token"
DEMO_GRANT = "urn:grant:synthetic-demo"
REFERENCE_DATASET = "reference-packets"
REFERENCE_PACKETS = 80
GATEWAY = (sys.executable, "-m", "gateway.cli")
# the PUBLIC defaults (public yes/no, registered counts, controlled records), with the catalogue (datasets,
# cohorts) listed to everyone, as a node that publishes its holdings would configure it
CATALOGUE_OPEN = {
    "public": {"datasets": "record", "cohorts": "record", "*": "boolean"},
    "registered": {"datasets": "record", "cohorts": "record", "*": "count"},
    "controlled": "record",
}


def _missing(what: str):
    if os.environ.get("CI"):
        pytest.fail(f"{what} is required in CI (.ci/run installs chromium and chromium-driver)")
    pytest.skip(f"{what} is not installed (apt-get install chromium chromium-driver; pip install selenium)")


def _browser_paths() -> tuple[str, str]:
    chrome = shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")
    driver = shutil.which("chromedriver")
    if not chrome or not driver:
        _missing("Chromium with chromedriver")
    return chrome, driver


@pytest.fixture(scope="session")
def artefacts(tmp_path_factory) -> Path:
    """Screenshots land here: $GATEWAY_TEST_ARTEFACTS if set, else a pytest temporary folder."""
    folder = Path(os.environ.get("GATEWAY_TEST_ARTEFACTS") or tmp_path_factory.mktemp("ui-artefacts"))
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def _get(url: str, token: str | None = None, body: dict | None = None) -> tuple[int, dict]:
    headers = {"Accept": "application/json"}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    data = None
    if body is not None:
        data = json.dumps(body).encode()
        headers["Content-Type"] = "application/json"
    request = urllib.request.Request(url, data=data, headers=headers, method="POST" if data else "GET")
    try:
        with urllib.request.urlopen(request, timeout=120) as response:
            return response.status, json.loads(response.read() or b"null")
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read() or b"null")


class Node:
    def __init__(self, base: str, data_dir: Path):
        self.base = base
        self.data_dir = data_dir

    def call(self, path: str, token: str | None = None, body: dict | None = None) -> tuple[int, dict]:
        return _get(self.base + path, token, body)


def _reference_packets() -> list[Path]:
    files = sorted((REFERENCE / "phenopackets").rglob("*.json"))[:REFERENCE_PACKETS]
    if len(files) < REFERENCE_PACKETS:
        if os.environ.get("CI"):
            pytest.fail(f"reference phenopackets missing at {REFERENCE}")
        pytest.skip(f"reference material not found at {REFERENCE}")
    return files


class FakeIssuer:
    """A minimal OpenID provider for the sign-in button: discovery, authorize (no login form: it answers at
    once with a code) and token, which checks the PKCE verifier and hands out a token minted with the
    security tests' keys. It records what it was sent."""

    def __init__(self, minter, sub: str):
        from flask import Flask, jsonify, redirect, request

        self.codes: dict[str, dict] = {}
        self.seen: list[dict] = []
        app = Flask("fake-issuer")

        @app.after_request
        def cors(response):  # browsers call discovery and token across origins
            response.headers["Access-Control-Allow-Origin"] = "*"
            return response

        @app.get("/.well-known/openid-configuration")
        def discovery():
            return jsonify(
                issuer=self.url,
                authorization_endpoint=self.url + "/authorize",
                token_endpoint=self.url + "/token",
            )

        @app.get("/authorize")
        def authorize():
            args = request.args.to_dict()
            self.seen.append(args)
            code = f"code-{len(self.codes)}"
            self.codes[code] = args
            return redirect(f"{args['redirect_uri']}?code={code}&state={args['state']}")

        @app.post("/token")
        def token():
            form = request.form.to_dict()
            self.seen.append(form)
            asked = self.codes.pop(form.get("code"), None)
            digest = hashlib.sha256(form.get("code_verifier", "").encode()).digest()
            challenge = base64.urlsafe_b64encode(digest).rstrip(b"=").decode()
            if asked is None or asked["code_challenge"] != challenge or asked["client_id"] != form.get("client_id"):
                return jsonify(error="invalid_grant"), 400
            return jsonify(access_token=minter.token(sub=sub, exp=int(time.time()) + 3600), token_type="Bearer")

        self.app = app
        self.url = ""


@pytest.fixture(scope="session")
def fake_issuer(mint):  # noqa: F811
    from tests.network.conftest import serve

    issuer = FakeIssuer(mint, sub="ui-oidc-user")
    with serve(issuer.app) as url:
        issuer.url = url
        yield issuer


@pytest.fixture(scope="session")
def ui_node(tmp_path_factory, jwks_files, fake_issuer):  # noqa: F811 (the fixture imported above)
    root = tmp_path_factory.mktemp("ui-node")
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    config = {
        "node": {"id": "org.example.ui", "name": "UI test node", "base_url": base},
        "ui": {"oidc": {"issuer": fake_issuer.url, "client_id": "beacon-ui", "scope": "openid"}},
        "operator_tokens": [OPERATOR_TOKEN],
        "datasets": [
            {
                "id": "synthetic-demo",
                "name": "Synthetic demo cohort",
                "security_level": "PUBLIC",
                "data_use_conditions": ["DUO:0000042"],
                "policy": {"grants": [DEMO_GRANT], "max_granularity": CATALOGUE_OPEN},
            },
            {
                "id": REFERENCE_DATASET,
                "name": "Reference phenopackets",
                "security_level": "PUBLIC",
                "policy": {"max_granularity": CATALOGUE_OPEN},
            },
        ],
        "security": _security_section(jwks_files),
    }
    (root / "gateway.yaml").write_text(yaml.safe_dump(config))
    env = {
        **os.environ,
        "GATEWAY_CONFIG": str(root / "gateway.yaml"),
        "GATEWAY_DATA_DIR": str(root / "data"),
        "GATEWAY_SECRET_KEY": "33" * 32,
        "PYTHONPATH": str(REPO),
    }
    ingest = subprocess.run(
        [*GATEWAY, "ingest", "phenopacket", *map(str, _reference_packets()), "--dataset", REFERENCE_DATASET],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert ingest.returncode == 0, ingest.stderr[-2000:]
    yield from _serve(root, env, base, port, "--demo")


def _serve(root: Path, env: dict, base: str, port: int, *options: str):
    """Run `gateway serve` (gunicorn, 2 workers) until the session ends; yields the Node once it answers."""
    log = open(root / "server.log", "w")  # noqa: SIM115 (closed at teardown)
    server = subprocess.Popen(
        [*GATEWAY, "serve", *options, "--host", "127.0.0.1", "--port", str(port), "--workers", "2"],
        cwd=REPO,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 180
        while True:
            try:
                if _get(base + "/ready")[0] == 200 and _get(base + "/api/info")[0] == 200:
                    break
            except OSError:
                pass
            if server.poll() is not None or time.monotonic() > deadline:
                log.flush()
                pytest.fail("the gateway did not start:\n" + (root / "server.log").read_text()[-3000:])
            time.sleep(0.5)
        yield Node(base, root / "data")
    finally:
        server.terminate()
        try:
            server.wait(timeout=20)
        except subprocess.TimeoutExpired:
            server.kill()
        log.close()


@pytest.fixture(scope="session")
def network_node(tmp_path_factory, ui_node, jwks_files):  # noqa: F811
    """A network node (`gateway serve --network`) whose one peer is the UI test node."""
    root = tmp_path_factory.mktemp("ui-network")
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    # a generous peer timeout: on a loaded machine a 10 s one made the network answer 504 now and then
    (root / "network.yaml").write_text(yaml.safe_dump({"peers": [{"url": ui_node.base + "/api", "timeout": 60}]}))
    config = {
        "node": {"id": "org.example.ui-network", "name": "UI test network", "base_url": base},
        "operator_tokens": [OPERATOR_TOKEN],
        "network": str(root / "network.yaml"),
        "security": _security_section(jwks_files),
    }
    (root / "gateway.yaml").write_text(yaml.safe_dump(config))
    env = {
        **os.environ,
        "GATEWAY_CONFIG": str(root / "gateway.yaml"),
        "GATEWAY_DATA_DIR": str(root / "data"),
        "GATEWAY_SECRET_KEY": "44" * 32,
        "PYTHONPATH": str(REPO),
    }
    yield from _serve(root, env, base, port)


def _security_section(jwks_files) -> dict:  # noqa: F811
    return {
        "issuers": [
            {"issuer": ISSUER, "jwks_file": str(jwks_files["login"])},
            {"issuer": VISA_ISSUER, "jwks_file": str(jwks_files["visas"]), "visas_only": True},
        ],
        "audiences": [AUDIENCE],
        "budget": {"window_seconds": 60, "anonymous": 100000, "registered": 100000},
    }


@pytest.fixture(scope="session")
def tokens(mint):  # noqa: F811
    """A token for each role, valid for an hour (longer than any test session)."""
    exp = int(time.time()) + 3600
    return {
        "operator": OPERATOR_TOKEN,
        "registered": mint.token(sub="ui-registered", exp=exp),
        "controlled": mint.passport(mint.visa(DEMO_GRANT, exp=exp, sub="ui-controlled"), sub="ui-controlled", exp=exp),
    }


@pytest.fixture(scope="session")
def browser():
    chrome, driver_path = _browser_paths()
    try:
        from selenium import webdriver
        from selenium.webdriver.chrome.service import Service
    except ImportError:
        _missing("selenium")
    options = webdriver.ChromeOptions()
    options.binary_location = chrome
    for argument in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--window-size=1280,1600"):
        options.add_argument(argument)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=Service(driver_path), options=options)
    driver.implicitly_wait(0)
    yield driver
    driver.quit()


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_makereport(item, call):
    report = yield
    if report.when == "call" and report.failed and "browser" in item.fixturenames:
        # what the page looked like when a test failed, and what the browser logged
        browser = item.funcargs["browser"]
        folder = item.funcargs.get("artefacts")
        if folder is not None:
            browser.save_screenshot(str(folder / f"FAILED-{item.name}.png"))
            (folder / f"FAILED-{item.name}.log").write_text(
                json.dumps(browser.get_log("browser"), indent=1) + "\n" + browser.page_source
            )
    return report
