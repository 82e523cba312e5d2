"""Issue 11, named gaps on the REST path: the IPS Composition is kept (its type selects the profile of
its patient), and two Patient ids of one person never overwrite each other's phenopacket."""

from __future__ import annotations

import json

import mappings
from gateway.services import fhir_resources as service
from gateway.services.fhir_incremental import FragmentCache, assemble_parts
from gateway.store import fhir_resources as rows

FHIR = "application/fhir+json"
IPS = "ips-1.1.0"


def _read(reference_dir, name):
    return json.loads((reference_dir / "fhir" / IPS / f"{name}.json").read_text())


def _send(client, method, path, headers, body=None):
    data = None if body is None else json.dumps(body)
    return client.open(path, method=method, data=data, headers={**headers, "Content-Type": FHIR})


def _severities(response):
    return {i["severity"] for i in response.get_json().get("issue", ())}


def _profile_of(app, patient_id):
    store = app.extensions["gateway"].store
    with store.engine.connect() as connection:
        resources = service.assemble(connection, "default", patient_id)
        assert resources is not None
        whole = mappings.detect_profile(
            {"resourceType": "Bundle", "entry": [{"resource": r.resource} for r in resources]}
        )
        parts = assemble_parts(connection, "default", patient_id, FragmentCache())
        assert parts is not None
        return whole, parts.profile


def test_an_ips_composition_is_kept_and_selects_the_ips_profile(client, app, operator, reference_dir):
    """Was: POST /fhir/Composition 404, so a patient summary sent resource by resource was read as generic."""
    for name in ("Patient-eumfh-39-07", "Condition-eumfh-39-07-1"):
        resource = _read(reference_dir, name)
        sent = _send(client, "PUT", f"/fhir/{resource['resourceType']}/{resource['id']}", operator, resource)
        assert sent.status_code == 201, sent.get_data(as_text=True)
    assert _profile_of(app, "eumfh-39-07") == ("generic", "generic")

    composition = _read(reference_dir, "Composition-composition-minimal")
    composition["subject"] = {"reference": "Patient/eumfh-39-07"}
    kept = _send(client, "POST", "/fhir/Composition", operator, composition)
    assert kept.status_code == 201, kept.get_data(as_text=True)
    assert "warning" not in _severities(kept) and "error" not in _severities(kept)  # maps to nothing else: no warning
    assert _profile_of(app, "eumfh-39-07") == ("ips", "ips")
    (packet,) = app.extensions["gateway"].store.list_phenopackets()[0]
    assert not [i for i in packet.issues if "Composition" in i.get("location", "") and i["severity"] != "information"]

    gone = _send(client, "DELETE", "/fhir/Composition/composition-minimal", operator)
    assert gone.status_code in (200, 204)
    assert _profile_of(app, "eumfh-39-07") == ("generic", "generic")
    with app.extensions["gateway"].store.engine.connect() as connection:
        assert rows.get(connection, "default", "Composition", "composition-minimal") is None


# --- one person, two Patient ids ---------------------------------------------------------------------

MARFAN = "mii-seltene-erkrankungen/Bundle-bundle-marfan-complete.json"


def _marfan(reference_dir, resource_id):
    bundle = json.loads((reference_dir / "fhir" / MARFAN).read_text())
    return next(e["resource"] for e in bundle["entry"] if e["resource"]["id"] == resource_id)


def _texts(response):
    return " ".join(i.get("diagnostics", "") for i in response.get_json()["issue"])


def test_a_second_patient_id_for_the_same_person_is_refused_naming_both(client, app, operator, reference_dir):
    """Was: the second Patient (same MII patient identifier, another id) silently replaced the first one's
    phenopacket, and deleting either took both people's data with it."""
    store = app.extensions["gateway"].store
    patient = _marfan(reference_dir, "patient-marfan-001")
    assert _send(client, "PUT", "/fhir/Patient/patient-marfan-001", operator, patient).status_code == 201
    condition = _marfan(reference_dir, "condition-marfan-genetic")
    assert _send(client, "PUT", "/fhir/Condition/condition-marfan-genetic", operator, condition).status_code == 201
    (before,) = store.list_phenopackets()[0]
    assert before.document.get("diseases")

    twin = {**patient, "id": "marfan-again", "gender": "female"}
    refused = _send(client, "PUT", "/fhir/Patient/marfan-again", operator, twin)
    assert refused.status_code == 422, refused.get_data(as_text=True)
    assert refused.get_json()["resourceType"] == "OperationOutcome"
    assert "Patient/marfan-again" in _texts(refused) and "Patient/patient-marfan-001" in _texts(refused)
    (after,) = store.list_phenopackets()[0]
    assert after.document == before.document  # nothing overwritten
    with store.engine.connect() as connection:
        assert rows.get(connection, "default", "Patient", "marfan-again") is None

    # A Bundle is a snapshot of the person as the sender sees it now (an IPS document is often made afresh,
    # with new ids, for each request): its Patient with the stored identifier is that stored Patient, said so.
    bundle = {
        "resourceType": "Bundle",
        "type": "collection",
        "entry": [{"fullUrl": "https://hospital.example/fhir/Patient/marfan-again", "resource": twin}],
    }
    posted = client.post("/fhir", data=json.dumps(bundle), headers={**operator, "Content-Type": FHIR})
    assert posted.status_code == 200, posted.get_data(as_text=True)
    said = posted.get_data(as_text=True)
    assert "same-person" in said and "kept as Patient/patient-marfan-001" in said
    (last,) = store.list_phenopackets()[0]
    assert last.subject_id == before.subject_id and last.document["subject"]["sex"] == "FEMALE"  # updated
    assert last.document.get("diseases") == before.document["diseases"]  # what arrived before is kept
    with store.engine.connect() as connection:
        assert rows.get(connection, "default", "Patient", "marfan-again") is None
        assert rows.get(connection, "default", "Patient", "patient-marfan-001") is not None
    restored = {**patient, "id": "patient-marfan-001"}
    assert _send(client, "PUT", "/fhir/Patient/patient-marfan-001", operator, restored).status_code == 200

    # Another person (another identifier value) under a new id is stored beside it.
    other = {**patient, "id": "someone-else", "identifier": [{**patient["identifier"][0], "value": "MRF-2024-999"}]}
    assert _send(client, "PUT", "/fhir/Patient/someone-else", operator, other).status_code == 201
    assert len(store.list_phenopackets()[0]) == 2
    # ... and may not take the first one's identifier later either.
    moved = _send(client, "PUT", "/fhir/Patient/someone-else", operator, {**patient, "id": "someone-else"})
    assert moved.status_code == 422 and "Patient/patient-marfan-001" in _texts(moved)


def test_an_ips_document_made_again_with_a_new_patient_id_updates_the_same_person(client, app, operator, reference_dir):
    """A national IPS service makes each document afresh, often with new resource ids: the second document
    of the same person (same patient identifier) must update that person, not be refused as a second
    Patient id nor stored as a second individual."""
    store = app.extensions["gateway"].store
    path = reference_dir / "fhir" / IPS / "Bundle-IPS-examples-Bundle-01.json"
    document = json.loads(path.read_text())
    (patient,) = [e["resource"] for e in document["entry"] if e["resource"]["resourceType"] == "Patient"]
    first = client.post("/fhir", data=json.dumps(document), headers={**operator, "Content-Type": FHIR})
    assert first.status_code == 200, first.get_data(as_text=True)
    new_id = patient["id"][:-4] + "abcd"  # still a well-formed urn:uuid where the document uses one
    again = json.loads(json.dumps(document).replace(patient["id"], new_id))
    second = client.post("/fhir", data=json.dumps(again), headers={**operator, "Content-Type": FHIR})
    assert second.status_code == 200, second.get_data(as_text=True)
    assert f"kept as Patient/{patient['id']}" in second.get_data(as_text=True)
    (packet,), total = store.list_phenopackets()
    assert total == 1
    assert packet.document.get("diseases") and packet.document.get("measurements")  # the document, once
    with store.engine.connect() as connection:
        assert rows.get(connection, "default", "Patient", new_id) is None
        kept = rows.get(connection, "default", "Patient", patient["id"])
        assert kept is not None and kept.full_url is not None and kept.full_url.endswith(new_id)  # the new fullUrl


def _regenerated(document, tag):
    """The document as a service makes it again: every resource under a new id (its fullUrl and every
    reference to it too), the content otherwise the same."""
    text = json.dumps(document)
    for entry in document["entry"]:
        old = entry["resource"]["id"]
        text = text.replace(old, old[: -len(tag)] + tag)  # still a well-formed urn:uuid
    return json.loads(text)


def _comparable(value):
    """A stored phenopacket as the golden tests compare them: without when it was made, lists as sets (a merge
    of parts gives them in part order), and each provenance reference without the resource's version (the
    adopted Patient takes the new document's fullUrl, a resource its new narrative)."""
    if isinstance(value, dict):
        return {
            k: _comparable(v.split(", version")[0] if k == "description" and isinstance(v, str) else v)
            for k, v in value.items()
            if k != "created"
        }
    if isinstance(value, list):
        return sorted((_comparable(v) for v in value), key=lambda v: json.dumps(v, sort_keys=True))
    return value


def test_an_ips_document_made_again_with_new_ids_for_every_resource_changes_nothing(
    client, app, operator, reference_dir
):
    """Was: only the Patient was taken as the stored one; its measurements and medications, under new ids, were
    stored a second time. A resource of the same person whose content (but for its id, meta and references
    to what is already stored) equals a stored one's is that resource: the second document changes nothing,
    and each such entry says so (same-resource)."""
    store = app.extensions["gateway"].store
    document = json.loads((reference_dir / "fhir" / IPS / "Bundle-IPS-examples-Bundle-01.json").read_text())
    first = client.post("/fhir", data=json.dumps(document), headers={**operator, "Content-Type": FHIR})
    assert first.status_code == 200, first.get_data(as_text=True)
    (once,), _ = store.list_phenopackets()
    assert once.document.get("measurements") and once.document.get("medicalActions")
    (patient,) = [e["resource"] for e in document["entry"] if e["resource"]["resourceType"] == "Patient"]
    gateway = app.extensions["gateway"]
    with store.engine.connect() as connection:
        kept = service.assemble(connection, "default", patient["id"])
    assert kept is not None
    # the phenopacket of the document sent once, as the store makes it from what it keeps (the form every
    # later write of this patient takes: lists in Type/id order, one provenance reference per kept resource)
    once_kept = service.make_phenopacket(kept, key=gateway.key, dataset_id="default", profile=None, now=once.created_at)

    again = _regenerated(document, "abcd")
    second = client.post("/fhir", data=json.dumps(again), headers={**operator, "Content-Type": FHIR})
    assert second.status_code == 200, second.get_data(as_text=True)
    said = second.get_data(as_text=True)
    observation = next(e for e in document["entry"] if e["resource"]["resourceType"] == "Observation")["resource"]
    assert "same-resource" in said and f"kept as Observation/{observation['id']}" in said
    (twice,), total = store.list_phenopackets()
    assert total == 1
    assert _comparable(twice.document) == _comparable(once_kept.document)
    with store.engine.connect() as connection:
        assert len(service.assemble(connection, "default", patient["id"]) or ()) == len(kept)  # nothing kept twice
    with store.engine.connect() as connection:
        assert rows.get(connection, "default", "Observation", observation["id"][:-4] + "abcd") is None

    # A third document with one lab value changed: that Observation is a new one, kept beside the first.
    changed = _regenerated(document, "ef01")
    lab = next(
        e["resource"]
        for e in changed["entry"]
        if "valueQuantity" in e["resource"] and e["resource"]["resourceType"] == "Observation"
    )
    lab["valueQuantity"] = {**lab["valueQuantity"], "value": lab["valueQuantity"]["value"] + 1}
    third = client.post("/fhir", data=json.dumps(changed), headers={**operator, "Content-Type": FHIR})
    assert third.status_code == 200, third.get_data(as_text=True)
    (thrice,), _ = store.list_phenopackets()
    assert len(thrice.document["measurements"]) == len(once.document["measurements"]) + 1
    assert _comparable(thrice.document["medicalActions"]) == _comparable(once.document["medicalActions"])
    assert _comparable(thrice.document["diseases"]) == _comparable(once.document["diseases"])
    with store.engine.connect() as connection:
        now_kept = service.assemble(connection, "default", patient["id"]) or []
    added = {(r.resource_type, r.resource_id) for r in now_kept} - {(r.resource_type, r.resource_id) for r in kept}
    # the new lab value, and the document's Composition, which lists it (so it is a new document index)
    assert sorted(added) == sorted([("Observation", lab["id"]), ("Composition", changed["entry"][0]["resource"]["id"])])
