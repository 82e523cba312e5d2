"""Beacon v2 request bodies and responses, checked against the gateway's own Beacon schemas.

The official schemas live outside the package (../shared/reference, tests only); at runtime the envelope and
record schemas of the Beacon layer (`schemas/beacon/framework.json`, `genomicVariant.json`) and the request and
informational schemas of `schemas/beacon/informational.json` are used. The schema is chosen by content, as
beacon-verifier does: `error` → error envelope; `meta.returnedGranularity` → boolean / count / result-set
envelope (and the entity's record schema, from `meta.returnedSchemas`); otherwise the shape of `response` tells
info, map, configuration, entry types, filtering terms or collections apart.

Our envelope schemas are closed (they describe what this node emits); another node may add members, which the
official schemas allow, so an unknown member is a warning here, never an error.
"""

from __future__ import annotations

import json
from functools import cache
from typing import Any

import jsonschema_rs

from gateway.beacon.validation import SCHEMA_DIR
from gateway.beacon.validation import validator as envelope_validator
from gateway.issues import Issue, Report
from schemas import compiled_issues

INFORMATIONAL_URI = "urn:gateway:beacon:informational"
_ENVELOPES = {"boolean": "booleanResponse", "count": "countResponse", "record": "resultsetsResponse"}
# response kind → definition in informational.json
INFORMATIONAL_KINDS = {
    "info": "infoResponse",
    "map": "mapResponse",
    "configuration": "configurationResponse",
    "entry_types": "entryTypesResponse",
    "filtering_terms": "filteringTermsResponse",
    "collections": "collectionsResponse",
    "service-info": "serviceInfo",
}


@cache
def _informational() -> dict:
    return json.loads((SCHEMA_DIR / "informational.json").read_text(encoding="utf-8"))


@cache
def informational_validator(definition: str) -> Any:
    registry = jsonschema_rs.Registry([(INFORMATIONAL_URI, _informational())])
    schema = {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$ref": f"{INFORMATIONAL_URI}#/$defs/{definition}",
    }
    return jsonschema_rs.validator_for(schema, registry=registry, validate_formats=True)


def is_beacon_response(doc: Any) -> bool:
    if not isinstance(doc, dict):
        return False
    if "meta" in doc and any(k in doc for k in ("response", "responseSummary", "error")):
        return True
    return {"id", "type", "organization"} <= doc.keys() and isinstance(doc.get("type"), dict)


def is_beacon_request(doc: Any) -> bool:
    if not isinstance(doc, dict) or is_beacon_response(doc):
        return False
    meta = doc.get("meta")
    return isinstance(doc.get("query"), dict) or (isinstance(meta, dict) and "apiVersion" in meta)


def response_kind(doc: dict) -> str:
    """Which Beacon response `doc` is: error, boolean, count, record, or an INFORMATIONAL_KINDS key."""
    if "error" in doc:
        return "error"
    meta = doc.get("meta") if isinstance(doc.get("meta"), dict) else {}
    response = doc.get("response") if isinstance(doc.get("response"), dict) else {}
    if "collections" in response:
        return "collections"
    if "returnedGranularity" in meta or "responseSummary" in doc:
        granularity = meta.get("returnedGranularity")
        return granularity if granularity in _ENVELOPES else "boolean"
    if "endpointSets" in response:
        return "map"
    if "maturityAttributes" in response:
        return "configuration"
    if "entryTypes" in response:
        return "entry_types"
    if "filteringTerms" in response or "resources" in response:
        return "filtering_terms"
    if "meta" not in doc and isinstance(doc.get("type"), dict):
        return "service-info"
    return "info"


def _entity(doc: dict) -> str:
    meta = doc.get("meta") if isinstance(doc.get("meta"), dict) else {}
    schemas = meta.get("returnedSchemas")
    first = schemas[0] if isinstance(schemas, list) and schemas and isinstance(schemas[0], dict) else {}
    entity = first.get("entityType")
    return entity if isinstance(entity, str) else ""


def validate_beacon_response(doc: Any, *, kind: str | None = None) -> Report:
    """A Beacon v2 response of any endpoint and granularity; `kind` forces one (see `response_kind`)."""
    if not isinstance(doc, dict):
        return Report([Issue.error("wrong-type", "a Beacon response must be a JSON object", "")])
    kind = kind or response_kind(doc)
    if kind == "error":
        compiled = envelope_validator(_entity(doc), "errorResponse")
    elif kind in _ENVELOPES:
        compiled = envelope_validator(_entity(doc), _ENVELOPES[kind])
    elif kind == "collections" and _entity(doc) in ("dataset", "cohort"):  # the records too, by their schema
        compiled = envelope_validator(_entity(doc), "collectionsResponse")
    else:
        compiled = informational_validator(INFORMATIONAL_KINDS[kind])
    return Report(compiled_issues(compiled, doc, target="input", open_objects=True))


def validate_beacon_request(doc: Any) -> Report:
    """A Beacon v2 POST request body: the framework's request schema (meta.apiVersion, query members)."""
    if not isinstance(doc, dict):
        return Report([Issue.error("wrong-type", "a Beacon request body must be a JSON object", "")])
    report = Report(compiled_issues(informational_validator("requestBody"), doc, target="input", open_objects=True))
    query = doc.get("query") if isinstance(doc.get("query"), dict) else {}
    pagination = query.get("pagination") if isinstance(query.get("pagination"), dict) else {}
    if pagination.get("limit") == 0:
        report.add(Issue.warning("invalid-value", "pagination.limit 0 asks for no records", "/query/pagination/limit"))
    return report
