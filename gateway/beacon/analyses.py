"""The `analyses` and `runs` entry types, derived from what each VCF ingest recorded.

An ingest writes one immutable version of a dataset; the variant store's `dataset_samples` gives
its assembly, creation time and record count, and each VCF sample with its linked individual and
biosample. Each sample of the live version
is one run (the sequencing that produced its genotypes) and one analysis (the variant calls
ingested from the VCF).

Limit, documented: a VCF does not say how it was sequenced or called, so runs carry no
platform/library fields and analyses name the ingest pipeline, not the upstream caller; the
dates are the ingest date. Ids are keyed derivations of (dataset, sample): sample names never leave.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from gateway.beacon.context import QueryContext
from gateway.beacon.individuals import check_record_id, no_parameters
from gateway.beacon.registry import EntryType
from gateway.beacon.request import BeaconRequest
from gateway.beacon.response import EntryAnswer, ResultSet
from gateway.security.policy import Granularity
from gateway.security.pseudonym import derived_id

PIPELINE = "gateway VCF ingest"


@dataclass(frozen=True)
class SampleRun:
    dataset_id: str
    run_id: str
    analysis_id: str
    biosample_id: str
    individual_id: str | None
    date: str  # YYYY-MM-DD
    assembly: str
    linked: bool
    records: int


def _version_samples(ctx: QueryContext, dataset_id: str) -> tuple[SampleRun, ...]:
    """The runs of a dataset's live version (cached per version: versions are immutable)."""
    if ctx.variants is None:
        return ()
    held = ctx.variants.dataset_samples(dataset_id)
    if held is None:
        return ()
    cache = ctx.cache.setdefault("runs", {})
    key = (dataset_id, held.version)
    if key in cache:
        return cache[key]
    date = held.created[:10]
    runs = []
    for sample in held.samples:
        if sample.name.startswith("erased-"):  # an erased individual's sample keeps no trace
            continue
        runs.append(
            SampleRun(
                dataset_id=dataset_id,
                run_id=derived_id(ctx.key, "run", dataset_id, sample.name),
                analysis_id=derived_id(ctx.key, "analysis", dataset_id, sample.name),
                # the same stable id g_variants gives an unlinked sample
                biosample_id=sample.biosample_id or derived_id(ctx.key, "biosample", dataset_id, sample.name),
                individual_id=sample.individual_id,
                date=date,
                assembly=held.assembly,
                linked=sample.individual_id is not None,
                records=held.records,
            )
        )
    result = tuple(runs)
    if len(cache) > 256:
        cache.clear()
    cache[key] = result
    return result


def run_record(run: SampleRun) -> dict:
    record: dict[str, Any] = {"id": run.run_id, "biosampleId": run.biosample_id, "runDate": run.date}
    if run.individual_id:
        record["individualId"] = run.individual_id
    record["info"] = {"datasetId": run.dataset_id, "source": "VCF genotypes", "assemblyId": run.assembly}
    return record


def analysis_record(run: SampleRun) -> dict:
    record: dict[str, Any] = {
        "id": run.analysis_id,
        "analysisDate": run.date,
        "pipelineName": PIPELINE,
        "runId": run.run_id,
        "biosampleId": run.biosample_id,
    }
    if run.individual_id:
        record["individualId"] = run.individual_id
    record["info"] = {"datasetId": run.dataset_id, "assemblyId": run.assembly, "variantRecords": run.records}
    return record


def _answer(ctx, request, granularity, datasets, select, to_record) -> EntryAnswer:
    result_sets = []
    total = 0
    for dataset_id in datasets:
        runs = [r for r in _version_samples(ctx, dataset_id) if select(r)]
        page = runs[request.offset : request.offset + request.limit] if granularity == "record" else []
        result_sets.append(ResultSet(id=dataset_id, count=len(runs), records=[to_record(r) for r in page]))
        total += len(runs)
    return EntryAnswer(exists=total > 0, total=total, result_sets=result_sets)


def _by(field: str, value: str):
    return lambda run: getattr(run, field) == value


def runs_of(field: str, to_record):
    """A handler for the runs/analyses whose `field` is the record id; every one of them when no id is given."""

    def handler(
        ctx: QueryContext,
        request: BeaconRequest,
        granularity: Granularity,
        datasets: tuple[str, ...],
        record_id: str | None = None,
    ) -> EntryAnswer:
        select = _by(field, check_record_id(record_id)) if record_id is not None else (lambda run: True)
        return _answer(ctx, request, granularity, datasets, select, to_record)

    return handler


answer_runs = runs_of("run_id", run_record)
answer_analyses = runs_of("analysis_id", analysis_record)


def find_run(ctx, datasets, field: str, value: str) -> SampleRun | None:
    for dataset_id in datasets:
        for run in _version_samples(ctx, dataset_id):
            if getattr(run, field) == value:
                return run
    return None


ANALYSES = EntryType(
    id="analysis",
    path="analyses",
    name="Bioinformatics analyses",
    description="One analysis per VCF sample of the live version of each dataset (the ingested variant calls).",
    schema_id="beacon-analysis-v2.0.0",
    default_schema="analyses/defaultSchema.json",
    ontology_term={"id": "edam:operation_2945", "label": "Analysis"},
    parameter_group="analysis",
    parse_parameters=no_parameters("analyses"),
    handler=answer_analyses,
)

RUNS = EntryType(
    id="run",
    path="runs",
    name="Sequencing runs",
    description="One run per VCF sample of the live version of each dataset; platform and library are not "
    "recorded in a VCF and are therefore not reported.",
    schema_id="beacon-run-v2.0.0",
    default_schema="runs/defaultSchema.json",
    ontology_term={"id": "NCIT:C148088", "label": "Sequencing run"},
    parameter_group="run",
    parse_parameters=no_parameters("runs"),
    handler=answer_runs,
)
