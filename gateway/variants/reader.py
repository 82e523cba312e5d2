"""Reading, validating and decoding a VCF/BCF: the part of the ingest that touches htslib.

Runs inside a child process (see ingest.py): htslib may print to stderr, abort or
crash on hostile input, and none of that may reach the server. Records are read with
cyvcf2 (htslib underneath) because it hands genotypes over as one numpy array per
record; everything per sample is vectorised.

Coordinates written to the store are Beacon's: start = POS - 1, end = start + len(REF)
(or END for symbolic alleles), 0-based half-open.
"""

from __future__ import annotations

import gzip
import hashlib
import os
import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from gateway.issues import Issue

from .annotations import annotation_format, parse_annotations, short_protein_change
from .layout import HEMI, HET, HOM, VersionBuilder
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
_CONTIG = re.compile(r"^##contig=<(.*)>$")
_VERSION = re.compile(r"^##fileformat=VCFv(\d+\.\d+)$")
MAX_ISSUES = 1000
BATCH_ROWS = 20_000
LONG_KEY = 48  # alleles longer than this are hashed in variant keys (URLs stay short)


class Rejected(Exception):
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


def _header_lines(path: Path) -> tuple[str, list[str]]:
    """("vcf" | "bcf", the header lines as written in the file; [] for BCF)."""
    with open(path, "rb") as raw:
        magic = raw.read(4)
    if magic[:3] == b"BCF":
        return "bcf", []
    opener = gzip.open if magic[:2] == b"\x1f\x8b" else open
    lines: list[str] = []
    with opener(path, "rb") as f:
        for raw_line in f:
            if not raw_line.startswith(b"#"):
                break
            lines.append(raw_line.decode("utf-8", "replace").rstrip("\r\n"))
            if raw_line.startswith(b"#CHROM"):
                break
    if magic[:2] == b"\x1f\x8b" and lines:
        with gzip.open(path, "rb") as f:
            if f.read(4) == b"BCF\x02":
                return "bcf", []
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


def _bytes_progress(path: Path) -> Callable[[], int]:
    """How far htslib has read the file, from the offset of its file descriptor (Linux /proc)."""
    target = os.path.realpath(path)
    fds = []
    try:
        for fd in os.listdir("/proc/self/fd"):
            try:
                if os.readlink(f"/proc/self/fd/{fd}") == target:
                    fds.append(int(fd))
            except OSError:
                continue
    except OSError:
        return lambda: 0
    if not fds:
        return lambda: 0
    fd = fds[-1]

    def offset() -> int:
        try:
            return os.lseek(fd, 0, os.SEEK_CUR)
        except OSError:
            return 0

    return offset


def read_vcf(
    path: Path,
    *,
    dataset_id: str | None,
    data_dir: Path | None,
    assembly: str | None,
    skip_invalid: bool,
    validate_only: bool,
    link: Callable[[list[str]], list[tuple[str | None, str | None]]] | None = None,
    progress: Callable[[int, int], None] | None = None,
    stderr_path: str | None = None,
) -> ReadResult:
    """Validate (and unless `validate_only`, write a build file of) one VCF; raises Rejected."""
    import cyvcf2  # imported here: only the child process loads htslib

    path = Path(path)
    label = path.name
    result = ReadResult()
    issues = result.issues
    watch = _StderrWatch(stderr_path)

    def htslib_detail() -> str:
        messages = watch.new_messages()
        return f" (htslib: {messages[-1][:300]})" if messages else ""

    try:
        kind, header = _header_lines(path)
    except (OSError, EOFError, gzip.BadGzipFile) as exc:
        raise Rejected([Issue.error("vcf-unreadable", f"cannot read the file: {exc}", f"{label}:1")]) from None
    try:
        vcf = cyvcf2.VCF(str(path), lazy=True)
    except Exception as exc:  # htslib refused the header or the compression
        raise Rejected(
            [Issue.error("vcf-header", f"cannot parse the VCF header: {exc}{htslib_detail()}", f"{label}:1")]
        ) from None
    samples = list(vcf.samples)
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
    first_line = len(header) + 1 if kind == "vcf" else None

    builder = None if validate_only else VersionBuilder(data_dir, dataset_id)
    try:
        if builder is not None:
            links = link(samples) if link else [(None, None)] * len(samples)
            builder.add_samples([(i, name, *links[i]) for i, name in enumerate(samples)])
        result_counts = _read_records(
            vcf,
            path,
            label,
            first_line,
            result,
            builder,
            has_gt,
            ann_fmt,
            contigs,
            skip_invalid,
            validate_only,
            progress,
            watch,
        )
        if builder is not None:
            meta = {
                "dataset_id": dataset_id,
                "assembly": asm or "",
                "source": label,
                "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                "records_read": str(result.records_read),
                "records_written": str(result.records_written),
                "samples": str(len(samples)),
            }
            result.build_path = str(builder.finish(meta))
        del result_counts
    except BaseException:
        if builder is not None:
            builder.abort()
        raise
    finally:
        vcf.close()
    return result


def _read_records(
    vcf,
    path,
    label,
    first_line,
    result,
    builder,
    has_gt,
    ann_fmt,
    contigs,
    skip_invalid,
    validate_only,
    progress,
    watch,
):
    issues = result.issues
    n_issues_cap = MAX_ISSUES
    vid = 0
    rows: list[tuple] = []
    carrier_rows: list[tuple] = []
    ann_rows: list[tuple] = []
    pair_samples: list[np.ndarray] = []
    pair_vids: list[np.ndarray] = []
    seen_keys: set[str] = set()
    last_pos = (None, -1)
    seen_chroms: set[str] = set()
    undeclared: set[str] = set()
    warned: dict[str, int] = {}
    bytes_done = _bytes_progress(path)
    total_bytes = max(os.path.getsize(path), 1)
    index = 0
    iterator = iter(vcf)

    def where(i: int) -> str:
        return f"{label}:{first_line + i}" if first_line else f"{label}:record {i + 1}"

    def note(issue: Issue) -> None:
        if len(issues) < n_issues_cap:
            issues.append(issue)
        elif len(issues) == n_issues_cap:
            issues.append(
                Issue.warning("vcf-too-many-issues", f"more than {n_issues_cap} issues; the rest are not listed")
            )

    def warn_once(code: str, message: str, loc: str) -> None:
        warned[code] = warned.get(code, 0) + 1
        if warned[code] <= 20:
            note(Issue.warning(code, message, loc))

    def invalid(code: str, message: str, loc: str) -> None:
        if validate_only:
            note(Issue.error(code, message, loc))
        elif skip_invalid:
            note(Issue.warning(code, f"skipped: {message}", loc))
        else:
            raise Rejected([*issues, Issue.error(code, message, loc)])

    def flush() -> None:
        if builder is not None and rows:
            builder.add_variants(rows, carrier_rows, ann_rows)
            if pair_samples:
                builder.add_carrier_pairs(np.concatenate(pair_samples), np.concatenate(pair_vids))
        rows.clear()
        carrier_rows.clear()
        ann_rows.clear()
        pair_samples.clear()
        pair_vids.clear()

    while True:
        try:
            v = next(iterator)
        except StopIteration:
            break
        except Exception as exc:
            raise Rejected(
                [*issues, Issue.error("vcf-record", f"unreadable record: {exc}{_detail(watch)}", where(index))]
            ) from None
        loc = where(index)
        index += 1
        result.records_read += 1
        for message in watch.new_messages():
            if message.startswith("[E::"):
                invalid("vcf-htslib", message[:300], loc)
            else:
                warn_once("vcf-htslib-warning", message[:300], loc)
        chrom_raw = v.CHROM
        pos = v.POS
        ref = v.REF
        alts = v.ALT
        if pos < 1:
            invalid("vcf-pos", f"POS must be ≥ 1, not {pos}", loc)
            continue
        if not _BASES.match(ref):
            invalid("vcf-ref", f"REF {ref[:50]!r} has characters other than A, C, G, T, N", loc)
            continue
        bad_alt = next(
            (a for a in alts if not (_ALT_BASES.match(a) or _SYMBOLIC.match(a) or a == "*" or _BREAKEND.search(a))),
            None,
        )
        if bad_alt is not None:
            invalid("vcf-alt", f"ALT {bad_alt[:50]!r} is neither bases, a symbolic allele, * nor a breakend", loc)
            continue
        if contigs and chrom_raw not in contigs and chrom_raw not in undeclared:
            undeclared.add(chrom_raw)
            note(Issue.warning("vcf-contig-undeclared", f"contig {chrom_raw!r} is not declared in the header", loc))
        alleles = None
        if has_gt:
            try:
                gt = v.genotype
            except Exception:  # cyvcf2 raises for a record whose FORMAT has no GT
                gt = None
            if gt is not None:
                arr = gt.array()
                alleles = arr[:, :-1]
                if alleles.size and alleles.max() > len(alts):
                    invalid(
                        "vcf-gt", f"a GT names allele {int(alleles.max())} but the record has {len(alts)} ALT(s)", loc
                    )
                    continue
        chrom = normalise_reference_name(chrom_raw)
        if chrom != last_pos[0]:
            if chrom in seen_chroms:
                warn_once("vcf-unsorted", "records of a contig are not contiguous", loc)
            seen_chroms.add(chrom)
            seen_keys.clear()
        elif pos != last_pos[1]:
            if pos < last_pos[1]:
                warn_once("vcf-unsorted", "records are not sorted by position", loc)
            seen_keys.clear()
        last_pos = (chrom, pos)
        if not alts:
            continue  # a reference-only site: nothing to store
        start = pos - 1
        if alleles is not None:
            an = int(np.count_nonzero(alleles >= 0))
        else:
            an = _info_int(v, "AN")
        ann_value = v.INFO.get(ann_fmt.info_id) if ann_fmt else None
        written_here = 0
        for a, alt in enumerate(alts, start=1):
            if alt == "*":
                continue
            if _BREAKEND.search(alt) and not _SYMBOLIC.match(alt):
                warn_once("vcf-breakend-skipped", "breakend alleles are not supported and were skipped", loc)
                continue
            symbolic = alt.startswith("<")
            svlen = None
            if symbolic:
                # INFO END is authoritative (VCF 4.3); htslib versions differ on deriving it from SVLEN.
                info_end = v.INFO.get("END")
                end = int(info_end) if isinstance(info_end, int) else int(v.end)
                raw_svlen = v.INFO.get("SVLEN")
                if isinstance(raw_svlen, tuple):
                    raw_svlen = raw_svlen[a - 1] if a - 1 < len(raw_svlen) else None
                svlen = int(raw_svlen) if raw_svlen not in (None, ".") else None
                if end <= start + len(ref) - 1 and svlen:
                    end = start + 1 + abs(svlen)
            else:
                end = start + len(ref)
            ref_u = ref.upper()
            alt_u = alt if symbolic else alt.upper()
            vkey = _vkey(chrom, pos, ref_u, alt_u, end)
            if vkey in seen_keys:
                warn_once("vcf-duplicate-variant", f"variant {vkey} appears more than once; the first is kept", loc)
                continue
            seen_keys.add(vkey)
            vid += 1
            if alleles is not None:
                # Full-width passes only for the allele match; zygosity is worked out on the carriers alone.
                counts = (alleles == a).sum(axis=1)
                carrier_idx = np.flatnonzero(counts).astype("<u4")
                n_carriers = len(carrier_idx)
                if n_carriers:
                    c_counts = counts[carrier_idx]
                    c_ploidy = (alleles[carrier_idx] != -2).sum(axis=1)
                    zyg = np.where(c_ploidy == 1, HEMI, np.where(c_counts >= c_ploidy, HOM, HET)).astype(np.uint8)
                    ac = int(c_counts.sum())
                    pair_samples.append(carrier_idx)
                    pair_vids.append(np.full(n_carriers, vid, dtype="<u4"))
                    carrier_rows.append((vid, carrier_idx.tobytes(), zyg.tobytes()))
                else:
                    ac = 0
                    carrier_rows.append((vid, b"", b""))
            else:
                ac = _info_int(v, "AC", a - 1)
                n_carriers = 0
                carrier_rows.append((vid, b"", b""))
            genes = changes = effects = ()
            if ann_value:
                genes, changes, effects = parse_annotations(ann_fmt, ann_value, ref_u, alt_u, len(alts))
                for gene in genes or [""]:
                    for change in changes or [""]:
                        if gene or change:
                            ann_rows.append((gene, change, vid))
                            short = short_protein_change(change) if change else None
                            if short:
                                ann_rows.append((gene, short, vid))
            ids = v.ID
            rows.append(
                (
                    vid, vkey, chrom, start, end, ref_u, alt_u, variant_class(ref_u, alt_u),
                    variant_length(ref_u, alt_u, start, end, svlen), ac, an, n_carriers,
                    "|".join(genes) or None, "|".join(changes) or None, "|".join(effects) or None,
                    ids.replace(";", "|") if ids else None,
                )
            )  # fmt: skip
            written_here += 1
        result.records_written += written_here
        if written_here > 1:
            result.split += 1
        if len(rows) >= BATCH_ROWS:
            flush()
        if progress is not None and index % 8192 == 0:
            progress(index, min(100, bytes_done() * 100 // total_bytes))
    for message in watch.new_messages():
        if message.startswith("[E::"):
            raise Rejected([*issues, Issue.error("vcf-htslib", message[:300], where(index))])
    flush()
    for code, n in warned.items():
        if n > 20:
            note(Issue.warning(code, f"{n - 20} more records like this were not listed"))
    if progress is not None:
        progress(index, 100)
    return index


def _detail(watch: _StderrWatch) -> str:
    messages = watch.new_messages()
    return f" (htslib: {messages[-1][:300]})" if messages else ""


def _info_int(v, key: str, i: int = 0) -> int:
    value = v.INFO.get(key)
    if isinstance(value, tuple):
        value = value[i] if i < len(value) else None
    try:
        return int(value) if value is not None else 0
    except (TypeError, ValueError):
        return 0
