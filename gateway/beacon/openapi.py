"""An OpenAPI 3.0 description of this node's Beacon API, generated from the entry-type registry.

Served at /api/openapi.json (and named in /map as `openAPIEndpointsDefinition`); the schemathesis
test fuzzes the API from it. Bodies are described loosely on purpose (the node itself validates every
member and answers 400 with a precise message), so the fuzzer also sends what real clients get wrong.
"""

from __future__ import annotations

from gateway.beacon.g_variants import PARAMETERS as G_VARIANT_PARAMETERS
from gateway.beacon.registry import EntryTypes
from gateway.beacon.request import API_VERSION
from gateway.config import Config

_FRAMEWORK_QUERY = {
    "requestedGranularity": {"type": "string", "enum": ["boolean", "count", "record"]},
    "includeResultsetResponses": {"type": "string", "enum": ["HIT", "MISS", "ALL", "NONE"]},
    "skip": {"type": "integer", "minimum": 0},
    "limit": {"type": "integer", "minimum": 0},
    "testMode": {"type": "boolean"},
    "datasetIds": {"type": "string", "description": "comma-separated dataset ids"},
    "filters": {"type": "string", "description": "comma-separated filter ids (CURIEs or custom ids)"},
}
_JSON = {"application/json": {"schema": {"type": "object"}}}
_RESPONSES = {
    "200": {"description": "a Beacon response", "content": _JSON},
    "400": {"description": "a beaconErrorResponse: the request is malformed", "content": _JSON},
    "401": {"description": "a beaconErrorResponse: the credential was rejected", "content": _JSON},
    "403": {"description": "a beaconErrorResponse: not available at this access level", "content": _JSON},
    "404": {"description": "a beaconErrorResponse: no such endpoint", "content": _JSON},
    "413": {"description": "the body is too large", "content": _JSON},
    "429": {"description": "a beaconErrorResponse: query budget exhausted", "content": _JSON},
}
_REQUEST_BODY = {
    "required": False,
    "content": {
        "application/json": {
            "schema": {
                "type": "object",
                "properties": {
                    "meta": {"type": "object", "properties": {"apiVersion": {"type": "string"}}},
                    "query": {
                        "type": "object",
                        "properties": {
                            "requestParameters": {"type": "object"},
                            "filters": {"type": "array", "items": {"type": "object"}},
                            "includeResultsetResponses": {"type": "string"},
                            "pagination": {"type": "object"},
                            "requestedGranularity": {"type": "string"},
                            "testMode": {"type": "boolean"},
                        },
                    },
                },
            }
        }
    },
}


def _query_parameters(extra: tuple[str, ...] = ()) -> list[dict]:
    out = [{"name": n, "in": "query", "required": False, "schema": s} for n, s in _FRAMEWORK_QUERY.items()]
    out += [{"name": n, "in": "query", "required": False, "schema": {"type": "string"}} for n in extra]
    return out


def _path_id() -> dict:
    return {"name": "id", "in": "path", "required": True, "schema": {"type": "string", "minLength": 1}}


def _operations(summary: str, parameters: list[dict], with_body: bool = True) -> dict:
    ops = {"get": {"summary": summary, "parameters": parameters, "responses": _RESPONSES}}
    if with_body:
        ops["post"] = {
            "summary": summary,
            "parameters": [p for p in parameters if p["in"] == "path"],
            "requestBody": _REQUEST_BODY,
            "responses": _RESPONSES,
        }
    return ops


def openapi_document(config: Config, types: EntryTypes, prefix: str = "/api") -> dict:
    paths: dict[str, dict] = {}
    for name in ("/", "/info", "/service-info", "/configuration", "/map", "/entry_types", "/filtering_terms"):
        paths[name] = _operations(f"informational: {name}", [])
    by_path = {e.path: e for e in types}
    for entry in types:
        extra = G_VARIANT_PARAMETERS if entry.path == "g_variants" else ()
        paths[f"/{entry.path}"] = _operations(entry.name, _query_parameters(extra))
        paths[f"/{entry.path}/{{id}}"] = _operations(f"one {entry.id}", [_path_id(), *_query_parameters(extra)])
        for target in entry.cross_links:
            target_extra = G_VARIANT_PARAMETERS if target == "g_variants" else ()
            paths[f"/{entry.path}/{{id}}/{target}"] = _operations(
                f"{by_path[target].name} of one {entry.id}", [_path_id(), *_query_parameters(target_extra)]
            )
        if entry.accepts_filters:
            paths[f"/{entry.path}/filtering_terms"] = _operations(f"filtering terms of {entry.path}", [])
        if entry.collection:
            paths[f"/{entry.path}/{{id}}/filtering_terms"] = _operations(
                f"filtering terms of one {entry.id}", [_path_id()]
            )
    return {
        "openapi": "3.0.3",
        "info": {
            "title": f"{config.node.name} — Beacon {API_VERSION} API",
            "version": config.node.version,
            "description": "Generated from the node's entry-type registry.",
        },
        "servers": [{"url": config.node.base_url.rstrip("/") + prefix}],
        "paths": paths,
    }
