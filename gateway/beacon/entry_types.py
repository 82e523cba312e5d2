"""The built-in Beacon entry types, listed once: the collection `app.create_app` gives the Beacon blueprint.

The order is the order in which /map, /entry_types, /configuration and OpenAPI list them.
"""

from __future__ import annotations

from gateway.beacon.analyses import ANALYSES, RUNS
from gateway.beacon.collections import COHORTS, DATASETS
from gateway.beacon.g_variants import G_VARIANTS
from gateway.beacon.individuals import BIOSAMPLES, INDIVIDUALS
from gateway.beacon.links import CROSS_LINKS
from gateway.beacon.registry import EntryType, EntryTypes

BEACON_ENTRY_TYPES = EntryTypes(
    (INDIVIDUALS, BIOSAMPLES, DATASETS, COHORTS, ANALYSES, RUNS, G_VARIANTS)
).with_cross_links(CROSS_LINKS)


def entry_type_for_path(path: str) -> EntryType | None:
    """A built-in entry type by its URL path (the network room parses peers' requests with these)."""
    return BEACON_ENTRY_TYPES.get(path)
