"""The Beacon entry types a node serves, as one explicit, immutable collection.

`gateway.beacon.entry_types.BEACON_ENTRY_TYPES` lists the built-in ones; `app.create_app` hands that
collection to the Beacon blueprint, and everything that lists entry types (/map, /entry_types,
/configuration, the router, returnedSchemas, OpenAPI) reads the collection it was given, so what is
advertised is what is served. An entry type names its parameter parser (requestParameters → typed
query) and its handler (typed request → EntryAnswer); the engine does the rest.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from gateway.beacon.context import EntryHandler


@dataclass(frozen=True)
class ParsedParameters:
    query: Any  # the typed query handed to the entry type's handler (VariantQuery for g_variants)
    echo: dict[str, Any]  # the parameters as interpreted, JSON-ready, for meta.receivedRequestSummary


# A parameter parser turns the flat requestParameters of one entry type (and a location
# prefix for messages) into ParsedParameters; it raises BeaconRequestError when malformed.
ParameterParser = Callable[[Mapping[str, Any], str], ParsedParameters]


@dataclass(frozen=True)
class EntryType:
    id: str  # entity id in the default model, e.g. "genomicVariation"
    path: str  # URL segment under /api, e.g. "g_variants"
    name: str
    description: str
    schema_id: str  # returnedSchemas[].schema, e.g. "beacon-g_variant-v2.0.0"
    default_schema: str  # path under models/json/beacon-v2-default-model/ of the record schema
    ontology_term: Mapping[str, str]  # the concept the entry type stands for
    parameter_group: str  # the key under requestParameters, e.g. "g_variant"
    parse_parameters: ParameterParser
    handler: EntryHandler  # (context, request, granularity, datasets, record_id) -> EntryAnswer
    cross_links: Mapping[str, EntryHandler] = field(default_factory=dict)  # target path -> handler
    accepts_filters: bool = False  # False: filters are reported as unanswerable (a warning), not applied
    collection: bool = False  # datasets/cohorts: record granularity answers beaconCollectionsResponse

    @property
    def returned_schema(self) -> dict[str, str]:
        return {"entityType": self.id, "schema": self.schema_id}


class EntryTypes:
    """An ordered, immutable collection of entry types, looked up by URL path."""

    def __init__(self, types: tuple[EntryType, ...]):
        self._types = types
        self._by_path = {t.path: t for t in types}
        if len(self._by_path) != len(types):
            raise ValueError("two entry types share a path")

    def __iter__(self) -> Iterator[EntryType]:
        return iter(self._types)

    def __len__(self) -> int:
        return len(self._types)

    def get(self, path: str | None) -> EntryType | None:
        return self._by_path.get(path) if path is not None else None

    def with_cross_links(self, links: Mapping[tuple[str, str], EntryHandler]) -> EntryTypes:
        """A copy in which `links[(source, target)]` serves /{source}/{id}/{target}."""
        added: dict[str, dict[str, EntryHandler]] = {}
        for (source, target), handler in links.items():
            added.setdefault(source, {})[target] = handler
        return EntryTypes(
            tuple(
                replace(t, cross_links={**t.cross_links, **added[t.path]}) if t.path in added else t
                for t in self._types
            )
        )

    def adding(self, *types: EntryType) -> EntryTypes:
        """A copy with more entry types (a deployment's own, or a benchmark's)."""
        return EntryTypes((*self._types, *types))
