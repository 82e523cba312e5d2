"""Unit tests: one per encoding the translator must understand, plus privacy and robustness."""

import json

import phenopackets
import pytest
from google.protobuf import json_format

from gateway.security.pseudonym import pseudonymise
from mappings import load_profile
from tests.translators.conftest import NOW, TEST_IDS, TEST_KEY, read_fhir
from translators.fhir_to_phenopacket import as_bundle, translate_bundle

HPO = "http://human-phenotype-ontology.org"
LOINC = "http://loinc.org"
SCT = "http://snomed.info/sct"
PATIENT = {
    "resourceType": "Patient",
    "id": "p1",
    "identifier": [{"system": "https://hospital.example/sid/patienten-id", "value": "4711"}],
    "name": [{"family": "Mustermann", "given": ["Erika"]}],
    "address": [{"city": "Heidelberg", "line": ["Hauptstrasse 1"]}],
    "telecom": [{"system": "phone", "value": "+49 6221 123456"}],
    "gender": "female",
    "birthDate": "1990-06-15",
}


def bundle(*resources, patient=PATIENT) -> dict:
    entries = [{"fullUrl": "urn:uuid:patient-1", "resource": patient}]
    for k, resource in enumerate(resources):
        entries.append({"fullUrl": f"urn:uuid:r-{k}", "resource": {"subject": {"reference": "Patient/p1"}, **resource}})
    return {"resourceType": "Bundle", "type": "transaction", "entry": entries}


def translate(b, profile="generic"):
    result = translate_bundle(b, profile=load_profile(profile), ids=TEST_IDS, now=NOW)
    for packet in result.packets:
        json_format.ParseDict(packet.phenopacket, phenopackets.Phenopacket())
    return result


def packet(b, profile="generic") -> dict:
    result = translate(b, profile)
    assert len(result.packets) == 1
    return result.packets[0].phenopacket


def hpo_obs(**extra):
    return {
        "resourceType": "Observation",
        "status": "final",
        "code": {"coding": [{"system": HPO, "code": "HP:0001250", "display": "Seizure"}]},
        **extra,
    }


def assessment(answer):
    return hpo_obs(
        component=[
            {
                "code": {"coding": [{"system": SCT, "code": "260411009"}]},
                "valueCodeableConcept": {"coding": [{"system": LOINC, "code": answer}]},
            },
            {
                "code": {"coding": [{"system": HPO, "code": "HP:0012824"}]},
                "valueCodeableConcept": {"coding": [{"system": HPO, "code": "HP:0012828", "display": "Severe"}]},
            },
        ]
    )


def test_boolean_hpo_observation_present_and_absent():
    features = packet(bundle(hpo_obs(valueBoolean=True)))["phenotypicFeatures"]
    assert features == [{"type": {"id": "HP:0001250", "label": "Seizure"}}]
    features = packet(bundle(hpo_obs(valueBoolean=False)))["phenotypicFeatures"]
    assert features[0]["excluded"] is True


@pytest.mark.parametrize(("answer", "excluded"), [("LA9633-4", False), ("LA9634-2", True)])
def test_mii_hpo_assessment_presence_and_severity(answer, excluded):
    feature = packet(bundle(assessment(answer)), "mii")["phenotypicFeatures"][0]
    assert feature.get("excluded", False) is excluded
    assert feature["severity"]["id"] == "HP:0012828"


def test_unknown_presence_answer_is_skipped_with_warning():
    result = translate(bundle(assessment("LA0000-0")))
    assert "phenotypicFeatures" not in result.packets[0].phenopacket
    assert any(
        i.code == "unmapped-code" and i.location == "/entry/1/resource/component/0" for i in result.packets[0].issues
    )


def test_hpo_condition_refuted_is_excluded_with_onset_age():
    condition = {
        "resourceType": "Condition",
        "code": {"coding": [{"system": "http://purl.obolibrary.org/obo/hp.owl", "code": "HP:0001250"}]},
        "verificationStatus": {
            "coding": [{"system": "http://terminology.hl7.org/CodeSystem/condition-ver-status", "code": "refuted"}]
        },
        "onsetDateTime": "2000-06-15",
    }
    feature = packet(bundle(condition))["phenotypicFeatures"][0]
    assert feature["excluded"] is True
    assert feature["onset"] == {"age": {"iso8601duration": "P10Y"}}


def test_multi_coding_disease_choice_prefixing_and_no_duplicates():
    codings_a = [
        {"system": "http://fhir.de/CodeSystem/bfarm/icd-10-gm", "code": "Q87.4"},
        {"system": SCT, "code": "19346006"},
        {"system": "http://www.orpha.net", "code": "558", "display": "Marfan syndrome"},
    ]
    codings_b = [{"system": "http://omim.org", "code": "154700"}, {"system": "http://www.orpha.net", "code": "558"}]
    diseases = packet(
        bundle(
            {"resourceType": "Condition", "code": {"coding": codings_a}},
            {"resourceType": "Condition", "code": {"coding": codings_b}},
        ),
        "mii",
    )["diseases"]
    # the same diagnosis recorded twice is one Disease (different diagnoses are never merged: see
    # test_fhir_fidelity.test_confirmed_condition_is_a_disease_and_the_suspected_one_is_not)
    assert diseases == [{"term": {"id": "ORPHA:558", "label": "Marfan syndrome"}}]


def test_bare_omim_code_gains_prefix():
    condition = {"resourceType": "Condition", "code": {"coding": [{"system": "https://omim.org/", "code": "154700"}]}}
    assert packet(bundle(condition))["diseases"][0]["term"]["id"] == "OMIM:154700"


def test_unknown_code_system_is_a_warning_not_a_guess():
    condition = {"resourceType": "Condition", "code": {"coding": [{"system": "urn:example:local", "code": "X1"}]}}
    result = translate(bundle(condition))
    assert "diseases" not in result.packets[0].phenopacket
    assert [i.location for i in result.packets[0].issues if i.code == "unmapped-code"] == ["/entry/1/resource/code"]


def component(code, **value):
    return {"code": {"coding": [{"system": LOINC, "code": code}]}, **value}


def cc(system, code, display=None):
    coding = {"system": system, "code": code}
    if display:
        coding["display"] = display
    return {"coding": [coding]}


def test_variant_components_to_variation_descriptor():
    variant = {
        "resourceType": "Observation",
        "status": "final",
        "code": cc(LOINC, "69548-6"),
        "valueCodeableConcept": cc(LOINC, "LA9633-4"),
        "component": [
            component("48018-6", valueCodeableConcept=cc("http://www.genenames.org/geneId", "3603", "FBN1")),
            component("51958-7", valueCodeableConcept=cc("http://www.ncbi.nlm.nih.gov/refseq", "NM_000138.5")),
            component("48004-6", valueCodeableConcept=cc("http://varnomen.hgvs.org", "c.3217G>A")),
            component("48005-3", valueCodeableConcept=cc("http://varnomen.hgvs.org", "p.Gly1073Arg")),
            component("62374-4", valueCodeableConcept=cc(LOINC, "LA26806-2")),
            component("48013-7", valueCodeableConcept=cc("http://www.ncbi.nlm.nih.gov/refseq", "NC_000015.10")),
            component("81254-5", valueRange={"low": {"value": 48487362}}),
            component("92822-6", valueCodeableConcept=cc(LOINC, "LA30102-0")),
            component("69547-8", valueString="C"),
            component("69551-0", valueString="T"),
            component("53034-5", valueCodeableConcept=cc(LOINC, "LA6706-1")),
            component("53037-8", valueCodeableConcept=cc(LOINC, "LA6668-3")),
            component("81252-9", valueCodeableConcept=cc("http://www.ncbi.nlm.nih.gov/projects/SNP", "rs137854456")),
        ],
    }
    pp = packet(bundle(variant))
    gi = pp["interpretations"][0]["diagnosis"]["genomicInterpretations"][0]
    assert gi["variantInterpretation"]["acmgPathogenicityClassification"] == "PATHOGENIC"
    vd = gi["variantInterpretation"]["variationDescriptor"]
    assert vd["geneContext"] == {"valueId": "HGNC:3603", "symbol": "FBN1"}
    assert {"syntax": "hgvs.c", "value": "NM_000138.5:c.3217G>A"} in vd["expressions"]
    assert {"syntax": "hgvs.p", "value": "p.Gly1073Arg"} in vd["expressions"]
    assert vd["vcfRecord"] == {
        "genomeAssembly": "GRCh38",
        "chrom": "chr15",
        "pos": "48487362",
        "ref": "C",
        "alt": "T",
        "id": "rs137854456",
    }
    assert vd["allelicState"] == {"id": "GENO:0000135", "label": "heterozygous"}
    prefixes = {r["namespacePrefix"] for r in pp["metaData"]["resources"]}
    assert {"HGNC", "GENO", "dbSNP", "NCBITaxon"} <= prefixes


def test_no_pii_in_output():
    b = bundle(hpo_obs(valueBoolean=True, note=[{"text": "Erika had a seizure at home"}]))
    result = translate(b)
    text = json.dumps([p.phenopacket for p in result.packets])
    for secret in ("Mustermann", "Erika", "Heidelberg", "Hauptstrasse", "6221", "4711", "1990-06-15", "1990", "p1"):
        assert secret not in text
    assert result.packets[0].subject_id == pseudonymise(TEST_KEY, "4711", "https://hospital.example/sid/patienten-id")


def test_no_pii_from_real_mii_patient():
    b = read_fhir("mii-testdata/Bundle-mii-exa-test-data-bundle-pat-1.json")
    patient = b["entry"][0]["resource"]
    text = json.dumps([p.phenopacket for p in translate(b, "mii").packets], ensure_ascii=False)
    secrets = [patient["birthDate"], patient["deceasedDateTime"], patient["address"][0]["city"]]
    secrets += [i["value"] for i in patient["identifier"]] + [
        patient["name"][0]["family"],
        *patient["name"][0]["given"],
    ]
    for secret in secrets:
        assert secret not in text


def test_mii_identifier_priority_prefers_kvnr():
    b = read_fhir("mii-testdata/Bundle-mii-exa-test-data-bundle-pat-1.json")
    result = translate(b, "mii")
    assert result.packets[0].subject_id == pseudonymise(TEST_KEY, "A123456780", "http://fhir.de/sid/gkv/kvid-10")


def test_age_sex_and_vital_status():
    patient = {**PATIENT, "deceasedDateTime": "2020-06-14", "gender": "other"}
    patient["_gender"] = {
        "extension": [
            {
                "url": "http://fhir.de/StructureDefinition/gender-amtlich-de",
                "valueCoding": {"system": "http://fhir.de/CodeSystem/gender-amtlich-de", "code": "X"},
            }
        ]
    }
    subject = packet(bundle(patient=patient), "mii")["subject"]
    assert subject["sex"] == "UNKNOWN_SEX"
    assert subject["vitalStatus"] == {"status": "DECEASED", "timeOfDeath": {"age": {"iso8601duration": "P29Y"}}}
    assert subject["timeAtLastEncounter"] == {"age": {"iso8601duration": "P29Y"}}
    # issue 11: the age at the latest dated event, not at conversion time; nothing dated -> no age
    assert "timeAtLastEncounter" not in packet(bundle())["subject"]
    procedure = {
        "resourceType": "Procedure",
        "status": "completed",
        "code": {"text": "x"},
        "performedDateTime": "2019-06-14",
    }
    assert packet(bundle(procedure))["subject"]["timeAtLastEncounter"] == {"age": {"iso8601duration": "P28Y"}}
    # an Encounter dates the age (the REST surface keeps its date-only trace); a CarePlan, neither translated nor
    # kept, does not while a kept resource is dated: both channels give one age
    encounter = {"resourceType": "Encounter", "status": "finished", "period": {"start": "2021-06-14"}}
    assert packet(bundle(procedure, encounter))["subject"]["timeAtLastEncounter"] == {
        "age": {"iso8601duration": "P30Y"}
    }
    plan = {"resourceType": "CarePlan", "status": "active", "intent": "plan", "period": {"start": "2023-06-14"}}
    assert packet(bundle(procedure, plan))["subject"]["timeAtLastEncounter"] == {"age": {"iso8601duration": "P28Y"}}
    later = {**procedure, "performedDateTime": "2024-01-01"}
    after_death = packet(bundle(later, patient=patient), "mii")
    assert after_death["subject"]["timeAtLastEncounter"] == {"age": {"iso8601duration": "P29Y"}}  # never past death
    assert packet(bundle(patient=patient))["subject"]["sex"] == "OTHER_SEX"  # generic: no German extension


def test_unmapped_resource_types_warn_with_location():
    result = translate(bundle({"resourceType": "Encounter", "status": "finished"}))
    warnings = [(i.code, i.location) for i in result.packets[0].issues if i.severity == "warning"]
    assert warnings == [("no-phenopacket-target", "/entry/1/resource")]
    assert result.packets[0].entry_indexes == [0, 1]


def test_absolute_reference_and_dangling_reference():
    b = {
        "resourceType": "Bundle",
        "type": "collection",
        "entry": [
            {"fullUrl": "http://x.example/fhir/Patient/9", "resource": {"resourceType": "Patient", "id": "9"}},
            {"resource": {**hpo_obs(valueBoolean=True), "subject": {"reference": "http://x.example/fhir/Patient/9"}}},
            {"resource": {**hpo_obs(valueBoolean=True), "subject": {"reference": "Patient/404"}}},
        ],
    }
    result = translate(b)
    assert len(result.packets[0].phenopacket["phenotypicFeatures"]) == 1
    assert [i.location for i in result.issues] == ["/entry/2/resource/subject/reference"]


@pytest.mark.parametrize(
    "document",
    [
        {"resourceType": "Patient"},
        {"resourceType": "Bundle", "type": "history", "entry": []},
        {"resourceType": "Bundle", "type": "collection", "entry": "nope"},
        {"resourceType": "Bundle", "type": "collection", "entry": [None, {"resource": 3}]},
    ],
)
def test_odd_input_gives_issues_not_crashes(document):
    result = translate_bundle(document, profile=load_profile("generic"), ids=TEST_IDS, now=NOW)
    assert result.packets == [] and result.issues


def test_as_bundle_wraps_single_resource():
    wrapped = as_bundle(PATIENT)
    assert wrapped["type"] == "collection" and wrapped["entry"][0]["resource"] is PATIENT
    assert len(translate(wrapped).packets) == 1


def test_translators_import_nothing_from_gateway_but_issues():
    """Translators are pure: the only gateway module they may import is the ground-floor Issue type."""
    import ast
    from pathlib import Path

    root = Path(__file__).resolve().parents[2] / "translators"
    found = set()
    for path in root.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ImportFrom) and node.module:
                found.add(node.module)
            elif isinstance(node, ast.Import):
                found.update(alias.name for alias in node.names)
    assert {m for m in found if m == "gateway" or m.startswith("gateway.")} == {"gateway.issues"}


def test_transcript_under_reference_sequence_is_a_profile_habit():
    """MII writes the transcript under 48013-7; the generic profile reads that component as a reference only."""
    obs = {
        "resourceType": "Observation",
        "status": "final",
        "code": cc(LOINC, "69548-6"),
        "component": [
            component("48018-6", valueCodeableConcept=cc("http://www.genenames.org/geneId", "3603", "FBN1")),
            component("48004-6", valueCodeableConcept=cc("http://varnomen.hgvs.org", "c.3217G>A")),
            component("48013-7", valueCodeableConcept=cc("http://www.ncbi.nlm.nih.gov/refseq", "NM_000138.5")),
        ],
    }
    expressions = {
        name: packet(bundle(obs), name)["interpretations"][0]["diagnosis"]["genomicInterpretations"][0][
            "variantInterpretation"
        ]["variationDescriptor"]["expressions"]
        for name in ("generic", "mii")
    }
    assert {"syntax": "hgvs.c", "value": "c.3217G>A"} in expressions["generic"]
    assert {"syntax": "hgvs.c", "value": "NM_000138.5:c.3217G>A"} in expressions["mii"]


def test_condition_stage_and_body_site_have_their_place_and_severity_is_warned():
    condition = {
        "resourceType": "Condition",
        "code": {"coding": [{"system": "http://www.orpha.net", "code": "558", "display": "Marfan syndrome"}]},
        "stage": [{"summary": cc(SCT, "786005", "Clinical stage I")}],
        "bodySite": [cc(SCT, "80891009", "Heart structure"), cc("urn:local", "x")],
        "severity": cc(SCT, "24484000", "Severe"),
    }
    result = translate(bundle(condition))
    disease = result.packets[0].phenopacket["diseases"][0]
    assert disease["diseaseStage"] == [{"id": "SNOMEDCT:786005", "label": "Clinical stage I"}]
    assert disease["primarySite"] == {"id": "SNOMEDCT:80891009", "label": "Heart structure"}
    warnings = {(i.code, i.location) for i in result.packets[0].issues if i.severity == "warning"}
    assert ("unmapped-element", "/entry/1/resource/severity") in warnings
    assert ("unmapped-code", "/entry/1/resource/bodySite/1") in warnings  # a site in an unknown system


def test_a_report_whose_results_were_translated_is_not_warned_about():
    """Issue 11, no false warnings: a DiagnosticReport is warned about only when none of its results arrived."""
    observation = {
        "resourceType": "Observation",
        "id": "lab-1",
        "status": "final",
        "code": cc(LOINC, "718-7", "Hemoglobin"),
        "valueQuantity": {"value": 13.2, "unit": "g/dL", "system": "http://unitsofmeasure.org", "code": "g/dL"},
    }
    report = {
        "resourceType": "DiagnosticReport",
        "status": "final",
        "code": cc(LOINC, "58410-2"),
        "result": [{"reference": "urn:uuid:r-0"}],
    }
    result = translate(bundle(observation, report))
    issues = [(i.severity, i.code, i.location) for i in result.packets[0].issues]
    assert not [i for i in issues if i[1] == "no-phenopacket-target"]
    empty = translate(bundle({**report, "result": []}))
    assert [i.location for i in empty.packets[0].issues if i.code == "no-phenopacket-target"] == ["/entry/1/resource"]
