"""A document made again: which of a Bundle's resources are resources the gateway keeps already.

National services (IPS) generate each patient summary afresh, with new ids for every resource. The
Patient is recognised by its identifier (fhir_resources._as_stored_patients); this module recognises
the rest. The rule, for the Bundle's resources beside a Patient that is stored already:

  a resource whose content equals the content of a kept resource of that patient — but for `id`,
  `meta`, the generated narrative `text`, and references, which are compared by what they name (a
  kept resource, the same in both; a resource the gateway does not keep, Organization/Practitioner,
  by its type only) — IS that kept resource: it is written under the kept id (what differs, a new
  narrative or meta, becomes its next version), so the second document changes no phenopacket, and
  its entry says so (`same-resource`).

What it does not do, and why:
- Content that differs in anything else (a lab value, a date, a resource identifier) is a new
  resource, kept beside the old one: two measurements. Nothing is merged by likeness, so no value a
  sender sent is ever dropped.
- A document is not taken as a full snapshot replacing the previous document's resources: a summary
  holds the sections its author chose, and a fact missing from the newer one was not refuted; deleting
  it would lose data without anyone saying so. An explicit DELETE (or an entry PUT to the kept id) does.
- Each kept resource is claimed once, so two equal resources of one document stay two.
- References to resources of the same Bundle are compared once those are matched (rounds until nothing
  more matches): a MedicationStatement matches after its Medication did. Resources that name each other
  in a cycle never match, and are kept as new.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from functools import partial
from typing import Any, Protocol

from translators.fhir.references import RELATIVE_REF, BundleIndex

# What a generator changes without changing the resource: its id, meta, and the narrative rendered from
# it (which names the id). No phenopacket element comes from them; the new ones are kept as its next version.
IGNORED = frozenset({"id", "meta", "text"})


class Kept(Protocol):
    @property
    def resource_type(self) -> str: ...
    @property
    def resource_id(self) -> str: ...
    @property
    def full_url(self) -> str | None: ...
    @property
    def resource(self) -> dict[str, Any]: ...


class Write(Protocol):
    @property
    def resource_type(self) -> str: ...
    @property
    def resource_id(self) -> str | None: ...
    @property
    def resource(self) -> dict[str, Any] | None: ...
    @property
    def full_url(self) -> str | None: ...


@dataclass(frozen=True)
class Adopted:
    """A Bundle resource taken as a kept one."""

    index: int  # in the writes
    resource_type: str
    sent_id: str
    kept_id: str


def same_resources(
    writes: Sequence[Write], kept: Sequence[Kept], at_rest: Callable[[dict[str, Any]], dict[str, Any]]
) -> list[Adopted]:
    """The writes (not Patients) whose content is that of one of `kept` (a patient's kept resources, its
    Patient first), each kept resource claimed once. `at_rest`: the form resources are kept in."""
    kept_index = BundleIndex.build([_entry(k.resource, k.full_url) for k in kept])
    sent_index = BundleIndex.build([_entry(w.resource or {}, w.full_url) for w in writes])
    pending = {
        n: at_rest(w.resource)
        for n, w in enumerate(writes)
        if w.resource is not None and w.resource_type != "Patient" and w.resource_id is not None
    }
    explicit = {(w.resource_type, w.resource_id) for w in writes}  # kept ids the Bundle writes itself
    free: dict[tuple, list[Kept]] = {}
    for k in kept:
        if k.resource_type == "Patient" or (k.resource_type, k.resource_id) in explicit:
            continue
        form = _form(k.resource, partial(_kept_name, index=kept_index, kept=kept))
        if form is not None:
            free.setdefault(form, []).append(k)
    matched: dict[int, str] = {}  # write index -> kept id
    adopted: list[Adopted] = []
    while True:
        found = False
        for n, resource in list(pending.items()):
            form = _form(resource, partial(_sent_name, source=n, index=sent_index, writes=writes, matched=matched))
            if form is None:
                continue  # names a resource of the Bundle not matched (yet)
            candidates = free.get(form)
            if not candidates:
                continue
            same = candidates.pop(0)
            matched[n] = same.resource_id
            adopted.append(Adopted(n, same.resource_type, str(writes[n].resource_id), same.resource_id))
            del pending[n]
            found = True
        if not found:
            return adopted


def _form(resource: dict[str, Any], name: Callable[[str], str | None]) -> tuple | None:
    """The comparable content: without `IGNORED`, each reference replaced by what it names; None when a
    reference names a resource of the Bundle not matched (yet). Hashable (a key of kept forms)."""
    unmatched: list[str] = []

    def named(reference: str) -> str:
        found = name(reference)
        if found is None:
            unmatched.append(reference)
        return found or ""

    form = _frozen({k: v for k, v in resource.items() if k not in IGNORED}, named)
    return None if unmatched else form


def _frozen(value: Any, name: Callable[[str], str]) -> Any:
    if isinstance(value, dict):
        return tuple(
            sorted(
                (k, name(v) if k == "reference" and isinstance(v, str) else _frozen(v, name)) for k, v in value.items()
            )
        )
    if isinstance(value, list):
        return ("[", *(_frozen(v, name) for v in value))
    return value


def _kept_name(reference: str, index: BundleIndex, kept: Sequence[Kept]) -> str:
    position = index.resolve(reference) if not reference.startswith("#") else None
    if position is None:
        return _outside(reference)
    return f"{kept[position].resource_type}/{kept[position].resource_id}"


def _sent_name(
    reference: str, source: int, index: BundleIndex, writes: Sequence[Write], matched: dict[int, str]
) -> str | None:
    position = index.resolve(reference, source) if not reference.startswith("#") else None
    if position is None:
        return _outside(reference)
    target = writes[position]
    if target.resource_type == "Patient":  # already renamed to the stored Patient's id
        return f"Patient/{target.resource_id}"
    if position in matched:
        return f"{target.resource_type}/{matched[position]}"
    return None  # a resource of the Bundle not known (yet) to be a kept one


def _outside(reference: str) -> str:
    """A reference to nothing kept: a contained resource (`#id`, the same in both), or a resource the
    gateway does not keep (Organization, Practitioner: their ids are new too), named by its type."""
    if reference.startswith("#"):
        return reference
    relative = RELATIVE_REF.fullmatch(reference)
    return f"{relative.group(1)}/?" if relative else "?"


def renamed(writes: Sequence[Any], adopted: list[Adopted]) -> list[Any]:
    """The writes with each adopted one under its kept id (and the kept fullUrl: nothing about it changes)
    and every reference to it in the Bundle naming the kept id."""
    if not adopted:
        return list(writes)
    alias: dict[str, str] = {}
    for a in adopted:
        alias[f"{a.resource_type}/{a.sent_id}"] = f"{a.resource_type}/{a.kept_id}"
        url = writes[a.index].full_url
        if url:
            alias[url] = f"{a.resource_type}/{a.kept_id}"
    by_index = {a.index: a for a in adopted}
    out = []
    for n, write in enumerate(writes):
        resource = references_renamed(write.resource, alias)
        if n in by_index:
            kept_id = by_index[n].kept_id
            out.append(replace(write, resource_id=kept_id, resource={**resource, "id": kept_id}, full_url=None))
        else:
            out.append(replace(write, resource=resource))
    return out


def references_renamed(value: Any, alias: dict[str, str]) -> Any:
    """`value` with every reference string that is a key of `alias` replaced by its value."""
    if isinstance(value, dict):
        return {
            k: alias.get(v, v) if k == "reference" and isinstance(v, str) else references_renamed(v, alias)
            for k, v in value.items()
        }
    if isinstance(value, list):
        return [references_renamed(v, alias) for v in value]
    return value


def _entry(resource: dict[str, Any], full_url: str | None) -> dict[str, Any]:
    entry: dict[str, Any] = {"resource": resource}
    if full_url:
        entry["fullUrl"] = full_url
    return entry
