"""FHIR messaging (R4 messaging.html): a Bundle of type `message` whose first entry is a MessageHeader naming the
message's data by `focus`. The receiver processes a message, it does not keep it as a Bundle: the resources it
carries are read as a collection, the MessageHeader itself is not kept. Real MII Marfan resources carried in a
message; the store is read back. Before: 422 "Bundle type 'message' is not accepted" on every path."""

from __future__ import annotations

import copy
import json

from app import create_app
from gateway.cli import main
from tests.api.test_fhir_rest import BASE, _codes, _packets, _resource, _send

HEADER_URL = "urn:uuid:0c3a2f5e-9d1b-4c1e-8a51-2f0e4f7b9a11"
PATIENT_ID = "patient-marfan-001"


def _message(entries: list[dict], focus: list[str]) -> dict:
    """`entries` as the payload of a message whose MessageHeader names `focus` (fullUrls or references)."""
    header = {
        "resourceType": "MessageHeader",
        "id": "msg-marfan-1",
        "eventCoding": {"system": "http://example.org/fhir/message-events", "code": "rare-disease-findings"},
        "source": {"endpoint": "https://his.example.org/fhir"},
        "focus": [{"reference": f} for f in focus],
    }
    payload = [{k: v for k, v in e.items() if k != "request"} for e in entries]  # bdl-3: no request in a message
    return {
        "resourceType": "Bundle",
        "id": "message-marfan-1",
        "type": "message",
        "timestamp": "2025-03-04T10:00:00+01:00",
        "entry": [{"fullUrl": HEADER_URL, "resource": header}, *payload],
    }


def _marfan_message(marfan: dict) -> dict:
    """The whole Marfan record as a message about its confirmed genetic diagnosis (the message's focus)."""
    genetic = next(e for e in marfan["entry"] if e["resource"]["id"] == "condition-marfan-genetic")
    return _message(copy.deepcopy(marfan["entry"]), [genetic["fullUrl"]])


def _comparable(document: dict) -> dict:
    document = copy.deepcopy(document)
    document["metaData"].pop("created")
    return document


def test_a_message_is_stored_as_the_resources_it_carries(client, app, operator, marfan, gateway_config, tmp_path):
    """The phenopacket a message makes is the one the same resources make as a transaction (on another node of the
    same key); the MessageHeader is processed, not kept (an information issue at its entry, 404 when read)."""
    answered = _send(client, "POST", BASE, operator, _marfan_message(marfan))
    assert answered.status_code == 200, answered.get_data(as_text=True)
    body = answered.get_json()
    assert body["type"] == "transaction-response" and len(body["entry"]) == len(marfan["entry"]) + 1
    header = body["entry"][0]["response"]
    assert header["status"] == "200 OK" and "location" not in header
    assert "message-header" in _codes(header["outcome"])
    other = create_app({**gateway_config, "data_dir": tmp_path / "other"})
    try:
        assert _send(other.test_client(), "POST", BASE, operator, marfan).status_code == 200
        (by_transaction,) = _packets(other)
    finally:
        other.extensions["gateway"].store.close()
    (by_message,) = _packets(app)
    assert _comparable(by_message.document) == _comparable(by_transaction.document)
    assert client.get("/fhir/MessageHeader/msg-marfan-1", headers=operator).status_code == 404
    kept = client.get("/fhir/Condition/condition-marfan-genetic", headers=operator)
    assert kept.status_code == 200  # resources sent later meet the message's ones


def test_a_message_without_a_patient_is_applied_resource_by_resource(client, app, operator, marfan, stored_patient):
    """A message about a Patient stored before (a Condition whose subject is `Patient/{id}`)."""
    condition = _resource(marfan, "condition-marfan-genetic")
    condition["subject"] = {"reference": f"Patient/{PATIENT_ID}"}
    entry = {"fullUrl": f"{BASE}Condition/condition-marfan-genetic", "resource": condition}
    answered = _send(client, "POST", BASE, operator, _message([entry], [entry["fullUrl"]]))
    assert answered.status_code == 200, answered.get_data(as_text=True)
    header, kept = (e["response"] for e in answered.get_json()["entry"])
    assert "location" not in header and "message-header" in _codes(header["outcome"])
    assert kept["status"] == "201 Created" and "Condition/condition-marfan-genetic" in kept["location"]
    (packet,) = _packets(app)
    assert [d["term"]["id"] for d in packet.document["diseases"]] == ["ORPHA:558"]


def _refused(client, app, operator, message, code, where):
    answered = _send(client, "POST", BASE, operator, message)
    assert answered.status_code == 422, answered.get_data(as_text=True)
    issues = [i for i in answered.get_json()["issue"] if i["details"]["coding"][0]["code"] == code]
    assert issues and issues[0].get("expression") == where, answered.get_json()
    assert _packets(app) == []
    return issues[0]


def test_a_message_whose_first_entry_is_no_message_header_is_refused(client, app, operator, marfan):
    """bdl-12: a message must have a MessageHeader as its first resource."""
    message = _marfan_message(marfan)
    message["entry"].append(message["entry"].pop(0))  # the header last
    _refused(client, app, operator, message, "fhir-structure", ["Bundle.entry[0]"])


def test_a_message_whose_focus_is_not_in_it_is_refused(client, app, operator, marfan):
    """MessageHeader.focus: "The transaction data is always included in the bundle that is the full message": a
    focus naming no entry means the message is incomplete, and nothing of it is stored."""
    message = _marfan_message(marfan)
    message["entry"][0]["resource"]["focus"].append({"reference": "Condition/not-in-the-message"})
    where = ["Bundle.entry[0].resource.focus[1].reference"]
    issue = _refused(client, app, operator, message, "message-focus", where)
    assert "Condition/not-in-the-message" in issue["details"]["text"]


def test_a_message_that_carries_nothing_the_gateway_keeps_is_refused_clearly(client, app, operator, reference_dir):
    """A message whose resources all have no phenopacket target (here a real IPS Practitioner and Organization):
    not an empty success, but a 422 saying that nothing of it would be kept."""
    folder = reference_dir / "fhir" / "ips-1.1.0"
    entries = [
        {"fullUrl": f"urn:uuid:0c3a2f5e-9d1b-4c1e-8a51-2f0e4f7b9a2{n}", "resource": json.loads(p.read_text())}
        for n, p in enumerate([folder / "Practitioner-eumfh-39-07.json", folder / "Organization-lab-org-example.json"])
    ]
    issue = _refused(client, app, operator, _message(entries, [entries[0]["fullUrl"]]), "nothing-kept", None)
    assert "Practitioner" in issue["details"]["text"] and "Organization" in issue["details"]["text"]


def test_gateway_ingest_fhir_and_validate_read_a_message(env, marfan, tmp_path, capsys):
    """The command line as the HTTP surface: a message is stored; one whose focus is missing is refused by both
    `gateway ingest fhir` and `gateway validate`, with the file and the JSON pointer."""
    good = tmp_path / "message.json"
    good.write_text(json.dumps(_marfan_message(marfan)))
    assert main(["validate", str(good)]) == 0
    assert main(["ingest", "fhir", str(good), "--dataset", "rd"]) == 0
    out = capsys.readouterr().out
    assert "(new)" in out
    broken = _marfan_message(marfan)
    broken["entry"][0]["resource"]["focus"] = [{"reference": "urn:uuid:0c3a2f5e-9d1b-4c1e-8a51-000000000000"}]
    bad = tmp_path / "broken.json"
    bad.write_text(json.dumps(broken))
    assert main(["validate", str(bad)]) == 1
    said = capsys.readouterr()
    assert "/entry/0/resource/focus/0" in said.out + said.err
    assert main(["ingest", "fhir", str(bad), "--dataset", "rd2"]) == 1
    err = capsys.readouterr().err
    assert str(bad) in err and "/entry/0/resource/focus/0" in err
