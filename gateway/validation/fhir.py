"""Validation of FHIR R4 input: a Bundle or a single resource.

Structure is checked by the `fhir.resources.R4B` pydantic models (the package has no plain R4; R4B is wire-compatible
for the resources the gateway reads). Each resource is parsed exactly once, and the parsed models are handed back
(`check_fhir`) so that the translator need not parse again. On top of the models, this module checks what they
leave out: the Bundle's own rules (type, fullUrl, request), and references that must resolve inside the Bundle.

Bundle types: transaction, batch, collection, document, searchset (read as a collection) and message (the resources
it carries; R4 messaging.html) are accepted for ingest. history and the responses are rejected by default: they
describe a server's changes or answers, not a submission of one patient's record. `gateway validate` passes
`bundle_types=ALL_BUNDLE_TYPES`. A document must start with a Composition (bdl-11), a message with a MessageHeader
(bdl-12) whose `focus` names entries of the message.

Required code bindings of the elements the translator reads (status codes, gender, Condition statuses) are checked
against `schemas/fhir-r4-bindings.schema.json`, since the models check a code's shape but not its value set.

Every issue carries a JSON pointer into the input document. Issue codes (stable): not-fhir, unknown-resource-type,
unsupported-bundle-type, fhir-structure, fhir-required, fhir-value, duplicate (fullUrl), reference-dangling (an error
for `subject`/`patient` of a type the translator places, a warning elsewhere), message-focus (a message's focus not in it), fhir-not-checked
(warning: an R4 type without an R4B model).
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from functools import cache
from typing import Any

from fhir.resources.R4B import get_fhir_model_class
from pydantic import ValidationError

from gateway.issues import Issue, Report, pointer_to_fhirpath
from gateway.validation.fhir_codes import unbound_codes
from gateway.validation.fhir_shape import plainly_valid
from schemas import load_schema, pointer, schema_issues
from translators.fhir.assemble import TRANSLATED_TYPES
from translators.fhir.references import ACCEPTED_BUNDLE_TYPES, ALL_BUNDLE_TYPES, BundleIndex

INGEST_BUNDLE_TYPES = ACCEPTED_BUNDLE_TYPES  # the translator's rule: one home, translators/fhir/references.py
REQUEST_BUNDLE_TYPES = frozenset({"transaction", "batch", "history"})  # bdl-3: entry.request mandatory
RESPONSE_BUNDLE_TYPES = frozenset({"transaction-response", "batch-response", "history"})  # bdl-4
HTTP_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "DELETE", "PATCH"})

# References the translator needs to attach data to a patient: dangling ones are errors, the others warnings. Only
# in a resource of a type it places in a phenopacket: another (a Device, a DeviceUseStatement) is left out anyway,
# with a warning, and must not make its Bundle refused.
PATIENT_LINKS = frozenset({"subject", "patient"})

UUID_URN = re.compile(r"urn:uuid:[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}")
OID_URN = re.compile(r"urn:oid:[0-2](\.(0|[1-9][0-9]*))+")
ABSOLUTE_URL = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*:\S+")


@dataclass
class FhirCheck:
    """The outcome of checking one FHIR document, with the models parsed on the way.

    `resource` is the parsed top-level resource when the document is not a Bundle. For a Bundle, `entries[i]` is
    the parsed resource of `entry[i]` (None where it is absent, failed, or has no R4B model) and `bundle_type`
    names the Bundle's type.
    """

    report: Report = field(default_factory=Report)
    resource: Any = None
    entries: list[Any] = field(default_factory=list)
    bundle_type: str | None = None

    @property
    def ok(self) -> bool:
        return self.report.ok


def validate_fhir(doc: dict, *, bundle_types: frozenset[str] = INGEST_BUNDLE_TYPES) -> Report:
    """All findings about a FHIR R4 Bundle or single resource (already parsed from JSON).

    No model is kept, so a resource that is plainly valid R4B (gateway.validation.fhir_shape) is not parsed
    with its model (which would only agree); every other one is, so a rejection and its messages are the
    model's."""
    return check_fhir(doc, bundle_types=bundle_types, models=False).report


def check_fhir(doc: dict, *, bundle_types: frozenset[str] = INGEST_BUNDLE_TYPES, models: bool = True) -> FhirCheck:
    """Like `validate_fhir`, and also returns the parsed models for reuse (`models=False`: none, faster)."""
    check = FhirCheck()
    report = check.report
    if not isinstance(doc, dict) or "resourceType" not in doc:
        report.add(Issue.error("not-fhir", "not a FHIR resource: the document has no resourceType", ""))
        return check
    resource_type = doc["resourceType"]
    if resource_type != "Bundle":
        model, issues = parse_resource(doc, "", model=models)
        report.extend(issues)
        check.resource = model
        report.extend(_reference_issues([(doc, "", None)], BundleIndex(), bundle=False))
        return check
    _check_bundle(doc, check, bundle_types, models)
    return check


# --- one resource ----------------------------------------------------------------------------------------------


@cache
def r4_resource_types() -> frozenset[str]:
    return frozenset(load_schema("fhir-r4-resource-type")["enum"])


@cache
def _model_class(resource_type: str) -> Any:
    try:
        return get_fhir_model_class(resource_type)
    except (KeyError, ValueError):
        return None  # an R4 type that R4B dropped (e.g. MedicinalProduct)


def parse_resource(resource: Any, location: str, *, model: bool = True) -> tuple[Any, list[Issue]]:
    """Parse one resource with its R4B model: (model or None, issues located under `location`).
    `model=False`: no model is wanted, and a plainly valid resource is not parsed (gateway.validation.fhir_shape)."""
    if not isinstance(resource, dict):
        return None, [Issue.error("fhir-structure", "a resource must be a JSON object", location)]
    resource_type = resource.get("resourceType")
    if resource_type is None:
        return None, [Issue.error("fhir-required", "the resource has no resourceType", location + "/resourceType")]
    if not isinstance(resource_type, str) or resource_type not in r4_resource_types():
        return None, [
            Issue.error(
                "unknown-resource-type", f"{resource_type!r} is not a FHIR R4 resource type", location + "/resourceType"
            )
        ]
    model_class = _model_class(resource_type)
    if model_class is None:
        message = f"{resource_type} is valid R4 but has no R4B model: its structure was not checked"
        return None, [Issue.warning("fhir-not-checked", message, location)]
    if not model and plainly_valid(resource):  # its listed codes are bound (fhir_shape): no second walk for them
        return None, _binding_issues(resource, resource_type, location, listed_codes_bound=True)
    untyped = _untyped_contained(resource, location)
    if untyped:  # the models take a contained resource without its type (and crash on some wrong ones)
        return None, untyped
    try:
        parsed = model_class.model_validate(resource)
    except ValidationError as exc:
        return None, [_pydantic_issue(err, resource_type, location) for err in exc.errors()]
    except Exception as exc:  # fhir_core's validators raise plain errors on some malformed input
        # (a `contained` resource whose elements are the wrong JSON type): still a verdict, never a crash
        message = f"{resource_type} is malformed: its R4B model cannot read it ({type(exc).__name__})"
        return None, [Issue.error("fhir-structure", message, location)]
    return (parsed if model else None), _binding_issues(resource, resource_type, location)


def _untyped_contained(resource: dict, location: str) -> list[Issue]:
    contained = resource.get("contained")
    if not isinstance(contained, list):
        return []  # the model says what is wrong with it
    return [
        Issue.error(
            "fhir-required", "a contained resource needs a resourceType of FHIR R4", f"{location}/contained/{n}"
        )
        for n, item in enumerate(contained)
        if isinstance(item, dict)
        and not (isinstance(item.get("resourceType"), str) and item["resourceType"] in r4_resource_types())
    ]


def _binding_issues(
    resource: dict, resource_type: str, location: str, *, listed_codes_bound: bool = False
) -> list[Issue]:
    """Required value-set bindings that the models leave unchecked: of every `code` element whose codes the model
    lists (gateway.validation.fhir_codes; known to be bound when `listed_codes_bound`), and of the coded elements
    in schemas/fhir-r4-bindings.schema.json."""
    issues = []
    for issue in schema_issues("fhir-r4-bindings", resource, target="input"):
        where = pointer_to_fhirpath(issue.location, resource_type)
        message = f"{where}: {issue.message.split(': ', 1)[-1]} (required binding in FHIR R4)"
        issues.append(Issue.error("fhir-value", message, location + issue.location))
    said = {i.location for i in issues}
    for place, code, allowed in () if listed_codes_bound else unbound_codes(resource):
        if location + place in said:
            continue
        where = pointer_to_fhirpath(place, resource_type)
        listed = ", ".join(sorted(allowed)[:12]) + (", …" if len(allowed) > 12 else "")
        message = f"{where}: {code[:80]!r} is not one of {listed} (required binding in FHIR R4)"
        issues.append(Issue.error("fhir-value", message, location + place))
    return issues


_MISSING = frozenset({"missing", "model_field_validation.missing"})


def _pydantic_issue(err: dict, resource_type: str, location: str) -> Issue:
    # pydantic may insert validator names (e.g. "function-after[...]") into loc: keep only element names/indices
    path = [t for t in err["loc"] if isinstance(t, int) or re.fullmatch(r"_?[A-Za-z][A-Za-z0-9_]*", t)]
    kind = err["type"]
    where = pointer_to_fhirpath(pointer(path), resource_type)
    if kind in _MISSING:
        code, message = "fhir-required", f"{where} is required"
    elif kind == "extra_forbidden":
        code, message = "fhir-structure", f"{where} is not an element of {resource_type} in FHIR R4"
    elif kind in ("json_invalid", "model_attributes_type"):  # pydantic tried to read a string as an object
        code, message = "fhir-structure", f"{where} must be a JSON object"
    elif kind.endswith("_type") or (kind == "value_error" and not path):
        code, message = "fhir-structure", f"{where}: {_clean(err['msg'])}"
    else:
        code, message = "fhir-value", f"{where}: {_clean(err['msg'])}"
    return Issue.error(code, message, location + pointer(path))


def _clean(message: str) -> str:
    return " ".join(message.removeprefix("Value error, ").split())


# --- Bundles ---------------------------------------------------------------------------------------------------


def _later_pages(doc: dict) -> list[Issue]:
    """A searchset submitted as a record (`Patient/$everything`) that is one page of a longer answer: what the
    other pages hold is not in it, which the sender may not know (a client follows `next` on its own)."""
    links = doc.get("link") if isinstance(doc.get("link"), list) else []
    return [
        Issue.warning(
            "incomplete",
            "this searchset is one page of a longer answer (link next): only its own entries are read; send every "
            "page, or the whole record",
            f"/link/{n}",
        )
        for n, link in enumerate(links)
        if isinstance(link, dict) and link.get("relation") == "next"
    ]


def _check_bundle(doc: dict, check: FhirCheck, bundle_types: frozenset[str], models: bool) -> None:
    report = check.report
    bundle_type = doc.get("type")
    check.bundle_type = bundle_type if isinstance(bundle_type, str) else None
    if bundle_type is None:
        report.add(Issue.error("fhir-required", "Bundle.type is required", "/type"))
    elif not isinstance(bundle_type, str) or bundle_type not in ALL_BUNDLE_TYPES:
        report.add(Issue.error("fhir-value", f"{bundle_type!r} is not a Bundle type", "/type"))
    elif bundle_type not in bundle_types:
        accepted = ", ".join(sorted(bundle_types))
        report.add(
            Issue.error(
                "unsupported-bundle-type", f"Bundle type {bundle_type!r} is not accepted here ({accepted})", "/type"
            )
        )

    entries = doc.get("entry", [])
    if not isinstance(entries, list):
        report.add(Issue.error("fhir-structure", "Bundle.entry must be an array", "/entry"))
        entries = []

    # The shell: the Bundle without its entries' resources, which are parsed one by one below.
    shell_entries = []
    for i, entry in enumerate(entries):
        if not isinstance(entry, dict):
            report.add(Issue.error("fhir-structure", "a Bundle entry must be a JSON object", f"/entry/{i}"))
            shell_entries.append({})
            continue
        shell_entries.append({k: v for k, v in entry.items() if k != "resource"})
    _, shell_issues = parse_resource({**doc, "entry": shell_entries} if entries else doc, "", model=False)
    report.extend(shell_issues)

    resources: list[tuple[dict, str, int | None]] = []
    for i, entry in enumerate(entries):
        check.entries.append(None)
        if not isinstance(entry, dict):
            continue
        where = f"/entry/{i}"
        report.extend(_entry_rules(entry, where, check.bundle_type))
        if "resource" in entry:
            model, issues = parse_resource(entry["resource"], where + "/resource", model=models)
            check.entries[i] = model
            report.extend(issues)
            if isinstance(entry["resource"], dict):
                resources.append((entry["resource"], where + "/resource", i))

    if check.bundle_type == "searchset" and bundle_types is INGEST_BUNDLE_TYPES:
        report.extend(_later_pages(doc))
    first = entries[0].get("resource") if entries and isinstance(entries[0], dict) else None
    opening = {"document": "Composition", "message": "MessageHeader"}.get(str(check.bundle_type))  # bdl-11, bdl-12
    if opening is not None and (not isinstance(first, dict) or first.get("resourceType") != opening):
        message = f"a {check.bundle_type} Bundle must start with a {opening}"
        report.add(Issue.error("fhir-structure", message, "/entry/0"))

    index = BundleIndex.build(entries)
    if check.bundle_type != "history":  # a history may list one resource's versions under one fullUrl
        for i, first in index.duplicates:
            message = f"fullUrl {index.full_urls[i]!r} is also used by entry {first}"
            report.add(Issue.error("duplicate", message, f"/entry/{i}/fullUrl"))
    references = _reference_issues(resources, index, bundle=True)
    if check.bundle_type == "message" and isinstance(first, dict) and first.get("resourceType") == "MessageHeader":
        focus = _missing_focus(first, index)  # an error, not the warning another dangling reference is
        said = {i.location for i in focus}
        references = [i for i in references if i.location not in said] + focus
    report.extend(references)


def _missing_focus(header: dict, index: BundleIndex) -> list[Issue]:
    """MessageHeader.focus names the message's data, which "is always included in the bundle that is the full
    message" (R4 MessageHeader.focus): a focus that names no entry means the message came incomplete."""
    focus = header.get("focus")
    issues = []
    for n, item in enumerate(focus if isinstance(focus, list) else ()):
        ref = item.get("reference") if isinstance(item, dict) else None
        if isinstance(ref, str) and not ref.startswith("#") and index.resolve(ref, 0) is None:
            message = f"the message's focus {ref!r} is not in the message: its data must be sent with it"
            issues.append(Issue.error("message-focus", message, f"/entry/0/resource/focus/{n}/reference"))
    return issues


def _type_and_id(resource: object) -> str | None:
    if isinstance(resource, dict) and isinstance(resource.get("resourceType"), str) and resource.get("id"):
        return f"{resource['resourceType']}/{resource['id']}"
    return None


def _entry_rules(entry: dict, where: str, bundle_type: str | None) -> list[Issue]:
    issues = []
    full_url = entry.get("fullUrl")
    if isinstance(full_url, str):
        if full_url.startswith("urn:uuid:") and not UUID_URN.fullmatch(full_url):
            issues.append(Issue.error("fhir-value", f"{full_url!r} is not a well-formed urn:uuid", where + "/fullUrl"))
        elif full_url.startswith("urn:oid:") and not OID_URN.fullmatch(full_url):
            issues.append(Issue.error("fhir-value", f"{full_url!r} is not a well-formed urn:oid", where + "/fullUrl"))
        elif not ABSOLUTE_URL.fullmatch(full_url) and full_url == _type_and_id(entry.get("resource")):
            # UK Core's published NEWS2 Bundle names its entries so: unambiguous, read as the resource's Type/id
            message = (
                f"fullUrl {full_url!r} is relative (FHIR asks for an absolute URL): read as the resource's Type/id"
            )
            issues.append(Issue.warning("fhir-value", message, where + "/fullUrl"))
        elif not ABSOLUTE_URL.fullmatch(full_url):
            issues.append(
                Issue.error("fhir-value", f"fullUrl {full_url!r} must be an absolute URI", where + "/fullUrl")
            )
        elif "/_history/" in full_url:
            issues.append(
                Issue.error("fhir-value", "fullUrl cannot be a version-specific reference", where + "/fullUrl")
            )
    if not any(k in entry for k in ("resource", "request", "response")):
        issues.append(Issue.error("fhir-structure", "an entry must have a resource, a request or a response", where))
    if bundle_type in REQUEST_BUNDLE_TYPES:
        if "request" not in entry:
            issues.append(
                Issue.error("fhir-required", f"entry.request is required in a {bundle_type}", where + "/request")
            )
        elif isinstance(entry["request"], dict) and isinstance(entry["request"].get("method"), str):
            method = entry["request"]["method"]
            if method not in HTTP_METHODS:
                issues.append(Issue.error("fhir-value", f"{method!r} is not an HTTP verb", where + "/request/method"))
    elif bundle_type is not None and "request" in entry:
        issues.append(
            Issue.error("fhir-structure", f"entry.request is not allowed in a {bundle_type}", where + "/request")
        )
    if bundle_type not in RESPONSE_BUNDLE_TYPES and bundle_type is not None and "response" in entry:
        issues.append(
            Issue.error("fhir-structure", f"entry.response is not allowed in a {bundle_type}", where + "/response")
        )
    return issues


def _references(node: Any, path: tuple) -> Iterator[tuple[tuple, str]]:
    """Every Reference.reference string under `node`, with its path (contained resources included)."""
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "reference" and isinstance(value, str):
                yield (*path, key), value
            elif isinstance(value, (dict, list)):
                yield from _references(value, (*path, key))
    elif isinstance(node, list):
        for i, value in enumerate(node):
            if isinstance(value, (dict, list)):
                yield from _references(value, (*path, i))


def _reference_issues(
    resources: list[tuple[dict, str, int | None]], index: BundleIndex, *, bundle: bool
) -> list[Issue]:
    issues = []
    for resource, where, entry in resources:
        contained_ids = (
            {c["id"] for c in resource.get("contained", []) if isinstance(c, dict) and isinstance(c.get("id"), str)}
            if isinstance(resource.get("contained"), list)
            else set()
        )
        for path, ref in _references(resource, ()):
            if ref.startswith("#"):
                resolved = ref == "#" or ref[1:] in contained_ids
            elif not bundle:
                continue  # a lone resource's references point outside it by design
            else:
                resolved = index.resolve(ref, entry) is not None
            location = where + pointer(path)
            if resolved and "?" in ref and len(index.conditional_matches(ref)) > 1:  # http.html#trules: fails
                message = f"reference {ref!r} matches more than one entry of the Bundle; name one"
                issues.append(Issue.error("multiple-matches", message, location))
                continue
            if resolved:
                continue
            if len(path) == 2 and path[0] in PATIENT_LINKS and str(resource.get("resourceType")) in TRANSLATED_TYPES:
                message = f"{path[0]} reference {ref!r} does not resolve to an entry of the Bundle"
                issues.append(Issue.error("reference-dangling", message, location))
            else:
                scope = "a contained resource" if ref.startswith("#") else "an entry of the Bundle"
                message = f"reference {ref!r} does not resolve to {scope}"
                issues.append(Issue.warning("reference-dangling", message, location))
    return issues
