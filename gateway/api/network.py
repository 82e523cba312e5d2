"""The network node's Beacon surface (mounted at /api when `network` is configured). HTTP only.

Entry-type routes are generic (`/<entry>`, `/<entry>/<id>`, `/<entry>/<id>/<other>`): the network
serves whatever entry types its peers serve. Informational endpoints describe the network itself:
`/info` says it is an aggregator and lists the peers, `/map` gives this node's own URLs for every
entry type any peer serves, `/entry_types`, `/configuration` and `/filtering_terms` are unions.
The node's own Beacon stays reachable at /local/api and, with `include_local`, answers as one peer.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

from flask import Blueprint, Flask, request

from gateway.api.auth import require_operator
from gateway.api.render import json_response
from gateway.beacon.request import API_VERSION
from gateway.beacon.response import build_error
from gateway.config import NodeInfo
from gateway.issues import Issue
from gateway.network.directory import PeerMetadata
from gateway.network.merge import informational_meta, merge_filtering_terms
from gateway.network.peers import NetworkConfig, load_network
from gateway.network.service import Network, RawRequest

LOCAL_PREFIX = "/local/api"
_ENTRY_PATH = re.compile(r"[a-z][a-z0-9_]{0,63}")
_SCHEMA_BASE = "https://raw.githubusercontent.com/ga4gh-beacon/beacon-v2/main/framework/json/"


def local_transport(app: Flask):
    """The node's own Beacon blueprint, called in-process (no socket) under /local/api."""

    def call(method: str, target: str, body: bytes | None, headers: Mapping[str, str]) -> tuple[int, str, bytes]:
        with app.test_client() as client:
            response = client.open(LOCAL_PREFIX + target, method=method, data=body, headers=dict(headers))
            return response.status_code, response.content_type or "", response.get_data()

    return call


def build_network(app: Flask, source, node: NodeInfo) -> Network:
    config: NetworkConfig = load_network(source)
    return Network(config, node, local=local_transport(app) if config.include_local else None)


def network_blueprint(network: Network) -> Blueprint:
    bp = Blueprint("network", __name__)
    node = network.node

    @bp.get("/")
    @bp.get("/info")
    def info():
        return json_response(info_response(network, network.directory.current(wait=True)))

    @bp.get("/map")
    def beacon_map():
        return json_response(map_response(network, network.directory.current(wait=True)))

    @bp.get("/entry_types")
    def entry_types():
        snapshot = network.directory.current(wait=True)
        return json_response(
            {
                "meta": informational_meta(node, [_schema("entry_types")]),
                "response": {"entryTypes": union_entry_types(snapshot)},
            }
        )

    @bp.get("/configuration")
    def configuration():
        snapshot = network.directory.current(wait=True)
        return json_response(
            {
                "meta": informational_meta(node, [_schema("configuration")]),
                "response": {
                    "$schema": _SCHEMA_BASE + "configuration/beaconConfigurationSchema.json",
                    "maturityAttributes": {"productionStatus": _production_status(node)},
                    "securityAttributes": {
                        "defaultGranularity": "boolean",
                        "securityLevels": ["PUBLIC", "REGISTERED", "CONTROLLED"],
                    },
                    "entryTypes": union_entry_types(snapshot),
                },
            }
        )

    @bp.route("/filtering_terms", methods=["GET", "POST"])
    def filtering_terms():
        snapshot = network.directory.current(wait=True)
        return json_response(
            merge_filtering_terms(
                node, [m.answers["filtering_terms"] for m in snapshot.values() if "filtering_terms" in m.answers]
            )
        )

    @bp.post("/network/refresh")
    @require_operator
    def refresh():
        snapshot = network.directory.refresh()
        return json_response(info_response(network, snapshot))

    methods = ["GET", "POST"]

    def serve(path: str, record_id: str | None = None, cross_link: str | None = None):
        if not _ENTRY_PATH.fullmatch(path):
            issue = Issue.error("not-found", f"/{path[:64]} is not an entry type")
            return json_response(build_error(node, [issue], 404), 404)
        raw = RawRequest(
            method=request.method,
            path=path,
            query_string=request.query_string.decode("utf-8", "replace"),
            body=request.get_data(cache=False) if request.method == "POST" else None,
            headers={k: v for k, v in request.headers.items()},
            record_id=record_id,
            cross_link=cross_link,
        )
        body, status = network.query(raw)
        return json_response(body, status)

    bp.add_url_rule("/<path>", "entry_list", serve, methods=methods)
    bp.add_url_rule("/<path>/<record_id>", "entry_one", serve, methods=methods)
    bp.add_url_rule("/<path>/<record_id>/<cross_link>", "entry_cross", serve, methods=methods)
    return bp


def _schema(kind: str) -> dict:
    return {"entityType": kind, "schema": f"beacon-{kind}-v2.0.0"}


def _production_status(node: NodeInfo) -> str:
    return {"prod": "PROD", "test": "TEST", "staging": "TEST"}.get(node.environment.lower(), "DEV")


def info_response(network: Network, snapshot: Mapping[str, PeerMetadata]) -> dict:
    node = network.node
    peers = []
    for peer in network.peers:
        meta = snapshot[peer.url]
        info = (meta.document("info") or {}).get("response") or {}
        answer = meta.answers.get("info")
        line = {
            "beaconId": peer.beacon_id or info.get("id", ""),
            "url": peer.url,
            "status": answer.status if answer else "unknown",
        }
        if info.get("name"):
            line["name"] = info["name"]
        if answer is not None and answer.reason:
            line["reason"] = answer.reason
        if answer is not None and answer.latency_ms is not None:
            line["latencyMs"] = answer.latency_ms
        if peer.assembly:
            line["assemblyId"] = peer.assembly
        paths = meta.served_paths()
        if paths is not None:
            line["entryTypes"] = sorted(paths.values())
        peers.append(line)
    return {
        "meta": informational_meta(node, [_schema("info")]),
        "response": {
            "id": node.id,
            "name": node.name,
            "apiVersion": API_VERSION,
            "environment": node.environment,
            "organization": {
                "id": node.organisation_id,
                "name": node.organisation_name,
                "contactUrl": node.contact_url,
            },
            "description": node.description,
            "version": node.version,
            "info": {"aggregator": True, "peers": peers, "includeLocal": network.config.include_local},
        },
    }


def map_response(network: Network, snapshot: Mapping[str, PeerMetadata]) -> dict:
    """This node's own URLs for every entry type some peer serves (cross-links included)."""
    root = network.node.base_url.rstrip("/") + "/api"
    sets: dict[str, dict] = {}
    for meta in snapshot.values():
        for entity, endpoint in (meta.endpoint_sets() or {}).items():
            peer_root = endpoint["rootUrl"].rstrip("/")
            path = peer_root.rsplit("/", 1)[-1]
            out = sets.setdefault(
                entity, {"entryType": entity, "rootUrl": f"{root}/{path}", "singleEntryUrl": f"{root}/{path}/{{id}}"}
            )
            for name, related in (endpoint.get("endpoints") or {}).items():
                url = related.get("url") if isinstance(related, dict) else None
                if (
                    isinstance(url, str)
                    and url.startswith(peer_root + "/")
                    and isinstance(related.get("returnedEntryType"), str)
                ):
                    out.setdefault("endpoints", {})[name] = {
                        "returnedEntryType": related["returnedEntryType"],
                        "url": f"{root}/{path}/" + url[len(peer_root) + 1 :],
                    }
    return {
        "meta": informational_meta(network.node, [_schema("map")]),
        "response": {"$schema": _SCHEMA_BASE + "configuration/beaconMapSchema.json", "endpointSets": sets},
    }


def union_entry_types(snapshot: Mapping[str, PeerMetadata]) -> dict:
    """The peers' entry-type definitions, first definition of an id wins (from /entry_types or /configuration)."""
    out: dict[str, dict] = {}
    for meta in snapshot.values():
        for endpoint in ("entry_types", "configuration"):
            doc = meta.document(endpoint) or {}
            for key, definition in ((doc.get("response") or {}).get("entryTypes") or {}).items():
                if isinstance(definition, dict):
                    out.setdefault(key, definition)
    return out
