"""One patient's phenopacket from the phenopackets of disjoint parts of its resources.

A part is the Patient plus one group of resources linked by the references the translation follows
(`translators.fhir.links`: a Condition alone; a report with its variant Observations; a statement
with its Medication; a Condition with its TNM Observations). Translated apart, each part gives a
phenopacket of the same subject; `merge_or_join` puts them together as the translation of all the
resources at once would have. Where that depends on the order of sources inside parts it cannot see,
it names those parts (`Join`): one translation of their union (itself a part) settles it, and the
caller merges again. None: it cannot be sure at all (the caller translates everything at once).
What the families share across parts, and how:

- subject: the same in every part but `timeAtLastEncounter`, the latest of the parts' (each part's
  is the age at its latest dated event, capped by death), and `vitalStatus`, which one part may set
  (a vital-status Observation, a cause of death; two parts that do → Join);
- phenotypicFeatures by (term, excluded) and diseases by conditions.disease_key (term, excluded, and the dates
  of an episode that ended: a recurring disease's episodes stay apart): the first recorded wins
  (a disease takes the later ones' missing elements, as Conditions.condition does, and every TNM
  finding their Observations add). "First" is the translator's order: Conditions before Observations,
  then by Type/id. A disease knows the Conditions it was made from (`Part.diseases_from`), so parts of
  several Conditions merge without a joint translation unless the Conditions of two such elements
  interleave (a, c in one part, b in another → Join). A feature knows the one resource that made it
  (`Part.features_from`): a repeated feature is kept unless one recorded before it in the translator's
  order says all it says (phenotypes.covers: another onset or severity is another feature; no filling).
  Where that order is not known (a contained resource, a part without provenance) only a part of one
  resource it can come from is ordered; else → Join;
- interpretations: one per Condition, ids never shared, except the one of variants linked to no
  Condition, whose genomicInterpretations are joined (and it stays last);
- biosamples (ids unique), measurements, medicalActions: joined;
- metaData.resources: joined by prefix; the version kept is the first one a sender named
  (`PatientTranslation.named_versions`) in the translator's processing order, else the registry's.
  Where a part's version was named is known (`Part.versions_from`); when it is not, only that the
  part's sources span it, and parts whose spans of two versions interleave → Join; externalReferences
  (alternate codings) joined;
- subject.vitalStatus: two parts that set the same one agree, whatever their order.

Lists come out in part order, not necessarily the order of one translation (sets are equal).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import cache, cached_property
from itertools import pairwise

from mappings import load_registry
from translators.fhir.assemble import PHASE, REPORT_TYPES
from translators.fhir.conditions import disease_key
from translators.fhir.links import followed_references
from translators.fhir.phenotypes import covers

__all__ = ["Join", "Part", "followed_references", "merge_or_join", "merge_parts"]

JOINED_LISTS = ("biosamples", "measurements", "medicalActions")
KNOWN_KEYS = frozenset(
    {"id", "subject", "phenotypicFeatures", "diseases", "interpretations", "metaData", *JOINED_LISTS}
)
UNLINKED_PROGRESS = "UNKNOWN_PROGRESS"
TNM_FINDINGS = "clinicalTnmFinding"  # added to a disease by every Observation about one of its Conditions
_YEARS = re.compile(r"P(\d+)Y")


@dataclass(frozen=True)
class Part:
    """A part's phenopacket and the resources (type, id) it was translated from (besides the Patient)."""

    phenopacket: dict
    sources: tuple[tuple[str, str], ...]
    # prefixes whose version a sender named (PatientTranslation.named_versions); None: not known, a
    # resource other than the registry's counts as named
    named: frozenset[str] | None = None
    # per element of `diseases`, the Conditions (type, id) that made it, in order; None: not known
    diseases_from: tuple[tuple[tuple[str, str], ...], ...] | None = None
    # per prefix of a named version, the place (phase, type, id) in the translator's processing that named it
    versions_from: tuple[tuple[str, tuple], ...] = ()
    # per element of `phenotypicFeatures`, the place (phase, type, id) of the resource that made it (None: not
    # known, a contained one); None: not known for any
    features_from: tuple[tuple | None, ...] | None = None

    def rank(self, types: frozenset[str]) -> tuple[int, str, str] | None:
        """The translator's place of the one source of `types` (what a list's elements come from):
        Conditions first, then by Type/id; None when the part holds several."""
        found = [s for s in self.sources if s[0] in types]
        if len(found) != 1:
            return None
        return (0 if found[0][0] == "Condition" else 1, *found[0])

    def span(self) -> tuple[tuple, tuple]:
        """The first and the last place of the part's sources in the translator's processing."""
        places = [_places(source) for source in self.sources]
        return min(first for first, _ in places), max(last for _, last in places)

    def element_spans(self, name: str, sources: frozenset[str]) -> list[tuple[tuple, tuple] | None]:
        """Per element of the list `name`: the first and last place of the resources it was made from
        (None: not known — a part of several resources it can come from, without provenance)."""
        items = self.phenopacket.get(name) or ()
        if name == "diseases" and self.diseases_from is not None and len(self.diseases_from) == len(items):
            return [
                # a Condition contained in another resource is named by its container: its place is not known
                (_places(made[0])[0], _places(made[-1])[1]) if made and {t for t, _ in made} <= sources else None
                for made in self.diseases_from
            ]
        if name == "phenotypicFeatures" and self.features_from is not None and len(self.features_from) == len(items):
            return [None if place is None else (place, place) for place in self.features_from]
        rank = self.rank(sources)
        return [None if rank is None else _places(rank[1:])] * len(items)

    # What every merge reads of a part, worked out once (a cached fragment's Part is kept with it).
    @cached_property
    def stable_subject(self) -> dict:
        """The subject without what parts may differ in (time at last encounter, vital status)."""
        return _stable(self.phenopacket["subject"])

    @cached_property
    def encounter(self) -> tuple[int | None, dict] | None:
        """(whole years, timeAtLastEncounter) of the part's subject, if it has one."""
        time = self.phenopacket["subject"].get("timeAtLastEncounter")
        return None if time is None else (_years(time), time)

    @cached_property
    def resources(self) -> tuple[list[tuple[str, dict]], frozenset[str]]:
        """metaData.resources: (prefix, resource) of those whose version a sender named, and the
        prefixes of the others (the registry's resource)."""
        versioned: list[tuple[str, dict]] = []
        plain: set[str] = set()
        for resource in self.phenopacket["metaData"].get("resources") or ():
            prefix = resource["namespacePrefix"]
            named = prefix in self.named if self.named is not None else resource != _default_resource(prefix)
            if named:
                versioned.append((prefix, resource))
            else:
                plain.add(prefix)
        return versioned, frozenset(plain)


def _stable(subject: dict) -> dict:
    return {k: v for k, v in subject.items() if k not in ("timeAtLastEncounter", "vitalStatus")}


def _places(source: tuple[str, str]) -> tuple[tuple, tuple]:
    """The first and the last place a resource can have in the translator's processing (phase, Type, id):
    an Observation in its own phase or, as a diagnostic implication, the next; a report in the last;
    anything else (a Medication, read by its statement) after every phase, as far as a span can tell."""
    rtype, rid = source
    first = PHASE.get(rtype, PHASE["report"] if rtype in REPORT_TYPES else len(PHASE))
    last = PHASE["implication"] if rtype == "Observation" else first
    return (first, rtype, rid), (last, rtype, rid)


FEATURE_SOURCES = frozenset({"Condition", "Observation"})
DISEASE_SOURCES = frozenset({"Condition"})


class _Unsure(Exception):
    """The merge cannot be sure; `together` names the parts (indexes) whose one translation would
    settle it (empty: none would, translate everything at once)."""

    def __init__(self, together: frozenset[int] = frozenset()):
        super().__init__(sorted(together))
        self.together = together


@dataclass(frozen=True)
class Join:
    """merge_or_join's answer when some parts must be translated as one: their indexes in `parts`."""

    together: frozenset[int]


def merge_parts(base: dict, parts: list[Part], base_named: frozenset[str] | None = None) -> dict | None:
    """The phenopacket of the Patient (`base`: its own translation) with every part, or None."""
    merged = merge_or_join(base, parts, base_named)
    return merged if isinstance(merged, dict) else None


def merge_or_join(base: dict, parts: list[Part], base_named: frozenset[str] | None = None) -> dict | Join | None:
    """`merge_parts`, or — when the order of some parts' sources decides (two versions of one code
    system, one disease from two parts of several Conditions, two vital statuses) — the parts whose
    joint translation settles it (`Join`): the caller translates them as one part and merges again."""
    try:
        return _merge(base, parts, base_named)
    except _Unsure as unsure:
        return Join(unsure.together) if len(unsure.together) > 1 else None


def _merge(base: dict, parts: list[Part], base_named: frozenset[str] | None) -> dict | None:
    if any(set(p.phenopacket) - KNOWN_KEYS for p in parts):
        return None
    subject = _subject(base["subject"], parts)
    features = _keyed(parts, "phenotypicFeatures", _feature_key, FEATURE_SOURCES, False)
    diseases = _keyed(parts, "diseases", disease_key, DISEASE_SOURCES, True)
    interpretations = _interpretations(parts)
    resources = _resources(base, parts, base_named)
    if subject is None or features is None or diseases is None or interpretations is None or resources is None:
        return None
    packet: dict = {"id": base["id"], "subject": subject}
    if features:
        packet["phenotypicFeatures"] = features
    for name in JOINED_LISTS[:1]:
        joined = [item for p in parts for item in p.phenopacket.get(name) or ()]
        if len({b.get("id") for b in joined}) != len(joined):
            return None
        if joined:
            packet[name] = joined
    if interpretations:
        packet["interpretations"] = interpretations
    if diseases:
        packet["diseases"] = diseases
    for name in JOINED_LISTS[1:]:
        joined = [item for p in parts for item in p.phenopacket.get(name) or ()]
        if joined:
            packet[name] = joined
    packet["metaData"] = _meta_data(base["metaData"], [p.phenopacket["metaData"] for p in parts], resources)
    return packet


def _subject(base: dict, parts: list[Part]) -> dict | None:
    """The base subject with the latest time at last encounter and the vital status one part may
    change (its vital-status Observation or cause of death; two parts that do: join them)."""
    stable = _stable(base)
    subjects = [p.phenopacket["subject"] for p in parts]
    times = [base.get("timeAtLastEncounter")]
    changing = [n for n, s in enumerate(subjects) if s.get("vitalStatus") != base.get("vitalStatus")]
    changed = [subjects[n]["vitalStatus"] for n in changing]
    if any(c != changed[0] for c in changed[1:]):  # which one the translator would keep depends on order
        raise _Unsure(frozenset(changing))
    dated = [(_years(times[0]), times[0])] if times[0] is not None else []
    for part in parts:
        if part.stable_subject != stable:
            return None
        if part.encounter is not None:
            dated.append(part.encounter)
    if changed:
        base = {**base, "vitalStatus": changed[0]}
    if not dated:
        return dict(base)
    if any(y is None for y, _ in dated):
        return None
    latest = dated[[y for y, _ in dated].index(max(y for y, _ in dated if y is not None))][1]
    merged = {k: v for k, v in base.items() if k != "timeAtLastEncounter"}
    return {"id": merged.pop("id"), "timeAtLastEncounter": latest, **merged}


def _years(time_element: dict) -> int | None:
    found = _YEARS.fullmatch(str((time_element.get("age") or {}).get("iso8601duration", "")))
    return int(found.group(1)) if found else None


def _feature_key(feature: dict) -> tuple:
    return (feature["type"]["id"], bool(feature.get("excluded")))


def _keyed(parts: list[Part], name: str, key, sources: frozenset[str], fill_missing: bool) -> list[dict] | None:
    """A list of elements grouped by `key`, in translator order: with `fill_missing` (diseases) the earliest
    stands for its group and takes the later ones' missing elements and TNM findings; without (features),
    each is kept unless one kept before it covers it (phenotypes.covers)."""
    found: dict[tuple, list[tuple[tuple[tuple, tuple] | None, dict, int]]] = {}
    for n, part in enumerate(parts):
        items = part.phenopacket.get(name)
        if not items:
            continue
        for item, span in zip(items, part.element_spans(name, sources), strict=True):
            found.setdefault(key(item), []).append((span, item, n))
    merged = []
    for same in found.values():
        if len(same) == 1:
            merged.append(same[0][1])
            continue
        together = frozenset(n for _, _, n in same)
        known = [(span, item) for span, item, _ in same if span is not None]
        if len(known) < len(same):
            # the order among several sources of one part is not known here: one translation of
            # every part that gives this element knows it
            raise _Unsure(together)
        ordered = sorted(known, key=lambda k: k[0])
        if any(a[0][1] > b[0][0] for a, b in pairwise(ordered)):
            raise _Unsure(together)  # their sources interleave: the translator merged them in another order
        if not fill_missing:  # features: each one not covered by one kept before it
            kept: list[dict] = []
            for _, item in ordered:
                if not any(covers(k, item) for k in kept):
                    kept.append(item)
            merged.extend(kept)
            continue
        winner = dict(ordered[0][1])
        for _, later in ordered[1:]:
            _fill(winner, later)
        merged.append(winner)
    return merged


def _fill(disease: dict, later: dict) -> None:
    """What Conditions.condition and tnm_finding make of a disease recorded again: the first one's
    elements, the later one's where it has none, and the TNM findings of both."""
    for element, value in later.items():
        if element == TNM_FINDINGS and element in disease:
            disease[element] = [*disease[element], *(v for v in value if v not in disease[element])]
        else:
            disease.setdefault(element, value)


def _interpretations(parts: list[Part]) -> list[dict] | None:
    by_id: dict[str, dict] = {}
    unlinked: dict | None = None
    for part in parts:
        for interpretation in part.phenopacket.get("interpretations") or ():
            if interpretation.get("progressStatus") == UNLINKED_PROGRESS and unlinked is not None:
                if interpretation["id"] != unlinked["id"]:
                    return None
                diagnosis = unlinked["diagnosis"]
                more = interpretation["diagnosis"].get("genomicInterpretations") or []
                diagnosis["genomicInterpretations"] = [*diagnosis.get("genomicInterpretations", []), *more]
                continue
            if interpretation["id"] in by_id:
                return None
            if interpretation.get("progressStatus") == UNLINKED_PROGRESS:
                unlinked = {**interpretation, "diagnosis": dict(interpretation["diagnosis"])}
                continue
            by_id[interpretation["id"]] = interpretation
    ordered = sorted(by_id.values(), key=lambda i: i.get("progressStatus") != "SOLVED")
    return [*ordered, *([unlinked] if unlinked else [])]


def _resources(base: dict, parts: list[Part], base_named: frozenset[str] | None) -> list[dict] | None:
    """metaData.resources of all parts, per prefix the version the translator would keep: the first
    version a sender named in its processing order (`_named_at`), else the default."""
    base_part = Part(base, (), base_named)
    named: dict[str, list[tuple[int, dict]]] = {}  # per prefix: (part index, -1 for the base; resource)
    plain: set[str] = set()  # prefixes of the registry's resource (no version of a sender's)
    for n, part in [(-1, base_part), *enumerate(parts)]:
        versioned_here, plain_here = part.resources
        for prefix, resource in versioned_here:
            named.setdefault(prefix, []).append((n, resource))
        plain |= plain_here
    chosen = []
    for prefix in sorted(named.keys() | plain):
        versioned = named.get(prefix)
        if not versioned:
            chosen.append(dict(_default_resource(prefix) or {}))
        elif all(r == versioned[0][1] for _, r in versioned):
            chosen.append(versioned[0][1])
        else:  # the first sender's version: named before every other's (where not known: the part's span)
            spans = [(((-1,), (-1,)) if n < 0 else _named_at(parts[n], prefix), r) for n, r in versioned]
            first = [
                r
                for (_, last), r in spans
                if all(last < other_first for (other_first, _), other in spans if other != r)
            ]
            if not first:
                # sources of two versions interleave: their order inside a part is not known here, but
                # one translation of the parts that name a version knows it (the Patient is in every part)
                raise _Unsure(frozenset(n for n, _ in versioned if n >= 0))
            chosen.append(first[0])
    return chosen


def _named_at(part: Part, prefix: str) -> tuple[tuple, tuple]:
    """Where in the translator's processing a part named its version of `prefix`: the place, when the
    translation said (`Part.versions_from`), else the span of the part's sources."""
    place = next((p for named, p in part.versions_from if named == prefix), None)
    return (place, place) if place is not None else part.span()


@cache
def _default_resource(prefix: str) -> dict | None:
    """The registry's resource of a prefix (no version named); shared: compared, never changed."""
    system = load_registry().system_for_prefix(prefix)
    return system.resource() if system is not None else None


def _meta_data(base: dict, metas: list[dict], resources: list[dict]) -> dict:
    meta = {k: v for k, v in base.items() if k not in ("resources", "externalReferences")}
    meta["resources"] = resources
    references: list[dict] = []
    for m in [base, *metas]:
        for reference in m.get("externalReferences") or ():
            if reference not in references:
                references.append(reference)
    if references:
        meta["externalReferences"] = references
    return meta
