"""POST /fhir/$convert-beacon-response: a Beacon v2 record-level response in, a FHIR R4 collection Bundle out.

For the web page and other clients holding a Beacon answer: the conversion reads nothing from the store
(the caller sends the records it was given), like $validate. The Bundle is validated before it is sent;
errors are OperationOutcomes (400: not JSON, 422: not convertible or not valid FHIR).
"""

from __future__ import annotations

from flask import Blueprint, request

from gateway.api.context import services
from gateway.api.render import json_response
from gateway.issues import to_operation_outcome
from gateway.jsonio import loads_strict
from gateway.services.fhir_export import FhirExport, export_beacon_response

FHIR_JSON = "application/fhir+json"


def export_response(outcome: FhirExport):
    """The Bundle (200), or the OperationOutcome saying why none is sent (422)."""
    if outcome.ok:
        return json_response(outcome.bundle, 200, mimetype=FHIR_JSON)
    return json_response(to_operation_outcome(outcome.report), 422, mimetype=FHIR_JSON)


def fhir_export_blueprint() -> Blueprint:
    bp = Blueprint("fhir_export", __name__, url_prefix="/fhir")

    @bp.post("/$convert-beacon-response")
    def convert_beacon_response():
        svc = services()
        doc = loads_strict(request.get_data(cache=False), max_depth=svc.config.max_json_depth, require_object=False)
        profile = request.args.get("profile") or svc.config.profile
        return export_response(export_beacon_response(doc, profile=profile))

    return bp
