"""Code run in child processes by the concurrency tests (importable under spawn)."""

from __future__ import annotations

import multiprocessing
import traceback
from collections.abc import Callable
from typing import Any

from gateway.store import MetadataStore, PhenopacketRecord


def run_in_processes(target: Callable[..., Any], argument_lists: list[tuple], timeout: float = 90) -> list[Any]:
    """Run `target(start, *args)` in one fresh process per argument list, released together
    by the `start` event; returns their results in order, or raises with a child's traceback."""
    context = multiprocessing.get_context("spawn")
    start, results = context.Event(), context.Queue()
    processes = [
        context.Process(target=_child, args=(results, index, target, start, args))
        for index, args in enumerate(argument_lists)
    ]
    for process in processes:
        process.start()
    start.set()
    collected = dict(results.get(timeout=timeout) for _ in processes)
    for process in processes:
        process.join(timeout)
    failures = [value for value in collected.values() if isinstance(value, str) and value.startswith("Traceback")]
    if failures:
        raise AssertionError("a child process failed:\n" + failures[0])
    return [collected[index] for index in range(len(processes))]


def _child(results, index: int, target: Callable[..., Any], start, args: tuple) -> None:
    try:
        results.put((index, target(start, *args)))
    except BaseException:
        results.put((index, traceback.format_exc()))


def document(subject_id: str, phenotype: str) -> dict:
    return {
        "id": f"pp-{subject_id}",
        "subject": {"id": subject_id, "sex": "FEMALE"},
        "phenotypicFeatures": [{"type": {"id": phenotype, "label": "a phenotype"}}],
        "metaData": {"created": "2026-01-01T00:00:00Z", "phenopacketSchemaVersion": "2.0.2"},
    }


def open_store(start, url: str) -> bool:
    """Open (and so migrate) the store as soon as every process is ready."""
    start.wait(30)
    store = MetadataStore.open(url)
    try:
        return store.migrations_current()
    finally:
        store.close()


def save_same_subject(start, url: str, worker: int, times: int) -> list[bool]:
    """Save one patient `times` times; returns the `created` flags seen."""
    store = MetadataStore.open(url, migrate=False)
    start.wait(30)
    created = []
    try:
        for i in range(times):
            record = PhenopacketRecord(
                id="pp-shared",
                dataset_id="ds1",
                subject_id="shared-subject",
                document=document("shared-subject", f"HP:{worker:03d}{i:04d}"),
                source=f"worker-{worker}",
            )
            created.extend(result.created for result in store.save_phenopackets([record]))
    finally:
        store.close()
    return created
