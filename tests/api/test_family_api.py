"""Issue 11: the Family made from FamilyMemberHistory is served alongside the proband's phenopacket —
GET /phenopackets/{id}/family (JSON, or FHIR back to the EHR), named from GET /phenopackets/{id} — for
FHIR posted as a Bundle, resource by resource, and for Family documents posted to /phenopackets."""

from __future__ import annotations

import copy
import json

import pytest

from gateway.validation.fhir import validate_fhir
from gateway.validation.phenopacket import validate_family

FHIR = "application/fhir+json"
SELTENE = "mii-testdata/Bundle-mii-exa-test-data-bundle-seltene-1.json"
LONE_HISTORY = "mii-testdata/FamilyMemberHistory-mii-exa-test-data-patient-3-seltene-familienanamnese-1.json"


@pytest.fixture
def seltene(reference_dir):
    return json.loads((reference_dir / "fhir" / SELTENE).read_text(encoding="utf-8"))


def _post_fhir(client, path, headers, body):
    return client.post(path, data=json.dumps(body), headers={**headers, "Content-Type": FHIR})


def _only_packet_id(client, operator):
    (packet,) = client.get("/phenopackets", headers=operator).get_json()["phenopackets"]
    return packet["id"]


def _types(bundle):
    return [e["resource"]["resourceType"] for e in bundle.get("entry", ())]


def test_a_posted_bundles_family_is_served_with_the_phenopacket(client, operator, seltene):
    assert _post_fhir(client, "/fhir", operator, seltene).status_code == 200
    packet_id = _only_packet_id(client, operator)
    packet = client.get(f"/phenopackets/{packet_id}", headers=operator)
    assert packet.status_code == 200
    assert packet.headers["Link"] == f'</phenopackets/{packet_id}/family>; rel="related"; title="family"'

    family = client.get(f"/phenopackets/{packet_id}/family", headers=operator)
    assert family.status_code == 200
    body = family.get_json()
    assert validate_family(body, target="output").ok
    assert body["proband"] == packet.get_json()
    assert len(body["relatives"]) == 2 and len(body["pedigree"]["persons"]) == 3


def test_the_family_goes_back_to_the_ehr_as_family_member_history(client, operator, seltene):
    _post_fhir(client, "/fhir", operator, seltene)
    packet_id = _only_packet_id(client, operator)
    for path in (f"/phenopackets/{packet_id}/family", f"/phenopackets/{packet_id}"):
        exported = client.get(path, headers={**operator, "Accept": FHIR})
        assert exported.status_code == 200 and exported.mimetype == FHIR
        bundle = exported.get_json()
        assert validate_fhir(bundle).ok
        assert _types(bundle).count("Patient") == 1 and _types(bundle).count("FamilyMemberHistory") == 2
        histories = [e["resource"] for e in bundle["entry"] if e["resource"]["resourceType"] == "FamilyMemberHistory"]
        roles = sorted(h["relationship"]["coding"][0]["code"] for h in histories)
        assert roles == ["FTH", "MTH"]  # what the pedigree can say of the relatives the hospital sent


def test_resource_by_resource_through_the_rest_surface(client, operator, seltene, reference_dir):
    patient = copy.deepcopy(next(e["resource"] for e in seltene["entry"] if e["resource"]["resourceType"] == "Patient"))
    history = json.loads((reference_dir / "fhir" / LONE_HISTORY).read_text(encoding="utf-8"))
    pending = _post_fhir(client, "/fhir/FamilyMemberHistory", operator, history)  # before its Patient
    assert pending.status_code == 201
    assert client.get("/phenopackets", headers=operator).get_json()["total"] == 0
    put = client.put(
        f"/fhir/Patient/{patient['id']}", data=json.dumps(patient), headers={**operator, "Content-Type": FHIR}
    )
    assert put.status_code == 201
    packet_id = _only_packet_id(client, operator)
    family = client.get(f"/phenopackets/{packet_id}/family", headers=operator).get_json()
    assert family["pedigree"]["persons"][0]["maternalId"] == family["relatives"][0]["subject"]["id"]

    assert client.delete(f"/fhir/FamilyMemberHistory/{history['id']}", headers=operator).status_code in (200, 204)
    gone = client.get(f"/phenopackets/{packet_id}/family", headers=operator)
    assert gone.status_code == 404 and "no family history" in gone.get_json()["error"]["message"]
    assert "Link" not in client.get(f"/phenopackets/{packet_id}", headers=operator).headers


def test_a_family_document_posted_to_phenopackets(client, operator, seltene):
    _post_fhir(client, "/fhir", operator, seltene)
    exported = client.get(f"/phenopackets/{_only_packet_id(client, operator)}/family", headers=operator).get_json()
    posted = client.post("/phenopackets?dataset=families", data=json.dumps(exported), headers=operator)
    assert posted.status_code == 201, posted.get_data(as_text=True)
    (stored,) = posted.get_json()["stored"]
    family = client.get(f"/phenopackets/{stored['id']}/family", headers=operator).get_json()
    assert family["proband"]["id"] == stored["id"] and len(family["relatives"]) == 2


def test_a_broken_family_document_is_refused_with_pointers(client, operator, reference_dir):
    path = reference_dir / "phenopackets" / "_phenopacket-tools" / "io-test-v2" / "family.json"
    refused = client.post("/phenopackets", data=path.read_bytes(), headers=operator)
    assert refused.status_code == 422
    locations = {i["location"] for i in refused.get_json()["error"]["issues"]}
    assert "/relatives/0/id" in locations
    assert client.get("/phenopackets", headers=operator).get_json()["total"] == 0


def test_reading_a_family_needs_what_reading_the_phenopacket_needs(client, operator, seltene):
    _post_fhir(client, "/fhir", operator, seltene)
    packet_id = _only_packet_id(client, operator)
    assert client.get(f"/phenopackets/{packet_id}/family").status_code == 401
    stranger = client.get(f"/phenopackets/{packet_id}/family", headers={"Authorization": "Bearer not-a-token"})
    assert stranger.status_code in (401, 404)
    assert client.get("/phenopackets/no-such-packet/family", headers=operator).status_code == 404


def test_the_family_comes_back_from_the_ehr_as_it_went(client, operator, seltene):
    """Family → FHIR (FamilyMemberHistory) → POST /fhir → Family: relatives, their conditions with onset
    ages, sex, vital status and the parent links survive the round trip."""
    _post_fhir(client, "/fhir", operator, seltene)
    packet_id = _only_packet_id(client, operator)
    before = client.get(f"/phenopackets/{packet_id}/family", headers=operator).get_json()
    bundle = client.get(f"/phenopackets/{packet_id}/family", headers={**operator, "Accept": FHIR}).get_json()
    assert _post_fhir(client, "/fhir?dataset=back", operator, bundle).status_code == 200
    listed = client.get("/phenopackets?dataset=back", headers=operator).get_json()["phenopackets"]
    after = client.get(f"/phenopackets/{listed[0]['id']}/family", headers=operator).get_json()

    def facts(family):
        persons = {p["individualId"]: p for p in family["pedigree"]["persons"]}
        proband = persons[family["proband"]["subject"]["id"]]
        role = {proband.get("maternalId"): "mother", proband.get("paternalId"): "father"}
        return sorted(
            (role.get(r["subject"]["id"]), r["subject"].get("sex"), r["subject"].get("vitalStatus"), r.get("diseases"))
            for r in family["relatives"]
        )

    assert facts(after) == facts(before)
    assert any(d.get("onset") for r in before["relatives"] for d in r.get("diseases", ()))  # there were onsets
