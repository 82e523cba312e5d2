"""A VCF ingest job in its own process: `python -m gateway.services.vcf_job JOB_FILE`.

HTTP uploads are ingested here, outside the server process, so a hostile file that
upsets htslib can end this process but never a server worker. The job file (JSON)
holds the arguments; progress and the result are written back to it atomically.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import signal
import sys
import time
from pathlib import Path

from gateway.config import load_config
from gateway.issues import Issue
from gateway.services.genomic import parse_sample_map, write_job

log = logging.getLogger(__name__)

_timed_out: list[bool] = []


def _time_limit(signum, frame) -> None:
    """SIGALRM after `vcf_job_seconds`: kill the parsing child, whose end rejects the ingest.

    Nothing is raised here: an exception could land anywhere, even inside the publishing step; a dead child
    is the ordinary "parser stopped" path, and a job already past parsing simply finishes.
    """
    _timed_out.append(True)
    pid = os.getpid()
    try:
        children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    except OSError:
        children = []
    for child in children:
        with contextlib.suppress(ProcessLookupError, ValueError):
            os.kill(int(child), signal.SIGKILL)
    if not children:  # between steps (the child not started yet): look again shortly
        signal.setitimer(signal.ITIMER_REAL, 0.2)


def main(job_file: str) -> int:
    spec = json.loads(Path(job_file).read_text(encoding="utf-8"))
    cfg = load_config()  # data dir, store and key come from the environment the server set
    job_id, data_dir = spec["id"], Path(spec["data_dir"])
    # Its own pid: the job file must name the process that works on it (the server may not have written it yet).
    state = {**spec, "status": "running", "pid": os.getpid(), "started": time.time(), "records": 0, "percent": 0.0}
    write_job(data_dir, job_id, state)
    last = [0.0]

    def hook(records: int, percent: float) -> None:
        if time.monotonic() - last[0] > 1.0:
            last[0] = time.monotonic()
            write_job(data_dir, job_id, {**state, "records": records, "percent": round(percent, 1)})

    from gateway.security.keys import secret_key
    from gateway.services.genomic import sample_linker
    from gateway.store.metadata import MetadataStore
    from gateway.variants.ingest import VcfIngestRequest, VCFRejected, ingest_vcf

    store = MetadataStore.open(cfg.resolved_database_url, migrate=False)
    signal.signal(signal.SIGALRM, _time_limit)
    signal.setitimer(signal.ITIMER_REAL, max(cfg.vcf_job_seconds, 0.001))  # the parsing child dies with us
    try:
        sample_map = None
        if spec.get("sample_map_file"):
            sample_map = parse_sample_map(Path(spec["sample_map_file"]).read_text(encoding="utf-8"))
        request = VcfIngestRequest(
            path=spec["upload"],
            dataset_id=spec["dataset_id"],
            data_dir=data_dir,
            assembly=spec.get("assembly"),
            sample_map=sample_map,
            link_sample=sample_linker(store, secret_key(cfg)),
            skip_invalid=bool(spec.get("skip_invalid")),
            progress=hook,
        )
        summary = ingest_vcf(request)
        store.ensure_dataset(spec["dataset_id"])  # only now: a rejected or killed ingest leaves no empty dataset
    except VCFRejected as exc:
        issues = exc.report.to_json()
        if _timed_out:
            message = f"the ingest took longer than {cfg.vcf_job_seconds:g} s (vcf_job_seconds) and was stopped"
            issues = [Issue.error("vcf-time-limit", message).to_dict()]
        write_job(data_dir, job_id, {**state, "status": "rejected", "issues": issues, "finished": time.time()})
        _audit_outcome(cfg, spec, "denied", "rejected")
        return 1
    except Exception as exc:  # reported in the job, never raised into a server
        write_job(data_dir, job_id, {**state, "status": "failed", "error": type(exc).__name__, "finished": time.time()})
        _audit_outcome(cfg, spec, "denied", f"failed: {type(exc).__name__}")
        return 1
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        store.close()
        Path(spec["upload"]).unlink(missing_ok=True)
        if spec.get("sample_map_file"):  # the identifiers go with the job that used them
            Path(spec["sample_map_file"]).unlink(missing_ok=True)
    _audit_outcome(cfg, spec, "allowed", f"done: version {summary.version}")
    write_job(
        data_dir,
        job_id,
        {
            **state,
            "status": "done",
            "percent": 100.0,
            "finished": time.time(),
            "summary": summary.to_dict(),
        },
    )
    return 0


def _audit_outcome(cfg, spec: dict, decision: str, reason: str) -> None:
    """The outcome of the upload whose intent the server wrote before it started this job."""
    settings = cfg.security or {}
    if not settings.get("audit", True):
        return
    from gateway.security.audit import AuditLog

    try:
        AuditLog(cfg.data_dir).append(
            phase="outcome",
            decision=decision,
            action="vcf-ingest-job",
            datasets=[spec["dataset_id"]],
            request_id=spec.get("request_id"),
            caller=spec.get("caller"),
            reason=reason,
        )
    except OSError:
        log.exception("audit outcome of VCF job %s not written", spec.get("id"))


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
