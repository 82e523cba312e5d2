"""The network declaration: which peers, how long to wait for them, whether local data take part.

A network file is YAML or JSON (YAML is a superset, so one loader reads both):

    peers:
      - url: http://de-node.example:8080/api      # the peer's Beacon base
        beaconId: de.example.node                 # optional: answers from another beaconId are refused
        timeout: 5                                # optional, seconds (default 5)
        assemblyId: GRCh38                        # optional: the assembly the peer's variants use
    include_local: false                          # the node's own data answer as one more peer
    budget: 5.5                                   # optional: the whole fan-out never waits longer
    refresh_interval: 300                         # optional: seconds between metadata refreshes
    max_response_bytes: 10485760                  # optional: a longer answer is cut off and flagged

`config.network` holds either such a mapping or the path of such a file.
Every mistake is reported as an Issue whose location is `FILE#/json/pointer`.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import yaml

from gateway.errors import GatewayError
from gateway.issues import Issue
from gateway.variants.normalise import normalise_assembly

DEFAULT_TIMEOUT = 5.0
DEFAULT_REFRESH_INTERVAL = 300.0
DEFAULT_MAX_RESPONSE_BYTES = 10 * 1024 * 1024
LOCAL_URL = "local:"  # the pseudo-URL of the node's own data when include_local is on
_PEER_KEYS = {"url", "beaconId", "timeout", "assemblyId", "name"}
_TOP_KEYS = {"peers", "include_local", "budget", "refresh_interval", "max_response_bytes"}
_BEACON_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:\-]{0,127}$")


class NetworkConfigError(GatewayError, ValueError):
    """The network declaration is unusable; `issues` say where and why."""

    code = "configuration"

    def __init__(self, issues: list[Issue]):
        message = "; ".join(f"{i.location}: {i.message}" if i.location else i.message for i in issues)
        super().__init__(message, issues=issues)


@dataclass(frozen=True)
class Peer:
    url: str  # Beacon base without a trailing slash, e.g. http://host:port/api; LOCAL_URL for local data
    beacon_id: str | None = None  # expected meta.beaconId; None: whatever the peer says
    timeout: float = DEFAULT_TIMEOUT
    assembly: str | None = None  # GRCh37 / GRCh38 (normalised), None: not declared
    name: str = ""

    @property
    def is_local(self) -> bool:
        return self.url == LOCAL_URL

    @property
    def label(self) -> str:
        return self.beacon_id or self.url


@dataclass(frozen=True)
class NetworkConfig:
    peers: tuple[Peer, ...]
    include_local: bool = False
    budget: float = DEFAULT_TIMEOUT  # seconds; the fan-out returns by then whatever the peers do
    refresh_interval: float = DEFAULT_REFRESH_INTERVAL
    max_response_bytes: int = DEFAULT_MAX_RESPONSE_BYTES

    def participants(self, local: Peer | None) -> tuple[Peer, ...]:
        """The peers a query goes to: the remote ones, and the local node when it takes part."""
        return self.peers + ((local,) if self.include_local and local is not None else ())


def load_network(source: str | Path | Mapping[str, Any]) -> NetworkConfig:
    """A NetworkConfig from a file path (YAML or JSON) or an already parsed mapping."""
    if isinstance(source, Mapping):
        return network_from_mapping(source, where="")
    path = Path(source)
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise NetworkConfigError([Issue.error("io", f"cannot read network file: {exc.strerror}", str(path))]) from exc
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"{path}:{mark.line + 1}" if mark else str(path)
        raise NetworkConfigError([Issue.error("syntax", f"not valid YAML or JSON: {exc}", where)]) from exc
    return network_from_mapping(raw, where=f"{path}#")


def network_from_mapping(raw: Any, where: str = "") -> NetworkConfig:
    issues: list[Issue] = []

    def bad(message: str, pointer: str) -> None:
        issues.append(Issue.error("network-config", message, where + pointer))

    if not isinstance(raw, Mapping):
        raise NetworkConfigError([Issue.error("network-config", "the network must be a mapping with peers", where)])
    for key in sorted(set(raw) - _TOP_KEYS):
        bad(f"unknown key {key!r} (known: {', '.join(sorted(_TOP_KEYS))})", f"/{key}")
    peers_raw = raw.get("peers")
    include_local = raw.get("include_local", False)
    if not isinstance(include_local, bool):
        bad("include_local must be true or false", "/include_local")
    if not isinstance(peers_raw, list):
        bad("peers must be a list of {url, beaconId?, timeout?, assemblyId?}", "/peers")
        peers_raw = None
    elif not peers_raw and include_local is not True:
        bad("a network needs at least one peer (or include_local: true)", "/peers")
    peers = []
    for index, item in enumerate(peers_raw or ()):
        peer = _peer(item, f"/peers/{index}", bad)
        if peer is not None:
            peers.append(peer)
    seen: set[str] = set()
    for index, peer in enumerate(peers):
        if peer.url in seen:
            bad(f"peer {peer.url} is listed twice", f"/peers/{index}/url")
        seen.add(peer.url)
    timeouts = [p.timeout for p in peers] or [DEFAULT_TIMEOUT]
    budget = _seconds(raw.get("budget", max(timeouts)), "/budget", bad)
    refresh = _seconds(raw.get("refresh_interval", DEFAULT_REFRESH_INTERVAL), "/refresh_interval", bad)
    max_bytes = raw.get("max_response_bytes", DEFAULT_MAX_RESPONSE_BYTES)
    if isinstance(max_bytes, bool) or not isinstance(max_bytes, int) or max_bytes < 1024:
        bad("max_response_bytes must be an integer ≥ 1024", "/max_response_bytes")
        max_bytes = DEFAULT_MAX_RESPONSE_BYTES
    if issues:
        raise NetworkConfigError(issues)
    return NetworkConfig(
        peers=tuple(peers),
        include_local=bool(include_local),
        budget=budget,
        refresh_interval=refresh,
        max_response_bytes=max_bytes,
    )


def _peer(item: Any, at: str, bad) -> Peer | None:
    if isinstance(item, str):
        item = {"url": item}
    if not isinstance(item, Mapping):
        bad("each peer must be an object with a url", at)
        return None
    for key in sorted(set(item) - _PEER_KEYS):
        bad(f"unknown key {key!r} (known: {', '.join(sorted(_PEER_KEYS))})", f"{at}/{key}")
    url = item.get("url")
    parts = urlsplit(url) if isinstance(url, str) else None
    if parts is None or parts.scheme not in ("http", "https") or not parts.hostname or parts.query or parts.fragment:
        bad(f"url must be an http(s) URL of the peer's Beacon base, got {url!r}", f"{at}/url")
        return None
    beacon_id = item.get("beaconId")
    if beacon_id is not None and not (isinstance(beacon_id, str) and _BEACON_ID.fullmatch(beacon_id)):
        bad(f"beaconId must be a reverse-DNS identifier, got {beacon_id!r}", f"{at}/beaconId")
    assembly = item.get("assemblyId")
    normalised = normalise_assembly(assembly) if isinstance(assembly, str) else None
    if assembly is not None and normalised is None:
        bad(f"assemblyId must be GRCh37 or GRCh38 (or an alias), got {assembly!r}", f"{at}/assemblyId")
    timeout = _seconds(item.get("timeout", DEFAULT_TIMEOUT), f"{at}/timeout", bad)
    return Peer(
        url=url.rstrip("/"),
        beacon_id=beacon_id if isinstance(beacon_id, str) else None,
        timeout=timeout,
        assembly=normalised,
        name=str(item.get("name", "")),
    )


def _seconds(value: Any, at: str, bad) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0 < value <= 600:
        bad(f"must be a number of seconds in (0, 600], got {value!r}", at)
        return DEFAULT_TIMEOUT
    return float(value)
