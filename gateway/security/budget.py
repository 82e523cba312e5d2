"""Per-caller query budgets over a sliding window.

Shringarpure & Bustamante needed thousands of queries to re-identify a genome; a budget
per caller (token subject, or address for anonymous callers) makes that slow and visible.
The window slides: each query's time is kept and those older than the window fall out.

Two backends with one interface: Redis (shared by every gunicorn worker and node
process; a sorted set per caller, updated in one MULTI) and an in-process one for the
embedded single-process default.
"""

from __future__ import annotations

import hashlib
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

DEFAULT_WINDOW_S = 3600
# None: unlimited. A full conformance run (`gateway verify`: ≈130 entry queries; third-party verifiers a few
# hundred) fits several times in an hour; re-identification by queries needs thousands (Shringarpure & Bustamante).
DEFAULT_LIMITS = {"anonymous": 1000, "registered": 10000, "controlled": None}


class BudgetBackend(Protocol):
    def hit(self, key: str, limit: int, window_s: float) -> tuple[bool, int]:
        """Record one query for `key` if within `limit`; (allowed, queries in the window)."""


class MemoryBudget:
    def __init__(self, clock: Callable[[], float] = time.monotonic):
        self._clock = clock
        self._lock = threading.Lock()
        self._hits: dict[str, deque[float]] = {}

    def hit(self, key: str, limit: int, window_s: float) -> tuple[bool, int]:
        now = self._clock()
        with self._lock:
            times = self._hits.setdefault(key, deque())
            while times and times[0] <= now - window_s:
                times.popleft()
            if len(times) >= limit:
                return False, len(times)
            times.append(now)
            return True, len(times)


class RedisBudget:
    """Sorted set per caller: members are unique query ids, scores their times."""

    def __init__(self, url: str, prefix: str = "gateway:budget:", client: Any = None):
        import redis

        self.client = client or redis.Redis.from_url(url, socket_timeout=2, socket_connect_timeout=2)
        self.prefix = prefix

    def hit(self, key: str, limit: int, window_s: float) -> tuple[bool, int]:
        name = self.prefix + hashlib.sha256(key.encode()).hexdigest()[:32]  # no address or subject in Redis
        now = time.time()
        member = uuid.uuid4().hex
        pipe = self.client.pipeline(transaction=True)
        pipe.zremrangebyscore(name, 0, now - window_s)
        pipe.zadd(name, {member: now})
        pipe.zcard(name)
        pipe.expire(name, int(window_s) + 1)
        _, _, count, _ = pipe.execute()
        if count > limit:
            # Over budget: this query does not count against the window (the refusal is not a query).
            self.client.zrem(name, member)
            return False, count - 1
        return True, count


@dataclass
class QueryBudget:
    backend: BudgetBackend
    window_s: float = DEFAULT_WINDOW_S
    limits: Mapping[str, int | None] = None  # type: ignore[assignment]

    def __post_init__(self):
        self.limits = {**DEFAULT_LIMITS, **(self.limits or {})}

    @classmethod
    def from_settings(cls, settings: Mapping[str, Any]) -> QueryBudget:
        """`security.budget: {window_seconds, anonymous, registered, controlled}` and `security.redis_url`."""
        raw = dict(settings.get("budget") or {})
        url = settings.get("redis_url")
        backend: BudgetBackend = RedisBudget(str(url)) if url else MemoryBudget()
        limits = {k: (None if raw[k] is None else int(raw[k])) for k in DEFAULT_LIMITS if k in raw}
        return cls(backend=backend, window_s=float(raw.get("window_seconds", DEFAULT_WINDOW_S)), limits=limits)

    def limit_for(self, caller: Any) -> int | None:
        if caller.operator:
            return None
        if caller.sub is None:
            return self.limits["anonymous"]
        return self.limits["controlled"] if caller.grants else self.limits["registered"]

    def charge(self, caller: Any) -> bool:
        """Count one query against the caller's budget; False when the budget is spent."""
        limit = self.limit_for(caller)
        if limit is None:
            return True
        allowed, _ = self.backend.hit(caller.budget_key, limit, self.window_s)
        return allowed
