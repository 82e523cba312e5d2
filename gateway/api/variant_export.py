"""The variant export a Beacon dataset handover points to, behind the same authorisation as the data
(gateway.beacon.handovers):

GET /datasets/{id}/variants.vcf   the dataset's observed sites as a streamed VCF, for callers who may read its
                                  variants (an operator, or CONTROLLED for the dataset with record-level variants).
"""

from __future__ import annotations

from flask import Blueprint, Response, stream_with_context

from gateway.api.context import services
from gateway.api.hooks import audit_notes, current_caller
from gateway.api.render import problem
from gateway.beacon.handovers import may_read
from gateway.security.tokens import TokenError
from gateway.variants.vcf_export import vcf_lines


def variant_export_blueprint() -> Blueprint:
    bp = Blueprint("variant_export", __name__)

    @bp.get("/datasets/<dataset_id>/variants.vcf")
    def dataset_vcf(dataset_id: str):
        svc = services()
        try:
            caller = current_caller()
        except TokenError as exc:  # only reached where the app-wide hook is not installed
            return problem(401, f"the bearer token was rejected: {exc.reason}")
        audit_notes()["datasets"] = [dataset_id[:128]]
        if caller.anonymous:
            return problem(401, "the VCF export needs a bearer token that grants CONTROLLED access to the dataset")
        if not may_read(svc.config, caller, dataset_id, "g_variants"):
            return problem(403, f"your access to dataset {dataset_id!r} does not include its variants")
        store = svc.variants
        if store is None or dataset_id not in store.datasets():
            return problem(404, f"dataset {dataset_id!r} holds no variants")
        lines = vcf_lines(store, dataset_id, f"{svc.config.node.id} (GA4GH Beacon handover)")
        response = Response(stream_with_context(lines), mimetype="text/x-vcf")
        response.headers["Content-Disposition"] = f'attachment; filename="{dataset_id}.vcf"'
        return response

    return bp
