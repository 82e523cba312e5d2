"""What a Bundle's entries ask the gateway to do, checked before anything is stored.

FHIR http.html#transaction: each entry's `request` names a method and a url; a server refuses what it does
not perform and a request that contradicts its resource, and a transaction may not name one resource twice.
Everything found here is the sender's mistake, found at once, so the store is never touched: a transaction
is refused whole (400); a batch is judged entry by entry (http.html#transaction: "there SHALL be no
interdependencies between the different entries"), so each refused entry is answered in its own response
entry (`Refusal`) and the others are processed.

Also here: a patient reference that no Patient can ever match (a kept resource would wait for it until it
expires, silently lost), refused where a resource is kept on its own (REST writes, Patient-less Bundles).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl

from gateway.errors import BadInput, GatewayError
from gateway.issues import Issue
from gateway.services.fhir_resources import (
    FHIR_ID,
    PATIENT_LINKS,
    AmbiguousReference,
    ResourceRejected,
    conditional_search,
)
from gateway.services.ingest import entry_index
from translators.fhir.common import reference_of
from translators.fhir.references import RELATIVE_REF
from translators.fhir.tokens import parse_token

# The entry methods the gateway performs (GET/HEAD read nothing in a write Bundle; PATCH is not offered).
PERFORMED = ("POST", "PUT", "DELETE")
PATIENT = "Patient"
# Entries of one Bundle: a transaction is one database transaction, holding its locks while every entry is
# kept and every patient rebuilt (100,000 entries took 94 s and 1.2 GB in one request); larger exports go in parts.
MAX_BUNDLE_ENTRIES = 10_000


class TooManyEntries(GatewayError):
    status = 413
    code = "too-costly"


# The JSON media types of FHIR R4 (http.html#mime-type), including the older DSTU2 spelling still sent.
ACCEPTED_TYPES = ("application/fhir+json", "application/json+fhir", "application/json")


class UnsupportedMediaType(BadInput):
    """A body whose Content-Type is none of ACCEPTED_TYPES (RFC 9110 15.5.16): 415, not read."""

    status = 415
    code = "not-fhir"


def check_media_type(mimetype: str | None) -> None:
    """UnsupportedMediaType unless `mimetype` (the Content-Type without its parameters, e.g. fhirVersion) is a
    JSON media type of FHIR."""
    content_type = (mimetype or "").lower()
    if content_type not in ACCEPTED_TYPES:
        message = f"Content-Type must be one of {', '.join(ACCEPTED_TYPES)}, not {content_type[:80] or 'empty'}"
        raise UnsupportedMediaType(message, issues=[Issue.error("not-fhir", message)])


def _entries(doc: Any) -> list[tuple[int, dict[str, Any]]]:
    if not isinstance(doc, dict) or doc.get("resourceType") != "Bundle" or not isinstance(doc.get("entry"), list):
        return []
    return [(i, e) for i, e in enumerate(doc["entry"]) if isinstance(e, dict)]  # others: the validator says


def _url_type_id(url: str) -> tuple[str, str]:
    """(type, id) of an entry url: `Type`, `Type/id`, `Type?query` or an absolute `…/Type/id`."""
    path = url.split("?", 1)[0].strip("/")
    if "://" in path:  # an absolute url: its last two segments
        path = "/".join(path.rsplit("/", 2)[-2:])
    resource_type, _, resource_id = path.partition("/")
    return resource_type, resource_id


def request_issues(doc: Any) -> list[Issue]:
    """The problems of a Bundle's entry requests and resource ids (none: what it asks can be done)."""
    issues: list[Issue] = []
    atomic = isinstance(doc, dict) and doc.get("type") == "transaction"
    seen: dict[tuple[str, str], int] = {}
    for index, entry in _entries(doc):
        where = f"/entry/{index}"
        resource = entry.get("resource") if isinstance(entry.get("resource"), dict) else None
        body_type = resource.get("resourceType") if resource else None
        body_type = body_type if isinstance(body_type, str) else None  # any other JSON: the validator says
        body_id = resource.get("id") if resource else None
        if isinstance(body_id, str) and not FHIR_ID.fullmatch(body_id):
            issues.append(Issue.error("fhir-value", f"{body_id[:80]!r} is not a FHIR id", f"{where}/resource/id"))
        request = entry.get("request")
        if not isinstance(request, dict):  # a collection or document: nothing asked but keeping
            continue
        method = str(request.get("method") or "").upper()
        url_type, url_id = _url_type_id(str(request.get("url") or ""))
        at = f"{where}/request"
        if method not in PERFORMED:
            message = f"method {method[:20]!r} is not performed here (only {', '.join(PERFORMED)})"
            issues.append(Issue.error("not-supported", message, f"{at}/method"))
            continue
        if url_id and not FHIR_ID.fullmatch(url_id):
            issues.append(Issue.error("fhir-value", f"{url_id[:80]!r} is not a FHIR id", f"{at}/url"))
            continue
        if body_type and url_type and url_type != body_type:
            message = f"the url names a {url_type[:40]}, the entry holds a {body_type}"
            issues.append(Issue.error("invalid", message, f"{at}/url"))
        if method == "PUT" and url_id and isinstance(body_id, str) and body_id != url_id:
            message = f"the resource's id {body_id!r} differs from the url's id {url_id!r}"
            issues.append(Issue.error("invalid", message, f"{at}/url"))
        search = str(request.get("url") or "").partition("?")[2]
        if method in ("PUT", "DELETE") and search and not url_id:  # a conditional update or delete
            try:
                conditional_search(body_type or url_type, search)
            except BadInput as unsupported:
                issues.append(Issue.error("not-supported", unsupported.message, f"{at}/url"))
        elif method == "DELETE" and not (url_type and url_id):
            issues.append(Issue.error("fhir-value", "DELETE needs a url Type/id or Type?identifier=token", f"{at}/url"))
        named_id = url_id if method != "POST" else body_id
        if atomic and isinstance(named_id, str) and named_id:
            identity = (body_type or url_type, named_id)
            if identity in seen:
                message = f"{identity[0]}/{identity[1]} is named by entry {seen[identity]} too: one change per resource"
                issues.append(Issue.error("duplicate", message, f"{at}/url"))
            seen.setdefault(identity, index)
    return issues


@dataclass(frozen=True)
class Refusal:
    """A batch entry not processed: its response.status and the problems in its response.outcome."""

    status: str
    issues: tuple[Issue, ...]


BAD_REQUEST = "400 Bad Request"
UNPROCESSABLE = "422 Unprocessable Entity"
PRECONDITION_FAILED = "412 Precondition Failed"


def is_batch(doc: Any) -> bool:
    return isinstance(doc, dict) and doc.get("resourceType") == "Bundle" and doc.get("type") == "batch"


def refused_or_raised(
    doc: Any, issues: list[Issue], status: str, error: type[GatewayError], message: str
) -> dict[int, Refusal]:
    """A batch's entries with `issues`, {entry: Refusal}; any other document raises `error(message)` carrying
    them all, when there are any."""
    if not issues:
        return {}
    if not is_batch(doc):
        raise error(message, issues=issues)
    by_entry: dict[int, list[Issue]] = {}
    for issue in issues:
        n = entry_index(issue.location)
        if n is None:  # not about one entry: the batch itself cannot be done
            raise error(message, issues=issues)
        by_entry.setdefault(n, []).append(issue)
    return {n: Refusal(status, tuple(found)) for n, found in by_entry.items()}


def check_requests(doc: Any) -> dict[int, Refusal]:
    """TooManyEntries (413) for a Bundle above MAX_BUNDLE_ENTRIES; the problems of its entry requests: a
    transaction raises BadInput (400) with all of them, a batch answers each refused entry 400 Bad Request."""
    entries = doc.get("entry") if isinstance(doc, dict) else None
    if isinstance(entries, list) and len(entries) > MAX_BUNDLE_ENTRIES:
        message = f"the Bundle has {len(entries)} entries, more than {MAX_BUNDLE_ENTRIES}: send it in parts"
        raise TooManyEntries(message, issues=[Issue.error("too-costly", message, "/entry")])
    message = "the Bundle asks for what cannot be done; nothing was stored"
    return refused_or_raised(doc, request_issues(doc), BAD_REQUEST, BadInput, message)


def check_deletes(doc: Any) -> dict[int, Refusal]:
    """DELETE entries beside Patients are not performed (a phenopacket is made from the Bundle's Patients as
    sent): a transaction raises ResourceRejected (422), a batch answers each such entry 422."""
    if not (deletes(doc) and holds_a_patient(doc)):
        return {}
    issues = [
        Issue.error("not-supported", "send the DELETE on its own or in a Bundle without Patients", f"/entry/{i}")
        for i in deletes(doc)
    ]
    message = "DELETE entries are not applied with a Bundle that carries Patients; nothing was stored"
    return refused_or_raised(doc, issues, UNPROCESSABLE, ResourceRejected, message)


def check_conditional_creates(doc: Any, refused: dict[int, list[Issue]]) -> dict[int, Refusal]:
    """The ifNoneExist entries that cannot be done (services.fhir_resources.conditional_creates): several kept
    resources match (412, http.html#trules), or another search than identifier=token (400). A transaction
    raises with them all, a batch answers each such entry."""
    issues = [i for found in refused.values() for i in found]
    ambiguous = [i for i in issues if i.code == "multiple-matches"]
    message = "an entry's ifNoneExist cannot be done; nothing was stored"
    return refused_or_raised(
        doc, [i for i in issues if i not in ambiguous], BAD_REQUEST, BadInput, message
    ) | refused_or_raised(doc, ambiguous, PRECONDITION_FAILED, AmbiguousReference, message)


def deletes(doc: Any) -> list[int]:
    """The entries that ask for a DELETE."""
    found = []
    for index, entry in _entries(doc):
        request = entry.get("request")
        if isinstance(request, dict) and str(request.get("method") or "").upper() == "DELETE":
            found.append(index)
    return found


def holds_a_patient(doc: Any) -> bool:
    return any(
        isinstance(e.get("resource"), dict) and e["resource"].get("resourceType") == PATIENT for _, e in _entries(doc)
    )


def _never_a_patient(reference: str) -> str | None:
    """Why `reference` can never name a stored Patient (None: it may). Absolute urls and urns name the
    fullUrl a Patient is sent with; a relative one must be Patient/{id}, or Patient?identifier=token."""
    resource_type, mark, query = reference.partition("?")
    if "://" in resource_type or reference.startswith(("urn:", "#")):  # (a token's system may be a url)
        return None
    if mark:
        params = parse_qsl(query, keep_blank_values=True)
        if resource_type != PATIENT:
            return f"a conditional reference to a {resource_type[:40]}, not a Patient"
        if len(params) != 1 or params[0][0] != "identifier" or parse_token(params[0][1]) is None:
            return (
                "a conditional patient reference searches exactly one identifier token: value (any system), "
                "system|value, |value (no system) or system| (any value); escape a | , or $ of a value with \\"
            )
        return None
    relative = RELATIVE_REF.fullmatch(reference)
    if relative is None:
        return "not a reference Patient/{id} (an id is 1-64 of A-Z a-z 0-9 - .)"
    if relative.group(1) != PATIENT:
        return f"it names a {relative.group(1)}: only a Patient's resources make a phenopacket"
    return None


def patient_link_issues(resource: Any, where: str = "") -> list[Issue]:
    """The patient link of a resource kept on its own that can never name a Patient."""
    if not isinstance(resource, dict) or resource.get("resourceType") == PATIENT:
        return []
    for link in PATIENT_LINKS:
        reference = reference_of(resource.get(link))
        if reference is not None:
            why = _never_a_patient(reference)
            if why is None:
                return []
            message = f"{link} reference {reference[:100]!r} can never name a stored Patient: {why}"
            return [Issue.error("reference-unsupported", message, f"{where}/{link}/reference")]
    return []


def check_patient_links(doc: Any) -> dict[int, Refusal]:
    """Resources kept on their own (a lone one, or entries of a Patient-less Bundle) that name their patient
    by a reference that can never resolve: ResourceRejected (422) raised, or in a batch each such entry 422."""
    if isinstance(doc, dict) and doc.get("resourceType") == "Bundle":
        issues = [i for n, e in _entries(doc) for i in patient_link_issues(e.get("resource"), f"/entry/{n}/resource")]
    else:
        issues = patient_link_issues(doc)
    message = "a patient reference can never resolve; nothing was stored"
    return refused_or_raised(doc, issues, UNPROCESSABLE, ResourceRejected, message)
