"""Genomic uploads: POST /datasets/{id}/vcf (202 + job), POST /uploads (sample maps), GET /jobs/{id}."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

from flask import Blueprint, request, url_for

from gateway.api.auth import Unauthorised, require_operator
from gateway.api.context import services
from gateway.api.render import json_response, problem
from gateway.services.genomic import new_job_id, read_job, write_job

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
    with open(path, "wb") as out:
        while chunk := request.stream.read(CHUNK):
            size += len(chunk)
            out.write(chunk)
        out.flush()
        os.fsync(out.fileno())
    return size


def _parse_sample_map(text: str) -> dict[str, str]:
    mapping = {}
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip() or line.startswith("#"):
            continue
        parts = line.split("\t")
        if len(parts) < 2 or not parts[0] or not parts[1]:
            raise ValueError(f"sample map line {number}: expected 'sample<TAB>identifier'")
        mapping[parts[0]] = parts[1].strip()
    return mapping


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
        try:
            mapping = _parse_sample_map(request.get_data(as_text=True))
        except ValueError as exc:
            return problem(400, str(exc))
        upload_id = new_job_id()
        write_job(svc.config.data_dir, f"samplemap-{upload_id}", {"sample_map": mapping})
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
        sample_map = None
        if request.args.get("sample_map"):
            held = read_job(svc.config.data_dir, f"samplemap-{request.args['sample_map']}")
            if held is None:
                return problem(400, "unknown sample_map upload id")
            sample_map = held["sample_map"]
        suffix = UPLOAD_TYPES.get((request.mimetype or "").lower())
        if suffix is None:
            return problem(415, "send the VCF as application/gzip (BGZF or BCF) or text/plain")
        request.max_content_length = MAX_UPLOAD_BYTES
        job_id = new_job_id()
        uploads = Path(svc.config.data_dir) / "uploads"
        uploads.mkdir(parents=True, exist_ok=True)
        upload = uploads / f"{job_id}{suffix}"
        size = _stream_to(upload)
        if size == 0:
            upload.unlink(missing_ok=True)
            return problem(400, "empty body: send the VCF file as the request body")
        spec = {
            "id": job_id,
            "kind": "vcf-ingest",
            "status": "queued",
            "dataset_id": dataset_id,
            "assembly": assembly,
            "sample_map": sample_map,
            "skip_invalid": request.args.get("skip_invalid", "false").lower() == "true",
            "upload": str(upload),
            "bytes": size,
            "data_dir": str(Path(svc.config.data_dir).resolve()),
        }
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
        hidden = {"upload", "data_dir", "sample_map", "pid"}
        return json_response({k: v for k, v in state.items() if k not in hidden})

    return bp
