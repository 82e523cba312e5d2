"""Genomic uploads: POST /datasets/{id}/vcf (202 + job), POST /uploads (sample maps), GET /jobs/{id}."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

from flask import Blueprint, g, request, url_for

from gateway.api.auth import Unauthorised, require_operator
from gateway.api.context import services
from gateway.api.render import json_response, problem
from gateway.services.genomic import (
    UPLOADS_DIR,
    new_job_id,
    parse_sample_map,
    read_job,
    sample_map_path,
    store_sample_map,
    write_job,
)

DATASET_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,127}$")
CHUNK = 1 << 20
UPLOAD_TYPES = {
    "application/gzip": ".vcf.gz",
    "application/x-gzip": ".vcf.gz",
    "text/plain": ".vcf",
    "text/x-vcf": ".vcf",
    "application/octet-stream": ".bin",
}
MAX_UPLOAD_BYTES = 50 * 1024**3


def _stream_to(path: Path) -> int:
    """Copy the request body to disk in chunks: never the whole file in memory."""
    size = 0
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with open(fd, "wb") as out:
        while chunk := request.stream.read(CHUNK):
            size += len(chunk)
            out.write(chunk)
        out.flush()
        os.fsync(out.fileno())
    return size


def _job_environment(svc) -> dict[str, str]:
    """The child sees this node's store and key through its environment, never through files."""
    env = dict(os.environ)
    env["GATEWAY_DATA_DIR"] = str(Path(svc.config.data_dir).resolve())
    env["GATEWAY_DATABASE_URL"] = svc.config.resolved_database_url
    env["GATEWAY_SECRET_KEY"] = svc.key.hex()
    env["GATEWAY_VCF_JOB_SECONDS"] = repr(float(svc.config.vcf_job_seconds))
    return env


def datasets_blueprint() -> Blueprint:
    bp = Blueprint("datasets", __name__)

    @bp.errorhandler(Unauthorised)
    def unauthorised(exc: Unauthorised):
        return problem(exc.status, exc.message)

    @bp.post("/uploads")
    @require_operator
    def upload_sample_map():
        svc = services()
        text = request.get_data(as_text=True)
        try:
            mapping = parse_sample_map(text)
        except ValueError as exc:
            return problem(400, str(exc))
        upload_id = new_job_id()
        store_sample_map(svc.config.data_dir, upload_id, text)  # the upload itself, 0600; nowhere else
        return json_response({"id": upload_id, "samples": len(mapping)}, 201)

    @bp.post("/datasets/<dataset_id>/vcf")
    @require_operator
    def upload_vcf(dataset_id: str):
        svc = services()
        if not DATASET_ID.match(dataset_id):
            return problem(400, "dataset id must be 1-128 characters of letters, digits, '.', '_', ':' or '-'")
        assembly = request.args.get("assembly")
        if assembly not in (None, "GRCh37", "GRCh38"):
            return problem(400, "assembly must be GRCh37 or GRCh38")
        sample_map_file = None
        if request.args.get("sample_map"):
            sample_map_file = sample_map_path(svc.config.data_dir, request.args["sample_map"])
            if sample_map_file is None:
                return problem(400, "unknown sample_map upload id")
        suffix = UPLOAD_TYPES.get((request.mimetype or "").lower())
        if suffix is None:
            return problem(415, "send the VCF as application/gzip (BGZF or BCF) or text/plain")
        request.max_content_length = MAX_UPLOAD_BYTES
        job_id = new_job_id()
        uploads = Path(svc.config.data_dir) / UPLOADS_DIR
        uploads.mkdir(parents=True, exist_ok=True, mode=0o700)
        upload = uploads / f"{job_id}{suffix}"
        spec = {
            "id": job_id,
            "kind": "vcf-ingest",
            "status": "receiving",
            "pid": os.getpid(),  # while this worker streams: a worker starting meanwhile leaves the upload alone
            "dataset_id": dataset_id,
            "assembly": assembly,
            "sample_map_file": str(sample_map_file) if sample_map_file else None,
            "skip_invalid": request.args.get("skip_invalid", "false").lower() == "true",
            "upload": str(upload),
            "data_dir": str(Path(svc.config.data_dir).resolve()),
            "request_id": g.get("request_id"),  # the job's audit outcome names the request that started it
            "caller": g.caller.sub if g.get("caller") is not None and g.caller.sub else "operator",
        }
        write_job(svc.config.data_dir, job_id, spec)
        try:
            size = _stream_to(upload)
        except BaseException:
            upload.unlink(missing_ok=True)
            write_job(svc.config.data_dir, job_id, {**spec, "status": "failed", "error": "the upload broke off"})
            raise
        if size == 0:
            upload.unlink(missing_ok=True)
            write_job(svc.config.data_dir, job_id, {**spec, "status": "failed", "error": "empty body"})
            return problem(400, "empty body: send the VCF file as the request body")
        spec = {**spec, "status": "queued", "bytes": size}
        write_job(svc.config.data_dir, job_id, spec)
        job_file = Path(svc.config.data_dir) / "jobs" / f"{job_id}.json"
        proc = subprocess.Popen(  # its own process: htslib trouble cannot reach this worker
            [sys.executable, "-m", "gateway.services.vcf_job", str(job_file)],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
            env=_job_environment(svc),
        )
        write_job(svc.config.data_dir, job_id, {**spec, "status": "running", "pid": proc.pid})
        resp = json_response({"id": job_id, "status": "running", "href": url_for(".job", job_id=job_id)}, 202)
        resp.headers["Location"] = url_for(".job", job_id=job_id)
        return resp

    @bp.get("/jobs/<job_id>")
    @require_operator
    def job(job_id: str):
        state = read_job(services().config.data_dir, job_id)
        if state is None or state.get("kind") != "vcf-ingest":
            return problem(404, f"no job {job_id!r}")
        hidden = {"upload", "data_dir", "sample_map_file", "pid"}
        return json_response({k: v for k, v in state.items() if k not in hidden})

    return bp
