"""Answer one parsed Beacon request: datasets, granularity, the entry type's handler, the envelope.

HTTP-free: the blueprint parses, calls `answer`, and sends what comes back.
"""

from __future__ import annotations

import logging
import os
import time
from dataclasses import dataclass, field
from typing import Any

import sqlalchemy as sa

from gateway.beacon.handovers import add_handovers
from gateway.beacon.registry import EntryType, entry_type_for_path
from gateway.beacon.request import BeaconRequest, BeaconRequestError
from gateway.beacon.response import EntryAnswer, build_error, build_response
from gateway.beacon.validation import ResponseInvalid, validate_response
from gateway.config import Config
from gateway.issues import Issue
from gateway.security.guard import AccessDenied, admit, protect
from gateway.variants.layout import DATASET_ID, POINTER

log = logging.getLogger(__name__)


@dataclass
class QueryContext:
    """What handlers may use: configuration, the pseudonymisation key, the stores."""

    config: Config
    key: bytes
    variants: Any = None  # gateway.variants.store.VariantStore
    store: Any = None  # gateway.store.metadata.MetadataStore
    extra: dict = field(default_factory=dict)


class NotFound(LookupError):
    pass


DATASET_LIST_TTL_S = 2.0  # the store's dataset ids are re-read at most this often per process


def cache_of(ctx: QueryContext) -> dict:
    """Per-application cache shared by the requests (lives in the services' `extra`)."""
    return ctx.extra.setdefault("beacon_cache", {})


def _store_dataset_ids(ctx: QueryContext) -> list[str]:
    if ctx.store is None:
        return []
    cache = cache_of(ctx)
    now = time.monotonic()
    cached = cache.get("store_datasets")
    if cached and now - cached[0] < DATASET_LIST_TTL_S:
        return cached[1]
    from gateway.store.tables import datasets

    with ctx.store.engine.connect() as connection:
        ids = [r[0] for r in connection.execute(sa.select(datasets.c.id).order_by(datasets.c.id))]
    cache["store_datasets"] = (now, ids)
    return ids


_STABLE_DIR_S = 1.0  # a directory listing is reused once the directory has not changed for this long


def _variant_dataset_ids(ctx: QueryContext) -> list[str]:
    """The variant store's datasets (those with a live version), as `VariantStore.datasets()` lists them.

    The directory listing is reused while the store's directory is unchanged (its mtime; trusted only
    when older than the filesystem's timestamp granularity); whether each dataset has a live version
    (its CURRENT pointer) is still checked on every call, so a finished ingest shows at once.
    """
    store = ctx.variants
    listing = getattr(store, "datasets", None) if store is not None else None
    if not callable(listing):
        return []
    root = getattr(store, "root", None)
    if not isinstance(root, (str, os.PathLike)):
        return list(listing())
    root = os.fspath(root)
    try:
        mtime = os.stat(root).st_mtime_ns
    except OSError:
        return list(listing())
    cache = cache_of(ctx)
    cached = cache.get("variant_dirs")
    if cached is None or cached[0] != root or cached[1] != mtime:
        names = sorted(n for n in os.listdir(root) if DATASET_ID.match(n))
        if time.time_ns() - mtime < _STABLE_DIR_S * 1e9:  # a change within the same timestamp tick is invisible
            return [n for n in names if os.path.exists(os.path.join(root, n, POINTER))]
        cached = (root, mtime, names)
        cache["variant_dirs"] = cached
    return [n for n in cached[2] if os.path.exists(os.path.join(root, n, POINTER))]


def known_dataset_ids(ctx: QueryContext, test_mode: bool = False) -> tuple[str, ...]:
    """Datasets declared in the configuration, held by the metadata store or the variant store, in a stable order.

    The synthetic demo dataset answers `testMode` requests only, unless the node runs as the demo (--demo).
    """
    from gateway.demo import DEMO_DATASET_ID

    if test_mode:
        return (DEMO_DATASET_ID,)
    ids = [d.id for d in ctx.config.datasets]
    ids.extend(_store_dataset_ids(ctx))
    ids.extend(_variant_dataset_ids(ctx))
    if not ctx.config.extra.get("demo"):
        ids = [d for d in ids if d != DEMO_DATASET_ID]
    return tuple(dict.fromkeys(ids))


def resolve_datasets(ctx: QueryContext, request: BeaconRequest) -> tuple[str, ...]:
    if request.test_mode:
        _ensure_synthetic(ctx)
    known = known_dataset_ids(ctx, request.test_mode)
    if request.dataset_ids is None:
        return known
    unknown = [d for d in request.dataset_ids if d not in known]
    if unknown:
        where = "datasetIds"
        raise BeaconRequestError(
            [Issue.error("beacon-request", f"unknown dataset(s) in datasetIds: {', '.join(unknown)}", where)]
        )
    return request.dataset_ids


def _ensure_synthetic(ctx: QueryContext) -> None:
    """testMode answers from the synthetic cohort: generated on first use when the node was not started with it."""
    from gateway.demo import demo_config, demo_loaded, load_demo

    services = ctx.extra.get("services")
    if services is None or ctx.store is None:
        return
    if not cache_of(ctx).get("synthetic_ready"):
        if not demo_loaded(services):
            load_demo(services)
        services.config = demo_config(services.config)
        cache_of(ctx)["synthetic_ready"] = True
    ctx.config = services.config


def answer(
    ctx: QueryContext,
    entry: EntryType,
    request: BeaconRequest,
    record_id: str | None = None,
    cross_link: str | None = None,
) -> tuple[dict, int]:
    """The response body and HTTP status for a parsed request."""
    node = ctx.config.node
    # A cross-link answers with the target entry type's records: its envelope, schema and policy.
    target = entry if cross_link is None else (entry_type_for_path(cross_link) or entry)
    try:
        datasets = resolve_datasets(ctx, request)
        # The security hook: who may see which datasets at which granularity (gateway.security.guard).
        admission = admit(ctx, target, request, datasets, record_id, cross_link)
        datasets, granularity = admission.datasets, admission.granularity
        handler = entry.handler if cross_link is None else entry.cross_links.get(cross_link)
        if handler is None:
            raise NotFound(f"/{entry.path}/{{id}}/{cross_link} is not served by this node")
        result: EntryAnswer = handler(ctx, request, granularity, datasets, record_id)
        result, granularity = protect(ctx, target, request, admission, result)
        result = add_handovers(ctx, target.path, granularity, result)
    except AccessDenied as exc:
        return build_error(node, [Issue.error(exc.code, exc.message)], exc.status, target, request), exc.status
    except BeaconRequestError as exc:
        return build_error(node, exc.issues, 400, target, request), 400
    except NotFound as exc:
        return build_error(node, [Issue.error("not-found", str(exc))], 404, target, request), 404
    if not target.accepts_filters and request.filters:
        result.info.setdefault("warnings", []).append(
            f"filters are not applied to {target.path}: {', '.join(f['id'] for f in request.filters)}"
        )
    body = build_response(node, target, request, granularity, result)
    try:
        validate_response(target, granularity, body)
    except ResponseInvalid as exc:
        # A response that breaks our own schema is a bug: never send it.
        log.error("invalid %s response: %s", target.path, exc)
        issue = Issue.error("internal", "the response failed validation against the node's Beacon schema")
        return build_error(node, [issue], 500, target, request), 500
    return body, 200
