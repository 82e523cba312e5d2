"""Access decisions about Beacon answers: who may query which dataset at which granularity, and
what of the handler's answer may be disclosed — one place, whatever route produced the answer.

`admit` runs before the entry type's handler (datasets the caller may see, granularity ceiling,
the phenotype+variant rule, age filters coarsened to bands, the budget's base cost); `protect`
runs on the handler's `EntryAnswer` (rare alleles, small groups, count threshold, rounding, the
budget's information cost). Both decide on what is disclosed, not on the route: an answer
about a variant (`/g_variants`, `/g_variants/{id}/individuals`, `/g_variants/{id}/biosamples`)
meets the rare-allele and phenotype+variant rules whichever entry type it returns; an answer about
individuals (`/individuals`, `/biosamples`, `/analyses`, `/runs`, a collection's or a variant's
cross-link, one individual's `/individuals/{id}/…`) meets the small-group rule on the number of
individuals it rests on. Counts are the answer's total, its result sets' counts and any `…Count`
number in its `info`. What was decided is written into the request's audit notes.

The rules themselves (tiers, per-dataset policy and granularity, the count rules, the budget)
live in gateway.security; this module applies them to Beacon requests and answers.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field, replace
from typing import Any

from gateway.beacon.collections import dataset_of_cohort
from gateway.beacon.context import AuditNotes, QueryContext
from gateway.beacon.registry import EntryType
from gateway.beacon.request import BeaconRequest, BeaconRequestError
from gateway.beacon.response import EntryAnswer, ResultSet
from gateway.errors import GatewayError
from gateway.security.caller import CONTROLLED, PUBLIC, TIER_RANK, Caller, dataset_config
from gateway.security.hardening import filter_issues
from gateway.security.policy import (
    DatasetPolicy,
    Granularity,
    band_age_range,
    finer,
    information_cost,
    policy_for,
    protect_record,
    returned_granularity,
    rounded,
    suppressed,
)
from gateway.security.service import Security
from gateway.variants.query import VariantQuery

# Entry types whose records are about people (one record per individual, biosample, analysis or run):
# their answers rest on as many individuals as they count. Variants and collections are counted otherwise.
PEOPLE_ENTRIES = frozenset({"individuals", "biosamples", "analyses", "runs"})
AGE_FILTER_IDS = ("age", "ageAtLastEncounter", "NCIT:C25150")  # as gateway.beacon.filters reads them
RARE_SCAN_LIMIT = 10_000  # hits looked at to tell rare from common alleles for PUBLIC callers
_SCAN_PAGE = 1000


class AccessDenied(GatewayError):
    """The caller gets nothing: a dataset they may not see (403) or an exhausted budget (429)."""

    def __init__(self, status: int, code: str, message: str, decision: str = "denied"):
        super().__init__(message, status=status, code=code)
        self.decision = decision


def security_of(ctx: QueryContext) -> Security:
    """The application's Security, or a restrictive stand-in (anonymous, no audit) for a bare context."""
    if ctx.security is not None:
        return ctx.security
    return Security.from_config(ctx.config, ctx.key, (), audit=False)


@dataclass
class Admission:
    caller: Caller
    security: Security
    datasets: tuple[str, ...]
    granularity: Granularity
    tiers: dict[str, str]
    policies: dict[str, DatasetPolicy]
    notes: list[str] = field(default_factory=list)
    audit: AuditNotes = field(default_factory=dict)
    record_id: str | None = None
    cross_link: str | None = None
    source: str | None = None  # the entry type of /{source}/{id}/{cross_link}
    request: BeaconRequest | None = None  # the request as the handler answers it (age filters in bands)

    @property
    def lowest_tier(self) -> str:
        return min(self.tiers.values(), key=TIER_RANK.__getitem__, default=CONTROLLED)

    @property
    def defended(self) -> dict[str, DatasetPolicy]:
        """The served datasets whose defences apply to this caller (all but their CONTROLLED ones)."""
        return {d: p for d, p in self.policies.items() if p.defended(self.tiers[d])}

    @property
    def variant_id(self) -> str | None:
        """The variant a cross-link starts from (/g_variants/{id}/…): its answer discloses that variant's carriers."""
        return self.record_id if self.source == "g_variants" and self.cross_link else None

    @property
    def one_person(self) -> bool:
        """/individuals/{id}/…, /biosamples/{id}/…, /analyses/{id}/…, /runs/{id}/…: an answer about one individual."""
        return self.source in PEOPLE_ENTRIES and self.cross_link is not None

    def handler_granularity(self, target: EntryType) -> Granularity:
        """What the handler is asked for: at least a count when the small-group rule must know the group's size."""
        if self.granularity == Granularity.BOOLEAN and self.defended and target.path in PEOPLE_ENTRIES:
            return Granularity.COUNT
        return self.granularity


def _combines_variant_and_phenotype(entry: EntryType, request: BeaconRequest, source: str | None) -> bool:
    if not request.filters:
        return False
    return entry.path == "g_variants" or source == "g_variants" or bool(request.echo_parameters.get("g_variant"))


def _age_in_bands(request: BeaconRequest, band_years: int) -> tuple[BeaconRequest, bool]:
    """Age filters compared at band boundaries (multiples of `band_years`), so any answer is a function of the
    band histogram: `>`/`>=` v → ≥ the nearest boundary, `<`/`<=` v → < it, `=` v → v's band, `!` v → any recorded age."""
    if band_years <= 0 or not request.filters:
        return request, False
    out: list[dict[str, Any]] = []
    changed = False
    for item in request.filters:
        value = item.get("value")
        years = _years(value) if str(item.get("id", "")).strip() in AGE_FILTER_IDS else None
        if years is None:
            out.append(item)
            continue
        changed = True
        operator = item.get("operator", "=")
        nearest = band_years * round(years / band_years)
        low = band_years * int(years // band_years)
        if operator in (">", ">="):
            out.append({**item, "operator": ">=", "value": f"P{nearest}Y"})
        elif operator in ("<", "<="):
            out.append({**item, "operator": "<", "value": f"P{nearest}Y"})
        elif operator == "!":  # an exact age in days never equals a duration in years: "any recorded age"
            out.append({**item, "operator": ">=", "value": "P0Y"})
        else:
            out.append({**item, "operator": ">=", "value": f"P{low}Y"})
            out.append({**item, "operator": "<", "value": f"P{low + band_years}Y"})
    return replace(request, filters=tuple(out)), changed


_DAYS_PER_YEAR = 365.2425


def _years(value: Any) -> float | None:
    """An age filter's value in years (a number, or an ISO 8601 duration of Y/M/W/D); None: left as sent."""
    if isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    if not isinstance(value, str):
        return None
    text = value.strip()
    try:
        return float(text)
    except ValueError:
        pass
    match = re.fullmatch(r"P(?:(\d+)Y)?(?:(\d+)M)?(?:(\d+)W)?(?:(\d+)D)?", text)
    if match is None or not any(match.groups()):
        return None
    y, m, w, d = (int(g or 0) for g in match.groups())
    return y + m / 12 + (w * 7 + d) / _DAYS_PER_YEAR


def admit(
    ctx: QueryContext,
    entry: EntryType,
    request: BeaconRequest,
    datasets: tuple[str, ...],
    record_id: str | None = None,
    cross_link: str | None = None,
    source: str | None = None,
) -> Admission:
    """Decide before the handler runs; raises AccessDenied (403 / 429) when the caller gets nothing."""
    issues = filter_issues(request.filters)
    if issues:
        raise BeaconRequestError(issues)
    security = security_of(ctx)
    caller = ctx.caller
    audit = ctx.audit
    audit.update(requested_granularity=request.requested_granularity, entry=entry.path)
    base_url = ctx.config.node.base_url
    tiers: dict[str, str] = {}
    policies: dict[str, DatasetPolicy] = {}
    hidden: list[str] = []
    refusals: list[str] = []
    for dataset_id in datasets:
        policy = policy_for(ctx.config, dataset_id)
        dataset = dataset_config(ctx.config, dataset_id)
        tier = caller.tier_for(dataset, base_url)
        if tier != CONTROLLED and caller.grants:
            _, why = caller.grant_decision(dataset, base_url)
            if why:
                refusals.append(f"{dataset_id}: grant not honoured for the intended use: {why}")
        served = policy.ceiling(tier, entry.path) is not None
        if served and tier == PUBLIC and policy.min_public_size > 0:
            served = security.dataset_size(ctx.store, ctx.variants, dataset_id) >= policy.min_public_size
        if served:
            tiers[dataset_id], policies[dataset_id] = tier, policy
        else:
            hidden.append(dataset_id)
    audit["datasets"] = list(datasets)
    # A grant lifts the budget only for queries that read nothing but datasets it opens on this node.
    controlled = bool(tiers) and all(t == CONTROLLED for t in tiers.values())
    if not security.budget.charge(caller, controlled=controlled):
        raise AccessDenied(429, "budget-exceeded", "query budget exhausted; try again later", "budget-exceeded")
    if refusals:
        audit["reason"] = "; ".join(refusals)[:1000]
    if hidden and request.dataset_ids is not None:
        raise not_available(hidden)
    served_ids = tuple(d for d in datasets if d in tiers)
    granularity = returned_granularity(request.requested_granularity, ctx.config, served_ids, caller, entry.path)
    admission = Admission(
        caller,
        security,
        served_ids,
        granularity,
        tiers,
        policies,
        audit=audit,
        record_id=record_id,
        cross_link=cross_link,
        source=source,
        request=request,
    )
    if hidden:
        admission.notes.append("some datasets are not available at your access level and were not queried")
    defended = admission.defended
    band = max((p.age_band_years for p in defended.values()), default=0)
    admission.request, banded = _age_in_bands(request, band)
    if banded:
        admission.notes.append(f"age filters are answered in {band}-year bands")
    if (
        caller.anonymous
        and granularity != Granularity.BOOLEAN
        and _combines_variant_and_phenotype(entry, request, source)
        and not all(p.allow_anonymous_phenotype_variant for p in policies.values())
    ):
        admission.granularity = Granularity.BOOLEAN
        admission.notes.append("a variant combined with phenotype filters is answered yes/no to anonymous callers")
        audit["decision"] = "suppressed"
    if finer(request.requested_granularity, admission.granularity):
        audit.setdefault("decision", "suppressed")
    return admission


def not_available(dataset_ids: list[str] | tuple[str, ...]) -> AccessDenied:
    """The one refusal for a dataset the caller may not query — and for one that does not exist, so that
    the two cannot be told apart."""
    names = ", ".join(dataset_ids)
    return AccessDenied(403, "forbidden", f"dataset(s) not available at your access level: {names}", "denied")


def _count_fields(info: dict[str, Any]) -> list[str]:
    return [k for k, v in info.items() if k.endswith("Count") and isinstance(v, int) and not isinstance(v, bool)]


def protect(
    ctx: QueryContext, entry: EntryType, request: BeaconRequest, admission: Admission, answer: EntryAnswer
) -> tuple[EntryAnswer, Granularity]:
    """The handler's answer as this caller may see it, and the granularity it is now given at.

    Also charges the answer's information cost to the caller's budget (after the answer: never refused)."""
    granularity = admission.granularity
    audit = admission.audit
    audit["count_before_suppression"] = answer.total
    notes = list(admission.notes)
    defended = admission.defended
    people = _people_behind(entry, admission, answer)
    if defended and (entry.path == "g_variants" or admission.variant_id is not None) and not admission.one_person:
        answer, granularity = _hide_rare_alleles(ctx, request, admission, answer, granularity, notes)
    if defended:
        k = max(p.count_threshold for p in defended.values())
        step = max(p.rounding for p in defended.values())
        as_empty = any(p.small_groups == "empty" for p in defended.values())
        if people is not None and suppressed(people, k) and as_empty:
            # As if nobody matched, with no note: a yes/no bisection over filters must learn nothing below k.
            answer = _empty(answer, granularity)
            audit["decision"] = "suppressed"
        answer, granularity = _count_rules(entry, answer, granularity, k, step, notes, audit)
    if granularity == Granularity.BOOLEAN and answer.total is not None:
        # The handler counted for the small-group rule; the caller is given yes/no only.
        answer = EntryAnswer(exists=answer.exists, total=None, info=_without_counts(answer.info))
    if defended and granularity == "record" and answer.result_sets:
        answer = _protect_records(admission, answer, notes)
    if notes:
        info = dict(answer.info)
        info["privacy"] = [*info.get("privacy", []), *notes]
        answer = replace(answer, info=info)
    audit["returned_granularity"] = granularity
    audit.setdefault("decision", "allowed")
    _charge_information(ctx, admission, people, answer)
    return answer, granularity


def _count_rules(
    entry: EntryType,
    answer: EntryAnswer,
    granularity: Granularity,
    k: int,
    step: int,
    notes: list[str],
    audit: AuditNotes,
) -> tuple[EntryAnswer, Granularity]:
    """Counts 1 … k-1 turn the answer into yes/no; other counts are rounded (at record granularity too)."""
    info = dict(answer.info)
    # A collection's total counts catalogue entries (datasets, cohorts), not people: the counts about
    # people are inside its records (protected by _protect_records).
    catalogue = entry.collection
    totals = [] if catalogue else [answer.total, *(rs.count for rs in answer.result_sets)]
    counts = [*totals, *(info[f] for f in _count_fields(info))]
    if granularity != "boolean" and any(suppressed(c, k) for c in counts):
        answer = EntryAnswer(exists=answer.exists or bool(answer.total), total=None, info=_without_counts(info))
        notes.append(f"counts below {k} are not shown: the answer is given as yes/no")
        audit["decision"] = "suppressed"
        return answer, Granularity.BOOLEAN
    if granularity != "boolean" and step > 1 and (totals or _count_fields(info)):
        for name in _count_fields(info):
            info[name] = rounded(info[name], step, k)
        total = answer.total if catalogue or answer.total is None else rounded(answer.total, step, k)
        result_sets = answer.result_sets
        if not catalogue:
            result_sets = tuple(replace(rs, count=rounded(rs.count or 0, step, k)) for rs in answer.result_sets)
        answer = replace(answer, total=total, info=info, result_sets=result_sets)
        notes.append(f"counts are rounded to the nearest {step}")
    return answer, granularity


def _without_counts(info: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in info.items() if k not in _count_fields(info)}


def _empty(answer: EntryAnswer, granularity: Granularity) -> EntryAnswer:
    """An answer that looks exactly like the handler's answer when nothing matches."""
    result_sets = tuple(
        replace(rs, count=0, records=[] if rs.records is not None else None) for rs in answer.result_sets
    )
    info = _without_counts(answer.info)
    return EntryAnswer(exists=False, total=None if granularity == "boolean" else 0, result_sets=result_sets, info=info)


def _people_behind(entry: EntryType, admission: Admission, answer: EntryAnswer) -> int | None:
    """How many individuals an answer rests on; None when it is not about people (variants, catalogues)."""
    if admission.one_person:
        return 1 if answer.exists or answer.total else 0
    if entry.path in PEOPLE_ENTRIES:
        return answer.total if answer.total is not None else (1 if answer.exists else 0)
    return None


def _charge_information(ctx: QueryContext, admission: Admission, people: int | None, answer: EntryAnswer) -> None:
    """The answer's information cost beyond the base unit admit charged (gateway.security.policy.information_cost)."""
    defended = admission.defended
    if not defended:
        return
    if people is None:  # a variant answer rests on its carriers, when the handler counted them
        carriers = answer.info.get("carrierCount")
        people = carriers if isinstance(carriers, int) and not isinstance(carriers, bool) else None
    population = sum(admission.security.dataset_size(ctx.store, ctx.variants, d) for d in defended)
    k = max(p.count_threshold for p in defended.values())
    extra = information_cost(people, population, k) - 1
    if extra > 0:
        admission.security.budget.charge(admission.caller, extra, after_answer=True)
        admission.audit["budget_cost"] = extra + 1


_RECORD_NOTES = {
    "suppressed": "counts below {k} inside records are not shown",
    "rounded": "counts inside records are rounded to the nearest {step}",
    "cases": "case-level data are not shown: their length would be an exact count",
    "derived": "frequencies are not shown where their counts are not shown exactly",
    "ages": "age ranges are shown in whole age bands",
}


def _record_dataset(rs: ResultSet, record: dict[str, Any], tiers: dict[str, str]) -> str | None:
    """The dataset a record belongs to: its result set's, or for a collection the dataset (or cohort) it describes."""
    if rs.set_type != "collection":
        return rs.id
    record_id = record.get("id")
    if not isinstance(record_id, str) or record_id in tiers:
        return record_id
    return dataset_of_cohort(record_id)


def _protect_records(admission: Admission, answer: EntryAnswer, notes: list[str]) -> EntryAnswer:
    """The small-count rule (and rounding) applied to the counts inside each record a defended caller sees."""
    defended = {d: p for d, p in admission.policies.items() if p.defended(admission.tiers[d])}
    strictest = (max(p.count_threshold for p in defended.values()), max(p.rounding for p in defended.values()))
    changes: set[str] = set()
    result_sets = []
    for rs in answer.result_sets:
        if not rs.records:
            result_sets.append(rs)
            continue
        records = []
        for record in rs.records:
            dataset = _record_dataset(rs, record, admission.tiers)
            if dataset in admission.tiers and dataset not in defended:
                records.append(record)  # a CONTROLLED caller's own dataset: exact
                continue
            policy = defended.get(dataset) if dataset is not None else None
            k, step = (policy.count_threshold, policy.rounding) if policy else strictest
            shown, changed = protect_record(record, k, step)
            band = policy.age_band_years if policy else max(p.age_band_years for p in defended.values())
            criteria = shown.get("inclusionCriteria")
            if band > 0 and isinstance(criteria, dict) and isinstance(criteria.get("ageRange"), dict):
                # a cohort's exact minimum and maximum are one person's age each
                shown = {
                    **shown,
                    "inclusionCriteria": {**criteria, "ageRange": band_age_range(criteria["ageRange"], band)},
                }
                changed = changed | {"ages"}
            changes |= changed
            records.append(shown)
        result_sets.append(replace(rs, records=records))
    if not changes:
        return answer
    k, step = strictest
    notes.extend(
        _RECORD_NOTES[c].format(k=k, step=step)
        for c in ("suppressed", "rounded", "cases", "derived", "ages")
        if c in changes
    )
    if changes - {"rounded", "ages"}:
        admission.audit["decision"] = "suppressed"
    return replace(answer, result_sets=tuple(result_sets))


def _hide_rare_alleles(
    ctx: QueryContext,
    request: BeaconRequest,
    admission: Admission,
    answer: EntryAnswer,
    granularity: Granularity,
    notes: list[str],
) -> tuple[EntryAnswer, Granularity]:
    """To PUBLIC callers, variants seen at most `rare_allele_max_count` times are absent."""
    public = {
        d: admission.policies[d].rare_allele_max_count
        for d, t in admission.tiers.items()
        if t == PUBLIC and admission.policies[d].rare_allele_max_count > 0
    }
    if not public or not answer.exists or ctx.variants is None:
        return answer, granularity
    if admission.variant_id is not None:  # /g_variants/{id}/individuals, …/biosamples: that variant's carriers
        query = VariantQuery(dataset_ids=admission.datasets, variant_ids=(admission.variant_id,))
    elif request.parameters is None:
        return answer, granularity
    else:
        query = replace(request.parameters, dataset_ids=admission.datasets)
        if admission.record_id is not None:
            query = replace(query, variant_ids=(admission.record_id,))
    common: dict[str, int] = {}
    scanned, total = 0, None
    while scanned < RARE_SCAN_LIMIT:
        hits, total = ctx.variants.search(query, skip=scanned, limit=_SCAN_PAGE)
        for hit in hits:
            if hit.allele_count > public.get(hit.dataset_id, 0):
                common[hit.dataset_id] = common.get(hit.dataset_id, 0) + 1
        scanned += len(hits)
        if len(hits) < _SCAN_PAGE or (common and (granularity == "boolean" or admission.cross_link)):
            break
    kept = sum(common.values())
    # No note says a rare allele was hidden: the answer must look exactly like a true "absent".
    counts_dropped = _without_counts(answer.info)
    if not common:
        if admission.variant_id is not None:
            return _empty(answer, granularity), granularity
        return EntryAnswer(
            exists=False, total=None if granularity == "boolean" else 0, info=counts_dropped
        ), granularity
    if granularity == "boolean" or admission.cross_link or kept == answer.total:
        return answer, granularity
    if total is None or scanned < total:  # too many hits to count the common ones exactly: yes/no only
        return EntryAnswer(exists=True, info=counts_dropped), Granularity.BOOLEAN
    result_sets = tuple(
        ResultSet(
            id=rs.id,
            count=common.get(rs.id, 0),
            records=[r for r in rs.records or () if (r.get("info") or {}).get("alleleCount", 0) > public.get(rs.id, 0)]
            if rs.records is not None
            else None,
            set_type=rs.set_type,
            info=rs.info,
        )
        for rs in answer.result_sets
    )
    return EntryAnswer(exists=True, total=kept, result_sets=result_sets, info=counts_dropped), granularity


__all__ = ["AccessDenied", "Admission", "admit", "not_available", "protect"]
