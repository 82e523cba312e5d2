"""Beacon filters → a plan of SQLAlchemy Core conditions over the metadata store (bound parameters only).

Filters are ANDed. Each one becomes a condition on `phenopackets` (one row per individual):

- ontology filter `{"id": CURIE, "includeDescendantTerms": true, "similarity", "scope"}`:
  * sex terms (NCIT:C16576 female, NCIT:C20197 male, NCIT:C17998 unknown, …) → the indexed `sex` column;
  * HP terms → the term or (default) any of its HPO descendants, resolved offline (`ontology.py`);
  * any other CURIE (OMIM, ORPHA, MONDO, ICD-10, NCIT, UBERON, LOINC, …) → that exact term;
  matched against the *present* (not excluded) terms of `phenopacket_terms` through `ix_terms_lookup`.
- alphanumeric filter `{"id", "operator", "value"}` with `=`, `<`, `>`, `!`, `>=`, `<=`:
  `age` (age at last encounter; ISO 8601 duration, or a number of years) compares `age_days`;
  `sex` (= / ! with an NCIT term or a phenopacket Sex value) and `vitalStatus` (= / !).
- custom filter `excluded:<CURIE>`: the term was explicitly excluded (phenotype or disease); for HP terms
  (unless includeDescendantTerms is false) also when one of its ANCESTORS was excluded, since excluding a
  term excludes everything below it, while excluding a descendant does not exclude the term itself.

A filter the node cannot answer (an unknown alphanumeric field, a similarity other than exact, a scope
it does not serve) makes the plan match nothing and says why in `warnings` — never a silent empty result.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

import sqlalchemy as sa

from gateway.beacon import ontology
from gateway.beacon.request import BeaconRequestError, is_curie
from gateway.issues import Issue
from gateway.store.indexing import duration_days
from gateway.store.tables import (
    EXCLUDED_DISEASE,
    EXCLUDED_PHENOTYPE,
    TERM_KINDS,
    phenopacket_terms,
    phenopackets,
)
from gateway.store.values import in_values
from translators.phenopacket_to_beacon import sex_terms

EXCLUDED_KINDS = (EXCLUDED_PHENOTYPE, EXCLUDED_DISEASE)
PRESENT_KINDS = tuple(kind for kind in TERM_KINDS if kind not in EXCLUDED_KINDS)  # every other kind the store indexes
EXCLUDED_PREFIX = "excluded:"
AGE_IDS = ("age", "ageAtLastEncounter", "NCIT:C25150")  # NCIT:C25150 Age
SEX_ID = "sex"
VITAL_ID = "vitalStatus"
VITAL_VALUES = ("ALIVE", "DECEASED", "UNKNOWN_STATUS")
SCOPES = {
    "individual": "individuals",
    "individuals": "individuals",
    "biosample": "biosamples",
    "biosamples": "biosamples",
}
OPERATORS = ("=", "<", ">", "!", ">=", "<=")
_NUMBER = re.compile(r"^\d+(\.\d+)?$")


@dataclass
class FilterPlan:
    warnings: list[str] = field(default_factory=list)
    unanswerable: bool = False  # some filter cannot be answered: nothing matches
    term_checks: list[tuple[str, tuple[str, ...], tuple[str, ...]]] = field(default_factory=list)  # (id, kinds, terms)
    echo: list[str] = field(default_factory=list)
    # The same conditions for the in-memory index (term_index.py): sex groups and term sets of PRESENT_KINDS.
    # `indexable` turns False when a filter has no index form (age, vital status, excluded terms).
    sexes: list[tuple[str | None, ...]] = field(default_factory=list)
    term_sets: list[frozenset[str]] = field(default_factory=list)
    indexable: bool = True
    # SQLAlchemy conditions are built only when the SQL path needs them (binding thousands of terms costs ~1 ms).
    _builders: list = field(default_factory=list)
    _built: list | None = None

    def add(self, build) -> None:
        self._builders.append(build)
        self._built = None

    @property
    def conditions(self) -> list:
        """SQLAlchemy conditions on phenopackets, ANDed."""
        if self._built is None:
            self._built = [build() for build in self._builders]
        return self._built


@lru_cache(maxsize=2048)
def _cut(terms: frozenset[str], held: frozenset[str]) -> frozenset[str]:
    # frozensets cache their hash: a repeated filter over unchanged data costs one dict look-up
    return terms & held


def _fail(message: str, where: str) -> BeaconRequestError:
    return BeaconRequestError([Issue.error("beacon-request", message, where)])


UNKNOWN_SEX = "UNKNOWN_SEX"


def _sex_values_for(term: str) -> tuple[str | None, ...] | None:
    """Phenopacket Sex values whose NCIT term is `term` (None when `term` is no sex term)."""
    values = tuple(k for k, v in sex_terms().items() if v["id"] == term)
    return _with_absent(values) or None


def _sex_value(raw: str) -> tuple[str | None, ...] | None:
    text = raw.strip()
    if text.upper() in sex_terms():
        return _with_absent((text.upper(),))
    return _sex_values_for(text)


def _with_absent(values: tuple[str, ...]) -> tuple[str | None, ...]:
    """A subject without `sex` has UNKNOWN_SEX (proto3's default, omitted in JSON), as its Beacon record says
    (NCIT:C17998) and filtering_terms lists: the indexed column holds NULL for it."""
    return (*values, None) if UNKNOWN_SEX in values else values


def _sex_in(values: tuple[str | None, ...]):
    column = phenopackets.c.sex
    named = [v for v in values if v is not None]
    return sa.or_(column.in_(named), column.is_(None)) if None in values else column.in_(named)


def _sex_not_in(values: tuple[str | None, ...]):
    column = phenopackets.c.sex
    named = [v for v in values if v is not None]
    return (
        sa.and_(column.is_not(None), ~column.in_(named))
        if None in values
        else sa.or_(column.is_(None), ~column.in_(named))
    )


def _term_condition(kinds: tuple[str, ...], terms: frozenset[str] | tuple[str, ...], datasets: tuple[str, ...]):
    t = phenopacket_terms.c
    inner = sa.select(t.phenopacket_pk).where(
        t.kind.in_(kinds), in_values(t.term, _sorted(terms)), t.dataset_id.in_(datasets)
    )
    return phenopackets.c.pk.in_(inner)


@lru_cache(maxsize=2048)
def _sorted(terms: frozenset[str]) -> list[str]:
    return sorted(terms)


def _age_days(value: Any, where: str) -> float:
    if isinstance(value, int | float) and not isinstance(value, bool):
        return float(value) * 365.2425
    if isinstance(value, str):
        text = value.strip()
        if _NUMBER.fullmatch(text):
            return float(text) * 365.2425
        days = duration_days(text)
        if days is not None:
            return days
    raise _fail(f"an age filter value must be an ISO 8601 duration (e.g. P18Y) or years, got {value!r}", where)


def _compare(column, operator: str, value):
    return {
        "=": column == value,
        "<": column < value,
        ">": column > value,
        "<=": column <= value,
        ">=": column >= value,
        "!": column != value,
    }[operator]


BROAD = 64  # descendant sets larger than this are cut down to the terms present in the data
# Terms all filters of one request may expand to (descendants included): five of the broadest HPO terms
# (HP:0000118 has ~18,700). Fifty broad filters took 10-12 s of an anonymous query before this bound.
MAX_EXPANDED_TERMS = 100_000


def plan_filters(
    filters: tuple[dict, ...], datasets: tuple[str, ...], entry: str, prefix: str, present=None
) -> FilterPlan:
    """The conditions for `filters` on an `entry` ("individuals" or "biosamples") query over `datasets`.

    `present()` returns the terms the store holds (or None): a broad descendant set (HP:0000118 has
    ~18,000 terms) is intersected with it, so the query binds tens of terms, not thousands.
    """
    plan = FilterPlan()
    expanded = 0

    def bounded(terms: frozenset[str], where: str) -> frozenset[str]:
        nonlocal expanded
        expanded += len(terms)
        if expanded > MAX_EXPANDED_TERMS:
            raise _fail(
                f"the filters expand to more than {MAX_EXPANDED_TERMS:,} ontology terms with their descendants; "
                "use fewer broad terms or includeDescendantTerms: false",
                where,
            )
        return terms

    for i, item in enumerate(filters):
        where = f"{prefix}{i}"
        fid = str(item["id"]).strip()
        scope = item.get("scope")
        if scope is not None:
            if not isinstance(scope, str):
                raise _fail("scope must be a string", f"{where}/scope")
            if scope not in SCOPES:
                plan.unanswerable = True
                plan.warnings.append(
                    f"filter {fid}: scope {scope!r} is not served by this node (individuals, biosamples)"
                )
                continue
        if "operator" in item or "value" in item:
            _alphanumeric(plan, item, fid, where)
        elif fid.startswith(EXCLUDED_PREFIX):
            term = fid[len(EXCLUDED_PREFIX) :]
            if not is_curie(term):
                raise _fail(f"custom filter {fid!r}: expected excluded:<CURIE>", f"{where}/id")
            terms = bounded(_expand(plan, item, term, where, upwards=True), where)
            plan.add(lambda terms=terms: _term_condition(EXCLUDED_KINDS, terms, datasets))
            plan.term_checks.append((fid, EXCLUDED_KINDS, tuple(_sorted(terms))))
            plan.indexable = False
        elif is_curie(fid):
            sexes = _sex_values_for(fid)
            if sexes is not None:
                plan.add(lambda sexes=sexes: _sex_in(sexes))
                plan.sexes.append(sexes)
                continue
            terms = bounded(_expand(plan, item, fid, where), where)
            if len(terms) > BROAD and present is not None:
                held = present()
                if held is not None:
                    terms = _cut(terms, held) or frozenset({fid})
            plan.add(lambda terms=terms: _term_condition(PRESENT_KINDS, terms, datasets))
            plan.term_checks.append((fid, PRESENT_KINDS, tuple(_sorted(terms))))
            plan.term_sets.append(terms)
        else:
            plan.unanswerable = True
            plan.warnings.append(
                f"filter {fid!r} is neither an ontology term (CURIE), an alphanumeric filter (id, operator, value) "
                f"nor a custom filter of this node (excluded:<CURIE>); see /filtering_terms"
            )
    return plan


def _expand(plan: FilterPlan, item: dict, term: str, where: str, upwards: bool = False) -> frozenset[str]:
    """The terms a filter matches. `upwards` (excluded:x): x absent follows from x or any ANCESTOR of x
    being excluded; an excluded descendant of x says nothing about x ("no focal seizures" ≠ "no seizures")."""
    descendants = item.get("includeDescendantTerms", True)
    if not isinstance(descendants, bool):
        raise _fail("includeDescendantTerms must be true or false", f"{where}/includeDescendantTerms")
    similarity = item.get("similarity", "exact")
    if similarity not in ("exact", "high", "medium", "low"):
        raise _fail("similarity must be exact, high, medium or low", f"{where}/similarity")
    if similarity != "exact":
        plan.warnings.append(
            f"filter {term}: similarity {similarity!r} is answered as exact (semantic similarity is not supported)"
        )
    if descendants and ontology.has_hierarchy(term):
        return ontology.hpo_ancestors(term) if upwards else ontology.hpo_descendants(term)
    if item.get("includeDescendantTerms") is True:  # asked for explicitly: say that it could not be done
        plan.warnings.append(f"filter {term}: descendant terms are resolved for HPO only; {term} is matched exactly")
    return frozenset({term})


def _alphanumeric(plan: FilterPlan, item: dict, fid: str, where: str) -> None:
    operator = item.get("operator", "=")
    if operator not in OPERATORS:
        raise _fail(f"operator must be one of {', '.join(OPERATORS)}, got {operator!r}", f"{where}/operator")
    if "value" not in item:
        raise _fail(f"alphanumeric filter {fid!r} needs a value", f"{where}/value")
    value = item["value"]
    if not isinstance(value, str | int | float) or isinstance(value, bool):
        raise _fail("value must be a string or a number", f"{where}/value")
    plan.indexable = False
    if fid in AGE_IDS:
        days = _age_days(value, f"{where}/value")
        plan.add(lambda: phenopackets.c.age_days.is_not(None))
        plan.add(lambda: _compare(phenopackets.c.age_days, operator, days))
        return
    if fid in (SEX_ID, VITAL_ID):
        if operator not in ("=", "!"):
            raise _fail(f"{fid} takes the operators = and !", f"{where}/operator")
        if fid == SEX_ID:
            sexes = _sex_value(str(value))
            if sexes is None:
                raise _fail(f"sex value {value!r} is neither an NCIT sex term nor a phenopacket Sex", f"{where}/value")
            # a subject without sex is UNKNOWN_SEX: `! MALE` finds it, `! UNKNOWN_SEX` does not
            plan.add(lambda: _sex_in(sexes) if operator == "=" else _sex_not_in(sexes))
            return
        if str(value).upper() not in VITAL_VALUES:
            raise _fail(f"vitalStatus value must be one of {', '.join(VITAL_VALUES)}", f"{where}/value")
        values, column = (str(value).upper(),), phenopackets.c.vital_status
        plan.add(lambda: column.in_(values) if operator == "=" else sa.and_(column.is_not(None), ~column.in_(values)))
        return
    plan.unanswerable = True
    plan.warnings.append(
        f"alphanumeric filter {fid!r} cannot be answered: this node compares age, sex and vitalStatus "
        "(measurement values are not indexed)"
    )


def missing_terms(connection: sa.Connection, plan: FilterPlan, datasets: tuple[str, ...]) -> list[str]:
    """The filter ids none of whose terms occurs in the datasets (to explain an empty answer)."""
    t = phenopacket_terms.c
    out = []
    for fid, kinds, terms in plan.term_checks:
        found = connection.execute(
            sa.select(t.term).where(t.kind.in_(kinds), in_values(t.term, terms), t.dataset_id.in_(datasets)).limit(1)
        ).first()
        if found is None:
            out.append(fid)
    return out
