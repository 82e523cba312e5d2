"""The audit log: one append-only, hash-chained JSON line per access (HTTP and CLI).

Why a file and not a table: it must outlive what it audits (an erased dataset, a rolled
back transaction, a wiped metadata database), be shippable to a log archive as it is,
and be verifiable with nothing but this module. Several gunicorn workers append to it
safely under an exclusive `flock`; each record carries the hash of the one before, so a
changed, removed or reordered line breaks the chain at that point.

A record holds: time, request id, caller (`sub` or anonymous, and issuer), an HMAC of
the caller's address (never the address), endpoint, datasets, requested and returned
granularity, the count before suppression, and the decision (allowed, denied,
suppressed, budget-exceeded). Never a token, never a patient identifier.

Cost per record (it is on every request): the file is locked, the previous hash is taken
from this process's memory when the file is exactly as this process last left it (same
inode and size; otherwise the tail is read back), one `write` appends the line. Durability:
the line is in the kernel when `append` returns, so a crashed or killed worker loses
nothing; the file is fsynced at most every `sync_interval_s` seconds (default 1 s), so a
power loss or kernel crash can lose at most the last second of records. A lost tail is a
truncation — the chain of what remains still verifies. `sync_interval_s=0` fsyncs every
record (≈2-3 ms each on this machine's disk).
"""

from __future__ import annotations

import fcntl
import hashlib
import hmac
import json
import os
import threading
import time
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

AUDIT_DIR = "audit"
AUDIT_FILE = "audit.jsonl"
SYNC_INTERVAL_S = 1.0
GENESIS = "0" * 64
DECISIONS = ("allowed", "denied", "suppressed", "budget-exceeded")
FIELDS = (
    "time",
    "request_id",
    "caller",
    "issuer",
    "ip_hash",
    "endpoint",
    "method",
    "status",
    "datasets",
    "requested_granularity",
    "returned_granularity",
    "count_before_suppression",
    "decision",
    "reason",
    "action",
)


def _digest(previous: str, record: Mapping[str, Any]) -> str:
    body = json.dumps(record, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256((previous + "\n" + body).encode("utf-8")).hexdigest()


def hash_ip(key: bytes, ip: str | None) -> str | None:
    if not ip:
        return None
    return hmac.new(key, b"audit-ip\x1f" + ip.encode(), hashlib.sha256).hexdigest()[:24]


@dataclass(frozen=True)
class VerifyResult:
    ok: bool
    records: int
    first_bad_line: int | None = None
    message: str = ""


class AuditLog:
    def __init__(self, data_dir: Path | str, sync_interval_s: float = SYNC_INTERVAL_S):
        self.path = Path(data_dir) / AUDIT_DIR / AUDIT_FILE
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.sync_interval_s = sync_interval_s
        # (inode, size, hash) of the file as this process last wrote it; only read and set under the flock.
        self._tail: tuple[int, int, str] | None = None
        self._last_sync = float("-inf")  # the first record syncs
        self._thread_lock = threading.Lock()  # flock is per open file: threads of one worker also take turns

    def append(self, **fields: Any) -> dict:
        """Append one record (unknown fields are refused: nothing slips in by accident)."""
        unknown = set(fields) - set(FIELDS)
        if unknown:
            raise ValueError(f"unknown audit field(s): {', '.join(sorted(unknown))}")
        if fields.get("decision") not in DECISIONS:
            raise ValueError(f"audit decision must be one of {', '.join(DECISIONS)}")
        record = {"time": datetime.now(UTC).isoformat(timespec="milliseconds")}
        record.update({k: v for k, v in fields.items() if v is not None and k != "time"})
        with self._thread_lock:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_APPEND, 0o600)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX)  # one writer at a time across workers: the chain stays linear
                stat = os.fstat(fd)
                tail = self._tail
                if tail is not None and tail[0] == stat.st_ino and tail[1] == stat.st_size:
                    previous = tail[2]  # nobody wrote since we did: no need to read the tail back
                else:
                    previous = _last_hash(fd)
                record["prev"] = previous
                record["hash"] = _digest(previous, record)
                line = (json.dumps(record, ensure_ascii=False, separators=(",", ":")) + "\n").encode("utf-8")
                written = os.write(fd, line)
                if written != len(line):  # a short write (disk full): the chain must not continue from a torn line
                    self._tail = None
                    raise OSError(f"audit record truncated ({written} of {len(line)} bytes written)")
                now = time.monotonic()
                if now - self._last_sync >= self.sync_interval_s:
                    os.fsync(fd)
                    self._last_sync = now
                self._tail = (stat.st_ino, stat.st_size + written, record["hash"])
            except BaseException:
                self._tail = None
                raise
            finally:
                fcntl.flock(fd, fcntl.LOCK_UN)
                os.close(fd)
        return record

    def records(self) -> Iterator[dict]:
        if not self.path.exists():
            return
        with open(self.path, encoding="utf-8") as fh:
            for line in fh:
                if line.strip():
                    yield json.loads(line)

    def verify(self) -> VerifyResult:
        previous = GENESIS
        count = 0
        if not self.path.exists():
            return VerifyResult(True, 0, message="no audit log yet")
        with open(self.path, encoding="utf-8") as fh:
            for number, line in enumerate(fh, 1):
                try:
                    record = json.loads(line)
                except ValueError:
                    return VerifyResult(False, count, number, f"line {number} is not JSON")
                stored = record.pop("hash", None)
                if record.get("prev") != previous:
                    return VerifyResult(
                        False,
                        count,
                        number,
                        f"line {number}: chain broken (a record before it changed or went missing)",
                    )
                if stored != _digest(previous, record):
                    return VerifyResult(False, count, number, f"line {number}: record altered")
                previous = stored
                count += 1
        return VerifyResult(True, count, message=f"{count} records, chain intact")

    def export(self, out, since: str | None = None) -> int:
        """Write the records (optionally from an ISO time on) as JSON lines to `out`; returns how many."""
        n = 0
        for record in self.records():
            if since and record.get("time", "") < since:
                continue
            out.write(json.dumps(record, ensure_ascii=False) + "\n")
            n += 1
        return n


def _last_hash(fd: int) -> str:
    size = os.lseek(fd, 0, os.SEEK_END)
    if size == 0:
        return GENESIS
    chunk = 4096
    pos = size
    tail = b""
    while pos > 0:
        step = min(chunk, pos)
        pos -= step
        tail = os.pread(fd, step, pos) + tail
        lines = tail.rstrip(b"\n").split(b"\n")
        if len(lines) > 1 or pos == 0:
            return json.loads(lines[-1])["hash"]
    return GENESIS


def iter_lines(records: Iterable[dict]) -> Iterator[str]:
    for record in records:
        yield json.dumps(record, ensure_ascii=False)
