"""`gateway ingest fhir` on FHIR Bulk Data files (NDJSON: one resource per line, one file per type), made here
from the real Bundles of ../shared/reference the way a bulk export writes them."""

from __future__ import annotations

import gzip
import json

import pytest

from gateway.cli import main
from tests.store.test_fhir_resources import _canonical  # lists as sets: parts merge in (type, id) order

MII = ("fhir", "mii-seltene-erkrankungen", "Bundle-bundle-marfan-complete.json")
IPS = ("fhir", "ips-1.1.0", "Bundle-IPS-examples-Bundle-01.json")


def _export(bundle: dict, folder, *, gz: bool = False) -> dict[str, str]:
    """One `{Type}.ndjson` per resource type of the Bundle, a resource per line, in the Bundle's order; a
    reference to an entry's `urn:` fullUrl written `Type/id` (a bulk export has no fullUrls)."""
    names = {
        e["fullUrl"]: f"{e['resource']['resourceType']}/{e['resource']['id']}"
        for e in bundle["entry"]
        if "fullUrl" in e
    }
    text = json.dumps([e["resource"] for e in bundle["entry"]])
    for url, name in names.items():
        text = text.replace(json.dumps(url), json.dumps(name))
    by_type: dict[str, list[str]] = {}
    for resource in json.loads(text):
        by_type.setdefault(resource["resourceType"], []).append(json.dumps(resource))
    files = {}
    for resource_type, lines in by_type.items():
        path = folder / f"{resource_type}.ndjson{'.gz' if gz else ''}"
        data = ("\n".join(lines) + "\n").encode()
        path.write_bytes(gzip.compress(data) if gz else data)
        files[resource_type] = str(path)
    return files


def _documents(dataset: str) -> list[dict]:
    """The dataset's stored phenopackets without metaData (when and from which messages they were made)."""
    from gateway.config import load_config
    from gateway.store import MetadataStore

    store = MetadataStore.open(load_config().resolved_database_url)
    try:
        packets, _ = store.list_phenopackets(dataset_id=dataset)
        return [_canonical({k: v for k, v in p.document.items() if k != "metaData"}) for p in packets]
    finally:
        store.close()


@pytest.mark.parametrize("patient_first", [True, False])
def test_a_bulk_export_in_either_order_makes_the_phenopacket_its_bundle_makes(
    env, reference_dir, tmp_path, capsys, monkeypatch, patient_first
):
    """Before: `.ndjson` was read as one JSON document and refused ("not valid JSON" at line 2). A bulk export is
    one file per type; the Patient's file may come last (its resources wait, then apply). Ids are derived per
    node and dataset: the Bundle goes to another node's store under the same dataset name."""
    path = reference_dir.joinpath(*MII)
    monkeypatch.setenv("GATEWAY_DATA_DIR", str(tmp_path / "bundle-node"))
    assert main(["ingest", "fhir", str(path), "--dataset", "rd"]) == 0
    expected = _documents("rd")
    monkeypatch.setenv("GATEWAY_DATA_DIR", str(tmp_path / "bulk-node"))
    files = _export(json.loads(path.read_text()), tmp_path)
    others = [p for t, p in sorted(files.items()) if t != "Patient"]
    ordered = [files["Patient"], *others] if patient_first else [*others, files["Patient"]]
    capsys.readouterr()
    assert main(["ingest", "fhir", *ordered, "--dataset", "rd"]) == 0, capsys.readouterr().err
    out = capsys.readouterr().out
    assert ("pending" in out) is not patient_first
    conditions = files["Condition"]
    kept = "4 resource(s) kept (4 created), into 1 phenopacket(s)"
    pending = "4 resource(s) kept (4 created), into 0 phenopacket(s); 4 pending: their Patient is not in dataset rd yet"
    assert f"{conditions}: summary: {kept if patient_first else pending}" in out, out
    assert "Condition/" not in out  # a line per file, not per resource
    assert _documents("rd") == expected
    assert main(["ingest", "fhir", *ordered, "--dataset", "rd"]) == 0  # sent again: the same record
    assert f"{conditions}: summary: 4 resource(s) kept (4 unchanged)" in capsys.readouterr().out
    assert _documents("rd") == expected


def test_types_not_kept_are_left_out_with_one_note_per_type_and_gzip_is_read(env, reference_dir, tmp_path, capsys):
    """An IPS export has Practitioners and Organizations: one warning per type naming its lines, not one per
    resource, and not a refusal; references to what other files hold are no warning (the Bundle check's
    "does not resolve to an entry of the Bundle" was one per reference). `.ndjson.gz` reads the same."""
    files = _export(json.loads(reference_dir.joinpath(*IPS).read_text()), tmp_path, gz=True)
    assert main(["ingest", "fhir", *files.values(), "--dataset", "ips"]) == 0, capsys.readouterr().err
    err = capsys.readouterr().err
    organizations = files["Organization"]
    assert f"{organizations}: WARNING [no-phenopacket-target]: 2 Organization resource(s) left out: not a type" in err
    assert err.count("resource(s) left out") == 2  # Organization, Practitioner
    assert "reference-dangling" not in err
    (packet,) = _documents("ips")
    assert packet["subject"]["id"] and packet.get("diseases") and packet.get("medicalActions")


def test_a_bad_line_refuses_the_file_naming_the_line_and_stores_nothing(env, reference_dir, tmp_path, capsys):
    files = _export(json.loads(reference_dir.joinpath(*MII).read_text()), tmp_path)
    conditions = tmp_path / "Condition.ndjson"
    lines = conditions.read_text().splitlines()
    broken = json.loads(lines[1])
    broken["onsetDateTime"] = "yesterday"
    syntax = lines[2][:-1]  # no closing brace
    conditions.write_text("\n".join([lines[0], json.dumps(broken), syntax, *lines[3:]]) + "\n")
    assert main(["ingest", "fhir", str(conditions), "--dataset", "rd"]) == 1
    err = capsys.readouterr().err
    assert f"{conditions}: ERROR [json-syntax] at line 3" in err
    assert f"{conditions}: rejected; nothing stored" in err
    conditions.write_text("\n".join([lines[0], json.dumps(broken), *lines[2:]]) + "\n")
    assert main(["ingest", "fhir", files["Patient"], str(conditions), "--dataset", "rd"]) == 1
    err = capsys.readouterr().err
    assert f"{conditions}: ERROR" in err and "at line 2, /onsetDateTime" in err
    assert f"{conditions}: rejected; nothing stored" in err
    (packet,) = _documents("rd")  # the Patient's file was stored; none of the Conditions
    assert "diseases" not in packet


def test_validate_checks_every_line_and_names_the_line(env, reference_dir, tmp_path, capsys):
    files = _export(json.loads(reference_dir.joinpath(*MII).read_text()), tmp_path, gz=True)
    assert main(["validate", *files.values()]) == 0, capsys.readouterr().out
    lines = gzip.decompress((tmp_path / "Condition.ndjson.gz").read_bytes()).decode().splitlines()
    broken = json.loads(lines[1])
    broken["onsetDateTime"] = "yesterday"
    bad = tmp_path / "Condition.ndjson"
    bad.write_text("\n".join([lines[0], json.dumps(broken), "{", *lines[2:]]) + "\n")
    capsys.readouterr()
    assert main(["validate", str(bad)]) == 1
    out = capsys.readouterr()
    text = out.out + out.err
    assert "line 2, /onsetDateTime" in text and "line 3" in text, text


def test_a_file_past_the_bound_is_refused_without_being_read_whole(env, tmp_path, capsys, monkeypatch):
    """A gzip bomb (or an export that should have been split) is a clear refusal at the bound, never the machine's
    memory: reading stops there, for ingest (max_ndjson_bytes) and for validate."""
    bomb = tmp_path / "Observation.ndjson.gz"
    line = json.dumps({"resourceType": "Basic", "id": "b", "code": {"text": "x" * 1000}}) + "\n"
    bomb.write_bytes(gzip.compress(line.encode() * 2000, compresslevel=9))  # ≈ 2 MB decompressed
    monkeypatch.setenv("GATEWAY_MAX_NDJSON_BYTES", str(200_000))
    assert main(["ingest", "fhir", str(bomb)]) == 1
    err = capsys.readouterr().err
    assert "ERROR [too-costly] at line 1" in err and "split the file" in err
    assert f"{bomb}: rejected; nothing stored" in err
    single = tmp_path / "Condition.ndjson"
    single.write_bytes(b'{"resourceType": "Condition", "note": "' + b"y" * 300_000 + b'"}')  # one line past it
    assert main(["ingest", "fhir", str(single)]) == 1
    assert "ERROR [too-costly] at line 1" in capsys.readouterr().err
    import gateway.validation.engine as engine

    monkeypatch.setattr(engine, "NDJSON_MAX_BYTES", 200_000)
    assert main(["validate", str(bomb)]) == 1
    out = capsys.readouterr()
    assert "too-costly" in out.out + out.err


def test_one_resource_twice_in_a_file_is_refused_naming_both_lines(env, reference_dir, tmp_path, capsys):
    """A transaction changes a resource once; the refusal named "entry 0" and the pointer "/request/url" of the
    request the gateway makes of each line — neither is in the file."""
    _export(json.loads(reference_dir.joinpath(*MII).read_text()), tmp_path)
    conditions = tmp_path / "Condition.ndjson"
    lines = conditions.read_text().splitlines()
    conditions.write_text("\n".join([lines[0], *lines[1:], lines[0]]) + "\r\n")  # CRLF, as Windows writes it
    assert main(["ingest", "fhir", str(conditions), "--dataset", "rd"]) == 1
    err = capsys.readouterr().err
    assert f"{conditions}: ERROR [duplicate] at line {len(lines) + 1}: " in err
    assert "is named by line 1 too" in err and "entry" not in err
