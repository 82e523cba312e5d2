"""The Bundle itself: which types are accepted and how a reference finds its entry.

One home for this knowledge: the translator resolves references with it, and
gateway/validation/fhir.py checks with it that they resolve.

Resolution order (FHIR R4 §2.36.4.1): the fullUrl as written or without its `/_history/` part;
a conditional reference `Type?identifier=token` by the entries' identifiers (translators.fhir.tokens: `value`
in any system, `|value`, `system|value`, `system|`; the first match, the validator refuses several); a relative
`Type/id` by resource id or fullUrl tail, else against the referencing entry's base URL. An absolute
URL that no entry carries names a resource on another server, even when its `Type/id` tail matches
an entry. `#id` (contained) references are not the Bundle's business.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from functools import lru_cache
from urllib.parse import parse_qsl

from gateway.issues import Issue
from translators.fhir.tokens import Token, parse_token

# Bundle types a submission may have. A searchset is read as a collection: `Patient/$everything` is how an EHR
# exports one patient's record. So is a message (messaging.html: the receiver processes it, it does not keep the
# Bundle): the resources it carries, its MessageHeader (first entry, bdl-12) not kept. A history (versions,
# deletions) describes a server's changes, not a record.
ACCEPTED_BUNDLE_TYPES = frozenset({"transaction", "batch", "collection", "document", "searchset", "message"})
ALL_BUNDLE_TYPES = frozenset(
    {
        "document",
        "message",
        "transaction",
        "transaction-response",
        "batch",
        "batch-response",
        "history",
        "searchset",
        "collection",
    }
)
# Said of a message's MessageHeader on both channels (the translator, and the resources kept one by one).
MESSAGE_HEADER_NOTE = Issue.info(
    "message-header",
    "the MessageHeader is the message's envelope: its resources are read, the header is not kept",
    "/entry/0/resource",
)

RELATIVE_REF = re.compile(r"([A-Z][A-Za-z]+)/([A-Za-z0-9\-.]{1,64})(/_history/[A-Za-z0-9\-.]{1,64})?")
TYPE_ID_TAIL = re.compile(r"(?:^|/)([A-Z][A-Za-z]+/[A-Za-z0-9\-.]{1,64})(?:/_history/[A-Za-z0-9\-.]{1,64})?$")


@dataclass
class BundleIndex:
    """Where each entry of a Bundle can be found: by fullUrl, by Type/id and by identifier."""

    by_full_url: dict[str, int] = field(default_factory=dict)
    by_type_id: dict[str, int] = field(default_factory=dict)
    # a resource's identifiers: (type, system or "", value), (type, value) for any system, (type, system) for any value
    by_identifier: dict[tuple[str, str, str], list[int]] = field(default_factory=dict)
    by_identifier_value: dict[tuple[str, str], list[int]] = field(default_factory=dict)
    by_identifier_system: dict[tuple[str, str], list[int]] = field(default_factory=dict)
    full_urls: dict[int, str] = field(default_factory=dict)  # entry position -> its fullUrl
    duplicates: list[tuple[int, int]] = field(default_factory=list)  # (entry, earlier entry) sharing a fullUrl

    @classmethod
    def build(cls, entries: list) -> BundleIndex:
        """Index `Bundle.entry` (malformed entries are skipped; the first of equal keys wins)."""
        index = cls()
        for i, entry in enumerate(entries):
            if not isinstance(entry, dict):
                continue
            full_url = entry.get("fullUrl")
            if isinstance(full_url, str):
                index._add_full_url(full_url, i)
            resource = entry.get("resource")
            if not isinstance(resource, dict):
                continue
            resource_type, resource_id = resource.get("resourceType"), resource.get("id")
            if isinstance(resource_type, str) and isinstance(resource_id, str):
                index.by_type_id.setdefault(f"{resource_type}/{resource_id}", i)
            identifiers = resource.get("identifier")  # a list, or one Identifier (R4 Composition.identifier 0..1)
            for ident in identifiers if isinstance(identifiers, list) else (identifiers,):
                if isinstance(ident, dict) and isinstance(ident.get("value"), str) and ident["value"]:
                    kind, system, value = str(resource_type), str(ident.get("system", "")), ident["value"]
                    _add(index.by_identifier, (kind, system, value), i)
                    _add(index.by_identifier_value, (kind, value), i)
                    _add(index.by_identifier_system, (kind, system), i)
        return index

    @classmethod
    def of_names(cls, names: list[tuple[str, str, str | None]]) -> BundleIndex:
        """The index `build` makes of entries that carry only (type, id, fullUrl): kept resources by their
        heads, when what a reference names, not their identifiers, is asked (no entry dicts to make)."""
        index = cls()
        for i, (resource_type, resource_id, full_url) in enumerate(names):
            if full_url is not None:
                index._add_full_url(full_url, i)
            index.by_type_id.setdefault(f"{resource_type}/{resource_id}", i)
        return index

    def _add_full_url(self, full_url: str, i: int) -> None:
        if full_url in self.by_full_url:
            self.duplicates.append((i, self.by_full_url[full_url]))
        self.by_full_url.setdefault(full_url, i)
        self.full_urls[i] = full_url
        if not full_url.startswith("urn:"):
            tail = url_tail(full_url)
            if tail is not None:
                self.by_type_id.setdefault(tail, i)

    def resolve(self, reference: str | None, source: int | None = None) -> int | None:
        """The entry position `reference` (written in entry `source`) points to, or None."""
        if not reference or reference.startswith("#"):
            return None
        found = self.by_full_url.get(reference)
        if found is not None:
            return found
        if "?" in reference:
            return self._conditional(reference)
        versionless = reference.split("/_history/", 1)[0]
        found = self.by_full_url.get(versionless)
        if found is not None:
            return found
        found = self.by_type_id.get(versionless)  # also ids outside FHIR's [A-Za-z0-9-.] (NA12877_S1)
        if found is not None:
            return found
        relative = RELATIVE_REF.fullmatch(reference)
        if relative:
            type_id = f"{relative.group(1)}/{relative.group(2)}"
            found = self.by_type_id.get(type_id)
            if found is not None or source is None:
                return found
            base = self.full_urls.get(source, "")
            tail = TYPE_ID_TAIL.search(base)
            return self.by_full_url.get(base[: tail.start(1)] + type_id) if tail else None
        return None  # an absolute URL that no entry carries points to a resource elsewhere

    def _conditional(self, reference: str) -> int | None:
        found = self.conditional_matches(reference)
        return found[0] if found else None

    def conditional_matches(self, reference: str) -> list[int]:
        """The entries `Type?identifier=token` matches, in order (search.html#token); the one search a
        transaction may use to name a patient. None matched: an unreadable token, or another search."""
        resource_type, _, query = reference.partition("?")
        params = parse_qsl(query)
        token = parse_token(params[0][1]) if len(params) == 1 and params[0][0] == "identifier" else None
        if token is None:
            return []
        if token.value is None:
            return self.by_identifier_system.get((resource_type, token.system or ""), [])
        if token.system is None:
            return self.by_identifier_value.get((resource_type, token.value), [])
        return self.by_identifier.get((resource_type, token.system, token.value), [])


@lru_cache(maxsize=65_536)
def url_tail(full_url: str) -> str | None:
    """The `Type/id` a URL ends with (its `/_history/` part aside); None: none. Cached: a kept resource's
    fullUrl is indexed again with every write of its patient."""
    tail = TYPE_ID_TAIL.search(full_url)
    return tail.group(1) if tail else None


def _add(index: dict, key: tuple, entry: int) -> None:
    """Entry `entry` under `key`, once (a resource with two identifiers of one system is one match)."""
    found = index.setdefault(key, [])
    if not found or found[-1] != entry:
        found.append(entry)


PATIENT_LINK_ELEMENTS = ("subject", "patient")


def with_identified_patient_links(resource: dict) -> dict:
    """`resource` with a patient link given only by the Patient's identifier (a logical reference,
    `Reference.identifier`: what a sender writes that knows the patient's record number but not the
    receiver's resource id) also given as the conditional reference `Patient?identifier=system|value`, so
    that it resolves as one, in a Bundle and against the Patients stored (FHIR http.html#trules). A link
    with a `reference`, or typed as something other than a Patient, stays as it is. The same object when
    nothing changes."""
    changed = None
    for name in PATIENT_LINK_ELEMENTS:
        link = resource.get(name)
        if not isinstance(link, dict) or "reference" in link or link.get("type", "Patient") != "Patient":
            continue
        identifier = link.get("identifier")
        value = identifier.get("value") if isinstance(identifier, dict) else None
        if not isinstance(value, str) or not value.strip():
            continue
        system = identifier.get("system")
        token = Token(system if isinstance(system, str) and system else None, value)
        changed = changed or dict(resource)
        changed[name] = {"reference": f"Patient?identifier={token.written()}", **link}
    return changed or resource
