"""VCF ingest: parse in a child process, publish the new dataset version atomically in this one.

The child (reader.read_vcf) owns htslib: a crash, an abort or a memory bomb there ends
the child, never the caller. It writes a complete, fsynced build file; only after it
reports success does this process rename it into place and switch the dataset's
pointer. A failed, rejected or killed ingest (of either process) leaves the dataset as it was.
"""

from __future__ import annotations

import contextlib
import multiprocessing as mp
import os
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from gateway.errors import GatewayError  # the one exception root
from gateway.issues import Issue, Report

from .layout import dataset_dir, publish
from .reader import ReadOptions

CHILD_MEMORY_LIMIT = 4 << 30  # address-space cap for the parsing child: a hostile file cannot exhaust the host
DEFAULT_SPAN = 5_000_000  # bp of a region partition (≈ 250k sites of a 500k-genome call set per partition)


@dataclass(frozen=True)
class VcfIngestRequest:
    """What to ingest and how: one VCF/BCF into one dataset, as the CLI, the HTTP job and every other caller ask
    for it, down to the single-file and the partitioned ingest (no behaviour of its own).

    Samples are linked by `sample_map` (sample name → identifier) and `link_sample` (identifier →
    (individual_id, biosample_id)): with both, the mapped identifier is passed to link_sample; with only the map,
    its value is taken as the individual id. `progress(records_done, percent)`.

    `workers` ≥ 1 or a `cluster` scheduler address: a partitioned ingest on Dask (distributed_ingest.py) in
    partitions of `span` bp; `add_regions` adds its partitions to the live partitioned version; `add_samples` adds
    its samples (none already there) to it as a new sample batch, without re-reading the samples already ingested.
    """

    path: Path
    dataset_id: str
    data_dir: Path
    assembly: str | None = None
    sample_map: dict[str, str] | None = None
    link_sample: Callable[[str], tuple[str | None, str | None]] | None = None
    skip_invalid: bool = False
    progress: Callable[[int, int], None] | None = None
    workers: int = 0
    cluster: str | None = None
    span: int = DEFAULT_SPAN
    add_regions: bool = False
    add_samples: bool = False

    def __post_init__(self):
        object.__setattr__(self, "path", Path(self.path))
        object.__setattr__(self, "data_dir", Path(self.data_dir))

    @property
    def partitioned(self) -> bool:
        return bool(self.workers or self.cluster or self.add_regions or self.add_samples)

    @classmethod
    def of(cls, request: VcfIngestRequest | str | Path, fields: dict[str, Any]) -> VcfIngestRequest:
        """`request` as it is, or one made of a path and the other fields by name (the keyword form of the calls)."""
        if isinstance(request, VcfIngestRequest):
            return replace(request, **fields) if fields else request
        return cls(Path(request), **fields)


class VCFRejected(GatewayError):
    """The file was rejected; nothing changed. `report` holds the reasons with file:line locations."""

    def __init__(self, report: Report):
        super().__init__(report.to_text())
        self.report = report


@dataclass
class IngestSummary:
    dataset_id: str
    records_read: int
    records_written: int
    split: int
    skipped: list[Issue]
    samples: int
    samples_linked: int
    unlinked_samples: list[str]
    assembly: str | None
    seconds: float
    version: str | None = None
    report: Report = field(default_factory=Report)
    partitions: list[tuple[str, int, bool]] = field(default_factory=list)  # (region, records, resumed) if partitioned

    def to_text(self) -> str:
        rate = self.records_read / self.seconds if self.seconds else 0.0
        lines = [
            f"dataset {self.dataset_id} ({self.assembly}): {self.records_read} records read, "
            f"{self.records_written} variants written ({self.split} multi-allelic records split), "
            f"{len(self.skipped)} skipped, in {self.seconds:.1f} s ({rate:,.0f} records/s)",
            f"samples: {self.samples}, linked: {self.samples_linked}, unlinked: {len(self.unlinked_samples)}",
        ]
        if self.partitions:
            resumed = sum(1 for _, _, again in self.partitions if again)
            lines.append(f"partitions: {len(self.partitions)} ({resumed} committed by an earlier run)")
            lines += [f"  {region}: {records} records" for region, records, _ in self.partitions]
        if self.unlinked_samples:
            lines.append("unlinked samples: " + ", ".join(self.unlinked_samples[:20]))
        lines += [i.to_text() for i in self.report]
        return "\n".join(lines)

    def to_dict(self) -> dict:
        return {
            "datasetId": self.dataset_id,
            "recordsRead": self.records_read,
            "recordsWritten": self.records_written,
            "split": self.split,
            "skipped": [i.to_dict() for i in self.skipped],
            "samples": self.samples,
            "samplesLinked": self.samples_linked,
            "unlinkedSamples": self.unlinked_samples,
            "assembly": self.assembly,
            "seconds": round(self.seconds, 3),
            "issues": self.report.to_json(),
        }


def _issue_from(d: dict) -> Issue:
    from gateway.issues import Severity

    return Issue(Severity(d["severity"]), d["code"], d["message"], d["location"], d["target"])


def _child(conn, path: str, options: ReadOptions):
    """Entry point of the parsing process: messages go back over `conn` as plain tuples."""
    import resource

    # htslib's messages go to a file the parent can read even if this process dies.
    fd = os.open(options.stderr_path, os.O_WRONLY | os.O_APPEND)
    os.dup2(fd, 2)
    os.close(fd)
    with contextlib.suppress(ValueError, OSError):
        resource.setrlimit(resource.RLIMIT_AS, (CHILD_MEMORY_LIMIT, CHILD_MEMORY_LIMIT))
    with contextlib.suppress(Exception):  # die with the parent (Linux): a killed ingest must not finish on its own
        import ctypes
        import signal

        ctypes.CDLL("libc.so.6").prctl(1, signal.SIGKILL)
        if os.getppid() == 1:
            os._exit(3)
    from .reader import Rejected, read_vcf

    def link(names: list[str]):
        conn.send(("samples", names))
        _, links = conn.recv()
        return links

    def progress(done: int, percent: int) -> None:
        conn.send(("progress", done, percent))

    from .allocator import kept_freed_memory

    try:
        with kept_freed_memory():  # a parent that ran a Dask LocalCluster passes on its MALLOC_TRIM_THRESHOLD_
            result = read_vcf(Path(path), replace(options, link=link, progress=progress))
    except Rejected as exc:
        conn.send(("rejected", [i.to_dict() for i in exc.issues]))
        return
    except MemoryError:
        conn.send(
            ("rejected", [Issue.error("vcf-too-large", "the file needs more memory than an ingest may use").to_dict()])
        )
        return
    except Exception as exc:
        conn.send(("rejected", [Issue.error("vcf-unreadable", f"{type(exc).__name__}: {exc}"[:500]).to_dict()]))
        return
    conn.send(
        (
            "done",
            {
                "records_read": result.records_read,
                "records_written": result.records_written,
                "split": result.split,
                "samples": result.samples,
                "assembly": result.assembly,
                "build_path": result.build_path,
                "issues": [i.to_dict() for i in result.issues],
            },
        )
    )


def _run_child(path: Path, options: ReadOptions) -> dict:
    """Run the parsing child to completion; return its 'done' payload or raise VCFRejected.

    `options.link` answers the child's request for sample links; `options.progress` gets its progress.
    """
    if not path.is_file():
        raise VCFRejected(Report([Issue.error("vcf-unreadable", f"no such file: {path}", str(path))]))
    ctx = mp.get_context("spawn")  # never fork a (threaded) server process
    parent_conn, child_conn = ctx.Pipe()
    fd, stderr_name = tempfile.mkstemp(prefix="vcf-stderr-")
    os.close(fd)
    portable = replace(options.portable(), stderr_path=stderr_name)
    proc = ctx.Process(target=_child, args=(child_conn, str(path), portable), daemon=True)
    link_names, progress = options.link, options.progress
    payload = None
    try:
        proc.start()
        child_conn.close()
        while True:
            try:
                message = parent_conn.recv()
            except EOFError:
                break
            if message[0] == "samples":
                links = link_names(message[1]) if link_names else [(None, None)] * len(message[1])
                parent_conn.send(("links", links))
            elif message[0] == "progress":
                if progress is not None:
                    progress(message[1], message[2])
            elif message[0] == "rejected":
                raise VCFRejected(Report([_issue_from(d) for d in message[1]]))
            elif message[0] == "done":
                payload = message[1]
                break
        proc.join()
        if payload is None:
            tail = Path(stderr_name).read_text(errors="replace").strip().splitlines()[-3:]
            detail = f"; htslib said: {' | '.join(tail)[:400]}" if tail else ""
            raise VCFRejected(
                Report(
                    [
                        Issue.error(
                            "vcf-parser-crashed",
                            f"the VCF parser stopped (exit code {proc.exitcode}){detail}",
                            path.name,
                        )
                    ]
                )
            )
        return payload
    finally:
        if proc.is_alive():
            proc.kill()
            proc.join()
        parent_conn.close()
        with contextlib.suppress(FileNotFoundError):
            os.unlink(stderr_name)


def sample_links(
    names: list[str],
    sample_map: dict[str, str] | None,
    link_sample: Callable[[str], tuple[str | None, str | None]] | None,
) -> list[tuple[str | None, str | None]]:
    """(individual_id, biosample_id) per sample name (see ingest_vcf)."""
    out: list[tuple[str | None, str | None]] = []
    for name in names:
        ident = sample_map.get(name) if sample_map else None
        if link_sample is not None:
            out.append(tuple(link_sample(ident or name)))
        elif ident:
            out.append((ident, None))
        else:
            out.append((None, None))
    return out


def ingest_vcf(request: VcfIngestRequest | str | Path, **fields: Any) -> IngestSummary:
    """Ingest one VCF/BCF as the new version of its dataset (VcfIngestRequest, or its path and its other fields by
    name); raise VCFRejected (nothing changed) when refused. A partitioned request goes to distributed_ingest.py."""
    request = VcfIngestRequest.of(request, fields)
    if request.partitioned:
        from .distributed_ingest import ingest_partitioned

        return ingest_partitioned(request)
    started = time.monotonic()
    path, dataset_id = request.path, request.dataset_id
    dataset_dir(request.data_dir, dataset_id)  # validates the id before any work

    computed: dict[str, list] = {}

    def link_names(names: list[str]) -> list[tuple[str | None, str | None]]:
        if "links" not in computed:
            computed["links"] = sample_links(names, request.sample_map, request.link_sample)
        return computed["links"]

    options = ReadOptions(
        dataset_id=dataset_id,
        data_dir=request.data_dir,
        assembly=request.assembly,
        skip_invalid=request.skip_invalid,
        link=link_names,
        progress=request.progress,
    )
    payload = _run_child(path, options)
    build_path = Path(payload["build_path"])
    try:
        version = publish(build_path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            build_path.unlink()
        raise
    issues = [_issue_from(d) for d in payload["issues"]]
    samples = payload["samples"]
    links = link_names(samples)
    unlinked = [name for name, (individual, _) in zip(samples, links, strict=True) if individual is None]
    skipped = [i for i in issues if i.message.startswith("skipped:") or i.code == "vcf-breakend-skipped"]
    return IngestSummary(
        dataset_id=dataset_id,
        records_read=payload["records_read"],
        records_written=payload["records_written"],
        split=payload["split"],
        skipped=skipped,
        samples=len(samples),
        samples_linked=len(samples) - len(unlinked),
        unlinked_samples=unlinked,
        assembly=payload["assembly"],
        seconds=time.monotonic() - started,
        version=version,
        report=Report(issues),
    )


def validate_file(path: str | Path, *, assembly: str | None = None) -> Report:
    """Every check the ingest makes, storing nothing; all record problems are listed (up to a cap)."""
    try:
        payload = _run_child(Path(path), ReadOptions(assembly=assembly, skip_invalid=True, validate_only=True))
    except VCFRejected as exc:
        return exc.report
    return Report([_issue_from(d) for d in payload["issues"]])
