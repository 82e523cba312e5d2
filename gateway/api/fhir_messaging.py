"""FHIR messaging's own endpoint, `POST [base]/$process-message` (R4 messageheader-operation-process-message):
the message is processed as the base processes it (`POST /fhir`: its resources read as a collection, the
MessageHeader not kept), and answered with a *response message* — a `message` Bundle whose MessageHeader's
`response` names the request's MessageHeader, says `ok` or `fatal-error`, and points at an OperationOutcome with
what processing said (each stored resource's location, every issue). Senders that speak messaging (MedCom-style
national exchanges) read that reply; a request that is not a message at all is an HTTP error, as for any
operation. Synchronous only: `async=true` is refused (400), since the gateway sends no messages of its own.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

from flask import Response

from gateway.issues import Issue, to_operation_outcome
from translators.fhir.common import rfc3339

RESPONSE_CODES = ("ok", "fatal-error")  # R4 response-code: transient-error is for errors a retry may mend


def is_message(body: Any) -> bool:
    return isinstance(body, dict) and body.get("resourceType") == "Bundle" and body.get("type") == "message"


def response_message(message: dict[str, Any], answer: Response, endpoint: str) -> dict[str, Any]:
    """The response message to `message`, from what the base answered it (`answer`: a transaction-response
    Bundle, or an OperationOutcome with the error status). `endpoint`: this node's FHIR base."""
    request_header = _header(message)
    body = answer.get_json(silent=True) or {}
    succeeded = answer.status_code < 400
    outcome = body if body.get("resourceType") == "OperationOutcome" else _outcome_of_entries(body)
    outcome = {**outcome, "id": str(uuid.uuid4())}
    header: dict[str, Any] = {"resourceType": "MessageHeader", "id": str(uuid.uuid4())}
    for event in ("eventCoding", "eventUri"):  # the event answered (R4: one of them, 1..1)
        if event in request_header:
            header[event] = request_header[event]
    source = request_header.get("source")
    sender: dict[str, Any] = source if isinstance(source, dict) else {}
    if isinstance(sender.get("endpoint"), str):
        header["destination"] = [{"endpoint": sender["endpoint"]}]
    header["source"] = {"endpoint": endpoint}
    header["response"] = {
        "identifier": request_header.get("id") or message.get("id") or "unidentified",
        "code": RESPONSE_CODES[0] if succeeded else RESPONSE_CODES[1],
        "details": {"reference": f"urn:uuid:{outcome['id']}"},
    }
    return {
        "resourceType": "Bundle",
        "id": str(uuid.uuid4()),
        "type": "message",
        "timestamp": rfc3339(datetime.now(UTC)),
        "entry": [
            {"fullUrl": f"urn:uuid:{header['id']}", "resource": header},
            {"fullUrl": f"urn:uuid:{outcome['id']}", "resource": outcome},
        ],
    }


def _header(message: dict[str, Any]) -> dict[str, Any]:
    entries = message.get("entry") if isinstance(message.get("entry"), list) else []
    first = entries[0].get("resource") if entries and isinstance(entries[0], dict) else None
    return first if isinstance(first, dict) and first.get("resourceType") == "MessageHeader" else {}


def _outcome_of_entries(response: dict[str, Any]) -> dict[str, Any]:
    """One OperationOutcome of a transaction-response: each entry's status and location, then its issues."""
    issues: list[dict[str, Any]] = []
    for n, entry in enumerate(response.get("entry") or ()):
        answered = entry.get("response") or {}
        where = answered.get("location")
        said = f"entry {n}: {answered.get('status', '')}" + (f", {where}" if where else "")
        issues.extend(to_operation_outcome([Issue.info("processed", said)])["issue"])
        issues.extend((answered.get("outcome") or {}).get("issue") or ())
    return {"resourceType": "OperationOutcome", "issue": issues or to_operation_outcome([])["issue"]}
