"""One error handler per surface: every error leaving a view is rendered here, in the surface's dialect.

FHIR (/fhir) answers an OperationOutcome, Beacon (/api, /local/api) the Beacon error envelope with the
node's meta, every other surface problem JSON. A `GatewayError` brings its status, code and issues; a
werkzeug HTTPException its status; anything else is a logged 500 that shows no internals.
"""

from __future__ import annotations

import logging

import sqlalchemy as sa
from flask import Flask, Response, current_app, g, has_request_context, request
from werkzeug.exceptions import HTTPException

from gateway.api.context import services
from gateway.api.render import json_response, problem
from gateway.beacon.response import build_error
from gateway.errors import GatewayError, Unauthorised
from gateway.issues import Issue, to_operation_outcome
from gateway.validation.fhir import r4_resource_types

log = logging.getLogger("gateway")
FHIR_JSON = "application/fhir+json"
BEACON_PREFIXES = ("/api", "/local/api")
RETRY_AFTER_S = 5  # a writer gave up on another's lock: its transaction was rolled back, a retry may pass


def _store_busy(exc: Exception) -> bool:
    """SQLite's busy timeout ran out while other writers held the lock (the single-node store)."""
    return isinstance(exc, sa.exc.OperationalError) and "database is locked" in str(exc.orig)


def _fhir_code(status: int) -> str:
    if status == 404:
        return "not-found"
    if status >= 500:
        return "internal"
    return "body-too-large" if status == 413 else "fhir-value"


def _fhir_root(path: str) -> str:
    """What the issues' FHIRPath expressions start at: the body's resource type where the view noted it
    (`g.fhir_root`), else the type the URL names (/fhir/{type}/…), else a Bundle."""
    noted = g.get("fhir_root") if has_request_context() else None
    if isinstance(noted, str):
        return noted
    named = path.split("/")[2] if path.count("/") >= 2 else ""
    return named if named in r4_resource_types() else "Bundle"


def error_body(
    path: str, status: int, message: str, code: str | None = None, issues: tuple[Issue, ...] = ()
) -> Response:
    """The error response of the surface `path` belongs to."""
    if path.startswith("/fhir"):
        shown = list(issues) or [Issue.error(code or _fhir_code(status), message)]
        return json_response(to_operation_outcome(shown, root=_fhir_root(path)), status, mimetype=FHIR_JSON)
    if path.startswith(BEACON_PREFIXES):
        shown = list(issues) or [Issue.error(code or "http", message)]
        return json_response(build_error(services().config.node, shown, status), status)
    return problem(status, message, issues)


def gateway_error_response(exc: GatewayError) -> Response:
    code = exc.code
    if isinstance(exc, Unauthorised) and request.path.startswith("/fhir"):
        code = "login" if exc.status == 401 else "forbidden"  # the FHIR IssueType codes
    response = error_body(request.path, exc.status, exc.message, code, exc.issues)
    if exc.status == 401 and isinstance(exc, Unauthorised):
        response.headers["WWW-Authenticate"] = 'Bearer realm="gateway"'
    return response


def install_error_handlers(app: Flask) -> None:
    @app.errorhandler(GatewayError)
    def gateway_error(exc: GatewayError) -> Response:
        return gateway_error_response(exc)

    @app.errorhandler(HTTPException)
    def http_error(exc: HTTPException) -> Response:
        status = exc.code or 500
        limit = current_app.config.get("MAX_CONTENT_LENGTH")
        message = exc.description if status != 413 else f"request body larger than {limit} bytes"
        return error_body(request.path, status, message or "")

    @app.errorhandler(Exception)
    def unexpected(exc: Exception) -> Response:
        if _store_busy(exc):
            log.warning("store busy in request %s: %s", g.get("request_id"), exc.__class__.__name__)
            busy = error_body(request.path, 503, "the store is busy with other writes; nothing changed, retry", "busy")
            busy.headers["Retry-After"] = str(RETRY_AFTER_S)
            return busy
        # Logged with its request id; the client sees no stack trace and no internal path.
        log.exception("unhandled error in request %s", g.get("request_id"))
        return error_body(request.path, 500, f"internal error (request id {g.get('request_id', '-')})")
