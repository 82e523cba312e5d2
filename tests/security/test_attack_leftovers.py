"""The attack matrix, leftovers on disk (issue 12 §6): private file modes, no hospital identifiers kept beyond the
sample-map upload (which goes with its job), nothing left by killed jobs, no dataset row from a refused ingest."""

from __future__ import annotations

import json
import os
import stat

from tests.api.test_vcf_ingest_paths import IDENTIFIER_SYSTEM, patients_bundle
from tests.conftest import OPERATOR_TOKEN, wait_for_job
from tests.variants.vcfgen import write_vcf

OPERATOR = {"Authorization": f"Bearer {OPERATOR_TOKEN}"}


def _files_holding(root, needle: bytes) -> list[str]:
    found = []
    for folder, _, names in os.walk(root):
        for name in names:
            path = os.path.join(folder, name)
            with open(path, "rb") as fh:
                if needle in fh.read():
                    found.append(os.path.relpath(path, root))
    return found


def _upload_cohort(client, tmp_path) -> tuple[str, str]:
    values = [f"MRN-{i:04d}" for i in range(6)]
    resp = client.post(
        "/fhir?dataset=cohort",
        data=json.dumps(patients_bundle(values)),
        headers={**OPERATOR, "Content-Type": "application/fhir+json"},
    )
    assert resp.status_code == 200
    text = "".join(f"SAMPLE{i:03d}\t{IDENTIFIER_SYSTEM}|{v}\n" for i, v in enumerate(values))
    upload = client.post("/uploads", data=text, headers={**OPERATOR, "Content-Type": "text/tab-separated-values"})
    assert upload.status_code == 201
    vcf = write_vcf(tmp_path / "cohort.vcf", seed=5, n_records=30, n_samples=8)
    resp = client.post(
        f"/datasets/cohort/vcf?assembly=GRCh38&sample_map={upload.get_json()['id']}",
        data=vcf.read_bytes(),
        headers={**OPERATOR, "Content-Type": "text/plain"},
    )
    assert resp.status_code == 202
    return upload.get_json()["id"], resp.headers["Location"]


def test_sample_map_identifiers_live_only_in_the_upload_and_go_with_the_job(app, client, tmp_path):
    data_dir = app.extensions["gateway"].config.data_dir
    upload_id, href = _upload_cohort(client, tmp_path)
    state = wait_for_job(client, href)
    assert state["status"] == "done" and state["summary"]["samplesLinked"] == 6
    assert _files_holding(data_dir, b"MRN-0003") == []  # not in jobs/*.json, not in the upload any more
    assert (
        client.post(
            f"/datasets/cohort/vcf?sample_map={upload_id}",
            data=b"x",
            headers={**OPERATOR, "Content-Type": "text/plain"},
        ).status_code
        == 400
    )  # the map went with the job that used it


def test_everything_in_the_data_directory_is_private(app, client, tmp_path):
    data_dir = app.extensions["gateway"].config.data_dir
    _, href = _upload_cohort(client, tmp_path)
    wait_for_job(client, href)
    client.get("/api/individuals")
    seen = 0
    for folder, dirs, names in os.walk(data_dir):
        for name in dirs + names:
            mode = stat.S_IMODE(os.lstat(os.path.join(folder, name)).st_mode)
            assert mode & 0o077 == 0, (os.path.join(folder, name), oct(mode))
            seen += 1
    assert seen > 10 and stat.S_IMODE(os.stat(data_dir).st_mode) == 0o700


def _dead_pid() -> int:
    pid = os.fork()
    if pid == 0:
        os._exit(0)
    os.waitpid(pid, 0)
    return pid


def test_a_killed_jobs_upload_and_sample_map_are_removed_at_start(gateway_config):
    from app import create_app

    data_dir = gateway_config["data_dir"]
    (data_dir / "jobs").mkdir(parents=True)
    (data_dir / "uploads").mkdir()
    upload = data_dir / "uploads" / "abc.vcf"
    upload.write_text("##fileformat=VCFv4.2\n")
    sample_map = data_dir / "uploads" / "samplemap-abc.tsv"
    sample_map.write_text("S1\tMRN-1\n")
    job = {"id": "abc", "kind": "vcf-ingest", "status": "running", "pid": _dead_pid(), "upload": str(upload)}
    job["sample_map_file"] = str(sample_map)
    (data_dir / "jobs" / "abc.json").write_text(json.dumps(job))
    old_format = data_dir / "jobs" / "samplemap-old.json"  # identifiers kept by the earlier format
    old_format.write_text(json.dumps({"sample_map": {"S1": "MRN-1"}}))
    app = create_app(gateway_config)
    try:
        assert not upload.exists() and not old_format.exists()
        assert not sample_map.exists()  # it belonged to the killed job (an unused fresh map would wait)
        state = json.loads((data_dir / "jobs" / "abc.json").read_text())
        assert state["status"] == "failed"
    finally:
        app.extensions["gateway"].store.close()


def test_a_fresh_unused_sample_map_survives_a_restart(gateway_config):
    from app import create_app

    data_dir = gateway_config["data_dir"]
    (data_dir / "uploads").mkdir(parents=True)
    fresh = data_dir / "uploads" / "samplemap-def.tsv"
    fresh.write_text("S1\tMRN-1\n")
    app = create_app(gateway_config)
    assert fresh.exists()
    app.extensions["gateway"].store.close()


def test_a_rejected_vcf_ingest_leaves_no_dataset_row(app, client):
    resp = client.post(
        "/datasets/junk/vcf", data=b"\x1f\x8b\x08\x00garbage", headers={**OPERATOR, "Content-Type": "application/gzip"}
    )
    assert resp.status_code == 202
    assert wait_for_job(client, resp.headers["Location"])["status"] in ("rejected", "failed")
    assert "junk" not in [d["id"] for d in app.extensions["gateway"].store.list_datasets()]


def test_a_rejected_cli_vcf_ingest_leaves_no_dataset_row(tmp_path, monkeypatch, capsys):
    from gateway.cli import main
    from gateway.config import load_config
    from gateway.store.metadata import MetadataStore

    monkeypatch.setenv("GATEWAY_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("GATEWAY_SECRET_KEY", "00" * 32)
    broken = tmp_path / "broken.vcf"
    broken.write_text(
        "##fileformat=VCFv4.2\n#CHROM\tPOS\tID\tREF\tALT\tQUAL\tFILTER\tINFO\nchr1\t0\t.\tA\tG\t.\t.\t.\n"
    )
    assert main(["ingest", "vcf", str(broken), "--dataset", "refused", "--assembly", "GRCh38"]) == 1
    store = MetadataStore.open(load_config().resolved_database_url)
    assert "refused" not in [d["id"] for d in store.list_datasets()]
    store.close()
