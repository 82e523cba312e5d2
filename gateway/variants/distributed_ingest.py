"""Partitioned ingest: one VCF split into region partitions, each parsed and written by a worker of Dask distributed.

Why Dask distributed: it is Python's own cluster engine (no JVM as with Spark, no object store to size as with Ray);
a task is a plain function call, so the partition task below is the same code whether it runs in this process, on a
`LocalCluster` of worker processes, or on a cluster reached by its scheduler address (started on Kubernetes with the
Dask Helm chart or on Slurm with dask-jobqueue; docs/SCALING.md). Every worker must see `data_dir` and the VCF
(shared storage).

How a version appears: each partition becomes one immutable SQLite file `parts-<ingest id>/<chrom>-<start>-<end>.sqlite`
(written under a temporary name, renamed when complete); when every partition has committed, this process writes a
manifest (meta, samples, the partition list: partitions.py), fsyncs it, renames it into a version and switches
CURRENT — the same atomic step as a single-file ingest. Until then readers see the previous version.

Resumable: the ingest id is derived from the file, the dataset and the options, so running the same ingest again
finds the partitions that already committed and only runs the others; Dask retries a failed partition
(`retries`), and a partition that fails again fails the ingest without publishing anything.

Growth without rebuilds: `add_regions` adds a file's regions to the live version (units of an existing sample batch);
`add_samples` adds a file of new samples as a new sample batch (partitions.py): its units are written beside the
live ones and a new manifest lists both; nothing already there is read or rewritten.

Limits (documented in docs/SCALING.md): input is a BGZF-compressed text VCF (an index is made if none exists);
issue locations are `<file>@<partition>:<line within the partition>`; duplicate variants are found within a
partition (a record belongs to the partition that holds its POS, so the same variant cannot be in two).
"""

from __future__ import annotations

import contextlib
import gzip
import hashlib
import os
import shutil
import sqlite3
import struct
import time
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

from gateway.issues import Issue, Report

from .allocator import kept_freed_memory
from .ingest import (
    CHILD_MEMORY_LIMIT,
    IngestSummary,
    VcfIngestRequest,
    VCFRejected,
    _issue_from,
    sample_links,
)
from .layout import VersionBuilder, VersionMoved, current_version, dataset_dir, publish
from .normalise import normalise_reference_name
from .partitions import Batch, Partition, partition_dirs, read_batches, read_partitions
from .reader import ReadOptions, Region, _header_lines, _parse_contigs

NO_OFFSET = (1 << 64) - 1  # a window no record reached, in some writers' linear index
UNBOUNDED = 1 << 31  # the span of a contig whose length the header does not give


@dataclass(frozen=True)
class LiveVersion:
    """What an ingest that grows the live partitioned version keeps of it."""

    partitions: list[Partition]
    samples: list[tuple[int, str, str | None, str | None]]  # (manifest index, name, individual, biosample)
    batches: list[Batch]
    assembly: str
    meta: dict[str, str]
    version: str  # its file name, which the grown manifest must still replace when it is published


@dataclass(frozen=True)
class Growth:
    """How this ingest's units join the live version: the units kept, the batch they join and its samples' rows."""

    kept: list[Partition]
    batch: int
    samples: list[tuple[int, str, str | None, str | None]]  # the manifest's rows, this file's samples included
    batches: list[Batch]
    assembly: str | None  # the live version's, which this file must not contradict
    span: int
    called_index: bool = True  # the kept units all have the per-sample called-allele exceptions
    based_on: str | None = None  # the live version grown (None: a fresh version that replaces any)


@dataclass(frozen=True)
class SampleLinks:
    """The (individual, biosample) of every sample, computed once by the coordinator, shipped to each worker as one
    object (pickled in one piece), and handed to the reader as ReadOptions.link."""

    rows: list[tuple[str | None, str | None]]

    def __call__(self, names: list[str]) -> list[tuple[str | None, str | None]]:
        return self.rows


def ensure_index(path: Path, work_dir: Path) -> Path:
    """The tabix index of `path` (.tbi beside it), or one made in `work_dir` (a .csi index is not read: its
    offsets are per bin, not per 16 kb window)."""
    beside = Path(f"{path}.tbi")
    if beside.is_file():
        return beside
    import pysam

    index = work_dir / "input.vcf.gz.tbi"
    if not index.is_file():
        pysam.tabix_index(str(path), preset="vcf", index=str(index), keep_original=True, force=True)
    return index


def plan_regions(path: Path, index: Path, header: list[str], span: int) -> list[Region]:
    """Partitions of `span` bp over every contig that has records, in the file's contig order, each with the
    offset its worker seeks to (read once here from the index, not by every task)."""
    import pysam

    lengths = {cid: int(a["length"]) for cid, a in _parse_contigs(header).items() if a.get("length", "").isdigit()}
    windows = tabix_windows(index)
    regions = []
    with pysam.TabixFile(str(path), index=str(index)) as tbx:
        for contig in tbx.contigs:
            length = lengths.get(contig, UNBOUNDED)
            offsets = windows.get(contig, [])
            for start in range(0, length, span):
                region = Region(contig, start, min(start + span, length), _window_offset(offsets, start))
                if _has_records(tbx, region):  # no task (and no file) for an empty stretch
                    regions.append(region)
    return regions


def tabix_windows(index: Path) -> dict[str, list[int]]:
    """Per contig, the linear index of a .tbi file: the virtual offset of the first record that overlaps each
    16 kb window (the tabix format, htslib's SAM/VCF specification section 5.2)."""
    data = gzip.decompress(index.read_bytes())
    if data[:4] != b"TBI\x01":
        raise ValueError(f"{index.name} is not a tabix index")
    n_ref = struct.unpack_from("<i", data, 4)[0]
    l_nm = struct.unpack_from("<i", data, 32)[0]
    names = data[36 : 36 + l_nm].split(b"\0")[:n_ref]
    at = 36 + l_nm
    windows: dict[str, list[int]] = {}
    for name in names:
        (n_bin,) = struct.unpack_from("<i", data, at)
        at += 4
        for _ in range(n_bin):
            n_chunk = struct.unpack_from("<i", data, at + 4)[0]
            at += 8 + 16 * n_chunk
        (n_intv,) = struct.unpack_from("<i", data, at)
        windows[name.decode()] = list(struct.unpack_from(f"<{n_intv}Q", data, at + 4))
        at += 4 + 8 * n_intv
    return windows


def _window_offset(offsets: list[int], start: int) -> int:
    """Where the records of `start`'s 16 kb window begin; a window past the list has no record that overlaps it,
    so the last known offset is a safe place to read on from (0, the file's start, when nothing is known)."""
    for offset in reversed(offsets[: (start >> 14) + 1]):
        if offset != NO_OFFSET:
            return offset
    return 0


def _has_records(tbx, region: Region) -> bool:
    for line in tbx.fetch(region.contig, region.start, region.end):
        if region.start < int(line.split("\t", 2)[1]) <= region.end:
            return True
    return False


def ingest_partition(path: str, region: Region, parts_dir: str, options: ReadOptions, links: SampleLinks) -> dict:
    """Parse and write one partition (a Dask task, or a call in the local ingest child); returns its summary.

    The region is read straight from the BGZF file at the offset planned from the index: no copy of it, no pass
    over the records before it. It parses in the process it runs in: a Dask worker, which the cluster keeps apart
    from the gateway, or the local ingest's one parsing child.
    """
    clock = _Clock()
    final = Path(parts_dir) / f"{region.name}.sqlite"
    if final.is_file():  # committed by an earlier run of the same ingest
        return {**_unit_stats(final), "region": region.name, "resumed": True, "issues": [], **clock.spent()}
    opts = ReadOptions(
        dataset_id=options.dataset_id,
        data_dir=options.data_dir,
        assembly=options.assembly,
        skip_invalid=options.skip_invalid,
        build_dir=Path(parts_dir),
        link=links,
        region=region,
        label=f"{Path(path).name}@{region.name}",
    )
    try:
        with kept_freed_memory():  # a Dask worker's MALLOC_TRIM_THRESHOLD_ costs +25 % CPU here (allocator.py)
            build_path, issues = _read_here(Path(path), opts)
        os.replace(build_path, final)
        return {**_unit_stats(final), "region": region.name, "resumed": False, "issues": issues, **clock.spent()}
    except VCFRejected as exc:
        return {"region": region.name, "rejected": [i.to_dict() for i in exc.report]}


def _read_here(path: Path, options: ReadOptions) -> tuple[str, list[dict]]:
    from .reader import Rejected, read_vcf

    try:
        result = read_vcf(path, options)
    except Rejected as exc:
        raise VCFRejected(Report(list(exc.issues))) from None
    return str(result.build_path), [i.to_dict() for i in result.issues]


class _Clock:
    """Wall and CPU seconds of one partition task (this process and its children), for the benchmark."""

    def __init__(self):
        self.wall, self.cpu = time.perf_counter(), self._cpu()

    @staticmethod
    def _cpu() -> float:
        import resource

        own, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
        return own.ru_utime + own.ru_stime + kids.ru_utime + kids.ru_stime

    def spent(self) -> dict:
        seconds = time.perf_counter() - self.wall
        ended = time.time()  # epoch seconds: comparable across the processes of one machine (the bench's head/tail)
        return {
            "seconds": seconds,
            "cpu_seconds": self._cpu() - self.cpu,
            "pid": os.getpid(),
            "started": ended - seconds,
            "ended": ended,
        }


def _unit_stats(path: Path) -> dict:
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        meta = dict(conn.execute("SELECT key, value FROM meta").fetchall())
        max_end, variants = conn.execute("SELECT coalesce(max(end), 0), count(*) FROM variants").fetchone()
        chrom = conn.execute("SELECT chrom FROM variants LIMIT 1").fetchone()
    finally:
        conn.close()
    return {
        "records_read": int(meta.get("records_read", 0)),
        "records_written": int(meta.get("records_written", 0)),
        "assembly": meta.get("assembly") or None,
        "called_index": meta.get("called_index", "0"),
        "max_end": max_end,
        "variants": variants,
        "chrom": chrom[0] if chrom else None,
    }


def local_cluster(workers: int):
    """A LocalCluster of `workers` worker processes of one thread each, on loopback, as quiet as Dask allows: no
    dashboard, its INFO logs silenced, its scheduler in this process (a partitioned ingest's coordinator is idle
    while the partitions run). Each worker keeps its nanny: without one, LocalCluster runs workers as threads of
    this process, whose parses would share one GIL.

    The nannies set Dask's `pre-spawn-environ` (MALLOC_TRIM_THRESHOLD_ …) in this process's own environment before
    they spawn their workers, and leave it there: every process the gateway starts later would inherit it (a
    single-file ingest's parsing child, a job). The caller's environment is put back once the workers run."""
    import logging

    from distributed import LocalCluster

    with _environment_kept():
        return LocalCluster(
            n_workers=workers,
            threads_per_worker=1,
            processes=True,
            host="127.0.0.1",
            dashboard_address=None,
            silence_logs=logging.ERROR,
        )


@contextlib.contextmanager
def _environment_kept():
    """Whatever runs inside may change os.environ; afterwards it is the caller's again, key for key."""
    saved = dict(os.environ)
    try:
        yield
    finally:
        for key in set(os.environ) - set(saved):
            del os.environ[key]
        for key, value in saved.items():
            if os.environ.get(key) != value:
                os.environ[key] = value


def _client(workers: int, cluster: str | None):
    """A Dask client on the cluster at `cluster`, or on a LocalCluster of `workers` processes (loopback only);
    None for one worker: the partitions then run one after the other in this process's ingest child."""
    if not cluster and workers <= 1:
        return None, None
    from distributed import Client

    if cluster:
        return Client(cluster), None
    local = local_cluster(workers)
    return Client(local), local


def ingest_partitioned(request: VcfIngestRequest | str | Path, **fields: Any) -> IngestSummary:
    """Ingest one BGZF VCF as a partitioned version of its dataset (VcfIngestRequest, or its path and its other
    fields by name; see the module docstring); VCFRejected when refused, and then nothing is published.
    `progress(records_done, percent of partitions committed)`; no `workers` nor `cluster`: one local process.

    `add_regions`: the file's partitions are added to the live partitioned version instead of replacing it (a call
    set shipped one file per chromosome, or new regions): the samples of one sample batch of the live version, in
    the same order, and no span that batch holds already.
    `add_samples`: the file's samples (none already in the live version) are added as a new sample batch.
    """
    started = time.monotonic()
    request = VcfIngestRequest.of(request, fields)
    path, dataset_id, data_dir, assembly = request.path, request.dataset_id, request.data_dir, request.assembly
    ds_dir = dataset_dir(data_dir, dataset_id)  # validates the id before any work
    header = _read_header(path)
    samples = header[-1].split("\t")[9:]
    links = sample_links(samples, request.sample_map, request.link_sample)
    add_regions = request.add_regions
    if request.add_samples or add_regions:  # the version grown must not lose an erasure still pending in it
        from .store import purge_before_write

        purge_before_write(data_dir, dataset_id)
    growth = _growth(ds_dir, path, len(header), samples, links, request.span, add_regions, request.add_samples)
    ingest_id = _ingest_id(path, dataset_id, assembly, request.skip_invalid, growth.span)
    parts_dir = ds_dir / f"parts-{ingest_id}"
    parts_dir.mkdir(parents=True, exist_ok=True)
    index = ensure_index(path, parts_dir)
    regions = plan_regions(path, index, header, growth.span)
    _refuse_overlaps(path, regions, [p for p in growth.kept if p.batch == growth.batch] if add_regions else [])
    options = ReadOptions(
        dataset_id=dataset_id, data_dir=data_dir, assembly=assembly, skip_invalid=request.skip_invalid
    )
    builder = VersionBuilder(data_dir, dataset_id)
    try:
        client, local = _client(request.workers, request.cluster)
        try:
            meanwhile = partial(builder.add_samples, growth.samples)
            progress = request.progress
            results = _run_partitions(client, path, regions, parts_dir, options, links, progress, meanwhile)
        finally:
            if client is not None:
                client.close()
            if local is not None:
                local.close()
        rejected = [_issue_from(d) for r in results for d in r.get("rejected", ())]
        if rejected:
            raise VCFRejected(Report(rejected))
        if growth.assembly and any(r["assembly"] not in (None, growth.assembly) for r in results):
            message = f"the live version is {growth.assembly}; this file is not"
            raise VCFRejected(Report([Issue.error("vcf-assembly-conflict", message, f"{path.name}:1")]))
        build_path, meta = _finish_manifest(builder, path, dataset_id, parts_dir, growth, results)
    except BaseException:
        builder.abort()
        raise
    return _publish(path, ds_dir, build_path, meta, parts_dir, growth, samples, links, results, started)


def _read_live(ds_dir: Path) -> LiveVersion | None:
    """The live version when it is partitioned (None otherwise)."""
    live = current_version(ds_dir)
    if not live:
        return None
    conn = sqlite3.connect(f"file:{ds_dir / live}?mode=ro", uri=True)
    try:
        partitions = read_partitions(conn, ds_dir)
        if not partitions:
            return None
        rows = conn.execute("SELECT idx, name, individual_id, biosample_id FROM samples ORDER BY idx").fetchall()
        meta = dict(conn.execute("SELECT key, value FROM meta").fetchall())
        batches = read_batches(conn) or [Batch(0, 0, len(rows), meta.get("source", ""))]
    finally:
        conn.close()
    return LiveVersion(partitions, rows, batches, meta.get("assembly", ""), meta, live)


def _growth(
    ds_dir: Path, path: Path, chrom_line: int, samples: list[str], links: list, span: int, regions: bool, add: bool
) -> Growth:
    """How this file's units join the live version (a fresh version when neither `regions` nor `add`); refuses
    (VCFRejected, nothing written) what would make the version wrong."""
    fresh = [(i, name, *links[i]) for i, name in enumerate(samples)]
    if not regions and not add:
        return Growth([], 0, fresh, [Batch(0, 0, len(samples), path.name)], None, span, True)
    code = "vcf-add-regions" if regions else "vcf-add-samples"

    def refuse(message: str, line: int = 1):
        return VCFRejected(Report([Issue.error(code, message, f"{path.name}:{line}")]))

    if regions and add:
        raise refuse("add regions or add samples, not both in one ingest")
    live = _read_live(ds_dir)
    if live is None:
        raise refuse(f"adding {'regions' if regions else 'samples'} needs a live partitioned version")
    span = int(live.meta.get("span", span))  # the live grid, so that a batch's units line up with the others'
    exact = live.meta.get("called_index") == "1"
    if regions:
        names = [row[1] for row in live.samples]
        for b in live.batches:
            if names[b.first : b.first + b.samples] == samples:
                return Growth(
                    live.partitions, b.batch, live.samples, live.batches, live.assembly, span, exact, live.version
                )
        raise refuse("the samples differ from those of every sample batch of the live version (names and order)")
    if not samples:
        raise refuse("the file has no samples to add", chrom_line)
    if not live.samples:
        raise refuse("the live version has no samples (sites only): ingest the whole cohort instead")
    present = {row[1] for row in live.samples} & set(samples)
    if present:
        shown = ", ".join(sorted(present)[:5]) + (", …" if len(present) > 5 else "")
        raise refuse(
            f"{len(present)} sample(s) of this file already in the dataset (no duplicates): {shown}", chrom_line
        )
    first, batch = len(live.samples), max(b.batch for b in live.batches) + 1
    rows = live.samples + [(first + i, name, *links[i]) for i, name in enumerate(samples)]
    batches = [*live.batches, Batch(batch, first, len(samples), path.name)]
    return Growth(live.partitions, batch, rows, batches, live.assembly, span, exact, live.version)


def _refuse_overlaps(path: Path, regions: list[Region], kept: list[Partition]) -> None:
    for region in regions:
        chrom = normalise_reference_name(region.contig)
        for partition in kept:
            if partition.chrom == chrom and partition.start < region.end and region.start < partition.end:
                message = f"{chrom}:{region.start + 1}-{region.end} is already held by {partition.file}"
                raise VCFRejected(Report([Issue.error("vcf-add-regions", message, f"{path.name}:1")]))


def _read_header(path: Path) -> list[str]:
    try:
        with open(path, "rb") as f:
            bgzf = f.read(4) == b"\x1f\x8b\x08\x04"  # gzip with the extra field BGZF blocks carry
        kind, header = _header_lines(path)
    except (OSError, EOFError, gzip.BadGzipFile) as exc:
        raise VCFRejected(
            Report([Issue.error("vcf-unreadable", f"cannot read the file: {exc}", f"{path.name}:1")])
        ) from None
    if kind != "vcf" or not bgzf or not header or not header[-1].startswith("#CHROM"):
        raise VCFRejected(
            Report(
                [
                    Issue.error(
                        "vcf-partitioned-input",
                        "a partitioned ingest (--workers/--cluster) reads a BGZF-compressed text VCF with a header "
                        "(bgzip it; the tabix index is made when missing)",
                        f"{path.name}:1",
                    )
                ]
            )
        )
    return header


def _ingest_id(path: Path, dataset_id: str, assembly: str | None, skip_invalid: bool, span: int) -> str:
    stat = path.stat()
    key = f"{dataset_id}|{path.resolve()}|{stat.st_size}|{stat.st_mtime_ns}|{assembly}|{skip_invalid}|{span}"
    return hashlib.sha256(key.encode()).hexdigest()[:16]


def _run_partitions(client, path, regions, parts_dir, options, links, progress, meanwhile=None) -> list[dict]:
    """Every partition's summary, in region order; progress per committed partition. `meanwhile()` runs once the
    tasks are sent, while they run (the manifest's sample rows: off the ingest's serial part)."""
    meanwhile = meanwhile or (lambda: None)
    results: dict[str, dict] = {}
    records = 0

    def done(result: dict) -> None:
        nonlocal records
        results[result["region"]] = result
        records += result.get("records_read", 0)
        if progress is not None:
            progress(records, len(results) * 100 // max(len(regions), 1))

    task = partial(ingest_partition, str(path), parts_dir=str(parts_dir), options=options.portable())
    if client is None:
        _run_in_one_child(task, regions, links, done, meanwhile)
    else:
        from distributed import as_completed

        # One future for the whole list, sent once to each worker: scattering the list itself would make one future
        # per sample, and every task would then depend on 25,000 keys (3.3 s of CPU here to submit 8 tasks).
        # Wrapped, the list is pickled in one piece: Dask serialises a bare list element by element (2 s at 25,000).
        [shared] = client.scatter([SampleLinks(links)], broadcast=True, hash=False)
        # Largest first (by compressed bytes): the last tasks to start are the shortest, so the workers end together.
        ranks = _size_ranks(path, regions)
        futures = [
            client.submit(task, region, links=shared, retries=2, pure=False, priority=ranks[i])
            for i, region in enumerate(regions)
        ]
        meanwhile()
        for future in as_completed(futures):
            done(future.result())
    return [results[region.name] for region in regions]


def _size_ranks(path: Path, regions: list[Region]) -> list[int]:
    """Per region, its rank by compressed size (the largest has the highest, Dask's highest priority): a region's
    bytes run from its offset to the next region's, the last to the end of the file (regions are in file order)."""
    starts = [region.offset >> 16 for region in regions] + [path.stat().st_size]
    sizes = [max(starts[i + 1] - starts[i], 0) for i in range(len(regions))]
    ranks = [0] * len(regions)
    for rank, i in enumerate(sorted(range(len(regions)), key=lambda i: sizes[i])):
        ranks[i] = rank
    return ranks


def _run_in_one_child(
    task: Callable, regions: list[Region], links: list, done: Callable[[dict], None], meanwhile: Callable[[], None]
) -> None:
    """The local ingest: every partition in turn in one parsing child (htslib kept out of the caller, as for a
    single-file ingest), started once for the whole ingest, not once per partition (a spawn costs 0.3-1 s)."""
    import multiprocessing as mp
    from concurrent.futures import ProcessPoolExecutor
    from concurrent.futures.process import BrokenProcessPool

    pool = ProcessPoolExecutor(1, mp_context=mp.get_context("spawn"), initializer=_guard_child)
    try:
        futures = [pool.submit(task, region, links=SampleLinks(links)) for region in regions]
        meanwhile()
        for future in futures:
            done(future.result())
    except BrokenProcessPool as exc:
        message = f"the VCF parser stopped ({exc})"
        raise VCFRejected(Report([Issue.error("vcf-parser-crashed", message)])) from None
    finally:
        pool.shutdown(cancel_futures=True)


def _guard_child() -> None:
    """In the local ingest child: the same address-space cap as the single-file parsing child, and death with
    the parent (a killed ingest must not finish on its own)."""
    import resource

    with contextlib.suppress(ValueError, OSError):
        resource.setrlimit(resource.RLIMIT_AS, (CHILD_MEMORY_LIMIT, CHILD_MEMORY_LIMIT))
    with contextlib.suppress(Exception):
        import ctypes
        import signal

        ctypes.CDLL("libc.so.6").prctl(1, signal.SIGKILL)


def _finish_manifest(
    builder: VersionBuilder, path: Path, dataset_id: str, parts_dir: Path, growth: Growth, results: list[dict]
) -> tuple[Path, dict[str, str]]:
    """The rest of the manifest (its samples are in already), written and fsynced: (its build file, its meta)."""
    kept = growth.kept
    assemblies = {r["assembly"] for r in results if r.get("assembly")}
    if len(assemblies) > 1:
        raise VCFRejected(Report([Issue.error("vcf-assembly-conflict", f"partitions disagree: {sorted(assemblies)}")]))
    assembly = next(iter(assemblies), "") or growth.assembly or ""
    written = sum(r["records_written"] for r in results)
    rows = [(p.file, p.chrom, p.start, p.end, p.max_end, p.variants, p.batch) for p in kept]
    rows += [
        (f"{parts_dir.name}/{r['region']}.sqlite", r["chrom"] or _chrom_of(r["region"]),
         *_span_of(r["region"]), r["max_end"], r["variants"], growth.batch)
        for r in results
    ]  # fmt: skip
    builder.add_partitions(rows, [(b.batch, b.first, b.samples, b.source) for b in growth.batches])
    meta = {
        "dataset_id": dataset_id,
        "assembly": assembly,
        "source": path.name,
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "records_read": str(sum(r["records_read"] for r in results)),
        # over the units: a variant held by two sample batches counts twice (the distinct number needs a merge)
        "records_written": str(written + sum(p.variants for p in kept)),
        "samples": str(len(growth.samples)),
        "called_index": "1" if growth.called_index and all(r["called_index"] == "1" for r in results) else "0",
        "partitioned": "1",
        "span": str(growth.span),
    }
    return builder.finish(meta), meta


def _publish(
    path, ds_dir, build_path: Path, meta: dict, parts_dir, growth: Growth, samples, links, results, started
) -> IngestSummary:
    """Make the manifest the live version (all partitions have committed) and clear what it supersedes."""
    kept = growth.kept
    previous = current_version(ds_dir)
    superseded: set[str] = set()
    if previous:
        with contextlib.suppress(sqlite3.Error):
            conn = sqlite3.connect(f"file:{ds_dir / previous}?mode=ro", uri=True)
            try:
                superseded = partition_dirs(conn) - {parts_dir.name} - {p.file.split("/", 1)[0] for p in kept}
            finally:
                conn.close()
    try:
        version = publish(build_path, growth.based_on)
    except VersionMoved as exc:
        build_path.unlink(missing_ok=True)
        message = (
            f"{exc}: another ingest or an erasure was published meanwhile; run this ingest again "
            "(its committed partitions are kept)"
        )
        raise VCFRejected(Report([Issue.error("vcf-version-moved", message, f"{path.name}:1")])) from None
    for old in superseded:
        shutil.rmtree(ds_dir / old, ignore_errors=True)  # open readers keep their unlinked files
    issues = [_issue_from(d) for r in results for d in r.get("issues", ())]
    unlinked = [name for name, (individual, _) in zip(samples, links, strict=True) if individual is None]
    assembly = meta["assembly"]
    return IngestSummary(
        dataset_id=meta["dataset_id"],
        records_read=int(meta["records_read"]),
        records_written=sum(r["records_written"] for r in results),
        split=0,
        skipped=[i for i in issues if i.message.startswith("skipped:") or i.code == "vcf-breakend-skipped"],
        samples=len(samples),
        samples_linked=len(samples) - len(unlinked),
        unlinked_samples=unlinked,
        assembly=assembly or None,
        seconds=time.monotonic() - started,
        version=version,
        report=Report(issues),
        partitions=[(r["region"], r["records_read"], r["resumed"]) for r in results],
    )


def _chrom_of(region_name: str) -> str:
    return region_name.rsplit("-", 2)[0]


def _span_of(region_name: str) -> tuple[int, int]:
    _, start, end = region_name.rsplit("-", 2)
    return int(start), int(end)
