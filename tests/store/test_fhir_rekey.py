"""Rows kept before identifiers were pseudonymised at rest: `rekey_identifiers` restates them (SQLite, PostgreSQL).

A row 'written the old way' holds the Patient's identifier value in clear (and its name), and a resource
naming its patient by a conditional reference holds the record number in the reference and in the
`patient_ref` column. After the step: no record number anywhere in the table, the phenopacket unchanged,
a resend of the same resource is 'unchanged', and a second run changes nothing.
"""

from __future__ import annotations

import copy
import json
from datetime import UTC, datetime

import pytest
import sqlalchemy as sa

from gateway.services import fhir_resources as service
from gateway.services.fhir_resources import ResourceWrite, apply_writes, rekey_identifiers
from gateway.store.fhir_resources import content_hash
from gateway.store.tables import fhir_resources

KEY = bytes(range(32))
NOW = datetime(2026, 11, 30, 12, 0, tzinfo=UTC)
MARFAN = "mii-seltene-erkrankungen/Bundle-bundle-marfan-complete.json"
MRN = "MRF-2024-001"


def _marfan(reference_dir, resource_id):
    bundle = json.loads((reference_dir / "fhir" / MARFAN).read_text())
    return copy.deepcopy(next(e["resource"] for e in bundle["entry"] if e["resource"]["id"] == resource_id))


def _write_the_old_way(store, resources):
    """What the gateway kept before at_rest: the resources as received, the conditional reference in clear."""
    with store.transaction() as connection:
        for resource in resources:
            raw = dict(resource)
            connection.execute(
                sa.update(fhir_resources)
                .where(fhir_resources.c.resource_type == raw["resourceType"], fhir_resources.c.resource_id == raw["id"])
                .values(
                    resource=raw,
                    content_hash=content_hash(raw),
                    **({"patient_ref": raw["subject"]["reference"]} if "subject" in raw else {}),
                )
            )


def _table_text(store):
    with store.engine.connect() as connection:
        return json.dumps([dict(r) for r in connection.execute(sa.select(fhir_resources)).mappings()], default=str)


def test_rows_kept_before_pseudonymisation_at_rest_are_restated(store, reference_dir):
    patient = _marfan(reference_dir, "patient-marfan-001")
    system = patient["identifier"][0]["system"]
    assert patient["identifier"][0]["value"] == MRN
    condition = _marfan(reference_dir, "condition-marfan-genetic")
    condition["subject"] = {"reference": f"Patient?identifier={system}|{MRN}"}
    writes = [ResourceWrite("Patient", patient["id"], patient), ResourceWrite("Condition", condition["id"], condition)]
    apply_writes(writes, store=store, key=KEY, dataset_id="ds1", now=NOW)
    (packet_before,) = store.list_phenopackets()[0]
    _write_the_old_way(store, [patient, condition])
    assert MRN in _table_text(store)  # the old rows, as they were

    assert rekey_identifiers(store, KEY) == 2
    text = _table_text(store)
    assert MRN not in text
    kept = {r["resource_type"]: r for r in json.loads(text)}
    assert "name" not in kept["Patient"]["resource"]  # minimised as a Patient kept today
    assert kept["Condition"]["patient_ref"] == kept["Condition"]["resource"]["subject"]["reference"]
    assert kept["Condition"]["patient_ref"].startswith(f"Patient?identifier={system}|pid-")
    (packet_after,) = store.list_phenopackets()[0]
    assert packet_after.document == packet_before.document

    changes = apply_writes(writes, store=store, key=KEY, dataset_id="ds1", now=NOW)
    assert [c.status for c in changes] == ["unchanged", "unchanged"]  # the same resources again: nothing to do
    assert rekey_identifiers(store, KEY) == 0  # idempotent
    assert _table_text(store) == text


class _Interrupted(Exception):
    pass


def test_a_run_that_fails_midway_keeps_the_batches_before_and_a_second_run_finishes(store, reference_dir):
    """One transaction per batch of rows: the batches before a failure stay restated, the failing batch is rolled
    back whole, and running again finishes (rows already restated are not written again)."""
    bundle = json.loads((reference_dir / "fhir" / MARFAN).read_text())
    patient = _marfan(reference_dir, "patient-marfan-001")
    conditional = {"reference": f"Patient?identifier={patient['identifier'][0]['system']}|{MRN}"}
    others = [
        {**copy.deepcopy(e["resource"]), "subject": conditional}
        for e in bundle["entry"]
        if e["resource"]["resourceType"] in ("Condition", "Observation")
    ]
    resources = [patient, *others]
    writes = [ResourceWrite(r["resourceType"], r["id"], r) for r in resources]
    apply_writes(writes, store=store, key=KEY, dataset_id="ds1", now=NOW)
    (packet_before,) = store.list_phenopackets()[0]
    _write_the_old_way(store, resources)  # every row now differs from its at-rest form (the record number in clear)
    with store.engine.connect() as connection:
        pks = [r.pk for r in connection.execute(sa.select(fhir_resources.c.pk).order_by(fhir_resources.c.pk))]
    assert len(pks) == len(resources) >= 6

    def at_rest(resource, patient_ref):
        return service.at_rest(resource, KEY), service.pseudonymous_reference(patient_ref, KEY) if patient_ref else None

    seen = []

    def failing(resource, patient_ref):
        seen.append(resource["id"])
        if len(seen) == 5:  # the first row of the third batch
            raise _Interrupted
        return at_rest(resource, patient_ref)

    done = []
    with pytest.raises(_Interrupted):
        service.restate_resources(store, failing, batch=2, progress=lambda changed, last: done.append((changed, last)))
    assert done == [(2, pks[1]), (4, pks[3])]  # two batches committed
    in_clear = {r["pk"] for r in json.loads(_table_text(store)) if MRN in json.dumps(r)}
    assert in_clear == set(pks[4:])  # before the failure: restated; from it on: untouched

    assert service.rekey_identifiers(store, KEY, batch=2) == len(pks) - 4  # the rest, and only the rest
    assert MRN not in _table_text(store)
    (packet_after,) = store.list_phenopackets()[0]
    assert packet_after.document == packet_before.document
    assert service.rekey_identifiers(store, KEY, batch=2) == 0
