"""The informational endpoints, generated from the node's configuration and the ONE entry-type registry.

`/` and `/info`, `/service-info` (bare GA4GH service-info 1.0, type org.ga4gh:beacon), `/configuration`,
`/map` (absolute URLs of this node), `/entry_types` and `/filtering_terms`: what they advertise is
exactly what the router serves, since both read the same `EntryTypes` collection.
"""

from __future__ import annotations

from gateway.beacon.registry import EntryType, EntryTypes
from gateway.beacon.request import API_VERSION
from gateway.config import Config

SPEC_URL = "https://github.com/ga4gh-beacon/beacon-v2"
SCHEMA_BASE = "https://raw.githubusercontent.com/ga4gh-beacon/beacon-v2/main/models/json/beacon-v2-default-model/"
_PRODUCTION = {"prod": "PROD", "test": "TEST", "dev": "DEV", "staging": "TEST"}


def api_root(config: Config, prefix: str = "/api") -> str:
    return config.node.base_url.rstrip("/") + prefix


def informational_meta(config: Config, schemas: list[dict] | None = None) -> dict:
    return {"beaconId": config.node.id, "apiVersion": API_VERSION, "returnedSchemas": schemas or []}


def _organization(config: Config) -> dict:
    node = config.node
    return {"id": node.organisation_id, "name": node.organisation_name, "contactUrl": node.contact_url}


def info(config: Config, prefix: str = "/api") -> dict:
    node = config.node
    return {
        "meta": informational_meta(config, [{"entityType": "info", "schema": "beacon-info-v2.0.0"}]),
        "response": {
            "id": node.id,
            "name": node.name,
            "apiVersion": API_VERSION,
            "environment": node.environment if node.environment in _PRODUCTION else "dev",
            "organization": _organization(config),
            "description": node.description,
            "version": node.version,
            "welcomeUrl": api_root(config, prefix),
            "alternativeUrl": api_root(config, prefix) + "/service-info",
        },
    }


def service_info(config: Config, prefix: str = "/api") -> dict:
    """GA4GH service-info 1.0: a bare object (no Beacon envelope)."""
    node = config.node
    organisation_url = node.contact_url if node.contact_url.startswith("http") else node.base_url
    return {
        "id": node.id,
        "name": node.name,
        "type": {"group": "org.ga4gh", "artifact": "beacon", "version": API_VERSION},
        "description": node.description,
        "organization": {"name": node.organisation_name, "url": organisation_url},
        "contactUrl": node.contact_url,
        "documentationUrl": SPEC_URL,
        "environment": node.environment,
        "version": node.version,
    }


def _definition(entry: EntryType) -> dict:
    return {
        "id": entry.id,
        "name": entry.name,
        "description": entry.description,
        "ontologyTermForThisType": dict(entry.ontology_term),
        "partOfSpecification": f"Beacon {API_VERSION}",
        "defaultSchema": {
            "id": entry.schema_id,
            "name": f"Default schema for {entry.name.lower()}",
            "referenceToSchemaDefinition": SCHEMA_BASE + entry.default_schema,
            "schemaVersion": API_VERSION,
        },
        "additionallySupportedSchemas": [],
        "nonFilteredQueriesAllowed": True,
        **({"aCollectionOf": [{"id": "individual", "name": "Individuals"}]} if entry.collection else {}),
    }


def entry_type_definitions(types: EntryTypes) -> dict:
    return {e.id: _definition(e) for e in types}


def entry_types_response(config: Config, types: EntryTypes) -> dict:
    return {
        "meta": informational_meta(config, [{"entityType": "entryType", "schema": "beacon-entry-types-v2.0.0"}]),
        "response": {"entryTypes": entry_type_definitions(types)},
    }


def configuration(config: Config, types: EntryTypes) -> dict:
    levels = sorted({d.security_level for d in config.datasets} or {"CONTROLLED"})
    return {
        "meta": informational_meta(config, [{"entityType": "configuration", "schema": "beacon-configuration-v2.0.0"}]),
        "response": {
            "$schema": SPEC_URL + "/blob/main/framework/json/configuration/beaconConfigurationSchema.json",
            "maturityAttributes": {"productionStatus": _PRODUCTION.get(config.node.environment, "DEV")},
            "securityAttributes": {"defaultGranularity": "boolean", "securityLevels": levels},
            "entryTypes": entry_type_definitions(types),
        },
    }


def beacon_map(config: Config, types: EntryTypes, prefix: str = "/api") -> dict:
    root = api_root(config, prefix)
    sets = {}
    for entry in types:
        endpoints = {
            f"{target}": {"returnedEntryType": _entity_of(types, target), "url": f"{root}/{entry.path}/{{id}}/{target}"}
            for target in entry.cross_links
        }
        if entry.accepts_filters or entry.collection:
            endpoints["filtering_terms"] = {
                "returnedEntryType": "filteringTerm",
                "url": f"{root}/{entry.path}/filtering_terms"
                if not entry.collection
                else f"{root}/{entry.path}/{{id}}/filtering_terms",
            }
        sets[entry.id] = {
            "entryType": entry.id,
            "rootUrl": f"{root}/{entry.path}",
            "singleEntryUrl": f"{root}/{entry.path}/{{id}}",
            "openAPIEndpointsDefinition": f"{root}/openapi.json",
            "endpoints": endpoints,
        }
    return {
        "meta": informational_meta(config, [{"entityType": "map", "schema": "beacon-map-v2.0.0"}]),
        "response": {
            "$schema": SPEC_URL + "/blob/main/framework/json/configuration/beaconMapSchema.json",
            "endpointSets": sets,
        },
    }


def _entity_of(types: EntryTypes, path: str) -> str:
    found = types.get(path)
    return found.id if found is not None else path


def filtering_terms_response(config: Config, terms: dict) -> dict:
    return {
        "meta": informational_meta(
            config, [{"entityType": "filteringTerm", "schema": "beacon-filtering-terms-v2.0.0"}]
        ),
        "response": terms,
    }
