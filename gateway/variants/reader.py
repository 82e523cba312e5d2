"""Reading, validating and decoding a VCF/BCF: the part of the ingest that touches htslib.

Runs inside a child process (see ingest.py): htslib may print to stderr, abort or
crash on hostile input, and none of that may reach the server. Records are read with
cyvcf2 (htslib underneath) because it hands genotypes over as one numpy array per
record; everything per sample is vectorised.

Coordinates written to the store are Beacon's: start = POS - 1, end = start + len(REF)
(or END for symbolic alleles), 0-based half-open.
"""

from __future__ import annotations

import contextlib
import gzip
import hashlib
import io
import os
import re
import time
import zlib
from array import array
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

from gateway.errors import GatewayError  # the one exception root
from gateway.issues import Issue

from . import limits
from .annotations import annotation_format, parse_annotations, short_protein_change
from .genotypes import GenotypeError, decode_biallelic_batch, decode_calls_counted
from .layout import HEMI, HET, HOM, DuplicateVariants, VersionBuilder, encode_set, pack_codes
from .normalise import (
    assembly_from_lengths,
    assembly_from_text,
    normalise_assembly,
    normalise_reference_name,
    variant_class,
    variant_length,
)

FIXED_COLUMNS = ["#CHROM", "POS", "ID", "REF", "ALT", "QUAL", "FILTER", "INFO"]
_BASES = re.compile(r"^[ACGTNacgtn]+$")
_ALT_BASES = re.compile(r"^[ACGTNacgtn]+$")
_SYMBOLIC = re.compile(r"^<[^<>,\s]+>$")
_BREAKEND = re.compile(r"[\[\]]|^\.[ACGTNacgtn]+$|^[ACGTNacgtn]+\.$")
_CONTROL = re.compile(r"[\x00-\x08\x0a-\x1f\x7f]")
_CONTIG = re.compile(r"^##contig=<(.*)>$")
_VERSION = re.compile(r"^##fileformat=VCFv(\d+\.\d+)$")
MAX_ISSUES = 1000
BATCH_ROWS = 5_000
BATCH_LINES = 128  # records decoded together in the vectorised GT path (fewer when they are wide, see below)
BATCH_CELLS = 1 << 21  # genotype cells per decoded batch: bounds its numpy temporaries whatever the sample count
FLUSH_BYTES = 16 << 20  # encoded carrier sets handed to the writer at once (its queue holds 8 such hand-overs)
LONG_KEY = 48  # alleles longer than this are hashed in variant keys (URLs stay short)


class Rejected(GatewayError):
    def __init__(self, issues: list[Issue]):
        super().__init__("; ".join(i.message for i in issues))
        self.issues = issues


@dataclass
class ReadResult:
    records_read: int = 0
    records_written: int = 0
    split: int = 0
    samples: list[str] = field(default_factory=list)
    assembly: str | None = None
    issues: list[Issue] = field(default_factory=list)
    build_path: str | None = None
    line_of: array | None = None


@dataclass(frozen=True)
class ReadOptions:
    """What one read of a VCF is asked to do, from the caller of ingest down to the record reader.

    The plain fields cross to the parsing child as they are; the callables are per process (the child
    puts its own in, which talk to the parent over a pipe) and are left out when it is sent.
    """

    dataset_id: str | None = None
    data_dir: Path | None = None
    assembly: str | None = None
    skip_invalid: bool = False
    validate_only: bool = False
    link: Callable[[list[str]], list[tuple[str | None, str | None]]] | None = None  # sample names → links
    progress: Callable[[int, int], None] | None = None  # (records done, percent of the file)
    stderr_path: str | None = None  # where htslib's fd 2 goes (read back for error details)
    build_dir: Path | None = None  # where the build file goes, when not the dataset's folder (a partition's)
    region: Region | None = None  # read only this region of a BGZF text VCF, from its index's offset (a partition)
    label: str | None = None  # the file's name in issue locations (default: its own name)

    def portable(self) -> ReadOptions:
        """Without the callables: what is pickled to the parsing child."""
        return replace(self, link=None, progress=None)


@dataclass(frozen=True)
class Region:
    """The records of one contig whose POS lies in (start, end] (0-based [start, end) of POS - 1), found from
    `offset`: the BGZF virtual offset (compressed block offset << 16 | offset within the block) where the tabix
    index says the records of the region's first 16 kb window begin."""

    contig: str  # as written in the VCF
    start: int
    end: int
    offset: int = 0

    @property
    def name(self) -> str:
        return f"{normalise_reference_name(self.contig)}-{self.start}-{self.end}"


class _StderrWatch:
    """htslib reports problems on fd 2, which the child points at a file; read what is new since last time."""

    def __init__(self, path: str | None):
        self.path = path
        self.offset = 0

    def new_messages(self) -> list[str]:
        if not self.path:
            return []
        try:
            size = os.path.getsize(self.path)
        except OSError:
            return []
        if size <= self.offset:
            return []
        with open(self.path, "rb") as f:
            f.seek(self.offset)
            data = f.read(min(size - self.offset, 1 << 16))
        self.offset = size
        return [line for line in data.decode("utf-8", "replace").splitlines() if line.strip()]


def _header_lines(path: Path, label: str = "") -> tuple[str, list[str]]:
    """("vcf" | "bcf", the header lines as written in the file; [] for BCF); raises Rejected past the limits."""
    label = label or path.name
    with open(path, "rb") as raw:
        magic = raw.read(4)
    if magic[:3] == b"BCF":
        return "bcf", []
    gz = magic[:2] == b"\x1f\x8b"
    if gz:
        with gzip.open(path, "rb") as f:
            if f.read(3) == b"BCF":
                return "bcf", []
    lines: list[str] = []
    total = 0
    with open(path, "rb") as raw:
        stream = gzip.GzipFile(fileobj=raw) if gz else raw
        while raw_line := stream.readline(limits.MAX_LINE_BYTES + 1):  # never one unbounded line in memory
            if not raw_line.startswith(b"#"):
                break
            where = f"{label}:{len(lines) + 1}"
            total += len(raw_line)
            problem = (
                limits.line_issue(len(raw_line) - 1 if raw_line.endswith(b"\n") else len(raw_line), where)
                or limits.header_issue(total, where)
                or (limits.inflation_issue(total, raw.tell(), where) if gz else None)
            )
            if raw_line.startswith(b"#CHROM") and problem is None:
                problem = limits.samples_issue(max(raw_line.count(b"\t") - 8, 0), where)
            if problem is not None:
                raise Rejected([problem])
            lines.append(raw_line.decode("utf-8", "replace").rstrip("\r\n"))
            if raw_line.startswith(b"#CHROM"):
                break
    return "vcf", lines


def _parse_contigs(header: list[str]) -> dict[str, dict[str, str]]:
    contigs: dict[str, dict[str, str]] = {}
    for line in header:
        match = _CONTIG.match(line)
        if match:
            attrs = dict(re.findall(r'(\w+)=("[^"]*"|[^,]*)', match.group(1)))
            if "ID" in attrs:
                contigs[attrs["ID"]] = attrs
    return contigs


def _vkey(chrom: str, pos: int, ref: str, alt: str, end: int) -> str:
    if alt.startswith("<"):
        alt_part = f"{alt[1:-1].replace(':', '.')}.{end}"
    else:
        alt_part = alt
    if len(ref) + len(alt_part) > LONG_KEY:
        digest = hashlib.sha1(f"{ref}>{alt_part}".encode()).hexdigest()[:20]
        return f"{chrom}-{pos}-h{digest}"
    return f"{chrom}-{pos}-{ref}-{alt_part}"


def _check_header(label: str, kind: str, header: list[str], raw_header: str, samples: list[str]) -> list[Issue]:
    issues: list[Issue] = []
    lines = header or raw_header.splitlines()
    first = lines[0] if lines else ""
    match = _VERSION.match(first)
    if not match:
        issues.append(Issue.error("vcf-fileformat", "the first line must be ##fileformat=VCFv4.x", f"{label}:1"))
    elif match.group(1) not in ("4.1", "4.2", "4.3"):
        issues.append(Issue.warning("vcf-version", f"VCF {match.group(1)} is not one of 4.1 to 4.3", f"{label}:1"))
    for number, line in enumerate(lines, start=1):
        if _CONTROL.search(line):
            issues.append(Issue.error("vcf-header", "control characters in a header line", f"{label}:{number}"))
            break
    chrom_line = lines[-1] if lines and lines[-1].startswith("#CHROM") else None
    if chrom_line is None:
        issues.append(Issue.error("vcf-chrom-line", "the header has no #CHROM line", f"{label}:{len(lines)}"))
        return issues
    columns = chrom_line.split("\t")
    where = f"{label}:{len(lines)}"
    if columns[:8] != FIXED_COLUMNS:
        issues.append(
            Issue.error("vcf-chrom-line", f"the #CHROM line must start with {' '.join(FIXED_COLUMNS)}", where)
        )
    if len(columns) > 8 and columns[8] != "FORMAT":
        issues.append(Issue.error("vcf-chrom-line", "the ninth column of the #CHROM line must be FORMAT", where))
    names = columns[9:] if header else samples
    if len(set(names)) != len(names):
        dupes = sorted({n for n in names if names.count(n) > 1})
        issues.append(Issue.error("vcf-duplicate-sample", f"duplicate sample names: {', '.join(dupes[:5])}", where))
    return issues


def resolve_assembly(label: str, flag: str | None, header: list[str], contigs: dict) -> tuple[str | None, list[Issue]]:
    """The assembly from the flag and the header; a contradiction is an error."""
    issues: list[Issue] = []
    claims: dict[str, str] = {}  # assembly → what said so
    for line in header:
        if line.startswith("##reference="):
            guess = assembly_from_text(line)
            if guess:
                claims.setdefault(guess, line[:80])
    for cid, attrs in contigs.items():
        named = normalise_assembly(attrs.get("assembly", "").strip('"')) or assembly_from_text(
            attrs.get("assembly", "")
        )
        if named:
            claims.setdefault(named, f"##contig {cid} assembly={attrs['assembly']}")
    lengths = {cid: int(a["length"]) for cid, a in contigs.items() if a.get("length", "").isdigit()}
    by_length = assembly_from_lengths(lengths)
    if "unknown" in by_length or len(by_length) > 1:
        known = by_length - {"unknown"}
        if len(known) > 1:
            issues.append(
                Issue.error("vcf-assembly-conflict", "##contig lengths match both GRCh37 and GRCh38", f"{label}:1")
            )
    for asm in by_length - {"unknown"}:
        claims.setdefault(asm, "##contig lengths")
    wanted = normalise_assembly(flag) if flag else None
    if flag and wanted is None:
        issues.append(Issue.error("vcf-assembly", f"unknown assembly {flag!r} (use GRCh37 or GRCh38)", ""))
        return None, issues
    if len(claims) > 1:
        said = "; ".join(f"{asm} ({why})" for asm, why in claims.items())
        issues.append(
            Issue.error("vcf-assembly-conflict", f"the header names more than one assembly: {said}", f"{label}:1")
        )
        return None, issues
    header_asm = next(iter(claims), None)
    if wanted and header_asm and wanted != header_asm:
        issues.append(
            Issue.error(
                "vcf-assembly-conflict",
                f"--assembly {wanted} contradicts the header, which says {header_asm} ({claims[header_asm]})",
                f"{label}:1",
            )
        )
        return None, issues
    return wanted or header_asm, issues


def read_vcf(path: Path, options: ReadOptions) -> ReadResult:
    """Validate (and unless `options.validate_only`, write a build file of) one VCF; raises Rejected."""
    import cyvcf2  # imported here: only the child process loads htslib

    path = Path(path)
    label = options.label or path.name
    result = ReadResult()
    issues = result.issues
    watch = _StderrWatch(options.stderr_path)
    assembly, validate_only = options.assembly, options.validate_only

    def htslib_detail() -> str:
        messages = watch.new_messages()
        return f" (htslib: {messages[-1][:300]})" if messages else ""

    try:
        kind, header = _header_lines(path, label)
    except (OSError, EOFError, gzip.BadGzipFile) as exc:
        raise Rejected([Issue.error("vcf-unreadable", f"cannot read the file: {exc}", f"{label}:1")]) from None
    try:
        vcf = cyvcf2.VCF(str(path), lazy=True)
    except Exception as exc:  # htslib refused the header or the compression
        raise Rejected(
            [Issue.error("vcf-header", f"cannot parse the VCF header: {exc}{htslib_detail()}", f"{label}:1")]
        ) from None
    samples = list(vcf.samples)
    too_many = limits.samples_issue(len(samples), f"{label}:1")
    if too_many is not None:  # a BCF's binary header is only counted here
        vcf.close()
        raise Rejected([too_many])
    result.samples = samples
    raw_header = vcf.raw_header
    if kind == "bcf":
        header = raw_header.rstrip("\n").splitlines()
    issues += _check_header(label, kind, header if kind == "vcf" else [], raw_header, samples)
    contigs = _parse_contigs(header)
    if not contigs:
        issues.append(Issue.warning("vcf-no-contigs", "the header declares no ##contig lines", f"{label}:1"))
    asm, asm_issues = resolve_assembly(label, assembly, header, contigs)
    issues += asm_issues
    if asm is None and not any(i.is_error for i in asm_issues):
        severity = Issue.warning if validate_only else Issue.error
        issues.append(
            severity("vcf-assembly", "the assembly is neither in the header nor given (--assembly)", f"{label}:1")
        )
    result.assembly = asm
    if any(i.is_error for i in issues) and not validate_only:
        raise Rejected(issues)
    has_gt = bool(samples) and any(line.startswith("##FORMAT=<ID=GT,") for line in header)
    if samples and not has_gt:
        issues.append(Issue.warning("vcf-no-genotypes", "the file has sample columns but no GT field", f"{label}:1"))
    ann_fmt = annotation_format("\n".join(header))

    builder = None if validate_only else VersionBuilder(options.data_dir, options.dataset_id, options.build_dir)
    try:
        if builder is not None:
            links = options.link(samples) if options.link else [(None, None)] * len(samples)
            builder.add_samples([(i, name, *links[i]) for i, name in enumerate(samples)])
        source = _Source(vcf, path, label, kind, len(header), has_gt, ann_fmt, contigs, watch, options.region)
        _RecordReader(source, result, builder, options).run()
        if builder is not None:
            meta = {
                "dataset_id": options.dataset_id,
                "assembly": asm or "",
                "source": label,
                "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                "records_read": str(result.records_read),
                "records_written": str(result.records_written),
                "samples": str(len(samples)),
                "called_index": "1" if has_gt else "0",  # sample_called is complete: erasure fixes AN everywhere
            }
            result.build_path = str(_finish(builder, meta, result, label, kind, options.skip_invalid))
    except BaseException:
        if builder is not None:
            builder.abort()
        raise
    finally:
        vcf.close()
    return result


def _finish(builder: VersionBuilder, meta: dict, result: ReadResult, label: str, kind: str, skip_invalid: bool):
    """Complete the build; the same variant twice far apart (an unsorted file) is found here, by the unique index."""
    try:
        return builder.finish(meta)
    except DuplicateVariants as dup:
        line_of = result.line_of

        def where(vid: int) -> str:
            number = line_of[vid] if vid < len(line_of) else 0
            return f"{label}:{number}" if kind == "vcf" else f"{label}:record {number}"

        found = [
            (f"variant {vkey} appears again (first at {where(first)})", where(vid))
            for vkey, first, later in dup.duplicates
            for vid in later
        ]
        if not skip_invalid:
            issues = [Issue.error("vcf-duplicate-variant", message, loc) for message, loc in found[:MAX_ISSUES]]
            raise Rejected([*result.issues, *issues]) from None
        for message, loc in found[:MAX_ISSUES]:
            result.issues.append(Issue.warning("vcf-duplicate-variant", f"skipped: {message}", loc))
        dropped = [vid for _, _, later in dup.duplicates for vid in later]
        builder.drop_variants(dropped)
        result.records_written -= len(dropped)
        return builder.finish({**meta, "records_written": str(result.records_written)})


def _record_lines(path: Path, kind: str, vcf, n_header: int, watch: _StderrWatch, region: Region | None = None):
    """(location number, line bytes, compressed bytes read) for every record; text files are read directly."""
    if kind == "bcf":
        for i, v in enumerate(vcf, start=1):
            yield i, str(v).encode(), 0
        for message in watch.new_messages():
            if message.startswith("[E::"):
                raise OSError(message[:300])
        return
    with _records_stream(path, n_header, region) as (raw, stream, gz, first_byte):
        done = inflated = 0
        bound = limits.MAX_LINE_BYTES + 1
        for number, line in enumerate(iter(lambda: stream.readline(bound), b""), start=n_header + 1):
            inflated += len(line)
            if len(line) == bound and not line.endswith(b"\n"):
                raise Rejected([limits.line_issue(len(line), f"{path.name}:{number}")])
            if not number & 1023:
                done = raw.tell()  # for progress and the inflation bound only: not worth a call per line
                if gz and (bomb := limits.inflation_issue(inflated, done - first_byte, f"{path.name}:{number}")):
                    raise Rejected([bomb])
            yield number, line, done


@contextlib.contextmanager
def _records_stream(path: Path, n_header: int, region: Region | None):
    """(raw file, stream of the record lines, gzip?, first compressed byte read): the whole file after its header
    lines, or with `region` only that region's records, read from its BGZF offset (no pass over the rest)."""
    with open(path, "rb") as raw:
        gz = raw.read(2) == b"\x1f\x8b"
        if region is not None:
            if not gz:
                raise OSError("a region is read from a BGZF-compressed file only")
            block, within = divmod(region.offset, 1 << 16)
            raw.seek(block)
            inflated = io.BufferedReader(gzip.GzipFile(fileobj=raw), 1 << 20)
            inflated.read(within)
            yield raw, _RegionLines(inflated, region), gz, block
            return
        raw.seek(0)
        stream = io.BufferedReader(gzip.GzipFile(fileobj=raw), 1 << 20) if gz else raw
        for _ in range(n_header):
            stream.readline(limits.MAX_LINE_BYTES + 1)  # checked by _header_lines already
        yield raw, stream, gz, 0


class _RegionLines:
    """The lines of a region's records, read on from an index offset: lines before the region (the offset is
    that of its first 16 kb window, and a record that starts before the region belongs to the partition before)
    are passed over, and reading ends at the first record of another contig or past the region's end."""

    def __init__(self, stream, region: Region):
        self.stream = stream
        self.contig = region.contig.encode()
        self.start, self.end = region.start, region.end
        self.seen = False  # a record of the contig was read: another contig after it ends the region
        self.ended = False

    def readline(self, limit: int = -1) -> bytes:
        while not self.ended:
            line = self.stream.readline(limit)
            if not line:
                break
            if len(line) == limit and not line.endswith(b"\n"):
                return line  # too long: the reader refuses it
            if line.startswith(b"#") or line in (b"\n", b"\r\n"):
                continue
            fields = line.split(b"\t", 2)
            if fields[0] != self.contig:
                if self.seen:
                    break  # the next contig (tabix needs each contig's records together)
                continue
            self.seen = True
            if len(fields) < 3 or not fields[1].isdigit():
                return line  # malformed: the reader refuses it
            pos = int(fields[1])
            if pos > self.end:
                break
            if pos > self.start:
                return line
        self.ended = True
        return b""

    def read(self, size: int) -> bytes:
        parts: list[bytes] = []
        total = 0
        while total < size and (line := self.readline(limits.MAX_LINE_BYTES + 1)):
            parts.append(line)
            total += len(line)
        return b"".join(parts)


# One line of a sites-only VCF: a simple record (POS >= 1, one ALT of bases; the 8 columns captured) needs no
# per-record check beyond this pattern; anything else comes back whole in the last group, for the per-line path.
_SITE_LINE = re.compile(
    r"([^\t\n]+)\t([1-9][0-9]{0,9})\t([^\t\n]*)\t([ACGTNacgtn]+)\t([ACGTNacgtn]+)\t([^\t\n]*)\t([^\t\n]*)"
    r"\t([^\t\n\r]*)\r?\n|(.*)\n"
)
_TEXT_BLOCK = 1 << 20  # bounds the memory of a block's parsed columns (~20 MB)


def _text_blocks(path: Path, n_header: int, region: Region | None = None):
    """(number of the first line, bytes of whole lines, compressed bytes read) after the header of a text VCF."""
    with _records_stream(path, n_header, region) as (raw, stream, gz, first_byte):
        number = n_header + 1
        rest = b""
        inflated = 0
        while True:
            chunk = stream.read(_TEXT_BLOCK)
            if not chunk:
                break
            inflated += len(chunk)
            if gz and (bomb := limits.inflation_issue(inflated, raw.tell() - first_byte, f"{path.name}:{number}")):
                raise Rejected([bomb])
            data = rest + chunk
            cut = data.rfind(b"\n") + 1
            if not cut:
                rest = data
                if too_long := limits.line_issue(len(rest), f"{path.name}:{number}"):
                    raise Rejected([too_long])
                continue
            block, rest = data[:cut], data[cut:]
            yield number, block, raw.tell()
            number += block.count(b"\n")
        if rest:
            yield number, rest + b"\n", raw.tell()


def _info(info: str, key: str) -> str | None:
    """One INFO value from the raw INFO column (None when absent)."""
    prefix = key + "="
    for item in info.split(";"):
        if item.startswith(prefix):
            return item[len(prefix) :]
    return None


def _info_int(info: str, key: str, i: int = 0) -> int | None:
    value = _info(info, key)
    if value is None:
        return None
    parts = value.split(",")
    try:
        return int(parts[i]) if i < len(parts) else None
    except ValueError:
        return None


class _SkipRecord(GatewayError):
    """An invalid record that is skipped (--skip-invalid) or only listed (validation): the reader goes on."""


@dataclass(frozen=True)
class _Source:
    """The opened file and what its header said, as the record reader needs them."""

    vcf: object  # cyvcf2.VCF (read for BCF records)
    path: Path
    label: str
    kind: str  # "vcf" | "bcf"
    n_header: int
    has_gt: bool
    ann_fmt: object  # annotations.AnnotationFormat | None
    contigs: dict
    watch: _StderrWatch
    region: Region | None = None


@dataclass(slots=True)
class _Record:
    """One record's checked fields, handed from the checks to the writer of its alleles."""

    number: int
    loc: str
    chrom: str
    pos: int
    ident: str
    ref: str  # upper case
    alts: list[str]
    info: str
    an: int = 0
    batch_calls: tuple | None = None  # from decode_biallelic_batch
    alleles: np.ndarray | None = None  # samples x ploidy allele indexes, from decode_calls_counted
    others: np.ndarray | None = None  # the sample index of each row of `alleles`
    odd_calls: tuple | None = None


class _RecordReader:
    """Reads every record after the header: checks it, splits its alleles and hands rows to the builder.

    State is what one pass through the file accumulates: the next variant id, the rows waiting for the
    next flush, what has been seen of the order of contigs and positions, and how often each warning fired.
    """

    def __init__(self, source: _Source, result: ReadResult, builder: VersionBuilder | None, options: ReadOptions):
        self.src = source
        self.result = result
        self.issues = result.issues
        self.builder = builder
        self.options = options
        self.n_samples = len(result.samples)
        self.vid = 0
        self.rows: list[tuple] = []
        self.carrier_rows: list[tuple] = []
        self.ann_rows: list[tuple] = []
        self.site_rows: list[tuple] = []  # layout.SITE_COLUMNS
        self.seen_keys: set[str] = set()
        self.last_pos: tuple[str | None, int] = (None, -1)
        self.seen_chroms: set[str] = set()
        self.undeclared: set[str] = set()
        self.warned: dict[str, int] = {}
        self.total_bytes = max(os.path.getsize(source.path), 1)
        # vid → line (or BCF record) number, to locate far duplicates
        self.line_of = result.line_of = array("I", [0])
        self.fast_width = 4 * self.n_samples - 1  # "0|1\t" per sample, GT only
        self.batch_lines = max(1, min(BATCH_LINES, BATCH_CELLS // max(self.n_samples, 1)))
        self.pending_bytes = 0  # carrier blobs waiting for the next flush
        self.no_calls = (np.arange(self.n_samples, dtype="<u4"), np.zeros(self.n_samples, dtype=np.uint8))

    # --- issues ---

    def where(self, number: int) -> str:
        return f"{self.src.label}:{number}" if self.src.kind == "vcf" else f"{self.src.label}:record {number}"

    def note(self, issue: Issue) -> None:
        issues = self.issues
        if len(issues) < MAX_ISSUES:
            issues.append(issue)
        elif len(issues) == MAX_ISSUES:
            issues.append(
                Issue.warning("vcf-too-many-issues", f"more than {MAX_ISSUES} issues; the rest are not listed")
            )

    def warn_once(self, code: str, message: str, loc: str) -> None:
        """The first 20 of a kind are listed, the rest counted (see run())."""
        self.warned[code] = self.warned.get(code, 0) + 1
        if self.warned[code] <= 20:
            self.note(Issue.warning(code, message, loc))

    def skip(self, code: str, message: str, loc: str):
        """An invalid record: listed (validation), skipped with a warning (--skip-invalid) or the file refused."""
        if self.options.validate_only:
            self.note(Issue.error(code, message, loc))
        elif self.options.skip_invalid:
            self.note(Issue.warning(code, f"skipped: {message}", loc))
        else:
            raise Rejected([*self.issues, Issue.error(code, message, loc)])
        raise _SkipRecord

    def note_undeclared(self, chrom_raw: str, loc: str) -> None:
        if self.src.contigs and chrom_raw not in self.src.contigs and chrom_raw not in self.undeclared:
            self.undeclared.add(chrom_raw)
            self.note(
                Issue.warning("vcf-contig-undeclared", f"contig {chrom_raw!r} is not declared in the header", loc)
            )

    def flush(self) -> None:
        if self.builder is not None and (self.rows or self.site_rows):
            # handed to the writer thread: fresh lists from here
            self.builder.add_variants(self.rows, self.carrier_rows, self.ann_rows, self.site_rows)
        self.rows, self.carrier_rows, self.ann_rows, self.site_rows = [], [], [], []
        self.pending_bytes = 0

    # --- the pass ---

    def run(self) -> None:
        result, progress = self.result, self.options.progress
        number = self.src.n_header
        lines = self.lines()
        while True:
            try:
                number, line, done_bytes, fields, batch_calls = next(lines)
            except StopIteration:
                break
            except (OSError, EOFError, zlib.error) as exc:
                raise Rejected(
                    [
                        *self.issues,
                        Issue.error(
                            "vcf-compression", f"the file is truncated or corrupt: {exc}", self.where(number + 1)
                        ),
                    ]
                ) from None
            if line is None:  # a block of simple sites, `number` being its last line
                self.store_simple(number - len(fields) + 1, fields)
                if progress is not None:
                    progress(result.records_read, min(99, done_bytes * 100 // self.total_bytes))
                if len(self.site_rows) >= BATCH_ROWS:
                    self.flush()
                continue
            result.records_read += 1
            if progress is not None and result.records_read % 8192 == 0:
                progress(result.records_read, min(99, done_bytes * 100 // self.total_bytes) if done_bytes else 0)
            if not line.strip():
                result.records_read -= 1
                continue
            try:
                record = self.check(number, fields, batch_calls)
            except _SkipRecord:
                continue
            if record is not None:
                self.write_alleles(record)
            if len(self.rows) >= BATCH_ROWS or self.pending_bytes >= FLUSH_BYTES:
                self.flush()
        self.flush()
        for code, n in self.warned.items():
            if n > 20:
                self.note(Issue.warning(code, f"{n - 20} more records like this were not listed"))
        if progress is not None:
            progress(result.records_read, 100)

    # --- reading lines ---

    def lines(self):
        """(number, line, bytes read, fields, decoded calls): lines in blocks, with the GT-only biallelic records
        of each block decoded together; a sites-only text file goes by runs of simple records instead."""
        src = self.src
        if src.kind == "vcf" and not self.n_samples:
            yield from self.sites_blocks()
            return
        block: list = []
        for item in _record_lines(src.path, src.kind, src.vcf, src.n_header, src.watch, src.region):
            block.append(item)
            if len(block) == self.batch_lines:
                yield from self.decode_block(block)
                block = []
        yield from self.decode_block(block)

    def decode_block(self, block: list) -> list:
        prepared = []
        eligible = []
        has_gt, fast_width = self.src.has_gt, self.fast_width
        for number, line, done in block:
            fields = line.rstrip(b"\r\n").split(b"\t", 9)
            fast = (
                has_gt
                and len(fields) == 10
                and fields[8] == b"GT"
                and len(fields[9]) == fast_width
                and b"," not in fields[4]
            )
            if fast:
                eligible.append(len(prepared))
            prepared.append([number, line, done, fields, None])
        if eligible and self.n_samples:
            decoded = decode_biallelic_batch([prepared[i][3][9] for i in eligible], self.n_samples, HET, HOM)
            for i, calls in zip(eligible, decoded, strict=True):
                prepared[i][4] = calls
        return prepared

    def sites_blocks(self):
        """A sites-only text VCF in blocks of lines. Runs of simple records (one base-only ALT, no annotations, one
        chromosome, ascending positions) are yielded whole for store_simple; every other line alone, as usual."""
        ann_fmt = self.src.ann_fmt
        ann_tag = f"{ann_fmt.info_id}=" if ann_fmt else None
        normalised: dict[str, str] = {}
        for first, block, done in _text_blocks(self.src.path, self.src.n_header, self.src.region):
            n_lines = block.count(b"\n")
            if not block.isascii():
                for number, line in enumerate(block.split(b"\n")[:n_lines], start=first):
                    yield number, line, done, line.rstrip(b"\r\n").split(b"\t", 9), None
                continue
            text = block.decode("ascii")
            records = _SITE_LINE.findall(text)
            for run in _simple_runs(records, ann_tag is not None and ann_tag in text, ann_tag):
                if isinstance(run, int):
                    r = records[run]
                    line = (r[8] if not r[0] else "\t".join(r[:8])).encode()
                    yield first + run, line, done, line.rstrip(b"\r\n").split(b"\t", 9), None
                    continue
                i, j = run
                chrom = records[i][0]
                if chrom not in normalised:
                    normalised[chrom] = normalise_reference_name(chrom)
                if normalised[chrom] == self.last_pos[0] and int(records[i][1]) <= self.last_pos[1]:
                    # Not after the record before it (read at run time): the per-line path warns or drops.
                    line = "\t".join(records[i][:8]).encode()
                    yield first + i, line, done, line.split(b"\t", 9), None
                    i += 1
                if i < j:
                    yield first + j - 1, None, done, records[i:j], None

    # --- simple sites, column by column ---

    def store_simple(self, first: int, records: list[tuple[str, ...]]) -> None:
        """Write a block of simple site records (checked by _SITE_LINE and _simple_runs) column by column."""
        n = len(records)
        chrom_raw = records[0][0]
        chrom = normalise_reference_name(chrom_raw)
        self.note_undeclared(chrom_raw, self.where(first))
        if chrom != self.last_pos[0] and chrom in self.seen_chroms:
            self.warn_once("vcf-unsorted", "records of a contig are not contiguous", self.where(first))
        self.seen_chroms.add(chrom)
        _, pos_text, ids, refs, alts, _, _, infos, _ = zip(*records, strict=True)
        starts = [int(p) - 1 for p in pos_text]
        refs = [r.upper() for r in refs]
        alts = [a.upper() for a in alts]
        ends = [st + len(r) for st, r in zip(starts, refs, strict=True)]
        keys = [f"{chrom}-{st + 1}-{r}-{a}" for st, r, a in zip(starts, refs, alts, strict=True)]
        classes, lengths = [], []
        for r, a in zip(refs, alts, strict=True):
            if len(r) == 1 and len(a) == 1:
                classes.append("SNP")
                lengths.append(1)
            else:
                classes.append(variant_class(r, a))
                lengths.append(variant_length(r, a, 0, 0))
        long_keys = [i for i, k in enumerate(keys) if len(refs[i]) + len(alts[i]) > LONG_KEY]
        for i in long_keys:
            keys[i] = _vkey(chrom, starts[i] + 1, refs[i], alts[i], ends[i])
        ac = [0] * n
        an = [0] * n
        for i, info in enumerate(infos):
            if "AC=" in info or "AN=" in info:  # allele counts of a sites-only file come from INFO
                ac[i] = _info_int(info, "AC") or 0
                an[i] = _info_int(info, "AN") or 0
        id_values = [None if i == "." else i.replace(";", "|") for i in ids]
        vids = range(self.vid + 1, self.vid + n + 1)
        self.site_rows += zip(
            vids, keys, [chrom] * n, starts, ends, refs, alts, classes, lengths, ac, an, id_values, strict=True
        )
        self.line_of.extend(range(first, first + n))
        self.vid += n
        self.last_pos = (chrom, starts[-1] + 1)
        self.seen_keys.clear()
        self.seen_keys.add(keys[-1])
        self.result.records_read += n
        self.result.records_written += n

    # --- one record at a time ---

    def check(self, number: int, fields: list, batch_calls: tuple | None) -> _Record | None:
        """The record's fields checked and its genotypes decoded; None for a reference-only site (nothing to store).
        An invalid record raises _SkipRecord (or Rejected, see skip())."""
        loc = self.where(number)
        n_samples = self.n_samples
        if len(fields) < 8 or (n_samples and len(fields) < 10):
            raise Rejected(
                [
                    *self.issues,
                    Issue.error(
                        "vcf-columns",
                        f"{len(fields)} columns; the #CHROM line has {9 + n_samples if n_samples else 8}",
                        loc,
                    ),
                ]
            )
        try:
            chrom_raw, ident, ref, alt_text, info = (fields[i].decode("ascii") for i in (0, 2, 3, 4, 7))
            pos = int(fields[1])
        except (UnicodeDecodeError, ValueError):
            self.skip("vcf-record", "CHROM, POS, REF, ALT or INFO is not ASCII text, or POS is not a number", loc)
        if pos < 1:
            self.skip("vcf-pos", f"POS must be ≥ 1, not {pos}", loc)
        if not _BASES.match(ref):
            self.skip("vcf-ref", f"REF {ref[:50]!r} has characters other than A, C, G, T, N", loc)
        alts = [] if alt_text == "." else alt_text.split(",")
        bad_alt = next(
            (a for a in alts if not (_ALT_BASES.match(a) or _SYMBOLIC.match(a) or a == "*" or _BREAKEND.search(a))),
            None,
        )
        if bad_alt is not None:
            self.skip("vcf-alt", f"ALT {bad_alt[:50]!r} is neither bases, a symbolic allele, * nor a breakend", loc)
        self.note_undeclared(chrom_raw, loc)
        record = _Record(number, loc, "", pos, ident, ref.upper(), alts, info)
        record.odd_calls = self.no_calls if self.src.has_gt else None  # no GT: no sample's alleles are known
        if batch_calls is not None:
            record.batch_calls = batch_calls
            record.odd_calls = batch_calls[5]
            if batch_calls[4] > len(alts):
                self.skip("vcf-gt", f"a GT names allele {batch_calls[4]} but the record has {len(alts)} ALT(s)", loc)
        elif self.src.has_gt:
            self.decode_genotypes(record, fields)
        record.chrom = normalise_reference_name(chrom_raw)
        self.track_order(record.chrom, pos, loc)
        if not alts:
            return None  # a reference-only site: nothing to store
        if batch_calls is not None:
            record.an = batch_calls[0]
        elif record.alleles is None:
            record.an = (_info_int(info, "AN") or 0) if "AN=" in info else 0
        if "END=" in info and any(a.startswith("<") for a in alts):
            info_end = _info_int(info, "END")
            if info_end is not None and info_end < pos:  # range queries rely on end > start
                self.skip("vcf-end", f"END {info_end} is before POS {pos}", loc)
        return record

    def decode_genotypes(self, record: _Record, fields: list) -> None:
        """The per-record GT path (any ploidy, any FORMAT): sets alleles, others, an and odd_calls."""
        fmt = fields[8]
        gt_index = 0 if fmt[:2] == b"GT" and fmt[2:3] in (b"", b":") else None
        if gt_index is None:
            keys = fmt.split(b":")
            gt_index = keys.index(b"GT") if b"GT" in keys else None
        if gt_index is None:
            return
        try:
            others, alleles, an, odd_calls = decode_calls_counted(fields[9], self.n_samples, gt_index)
        except GenotypeError as exc:
            if "sample columns" in str(exc):
                raise Rejected([*self.issues, Issue.error("vcf-columns", str(exc), record.loc)]) from None
            self.skip("vcf-gt", str(exc), record.loc)
        if alleles.size and int(alleles.max()) > len(record.alts):
            self.skip(
                "vcf-gt",
                f"a GT names allele {int(alleles.max())} but the record has {len(record.alts)} ALT(s)",
                record.loc,
            )
        record.others, record.alleles, record.an, record.odd_calls = others, alleles, an, odd_calls

    def track_order(self, chrom: str, pos: int, loc: str) -> None:
        """Warn (once per kind) about unsorted input; forget the keys seen at the previous position."""
        last_chrom, last_pos = self.last_pos
        if chrom != last_chrom:
            if chrom in self.seen_chroms:
                self.warn_once("vcf-unsorted", "records of a contig are not contiguous", loc)
            self.seen_chroms.add(chrom)
            self.seen_keys.clear()
        elif pos != last_pos:
            if pos < last_pos:
                self.warn_once("vcf-unsorted", "records are not sorted by position", loc)
            self.seen_keys.clear()
        self.last_pos = (chrom, pos)

    def write_alleles(self, record: _Record) -> None:
        """One stored variant per ALT allele (multi-allelic records are split)."""
        ann_fmt = self.src.ann_fmt
        info, ref, alts, loc = record.info, record.ref, record.alts, record.loc
        ann_value = _info(info, ann_fmt.info_id) if ann_fmt and ann_fmt.info_id in info else None
        columns = None
        if record.batch_calls is None and record.alleles is not None:
            columns = [record.alleles[:, j] for j in range(record.alleles.shape[1])]
        start = record.pos - 1
        written_here = 0
        for a, alt in enumerate(alts, start=1):
            if alt == "*":
                continue
            symbolic = alt.startswith("<")
            if not symbolic and _BREAKEND.search(alt):
                self.warn_once("vcf-breakend-skipped", "breakend alleles are not supported and were skipped", loc)
                continue
            svlen = None
            if symbolic:
                svlen = _info_int(info, "SVLEN", a - 1) if "SVLEN=" in info else None
                end = _symbolic_end(info, start, ref, svlen)
            else:
                end = start + len(ref)
            alt_u = alt if symbolic else alt.upper()
            vkey = _vkey(record.chrom, record.pos, ref, alt_u, end)
            if vkey in self.seen_keys:
                self.warn_once(
                    "vcf-duplicate-variant", f"variant {vkey} appears more than once; the first is kept", loc
                )
                continue
            self.seen_keys.add(vkey)
            self.vid += 1
            vid = self.vid
            if record.odd_calls is not None and self.builder is not None:
                self.builder.add_called(vid, *record.odd_calls)
            self.line_of.append(record.number)
            ac, n_carriers = self.carriers(record, columns, vid, a)
            genes = changes = effects = ()
            if ann_value:
                genes, changes, effects = parse_annotations(ann_fmt, ann_value, ref, alt_u, len(alts))
                self.add_annotation_rows(vid, genes, changes)
            self.rows.append(
                (
                    vid, vkey, record.chrom, start, end, ref, alt_u, variant_class(ref, alt_u),
                    variant_length(ref, alt_u, start, end, svlen), ac, record.an, n_carriers,
                    "|".join(genes) or None, "|".join(changes) or None, "|".join(effects) or None,
                    record.ident.replace(";", "|") if record.ident != "." else None,
                )
            )  # fmt: skip
            written_here += 1
        self.result.records_written += written_here
        if written_here > 1:
            self.result.split += 1

    def carriers(self, record: _Record, columns: list | None, vid: int, a: int) -> tuple[int, int]:
        """(allele count, carriers) of allele `a`; the carrier set and zygosities are queued for the store."""
        if record.batch_calls is not None:
            _, ac, carrier_idx, zyg, _, _ = record.batch_calls
            n_carriers = len(carrier_idx)
            if n_carriers:
                if self.builder is not None:
                    self.builder.add_carriers(vid, carrier_idx, zyg)
                self.queue_carriers(vid, carrier_idx, zyg)
            return ac, n_carriers
        if columns is not None:
            hit = columns[0] == a
            for col in columns[1:]:
                hit |= col == a
            rows_hit = np.flatnonzero(hit)
            carrier_idx = record.others[rows_hit]
            n_carriers = len(carrier_idx)
            if not n_carriers:
                return 0, 0
            carried = record.alleles[rows_hit]
            c_counts = (carried == a).sum(axis=1)
            c_ploidy = (carried != -2).sum(axis=1)
            zyg = np.where(c_ploidy == 1, HEMI, np.where(c_counts >= c_ploidy, HOM, HET)).astype(np.uint8)
            if self.builder is not None:
                self.builder.add_carriers(vid, carrier_idx, zyg)
            self.queue_carriers(vid, carrier_idx, zyg)
            return int(c_counts.sum()), n_carriers
        info = record.info
        return ((_info_int(info, "AC", a - 1) or 0) if "AC=" in info else 0), 0

    def queue_carriers(self, vid: int, carrier_idx: np.ndarray, zygosity: np.ndarray) -> None:
        row = (vid, encode_set(carrier_idx, self.n_samples), pack_codes(zygosity))
        self.carrier_rows.append(row)
        self.pending_bytes += len(row[1]) + len(row[2])

    def add_annotation_rows(self, vid: int, genes, changes) -> None:
        """(gene, change, vid) for the gene/HGVS index; a protein change also under its short form (p.V600E)."""
        for gene in genes or [""]:
            for change in changes or [""]:
                if gene or change:
                    self.ann_rows.append((gene, change, vid))
                    short = short_protein_change(change) if change else None
                    if short:
                        self.ann_rows.append((gene, short, vid))


def _symbolic_end(info: str, start: int, ref: str, svlen: int | None) -> int:
    """END is authoritative for symbolic alleles (VCF 4.3); else POS + |SVLEN|; else the span of REF."""
    info_end = _info_int(info, "END")
    if info_end is not None:
        return info_end
    if svlen:
        return start + 1 + abs(svlen)
    return start + len(ref)


def _simple_runs(records: list[tuple[str, ...]], check_ann: bool, ann_tag: str | None) -> list:
    """Runs (i, j) of simple records in ascending order on one chromosome; an int marks a line for the
    per-line path (not a simple record, or annotated)."""
    runs: list[tuple[int, int] | int] = []
    run_start, prev_chrom, prev_pos = -1, None, 0
    for i, r in enumerate(records):
        chrom = r[0]
        if not chrom or (check_ann and ann_tag in r[7]):
            if run_start >= 0:
                runs.append((run_start, i))
            runs.append(i)
            run_start, prev_chrom = -1, None
            continue
        pos = int(r[1])
        if run_start >= 0 and (chrom != prev_chrom or pos <= prev_pos):
            runs.append((run_start, i))
            run_start = -1
        if run_start < 0:
            run_start = i
        prev_chrom, prev_pos = chrom, pos
    if run_start >= 0:
        runs.append((run_start, len(records)))
    return runs
