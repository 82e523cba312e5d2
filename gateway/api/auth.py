"""Operator credentials for writing. The security issue extends this to JWTs and visas."""

from __future__ import annotations

from functools import wraps

from flask import request

from gateway.api.context import services
from gateway.security.keys import is_operator


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
            raise Unauthorised("the presented token is not an operator credential", 403)
        return view(*args, **kwargs)

    return wrapped
