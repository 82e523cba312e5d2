"""Rendering validation results: text (grouped per file, colour on a terminal), JSON, and pxf-compatible CSV."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterable
from functools import cache

from gateway.issues import Severity
from gateway.validation.engine import FileResult
from mappings import load_table

FORMATS = ("text", "json", "csv")
CSV_HEADER = ("PATH", "LEVEL", "VALIDATOR_ID", "CATEGORY", "MESSAGE")
_COLOURS = {Severity.ERROR: "\033[31m", Severity.WARNING: "\033[33m", Severity.INFO: "\033[36m"}
_OK, _RESET, _BOLD = "\033[32m", "\033[0m", "\033[1m"


@cache
def _validator_ids() -> dict[str, str]:
    return load_table("validation/validator_ids")


def validator_id(code: str) -> str:
    ids = _validator_ids()
    if code.startswith("vcf"):
        return "VcfValidator"
    return ids.get(code, ids["default"])


def render_text(results: Iterable[FileResult], *, colour: bool = False) -> str:
    lines = []
    for result in results:
        issues = list(result.report)
        verdict = "valid" if result.valid else "INVALID"
        head = f"{result.file} ({result.kind}): {verdict}"
        if colour:
            head = f"{_BOLD}{head}{_RESET}" if not result.valid else f"{_OK}{head}{_RESET}"
        lines.append(head)
        for issue in issues:
            level = issue.severity.value.upper()
            if colour:
                level = f"{_COLOURS[issue.severity]}{level}{_RESET}"
            where = f" at {issue.location}" if issue.location else ""
            lines.append(f"  {level} [{issue.code}]{where}: {issue.message}")
    return "\n".join(lines) + ("\n" if lines else "")


def render_json(results: Iterable[FileResult]) -> str:
    return json.dumps([r.to_dict() for r in results], indent=2, ensure_ascii=False) + "\n"


def render_csv(results: Iterable[FileResult]) -> str:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(CSV_HEADER)
    for result in results:
        for issue in result.report:
            message = f"{issue.message} (at {issue.location})" if issue.location else issue.message
            writer.writerow((result.file, issue.severity.value.upper(), validator_id(issue.code), issue.code, message))
    return out.getvalue()


def render(results: list[FileResult], fmt: str, *, colour: bool = False) -> str:
    if fmt == "json":
        return render_json(results)
    if fmt == "csv":
        return render_csv(results)
    return render_text(results, colour=colour)
