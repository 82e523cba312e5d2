"""Data-use conditions: is a caller's intended use permitted by a dataset's DUO terms?

A passport names an intended use with a visa of the configured use type (default
`ResearchPurpose`) whose value lists CURIEs: one or more DUO purposes (general research,
health/medical/biomedical, disease-specific + the disease's MONDO term, population origins,
clinical care) and the DUO requirements the researcher attests (not-for-profit, non-commercial,
ethics approval …). Where a use is named, a grant for a dataset is honoured only when the use is
permitted by the dataset's terms; the rules are data (mappings/security/duo_use.yaml). Pure functions.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import cache

from mappings import load_table

DEFAULT_USE_VISA_TYPE = "ResearchPurpose"
_CURIE = re.compile(r"[A-Za-z][A-Za-z0-9_.-]*:[A-Za-z0-9_.-]+")


@dataclass(frozen=True)
class UseRules:
    purposes: frozenset[str]
    permits: dict[str, frozenset[str]]
    disease_specific: str
    requirements: dict[str, tuple[frozenset[str], ...]]
    prohibits: dict[str, frozenset[str]]
    checked_by_grant: frozenset[str]
    attestations: frozenset[str]


@cache
def rules() -> UseRules:
    raw = load_table("security/duo_use")
    return UseRules(
        purposes=frozenset(raw["purposes"]),
        permits={k: frozenset(v) for k, v in raw["permits"].items()},
        disease_specific=raw["disease_specific"],
        requirements={k: tuple(frozenset(alt) for alt in v) for k, v in raw["requirements"].items()},
        prohibits={k: frozenset(v) for k, v in raw["prohibits"].items()},
        checked_by_grant=frozenset(raw["checked_by_grant"]),
        attestations=frozenset(raw["attestations"]),
    )


@dataclass(frozen=True)
class IntendedUse:
    """What a use visa states. `problem` is set when its value could not be read (it then permits nothing)."""

    purposes: frozenset[str] = frozenset()
    attested: frozenset[str] = frozenset()
    diseases: frozenset[str] = frozenset()
    problem: str | None = None

    @property
    def text(self) -> str:
        return " ".join(sorted(self.purposes | self.attested | self.diseases)) or "(unreadable)"


def _is_duo(curie: str) -> bool:
    return curie.upper().startswith("DUO:")


def parse_use(value: str) -> IntendedUse:
    """A use visa's value: CURIEs separated by spaces or commas, e.g. 'DUO:0000007 MONDO:0005148 DUO:0000046'."""
    table = rules()
    tokens = [t for t in re.split(r"[\s,]+", value.strip()) if t]
    bad = [t for t in tokens if not _CURIE.fullmatch(t)]
    if bad or not tokens:
        return IntendedUse(problem="the intended use is not a list of CURIEs")
    duo = {t.upper() for t in tokens if _is_duo(t)}
    unknown = duo - table.purposes - table.attestations
    if unknown:
        return IntendedUse(problem=f"the intended use names DUO terms this node cannot evaluate: {sorted(unknown)}")
    purposes = frozenset(duo & table.purposes)
    if not purposes:
        return IntendedUse(problem="the intended use names no DUO purpose")
    return IntendedUse(
        purposes=purposes,
        attested=frozenset(duo - purposes),
        diseases=frozenset(t for t in tokens if not _is_duo(t)),
    )


def use_refusal(dataset_terms: tuple[str, ...] | list[str], use: IntendedUse) -> str | None:
    """Why `use` is not permitted by a dataset's terms (DUO CURIEs plus disease CURIEs), or None when it is."""
    if use.problem:
        return use.problem
    table = rules()
    duo = {t.upper() for t in dataset_terms if _is_duo(t)}
    diseases = {t for t in dataset_terms if not _is_duo(t)}
    known = set(table.permits) | set(table.requirements) | set(table.prohibits) | table.checked_by_grant
    unknown = duo - known
    if unknown:
        return f"the dataset's DUO term(s) {', '.join(sorted(unknown))} cannot be evaluated"
    permissions = duo & set(table.permits)
    if permissions:
        allowed = frozenset().union(*(table.permits[p] for p in permissions))
        for purpose in sorted(use.purposes):
            if purpose not in allowed:
                return f"the intended use {purpose} is not permitted by {', '.join(sorted(permissions))}"
            # allowed only through the disease-specific permission: the use's diseases must be the dataset's
            broader = any(purpose in table.permits[p] for p in permissions - {table.disease_specific})
            if purpose == table.disease_specific and not broader and not (use.diseases and use.diseases <= diseases):
                named = ", ".join(sorted(use.diseases)) or "no disease"
                held = ", ".join(sorted(diseases)) or "none"
                return f"the intended use's disease ({named}) is not among the dataset's ({held})"
    for term in sorted(duo & set(table.prohibits)):
        excluded = use.purposes & table.prohibits[term]
        if excluded:
            return f"the intended use {', '.join(sorted(excluded))} is prohibited by {term}"
    for term in sorted(duo & set(table.requirements)):
        if not any(alternative <= use.attested for alternative in table.requirements[term]):
            return f"the dataset requires {term}, which the intended use does not state"
    return None
