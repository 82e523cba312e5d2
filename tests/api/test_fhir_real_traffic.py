"""Real hospital traffic the project had not seen (US Core 4.0.0, mCODE 2.1.0, vcf2fhir-style reports, Synthea),
rebuilt as small fixtures of the same shape and sent as a hospital sends them: a complete Bundle, and the
Patient first then each resource on its own."""

from __future__ import annotations

import copy
import json

FHIR = "application/fhir+json"
LOINC = "http://loinc.org"
PATIENT = {
    "resourceType": "Patient",
    "id": "p1",
    "identifier": [{"system": "http://hospital.example/mrn", "value": "4711"}],
    "gender": "female",
    "birthDate": "1980-01-01",
}
# A Genomics Reporting (STU1, vcf2fhir) report: the variant lives inside the report, as a contained resource.
VARIANT = {
    "resourceType": "Observation",
    "id": "v1",
    "status": "final",
    "code": {"coding": [{"system": LOINC, "code": "69548-6"}]},
    "valueCodeableConcept": {"coding": [{"system": LOINC, "code": "LA9633-4", "display": "Present"}]},
    "component": [
        {
            "code": {"coding": [{"system": LOINC, "code": "48004-6"}]},
            "valueCodeableConcept": {
                "coding": [{"system": "http://www.ncbi.nlm.nih.gov/projects/SNP", "code": "NC_000001.10:25:A:G"}]
            },
        },
        {
            "code": {"coding": [{"system": LOINC, "code": "53034-5"}]},
            "valueCodeableConcept": {"coding": [{"system": LOINC, "code": "LA6706-1", "display": "heterozygous"}]},
        },
    ],
}
REPORT = {
    "resourceType": "DiagnosticReport",
    "id": "r1",
    "status": "final",
    "code": {"coding": [{"system": LOINC, "code": "81247-9"}]},
    "subject": {"reference": "Patient/p1"},
    "effectiveDateTime": "2021-06-01",
    "contained": [VARIANT],
    "result": [{"reference": "#v1"}],
}


def _send(client, method, path, headers, body=None):
    data = None if body is None else json.dumps(body)
    return client.open(path, method=method, data=data, headers={**headers, "Content-Type": FHIR})


def _packets(app):
    return app.extensions["gateway"].store.list_phenopackets()[0]


def _entry(resource):
    kind, rid = resource["resourceType"], resource["id"]
    return {
        "fullUrl": f"https://hospital.example/fhir/{kind}/{rid}",
        "resource": resource,
        "request": {"method": "PUT", "url": f"{kind}/{rid}"},
    }


def _transaction(*resources):
    return {"resourceType": "Bundle", "type": "transaction", "entry": [_entry(copy.deepcopy(r)) for r in resources]}


def _variants(packet):
    return [
        g["variantInterpretation"]["variationDescriptor"]
        for i in packet.document.get("interpretations", ())
        for g in i["diagnosis"]["genomicInterpretations"]
    ]


def test_a_report_with_contained_variants_sent_after_its_patient_is_kept(client, app, operator):
    """Was: PUT /fhir/DiagnosticReport answered 404 (type not kept) and a Patient-less transaction 'not kept'
    (information only): the report's variants were lost, though the same report beside its Patient was read."""
    assert _send(client, "PUT", "/fhir/Patient/p1", operator, PATIENT).status_code == 201
    put = _send(client, "PUT", "/fhir/DiagnosticReport/r1", operator, REPORT)
    assert put.status_code == 201, put.get_data(as_text=True)
    (packet,) = _packets(app)
    (variant,) = _variants(packet)
    assert variant["vcfRecord"]["pos"] == "26" and variant["allelicState"]["label"] == "heterozygous"
    assert packet.document["subject"]["timeAtLastEncounter"] == {
        "age": {"iso8601duration": "P41Y"}
    }  # the report's date

    gone = _send(client, "DELETE", "/fhir/DiagnosticReport/r1", operator)
    assert gone.status_code == 200
    (packet,) = _packets(app)
    assert not _variants(packet)


def test_a_report_in_a_patient_less_transaction_equals_the_complete_bundle(client, app, operator, gateway_config):
    assert _send(client, "PUT", "/fhir/Patient/p1", operator, PATIENT).status_code == 201
    later = client.post("/fhir", data=json.dumps(_transaction(REPORT)), headers={**operator, "Content-Type": FHIR})
    assert later.status_code == 200, later.get_data(as_text=True)
    (entry,) = later.get_json()["entry"]
    assert entry["response"]["status"] == "201 Created"
    (by_parts,) = _packets(app)

    from app import create_app

    other = create_app({**gateway_config, "data_dir": gateway_config["data_dir"].parent / "other"})
    try:
        whole = other.test_client().post(
            "/fhir", data=json.dumps(_transaction(PATIENT, REPORT)), headers={**operator, "Content-Type": FHIR}
        )
        assert whole.status_code == 200, whole.get_data(as_text=True)
        (complete,) = _packets(other)
    finally:
        other.extensions["gateway"].store.close()
    assert _variants(by_parts) == _variants(complete)
    assert by_parts.document["subject"] == complete.document["subject"]


def test_one_lab_value_with_an_annotation_unit_does_not_refuse_its_patient(client, app, operator):
    """US Core's urine specific gravity (UCUM code '{urine specific gravity}') made an invalid phenopacket:
    the complete Bundle answered 422, and in reverse order the Patient itself was refused."""
    gravity = {
        "resourceType": "Observation",
        "id": "usg",
        "status": "final",
        "code": {"coding": [{"system": LOINC, "code": "5811-5"}]},
        "subject": {"reference": "Patient/p1"},
        "effectiveDateTime": "2020-01-01",
        "valueQuantity": {
            "value": 1.01,
            "unit": "{urine specific gravity}",
            "system": "http://unitsofmeasure.org",
            "code": "{urine specific gravity}",
        },
    }
    first = _send(client, "PUT", "/fhir/Observation/usg", operator, gravity)
    assert first.status_code == 201, first.get_data(as_text=True)
    patient = _send(client, "PUT", "/fhir/Patient/p1", operator, PATIENT)
    assert patient.status_code == 201, patient.get_data(as_text=True)
    (packet,) = _packets(app)
    (measurement,) = packet.document["measurements"]
    assert measurement["value"]["quantity"]["value"] == 1.01


def _episode(rid: str, onset: str, end: str) -> dict:
    code = {"coding": [{"system": "http://snomed.info/sct", "code": "444814009", "display": "Viral sinusitis"}]}
    return {
        "resourceType": "Condition",
        "id": rid,
        "code": code,
        "subject": {"reference": "Patient/p1"},
        "onsetDateTime": onset,
        "abatementDateTime": end,
    }


def test_a_recurring_disease_sent_resource_by_resource_equals_the_complete_bundle(
    client, app, operator, gateway_config
):
    """Synthea: two episodes of one disease. The complete Bundle kept the first in Bundle order, the resources
    sent one by one the first by id: the stored onset depended on how the hospital sent them."""
    later, earlier = _episode("a-2021", "2021-05-01", "2021-05-15"), _episode("b-2020", "2020-03-01", "2020-03-20")
    for resource in (PATIENT, later, earlier):
        kind = resource["resourceType"]
        assert _send(client, "PUT", f"/fhir/{kind}/{resource['id']}", operator, resource).status_code == 201
    (by_parts,) = _packets(app)

    from app import create_app

    other = create_app({**gateway_config, "data_dir": gateway_config["data_dir"].parent / "whole"})
    try:
        whole = other.test_client().post(
            "/fhir", data=json.dumps(_transaction(PATIENT, earlier, later)), headers={**operator, "Content-Type": FHIR}
        )
        assert whole.status_code == 200, whole.get_data(as_text=True)
        (complete,) = _packets(other)
    finally:
        other.extensions["gateway"].store.close()

    def episodes(packet):
        return sorted(json.dumps(d, sort_keys=True) for d in packet.document["diseases"])

    assert len(by_parts.document["diseases"]) == 2
    assert episodes(by_parts) == episodes(complete)


def test_a_cause_of_death_observation_sent_alone_sets_and_unsets_the_cause(client, app, operator):
    """Synthea's cause of death (LOINC 69453-9) arrives as an Observation of its own."""
    dead = {**PATIENT, "deceasedDateTime": "2021-03-01"}
    cause = {
        "resourceType": "Observation",
        "id": "cod",
        "status": "final",
        "code": {"coding": [{"system": LOINC, "code": "69453-9"}]},
        "subject": {"reference": "Patient/p1"},
        "valueCodeableConcept": {
            "coding": [{"system": "http://snomed.info/sct", "code": "22298006", "display": "Myocardial Infarction"}]
        },
    }
    assert _send(client, "PUT", "/fhir/Patient/p1", operator, dead).status_code == 201
    assert _send(client, "PUT", "/fhir/Observation/cod", operator, cause).status_code == 201
    (packet,) = _packets(app)
    assert packet.document["subject"]["vitalStatus"]["causeOfDeath"]["id"] == "SNOMEDCT:22298006"
    assert not packet.document.get("measurements")
    assert _send(client, "DELETE", "/fhir/Observation/cod", operator).status_code == 200
    (packet,) = _packets(app)
    assert packet.document["subject"]["vitalStatus"] == {
        "status": "DECEASED",
        "timeOfDeath": {"age": {"iso8601duration": "P41Y"}},
    }


def test_a_patient_without_identifiers_is_one_person_whatever_the_full_url(client, app, operator):
    """MII MTB / CHUGA patients carry no identifier. The same PUT Patient/x, once in a transaction with an
    https fullUrl and later with a urn:uuid one, made two phenopackets for one person (the id came from the
    fullUrl when it was absolute)."""
    bare = {"resourceType": "Patient", "id": "mtb-1", "gender": "female", "birthDate": "1970-01-01"}
    for full_url in ("https://hospital.example/fhir/Patient/mtb-1", "urn:uuid:8c4b4f3e-0f0e-4a35-9a57-2d0f3c0f0a11"):
        body = {
            "resourceType": "Bundle",
            "type": "transaction",
            "entry": [{"fullUrl": full_url, "resource": bare, "request": {"method": "PUT", "url": "Patient/mtb-1"}}],
        }
        sent = client.post("/fhir", data=json.dumps(body), headers={**operator, "Content-Type": FHIR})
        assert sent.status_code == 200, sent.get_data(as_text=True)
    assert _send(client, "PUT", "/fhir/Patient/mtb-1", operator, {**bare, "gender": "male"}).status_code == 200
    (packet,) = _packets(app)
    assert packet.document["subject"]["sex"] == "MALE"


def test_an_immunization_dates_the_age_on_both_channels_and_only_its_date_is_kept(
    client, app, operator, gateway_config
):
    """An IPS document whose latest dated event is an Immunization (Epic's IPS: 35 years from the complete Bundle,
    31 resource by resource, as the REST surface answered 404 for an Immunization and kept nothing of it). Now
    the REST surface keeps its date-only trace, and both channels give the age at the vaccination."""
    condition = {
        "resourceType": "Condition",
        "id": "c1",
        "subject": {"reference": "Patient/p1"},
        "code": {"coding": [{"system": "http://snomed.info/sct", "code": "38341003", "display": "Hypertension"}]},
        "onsetDateTime": "2011-03-01",
    }
    immunization = {
        "resourceType": "Immunization",
        "id": "i1",
        "status": "completed",
        "vaccineCode": {"coding": [{"system": "http://snomed.info/sct", "code": "871751006"}]},
        "patient": {"reference": "Patient/p1"},
        "occurrenceDateTime": "2021-05-01",
        "performer": [{"actor": {"reference": "Practitioner/dr-who"}}],
        "lotNumber": "AB1234",
        "note": [{"text": "given in the left arm by Dr Who"}],
    }
    whole = client.post(
        "/fhir",
        data=json.dumps(_transaction(PATIENT, condition, immunization)),
        headers={**operator, "Content-Type": FHIR},
    )
    assert whole.status_code == 200, whole.get_data(as_text=True)
    (complete,) = _packets(app)

    from app import create_app

    other = create_app({**gateway_config, "data_dir": gateway_config["data_dir"].parent / "by-parts"})
    try:
        parts = other.test_client()
        for resource in (PATIENT, condition, immunization):
            kind = resource["resourceType"]
            sent = _send(parts, "PUT", f"/fhir/{kind}/{resource['id']}", operator, resource)
            assert sent.status_code == 201, sent.get_data(as_text=True)
        (by_parts,) = _packets(other)
        kept = parts.get("/fhir/Immunization/i1", headers=operator).get_json()
    finally:
        other.extensions["gateway"].store.close()
    assert complete.document["subject"]["timeAtLastEncounter"] == {"age": {"iso8601duration": "P41Y"}}
    assert by_parts.document["subject"] == complete.document["subject"]
    assert kept["occurrenceDateTime"] == "2021-05-01" and kept["vaccineCode"] == immunization["vaccineCode"]
    assert not {"performer", "lotNumber", "note"} & set(kept)  # only who and when (data minimisation)
