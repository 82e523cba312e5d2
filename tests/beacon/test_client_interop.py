"""What real Beacon clients send and expect (issue 13): the official names, /map as the default model
writes it, requests read liberally (repeated and comma-separated lists, unknown members listed in
info.warnings) and type errors refused with a located 400."""

from __future__ import annotations

import json

import pytest

from tests.beacon.official_schemas import BEACON

DEFAULT_MODEL = BEACON / "models" / "json" / "beacon-v2-default-model"


def _official_entry_types() -> set[str]:
    return set(json.loads((DEFAULT_MODEL / "beaconConfiguration.json").read_text())["entryTypes"])


def test_entry_type_ids_are_the_official_default_model_names(beacon_client):
    official = _official_entry_types()
    assert "genomicVariant" in official
    configuration = beacon_client.get("/api/configuration").json["response"]["entryTypes"]
    entry_types = beacon_client.get("/api/entry_types").json["response"]["entryTypes"]
    assert set(configuration) == set(entry_types) == official
    sets = beacon_client.get("/api/map").json["response"]["endpointSets"]
    assert {s["entryType"] for s in sets.values()} == official
    body = beacon_client.get("/api/g_variants?referenceName=22&start=16050074&alternateBases=A").json
    assert body["meta"]["returnedSchemas"][0]["entityType"] == "genomicVariant"


def test_old_variant_entity_name_is_accepted_in_requested_schemas(beacon_client):
    body = {"meta": {"requestedSchemas": [{"entityType": "genomicVariation", "schema": "beacon-g_variant-v2.0.0"}]}}
    response = beacon_client.post("/api/g_variants", json=body)
    assert response.status_code == 200, response.json
    assert response.json["meta"]["receivedRequestSummary"]["requestedSchemas"][0]["entityType"] == "genomicVariant"


def test_map_names_filtering_terms_urls_and_only_entry_types_of_the_node(beacon_client):
    sets = beacon_client.get("/api/map").json["response"]["endpointSets"]
    served = {s["entryType"] for s in sets.values()}
    for endpoint_set in sets.values():
        for link in endpoint_set.get("endpoints", {}).values():
            assert link["returnedEntryType"] in served, link
            assert not link["url"].endswith("filtering_terms"), link
    by_type = {s["entryType"]: s for s in sets.values()}
    assert by_type["individual"]["filteringTermsUrl"] == "http://localhost/api/individuals/filtering_terms"
    assert by_type["dataset"]["filteringTermsUrl"] == "http://localhost/api/datasets/{id}/filtering_terms"
    assert beacon_client.get("/api/individuals/filtering_terms").status_code == 200


def _unconfigured_client(**environ):
    from tests.beacon.conftest import make_app
    from tests.beacon.fake_store import sample_store

    app = make_app(sample_store(), node={"id": "org.example.test"}, **environ)
    return app


def test_map_without_base_url_follows_the_request_host():
    app = _unconfigured_client()
    client = app.test_client()
    sets = client.get("/api/map", base_url="http://beacon.example:9123").json["response"]["endpointSets"]
    assert all(s["rootUrl"].startswith("http://beacon.example:9123/api/") for s in sets.values())
    info = client.get("/api/info", base_url="http://beacon.example:9123").json["response"]
    assert info["welcomeUrl"] == "http://beacon.example:9123/api"
    # X-Forwarded-* from an untrusted peer is ignored: it could point verifiers anywhere.
    spoofed = client.get(
        "/api/map",
        base_url="http://beacon.example:9123",
        headers={"X-Forwarded-Host": "evil.example", "X-Forwarded-Proto": "https"},
        environ_overrides={"REMOTE_ADDR": "203.0.113.9"},
    ).json["response"]["endpointSets"]
    assert all(s["rootUrl"].startswith("http://beacon.example:9123/api/") for s in spoofed.values())
    app.extensions["gateway"].store.close()


def test_map_behind_a_trusted_proxy_uses_its_forwarded_host_proto_and_prefix():
    app = _unconfigured_client(security={"trusted_proxies": ["10.0.0.0/8"], "budget": {"anonymous": None}})
    client = app.test_client()
    headers = {"X-Forwarded-Host": "beacon.example.org", "X-Forwarded-Proto": "https", "X-Forwarded-Prefix": "/b"}
    sets = client.get("/api/map", headers=headers, environ_overrides={"REMOTE_ADDR": "10.1.2.3"}).json["response"]
    assert all(s["rootUrl"].startswith("https://beacon.example.org/b/api/") for s in sets["endpointSets"].values())
    app.extensions["gateway"].store.close()


def test_get_api_without_trailing_slash_is_the_root_document(beacon_client):
    response = beacon_client.get("/api")
    assert response.status_code == 200 and response.is_json
    assert response.json == beacon_client.get("/api/").json


@pytest.mark.parametrize(
    "query",
    [
        "filters=NCIT:C20197&filters=NCIT:C16576",  # the OpenAPI default serialisation of arrays
        "filters=NCIT:C20197,NCIT:C16576",
    ],
)
def test_repeated_and_comma_separated_filters_are_the_same_request(beacon_client, query):
    response = beacon_client.get(f"/api/individuals?requestedGranularity=count&{query}")
    assert response.status_code == 200, response.json
    assert response.json["meta"]["receivedRequestSummary"]["filters"] == ["NCIT:C20197", "NCIT:C16576"]


def test_repeated_dataset_ids_are_read_as_a_list(beacon_client):
    response = beacon_client.get("/api/g_variants?geneId=BRAF&datasetIds=ds1&datasetIds=ds2")
    assert response.status_code == 200, response.json
    summary = response.json["meta"]["receivedRequestSummary"]
    assert summary["requestParameters"]["datasets"]["datasetIds"] == ["ds1", "ds2"]


def test_a_scalar_given_twice_with_different_values_is_still_a_located_400(beacon_client):
    response = beacon_client.get("/api/g_variants?geneId=A&geneId=B")
    assert response.status_code == 400 and "?geneId" in response.json["error"]["errorMessage"]
    same = beacon_client.get("/api/g_variants?geneId=BRAF&geneId=BRAF")
    assert same.status_code == 200


def test_unknown_members_are_accepted_and_listed_in_warnings(beacon_client, official):
    body = {
        "$schema": "beaconRequestBody.json",
        "client": "x",
        "meta": {"apiVersion": "v2.0", "requestedSchemas": [], "clientName": "bycon"},
        "query": {"requestedGranularity": "count", "testModeCount": 5, "debugMode": True, "pagination": {"page": 1}},
    }
    response = beacon_client.post("/api/individuals", json=body)
    assert response.status_code == 200, response.json
    warnings = " ".join(response.json["info"]["warnings"])
    for member in ("/client", "/meta/clientName", "/query/debugMode", "/query/pagination/page"):
        assert member in warnings
    assert "testModeCount" not in warnings  # bycon's member is read, not ignored
    assert official(response.json) == []


def test_unknown_get_parameters_are_accepted_and_listed_in_warnings(beacon_client):
    response = beacon_client.get("/api/g_variants?geneId=BRAF&bogus=1&testModeCount=3&output=json")
    assert response.status_code == 200, response.json
    warnings = " ".join(response.json["info"]["warnings"])
    assert "bogus" in warnings and "output" in warnings and "testModeCount" not in warnings


def test_include_descendant_terms_as_a_get_parameter(beacon_client):
    response = beacon_client.get("/api/individuals?filters=HP:0001250&includeDescendantTerms=false")
    assert response.status_code == 200, response.json
    bad = beacon_client.get("/api/individuals?filters=HP:0001250&includeDescendantTerms=sometimes")
    assert bad.status_code == 400 and "?includeDescendantTerms" in bad.json["error"]["errorMessage"]


@pytest.mark.parametrize(
    ("body", "where"),
    [
        ({"query": {"filters": "HP:0001250"}}, "/query/filters"),
        ({"query": {"testModeCount": "many"}}, "/query/testModeCount"),
        ({"query": {"filters": [{"id": 7}]}}, "/query/filters/0/id"),
        ({"query": {"pagination": {"limit": "ten"}}}, "/query/pagination/limit"),
    ],
)
def test_type_errors_are_refused_with_a_located_400(beacon_client, official, body, where):
    response = beacon_client.post("/api/individuals", json=body)
    assert response.status_code == 400
    assert where in response.json["error"]["errorMessage"]
    assert official(response.json) == []


@pytest.mark.parametrize("path", ["/api/datasets", "/api/cohorts"])
def test_collections_answer_collection_records_by_default(beacon_client, official, path):
    body = beacon_client.get(path).json
    assert body["meta"]["returnedGranularity"] == "record"
    assert body["response"]["collections"], body
    assert official(body) == []
    asked = beacon_client.get(path + "?requestedGranularity=boolean").json
    assert "response" not in asked and asked["responseSummary"]["exists"] is True


def test_collection_records_by_default_still_follow_the_dataset_policy():
    from tests.beacon.conftest import make_app
    from tests.beacon.fake_store import sample_store

    public = {"id": "ds1", "security_level": "PUBLIC", "policy": {"min_public_size": 0}}  # public tier: boolean
    app = make_app(sample_store(), datasets=(public,))
    body = app.test_client().get("/api/datasets").json
    assert body["meta"]["returnedGranularity"] == "boolean" and "response" not in body
    assert body["responseSummary"]["exists"] is True
    app.extensions["gateway"].store.close()


def test_informational_endpoints_cost_no_query_budget():
    from tests.beacon.conftest import make_app
    from tests.beacon.fake_store import sample_store

    app = make_app(sample_store(), security={"budget": {"anonymous": 3}})
    client = app.test_client()
    for _ in range(5):
        for path in ("/api", "/api/info", "/api/map", "/api/configuration", "/api/entry_types"):
            assert client.get(path).status_code == 200, path
        for path in ("/api/filtering_terms", "/api/individuals/filtering_terms", "/api/datasets/ds1/filtering_terms"):
            assert client.get(path).status_code == 200, path
    statuses = [client.get("/api/individuals").status_code for _ in range(4)]
    assert statuses == [200, 200, 200, 429]
    app.extensions["gateway"].store.close()


@pytest.mark.parametrize("entity", ["genomicVariant", "genomicVariation"])
def test_the_nodes_variant_answers_convert_to_fhir_under_either_name(beacon_client, entity):
    body = beacon_client.get("/api/g_variants?geneId=BRAF&requestedGranularity=record").json
    assert body["meta"]["returnedSchemas"][0]["entityType"] == "genomicVariant"
    assert any(r.get("caseLevelData") for rs in body["response"]["resultSets"] for r in rs["results"])
    body["meta"]["returnedSchemas"][0]["entityType"] = entity
    converted = beacon_client.post("/fhir/$convert-beacon-response", json=body)
    assert converted.status_code == 200, converted.json
    kinds = [e["resource"]["resourceType"] for e in converted.json["entry"]]
    assert "Observation" in kinds, kinds
