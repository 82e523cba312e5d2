"""The `gateway` command: convert, ingest, exit codes (run in-process through main())."""

from __future__ import annotations

import json

import pytest

from gateway.cli import main


@pytest.fixture
def marfan_path(reference_dir):
    return str(reference_dir / "fhir" / "mii-seltene-erkrankungen" / "Bundle-bundle-marfan-complete.json")


def test_convert_prints_phenopackets_and_stores_nothing(env, marfan_path, capsys):
    assert main(["convert", "fhir", marfan_path]) == 0
    out = capsys.readouterr()
    packets = json.loads(out.out)
    assert len(packets) == 1 and packets[0]["subject"]["id"].startswith("pid-")
    assert not (env / "data" / "gateway.sqlite").exists()


def test_convert_is_deterministic_for_the_same_key(env, marfan_path, capsys):
    main(["convert", "fhir", marfan_path])
    first = json.loads(capsys.readouterr().out)
    main(["convert", "fhir", marfan_path])
    second = json.loads(capsys.readouterr().out)
    for packet in (*first, *second):
        packet["metaData"].pop("created")
    assert first == second


def test_ingest_then_reingest_is_idempotent(env, marfan_path, capsys):
    assert main(["ingest", "fhir", marfan_path, "--dataset", "rd"]) == 0
    assert "(new)" in capsys.readouterr().out
    assert main(["ingest", "fhir", marfan_path, "--dataset", "rd"]) == 0
    assert "(updated)" in capsys.readouterr().out


def test_rejected_input_exits_1_with_file_and_location(env, tmp_path, capsys):
    bad = tmp_path / "bad.json"
    bad.write_text('{"resourceType": "Bundle",\n "type": "collection", "entry": [}')
    assert main(["ingest", "fhir", str(bad)]) == 1
    err = capsys.readouterr().err
    assert str(bad) in err and "line 2" in err


def test_usage_errors_exit_2(env, capsys):
    with pytest.raises(SystemExit) as exc:
        main(["ingest", "fhir"])
    assert exc.value.code == 2
    with pytest.raises(SystemExit) as exc:
        main(["frobnicate"])
    assert exc.value.code == 2


def test_ingest_phenopacket_files(env, reference_dir, capsys):
    files = sorted((reference_dir / "phenopackets").glob("*/PMID_*.json"))[:3]
    assert main(["ingest", "phenopacket", *map(str, files), "--dataset", "registry"]) == 0
    out = capsys.readouterr().out
    assert out.count("stored phenopacket") == 3


def test_ingest_phenopacket_rejects_all_when_one_is_invalid(env, reference_dir, tmp_path, capsys):
    good = sorted((reference_dir / "phenopackets").glob("*/PMID_*.json"))[0]
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"subject": {"id": "x"}}))
    assert main(["ingest", "phenopacket", str(good), str(bad)]) == 1
    assert "nothing stored" in capsys.readouterr().err


def test_ingest_fhir_prints_a_summary_per_file_and_fails_when_one_is_rejected(env, reference_dir, tmp_path, capsys):
    """Was: exit 0 and no summary although nothing was stored for most files."""
    condition = str(reference_dir / "fhir" / "mii-seltene-erkrankungen" / "Condition-condition-sma-clinical.json")
    marfan = str(reference_dir / "fhir" / "mii-seltene-erkrankungen" / "Bundle-bundle-marfan-complete.json")
    assert main(["ingest", "fhir", condition, marfan, "--dataset", "rd"]) == 0
    out = capsys.readouterr().out
    # Was "nothing to store": a lone resource is now kept and waits for its Patient (services.fhir_resources).
    assert f"{condition}: Condition/condition-sma-clinical created (version 1) pending" in out
    assert f"{marfan}: summary: 1 stored (1 new, 0 updated)" in out
    bad = tmp_path / "bad.json"
    bad.write_text('{"resourceType": "Bundle", "type": "collection", "entry": [{"resource": {"resourceType": "X"}}]}')
    assert main(["ingest", "fhir", marfan, str(bad), "--dataset", "rd"]) == 1
    captured = capsys.readouterr()
    assert f"{marfan}: summary: 1 stored (0 new, 1 updated)" in captured.out
    assert f"{bad}: rejected; nothing stored" in captured.err


def test_ingest_fhir_single_resources_wait_for_their_patient_then_apply(env, reference_dir, tmp_path, capsys):
    marfan = json.loads(
        (reference_dir / "fhir" / "mii-seltene-erkrankungen" / "Bundle-bundle-marfan-complete.json").read_text()
    )
    files = {}
    for entry in marfan["entry"][:3]:  # the Patient and two Conditions, one file each
        path = tmp_path / f"{entry['resource']['id']}.json"
        path.write_text(json.dumps(entry["resource"]))
        files[entry["resource"]["resourceType"] + "/" + entry["resource"]["id"]] = str(path)
    conditions = [p for name, p in files.items() if name.startswith("Condition/")]
    assert main(["ingest", "fhir", *conditions, "--dataset", "rd"]) == 0
    assert capsys.readouterr().out.count(" pending: ") == 2

    assert main(["fhir", "pending", "--dataset", "rd"]) == 0
    out = capsys.readouterr().out
    assert "rd\tCondition/condition-marfan-suspected\tversion 1\twaiting for Patient/patient-marfan-001" in out
    assert "2 pending resource(s)" in out

    assert main(["ingest", "fhir", files["Patient/patient-marfan-001"], "--dataset", "rd"]) == 0
    assert ", phenopacket phenopacket-" in capsys.readouterr().out
    assert main(["fhir", "pending"]) == 0
    assert "0 pending resource(s)" in capsys.readouterr().out


def test_fhir_pending_purge_drops_waiting_resources_and_is_audited(env, reference_dir, tmp_path, capsys):
    marfan = json.loads(
        (reference_dir / "fhir" / "mii-seltene-erkrankungen" / "Bundle-bundle-marfan-complete.json").read_text()
    )
    condition = tmp_path / "condition.json"
    condition.write_text(json.dumps(marfan["entry"][1]["resource"]))
    assert main(["ingest", "fhir", str(condition), "--dataset", "rd"]) == 0
    assert main(["fhir", "pending", "--purge"]) == 0  # the default: older than fhir_pending_days, so none
    assert "0 pending resource(s) older than 30 days purged" in capsys.readouterr().out
    assert main(["fhir", "pending", "--purge", "--older-than-days", "0"]) == 0
    out = capsys.readouterr().out
    assert "rd\tCondition/condition-marfan-suspected\tversion 1\tpurged" in out
    assert main(["fhir", "pending"]) == 0
    assert "0 pending resource(s)" in capsys.readouterr().out
    records = [json.loads(line) for line in (env / "data" / "audit" / "audit.jsonl").read_text().splitlines()]
    purges = [r for r in records if r.get("action") == "cli fhir pending --purge"]
    assert [r["phase"] for r in purges] == ["intent", "outcome"] * 2  # each purge: write-ahead, then its outcome


def test_fhir_rekey_identifiers_is_idempotent_and_audited(env, reference_dir, tmp_path, capsys):
    marfan = json.loads(
        (reference_dir / "fhir" / "mii-seltene-erkrankungen" / "Bundle-bundle-marfan-complete.json").read_text()
    )
    patient = tmp_path / "patient.json"
    patient.write_text(json.dumps(marfan["entry"][0]["resource"]))
    assert main(["ingest", "fhir", str(patient), "--dataset", "rd"]) == 0
    capsys.readouterr()
    assert main(["fhir", "rekey-identifiers"]) == 0  # kept at rest already: nothing to restate
    assert "0 kept resource(s) restated" in capsys.readouterr().out
    records = [json.loads(line) for line in (env / "data" / "audit" / "audit.jsonl").read_text().splitlines()]
    rekeys = [r for r in records if r.get("action") == "cli fhir rekey-identifiers"]
    assert [r["phase"] for r in rekeys] == ["intent", "outcome"]


def test_erase_runs_its_purge_and_erasure_status_and_purge_report_the_jobs(env, reference_dir, capsys):
    """`gateway erase` is no request: its second phase (gateway.security.purge_jobs) runs before it returns;
    `gateway erasure status` lists the jobs, `gateway erasure purge` runs what is pending (nothing here)."""
    document = json.loads(sorted((reference_dir / "phenopackets").glob("*/PMID_*.json"))[0].read_text())
    subject = document["subject"]["id"]
    path = env / "one.json"
    path.write_text(json.dumps(document))
    assert main(["ingest", "phenopacket", str(path), "--dataset", "registry"]) == 0
    capsys.readouterr()
    assert main(["erase", "--subject", subject]) == 0
    out = capsys.readouterr().out
    assert "erased subject (subject-" in out and "old copies of the deleted rows purged (purge job(s) 1)" in out
    assert main(["erasure", "status"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == "0 purge job(s) pending, 0 failed"
    assert lines[1].startswith("1\tdone\terase-subject\tsubject-") and subject not in lines[1]
    assert main(["erasure", "purge"]) == 0
    assert capsys.readouterr().out == "no erasure purge pending\n"
