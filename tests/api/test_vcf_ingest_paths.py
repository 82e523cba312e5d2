"""VCF ingest through the CLI and the HTTP upload job, with samples linked to FHIR patients."""

from __future__ import annotations

import json
import uuid
from pathlib import Path

import pytest

from gateway.cli import main
from tests.conftest import TEST_KEY_HEX, wait_for_job
from tests.variants.vcfgen import write_vcf

IDENTIFIER_SYSTEM = "https://hospital.example.org/sid/patient-id"


def patients_bundle(values: list[str]) -> dict:
    """A transaction of bare Patients carrying hospital identifiers (what a hospital's EHR sends)."""
    entries = []
    for value in values:
        entries.append(
            {
                "fullUrl": f"urn:uuid:{uuid.uuid5(uuid.NAMESPACE_URL, value)}",
                "resource": {
                    "resourceType": "Patient",
                    "identifier": [{"system": IDENTIFIER_SYSTEM, "value": value}],
                    "gender": "female",
                    "birthDate": "1980-02-03",
                },
                "request": {"method": "POST", "url": "Patient"},
            }
        )
    return {"resourceType": "Bundle", "type": "transaction", "entry": entries}


@pytest.fixture
def cohort(tmp_path):
    """A 12-sample VCF, a sample map naming 10 of its samples' patients, and their bundle."""
    vcf = write_vcf(tmp_path / "cohort.vcf", seed=5, n_records=60, n_samples=12)
    values = [f"MRN-{i:04d}" for i in range(10)]
    sample_map = tmp_path / "samples.tsv"
    sample_map.write_text("".join(f"SAMPLE{i:03d}\t{IDENTIFIER_SYSTEM}|{v}\n" for i, v in enumerate(values)))
    return vcf, sample_map, patients_bundle(values)


def test_cli_ingest_vcf_links_samples_to_fhir_patients(tmp_path, monkeypatch, cohort, capsys):
    vcf, sample_map, bundle = cohort
    monkeypatch.setenv("GATEWAY_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("GATEWAY_SECRET_KEY", TEST_KEY_HEX)
    bundle_path = tmp_path / "patients.json"
    bundle_path.write_text(json.dumps(bundle))
    assert main(["ingest", "fhir", str(bundle_path), "--dataset", "cohort"]) == 0
    capsys.readouterr()
    assert main(["ingest", "vcf", str(vcf), "--dataset", "cohort", "--sample-map", str(sample_map)]) == 0
    out = capsys.readouterr().out
    assert "samples: 12, linked: 10, unlinked: 2" in out
    assert "SAMPLE010" in out and "SAMPLE011" in out  # the unlinked ones are named, not guessed


def test_cli_rejects_a_broken_vcf_and_leaves_the_dataset_unchanged(tmp_path, monkeypatch, cohort, capsys):
    vcf, _, _ = cohort
    monkeypatch.setenv("GATEWAY_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("GATEWAY_SECRET_KEY", TEST_KEY_HEX)
    assert main(["ingest", "vcf", str(vcf), "--dataset", "d1"]) == 0
    capsys.readouterr()
    broken = tmp_path / "broken.vcf"
    lines = vcf.read_text().splitlines()
    lines.insert(len(lines) // 2, "chr1\t0\t.\tA\tG\t50\tPASS\t.\tGT" + "\t0/1" * 12)  # POS 0 is invalid
    broken.write_text("\n".join(lines) + "\n")
    assert main(["ingest", "vcf", str(broken), "--dataset", "d1"]) == 1
    err = capsys.readouterr().err
    assert f"{broken}:" in err and "unchanged" in err

    from gateway.config import load_config
    from gateway.variants.query import VariantQuery
    from gateway.variants.store import VariantStore

    store = VariantStore(load_config().data_dir)
    assert store.count(VariantQuery(dataset_ids=("d1",))) > 0  # the earlier version still answers
    store.close()


def test_http_upload_is_a_job_that_ingests_and_links(client, app, operator, cohort):
    vcf, sample_map, bundle = cohort
    resp = client.post(
        "/fhir?dataset=cohort", data=json.dumps(bundle), headers={**operator, "Content-Type": "application/fhir+json"}
    )
    assert resp.status_code == 200
    upload = client.post(
        "/uploads", data=sample_map.read_text(), headers={**operator, "Content-Type": "text/tab-separated-values"}
    )
    assert upload.status_code == 201 and upload.get_json()["samples"] == 10

    resp = client.post(
        f"/datasets/cohort/vcf?assembly=GRCh38&sample_map={upload.get_json()['id']}",
        data=vcf.read_bytes(),
        headers={**operator, "Content-Type": "text/plain"},
    )
    assert resp.status_code == 202, resp.get_data(as_text=True)
    state = wait_for_job(client, resp.headers["Location"], operator)
    assert state["status"] == "done", state
    assert state["summary"]["samplesLinked"] == 10
    assert state["summary"]["recordsRead"] == 60
    assert "upload" not in state and "pid" not in state  # internal paths never leave the node


def test_http_upload_of_garbage_is_rejected_in_the_job_not_the_server(client, operator):
    resp = client.post(
        "/datasets/junk/vcf",
        data=b"\x1f\x8b\x08\x00garbage-not-bgzf",
        headers={**operator, "Content-Type": "application/gzip"},
    )
    assert resp.status_code == 202
    state = wait_for_job(client, resp.headers["Location"], operator)
    assert state["status"] in ("rejected", "failed")
    assert client.get("/health").status_code == 200


def test_upload_needs_an_operator_and_a_sane_dataset_id(client, operator):
    assert client.post("/datasets/x/vcf", data=b"x", headers={"Content-Type": "text/plain"}).status_code == 401
    bad = client.post("/datasets/..%2Fetc/vcf", data=b"x", headers={**operator, "Content-Type": "text/plain"})
    assert bad.status_code in (400, 404)
    assert client.get("/jobs/../../secret.key", headers=operator).status_code == 404


# --- one dataset-id rule, checked before anything is written ---------------------------------


def test_http_upload_to_a_malformed_dataset_id_is_refused_and_writes_nothing(client, app, operator, cohort):
    vcf, _, _ = cohort
    resp = client.post("/datasets/a:b/vcf", data=vcf.read_bytes(), headers={**operator, "Content-Type": "text/plain"})
    assert resp.status_code == 400, resp.get_data(as_text=True)
    assert "dataset id" in resp.get_json()["error"]["message"]
    data_dir = app.extensions["gateway"].config.data_dir
    assert not (data_dir / "uploads").exists() or not any((data_dir / "uploads").iterdir())
    assert "a:b" not in [d["id"] for d in app.extensions["gateway"].store.list_datasets()]


@pytest.mark.parametrize("dataset", ["a:b", "-x", ".hidden", "x" * 129])
def test_every_http_ingest_refuses_a_malformed_dataset_id(client, app, operator, dataset):
    bundle = patients_bundle(["MRN-1"])
    fhir = client.post(
        "/fhir",
        query_string={"dataset": dataset},
        json=bundle,
        headers={**operator, "Content-Type": "application/fhir+json"},
    )
    assert fhir.status_code == 400
    assert fhir.get_json()["resourceType"] == "OperationOutcome"
    packets = client.post("/phenopackets", query_string={"dataset": dataset}, json={"id": "p"}, headers=operator)
    assert packets.status_code == 400 and "dataset id" in packets.get_json()["error"]["message"]
    assert dataset not in [d["id"] for d in app.extensions["gateway"].store.list_datasets()]


def test_cli_ingest_refuses_a_malformed_dataset_id(tmp_path, monkeypatch, cohort, capsys):
    vcf, _, bundle = cohort
    monkeypatch.setenv("GATEWAY_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("GATEWAY_SECRET_KEY", TEST_KEY_HEX)
    bundle_path = tmp_path / "patients.json"
    bundle_path.write_text(json.dumps(bundle))
    assert main(["ingest", "vcf", str(vcf), "--dataset", "a:b"]) == 2
    assert main(["ingest", "fhir", str(bundle_path), "--dataset", "a:b"]) == 2
    assert "dataset id 'a:b' is not valid" in capsys.readouterr().err
    assert not (tmp_path / "data" / "variants" / "a:b").exists()


def test_configuration_refuses_a_malformed_dataset_id():
    from gateway.config import ConfigError, config_from_mapping

    with pytest.raises(ConfigError, match="dataset id 'a:b'"):
        config_from_mapping({"datasets": [{"id": "a:b"}]})
    with pytest.raises(ConfigError, match="dataset id 'a b'"):
        config_from_mapping({"default_dataset": "a b"})


def test_configuration_refuses_an_unknown_key_and_keeps_the_known_sections_typed():
    from gateway.config import ConfigError, config_from_mapping

    with pytest.raises(ConfigError, match=r"unknown configuration key.*securty"):
        config_from_mapping({"securty": {"audit": False}})  # misspelt: would silently drop the settings
    cfg = config_from_mapping({"security": {"audit": False}, "demo": 1, "default_data_use_conditions": ["DUO:0000042"]})
    assert cfg.security == {"audit": False} and cfg.demo is True
    assert cfg.default_data_use_conditions == ("DUO:0000042",)


def test_the_environment_and_the_example_file_follow_the_same_rules():
    from gateway.config import ConfigError, load_config

    with pytest.raises(ConfigError, match="GATEWAY_DEFAULT_DATASET: dataset id 'a:b'"):
        load_config(env={"GATEWAY_DEFAULT_DATASET": "a:b"})
    example = Path(__file__).resolve().parents[2] / "gateway.example.yaml"
    cfg = load_config(env={"GATEWAY_CONFIG": str(example)})  # every key the example documents is known
    assert cfg.default_dataset == "default"
