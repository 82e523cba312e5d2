"""What is kept of a Patient: only what a phenopacket is made of (data minimisation).

Before, a kept Patient lost its names, contacts, addresses and narrative only: the mother's maiden name, the
birth place, nationality, marital status, the twins' birth order and the GP stayed in the row in clear, though
nothing reads them. Real MII Patient, with the extensions of FHIR core and US Core that hospitals send."""

from __future__ import annotations

import json

import sqlalchemy as sa

from gateway.store.tables import fhir_resources
from tests.api.test_fhir_rest import _packets, _resource, _send

PATIENT_ID = "patient-marfan-001"
EXT = "http://hl7.org/fhir/StructureDefinition/"


def _identifying(patient: dict) -> dict:
    return {
        **patient,
        "extension": [
            {"url": EXT + "patient-mothersMaidenName", "valueString": "Schwarzwälder"},
            {"url": EXT + "patient-birthPlace", "valueAddress": {"city": "Kleinkleckersdorf"}},
            {
                "url": EXT + "patient-nationality",
                "extension": [{"url": "code", "valueCodeableConcept": {"text": "DE"}}],
            },
        ],
        "maritalStatus": {"text": "verwitwet"},
        "multipleBirthInteger": 2,
        "communication": [{"language": {"text": "Plattdeutsch"}}],
        "generalPractitioner": [{"display": "Dr. Hausarzt"}],
        "contained": [{"resourceType": "Organization", "id": "o", "name": "Praxis Hausarzt"}],
        "link": [{"other": {"display": "Zwilling"}, "type": "seealso"}],
    }


def test_a_kept_patient_holds_only_what_its_phenopacket_is_made_of(client, app, operator, marfan):
    patient = _identifying(_resource(marfan, PATIENT_ID))
    assert _send(client, "PUT", f"/fhir/Patient/{PATIENT_ID}", operator, patient).status_code == 201
    with app.extensions["gateway"].store.engine.connect() as connection:
        (row,) = connection.execute(sa.select(fhir_resources.c.resource)).scalars()
    text = json.dumps(row, ensure_ascii=False)
    for word in ("Schwarzwälder", "Kleinkleckersdorf", "verwitwet", "Plattdeutsch", "Hausarzt", "Zwilling", '"DE"'):
        assert word not in text, word
    assert set(row) <= {"resourceType", "id", "meta", "identifier", "gender", "birthDate", "deceasedBoolean"} | {
        "deceasedDateTime",
        "active",
    }
    read = client.get(f"/fhir/Patient/{PATIENT_ID}", headers=operator).get_json()
    assert read["gender"] == patient["gender"] and read["birthDate"] == patient["birthDate"]
    (packet,) = _packets(app)
    plain = _resource(marfan, PATIENT_ID)  # the same Patient without them makes the same phenopacket
    assert _send(client, "PUT", f"/fhir/Patient/{PATIENT_ID}", operator, plain).status_code == 200
    (again,) = _packets(app)
    assert again.document["subject"] == packet.document["subject"]


def test_the_animal_extension_a_translation_reads_is_kept(client, app, operator, marfan):
    patient = _resource(marfan, PATIENT_ID)
    species = {
        "url": "species",
        "valueCodeableConcept": {
            "coding": [{"system": "http://snomed.info/sct", "code": "448771007", "display": "Canis lupus familiaris"}]
        },
    }
    patient["extension"] = [
        {"url": EXT + "patient-animal", "extension": [species]},
        {"url": EXT + "patient-mothersMaidenName", "valueString": "Schwarzwälder"},
    ]
    assert _send(client, "PUT", f"/fhir/Patient/{PATIENT_ID}", operator, patient).status_code == 201
    with app.extensions["gateway"].store.engine.connect() as connection:
        rows = list(connection.execute(sa.select(fhir_resources.c.resource)).scalars())
    (row,) = rows
    assert [e["url"] for e in row.get("extension", ())] == [EXT + "patient-animal"]
    (packet,) = _packets(app)
    assert packet.document["subject"]["taxonomy"]["id"] != "NCBITaxon:9606"  # still read from what is kept


def test_no_kept_resource_holds_the_patients_name_in_its_narrative_or_its_link(client, app, operator, marfan):
    """FHIR's own examples name the patient in every resource: the generated narrative and `subject.display`
    ("Peter James Chalmers"). Both were kept in the rows in clear; nothing reads them."""
    patient = _resource(marfan, PATIENT_ID)
    assert _send(client, "PUT", f"/fhir/Patient/{PATIENT_ID}", operator, patient).status_code == 201
    condition = _resource(marfan, "condition-marfan-genetic")
    condition["subject"]["display"] = "Peter James Chalmers"
    condition["text"] = {
        "status": "generated",
        "div": '<div xmlns="http://www.w3.org/1999/xhtml">Marfan syndrome of Peter James Chalmers (MRF-2024-001)</div>',
    }
    assert _send(client, "PUT", "/fhir/Condition/condition-marfan-genetic", operator, condition).status_code == 201
    with app.extensions["gateway"].store.engine.connect() as connection:
        text = json.dumps(list(connection.execute(sa.select(fhir_resources.c.resource)).scalars()))
    assert "Chalmers" not in text and "MRF-2024-001" not in text
    read = client.get("/fhir/Condition/condition-marfan-genetic", headers=operator).get_json()
    assert read["subject"] == {"reference": f"Patient/{PATIENT_ID}"} and "text" not in read
    (packet,) = _packets(app)
    assert packet.document["diseases"]  # what the phenopacket is made of is all there


def test_a_patient_whose_id_is_its_record_number_is_told(client, app, operator, reference_dir):
    """The real IPS Bundle `bundle-no-info-required-sections` names its Patient `AAA1234`, its identifier's value:
    ids are kept as sent (clients read and update by them), so the number lands in every row that references it.
    The sender is told, on both channels; the identifier itself is kept as a pseudonym."""
    bundle = json.loads(
        (reference_dir / "fhir" / "ips-1.1.0" / "Bundle-bundle-no-info-required-sections.json").read_text()
    )
    answer = client.post("/fhir?dataset=ips", json=bundle, headers=operator)
    assert answer.status_code in (200, 201), answer.get_data(as_text=True)
    told = [
        (e["response"]["location"], i["expression"])
        for e in answer.get_json()["entry"]
        for i in (e["response"].get("outcome") or {}).get("issue", ())
        if i["details"]["coding"][0]["code"] == "id-is-identifier"
    ]
    patient_entry = next(n for n, e in enumerate(bundle["entry"]) if e["resource"]["resourceType"] == "Patient")
    assert told == [("Patient/AAA1234/_history/1", [f"Bundle.entry[{patient_entry}].resource.id"])]
    patient = next(e["resource"] for e in bundle["entry"] if e["resource"]["resourceType"] == "Patient")
    alone = _send(client, "PUT", f"/fhir/Patient/{patient['id']}?dataset=rest", operator, patient)
    assert alone.status_code == 201
    issues = [i for i in alone.get_json()["issue"] if i["details"]["coding"][0]["code"] == "id-is-identifier"]
    assert len(issues) == 1 and issues[0]["severity"] == "warning"
    other = {**patient, "id": "opaque-1"}
    quiet = _send(client, "PUT", "/fhir/Patient/opaque-1?dataset=rest2", operator, other)
    assert "id-is-identifier" not in quiet.get_data(as_text=True)
