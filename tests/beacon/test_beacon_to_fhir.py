"""Beacon record-level answers -> FHIR (translators/beacon_to_fhir.py), on answers of a running node."""

from __future__ import annotations

import json

from fhir.resources.R4B.bundle import Bundle

from gateway.validation.fhir import validate_fhir
from tests.beacon.official_schemas import REFERENCE
from translators.beacon_to_fhir import translate_beacon_response
from translators.phenopacket_to_beacon import biosample_records, individual_record


def _components(obs: dict) -> dict:
    return {c["code"]["coding"][0]["code"]: c for c in obs["component"]}


def test_g_variants_records_become_variant_observations_per_carrier(beacon_client):
    response = beacon_client.get("/api/g_variants?geneId=BRCA1&requestedGranularity=record").get_json()
    records = [r for rs in response["response"]["resultSets"] for r in rs["results"]]
    assert len(records) >= 2
    bundle, issues = translate_beacon_response(response)
    assert not [i for i in issues if i.is_error]
    Bundle.model_validate(bundle)
    assert validate_fhir(bundle).ok
    observations = [e["resource"] for e in bundle["entry"]]
    assert len(observations) == sum(max(1, len(r.get("caseLevelData", []))) for r in records)
    zygosities = {r["caseLevelData"][0]["zygosity"]["id"] for r in records if r.get("caseLevelData")}
    states = {
        _components(o).get("53034-5", {}).get("valueCodeableConcept", {}).get("coding", [{}])[0].get("code")
        for o in observations
    }
    loinc = {"GENO:0000135": "LA6706-1", "GENO:0000136": "LA6705-3"}
    assert {loinc[z] for z in zygosities if z in loinc} <= states
    for record in records:
        hgvs = record.get("identifiers", {}).get("genomicHGVSId")
        if hgvs:
            assert any(
                hgvs == _components(o)["81290-9"]["valueCodeableConcept"]["coding"][0]["code"]
                for o in observations
                if "81290-9" in _components(o)
            )


def test_carriers_point_at_their_patient_when_the_individual_is_in_the_answer(beacon_client):
    variants = beacon_client.get("/api/g_variants?geneId=BRCA1&requestedGranularity=record").get_json()
    carrier = next(
        c
        for rs in variants["response"]["resultSets"]
        for r in rs["results"]
        for c in r.get("caseLevelData", [])
        if c.get("individualId")
    )
    packet = json.loads((REFERENCE / "phenopackets" / "PAX3" / "PMID_12949970_proposita.json").read_text())
    record = individual_record(packet, individual_id=carrier["individualId"])
    individuals = {
        "meta": {"returnedSchemas": [{"entityType": "individual"}]},
        "response": {"resultSets": [{"results": [record]}]},
    }
    bundle, _ = translate_beacon_response([variants, individuals])  # individuals are placed first whatever the order
    assert validate_fhir(bundle).ok
    (patient,) = [e for e in bundle["entry"] if e["resource"]["resourceType"] == "Patient"]
    carried = [
        e["resource"]
        for e in bundle["entry"]
        if e["resource"].get("subject", {}).get("reference") == patient["fullUrl"]
    ]
    assert any(o["code"]["coding"][0]["code"] == "69548-6" for o in carried)


def test_unsupported_record_sets_are_warned_about():
    response = {
        "meta": {"returnedSchemas": [{"entityType": "dataset"}]},
        "response": {"resultSets": [{"results": [{"id": "d1"}]}]},
    }
    bundle, issues = translate_beacon_response(response)
    assert "entry" not in bundle
    assert [i.location for i in issues] == ["/response/resultSets/0/results/0"]


def _answer(entity: str, records: list[dict]) -> dict:
    return {"meta": {"returnedSchemas": [{"entityType": entity}]}, "response": {"resultSets": [{"results": records}]}}


def test_biosample_records_become_specimens_of_their_patient():
    path = REFERENCE / "phenopackets" / "_phenopacket-tools" / "phenopackets" / "retinoblastoma.json"
    packet = json.loads(path.read_text())
    samples = biosample_records(packet)
    assert samples
    bundle, issues = translate_beacon_response(
        [_answer("biosample", samples), _answer("individual", [individual_record(packet)])]
    )
    assert validate_fhir(bundle).ok
    (patient,) = [e for e in bundle["entry"] if e["resource"]["resourceType"] == "Patient"]
    specimens = [e["resource"] for e in bundle["entry"] if e["resource"]["resourceType"] == "Specimen"]
    assert len(specimens) == len(samples)
    assert all(s["subject"]["reference"] == patient["fullUrl"] for s in specimens)
    tissue = samples[0]["sampleOriginDetail"]["id"]
    assert specimens[0]["collection"]["bodySite"]["coding"][0]["code"] == tissue
    locations = {i.location for i in issues}
    assert "/0/response/resultSets/0/results/0/tumorProgression" in locations
    # the individual's warnings sit on the Beacon record's own elements, not the phenopacket's
    assert "/1/response/resultSets/0/results/0/treatments/0/treatmentCode/id" in locations  # DrugCentral
    assert "/1/response/resultSets/0/results/0/info/ageAtLastEncounter" in locations


def test_individual_issues_point_into_the_beacon_record():
    packet = json.loads((REFERENCE / "phenopackets" / "PAX3" / "PMID_12949970_proposita.json").read_text())
    record = individual_record(packet)
    record["phenotypicFeatures"][2]["featureType"] = {"id": "LOCAL:1", "label": "a local finding"}
    bundle, issues = translate_beacon_response(_answer("individual", [record]))
    assert validate_fhir(bundle).ok
    where = "/response/resultSets/0/results/0/phenotypicFeatures/2/featureType/id"
    assert [i.code for i in issues if i.location == where] == ["unmapped-code"]
    excluded = [f for f in record["phenotypicFeatures"] if f.get("excluded")]
    absent = [
        e
        for e in bundle["entry"]
        if e["resource"].get("valueCodeableConcept", {}).get("coding", [{}])[0].get("code") == "LA9634-2"
    ]
    assert excluded and len(absent) == len(excluded)
