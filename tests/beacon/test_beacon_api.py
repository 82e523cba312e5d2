"""The complete Beacon v2 API over real data: every endpoint, GET and POST, and granularity against the OFFICIAL
schemas, cross-links with real ids, informational endpoints, and filter semantics checked against an
independent computation over the stored phenopackets."""

from __future__ import annotations

import itertools

import pytest

from gateway.demo import DEMO_DATASET_ID
from tests.beacon.official_schemas import check_informational, check_response
from tests.beacon.real_node import PXF_DATASET, build_real_node

ENTRIES = ("individuals", "biosamples", "g_variants", "analyses", "runs", "datasets", "cohorts")
GRANULARITIES = ("boolean", "count", "record")
INFORMATIONAL = ("info", "service-info", "configuration", "map", "entry_types", "filtering_terms")


@pytest.fixture(scope="session")
def real_app(tmp_path_factory, reference_dir):
    app = build_real_node(tmp_path_factory.mktemp("real-node"))
    yield app
    app.extensions["gateway"].store.close()


@pytest.fixture
def client(real_app):
    return real_app.test_client()


def ask(client, path, method="GET", granularity="record", limit=5, **query):
    if method == "GET":
        args = {"requestedGranularity": granularity, "limit": limit, **query}
        return client.get(f"/api/{path}", query_string=args)
    body = {
        "meta": {"apiVersion": "v2.0.0"},
        "query": {"requestedGranularity": granularity, "pagination": {"skip": 0, "limit": limit}, **query},
    }
    return client.post(f"/api/{path}", json=body)


def first_id(client, path):
    body = ask(client, path, granularity="record", limit=1).json
    if "collections" in body["response"]:
        return body["response"]["collections"][0]["id"]
    for rs in body["response"]["resultSets"]:
        if rs["results"]:
            record = rs["results"][0]
            return record.get("variantInternalId") or record["id"]
    raise AssertionError(f"no record at /{path}")


# --- conformance matrix ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("entry", "method", "granularity"), list(itertools.product(ENTRIES, ("GET", "POST"), GRANULARITIES))
)
def test_every_entry_type_method_and_granularity_is_conformant(client, entry, method, granularity):
    response = ask(client, entry, method, granularity)
    assert response.status_code == 200, response.json
    body = response.json
    assert body["meta"]["returnedGranularity"] == granularity
    assert check_response(body) == []
    assert body["responseSummary"]["exists"] is True
    if granularity == "record":
        results = body["response"].get("collections") or [
            r for rs in body["response"]["resultSets"] for r in rs["results"]
        ]
        assert results, f"/{entry} returned no record"


@pytest.mark.parametrize("entry", ENTRIES)
def test_single_entry_by_id_and_every_cross_link(client, real_app, entry):
    from gateway.beacon.entry_types import entry_type_for_path

    record_id = first_id(client, entry)
    one = ask(client, f"{entry}/{record_id}")
    assert one.status_code == 200 and check_response(one.json) == []
    assert one.json["responseSummary"]["numTotalResults"] == 1
    for target in entry_type_for_path(entry).cross_links:
        for method, granularity in itertools.product(("GET", "POST"), GRANULARITIES):
            linked = ask(client, f"{entry}/{record_id}/{target}", method, granularity)
            assert linked.status_code == 200, (entry, target, linked.json)
            assert check_response(linked.json) == [], (entry, target)
            schema = linked.json["meta"]["returnedSchemas"][0]["entityType"]
            assert schema == entry_type_for_path(target).id  # the target's records, not the source's


@pytest.mark.parametrize(("kind", "method"), list(itertools.product(INFORMATIONAL, ("GET", "POST"))))
def test_informational_endpoints_are_conformant(client, kind, method):
    response = client.get(f"/api/{kind}") if method == "GET" else client.post(f"/api/{kind}", json={})
    assert response.status_code == 200
    assert check_informational(kind, response.json) == []


def test_root_is_info_and_map_lists_absolute_urls_of_exactly_the_served_entry_types(client, real_app):
    assert client.get("/api/").json == client.get("/api/info").json
    sets = client.get("/api/map").json["response"]["endpointSets"]
    assert {s["rootUrl"].rsplit("/", 1)[1] for s in sets.values()} == set(ENTRIES)
    for endpoint_set in sets.values():
        assert endpoint_set["rootUrl"].startswith("http://localhost/api/")
        for link in endpoint_set["endpoints"].values():
            assert link["url"].startswith("http://localhost/api/")
    served = {r.rule for r in real_app.url_map.iter_rules()}
    assert "/api/individuals/<record_id>/<cross_link>" in served and "/api/individuals/filtering_terms" in served
    entry_types = client.get("/api/entry_types").json["response"]["entryTypes"]
    assert entry_types == client.get("/api/configuration").json["response"]["entryTypes"]
    assert set(entry_types) == {"individual", "biosample", "genomicVariation", "analysis", "run", "dataset", "cohort"}
    service = client.get("/api/service-info").json
    assert service["type"] == {"group": "org.ga4gh", "artifact": "beacon", "version": "v2.1.1"}


def test_malformed_requests_are_conformant_errors(client):
    for response in (
        client.get("/api/individuals?requestedGranularity=everything"),
        client.get("/api/individuals?limit=-1"),
        client.post("/api/individuals", data=b"{not json"),
        client.post("/api/individuals", json={"query": {"filters": [{"id": "age", "operator": "~", "value": "P1Y"}]}}),
        client.post("/api/individuals", json={"query": {"filters": [{"id": "age", "operator": "<", "value": "old"}]}}),
        client.post("/api/individuals", json={"query": {"requestParameters": {"referenceName": "1"}}}),
        client.get("/api/biosamples?datasetIds=nope"),
    ):
        assert response.status_code == 400, response.json
        assert check_response(response.json) == []
        assert response.json["error"]["errorMessage"]


def test_datasets_carry_duo_and_cohorts_criteria_and_counts(client):
    datasets = {d["id"]: d for d in ask(client, "datasets").json["response"]["collections"]}
    assert datasets[PXF_DATASET]["dataUseConditions"]["duoDataUse"][0]["id"] == "DUO:0000042"
    cohorts = {c["id"]: c for c in ask(client, "cohorts").json["response"]["collections"]}
    pxf = cohorts[f"{PXF_DATASET}-all"]
    individuals = ask(client, "individuals", granularity="count", datasetIds=PXF_DATASET).json
    assert pxf["cohortSize"] == individuals["responseSummary"]["numTotalResults"] > 200
    assert {g["id"] for g in pxf["inclusionCriteria"]["genders"]} >= {"NCIT:C16576", "NCIT:C20197"}
    members = ask(client, f"cohorts/{PXF_DATASET}-all/individuals", granularity="count").json
    assert members["responseSummary"]["numTotalResults"] == pxf["cohortSize"]


def test_testmode_answers_from_the_synthetic_cohort_only(client):
    normal = ask(client, "individuals", granularity="count", datasetIds=PXF_DATASET).json
    test = ask(client, "individuals", "POST", granularity="record", testMode=True).json
    assert test["meta"]["testMode"] is True and check_response(test) == []
    assert [rs["id"] for rs in test["response"]["resultSets"]] == [DEMO_DATASET_ID]
    assert test["responseSummary"]["numTotalResults"] != normal["responseSummary"]["numTotalResults"]


def test_pagination_skip_counts_pages_and_totals_are_before_paging(client):
    first = ask(client, "individuals", limit=7, datasetIds=PXF_DATASET).json
    second = client.get(
        "/api/individuals",
        query_string={"requestedGranularity": "record", "limit": 7, "skip": 1, "datasetIds": PXF_DATASET},
    ).json
    ids = [[r["id"] for r in b["response"]["resultSets"][0]["results"]] for b in (first, second)]
    assert len(ids[0]) == len(ids[1]) == 7 and not set(ids[0]) & set(ids[1])
    assert first["responseSummary"]["numTotalResults"] == second["responseSummary"]["numTotalResults"] > 14


@pytest.mark.parametrize(("include", "expected"), [("HIT", {"pxf"}), ("MISS", {DEMO_DATASET_ID}), ("NONE", set())])
def test_include_resultset_responses(client, include, expected):
    # an OMIM disease only the real phenopackets hold
    body = ask(client, "individuals", filters="OMIM:201910", includeResultsetResponses=include).json
    assert {rs["id"] for rs in body["response"]["resultSets"]} == expected
    every = ask(client, "individuals", filters="OMIM:201910", includeResultsetResponses="ALL").json
    assert {rs["id"] for rs in every["response"]["resultSets"]} == {PXF_DATASET, DEMO_DATASET_ID}


def test_variant_and_individual_cross_links_agree(client):
    variants = ask(client, "g_variants", geneId="SCN1A").json["response"]["resultSets"][0]["results"]
    (variant,) = variants
    carriers = {c["individualId"] for c in variant["caseLevelData"]}
    linked = ask(client, f"g_variants/{variant['variantInternalId']}/individuals", limit=100).json
    assert {r["id"] for rs in linked["response"]["resultSets"] for r in rs["results"]} == carriers
    someone = sorted(carriers)[0]
    theirs = ask(client, f"individuals/{someone}/g_variants", limit=1000).json
    assert variant["variantInternalId"] in {
        r["variantInternalId"] for rs in theirs["response"]["resultSets"] for r in rs["results"]
    }
    runs = ask(client, f"individuals/{someone}/runs").json["response"]["resultSets"]
    assert sum(rs["resultsCount"] for rs in runs) == 1
