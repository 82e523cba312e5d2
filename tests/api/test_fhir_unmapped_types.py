"""A Bundle is not refused for a resource of a type the gateway does not map: that resource is left out with a
warning. Real HL7 IPS 1.1.0 material: the patient's Device and the DeviceUseStatement that uses it (IPS's "medical
devices" section), beside the patient's Condition."""

from __future__ import annotations

import json

from gateway.cli import main
from tests.api.test_fhir_rest import BASE, _packets, _send

IPS = "ips-1.1.0"
# where the sender's server keeps the patient: an absolute URL that no entry of the Bundle carries
ON_THE_SENDER = "https://ehr.example.org/fhir/Patient/eumfh-39-07"


def _ips(reference_dir, name: str) -> dict:
    return json.loads((reference_dir / "fhir" / IPS / name).read_text())


def _summary(reference_dir) -> dict:
    """Patient and Condition as entries; the Device and DeviceUseStatement name the patient on the sender's server."""
    patient = _ips(reference_dir, "Patient-eumfh-39-07.json")
    condition = _ips(reference_dir, "Condition-eumfh-39-07-1.json")
    device = _ips(reference_dir, "Device-eumfh-70-275-1.json")
    device["patient"]["reference"] = ON_THE_SENDER
    use = _ips(reference_dir, "DeviceUseStatement-eumfh-70-275-1.json")
    use["subject"]["reference"] = ON_THE_SENDER
    entries = [patient, condition, use, device]
    return {
        "resourceType": "Bundle",
        "type": "collection",
        "entry": [{"fullUrl": f"{BASE}{r['resourceType']}/{r['id']}", "resource": r} for r in entries],
    }


def _codes(response: dict) -> list[str]:
    return [i["details"]["coding"][0]["code"] for i in response.get("outcome", {}).get("issue", [])]


def test_a_device_about_the_patient_elsewhere_is_left_out_with_a_warning(client, app, operator, reference_dir):
    """Before: 422 "patient reference … names no Patient of the Bundle nor one stored": a patient link of a type
    that reaches no phenopacket was held to the rule of the types that do, and the whole Bundle was refused."""
    answered = _send(client, "POST", BASE, operator, _summary(reference_dir))
    assert answered.status_code == 200, answered.get_data(as_text=True)
    responses = [e["response"] for e in answered.get_json()["entry"]]
    for left_out in responses[2:]:
        assert left_out["status"] == "200 OK" and "no-phenopacket-target" in _codes(left_out), left_out
    (packet,) = _packets(app)
    assert packet.document["diseases"]  # the Condition is in it
    for kind, resource_id in (("Device", "eumfh-70-275-1"), ("DeviceUseStatement", "eumfh-70-275-1")):
        assert client.get(f"/fhir/{kind}/{resource_id}", headers=operator).status_code == 404  # not kept


def test_a_condition_about_the_patient_elsewhere_is_still_refused(client, app, operator, reference_dir):
    """The rule stands for a type that is placed in a phenopacket: it would be lost silently."""
    bundle = _summary(reference_dir)
    bundle["entry"][1]["resource"]["subject"]["reference"] = ON_THE_SENDER
    answered = _send(client, "POST", BASE, operator, bundle)
    assert answered.status_code == 422, answered.get_data(as_text=True)
    assert _packets(app) == []


def test_gateway_ingest_fhir_and_validate_accept_the_device(env, reference_dir, tmp_path, capsys):
    path = tmp_path / "summary.json"
    path.write_text(json.dumps(_summary(reference_dir)))
    assert main(["validate", str(path)]) == 0
    assert main(["ingest", "fhir", str(path), "--dataset", "ips"]) == 0
    said = capsys.readouterr()
    out = said.out + said.err
    assert "(new)" in out and "WARNING [no-phenopacket-target] at /entry/3/resource: Device" in out
