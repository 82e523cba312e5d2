"""One patient, one age: `timeAtLastEncounter` from a complete Bundle equals the one the same resources make sent
one by one (the project's invariant for goldens). Real MII Marfan resources."""

from __future__ import annotations

import copy

from app import create_app
from tests.api.test_fhir_rest import BASE, _packets, _resource, _send

PATIENT_ID = "patient-marfan-001"
IMPRESSION_ID = "clinical-impression-seltene-assessment"


def _undated_condition(marfan: dict) -> dict:
    """The genetic Marfan diagnosis without its dates (recorded date, asserted-date extension) and evidence."""
    condition = _resource(marfan, "condition-marfan-genetic")
    for name in ("recordedDate", "extension", "evidence"):
        condition.pop(name)
    return condition


def test_a_date_of_a_type_not_kept_dates_neither_channel(client, app, operator, marfan, gateway_config, tmp_path):
    """Before: when nothing kept was dated, a ClinicalImpression's date (a type the REST surface does not keep: 404)
    dated the Bundle's patient (19 years), while the same patient sent resource by resource had no age."""
    patient, condition = _resource(marfan, PATIENT_ID), _undated_condition(marfan)
    impression = _resource(marfan, IMPRESSION_ID)
    assert impression["effectiveDateTime"] == "2024-12-15"
    bundle = {
        "resourceType": "Bundle",
        "type": "collection",
        "entry": [{"fullUrl": f"{BASE}{r['resourceType']}/{r['id']}", "resource": r} for r in (patient, condition)]
        + [{"fullUrl": f"{BASE}ClinicalImpression/{IMPRESSION_ID}", "resource": impression}],
    }
    whole = _send(client, "POST", BASE, operator, copy.deepcopy(bundle))
    assert whole.status_code == 200, whole.get_data(as_text=True)
    (complete,) = _packets(app)

    other = create_app({**gateway_config, "data_dir": tmp_path / "by-parts"})
    try:
        parts = other.test_client()
        for resource in (patient, condition):
            sent = _send(parts, "PUT", f"/fhir/{resource['resourceType']}/{resource['id']}", operator, resource)
            assert sent.status_code == 201, sent.get_data(as_text=True)
        refused = _send(parts, "PUT", f"/fhir/ClinicalImpression/{IMPRESSION_ID}", operator, impression)
        assert refused.status_code == 404  # not kept on this channel: its date cannot date anything here
        (by_parts,) = _packets(other)
    finally:
        other.extensions["gateway"].store.close()
    assert by_parts.document["subject"] == complete.document["subject"]
    assert "timeAtLastEncounter" not in complete.document["subject"]
