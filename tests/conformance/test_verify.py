"""`gateway verify` against the gateway's own node (must pass) and against a broken Beacon (each defect reported)."""

from __future__ import annotations

import json

from gateway.cli import main
from gateway.conformance import verify
from tests.conformance.broken_beacon import create_broken_app


def names(checks, *, failed=True):
    return {c.name for c in checks if (not c.ok) == failed}


def test_own_node_passes_every_check(gateway_node, app):
    report = verify(gateway_node, timeout=5)
    # Every check passes: informational endpoints, every entry type, cross-links, errors, pagination, testMode.
    assert report.ok, [f"{c.entity or 'node'}: {c.name}: {c.message}" for c in report.failures]
    assert set(report.entities) == {
        "g_variants",
        "individuals",
        "biosamples",
        "analyses",
        "runs",
        "datasets",
        "cohorts",
    }
    assert "g_variants" in report.entities
    entity_checks = [c for c in report.checks if c.entity == "g_variants"]
    assert len(entity_checks) >= 30 and all(c.ok or c.warning for c in entity_checks)
    for required in (
        "get-record",
        "post-count",
        "limit-honoured",
        "total-stable-across-pages",
        "single-entry-id",
        "error-unparsable-body-envelope",
        "test-mode-echoed",
        "get-post-agree-count",
    ):
        assert required in {c.name for c in entity_checks if c.ok}, required
    [node] = report.to_json()
    assert node["entities"]["g_variants"]["valid"] is True and node["entities"]["g_variants"]["error"] is None


def test_broken_beacon_defects_are_all_reported(live_url, capsys):
    base = live_url(create_broken_app()) + "/api"
    report = verify(base, timeout=5)
    failed = names(report.checks)
    assert not report.ok
    assert "info" in failed  # wrong schema
    assert "map-urls-absolute" in failed  # relative URLs
    assert "map-returned-entry-types" in failed  # filtering terms as an endpoint returning "filteringTerm"
    assert "limit-honoured" in failed  # ignores limit
    assert "total-stable-across-pages" in failed  # numTotalResults changes between pages
    assert {"error-bad-limit", "error-bad-granularity", "error-unparsable-body"} <= failed  # 200 on malformed
    assert "get-boolean-granularity" in failed  # answered above the granularity asked
    assert "single-entry" in failed  # /{id} for an id the node itself returned
    assert "service-info" in failed and "configuration" in failed  # endpoints missing
    info = next(c for c in report.checks if c.name == "info")
    assert "/response/organization" in info.message and "/response/environment" in info.message

    code = main(["verify", base, "--format", "json", "--timeout", "5"])
    out = json.loads(capsys.readouterr().out)
    assert code == 1
    [node] = out
    assert node["url"] == base and node["valid"] is False
    individuals = node["entities"]["individuals"]
    assert individuals["valid"] is False and "limit-honoured" in individuals["error"]
    assert any(c["name"] == "limit-honoured" and c["result"] == "fail" for c in individuals["checks"])


def test_text_summary_and_usage(live_url, capsys):
    base = live_url(create_broken_app()) + "/api"
    assert main(["verify", base, "--timeout", "5"]) == 1
    out = capsys.readouterr().out
    assert "NOT conformant" in out and "FAIL limit-honoured" in out
    assert main(["verify", "ftp://example.org"]) == 2
    assert main(["verify", base, "--timeout", "0"]) == 2


def test_unreachable_node_fails_quickly():
    report = verify("http://127.0.0.1:9", timeout=1)  # the discard port: nothing listens
    assert not report.ok and "info" in names(report.checks)


def _paged_app(pages: dict[int, dict[str, list[str]]]):
    """A Beacon whose /individuals answers `pages[skip]` (result set id → record ids) at limit 1."""
    from flask import Flask, jsonify, request

    from tests.conformance.broken_beacon import _meta

    app = Flask("paged-beacon")

    @app.get("/api/map")
    def beacon_map():
        endpoint = {"entryType": "individual", "rootUrl": "/api/individuals"}
        return jsonify({"meta": _meta(), "response": {"endpointSets": {"individual": endpoint}}})

    @app.route("/api/individuals", methods=["GET", "POST"])
    def individuals():
        skip = int(request.args.get("skip", 0))
        sets = [
            {"id": d, "setType": "dataset", "exists": True, "resultsCount": 2, "results": [{"id": i} for i in ids]}
            for d, ids in pages.get(skip, pages[0]).items()
        ]
        summary = {"exists": True, "numTotalResults": 4}
        return jsonify({"meta": _meta("record"), "responseSummary": summary, "response": {"resultSets": sets}})

    return app


def _disjoint_check(live_url, pages):
    report = verify(live_url(_paged_app(pages)) + "/api", timeout=5)
    return next(c for c in report.checks if c.name == "pages-disjoint")


def test_one_person_in_two_datasets_is_not_a_pagination_failure(live_url):
    # p2 is in both datasets: second in ds1, first in ds2. Each result set pages correctly.
    check = _disjoint_check(live_url, {0: {"ds1": ["p1"], "ds2": ["p2"]}, 1: {"ds1": ["p2"], "ds2": ["p3"]}})
    assert check.ok, check.message


def test_a_record_repeated_within_one_result_set_is_a_pagination_failure(live_url):
    check = _disjoint_check(live_url, {0: {"ds1": ["p1"], "ds2": ["p2"]}, 1: {"ds1": ["p1"], "ds2": ["p3"]}})
    assert not check.ok and "ds1" in check.message
