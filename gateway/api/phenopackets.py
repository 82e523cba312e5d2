"""Phenopacket export and direct load: /phenopackets.

GET /phenopackets/{id} with `Accept: application/fhir+json` returns the phenopacket as a validated FHIR R4
collection Bundle in the node profile's flavour (same authorisation as the JSON form); with a stored
family history, the Bundle carries it too (one FamilyMemberHistory per relative).

GET /phenopackets/{id}/family returns the Phenopacket v2 Family around it (proband = the phenopacket as
stored, relatives, pedigree), under the same rule as the phenopacket; GET /phenopackets/{id} names it in
a `Link: <…/family>; rel="related"` header when there is one. POST /phenopackets accepts Family
documents too: the proband is stored as its phenopacket, the family around it; a YAML body
(`Content-Type: application/yaml`) as well as JSON.

Phenopackets are individual-level data: listing and loading them is an operator's act; one phenopacket
(`/phenopackets/{id}`, the target of the Beacon individual handover) may also be read by a caller CONTROLLED
for its dataset whose policy serves individual records to CONTROLLED callers (gateway.beacon.handovers.may_read).
"""

from __future__ import annotations

from flask import Blueprint, Response, request, url_for

from gateway.api.auth import bearer_token, require_operator
from gateway.api.context import services
from gateway.api.fhir_export import FHIR_JSON, export_response
from gateway.api.hooks import audit_notes, current_caller
from gateway.api.render import json_response, problem
from gateway.beacon.handovers import may_read
from gateway.errors import BadInput, Unauthorised
from gateway.jsonio import loads_strict
from gateway.security.keys import is_operator
from gateway.security.tokens import TokenError
from gateway.services.fhir_export import export_phenopacket
from gateway.services.ingest import ingest_phenopackets, phenopacket_documents
from gateway.store.records import StoredPhenopacket
from gateway.yamlio import load_bounded

MAX_PAGE = 1000
YAML_TYPES = frozenset({"application/yaml", "application/x-yaml", "text/yaml", "text/x-yaml"})


def _int_arg(name: str, default: int, low: int, high: int) -> int:
    raw = request.args.get(name)
    if raw is None:
        return default
    if not raw.isdigit() or not low <= int(raw) <= high:
        raise BadInput(f"query parameter {name!r} must be an integer from {low} to {high}")
    return int(raw)


def _readable(packet_id: str) -> tuple[StoredPhenopacket | None, Response | None]:
    """The stored phenopacket if the caller may read it, else (None, the refusal to send)."""
    svc = services()
    token = bearer_token()
    if token is None:
        raise Unauthorised("reading a phenopacket needs a bearer token (operator or CONTROLLED access)", status=401)
    stored = svc.store.get_phenopacket(packet_id)
    if not is_operator(svc.operator_tokens, token):
        try:
            caller = current_caller()
        except TokenError as exc:
            raise Unauthorised(f"the bearer token was rejected: {exc.reason}", status=401) from exc
        # The same answer whether the phenopacket is absent or only not readable: its existence is data too.
        if stored is None or not may_read(svc.config, caller, stored.dataset_id, "individuals"):
            audit_notes()["decision"] = "denied"
            return None, problem(404, f"no phenopacket with id {packet_id!r} that you may read")
        audit_notes()["datasets"] = [stored.dataset_id]
    if stored is None:
        return None, problem(404, f"no phenopacket with id {packet_id!r}")
    return stored, None


def _wants_fhir() -> bool:
    return request.accept_mimetypes.best_match(["application/json", FHIR_JSON]) == FHIR_JSON


def _profile() -> str | None:
    return services().config.profile


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
    def get_packet(packet_id: str):
        stored, refusal = _readable(packet_id)
        if stored is None:
            return refusal
        headers = {}
        family = services().store.get_family(packet_id)
        if family is not None:
            headers["Link"] = f'<{url_for(".get_family", packet_id=packet_id)}>; rel="related"; title="family"'
        if _wants_fhir():
            # The EHR gets the patient with their family history (FamilyMemberHistory) when there is one.
            exported = export_phenopacket(family.document if family else stored.document, profile=_profile())
            response = export_response(exported)
        else:
            response = json_response(stored.document)
        response.headers.update(headers)
        return response

    @bp.get("/<packet_id>/family")
    def get_family(packet_id: str):
        """The Phenopacket Family around this phenopacket (proband, relatives, pedigree): same rule to read."""
        stored, refusal = _readable(packet_id)
        if stored is None:
            return refusal
        family = services().store.get_family(packet_id)
        if family is None:
            return problem(404, f"phenopacket {packet_id!r} has no family history stored")
        if _wants_fhir():
            return export_response(export_phenopacket(family.document, profile=_profile()))
        return json_response(family.document)

    @bp.post("")
    @require_operator
    def load_packets():
        svc = services()
        body = request.get_data(cache=False)
        if request.mimetype in YAML_TYPES:  # phenopacket-tools' other text form; bounded as JSON is
            doc = load_bounded(body, "body", max_depth=svc.config.max_json_depth, number_text=True)
        else:
            doc = loads_strict(body, max_depth=svc.config.max_json_depth, require_object=False)
        found, notes = phenopacket_documents(doc)
        if any(i.is_error for i in notes):
            message = 'send a phenopacket or a Family, a JSON array of them, {"phenopackets": [...]} or a Cohort'
            return problem(400, message, [i for i in notes if i.is_error])
        dataset = request.args.get("dataset") or svc.config.default_dataset
        pointers = [p for p, _ in found]
        results, reports = ingest_phenopackets(
            [d for _, d in found], store=svc.store, key=svc.key, dataset_id=dataset, locations=pointers
        )
        issues = [*notes, *(i.at(p) for p, r in zip(pointers, reports, strict=True) for i in r)]
        if not results:
            errors = [i for i in issues if i.is_error]
            # a document id stored about another person: the request conflicts with what is stored (RFC 9110 15.5.10)
            status = 409 if errors and all(i.code == "another-person" for i in errors) else 422
            return problem(status, "phenopacket rejected; nothing was stored", errors or issues)
        return json_response(
            {
                "dataset": dataset,
                "stored": [{"id": r.id, "created": r.created} for r in results],
                "issues": [i.to_dict() for i in issues],
            },
            201 if any(r.created for r in results) else 200,
        )

    return bp
