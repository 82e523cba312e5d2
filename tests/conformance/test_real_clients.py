"""The node driven the way real Beacon clients and verifiers drive it, over HTTP, against a fresh
`gateway serve --demo` configuration (no base_url, default budget and policies).

What each client sends and expects was read from its source (nothing of it is needed at run time):
- EGA beacon-verifier-v2: GET /map, /info, /configuration; collects every `rootUrl` and related endpoint `url`
  of /map and GETs them bare; its configuration model accepts only the default model's entry type ids.
- ELIXIR NEAT-style validators: call every related endpoint of /map as an endpoint of its `returnedEntryType`.
- GA4GH beacon-verifier (Rust): loads each entry type's record schema from `defaultSchema.referenceToSchemaDefinition`
  of /configuration (resolved inside a checkout of the default model), and gives up when a /map endpoint set's
  `entryType` has none; then GETs roots, one single entry (`{id}` from the root's records) and related endpoints.
- Progenetix bycon / beaconplus web client: `…/biosamples/?…` with a trailing slash, arrays as repeated
  parameters (`filters=A&filters=B`, `start=…&start=…`), `testMode=true&testModeCount=…`,
  `requestedGranularity=aggregated`, its own extra parameters (`includeHandovers=true`).
"""

from __future__ import annotations

import json
import re
import tempfile
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from tests.beacon.official_schemas import MODELS, check_informational, check_response

OFFICIAL_ENTRY_TYPES = set(json.loads((MODELS / "beaconConfiguration.json").read_text())["entryTypes"])


@pytest.fixture(scope="module")
def demo_node():
    """A fresh demo node served over HTTP on a free port, as `gateway serve --demo` configures it."""
    from app import create_app
    from tests.conformance.conftest import _serve

    data = tempfile.mkdtemp(prefix="conformance-demo-")
    app = create_app({"data_dir": Path(data) / "data", "secret_key": "ab" * 32, "demo": True})
    server, thread = _serve(app)
    yield f"http://127.0.0.1:{server.server_port}"
    server.shutdown()
    thread.join(timeout=5)
    app.extensions["gateway"].store.close()


def fetch(url: str, body: dict | None = None) -> tuple[int, str, dict | None]:
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(url, data=data, headers={"Content-Type": "application/json"} if data else {})
    try:
        with urllib.request.urlopen(request, timeout=20) as response:
            status, content_type, raw = response.status, response.headers.get_content_type(), response.read()
    except urllib.error.HTTPError as exc:
        status, content_type, raw = exc.code, exc.headers.get_content_type(), exc.read()
    parsed = json.loads(raw) if content_type == "application/json" else None
    return status, content_type, parsed


def _map(node: str) -> dict:
    status, _, body = fetch(node + "/api/map")
    assert status == 200
    return body["response"]["endpointSets"]


def _some_id(node: str, root: str) -> str:
    _, _, body = fetch(root + "?requestedGranularity=record&limit=1")
    response = body.get("response") or {}
    records = response.get("collections") or [r for s in response.get("resultSets", []) for r in s["results"]]
    assert records, root
    return records[0].get("id") or records[0]["variantInternalId"]


# --- EGA beacon-verifier-v2 -----------------------------------------------------------------------------------


def test_ega_verifier_configuration_model_accepts_the_entry_types(demo_node):
    status, _, body = fetch(demo_node + "/api/configuration")
    assert status == 200 and check_informational("configuration", body) == []
    entry_types = body["response"]["entryTypes"]
    assert set(entry_types) <= OFFICIAL_ENTRY_TYPES  # its pydantic model refuses any other key
    for definition in entry_types.values():
        assert re.match(r"[A-Za-z0-9]+:[A-Za-z0-9]", definition["ontologyTermForThisType"]["id"])
        assert {"id", "name", "referenceToSchemaDefinition"} <= definition["defaultSchema"].keys()


def test_ega_verifier_walk_of_the_map_reaches_the_node_it_asked(demo_node):
    sets = _map(demo_node)
    urls = [s["rootUrl"] for s in sets.values()]
    urls += [e["url"] for s in sets.values() for e in s.get("endpoints", {}).values()]
    for url in urls:  # advertised for the host and port the verifier used, not a configured default
        assert url.startswith(demo_node + "/api/"), url
    for endpoint_set in sets.values():
        assert {"entryType", "rootUrl"} <= endpoint_set.keys()
        status, _, body = fetch(endpoint_set["rootUrl"])  # bare GET, as the verifier does
        assert status == 200 and check_response(body) == [], endpoint_set["rootUrl"]


def test_ega_verifier_filtering_terms(demo_node):
    status, _, body = fetch(demo_node + "/api/filtering_terms")
    assert status == 200 and check_informational("filtering_terms", body) == []
    assert all({"id", "type"} <= t.keys() for t in body["response"]["filteringTerms"])


# --- GA4GH beacon-verifier: every mapped entry type has a default-model schema in /configuration --------------


def test_ga4gh_verifier_finds_a_default_model_schema_for_every_mapped_entry_type(demo_node):
    _, _, configuration = fetch(demo_node + "/api/configuration")
    definitions = configuration["response"]["entryTypes"]
    for endpoint_set in _map(demo_node).values():
        definition = definitions[endpoint_set["entryType"]]  # the verifier panics on a missing one
        reference = definition["defaultSchema"]["referenceToSchemaDefinition"]
        relative = reference.split("/beacon-v2-default-model/", 1)[1]
        assert (MODELS / relative).is_file(), reference


# --- NEAT-style: every related endpoint is an endpoint of its returnedEntryType -------------------------------


def test_every_map_endpoint_answers_its_returned_entry_type(demo_node):
    sets = _map(demo_node)
    entry_types = {s["entryType"] for s in sets.values()}
    for endpoint_set in sets.values():
        record_id = _some_id(demo_node, endpoint_set["rootUrl"])
        single = endpoint_set["singleEntryUrl"].replace("{id}", record_id)
        status, _, body = fetch(single + "?requestedGranularity=record")
        assert status == 200 and check_response(body) == [], single
        for name, link in endpoint_set.get("endpoints", {}).items():
            assert link["returnedEntryType"] in entry_types, (name, link)
            url = link["url"].replace("{id}", record_id)
            status, _, body = fetch(url)
            assert status == 200, (url, body)
            assert body["meta"]["returnedSchemas"][0]["entityType"] == link["returnedEntryType"], url
            assert check_response(body) == [], url
        if "filteringTermsUrl" in endpoint_set:
            url = endpoint_set["filteringTermsUrl"].replace("{id}", record_id)
            status, _, body = fetch(url)
            assert status == 200 and check_informational("filtering_terms", body) == [], url


# --- bycon / beaconplus ------------------------------------------------------------------------------------


def test_bycon_style_requests_are_answered(demo_node):
    base = demo_node + "/api"
    _, _, terms = fetch(base + "/filtering_terms")
    hp = [t["id"] for t in terms["response"]["filteringTerms"] if t["id"].startswith("HP:")][:2]
    for query in (
        "/biosamples/?includeHandovers=true&requestedGranularity=aggregated&filters=" + "&filters=".join(hp),
        "/biosamples/?requestedGranularity=aggregated&testMode=true&testModeCount=1000",
        "/individuals/?filters=" + hp[0] + "&datasetIds=synthetic-demo&limit=1",
        "/g_variants/?referenceName=17&start=43044294&start=43125482&end=43044295&end=43125483",
    ):
        status, content_type, body = fetch(base + query)
        assert status == 200 and content_type == "application/json", (query, body)
        assert check_response(body) == [], query
    _, _, aggregated = fetch(base + "/biosamples/?requestedGranularity=aggregated&includeHandovers=true")
    assert aggregated["meta"]["returnedGranularity"] in ("boolean", "count")
    warnings = " ".join(aggregated["info"]["warnings"])
    assert "aggregated" in warnings and "includeHandovers" in warnings


def test_bycon_posts_with_its_extra_members(demo_node):
    body = {
        "$schema": "beaconRequestBody.json",
        "meta": {"apiVersion": "2.0", "requestedSchemas": [{"entityType": "genomicVariation"}]},
        "query": {
            "requestParameters": {"referenceName": "17", "start": [43044294], "end": [43125483]},
            "filters": [],
            "includeResultsetResponses": "HIT",
            "pagination": {"skip": 0, "limit": 5},
            "requestedGranularity": "count",
            "testMode": False,
            "testModeCount": 5,
        },
    }
    status, _, answer = fetch(demo_node + "/api/g_variants", body)
    assert status == 200 and check_response(answer) == [], answer
    summary = answer["meta"]["receivedRequestSummary"]
    assert summary["requestedSchemas"] == [{"entityType": "genomicVariant"}]


# --- the API root and the budget of a fresh node -----------------------------------------------------------


def test_api_root_without_slash_is_json(demo_node):
    status, content_type, body = fetch(demo_node + "/api")
    assert status == 200 and content_type == "application/json"
    assert check_informational("info", body) == []


def test_a_fresh_node_lets_a_coordinator_run_the_full_verifier_three_times_an_hour(demo_node):
    from gateway.conformance import verify
    from gateway.security.budget import DEFAULT_LIMITS

    report = verify(demo_node + "/api", timeout=20)
    assert report.ok, [f"{c.entity}: {c.name}: {c.message}" for c in report.failures]
    assert not any("429" in c.message for c in report.checks)
    assert 3 * report.requests <= DEFAULT_LIMITS["anonymous"], report.requests
