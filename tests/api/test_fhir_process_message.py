"""`POST /fhir/$process-message` (R4 messageheader-operation-process-message), the endpoint a FHIR messaging sender
posts to: the real MII Marfan record carried in a message is processed as the base processes it and answered
with a response message (MessageHeader.response naming the request's MessageHeader: ok / fatal-error, details an
OperationOutcome). Before: 404 — a messaging sender had no endpoint of its own (open-items' open item)."""

from __future__ import annotations

import copy

from fhir.resources.R4B.bundle import Bundle

from tests.api.test_fhir_messages import _marfan_message
from tests.api.test_fhir_rest import _packets, _send

ENDPOINT = "/fhir/$process-message"


def _reply(response) -> tuple[dict, dict]:
    """(the response MessageHeader, the OperationOutcome it points at) of a response message."""
    body = response.get_json()
    Bundle.model_validate(body)  # a valid FHIR Bundle
    assert body["type"] == "message"
    header, outcome = (e["resource"] for e in body["entry"])
    assert header["resourceType"] == "MessageHeader" and outcome["resourceType"] == "OperationOutcome"
    assert header["response"]["details"]["reference"] == body["entry"][1]["fullUrl"]
    return header, outcome


def test_a_message_is_processed_and_answered_with_a_response_message(client, app, operator, marfan):
    message = _marfan_message(marfan)
    answer = _send(client, "POST", ENDPOINT, operator, message)
    assert answer.status_code == 200, answer.get_data(as_text=True)
    header, outcome = _reply(answer)
    request_header = message["entry"][0]["resource"]
    assert header["response"]["identifier"] == request_header["id"]
    assert header["response"]["code"] == "ok"
    assert header["eventCoding"] == request_header["eventCoding"]
    assert header["destination"] == [{"endpoint": request_header["source"]["endpoint"]}]
    assert header["source"]["endpoint"].endswith("/fhir")
    said = [i.get("diagnostics", "") for i in outcome["issue"]]
    assert any("Patient/patient-marfan-001/_history/1" in d for d in said)  # where each resource was kept
    (packet,) = _packets(app)
    assert packet.document["diseases"]  # stored as the base stores it


def test_a_message_the_base_refuses_is_answered_fatal_error_and_stores_nothing(client, app, operator, marfan):
    message = _marfan_message(marfan)
    broken = copy.deepcopy(message)
    condition = next(e["resource"] for e in broken["entry"] if e["resource"]["resourceType"] == "Condition")
    condition["onsetDateTime"] = "yesterday"
    answer = _send(client, "POST", ENDPOINT, operator, broken)
    assert answer.status_code == 200
    header, outcome = _reply(answer)
    assert header["response"]["code"] == "fatal-error"
    assert any(i["severity"] == "error" for i in outcome["issue"])
    assert _packets(app) == []


def test_what_is_not_a_message_or_asks_for_async_is_an_http_error(client, app, operator, marfan):
    transaction = {**copy.deepcopy(marfan), "type": "collection"}
    not_a_message = _send(client, "POST", ENDPOINT, operator, transaction)
    assert not_a_message.status_code == 400
    assert not_a_message.get_json()["resourceType"] == "OperationOutcome"
    asynchronous = _send(client, "POST", ENDPOINT + "?async=true", operator, _marfan_message(marfan))
    assert asynchronous.status_code == 400 and "asynchronous" in asynchronous.get_data(as_text=True)
    anonymous = client.post(ENDPOINT, json=_marfan_message(marfan))
    assert anonymous.status_code == 401
    assert _packets(app) == []
