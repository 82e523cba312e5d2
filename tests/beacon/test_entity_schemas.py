"""Runtime record schemas for every entry type (schemas/beacon/entities.json, genomicVariant.json).

They are ours and stricter than the official default model, never looser: every record the node emits over the
reference phenopackets and the demo cohort passes both; every official example and every mutation of a real
record that ours accepts, the official schema accepts too; `gateway validate` refuses records the issue named
(no id, no sex, `sex: "male"`)."""

from __future__ import annotations

import copy
import json

import pytest

from gateway.beacon.validation import ResponseInvalid, validate_response
from gateway.beacon.validation import validator as own_validator
from gateway.validation.beacon import validate_beacon_response
from tests.beacon.official_schemas import MODELS, RECORD_SCHEMAS, check_response, errors_against
from tests.beacon.real_node import PXF_DATASET
from tests.beacon.test_beacon_api import real_app  # noqa: F401  (the session node over the reference phenopackets)

pytestmark = pytest.mark.slow  # several seconds: pytest-xdist starts it first (tests/conftest.py)

ENTRIES = {
    "individuals": "individual",
    "biosamples": "biosample",
    "analyses": "analysis",
    "runs": "run",
    "datasets": "dataset",
    "cohorts": "cohort",
}


def _records(body: dict) -> list[dict]:
    response = body.get("response") or {}
    if "collections" in response:
        return response["collections"]
    return [r for rs in response.get("resultSets", []) for r in rs["results"]]


@pytest.fixture(scope="module")
def emitted(real_app):  # noqa: F811
    """Every record of every non-variant entry type the node over real data sends (pxf and the demo cohort)."""
    client = real_app.test_client()
    out: dict[str, list[dict]] = {}
    for path, entity in ENTRIES.items():
        body = client.post(
            f"/api/{path}", json={"query": {"requestedGranularity": "record", "pagination": {"limit": 1000}}}
        ).json
        assert body["meta"]["returnedSchemas"][0]["entityType"] == entity
        assert check_response(body) == [], path
        out[entity] = _records(body)
        assert out[entity], path
    return out


def _own_accepts(entity: str, record: dict) -> bool:
    kind = "collectionsResponse" if entity in ("dataset", "cohort") else "resultsetsResponse"
    return own_validator(entity, kind).is_valid(_envelope(entity, record))


def _envelope(entity: str, record: dict) -> dict:
    meta = {
        "beaconId": "org.example.test",
        "apiVersion": "v2.1.1",
        "returnedGranularity": "record",
        "returnedSchemas": [{"entityType": entity, "schema": f"beacon-{entity}-v2.0.0"}],
        "receivedRequestSummary": {
            "apiVersion": "v2.1.1",
            "requestedSchemas": [],
            "pagination": {"skip": 0, "limit": 10},
            "requestedGranularity": "record",
        },
    }
    summary = {"exists": True, "numTotalResults": 1}
    if entity in ("dataset", "cohort"):
        return {"meta": meta, "responseSummary": summary, "response": {"collections": [record]}}
    result_set = {
        "id": "ds",
        "setType": "dataset",
        "exists": True,
        "resultsCount": 1,
        "results": [record],
        "beaconId": "org.example.test",
    }
    return {"meta": meta, "responseSummary": summary, "response": {"resultSets": [result_set]}}


def _official_accepts(entity: str, record: dict) -> bool:
    return not errors_against(MODELS / RECORD_SCHEMAS[entity], record)


def test_every_emitted_record_passes_our_schema_and_the_official_one(emitted):
    for entity, records in emitted.items():
        for record in records:
            assert _own_accepts(entity, record), (entity, record)
            assert _official_accepts(entity, record), (entity, record)
    assert len(emitted["individual"]) >= 250


def _mutations(record: dict):
    """Each top-level member dropped, and replaced by a string, a number, an empty object and an empty list;
    the same one level down for object members."""
    for key in record:
        dropped = {k: v for k, v in record.items() if k != key}
        yield dropped
        for value in ("male", 7, {}, [], {"id": "not a curie"}):
            yield {**record, key: value}
        if isinstance(record[key], dict):
            for inner in record[key]:
                changed = copy.deepcopy(record)
                del changed[key][inner]
                yield changed
                changed = copy.deepcopy(record)
                changed[key][inner] = 7
                yield changed


def _examples(entity: str) -> list[dict]:
    folder = (MODELS / RECORD_SCHEMAS[entity]).parent / "examples"
    docs = [json.loads(p.read_text()) for p in sorted(folder.glob("*.json"))]
    return [d for doc in docs for d in (doc if isinstance(doc, list) else [doc]) if isinstance(d, dict)]


@pytest.mark.parametrize("entity", sorted(ENTRIES.values()))
def test_our_schema_is_never_looser_than_the_official_one(emitted, entity):
    candidates = [*_examples(entity)]
    for record in emitted[entity][:40]:
        candidates += list(_mutations(record))
    accepted = [c for c in candidates if _own_accepts(entity, c)]
    looser = [c for c in accepted if not _official_accepts(entity, c)]
    assert not looser, looser[:3]
    refused = len(candidates) - len(accepted)
    assert refused > len(candidates) // 3  # the mutations do reach our schema


def _individuals_response(records: list[dict]) -> dict:
    body = _envelope("individual", records[0])
    body["response"]["resultSets"][0]["results"] = records
    body["responseSummary"]["numTotalResults"] = len(records)
    return body


@pytest.mark.parametrize(
    ("record", "where"),
    [
        ({"sex": {"id": "NCIT:C20197"}}, "/id"),
        ({"id": "p1"}, "sex"),
        ({"id": "p1", "sex": "male"}, "/sex"),
        ({"id": "p1", "sex": {"id": "NCIT:C20197"}, "phenotypicFeatures": [{"excluded": True}]}, "featureType"),
    ],
)
def test_gateway_validate_refuses_individual_records_that_break_the_model(record, where):
    report = validate_beacon_response(_individuals_response([record]))
    assert not report.ok
    assert any(where in (i.location or "") + i.message for i in report.errors), [str(i) for i in report.errors]


def test_the_node_refuses_to_send_a_record_that_breaks_its_schema():
    from gateway.beacon.entry_types import entry_type_for_path

    body = _individuals_response([{"id": "p1", "sex": "male"}])
    with pytest.raises(ResponseInvalid):
        validate_response(entry_type_for_path("individuals"), "record", body)
    fine = _individuals_response([{"id": "p1", "sex": {"id": "NCIT:C20197", "label": "male"}}])
    validate_response(entry_type_for_path("individuals"), "record", fine)


def test_pxf_dataset_records_are_checked_by_the_node(real_app):  # noqa: F811
    body = real_app.test_client().get(f"/api/datasets/{PXF_DATASET}").json
    assert body["response"]["collections"][0]["id"] == PXF_DATASET
    assert _own_accepts("dataset", body["response"]["collections"][0])


def test_gateway_validate_checks_collection_records_too():
    good = _envelope("dataset", {"id": "ds1", "name": "One"})
    assert validate_beacon_response(good).ok
    for bad in ({"id": "ds1"}, {"id": "ds1", "name": "One", "createDateTime": "yesterday"}):
        assert not validate_beacon_response(_envelope("dataset", bad)).ok, bad


def test_every_sex_term_the_translator_emits_is_a_sex_of_our_schema():
    from gateway.beacon.validation import SCHEMA_DIR
    from translators.phenopacket_to_beacon import sex_terms

    allowed = set(json.loads((SCHEMA_DIR / "entities.json").read_text())["$defs"]["sex"]["properties"]["id"]["enum"])
    assert {t["id"] for t in sex_terms().values()} <= allowed
