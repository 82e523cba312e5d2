"""Concurrent fan-out over HTTP with per-call deadlines that really end the call.

Why a thread pool over `http.client` rather than an async client: the gateway's workers are
synchronous (gunicorn sync / Flask), no new dependency is needed, and http.client already
handles the framing (Content-Length, chunked, close-delimited). What it lacks — a total
deadline — is added here: the calling thread waits only until the earliest pending deadline
and then *cancels* each overdue call by shutting its socket down, which wakes the pool
thread blocked in connect/send/recv at once; the socket timeout (the time left) is a second
guard. A peer that trickles bytes therefore cannot hold a thread, and the caller never waits
beyond its budget. Connections to a peer are kept alive and reused when the peer allows it.

Every call ends in exactly one `Reply`: ok (2xx/4xx with a body), timeout, or error with a
reason. Bodies are read with a size cap; a longer body is cut off and reported.
"""

from __future__ import annotations

import contextlib
import http.client
import socket
import ssl
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from urllib.parse import urlsplit

from gateway.errors import GatewayError

_READ_CHUNK = 256 * 1024
_IDLE_PER_ORIGIN = 8


@dataclass(frozen=True)
class Call:
    """One HTTP exchange: `url` is absolute; `local` (if set) answers in-process instead of HTTP."""

    key: str  # the caller's name for this call (peer url + endpoint)
    method: str
    url: str
    timeout: float
    body: bytes | None = None
    headers: tuple[tuple[str, str], ...] = ()
    local: Callable[[], tuple[int, str, bytes]] | None = None  # -> (status, content type, body)


@dataclass
class Reply:
    key: str
    status: str  # "ok" | "timeout" | "error"
    http_status: int | None = None
    content_type: str = ""
    body: bytes = b""
    reason: str = ""
    latency_ms: float = 0.0


class ResponseTooLarge(GatewayError):
    """A peer's answer exceeded the size this node reads."""

    status = 502
    code = "peer-response-too-large"


@dataclass
class _Job:
    call: Call
    deadline: float
    started: float
    lock: threading.Lock = field(default_factory=threading.Lock)
    conn: http.client.HTTPConnection | None = None
    cancelled: bool = False

    def attach(self, conn: http.client.HTTPConnection) -> None:
        with self.lock:
            if self.cancelled:
                raise TimeoutError("cancelled before sending")
            self.conn = conn

    def cancel(self) -> None:
        with self.lock:
            self.cancelled = True
            conn = self.conn
        if conn is not None and conn.sock is not None:
            with contextlib.suppress(OSError):  # wakes the pool thread blocked on this socket
                conn.sock.shutdown(socket.SHUT_RDWR)
            conn.close()


class FanOutClosed(GatewayError):
    """The pool was closed (the node shut down) or the interpreter is exiting: no more calls go out."""

    status = 503
    code = "shutting-down"


class FanOut:
    """A pool of threads and kept-alive connections shared by every fan-out of one node."""

    def __init__(self, max_workers: int = 32, max_response_bytes: int = 10 * 1024 * 1024):
        self.max_response_bytes = max_response_bytes
        self.closed = False
        self._executor = ThreadPoolExecutor(max_workers=max_workers, thread_name_prefix="fanout")
        self._idle: dict[tuple[str, str, int], list[http.client.HTTPConnection]] = {}
        self._idle_lock = threading.Lock()
        self._ssl = ssl.create_default_context()

    def run(self, calls: Sequence[Call], budget: float) -> list[Reply]:
        """Perform `calls` concurrently; return one Reply per call, in order, within `budget` seconds."""
        start = time.monotonic()
        jobs = [_Job(c, deadline=start + max(0.0, min(c.timeout, budget)), started=start) for c in calls]
        futures: dict[Future, int] = {}
        try:
            for i, job in enumerate(jobs):
                futures[self._executor.submit(self._perform, job)] = i
        except RuntimeError as exc:  # the executor's "cannot schedule new futures after [interpreter] shutdown"
            for future in futures:
                future.cancel()
            if self.closed or "shutdown" in str(exc):
                raise FanOutClosed(str(exc)) from exc
            raise
        replies: list[Reply | None] = [None] * len(jobs)
        pending = set(futures)
        while pending:
            next_deadline = min(jobs[futures[f]].deadline for f in pending)
            done, pending = wait(
                pending, timeout=max(0.0, next_deadline - time.monotonic()), return_when=FIRST_COMPLETED
            )
            for f in done:
                if f.cancelled():  # close() cancelled what had not started (the node shut down mid-run)
                    raise FanOutClosed("the fan-out was closed while its calls waited")
                index = futures[f]
                replies[index] = f.result() if replies[index] is None else replies[index]
            now = time.monotonic()
            for f in [f for f in pending if now >= jobs[futures[f]].deadline]:
                job = jobs[futures[f]]
                job.cancel()
                f.cancel()
                pending.discard(f)
                waited = round((now - job.started) * 1000, 1)
                replies[futures[f]] = Reply(
                    job.call.key,
                    "timeout",
                    reason=f"no complete answer within {job.call.timeout:g} s",
                    latency_ms=waited,
                )
        return [r for r in replies if r is not None]

    def close(self) -> None:
        self.closed = True  # first: a background refresh racing the shutdown sees it (PeerDirectory)
        self._executor.shutdown(wait=False, cancel_futures=True)
        with self._idle_lock:
            for conns in self._idle.values():
                for conn in conns:
                    conn.close()
            self._idle.clear()

    # --- one call, in a pool thread ---------------------------------------------------------

    def _perform(self, job: _Job) -> Reply:
        call = job.call
        try:
            if call.local is not None:
                status, content_type, body = call.local()
                return self._reply(job, "ok", status, content_type, body)
            return self._http(job)
        except ResponseTooLarge as exc:
            return self._reply(job, "error", reason=str(exc))
        except TimeoutError:
            return self._reply(job, "timeout", reason=f"no complete answer within {call.timeout:g} s")
        except ConnectionRefusedError:
            return self._reply(job, "error", reason="connection refused")
        except (OSError, http.client.HTTPException) as exc:
            if job.cancelled:
                return self._reply(job, "timeout", reason=f"no complete answer within {call.timeout:g} s")
            return self._reply(job, "error", reason=f"{type(exc).__name__}: {exc}"[:300])
        except Exception as exc:  # an in-process local answer that failed; never lost silently
            return self._reply(job, "error", reason=f"{type(exc).__name__}: {exc}"[:300])

    def _reply(self, job: _Job, status: str, http_status=None, content_type="", body=b"", reason="") -> Reply:
        latency = round((time.monotonic() - job.started) * 1000, 1)
        return Reply(job.call.key, status, http_status, content_type, body, reason, latency)

    def _http(self, job: _Job) -> Reply:
        call = job.call
        parts = urlsplit(call.url)
        origin = (parts.scheme, parts.hostname or "", parts.port or (443 if parts.scheme == "https" else 80))
        target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        headers = dict(call.headers)
        headers.setdefault("Accept", "application/json")
        headers.setdefault("Connection", "keep-alive")
        for attempt in (0, 1):
            conn, reused = self._connection(origin, job, fresh=attempt > 0)
            job.attach(conn)
            try:
                conn.request(call.method, target, body=call.body, headers=headers)
                response = conn.getresponse()
            except (http.client.RemoteDisconnected, BrokenPipeError, ConnectionResetError):
                conn.close()
                if reused and attempt == 0 and not job.cancelled:
                    # The peer closed an idle kept-alive connection (its keep-alive timeout): the others it kept
                    # idle as long are as likely closed, so they are dropped, and the one retry opens a new one.
                    self._drop_idle(origin)
                    continue
                raise
            body = self._read_capped(response, job)
            if response.will_close:
                conn.close()
            else:
                self._release(origin, conn)
            return self._reply(job, "ok", response.status, response.getheader("Content-Type", ""), body)
        raise AssertionError("unreachable")

    def _read_capped(self, response: http.client.HTTPResponse, job: _Job) -> bytes:
        cap = self.max_response_bytes
        declared = response.getheader("Content-Length")
        if declared and declared.isdigit() and int(declared) > cap:
            job.conn.close()
            raise ResponseTooLarge(f"answer of {int(declared)} bytes exceeds the {cap}-byte limit")
        chunks, total = [], 0
        while True:
            self._set_timeout(job)
            chunk = response.read(_READ_CHUNK)
            if not chunk:
                return b"".join(chunks)
            total += len(chunk)
            if total > cap:
                job.conn.close()
                raise ResponseTooLarge(f"answer longer than the {cap}-byte limit; cut off")
            chunks.append(chunk)

    def _set_timeout(self, job: _Job) -> None:
        left = job.deadline - time.monotonic()
        if left <= 0:
            raise TimeoutError("deadline passed")
        if job.conn is not None and job.conn.sock is not None:
            job.conn.sock.settimeout(left)

    def _connection(self, origin, job: _Job, fresh: bool = False) -> tuple[http.client.HTTPConnection, bool]:
        """An idle kept-alive connection to `origin` (reused: True), else a new one; `fresh`: always a new one."""
        left = job.deadline - time.monotonic()
        if left <= 0:
            raise TimeoutError("deadline passed")
        conn = None
        if not fresh:
            with self._idle_lock:
                idle = self._idle.get(origin)
                conn = idle.pop() if idle else None
        if conn is not None:
            conn.timeout = left
            if conn.sock is not None:
                conn.sock.settimeout(left)
            return conn, True
        scheme, host, port = origin
        if scheme == "https":
            return http.client.HTTPSConnection(host, port, timeout=left, context=self._ssl), False
        return http.client.HTTPConnection(host, port, timeout=left), False

    def _drop_idle(self, origin) -> None:
        with self._idle_lock:
            dropped = self._idle.pop(origin, [])
        for conn in dropped:
            conn.close()

    def _release(self, origin, conn: http.client.HTTPConnection) -> None:
        with self._idle_lock:
            idle = self._idle.setdefault(origin, [])
            if len(idle) < _IDLE_PER_ORIGIN:
                idle.append(conn)
                return
        conn.close()
