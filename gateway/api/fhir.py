"""The FHIR surface: POST /fhir (and /fhir/Bundle), POST /fhir/Bundle/$validate, GET /fhir/metadata.

Errors are FHIR OperationOutcomes: 400 for a body that is not a FHIR document,
422 for a document that parses but is not valid R4 or breaks a profile rule.
"""

from __future__ import annotations

from datetime import UTC, datetime

from flask import Blueprint, Response, request

import mappings
from gateway.api.auth import require_operator
from gateway.api.context import services
from gateway.api.render import json_response
from gateway.issues import Issue, to_operation_outcome
from gateway.jsonio import JSONInputError, loads_strict
from gateway.services.ingest import ATOMIC_BUNDLE_TYPES, IngestOutcome, ingest_fhir, process_fhir
from translators.fhir_to_phenopacket import translated_resource_types

FHIR_JSON = "application/fhir+json"
# The JSON media types of FHIR R4 (http.html#mime-type), including the older DSTU2 spelling still sent.
ACCEPTED_TYPES = ("application/fhir+json", "application/json+fhir", "application/json")
# Issue codes that mean "this is not a FHIR document at all" (400); everything else is 422.
NOT_A_DOCUMENT = {"json-syntax", "json-nan", "json-duplicate-key", "json-too-deep", "not-fhir"}


def fhir_response(body: dict, status: int = 200) -> Response:
    return json_response(body, status, mimetype=FHIR_JSON)


def outcome_response(issues: list[Issue], status: int) -> Response:
    return fhir_response(to_operation_outcome(issues), status)


def _read_document() -> dict:
    content_type = (request.mimetype or "").lower()
    if content_type not in ACCEPTED_TYPES:
        raise JSONInputError(
            Issue.error(
                "not-fhir",
                f"Content-Type must be one of {', '.join(ACCEPTED_TYPES)}, not {content_type or 'empty'}",
            )
        )
    return loads_strict(request.get_data(cache=False), max_depth=services().config.max_json_depth)


def _status_for(issues: list[Issue]) -> int:
    return 400 if any(i.code in NOT_A_DOCUMENT for i in issues if i.is_error) else 422


def _entry_outcome(issues: list[Issue]) -> dict | None:
    return to_operation_outcome(issues) if issues else None


def transaction_response(outcome: IngestOutcome) -> dict:
    """One response entry per input entry, in order; each entry's issues in its outcome."""
    by_entry = outcome.issues_by_entry()
    packet_of_entry = {i: p for p in outcome.packets for i in p.entry_indexes}
    entries = []
    for index in range(outcome.entry_count):
        packet = packet_of_entry.get(index)
        issues = by_entry.get(index, [])
        if index == 0:
            issues = [*by_entry.get(None, []), *issues]  # bundle-level issues travel with the first entry
        response: dict = {}
        if packet is None:
            failed = outcome.bundle_type == "batch" and any(i.is_error for i in issues)
            response["status"] = "422 Unprocessable Entity" if failed else "200 OK"
        elif packet.saved is None:
            response["status"] = "422 Unprocessable Entity"
            issues = [*issues, *(i for i in packet.issues if i.target == "output")]
        else:
            is_patient_entry = packet.entry_indexes and packet.entry_indexes[0] == index
            response["status"] = "201 Created" if packet.saved.created and is_patient_entry else "200 OK"
            response["location"] = f"phenopackets/{packet.saved.id}"
        if issues:
            response["outcome"] = _entry_outcome(issues)
        entries.append({"response": response})
    kind = "batch-response" if outcome.bundle_type not in ATOMIC_BUNDLE_TYPES else "transaction-response"
    return {"resourceType": "Bundle", "type": kind, "entry": entries}


def capability_statement() -> dict:
    cfg = services().config
    return {
        "resourceType": "CapabilityStatement",
        "status": "active",
        "date": datetime.now(UTC).date().isoformat(),
        "kind": "instance",
        "software": {"name": "genomic-gateway", "version": cfg.node.version},
        "implementation": {"description": cfg.node.name, "url": cfg.node.base_url.rstrip("/") + "/fhir"},
        "fhirVersion": "4.0.1",
        "format": [FHIR_JSON, "application/json"],
        "implementationGuide": mappings.implementation_guides(),
        "rest": [
            {
                "mode": "server",
                "documentation": (
                    "POST a Bundle (transaction, batch, collection or document) to the base: each Patient becomes "
                    f"a GA4GH Phenopacket v2. Profiles: {', '.join(mappings.profile_names())}."
                ),
                "security": {"description": "Writing needs an operator bearer token."},
                "interaction": [{"code": "transaction"}, {"code": "batch"}],
                "resource": [
                    {
                        "type": "Bundle",
                        "operation": [
                            {
                                "name": "validate",
                                "definition": "http://hl7.org/fhir/OperationDefinition/Resource-validate",
                            }
                        ],
                    },
                    *(
                        {"type": t, "documentation": "translated when inside a Bundle"}
                        for t in translated_resource_types()
                    ),
                ],
            }
        ],
    }


def _validate_parameters(parameters: dict) -> tuple[dict, str]:
    """The resource wrapped in a $validate Parameters (parameter `resource`) and its JSON pointer;
    `mode` and `profile` are optional there and do not change what this gateway checks."""
    listed = parameters.get("parameter")
    found = [
        (p.get("resource"), f"/parameter/{n}/resource")
        for n, p in enumerate(listed if isinstance(listed, list) else ())
        if isinstance(p, dict) and p.get("name") == "resource"
    ]
    resource = found[0][0] if len(found) == 1 else None
    if not isinstance(resource, dict):
        message = "a $validate Parameters must carry exactly one parameter 'resource' with the resource to validate"
        raise JSONInputError(Issue.error("not-fhir", message, "/parameter"))
    return resource, found[0][1]


def fhir_blueprint() -> Blueprint:
    bp = Blueprint("fhir", __name__, url_prefix="/fhir")

    # Errors (unreadable JSON, credentials, a malformed dataset id) become OperationOutcomes in gateway.api.errors.

    @bp.get("/metadata")
    def metadata():
        return fhir_response(capability_statement())

    @bp.post("")
    @bp.post("/")
    @bp.post("/Bundle")  # FHIR allows a Bundle to be created as a resource; here it is the same as the base
    @require_operator
    def ingest():
        svc = services()
        doc = _read_document()
        dataset = request.args.get("dataset") or svc.config.default_dataset
        outcome = ingest_fhir(
            doc,
            store=svc.store,
            key=svc.key,
            dataset_id=dataset,
            profile=request.args.get("profile") or svc.config.profile,
        )
        if outcome.rejected:
            return outcome_response(outcome.report.errors + outcome.report.warnings, _status_for(outcome.report.errors))
        return fhir_response(transaction_response(outcome))

    @bp.post("/Bundle/$validate")
    @bp.post("/$validate")
    def validate():
        svc = services()
        doc = _read_document()
        where = ""
        if isinstance(doc, dict) and doc.get("resourceType") == "Parameters":
            doc, where = _validate_parameters(doc)
        outcome = process_fhir(
            doc,
            key=svc.key,
            dataset_id=svc.config.default_dataset,
            profile=request.args.get("profile") or svc.config.profile,
        )
        return outcome_response([i.at(where) if i.target == "input" else i for i in outcome.report], 200)

    return bp
