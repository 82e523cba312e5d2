"""`gateway convert phenopacket --to fhir` and `gateway convert beacon-response --to fhir`."""

from __future__ import annotations

import json

import pytest

from gateway.cli import main
from gateway.validation.fhir import validate_fhir
from translators.phenopacket_to_beacon import individual_record


def _packets(reference_dir, n):
    return sorted((reference_dir / "phenopackets").glob("*/PMID_*.json"))[:n]


def _types(bundle) -> list[str]:
    return [e["resource"]["resourceType"] for e in bundle.get("entry", [])]


def test_phenopackets_become_one_valid_bundle(env, reference_dir, capsys):
    files = _packets(reference_dir, 2)
    assert main(["convert", "phenopacket", *map(str, files), "--to", "fhir"]) == 0
    out = capsys.readouterr()
    bundle = json.loads(out.out)
    assert bundle["type"] == "collection" and validate_fhir(bundle).ok
    assert _types(bundle).count("Patient") == 2
    assert str(files[0]) in out.err  # warnings name their file (and pointer)
    assert f"{files[0]}: WARNING [unmapped-element] at /interpretations/0/" in out.err
    assert not (env / "data" / "gateway.sqlite").exists()  # nothing stored


def test_profile_picks_the_national_flavour(env, reference_dir, capsys):
    path = reference_dir / "phenopackets" / "PAX3" / "PMID_12949970_proposita.json"
    assert main(["convert", "phenopacket", str(path), "--to", "fhir", "--profile", "mii"]) == 0
    assert "medizininformatik-initiative.de" in capsys.readouterr().out
    assert main(["convert", "phenopacket", str(path), "--to", "fhir", "--profile", "atlantis"]) == 1
    assert "profile-unknown" in capsys.readouterr().err


def test_not_a_phenopacket_exits_1_and_prints_nothing_of_it(env, tmp_path, reference_dir, capsys):
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"id": "no subject"}))
    good = _packets(reference_dir, 1)[0]
    assert main(["convert", "phenopacket", str(good), str(bad), "--to", "fhir"]) == 1
    out = capsys.readouterr()
    assert f"{bad}: ERROR [not-phenopacket]" in out.err
    assert _types(json.loads(out.out)).count("Patient") == 1


def test_to_is_required(env, reference_dir):
    with pytest.raises(SystemExit) as exc:
        main(["convert", "phenopacket", str(_packets(reference_dir, 1)[0])])
    assert exc.value.code == 2


def test_beacon_response_file(env, reference_dir, tmp_path, capsys):
    packets = [json.loads(p.read_text()) for p in _packets(reference_dir, 3)]
    response = {
        "meta": {"returnedSchemas": [{"entityType": "individual"}]},
        "response": {
            "resultSets": [{"id": "d", "setType": "dataset", "results": [individual_record(p) for p in packets]}]
        },
    }
    path = tmp_path / "answer.json"
    path.write_text(json.dumps(response))
    assert main(["convert", "beacon-response", str(path), "--to", "fhir"]) == 0
    bundle = json.loads(capsys.readouterr().out)
    assert validate_fhir(bundle).ok and _types(bundle).count("Patient") == 3


def test_export_stored_phenopacket_with_its_family(env, reference_dir, capsys):
    """Issue 11: the family made from FamilyMemberHistory leaves the node with the phenopacket."""
    from gateway.validation.phenopacket import validate_family

    bundle = reference_dir / "fhir" / "mii-testdata" / "Bundle-mii-exa-test-data-bundle-seltene-1.json"
    assert main(["ingest", "fhir", str(bundle)]) == 0
    ingested = capsys.readouterr().out
    assert "with its family (2 relatives)" in ingested
    packet_id = ingested.split("stored phenopacket ")[1].split()[0]

    assert main(["export", "phenopacket", packet_id]) == 0
    (packet,) = json.loads(capsys.readouterr().out)
    assert packet["id"] == packet_id
    assert main(["export", "phenopacket", packet_id, "--family"]) == 0
    (family,) = json.loads(capsys.readouterr().out)
    assert family["proband"] == packet and len(family["relatives"]) == 2
    assert validate_family(family, target="output").ok

    assert main(["export", "phenopacket", packet_id, "--to", "fhir"]) == 0
    exported = json.loads(capsys.readouterr().out)
    assert validate_fhir(exported).ok and _types(exported).count("FamilyMemberHistory") == 2


def test_export_names_what_is_missing_and_exits_1(env, reference_dir, capsys):
    files = _packets(reference_dir, 1)
    assert main(["ingest", "phenopacket", str(files[0])]) == 0
    packet_id = capsys.readouterr().out.split("stored phenopacket ")[1].split()[0]
    assert main(["export", "phenopacket", packet_id, "nope", "--family"]) == 1
    out = capsys.readouterr()
    assert json.loads(out.out) == []  # a plain phenopacket has no family; nothing invented
    assert f"no family history stored for phenopacket {packet_id!r}" in out.err and "'nope'" in out.err
    assert main(["export", "phenopacket", packet_id, "nope"]) == 1
    out = capsys.readouterr()
    assert [p["id"] for p in json.loads(out.out)] == [packet_id]
    assert "no phenopacket stored with id 'nope'" in out.err


def test_export_is_audited_like_ingest(env, reference_dir, capsys):
    from gateway.security.audit import AuditLog

    files = _packets(reference_dir, 1)
    assert main(["ingest", "phenopacket", str(files[0])]) == 0
    packet_id = capsys.readouterr().out.split("stored phenopacket ")[1].split()[0]
    assert main(["export", "phenopacket", packet_id, "--family"]) == 1
    text = "\n".join(json.dumps(r) for r in AuditLog(env / "data").records())
    assert '"cli export phenopacket"' in text and packet_id not in text  # no pseudonym kept in the log
