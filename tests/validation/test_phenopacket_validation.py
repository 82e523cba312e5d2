"""Phenopacket v2 validation: real packets pass, phenopacket-tools fixtures give pxf's findings, each rule bites."""

from __future__ import annotations

import copy
import json

import pytest

from gateway.issues import Severity
from gateway.validation import detect_kind, validate_cohort, validate_family, validate_phenopacket


def load(path):
    return json.loads(path.read_text(encoding="utf-8"))


def codes_at(report) -> list[tuple[str, str]]:
    return [(i.code, i.location) for i in report]


def test_all_real_phenopackets_validate_without_errors(phenopacket_dir):
    files = sorted(phenopacket_dir.glob("*/PMID_*.json"))
    assert len(files) == 300
    failures = {}
    for path in files:
        report = validate_phenopacket(load(path), target="input")
        if not report.ok:
            failures[path.name] = report.to_text()
    assert failures == {}


def test_pxf_missing_fields_fixture(pxf_dir):
    report = validate_phenopacket(load(pxf_dir / "validate/base/missing-fields.json"))
    assert codes_at(report) == [
        ("missing-field", "/id"),
        ("missing-field", "/subject/id"),
        ("missing-field", "/phenotypicFeatures/0/type/label"),
    ]
    assert [i.message for i in report] == [
        "`id` is missing but it is required",
        "`subject.id` is missing but it is required",
        "`phenotypicFeatures[0].type.label` is missing but it is required",
    ]


def test_pxf_missing_resources_fixture(pxf_dir):
    report = validate_phenopacket(load(pxf_dir / "validate/base/missing-resources.json"))
    assert codes_at(report) == [("undeclared-prefix", "/subject/taxonomy/id")]
    assert report.errors[0].message == "No ontology corresponding to ID 'NCBITaxon:9606' found in MetaData"


@pytest.mark.parametrize(
    "name",
    [
        "validate/base/missing-fields-valid.json",
        "validate/base/missing-resources-valid.json",
        "phenopackets/retinoblastoma.json",  # biosamples, measurements, medicalActions, files
        "validate/phenotype-validation/marfan.json",
    ],
)
def test_valid_pxf_examples_pass(pxf_dir, name):
    report = validate_phenopacket(load(pxf_dir / name))
    assert report.ok, report.to_text()


@pytest.mark.parametrize("name", ["io-test-v1/phenopacket.json", "convert/Schreckenbach-2014-TPM3-II.2.json"])
def test_v1_phenopackets_are_refused_as_v1(pxf_dir, name):
    """One error naming the version and what to do, not a v2 reading's dozens of unknown and missing fields."""
    report = validate_phenopacket(load(pxf_dir / name), target="input")
    assert codes_at(report) == [("phenopacket-v1", "/metaData/phenopacketSchemaVersion")]
    assert "Phenopacket v1" in report.errors[0].message and "pxf convert" in report.errors[0].message
    assert all(i.target == "input" for i in report)


def test_io_test_v2_family_and_cohort_are_negative_fixtures(pxf_dir):
    family = validate_family(load(pxf_dir / "io-test-v2/family.json"))
    cohort = validate_cohort(load(pxf_dir / "io-test-v2/cohort.json"))
    assert ("missing-field", "/metaData/resources/2/url") in codes_at(family)
    assert ("undeclared-prefix", "/proband/subject/taxonomy/id") in codes_at(family)
    assert ("undeclared-prefix", "/members/0/diseases/0/term/id") in codes_at(cohort)


def _family(packet: dict) -> dict:
    proband = copy.deepcopy(packet)
    relative = copy.deepcopy(packet)
    del relative["metaData"]  # a relative may rely on the family's metaData
    relative["id"] = "relative-1"
    relative["subject"]["id"] = "mother"
    return {
        "id": "family-1",
        "proband": proband,
        "relatives": [relative],
        "pedigree": {
            "persons": [
                {
                    "familyId": "F1",
                    "individualId": proband["subject"]["id"],
                    "maternalId": "mother",
                    "affectedStatus": "AFFECTED",
                },
                {"familyId": "F1", "individualId": "mother", "sex": "FEMALE", "affectedStatus": "UNAFFECTED"},
            ]
        },
        "metaData": copy.deepcopy(packet["metaData"]),
    }


def test_a_valid_family_and_cohort_pass(packet):
    family = _family(packet)
    assert validate_family(family).ok, validate_family(family).to_text()
    cohort = {"id": "cohort-1", "members": [family["proband"], family["relatives"][0]], "metaData": family["metaData"]}
    assert validate_cohort(cohort).ok, validate_cohort(cohort).to_text()


def test_family_rules(packet):
    family = _family(packet)
    family["relatives"][0]["id"] = family["proband"]["id"]
    family["pedigree"]["persons"][1]["individualId"] = family["pedigree"]["persons"][0]["individualId"]
    family["pedigree"]["persons"][0]["affectedStatus"] = "ILL"
    report = validate_family(family)
    assert ("duplicate-id", "/relatives/0/id") in codes_at(report)
    assert ("duplicate-id", "/pedigree/persons/1/individualId") in codes_at(report)
    assert ("invalid-enum", "/pedigree/persons/0/affectedStatus") in codes_at(report)


# --- hand-made negatives: one per rule ---------------------------------------------------------------------------


def test_the_base_packet_is_valid(packet):
    assert len(validate_phenopacket(packet)) == 0


def test_enum_misspelling_is_one_issue_at_its_location(packet):
    packet["subject"]["sex"] = "MAL"
    report = validate_phenopacket(packet)
    assert codes_at(report) == [("invalid-enum", "/subject/sex")]  # protobuf's message is folded into the schema's


def test_unknown_field_is_rejected_by_the_protobuf_round_trip(packet):
    packet["phenotypicFeatures"][1]["negated"] = True
    report = validate_phenopacket(packet)
    assert codes_at(report) == [("unknown-field", "/phenotypicFeatures/1/negated")]
    assert "negated" in report.errors[0].message


def test_protobuf_type_error_is_located_from_the_field_chain(packet):
    packet["metaData"]["createdBy"] = 42
    report = validate_phenopacket(packet)
    assert ("wrong-type", "/metaData/createdBy") in codes_at(report)
    assert not report.ok


@pytest.mark.parametrize("duration", ["P3X", "P", "PT", "3Y", "P1.5Y", "P1YT"])
def test_malformed_iso8601_ages(packet, duration):
    packet["subject"]["timeAtLastEncounter"] = {"age": {"iso8601duration": duration}}
    report = validate_phenopacket(packet)
    assert ("invalid-format", "/subject/timeAtLastEncounter/age/iso8601duration") in codes_at(report)


@pytest.mark.parametrize("duration", ["P3Y", "P3Y2M", "P10W", "P2DT3H", "PT36H", "P1Y2M3DT4H5M6.5S"])
def test_well_formed_iso8601_ages(packet, duration):
    packet["subject"]["timeAtLastEncounter"] = {"age": {"iso8601duration": duration}}
    assert validate_phenopacket(packet).ok


def test_time_element_is_exactly_one_choice(packet):
    packet["subject"]["timeAtLastEncounter"] = {"age": {"iso8601duration": "P3Y"}, "timestamp": "2020-01-01T00:00:00Z"}
    report = validate_phenopacket(packet)
    assert ("invalid-choice", "/subject/timeAtLastEncounter") in codes_at(report)


def test_timestamps_must_be_rfc3339(packet):
    packet["metaData"]["created"] = "2021-07-01"
    report = validate_phenopacket(packet)
    assert ("invalid-format", "/metaData/created") in codes_at(report)


def test_malformed_curie(packet):
    packet["phenotypicFeatures"][0]["type"]["id"] = "HP_0001159"
    report = validate_phenopacket(packet)
    assert codes_at(report) == [("invalid-format", "/phenotypicFeatures/0/type/id")]


def test_malformed_hpo_id(packet):
    packet["phenotypicFeatures"][0]["type"]["id"] = "HP:12345"
    report = validate_phenopacket(packet)
    assert codes_at(report) == [("malformed-hpo-id", "/phenotypicFeatures/0/type/id")]


def test_undeclared_prefix_anywhere_in_the_packet(packet):
    packet["diseases"] = [{"term": {"id": "ORPHA:558", "label": "Marfan syndrome"}}]
    packet["phenotypicFeatures"][3]["modifiers"] = [{"id": "NCIT:C1", "label": "x"}]
    report = validate_phenopacket(packet)
    assert codes_at(report) == [
        ("undeclared-prefix", "/phenotypicFeatures/3/modifiers/0/id"),
        ("undeclared-prefix", "/diseases/0/term/id"),
    ]


def test_missing_label_and_required_members(packet):
    del packet["phenotypicFeatures"][2]["type"]["label"]
    del packet["metaData"]["createdBy"]
    del packet["metaData"]["resources"][0]["iriPrefix"]
    report = validate_phenopacket(packet)
    assert set(codes_at(report)) == {
        ("missing-field", "/phenotypicFeatures/2/type/label"),
        ("missing-field", "/metaData/createdBy"),
        ("missing-field", "/metaData/resources/0/iriPrefix"),
    }


def test_duplicate_biosample_and_interpretation_ids(packet):
    sample = {"id": "s1", "individualId": packet["subject"]["id"]}
    packet["biosamples"] = [sample, dict(sample)]
    call = {"subjectOrBiosampleId": "s1", "gene": {"valueId": "HGNC:3603", "symbol": "FBN1"}}
    interpretation = {
        "id": "i1",
        "progressStatus": "SOLVED",
        "diagnosis": {"disease": packet["phenotypicFeatures"][0]["type"], "genomicInterpretations": [call]},
    }
    packet["interpretations"] = [interpretation, copy.deepcopy(interpretation)]
    report = validate_phenopacket(packet)
    assert codes_at(report) == [("duplicate-id", "/biosamples/1/id"), ("duplicate-id", "/interpretations/1/id")]


def test_cross_references_are_warnings(packet):
    packet["biosamples"] = [{"id": "s1", "individualId": "someone-else"}]
    call = {"subjectOrBiosampleId": "nobody", "gene": {"valueId": "HGNC:3603", "symbol": "FBN1"}}
    packet["interpretations"] = [
        {
            "id": "i1",
            "progressStatus": "SOLVED",
            "diagnosis": {"disease": packet["phenotypicFeatures"][0]["type"], "genomicInterpretations": [call]},
        }
    ]
    report = validate_phenopacket(packet)
    assert report.ok
    assert codes_at(report) == [
        ("unknown-reference", "/biosamples/0/individualId"),
        ("unknown-reference", "/interpretations/0/diagnosis/genomicInterpretations/0/subjectOrBiosampleId"),
    ]


def test_duplicate_and_conflicting_features_are_warnings(packet):
    features = packet["phenotypicFeatures"]
    features.append(copy.deepcopy(features[0]))
    features.append({**copy.deepcopy(features[1]), "excluded": True})
    report = validate_phenopacket(packet)
    assert report.ok
    assert [(i.severity, i.code, i.location) for i in report] == [
        (Severity.WARNING, "duplicate-feature", "/phenotypicFeatures/4/type/id"),
        (Severity.WARNING, "conflicting-feature", "/phenotypicFeatures/5/type/id"),
    ]


def test_medical_action_and_measurement_need_one_choice(packet):
    packet["medicalActions"] = [{"treatmentIntent": {"id": "HP:0000001", "label": "All"}}]
    packet["measurements"] = [{"assay": {"id": "HP:0000001", "label": "All"}}]
    report = validate_phenopacket(packet)
    assert ("invalid-choice", "/medicalActions/0") in codes_at(report)
    assert ("invalid-choice", "/measurements/0") in codes_at(report)


def test_schema_version_must_be_2(packet):
    packet["metaData"]["phenopacketSchemaVersion"] = "3.0"
    assert ("invalid-format", "/metaData/phenopacketSchemaVersion") in codes_at(validate_phenopacket(packet))
    packet["metaData"]["phenopacketSchemaVersion"] = "1.0"  # v1: said as such (test_v1_phenopackets_are_refused_as_v1)
    assert codes_at(validate_phenopacket(packet)) == [("phenopacket-v1", "/metaData/phenopacketSchemaVersion")]


def test_not_an_object():
    report = validate_phenopacket([])  # type: ignore[arg-type]
    assert codes_at(report) == [("wrong-type", "")]


def test_detect_kind(pxf_dir):
    assert [detect_kind(load(pxf_dir / "io-test-v2" / f"{k}.json")) for k in ("phenopacket", "family", "cohort")] == [
        "phenopacket",
        "family",
        "cohort",
    ]


def test_protobuf_issue_locations(packet):
    import phenopackets

    from gateway.validation.phenopacket import protobuf_issue

    assert protobuf_issue(packet, phenopackets.Phenopacket) is None
    packet["subject"]["sex"] = "MAL"
    assert protobuf_issue(packet, phenopackets.Phenopacket).location == "/subject/sex"
    packet["subject"]["sex"] = "MALE"
    packet["phenotypicFeatures"][2]["type"]["id"] = 7  # protobuf names the fields but not the list index
    issue = protobuf_issue(packet, phenopackets.Phenopacket, target="input")
    assert (issue.code, issue.location, issue.target) == ("protobuf-parse", "/phenotypicFeatures", "input")
