"""g_variants over HTTP on the in-memory store: every query type, granularity and method (GET, POST) is
conformant to the official schemas and answers what the store holds."""

from __future__ import annotations

import pytest

from tests.beacon.conftest import OPEN, make_client
from tests.beacon.fake_store import sample_store

# (name, flat parameters, expected number of matching variants in both datasets)
QUERIES = [
    ("sequence", {"referenceName": "17", "start": [43045711], "referenceBases": "G", "alternateBases": "A"}, 2),
    ("sequence-wildcard", {"referenceName": "chr17", "start": [43045711], "alternateBases": "N"}, 2),
    ("range", {"referenceName": "NC_000022.11", "start": [0], "end": [100000]}, 4),
    ("range-type", {"referenceName": "22", "start": [0], "end": [100000], "variantType": "DEL"}, 1),
    ("range-length", {"referenceName": "22", "start": [0], "end": [100000], "variantMinLength": 5000}, 2),
    ("range-ontology-type", {"referenceName": "22", "start": [0], "end": [100000], "variantType": "EFO:0030070"}, 1),
    ("bracket", {"referenceName": "22", "start": [4000, 6000], "end": [14000, 16000], "variantType": "CNV"}, 1),
    ("gene", {"geneId": "BRCA1"}, 3),
    ("aminoacid", {"geneId": "BRAF", "aminoacidChange": "V600E"}, 1),
    ("hgvs", {"genomicAlleleShortForm": "NC_000017.11:g.43045712G>A"}, 2),
    (
        "assembly",
        {"assemblyId": "hg38", "referenceName": "refseq:NC_000007.14", "start": [140753335], "alternateBases": "T"},
        1,
    ),
    ("miss", {"referenceName": "1", "start": [5], "alternateBases": "A"}, 0),
]
GRANULARITIES = ("boolean", "count", "record")


def _get_args(params: dict) -> dict:
    return {k: ",".join(map(str, v)) if isinstance(v, list) else str(v) for k, v in params.items()}


def _ask(client, method: str, params: dict, granularity: str, **query):
    if method == "GET":
        args = {**_get_args(params), "requestedGranularity": granularity, **{k: str(v) for k, v in query.items()}}
        return client.get("/api/g_variants", query_string=args)
    body = {
        "meta": {"apiVersion": "v2.0.0"},
        "query": {"requestParameters": {"g_variant": params}, "requestedGranularity": granularity, **query},
    }
    return client.post("/api/g_variants", json=body)


@pytest.mark.parametrize("method", ["GET", "POST"])
@pytest.mark.parametrize("granularity", GRANULARITIES)
@pytest.mark.parametrize(("name", "params", "expected"), QUERIES, ids=[q[0] for q in QUERIES])
def test_every_query_type_and_granularity_conforms(
    beacon_client, official, method, granularity, name, params, expected
):
    response = _ask(beacon_client, method, params, granularity)
    assert response.status_code == 200, response.json
    body = response.json
    assert official(body) == []
    assert body["meta"]["returnedGranularity"] == granularity
    assert body["responseSummary"]["exists"] is (expected > 0)
    if granularity != "boolean":
        assert body["responseSummary"]["numTotalResults"] == expected
    if granularity == "record":
        sets = body["response"]["resultSets"]
        assert sum(rs["resultsCount"] for rs in sets) == expected
        assert all(rs["beaconId"] == "org.example.test" and rs["setType"] == "dataset" for rs in sets)
        assert sum(len(rs["results"]) for rs in sets) == expected


def test_flat_and_nested_parameters_are_the_same_query(beacon_client, fake_store):
    params = {"referenceName": "17", "start": [43045711], "alternateBases": "A"}
    flat = beacon_client.post("/api/g_variants", json={"query": {"requestParameters": params}})
    nested = beacon_client.post("/api/g_variants", json={"query": {"requestParameters": {"g_variant": params}}})
    assert flat.json["responseSummary"] == nested.json["responseSummary"] == {"exists": True}
    assert fake_store.calls[0][1] == fake_store.calls[1][1]
    assert fake_store.calls[0][1].start == 43045711 and fake_store.calls[0][1].end is None


def test_summary_echoes_the_interpreted_request(beacon_client, official):
    body = beacon_client.get(
        "/api/g_variants?referenceName=chr22&start=0&end=100000&datasetIds=ds1&skip=1&limit=2"
        "&requestedGranularity=record&includeResultsetResponses=ALL"
    ).json
    summary = body["meta"]["receivedRequestSummary"]
    assert summary["requestParameters"] == {
        "g_variant": {"referenceName": "22", "start": [0], "end": [100000]},
        "datasets": {"datasetIds": ["ds1"]},
    }
    assert summary["pagination"] == {"skip": 1, "limit": 2}
    assert summary["includeResultsetResponses"] == "ALL"
    assert official(body) == []


def test_skip_counts_pages_and_total_is_before_pagination(beacon_client):
    seen = []
    for page in range(3):
        body = beacon_client.get(
            f"/api/g_variants?referenceName=22&start=0&end=100000&datasetIds=ds1&requestedGranularity=record"
            f"&limit=2&skip={page}"
        ).json
        assert body["responseSummary"]["numTotalResults"] == 4
        (rs,) = body["response"]["resultSets"]
        assert rs["resultsCount"] == 4
        seen += [r["variantInternalId"] for r in rs["results"]]
    assert len(seen) == len(set(seen)) == 4


@pytest.mark.parametrize(
    ("include", "ids"), [("HIT", ["ds2"]), ("MISS", ["ds1"]), ("ALL", ["ds1", "ds2"]), ("NONE", [])]
)
def test_include_resultset_responses(beacon_client, official, include, ids):
    body = beacon_client.get(
        f"/api/g_variants?geneId=BRAF&requestedGranularity=record&includeResultsetResponses={include}"
    ).json
    assert [rs["id"] for rs in body["response"]["resultSets"]] == ids
    assert body["responseSummary"] == {"exists": True, "numTotalResults": 1}
    miss = [rs for rs in body["response"]["resultSets"] if rs["id"] == "ds1"]
    assert all(rs["exists"] is False and rs["results"] == [] and rs["resultsCount"] == 0 for rs in miss)
    assert official(body) == []


def test_granularity_is_capped_by_the_dataset_policy(official):
    client = make_client(
        sample_store(),
        datasets=[
            {"id": "ds1", "security_level": "PUBLIC", "policy": {"profile": "open", "max_granularity": "count"}},
            {"id": "ds2", **OPEN},
        ],
    )
    body = client.get("/api/g_variants?geneId=BRCA1&requestedGranularity=record").json
    assert body["meta"]["returnedGranularity"] == "count"
    assert body["meta"]["receivedRequestSummary"]["requestedGranularity"] == "record"
    assert "response" not in body and body["responseSummary"]["numTotalResults"] == 3
    assert official(body) == []
    only_ds2 = client.get("/api/g_variants?geneId=BRCA1&requestedGranularity=record&datasetIds=ds2").json
    assert only_ds2["meta"]["returnedGranularity"] == "record"
    # never more than asked
    assert client.get("/api/g_variants?geneId=BRCA1").json["meta"]["returnedGranularity"] == "boolean"


def test_record_content(beacon_client):
    body = beacon_client.get(
        "/api/g_variants?genomicAlleleShortForm=NC_000017.11:g.43045712G>A&requestedGranularity=record&datasetIds=ds1"
    ).json
    (record,) = body["response"]["resultSets"][0]["results"]
    assert record["variation"] == {
        "type": "Allele",
        "location": {
            "type": "SequenceLocation",
            "sequence_id": "refseq:NC_000017.11",
            "interval": {
                "type": "SequenceInterval",
                "start": {"type": "Number", "value": 43045711},
                "end": {"type": "Number", "value": 43045712},
            },
        },
        "state": {"type": "LiteralSequenceExpression", "sequence": "A"},
    }
    assert record["identifiers"]["genomicHGVSId"] == "NC_000017.11:g.43045712G>A"
    assert record["identifiers"]["variantAlternativeIds"][0]["id"] == "dbSNP:rs80357123"
    assert record["molecularAttributes"]["molecularEffects"] == [{"id": "SO:0001587", "label": "stop_gained"}]
    cases = record["caseLevelData"]
    assert cases[0] == {
        "biosampleId": "bs-1",
        "individualId": "ind-1",
        "zygosity": {"id": "GENO:0000135", "label": "heterozygous"},
    }
    assert cases[1]["biosampleId"].startswith("biosample-") and "S2" not in cases[1]["biosampleId"]
    assert record["frequencyInPopulations"][0]["frequencies"][0]["alleleFrequency"] == pytest.approx(3 / 20)


def test_indels_are_trimmed_to_vrs_intervals(beacon_client):
    body = beacon_client.get(
        "/api/g_variants?referenceName=17&start=43045700&end=43046100&requestedGranularity=record"
    ).json
    by_id = {r["variantInternalId"]: r["variation"] for r in body["response"]["resultSets"][0]["results"]}
    deletion = by_id["ds1:GRCh38:17-43045800-AT-A"]
    assert deletion["location"]["interval"]["start"]["value"] == 43045801
    assert deletion["location"]["interval"]["end"]["value"] == 43045802
    assert deletion["state"]["sequence"] == ""
    insertion = by_id["ds1:GRCh38:17-43046000-C-CTT"]
    assert insertion["location"]["interval"]["start"]["value"] == insertion["location"]["interval"]["end"]["value"]
    assert insertion["state"]["sequence"] == "TT"


def test_single_variant_by_id(beacon_client, official):
    ok = beacon_client.get("/api/g_variants/ds1:GRCh38:22-5000-A-<DEL>?requestedGranularity=record")
    assert ok.status_code == 200
    (rs,) = ok.json["response"]["resultSets"]
    assert rs["results"][0]["variation"]["copy_change"] == "efo:0030067"
    assert official(ok.json) == []
    missing = beacon_client.post("/api/g_variants/ds1:GRCh38:nothing", json={"meta": {"apiVersion": "v2.0.0"}})
    assert missing.status_code == 200 and missing.json["responseSummary"] == {"exists": False}


def test_unknown_cross_link_is_a_conformant_404(beacon_client, official):
    response = beacon_client.get("/api/g_variants/ds1:GRCh38:22-1000-C-T/cohorts")
    assert response.status_code == 404
    assert "cohorts" in response.json["error"]["errorMessage"]
    assert official(response.json) == []


def test_filters_on_g_variants_warn_instead_of_silently_applying(beacon_client, official):
    body = beacon_client.get("/api/g_variants?geneId=BRAF&filters=HP:0001250&requestedGranularity=count").json
    assert "HP:0001250" in body["info"]["warnings"][0]
    assert body["meta"]["receivedRequestSummary"]["filters"] == ["HP:0001250"]
    assert official(body) == []
