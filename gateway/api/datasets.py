"""Genomic uploads: POST /datasets/{id}/vcf (202 + job), POST /uploads (sample maps), GET /jobs/{id}.

HTTP only: the upload is kept and its ingest job started by gateway.services.genomic.
"""

from __future__ import annotations

from flask import Blueprint, request, url_for

from gateway.api.auth import require_operator
from gateway.api.context import services
from gateway.api.render import json_response, problem
from gateway.ids import check_dataset_id
from gateway.services.genomic import held_sample_map, keep_sample_map, read_job, start_vcf_job

UPLOAD_TYPES = {
    "application/gzip": ".vcf.gz",
    "application/x-gzip": ".vcf.gz",
    "text/plain": ".vcf",
    "text/x-vcf": ".vcf",
    "application/octet-stream": ".bin",
}
MAX_UPLOAD_BYTES = 50 * 1024**3


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


def datasets_blueprint() -> Blueprint:
    bp = Blueprint("datasets", __name__)

    @bp.post("/uploads")
    @require_operator
    def upload_sample_map():
        svc = services()
        try:
            mapping = _parse_sample_map(request.get_data(as_text=True))
        except ValueError as exc:
            return problem(400, str(exc))
        upload_id = keep_sample_map(svc.config, mapping)
        return json_response({"id": upload_id, "samples": len(mapping)}, 201)

    @bp.post("/datasets/<dataset_id>/vcf")
    @require_operator
    def upload_vcf(dataset_id: str):
        svc = services()
        check_dataset_id(dataset_id)  # InvalidDatasetId (400) before the body is read
        assembly = request.args.get("assembly")
        if assembly not in (None, "GRCh37", "GRCh38"):
            return problem(400, "assembly must be GRCh37 or GRCh38")
        sample_map = held_sample_map(svc.config, request.args["sample_map"]) if request.args.get("sample_map") else None
        suffix = UPLOAD_TYPES.get((request.mimetype or "").lower())
        if suffix is None:
            return problem(415, "send the VCF as application/gzip (BGZF or BCF) or text/plain")
        request.max_content_length = MAX_UPLOAD_BYTES
        job_id = start_vcf_job(
            svc.config,
            svc.key,
            request.stream,
            dataset_id=dataset_id,
            suffix=suffix,
            assembly=assembly,
            sample_map=sample_map,
            skip_invalid=request.args.get("skip_invalid", "false").lower() == "true",
        )
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
