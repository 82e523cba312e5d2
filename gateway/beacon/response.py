"""Beacon v2 response envelopes, built once for every entry type.

`build_response` chooses the envelope by the returned granularity (boolean →
beaconBooleanResponse, count → beaconCountResponse, record → beaconResultsetsResponse);
`build_error` renders Issues as a beaconErrorResponse with a full `meta`.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from gateway.beacon.registry import EntryType
from gateway.beacon.request import API_VERSION, BeaconRequest
from gateway.config import NodeInfo
from gateway.issues import Issue, to_beacon_error


@dataclass(frozen=True)
class ResultSet:
    """One dataset's answer. `records` is None below record granularity."""

    id: str
    count: int
    records: Sequence[dict] | None = None
    set_type: str = "dataset"
    info: dict | None = None


@dataclass(frozen=True)
class EntryAnswer:
    """What an entry-type handler returns: the totals before pagination and the result sets."""

    exists: bool
    total: int | None = None  # None at boolean granularity when not computed
    result_sets: Sequence[ResultSet] = ()
    info: dict = field(default_factory=dict)


def received_request_summary(request: BeaconRequest | None) -> dict:
    if request is None:  # the request could not be read at all
        return {
            "apiVersion": API_VERSION,
            "requestedSchemas": [],
            "pagination": {"skip": 0, "limit": 10},
            "requestedGranularity": "boolean",
        }
    summary: dict = {
        "apiVersion": request.api_version,
        "requestedSchemas": list(request.requested_schemas),
        "pagination": {"skip": request.skip, "limit": request.limit},
        "requestedGranularity": request.requested_granularity,
        "includeResultsetResponses": request.include_resultset_responses,
        "testMode": request.test_mode,
    }
    parameters = dict(request.echo_parameters)
    if request.dataset_ids is not None:
        parameters["datasets"] = {"datasetIds": list(request.dataset_ids)}
    if parameters:
        summary["requestParameters"] = parameters
    if request.filters:
        summary["filters"] = [f["id"] for f in request.filters]  # the summary schema holds filter ids only
    return summary


def build_meta(node: NodeInfo, entry: EntryType | None, request: BeaconRequest | None, granularity: str) -> dict:
    meta: dict[str, Any] = {
        "beaconId": node.id,
        "apiVersion": API_VERSION,
        "returnedGranularity": granularity,
        "returnedSchemas": [entry.returned_schema] if entry else [],
        "receivedRequestSummary": received_request_summary(request),
    }
    if request is not None and request.test_mode:
        meta["testMode"] = True
    return meta


def build_response(
    node: NodeInfo, entry: EntryType, request: BeaconRequest, granularity: str, answer: EntryAnswer
) -> dict:
    response: dict = {"meta": build_meta(node, entry, request, granularity)}
    summary: dict = {"exists": answer.exists}
    if granularity != "boolean":
        summary["numTotalResults"] = answer.total or 0
    response["responseSummary"] = summary
    if granularity == "record" and entry.collection:
        response["response"] = {"collections": [r for rs in answer.result_sets for r in rs.records or ()]}
    elif granularity == "record":
        response["response"] = {"resultSets": list(_result_sets(node, answer.result_sets, request))}
    if answer.info:
        response["info"] = answer.info
    return response


def _result_sets(node: NodeInfo, result_sets: Iterable[ResultSet], request: BeaconRequest) -> Iterable[dict]:
    include = request.include_resultset_responses
    if include == "NONE":
        return
    for rs in result_sets:
        hit = rs.count > 0
        if (include == "HIT" and not hit) or (include == "MISS" and hit):
            continue
        out = {
            "id": rs.id,
            "setType": rs.set_type,
            "exists": hit,
            "resultsCount": rs.count,
            "results": list(rs.records or ()),
            "beaconId": node.id,
        }
        if rs.info:
            out["info"] = rs.info
        yield out


def build_error(
    node: NodeInfo,
    issues: Sequence[Issue],
    status: int,
    entry: EntryType | None = None,
    request: BeaconRequest | None = None,
) -> dict:
    granularity = request.requested_granularity if request else "boolean"
    return {"meta": build_meta(node, entry, request, granularity), "error": to_beacon_error(issues, status)}
