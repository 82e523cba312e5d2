"""The query and operator pages in headless Chromium against a real gateway process (see conftest.py).

Every expected value is read from the API with the same token the page uses; nothing is hard-coded.
A screenshot of each page state is written to the artefacts folder.
"""

from __future__ import annotations

import copy
import json
import os
import re
import time
import urllib.request
from pathlib import Path

import pytest

try:
    from selenium.common.exceptions import StaleElementReferenceException
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys
    from selenium.webdriver.support.ui import Select, WebDriverWait
except ImportError:  # the test extra installs it; CI must never skip these tests
    if os.environ.get("CI"):
        raise
    pytest.skip("selenium is not installed (pip install '.[test]')", allow_module_level=True)

from tests.ui.conftest import REFERENCE, REFERENCE_DATASET

pytestmark = pytest.mark.slow
WAIT_S = 30


def _wait(browser, condition, timeout=WAIT_S):
    # an element found just before the page re-renders or navigates goes stale: look again
    waiting = WebDriverWait(browser, timeout, poll_frequency=0.1, ignored_exceptions=(StaleElementReferenceException,))
    return waiting.until(lambda _: condition())


def _console_errors(browser) -> list[dict]:
    return [entry for entry in browser.get_log("browser") if entry["level"] == "SEVERE"]


def _open(browser, url: str, ready_id: str):
    """Load a page signed out (the token lives in sessionStorage) and wait until it has rendered."""
    browser.get(url.split("/ui/")[0] + "/health")  # same origin, no page script that would use a token
    browser.execute_script("sessionStorage.clear()")
    browser.get_log("browser")  # what earlier pages logged is theirs
    browser.get(url)
    _wait(browser, lambda: browser.find_elements(By.ID, ready_id))


def _sign_in(browser, token: str):
    browser.find_element(By.ID, "sign-in").click()
    field = _wait(browser, lambda: browser.find_elements(By.ID, "token-input"))[0]
    field.send_keys(token)
    browser.find_element(By.ID, "token-use").click()
    _wait(browser, lambda: browser.find_elements(By.ID, "sign-out"))


def _shot(browser, artefacts: Path, name: str) -> Path:
    height = browser.execute_script("return document.documentElement.scrollHeight")
    browser.set_window_size(1280, max(900, min(int(height) + 40, 6000)))
    path = artefacts / f"{name}.png"
    assert browser.save_screenshot(str(path))
    assert path.stat().st_size > 10_000  # a rendered page, not a blank image
    browser.set_window_size(1280, 1600)
    return path


def _text(browser, element_id: str) -> str:
    found = browser.find_elements(By.ID, element_id)
    return found[0].text if found else ""


# every form control a person can reach must have a name a screen reader announces
UNLABELLED = """
return [...document.querySelectorAll('input, select, textarea, button')].filter((el) => {
  if (el.getAttribute('aria-label') || el.closest('label')) return false;
  if (el.id && document.querySelector(`label[for="${el.id}"]`)) return false;
  return el.tagName !== 'BUTTON' || !el.textContent.trim();
}).map((el) => el.outerHTML);
"""


def test_both_pages_load_without_console_errors_and_with_the_api_headers(browser, ui_node, tokens, artefacts):
    for path, ready in (("/ui/", "query-form"), ("/ui/operator", "need-token")):
        _open(browser, ui_node.base + path, ready)
        errors = _console_errors(browser)
        assert not errors, errors
        if path == "/ui/operator":
            _sign_in(browser, tokens["operator"])
            _wait(browser, lambda: browser.find_elements(By.ID, "jobs"))
        else:
            browser.find_element(By.ID, "mode-sequence").click()
            browser.find_element(By.ID, "sign-in").click()
        assert browser.execute_script(UNLABELLED) == [], path
    _open(browser, ui_node.base + "/ui/", "query-form")
    _wait(browser, lambda: browser.find_elements(By.ID, "cohorts"))
    _shot(browser, artefacts, "query-page-anonymous")
    with urllib.request.urlopen(ui_node.base + "/ui/", timeout=10) as response:
        headers = response.headers
    assert "script-src 'self' 'sha256-" in headers["Content-Security-Policy"]
    assert "unsafe" not in headers["Content-Security-Policy"]
    assert headers["X-Frame-Options"] == "DENY"
    assert headers["X-Content-Type-Options"] == "nosniff"


def test_phenotype_query_with_autocompletion_shows_the_count_the_api_gives(browser, ui_node, tokens, artefacts):
    _open(browser, ui_node.base + "/ui/", "query-form")
    _sign_in(browser, tokens["registered"])
    term_input = browser.find_element(By.ID, "term-input")
    term_input.send_keys("seiz")

    def options() -> list[tuple[str, str]]:
        found = browser.find_elements(By.CSS_SELECTOR, "#term-options [role=option]")
        return [
            (o.find_element(By.CSS_SELECTOR, ".term-label").text, o.find_element(By.CSS_SELECTOR, ".curie").text)
            for o in found
        ]

    labels = dict(_wait(browser, lambda: ("Seizure" in dict(options())) and options()))
    curie = labels["Seizure"]  # labels, not only CURIEs, and the CURIE the node lists for it

    def active_label() -> str:
        active = term_input.get_attribute("aria-activedescendant")
        return browser.find_element(By.ID, active).find_element(By.CSS_SELECTOR, ".term-label").text if active else ""

    for _ in range(len(labels)):  # down the list with the keyboard to the term, then Enter
        if _wait(browser, active_label) == "Seizure":
            break
        term_input.send_keys(Keys.ARROW_DOWN)
    term_input.send_keys(Keys.ENTER)
    chips = _wait(browser, lambda: browser.find_elements(By.CSS_SELECTOR, ".chosen .chip"))
    assert "Seizure" in chips[0].text and curie in chips[0].text
    browser.find_element(By.ID, "run-query").click()
    shown = _wait(browser, lambda: _text(browser, "answer-count"))

    query = {"filters": [{"id": curie}], "requestedGranularity": "count"}
    status, body = ui_node.call("/api/individuals", tokens["registered"], {"query": query})
    assert status == 200 and body["meta"]["returnedGranularity"] == "count"
    assert int(shown.replace(",", "")) == body["responseSummary"]["numTotalResults"]

    # the bar chart: one bar per dataset, each the API's own answer for that dataset alone
    _wait(browser, lambda: browser.find_elements(By.CSS_SELECTOR, "#dataset-chart .bar"))
    bars = {
        bar.find_element(By.CSS_SELECTOR, ".label").text: bar.find_element(By.CSS_SELECTOR, ".value").text
        for bar in browser.find_elements(By.CSS_SELECTOR, "#dataset-chart .bar")
    }
    assert set(bars) == {"synthetic-demo", REFERENCE_DATASET}
    for dataset, value in bars.items():
        _, alone = ui_node.call(
            "/api/individuals",
            tokens["registered"],
            {"query": {**query, "requestParameters": {"datasetIds": [dataset]}}},
        )
        summary = alone["responseSummary"]
        expected = (
            f"{summary['numTotalResults']:,}" if "numTotalResults" in summary else "yes" if summary["exists"] else "no"
        )
        assert value == expected, (dataset, value, alone)
    request_json = json.loads(browser.find_element(By.ID, "request-json").get_attribute("textContent"))
    assert request_json["query"]["filters"] == [{"id": curie}]
    assert tokens["registered"] not in browser.find_element(By.ID, "request-curl").get_attribute("textContent")
    assert not _console_errors(browser)
    _shot(browser, artefacts, "query-page-phenotype-count")


def _fill_sequence_query(browser, chrom: str, position: str, ref: str, alt: str):
    Select(browser.find_element(By.ID, "entry")).select_by_value("g_variants")
    Select(browser.find_element(By.ID, "granularity")).select_by_value("record")
    browser.find_element(By.ID, "mode-sequence").click()
    for field, value in (("v-referenceName", chrom), ("v-position", position), ("v-referenceBases", ref)):
        browser.find_element(By.ID, field).send_keys(value)
    browser.find_element(By.ID, "v-alternateBases").send_keys(alt)


def test_variant_query_shows_records_to_a_controlled_caller_and_only_yes_no_without_a_token(
    browser, ui_node, tokens, artefacts
):
    # the variant the controlled caller should see: the demo's SCN1A variant, as the API reports it
    # (asked of that dataset alone: an answer is as coarse as the coarsest dataset asked)
    status, body = ui_node.call(
        "/api/g_variants?geneId=SCN1A&requestedGranularity=record&datasetIds=synthetic-demo", tokens["controlled"]
    )
    assert status == 200 and body["meta"]["returnedGranularity"] == "record"
    record = body["response"]["resultSets"][0]["results"][0]
    hgvs = re.fullmatch(r"NC_0*(\d+)\.\d+:g\.(\d+)([ACGT]+)>([ACGT]+)", record["identifiers"]["genomicHGVSId"])
    chrom, position, ref, alt = hgvs.groups()

    _open(browser, ui_node.base + "/ui/", "query-form")
    _fill_sequence_query(browser, chrom, position, ref, alt)
    browser.find_element(By.ID, "ds-synthetic-demo").click()
    browser.find_element(By.ID, "run-query").click()
    _wait(browser, lambda: _text(browser, "answer-exists"))
    assert _text(browser, "answer-exists") == "yes"
    assert _text(browser, "answer-granularity").startswith("whether anything matches")
    assert not browser.find_elements(By.ID, "records")
    assert not browser.find_elements(By.ID, "answer-count")
    assert record["variantInternalId"] not in browser.find_element(By.TAG_NAME, "body").text
    _shot(browser, artefacts, "query-page-variant-anonymous")

    _sign_in(browser, tokens["controlled"])
    browser.find_element(By.ID, "run-query").click()
    table = _wait(browser, lambda: browser.find_elements(By.ID, "records"))[0]
    assert record["variantInternalId"] in table.text
    assert record["identifiers"]["genomicHGVSId"] in table.text
    same = (
        f"referenceName={chrom}&start={int(position) - 1}&referenceBases={ref}&alternateBases={alt}&assemblyId=GRCh38"
    )
    _, asked = ui_node.call(
        f"/api/g_variants?{same}&datasetIds=synthetic-demo&requestedGranularity=record", tokens["controlled"]
    )
    total = asked["responseSummary"]["numTotalResults"]
    assert _text(browser, "records-range") == f"Records 1\u2013{min(total, 10)} of {total}"  # an en dash
    assert _text(browser, "answer-granularity") == "the matching records"
    assert browser.find_elements(By.CSS_SELECTOR, "#region-chart .variant")
    assert not _console_errors(browser)
    _shot(browser, artefacts, "query-page-variant-controlled")


def _broken_phenopacket(tmp_path: Path) -> tuple[Path, bytes]:
    """A real reference phenopacket with one HPO id malformed (seven digits, not five)."""
    source = next(
        p
        for p in sorted((REFERENCE / "phenopackets").rglob("*.json"))
        if json.loads(p.read_text()).get("phenotypicFeatures")
    )
    packet = copy.deepcopy(json.loads(source.read_text()))
    packet["phenotypicFeatures"][0]["type"]["id"] = "HP:99999"
    path = tmp_path / "broken-phenopacket.json"
    path.write_text(json.dumps(packet, indent=2))
    return path, path.read_bytes()


def _rejected_vcf_job(ui_node, token: str) -> dict:
    """A real reference VCF with a broken header, uploaded as an ingest job; its final state."""
    data = (REFERENCE / "vcf" / "cyvcf2" / "test-invalid-header.vcf").read_bytes()
    headers = {"Authorization": f"Bearer {token}", "Content-Type": "text/plain"}
    request = urllib.request.Request(ui_node.base + "/datasets/vcf-upload/vcf", data=data, headers=headers)
    with urllib.request.urlopen(request, timeout=30) as response:
        job_id = json.loads(response.read())["id"]
    deadline = time.monotonic() + 60
    while True:
        _, state = ui_node.call(f"/jobs/{job_id}", token)
        if state["status"] != "running" or time.monotonic() > deadline:
            return state
        time.sleep(0.2)


def _pending_condition(ui_node, token: str) -> str:
    """A Condition sent on its own for a Patient the node has not seen: it waits, pending."""
    condition = {
        "resourceType": "Condition",
        "id": "ui-waiting-condition",
        "code": {"coding": [{"system": "http://www.orpha.net", "code": "558", "display": "Marfan syndrome"}]},
        "subject": {"reference": "Patient/ui-not-yet-sent"},
    }
    request = urllib.request.Request(
        ui_node.base + "/fhir/Condition/ui-waiting-condition",
        data=json.dumps(condition).encode(),
        method="PUT",
        headers={
            "Content-Type": "application/fhir+json",
            "Authorization": f"Bearer {token}",
            "Prefer": "return=OperationOutcome",  # (the default answer is the stored resource)
        },
    )
    with urllib.request.urlopen(request, timeout=30) as response:
        outcome = json.loads(response.read())
    codes = {c["code"] for i in outcome["issue"] for c in i.get("details", {}).get("coding", [])}
    assert "pending" in codes, outcome
    return "Condition/ui-waiting-condition"


def test_operator_page_shows_the_node_and_an_uploaded_files_issues_at_their_locations(
    browser, ui_node, tokens, artefacts, tmp_path
):
    job = _rejected_vcf_job(ui_node, tokens["operator"])
    assert job["status"] == "rejected" and job["issues"]
    waiting = _pending_condition(ui_node, tokens["operator"])
    _open(browser, ui_node.base + "/ui/operator", "need-token")
    _sign_in(browser, tokens["operator"])
    table = _wait(browser, lambda: browser.find_elements(By.ID, "datasets"))[0]
    _, datasets = ui_node.call("/operator/datasets", tokens["operator"])
    for dataset in datasets["datasets"]:
        assert dataset["id"] in table.text
        assert f"{dataset['phenopackets']:,}" in table.text
    jobs = _wait(browser, lambda: browser.find_elements(By.ID, "jobs"))[0]
    row = next(r for r in jobs.find_elements(By.CSS_SELECTOR, "tbody tr") if job["id"] in r.text)
    assert "rejected" in row.text
    first = job["issues"][0]
    assert first["location"] in row.find_element(By.CSS_SELECTOR, ".job-issues").text
    assert first["message"] in row.text
    pending = _wait(browser, lambda: browser.find_elements(By.ID, "pending"))[0]
    _, listed = ui_node.call("/fhir/$pending", tokens["operator"])
    entry = next(e for e in listed["entry"] if e["fullUrl"] == waiting)
    _wait(browser, lambda: waiting in pending.text)
    assert entry["response"]["outcome"]["issue"][0]["diagnostics"] in pending.text
    _, audit = ui_node.call("/admin/audit/verify", tokens["operator"])
    _wait(browser, lambda: "records" in _text(browser, "audit"))
    assert ("Intact" if audit["ok"] else "BROKEN") in _text(browser, "audit")

    path, data = _broken_phenopacket(tmp_path)
    request = urllib.request.Request(
        ui_node.base + "/validate?name=" + path.name,
        data=data,
        method="POST",
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=30) as response:
        report = json.loads(response.read())[0]
    expected = next(i for i in report["issues"] if i["severity"] == "error" and i["location"])
    browser.find_element(By.ID, "validate-file").send_keys(str(path))
    browser.find_element(By.ID, "validate-run").click()
    rows = _wait(browser, lambda: browser.find_elements(By.CSS_SELECTOR, "#validation-issues tbody tr"))
    located = [r for r in rows if r.find_element(By.CSS_SELECTOR, "td.location").text == expected["location"]]
    assert located, [r.text for r in rows]
    assert expected["message"] in located[0].text
    assert '"HP:99999"' in located[0].text  # the value found at that location in the uploaded file
    assert "not valid" in _text(browser, "validation-verdict")

    browser.find_element(By.ID, "verify-start").click()
    verdict = _wait(browser, lambda: _text(browser, "verify-result"), timeout=180)
    _, state = ui_node.call("/operator/verify", tokens["operator"])
    assert state["status"] == "done"
    assert verdict.startswith("Conformant" if state["report"][0]["valid"] else "Not conformant")
    assert state["report"][0]["valid"], verdict  # the node passes its own verifier
    assert not _console_errors(browser)
    _shot(browser, artefacts, "operator-page")


def test_sign_in_at_the_configured_issuer_with_pkce(browser, ui_node, fake_issuer, tokens, artefacts):
    _open(browser, ui_node.base + "/ui/", "query-form")
    browser.find_element(By.ID, "oidc-sign-in").click()
    _wait(browser, lambda: "Signed in as ui-oidc-user" in _text(browser, "who"))
    assert "code=" not in browser.current_url  # the code is not left in the address bar
    authorize, token = fake_issuer.seen[-2:]
    assert authorize["code_challenge_method"] == "S256" and authorize["redirect_uri"] == ui_node.base + "/ui/"
    assert token["grant_type"] == "authorization_code" and token["code_verifier"]
    # the token is used: a count query answers at the registered level, as the API does for such a token
    browser.find_element(By.ID, "run-query").click()
    _wait(browser, lambda: _text(browser, "answer-granularity"))
    _, body = ui_node.call("/api/individuals", tokens["registered"], {"query": {"requestedGranularity": "count"}})
    assert _text(browser, "answer-count") == f"{body['responseSummary']['numTotalResults']:,}"
    assert not _console_errors(browser)
    _shot(browser, artefacts, "query-page-oidc-signed-in")

    # the operator page finishes its own sign-in too; this user has no operator role, and is told so
    _open(browser, ui_node.base + "/ui/operator", "need-token")
    browser.find_element(By.ID, "oidc-sign-in").click()
    _wait(browser, lambda: "Signed in as ui-oidc-user" in _text(browser, "who"))
    assert fake_issuer.seen[-2]["redirect_uri"] == ui_node.base + "/ui/operator"
    _wait(browser, lambda: "operator role" in _text(browser, "need-token"))


def test_records_come_in_pages_as_the_api_pages_them(browser, ui_node, tokens):
    query = "referenceName=22&start=0&end=50818468&assemblyId=GRCh38&datasetIds=synthetic-demo"
    _, page_two = ui_node.call(
        f"/api/g_variants?{query}&requestedGranularity=record&skip=1&limit=10", tokens["controlled"]
    )
    total = page_two["responseSummary"]["numTotalResults"]
    assert total > 10
    _open(browser, ui_node.base + "/ui/", "query-form")
    _sign_in(browser, tokens["controlled"])
    Select(browser.find_element(By.ID, "entry")).select_by_value("g_variants")
    Select(browser.find_element(By.ID, "granularity")).select_by_value("record")
    browser.find_element(By.ID, "mode-range").click()
    for field, value in (("v-referenceName", "22"), ("v-from", "1"), ("v-to", "50818468")):
        browser.find_element(By.ID, field).send_keys(value)
    browser.find_element(By.ID, "ds-synthetic-demo").click()
    browser.find_element(By.ID, "run-query").click()
    _wait(browser, lambda: _text(browser, "records-range") == f"Records 1\u201310 of {total:,}")
    browser.find_element(By.ID, "page-next").click()
    _wait(browser, lambda: _text(browser, "records-range").startswith("Records 11\u2013"))
    first = browser.find_element(By.CSS_SELECTOR, "#records tbody tr td").text
    assert first == page_two["response"]["resultSets"][0]["results"][0]["variantInternalId"]
    assert browser.find_elements(By.ID, "page-previous")
    assert not _console_errors(browser)


def _privacy_notes() -> list[str]:
    """Every note the security hook can put in `info.privacy`, read from its source (k=5, step=10)."""
    from gateway.beacon import access as guard

    source = Path(guard.__file__).read_text()
    literal = re.findall(r'notes\.append\(f?"([^"]+)"\)', source)
    notes = [n.replace("{k}", "5").replace("{step}", "10") for n in literal]
    notes += [template.format(k=5, step=10) for template in guard._RECORD_NOTES.values()]
    assert len(notes) >= 6
    return notes


def test_every_privacy_note_the_node_can_write_is_explained_in_words(browser, ui_node):
    _open(browser, ui_node.base + "/ui/", "query-form")
    explained = browser.execute_async_script(
        "const done = arguments[arguments.length - 1];"
        "import('/ui/static/js/query.js').then((m) => done(arguments[0].map((n) => m.explain(n))));",
        _privacy_notes(),
    )
    missing = [note for note, words in zip(_privacy_notes(), explained, strict=True) if not words]
    assert not missing, missing


def test_a_network_node_asks_the_whole_network_and_shows_each_peer(browser, network_node, ui_node, tokens, artefacts):
    _open(browser, network_node.base + "/ui/", "query-form")
    _sign_in(browser, tokens["registered"])
    Select(browser.find_element(By.ID, "target")).select_by_value("network")
    browser.find_element(By.ID, "run-query").click()
    peers = _wait(browser, lambda: browser.find_elements(By.ID, "peers"))[0]
    status, merged = network_node.call(
        "/api/individuals", tokens["registered"], {"query": {"requestedGranularity": "count"}}
    )
    assert status == 200, merged
    assert _text(browser, "answer-count") == f"{merged['responseSummary']['numTotalResults']:,}"
    (peer,) = merged["info"]["network"]["peers"]
    row = peers.find_element(By.CSS_SELECTOR, "tbody tr").text
    assert peer["beaconId"] in row and peer["status"] in row and f"{peer['numTotalResults']:,}" in row
    bars = browser.find_elements(By.CSS_SELECTOR, "#dataset-chart .bar")  # one bar per peer
    assert [b.find_element(By.CSS_SELECTOR, ".label").text for b in bars] == [peer["beaconId"]]
    assert not _console_errors(browser)
    _shot(browser, artefacts, "query-page-network")

    # "this node only" asks the network node's own Beacon, which holds nothing
    Select(browser.find_element(By.ID, "target")).select_by_value("local")
    browser.find_element(By.ID, "run-query").click()
    _wait(browser, lambda: _text(browser, "answer-exists") == "no" and not browser.find_elements(By.ID, "peers"))
    assert "/local/api/individuals" in browser.find_element(By.ID, "request-curl").get_attribute("textContent")
