"""Back to the EHR over HTTP: GET /phenopackets/{id} as FHIR, POST /fhir/$convert-beacon-response."""

from __future__ import annotations

import json

import pytest

import gateway.services.fhir_export as fhir_export
from gateway.validation.fhir import validate_fhir
from translators.phenopacket_to_beacon import individual_record

FHIR = "application/fhir+json"


@pytest.fixture
def packet(reference_dir):
    return json.loads((reference_dir / "phenopackets" / "PAX3" / "PMID_12949970_proposita.json").read_text())


def _store(client, operator, packet) -> str:
    resp = client.post(
        "/phenopackets", data=json.dumps(packet), headers={**operator, "Content-Type": "application/json"}
    )
    assert resp.status_code in (200, 201), resp.get_data(as_text=True)
    return resp.get_json()["stored"][0]["id"]


def test_accept_fhir_returns_a_valid_bundle_of_the_stored_phenopacket(client, operator, packet):
    packet_id = _store(client, operator, packet)
    stored = client.get(f"/phenopackets/{packet_id}", headers=operator).get_json()
    resp = client.get(f"/phenopackets/{packet_id}", headers={**operator, "Accept": FHIR})
    assert resp.status_code == 200 and resp.mimetype == FHIR
    bundle = resp.get_json()
    assert bundle["resourceType"] == "Bundle" and bundle["type"] == "collection"
    assert validate_fhir(bundle).ok
    (patient,) = [e["resource"] for e in bundle["entry"] if e["resource"]["resourceType"] == "Patient"]
    assert [i["value"] for i in patient["identifier"]] == [stored["subject"]["id"]]
    observations = [e for e in bundle["entry"] if e["resource"]["resourceType"] == "Observation"]
    assert len(observations) >= len(packet["phenotypicFeatures"])


def test_json_stays_the_default(client, operator, packet):
    packet_id = _store(client, operator, packet)
    for accept in (None, "*/*", "application/json", "application/json, application/fhir+json;q=0.5"):
        headers = {**operator, **({"Accept": accept} if accept else {})}
        resp = client.get(f"/phenopackets/{packet_id}", headers=headers)
        assert resp.mimetype == "application/json" and resp.get_json()["id"] == packet_id


def test_fhir_needs_the_same_authorisation(client, operator, packet):
    packet_id = _store(client, operator, packet)
    plain = client.get(f"/phenopackets/{packet_id}")
    as_fhir = client.get(f"/phenopackets/{packet_id}", headers={"Accept": FHIR})
    assert plain.status_code == as_fhir.status_code and as_fhir.status_code in (401, 403)
    assert "proposita" not in as_fhir.get_data(as_text=True)
    assert client.get("/phenopackets/nope", headers={**operator, "Accept": FHIR}).status_code == 404


def test_fhir_failing_validation_is_never_sent(client, operator, packet, monkeypatch):
    packet_id = _store(client, operator, packet)
    real = fhir_export.translate_phenopacket

    def broken(document, **kw):  # a translator fault: a gender outside the required value set
        bundle, issues = real(document, **kw)
        bundle["entry"][0]["resource"]["gender"] = "robot"
        return bundle, issues

    monkeypatch.setattr(fhir_export, "translate_phenopacket", broken)
    resp = client.get(f"/phenopackets/{packet_id}", headers={**operator, "Accept": FHIR})
    assert resp.status_code == 422 and resp.mimetype == FHIR
    body = resp.get_json()
    assert body["resourceType"] == "OperationOutcome"
    codes = [i["details"]["coding"][0]["code"] for i in body["issue"] if "details" in i]
    assert "fhir-export-invalid" in codes and "fhir-value" in codes
    assert "entry" not in body and "robot" in json.dumps(body)  # the fault is named, no data is sent


def test_beacon_response_becomes_a_collection_bundle(client, reference_dir, packet):
    other = json.loads((reference_dir / "phenopackets" / "FBN1").glob("*.json").__next__().read_text())
    response = {
        "meta": {"returnedSchemas": [{"entityType": "individual"}]},
        "response": {
            "resultSets": [
                {
                    "id": "pxf",
                    "setType": "dataset",
                    "exists": True,
                    "resultsCount": 2,
                    "results": [individual_record(packet), individual_record(other)],
                }
            ]
        },
    }
    resp = client.post("/fhir/$convert-beacon-response", data=json.dumps(response), content_type="application/json")
    assert resp.status_code == 200, resp.get_data(as_text=True)
    bundle = resp.get_json()
    assert bundle["type"] == "collection" and validate_fhir(bundle).ok
    patients = [e["resource"] for e in bundle["entry"] if e["resource"]["resourceType"] == "Patient"]
    assert sorted(p["identifier"][0]["value"] for p in patients) == sorted(
        [packet["subject"]["id"], other["subject"]["id"]]
    )


@pytest.mark.parametrize(("body", "status"), [(b"{not json", 400), (b'{"meta": {}}', 422), (b"[1, 2]", 422)])
def test_beacon_conversion_errors_are_operation_outcomes(client, body, status):
    resp = client.post("/fhir/$convert-beacon-response", data=body, content_type="application/json")
    assert resp.status_code == status and resp.get_json()["resourceType"] == "OperationOutcome"


def _answer(entity, records):
    return {"meta": {"returnedSchemas": [{"entityType": entity}]}, "response": {"resultSets": [{"results": records}]}}


@pytest.mark.parametrize(
    "body",
    [
        _answer("individual", [{"id": "i1", "sex": ["NCIT:C16576"], "phenotypicFeatures": "HP:1", "info": []}]),
        _answer("individual", [{"id": {"x": 1}, "diseases": [{"diseaseCode": {"id": ["OMIM:1"]}}]}]),
        _answer(
            "genomicVariation",
            [{"variation": {"location": {"sequence_id": 5}}, "caseLevelData": [{"individualId": {}}]}],
        ),
        _answer(["individual"], [{"id": "i2"}]),
        {"meta": {}, "response": {"resultSets": "none"}},
        _answer("biosample", [{"id": "b1", "individualId": [], "sampleOriginType": "blood"}]),
    ],
)
def test_malformed_beacon_answers_are_never_a_server_error(client, body):
    resp = client.post("/fhir/$convert-beacon-response", data=json.dumps(body), content_type="application/json")
    assert resp.status_code in (200, 422), resp.get_data(as_text=True)
    result = resp.get_json()
    if resp.status_code == 200:
        assert validate_fhir(result).ok
    else:
        assert result["resourceType"] == "OperationOutcome"
