"""VCF ingest glue shared by the CLI and the HTTP upload: sample linking, progress, jobs.

The variant store's `ingest_vcf` does the work; this module decides how samples
meet individuals (the same keyed pseudonyms as the FHIR side) and how long runs
are reported (a progress line on the CLI, a job file for HTTP uploads).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import IO

from gateway.config import Config
from gateway.errors import BadInput
from gateway.ids import check_dataset_id
from gateway.security.pseudonym import pseudonymise
from gateway.variants.layout import pid_alive

JOBS_DIR = "jobs"


def sample_linker(store, key: bytes) -> Callable[[str], tuple[str | None, str | None]]:
    """Link a VCF sample's identifier to (individual id, biosample id) through keyed pseudonyms.

    The identifier (the sample map's value, else the sample name itself) is `system|value`
    or a bare value such as the Patient's id; it is pseudonymised exactly as the FHIR
    translator does. A pseudonym that matches no stored individual stays unlinked
    (reported, never guessed).
    """

    def link(identifier: str) -> tuple[str | None, str | None]:
        if not identifier:
            return None, None
        system, sep, value = identifier.rpartition("|")
        subject_id = pseudonymise(key, value, system) if sep and system else pseudonymise(key, identifier)
        found = store.find_by_subject(subject_id)
        if not found:
            return None, None
        biosamples = [b.get("id") for b in found[0].document.get("biosamples") or () if b.get("id")]
        return subject_id, (biosamples[0] if biosamples else None)

    return link


class _ProgressLine:
    """records/s and percent of file on one terminal line."""

    def __init__(self, enabled: bool):
        self.enabled = enabled
        self.started = time.monotonic()
        self.last = 0.0

    def __call__(self, records: int, percent: float) -> None:
        now = time.monotonic()
        if not self.enabled or now - self.last < 0.5:
            return
        self.last = now
        rate = records / max(now - self.started, 1e-9)
        sys.stderr.write(f"\r{records:>12,} records  {rate:>10,.0f} records/s  {percent:5.1f}%")
        sys.stderr.flush()

    def done(self) -> None:
        if self.enabled:
            sys.stderr.write("\n")


def run_vcf_ingest(
    cfg: Config,
    *,
    path: str,
    dataset_id: str,
    assembly: str | None,
    sample_map: dict[str, str] | None,
    skip_invalid: bool,
    show_progress: bool,
    progress_hook: Callable[[int, float], None] | None = None,
) -> int:
    """Ingest one VCF as the CLI does; returns the CLI exit code (0 ok, 1 rejected)."""
    from gateway.security.keys import secret_key
    from gateway.store.metadata import MetadataStore
    from gateway.variants.ingest import VCFRejected, ingest_vcf

    check_dataset_id(dataset_id)  # before the data directory or the store is touched
    cfg.data_dir.mkdir(parents=True, exist_ok=True)
    store = MetadataStore.open(cfg.resolved_database_url, migrate=True)
    progress = _ProgressLine(show_progress)

    def report_progress(records: int, percent: float) -> None:
        progress(records, percent)
        if progress_hook:
            progress_hook(records, percent)

    try:
        store.ensure_dataset(dataset_id)
        summary = ingest_vcf(
            path,
            dataset_id=dataset_id,
            data_dir=cfg.data_dir,
            assembly=assembly,
            sample_map=sample_map,
            link_sample=sample_linker(store, secret_key(cfg)),
            skip_invalid=skip_invalid,
            progress=report_progress,
        )
    except VCFRejected as exc:
        progress.done()
        print(exc.report.to_text(path), file=sys.stderr)
        print(f"{path}: rejected; dataset {dataset_id} unchanged", file=sys.stderr)
        return 1
    finally:
        store.close()
    progress.done()
    print(summary.to_text())
    return 0


# --- jobs for HTTP uploads ----------------------------------------------------------------


def _job_path(data_dir: Path, job_id: str) -> Path:
    return Path(data_dir) / JOBS_DIR / f"{job_id}.json"


def write_job(data_dir: Path, job_id: str, state: dict) -> None:
    """Atomically replace a job's state file (readers never see half a file)."""
    path = _job_path(data_dir, job_id)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(f".{os.getpid()}.tmp")
    tmp.write_text(json.dumps(state), encoding="utf-8")
    os.replace(tmp, path)


def read_job(data_dir: Path, job_id: str) -> dict | None:
    if not job_id.replace("-", "").isalnum():
        return None
    try:
        state = json.loads(_job_path(data_dir, job_id).read_text(encoding="utf-8"))
    except (FileNotFoundError, json.JSONDecodeError):
        return None
    if state.get("status") == "running" and not (state.get("pid") and pid_alive(state["pid"])):
        state["status"] = "failed"
        state["error"] = "the ingest process ended unexpectedly; the dataset is unchanged"
    return state


def new_job_id() -> str:
    return uuid.uuid4().hex


# --- an HTTP upload becomes a job: the body streamed to disk, a child process ingests it --------------

UPLOAD_CHUNK = 1 << 20


def _stream_to(source: IO[bytes], path: Path) -> int:
    """Copy an upload to disk in chunks: never the whole file in memory."""
    size = 0
    with open(path, "wb") as out:
        while chunk := source.read(UPLOAD_CHUNK):
            size += len(chunk)
            out.write(chunk)
        out.flush()
        os.fsync(out.fileno())
    return size


def _job_environment(cfg: Config, key: bytes) -> dict[str, str]:
    """The child sees this node's store and key through its environment, never through files."""
    env = dict(os.environ)
    env["GATEWAY_DATA_DIR"] = str(Path(cfg.data_dir).resolve())
    env["GATEWAY_DATABASE_URL"] = cfg.resolved_database_url
    env["GATEWAY_SECRET_KEY"] = key.hex()
    return env


def keep_sample_map(cfg: Config, mapping: dict[str, str]) -> str:
    """Keep a sample map for later VCF uploads (POST /uploads); its upload id."""
    upload_id = new_job_id()
    write_job(cfg.data_dir, f"samplemap-{upload_id}", {"sample_map": mapping})
    return upload_id


def held_sample_map(cfg: Config, upload_id: str) -> dict[str, str]:
    """A sample map uploaded before (POST /uploads); BadInput when there is none with that id."""
    held = read_job(cfg.data_dir, f"samplemap-{upload_id}")
    if held is None:
        raise BadInput("unknown sample_map upload id")
    return dict(held["sample_map"])


def start_vcf_job(
    cfg: Config,
    key: bytes,
    body: IO[bytes],
    *,
    dataset_id: str,
    suffix: str,
    assembly: str | None,
    sample_map: dict[str, str] | None,
    skip_invalid: bool,
) -> str:
    """Keep an uploaded VCF and start its ingest in a child process; the job's id.

    The dataset id is checked before anything is written; an empty body is refused (BadInput) and
    leaves nothing behind.
    """
    check_dataset_id(dataset_id)
    job_id = new_job_id()
    uploads = Path(cfg.data_dir) / "uploads"
    uploads.mkdir(parents=True, exist_ok=True)
    upload = uploads / f"{job_id}{suffix}"
    size = _stream_to(body, upload)
    if size == 0:
        upload.unlink(missing_ok=True)
        raise BadInput("empty body: send the VCF file as the request body")
    spec = {
        "id": job_id,
        "kind": "vcf-ingest",
        "status": "queued",
        "dataset_id": dataset_id,
        "assembly": assembly,
        "sample_map": sample_map,
        "skip_invalid": skip_invalid,
        "upload": str(upload),
        "bytes": size,
        "data_dir": str(Path(cfg.data_dir).resolve()),
    }
    write_job(cfg.data_dir, job_id, spec)
    proc = subprocess.Popen(  # its own process: htslib trouble cannot reach this worker
        [sys.executable, "-m", "gateway.services.vcf_job", str(_job_path(cfg.data_dir, job_id))],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
        env=_job_environment(cfg, key),
    )
    write_job(cfg.data_dir, job_id, {**spec, "status": "running", "pid": proc.pid})
    return job_id
