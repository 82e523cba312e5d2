"""Golden tests: real FHIR examples from ../shared/reference/fhir -> expected phenopackets in golden/.

Regenerate after an intended change with `GATEWAY_UPDATE_GOLDEN=1 pytest tests/translators` and
review the diff. Outputs are deterministic (fixed key and "now"); metaData.created is masked.
"""

import json
import os
from pathlib import Path

import phenopackets
import pytest
from google.protobuf import json_format

from gateway.validation.phenopacket import validate_phenopacket
from mappings import detect_profile, load_profile
from tests.translators.conftest import NOW, TEST_IDS, read_fhir
from translators.fhir_to_phenopacket import as_bundle, translate_bundle

GOLDEN = Path(__file__).resolve().parent / "golden"
UPDATE = os.environ.get("GATEWAY_UPDATE_GOLDEN") == "1"

# name -> (expected profile, input files; several files are put into one collection bundle)
CASES = {
    "mii-marfan-complete": ("mii", ["mii-seltene-erkrankungen/Bundle-bundle-marfan-complete.json"]),
    "mii-seltene-1": ("mii", ["mii-testdata/Bundle-mii-exa-test-data-bundle-seltene-1.json"]),
    "mii-molgen-1": ("mii", ["mii-testdata/Bundle-mii-exa-test-data-bundle-molgen-1.json"]),
    "mii-pat-1": ("mii", ["mii-testdata/Bundle-mii-exa-test-data-bundle-pat-1.json"]),
    "mii-hpo-assessment-single": (
        "mii",
        [
            "mii-seltene-erkrankungen/Patient-example.json",
            "mii-seltene-erkrankungen/Observation-mii-exa-seltene-hpo-assessment.json",
        ],
    ),
    "gr-cgexample": ("generic", ["genomics-reporting-2.0.0/Bundle-bundle-cgexample.json"]),
    "gr-compound-heterozygote": ("generic", ["genomics-reporting-2.0.0/Bundle-bundle-compound-heterozygote.json"]),
    "gr-oncology-report": ("generic", ["genomics-reporting-2.0.0/Bundle-bundle-oncology-report-example.json"]),
    "ips-bundle-01": ("ips", ["ips-1.1.0/Bundle-IPS-examples-Bundle-01.json"]),
    "ips-bundle-minimal": ("ips", ["ips-1.1.0/Bundle-bundle-minimal.json"]),
}


def build_input(files: list[str]) -> dict:
    if len(files) == 1:
        return as_bundle(read_fhir(files[0]))
    resources = [read_fhir(f) for f in files]
    # The MII single-resource examples name their patient "example-patient" while Patient-example.json
    # carries another id: give the patient the id its observation points to.
    for resource in resources:
        if resource["resourceType"] == "Patient":
            resource["id"] = "example-patient"
    return {"resourceType": "Bundle", "type": "collection", "entry": [{"resource": r} for r in resources]}


def render(result) -> dict:
    packets = []
    for packet in result.packets:
        document = dict(packet.phenopacket)
        document["metaData"] = {**document["metaData"], "created": "<masked>"}
        rendered = {
            "subjectId": packet.subject_id,
            "entryIndexes": packet.entry_indexes,
            "phenopacket": document,
            "issues": [i.to_dict() for i in packet.issues],
        }
        if packet.family is not None:  # the proband is the phenopacket above
            family = {k: v for k, v in packet.family.items() if k not in ("proband", "metaData")}
            family["relatives"] = [{k: v for k, v in r.items() if k != "metaData"} for r in family["relatives"]]
            rendered["family"] = family
        packets.append(rendered)
    return {"packets": packets, "issues": [i.to_dict() for i in result.issues]}


@pytest.mark.parametrize("name", sorted(CASES))
def test_golden(name):
    profile_name, files = CASES[name]
    bundle = build_input(files)
    assert detect_profile(bundle) == profile_name
    result = translate_bundle(bundle, profile=load_profile(profile_name), ids=TEST_IDS, now=NOW)
    for packet in result.packets:  # every output is a valid Phenopacket v2: strict protobuf, schema, semantics
        json_format.ParseDict(packet.phenopacket, phenopackets.Phenopacket(), ignore_unknown_fields=False)
        if packet.family is not None:
            json_format.ParseDict(packet.family, phenopackets.Family(), ignore_unknown_fields=False)
        report = validate_phenopacket(packet.phenopacket)
        assert report.ok, report.to_text(name)
    actual = render(result)
    path = GOLDEN / f"{name}.json"
    if UPDATE:
        path.write_text(json.dumps(actual, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    assert path.is_file(), f"golden file {path.name} missing: run with GATEWAY_UPDATE_GOLDEN=1"
    expected = json.loads(path.read_text(encoding="utf-8"))
    assert actual == expected


def test_every_golden_file_has_a_case():
    assert {p.stem for p in GOLDEN.glob("*.json")} == set(CASES)
