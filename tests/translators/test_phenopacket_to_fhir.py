"""Phenopacket -> FHIR (translators/phenopacket_to_fhir.py), checked by round trips on the real material.

- FHIR -> phenopacket -> FHIR -> phenopacket on the real bundles of the forward golden tests is a fixed point
  on every fact; the whole document differs only where the reverse direction warned (ages without a birth date).
  The produced Bundles are golden files too (golden_fhir/, regenerate with GATEWAY_UPDATE_GOLDEN=1).
- phenopacket -> FHIR -> phenopacket on the 300 real phenopackets keeps every fact; each lost one was
  announced by a warning at its pointer, or belongs to a class the forward direction does not read
  (then the Bundle is checked to carry it).
- Every Bundle parses with fhir.resources and passes gateway/validation/fhir.py.
"""

import ast
import json
import os
import re
from pathlib import Path

import pytest
from fhir.resources.R4B.bundle import Bundle

import mappings
from gateway.validation.fhir import validate_fhir
from mappings import detect_profile, load_profile
from tests.translators.conftest import NOW, REFERENCE, TEST_IDS
from tests.translators.test_golden import CASES, build_input
from translators.fhir_to_phenopacket import translate_bundle
from translators.phenopacket_facts import FACT_CLASSES, fact_pointers, facts
from translators.phenopacket_to_fhir import PSEUDONYM_SYSTEM, translate_family, translate_phenopacket

pytestmark = pytest.mark.slow  # several seconds: pytest-xdist starts it first (tests/conftest.py)

GOLDEN_FHIR = Path(__file__).resolve().parent / "golden_fhir"
UPDATE = os.environ.get("GATEWAY_UPDATE_GOLDEN") == "1"
PHENOPACKETS = REFERENCE / "phenopackets"
# Classes the forward direction (FHIR -> phenopacket) does not read: the Bundle is checked to carry them.
# None today: measurements are read back since the forward translator maps measurement Observations.
FORWARD_UNREAD: set[str] = set()
DERIVED = re.compile(r"(^|/)(id|subjectOrBiosampleId|individualId)$|^/metaData/")


def forward(bundle: dict, profile: str) -> list[dict]:
    """The forward translator, through its public entry point only."""
    result = translate_bundle(bundle, profile=load_profile(profile), ids=TEST_IDS, now=NOW)
    return [p.phenopacket for p in result.packets]


def checked(bundle: dict, where: str) -> dict:
    """A produced Bundle must parse with fhir.resources and pass the gateway's FHIR validation."""
    Bundle.model_validate(bundle)
    report = validate_fhir(bundle)
    assert report.ok, report.to_text(where)
    return bundle


def flat(node, path=""):
    if isinstance(node, dict):
        for key, value in node.items():
            yield from flat(value, f"{path}/{key}")
    elif isinstance(node, list):
        for i, value in enumerate(node):
            yield from flat(value, f"{path}/{i}")
    else:
        yield path, node


def warned(issues, pointers: str | tuple[str, ...]) -> bool:
    """A warning sits at a pointer or above it (a warning about a detail below does not count)."""
    pointers = pointers if isinstance(pointers, tuple) else (pointers,)
    return any(
        i.severity.value == "warning" and (p == i.location or p.startswith(i.location + "/"))
        for i in issues
        for p in pointers
        if i.location
    )


def stable(bundle: dict) -> dict:
    """The Bundle with its name-based UUIDs and the pseudonym renamed by order of appearance (for golden files)."""
    text = json.dumps(bundle, indent=2, ensure_ascii=False)
    names: dict[str, str] = {}
    for found in re.findall(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}", text):
        names.setdefault(found, f"entry-{len(names)}")
    for found, name in names.items():
        text = text.replace(found, name)
    out = json.loads(text)
    for entry in out.get("entry", []):
        for ident in entry["resource"].get("identifier", []):
            ident["value"] = "<pseudonym>"
    return out


# --- FHIR -> phenopacket -> FHIR -> phenopacket: a fixed point -----------------------------------


@pytest.mark.parametrize("name", sorted(CASES))
def test_fhir_round_trip_is_a_fixed_point(name):
    profile, files = CASES[name]
    first = forward(build_input(files), profile)
    rendered = []
    for n, packet in enumerate(first):
        bundle, issues = translate_phenopacket(packet, profile=profile)
        assert not [i for i in issues if i.is_error]
        checked(bundle, name)
        rendered.append({"bundle": stable(bundle), "issues": [i.to_dict() for i in issues]})
        (again,) = forward(bundle, profile)
        assert facts(again) == facts(packet), f"{name} packet {n}"
        # Beyond the fact classes: the documents differ only in derived ids and where a warning said so.
        before, after = dict(flat(packet)), dict(flat(again))
        for path in sorted(set(before) | set(after)):
            if before.get(path) != after.get(path) and not DERIVED.search(path):
                assert warned(issues, path), f"{name}: {path} changed ({before.get(path)!r} -> {after.get(path)!r})"
    path = GOLDEN_FHIR / f"{name}.json"
    if UPDATE:
        path.parent.mkdir(exist_ok=True)
        path.write_text(json.dumps(rendered, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    assert path.is_file(), f"golden file {path.name} missing: run with GATEWAY_UPDATE_GOLDEN=1"
    assert rendered == json.loads(path.read_text(encoding="utf-8"))


def test_every_fhir_golden_file_has_a_case():
    assert {p.stem for p in GOLDEN_FHIR.glob("*.json")} == set(CASES)


def test_round_trip_covers_both_profiles_and_every_fact_class():
    seen = {profile for profile, _ in CASES.values()}
    assert seen == set(mappings.profile_names())
    classes = set()
    for profile, files in CASES.values():
        for packet in forward(build_input(files), profile):
            classes |= {k for k, v in facts(packet).items() if v}
    assert classes >= set(FACT_CLASSES) - FORWARD_UNREAD


# --- phenopacket -> FHIR -> phenopacket on the 300 real phenopackets -----------------------------


def real_phenopackets() -> list[Path]:
    files = sorted(p for p in PHENOPACKETS.glob("*/*.json") if not p.parent.name.startswith("_"))
    if not files:
        pytest.fail(f"reference phenopackets missing under {PHENOPACKETS}")
    return files


def assert_lost_facts_announced(packet: dict, bundle: dict, issues, again: dict, where: str) -> dict:
    """Every lost fact was warned about at its pointer, or the Bundle carries it (forward-unread classes)."""
    kept = facts(again)
    lost = {}
    for name, found in fact_pointers(packet).items():
        for fact, pointer in found.items():
            if fact in kept[name]:
                continue
            lost[name] = lost.get(name, 0) + 1
            if name in FORWARD_UNREAD:
                assert carried(bundle, name, fact), f"{where}: {name} {fact} not in the Bundle"
            else:
                assert warned(issues, pointer), f"{where}: {name} {fact} lost without a warning at {pointer}"
    return lost


def carried(bundle: dict, name: str, fact: tuple) -> bool:
    assert name == "measurements"
    loinc = fact[0].split(":", 1)[1]
    return any(
        e["resource"]["resourceType"] == "Observation"
        and any(c.get("code") == loinc for c in e["resource"]["code"].get("coding", []))
        and e["resource"].get("valueQuantity", {}).get("value") == fact[1]
        for e in bundle.get("entry", [])
    )


@pytest.mark.parametrize("profile", mappings.profile_names())
def test_real_phenopackets_keep_every_fact_fhir_can_carry(profile):
    files = real_phenopackets()
    assert len(files) == 300
    lost_total: dict[str, int] = {}
    for path in files:
        packet = json.loads(path.read_text(encoding="utf-8"))
        bundle, issues = translate_phenopacket(packet, profile=profile)
        assert not [i for i in issues if i.is_error], path
        checked(bundle, path.name)
        (again,) = forward(bundle, profile)
        for name, count in assert_lost_facts_announced(packet, bundle, issues, again, path.name).items():
            lost_total[name] = lost_total.get(name, 0) + count
    # What is lost today, and why: structural variants named only by a label (a note in FHIR; when they
    # name no gene either, their zygosity and diagnosis go with them). Anything else lost is a regression.
    assert set(lost_total) <= {"variants", "zygosity", "diagnoses"}, lost_total
    assert lost_total.get("zygosity", 0) <= lost_total.get("variants", 0)


def test_rich_example_biosamples_treatments_and_measurements():
    path = PHENOPACKETS / "_phenopacket-tools" / "phenopackets" / "retinoblastoma.json"
    packet = json.loads(path.read_text(encoding="utf-8"))
    for profile in mappings.profile_names():
        bundle, issues = translate_phenopacket(packet, profile=profile)
        checked(bundle, f"{path.name} as {profile}")
        types = [e["resource"]["resourceType"] for e in bundle["entry"]]
        assert {"Patient", "Specimen", "DiagnosticReport", "Condition"} <= set(types)
        assert types.count("Specimen") == len(packet["biosamples"])
        (again,) = forward(bundle, profile)
        lost = assert_lost_facts_announced(packet, bundle, issues, again, path.name)
        assert not lost.get("biosamples") and not lost.get("phenotypes") and not lost.get("procedures"), lost
        # NCIT:C7541 is a disease code generic HL7 reads and MII does not (warned, checked above)
        assert bool(lost.get("diseases")) == (profile == "mii"), lost


# --- the pieces ------------------------------------------------------------------------------------


def one_packet() -> dict:
    return json.loads((PHENOPACKETS / "PAX3" / "PMID_12949970_proposita.json").read_text(encoding="utf-8"))


def resources(bundle: dict, resource_type: str) -> list[dict]:
    return [e["resource"] for e in bundle["entry"] if e["resource"]["resourceType"] == resource_type]


def test_patient_carries_the_pseudonym_only():
    packet = one_packet()
    packet["subject"]["dateOfBirth"] = "2001-02-03T00:00:00Z"
    packet["subject"]["alternateIds"] = ["MRN:1234"]
    bundle, issues = translate_phenopacket(packet)
    (patient,) = resources(bundle, "Patient")
    assert patient["identifier"] == [
        {"type": patient["identifier"][0]["type"], "system": PSEUDONYM_SYSTEM, "value": "proposita"}
    ]
    assert patient["identifier"][0]["type"]["coding"][0]["code"] == "ANON"
    assert not {"name", "birthDate", "address", "telecom"} & set(patient)
    assert "1234" not in json.dumps(bundle) and "2001-02-03" not in json.dumps(bundle)
    assert warned(issues, "/subject/dateOfBirth") and warned(issues, "/subject/alternateIds")


def test_excluded_phenotypes_and_presence_per_profile():
    packet = one_packet()
    generic, _ = translate_phenopacket(packet, profile="generic")
    mii, _ = translate_phenopacket(packet, profile="mii")
    excluded = {f["type"]["id"] for f in packet["phenotypicFeatures"] if f.get("excluded")}
    assert excluded
    for obs in resources(generic, "Observation"):
        code = obs["code"]["coding"][0]
        if code["system"] != "http://human-phenotype-ontology.org":
            continue
        answer = obs["valueCodeableConcept"]["coding"][0]["code"]
        assert answer == ("LA9634-2" if code["code"] in excluded else "LA9633-4")
        assert "meta" not in obs  # generic HL7 names no phenotype profile
    hpo = [o for o in resources(mii, "Observation") if "mii-pr-seltene-hpo-assessment" in json.dumps(o.get("meta"))]
    assert len(hpo) == len(packet["phenotypicFeatures"])
    assert all(o["component"][0]["code"]["coding"][0]["code"] == "260411009" for o in hpo)
    assert all("valueCodeableConcept" not in o for o in hpo)


def test_interpretation_becomes_genomics_reporting_report():
    packet = one_packet()
    for profile, marker in (("generic", "genomics-reporting"), ("mii", "modul-molgen")):
        bundle, _ = translate_phenopacket(packet, profile=profile)
        (report,) = resources(bundle, "DiagnosticReport")
        assert marker in report["meta"]["profile"][0]
        by_url = {e["fullUrl"]: e["resource"] for e in bundle["entry"]}
        results = [by_url[r["reference"]] for r in report["result"]]
        variant = next(r for r in results if "derivedFrom" not in r)
        implication = next(r for r in results if "derivedFrom" in r)
        codes = {c["code"]["coding"][0]["code"]: c for c in variant["component"]}
        assert codes["48018-6"]["valueCodeableConcept"]["coding"][0]["code"] == "HGNC:8617"
        state = packet["interpretations"][0]["diagnosis"]["genomicInterpretations"][0]["variantInterpretation"]
        state = state["variationDescriptor"]["allelicState"]["id"]
        loinc_state = {"GENO:0000135": "LA6706-1", "GENO:0000136": "LA6705-3"}[state]  # LOINC LL381-5
        assert codes["53034-5"]["valueCodeableConcept"]["coding"][0]["code"] == loinc_state
        assert codes["62374-4"]["valueCodeableConcept"]["coding"][0]["code"] == "LA26806-2"  # hg38 = GRCh38
        assert codes["48013-7"]["valueCodeableConcept"]["coding"][0]["code"] == "NC_000002.12"
        significance = implication["component"][0]["valueCodeableConcept"]["coding"][0]["code"]
        assert significance == "LA6668-3"  # pathogenic
        (condition,) = resources(bundle, "Condition")
        assert condition["evidence"][0]["detail"] == [{"reference": implication["derivedFrom"][0]["reference"]}]
        assert condition["verificationStatus"]["coding"][0]["code"] == "confirmed"
        assert detect_profile(bundle) == profile


def test_mii_writes_the_german_gender_extension_for_other_sex():
    packet = one_packet()
    packet["subject"]["sex"] = "OTHER_SEX"
    bundle, _ = translate_phenopacket(packet, profile="mii")
    (patient,) = resources(bundle, "Patient")
    assert patient["gender"] == "other"
    assert patient["_gender"]["extension"][0]["valueCoding"]["code"] == "D"
    (again,) = forward(checked(bundle, "mii other sex"), "mii")
    assert again["subject"]["sex"] == "OTHER_SEX"
    generic, _ = translate_phenopacket(packet, profile="generic")
    assert "_gender" not in resources(generic, "Patient")[0]


def test_family_relatives_become_family_member_history():
    path = PHENOPACKETS / "_phenopacket-tools" / "io-test-v2" / "family.json"
    family = json.loads(path.read_text(encoding="utf-8"))
    bundle, issues = translate_family(family)
    assert not [i for i in issues if i.is_error]
    checked(bundle, path.name)
    histories = resources(bundle, "FamilyMemberHistory")
    roles = sorted(h["relationship"]["coding"][0]["code"] for h in histories)
    assert roles == ["FTH", "MTH"]
    assert {h["sex"]["coding"][0]["code"] for h in histories} == {"male", "female"}
    assert len(resources(bundle, "Patient")) == 1  # relatives are not patients of their own
    assert "1970-01-01" not in json.dumps(bundle)


def test_not_a_phenopacket_is_an_error():
    bundle, issues = translate_phenopacket({"id": "x"})
    assert [i.code for i in issues if i.is_error] == ["not-phenopacket"]
    assert "entry" not in bundle


def test_unknown_code_system_is_kept_as_text_with_a_warning():
    packet = one_packet()
    packet["phenotypicFeatures"][0]["type"] = {"id": "LOCAL:42", "label": "local finding"}
    bundle, issues = translate_phenopacket(packet)
    checked(bundle, "local code")
    first = resources(bundle, "Observation")[0]
    assert first["code"] == {"text": "local finding"}
    assert warned(issues, "/phenotypicFeatures/0/type/id")


def test_reverse_tables_say_which_answer_wins():
    tables = mappings.load_tables()
    reverse = mappings.load_reverse_tables()
    for section, backwards in reverse.answers.items():
        for target, answer in backwards.items():
            forward_target = tables.answers[section][answer]
            assert (forward_target["id"] if isinstance(forward_target, dict) else forward_target) == target
    for tissue, key in reverse.sampled_tissue.items():
        assert tables.sampled_tissue[key]["id"] == tissue
    with pytest.raises(ValueError, match="add a reverse entry"):
        mappings.invert({"LOINC:LA1-1": "present", "SNOMEDCT:123456": "present"}, None, "test")
    assert mappings.invert({"a": "x", "b": "x"}, {"x": "b"}, "test") == {"x": "b"}


def test_translator_imports_nothing_from_gateway_but_issues():
    source = Path(__file__).resolve().parents[2] / "translators" / "phenopacket_to_fhir.py"
    imported = set()
    for node in ast.walk(ast.parse(source.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom) and node.module:
            imported.add(node.module)
        elif isinstance(node, ast.Import):
            imported |= {a.name for a in node.names}
    assert {m for m in imported if m.split(".")[0] == "gateway"} == {"gateway.issues"}


# --- malformed input: warnings or an error, never an exception, never invalid FHIR sent ----------

GENOMIC = "/interpretations/0/diagnosis/genomicInterpretations/0"
MALFORMED = {
    "sex is an object": ("/subject/sex", {"id": "MALE"}),
    "interpretation status is an object": (f"{GENOMIC}/interpretationStatus", {"x": 1}),
    "ACMG class is a number": (f"{GENOMIC}/variantInterpretation/acmgPathogenicityClassification", 2.5),
    "allelic state id is a list": (f"{GENOMIC}/variantInterpretation/variationDescriptor/allelicState/id", ["x"]),
    "disease term id is a list": ("/diseases/0/term/id", ["OMIM:1"]),
    "HGVS value is empty": (f"{GENOMIC}/variantInterpretation/variationDescriptor/expressions/0/value", ""),
    "expression syntax is a list": (f"{GENOMIC}/variantInterpretation/variationDescriptor/expressions/0/syntax", []),
    "assembly is an object": (f"{GENOMIC}/variantInterpretation/variationDescriptor/vcfRecord/genomeAssembly", {}),
    "a resource entry is an object": ("/metaData/resources/0", {"a": 1}),
    "a phenotype is a string": ("/phenotypicFeatures/0", "HP:0000001"),
}


def mutated(pointer: str, value) -> dict:
    packet = one_packet()
    *parents, last = pointer.strip("/").split("/")
    node = packet
    for token in parents:
        node = node[int(token)] if isinstance(node, list) else node[token]
    node[int(last) if isinstance(node, list) else last] = value
    return packet


@pytest.mark.parametrize("case", sorted(MALFORMED))
def test_malformed_elements_are_warnings_and_the_rest_is_sent(case):
    from gateway.services.fhir_export import export_phenopacket

    pointer, value = MALFORMED[case]
    outcome = export_phenopacket(mutated(pointer, value), profile="generic")
    assert outcome.ok, outcome.report.to_text(case)
    checked(outcome.bundle, case)
    if not pointer.startswith("/metaData/resources"):  # not read by the export at all
        near = [i for i in outcome.report if i.location.startswith(pointer) or pointer.startswith(i.location + "/")]
        assert near, f"{case}: no issue at {pointer}"


def test_family_with_a_malformed_pedigree_still_exports():
    path = PHENOPACKETS / "_phenopacket-tools" / "io-test-v2" / "family.json"
    family = json.loads(path.read_text(encoding="utf-8"))
    family["pedigree"]["persons"][0]["paternalId"] = {"id": "FATHER"}  # an object where an id belongs
    family["relatives"].append("not a relative")
    bundle, issues = translate_family(family)
    assert not [i for i in issues if i.is_error]
    checked(bundle, "malformed pedigree")
    roles = sorted(h["relationship"]["coding"][0]["code"] for h in resources(bundle, "FamilyMemberHistory"))
    assert roles == ["FAMMEMB", "MTH"]  # the father can no longer be told from the pedigree
    assert warned(issues, f"/relatives/{len(family['relatives']) - 1}")
