"""The audit log's fast path: the cached chain tail is used only when nobody else wrote; fsync is rate-limited."""

from __future__ import annotations

import itertools
import json

from gateway.security import audit as audit_module
from gateway.security.audit import AuditLog


def test_interleaved_writers_keep_one_chain(tmp_path):
    # Two logs on one file stand for two gunicorn workers: each must notice the other's lines.
    first, second = AuditLog(tmp_path), AuditLog(tmp_path)
    for i in range(30):
        (first if i % 3 else second).append(decision="allowed", endpoint="/x", request_id=str(i))
    result = first.verify()
    assert result.ok and result.records == 30
    lines = [json.loads(line) for line in first.path.read_text().splitlines()]
    assert all(b["prev"] == a["hash"] for a, b in itertools.pairwise(lines))


def test_a_file_replaced_behind_the_writer_is_read_back(tmp_path):
    log = AuditLog(tmp_path)
    first = log.append(decision="allowed", endpoint="/x")
    log.path.unlink()  # removed behind the writer: the chain goes on from the signed head, so the loss shows
    record = log.append(decision="denied", endpoint="/y")
    assert record["prev"] == first["hash"] and record["seq"] == first["seq"] + 1
    result = log.verify()
    assert not result.ok and result.problem == "deleted"


def test_fsync_is_rate_limited_and_can_be_per_record(tmp_path, monkeypatch):
    calls = []
    real = audit_module.os.fsync
    relaxed = AuditLog(tmp_path / "a", sync_interval_s=3600)  # (its keys are created, and synced, here)
    strict = AuditLog(tmp_path / "b", sync_interval_s=0)
    monkeypatch.setattr(audit_module.os, "fsync", lambda fd: calls.append(fd) or real(fd))
    for _ in range(20):
        relaxed.append(decision="allowed", endpoint="/x")
    assert len(calls) == 1  # the first record syncs, the rest of the interval does not
    for _ in range(5):
        strict.append(decision="allowed", endpoint="/x")
    assert len(calls) == 6
    relaxed.append(decision="allowed", endpoint="/x", phase="intent", durable=True)
    assert len(calls) == 7  # a write-ahead intent is always synced
    assert relaxed.verify().records == 21 and strict.verify().records == 5
