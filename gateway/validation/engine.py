"""One engine behind `gateway validate` and `POST /validate`: read a file, tell its kind, run the right validator.

Kinds: fhir (a resource or a Bundle), phenopacket, family, cohort (Phenopacket v2), beacon-request (a POST body),
beacon-response (any endpoint, any granularity), vcf (VCF or BCF, plain or bgzipped). JSON, YAML and, for
phenopackets, protobuf binary are read. Every function here returns issues, never raises on bad input.
"""

from __future__ import annotations

import json
import os
import tempfile
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import cache
from pathlib import Path
from typing import Any

from gateway.issues import Issue, Report
from gateway.jsonio import NDJSON_MAX_BYTES, JSONInputError, loads_strict
from gateway.yamlio import load_bounded, plain_numbers

KINDS = ("fhir", "phenopacket", "family", "cohort", "beacon-request", "beacon-response", "vcf")
PHENOPACKET_KINDS = ("phenopacket", "family", "cohort")
VCF_SUFFIXES = (".vcf", ".vcf.gz", ".vcf.bgz", ".bcf")
_VCF_MAGIC = (b"##fileformat=VCF", b"BCF\x02", b"\x1f\x8b")  # plain, BCF, gzip/BGZF
YAML_SUFFIXES = (".yaml", ".yml")
NDJSON_SUFFIXES = (".ndjson", ".ndjson.gz")  # FHIR Bulk Data: a resource per line (gateway.services.fhir_ndjson)
PROTOBUF_SUFFIXES = (".pb", ".bin", ".binpb", ".pbf")


@dataclass(frozen=True)
class Options:
    """What the user asked for beyond the defaults (picklable: sent to worker processes)."""

    kind: str | None = None  # force a kind (one of KINDS); None: detect
    profile: str | None = None  # national profile for FHIR (mappings/profiles/NAME.yaml)
    organ_systems: tuple[str, ...] = ()  # HPO terms each phenopacket must annotate (observed or excluded)
    require: tuple[str, ...] = ()  # extra JSON Schema files each phenopacket must satisfy
    hpo: bool = True  # the HPO checks (unknown / obsolete ids, annotation propagation)
    hpo_file: str | None = None  # an obographs hp.json instead of the HPO bundled with hpo3
    max_depth: int = 64


@dataclass
class FileResult:
    file: str
    kind: str
    report: Report = field(default_factory=Report)

    @property
    def valid(self) -> bool:
        return self.report.ok

    def to_dict(self) -> dict:
        return {
            "file": self.file,
            "kind": self.kind,
            "valid": self.valid,
            "issues": [
                {"severity": i.severity.value, "code": i.code, "message": i.message, "location": i.location}
                for i in self.report
            ],
        }


# --- kind detection --------------------------------------------------------------------------------------------


def detect_kind(doc: Any) -> str | None:
    """The kind of a parsed JSON/YAML document, or None when it is none of the known ones."""
    from gateway.validation.beacon import is_beacon_request, is_beacon_response
    from gateway.validation.phenopacket import detect_kind as phenopacket_kind

    if not isinstance(doc, dict):
        return None
    if isinstance(doc.get("resourceType"), str):
        return "fhir"
    if is_beacon_response(doc):
        return "beacon-response"
    if is_beacon_request(doc):
        return "beacon-request"
    if doc.keys() & {
        "metaData",
        "meta_data",
        "phenotypicFeatures",
        "phenotypic_features",
        "subject",
        "proband",
        "members",
        "pedigree",
    }:
        return phenopacket_kind(doc)
    return None


def looks_like_vcf(name: str, head: bytes) -> bool:
    if name.lower().endswith(VCF_SUFFIXES):
        return True
    return head.startswith(_VCF_MAGIC[:2]) or (head.startswith(_VCF_MAGIC[2]) and not name.endswith(".json.gz"))


# --- validators per kind ---------------------------------------------------------------------------------------


@cache
def _required_schema(path: str) -> Any:
    import jsonschema_rs

    return jsonschema_rs.validator_for(json.loads(Path(path).read_text(encoding="utf-8")))


def _require_issues(doc: Any, schema_paths: tuple[str, ...]) -> list[Issue]:
    from schemas import compiled_issues

    issues = []
    for path in schema_paths:
        for issue in compiled_issues(_required_schema(path), doc, target="input"):
            label = Path(path).name
            issues.append(Issue.error("required-schema", f"{issue.message} ({label})", issue.location))
    return issues


def _fhir_issues(doc: dict, options: Options) -> list[Issue]:
    from gateway.validation.fhir import ALL_BUNDLE_TYPES, validate_fhir

    report = validate_fhir(doc, bundle_types=ALL_BUNDLE_TYPES)
    issues = list(report)
    if options.profile and report.ok:
        issues += _profile_issues(doc, options.profile)
    return issues


def _profile_issues(doc: dict, profile_name: str) -> list[Issue]:
    """What the selected national profile says about the document: the translator's findings under it."""
    import mappings
    from translators.fhir_to_phenopacket import IdFunctions, as_bundle, translate_bundle

    try:
        profile = mappings.load_profile(profile_name)
    except (KeyError, ValueError) as exc:
        return [Issue.error("profile-rule", str(exc).strip("'\""))]
    # Only the translator's findings are kept, never its packets: placeholder ids, no key needed.
    ids = IdFunctions(subject=lambda value, system=None: "pid-unused", derived=lambda kind, *parts: f"{kind}-unused")
    translation = translate_bundle(as_bundle(doc), profile=profile, ids=ids, now=datetime.now(UTC))
    issues = [i for i in translation.issues if i.target == "input"]
    for packet in translation.packets:
        issues += [i for i in packet.issues if i.target == "input"]
    return issues


def _phenopacket_issues(doc: dict, kind: str, options: Options) -> list[Issue]:
    from gateway.validation.phenopacket import KINDS as MESSAGES
    from gateway.validation.phenopacket import validate_document
    from gateway.validation.proto_spelling import respell

    issues = list(validate_document(doc, kind, target="input"))
    if options.hpo or options.organ_systems:
        from gateway.validation.hpo import hpo_findings, load_ontology

        # the rule ingest applies too (gateway.services.people), located as sent
        ontology = load_ontology(options.hpo_file)
        issues += hpo_findings(doc, kind, ontology=ontology, organ_systems=options.organ_systems)
    doc = plain_numbers(respell(doc, MESSAGES[kind][0].DESCRIPTOR).document)  # the others see what is stored
    if options.require:
        issues += _require_issues(doc, options.require)
    return issues


def validate_document(doc: Any, options: Options = Options(), kind: str | None = None) -> tuple[str, Report]:
    """(kind, report) for one parsed document; `kind` (or options.kind) forces the kind."""
    kind = kind or options.kind or detect_kind(doc)
    if kind is None:
        message = "not a FHIR resource, Phenopacket v2 (Family, Cohort), Beacon v2 request or response; use --type"
        return "unknown", Report([Issue.error("unknown-kind", message)])
    if kind == "vcf":
        return kind, Report([Issue.error("wrong-type", "a VCF is a file, not a JSON document")])
    if not isinstance(doc, dict):
        return kind, Report([Issue.error("wrong-type", f"a {kind} document must be a JSON object")])
    if kind not in PHENOPACKET_KINDS:
        doc = plain_numbers(doc)  # a YAML number is its text only where a phenopacket field wants text
    if kind == "fhir":
        return kind, Report(_fhir_issues(doc, options))
    if kind in PHENOPACKET_KINDS:
        return kind, Report(_phenopacket_issues(doc, kind, options))
    from gateway.validation.beacon import validate_beacon_request, validate_beacon_response

    if kind == "beacon-request":
        return kind, validate_beacon_request(doc)
    return kind, validate_beacon_response(doc)


# --- reading -------------------------------------------------------------------------------------------------


def protobuf_document(data: bytes, kind: str | None = None) -> tuple[str, dict] | None:
    """Decode a binary phenopacket / family / cohort into its JSON form; None if no kind fits."""
    import phenopackets
    from google.protobuf import json_format
    from google.protobuf.message import DecodeError
    from google.protobuf.unknown_fields import UnknownFieldSet

    classes = {"phenopacket": phenopackets.Phenopacket, "family": phenopackets.Family, "cohort": phenopackets.Cohort}
    for name in [kind] if kind in classes else list(classes):
        message = classes[name]()
        try:
            message.ParseFromString(data)
        except (DecodeError, ValueError):
            continue
        if message.ListFields() and len(UnknownFieldSet(message)) == 0:
            return name, json_format.MessageToDict(message)
    return None


def _parse_text(data: bytes, name: str, options: Options) -> Any:
    """JSON (strict: no NaN, no duplicate keys, bounded depth), or YAML for .yaml/.yml and non-JSON text."""
    stripped = data.lstrip()
    if name.lower().endswith(YAML_SUFFIXES) or stripped[:1] not in (b"{", b"["):
        return load_bounded(data, name, max_depth=options.max_depth, number_text=True)  # no aliases, bounded depth
    return loads_strict(data, max_depth=options.max_depth, require_object=False)


def validate_bytes(data: bytes, name: str, options: Options = Options()) -> FileResult:
    """Validate the content of one input (`name` is only used to guess the format and to label issues)."""
    if options.kind != "vcf" and name.lower().endswith(NDJSON_SUFFIXES):
        return _validate_lines(data, name, options)
    if options.kind == "vcf" or (options.kind is None and looks_like_vcf(name, data[:16])):
        suffix = ".bcf" if data.startswith(_VCF_MAGIC[1]) else ".vcf.gz" if data.startswith(_VCF_MAGIC[2]) else ".vcf"
        with tempfile.TemporaryDirectory(prefix="gateway-validate-") as tmp:
            path = Path(tmp) / f"input{suffix}"
            path.write_bytes(data)
            return _vcf_result(path, name)
    binary = name.lower().endswith(PROTOBUF_SUFFIXES) or _is_binary(data)
    if binary and (options.kind in (None, *PHENOPACKET_KINDS)):
        decoded = protobuf_document(data, options.kind)
        if decoded is None:
            issue = Issue.error("protobuf-parse", "binary input is not a protobuf Phenopacket, Family or Cohort")
            return FileResult(name, options.kind or "unknown", Report([issue]))
        kind, doc = decoded
        found_kind, report = validate_document(doc, options, kind)
        return FileResult(name, found_kind, report)
    try:
        doc = _parse_text(data, name, options)
    except JSONInputError as exc:
        return FileResult(name, options.kind or "unknown", Report([exc.issue]))
    if isinstance(doc, list) and options.kind not in ("fhir",):
        return _validate_list(doc, name, options)
    kind, report = validate_document(doc, options)
    return FileResult(name, kind, report)


def _validate_list(docs: list, name: str, options: Options) -> FileResult:
    """A JSON array of documents (e.g. the output of `gateway convert fhir`): each checked, located by index."""
    if not docs:
        return FileResult(name, options.kind or "unknown", Report([Issue.error("wrong-type", "an empty array")]))
    kinds, report = set(), Report()
    for index, doc in enumerate(docs):
        kind, sub = validate_document(doc, options)
        kinds.add(kind)
        report.extend(i.at(f"/{index}") for i in sub)
    return FileResult(name, kinds.pop() if len(kinds) == 1 else "mixed", report)


def _validate_lines(data: bytes, name: str, options: Options) -> FileResult:
    """An NDJSON file (gzip-compressed when it ends .gz): each line one document, its issues located by line."""
    import gzip
    import io
    import zlib

    raw = io.BytesIO(data)
    handle = gzip.GzipFile(fileobj=raw) if name.lower().endswith(".gz") else raw
    kinds, report = set(), Report()
    read, number = 0, 0
    while True:
        try:  # decompressed as read, never more than the bound (a gzip bomb stops there)
            line = handle.readline(NDJSON_MAX_BYTES + 1)
        except (OSError, EOFError, zlib.error) as exc:
            report.add(Issue.error("io", f"not gzip data: {exc}", f"line {number + 1}"))
            break
        if not line:
            break
        number += 1
        read += len(line)
        if read > NDJSON_MAX_BYTES:
            message = f"more than {NDJSON_MAX_BYTES // 2**20} MiB of NDJSON (decompressed): the rest is not read"
            report.add(Issue.error("too-costly", message, f"line {number}"))
            break
        if not line.strip():
            continue
        place = f"line {number}"
        try:
            doc = loads_strict(line, max_depth=options.max_depth, require_object=False)
        except JSONInputError as exc:
            report.add(Issue(exc.issue.severity, exc.issue.code, exc.issue.message, place, exc.issue.target))
            continue
        kind, sub = validate_document(doc, options)
        kinds.add(kind)
        report.extend(
            Issue(i.severity, i.code, i.message, f"{place}, {i.location}" if i.location else place, i.target)
            for i in sub
        )
    if not kinds and report.ok:
        report.add(Issue.error("wrong-type", "an NDJSON file without any line"))
    return FileResult(name, kinds.pop() if len(kinds) == 1 else "mixed" if kinds else options.kind or "unknown", report)


def _is_binary(data: bytes) -> bool:
    head = data[:512]
    if b"\x00" in head:
        return True
    try:
        head.decode("utf-8")
    except UnicodeDecodeError as exc:
        return exc.start < len(head) - 4  # a multi-byte character cut at the boundary is still text
    return False


def _vcf_result(path: Path, label: str) -> FileResult:
    from gateway.validation.vcf import validate_vcf

    report = validate_vcf(path)

    # The validator locates issues by the file name it was given; show the user's name instead.
    def relabel(issue: Issue) -> Issue:
        for prefix in (str(path), path.name):
            if issue.location.startswith(prefix + ":"):
                return Issue(issue.severity, issue.code, issue.message, label + issue.location[len(prefix) :])
        return issue

    return FileResult(label, "vcf", Report([relabel(i) for i in report]))


def validate_path(path: str, options: Options = Options()) -> FileResult:
    """Validate one file (VCF/BCF by path, without reading it into memory)."""
    name = str(path)
    try:
        if options.kind == "vcf" or (options.kind is None and name.lower().endswith(VCF_SUFFIXES)):
            if not os.path.isfile(name):
                raise FileNotFoundError(name)
            return _vcf_result(Path(name), name)
        data = Path(name).read_bytes()
    except OSError as exc:
        return FileResult(
            name, options.kind or "unknown", Report([Issue.error("io", f"cannot read: {exc.strerror or exc}")])
        )
    if options.kind is None and looks_like_vcf(name, data[:16]) and not name.lower().endswith(NDJSON_SUFFIXES):
        return _vcf_result(Path(name), name)
    return validate_bytes(data, name, options)
