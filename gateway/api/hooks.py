"""The HTTP side of security: authenticate every request, audit every response, add headers.

`install_security_hooks(app)` registers one before_request hook (a presented credential that
fails verification ends the request with 401 in the surface's own error dialect: Beacon
error, OperationOutcome or problem JSON; never a silent downgrade to PUBLIC) and one
after_request hook (the audit record, CORS only where allowed, security headers). The
decisions are gateway.security's; the statuses and headers are this module's.
"""

from __future__ import annotations

import logging
from typing import Any, cast

from flask import Flask, Response, g, request

from gateway.api.context import services
from gateway.api.errors import error_body
from gateway.security.audit import hash_ip
from gateway.security.caller import Caller
from gateway.security.hardening import EXTRA_HEADERS, cors_headers
from gateway.security.service import Security
from gateway.security.tokens import TokenError

log = logging.getLogger(__name__)
UNAUDITED = ("/health", "/ready")  # probes every few seconds: noise, and nothing is disclosed
_DECISION_BY_STATUS = {401: "denied", 403: "denied", 429: "budget-exceeded"}


def security() -> Security:
    return services().security


def current_caller() -> Caller:
    """The caller of the current request (authenticated once, then kept); raises TokenError."""
    caller = g.get("caller")
    if caller is None:
        caller = security().authenticate(
            request.headers.get("Authorization"), request.remote_addr, request.headers.get("X-Forwarded-For")
        )
        g.caller = caller
    return cast("Caller", caller)


def audit_notes() -> dict[str, Any]:
    """What the request's handlers found out for its audit record (datasets, granularity, decision …)."""
    if "audit_notes" not in g:
        g.audit_notes = {}
    return cast("dict[str, Any]", g.audit_notes)


def install_security_hooks(app: Flask) -> None:
    @app.before_request
    def authenticate() -> Response | None:
        try:
            current_caller()
        except TokenError as exc:
            audit_notes()["reason"] = exc.reason
            response = error_body(request.path, 401, f"the bearer token was rejected: {exc.reason}")
            response.headers["WWW-Authenticate"] = 'Bearer realm="gateway", error="invalid_token"'
            return response
        return None

    @app.after_request
    def audit_and_headers(response: Response) -> Response:
        for name, value in EXTRA_HEADERS.items():
            response.headers.setdefault(name, value)
        sec = security()
        response.headers.remove("Access-Control-Allow-Origin")  # nobody opens CORS but this hook
        response.headers.update(cors_headers(request.path, request.headers.get("Origin"), sec.cors_origins))
        if sec.audit is not None and not request.path.startswith(UNAUDITED):
            try:
                write_audit(sec, response.status_code)
            except OSError:  # an unwritable audit log must be seen, and must not leak into the response
                log.exception("audit record not written for request %s", g.get("request_id"))
                return error_body(request.path, 503, "the audit log is unavailable; the request was not answered")
        return response


def write_audit(sec: Security, status: int) -> None:
    notes = audit_notes()
    caller: Caller | None = g.get("caller")
    decision = notes.get("decision") or _DECISION_BY_STATUS.get(status, "allowed")
    if status in _DECISION_BY_STATUS:
        decision = _DECISION_BY_STATUS[status]
    datasets = notes.get("datasets")
    if datasets is None and request.args.get("dataset"):
        datasets = [request.args["dataset"][:128]]
    ip = caller.ip if caller else request.remote_addr
    if sec.audit is None:
        return
    sec.audit.append(
        request_id=g.get("request_id"),
        caller=(caller.sub if caller and caller.sub else "anonymous"),
        issuer=caller.issuer if caller else None,
        ip_hash=hash_ip(sec.key, ip),
        endpoint=request.url_rule.rule if request.url_rule is not None else "(no route)",
        method=request.method,
        status=status,
        datasets=datasets,
        requested_granularity=notes.get("requested_granularity"),
        returned_granularity=notes.get("returned_granularity"),
        count_before_suppression=notes.get("count_before_suppression"),
        decision=decision,
        reason=notes.get("reason"),
    )
