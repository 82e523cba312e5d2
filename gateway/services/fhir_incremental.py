"""A patient's phenopacket after one write, translating only what the write changed.

The patient's resources fall into parts: groups that reference one another (a report and its
variant Observations, a statement and its Medication), most of them one resource alone. Each part is
translated with the Patient (translators.fhir.merge), its phenopacket validated, and the result
kept in a `FragmentCache` under the content hashes of the Patient and the part's resources: a pure
function of content, so a cache of one worker, lost on restart or missing in another worker, only
costs time. A write then translates the one part it changed; the parts are merged
(`merge_parts`), or — when the merge cannot be sure to equal one translation of everything — the
caller translates everything at once (`None`).

What is read from the store is the resources' heads (type, id, version, fullUrl, content hash); their
content only for the parts not in the cache.
"""

from __future__ import annotations

import hashlib
from collections import OrderedDict
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, replace
from datetime import datetime
from functools import cached_property
from typing import Any

import sqlalchemy as sa

import mappings
from gateway.issues import Issue
from gateway.store import fhir_resources as rows
from gateway.store.fhir_resources import PATIENT, ResourceHead
from translators.fhir.common import rfc3339
from translators.fhir.family import merged_family
from translators.fhir.merge import Join, Part, followed_references, merge_or_join
from translators.fhir.references import BundleIndex
from translators.fhir.references import url_tail as type_id_tail

Load = Callable[[list[int]], dict[int, dict[str, Any]]]  # the content of kept resources by primary key
# The patient-less heads references may name (a superset: every one a reference's keys find, sorted or not)
Reach = Callable[[list[str]], list[ResourceHead]]
FAMILY_MEMBER_HISTORY = "FamilyMemberHistory"
NO_DATED_EVENT = "no dated event of the patient: timeAtLastEncounter is left out"


@dataclass(frozen=True)
class Fragment:
    """One part translated with its Patient: its phenopacket and issues (located at Type/id)."""

    phenopacket: dict[str, Any]
    issues: tuple[Issue, ...]
    sources: tuple[tuple[str, str], ...] = ()  # the part's resources (type, id), the Patient aside
    family: dict[str, Any] | None = None  # the Family its FamilyMemberHistory makes, if any
    named_versions: frozenset[str] | None = None  # prefixes whose version a sender named
    # which resources (type, id) made each disease, and where each named version was named (Part)
    diseases_from: tuple[tuple[tuple[str, str], ...], ...] | None = None
    versions_from: tuple[tuple[str, tuple], ...] = ()
    features_from: tuple[tuple | None, ...] | None = None  # per feature, the place of the resource that made it

    @cached_property
    def part(self) -> Part:
        """The fragment as the merge reads it (kept with the cached fragment: worked out once)."""
        return Part(
            self.phenopacket,
            self.sources,
            self.named_versions,
            self.diseases_from,
            self.versions_from,
            self.features_from,
        )


@dataclass(frozen=True)
class Facts:
    """What assembling needs of a resource's content: the references it makes, the profile it names."""

    references: tuple[str, ...]  # those the translation follows (translators.fhir.links): parts
    profile: str  # mappings.detect_profile of the resource alone ("generic": it names none)
    reaches: tuple[str, ...] = ()  # every reference it makes: the patient-less resources it brings in


@dataclass
class FragmentCache:
    """Bounded, least recently used: translated parts and the references each resource makes."""

    max_fragments: int = 20_000
    fragments: OrderedDict[tuple, Fragment] = field(default_factory=OrderedDict)
    facts: OrderedDict[str, Facts] = field(default_factory=OrderedDict)  # by content hash
    provenance: dict[str, dict[tuple[str, str, str], str]] = field(default_factory=dict)  # per key: keyed ids
    translated: int = 0  # parts translated (misses): what the benchmark and the tests look at
    merged: int = 0  # phenopackets made by merging
    whole: int = 0  # phenopackets the caller had to translate at once
    joined: int = 0  # times parts had to be translated as one for the merge to be sure
    joins: OrderedDict[tuple, tuple[frozenset, ...]] = field(
        default_factory=OrderedDict
    )  # per patient: (type, id) sets
    # per (dataset, patient): the references its last assembly looked up among the patient-less resources,
    # asked again with the patient's heads on its next write (most writes then need no second read)
    references: OrderedDict[tuple, frozenset[str]] = field(default_factory=OrderedDict)

    def get(self, table: OrderedDict, key: Any) -> Any:
        found = table.get(key)
        if found is not None:
            table.move_to_end(key)
        return found

    def put(self, table: OrderedDict, key: Any, value: Any) -> None:
        table[key] = value
        table.move_to_end(key)
        while len(table) > self.max_fragments:
            table.popitem(last=False)


@dataclass(frozen=True)
class Assembly:
    """The heads of a patient's resources: the Patient, then its parts (each sorted by Type/id)."""

    patient: ResourceHead
    parts: list[list[ResourceHead]]
    profile: str  # what mappings.detect_profile would say of all of them in one Bundle
    looked_up: frozenset[str] = frozenset()  # the references looked up among the patient-less resources

    @property
    def heads(self) -> list[ResourceHead]:
        others = sorted((h for part in self.parts for h in part), key=lambda h: (h.resource_type, h.resource_id))
        return [self.patient, *others]


def assemble_parts(
    connection: sa.Connection, dataset_id: str, patient_id: str, cache: FragmentCache
) -> Assembly | None:
    """The patient's resources (the same set as fhir_resources.assemble) in parts; None: no Patient."""
    attached = rows.heads_of_patient(connection, dataset_id, patient_id)
    patient = [h for h in attached if h.resource_type == PATIENT]
    if not patient:
        return None
    members = [h for h in attached if h.resource_type != PATIENT]

    def reach(references: list[str]) -> list[ResourceHead]:
        return rows.loose_heads(connection, dataset_id, loose_keys(references))

    return parts_of(patient[0], members, reach, lambda pks: rows.contents(connection, pks), cache)


def parts_of(
    patient: ResourceHead,
    members: list[ResourceHead],
    reach: Reach,
    load: Load,
    cache: FragmentCache,
) -> Assembly:
    """The Patient, its resources and the patient-less ones they reach, in parts. Of the dataset's patient-less
    resources only those its references may name are read (`reach`): the others are many, and unchanged."""
    facts = _facts_of(load, [patient, *members], cache)
    asked: set[str] = set()
    candidates: dict[int, ResourceHead] = {}
    reached: set[int] = set()
    frontier = members
    while frontier:
        references = {ref for h in frontier for ref in facts[h.pk].reaches}
        if new := sorted(references - asked):
            asked.update(new)
            candidates.update((h.pk, h) for h in reach(new))
        # Resolved among the candidates: every resource a reference's keys name is one, in the dataset's order
        # (type, id), so each reference finds what it would find among all the patient-less resources.
        loose = sorted(candidates.values(), key=lambda h: (h.resource_type, h.resource_id))
        index = BundleIndex.of_names([_names(h) for h in loose]) if loose else None
        found = {
            loose[i].pk
            for h in frontier
            for ref in facts[h.pk].reaches
            if index is not None and (i := index.resolve(ref)) is not None and loose[i].pk not in reached
        }
        reached |= found
        frontier = [candidates[pk] for pk in sorted(found)]
        facts.update(_facts_of(load, frontier, cache))
    members = [*members, *(candidates[pk] for pk in reached)]
    references_of = {pk: f.references for pk, f in facts.items()}
    ordered = [patient, *sorted(members, key=lambda h: (h.resource_type, h.resource_id))]
    detected = next((p for h in ordered if (p := facts[h.pk].profile) != "generic"), "generic")
    return Assembly(patient, _parts(members, references_of), detected, frozenset(asked))


def loose_keys(references: Iterable[str]) -> rows.LooseKeys:
    """The keys the resources a reference may name are looked up by: those BundleIndex.resolve tries on
    patient-less stubs (type, id, fullUrl) — the fullUrl as written and without `/_history/`, the `Type/id`
    tail of an absolute fullUrl, the identity; a conditional one (`Type?identifier=…`, resolved by the
    resources' identifiers where their content is indexed: fhir_resources.assemble) every one of its type.
    `#` (contained) references name none."""
    urls: set[str] = set()
    names: set[str] = set()
    every_of: set[str] = set()
    for reference in references:
        if not reference or reference.startswith("#"):
            continue
        if "?" in reference and (wanted := reference.partition("?")[0]) != PATIENT:  # a Patient has its patient
            every_of.add(wanted)
        versionless = reference.split("/_history/", 1)[0]
        urls |= {reference, versionless}
        names.add(versionless)
    pairs = [name.split("/", 1) for name in names if "/" in name]
    types, ids = frozenset(t for t, _ in pairs), frozenset(i for _, i in pairs)
    return rows.LooseKeys(frozenset(urls), frozenset(names), types, ids, frozenset(every_of))


def url_tail(full_url: str | None) -> str | None:
    """The `Type/id` an absolute fullUrl ends with (BundleIndex finds its resource by it too); None: none."""
    if not full_url or full_url.startswith("urn:"):
        return None
    return type_id_tail(full_url)


def _facts_of(load: Load, heads: list[ResourceHead], cache: FragmentCache) -> dict[int, Facts]:
    table = cache.facts
    found: dict[int, Facts | None] = {h.pk: table.get(h.content_hash) for h in heads}
    for h in heads:
        if found[h.pk] is not None:
            table.move_to_end(h.content_hash)  # least recently used first out
    missing = {h.pk: h.content_hash for h in heads if found[h.pk] is None}
    for pk, resource in load(list(missing)).items():
        found[pk] = _facts(resource)
        cache.put(cache.facts, missing[pk], found[pk])
    return {pk: f for pk, f in found.items() if f is not None}


def facts_of(resource: dict[str, Any], digest: str, cache: FragmentCache) -> Facts:
    """The facts of content whose hash is `digest`, from the cache or worked out (and kept) now."""
    found = cache.get(cache.facts, digest)
    if found is None:
        found = _facts(resource)
        cache.put(cache.facts, digest, found)
    return found


def _facts(resource: dict[str, Any]) -> Facts:
    bundle = {"resourceType": "Bundle", "type": "collection", "entry": [{"resource": resource}]}
    return Facts(tuple(followed_references(resource)), mappings.detect_profile(bundle), tuple(all_references(resource)))


def all_references(resource: dict[str, Any]) -> list[str]:
    """Every reference a resource makes (what fhir_resources.assemble follows to patient-less ones)."""
    found: list[str] = []
    stack: list[Any] = [resource]
    while stack:
        node = stack.pop()
        if isinstance(node, dict):
            for name, value in node.items():
                if name == "reference" and isinstance(value, str):
                    found.append(value)
                elif isinstance(value, dict | list):
                    stack.append(value)
        elif isinstance(node, list):
            stack.extend(node)
    return found


def _names(head: ResourceHead) -> tuple[str, str, str | None]:
    return head.resource_type, head.resource_id, head.full_url or None


def _parts(members: list[ResourceHead], references: dict[int, tuple[str, ...]]) -> list[list[ResourceHead]]:
    """Groups of resources linked by a reference either way (union-find over the members)."""
    members = sorted(members, key=lambda h: (h.resource_type, h.resource_id))
    if not any(references[h.pk] for h in members):
        return [[h] for h in members]  # no links: each resource is a part (no index to build)
    index = BundleIndex.of_names([_names(h) for h in members])
    parent = list(range(len(members)))

    def root(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    for i, head in enumerate(members):
        for ref in references[head.pk]:
            j = index.resolve(ref, i)
            if j is not None:
                parent[root(i)] = root(j)
    groups: dict[int, list[ResourceHead]] = {}
    for i, head in enumerate(members):
        groups.setdefault(root(i), []).append(head)
    return sorted(groups.values(), key=lambda g: (g[0].resource_type, g[0].resource_id))


def merged_phenopacket(
    assembly: Assembly,
    translate: Callable[[list[ResourceHead], dict[int, dict[str, Any]]], Fragment],
    load: Load,
    *,
    cache: FragmentCache,
    scope: tuple,
    now: datetime,
) -> tuple[dict[str, Any], list[Issue], dict[str, Any] | None] | None:
    """The patient's phenopacket, issues and Family (FamilyMemberHistory) from its parts' fragments,
    or None (translate at once).

    `translate(heads, contents)` translates the Patient and one part (the caller's pipeline: it
    raises when the part's phenopacket is not valid); `scope` names everything else a translation
    depends on (key, dataset, profile, day).
    """
    joins_key = (*scope, assembly.patient.resource_id)
    remembered = cache.get(cache.joins, joins_key) or ()
    groups = [[], *_joined(assembly.parts, remembered)]  # the Patient alone, then each part
    fragments = _fragments(groups, assembly.patient, translate, load, cache, scope)
    while True:
        parts = [f.part for f in fragments[1:]]
        packet = merge_or_join(fragments[0].phenopacket, parts, fragments[0].named_versions)
        if not isinstance(packet, Join):
            break
        # Some parts' order decides: translate them as one part (cached like any other), merge again,
        # and join them up front on the patient's next writes (any union of parts is a part).
        together = frozenset(source for n in packet.together for source in parts[n].sources)
        remembered = (*remembered, together)
        cache.put(cache.joins, joins_key, remembered)
        groups = [[], *_joined([g for g in groups[1:]], (together,))]
        fragments = _fragments(groups, assembly.patient, translate, load, cache, scope)
        cache.joined += 1
    if packet is None:
        cache.whole += 1
        return None
    packet["metaData"] = {**packet["metaData"], "created": rfc3339(now)}
    family = None
    if any(f.family is not None for f in fragments):
        # Relatives come in the order of their FamilyMemberHistory entries: known when each part
        # that makes a Family holds one, and those parts come in that order.
        makers = [f for f in fragments if f.family is not None]
        histories = [[s for s in f.sources if s[0] == FAMILY_MEMBER_HISTORY] for f in makers]
        if any(len(h) != 1 for h in histories) or histories != sorted(histories):
            cache.whole += 1
            return None
        family = merged_family(packet, [f.family for f in makers if f.family is not None])
        if family is None:
            cache.whole += 1
            return None
    cache.merged += 1
    return packet, _issues(fragments, dated="timeAtLastEncounter" in packet["subject"]), family


def _joined(parts: list[list[ResourceHead]], joins: tuple[frozenset, ...]) -> list[list[ResourceHead]]:
    """The parts with those that share a source with one of `joins` made one (sorted as parts are).

    Union-find over the parts: linear in the parts and the joins' sources (a long-lived patient has
    hundreds of parts; joins are rare: diseases and features carry the resources that made them, so only
    interleaving sources or two different vital statuses still join)."""
    if not joins:
        return parts
    owner = {(h.resource_type, h.resource_id): i for i, part in enumerate(parts) for h in part}
    parent = list(range(len(parts)))

    def root(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    for join in joins:
        inside = sorted({owner[source] for source in join if source in owner})
        for i in inside[1:]:
            parent[root(i)] = root(inside[0])
    groups: dict[int, list[list[ResourceHead]]] = {}
    for i, part in enumerate(parts):
        groups.setdefault(root(i), []).append(part)
    merged = [
        members[0]
        if len(members) == 1
        else sorted((h for p in members for h in p), key=lambda h: (h.resource_type, h.resource_id))
        for members in groups.values()
    ]
    return sorted(merged, key=lambda g: (g[0].resource_type, g[0].resource_id))


def _fragments(
    groups: list[list[ResourceHead]],
    patient: ResourceHead,
    translate: Callable[[list[ResourceHead], dict[int, dict[str, Any]]], Fragment],
    load: Load,
    cache: FragmentCache,
    scope: tuple,
) -> list[Fragment]:
    """The fragment of the Patient with each group, from the cache or translated now."""
    keys = [_fragment_key(scope, patient, group) for group in groups]
    fragments: list[Fragment | None] = [cache.get(cache.fragments, k) for k in keys]
    missing = [n for n, f in enumerate(fragments) if f is None]
    if missing:
        contents = load(sorted({h.pk for n in missing for h in groups[n]} | {patient.pk}))
        for n in missing:
            sources = tuple((h.resource_type, h.resource_id) for h in groups[n])
            fragment = replace(translate([patient, *groups[n]], contents), sources=sources)
            cache.put(cache.fragments, keys[n], fragment)
            fragments[n] = fragment
            cache.translated += 1
    return [f for f in fragments if f is not None]


def _fragment_key(scope: tuple, patient: ResourceHead, part: list[ResourceHead]) -> tuple:
    return (
        *scope,
        (patient.resource_id, patient.content_hash, patient.full_url),
        tuple((h.resource_type, h.resource_id, h.content_hash, h.full_url) for h in part),
    )


def _issues(fragments: list[Fragment], *, dated: bool) -> list[Issue]:
    """Every fragment's issues once (each repeats the Patient's own)."""
    seen: dict[tuple, Issue] = {}
    for fragment in fragments:
        for issue in fragment.issues:
            if dated and issue.message == NO_DATED_EVENT:
                continue
            seen.setdefault((issue.severity, issue.code, issue.message, issue.location), issue)
    return list(seen.values())


def key_fingerprint(key: bytes) -> str:
    """Names the key in cache keys without keeping it there."""
    chain = getattr(key, "chain", ())
    return hashlib.sha256(bytes(key) + b"".join(bytes(k) for k in chain)).hexdigest()[:16]
