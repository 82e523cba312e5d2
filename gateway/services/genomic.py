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
from dataclasses import replace
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

from gateway.config import Config
from gateway.errors import BadInput
from gateway.ids import check_dataset_id
from gateway.security.pseudonym import pseudonymise
from gateway.variants.layout import pid_alive

if TYPE_CHECKING:
    from gateway.variants.ingest import VcfIngestRequest

JOBS_DIR = "jobs"
LIVE = ("receiving", "queued", "running")  # a job in these states has a process (its pid) working on it


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
    request: VcfIngestRequest | None = None,
    *,
    show_progress: bool,
    progress_hook: Callable[[int, float], None] | None = None,
    **fields: Any,
) -> int:
    """Ingest one VCF as the CLI does; returns the CLI exit code (0 ok, 1 rejected). `request` (or its fields by
    name, in the data directory of `cfg`) says what and how; this adds the sample linker and the progress line."""
    from gateway.security.keys import secret_key
    from gateway.store.metadata import MetadataStore
    from gateway.variants.ingest import VcfIngestRequest, VCFRejected, ingest_vcf

    if request is None:
        request = VcfIngestRequest(data_dir=cfg.data_dir, **fields)
    path, dataset_id = str(request.path), request.dataset_id
    check_dataset_id(dataset_id)  # before the data directory or the store is touched
    request.data_dir.mkdir(parents=True, exist_ok=True)
    store = MetadataStore.open(cfg.resolved_database_url, migrate=True)
    progress = _ProgressLine(show_progress)

    def report_progress(records: int, percent: float) -> None:
        progress(records, percent)
        if progress_hook:
            progress_hook(records, percent)

    try:
        summary = ingest_vcf(
            replace(request, link_sample=sample_linker(store, secret_key(cfg)), progress=report_progress)
        )
        store.ensure_dataset(dataset_id)  # only now: a rejected ingest leaves no empty dataset row
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


def run_compaction(cfg: Config, *, dataset_id: str) -> int:
    """`gateway variants compact`: merge a partitioned dataset's sample batches into one (variants/compact.py)."""
    from gateway.variants.compact import CompactionRefused, compact_dataset
    from gateway.variants.layout import VersionMoved

    check_dataset_id(dataset_id)
    try:
        summary = compact_dataset(cfg.data_dir, dataset_id)
    except (CompactionRefused, VersionMoved) as exc:
        again = "; run it again" if isinstance(exc, VersionMoved) else ""
        print(f"{dataset_id}: not compacted: {exc}{again}; the live version is unchanged", file=sys.stderr)
        return 1
    if summary.version is None:
        print(f"{dataset_id}: one sample batch already ({summary.units_after} units); nothing to do")
    else:
        print(
            f"{dataset_id}: {summary.batches_before} sample batches compacted into one: "
            f"{summary.units_before} -> {summary.units_after} units, {summary.variants} variants, "
            f"{summary.seconds:.1f} s; live version {summary.version}"
        )
    return 0


# --- jobs for HTTP uploads ----------------------------------------------------------------


def _job_path(data_dir: Path, job_id: str) -> Path:
    return Path(data_dir) / JOBS_DIR / f"{job_id}.json"


def write_job(data_dir: Path, job_id: str, state: dict) -> None:
    """Atomically replace a job's state file (readers never see half a file); private to the node (0600)."""
    path = _job_path(data_dir, job_id)
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    tmp = path.with_suffix(f".{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        fh.write(json.dumps(state))
    os.replace(tmp, path)


_ENDED = {"error": "the ingest process ended unexpectedly; the dataset is unchanged"}


# --- sample maps and leftovers -------------------------------------------------------------
#
# A sample map names patients by their hospital identifiers: the upload is kept as it came
# (0600, uploads/samplemap-<id>.tsv) and nowhere else, read by the ingest job that uses it and
# deleted when that job ends. Job files hold only its path.

UPLOADS_DIR = "uploads"
SAMPLE_MAP_PREFIX = "samplemap-"
SAMPLE_MAP_TTL_S = 24 * 3600  # an uploaded map no job used is removed at the next start after a day


def parse_sample_map(text: str) -> dict[str, str]:
    """`sample<TAB>identifier` lines (blank lines and # comments skipped); ValueError names the bad line."""
    mapping = {}
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip() or line.startswith("#"):
            continue
        parts = line.split("\t")
        if len(parts) < 2 or not parts[0] or not parts[1]:
            raise ValueError(f"sample map line {number}: expected 'sample<TAB>identifier'")
        if "\x00" in line:
            raise ValueError(f"sample map line {number}: NUL characters are not accepted")
        mapping[parts[0]] = parts[1].strip()
    return mapping


def sample_map_path(data_dir: Path, upload_id: str) -> Path | None:
    """The stored sample map of an upload id, or None (unknown or malformed id)."""
    if not upload_id.isalnum():
        return None
    path = Path(data_dir) / UPLOADS_DIR / f"{SAMPLE_MAP_PREFIX}{upload_id}.tsv"
    return path if path.is_file() else None


def store_sample_map(data_dir: Path, upload_id: str, text: str) -> Path:
    uploads = Path(data_dir) / UPLOADS_DIR
    uploads.mkdir(parents=True, exist_ok=True, mode=0o700)
    path = uploads / f"{SAMPLE_MAP_PREFIX}{upload_id}.tsv"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        fh.write(text)
    return path


def clean_job_leftovers(data_dir: Path, now: float | None = None) -> list[str]:
    """At start: what killed jobs left behind, removed; returns the names removed.

    A job whose process is gone is marked failed and its upload and sample map deleted; an upload no
    live job holds is deleted (a sample map only after SAMPLE_MAP_TTL_S: it waits for its VCF);
    job files of the old format that carried a sample map's identifiers are deleted.
    """
    data_dir = Path(data_dir)
    now = time.time() if now is None else now
    removed: list[str] = []
    held: set[str] = set()
    jobs = data_dir / JOBS_DIR
    for job_file in sorted(jobs.glob("*.json")) if jobs.is_dir() else ():
        if job_file.name.startswith(SAMPLE_MAP_PREFIX):  # written before sample maps stayed in their upload
            job_file.unlink(missing_ok=True)
            removed.append(job_file.name)
            continue
        try:
            state = json.loads(job_file.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue
        if state.get("status") not in LIVE:
            continue
        if state.get("pid") and pid_alive(state["pid"]):
            held.update(Path(f).name for f in (state.get("upload"), state.get("sample_map_file")) if f)
        else:  # killed with the last run: it ended, and what it held goes with it
            write_job(data_dir, job_file.stem, {**state, "status": "failed", **_ENDED})
            for name in (state.get("upload"), state.get("sample_map_file")):
                if name and Path(name).resolve().parent == (data_dir / UPLOADS_DIR).resolve():
                    Path(name).unlink(missing_ok=True)
                    removed.append(Path(name).name)
    for stale in jobs.glob("*.tmp") if jobs.is_dir() else ():
        stale.unlink(missing_ok=True)
    uploads = data_dir / UPLOADS_DIR
    for upload in sorted(uploads.iterdir()) if uploads.is_dir() else ():
        if upload.name in held:
            continue
        if upload.name.startswith(SAMPLE_MAP_PREFIX) and now - upload.stat().st_mtime < SAMPLE_MAP_TTL_S:
            continue
        upload.unlink(missing_ok=True)
        removed.append(upload.name)
    return removed


def read_job(data_dir: Path, job_id: str) -> dict | None:
    if not job_id.replace("-", "").isalnum():
        return None
    try:
        state = json.loads(_job_path(data_dir, job_id).read_text(encoding="utf-8"))
    except (FileNotFoundError, json.JSONDecodeError):
        return None
    if state.get("status") in LIVE and not (state.get("pid") and pid_alive(state["pid"])):
        state.update(status="failed", **_ENDED)
    return state


def new_job_id() -> str:
    return uuid.uuid4().hex


# --- an HTTP upload becomes a job: the body streamed to disk, a child process ingests it --------------

UPLOAD_CHUNK = 1 << 20


def _stream_to(source: IO[bytes], path: Path) -> int:
    """Copy an upload to disk in chunks (0600): never the whole file in memory."""
    size = 0
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with open(fd, "wb") as out:
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
    env["GATEWAY_VCF_JOB_SECONDS"] = repr(float(cfg.vcf_job_seconds))
    return env


def keep_sample_map(cfg: Config, text: str) -> tuple[str, int]:
    """Keep a sample map for one later VCF upload (POST /uploads): (its upload id, samples).

    Only the upload itself is written (0600); ValueError names a malformed line.
    """
    mapping = parse_sample_map(text)
    upload_id = new_job_id()
    store_sample_map(cfg.data_dir, upload_id, text)
    return upload_id, len(mapping)


def held_sample_map(cfg: Config, upload_id: str) -> Path:
    """The file of a sample map uploaded before (POST /uploads); BadInput when there is none with that id."""
    path = sample_map_path(cfg.data_dir, upload_id)
    if path is None:
        raise BadInput("unknown sample_map upload id")
    return path


def start_vcf_job(
    cfg: Config,
    key: bytes,
    body: IO[bytes],
    *,
    dataset_id: str,
    suffix: str,
    assembly: str | None,
    sample_map_file: Path | None,
    skip_invalid: bool,
    audit: dict | None = None,
) -> str:
    """Keep an uploaded VCF and start its ingest in a child process; the job's id.

    The dataset id is checked before anything is written; an empty body is refused (BadInput) and
    leaves nothing behind. The job file exists (status `receiving`, this process's pid) before the body
    is streamed, so a worker starting meanwhile leaves the upload alone (`clean_job_leftovers`). The
    job file names the sample map's file, never its identifiers. `audit`: request id and caller for the
    outcome record the job writes.
    """
    check_dataset_id(dataset_id)
    job_id = new_job_id()
    uploads = Path(cfg.data_dir) / UPLOADS_DIR
    uploads.mkdir(parents=True, exist_ok=True, mode=0o700)
    upload = uploads / f"{job_id}{suffix}"
    spec = {
        "id": job_id,
        "kind": "vcf-ingest",
        "status": "receiving",
        "pid": os.getpid(),
        "dataset_id": dataset_id,
        "assembly": assembly,
        "sample_map_file": str(sample_map_file) if sample_map_file else None,
        "skip_invalid": skip_invalid,
        "upload": str(upload),
        "data_dir": str(Path(cfg.data_dir).resolve()),
        **(audit or {}),
    }
    write_job(cfg.data_dir, job_id, spec)
    try:
        size = _stream_to(body, upload)
    except BaseException:
        upload.unlink(missing_ok=True)
        write_job(cfg.data_dir, job_id, {**spec, "status": "failed", "error": "the upload broke off"})
        raise
    if size == 0:
        upload.unlink(missing_ok=True)
        write_job(cfg.data_dir, job_id, {**spec, "status": "failed", "error": "empty body"})
        raise BadInput("empty body: send the VCF file as the request body")
    spec = {**spec, "status": "queued", "bytes": size}
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
