"""Runtime validation of every Beacon response against the node's own schemas (schemas/beacon/).

The schemas are stricter than the official ones (closed objects, granularity matched to
the envelope). Validators are compiled once per (entry type, granularity) with
`jsonschema-rs`; the official schemas are checked in the tests, not at runtime.
"""

from __future__ import annotations

import json
from functools import cache
from pathlib import Path

import jsonschema_rs

from gateway.beacon.registry import EntryType
from gateway.errors import GatewayError

SCHEMA_DIR = Path(__file__).resolve().parents[2] / "schemas" / "beacon"
FRAMEWORK_URI = "urn:gateway:beacon:framework"
_ENVELOPE = {"boolean": "booleanResponse", "count": "countResponse", "record": "resultsetsResponse"}
# Entity id → the file of our record schema; entry types without one are checked at envelope level only.
RECORD_SCHEMAS = {"genomicVariation": "genomicVariation.json"}


class ResponseInvalid(GatewayError, ValueError):
    """A response that breaks the node's own Beacon schema: a bug, never sent."""


@cache
def _load(name: str) -> dict:
    return json.loads((SCHEMA_DIR / name).read_text())


@cache
def _registry() -> jsonschema_rs.Registry:
    resources = [(FRAMEWORK_URI, _load("framework.json"))]
    resources += [(_load(f)["$id"], _load(f)) for f in RECORD_SCHEMAS.values()]
    return jsonschema_rs.Registry(resources)


@cache
def validator(entity_id: str, kind: str):
    """A compiled validator for one envelope kind (booleanResponse, …, errorResponse) of one entry type."""
    schema: dict = {"$schema": "https://json-schema.org/draft/2020-12/schema", "$ref": f"{FRAMEWORK_URI}#/$defs/{kind}"}
    record = RECORD_SCHEMAS.get(entity_id)
    if kind == "resultsetsResponse" and record:
        results = {"items": {"$ref": _load(record)["$id"]}}
        schema["properties"] = {
            "response": {"properties": {"resultSets": {"items": {"properties": {"results": results}}}}}
        }
    return jsonschema_rs.validator_for(schema, registry=_registry(), validate_formats=True)


def validate_response(entry: EntryType, granularity: str, body: dict) -> None:
    kind = "errorResponse" if "error" in body else _ENVELOPE[granularity]
    if kind == "resultsetsResponse" and entry.collection:
        kind = "collectionsResponse"
    check = validator(entry.id, kind)
    if check.is_valid(body):  # the fast path: one pass, no error objects
        return
    errors = list(check.iter_errors(body))
    if errors:
        first = errors[0]
        where = "/" + "/".join(str(p) for p in first.instance_path)
        raise ResponseInvalid(f"{len(errors)} error(s); first at {where}: {first.message}")
