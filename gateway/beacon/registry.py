"""One registry of the Beacon entry types this node serves.

Everything that lists entry types (/map, /entry_types, /configuration, the router,
returnedSchemas) reads this registry, so what is advertised is what is served.
An entry type names its parameter parser (requestParameters → typed query) and its
handler (typed request → result sets); the framework does the rest.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class ParsedParameters:
    query: Any  # the typed query handed to the entry type's handler (VariantQuery for g_variants)
    echo: dict  # the parameters as interpreted, JSON-ready, for meta.receivedRequestSummary


# A parameter parser turns the flat requestParameters of one entry type (and a location
# prefix for messages) into ParsedParameters; it raises BeaconRequestError when malformed.
ParameterParser = Callable[[Mapping[str, Any], str], ParsedParameters]


@dataclass(frozen=True)
class EntryType:
    id: str  # entity id in the default model, e.g. "genomicVariant"
    path: str  # URL segment under /api, e.g. "g_variants"
    name: str
    description: str
    schema_id: str  # returnedSchemas[].schema, e.g. "beacon-g_variant-v2.0.0"
    default_schema: str  # path under models/json/beacon-v2-default-model/ of the record schema
    ontology_term: Mapping[str, str]  # the concept the entry type stands for
    parameter_group: str  # the key under requestParameters, e.g. "g_variant"
    parse_parameters: ParameterParser
    handler: Callable[..., Any]  # (context, request, granularity, record_id) -> EntryAnswer
    cross_links: Mapping[str, Callable[..., Any]] = field(default_factory=dict)  # target path -> handler
    accepts_filters: bool = False  # False: filters are reported as unanswerable (a warning), not applied
    collection: bool = False  # datasets/cohorts: record granularity answers beaconCollectionsResponse

    @property
    def returned_schema(self) -> dict[str, str]:
        return {"entityType": self.id, "schema": self.schema_id}


_ENTRY_TYPES: dict[str, EntryType] = {}


def register_entry_type(entry_type: EntryType) -> EntryType:
    """Add (or replace) an entry type; issue-4 entry types call this at import time."""
    _ENTRY_TYPES[entry_type.path] = entry_type
    return entry_type


def entry_type_for_path(path: str) -> EntryType | None:
    _load_builtin()
    return _ENTRY_TYPES.get(path)


def entry_types() -> tuple[EntryType, ...]:
    _load_builtin()
    return tuple(_ENTRY_TYPES.values())


def register_cross_link(source_path: str, target_path: str, handler: Callable[..., Any]) -> None:
    """Serve /{source}/{id}/{target} with `handler(context, request, granularity, record_id)`."""
    _load_builtin()
    source = _ENTRY_TYPES[source_path]
    _ENTRY_TYPES[source_path] = EntryType(
        **{**source.__dict__, "cross_links": {**source.cross_links, target_path: handler}}
    )


def _load_builtin() -> None:
    # Importing the modules registers the entry types; done lazily to avoid an import cycle.
    from gateway.beacon import links  # noqa: F401  (imports every entry type, then adds the cross-links)
