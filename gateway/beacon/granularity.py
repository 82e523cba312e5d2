"""Response granularity: what was asked, what the node's policy allows this caller, what is returned.

`allowed_granularity` is the one place that decides the ceiling: per dataset, the caller's
tier (gateway.security.caller) and the dataset's policy (gateway.security.policy). A query
over several datasets gets the coarsest ceiling among them. Callers must already have left
out the datasets the caller may not see at all (gateway.security.guard does).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from gateway.config import Config

GRANULARITIES = ("boolean", "count", "record")  # ascending detail
_RANK = {g: i for i, g in enumerate(GRANULARITIES)}


def coarsest(*granularities: str) -> str:
    return min(granularities, key=_RANK.__getitem__)


def allowed_granularity(
    config: Config, dataset_ids: Iterable[str], caller: Any = None, entry_path: str | None = None
) -> str:
    """The most detailed granularity every queried dataset allows `caller` (None: an anonymous caller)."""
    from gateway.security.caller import ANONYMOUS, dataset_config
    from gateway.security.policy import policy_for

    caller = caller or ANONYMOUS
    allowed = "record"
    for dataset_id in dataset_ids:
        tier = caller.tier_for(dataset_config(config, dataset_id), config.node.base_url)
        ceiling = policy_for(config, dataset_id).ceiling(tier, entry_path)
        allowed = coarsest(allowed, ceiling or "boolean")  # not served: least detail (never reached via the guard)
    return allowed


def returned_granularity(
    requested: str, config: Config, dataset_ids: Iterable[str], caller: Any = None, entry_path: str | None = None
) -> str:
    return coarsest(requested, allowed_granularity(config, dataset_ids, caller, entry_path))
