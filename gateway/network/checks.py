"""What a peer's reply must be before it may take part: JSON, a schema-valid Beacon response, from the peer
the network expects. Anything else becomes a flagged `PeerAnswer` (status error, with the reason) and is
dropped from the merge — never passed through.
"""

from __future__ import annotations

from gateway.jsonio import JSONInputError, loads_strict
from gateway.network.client import Reply
from gateway.network.merge import PeerAnswer
from gateway.network.peers import Peer
from gateway.validation.beacon import response_kind, validate_beacon_response

QUERY_KINDS = ("boolean", "count", "record", "collections")
_MAX_DEPTH = 64


def check_reply(reply: Reply, peer: Peer, expect: str, assembly: str | None = None) -> PeerAnswer:
    """`expect` is "query" for entry-type answers, or an informational kind (info, map, configuration, …)."""
    answer = PeerAnswer(
        peer_url=peer.url,
        beacon_id=peer.beacon_id,
        status=reply.status,
        reason=reply.reason,
        latency_ms=reply.latency_ms,
        assembly=assembly,
        http_status=reply.http_status,
    )
    if reply.status != "ok":
        return answer
    doc, problem = _parse(reply)
    if problem:
        return _flag(answer, problem)
    if isinstance(doc, dict) and expect == "query":
        _tag_result_sets(doc, peer)
    kind = response_kind(doc) if isinstance(doc, dict) else ""
    wanted = QUERY_KINDS if expect == "query" else (expect,)
    if kind != "error" and kind not in wanted:
        return _flag(
            answer, f"HTTP {reply.http_status}: answered a {kind or 'non-Beacon'} document, not a {expect} response"
        )
    report = validate_beacon_response(doc, kind=kind)
    if not report.ok:
        first = next(i for i in report if i.is_error)
        errors = sum(1 for i in report if i.is_error)
        return _flag(
            answer,
            f"not a valid Beacon {kind} response ({errors} error(s); first at {first.location or '/'}: {first.message})"[
                :400
            ],
        )
    answered_id = (doc.get("meta") or {}).get("beaconId")
    if peer.beacon_id and answered_id != peer.beacon_id:
        return _flag(answer, f"answered as beaconId {answered_id!r}, expected {peer.beacon_id!r}")
    answer.beacon_id = peer.beacon_id or answered_id
    answer.warnings = [i.message for i in report if not i.is_error][:5]
    if kind == "error":
        error = doc["error"]
        answer.body = doc  # kept so a request every peer refused can be answered with their reasons
        return _flag(answer, f"Beacon error {error.get('errorCode')}: {error.get('errorMessage', '')}"[:400], keep=True)
    if not 200 <= (reply.http_status or 0) < 300:
        return _flag(answer, f"HTTP {reply.http_status} with a non-error body")
    answer.body = doc
    return answer


def _parse(reply: Reply):
    content_type = reply.content_type.split(";")[0].strip().lower()
    if content_type and "json" not in content_type:
        return None, f"HTTP {reply.http_status}: answered {content_type}, not JSON"
    if not reply.body.strip():
        return None, f"HTTP {reply.http_status}: empty answer"
    try:
        return loads_strict(reply.body, max_depth=_MAX_DEPTH), None
    except JSONInputError as exc:
        where = f" at {exc.issue.location}" if exc.issue.location else ""
        return None, f"HTTP {reply.http_status}: invalid JSON{where}: {exc.issue.message}"[:400]


def _tag_result_sets(doc: dict, peer: Peer) -> None:
    """Result sets are tagged with the peer's beaconId before validation: other implementations may omit it."""
    response = doc.get("response")
    sets = response.get("resultSets") if isinstance(response, dict) else None
    answered = (doc.get("meta") or {}).get("beaconId") if isinstance(doc.get("meta"), dict) else None
    for rs in sets if isinstance(sets, list) else ():
        if isinstance(rs, dict) and "beaconId" not in rs:
            rs["beaconId"] = peer.beacon_id or answered or peer.url


def _flag(answer: PeerAnswer, reason: str, keep: bool = False) -> PeerAnswer:
    answer.status = "error"
    answer.reason = reason
    if not keep:
        answer.body = None
    return answer
