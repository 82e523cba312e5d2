"""The FHIR REST interactions on single resources: create, update, delete, read, and the pending list.

HTTP only: the logic is gateway.services.fhir_resources. Writing and reading stored resources
need an operator credential (a stored resource is the hospital's, identifiers included).
"""

from __future__ import annotations

from datetime import timedelta
from functools import wraps
from typing import Any
from urllib.parse import urlencode

from flask import Blueprint, Response, request
from werkzeug.datastructures import CombinedMultiDict, MultiDict

from gateway.api.auth import require_operator
from gateway.api.context import services
from gateway.api.fhir_requests import UnsupportedMediaType, check_media_type, check_patient_links
from gateway.api.hooks import audit_notes
from gateway.api.public_url import public_base_url
from gateway.api.render import json_response
from gateway.errors import BadInput, NotFound
from gateway.issues import Issue, to_operation_outcome
from gateway.jsonio import loads_strict
from gateway.services.fhir_resources import (
    FHIR_ID,
    EntryResult,
    ResourceChange,
    ResourceWrite,
    apply_writes,
    check_id,
    check_resource,
    check_type,
    conditional_search,
    create_resource,
    parse_if_match,
    pending_resources,
    pseudonymous_reference,
    purge_pending,
    read_resource,
    search_by_identifier,
    search_by_patient,
)
from gateway.store.fhir_resources import StoredResource
from translators.fhir.tokens import parse_token

FHIR_JSON = "application/fhir+json"
PATIENT = "Patient"
# Parameters of every interaction (FHIR http.html#parameters; `_format` is checked by the blueprint) and the
# gateway's own: never part of a search.
NOT_SEARCHED = frozenset({"_format", "_pretty", "dataset", "profile"})
# Entry issue codes that mean a condition of the request failed (If-Match, a conditional reference's one match).
PRECONDITION_FAILED = {"conflict", "multiple-matches"}
STATUS_LINE = {
    "created": "201 Created",
    "updated": "200 OK",
    "unchanged": "200 OK",
    "deleted": "200 OK",
    "exists": "200 OK",
}


def _dataset() -> str:
    return request.args.get("dataset") or services().config.default_dataset


def _body() -> Any:
    check_media_type(request.mimetype)
    return loads_strict(request.get_data(cache=False), max_depth=services().config.max_json_depth)


def change_issues(change: ResourceChange) -> list[Issue]:
    """The OperationOutcome of one write: what happened, then what is worth knowing."""
    said = {
        "created": f"{change.resource_type}/{change.resource_id} created",
        "updated": f"{change.resource_type}/{change.resource_id} updated to version {change.version}",
        "unchanged": "the same content is stored already: nothing changed",
        "deleted": f"{change.resource_type}/{change.resource_id} deleted",
        "absent": f"{change.resource_type}/{change.resource_id} is not stored: nothing to delete"
        if change.resource_id
        else f"no kept {change.resource_type} matches the search: nothing to delete",
        "exists": f"{change.resource_type}/{change.resource_id} matches If-None-Exist: kept already, nothing was created",
    }[change.status]
    issues = [Issue.info(change.status, said)]
    if change.phenopacket_id:
        issues.append(Issue.info("phenopacket", f"applied to phenopackets/{change.phenopacket_id}"))
    return [*issues, *change.issues]


def _write_response(change: ResourceChange, stored: StoredResource | None) -> Response:
    """The answer to a write (FHIR http.html#ops): `Prefer: return=representation`, or no preference, answers the
    stored resource (with meta.versionId and lastUpdated; "in the absence of the header ... not the
    OperationOutcome; that should only be returned if explicitly requested"), `return=OperationOutcome` what
    happened and what is worth knowing (pending, warnings), `return=minimal` no body. A delete has no resource:
    its OperationOutcome unless minimal."""
    status = 201 if change.status == "created" else 200
    prefers = _prefers()
    if stored is not None and prefers == "representation":
        response = json_response(stored_resource(stored), status, mimetype=FHIR_JSON)
    elif prefers == "minimal":
        response = Response(status=status, mimetype=None)
        response.headers.pop("Content-Type", None)
    else:
        body = to_operation_outcome(change_issues(change), root=change.resource_type)
        response = json_response(body, status, mimetype=FHIR_JSON)
    if change.status in ("created", "updated", "unchanged", "exists"):
        response.headers["Location"] = f"{public_base_url()}/fhir/{change.location}"
        response.headers["ETag"] = f'W/"{change.version}"'
    if stored is not None:
        response.last_modified = stored.updated_at
    return response


RETURN_PREFERENCES = ("representation", "minimal", "OperationOutcome")


def _prefers() -> str:
    """The `return` preference (FHIR http.html#ops): representation (also when none is given), minimal or
    OperationOutcome."""
    value = _preference("return")
    return value if value in RETURN_PREFERENCES else "representation"


def _preference(name: str) -> str | None:
    """The value of one preference of the Prefer headers (RFC 7240: preferences separated by commas, their
    parameters by semicolons), None when it is not given."""
    for header in request.headers.getlist("Prefer"):
        for preference in header.split(","):
            key, _, value = preference.split(";")[0].strip().partition("=")
            if key.strip().lower() == name:
                return value.strip().strip('"')
    return None


def entry_response(result: EntryResult, refused: str | None = None) -> dict[str, Any]:
    """A transaction/batch-response entry for an entry kept as a resource (`refused`: the status of a batch
    entry refused before it was processed)."""
    change = result.change
    response: dict[str, Any] = {}
    issues = list(result.issues)
    if refused is not None:
        response["status"] = refused
    elif change is None:
        errors = {i.code for i in issues if i.is_error}
        precondition = errors and errors <= PRECONDITION_FAILED  # FHIR http.html: a failed condition is 412
        response["status"] = (
            "412 Precondition Failed" if precondition else "422 Unprocessable Entity" if errors else "200 OK"
        )
    else:
        response["status"] = STATUS_LINE.get(change.status, "200 OK")
        if change.status != "absent" and change.status != "deleted":
            response["location"] = change.location
            response["etag"] = f'W/"{change.version}"'
        issues = [*change_issues(change), *issues]
    if issues:
        response["outcome"] = to_operation_outcome(issues)
    return {"response": response}


def stored_resource(found: StoredResource) -> dict[str, Any]:
    meta = {**(found.resource.get("meta") or {}), "versionId": str(found.version)}
    meta["lastUpdated"] = found.updated_at.isoformat().replace("+00:00", "Z")
    return {**found.resource, "meta": meta}


def known_type(view):
    """An unknown or unkept type is 404 before any credential is asked for (the types are public)."""

    @wraps(view)
    def wrapped(resource_type: str, **kwargs):
        check_type(resource_type)
        if "resource_id" in kwargs:
            check_id(kwargs["resource_id"])
        return view(resource_type, **kwargs)

    return wrapped


def add_rest_routes(bp: Blueprint) -> None:
    """Register the single-resource interactions on the FHIR blueprint (after its fixed routes)."""

    @bp.post("/<resource_type>")
    @known_type
    @require_operator
    def create(resource_type: str):
        searched = sorted(set(request.args) - NOT_SEARCHED)
        if searched:  # a conditional create is If-None-Exist (http.html#ccreate); a query would be ignored
            raise BadInput(
                f"POST /fhir/{resource_type} takes no search ({', '.join(searched)[:80]}): a conditional create "
                "sends it as the If-None-Exist header, identifier=token",
                code="not-supported",
            )
        resource = _body()
        if isinstance(resource, dict) and isinstance(resource.get("id"), str):
            check_id(resource["id"])  # the URL names none: the body's id is the one kept
        warnings = check_resource(resource, resource_type, None)
        check_patient_links(resource)
        svc = services()
        change = create_resource(
            ResourceWrite(resource_type, resource.get("id"), resource),
            store=svc.store,
            key=svc.key,
            dataset_id=_dataset(),
            profile=request.args.get("profile") or svc.config.profile,
            pending_days=svc.config.fhir_pending_days,
            cache=svc.fhir_fragments,
            if_none_exist=request.headers.get("If-None-Exist"),
        )
        return _changed(change, warnings)

    @bp.put("/<resource_type>")
    @known_type
    @require_operator
    def conditional_update(resource_type: str):
        """`PUT /fhir/{type}?identifier=token` (FHIR http.html#cond-update): the kept resource the search matches
        is updated, none: created, several: 412."""
        search = _conditional_search(resource_type)
        resource = _body()
        if isinstance(resource, dict) and isinstance(resource.get("id"), str):
            check_id(resource["id"])
        warnings = check_resource(resource, resource_type, None)
        check_patient_links(resource)
        if_match = parse_if_match(request.headers.get("If-Match"))
        return _write(ResourceWrite(resource_type, None, resource, if_match=if_match, conditional=search), warnings)

    @bp.delete("/<resource_type>")
    @known_type
    @require_operator
    def conditional_delete(resource_type: str):
        """`DELETE /fhir/{type}?identifier=token` (http.html#cdelete): the one match is deleted, none: nothing
        to delete (200), several: 412."""
        search = _conditional_search(resource_type)
        if_match = parse_if_match(request.headers.get("If-Match"))
        return _write(ResourceWrite(resource_type, None, None, if_match=if_match, conditional=search), [])

    @bp.put("/<resource_type>/<resource_id>")
    @known_type
    @require_operator
    def update(resource_type: str, resource_id: str):
        resource = _body()
        warnings = check_resource(resource, resource_type, resource_id)
        check_patient_links(resource)
        if_match = parse_if_match(request.headers.get("If-Match"))
        return _write(ResourceWrite(resource_type, resource_id, resource, if_match=if_match), warnings)

    @bp.delete("/<resource_type>/<resource_id>")
    @known_type
    @require_operator
    def delete(resource_type: str, resource_id: str):
        if_match = parse_if_match(request.headers.get("If-Match"))
        return _write(ResourceWrite(resource_type, resource_id, None, if_match=if_match), [])

    @bp.get("/<resource_type>/<resource_id>")
    @known_type
    @require_operator
    def read(resource_type: str, resource_id: str):
        return _read_response(read_resource(services().store, _dataset(), resource_type, resource_id))

    add_read_routes(bp)
    add_pending_routes(bp)


def add_read_routes(bp: Blueprint) -> None:
    """vread (the current version) and search by patient."""

    @bp.get("/<resource_type>/<resource_id>/_history/<version_id>")
    @known_type
    @require_operator
    def vread(resource_type: str, resource_id: str, version_id: str):
        """Only the current version is kept (a phenopacket is made from current versions only)."""
        found = read_resource(services().store, _dataset(), resource_type, resource_id)
        if version_id != str(found.version):
            raise NotFound(
                f"{resource_type}/{resource_id} version {version_id[:12]!r} is not kept: "
                f"only the current version {found.version} is",
                code="not-found",
            )
        return _read_response(found)

    @bp.get("/<resource_type>")
    @known_type
    @require_operator
    def search(resource_type: str):
        """`?patient=` or `?subject=`: a searchset of the type's resources about that stored Patient;
        `?identifier=token`: those the token matches (what a conditional update would match); `?_id=`: the one
        kept under that id. Result parameters
        (search.html#count, #summary): `_count` (a page's size, 0: the total alone), `_summary=count`, `_total`;
        pages follow `link` next (`_offset`). An unknown parameter is 400 unless `Prefer: handling=lenient`
        (search.html#errors), when it is ignored and left out of the `self` link, which names what was used."""
        return _search(resource_type, request.args)

    @bp.post("/<resource_type>/_search")
    @known_type
    @require_operator
    def search_by_post(resource_type: str):
        """http.html#search: a server that searches SHALL take the search by POST too, its parameters in an
        `application/x-www-form-urlencoded` body (with those of the URL). Answered as the GET."""
        if request.mimetype != "application/x-www-form-urlencoded":
            message = f"a search by POST sends application/x-www-form-urlencoded, not {request.mimetype or 'nothing'!r}"
            raise UnsupportedMediaType(message, issues=[Issue.error("not-fhir", message)])
        return _search(resource_type, CombinedMultiDict([request.args, request.form]))

    def _search(resource_type: str, args: MultiDict) -> Response:
        svc = services()
        named = [n for n in SEARCH_PARAMETERS if n in args]
        unknown = sorted(set(args) - set(SEARCH_PARAMETERS) - set(RESULT_PARAMETERS) - NOT_SEARCHED)
        if unknown and _preference("handling") == "lenient":
            unknown = []
        repeated = len(named) == 1 and len(args.getlist(named[0])) > 1  # FHIR: AND, which one Patient never is
        if len(named) != 1 or unknown or repeated:
            raise BadInput(
                "search by exactly one of patient=, subject=, identifier= or _id= (with dataset=)"
                + (f"; not supported: {', '.join(unknown)}" if unknown else ""),
                code="not-supported",
            )
        count, offset, summary = _result_parameters(args)
        if named == ["identifier"]:
            search = conditional_search(resource_type, urlencode([("identifier", args["identifier"])]))
            found = search_by_identifier(svc.store, _dataset(), resource_type, search, svc.key)
        elif named == ["_id"]:
            found = _kept_or_none(resource_type, args["_id"])
        else:
            found = search_by_patient(svc.store, _dataset(), resource_type, args[named[0]], svc.key)
        used = [
            (n, _as_kept(resource_type, n, v, svc.key))
            for n, v in args.items(multi=True)
            if n in (*named, *NOT_SEARCHED) and n != "_pretty"
        ]
        if summary == "count":
            count = 0
        page = found[offset : offset + count] if count is not None else found[offset:]
        body = _searchset(page, total=len(found), base=public_base_url())
        links = [_link("self", resource_type, used, count, offset, summary)]
        if count and offset + count < len(found):
            links.append(_link("next", resource_type, used, count, offset + count, summary))
        if offset and count:
            links.append(_link("previous", resource_type, used, count, max(0, offset - count), summary))
        return json_response({**body, "link": links}, 200, mimetype=FHIR_JSON)

    def _kept_or_none(resource_type: str, resource_id: str) -> list[StoredResource]:
        """`_id`: the resource kept under that id, or none (a search finds nothing rather than 404 or 410)."""
        if not FHIR_ID.fullmatch(resource_id):
            return []
        try:
            return [read_resource(services().store, _dataset(), resource_type, resource_id)]
        except NotFound:  # Gone too
            return []


SEARCH_PARAMETERS = ("patient", "subject", "identifier", "_id")


def _as_kept(resource_type: str, name: str, value: str, key: bytes) -> str:
    """A search parameter as the `self` link shows it: a patient identifier with a system as its pseudonym (as the
    Patients in the searchset show it, services.fhir_resources.at_rest), which searches the same. A value without
    system matches it in every system, which no single pseudonym does: shown as sent."""
    if name == "identifier" and resource_type == PATIENT:
        reference = f"{PATIENT}?identifier={value}"
    elif name in ("patient", "subject") and value.startswith(f"{PATIENT}?identifier="):
        reference = value
    else:
        return value
    token = parse_token(reference.partition("=")[2])
    if token is None or token.system is None:
        return value
    kept = pseudonymous_reference(reference, key)
    return kept.partition("=")[2] if name == "identifier" else kept


# Result parameters (search.html#return) read here: `_total` is accepted (the total is always given).
RESULT_PARAMETERS = ("_count", "_offset", "_summary", "_total")


def _result_parameters(args: MultiDict) -> tuple[int | None, int, str | None]:
    """(_count, _offset, _summary) of a search, checked: 400 for what they cannot be."""

    def number(name: str) -> int | None:
        value = args.get(name)
        if value is None:
            return None
        if not value.isdigit() or len(value) > 9:
            raise BadInput(f"{name} must be a whole number >= 0, not {value[:40]!r}", code="fhir-value")
        return int(value)

    summary = args.get("_summary")
    if summary not in (None, "count", "false"):
        message = f"_summary={summary[:40]!r} is not supported here: count or false (the whole resources)"
        raise BadInput(message, code="not-supported")
    total = args.get("_total")
    if total not in (None, "none", "estimate", "accurate"):
        raise BadInput(f"_total must be none, estimate or accurate, not {total[:40]!r}", code="fhir-value")
    return number("_count"), number("_offset") or 0, summary


def _link(relation: str, resource_type: str, used: list[tuple[str, str]], count, offset: int, summary) -> dict:
    """A searchset link: the search as it was performed (the parameters used, search.html#self), at `offset`."""
    query = list(used)
    if summary == "count":
        query.append(("_summary", "count"))
    elif count is not None:
        query.append(("_count", str(count)))
    if offset:
        query.append(("_offset", str(offset)))
    return {"relation": relation, "url": f"{public_base_url()}/fhir/{resource_type}?{urlencode(query)}"}


def _searchset(found, more=lambda resource: {}, total: int | None = None, base: str | None = None) -> dict:
    """A searchset Bundle of kept resources (each entry a match, plus what `more` adds to it); `total`: the number
    of matches when `found` is one page of them; `base`: what the fullUrls start with (a search's are absolute,
    Bundle.entry.fullUrl, the operator's $pending list names `Type/id`)."""
    base = "" if base is None else base + "/fhir/"
    return {
        "resourceType": "Bundle",
        "type": "searchset",
        "total": len(found) if total is None else total,
        "entry": [
            {
                "fullUrl": f"{base}{r.resource_type}/{r.resource_id}",
                "resource": stored_resource(r),
                "search": {"mode": "match"},
                **more(r),
            }
            for r in found
        ],
    }


def add_pending_routes(bp: Blueprint) -> None:
    """The operator's list and purge of resources waiting for their Patient."""

    @bp.get("/$pending")
    @require_operator
    def pending():
        svc = services()
        dataset = request.args.get("dataset")
        found = pending_resources(svc.store, dataset)
        body = _searchset(
            found,
            lambda r: {"response": {"status": "200 OK", "outcome": _pending_outcome(r, svc.config.fhir_pending_days)}},
        )
        return json_response(body, 200, mimetype=FHIR_JSON)

    @bp.delete("/$pending")
    @require_operator
    def purge():
        """Drop pending resources older than `older_than_days` (default: the configured expiry; 0: all)."""
        svc = services()
        dataset = request.args.get("dataset")
        days = _days(request.args.get("older_than_days"), svc.config.fhir_pending_days)
        purged = purge_pending(svc.store, dataset, older_than_days=days)
        audit_notes()["datasets"] = sorted({r.dataset_id for r in purged}) or ([dataset] if dataset else [])
        named = [Issue.info("purged", f"{r.dataset_id}: {r.resource_type}/{r.resource_id}") for r in purged]
        summary = Issue.info("purged", f"{len(purged)} pending resource(s) older than {days:g} days purged")
        return json_response(to_operation_outcome([summary, *named]), 200, mimetype=FHIR_JSON)


def _read_response(found: StoredResource) -> Response:
    response = json_response(stored_resource(found), 200, mimetype=FHIR_JSON)
    response.headers["ETag"] = f'W/"{found.version}"'
    response.last_modified = found.updated_at
    return response


def _conditional_search(resource_type: str) -> str:
    """The search of a conditional update or delete: the query besides the gateway's own dataset= and profile=."""
    asked = [(name, value) for name, value in request.args.items(multi=True) if name not in NOT_SEARCHED]
    if not asked:
        raise BadInput(
            f"{request.method} /fhir/{resource_type} needs a search, identifier=token (or name one resource: "
            f"/fhir/{resource_type}/{{id}})",
            code="not-supported",
        )
    return conditional_search(resource_type, urlencode(asked))


def _write(write: ResourceWrite, warnings: list[Issue]) -> Response:
    svc = services()
    profile = request.args.get("profile") or svc.config.profile
    (change,) = apply_writes(
        [write],
        store=svc.store,
        key=svc.key,
        dataset_id=_dataset(),
        profile=profile,
        pending_days=svc.config.fhir_pending_days,
        cache=svc.fhir_fragments,
    )
    return _changed(change, warnings)


def _changed(change: ResourceChange, warnings: list[Issue]) -> Response:
    svc = services()
    change.issues[:0] = warnings
    stored = None
    if change.status not in ("deleted", "absent"):
        stored = read_resource(svc.store, _dataset(), change.resource_type, change.resource_id)
    return _write_response(change, stored)


def _pending_outcome(resource: StoredResource, days: float) -> dict[str, Any]:
    message = f"waiting for the patient {resource.patient_ref!r} in dataset {resource.dataset_id!r}"
    if days > 0:
        expires = resource.updated_at + timedelta(days=days)
        message += f"; dropped after {expires.isoformat().replace('+00:00', 'Z')} unless that Patient arrives"
    return to_operation_outcome([Issue.warning("pending", message)])


def _days(value: str | None, default: float) -> float:
    if value is None:
        return default
    try:
        days = float(value)
    except ValueError:
        days = -1.0
    if not 0 <= days < 1e6:
        raise BadInput(f"older_than_days must be a number of days >= 0, not {value[:40]!r}", code="fhir-value")
    return days
