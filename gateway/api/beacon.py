"""The Beacon v2 HTTP surface (mounted at /api): parse, answer, send. No query logic here.

Routes are generated from the entry types the blueprint is given (app.create_app gives it
gateway.beacon.entry_types.BEACON_ENTRY_TYPES): /{entry}, /{entry}/{id} and /{entry}/{id}/{other}
for every entry type, GET and POST; the informational endpoints (/, /info, /service-info,
/configuration, /map, /entry_types, /filtering_terms, /{entry}/filtering_terms,
/{collection}/{id}/filtering_terms) and /openapi.json are generated from the same collection.
"""

from __future__ import annotations

import threading
from collections.abc import Callable

from flask import Blueprint, Response, request

from gateway.api.context import services
from gateway.api.hooks import audit_notes, current_caller
from gateway.api.render import json_response
from gateway.beacon import collections, informational, ontology, openapi
from gateway.beacon.access import AccessDenied, admit
from gateway.beacon.context import QueryContext
from gateway.beacon.engine import answer, known_dataset_ids
from gateway.beacon.registry import EntryType, EntryTypes
from gateway.beacon.request import BeaconRequest, BeaconRequestError, parse_get, parse_post
from gateway.beacon.response import build_error
from gateway.issues import Issue
from gateway.jsonio import JSONInputError, loads_strict
from gateway.security.tokens import TokenError


def _context() -> QueryContext:
    """Per request: who asks (verified by the security hook) and the notes their audit record is built from."""
    s = services()
    return QueryContext(
        config=s.config,
        key=s.key,
        variants=s.variants,
        store=s.store,
        caller=current_caller(),
        security=s.security,
        audit=audit_notes(),
        cache=s.beacon_cache,
        test_data=s.test_data,
    )


def _parse(entry: EntryType) -> BeaconRequest:
    if request.method == "GET":
        return parse_get(entry, request.args.to_dict(flat=False))
    data = request.get_data(cache=False)
    if not data.strip():
        return parse_post(entry, {})
    try:
        body = loads_strict(data, max_depth=services().config.max_json_depth)
    except JSONInputError as exc:
        raise BeaconRequestError([exc.issue]) from exc
    return parse_post(entry, body)


def _serve(types: EntryTypes, path: str, record_id: str | None = None, cross_link: str | None = None) -> Response:
    entry = types.get(path)
    node = services().config.node
    if entry is None:  # a route exists only for the blueprint's types; this guards a mismatch
        return json_response(build_error(node, [Issue.error("not-found", f"/{path} is not served")], 404), 404)
    # A cross-link takes the target entry type's parameters and answers with its records.
    linked = types.get(cross_link)
    target = linked or entry
    try:
        parsed = _parse(target)
    except BeaconRequestError as exc:
        return json_response(build_error(node, exc.issues, 400, target), 400)
    try:
        context = _context()
    except TokenError as exc:  # only reached where the app-wide hook is not installed
        issue = Issue.error("unauthorised", f"the bearer token was rejected: {exc.reason}")
        return json_response(build_error(node, [issue], 401, entry, parsed), 401)
    body, status = answer(context, entry, parsed, record_id, cross_link, linked)
    return json_response(body, status)


def _prefix(suffix: str) -> str:
    """The mount point of this blueprint (/api, or /local/api in network mode), from the request path."""
    path = request.path.rstrip("/")
    return (
        path[: len(path) - len(suffix.rstrip("/"))]
        if suffix.rstrip("/") and path.endswith(suffix.rstrip("/"))
        else path
    )


def _informational(build):
    """Run an informational builder; the request body of a POST is read strictly but has nothing to ask."""
    node = services().config.node
    if request.method == "POST":
        data = request.get_data(cache=False)
        if data.strip():
            try:
                loads_strict(data, max_depth=services().config.max_json_depth)
            except JSONInputError as exc:
                return json_response(build_error(node, [exc.issue], 400), 400)
    return json_response(build())


def _visible_datasets(types: EntryTypes, context: QueryContext, only: tuple[str, ...] | None = None) -> tuple[str, ...]:
    """The datasets whose terms this caller may learn: those the security policy serves them for individuals."""
    known = known_dataset_ids(context)
    datasets = known if only is None else tuple(d for d in only if d in known)
    entry = types.get("individuals")
    if entry is None:  # a node without individuals has no filtering terms to hide
        return datasets
    probe = BeaconRequest(entry_type="individuals", requested_granularity="count")
    try:
        return admit(context, entry, probe, datasets).datasets
    except AccessDenied:
        return ()


def _filtering_terms(
    types: EntryTypes, scope: str | None = None, collection: str | None = None, record_id: str | None = None
) -> Response:
    context = _context()
    only = None
    if collection == "datasets":
        only = (record_id or "",)
    elif collection == "cohorts":
        only = (collections.dataset_of_cohort(record_id or "") or "",)
    datasets = _visible_datasets(types, context, only)
    terms = collections.filtering_terms(context, datasets, scope)
    return _informational(lambda: informational.filtering_terms_response(context.config, terms))


def beacon_blueprint(types: EntryTypes) -> Blueprint:
    """The Beacon API over `types` (the one explicit list of entry types this node serves)."""
    # Load the embedded HPO (≈1.5 s) now, off the request path: the first descendant filter must not pay it.
    threading.Thread(target=ontology.warm, name="hpo-warm", daemon=True).start()
    bp = Blueprint("beacon", __name__)
    methods = ["GET", "POST"]
    _add_informational(bp, types, methods)
    for entry in types:
        view = _bind(types, entry.path)
        bp.add_url_rule(f"/{entry.path}", f"{entry.path}_list", view, methods=methods)
        bp.add_url_rule(f"/{entry.path}/<record_id>", f"{entry.path}_one", view, methods=methods)
        bp.add_url_rule(f"/{entry.path}/<record_id>/<cross_link>", f"{entry.path}_cross", view, methods=methods)
    return bp


def _add_informational(bp: Blueprint, types: EntryTypes, methods: list[str]) -> None:
    def cfg():
        return services().config

    views = {
        "/": lambda: _informational(lambda: informational.info(cfg(), _prefix("/"))),
        "/info": lambda: _informational(lambda: informational.info(cfg(), _prefix("/info"))),
        "/service-info": lambda: _informational(lambda: informational.service_info(cfg(), _prefix("/service-info"))),
        "/configuration": lambda: _informational(lambda: informational.configuration(cfg(), types)),
        "/map": lambda: _informational(lambda: informational.beacon_map(cfg(), types, _prefix("/map"))),
        "/entry_types": lambda: _informational(lambda: informational.entry_types_response(cfg(), types)),
        "/filtering_terms": lambda: _filtering_terms(types),
        "/openapi.json": lambda: json_response(openapi.openapi_document(cfg(), types, _prefix("/openapi.json"))),
    }
    for rule, view in views.items():
        name = "info_" + (rule.strip("/").replace("-", "_").replace(".", "_") or "root")
        view.__name__ = name
        bp.add_url_rule(rule, name, view, methods=methods if rule != "/openapi.json" else ["GET"])
    for entry in types:
        if entry.accepts_filters:
            bp.add_url_rule(
                f"/{entry.path}/filtering_terms",
                f"{entry.path}_filtering_terms",
                _scoped_terms(types, entry.path),
                methods=methods,
            )
        if entry.collection:
            bp.add_url_rule(
                f"/{entry.path}/<record_id>/filtering_terms",
                f"{entry.path}_id_filtering_terms",
                _collection_terms(types, entry.path),
                methods=methods,
            )


def _scoped_terms(types: EntryTypes, path: str) -> Callable[[], Response]:
    def view() -> Response:
        return _filtering_terms(types, scope=path)

    view.__name__ = f"filtering_terms_{path}"
    return view


def _collection_terms(types: EntryTypes, path: str) -> Callable[[str], Response]:
    def view(record_id: str) -> Response:
        return _filtering_terms(types, collection=path, record_id=record_id)

    view.__name__ = f"filtering_terms_of_{path}"
    return view


def _bind(types: EntryTypes, path: str) -> Callable[..., Response]:
    def view(record_id: str | None = None, cross_link: str | None = None) -> Response:
        return _serve(types, path, record_id, cross_link)

    view.__name__ = f"beacon_{path}"
    return view
