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
    log.append(decision="allowed", endpoint="/x")
    log.path.unlink()  # e.g. rotated away by the operator: a new file starts a new chain
    record = log.append(decision="denied", endpoint="/y")
    assert record["prev"] == audit_module.GENESIS
    assert log.verify().ok


def test_fsync_is_rate_limited_and_can_be_per_record(tmp_path, monkeypatch):
    calls = []
    real = audit_module.os.fsync
    monkeypatch.setattr(audit_module.os, "fsync", lambda fd: calls.append(fd) or real(fd))
    relaxed = AuditLog(tmp_path / "a", sync_interval_s=3600)
    for _ in range(20):
        relaxed.append(decision="allowed", endpoint="/x")
    assert len(calls) == 1  # the first record syncs, the rest of the interval does not
    strict = AuditLog(tmp_path / "b", sync_interval_s=0)
    for _ in range(5):
        strict.append(decision="allowed", endpoint="/x")
    assert len(calls) == 6
    assert relaxed.verify().records == 20 and strict.verify().records == 5
