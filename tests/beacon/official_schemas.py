"""Conformance harness: validate Beacon responses against the OFFICIAL schemas in ../shared/reference.

The upstream defects are worked around here, in resolution only, never by relaxing a check:
- absolute `https://raw.githubusercontent.com/ga4gh-beacon/beacon-v2/main/...` refs → the local copy;
- `https://w3id.org/ga4gh/schema/vrs/1.3/vrs.json` → ../shared/reference/vrs-1.3/vrs.json (draft-07);
- the dangling `models/.../common/info.json` → framework/json/common/info.json;
- the OpenAPI `oneOf` over the three result envelopes always fails (the schemas are open), so the
  envelope is chosen by `meta.returnedGranularity`, as beacon-verifier does (and beaconCollectionsResponse
  when a record answer holds `response.collections`, as /datasets and /cohorts do).
Usable from any test: `check_response(body)` returns the list of error messages (empty: conformant).
"""

from __future__ import annotations

from functools import cache
from pathlib import Path

from jsonschema import Draft202012Validator
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT202012

REFERENCE = (Path(__file__).resolve().parents[2] / ".." / "shared" / "reference").resolve()
BEACON = REFERENCE / "beacon-v2"
FRAMEWORK = BEACON / "framework" / "json"
MODELS = BEACON / "models" / "json" / "beacon-v2-default-model"
RAW_PREFIX = "https://raw.githubusercontent.com/ga4gh-beacon/beacon-v2/main/"
VRS_URI = "https://w3id.org/ga4gh/schema/vrs/1.3/vrs.json"

ENVELOPES = {
    "boolean": "responses/beaconBooleanResponse.json",
    "count": "responses/beaconCountResponse.json",
    "record": "responses/beaconResultsetsResponse.json",
}
# meta.returnedSchemas[].entityType → the entity's record schema
RECORD_SCHEMAS = {
    "genomicVariant": "genomicVariations/defaultSchema.json",
    "individual": "individuals/defaultSchema.json",
    "biosample": "biosamples/defaultSchema.json",
    "analysis": "analyses/defaultSchema.json",
    "run": "runs/defaultSchema.json",
    "dataset": "datasets/defaultSchema.json",
    "cohort": "cohorts/defaultSchema.json",
}


def _local_path(uri: str) -> Path:
    if uri.startswith(RAW_PREFIX):
        return BEACON / uri[len(RAW_PREFIX) :]
    if uri == VRS_URI:
        return REFERENCE / "vrs-1.3" / "vrs.json"
    if uri.startswith("file://"):
        path = Path(uri[len("file://") :])
        dangling = MODELS / "common" / "info.json"
        return FRAMEWORK / "common" / "info.json" if path == dangling and not path.exists() else path
    raise LookupError(f"refusing to fetch {uri}: not a local reference schema")


@cache
def _resource(uri: str) -> Resource:
    import json

    contents = json.loads(_local_path(uri).read_text())
    return Resource.from_contents(contents, default_specification=DRAFT202012)


@cache
def registry() -> Registry:
    return Registry(retrieve=_resource)


@cache
def validator(path: Path) -> Draft202012Validator:
    uri = path.resolve().as_uri()
    return Draft202012Validator({"$ref": uri}, registry=registry(), format_checker=Draft202012Validator.FORMAT_CHECKER)


def errors_against(path: Path, instance) -> list[str]:
    return [f"{'/'.join(map(str, e.absolute_path))}: {e.message}" for e in validator(path).iter_errors(instance)]


INFORMATIONAL = {
    "info": "responses/beaconInfoResponse.json",
    "configuration": "responses/beaconConfigurationResponse.json",
    "map": "responses/beaconMapResponse.json",
    "entry_types": "responses/beaconEntryTypesResponse.json",
    "filtering_terms": "responses/beaconFilteringTermsResponse.json",
    "service-info": "responses/ga4gh-service-info-1-0-0-schema.json",
}


def check_informational(kind: str, body: dict) -> list[str]:
    """Conformance errors of an informational response (`kind` names the endpoint, as in INFORMATIONAL)."""
    return errors_against(FRAMEWORK / INFORMATIONAL[kind], body)


def check_response(body: dict) -> list[str]:
    """Every conformance error of a Beacon entry-type response (boolean, count, record, collections or error)."""
    if "error" in body:
        return errors_against(FRAMEWORK / "responses" / "beaconErrorResponse.json", body)
    meta = body.get("meta") or {}
    granularity = meta.get("returnedGranularity")
    if granularity not in ENVELOPES:
        return [f"meta.returnedGranularity is {granularity!r}"]
    collections = granularity == "record" and "collections" in (body.get("response") or {})
    envelope = "responses/beaconCollectionsResponse.json" if collections else ENVELOPES[granularity]
    errors = errors_against(FRAMEWORK / envelope, body)
    if collections:
        entities = {s.get("entityType") for s in meta.get("returnedSchemas", [])}
        schemas = [MODELS / RECORD_SCHEMAS[e] for e in entities if e in RECORD_SCHEMAS]
        if not schemas:
            errors.append(f"no official record schema for returnedSchemas {sorted(map(str, entities))}")
        for j, record in enumerate(body["response"]["collections"]):
            for schema in schemas:
                errors += [f"collections/{j}/{e}" for e in errors_against(schema, record)]
        return errors
    if granularity == "record":
        entities = {s.get("entityType") for s in meta.get("returnedSchemas", [])}
        record_schemas = [MODELS / RECORD_SCHEMAS[e] for e in entities if e in RECORD_SCHEMAS]
        if not record_schemas:
            errors.append(f"no official record schema for returnedSchemas {sorted(map(str, entities))}")
        for i, rs in enumerate((body.get("response") or {}).get("resultSets", [])):
            for j, record in enumerate(rs.get("results", [])):
                for schema in record_schemas:
                    errors += [f"resultSets/{i}/results/{j}/{e}" for e in errors_against(schema, record)]
    return errors
