"""Operator-only HTTP calls of the security room: erasure, its purge jobs, and the audit chain check."""

from __future__ import annotations

from flask import Blueprint, g, request

from gateway.api.auth import require_operator
from gateway.api.context import services
from gateway.api.hooks import audit_notes, security
from gateway.api.render import json_response, problem
from gateway.security import purge_jobs
from gateway.security.erasure import erase_dataset, erase_subject

_ID_MAX = 255


def _erasure_context(endpoint: str) -> dict:
    """Who erases, for the audit record: the same for every erasure call."""
    sec, svc = security(), services()
    return {
        "key": svc.key,
        "audit": sec.audit,
        "security": sec,
        "wake_purge": svc.purges.wake if svc.purges is not None else None,
        "request_id": g.get("request_id"),
        "caller": g.caller.sub or "operator",
        "endpoint": endpoint,
    }


def admin_blueprint() -> Blueprint:
    bp = Blueprint("admin", __name__, url_prefix="/admin")

    @bp.delete("/subjects/<subject_id>")
    @require_operator
    def delete_subject(subject_id: str):
        if len(subject_id) > _ID_MAX:
            return problem(400, "subject pseudonym too long")
        svc = services()
        try:
            result = erase_subject(
                svc.store, svc.variants, subject_id, **_erasure_context("/admin/subjects/<subject_id>")
            )
        except OSError:
            return problem(503, "the audit log is unavailable; nothing was erased")
        audit_notes()["decision"] = "allowed"
        return json_response(
            {
                "erased": result.reference,
                "phenopackets": result.phenopackets,
                "samples": result.samples,
                "families": result.families,
                "purge": {"job": result.purge_job, "status": purge_jobs.PENDING},
            }
        )

    @bp.delete("/datasets/<dataset_id>")
    @require_operator
    def delete_dataset(dataset_id: str):
        svc = services()
        try:
            result = erase_dataset(
                svc.store, svc.variants, dataset_id, **_erasure_context("/admin/datasets/<dataset_id>")
            )
        except ValueError as exc:
            return problem(400, str(exc))
        except OSError:
            return problem(503, "the audit log is unavailable; nothing was erased")
        audit_notes()["datasets"] = [dataset_id]
        return json_response(
            {
                "erased": dataset_id,
                "phenopackets": result.phenopackets,
                "purge": {"job": result.purge_job, "status": purge_jobs.PENDING},
            }
        )

    @bp.get("/erasure/purges")
    @require_operator
    def list_purges():
        """The erasures' purge jobs, newest first (`?status=pending`, `done` or `failed`: retries exhausted)."""
        status = request.args.get("status")
        if status is not None and status not in purge_jobs.STATUSES:
            return problem(400, f"status must be one of {', '.join(purge_jobs.STATUSES)}")
        store = services().store
        return json_response(
            {
                "pending": purge_jobs.pending_count(store),
                "failed": purge_jobs.pending_count(store, purge_jobs.FAILED),
                "jobs": purge_jobs.jobs(store, status=status),
            }
        )

    @bp.post("/erasure/purges")
    @require_operator
    def run_purges():
        """Run every pending purge now, and the failed ones again, in this request (the operator asked)."""
        svc = services()
        run = purge_jobs.run_due(
            svc.store, svc.variants, audit=security().audit, force=True, caller=g.caller.sub or "operator"
        )
        body = {"done": list(run.done), "failed": list(run.failed)}
        return json_response({**body, "error": run.error} if run.error else body, 200 if not run.error else 503)

    @bp.get("/audit/verify")
    @require_operator
    def verify_audit():
        log = security().audit
        if log is None:
            return problem(404, "the audit log is switched off")
        result = log.verify()
        body = {"ok": result.ok, "records": result.records, "message": result.message}
        body.update({"problem": result.problem} if result.problem else {"head": result.head})
        return json_response(body, 200 if result.ok else 409)

    return bp
