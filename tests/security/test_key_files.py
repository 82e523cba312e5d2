"""Key files made on first use: one value when two workers start at once, private mode, durable."""

from __future__ import annotations

import stat
import threading
import time

from gateway.security.audit import AuditKeys
from gateway.security.keys import read_or_create


def test_made_once_then_read(tmp_path):
    path = tmp_path / "keys" / "secret.key"
    made = read_or_create(path, lambda: "first")
    assert made == "first" and read_or_create(path, lambda: "second") == "first"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600


def test_a_worker_that_loses_the_race_reads_the_winners_value(tmp_path):
    """The winner has created the file but not written it yet: the loser waits for the text, not an empty key."""
    path = tmp_path / "secret.key"
    path.touch(mode=0o600)  # created by the other worker, not yet written

    def write_later():
        time.sleep(0.1)
        path.write_text("winner\n", encoding="utf-8")

    writer = threading.Thread(target=write_later)
    writer.start()
    try:
        # the first read finds the empty file: the value must still be the winner's
        assert read_or_create(path, lambda: "loser") == "winner"
    finally:
        writer.join()


def test_audit_keys_are_stable_across_opens(tmp_path):
    first = AuditKeys(tmp_path / "audit-keys")
    again = AuditKeys(tmp_path / "audit-keys")
    assert first.mac_key == again.mac_key and len(first.mac_key) == 32
