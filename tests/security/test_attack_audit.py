"""The attack matrix, audit trail (issue 12 §5): each kind of tampering is detected and named; a change is never
committed unaudited, and the caller is never told "failed" about a change that happened."""

from __future__ import annotations

import hashlib
import json
import os
import time

from gateway.security import audit as audit_module
from gateway.security.audit import AuditLog
from tests.conftest import OPERATOR_TOKEN

OPERATOR = {"Authorization": f"Bearer {OPERATOR_TOKEN}"}


def _filled(tmp_path, n: int = 40) -> AuditLog:
    log = AuditLog(tmp_path)
    for i in range(n):
        log.append(decision="allowed", endpoint="/api/individuals", request_id=f"r{i}")
    assert log.verify().ok
    return log


def _lines(log: AuditLog) -> list[dict]:
    return [json.loads(line) for line in log.path.read_text().splitlines() if line.strip()]


def _write(log: AuditLog, records: list[dict]) -> None:
    log.path.write_text("".join(json.dumps(r, separators=(",", ":")) + "\n" for r in records))


def _recompute_sha256(records: list[dict]) -> list[dict]:
    """What an intruder did to the old plain-SHA-256 chain: recompute every hash after an edit."""
    previous = audit_module.GENESIS
    for r in records:
        r.pop("hash", None)
        r["prev"] = previous
        body = json.dumps(r, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
        r["hash"] = previous = hashlib.sha256((previous + "\n" + body).encode()).hexdigest()
    return records


def _recompute_with_key(log: AuditLog, records: list[dict]) -> list[dict]:
    """An intruder who also stole the MAC key (not the signing key): renumber and re-MAC everything."""
    previous = audit_module.GENESIS
    for seq, r in enumerate(records, 1):
        r.pop("hash", None)
        r["seq"], r["prev"] = seq, previous
        r["hash"] = previous = audit_module._mac(log.keys.mac_key, previous, r)
    return records


def test_rewriting_a_record_and_recomputing_the_chain_is_altered(tmp_path):
    log = _filled(tmp_path)
    records = _lines(log)
    records[10]["decision"] = "denied"
    _write(log, _recompute_sha256(records))
    result = log.verify()
    assert not result.ok and result.problem == "altered" and result.first_bad_line == 1


def test_rewriting_with_the_mac_key_is_caught_by_the_signed_checkpoint(tmp_path, monkeypatch):
    monkeypatch.setattr(audit_module, "CHECKPOINT_EVERY", 16)
    log = _filled(tmp_path)
    records = _lines(log)
    records[3]["decision"] = "denied"
    _write(log, _recompute_with_key(log, records))
    result = log.verify()
    assert not result.ok and result.problem == "rewritten"


def test_deleting_a_record_is_detected_with_or_without_recomputing(tmp_path, monkeypatch):
    monkeypatch.setattr(audit_module, "CHECKPOINT_EVERY", 16)
    log = _filled(tmp_path)
    records = _lines(log)
    del records[20]
    _write(log, records)
    assert log.verify().problem == "deleted" and log.verify().first_bad_line == 21
    _write(log, _recompute_sha256([dict(r) for r in records]))
    assert not log.verify().ok
    _write(log, _recompute_with_key(log, [dict(r) for r in records]))
    assert log.verify().problem == "rewritten"


def test_a_forged_append_is_detected(tmp_path):
    log = _filled(tmp_path)
    records = _lines(log)
    forged = dict(records[-1], request_id="forged", decision="denied", seq=records[-1]["seq"] + 1)
    forged["prev"] = records[-1]["hash"]
    forged.pop("hash")
    body = json.dumps(forged, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    forged["hash"] = hashlib.sha256((forged["prev"] + "\n" + body).encode()).hexdigest()
    _write(log, [*records, forged])
    result = log.verify()
    assert not result.ok and result.problem == "forged"
    # Even with the MAC key, a record the gateway did not write is past the head it signed.
    _write(log, _recompute_with_key(log, [*records, forged]))
    assert log.verify().problem == "forged"


def test_truncating_the_tail_is_detected(tmp_path):
    log = _filled(tmp_path)
    records = _lines(log)
    _write(log, records[:-3])
    result = log.verify()
    assert not result.ok and result.problem == "truncated"
    log.path.unlink()
    assert log.verify().problem == "truncated"


def test_a_trailing_blank_line_is_not_a_false_alarm(tmp_path):
    log = _filled(tmp_path, 5)
    with open(log.path, "a") as fh:
        fh.write("\n\n")
    assert log.verify().ok
    log.append(decision="allowed", endpoint="/x")  # and the writer carries on past it
    assert log.verify().ok and log.verify().records == 6


def test_a_forged_checkpoint_signature_is_named(tmp_path):
    log = _filled(tmp_path, 3)
    records = _lines(log)
    assert records[0]["action"] == "checkpoint"
    records[0]["checkpoint"]["signature"] = records[0]["checkpoint"]["signature"][::-1]
    _write(log, _recompute_with_key(log, records))
    assert log.verify().problem == "bad-signature"


def test_the_mac_key_is_not_the_data_key_and_keys_are_private(tmp_path):
    log = _filled(tmp_path, 1)
    key_dir = log.keys.dir
    assert (os.stat(key_dir).st_mode & 0o777) == 0o700
    for name in ("audit-mac.key", "audit-signing.key"):
        assert (os.stat(key_dir / name).st_mode & 0o777) == 0o600
    assert (
        not (tmp_path / "secret.key").exists()
        or (tmp_path / "secret.key").read_text().strip() != (key_dir / "audit-mac.key").read_text().strip()
    )


def test_an_old_sha256_log_is_continued_and_sealed(tmp_path):
    """Migration: a log written by the plain SHA-256 chain verifies, and keyed records seal it."""
    path = tmp_path / "audit" / "audit.jsonl"
    path.parent.mkdir(parents=True)
    old = _recompute_sha256(
        [{"time": "2026-01-01T00:00:00.000+00:00", "decision": "allowed", "n": i} for i in range(5)]
    )
    path.write_text("".join(json.dumps(r) + "\n" for r in old))
    log = AuditLog(tmp_path)
    assert log.verify().ok and log.verify().records == 5
    log.append(decision="allowed", endpoint="/x")
    result = log.verify()
    assert result.ok and result.records == 6
    records = _lines(log)
    assert records[5]["action"] == "checkpoint" and records[5]["checkpoint"]["seq"] == 5
    records[2]["decision"] = "denied"  # the old part rewritten and its chain recomputed …
    _write(log, _recompute_sha256(records[:5]) + records[5:])
    assert log.verify().problem == "rewritten"  # … is caught by the signed seal


def test_cli_audit_verify_names_the_tampering(tmp_path, monkeypatch, capsys):
    from gateway.cli import main

    monkeypatch.setenv("GATEWAY_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("GATEWAY_SECRET_KEY", "00" * 32)
    assert main(["erase", "--dataset", "nothing-here"]) == 0
    assert main(["audit", "verify"]) == 0
    assert "head: seq" in capsys.readouterr().out
    log = AuditLog(tmp_path / "data")
    _write(log, _lines(log)[:-1])
    assert main(["audit", "verify"]) == 1
    assert "TAMPERED (truncated)" in capsys.readouterr().out


# --- write-ahead ------------------------------------------------------------------------------------------------


def _break_log(app) -> AuditLog:
    """Make appends fail with OSError whoever runs the tests (root ignores file modes): the path becomes a directory."""
    log = app.extensions["gateway"].security.audit
    log.path.unlink(missing_ok=True)
    log.path.mkdir()
    log._tail = None
    return log


def test_a_broken_audit_log_refuses_ingest_and_erasure_before_anything_commits(app, client, reference_dir):
    body = (reference_dir / "fhir" / "mii-seltene-erkrankungen" / "Bundle-bundle-marfan-complete.json").read_bytes()
    assert (
        client.post("/fhir", data=body, headers={**OPERATOR, "Content-Type": "application/fhir+json"}).status_code
        == 200
    )
    store = app.extensions["gateway"].store
    before = store.list_phenopackets(limit=1)[1]
    _break_log(app)
    resp = client.post("/fhir?dataset=other", data=body, headers={**OPERATOR, "Content-Type": "application/fhir+json"})
    assert resp.status_code == 503 and resp.get_json()["resourceType"] == "OperationOutcome"
    assert store.list_phenopackets(limit=1)[1] == before  # nothing committed unaudited
    resp = client.delete("/admin/datasets/default", headers=OPERATOR)
    assert resp.status_code == 503
    assert store.list_phenopackets(limit=1)[1] == before  # nothing erased unaudited


def test_an_outcome_that_cannot_be_written_does_not_turn_a_done_change_into_a_failure(app, client, monkeypatch):
    log = app.extensions["gateway"].security.audit
    real = log.append

    def intent_only(**fields):
        if fields.get("phase") == "outcome":
            raise OSError("disk full")
        return real(**fields)

    monkeypatch.setattr(log, "append", intent_only)
    resp = client.delete("/admin/datasets/default", headers=OPERATOR)
    assert resp.status_code == 200  # it was erased: the caller hears so
    monkeypatch.undo()
    intents = [r for r in log.records() if r.get("phase") == "intent"]
    assert intents and intents[-1]["endpoint"] == "/admin/datasets/<dataset_id>"


def test_deleting_a_dataset_id_the_variant_store_cannot_name_is_not_a_500(app, client):
    resp = client.delete("/admin/datasets/x:y", headers=OPERATOR)
    assert resp.status_code == 200, resp.get_data(as_text=True)[:300]
    records = list(app.extensions["gateway"].security.audit.records())
    erasures = [r for r in records if r.get("action") == "erase-dataset"]
    assert [r["phase"] for r in erasures] == ["intent", "outcome"]
    resp = client.delete("/admin/datasets/" + "a" * 300, headers=OPERATOR)
    assert resp.status_code in (400, 404)


def test_every_change_has_its_intent_before_its_outcome(app, client, reference_dir):
    body = (reference_dir / "fhir" / "mii-seltene-erkrankungen" / "Bundle-bundle-marfan-complete.json").read_bytes()
    client.post("/fhir", data=body, headers={**OPERATOR, "Content-Type": "application/fhir+json"})
    client.post("/api/individuals", json={})  # a read with a body: no intent
    records = list(app.extensions["gateway"].security.audit.records())
    fhir = [r for r in records if r.get("endpoint") == "/fhir"]
    assert [r.get("phase") for r in fhir] == ["intent", "outcome"]
    assert fhir[0]["request_id"] == fhir[1]["request_id"] and fhir[1]["status"] == 200
    assert not any(r.get("phase") for r in records if r.get("endpoint", "").startswith("/api"))


def test_verifying_while_another_process_appends_is_no_false_alarm(tmp_path):
    """Was: the operator page verified the log while a worker appended (its own request's record): the
    verifier read the head, then the file, saw one record more than the head named and reported
    'forged: records N-N were appended outside the gateway'. Verification now reads under the log's lock."""
    import multiprocessing

    log = AuditLog(tmp_path)
    log.append(action="ingest", decision="allowed")
    stop = multiprocessing.Event()
    writer = multiprocessing.get_context("fork").Process(target=_append_until, args=(tmp_path, stop))
    writer.start()
    try:
        results = [AuditLog(tmp_path).verify() for _ in range(150)]
    finally:
        stop.set()
        writer.join(10)
    assert [r.message for r in results if not r.ok] == []
    assert AuditLog(tmp_path).verify().records > 2  # the writer did append meanwhile


def _append_until(data_dir, stop) -> None:
    log = AuditLog(data_dir)
    for _ in range(5000):  # bounded: the verifier reads the whole log each time
        if stop.is_set():
            break
        log.append(action="ingest", decision="allowed")
        time.sleep(0.0005)
