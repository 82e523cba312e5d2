"""Operator credentials for writing: an operator token, or a verified JWT with a configured operator role."""

from __future__ import annotations

from functools import wraps

from flask import request

from gateway.api.context import services
from gateway.security.http import current_caller
from gateway.security.keys import is_operator
from gateway.security.tokens import TokenError


class Unauthorised(Exception):
    """Raised inside a view; rendered by the surface's error handler (OperationOutcome, Beacon error, JSON)."""

    def __init__(self, message: str, status: int = 401):
        super().__init__(message)
        self.message = message
        self.status = status


def bearer_token() -> str | None:
    header = request.headers.get("Authorization", "")
    scheme, _, token = header.partition(" ")
    return token.strip() if scheme.lower() == "bearer" and token.strip() else None


def require_operator(view):
    """Only an operator may write: 401 without a credential, 403 with a wrong one."""

    @wraps(view)
    def wrapped(*args, **kwargs):
        token = bearer_token()
        if token is None:
            raise Unauthorised("this operation needs an operator bearer token", 401)
        if not is_operator(services().operator_tokens, token):
            try:  # a verified token with a configured operator role (gateway.security)
                caller = current_caller()
            except TokenError as exc:
                raise Unauthorised(f"the bearer token was rejected: {exc.reason}", 401) from exc
            if not caller.operator:
                raise Unauthorised("the presented token does not carry an operator role", 403)
        return view(*args, **kwargs)

    return wrapped
