"""Phenopackets in the other forms real tools write them in, through validation, `gateway ingest phenopacket`
and POST /phenopackets.

Seen on real material (pyphetools/phenopacket-tools/LIRICAL examples, protobuf printers):
- protobuf's JSON mapping lets a parser read each field by its proto name (`meta_data`) and each enum by number;
  Python's json_format writes them so with `preserving_proto_field_name` / `use_integers_for_enums`. The gateway
  refused such a document with "`metaData` is missing".
- Phenopacket v1 documents (phenopacket-tools io tests, LIRICAL's v1 examples, the v1 `genes`/`variants`/
  `ageAtCollection` without a version) got a dozen unknown/missing-field errors, none saying "v1".
- A YAML phenopacket with an unquoted timestamp (`created: 2021-05-14T10:35:00Z`) crashed `gateway validate`
  with a traceback (YAML 1.1 made it a datetime); `gateway ingest phenopacket` did not read YAML at all.
Fixtures are our own, in those shapes.
"""

from __future__ import annotations

import copy
import json

import phenopackets
from google.protobuf import json_format

from gateway.cli import main
from gateway.validation import validate_family, validate_phenopacket
from tests.store.test_phenopacket_real_identifiers import _packet


def _proto_spelled(doc: dict) -> dict:
    """What Python's protobuf printer writes with proto field names and enum numbers."""
    message = json_format.ParseDict(doc, phenopackets.Phenopacket())
    return json_format.MessageToDict(message, preserving_proto_field_name=True, use_integers_for_enums=True)


def _canonical(doc: dict) -> dict:
    return json_format.MessageToDict(json_format.ParseDict(doc, phenopackets.Phenopacket()))


# --- protobuf's other JSON spellings ---------------------------------------------------------------------------


def test_proto_field_names_and_enum_numbers_validate_with_a_note():
    spelled = _proto_spelled(_packet("PMID_1_a", "a"))
    assert "meta_data" in spelled and spelled["subject"]["sex"] == 1
    report = validate_phenopacket(spelled, target="input")
    assert report.ok, report.to_text()
    notes = [i for i in report if i.code == "proto-spelling"]
    assert len(notes) == 1 and "snake_case" in notes[0].message and "by number" in notes[0].message


def test_numbers_as_text_and_nulls_are_read_as_protobuf_reads_them(client, operator):
    """proto3 JSON: a 32-bit integer or a double may be a string, and null is the field's default (left out);
    the gateway refused `"fractions": "30"` and `"karyotypicSex": null` (wrong-type, invalid-enum)."""
    doc = _packet("PMID_13_m", "m")
    doc["subject"]["karyotypicSex"] = None
    doc["subject"]["vitalStatus"] = {"status": "DECEASED", "survivalTimeInDays": "120"}
    doc["measurements"] = [
        {
            "assay": {"id": "HP:0001250", "label": "Seizure"},
            "value": {"quantity": {"unit": {"id": "HP:0001250", "label": "u"}, "value": "1200.5"}},
        }
    ]
    doc["medicalActions"] = [
        {
            "radiationTherapy": {
                "modality": {"id": "HP:0001250", "label": "x"},
                "bodySite": {"id": "UBERON:0000178", "label": "blood"},
                "dosage": "60",
                "fractions": "30",
            }
        }
    ]
    report = validate_phenopacket(doc, target="input")
    assert report.ok, report.to_text()
    assert [i.code for i in report if i.code == "proto-spelling"] == ["proto-spelling"]
    answer = client.post("/phenopackets?dataset=reg", json=doc, headers=operator)
    assert answer.status_code == 201, answer.json
    stored = client.get(f"/phenopackets/{answer.json['stored'][0]['id']}", headers=operator).json
    assert stored["subject"]["vitalStatus"]["survivalTimeInDays"] == 120 and "karyotypicSex" not in stored["subject"]
    assert stored["measurements"][0]["value"]["quantity"]["value"] == 1200.5
    assert stored["medicalActions"][0]["radiationTherapy"] == {
        **doc["medicalActions"][0]["radiationTherapy"],
        "dosage": 60,
        "fractions": 30,
    }
    doc["medicalActions"][0]["radiationTherapy"]["fractions"] = "thirty"
    assert [i.location for i in validate_phenopacket(doc, target="input").errors] == [
        "/medicalActions/0/radiationTherapy/fractions"
    ]


def test_an_error_in_a_proto_spelled_document_is_located_as_sent():
    spelled = _proto_spelled(_packet("PMID_2_b", "b"))
    spelled["phenotypic_features"][0]["type"]["id"] = "HP:12"
    spelled["meta_data"]["resources"][0]["namespace_prefix"] = "H P"
    locations = {i.location for i in validate_phenopacket(spelled, target="input").errors}
    assert "/phenotypic_features/0/type/id" in locations
    assert "/meta_data/resources/0/namespace_prefix" in locations


def test_one_field_under_both_names_is_still_refused():
    doc = _packet("PMID_3_c", "c")
    doc["phenotypic_features"] = copy.deepcopy(doc["phenotypicFeatures"])
    report = validate_phenopacket(doc, target="input")  # Python's protobuf parser takes it, losing one of the two
    assert [(i.code, i.location) for i in report.errors] == [("duplicate-field", "/phenotypic_features")]


def test_post_stores_a_proto_spelled_packet_in_the_canonical_spelling(client, operator):
    doc = _packet("PMID_4_d", "d")
    answer = client.post("/phenopackets?dataset=reg", json=_proto_spelled(doc), headers=operator)
    assert answer.status_code == 201, answer.json
    stored = client.get(f"/phenopackets/{answer.json['stored'][0]['id']}", headers=operator).json
    expected = _canonical(doc)
    assert stored["subject"]["sex"] == "FEMALE" and stored["metaData"] == expected["metaData"]
    assert stored["phenotypicFeatures"] == expected["phenotypicFeatures"]
    descriptor = stored["interpretations"][0]["diagnosis"]["genomicInterpretations"][0]["variantInterpretation"]
    assert (
        descriptor == expected["interpretations"][0]["diagnosis"]["genomicInterpretations"][0]["variantInterpretation"]
    )
    assert not any("_" in key for key in _keys(stored) - _map_keys(stored))
    # the Beacon finds it by what it says
    found = client.post(
        "/api/individuals",
        json={"meta": {"apiVersion": "v2.0"}, "query": {"filters": [{"id": "HP:0001250"}]}},
        headers=operator,
    ).json
    assert found["responseSummary"]["exists"] is True


def test_a_proto_spelled_family_is_stored_in_the_canonical_spelling(client, operator):
    proband = _packet("PMID_5_e", "e")
    family = {
        "id": "fam-5",
        "proband": proband,
        "pedigree": {"persons": [{"family_id": "fam-5", "individual_id": "e", "sex": 1, "affected_status": 2}]},
        "meta_data": copy.deepcopy(proband["metaData"]),
    }
    assert validate_family(family, target="input").ok
    answer = client.post("/phenopackets?dataset=reg", json=family, headers=operator)
    assert answer.status_code == 201, answer.json
    stored = client.get(f"/phenopackets/{answer.json['stored'][0]['id']}/family", headers=operator).json
    person = stored["pedigree"]["persons"][0]
    assert person["sex"] == "FEMALE" and person["affectedStatus"] == "AFFECTED"
    assert person["individualId"] == stored["proband"]["subject"]["id"] != "e"
    assert "metaData" in stored and "meta_data" not in stored


def _keys(value) -> set[str]:
    if isinstance(value, dict):
        return set(value) | {k for v in value.values() for k in _keys(v)}
    if isinstance(value, list):
        return {k for v in value for k in _keys(v)}
    return set()


def _map_keys(value) -> set[str]:
    """Keys of the map fields (their keys are data, not field names)."""
    out: set[str] = set()
    if isinstance(value, dict):
        for key, child in value.items():
            if key in ("individualToFileIdentifiers", "fileAttributes") and isinstance(child, dict):
                out |= set(child)
            out |= _map_keys(child)
    elif isinstance(value, list):
        for child in value:
            out |= _map_keys(child)
    return out


# --- Phenopacket v1 --------------------------------------------------------------------------------------------


def _v1(version: str | None = "1.0.0") -> dict:
    doc = {
        "id": "v1-case",
        "subject": {"id": "proband", "ageAtCollection": {"age": "P3Y"}, "sex": "MALE"},
        "phenotypicFeatures": [{"type": {"id": "HP:0001250", "label": "Seizure"}, "negated": True}],
        "genes": [{"id": "HGNC:2600", "symbol": "CYP21A2"}],
        "metaData": {"createdBy": "someone", "resources": []},
    }
    if version:
        doc["metaData"]["phenopacketSchemaVersion"] = version
    return doc


def test_a_v1_document_without_a_version_is_recognised_by_its_v1_members():
    report = validate_phenopacket(_v1(None), target="input")
    assert [(i.code, i.location) for i in report] == [("phenopacket-v1", "/genes")]
    assert "v2: interpretations" in report.errors[0].message


def test_a_document_that_says_it_is_v2_is_judged_as_v2():
    doc = _v1("2.0")
    codes = {i.code for i in validate_phenopacket(doc, target="input")}
    assert "phenopacket-v1" not in codes and "unknown-field" in codes


def test_a_v1_family_and_cohort_say_v1(client, operator):
    member = _v1()
    family = {"id": "f", "proband": member, "pedigree": {"persons": []}, "metaData": member["metaData"]}
    answer = client.post("/phenopackets?dataset=reg", json=family, headers=operator)
    assert answer.status_code == 422
    assert [i["code"] for i in answer.json["error"]["issues"]] == ["phenopacket-v1"]
    cohort = {"id": "c", "members": [_v1(None)], "metaData": {"phenopacketSchemaVersion": "1.0"}}
    answer = client.post("/phenopackets?dataset=reg", json=cohort, headers=operator)
    assert answer.status_code == 422
    issue = answer.json["error"]["issues"][0]
    assert issue["code"] == "phenopacket-v1" and issue["location"] == "/members/0/genes"
    assert client.get("/phenopackets?dataset=reg", headers=operator).json["total"] == 0


def test_a_v1_family_in_yaml_says_v1(env, capsys):
    """Exomiser's v1 family example: htsFiles on the Family itself, `phenopacketSchemaVersion: 1.0` unquoted."""
    path = env / "family.yml"
    path.write_text(
        "id: fam\nproband:\n  subject:\n    id: p1\npedigree:\n  persons: []\n"
        "htsFiles:\n  - uri: trio.vcf.gz\n    htsFormat: VCF\nmetaData:\n  phenopacketSchemaVersion: 1.0\n",
        encoding="utf-8",
    )
    assert main(["validate", "--no-hpo", str(path)]) == 1
    out = capsys.readouterr().out
    assert "ERROR [phenopacket-v1] at /metaData/phenopacketSchemaVersion" in out and "htsFiles" in out
    assert out.count("ERROR") == 1


def test_cli_ingest_of_a_v1_file_says_v1_and_stores_nothing(env, capsys):
    path = env / "v1.json"
    path.write_text(json.dumps(_v1()), encoding="utf-8")
    assert main(["ingest", "phenopacket", str(path)]) == 1
    err = capsys.readouterr().err
    assert f"{path}: ERROR [phenopacket-v1] at /metaData/phenopacketSchemaVersion" in err
    assert "'1.0.0'" in err and "nothing stored" in err


# --- YAML ------------------------------------------------------------------------------------------------------


def _yaml_packet(doc_id: str) -> str:
    """A phenopacket in YAML as a person writes it: unquoted timestamps and dates."""
    return f"""
id: {doc_id}
subject:
  id: patient 1
  sex: MALE
  timeAtLastEncounter:
    age:
      iso8601duration: P4Y
phenotypicFeatures:
  - type:
      id: HP:0001250
      label: Seizure
    onset:
      timestamp: 2020-03-01T08:00:00+01:00
metaData:
  created: 2021-05-14T10:35:00Z
  createdBy: a curator
  resources:
    - id: hp
      name: human phenotype ontology
      url: http://purl.obolibrary.org/obo/hp.owl
      version: 2024-04-26
      namespacePrefix: HP
      iriPrefix: http://purl.obolibrary.org/obo/HP_
  phenopacketSchemaVersion: "2.0"
"""


def test_validate_reads_unquoted_yaml_timestamps_as_text(env, capsys):
    path = env / "case.yaml"
    path.write_text(_yaml_packet("yaml-1"), encoding="utf-8")
    assert main(["validate", "--no-hpo", str(path)]) == 0
    assert f"{path} (phenopacket): valid" in capsys.readouterr().out


def test_cli_ingests_a_yaml_phenopacket(env, capsys):
    path = env / "case.yml"
    path.write_text(_yaml_packet("yaml-2"), encoding="utf-8")
    assert main(["ingest", "phenopacket", str(path), "--dataset", "reg"]) == 0
    assert f"{path}: stored phenopacket" in capsys.readouterr().out
    broken = env / "broken.yaml"
    broken.write_text("id: x\nsubject: [unclosed\n", encoding="utf-8")
    assert main(["ingest", "phenopacket", str(broken)]) == 1
    assert f"{broken}: ERROR [yaml-syntax]" in capsys.readouterr().err


# --- proto3 defaults left out ----------------------------------------------------------------------------------


def test_an_enum_at_its_proto3_default_may_be_left_out(client, operator, env, capsys):
    """protobuf's printers omit UNKNOWN_PROGRESS and UNKNOWN_STATUS; the gateway said "progressStatus is missing"
    for a packet printed so, and for every binary (.pb) packet of unknown progress."""
    doc = _packet("PMID_11_k", "k")
    doc["interpretations"][0]["progressStatus"] = "UNKNOWN_PROGRESS"
    doc["subject"]["vitalStatus"] = {"status": "UNKNOWN_STATUS", "causeOfDeath": {"id": "OMIM:201910", "label": "x"}}
    message = json_format.ParseDict(doc, phenopackets.Phenopacket())
    printed = json_format.MessageToDict(message)
    assert "progressStatus" not in printed["interpretations"][0] and "status" not in printed["subject"]["vitalStatus"]
    assert validate_phenopacket(printed, target="input").ok
    binary = env / "case.pb"
    binary.write_bytes(message.SerializeToString())
    assert main(["validate", "--no-hpo", str(binary)]) == 0, capsys.readouterr().out
    answer = client.post("/phenopackets?dataset=reg", json=printed, headers=operator)
    assert answer.status_code == 201, answer.json
    stored = client.get(f"/phenopackets/{answer.json['stored'][0]['id']}", headers=operator).json
    assert "progressStatus" not in stored["interpretations"][0]  # as sent: absent is UNKNOWN_PROGRESS
    bad = copy.deepcopy(printed)
    bad["interpretations"][0]["progressStatus"] = "HALF_DONE"
    assert not validate_phenopacket(bad, target="input").ok


def test_cli_ingests_a_binary_phenopacket(env, capsys):
    """phenopacket-tools writes protobuf's binary form too; `gateway validate` read it, ingest did not."""
    doc = _packet("PMID_12_l", "l")
    doc["interpretations"][0]["progressStatus"] = "UNKNOWN_PROGRESS"  # left out of the binary form
    path = env / "case.pb"
    path.write_bytes(json_format.ParseDict(doc, phenopackets.Phenopacket()).SerializeToString())
    assert main(["ingest", "phenopacket", str(path), "--dataset", "reg"]) == 0
    assert f"{path}: stored phenopacket" in capsys.readouterr().out
    junk = env / "junk.pb"
    junk.write_bytes(b"\xff\xfe not protobuf")
    assert main(["ingest", "phenopacket", str(junk)]) == 1
    assert f"{junk}: ERROR [protobuf-parse]" in capsys.readouterr().err


def test_yaml_keys_that_are_not_text_are_refused_with_their_line(env, capsys):
    """`1:` or `yes:` as a key (YAML reads a number, a boolean) has no JSON form: the validators crashed on it."""
    path = env / "keys.yaml"
    path.write_text(_yaml_packet("yaml-3") + "extensions:\n  yes: 1\n", encoding="utf-8")
    assert main(["validate", "--no-hpo", str(path)]) == 1
    assert "ERROR [yaml-key]" in capsys.readouterr().out
    assert main(["ingest", "phenopacket", str(path)]) == 1
    err = capsys.readouterr().err
    assert f"{path}: ERROR [yaml-key]" in err and f"{path}:27" in err and "'yes' is read as bool" in err


def test_post_takes_a_yaml_body(client, operator):
    """POST /validate read YAML, POST /phenopackets refused the same body as "not valid JSON"."""
    yaml_type = {**operator, "Content-Type": "application/yaml"}
    answer = client.post("/phenopackets?dataset=reg", data=_yaml_packet("yaml-4"), headers=yaml_type)
    assert answer.status_code == 201, answer.json
    stored = client.get(f"/phenopackets/{answer.json['stored'][0]['id']}", headers=operator).json
    assert stored["metaData"]["created"] == "2021-05-14T10:35:00Z"
    broken = client.post("/phenopackets?dataset=reg", data="id: [x\n", headers=yaml_type)
    assert broken.status_code == 400 and broken.json["error"]["issues"][0]["code"] == "yaml-syntax"


def test_yaml_numbers_are_text_where_the_field_wants_text(env, capsys, client, operator):
    """Hand-written YAML (Exomiser's examples) leaves `phenopacketSchemaVersion: 1.0` unquoted: YAML reads a
    number, which a string field refused (wrong-type); `version: 1.10` would even become 1.1."""
    text = _yaml_packet("yaml-5").replace('phenopacketSchemaVersion: "2.0"', "phenopacketSchemaVersion: 2.0")
    text = text.replace("version: 2024-04-26", "version: 1.10").replace("id: patient 1", "id: 1200")
    text += "measurements:\n  - assay: {id: HP:0001250, label: x}\n    value:\n      quantity:\n"
    text += "        unit: {id: HP:0001250, label: u}\n        value: .5\n"
    path = env / "numbers.yaml"
    path.write_text(text, encoding="utf-8")
    assert main(["validate", "--no-hpo", str(path)]) == 0, capsys.readouterr().out
    answer = client.post(
        "/phenopackets?dataset=reg", data=text, headers={**operator, "Content-Type": "application/yaml"}
    )
    assert answer.status_code == 201, answer.json
    stored = client.get(f"/phenopackets/{answer.json['stored'][0]['id']}", headers=operator).json
    assert stored["metaData"]["phenopacketSchemaVersion"] == "2.0"
    assert stored["metaData"]["resources"][0]["version"] == "1.10"
    assert stored["measurements"][0]["value"]["quantity"]["value"] == 0.5
    assert main(["ingest", "phenopacket", str(path), "--dataset", "reg"]) == 0  # the same document: updated
    assert "(updated)" in capsys.readouterr().out
    # elsewhere a YAML number stays a number: a FHIR resource's integer is still checked as one
    fhir = env / "patient.yaml"
    fhir.write_text("resourceType: Patient\nid: p1\nmultipleBirthInteger: 2\n", encoding="utf-8")
    assert main(["validate", str(fhir)]) == 0, capsys.readouterr().out
