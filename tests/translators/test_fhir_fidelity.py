"""Issue 11: clinical facts of real FHIR examples survive the translation, in their faithful home.

Each test builds the input the way a hospital holds it: one patient's resources from
../shared/reference/fhir (the files that name that patient as subject), and checks one fact class.
"""

import json

import pytest

from gateway.store.indexing import index_fields
from gateway.store.tables import DISEASE, EXCLUDED_DISEASE
from mappings import detect_profile, load_profile
from tests.translators.conftest import FHIR, NOW, TEST_IDS, read_fhir
from translators.fhir_to_phenopacket import translate_bundle

SELTENE = "mii-seltene-erkrankungen"


def patient_bundle(folder: str, patient_id: str) -> dict:
    """The Patient `patient_id` of `folder` and every single resource whose subject/patient it is."""
    resources = []
    for path in sorted((FHIR / folder).glob("*.json")):
        resource = json.loads(path.read_text(encoding="utf-8"))
        if resource["resourceType"] == "Bundle":
            continue
        if resource["resourceType"] == "Patient":
            if resource.get("id") == patient_id:
                resources.insert(0, resource)
            continue
        owner = resource.get("subject") or resource.get("patient") or {}
        if owner.get("reference") == f"Patient/{patient_id}":
            resources.append(resource)
    assert resources and resources[0]["resourceType"] == "Patient", f"{patient_id} not in {folder}"
    entries = [
        {"fullUrl": f"https://hospital.example/fhir/{r['resourceType']}/{r['id']}", "resource": r} for r in resources
    ]
    return {"resourceType": "Bundle", "type": "collection", "entry": entries}


def translate(bundle: dict):
    result = translate_bundle(bundle, profile=load_profile(detect_profile(bundle)), ids=TEST_IDS, now=NOW)
    assert len(result.packets) == 1
    return result.packets[0]


def entry_of(bundle: dict, resource_id: str) -> int:
    return next(i for i, e in enumerate(bundle["entry"]) if e["resource"]["id"] == resource_id)


@pytest.fixture(scope="module")
def sma():
    bundle = patient_bundle(SELTENE, "patient-sma-001")
    return bundle, translate(bundle)


def test_confirmed_condition_is_a_disease_and_the_suspected_one_is_not(sma):
    """Was: the unconfirmed SNOMED 'suspected SMA' absorbed the confirmed ORPHA:83330 diagnosis."""
    bundle, packet = sma
    diseases = [d["term"]["id"] for d in packet.phenopacket["diseases"]]
    assert diseases == ["ORPHA:83330"]
    in_progress = [
        i["diagnosis"]["disease"]["id"]
        for i in packet.phenopacket["interpretations"]
        if i["progressStatus"] == "IN_PROGRESS"
    ]
    assert in_progress == ["SNOMEDCT:64383006"]  # the suspected diagnosis, as a diagnosis under consideration
    suspected = entry_of(bundle, "condition-sma-suspected")
    assert any(
        i.code == "unconfirmed-diagnosis" and i.location == f"/entry/{suspected}/resource/verificationStatus"
        for i in packet.issues
    )


def test_every_coding_of_a_disease_is_a_beacon_filter_term(sma):
    """Was: ICD10GM:G12.0 sat in externalReferences only, so a Beacon filter on it found nobody."""
    _, packet = sma
    terms = {(kind, term) for kind, term, _ in index_fields(packet.phenopacket)["terms"]}
    for code in ("ORPHA:83330", "ICD10GM:G12.0", "SNOMEDCT:64383006"):
        assert (DISEASE, code) in terms


def test_refuted_condition_is_an_excluded_disease_findable_by_its_code():
    bundle = patient_bundle(SELTENE, "example")
    packet = translate(bundle)
    refuted = [d for d in packet.phenopacket["diseases"] if d["term"]["id"] == "OMIM:253300"]
    assert refuted and refuted[0]["excluded"] is True
    terms = {(kind, term) for kind, term, _ in index_fields(packet.phenopacket)["terms"]}
    assert (EXCLUDED_DISEASE, "OMIM:253300") in terms
    assert (DISEASE, "OMIM:253300") not in terms


def test_lab_values_become_measurements_with_ucum_units(sma):
    """Was: 0 of 61 measurements carried."""
    _, packet = sma
    troponin = read_fhir(f"{SELTENE}/Observation-observation-troponin-002.json")
    found = [m for m in packet.phenopacket["measurements"] if m["assay"]["id"] == "LOINC:6598-7"]
    quantities = [m["value"]["quantity"] for m in found]
    expected = troponin["valueQuantity"]
    assert {"unit": {"id": f"UCUM:{expected['code']}", "label": expected["unit"]}, "value": expected["value"]} in (
        quantities
    )
    assert all(m["timeObserved"] == {"age": {"iso8601duration": "P0Y"}} for m in found)


def test_age_at_last_encounter_is_at_the_latest_event_not_at_conversion(sma):
    """Was: the age on the day of conversion (NOW is 2026; this patient's events are in 2024, born 2024-07-01)."""
    _, packet = sma
    assert packet.phenopacket["subject"]["timeAtLastEncounter"] == {"age": {"iso8601duration": "P0Y"}}


def test_cause_of_death_condition_fills_vital_status():
    bundle = as_collection(read_fhir("mii-testdata/Bundle-mii-exa-test-data-bundle-pat-1.json"))
    packet = translate(bundle)
    vital = packet.phenopacket["subject"]["vitalStatus"]
    assert vital["status"] == "DECEASED"
    assert vital["causeOfDeath"]["id"] == "ICD10:A15.0"
    # death at 46 is the last encounter there can be
    assert packet.phenopacket["subject"]["timeAtLastEncounter"] == vital["timeOfDeath"]


def test_medication_statements_and_requests_are_treatments_and_medications_used_are_not_warned():
    """Was: MedicationRequest dropped; 'Medication is not used by any mapped resource' for used ones."""
    bundle = read_fhir("mii-testdata/Bundle-mii-exa-test-data-bundle-pat-1.json")
    result = translate_bundle(bundle, profile=load_profile("mii"), ids=TEST_IDS, now=NOW)
    treatments = [
        a["treatment"] for p in result.packets for a in p.phenopacket.get("medicalActions", ()) if "treatment" in a
    ]
    statements = [e for e in bundle["entry"] if e["resource"]["resourceType"] == "MedicationStatement"]
    assert statements and len(treatments) > len(statements)  # requests and administrations count too
    requests = [
        e
        for e in bundle["entry"]
        if e["resource"]["resourceType"] == "MedicationRequest"
        and e["resource"]["status"] != "cancelled"
        and e["resource"]["intent"] not in ("proposal", "option")  # a recommendation is no treatment
    ]
    assert sum(t.get("drugType") == "PRESCRIPTION" for t in treatments) == len(requests)
    assert not [i for i in result.issues if "not used by any mapped resource" in i.message]


def test_variant_component_coded_by_text_only_reaches_its_home(sma):
    """Was: 'variant component None has no phenopacket target', then "'Copy Number' has no phenopacket
    target": the text-coded copy number is now the descriptor's copy number, with no warning."""
    bundle, packet = sma
    smn2 = entry_of(bundle, "variant-smn2-001")
    assert not [i for i in packet.issues if i.location == f"/entry/{smn2}/resource/component/1"]
    descriptors = [
        g["variantInterpretation"]["variationDescriptor"]
        for i in packet.phenopacket["interpretations"]
        for g in i["diagnosis"].get("genomicInterpretations", ())
    ]
    smn2_descriptor = next(d for d in descriptors if d.get("geneContext", {}).get("symbol") == "SMN2")
    assert smn2_descriptor["variation"]["copyNumber"]["number"] == {"value": "2"}


def as_collection(bundle: dict) -> dict:
    return {
        **bundle,
        "type": "collection",
        "entry": [{k: v for k, v in e.items() if k != "request"} for e in bundle["entry"]],
    }


def with_its_patient(report: dict) -> dict:
    """A collection Bundle of the report and a bare Patient with the id its subject names."""
    patient_id = report["subject"]["reference"].split("/")[1]
    return {
        "resourceType": "Bundle",
        "type": "collection",
        "entry": [{"resource": {"resourceType": "Patient", "id": patient_id}}, {"resource": report}],
    }


def test_variants_contained_in_a_vcf2fhir_report_are_interpretations_with_vcf_records():
    """Was: 0 of 68 contained variants carried, no warning. SPDI + versioned NC_ accession give the VCF record."""
    report = read_fhir("vcf2fhir/expected_example1_with_patient.json")
    packet = translate(with_its_patient(report))
    variants = [c for c in report["contained"] if c["code"]["coding"][0]["code"] == "69548-6"]
    records = [
        g["variantInterpretation"]["variationDescriptor"].get("vcfRecord")
        for i in packet.phenopacket["interpretations"]
        for g in i["diagnosis"]["genomicInterpretations"]
    ]
    assert len(records) == len(variants)
    for variant, record in zip(variants, records, strict=True):
        spdi = next(c for c in variant["component"] if c["code"]["coding"][0]["code"] == "48004-6")
        accession, start, ref, alt = spdi["valueCodeableConcept"]["coding"][0]["code"].split(":")
        assert accession == "NC_000001.10"  # chromosome 1 of GRCh37
        assert record == {
            "genomeAssembly": "GRCh37",
            "chrom": "chr1",
            "pos": str(int(start) + 1),
            "ref": ref,
            "alt": alt,
        }
    # every issue about a contained resource points into it
    contained = [i.location for i in packet.issues if "/contained/" in i.location]
    assert contained and all(loc.startswith("/entry/1/resource/contained/") for loc in contained)


def test_structural_variants_of_vcf2fhir_keep_their_symbolic_alleles():
    """vcf2fhir writes structural variants SPDI-like with VCF symbolic alleles; the patient id has an '_'."""
    report = read_fhir("vcf2fhir/expected_fhir_germline_structural.json")
    packet = translate(with_its_patient(report))
    records = [
        g["variantInterpretation"]["variationDescriptor"]["vcfRecord"]
        for i in packet.phenopacket["interpretations"]
        for g in i["diagnosis"]["genomicInterpretations"]
    ]
    variants = [c for c in report["contained"] if c["code"]["coding"][0]["code"] == "69548-6"]
    assert len(records) == len(variants)
    first = next(c for c in variants[0]["component"] if c["code"]["coding"][0]["code"] == "48004-6")
    accession, start, ref, alt = first["valueCodeableConcept"]["coding"][0]["code"].split(":", 3)
    assert accession == "NC_000001.10"
    assert records[0] == {
        "genomeAssembly": "GRCh37",
        "chrom": "chr1",
        "pos": str(int(start) + 1),
        "ref": ref,
        "alt": alt,
    }
    assert any(r["alt"] == "<CN0>,<CN2>,<CN3>,<CN4>" for r in records)  # several symbolic alleles: VCF's list


def test_family_member_histories_become_a_phenopacket_family():
    """Was: FamilyMemberHistory 'has no phenopacket target' (0 of 3 carried)."""
    import phenopackets
    from google.protobuf import json_format

    bundle = read_fhir("mii-testdata/Bundle-mii-exa-test-data-bundle-seltene-1.json")
    result = translate_bundle(bundle, profile=load_profile("mii"), ids=TEST_IDS, now=NOW)
    (packet,) = result.packets
    family = packet.family
    json_format.ParseDict(family, phenopackets.Family(), ignore_unknown_fields=False)
    histories = [e["resource"] for e in bundle["entry"] if e["resource"]["resourceType"] == "FamilyMemberHistory"]
    assert len(family["relatives"]) == len(histories)
    assert family["proband"] is packet.phenopacket
    proband = family["pedigree"]["persons"][0]
    assert proband["individualId"] == packet.subject_id
    ids = {r["subject"]["id"] for r in family["relatives"]}
    assert {proband.get("maternalId"), proband.get("paternalId")} <= ids  # mother and father are linked
    conditions = {c["code"]["coding"][0]["code"] for h in histories for c in h.get("condition", ())}
    assert conditions  # the relatives' conditions travel with them
    assert sum(len(r.get("diseases", ())) for r in family["relatives"]) == sum(
        len(h.get("condition", ())) for h in histories
    )
    assert not any(i.code == "no-phenopacket-target" and "FamilyMemberHistory" in i.message for i in packet.issues)
    assert all("name" not in json.dumps(r["subject"]) for r in family["relatives"])


def test_relatives_affected_status_follows_what_the_sender_says():
    """Was: every relative with a recorded condition came out AFFECTED, although the MII rare-disease
    extension 'von-seltene-betroffen' says whether the relative is affected by the rare disease (Yes / No /
    Unknown); and a condition that contributed to death left the relative's vital status empty."""
    bundle = read_fhir("mii-testdata/Bundle-mii-exa-test-data-bundle-seltene-1.json")
    result = translate_bundle(bundle, profile=load_profile("mii"), ids=TEST_IDS, now=NOW)
    (packet,) = result.packets
    family = packet.family
    histories = [e["resource"] for e in bundle["entry"] if e["resource"]["resourceType"] == "FamilyMemberHistory"]
    said = {
        "373066001": "AFFECTED",
        "373067005": "UNAFFECTED",
        "261665006": "MISSING",
    }
    persons = family["pedigree"]["persons"][1:]
    assert len(persons) == len(histories)
    for history, person in zip(histories, persons, strict=True):
        flags = [e for e in history.get("extension", ()) if e["url"].endswith("/von-seltene-betroffen")]
        if flags:
            expected = said[flags[0]["valueCodeableConcept"]["coding"][0]["code"]]
            assert person["affectedStatus"] == expected, history["id"]
    assert any(p["affectedStatus"] != "AFFECTED" for p in persons)  # the real file holds a non-affected relative


def test_a_condition_that_contributed_to_death_makes_the_relative_deceased():
    history = read_fhir(
        "mii-testdata/FamilyMemberHistory-mii-exa-test-data-patient-4-molgen-family-member-history-1.json"
    )
    patient_id = history["patient"]["reference"].split("/")[1]
    patient = {"resourceType": "Patient", "id": patient_id, "gender": "female"}
    entries = [
        {"fullUrl": f"https://h.example/fhir/{r['resourceType']}/{r['id']}", "resource": r} for r in (patient, history)
    ]
    bundle = {"resourceType": "Bundle", "type": "collection", "entry": entries}
    result = translate_bundle(bundle, profile=load_profile("mii"), ids=TEST_IDS, now=NOW)
    (packet,) = result.packets
    (relative,) = packet.family["relatives"]
    assert relative["subject"]["vitalStatus"]["status"] == "DECEASED"
    assert relative["subject"]["vitalStatus"]["causeOfDeath"] == relative["diseases"][0]["term"]


def test_mii_vital_status_observation_sets_the_vital_status_when_the_patient_is_silent():
    """The MII Person module records life or death as an Observation (LOINC 67162-8); profile data maps it."""
    bundle = as_collection(read_fhir("mii-testdata/Bundle-mii-exa-test-data-bundle-pat-5.json"))
    for entry in bundle["entry"]:
        if entry["resource"]["resourceType"] == "Patient":
            for name in [k for k in entry["resource"] if k.startswith("deceased")]:
                del entry["resource"][name]
    packet = translate(bundle)
    observed = [
        e["resource"]
        for e in bundle["entry"]
        if e["resource"]["resourceType"] == "Observation" and e["resource"]["code"]["coding"][0]["code"] == "67162-8"
    ]
    expected = {"L": "ALIVE", "T": "DECEASED"}[observed[-1]["valueCodeableConcept"]["coding"][0]["code"]]
    assert packet.phenopacket["subject"]["vitalStatus"] == {"status": expected}
