"""The default model's cross-links between entry types (/{source}/{id}/{target}).

`CROSS_LINKS` maps (source path, target path) to the handler; gateway.beacon.entry_types adds them
to the built-in entry types. A cross-link answers with the *target* entry type's records; the engine builds its envelope,
validates it, and applies the security policy exactly as for a direct query.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np

from gateway.beacon import analyses, collections, g_variants, individuals
from gateway.beacon.context import EntryHandler, QueryContext
from gateway.beacon.registry import EntryType
from gateway.beacon.request import BeaconRequest
from gateway.beacon.response import EntryAnswer, ResultSet
from gateway.beacon.term_index import Snapshot
from gateway.security.policy import Granularity
from gateway.variants.store import split_variant_id


def _variants_of_individual(ctx, request, granularity, datasets, individual_id: str) -> EntryAnswer:
    store = ctx.variants
    if store is None or not datasets:
        return EntryAnswer(exists=False, total=0)
    held_in = {
        r.dataset_id
        for d in store.datasets()
        for r in analyses._version_samples(ctx, d)
        if r.individual_id == individual_id
    }
    if held_in <= set(datasets):  # every dataset holding the individual may be shown: the store pages for us
        hits, total = store.variants_of_individual(individual_id, skip=request.offset, limit=request.limit)
    else:  # the store pages over the datasets that may be shown
        allowed = tuple(sorted(held_in & set(datasets)))
        hits, total = (
            store.variants_of_individual(individual_id, skip=request.offset, limit=request.limit, dataset_ids=allowed)
            if allowed
            else ([], 0)
        )
    if granularity != "record":
        return EntryAnswer(exists=total > 0, total=total)
    by_dataset: dict[str, list] = {}
    for hit in hits:
        dataset = ctx.config.dataset(hit.dataset_id)
        name = dataset.name if dataset and dataset.name else hit.dataset_id
        by_dataset.setdefault(hit.dataset_id, []).append(
            g_variants.variant_record(ctx, hit, store.carriers(hit.variant_id, limit=g_variants.MAX_CASE_LEVEL), name)
        )
    # One dataset holds the individual's genotypes (the usual case): its count is the total.
    counts = {next(iter(held_in)): total} if len(held_in) == 1 else {d: len(v) for d, v in by_dataset.items()}
    result_sets = [ResultSet(id=d, count=counts.get(d, 0), records=by_dataset.get(d, [])) for d in datasets]
    return EntryAnswer(exists=total > 0, total=total, result_sets=result_sets)


def individual_g_variants(
    ctx: QueryContext,
    request: BeaconRequest,
    granularity: Granularity,
    datasets: tuple[str, ...],
    record_id: str | None,
) -> EntryAnswer:
    return _variants_of_individual(ctx, request, granularity, datasets, individuals.check_record_id(record_id))


def biosample_g_variants(
    ctx: QueryContext,
    request: BeaconRequest,
    granularity: Granularity,
    datasets: tuple[str, ...],
    record_id: str | None,
) -> EntryAnswer:
    biosample_id = record_id or ""  # a cross-link always has an id
    owners = individuals.individual_of_biosample(ctx, biosample_id, datasets) if ctx.store is not None else []
    runs = [r for d in datasets for r in analyses._version_samples(ctx, d) if r.biosample_id == biosample_id]
    owners = sorted({*owners, *(r.individual_id for r in runs if r.individual_id)})
    if not owners:
        return EntryAnswer(exists=False, total=0, result_sets=[ResultSet(id=d, count=0, records=[]) for d in datasets])
    return _variants_of_individual(ctx, request, granularity, datasets, owners[0])


def _run_g_variants(field: str):
    def handler(
        ctx: QueryContext,
        request: BeaconRequest,
        granularity: Granularity,
        datasets: tuple[str, ...],
        record_id: str | None,
    ) -> EntryAnswer:
        run = analyses.find_run(ctx, datasets, field, individuals.check_record_id(record_id))
        if run is None or run.individual_id is None:
            info = {} if run is None else {"warnings": ["the VCF sample of this record is not linked to an individual"]}
            return EntryAnswer(exists=False, total=0, info=info)
        return _variants_of_individual(ctx, request, granularity, (run.dataset_id,), run.individual_id)

    return handler


def _carrier_ids(ctx: QueryContext, datasets: tuple[str, ...], record_id: str | None, field: str) -> list[str]:
    """The distinct individual (`field` "individual_id") or biosample ("biosample_id") ids linked to a variant's carriers: the carriers'
    sample indexes (one vectorised decode of the stored set) gathered through the version's sample table, no
    Carrier object per carrier."""
    if record_id is None:  # reached only through /g_variants/{id}/…, which always has an id
        return []
    parts = split_variant_id(g_variants.check_variant_id(record_id))
    if ctx.variants is None or parts is None or parts[0] not in datasets:
        return []
    carriers = ctx.variants.carrier_indexes(record_id)
    held = ctx.variants.dataset_samples(parts[0])
    if carriers is None or held is None or not len(carriers):
        return []
    cache: dict = ctx.cache.setdefault("sample_ids", {})
    key = (parts[0], held.version, field)
    table = cache.get(key)
    if table is None or table[0] is not held:
        if len(cache) >= LINKED_CACHE:
            cache.clear()
        table = cache[key] = (held, np.array([getattr(row, field) for row in held.samples], dtype=object))
    ids = table[1][carriers]
    return list(set(ids[ids != None].tolist()))  # noqa: E711 (element-wise); unsorted: the database orders the page


def g_variant_individuals(
    ctx: QueryContext,
    request: BeaconRequest,
    granularity: Granularity,
    datasets: tuple[str, ...],
    record_id: str | None,
) -> EntryAnswer:
    paged = _carrier_individuals_from_index(ctx, request, granularity, datasets, record_id)
    if paged is not None:
        return paged
    # Without the in-memory index (stale, in-memory SQLite, filters it does not hold): the carriers' ids joined in SQL.
    ids = _carrier_ids(ctx, datasets, record_id, "individual_id")
    return individuals.answer_with_ids(ctx, request, granularity, "individuals", datasets, ids)


def _carrier_individuals_from_index(
    ctx: QueryContext,
    request: BeaconRequest,
    granularity: Granularity,
    datasets: tuple[str, ...],
    record_id: str | None,
) -> EntryAnswer | None:
    """/g_variants/{id}/individuals paged in memory: the carriers' sample indexes (one vectorised decode of the
    stored set) are mapped through the linked-sample index onto the in-memory individuals index, whose mask then
    holds exactly the individuals the SQL path would select (the caller's datasets, the filters, a stored
    phenopacket: erased or unlinked samples map to nobody). Counts come from that mask; only the page's records
    are read. No carrier id becomes a Python string, nothing is sent to the database per carrier."""
    variants = ctx.variants
    parts = split_variant_id(g_variants.check_variant_id(record_id or ""))
    if variants is None or parts is None or parts[0] not in datasets:
        return None
    dataset_id = parts[0]

    def carriers_in(snapshot: Snapshot) -> np.ndarray | None:
        links = linked_samples(ctx, dataset_id, snapshot)
        if links is None:
            return None
        carriers = variants.carrier_indexes(record_id or "")
        mask = np.zeros(snapshot.size, dtype=bool)
        if carriers is None or not len(carriers):
            return mask
        samples, positions = links
        carried = np.zeros(int(max(carriers.max(), samples.max(initial=0))) + 1, dtype=bool)
        carried[carriers] = True
        mask[positions[carried[samples]]] = True
        return mask

    return individuals.individuals_within(ctx, request, granularity, datasets, carriers_in)


LINKED_CACHE = 8  # linked-sample indexes kept per application (one per dataset version and index snapshot)


def linked_samples(ctx: QueryContext, dataset_id: str, snapshot: Snapshot) -> tuple[np.ndarray, np.ndarray] | None:
    """The linked-sample index of a dataset's live version: (sample index, index position) for every VCF sample
    linked to an individual the in-memory index holds. Built once per (version, snapshot): both are immutable."""
    held = ctx.variants.dataset_samples(dataset_id) if ctx.variants is not None else None
    if held is None:
        return None
    cache: dict = ctx.cache.setdefault("linked_samples", {})
    key = (dataset_id, held.version, snapshot.version, id(snapshot))
    found = cache.get(key)
    if found is None or found[0] is not snapshot:
        if not len(snapshot.subjects) and snapshot.size:
            return None  # an index read without subject ids cannot map samples
        links = snapshot.positions_of(s.individual_id for s in held.samples)
        if len(cache) >= LINKED_CACHE:
            cache.clear()  # versions move on; other threads may be reading it: no pop of a key they removed
        found = cache[key] = (snapshot, links)
    return found[1]


def g_variant_biosamples(
    ctx: QueryContext,
    request: BeaconRequest,
    granularity: Granularity,
    datasets: tuple[str, ...],
    record_id: str | None,
) -> EntryAnswer:
    ids = _carrier_ids(ctx, datasets, record_id, "biosample_id")
    return individuals.answer_with_ids(ctx, request, granularity, "biosamples", datasets, ids)


def _within(select_datasets, target: EntryType) -> EntryHandler:
    """/{collection}/{id}/{target}: the target's own handler over the collection's datasets."""

    def handler(
        ctx: QueryContext, request: BeaconRequest, granularity, datasets: tuple[str, ...], record_id: str | None
    ) -> EntryAnswer:
        chosen = select_datasets(record_id, datasets)
        return target.handler(ctx, replace(request, dataset_ids=chosen), granularity, chosen, None)

    return handler


def _dataset_only(record_id: str, datasets: tuple[str, ...]) -> tuple[str, ...]:
    wanted = individuals.check_record_id(record_id)
    return tuple(d for d in datasets if d == wanted)


_TARGETS = (
    individuals.INDIVIDUALS,
    individuals.BIOSAMPLES,
    g_variants.G_VARIANTS,
    analyses.ANALYSES,
    analyses.RUNS,
)
CROSS_LINKS: dict[tuple[str, str], EntryHandler] = {
    ("individuals", "g_variants"): individual_g_variants,
    ("individuals", "biosamples"): individuals.biosamples_of_individual,
    ("individuals", "analyses"): analyses.runs_of("individual_id", analyses.analysis_record),
    ("individuals", "runs"): analyses.runs_of("individual_id", analyses.run_record),
    ("biosamples", "g_variants"): biosample_g_variants,
    ("biosamples", "analyses"): analyses.runs_of("biosample_id", analyses.analysis_record),
    ("biosamples", "runs"): analyses.runs_of("biosample_id", analyses.run_record),
    ("g_variants", "individuals"): g_variant_individuals,
    ("g_variants", "biosamples"): g_variant_biosamples,
    ("analyses", "g_variants"): _run_g_variants("analysis_id"),
    ("runs", "g_variants"): _run_g_variants("run_id"),
    ("runs", "analyses"): analyses.runs_of("run_id", analyses.analysis_record),
    **{("datasets", t.path): _within(_dataset_only, t) for t in _TARGETS},
    **{("cohorts", t.path): _within(collections.cohort_datasets, t) for t in _TARGETS},
}
