"""The network node: route a Beacon request to its peers, check their answers, merge. HTTP-free.

The blueprint (`gateway.api.network`) hands over the raw request (method, entry path, query string,
body, headers) and sends back what `Network.query` returns. Peers get the same method, parameters and
body, and the caller's Authorization header unchanged (never added when absent); only `assemblyId`
may be set, for a peer that declares its assembly (see `plan_assembly`).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qs, urlencode

from gateway.beacon.entry_types import entry_type_for_path
from gateway.beacon.registry import EntryType, ParsedParameters
from gateway.beacon.request import BeaconRequest, BeaconRequestError, parse_get, parse_post
from gateway.beacon.response import build_error
from gateway.beacon.validation import validator
from gateway.config import NodeInfo
from gateway.issues import Issue
from gateway.jsonio import JSONInputError, loads_strict
from gateway.network.checks import check_reply
from gateway.network.client import Call, FanOut
from gateway.network.directory import PeerDirectory, PeerMetadata
from gateway.network.merge import PeerAnswer, merge_query
from gateway.network.peers import LOCAL_URL, NetworkConfig, Peer
from gateway.validation.beacon import validate_beacon_response
from gateway.variants.normalise import assembly_of_accession, normalise_assembly

log = logging.getLogger(__name__)

FORWARDED_HEADERS = ("Authorization", "X-Request-ID")
# g_variants parameters that name a position: their meaning depends on the assembly
_POSITIONAL = ("start", "end", "referenceName", "genomicAlleleShortForm", "variantMinLength", "variantMaxLength")
_ENVELOPE = {"boolean": "booleanResponse", "count": "countResponse", "record": "resultsetsResponse"}

# (method, "/path?query", body, headers) -> (status, content type, body): the node's own Beacon, in-process
LocalTransport = Callable[[str, str, bytes | None, Mapping[str, str]], tuple[int, str, bytes]]


@dataclass(frozen=True)
class RawRequest:
    method: str
    path: str  # entry path, e.g. "g_variants"
    query_string: str = ""
    body: bytes | None = None
    headers: Mapping[str, str] | None = None
    record_id: str | None = None
    cross_link: str | None = None

    @property
    def suffix(self) -> str:
        """The URL path below the Beacon base: /g_variants, /individuals/{id}, /individuals/{id}/g_variants."""
        parts = [self.path] + [p for p in (self.record_id, self.cross_link) if p]
        return "/" + "/".join(parts)


class Network:
    def __init__(self, config: NetworkConfig, node: NodeInfo, local: LocalTransport | None = None, workers: int = 32):
        self.config = config
        self.node = node
        self._local = local
        local_peer = Peer(url=LOCAL_URL, beacon_id=node.id, timeout=config.budget, name="local") if local else None
        self.peers = config.participants(local_peer)
        self.fanout = FanOut(
            max_workers=max(workers, 2 * len(self.peers)), max_response_bytes=config.max_response_bytes
        )
        self.directory = PeerDirectory(
            self.peers, self.fanout, self._metadata_call, config.budget, config.refresh_interval
        )

    def close(self) -> None:
        self.fanout.close()

    # --- queries ----------------------------------------------------------------------------

    def query(self, raw: RawRequest) -> tuple[dict, int]:
        entry = _passthrough_entry(raw.path)
        try:
            request = self._parse(entry, raw)
        except BeaconRequestError as exc:
            return build_error(self.node, exc.issues, 400, entry), 400
        params = self._parameters(raw)
        asked_assembly = requested_assembly(params)
        snapshot = self.directory.snapshot()
        answers: list[PeerAnswer | None] = []
        calls: list[tuple[int, Peer, str | None, Call]] = []
        for peer in self.peers:
            served = snapshot[peer.url].served_paths()
            if served is not None and raw.path not in served:
                answers.append(PeerAnswer(peer.url, peer.beacon_id, "skipped", f"does not serve /{raw.path}"))
                continue
            decision = plan_assembly(peer, raw.path, asked_assembly, params)
            if decision.skip:
                answers.append(PeerAnswer(peer.url, peer.beacon_id, "skipped", decision.skip, assembly=peer.assembly))
                continue
            answers.append(None)
            calls.append((len(answers) - 1, peer, decision.assembly, self._query_call(peer, raw, decision.inject)))
        replies = self.fanout.run([c for *_, c in calls], self.config.budget)
        for (index, peer, assembly, _), reply in zip(calls, replies, strict=True):
            answers[index] = check_reply(reply, peer, expect="query", assembly=assembly)
        done = [a for a in answers if a is not None]
        body, status = merge_query(self.node, request, self._returned_schema(raw.path, done, snapshot), done)
        return self._checked(body, status, entry)

    def _checked(self, body: dict, status: int, entry: EntryType) -> tuple[dict, int]:
        entity = (body["meta"].get("returnedSchemas") or [{}])[0].get("entityType", "")
        if "collections" in (body.get("response") or {}):
            errors = [i.message for i in validate_beacon_response(body, kind="collections") if i.is_error]
        else:
            kind = "errorResponse" if "error" in body else _ENVELOPE[body["meta"]["returnedGranularity"]]
            errors = [f"{e.message} at {list(e.instance_path)}" for e in validator(entity, kind).iter_errors(body)]
        if errors:  # our own merge broke our schema: a bug, never sent
            log.error("invalid merged response: %s", errors[0])
            issue = Issue.error("internal", "the merged response failed validation against the node's Beacon schema")
            return build_error(self.node, [issue], 500, entry), 500
        return body, status

    def _parse(self, entry: EntryType, raw: RawRequest) -> BeaconRequest:
        if raw.method == "GET":
            return parse_get(entry, parse_qs(raw.query_string, keep_blank_values=True))
        if not raw.body or not raw.body.strip():
            return parse_post(entry, {})
        try:
            return parse_post(entry, loads_strict(raw.body))
        except JSONInputError as exc:
            raise BeaconRequestError([exc.issue]) from exc

    def _parameters(self, raw: RawRequest) -> dict:
        """The request parameters as sent (flat, the nested group merged), for the assembly rule."""
        if raw.method == "GET":
            return {k: v[-1] for k, v in parse_qs(raw.query_string).items()}
        try:
            body = loads_strict(raw.body) if raw.body and raw.body.strip() else {}
        except JSONInputError:
            return {}
        params = ((body.get("query") or {}).get("requestParameters") or {}) if isinstance(body, dict) else {}
        if not isinstance(params, dict):
            return {}
        nested = params.get("g_variant")
        return {**params, **nested} if isinstance(nested, dict) else dict(params)

    def _returned_schema(self, path: str, answers: list[PeerAnswer], snapshot: Mapping[str, PeerMetadata]) -> dict:
        for answer in answers:
            schemas = ((answer.body or {}).get("meta") or {}).get("returnedSchemas") or []
            if answer.status == "ok" and schemas and {"entityType", "schema"} <= schemas[0].keys():
                return {"entityType": schemas[0]["entityType"], "schema": schemas[0]["schema"]}
        for meta in snapshot.values():
            entity = (meta.served_paths() or {}).get(path)
            if entity:
                return {"entityType": entity, "schema": f"beacon-{path}-v2.0.0"}
        local = entry_type_for_path(path)
        return local.returned_schema if local else {"entityType": path, "schema": f"beacon-{path}-v2.0.0"}

    # --- calls ----------------------------------------------------------------------------------

    def _query_call(self, peer: Peer, raw: RawRequest, inject: str | None) -> Call:
        wanted = {h.lower(): h for h in FORWARDED_HEADERS}
        headers = {wanted[k.lower()]: v for k, v in (raw.headers or {}).items() if k.lower() in wanted}
        query_string, body = raw.query_string, raw.body
        if inject:
            query_string, body = with_assembly(raw.method, query_string, body, inject)
        if raw.method == "POST":
            headers["Content-Type"] = "application/json"
        target = raw.suffix + (f"?{query_string}" if query_string else "")
        return self._call(peer, raw.method, target, body if raw.method == "POST" else None, headers)

    def _metadata_call(self, peer: Peer, endpoint: str) -> Call:
        return self._call(peer, "GET", f"/{endpoint}", None, {})

    def _call(self, peer: Peer, method: str, target: str, body: bytes | None, headers: Mapping[str, str]) -> Call:
        key = f"{peer.url}{target}"
        if peer.is_local:
            transport = self._local

            def run() -> tuple[int, str, bytes]:
                return transport(method, target, body, headers)

            return Call(key, method, key, peer.timeout, body, tuple(headers.items()), local=run)
        return Call(key, method, peer.url + target, peer.timeout, body, tuple(headers.items()))


@dataclass(frozen=True)
class AssemblyDecision:
    skip: str = ""  # non-empty: the peer is not queried, with this reason
    assembly: str | None = None  # the assembly the peer's answer uses (tagged on its result sets)
    inject: str | None = None  # set assemblyId to this before forwarding


def requested_assembly(params: Mapping[str, Any]) -> str | None:
    """The assembly the caller named, or implied by a versioned RefSeq accession; None when neither."""
    named = params.get("assemblyId")
    if isinstance(named, str) and normalise_assembly(named):
        return normalise_assembly(named)
    for key in ("referenceName", "genomicAlleleShortForm"):
        value = params.get(key)
        if isinstance(value, str):
            implied = assembly_of_accession(value.split(":")[0])
            if implied:
                return implied
    return None


def plan_assembly(peer: Peer, path: str, asked: str | None, params: Mapping[str, Any]) -> AssemblyDecision:
    """Peers on another assembly than the one asked are not queried; a positional query that names no
    assembly goes to each peer with the assembly that peer declares, and its answer says which."""
    if peer.assembly is None:
        return AssemblyDecision(assembly=asked)
    if asked is not None:
        if asked != peer.assembly:
            return AssemblyDecision(skip=f"serves {peer.assembly}; the query is on {asked}")
        return AssemblyDecision(assembly=asked)
    positional = path == "g_variants" and any(k in params for k in _POSITIONAL)
    return AssemblyDecision(assembly=peer.assembly, inject=peer.assembly if positional else None)


def with_assembly(method: str, query_string: str, body: bytes | None, assembly: str) -> tuple[str, bytes | None]:
    if method == "GET":
        pairs = [(k, value) for k, values in parse_qs(query_string, keep_blank_values=True).items() for value in values]
        return urlencode([*pairs, ("assemblyId", assembly)]), body
    import json

    doc = loads_strict(body) if body and body.strip() else {}
    query = doc.setdefault("query", {})
    query.setdefault("requestParameters", {})["assemblyId"] = assembly
    return query_string, json.dumps(doc).encode()


def _passthrough_entry(path: str) -> EntryType:
    """An entry type that reads the framework parameters and leaves the entry's own to the peers."""
    local = entry_type_for_path(path)
    group = local.parameter_group if local else path.removesuffix("s")

    def keep(raw: Mapping[str, Any], _where: str) -> ParsedParameters:
        echo = {k: v for k, v in raw.items() if v is not None}
        return ParsedParameters(query=echo, echo=echo)

    return EntryType(
        id=local.id if local else path,
        path=path,
        name=local.name if local else path,
        description="",
        schema_id=local.schema_id if local else f"beacon-{path}-v2.0.0",
        default_schema="",
        ontology_term={},
        parameter_group=group,
        parse_parameters=keep,
        handler=None,
    )
