"""The one root of the gateway's own exceptions, just above `gateway.issues` on the ground floor.

A `GatewayError` carries what a surface needs to answer it: an HTTP status, a short
machine-readable code and, where the input was read closely, the `Issue`s found. Each surface
renders it once, in its own dialect (FHIR OperationOutcome, Beacon error envelope, problem JSON,
CLI text: `gateway.api.errors`, `gateway.cli`); the rooms that raise it know nothing of HTTP.
"""

from __future__ import annotations

from collections.abc import Sequence

from gateway.issues import Issue


class GatewayError(Exception):
    """Something the gateway refuses or cannot do, said in one sentence."""

    status: int = 500  # the HTTP status a surface answers with
    code: str = "internal"  # a short code for error envelopes and audit records

    def __init__(
        self, message: str = "", *, status: int | None = None, code: str | None = None, issues: Sequence[Issue] = ()
    ):
        super().__init__(message)
        self.message = message
        if status is not None:
            self.status = status
        if code is not None:
            self.code = code
        self.issues: tuple[Issue, ...] = tuple(issues)


class BadInput(GatewayError):
    """The caller sent something malformed: nothing was done."""

    status = 400
    code = "invalid"


class NotFound(GatewayError, LookupError):
    status = 404
    code = "not-found"


class Gone(NotFound):
    """It was there and was deleted (FHIR answers a read of it 410)."""

    status = 410
    code = "deleted"


class Unauthorised(GatewayError):
    """No credential where one is needed (401) or the wrong one (403); raised inside a view."""

    status = 401
    code = "unauthorised"
