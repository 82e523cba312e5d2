"""Answer one parsed Beacon request: datasets, access, the entry type's handler, the envelope.

HTTP-free: the blueprint parses, calls `answer`, and sends what comes back.
"""

from __future__ import annotations

import logging
import time
from dataclasses import replace
from typing import Any

from gateway.beacon.access import AccessDenied, admit, protect
from gateway.beacon.context import QueryContext
from gateway.beacon.registry import EntryType
from gateway.beacon.request import BeaconRequest, BeaconRequestError
from gateway.beacon.response import EntryAnswer, build_error, build_response
from gateway.beacon.validation import ResponseInvalid, validate_response
from gateway.errors import NotFound
from gateway.issues import Issue

log = logging.getLogger(__name__)

DATASET_LIST_TTL_S = 2.0  # the metadata store's dataset ids are re-read at most this often per process


def _store_dataset_ids(ctx: QueryContext) -> list[str]:
    if ctx.store is None:
        return []
    now = time.monotonic()
    cached = ctx.cache.get("store_datasets")
    if cached and now - cached[0] < DATASET_LIST_TTL_S:
        return list(cached[1])
    ids = ctx.store.dataset_ids()
    ctx.cache["store_datasets"] = (now, ids)
    return list(ids)


def known_dataset_ids(ctx: QueryContext, test_mode: bool = False) -> tuple[str, ...]:
    """Datasets declared in the configuration, held by the metadata store or the variant store, in a stable order.

    The testMode data's dataset answers `testMode` requests only, unless the node runs as the demo (--demo).
    """
    if test_mode:
        return (ctx.test_data.dataset_id,) if ctx.test_data is not None else ()
    ids = [d.id for d in ctx.config.datasets]
    ids.extend(_store_dataset_ids(ctx))
    if ctx.variants is not None:
        ids.extend(ctx.variants.datasets())
    if ctx.test_data is not None and ctx.test_data.hidden:
        ids = [d for d in ids if d != ctx.test_data.dataset_id]
    return tuple(dict.fromkeys(ids))


def resolve_datasets(ctx: QueryContext, request: BeaconRequest) -> tuple[str, ...]:
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


def _for_test_mode(ctx: QueryContext) -> QueryContext:
    """testMode answers from the testMode data (generated on first use), under the configuration declaring them."""
    if ctx.test_data is None or ctx.store is None:
        return ctx
    return replace(ctx, config=ctx.test_data.prepare())


def answer(
    ctx: QueryContext,
    entry: EntryType,
    request: BeaconRequest,
    record_id: str | None = None,
    cross_link: str | None = None,
    cross_link_type: EntryType | None = None,
) -> tuple[dict[str, Any], int]:
    """The response body and HTTP status for a parsed request.

    `cross_link` is the path of /{entry}/{id}/{cross_link}, `cross_link_type` the entry type of that
    path (None when the node serves no such entry type: then the answer is 404).
    """
    if request.test_mode:
        ctx = _for_test_mode(ctx)
    node = ctx.config.node
    # A cross-link answers with the target entry type's records: its envelope, schema and policy.
    target = entry if cross_link is None else (cross_link_type or entry)
    try:
        datasets = resolve_datasets(ctx, request)
        # Who may see which datasets at which granularity (gateway.beacon.access).
        admission = admit(ctx, target, request, datasets, record_id, cross_link)
        datasets, granularity = admission.datasets, admission.granularity
        handler = entry.handler if cross_link is None else entry.cross_links.get(cross_link)
        if handler is None:
            raise NotFound(f"/{entry.path}/{{id}}/{cross_link} is not served by this node")
        result: EntryAnswer = handler(ctx, request, granularity, datasets, record_id)
        result, granularity = protect(ctx, target, request, admission, result)
    except AccessDenied as exc:
        return build_error(node, [Issue.error(exc.code, exc.message)], exc.status, target, request), exc.status
    except BeaconRequestError as exc:
        return build_error(node, list(exc.issues), 400, target, request), 400
    except NotFound as exc:
        return build_error(node, [Issue.error("not-found", exc.message)], 404, target, request), 404
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
