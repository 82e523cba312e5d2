"""`gateway validate`: kind detection, every format, the pxf fixtures' expected messages, output formats, exit codes."""

from __future__ import annotations

import copy
import csv
import io
import json
import sys
from pathlib import Path

import pytest
import yaml

from gateway.cli import main
from gateway.validation.engine import Options, detect_kind, validate_bytes, validate_path
from gateway.validation.hpo import OboGraphOntology, hpo_issues


def run(capsys, *argv: str) -> tuple[int, str]:
    code = main(["validate", *argv])
    return code, capsys.readouterr().out


def run_json(capsys, *argv: str) -> tuple[int, list[dict]]:
    code, out = run(capsys, "--format", "json", *argv)
    return code, json.loads(out)


def codes(result: dict) -> list[str]:
    return [i["code"] for i in result["issues"]]


# --- phenopackets ----------------------------------------------------------------------------------------------


def test_the_300_real_phenopackets_pass_with_hpo_checks(capsys, phenopacket_dir):
    files = sorted(str(p) for p in phenopacket_dir.glob("*/PMID_*.json"))
    assert len(files) == 300
    code, results = run_json(capsys, *files)
    assert code == 0
    assert [r["file"] for r in results] == files  # input order kept through the process pool
    assert all(r["kind"] == "phenopacket" and r["valid"] for r in results)
    assert not [i for r in results for i in r["issues"] if i["severity"] == "error"]


def test_missing_fields_as_pxf_reports_them(capsys, pxf_dir):
    code, [result] = run_json(capsys, "-i", str(pxf_dir / "validate/base/missing-fields.json"))
    assert code == 1 and not result["valid"]
    messages = {i["message"] for i in result["issues"]}
    assert {
        "`id` is missing but it is required",
        "`subject.id` is missing but it is required",
        "`phenotypicFeatures[0].type.label` is missing but it is required",
    } <= messages
    assert {"/id", "/subject/id", "/phenotypicFeatures/0/type/label"} <= {i["location"] for i in result["issues"]}


def test_missing_resources_and_valid_versions(capsys, pxf_dir):
    base = pxf_dir / "validate/base"
    code, results = run_json(
        capsys, str(base / "missing-resources.json"), "-i", str(base / "missing-resources-valid.json")
    )
    assert code == 1
    # -i inputs come first, then positional files
    valid, broken = results
    assert valid["valid"] and not valid["issues"]
    [issue] = broken["issues"]
    assert issue["message"] == "No ontology corresponding to ID 'NCBITaxon:9606' found in MetaData"
    assert issue["location"] == "/subject/taxonomy/id"


def test_organ_systems(capsys, pxf_dir):
    folder = pxf_dir / "validate/organ-systems"
    code, results = run_json(
        capsys,
        "-s",
        "HP:0000478",
        *(str(folder / f"marfan.{n}.json") for n in ("missing-eye-annotation", "all-organ-system-annotated")),
        str(folder / "marfan.no-abnormalities.json"),
    )
    assert code == 1
    missing_eye, annotated, no_abnormalities = results
    assert codes(missing_eye) == ["missing-organ-system"]
    assert "Abnormality of the eye [HP:0000478]" in missing_eye["issues"][0]["message"]
    assert annotated["valid"] and no_abnormalities["valid"]  # excluded terms annotate an organ system too
    code, _ = run_json(capsys, str(folder / "marfan.missing-eye-annotation.json"))
    assert code == 0  # the organ-system rule applies only when asked


def test_annotation_propagation_rule_and_obsolete_term(capsys, pxf_dir):
    folder = pxf_dir / "validate/phenotype-validation"
    code, [propagation] = run_json(capsys, str(folder / "marfan.annotation-propagation-rule.json"))
    assert code == 1
    [issue] = propagation["issues"]
    assert issue["code"] == "annotation-propagation-rule" and issue["location"] == "/phenotypicFeatures/1/type/id"
    assert "observed term (HP:0002616)" in issue["message"] and "observed ancestor (HP:0004942)" in issue["message"]

    obsolete = str(folder / "marfan.obsolete-term.json")
    code, [result] = run_json(capsys, obsolete)
    assert code == 0 and result["valid"]
    [issue] = result["issues"]
    assert issue["severity"] == "warning" and issue["code"] == "obsolete-term"
    assert "HP:0002631" in issue["message"] and "HP:0002616" in issue["message"]
    assert run(capsys, "--strict", obsolete)[0] == 1
    assert run(capsys, "--no-hpo", "--strict", obsolete)[0] == 0


def test_hpo_unknown_term_duplicates_and_excluded_descendant(packet):
    from gateway.validation.hpo import load_ontology

    packet["phenotypicFeatures"] = [
        {"type": {"id": "HP:9999999", "label": "nothing"}},
        {"type": {"id": "HP:0004942", "label": "Aortic aneurysm"}, "excluded": True},
        {"type": {"id": "HP:0002616", "label": "Aortic root aneurysm"}, "excluded": True},
    ]
    issues = hpo_issues(packet, load_ontology())
    assert [(i.code, i.location) for i in issues] == [
        ("unknown-hpo-term", "/phenotypicFeatures/0/type/id"),
        ("annotation-propagation-rule", "/phenotypicFeatures/2/type/id"),
    ]
    assert "excluded descendant (HP:0002616)" in issues[1].message


def test_obographs_module_as_the_ontology(pxf_dir):
    ontology = OboGraphOntology(pxf_dir / "hpo-module/hp.module.json")
    obsolete = ontology.term("HP:0000004")
    assert obsolete.obsolete and obsolete.replaced_by == "HP:0012823"
    assert "HP:0000001" in ontology.ancestors("HP:0000005")
    packet = {"id": "p", "phenotypicFeatures": [{"type": {"id": "HP:0000004"}}, {"type": {"id": "HP:1234567"}}]}
    found = [(i.code, i.severity.value) for i in hpo_issues(packet, ontology)]
    assert found == [("obsolete-term", "warning"), ("unknown-hpo-term", "error")]


def test_required_custom_schema(capsys, pxf_dir):
    folder = pxf_dir / "validate/custom-json-schema"
    schema = str(folder / "hpo-rare-disease-schema.json")
    names = ["marfan", "marfan.no-subject", "marfan.no-phenotype", "marfan.no-time-at-last-encounter", "marfan.not-hpo"]
    code, results = run_json(capsys, "--require", schema, *(str(folder / f"{n}.json") for n in names))
    assert code == 1
    by_name = {Path(r["file"]).stem: r for r in results}
    assert by_name["marfan"]["valid"]
    expected = {
        "marfan.no-subject": "/subject",
        "marfan.no-phenotype": "/phenotypicFeatures",
        "marfan.no-time-at-last-encounter": "/subject/timeAtLastEncounter",
        "marfan.not-hpo": "/phenotypicFeatures/0/type/id",
    }
    for name, location in expected.items():
        required = [i for i in by_name[name]["issues"] if i["code"] == "required-schema"]
        assert [i["location"] for i in required] == [location], name
    # without --require the same files are valid phenopackets
    assert run(capsys, str(folder / "marfan.no-subject.json"))[0] == 0


def test_family_cohort_and_negative_io_fixtures(capsys, pxf_dir):
    folder = pxf_dir / "io-test-v2"
    code, results = run_json(capsys, *(str(folder / f"{k}.json") for k in ("phenopacket", "family", "cohort")))
    assert code == 1
    assert [r["kind"] for r in results] == ["phenopacket", "family", "cohort"]
    assert all("undeclared-prefix" in codes(r) for r in results)
    family = results[1]
    assert any(i["location"].startswith("/proband/") for i in family["issues"])


def test_yaml_on_stdin_and_protobuf_binary(capsys, monkeypatch, pxf_dir, tmp_path):
    import phenopackets
    from google.protobuf import json_format

    doc = json.loads((pxf_dir / "validate/base/missing-fields-valid.json").read_text())
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(yaml.safe_dump(doc).encode())))
    code, [result] = run_json(capsys, "-")
    assert code == 0 and result == {"file": "-", "kind": "phenopacket", "valid": True, "issues": []}

    binary = tmp_path / "packet.pb"
    binary.write_bytes(json_format.ParseDict(doc, phenopackets.Phenopacket()).SerializeToString())
    family = tmp_path / "family.pb"
    family.write_bytes(phenopackets.Family(id="f1", proband=phenopackets.Phenopacket(id="p1")).SerializeToString())
    code, [result] = run_json(capsys, str(binary))
    assert code == 0 and result["kind"] == "phenopacket" and result["valid"]
    # protobuf binary does not name its message type (a Family parses as a Phenopacket): --type tells it
    code, [result] = run_json(capsys, "--type", "family", str(family))
    assert code == 1 and result["kind"] == "family" and "missing-field" in codes(result)  # no metaData
    garbage = tmp_path / "garbage.pb"
    garbage.write_bytes(b"\xff\xfe\x00\x01garbage")
    code, [result] = run_json(capsys, str(garbage))
    assert code == 1 and codes(result) == ["protobuf-parse"]


def test_malformed_inputs_are_located(tmp_path):
    duplicate = tmp_path / "dup.json"
    duplicate.write_text('{"id": "a", "id": "b"}')
    assert validate_path(str(duplicate)).report.issues[0].code == "json-duplicate-key"
    bad_yaml = tmp_path / "bad.yaml"
    bad_yaml.write_text("a: [1, 2\nb: c\n")
    [issue] = validate_path(str(bad_yaml)).report
    assert issue.code == "yaml-syntax" and issue.location.startswith(str(bad_yaml) + ":")
    unknown = validate_bytes(b'{"hello": "world"}', "x.json")
    assert unknown.kind == "unknown" and unknown.report.issues[0].code == "unknown-kind"
    missing = validate_path(str(tmp_path / "nope.json"))
    assert missing.report.issues[0].code == "io"


# --- FHIR ------------------------------------------------------------------------------------------------------


def test_fhir_examples_and_profile(capsys, fhir_dir, tmp_path):
    files = sorted(str(p) for p in (fhir_dir / "mii-seltene-erkrankungen").glob("*.json"))[:20]
    code, results = run_json(capsys, "--profile", "mii", *files)
    assert code == 0 and all(r["kind"] == "fhir" and r["valid"] for r in results)

    patient = json.loads((fhir_dir / "mii-seltene-erkrankungen" / "Patient-patient-marfan-001.json").read_text())
    patient["gender"] = "martian"
    broken = tmp_path / "patient.json"
    broken.write_text(json.dumps(patient))
    code, [result] = run_json(capsys, str(broken))
    assert code == 1 and any(i["location"] == "/gender" for i in result["issues"])
    assert run(capsys, "--profile", "atlantis", str(broken))[0] == 2


# --- Beacon ----------------------------------------------------------------------------------------------------


@pytest.fixture
def beacon_answers(app):
    from dataclasses import replace

    from gateway.config import DatasetConfig
    from tests.beacon.fake_store import sample_store  # the Beacon tests' in-memory variant store (tests/beacon)

    services = app.extensions["gateway"]
    services.variants = sample_store()
    # The fake store's datasets, declared with an open policy (gateway.security.policy) so every granularity is served.
    declared = tuple(DatasetConfig(id=d, security_level="PUBLIC", policy={"profile": "open"}) for d in ("ds1", "ds2"))
    services.config = replace(services.config, datasets=services.config.datasets + declared)
    client = app.test_client()
    return {
        granularity: client.get(f"/api/g_variants?requestedGranularity={granularity}").get_json()
        for granularity in ("boolean", "count", "record")
    } | {"error": client.get("/api/g_variants?limit=-1").get_json()}


def test_beacon_responses_from_our_server_are_valid(beacon_answers, tmp_path, capsys):
    files = []
    for name, body in beacon_answers.items():
        path = tmp_path / f"{name}.json"
        path.write_text(json.dumps(body))
        files.append(str(path))
    code, results = run_json(capsys, *files)
    assert code == 0, results
    assert {r["kind"] for r in results} == {"beacon-response"}


def test_broken_beacon_response_is_located(beacon_answers):
    broken = copy.deepcopy(beacon_answers["record"])
    broken["responseSummary"]["exists"] = "yes"
    del broken["response"]["resultSets"][0]["results"][0]["variation"]
    result = validate_bytes(json.dumps(broken).encode(), "r.json")
    assert result.kind == "beacon-response" and not result.valid
    locations = {i.location for i in result.report.errors}
    assert "/responseSummary/exists" in locations
    assert "/response/resultSets/0/results/0/variation" in locations


def test_beacon_requests(reference_dir, capsys, tmp_path):
    examples = reference_dir / "beacon-v2/framework/json/requests/examples-fullDocuments"
    code, results = run_json(capsys, *(str(p) for p in sorted(examples.glob("*.json"))))
    assert code == 0 and {r["kind"] for r in results} == {"beacon-request"}
    bad = tmp_path / "request.json"
    bad.write_text(
        json.dumps(
            {"meta": {"apiVersion": "v2.0.0"}, "query": {"requestedGranularity": "all", "pagination": {"skip": -1}}}
        )
    )
    code, [result] = run_json(capsys, str(bad))
    assert code == 1
    assert {"/query/requestedGranularity", "/query/pagination/skip"} <= {i["location"] for i in result["issues"]}
    assert detect_kind({"meta": {"apiVersion": "v2.0.0"}}) == "beacon-request"


# --- VCF -------------------------------------------------------------------------------------------------------


def test_vcf_files(capsys, reference_dir):
    folder = reference_dir / "vcf/cyvcf2"
    bad = [str(folder / "test-invalid-header.vcf"), str(folder / "empty.vcf")]
    code, results = run_json(capsys, str(folder / "test.vcf.gz"), *bad)
    assert code == 1
    good, *broken = results
    assert good["kind"] == "vcf" and good["valid"]
    for path, result in zip(bad, broken, strict=True):
        assert result["kind"] == "vcf" and not result["valid"]
        assert result["issues"][0]["location"].startswith(path + ":")


# --- output formats and exit codes ----------------------------------------------------------------------------


def test_csv_and_text_formats(capsys, pxf_dir):
    path = str(pxf_dir / "validate/base/missing-resources.json")
    code, out = run(capsys, "--format", "csv", path)
    rows = list(csv.reader(io.StringIO(out)))
    assert code == 1
    assert rows[0] == ["PATH", "LEVEL", "VALIDATOR_ID", "CATEGORY", "MESSAGE"]
    assert rows[1][:4] == [path, "ERROR", "MetaDataValidator", "undeclared-prefix"]
    code, out = run(capsys, path)
    assert out.splitlines()[0] == f"{path} (phenopacket): INVALID"
    assert "ERROR [undeclared-prefix] at /subject/taxonomy/id" in out and "\033[" not in out


def test_usage_errors(capsys, pxf_dir):
    assert run(capsys)[0] == 2
    assert run(capsys, "-s", "eye", str(pxf_dir / "validate/base/missing-fields.json"))[0] == 2
    assert run(capsys, "--require", "/nonexistent.json", "x.json")[0] == 2
    with pytest.raises(SystemExit) as exited:
        main(["validate", "--type", "nonsense", "x.json"])
    assert exited.value.code == 2


# --- POST /validate --------------------------------------------------------------------------------------------


def test_post_validate(client, pxf_dir):
    body = (pxf_dir / "validate/base/missing-resources.json").read_bytes()
    answer = client.post("/validate", data=body, content_type="application/json")
    assert answer.status_code == 200
    [result] = answer.get_json()
    assert result["kind"] == "phenopacket" and not result["valid"]
    assert result["issues"][0]["code"] == "undeclared-prefix"
    valid = (pxf_dir / "validate/organ-systems/marfan.missing-eye-annotation.json").read_bytes()
    assert client.post("/validate", data=valid).get_json()[0]["valid"]
    assert not client.post("/validate?organSystem=HP:0000478", data=valid).get_json()[0]["valid"]
    assert client.post("/validate?type=bogus", data=valid).status_code == 400
    assert client.post("/validate", data=b"").status_code == 400


def test_options_are_picklable_for_workers():
    import pickle

    options = Options(kind="phenopacket", organ_systems=("HP:0000478",))
    assert pickle.loads(pickle.dumps(options)) == options
