"""The merge rules, as pure functions over hand-made peer answers; every merged body meets the official schemas."""

from __future__ import annotations

import pytest

from gateway.beacon.registry import EntryType, ParsedParameters
from gateway.beacon.request import parse_post
from gateway.config import NodeInfo
from gateway.network.merge import PeerAnswer, merge_filtering_terms, merge_query

NODE = NodeInfo(id="org.example.network", base_url="http://net.example")
SCHEMA = {"entityType": "individual", "schema": "beacon-individual-v2.0.0"}
ENTRY = EntryType(
    id="individual",
    path="individuals",
    name="g",
    description="",
    schema_id="beacon-individual-v2.0.0",
    default_schema="",
    ontology_term={},
    parameter_group="individual",
    parse_parameters=lambda raw, where: ParsedParameters(query=dict(raw), echo=dict(raw)),
    handler=None,
)


def request(granularity="record", include="HIT", skip=0, limit=10):
    return parse_post(
        ENTRY,
        {
            "meta": {"apiVersion": "v2.0"},
            "query": {
                "requestedGranularity": granularity,
                "includeResultsetResponses": include,
                "pagination": {"skip": skip, "limit": limit},
            },
        },
    )


def answer(beacon_id, granularity, exists, total=None, sets=(), status="ok", assembly=None):
    body = {
        "meta": {"beaconId": beacon_id, "returnedGranularity": granularity, "returnedSchemas": [SCHEMA]},
        "responseSummary": {"exists": exists, **({"numTotalResults": total} if total is not None else {})},
    }
    if granularity == "record":
        body["response"] = {"resultSets": list(sets)}
    return PeerAnswer(f"http://{beacon_id}/api", beacon_id, status, body=body, latency_ms=3.0, assembly=assembly)


def individual(identifier):
    return {"id": identifier, "sex": {"id": "NCIT:C16576", "label": "female"}}


def rs(dataset, count, records=None, exists=None):
    records = [individual(f"{dataset}-{i}") for i in range(count)] if records is None else records
    return {
        "id": dataset,
        "setType": "dataset",
        "exists": count > 0 if exists is None else exists,
        "resultsCount": count,
        "results": records,
    }


def test_a_peer_that_found_nothing_does_not_coarsen_the_others(official):
    answers = [answer("a", "boolean", False), answer("b", "record", True, 2, [rs("ds1", 2)])]
    body, _ = merge_query(NODE, request("record"), SCHEMA, answers)
    assert official(body) == [] and body["meta"]["returnedGranularity"] == "record"
    assert body["responseSummary"] == {"exists": True, "numTotalResults": 2}
    assert [s["beaconId"] for s in body["response"]["resultSets"]] == ["b"]
    body, _ = merge_query(
        NODE, request("record"), SCHEMA, [answer("a", "boolean", False), answer("b", "count", False, 0)]
    )
    assert body["meta"]["returnedGranularity"] == "boolean" and body["responseSummary"] == {"exists": False}


def test_exists_is_true_when_a_boolean_only_peer_says_so(official):
    body, status = merge_query(
        NODE, request("count"), SCHEMA, [answer("a", "count", False, 0), answer("b", "boolean", True)]
    )
    assert status == 200 and official(body) == []
    assert body["responseSummary"] == {"exists": True}  # granularity fell to boolean: no count invented
    assert body["meta"]["returnedGranularity"] == "boolean"
    assert all("numTotalResults" not in p for p in body["info"]["network"]["peers"])


def test_counts_are_summed_and_never_rederived_from_records(official):
    # peer b suppressed its small count (reports 0 with exists true, a record page with one record)
    a = answer("a", "record", True, 12, [rs("ds1", 2)])
    b = answer("b", "record", True, 0, [rs("ds9", 0, records=[individual("x")], exists=True)])
    body, _ = merge_query(NODE, request("record", include="ALL"), SCHEMA, [a, b])
    assert official(body) == []
    assert body["responseSummary"] == {"exists": True, "numTotalResults": 12}
    counts = [s["resultsCount"] for s in body["response"]["resultSets"]]
    assert counts == [2, 0]  # as each peer gave them


def test_granularity_is_the_coarsest_of_asked_and_returned(official):
    answers = [answer("a", "record", True, 3, [rs("ds1", 3)]), answer("b", "count", True, 7)]
    body, _ = merge_query(NODE, request("record"), SCHEMA, answers)
    assert body["meta"]["returnedGranularity"] == "count" and "response" not in body
    assert body["responseSummary"]["numTotalResults"] == 10
    body, _ = merge_query(NODE, request("boolean"), SCHEMA, answers)
    assert body["meta"]["returnedGranularity"] == "boolean" and official(body) == []


def test_result_sets_are_concatenated_and_tagged_with_their_peer(official):
    answers = [
        answer("de.node", "record", True, 2, [rs("ds1", 2)], assembly="GRCh38"),
        answer("fr.node", "record", True, 1, [rs("ds1", 1)], assembly="GRCh37"),
    ]
    body, _ = merge_query(NODE, request(), SCHEMA, answers)
    assert official(body) == []
    sets = body["response"]["resultSets"]
    assert [(s["beaconId"], s["id"], s["info"]["assemblyId"]) for s in sets] == [
        ("de.node", "ds1", "GRCh38"),
        ("fr.node", "ds1", "GRCh37"),
    ]
    assert body["meta"]["beaconId"] == "org.example.network"


@pytest.mark.parametrize(
    "include, expected", [("HIT", ["hit"]), ("MISS", ["miss"]), ("ALL", ["hit", "miss"]), ("NONE", [])]
)
def test_include_resultset_responses_is_applied_across_peers(include, expected, official):
    # a peer that ignored includeResultsetResponses and sent both kinds
    answers = [answer("a", "record", True, 2, [rs("hit", 2), rs("miss", 0)])]
    body, _ = merge_query(NODE, request(include=include), SCHEMA, answers)
    assert official(body) == []
    assert [s["id"] for s in body["response"]["resultSets"]] == expected


def test_failed_peers_are_listed_never_merged(official):
    answers = [
        answer("a", "count", True, 4),
        PeerAnswer("http://b/api", "b", "timeout", "no complete answer within 5 s", 5000.0),
        PeerAnswer("http://c/api", None, "error", "HTTP 500 with a non-error body", 2.0),
        PeerAnswer("http://d/api", "d", "skipped", "serves GRCh37; the query is on GRCh38"),
    ]
    body, status = merge_query(NODE, request("count"), SCHEMA, answers)
    assert status == 200 and official(body) == []
    assert body["responseSummary"]["numTotalResults"] == 4
    peers = body["info"]["network"]["peers"]
    assert [p["status"] for p in peers] == ["ok", "timeout", "error", "skipped"]
    assert "500" in peers[2]["reason"] and body["info"]["network"]["peersQueried"] == 3


def test_no_usable_answer_is_a_gateway_error(official):
    answers = [PeerAnswer("http://b/api", "b", "timeout", "slow", 5000.0)]
    body, status = merge_query(NODE, request("count"), SCHEMA, answers)
    assert status == 504 and official(body) == [] and "b: timeout" in body["error"]["errorMessage"]
    answers.append(PeerAnswer("http://c/api", "c", "error", "connection refused", 1.0))
    body, status = merge_query(NODE, request("count"), SCHEMA, answers)
    assert status == 502 and official(body) == []


def test_a_request_every_peer_refused_is_the_callers_error(official):
    refusal = {"meta": {"beaconId": "a"}, "error": {"errorCode": 400, "errorMessage": "start must be ≥ 0"}}
    answers = [PeerAnswer("http://a/api", "a", "error", "Beacon error 400", 2.0, body=refusal)]
    body, status = merge_query(NODE, request("count"), SCHEMA, answers)
    assert status == 400 and official(body) == []
    assert "start must be ≥ 0" in body["error"]["errorMessage"]


def test_filtering_terms_are_the_union():
    def terms(*ids):
        return {"response": {"filteringTerms": [{"type": "ontologyTerm", "id": i} for i in ids], "resources": []}}

    answers = [
        PeerAnswer("http://a/api", "a", "ok", body=terms("HP:0001166", "NCIT:C16576")),
        PeerAnswer("http://b/api", "b", "ok", body=terms("HP:0001166", "HP:0000098")),
        PeerAnswer("http://c/api", "c", "error", "down"),
    ]
    body = merge_filtering_terms(NODE, answers)
    assert [t["id"] for t in body["response"]["filteringTerms"]] == ["HP:0001166", "NCIT:C16576", "HP:0000098"]
