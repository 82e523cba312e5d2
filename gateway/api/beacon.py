"""The Beacon v2 HTTP surface (mounted at /api): parse, answer, send. No query logic here.

Routes are generated from the entry-type registry: /{entry}, /{entry}/{id} and
/{entry}/{id}/{other} for every registered entry type, GET and POST.
"""

from __future__ import annotations

from collections import ChainMap

from flask import Blueprint, request

from gateway.api.context import services
from gateway.api.render import json_response
from gateway.beacon.engine import QueryContext, answer
from gateway.beacon.registry import EntryType, entry_type_for_path, entry_types
from gateway.beacon.request import BeaconRequest, BeaconRequestError, parse_get, parse_post
from gateway.beacon.response import build_error
from gateway.issues import Issue
from gateway.jsonio import JSONInputError, loads_strict
from gateway.security.http import audit_notes, current_caller
from gateway.security.tokens import TokenError


def _context() -> QueryContext:
    s = services()
    # Per request: who asks (verified, gateway.security) and the notes their audit record is built from;
    # reads fall through to them, writes (per-application caches) still land in the shared `extra`.
    extra = ChainMap(s.extra, {"caller": current_caller(), "audit": audit_notes()})
    return QueryContext(config=s.config, key=s.key, variants=s.variants, store=s.store, extra=extra)


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


def _serve(path: str, record_id: str | None = None, cross_link: str | None = None):
    entry = entry_type_for_path(path)
    node = services().config.node
    if entry is None:  # a route exists only for registered types; this guards a registry change at runtime
        return json_response(build_error(node, [Issue.error("not-found", f"/{path} is not served")], 404), 404)
    try:
        parsed = _parse(entry)
    except BeaconRequestError as exc:
        return json_response(build_error(node, exc.issues, 400, entry), 400)
    try:
        context = _context()
    except TokenError as exc:  # only reached where the app-wide hook is not installed
        issue = Issue.error("unauthorised", f"the bearer token was rejected: {exc.reason}")
        return json_response(build_error(node, [issue], 401, entry, parsed), 401)
    body, status = answer(context, entry, parsed, record_id, cross_link)
    return json_response(body, status)


def beacon_blueprint() -> Blueprint:
    bp = Blueprint("beacon", __name__)
    methods = ["GET", "POST"]
    for entry in entry_types():
        bp.add_url_rule(f"/{entry.path}", f"{entry.path}_list", _bind(entry.path), methods=methods)
        bp.add_url_rule(f"/{entry.path}/<record_id>", f"{entry.path}_one", _bind(entry.path), methods=methods)
        bp.add_url_rule(
            f"/{entry.path}/<record_id>/<cross_link>", f"{entry.path}_cross", _bind(entry.path), methods=methods
        )
    return bp


def _bind(path: str):
    def view(record_id: str | None = None, cross_link: str | None = None):
        return _serve(path, record_id, cross_link)

    view.__name__ = f"beacon_{path}"
    return view
