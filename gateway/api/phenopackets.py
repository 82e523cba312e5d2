"""Phenopacket export and direct load: /phenopackets.

GET /phenopackets/{id} with `Accept: application/fhir+json` returns the phenopacket as a validated FHIR R4
collection Bundle in the node profile's flavour (same authorisation as the JSON form).

Phenopackets are individual-level data, so reading them is an operator's act
until the security layer grants it to CONTROLLED callers per dataset.
"""

from __future__ import annotations

from flask import Blueprint, request, url_for

from gateway.api.auth import require_operator
from gateway.api.context import services
from gateway.api.fhir_export import FHIR_JSON, export_response
from gateway.api.render import json_response, problem
from gateway.errors import BadInput
from gateway.jsonio import loads_strict
from gateway.services.fhir_export import export_phenopacket
from gateway.services.ingest import ingest_phenopackets

MAX_PAGE = 1000


def _int_arg(name: str, default: int, low: int, high: int) -> int:
    raw = request.args.get(name)
    if raw is None:
        return default
    if not raw.isdigit() or not low <= int(raw) <= high:
        raise BadInput(f"query parameter {name!r} must be an integer from {low} to {high}")
    return int(raw)


def phenopackets_blueprint() -> Blueprint:
    bp = Blueprint("phenopackets", __name__, url_prefix="/phenopackets")

    @bp.get("")
    @require_operator
    def list_packets():
        offset = _int_arg("offset", 0, 0, 10**9)
        limit = _int_arg("limit", 100, 1, MAX_PAGE)
        dataset = request.args.get("dataset")
        items, total = services().store.list_phenopackets(dataset_id=dataset, offset=offset, limit=limit)
        body = {
            "total": total,
            "offset": offset,
            "limit": limit,
            "phenopackets": [p.document for p in items],
        }
        if offset + limit < total:
            body["next"] = url_for(".list_packets", offset=offset + limit, limit=limit, dataset=dataset)
        return json_response(body)

    @bp.get("/<packet_id>")
    @require_operator
    def get_packet(packet_id: str):
        stored = services().store.get_phenopacket(packet_id)
        if stored is None:
            return problem(404, f"no phenopacket with id {packet_id!r}")
        if request.accept_mimetypes.best_match(["application/json", FHIR_JSON]) == FHIR_JSON:
            return export_response(export_phenopacket(stored.document, profile=services().config.profile))
        return json_response(stored.document)

    @bp.post("")
    @require_operator
    def load_packets():
        svc = services()
        doc = loads_strict(request.get_data(cache=False), max_depth=svc.config.max_json_depth, require_object=False)
        docs = doc if isinstance(doc, list) else doc.get("phenopackets", [doc]) if isinstance(doc, dict) else None
        if not docs or not all(isinstance(d, dict) for d in docs):
            return problem(400, 'send a phenopacket, a JSON array of phenopackets, or {"phenopackets": [...]}')
        dataset = request.args.get("dataset") or svc.config.default_dataset
        results, reports = ingest_phenopackets(docs, store=svc.store, key=svc.key, dataset_id=dataset)
        if not results:
            issues = [i.at(f"/{n}") if isinstance(doc, list) else i for n, r in enumerate(reports) for i in r]
            return problem(422, "phenopacket rejected; nothing was stored", [i for i in issues if i.is_error] or issues)
        return json_response(
            {
                "dataset": dataset,
                "stored": [{"id": r.id, "created": r.created} for r in results],
                "issues": [i.to_dict() for r in reports for i in r],
            },
            201 if any(r.created for r in results) else 200,
        )

    return bp
