"""Response granularity: what was asked, what the node allows, what is returned.

`allowed_granularity` is the one place that decides the ceiling; the security policy
(issue 6) replaces its body, not its callers.
"""

from __future__ import annotations

from collections.abc import Iterable

from gateway.config import Config

GRANULARITIES = ("boolean", "count", "record")  # ascending detail
_RANK = {g: i for i, g in enumerate(GRANULARITIES)}


def coarsest(*granularities: str) -> str:
    return min(granularities, key=_RANK.__getitem__)


def allowed_granularity(config: Config, dataset_ids: Iterable[str]) -> str:
    """The most detailed granularity every queried dataset allows (per-dataset `policy.max_granularity`)."""
    allowed = "record"
    for dataset_id in dataset_ids:
        dataset = config.dataset(dataset_id)
        ceiling = str(dataset.policy.get("max_granularity", "record")) if dataset else "record"
        allowed = coarsest(allowed, ceiling if ceiling in _RANK else "boolean")  # unknown value: least detail
    return allowed


def returned_granularity(requested: str, config: Config, dataset_ids: Iterable[str]) -> str:
    return coarsest(requested, allowed_granularity(config, dataset_ids))
