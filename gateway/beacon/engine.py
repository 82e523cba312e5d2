"""Answer one parsed Beacon request: datasets, granularity, the entry type's handler, the envelope.

HTTP-free: the blueprint parses, calls `answer`, and sends what comes back.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

from gateway.beacon.registry import EntryType
from gateway.beacon.request import BeaconRequest, BeaconRequestError
from gateway.beacon.response import EntryAnswer, build_error, build_response
from gateway.beacon.validation import ResponseInvalid, validate_response
from gateway.config import Config
from gateway.issues import Issue
from gateway.security.guard import AccessDenied, admit, protect

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


def known_dataset_ids(ctx: QueryContext) -> tuple[str, ...]:
    """Datasets declared in the configuration and those the variant store holds, in a stable order."""
    ids = [d.id for d in ctx.config.datasets]
    listing = getattr(ctx.variants, "datasets", None) if ctx.variants is not None else None
    if callable(listing):
        ids.extend(listing())
    return tuple(dict.fromkeys(ids))


def resolve_datasets(ctx: QueryContext, request: BeaconRequest) -> tuple[str, ...]:
    known = known_dataset_ids(ctx)
    if request.dataset_ids is None:
        return known
    unknown = [d for d in request.dataset_ids if d not in known]
    if unknown:
        where = "datasetIds"
        raise BeaconRequestError(
            [Issue.error("beacon-request", f"unknown dataset(s) in datasetIds: {', '.join(unknown)}", where)]
        )
    return request.dataset_ids


def answer(
    ctx: QueryContext,
    entry: EntryType,
    request: BeaconRequest,
    record_id: str | None = None,
    cross_link: str | None = None,
) -> tuple[dict, int]:
    """The response body and HTTP status for a parsed request."""
    node = ctx.config.node
    try:
        datasets = resolve_datasets(ctx, request)
        # The security hook: who may see which datasets at which granularity (gateway.security.guard).
        admission = admit(ctx, entry, request, datasets, record_id, cross_link)
        datasets, granularity = admission.datasets, admission.granularity
        handler = entry.handler if cross_link is None else entry.cross_links.get(cross_link)
        if handler is None:
            raise NotFound(f"/{entry.path}/{{id}}/{cross_link} is not served by this node")
        result: EntryAnswer = handler(ctx, request, granularity, datasets, record_id)
        result, granularity = protect(ctx, entry, request, admission, result)
    except AccessDenied as exc:
        return build_error(node, [Issue.error(exc.code, exc.message)], exc.status, entry, request), exc.status
    except BeaconRequestError as exc:
        return build_error(node, exc.issues, 400, entry, request), 400
    except NotFound as exc:
        return build_error(node, [Issue.error("not-found", str(exc))], 404, entry, request), 404
    if not entry.accepts_filters and request.filters:
        result.info.setdefault("warnings", []).append(
            f"filters are not applied to {entry.path}: {', '.join(f['id'] for f in request.filters)}"
        )
    body = build_response(node, entry, request, granularity, result)
    try:
        validate_response(entry, granularity, body)
    except ResponseInvalid as exc:
        # A response that breaks our own schema is a bug: never send it.
        log.error("invalid %s response: %s", entry.path, exc)
        issue = Issue.error("internal", "the response failed validation against the node's Beacon schema")
        return build_error(node, [issue], 500, entry, request), 500
    return body, 200
