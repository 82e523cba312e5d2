"""The network node over in-process peers on loopback sockets: merged answers equal the sum of the direct
answers, every result set carries its peer's tag, the informational endpoints describe the network, the
assembly rule, local data, pagination. Every body is checked against the official schemas."""

from __future__ import annotations

import pytest

from tests.beacon.official_schemas import FRAMEWORK, errors_against
from tests.network.conftest import faulty_peer, network_app, peer_app, serve

pytestmark = pytest.mark.slow  # several seconds: pytest-xdist starts it first (tests/conftest.py)

BRCA1 = {"referenceName": "17", "start": "43045711", "alternateBases": "A"}
CHR22 = {"referenceName": "22", "start": "0", "end": "100000"}


@pytest.fixture
def two_peers():
    a_app, b_app = peer_app("org.example.a"), peer_app("org.example.b", datasets=("ds2",))
    with serve(a_app) as a, serve(b_app) as b:
        yield {"a": (a + "/api", a_app.test_client()), "b": (b + "/api", b_app.test_client())}


@pytest.fixture
def network(two_peers, tmp_path):
    peers = [{"url": two_peers[k][0], "beaconId": f"org.example.{k}"} for k in ("a", "b")]
    app = network_app({"peers": peers, "budget": 3}, tmp_path=tmp_path)
    app.extensions["gateway"].network.directory.refresh()
    return app.test_client()


@pytest.mark.parametrize("params", [BRCA1, CHR22, {"geneId": "BRAF"}], ids=["brca1", "chr22", "braf"])
@pytest.mark.parametrize("method", ["GET", "POST"])
def test_merged_counts_are_the_sum_of_the_direct_answers(network, two_peers, params, method, official):
    def ask(client, granularity):
        if method == "GET":
            return client.get("/api/g_variants", query_string={**params, "requestedGranularity": granularity})
        query = {"requestParameters": params, "requestedGranularity": granularity}
        return client.post("/api/g_variants", json={"meta": {"apiVersion": "v2.0"}, "query": query})

    direct = [ask(two_peers[k][1], "count").get_json() for k in ("a", "b")]
    merged = ask(network, "count").get_json()
    assert official(merged) == []
    assert merged["responseSummary"]["numTotalResults"] == sum(d["responseSummary"]["numTotalResults"] for d in direct)
    assert merged["responseSummary"]["exists"] == any(d["responseSummary"]["exists"] for d in direct)
    record = ask(network, "record").get_json()
    assert official(record) == [] and record["meta"]["returnedGranularity"] == "record"
    direct_sets = [
        (k, rs["id"], rs["resultsCount"])
        for k in ("a", "b")
        for rs in ask(two_peers[k][1], "record").get_json()["response"]["resultSets"]
    ]
    merged_sets = [
        (rs["beaconId"].rsplit(".", 1)[-1], rs["id"], rs["resultsCount"]) for rs in record["response"]["resultSets"]
    ]
    assert merged_sets == direct_sets and merged_sets
    assert all(rs["info"]["peerUrl"].endswith("/api") for rs in record["response"]["resultSets"])


def test_pagination_is_per_result_set_and_forwarded(network, two_peers, official):
    query = {**CHR22, "requestedGranularity": "record", "limit": "2", "skip": "1"}
    body = network.get("/api/g_variants", query_string=query).get_json()
    assert official(body) == []
    direct = two_peers["a"][1].get("/api/g_variants", query_string=query).get_json()
    ours = [r["variantInternalId"] for rs in body["response"]["resultSets"] for r in rs["results"]]
    theirs = [r["variantInternalId"] for rs in direct["response"]["resultSets"] for r in rs["results"]]
    assert ours == theirs and len(ours) == 2
    assert body["meta"]["receivedRequestSummary"]["pagination"] == {"skip": 1, "limit": 2}


def test_info_map_and_unions_describe_the_network(network):
    info = network.get("/api/info").get_json()
    assert errors_against(FRAMEWORK / "responses" / "beaconInfoResponse.json", info) == []
    assert info["response"]["info"]["aggregator"] is True
    assert [p["beaconId"] for p in info["response"]["info"]["peers"]] == ["org.example.a", "org.example.b"]
    served = network.get("/api/map").get_json()
    assert errors_against(FRAMEWORK / "responses" / "beaconMapResponse.json", served) == []
    sets = served["response"]["endpointSets"]
    assert sets["genomicVariant"]["rootUrl"] == "http://net.example/api/g_variants"
    assert all(s["rootUrl"].startswith("http://net.example/api/") for s in sets.values())
    entry_types = network.get("/api/entry_types").get_json()
    assert errors_against(FRAMEWORK / "responses" / "beaconEntryTypesResponse.json", entry_types) == []
    assert "genomicVariant" in entry_types["response"]["entryTypes"]
    configuration = network.get("/api/configuration").get_json()
    assert errors_against(FRAMEWORK / "responses" / "beaconConfigurationResponse.json", configuration) == []
    terms = network.get("/api/filtering_terms").get_json()
    assert errors_against(FRAMEWORK / "responses" / "beaconFilteringTermsResponse.json", terms) == []


def test_an_entry_type_no_peer_serves_is_not_found(network, official):
    response = network.get("/api/nonsense_things")
    assert response.status_code == 404 and official(response.get_json()) == []


def test_a_bad_request_is_refused_before_any_peer_is_asked(network, official):
    response = network.get("/api/g_variants", query_string={"requestedGranularity": "everything"})
    assert response.status_code == 400 and official(response.get_json()) == []


def test_peers_are_queried_only_with_the_assembly_they_serve(tmp_path, official):
    seen37, seen38 = [], []
    with faulty_peer("ok", "org.example.grch37", seen37) as p37, faulty_peer("ok", "org.example.grch38", seen38) as p38:
        peers = [{"url": p37, "assemblyId": "GRCh37"}, {"url": p38, "assemblyId": "hg38"}]
        client = network_app({"peers": peers}, tmp_path=tmp_path).test_client()
        named = client.get("/api/g_variants", query_string={**BRCA1, "assemblyId": "GRCh38"}).get_json()
        unnamed = client.post(
            "/api/g_variants", json={"meta": {"apiVersion": "v2.0"}, "query": {"requestParameters": BRCA1}}
        ).get_json()
    assert official(named) == [] and official(unnamed) == []
    lines = named["info"]["network"]["peers"]
    assert lines[0]["status"] == "skipped" and "GRCh37" in lines[0]["reason"]
    assert lines[1]["status"] == "ok" and lines[1]["assemblyId"] == "GRCh38"
    queries37 = [s for s in seen37 if "/g_variants" in s["path"]]
    assert len(queries37) == 1  # only the unnamed query reached the GRCh37 peer, with its assembly set
    assert [p["assemblyId"] for p in unnamed["info"]["network"]["peers"]] == ["GRCh37", "GRCh38"]


def test_local_data_take_part_when_configured(two_peers, tmp_path, official):
    app = network_app({"peers": [two_peers["a"][0]], "include_local": True}, tmp_path=tmp_path)
    client = app.test_client()
    body = client.get("/api/g_variants", query_string={**BRCA1, "requestedGranularity": "count"}).get_json()
    assert official(body) == []
    lines = body["info"]["network"]["peers"]
    assert [line["url"] for line in lines] == [two_peers["a"][0], "local:"]
    assert lines[1]["status"] == "ok" and lines[1]["beaconId"] == "org.example.network"
    own = client.get("/local/api/g_variants", query_string={**BRCA1, "requestedGranularity": "count"})
    assert own.status_code == 200 and own.get_json()["meta"]["beaconId"] == "org.example.network"
