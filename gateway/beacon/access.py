"""Access decisions about Beacon answers: who may query which dataset at which granularity, and
what of the handler's answer may be shown.

`admit` runs before the entry type's handler (budget, datasets the caller may see,
granularity ceiling, the phenotype+variant rule); `protect` runs on the handler's
`EntryAnswer` (rare alleles, count threshold, rounding). Both are generic over entry
types: counts are the answer's total, its result sets' counts and any `…Count` number
in its `info`. What was decided is written into the request's audit notes.

The rules themselves (tiers, per-dataset policy and granularity, the count rules, the budget)
live in gateway.security; this module applies them to Beacon requests and answers.
"""

from __future__ import annotations

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
    finer,
    policy_for,
    protect_record,
    returned_granularity,
    rounded,
    suppressed,
)
from gateway.security.service import Security

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

    @property
    def lowest_tier(self) -> str:
        return min(self.tiers.values(), key=TIER_RANK.__getitem__, default=CONTROLLED)


def _combines_variant_and_phenotype(entry: EntryType, request: BeaconRequest) -> bool:
    if not request.filters:
        return False
    return entry.path == "g_variants" or bool(request.echo_parameters.get("g_variant"))


def admit(
    ctx: QueryContext,
    entry: EntryType,
    request: BeaconRequest,
    datasets: tuple[str, ...],
    record_id: str | None = None,
    cross_link: str | None = None,
) -> Admission:
    """Decide before the handler runs; raises AccessDenied (403 / 429) when the caller gets nothing."""
    issues = filter_issues(request.filters)
    if issues:
        raise BeaconRequestError(issues)
    security = security_of(ctx)
    caller = ctx.caller
    audit = ctx.audit
    audit.update(requested_granularity=request.requested_granularity, entry=entry.path)
    if not security.budget.charge(caller):
        audit["datasets"] = list(datasets)
        raise AccessDenied(429, "budget-exceeded", "query budget exhausted; try again later", "budget-exceeded")
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
    if refusals:
        audit["reason"] = "; ".join(refusals)[:1000]
    if hidden and request.dataset_ids is not None:
        raise AccessDenied(
            403, "forbidden", f"dataset(s) not available at your access level: {', '.join(hidden)}", "denied"
        )
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
    )
    if hidden:
        admission.notes.append("some datasets are not available at your access level and were not queried")
    if (
        caller.anonymous
        and granularity != Granularity.BOOLEAN
        and _combines_variant_and_phenotype(entry, request)
        and not all(p.allow_anonymous_phenotype_variant for p in policies.values())
    ):
        admission.granularity = Granularity.BOOLEAN
        admission.notes.append("a variant combined with phenotype filters is answered yes/no to anonymous callers")
        audit["decision"] = "suppressed"
    if finer(request.requested_granularity, admission.granularity):
        audit.setdefault("decision", "suppressed")
    return admission


def _count_fields(info: dict[str, Any]) -> list[str]:
    return [k for k, v in info.items() if k.endswith("Count") and isinstance(v, int) and not isinstance(v, bool)]


def protect(
    ctx: QueryContext, entry: EntryType, request: BeaconRequest, admission: Admission, answer: EntryAnswer
) -> tuple[EntryAnswer, Granularity]:
    """The handler's answer as this caller may see it, and the granularity it is now given at."""
    granularity = admission.granularity
    audit = admission.audit
    audit["count_before_suppression"] = answer.total
    info = dict(answer.info)
    notes = list(admission.notes)
    defended = [d for d, t in admission.tiers.items() if admission.policies[d].defended(t)]
    if defended and entry.path == "g_variants":
        answer, granularity = _hide_rare_alleles(ctx, request, admission, answer, granularity, notes)
    if defended:
        k = max(admission.policies[d].count_threshold for d in defended)
        step = max(admission.policies[d].rounding for d in defended)
        # A collection's total counts catalogue entries (datasets, cohorts), not people: the counts about
        # people are inside its records (protected below).
        catalogue = entry.collection
        totals = [] if catalogue else [answer.total, *(rs.count for rs in answer.result_sets)]
        counts = [*totals, *(info[f] for f in _count_fields(info))]
        if granularity != "boolean" and any(suppressed(c, k) for c in counts):
            for name in _count_fields(info):
                info.pop(name)
            answer = EntryAnswer(exists=answer.exists or bool(answer.total), total=None, info=info)
            granularity = Granularity.BOOLEAN
            notes.append(f"counts below {k} are not shown: the answer is given as yes/no")
            audit["decision"] = "suppressed"
        elif granularity == "count" and step > 1 and (totals or _count_fields(info)):
            for name in _count_fields(info):
                info[name] = rounded(info[name], step, k)
            total = answer.total if catalogue else rounded(answer.total or 0, step, k)
            answer = replace(answer, total=total, info=info)
            notes.append(f"counts are rounded to the nearest {step}")
    if defended and granularity == "record" and answer.result_sets:
        answer = _protect_records(admission, answer, notes)
    if notes:
        info = dict(answer.info)
        info["privacy"] = [*info.get("privacy", []), *notes]
        answer = replace(answer, info=info)
    audit["returned_granularity"] = granularity
    audit.setdefault("decision", "allowed")
    return answer, granularity


_RECORD_NOTES = {
    "suppressed": "counts below {k} inside records are not shown",
    "rounded": "counts inside records are rounded to the nearest {step}",
    "cases": "case-level data are not shown: their length would be an exact count",
    "derived": "frequencies are not shown where their counts are not shown exactly",
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
            changes |= changed
            records.append(shown)
        result_sets.append(replace(rs, records=records))
    if not changes:
        return answer
    k, step = strictest
    notes.extend(
        _RECORD_NOTES[c].format(k=k, step=step) for c in ("suppressed", "rounded", "cases", "derived") if c in changes
    )
    if changes - {"rounded"}:
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
    if not public or not answer.exists or ctx.variants is None or request.parameters is None:
        return answer, granularity
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
    counts_dropped = {k: v for k, v in answer.info.items() if k not in _count_fields(answer.info)}
    if not common:
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


__all__ = ["AccessDenied", "Admission", "admit", "protect"]
