"""Merge rules: many peers' checked Beacon answers → one Beacon answer. Pure functions, no I/O.

The rules (README "Federation" documents them for users):
- only peers whose answer passed the checks (`PeerAnswer.status == "ok"`) contribute; the others
  are listed in `info.network.peers` with their status and reason, never passed through;
- `exists` is true when any contributing peer says so, boolean-only answers included;
- the returned granularity is the coarsest of what was asked and what every contributor that found
  something returned, so the network never gives more detail than such a peer gave (a peer's
  `exists: false` is an exact zero at any granularity and contributes 0 and no result sets);
- `numTotalResults` is the sum of the contributors' own `numTotalResults` — never recounted from
  records, so a count a peer suppressed or rounded stays as the peer gave it;
- result sets are concatenated in peer order, each tagged with its peer's `beaconId` (and the
  assembly its coordinates use), filtered by `includeResultsetResponses` again;
- pagination is per result set, as on a single node: `skip`/`limit` go unchanged to every peer,
  and page k of the network is page k of every peer's result sets.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from gateway.beacon.request import API_VERSION, BeaconRequest
from gateway.beacon.response import build_meta
from gateway.config import NodeInfo
from gateway.issues import Issue, to_beacon_error
from gateway.security.policy import GRANULARITIES, coarsest

_RESULT_SET_KEYS = ("id", "setType", "exists", "resultsCount", "results")
_SET_TYPES = ("dataset", "cohort")


@dataclass
class PeerAnswer:
    """One peer's part in a query, after the checks of `gateway.network.checks`."""

    peer_url: str
    beacon_id: str | None  # the configured or answered beaconId
    status: str  # ok | timeout | error | skipped
    reason: str = ""
    latency_ms: float | None = None
    body: dict | None = None  # the validated answer when ok; a validated Beacon error when the peer refused
    assembly: str | None = None  # the assembly the peer was queried with / serves
    http_status: int | None = None
    warnings: list[str] = field(default_factory=list)

    @property
    def granularity(self) -> str:
        meta = (self.body or {}).get("meta") or {}
        value = meta.get("returnedGranularity")
        return value if value in GRANULARITIES else "boolean"

    @property
    def summary(self) -> dict:
        return (self.body or {}).get("responseSummary") or {}


class _Entry:
    """The stand-in `build_meta` needs: the returned schema of the entry type."""

    def __init__(self, returned_schema: dict):
        self.returned_schema = returned_schema


def merged_granularity(requested: str, answers: Iterable[PeerAnswer]) -> str:
    """The coarsest of what was asked and what every contributor that found something returned.

    A peer that answered `exists: false` (at any granularity) said "zero" exactly, so it does not
    coarsen the others: otherwise one peer without the caller's datasets would hide every record-level
    answer of the peers that hold them. When nobody found anything, every answer counts.
    """
    ok = [a for a in answers if a.status == "ok"]
    found = [a for a in ok if a.summary.get("exists") is True] or ok
    return coarsest(requested, *(a.granularity for a in found))


def peer_status(answer: PeerAnswer, show_counts: bool) -> dict:
    """The per-peer line of `info.network.peers`; counts only when the merged answer shows counts."""
    line: dict = {"beaconId": answer.beacon_id or "", "url": answer.peer_url, "status": answer.status}
    if answer.latency_ms is not None:
        line["latencyMs"] = answer.latency_ms
    if answer.reason:
        line["reason"] = answer.reason
    if answer.assembly:
        line["assemblyId"] = answer.assembly
    if answer.status == "ok":
        line["returnedGranularity"] = answer.granularity
        line["exists"] = bool(answer.summary.get("exists"))
        if show_counts and "numTotalResults" in answer.summary:
            line["numTotalResults"] = answer.summary["numTotalResults"]
    if answer.warnings:
        line["warnings"] = list(answer.warnings)
    return line


def merge_query(
    node: NodeInfo, request: BeaconRequest, returned_schema: dict, answers: Sequence[PeerAnswer]
) -> tuple[dict, int]:
    """The network's response body and HTTP status for one entry-type query."""
    ok = [a for a in answers if a.status == "ok"]
    entry = _Entry(returned_schema)
    if not ok:
        return _no_answer(node, request, entry, answers)
    granularity = merged_granularity(request.requested_granularity, ok)
    summary: dict = {"exists": any(bool(a.summary.get("exists")) for a in ok)}
    if granularity != "boolean":
        summary["numTotalResults"] = sum(_count(a) for a in ok)
    body: dict = {"meta": build_meta(node, entry, request, granularity), "responseSummary": summary}
    if granularity == "record" and any("collections" in ((a.body or {}).get("response") or {}) for a in ok):
        body["response"] = {"collections": list(_collections(ok))}
    elif granularity == "record":
        body["response"] = {"resultSets": list(_result_sets(ok, request.include_resultset_responses))}
    body["info"] = network_info(answers, show_counts=granularity != "boolean")
    return body, 200


def network_info(answers: Sequence[PeerAnswer], show_counts: bool) -> dict:
    counts: dict[str, int] = {}
    for a in answers:
        counts[a.status] = counts.get(a.status, 0) + 1
    return {
        "network": {
            "aggregator": True,
            "peersQueried": sum(1 for a in answers if a.status != "skipped"),
            "peersAnswered": counts.get("ok", 0),
            "peers": [peer_status(a, show_counts) for a in answers],
        }
    }


def _count(answer: PeerAnswer) -> int:
    if answer.summary.get("exists") is not True:
        return 0
    value = answer.summary.get("numTotalResults", 0)
    return value if isinstance(value, int) and not isinstance(value, bool) and value >= 0 else 0


def _result_sets(ok: Sequence[PeerAnswer], include: str) -> Iterable[dict]:
    if include == "NONE":
        return
    for answer in ok:
        for rs in ((answer.body or {}).get("response") or {}).get("resultSets") or ():
            hit = bool(rs.get("exists"))
            if (include == "HIT" and not hit) or (include == "MISS" and hit):
                continue
            out = {key: rs[key] for key in _RESULT_SET_KEYS}
            if out["setType"] not in _SET_TYPES:
                out["setType"] = "dataset"
            out["beaconId"] = answer.beacon_id or rs.get("beaconId") or answer.peer_url
            info = dict(rs.get("info") or {})
            if answer.assembly:
                info["assemblyId"] = answer.assembly
            info["peerUrl"] = answer.peer_url
            out["info"] = info
            yield out


def _collections(ok: Sequence[PeerAnswer]) -> Iterable[dict]:
    """Collection entry types (datasets, cohorts) answer with records, not result sets: each is tagged in `info`."""
    for answer in ok:
        for record in ((answer.body or {}).get("response") or {}).get("collections") or ():
            if isinstance(record, dict):
                info = dict(record.get("info") or {}) if isinstance(record.get("info"), dict) else {}
                info["beaconId"] = answer.beacon_id or answer.peer_url
                yield {**record, "info": info}


def _no_answer(
    node: NodeInfo, request: BeaconRequest, entry: _Entry, answers: Sequence[PeerAnswer]
) -> tuple[dict, int]:
    """No contributor: a request every peer refused is the caller's error (their status); else 502/504."""
    queried = [a for a in answers if a.status != "skipped"]
    refused = [a for a in queried if a.body is not None and "error" in a.body]
    if queried and len(refused) == len(queried):
        codes = {int(a.body["error"].get("errorCode", 400)) for a in refused}
        status = codes.pop() if len(codes) == 1 else 400
        message = "every peer refused the request: " + "; ".join(
            f"{a.beacon_id or a.peer_url}: {a.body['error'].get('errorMessage', '')}" for a in refused
        )
    elif not queried:
        status, message = (
            404,
            "no peer of this network serves this request: "
            + "; ".join(f"{a.beacon_id or a.peer_url}: {a.reason}" for a in answers)
            if answers
            else "this network has no peer that serves this entry type",
        )
    else:
        timeouts = all(a.status == "timeout" for a in queried)
        status = 504 if timeouts else 502
        message = "no peer gave a usable answer: " + "; ".join(
            f"{a.beacon_id or a.peer_url}: {a.status}{' (' + a.reason + ')' if a.reason else ''}" for a in queried
        )
    issue = Issue.error("network", message[:2000])
    return {
        "meta": build_meta(node, entry, request, request.requested_granularity),
        "error": to_beacon_error([issue], status),
    }, status


def merge_filtering_terms(node: NodeInfo, answers: Sequence[PeerAnswer]) -> dict:
    """The union of the peers' filtering terms (first definition of an id wins) and resources."""
    terms: dict[str, dict] = {}
    resources: dict[str, dict] = {}
    for answer in answers:
        if answer.status != "ok":
            continue
        response = (answer.body or {}).get("response") or {}
        for term in response.get("filteringTerms") or ():
            if isinstance(term, dict) and isinstance(term.get("id"), str):
                terms.setdefault(term["id"], term)
        for resource in response.get("resources") or ():
            if isinstance(resource, dict) and isinstance(resource.get("id"), str):
                resources.setdefault(resource["id"], resource)
    return {
        "meta": informational_meta(node),
        "response": {"filteringTerms": list(terms.values()), "resources": list(resources.values())},
        "info": network_info(answers, show_counts=False),
    }


def informational_meta(node: NodeInfo, returned_schemas: Sequence[dict] = ()) -> dict:
    return {"beaconId": node.id, "apiVersion": API_VERSION, "returnedSchemas": list(returned_schemas)}
