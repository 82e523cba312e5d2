"""The audit log: one append-only, keyed hash-chained JSON line per access (HTTP and CLI).

Why a file and not a table: it must outlive what it audits (an erased dataset, a rolled
back transaction, a wiped metadata database), be shippable to a log archive as it is,
and be verifiable with nothing but this module and its keys. Several gunicorn workers
append to it safely under an exclusive `flock`.

Tamper evidence (issue 12): every record carries its sequence number `seq`, the `prev`
record's MAC and its own `hash` = HMAC-SHA256(audit key, prev + record). The audit key is
its own random key in `audit/keys/` (or `GATEWAY_AUDIT_KEY_DIR`), never the data key, so
whoever can rewrite the file cannot recompute the chain without it. Every
`CHECKPOINT_EVERY` records (and on the first record a process writes) an inline
checkpoint record carries an Ed25519 signature over (seq, head MAC) of the records before
it; `audit/audit.head` holds the newest (seq, MAC) under the audit key, overwritten with
each record, so a cut-off tail is seen. `verify()` names what it finds: `altered` (a
record's MAC fails), `deleted` (a gap in `seq`), `reordered`, `forged` (records after the
signed head, or appended without the key), `truncated` (the head names records the file
lacks), `rewritten` (a signed checkpoint disagrees with the recomputed chain: records
changed and the chain recomputed with the key), `bad-signature`, `not-json`. Blank lines
are ignored. Against an intruder who holds both keys, only a copy kept elsewhere helps:
ship the head line `verify()` reports (or the log) off the host.

Logs written by the earlier plain-SHA-256 chain are kept: their records (no `seq`) are
verified as before, and the first keyed record of a process seals them with a signed
checkpoint, so rewriting them later is reported as `rewritten`.

Write-ahead: a change (ingest, erasure, key rotation) first appends an `intent` record
with fsync (`durable=True`); if that fails the change is refused before anything commits.
The outcome record follows the change.

Cost per record: the file is locked, the previous MAC is taken from this process's memory
when the file is as this process last left it (else the head file is read back), one
`write` appends the line, the head is overwritten in place (≈ tens of µs). A checkpoint costs an
Ed25519 signature (≈ 0.1-0.3 ms) once per `CHECKPOINT_EVERY` records. Durability: the line
is in the kernel when `append` returns; the file is fsynced at most every
`sync_interval_s` (default 1 s) and always for `durable=True` records.
"""

from __future__ import annotations

import base64
import fcntl
import hashlib
import hmac
import json
import os
import secrets
import threading
import time
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from gateway.security.keys import read_or_create

AUDIT_DIR = "audit"
AUDIT_FILE = "audit.jsonl"
HEAD_FILE = "audit.head"
HEAD_BYTES = 256  # the head record's fixed size (a JSON object padded with spaces)
KEY_DIR = "keys"
MAC_KEY_FILE = "audit-mac.key"
SIGNING_KEY_FILE = "audit-signing.key"
PUBLIC_KEY_FILE = "audit-signing.pub"
SYNC_INTERVAL_S = 1.0
CHECKPOINT_EVERY = 256
GENESIS = "0" * 64
DECISIONS = ("allowed", "denied", "suppressed", "budget-exceeded")
PHASES = ("intent", "outcome")
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
    "phase",
)
TAMPERING = ("not-json", "altered", "deleted", "reordered", "forged", "truncated", "rewritten", "bad-signature")


def _body(record: Mapping[str, Any]) -> bytes:
    return json.dumps(record, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


def _legacy_digest(previous: str, record: Mapping[str, Any]) -> str:
    """The chain before keyed records (plain SHA-256): still verified for old logs."""
    return hashlib.sha256(previous.encode() + b"\n" + _body(record)).hexdigest()


def _mac(key: bytes, previous: str, record: Mapping[str, Any]) -> str:
    return hmac.new(key, b"audit-record\x1f" + previous.encode() + b"\n" + _body(record), hashlib.sha256).hexdigest()


def _head_mac(key: bytes, seq: int, head: str) -> str:
    return hmac.new(key, f"audit-head\x1f{seq}\x1f{head}".encode(), hashlib.sha256).hexdigest()


def _checkpoint_message(seq: int, head: str) -> bytes:
    return f"gateway-audit-checkpoint\x1f{seq}\x1f{head}".encode()


# Requests with a body that only read: Beacon POST queries, validation. Every other POST/PUT/PATCH/DELETE changes data.
READ_ONLY_WRITES = ("/api/", "/local/api/", "/validate", "/fhir/$validate", "/fhir/Bundle/$validate")


def is_change(method: str, path: str) -> bool:
    """True for a request that may change stored data: it is audited write-ahead (intent, then outcome)."""
    if path.startswith("/fhir/") and path.endswith("/$validate"):  # type and instance level: /fhir/{type}[/{id}]/…
        return False
    return method in ("POST", "PUT", "PATCH", "DELETE") and not path.startswith(READ_ONLY_WRITES)


def hash_ip(key: bytes, ip: str | None) -> str | None:
    if not ip:
        return None
    return hmac.new(key, b"audit-ip\x1f" + ip.encode(), hashlib.sha256).hexdigest()[:24]


class AuditKeys:
    """The audit MAC key and the checkpoint signing key: created once (0600 in a 0700 directory)."""

    def __init__(self, key_dir: Path):
        self.dir = Path(key_dir)
        self.dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        self.mac_key = bytes.fromhex(read_or_create(self.dir / MAC_KEY_FILE, lambda: secrets.token_hex(32)))
        pem = read_or_create(
            self.dir / SIGNING_KEY_FILE,
            lambda: (
                Ed25519PrivateKey.generate()
                .private_bytes(
                    serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
                )
                .decode()
            ),
        )
        signing_key = serialization.load_pem_private_key(pem.encode(), password=None)
        if not isinstance(signing_key, Ed25519PrivateKey):
            raise ValueError(f"{self.dir / SIGNING_KEY_FILE} is not an Ed25519 private key")
        self.signing_key: Ed25519PrivateKey = signing_key
        self.public_key: Ed25519PublicKey = signing_key.public_key()
        public = self.dir / PUBLIC_KEY_FILE
        if not public.exists():
            public.write_bytes(
                self.public_key.public_bytes(
                    serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
                )
            )

    def sign(self, seq: int, head: str) -> str:
        return base64.b64encode(self.signing_key.sign(_checkpoint_message(seq, head))).decode()

    def signature_ok(self, seq: int, head: str, signature: str) -> bool:
        try:
            self.public_key.verify(base64.b64decode(signature), _checkpoint_message(seq, head))
        except (InvalidSignature, ValueError, TypeError):
            return False
        return True


@dataclass(frozen=True)
class VerifyResult:
    ok: bool
    records: int
    first_bad_line: int | None = None
    message: str = ""
    problem: str | None = None  # one of TAMPERING when not ok
    head: dict | None = None  # the newest (seq, hash) verified: keep a copy off the host


class AuditLog:
    def __init__(
        self, data_dir: Path | str, sync_interval_s: float = SYNC_INTERVAL_S, key_dir: Path | str | None = None
    ):
        self.path = Path(data_dir) / AUDIT_DIR / AUDIT_FILE
        self.path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        self.head_path = self.path.parent / HEAD_FILE
        key_dir = key_dir or os.environ.get("GATEWAY_AUDIT_KEY_DIR") or self.path.parent / KEY_DIR
        self.keys = AuditKeys(Path(key_dir))
        self.sync_interval_s = sync_interval_s
        # (inode, size, seq, hash) of the file as this process last wrote it; read and set under the flock only.
        self._tail: tuple[int, int, int, str] | None = None
        self._last_sync = float("-inf")  # the first record syncs
        self._signed_once = False  # each process's first record is preceded by a signed checkpoint
        self._thread_lock = threading.Lock()  # flock is per open file: threads of one worker also take turns

    def append(self, *, durable: bool = False, **fields: Any) -> dict:
        """Append one record (unknown fields are refused: nothing slips in by accident).

        `durable=True` (write-ahead intents): fsynced before returning, so a change that follows is never
        committed unaudited; an OSError here means the change must not be made.
        """
        unknown = set(fields) - set(FIELDS)
        if unknown:
            raise ValueError(f"unknown audit field(s): {', '.join(sorted(unknown))}")
        if fields.get("decision") not in DECISIONS:
            raise ValueError(f"audit decision must be one of {', '.join(DECISIONS)}")
        if fields.get("phase") not in (None, *PHASES):
            raise ValueError(f"audit phase must be one of {', '.join(PHASES)}")
        record = {"time": datetime.now(UTC).isoformat(timespec="milliseconds")}
        record.update({k: v for k, v in fields.items() if v is not None and k != "time"})
        with self._thread_lock:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_APPEND, 0o600)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX)  # one writer at a time across workers: the chain stays linear
                stat = os.fstat(fd)
                tail = self._tail
                if tail is not None and tail[0] == stat.st_ino and tail[1] == stat.st_size:
                    seq, previous = tail[2], tail[3]  # nobody wrote since we did: no need to read back
                else:
                    seq, previous = self._read_head(fd)
                lines = []
                if not self._signed_once or (seq + 1) % CHECKPOINT_EVERY == 0:
                    checkpoint = {
                        "time": record["time"],
                        "action": "checkpoint",
                        "decision": "allowed",
                        "checkpoint": {"seq": seq, "head": previous, "signature": self.keys.sign(seq, previous)},
                    }
                    seq, previous, line = self._chain(seq, previous, checkpoint)
                    lines.append(line)
                seq, previous, line = self._chain(seq, previous, record)
                lines.append(line)
                data = b"".join(lines)
                written = os.write(fd, data)
                if written != len(data):  # a short write (disk full): the chain must not continue from a torn line
                    raise OSError(f"audit record truncated ({written} of {len(data)} bytes written)")
                self._write_head(seq, previous)
                now = time.monotonic()
                if durable or now - self._last_sync >= self.sync_interval_s:
                    os.fsync(fd)
                    self._last_sync = now
                self._signed_once = True
                self._tail = (stat.st_ino, stat.st_size + written, seq, previous)
            except BaseException:
                self._tail = None
                raise
            finally:
                fcntl.flock(fd, fcntl.LOCK_UN)
                os.close(fd)
        return record

    def _chain(self, seq: int, previous: str, record: dict) -> tuple[int, str, bytes]:
        record["seq"] = seq + 1
        record["prev"] = previous
        record["hash"] = _mac(self.keys.mac_key, previous, record)
        line = (json.dumps(record, ensure_ascii=False, separators=(",", ":")) + "\n").encode("utf-8")
        return seq + 1, record["hash"], line

    def _read_head(self, fd: int) -> tuple[int, str]:
        """(seq, hash) to continue from: the head file when its MAC holds, else the file's own tail.

        Continuing from the head (not from a shortened file) keeps a cut-off tail visible as a gap.
        """
        head = self._head()
        if head is not None:
            return head
        return _tail_of(fd)

    def _head(self) -> tuple[int, str] | None:
        try:
            raw = json.loads(self.head_path.read_text(encoding="utf-8"))
            seq, head, mac = int(raw["seq"]), str(raw["hash"]), str(raw["mac"])
        except (FileNotFoundError, ValueError, KeyError, TypeError):
            return None
        if not hmac.compare_digest(mac, _head_mac(self.keys.mac_key, seq, head)):
            return None
        return seq, head

    def _write_head(self, seq: int, head: str) -> None:
        """Overwrite the head in place (one small pwrite under the log's flock; a rename costs ms on some disks).

        The record is padded to a fixed length well inside one disk sector, so it is never seen half old.
        """
        text = json.dumps({"seq": seq, "hash": head, "mac": _head_mac(self.keys.mac_key, seq, head)})
        fd = os.open(self.head_path, os.O_WRONLY | os.O_CREAT, 0o600)
        try:
            os.pwrite(fd, text.ljust(HEAD_BYTES).encode("ascii"), 0)
        finally:
            os.close(fd)

    def records(self) -> Iterator[dict]:
        """The access records (checkpoints are the log's own bookkeeping and are left out)."""
        if not self.path.exists():
            return
        with open(self.path, encoding="utf-8") as fh:
            for line in fh:
                if line.strip():
                    record = json.loads(line)
                    if record.get("action") != "checkpoint":
                        yield record

    def verify(self) -> VerifyResult:
        """Walk the chain; the first problem found, by kind (see the module docstring)."""
        return _Verifier(self).run()

    def export(self, out, since: str | None = None) -> int:
        """Write the records (optionally from an ISO time on) as JSON lines to `out`; returns how many."""
        n = 0
        for record in self.records():
            if since and record.get("time", "") < since:
                continue
            out.write(json.dumps(record, ensure_ascii=False) + "\n")
            n += 1
        return n


def _lines_up_to(fh, size: int) -> Iterator[str]:
    """The lines of the binary file `fh` within its first `size` bytes (what was written when the head was read)."""
    read = 0
    for raw in fh:
        if read >= size:
            return
        read += len(raw)
        yield raw.decode("utf-8", errors="replace")


class _Verifier:
    def __init__(self, log: AuditLog):
        self.log = log
        self.key = log.keys.mac_key
        self.previous = GENESIS
        self.seq = 0  # keyed records: the last seq seen
        self.count = 0
        self.keyed = False

    def fail(self, problem: str, number: int | None, message: str) -> VerifyResult:
        return VerifyResult(False, self.count, number, f"{problem}: {message}", problem)

    def run(self) -> VerifyResult:
        try:
            fh = open(self.log.path, "rb")  # noqa: SIM115 (closed below)
        except FileNotFoundError:
            head = self.log._head()
            if head is not None and head[0] > 0:
                return self.fail("truncated", None, f"the log is gone; its head names {head[0]} record(s)")
            return VerifyResult(True, 0, message="no audit log yet")
        with fh:
            # A writer appends a record and then the head, under the exclusive lock: read both under a shared
            # lock (briefly: not while walking a long log) and walk the log up to where that head was written,
            # else a record appended in between reads as one more than the head names (a false 'forged').
            fcntl.flock(fh.fileno(), fcntl.LOCK_SH)
            try:
                head = self.log._head()
                size = os.fstat(fh.fileno()).st_size
            finally:
                fcntl.flock(fh.fileno(), fcntl.LOCK_UN)
            signed_seq = head[0] if head else 0
            for number, line in enumerate(_lines_up_to(fh, size), 1):
                if not line.strip():
                    continue  # a blank line (an editor's trailing newline) is no record and no tampering
                problem = self.step(number, line, signed_seq)
                if problem is not None:
                    return problem
        return self.finish(head)

    def step(self, number: int, line: str, signed_seq: int) -> VerifyResult | None:
        try:
            record = json.loads(line)
            stored = record.pop("hash")
        except (ValueError, KeyError, TypeError, AttributeError):
            return self.fail("not-json", number, f"line {number} is not an audit record")
        if "seq" not in record:  # the earlier plain SHA-256 chain
            if self.keyed:
                return self.fail("forged", number, f"line {number}: an unkeyed record after keyed ones")
            if record.get("prev") != self.previous or stored != _legacy_digest(self.previous, record):
                return self.fail("altered", number, f"line {number}: record altered (unkeyed part of the log)")
            self.previous, self.count = stored, self.count + 1
            return None
        self.keyed = True
        seq = record.get("seq")
        if not isinstance(seq, int) or seq <= self.seq:
            return self.fail("reordered", number, f"line {number}: sequence {seq} after {self.seq}")
        if seq > self.seq + 1 and self.seq > 0:
            return self.fail("deleted", number, f"line {number}: records {self.seq + 1}-{seq - 1} are missing")
        if stored != _mac(self.key, str(record.get("prev")), record):
            kind = "forged" if seq > signed_seq else "altered"
            return self.fail(kind, number, f"line {number}: the record's MAC does not match its content")
        if record.get("action") == "checkpoint":  # before the link: a signed checkpoint names the rewrite
            bad = self.check(record.get("checkpoint"), number)
            if bad is not None:
                return bad
        if record.get("prev") != self.previous:
            if self.seq == 0:  # the first keyed record continues from something this file does not hold
                return self.fail("deleted", number, f"line {number}: the records before sequence {seq} are missing")
            return self.fail("deleted", number, f"line {number}: chain broken (a record before it went missing)")
        self.seq, self.previous = seq, stored
        self.count += 1 if record.get("action") != "checkpoint" else 0
        return None

    def check(self, checkpoint: Any, number: int) -> VerifyResult | None:
        try:
            seq, head, signature = int(checkpoint["seq"]), str(checkpoint["head"]), str(checkpoint["signature"])
        except (KeyError, TypeError, ValueError):
            return self.fail("not-json", number, f"line {number}: a malformed checkpoint")
        if not self.log.keys.signature_ok(seq, head, signature):
            return self.fail("bad-signature", number, f"line {number}: the checkpoint's signature does not verify")
        if self.seq == 0 and self.count == 0 and seq > 0:  # the file starts here, the checkpoint says it did not
            return self.fail(
                "deleted", number, f"line {number}: the {seq} record(s) before this checkpoint are missing"
            )
        if head != self.previous or (self.seq and seq != self.seq):
            return self.fail(
                "rewritten",
                number,
                f"line {number}: the signed checkpoint disagrees with the records before it "
                "(records changed, removed or inserted and the chain recomputed)",
            )
        return None

    def finish(self, head: tuple[int, str] | None) -> VerifyResult:
        if head is not None:
            seq, mac = head
            if seq > self.seq:
                return self.fail("truncated", None, f"the log ends at record {self.seq}; its head names record {seq}")
            if seq < self.seq:
                return self.fail("forged", None, f"records {seq + 1}-{self.seq} were appended outside the gateway")
            if mac != self.previous:
                return self.fail("altered", None, "the last record differs from the head written with it")
        elif self.keyed:
            return self.fail("truncated", None, "the head file is missing or its MAC does not hold")
        head_info = {"seq": self.seq, "hash": self.previous} if self.keyed else None
        return VerifyResult(True, self.count, message=f"{self.count} records, chain intact", head=head_info)


def _tail_of(fd: int) -> tuple[int, str]:
    """(seq, hash) of the last record in the file; seq counts unkeyed (old) records when the file has only those."""
    size = os.lseek(fd, 0, os.SEEK_END)
    if size == 0:
        return 0, GENESIS
    chunk, pos, tail = 4096, size, b""
    while pos > 0:
        step = min(chunk, pos)
        pos -= step
        tail = os.pread(fd, step, pos) + tail
        lines = [line for line in tail.split(b"\n") if line.strip()]
        if len(lines) > 1 or (pos == 0 and lines):
            last = json.loads(lines[-1])
            if "seq" in last:
                return int(last["seq"]), last["hash"]
            return _count_lines(fd), last["hash"]  # an old log: keyed records continue its numbering
    return 0, GENESIS


def _count_lines(fd: int) -> int:
    count, offset = 0, 0
    while chunk := os.pread(fd, 1 << 20, offset):
        count += chunk.count(b"\n")
        offset += len(chunk)
    return count


def iter_lines(records: Iterable[dict]) -> Iterator[str]:
    for record in records:
        yield json.dumps(record, ensure_ascii=False)
