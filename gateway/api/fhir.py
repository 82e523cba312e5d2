"""The FHIR surface: POST /fhir (and /fhir/Bundle), POST /fhir/Bundle/$validate, GET /fhir/metadata.

Errors are FHIR OperationOutcomes: 415 for a body of another media type than FHIR's JSON, 400 for a body that is
not a FHIR document,
422 for a document that parses but is not valid R4 or breaks a profile rule, 413 (`too-costly`)
for one whose parsing and translation exceed the node's time or memory limits (gateway.bounded).
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any

from flask import Blueprint, Response, g, request

import mappings
from gateway.api.auth import require_operator
from gateway.api.context import services
from gateway.api.errors import gateway_error_response
from gateway.api.fhir_messaging import is_message, response_message
from gateway.api.fhir_requests import (
    Refusal,
    check_conditional_creates,
    check_deletes,
    check_media_type,
    check_patient_links,
    check_requests,
    deletes,
    holds_a_patient,
)
from gateway.api.fhir_rest import add_rest_routes, entry_response
from gateway.api.public_url import public_base_url
from gateway.api.render import json_response
from gateway.api.validate import over_budget
from gateway.bounded import WorkLimitExceeded, limits_of, run_bounded
from gateway.errors import BadInput, GatewayError, NotFound
from gateway.issues import Issue, to_operation_outcome
from gateway.jsonio import JSONInputError, loads_strict
from gateway.services.fhir_resources import (
    ResourceChange,
    about_stored_patients,
    apply_document,
    check_id,
    conditional_creates,
    keep_bundle,
    keeps_resources,
    stored_entries,
    supported_types,
)
from gateway.services.ingest import (
    ATOMIC_BUNDLE_TYPES,
    IngestOutcome,
    PacketOutcome,
    entry_index,
    process_fhir_bytes,
    store_fhir_outcome,
    unwrap_validate_parameters,
)
from gateway.validation.fhir import r4_resource_types

FHIR_JSON = "application/fhir+json"
# Issue codes that mean "this is not a FHIR document at all" (400); everything else is 422.
NOT_A_DOCUMENT = {"json-syntax", "json-nan", "json-duplicate-key", "json-too-deep", "not-fhir"}


# What `_format` and Accept may ask for (FHIR http.html#mime: json and the R4 and older JSON media types).
JSON_FORMATS = frozenset({"json", "application/json", "application/fhir+json", "application/json+fhir"})
JSON_MEDIA_TYPES = ["application/fhir+json", "application/json+fhir", "application/json"]


def fhir_response(body: dict, status: int = 200) -> Response:
    return json_response(body, status, mimetype=FHIR_JSON)


def outcome_response(issues: list[Issue], status: int, body: Any = None) -> Response:
    """The issues as an OperationOutcome; their FHIRPath expressions start at the body's resource type."""
    return fhir_response(to_operation_outcome(issues, root=_root_type(body)), status)


def _root_type(body: Any) -> str:
    found = body.get("resourceType") if isinstance(body, dict) else None
    return found if isinstance(found, str) and found in r4_resource_types() else "Bundle"


def _process_bounded(
    dataset_id: str, *, parameters: bool = False, data: bytes | None = None
) -> tuple[IngestOutcome, str]:
    """Parse, validate and translate the body (or `data`: the body as the gateway rewrote it); above
    `work_inline_bytes`, in a child with the node's limits."""
    check_media_type(request.mimetype)
    svc = services()
    if data is None:
        data = request.get_data()  # kept: a Bundle without a Patient is read again (resources_response)
    arguments: dict[str, Any] = {
        "max_depth": svc.config.max_json_depth,
        "key": svc.key,
        "dataset_id": dataset_id,
        "profile": request.args.get("profile") or svc.config.profile,
        "parameters": parameters,  # $validate: a Parameters wrapper is unwrapped (services.ingest)
    }
    if len(data) <= svc.config.work_inline_bytes:  # small JSON: bounded by its size, cheaper than a fork
        return process_fhir_bytes(data, **arguments)
    return run_bounded(process_fhir_bytes, data, **arguments, **limits_of(svc.config))


# A DELETE removes what the resource contributed, and deleting what is not stored is 200 too (FHIR's delete is
# idempotent): nothing to check, and no stored resource is looked up for an anonymous caller.
_DELETE_ALWAYS_ACCEPTED = Issue.info(
    "delete-accepted", "a DELETE is always accepted here: what the resource contributed is removed"
)


def _validate_mode() -> str | None:
    """`mode` of $validate, from the query or from a Parameters body (create, update, delete, profile)."""
    if request.args.get("mode"):
        return request.args["mode"]
    svc = services()
    if len(request.get_data()) > svc.config.work_inline_bytes:  # a large body is read only in the bounded child
        return None
    try:
        doc = loads_strict(request.get_data(), max_depth=svc.config.max_json_depth)
    except JSONInputError:
        return None  # the bounded check reports it
    if (
        not isinstance(doc, dict)
        or doc.get("resourceType") != "Parameters"
        or not isinstance(doc.get("parameter"), list)
    ):
        return None
    modes = [p.get("valueCode") for p in doc["parameter"] if isinstance(p, dict) and p.get("name") == "mode"]
    return modes[0] if len(modes) == 1 and isinstance(modes[0], str) else None


def _url_mismatch(body: Any, resource_type: str, resource_id: str | None) -> list[Issue]:
    """Type- and instance-level $validate: the resource must be of the URL's type and carry no other id."""
    resource, where = body, ""
    if isinstance(body, dict) and body.get("resourceType") == "Parameters":
        resource, where = unwrap_validate_parameters(body)
    found = resource.get("resourceType") if isinstance(resource, dict) else None
    if found != resource_type:
        return [
            Issue.error("not-fhir", f"this is {resource_type}/$validate: the resource is a {found!r}", where or "/")
        ]
    if resource_id is not None and resource.get("id") not in (None, resource_id):
        message = f"the resource's id {str(resource.get('id'))[:80]!r} differs from the URL's id {resource_id!r}"
        return [Issue.error("fhir-value", message, f"{where}/id")]
    return []


def _status_for(issues: list[Issue]) -> int:
    errors = [i for i in issues if i.is_error]
    if any(i.code in NOT_A_DOCUMENT for i in errors):
        return 400
    if errors and all(i.code == "multiple-matches" for i in errors):  # http.html#trules: a failed condition
        return 412
    return 422


def _entry_outcome(issues: list[Issue]) -> dict | None:
    return to_operation_outcome(issues) if issues else None


def refuse_patients_of(outcome: IngestOutcome, refused: dict[int, Refusal]) -> None:
    """A batch's refused entries keep their patients from being stored: a phenopacket is made of all its
    patient's entries, and one of them cannot be done (a batch with Patients stands patient by patient)."""
    for packet in outcome.packets:
        packet.issues.extend(i for n in packet.entry_indexes if n in refused for i in refused[n].issues)


def transaction_response(
    outcome: IngestOutcome, refused: dict[int, Refusal] | None = None, kept: Iterable[ResourceChange] = ()
) -> dict:
    """One response entry per input entry, in order; each entry's issues in its outcome. `refused`: a batch's
    entries refused before processing, answered with their own status. `kept`: the entries' resources as kept,
    whose FHIR location and version a stored entry answers (FHIR http.html#transaction-response); the
    phenopacket it went into is named in the Patient entry's outcome."""
    refused = refused or {}
    kept_at = {c.entry: c for c in kept if c.entry is not None}
    by_entry = outcome.issues_by_entry()
    packet_of_entry = {i: p for p in outcome.packets for i in p.entry_indexes}
    entries = []
    for index in range(outcome.entry_count):
        packet = packet_of_entry.get(index)
        issues = by_entry.get(index, [])
        if index == 0:
            issues = [*by_entry.get(None, []), *issues]  # bundle-level issues travel with the first entry
        response: dict = {}
        if index in refused:
            response["status"] = refused[index].status
            issues = [*refused[index].issues, *issues]
        elif packet is None:
            failed = outcome.bundle_type == "batch" and any(i.is_error for i in issues)
            response["status"] = "422 Unprocessable Entity" if failed else "200 OK"
            change = None if failed else kept_at.get(index)
            if change is not None:  # in no phenopacket, but answered by a kept resource (ifNoneExist matched)
                response["location"] = change.location
                response["etag"] = f'W/"{change.version}"'
        elif packet.saved is None:
            response["status"] = "422 Unprocessable Entity"
            issues = [*issues, *(i for i in packet.issues if i.target == "output"), *_not_stored(packet, index)]
        else:
            is_patient_entry = packet.entry_indexes and packet.entry_indexes[0] == index
            change = kept_at.get(index)
            if change is not None:  # the entry's resource as kept: 201 when it was created (http.html#transaction)
                response["status"] = "201 Created" if change.status == "created" else "200 OK"
                response["location"] = change.location
                response["etag"] = f'W/"{change.version}"'
            else:  # an entry not kept as a resource: the phenopacket is what was made of it
                response["status"] = "201 Created" if packet.saved.created and is_patient_entry else "200 OK"
                response["location"] = f"phenopackets/{packet.saved.id}"
            if is_patient_entry:
                where = f"phenopackets/{packet.saved.id}"
                issues = [
                    Issue.info("phenopacket", f"made into the phenopacket {where}", where, target="output"),
                    *issues,
                ]
        if issues:
            response["outcome"] = _entry_outcome(issues)
        entries.append({"response": response})
    kind = "batch-response" if outcome.bundle_type not in ATOMIC_BUNDLE_TYPES else "transaction-response"
    return {"resourceType": "Bundle", "type": kind, "entry": entries}


def _not_stored(packet: PacketOutcome, index: int) -> list[Issue]:
    """Why an entry of a patient not stored, without an error of its own, was not stored."""
    failed = {entry_index(i.location) for i in packet.issues if i.is_error and i.target == "input"}
    blamed = [n for n in packet.entry_indexes if n != index and n in failed]
    if not blamed:
        return []
    named = ", ".join(str(n) for n in blamed[:10])
    message = f"not stored: this patient's phenopacket is made with entries {named} too, which were refused"
    return [Issue.error("not-stored", message, f"/entry/{index}")]


def resources_response(doc: dict, dataset: str, refused: dict[int, Refusal] | None = None) -> Response:
    """A lone resource or a Bundle without a Patient, kept resource by resource (services.fhir_resources);
    `refused`: a batch's entries refused before, answered with their own status and not processed."""
    svc = services()
    refused = refused or {}
    profile = request.args.get("profile") or svc.config.profile
    bundle_type, results = apply_document(
        doc,
        store=svc.store,
        key=svc.key,
        dataset_id=dataset,
        profile=profile,
        pending_days=svc.config.fhir_pending_days,
        cache=svc.fhir_fragments,
        set_aside={n: r.issues for n, r in refused.items()},
    )
    kind = "batch-response" if bundle_type == "batch" else "transaction-response"
    entries = [entry_response(r, refused[r.index].status if r.index in refused else None) for r in results]
    return fhir_response({"resourceType": "Bundle", "type": kind, "entry": entries})


VALIDATE = {"name": "validate", "definition": "http://hl7.org/fhir/OperationDefinition/Resource-validate"}
PROCESS_MESSAGE = {
    "name": "process-message",
    "definition": "http://hl7.org/fhir/OperationDefinition/MessageHeader-process-message",
}
# What GET /fhir/{type} searches by (fhir_rest.search), each type alike; the result parameters _count, _offset,
# _summary=count and _total are common to every search (search.html#return) and not listed per type.
SEARCH_PARAMS = [
    *(
        {
            "name": n,
            "type": "reference",
            "documentation": "the Patient the resource is about: Patient/{id}, an id, "
            "or Patient?identifier=system|value",
        }
        for n in ("patient", "subject")
    ),
    {
        "name": "identifier",
        "type": "token",
        "documentation": "a business identifier: system|value, value (any system), |value (no system), system|; "
        "what a conditional update or delete matches",
    },
    {"name": "_id", "type": "token", "documentation": "the resource kept under that id (none: an empty searchset)"},
]


# Kept types about no patient (R4 Medication has neither subject nor patient): ?patient= and ?subject= never match.
ABOUT_NO_PATIENT = frozenset({"Medication"})


def _search_params(resource_type: str) -> list[dict]:
    """The search parameters that can match a kept resource of the type."""
    return [p for p in SEARCH_PARAMS if not (p["name"] in ("patient", "subject") and resource_type in ABOUT_NO_PATIENT)]


def capability_statement() -> dict:
    cfg = services().config
    return {
        "resourceType": "CapabilityStatement",
        "status": "active",
        "date": datetime.now(UTC).date().isoformat(),
        "kind": "instance",
        "software": {"name": "genomic-gateway", "version": cfg.node.version},
        "implementation": {"description": cfg.node.name, "url": public_base_url() + "/fhir"},
        "fhirVersion": "4.0.1",
        "format": [FHIR_JSON, "application/json"],
        "implementationGuide": mappings.implementation_guides(),
        "rest": [
            {
                "mode": "server",
                "documentation": (
                    "POST a Bundle (transaction, batch, collection, document, searchset or message) to the base: "
                    "each Patient becomes a GA4GH Phenopacket v2. Single resources are created, updated and deleted at /{type}[/{id}]; "
                    "a Bundle without a Patient is applied to Patients stored before (Patient/{id} or "
                    "Patient?identifier=system|value). Resources whose Patient is not stored yet are pending "
                    f"until it arrives (GET /$pending). Profiles: {', '.join(mappings.profile_names())}."
                ),
                "security": {"description": "Writing needs an operator bearer token."},
                "interaction": [{"code": "transaction"}, {"code": "batch"}],
                # POST /fhir/$validate, /fhir/$process-message (system level; messages synchronously)
                "operation": [VALIDATE, PROCESS_MESSAGE],
                "resource": [
                    {
                        "type": "Bundle",
                        "operation": [VALIDATE],
                    },
                    *(
                        {
                            "type": t,
                            "documentation": (
                                "kept as received per dataset (?dataset=) and applied to its Patient's "
                                "phenopacket; a resource whose Patient is not stored yet is pending (GET /fhir/$pending)"
                            ),
                            "interaction": [
                                {"code": c} for c in ("create", "update", "delete", "read", "vread", "search-type")
                            ],
                            "searchParam": _search_params(t),
                            "operation": [VALIDATE],
                            "versioning": "versioned-update",
                            "readHistory": False,
                            "updateCreate": True,
                            # by identifier=token: If-None-Exist, PUT and DELETE {type}?identifier= (several: 412)
                            "conditionalCreate": True,
                            "conditionalUpdate": True,
                            "conditionalDelete": "single",
                        }
                        for t in supported_types()
                    ),
                ],
            }
        ],
    }


def _accepts_json(accepts: Iterable[tuple[str, float]]) -> bool:
    """Whether an Accept header takes a JSON media type of FHIR R4 (or any type): its `fhirVersion` parameter
    (http.html#version-parameter), when given, must name R4 (4.0, or 4.0.1)."""
    for value, quality in accepts:
        media_type, *parameters = (part.strip().lower() for part in value.split(";"))
        if quality <= 0 or media_type not in (*JSON_MEDIA_TYPES, "*/*", "application/*"):
            continue
        versions = [p.partition("=")[2].strip().strip('"') for p in parameters if p.startswith("fhirversion=")]
        if all(v in ("4.0", "4.0.1") for v in versions):
            return True
    return False


def fhir_blueprint() -> Blueprint:
    bp = Blueprint("fhir", __name__, url_prefix="/fhir")

    # Errors (unreadable JSON, credentials, a malformed dataset id) become OperationOutcomes in gateway.api.errors.

    @bp.before_request
    def negotiate() -> Response | None:
        """JSON is the one format served (FHIR http.html#mime): `_format` (which overrides Accept) or an Accept
        header that takes no JSON at all is 406 Not Acceptable, rather than a JSON body the client cannot read."""
        asked = request.args.get("_format")
        if asked is not None:
            if asked.split(";")[0].strip().lower() in JSON_FORMATS:
                return None
            message = f"_format={asked[:40]!r}: this server speaks JSON only ({', '.join(sorted(JSON_FORMATS))})"
            return outcome_response([Issue.error("not-supported", message)], 406)
        accepts = request.accept_mimetypes
        if accepts and not _accepts_json(accepts):
            message = f"Accept {request.headers.get('Accept', '')[:80]!r}: this server answers {FHIR_JSON} only"
            return outcome_response([Issue.error("not-supported", message)], 406)
        return None

    @bp.get("/metadata")
    def metadata():
        return fhir_response(capability_statement())

    @bp.errorhandler(WorkLimitExceeded)
    def too_costly(exc: WorkLimitExceeded):
        return outcome_response([Issue.error("too-costly", f"{exc.message}; send a smaller document")], 413)

    @bp.post("")
    @bp.post("/")
    @bp.post("/Bundle")  # FHIR allows a Bundle to be created as a resource; here it is the same as the base
    @require_operator
    def ingest() -> Response:
        svc = services()
        dataset = request.args.get("dataset") or svc.config.default_dataset
        outcome, source = _process_bounded(dataset)  # parse, validate, translate: in a child with limits
        doc = loads_strict(request.get_data(), max_depth=svc.config.max_json_depth)  # within the limits just met
        g.fhir_root = _root_type(doc)  # errors raised from here on point into this body (gateway.api.errors)
        # What the entries ask must be doable before anything is stored: a transaction is refused whole,
        # a batch's entries one by one (fhir_requests.Refusal).
        refused = check_requests(doc)
        refused = check_deletes(doc) | refused
        # No Patient inside, or references to Patients stored before: kept resource by resource.
        by_resource = keeps_resources(doc) or about_stored_patients(outcome.report) or bool(deletes(doc))
        if (not outcome.packets or about_stored_patients(outcome.report)) and by_resource:
            if not holds_a_patient(doc):  # kept one by one: a reference no Patient can match waits for ever
                refused = check_patient_links(doc) | refused
            return resources_response(doc, dataset, refused)
        # ifNoneExist (conditional create): a matched entry is not created, the kept resource stands in its place
        creates = conditional_creates(doc, store=svc.store, key=svc.key, dataset_id=dataset)
        refused = check_conditional_creates(doc, creates.refused) | refused
        if creates.existing:
            doc = creates.doc
            outcome, source = _process_bounded(dataset, data=json.dumps(doc).encode())
            outcome.report.issues = creates.sender_issues(outcome.report)
            for packet in outcome.packets:
                packet.issues = creates.sender_issues(packet.issues)
        refuse_patients_of(outcome, refused)

        def keep(connection, stored: IngestOutcome) -> None:
            """The Bundle's resources too, in the phenopackets' transaction: resources sent later meet them."""
            changes = keep_bundle(
                doc,
                [n for n in stored_entries(stored) if n not in creates.existing],
                store=svc.store,
                key=svc.key,
                dataset_id=dataset,
                profile=request.args.get("profile") or svc.config.profile,
                pending_days=svc.config.fhir_pending_days,
                cache=svc.fhir_fragments,
                connection=connection,
            )
            # what keeping says of the Bundle itself (a Patient taken as the stored one) goes to its sender
            stored.report.extend(
                i for c in changes for i in c.issues if i.code in ("same-person", "same-resource", "id-is-identifier")
            )
            kept.extend(changes)
            for n, change in creates.existing.items():  # answered with the kept resource's location
                change.entry = n
                stored.report.extend(change.issues)
                kept.append(change)

        kept: list[ResourceChange] = []

        outcome = store_fhir_outcome(outcome, store=svc.store, dataset_id=dataset, source=source, also=keep)
        if outcome.rejected:
            issues = outcome.report.errors + outcome.report.warnings
            return outcome_response(issues, _status_for(outcome.report.errors), doc)
        return fhir_response(transaction_response(outcome, refused, kept))

    @bp.post("/$validate")
    @bp.post("/<resource_type>/$validate")
    @bp.post("/<resource_type>/<resource_id>/$validate")
    def validate(resource_type: str | None = None, resource_id: str | None = None):
        """FHIR's Resource-validate at system, type and instance level: 200 + the findings as an OperationOutcome.
        At type and instance level the resource must be of the URL's type (and, for an update, carry its id)."""
        if resource_type is not None and resource_type not in r4_resource_types():
            raise NotFound(f"{resource_type[:80]!r} is not a FHIR R4 resource type", code="not-found")
        if resource_id is not None:
            check_id(resource_id)
        if over_budget():  # validation is work on anonymous input: it is counted like a query
            return outcome_response([Issue.error("throttled", "query budget exhausted; try again later")], 429)
        if _validate_mode() == "delete":
            return outcome_response([_DELETE_ALWAYS_ACCEPTED], 200)
        outcome, _ = _process_bounded(services().config.default_dataset, parameters=True)
        body = loads_strict(request.get_data(), max_depth=services().config.max_json_depth)  # within limits met
        if resource_type is not None:
            mismatch = _url_mismatch(body, resource_type, resource_id)
            if mismatch:
                return outcome_response(mismatch, 400, body)
        return outcome_response(list(outcome.report), 200, body)

    @bp.post("/$process-message")
    @require_operator
    def process_message() -> Response:
        """A FHIR message processed as the base processes it, answered with a response message (fhir_messaging)."""
        if request.args.get("async", "").lower() == "true":
            raise BadInput(
                "asynchronous messaging is not offered: send without async=true and read the response message",
                code="not-supported",
            )
        check_media_type(request.mimetype)
        message = loads_strict(request.get_data(), max_depth=services().config.max_json_depth)
        if not is_message(message):
            raise BadInput("$process-message takes a Bundle of type message (the base takes other Bundles)")
        try:
            answer = ingest()
        except GatewayError as exc:  # refused whole (a transaction's rules): said in the response message
            answer = gateway_error_response(exc)
        return fhir_response(response_message(message, answer, public_base_url() + "/fhir"), 200)

    add_rest_routes(bp)  # /{type}[/{id}] last: the fixed paths above come first
    return bp
