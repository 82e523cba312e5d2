"""Run one piece of work on untrusted input in a child process with a time and a memory limit.

Why a child: a validation or translation that runs out of memory, loops on a hostile document
or is killed by the kernel must cost one request, never a server worker (gunicorn kills a
worker that does not answer within its timeout, and the OOM killer may pick the worker).

Why `fork` and not `spawn` (which the VCF ingest uses for htslib): the child starts with the
parent's warm caches (HPO ontology, compiled schemas, mapping tables), so the limit costs a
few milliseconds instead of seconds of imports. The child runs only pure functions over the
bytes it was given (no database, no locks it could inherit held), returns the result pickled
through a pipe and ends with `os._exit` (no atexit handlers, no shared sockets closed).

Limits: `seconds` of wall time (enforced by the parent, which kills the child) and
`memory_bytes` of address space on top of what the child inherited (RLIMIT_AS; a
MemoryError in the child is reported as such). RLIMIT_AS counts new mappings, so the child
may also fill the free heap it inherited: its real bound is that free heap plus `memory_bytes`.
"""

from __future__ import annotations

import contextlib
import os
import pickle
import resource
import select
import signal
import struct
import time
from collections.abc import Callable
from typing import Any, TypeVar

from gateway.errors import GatewayError

T = TypeVar("T")

_OK, _ERROR, _MEMORY = b"K", b"E", b"M"


class WorkLimitExceeded(GatewayError):
    """The work needed more time or memory than allowed (`limit`: "time" | "memory" | "crash"): 413."""

    status = 413
    code = "too-costly"

    def __init__(self, limit: str, message: str):
        super().__init__(message)
        self.limit = limit


def _address_space() -> int:
    with open("/proc/self/statm") as fh:
        return int(fh.read().split()[0]) * os.sysconf("SC_PAGE_SIZE")


def _child(write_fd: int, memory_bytes: int, fn: Callable[..., Any], args: tuple, kwargs: dict) -> None:
    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGQUIT, signal.SIGUSR1, signal.SIGCHLD):
        with contextlib.suppress(OSError, ValueError):
            signal.signal(sig, signal.SIG_DFL)  # not the server's handlers
    limit = _address_space() + memory_bytes
    with contextlib.suppress(ValueError, OSError):
        resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
    try:
        payload = _OK + pickle.dumps(fn(*args, **kwargs), protocol=pickle.HIGHEST_PROTOCOL)
    except (MemoryError, SystemError):  # C code that failed to allocate may surface as SystemError
        payload = _MEMORY
    except BaseException as exc:  # re-raised in the parent, as if the call had run there
        try:
            payload = _ERROR + pickle.dumps(exc)
        except Exception:
            payload = _ERROR + pickle.dumps(RuntimeError(f"{type(exc).__name__}: {exc}"[:500]))
    with open(write_fd, "wb", closefd=True) as out:
        out.write(struct.pack("!Q", len(payload)) + payload)


def run_bounded(fn: Callable[..., T], *args: Any, seconds: float, memory_bytes: int, **kwargs: Any) -> T:
    """`fn(*args, **kwargs)` in a forked child; its result, its exception, or WorkLimitExceeded."""
    read_fd, write_fd = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: never returns into the caller's code
        status = 0
        try:
            os.close(read_fd)
            _child(write_fd, memory_bytes, fn, args, kwargs)
        except BaseException:
            status = 1
        finally:
            os._exit(status)
    os.close(write_fd)
    deadline = time.monotonic() + seconds
    chunks: list[bytes] = []
    try:
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise WorkLimitExceeded("time", f"the work took longer than {seconds:g} s and was stopped")
            ready, _, _ = select.select([read_fd], [], [], remaining)
            if not ready:
                continue
            chunk = os.read(read_fd, 1 << 20)
            if not chunk:
                break
            chunks.append(chunk)
    finally:
        os.close(read_fd)
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)  # harmless when it has ended; ends it when over time
        _, status = os.waitpid(pid, 0)
    data = b"".join(chunks)
    if len(data) < 9 or struct.unpack("!Q", data[:8])[0] != len(data) - 8:
        died = f"signal {-os.waitstatus_to_exitcode(status)}" if os.WIFSIGNALED(status) else "no result"
        raise WorkLimitExceeded("crash", f"the work ended without a result ({died}; likely out of memory)")
    tag, body = data[8:9], data[9:]
    if tag == _MEMORY:
        raise WorkLimitExceeded("memory", f"the work needed more than {memory_bytes // 2**20} MB and was stopped")
    result = pickle.loads(body)  # our own child's output, never the caller's bytes
    if tag == _ERROR:
        raise result
    return result


def limits_of(config: Any) -> dict[str, Any]:
    """The keyword arguments of `run_bounded` a node's configuration sets."""
    return {"seconds": float(config.work_seconds), "memory_bytes": int(config.work_memory_mb) * 2**20}
