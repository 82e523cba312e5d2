"""JSON responses and the error bodies of the non-FHIR, non-Beacon surfaces."""

from __future__ import annotations

import json

from flask import Response

from gateway.issues import Issue


def json_response(body, status: int = 200, mimetype: str = "application/json") -> Response:
    # Compact, UTF-8, no NaN: what we send is as strict as what we accept.
    text = json.dumps(body, ensure_ascii=False, separators=(",", ":"), allow_nan=False)
    return Response(text, status=status, mimetype=mimetype)


def problem(status: int, message: str, issues: list[Issue] | tuple[Issue, ...] = ()) -> Response:
    """The gateway's plain error body: {"error": {"status", "message", "issues": [...]}}."""
    return json_response(
        {"error": {"status": status, "message": message, "issues": [i.to_dict() for i in issues]}}, status
    )
