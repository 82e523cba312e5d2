"""Per-caller privacy budgets over a sliding window.

Shringarpure & Bustamante needed thousands of queries to re-identify a genome; a budget
per caller makes that slow and visible. The budget accounts for information disclosed
(Raisaro et al. 2017): a query costs 1 when admitted, and once answered, more the smaller
the group its answer rests on (gateway.security.policy.information_cost). An answer is
never refused after the fact: the extra cost is charged even beyond the limit, and the
caller's next query is refused until the window frees enough.

Budgets are kept by verified identity (issuer and subject) *and* by address: a registered
caller spends from both, so neither new tokens from one address nor one token from many
addresses sheds the budget. Anonymous callers are kept by address.
The window slides: each unit's time is kept and those older than the window fall out.

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
    def hit(self, key: str, limit: int | None, window_s: float, cost: int = 1) -> tuple[bool, int]:
        """Record `cost` units for `key` if fewer than `limit` are spent in the window (None: always);
        (allowed, units spent in the window)."""


class MemoryBudget:
    def __init__(self, clock: Callable[[], float] = time.monotonic):
        self._clock = clock
        self._lock = threading.Lock()
        self._hits: dict[str, deque[float]] = {}

    def hit(self, key: str, limit: int | None, window_s: float, cost: int = 1) -> tuple[bool, int]:
        now = self._clock()
        with self._lock:
            times = self._hits.setdefault(key, deque())
            while times and times[0] <= now - window_s:
                times.popleft()
            if limit is not None and len(times) >= limit:
                return False, len(times)
            times.extend([now] * cost)
            return True, len(times)


class RedisBudget:
    """Sorted set per caller: members are unique query ids, scores their times."""

    def __init__(self, url: str, prefix: str = "gateway:budget:", client: Any = None):
        import redis

        self.client = client or redis.Redis.from_url(url, socket_timeout=2, socket_connect_timeout=2)
        self.prefix = prefix

    def hit(self, key: str, limit: int | None, window_s: float, cost: int = 1) -> tuple[bool, int]:
        name = self.prefix + hashlib.sha256(key.encode()).hexdigest()[:32]  # no address or subject in Redis
        now = time.time()
        if cost <= 0:  # a look only: is anything left?
            self.client.zremrangebyscore(name, 0, now - window_s)
            spent = int(self.client.zcard(name))
            return limit is None or spent < limit, spent
        batch = uuid.uuid4().hex
        members = {f"{batch}:{i}": now for i in range(cost)}  # one member per unit of cost
        pipe = self.client.pipeline(transaction=True)
        pipe.zremrangebyscore(name, 0, now - window_s)
        pipe.zadd(name, members)
        pipe.zcard(name)
        pipe.expire(name, int(window_s) + 1)
        _, _, count, _ = pipe.execute()
        before = count - len(members)
        if limit is not None and before >= limit:
            # Over budget: this query does not count against the window (the refusal is not a query).
            self.client.zrem(name, *members)
            return False, before
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

    def limit_for(self, caller: Any, controlled: bool = False) -> int | None:
        """The caller's limit; `controlled` only when every dataset the query reads is CONTROLLED for them
        (a grant lifts the budget for the granted datasets' queries, never for the caller as a whole)."""
        if caller.operator:
            return None
        if caller.sub is None:
            return self.limits["anonymous"]
        return self.limits["controlled"] if controlled else self.limits["registered"]

    @staticmethod
    def keys_for(caller: Any) -> tuple[str, ...]:
        """The budgets a query spends from: the identity's and, for a registered caller, its address's too."""
        if caller.sub is None or caller.operator:
            return (caller.budget_key,)
        return (caller.budget_key, f"addr:{caller.ip}")

    def charge(self, caller: Any, cost: int = 1, *, controlled: bool = False, after_answer: bool = False) -> bool:
        """Spend `cost` units of the caller's budget; False (nothing spent) when it is already spent.

        `after_answer`: the information cost of an answer already given, charged whatever is left."""
        limit = self.limit_for(caller, controlled)
        if limit is None or cost <= 0:
            return True
        keys = self.keys_for(caller)
        if not after_answer:
            for key in keys:  # refuse before spending anything when any of the budgets is spent
                allowed, _ = self.backend.hit(key, limit, self.window_s, 0)
                if not allowed:
                    return False
        for key in keys:
            self.backend.hit(key, None, self.window_s, cost)
        return True
