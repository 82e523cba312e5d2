"""Operator credentials for writing: an operator token, or a verified JWT with a configured operator role."""

from __future__ import annotations

from functools import wraps

from flask import request

from gateway.api.context import services
from gateway.api.hooks import current_caller
from gateway.errors import Unauthorised
from gateway.security.keys import is_operator
from gateway.security.tokens import TokenError


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
            raise Unauthorised("this operation needs an operator bearer token", status=401)
        if not is_operator(services().operator_tokens, token):
            try:  # a verified token with a configured operator role (gateway.security)
                caller = current_caller()
            except TokenError as exc:
                raise Unauthorised(f"the bearer token was rejected: {exc.reason}", status=401) from exc
            if not caller.operator:
                raise Unauthorised("the presented token does not carry an operator role", status=403)
        return view(*args, **kwargs)

    return wrapped
