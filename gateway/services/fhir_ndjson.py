"""FHIR Bulk Data files (NDJSON, one resource per line) as the Bundle the gateway already ingests.

A hospital's bulk export (FHIR Bulk Data Access, `$export`) is one file per resource type — `Patient.ndjson`,
`Condition.ndjson`, `Observation.ndjson` … — each line one resource with its id. A file becomes a
`transaction` Bundle of `PUT {type}/{id}` entries, so every rule of a transaction holds: all or nothing, a
file of Patients with their resources is translated whole, a file without them is kept resource by resource
and applied to Patients stored before (or pending until they come, in whatever order the files arrive).

Types the gateway does not keep (a bulk export also has Claims, Encounters' Locations, Practitioners …) are
left out with one note per type rather than one per line. Where an issue's pointer names an entry, `located`
gives the file's line instead.
"""

from __future__ import annotations

import gzip
import re
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field, replace

from gateway.issues import Issue
from gateway.jsonio import NDJSON_MAX_BYTES, JSONInputError, loads_strict

SUFFIXES = (".ndjson", ".ndjson.gz")
_ENTRY = re.compile(r"/entry/(\d+)(?:/resource)?(.*)")
_ENTRY_NAMED = re.compile(r"\bentry (\d+)\b")
_LISTED_LINES = 10  # lines named in a note about the lines of a type left out
_MAX_ERRORS = 100  # lines refused one by one; past them, one issue counts the rest
DEFAULT_MAX_BYTES = NDJSON_MAX_BYTES


def is_ndjson(path: str) -> bool:
    return path.lower().endswith(SUFFIXES)


def read_lines(path: str, max_bytes: int = DEFAULT_MAX_BYTES) -> Iterator[bytes]:
    """The file's lines (a `.gz` one decompressed as it is read), none longer than `max_bytes` + 1: a caller
    counting bytes stops at its bound without ever holding more."""
    opened = gzip.open(path, "rb") if path.lower().endswith(".gz") else open(path, "rb")  # noqa: SIM115
    with opened as handle:
        while line := handle.readline(max_bytes + 1):
            yield line


@dataclass
class NdjsonDocument:
    """A file's resources as a transaction Bundle; `lines[n]` is the line of entry n."""

    bundle: dict
    lines: list[int] = field(default_factory=list)
    issues: list[Issue] = field(default_factory=list)  # lines refused, types left out

    @property
    def ok(self) -> bool:
        return not any(i.is_error for i in self.issues)

    def located(self, issues: Iterable[Issue]) -> list[Issue]:
        """`issues` with a pointer into entry n given as the file's line and the pointer inside that resource.

        A warning that a reference names no entry of the Bundle is left out: an export's references name
        resources of its other files (kept already, or to come) or of none, by design."""
        return [self._located(i) for i in issues if i.is_error or i.code != "reference-dangling"]

    def _located(self, issue: Issue) -> Issue:
        # "… is named by entry 3 too": the entry a message names is a line of the file as well
        message = _ENTRY_NAMED.sub(self._line_of, issue.message)
        issue = replace(issue, message=message) if message != issue.message else issue
        match = _ENTRY.fullmatch(issue.location or "")
        if match is None or int(match.group(1)) >= len(self.lines):
            return issue
        inside = match.group(2) or ""
        if inside.startswith("/request"):  # the entry's request is the gateway's (PUT Type/id), not in the file
            inside = ""
        return replace(issue, location=f"line {self.lines[int(match.group(1))]}" + (f", {inside}" if inside else ""))

    def _line_of(self, match: re.Match[str]) -> str:
        n = int(match.group(1))
        return f"line {self.lines[n]}" if n < len(self.lines) else match.group(0)


def ndjson_document(
    lines: Iterable[bytes], kept_types: Sequence[str], *, max_depth: int, max_bytes: int = DEFAULT_MAX_BYTES
) -> NdjsonDocument:
    """The transaction Bundle of an NDJSON file's lines; a line that is not a JSON object with a resourceType is
    an error at that line (the whole file is then refused by the caller: ingest is all or nothing). Past
    `max_bytes` of lines, reading stops with an error."""
    kept = frozenset(kept_types)
    entries: list[dict] = []
    numbers: list[int] = []
    issues: list[Issue] = []
    skipped: dict[str, list[int]] = {}
    refused = 0

    def refuse(issue: Issue) -> None:
        nonlocal refused
        refused += 1
        if refused <= _MAX_ERRORS:
            issues.append(issue)

    read = 0
    for number, raw in enumerate(lines, start=1):
        read += len(raw)
        if read > max_bytes:
            issues.append(
                Issue.error(
                    "too-costly",
                    f"more than {max_bytes // 2**20} MiB of NDJSON (decompressed) by line {number}: split the file "
                    "(e.g. `split -l 100000`; bulk exports split their output the same way) or raise max_ndjson_bytes",
                    f"line {number}",
                )
            )
            break
        if not raw.strip():
            continue  # a trailing newline, or a blank line between resources
        try:
            resource = loads_strict(raw, max_depth=max_depth, require_object=False)
        except JSONInputError as exc:
            refuse(replace(exc.issue, location=f"line {number}"))
            continue
        resource_type = resource.get("resourceType") if isinstance(resource, dict) else None
        if not isinstance(resource_type, str) or not resource_type:
            refuse(
                Issue.error(
                    "not-fhir", "a line must be one FHIR resource (an object with a resourceType)", f"line {number}"
                )
            )
            continue
        if resource_type not in kept:
            skipped.setdefault(resource_type, []).append(number)
            continue
        entries.append({"resource": resource, "request": _request(resource)})
        numbers.append(number)
    if refused > _MAX_ERRORS:
        issues.append(Issue.error("not-fhir", f"{refused - _MAX_ERRORS} more line(s) refused for the same reasons"))
    issues.extend(_skipped_note(t, found) for t, found in sorted(skipped.items()))
    bundle = {"resourceType": "Bundle", "type": "transaction", "entry": entries}
    return NdjsonDocument(bundle, numbers, issues)


def _request(resource: dict) -> dict:
    """PUT to its id (a bulk export names every resource); a resource without one is created (POST)."""
    resource_id = resource.get("id")
    if isinstance(resource_id, str) and resource_id:
        return {"method": "PUT", "url": f"{resource['resourceType']}/{resource_id}"}
    return {"method": "POST", "url": resource["resourceType"]}


def _skipped_note(resource_type: str, lines: list[int]) -> Issue:
    named = ", ".join(map(str, lines[:_LISTED_LINES])) + (" …" if len(lines) > _LISTED_LINES else "")
    return Issue.warning(
        "no-phenopacket-target",
        f"{len(lines)} {resource_type} resource(s) left out: not a type the gateway keeps (lines {named})",
    )


def read_ndjson(
    path: str, kept_types: Sequence[str], *, max_depth: int, max_bytes: int = DEFAULT_MAX_BYTES
) -> NdjsonDocument:
    """`ndjson_document` of the file at `path`."""
    return ndjson_document(read_lines(path, max_bytes), kept_types, max_depth=max_depth, max_bytes=max_bytes)
