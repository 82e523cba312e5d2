"""`gateway ingest fhir` as an interface engine drives it: the same Bundle semantics as POST /fhir.

Each test names what the command did before its fix."""

from __future__ import annotations

import json

import pytest
import sqlalchemy as sa

from gateway.cli import main
from gateway.store.tables import fhir_resources

PROBLEM = "http://hospital.example/problem"
MRN = "http://hospital.example/mrn"


def _patient():
    return {
        "resourceType": "Patient",
        "id": "pat-1",
        "identifier": [{"system": MRN, "value": "MRN-1"}],
        "gender": "female",
        "birthDate": "1990-02-03",
    }


def _condition(resource_id, note):
    return {
        "resourceType": "Condition",
        "id": resource_id,
        "identifier": [{"system": PROBLEM, "value": "P-1"}],
        "verificationStatus": {
            "coding": [{"system": "http://terminology.hl7.org/CodeSystem/condition-ver-status", "code": "confirmed"}]
        },
        "code": {"coding": [{"system": "http://www.orpha.net", "code": "558", "display": "Marfan syndrome"}]},
        "subject": {"reference": "Patient/pat-1"},
        "note": [{"text": note}],
    }


def _bundle(tmp_path, name, kind, *entries):
    path = tmp_path / name
    path.write_text(json.dumps({"resourceType": "Bundle", "type": kind, "entry": list(entries)}))
    return str(path)


def _kept(env):
    engine = sa.create_engine(f"sqlite:///{env / 'data' / 'gateway.sqlite'}")
    columns = (fhir_resources.c.resource_type, fhir_resources.c.resource_id, fhir_resources.c.version)
    with engine.connect() as connection:
        found = sorted(tuple(row) for row in connection.execute(sa.select(*columns)))
    engine.dispose()
    return found


@pytest.mark.parametrize("kind", ["transaction", "batch"])
def test_ingest_honours_if_none_exist_beside_a_patient(env, tmp_path, capsys, kind):
    """request.ifNoneExist in a Bundle that carries its Patient (FHIR http.html#ccreate): a match is not created,
    as POST /fhir does. Before: the CLI ignored it and kept a second copy of the Condition (c-again)."""
    first = _bundle(
        tmp_path,
        "first.json",
        kind,
        {"resource": _patient(), "request": {"method": "PUT", "url": "Patient/pat-1"}},
        {"resource": _condition("c-first", "first"), "request": {"method": "PUT", "url": "Condition/c-first"}},
    )
    assert main(["ingest", "fhir", first]) == 0, capsys.readouterr()
    conditional = {"method": "POST", "url": "Condition", "ifNoneExist": f"identifier={PROBLEM}|P-1"}
    again = _bundle(
        tmp_path,
        "again.json",
        kind,
        {"resource": _patient(), "request": {"method": "PUT", "url": "Patient/pat-1"}},
        {"resource": _condition("c-again", "sent again"), "request": conditional},
    )
    assert main(["ingest", "fhir", again]) == 0, capsys.readouterr()
    out = capsys.readouterr().out
    assert [k for k in _kept(env) if k[0] == "Condition"] == [("Condition", "c-first", 1)]
    assert "summary" in out


def test_ingest_adds_nothing_of_another_patient_s_match(env, tmp_path, capsys):
    """An ifNoneExist beside patient two that matches patient one's Condition: not created, said, and patient
    two's phenopacket gets nothing of it (as POST /fhir; before: the other person's disease stood in)."""
    from gateway.config import load_config
    from gateway.store import MetadataStore

    first = _bundle(
        tmp_path,
        "first.json",
        "transaction",
        {"resource": _patient(), "request": {"method": "PUT", "url": "Patient/pat-1"}},
        {"resource": _condition("c-first", "first"), "request": {"method": "PUT", "url": "Condition/c-first"}},
    )
    assert main(["ingest", "fhir", first]) == 0, capsys.readouterr()
    two = {**_patient(), "id": "pat-2", "identifier": [{"system": MRN, "value": "MRN-2"}]}
    again = {**_condition("c-again", "sent again"), "subject": {"reference": "Patient/pat-2"}}
    conditional = {"method": "POST", "url": "Condition", "ifNoneExist": f"identifier={PROBLEM}|P-1"}
    second = _bundle(
        tmp_path,
        "second.json",
        "transaction",
        {"resource": two, "request": {"method": "PUT", "url": "Patient/pat-2"}},
        {"resource": again, "request": conditional},
    )
    capsys.readouterr()
    assert main(["ingest", "fhir", second]) == 0
    said = capsys.readouterr()
    assert "another-patient" in said.out + said.err and "Basic" not in said.out + said.err
    store = MetadataStore.open(load_config().resolved_database_url)
    try:
        packets = store.list_phenopackets()[0]
    finally:
        store.close()
    assert sorted(bool(p.document.get("diseases")) for p in packets) == [False, True]
    assert [k for k in _kept(env) if k[0] == "Condition"] == [("Condition", "c-first", 1)]


@pytest.mark.parametrize("kind", ["transaction", "batch"])
def test_ingest_refuses_an_if_none_exist_matching_several(env, tmp_path, capsys, kind):
    """Several kept resources match an ifNoneExist: a transaction is refused whole, a batch's patient of that entry
    is not stored (exit 1 both), as POST /fhir answers 412. Before: ignored, a third copy stored and exit 0."""
    twins = [
        {"resource": _condition(f"c-{n}", f"copy {n}"), "request": {"method": "PUT", "url": f"Condition/c-{n}"}}
        for n in (1, 2)
    ]
    patient = {"resource": _patient(), "request": {"method": "PUT", "url": "Patient/pat-1"}}
    assert main(["ingest", "fhir", _bundle(tmp_path, "twins.json", "transaction", patient, *twins)]) == 0
    before = _kept(env)
    conditional = {"method": "POST", "url": "Condition", "ifNoneExist": f"identifier={PROBLEM}|P-1"}
    third = {"resource": _condition("c-3", "third"), "request": conditional}
    capsys.readouterr()
    assert main(["ingest", "fhir", _bundle(tmp_path, "third.json", kind, patient, third)]) == 1
    err = capsys.readouterr().err
    assert "multiple-matches" in err or "more than one" in err
    assert "/entry/1/request/ifNoneExist" in err
    assert _kept(env) == before


def _first(env, tmp_path):
    first = _bundle(
        tmp_path,
        "first.json",
        "transaction",
        {"resource": _patient(), "request": {"method": "PUT", "url": "Patient/pat-1"}},
        {"resource": _condition("c-1", "first"), "request": {"method": "PUT", "url": "Condition/c-1"}},
    )
    assert main(["ingest", "fhir", first]) == 0
    return _kept(env)


PATIENT_ENTRY = {"resource": _patient(), "request": {"method": "PUT", "url": "Patient/pat-1"}}


@pytest.mark.parametrize(
    ("entry", "where"),
    [
        (
            {"resource": _condition("c-2", "patched"), "request": {"method": "PATCH", "url": "Condition/c-2"}},
            "/entry/1/request/method",
        ),
        (
            {"resource": _condition("c-2", "typed"), "request": {"method": "PUT", "url": "Observation/c-9"}},
            "/entry/1/request/url",
        ),
        ({"request": {"method": "DELETE", "url": "Condition/c-1"}}, "/entry/1"),
    ],
)
def test_ingest_refuses_what_post_fhir_refuses(env, tmp_path, capsys, entry, where):
    """The entry requests POST /fhir refuses (400/422, fhir_requests): a PATCH, a url naming another type than
    the resource, a DELETE beside Patients. Before: the CLI stored the PATCH as a PUT, kept the Condition under
    the url's id c-9, dropped the DELETE with a warning; exit 0 each time."""
    before = _first(env, tmp_path)
    capsys.readouterr()
    assert main(["ingest", "fhir", _bundle(tmp_path, "bad.json", "transaction", PATIENT_ENTRY, entry)]) == 1
    err = capsys.readouterr().err
    assert where in err and "rejected; nothing stored" in err
    assert _kept(env) == before


def test_ingest_of_a_batch_refuses_the_entry_and_stores_the_rest(env, tmp_path, capsys):
    """A batch is judged entry by entry (as POST /fhir answers that entry 422): the DELETE beside a Patient is not
    performed, the rest is stored, and the command exits 1 saying which entry was refused."""
    before = _first(env, tmp_path)
    added = {"resource": _condition("c-2", "second"), "request": {"method": "PUT", "url": "Condition/c-2"}}
    delete = {"request": {"method": "DELETE", "url": "Condition/c-1"}}
    capsys.readouterr()
    assert main(["ingest", "fhir", _bundle(tmp_path, "batch.json", "batch", PATIENT_ENTRY, added, delete)]) == 1
    assert "/entry/2" in capsys.readouterr().err
    assert _kept(env) == sorted([*before, ("Condition", "c-2", 1)])


def test_ingest_refuses_a_patient_reference_that_can_never_resolve(env, tmp_path, capsys):
    """A resource kept on its own whose subject can never name a Patient waits until it expires, silently lost;
    POST /fhir refuses it (422). Before: the CLI kept it pending and exited 0."""
    lone = {**_condition("c-lost", "lost"), "subject": {"reference": "Observation/o-1"}}
    path = tmp_path / "lone.json"
    path.write_text(json.dumps(lone))
    assert main(["ingest", "fhir", str(path)]) == 1
    assert "/subject/reference" in capsys.readouterr().err
    assert not (env / "data" / "gateway.sqlite").exists() or _kept(env) == []
