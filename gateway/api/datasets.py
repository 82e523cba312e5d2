"""Genomic uploads: POST /datasets/{id}/vcf (202 + job), POST /uploads (sample maps), GET /jobs/{id}.

HTTP only: the upload is kept and its ingest job started by gateway.services.genomic.
"""

from __future__ import annotations

from flask import Blueprint, g, request, url_for

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


def datasets_blueprint() -> Blueprint:
    bp = Blueprint("datasets", __name__)

    @bp.post("/uploads")
    @require_operator
    def upload_sample_map():
        svc = services()
        try:  # only the upload itself is kept (0600), until the job that uses it ends
            upload_id, samples = keep_sample_map(svc.config, request.get_data(as_text=True))
        except ValueError as exc:
            return problem(400, str(exc))
        return json_response({"id": upload_id, "samples": samples}, 201)

    @bp.post("/datasets/<dataset_id>/vcf")
    @require_operator
    def upload_vcf(dataset_id: str):
        svc = services()
        check_dataset_id(dataset_id)  # InvalidDatasetId (400) before the body is read
        assembly = request.args.get("assembly")
        if assembly not in (None, "GRCh37", "GRCh38"):
            return problem(400, "assembly must be GRCh37 or GRCh38")
        sample_map = held_sample_map(svc.config, request.args["sample_map"]) if request.args.get("sample_map") else None
        caller = g.get("caller")
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
            sample_map_file=sample_map,
            skip_invalid=request.args.get("skip_invalid", "false").lower() == "true",
            audit={  # the job's audit outcome names the request that started it
                "request_id": g.get("request_id"),
                "caller": caller.sub if caller is not None and caller.sub else "operator",
            },
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
        hidden = {"upload", "data_dir", "sample_map_file", "pid", "caller"}
        return json_response({k: v for k, v in state.items() if k not in hidden})

    return bp
