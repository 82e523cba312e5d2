"""Peers' metadata (/info, /map, /configuration, /entry_types, /filtering_terms), fetched concurrently and cached.

All endpoints of all peers go out in one fan-out, so one slow peer costs its timeout once, not per
endpoint and not per peer. Queries never wait for metadata: they read the last snapshot (a peer whose
/map is not known yet is simply queried), and a stale snapshot triggers a refresh in the background.
A daemon timer refreshes every `refresh_interval`; `refresh()` does it on demand.
"""

from __future__ import annotations

import logging
import threading
import time
import weakref
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from gateway.network.checks import check_reply
from gateway.network.client import Call, FanOut, FanOutClosed
from gateway.network.merge import PeerAnswer
from gateway.network.peers import Peer

log = logging.getLogger(__name__)

METADATA_ENDPOINTS = ("info", "map", "configuration", "entry_types", "filtering_terms")


@dataclass
class PeerMetadata:
    peer: Peer
    answers: dict[str, PeerAnswer] = field(default_factory=dict)  # endpoint → checked answer
    fetched_at: float = 0.0

    def document(self, endpoint: str) -> dict | None:
        answer = self.answers.get(endpoint)
        return answer.body if answer is not None and answer.status == "ok" else None

    def endpoint_sets(self) -> dict[str, dict] | None:
        """entry type id → endpoint set from the peer's /map; None while the map is unknown."""
        doc = self.document("map")
        if doc is None:
            return None
        sets = (doc.get("response") or {}).get("endpointSets") or {}
        return {k: v for k, v in sets.items() if isinstance(v, dict) and isinstance(v.get("rootUrl"), str)}

    def served_paths(self) -> dict[str, str] | None:
        """URL segment (e.g. "g_variants") → entry type id; None while the map is unknown."""
        sets = self.endpoint_sets()
        if sets is None:
            return None
        return {v["rootUrl"].rstrip("/").rsplit("/", 1)[-1]: k for k, v in sets.items()}


CallFactory = Callable[[Peer, str], Call]  # (peer, endpoint) -> the Call that fetches it


class PeerDirectory:
    def __init__(
        self, peers: Sequence[Peer], fanout: FanOut, make_call: CallFactory, budget: float, refresh_interval: float
    ):
        self._peers = tuple(peers)
        self._fanout = fanout
        self._make_call = make_call
        self._budget = budget
        self.refresh_interval = refresh_interval
        self._snapshot: dict[str, PeerMetadata] = {p.url: PeerMetadata(p) for p in self._peers}
        self._lock = threading.Lock()
        self._refreshing = False
        self._timer: threading.Thread | None = None

    def refresh(self) -> dict[str, PeerMetadata]:
        """Fetch every endpoint of every peer now (bounded by the budget) and replace the snapshot."""
        pairs = [(p, e) for p in self._peers for e in METADATA_ENDPOINTS]
        replies = self._fanout.run([self._make_call(p, e) for p, e in pairs], self._budget)
        fresh = {p.url: PeerMetadata(p, fetched_at=time.monotonic()) for p in self._peers}
        for (peer, endpoint), reply in zip(pairs, replies, strict=True):
            fresh[peer.url].answers[endpoint] = check_reply(reply, peer, expect=endpoint)
        with self._lock:
            self._snapshot = fresh
        return fresh

    def snapshot(self) -> dict[str, PeerMetadata]:
        """The cached metadata, never waiting; a refresh starts in the background when it is stale."""
        self._ensure_timer()
        with self._lock:
            snap = self._snapshot
            stale = any(
                time.monotonic() - m.fetched_at > self.refresh_interval or not m.fetched_at for m in snap.values()
            )
            start = stale and not self._refreshing
            if start:
                self._refreshing = True
        if start:
            threading.Thread(target=self._refresh_in_background, name="network-metadata", daemon=True).start()
        return snap

    def current(self, wait: bool) -> dict[str, PeerMetadata]:
        """The snapshot; with `wait`, a never-fetched directory is fetched first (informational endpoints)."""
        with self._lock:
            never = any(not m.fetched_at for m in self._snapshot.values())
        return self.refresh() if wait and never else self.snapshot()

    @property
    def closed(self) -> bool:
        """The node's fan-out pool is closed: nothing refreshes any more."""
        return self._fanout.closed

    def _refresh_in_background(self) -> None:
        try:
            if not self.closed:
                self.refresh()
        except FanOutClosed:  # the node shut down (or the interpreter exits) while this ran: nothing to report
            log.debug("network metadata refresh stopped: the node is shutting down")
        except Exception:  # a refresh failure must never kill the node; the next one retries
            log.exception("network metadata refresh failed")
        finally:
            with self._lock:
                self._refreshing = False

    def _ensure_timer(self) -> None:
        if self._timer is not None and self._timer.is_alive():
            return
        ref = weakref.ref(self)
        interval = self.refresh_interval

        def tick() -> None:
            # Holds only a weak reference, so a discarded node (tests build many) lets its timer end.
            while True:
                time.sleep(interval)
                directory = ref()
                if directory is None or directory.closed:  # discarded, or shut down: the timer ends
                    return
                directory._refresh_in_background()
                del directory

        self._timer = threading.Thread(target=tick, name="network-metadata-timer", daemon=True)
        self._timer.start()
