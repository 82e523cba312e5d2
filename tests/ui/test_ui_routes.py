"""The pages' server side without a browser: routes, headers, configuration, the operator JSON, vendoring."""

from __future__ import annotations

import base64
import hashlib
import json
import re
from pathlib import Path

import pytest

from gateway.api.ui import STATIC
from gateway.config import ConfigError
from gateway.services.genomic import write_job
from tests.conftest import REFERENCE


def _packets(n: int) -> list[dict]:
    files = sorted((REFERENCE / "phenopackets").rglob("*.json"))[:n]
    return [json.loads(p.read_text()) for p in files]


def _app(gateway_config, **extra):
    from app import create_app

    return create_app({**gateway_config, **extra})


def test_pages_carry_the_api_headers_and_a_csp_that_allows_only_the_hashed_import_map(client):
    for path in ("/ui/", "/ui/operator"):
        response = client.get(path)
        assert response.status_code == 200 and response.mimetype == "text/html"
        html = response.get_data(as_text=True)
        inline = re.findall(r"<script(?: [^>]*)?>(.*?)</script>", html, re.S)
        assert len(inline) == 2 and inline[1] == ""  # the import map, and the module loaded by src
        digest = base64.b64encode(hashlib.sha256(inline[0].encode()).digest()).decode()
        csp = response.headers["Content-Security-Policy"]
        assert f"script-src 'self' 'sha256-{digest}'" in csp
        assert "default-src 'none'" in csp and "frame-ancestors 'none'" in csp and "unsafe" not in csp
        assert "style=" not in html  # no inline style: style-src is 'self' only
        for name in ("X-Content-Type-Options", "X-Frame-Options", "Referrer-Policy", "Cross-Origin-Opener-Policy"):
            assert response.headers[name]


def test_the_node_root_leads_to_the_page_and_the_beacon_root_is_untouched(client):
    assert client.get("/").headers["Location"].endswith("/ui/")
    assert client.get("/ui").headers["Location"].endswith("/ui/")
    assert client.get("/api/").get_json()["meta"]["beaconId"]  # the Beacon root stays the Beacon's


def test_every_file_a_page_loads_is_served_from_the_package(client):
    referenced = set()
    for page in ("index.html", "operator.html"):
        referenced |= set(re.findall(r'(?:src|href)="(/ui/static/[^"]+)"', (STATIC / page).read_text()))
    import_map = json.loads((STATIC / "importmap.json").read_text())["imports"]
    referenced |= set(import_map.values())
    for js in (STATIC / "js").glob("*.js"):
        referenced |= {f"/ui/static/js/{m}" for m in re.findall(r'from "\./([\w.-]+)"', js.read_text())}
    assert len(referenced) >= 8
    for path in sorted(referenced):
        response = client.get(path)
        assert response.status_code == 200, path
        if path.endswith(".js"):
            assert response.mimetype in ("text/javascript", "application/javascript"), path  # module scripts


def test_no_file_is_fetched_from_another_origin_at_run_time():
    for path in STATIC.rglob("*"):
        if path.suffix in (".js", ".html", ".css", ".json"):
            text = path.read_text()
            for url in re.findall(r"""(?:import|from|src=|href=|url\()\s*["']?(https?://[^"')\s]+)""", text):
                pytest.fail(f"{path.relative_to(STATIC)} loads {url}")


def test_vendored_libraries_are_unchanged_and_carry_their_licences():
    vendor = STATIC / "vendor"
    readme = (vendor / "README.md").read_text()
    listed = dict((name, digest) for digest, name in re.findall(r"^([0-9a-f]{64})  (\S+)$", readme, re.M))
    scripts = sorted(p.name for p in vendor.glob("*.js"))
    assert sorted(listed) == scripts
    for name in scripts:
        assert hashlib.sha256((vendor / name).read_bytes()).hexdigest() == listed[name], name
    assert (vendor / "LICENSE-preact.txt").read_text().startswith("The MIT License")
    assert "Apache License" in (vendor / "LICENSE-htm.txt").read_text()


def test_page_configuration_names_the_bases_and_the_oidc_issuer(gateway_config):
    oidc = {"issuer": "https://login.example.org/realms/x", "client_id": "beacon-ui", "scope": "openid profile"}
    app = _app(gateway_config, ui={"oidc": oidc})
    try:
        client = app.test_client()
        config = client.get("/ui/config.json").get_json()
        assert config["localBase"] == "/api" and config["network"] is False
        assert config["oidc"] == {"issuer": oidc["issuer"], "clientId": "beacon-ui", "scope": "openid profile"}
        csp = client.get("/ui/").headers["Content-Security-Policy"]
        assert "connect-src 'self' https://login.example.org;" in csp  # the browser may call the issuer
    finally:
        app.extensions["gateway"].store.close()


@pytest.mark.parametrize(
    ("section", "message"),
    [
        ({"oidc": {"issuer": "login.example.org", "client_id": "x"}}, "ui.oidc.issuer"),
        ({"oidc": {"issuer": "https://login.example.org"}}, "ui.oidc.client_id"),
        ({"oidc": "https://login.example.org"}, "ui.oidc"),
        (["oidc"], "ui:"),
    ],
)
def test_a_mistaken_ui_section_stops_the_start_with_its_name(gateway_config, section, message):
    with pytest.raises(ConfigError, match=re.escape(message)):
        _app(gateway_config, ui=section)


def test_operator_json_needs_the_operator(client, operator):
    for path in ("/operator/datasets", "/operator/jobs", "/operator/verify"):
        assert client.get(path).status_code == 401
        assert client.get(path, headers={"Authorization": "Bearer not-the-operator"}).status_code in (401, 403)
        assert client.get(path, headers=operator).status_code == 200
    assert client.post("/operator/verify").status_code == 401


def test_operator_datasets_report_sizes_level_duo_and_policy(gateway_config, operator):
    app = _app(
        gateway_config,
        datasets=[
            {"id": "ds-open", "security_level": "PUBLIC", "data_use_conditions": ["DUO:0000042"]},
            {"id": "ds-closed", "policy": {"count_threshold": 3}},
        ],
    )
    try:
        client = app.test_client()
        assert client.post("/phenopackets?dataset=ds-open", json=_packets(3), headers=operator).status_code in (
            200,
            201,
        )
        body = client.get("/operator/datasets", headers=operator).get_json()
        by_id = {d["id"]: d for d in body["datasets"]}
        assert by_id["ds-open"]["phenopackets"] == 3 and by_id["ds-closed"]["phenopackets"] == 0
        assert by_id["ds-open"]["securityLevel"] == "PUBLIC" and by_id["ds-closed"]["securityLevel"] == "CONTROLLED"
        assert by_id["ds-open"]["dataUseConditions"][0]["id"] == "DUO:0000042"
        assert by_id["ds-closed"]["policy"]["countThreshold"] == 3
        assert by_id["ds-open"]["policy"]["ceilings"]["PUBLIC"]["*"] == "boolean"  # the PUBLIC default
        assert by_id["ds-open"]["variantStore"] is None
    finally:
        app.extensions["gateway"].store.close()


def test_operator_jobs_newest_first_without_internal_fields(app, client, operator):
    data_dir = Path(app.extensions["gateway"].config.data_dir)
    issue = {"severity": "error", "code": "vcf-record", "message": "bad REF", "location": "x.vcf:12"}
    write_job(data_dir, "job1", {"id": "job1", "kind": "vcf-ingest", "status": "done", "upload": "/secret/path"})
    write_job(data_dir, "samplemap-x", {"sample_map": {"S1": "P1"}})
    write_job(data_dir, "job2", {"id": "job2", "kind": "vcf-ingest", "status": "rejected", "issues": [issue]})
    jobs = client.get("/operator/jobs", headers=operator).get_json()["jobs"]
    assert {j["id"] for j in jobs} == {"job1", "job2"}
    assert all("upload" not in j and "pid" not in j for j in jobs)
    assert next(j for j in jobs if j["id"] == "job2")["issues"] == [issue]
    assert client.get("/operator/jobs?limit=0", headers=operator).status_code == 400
    assert client.get("/operator/jobs?limit=x", headers=operator).status_code == 400
    assert len(client.get("/operator/jobs?limit=1", headers=operator).get_json()["jobs"]) == 1


def test_self_verification_reports_never_before_a_run(client, operator):
    assert client.get("/operator/verify", headers=operator).get_json() == {"status": "never"}


def test_network_mode_pages_ask_the_local_node_at_its_own_prefix(gateway_config):
    network = {"peers": [{"url": "http://127.0.0.1:9/api", "timeout": 0.2}], "refresh_interval": 600}
    app = _app(gateway_config, network=network)
    try:
        config = app.test_client().get("/ui/config.json").get_json()
        assert config["network"] is True
        assert (config["localBase"], config["networkBase"]) == ("/local/api", "/api")
    finally:
        app.extensions["gateway"].store.close()


def _luminance(hex_colour: str) -> float:
    channels = [int(hex_colour[i : i + 2], 16) / 255 for i in (1, 3, 5)]
    linear = [c / 12.92 if c <= 0.03928 else ((c + 0.055) / 1.055) ** 2.4 for c in channels]
    return 0.2126 * linear[0] + 0.7152 * linear[1] + 0.0722 * linear[2]


def test_text_colours_meet_wcag_aa_contrast_on_white():
    """Also white text on the accent (primary button, highlighted option): the ratio is symmetric."""
    css = (STATIC / "css" / "app.css").read_text()
    colours = dict(re.findall(r"--([\w-]+):\s*(#[0-9a-fA-F]{6});", css))
    for name in ("ink", "muted", "accent", "yes", "no"):
        ratio = (1.0 + 0.05) / (_luminance(colours[name]) + 0.05)
        assert ratio >= 4.5, (name, colours[name], round(ratio, 2))
