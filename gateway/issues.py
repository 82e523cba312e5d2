"""One issue type for every room of the gateway.

Validators, translators, the ingest pipeline, the HTTP layer and the CLI all speak
`Issue`; a `Report` is a list of them. Rendering to the outside world (FHIR
OperationOutcome, Beacon error, CLI text, JSON) happens here and only here.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from enum import StrEnum


class Severity(StrEnum):
    ERROR = "error"  # a MUST is broken: the document is rejected
    WARNING = "warning"  # a SHOULD is broken, or something could not be mapped
    INFO = "information"


@dataclass(frozen=True, slots=True)
class Issue:
    """A finding about a document.

    `location` is a JSON pointer (RFC 6901) into the document named by `target`
    ("input" or "output"), or `file:line` for line-oriented formats such as VCF.
    `code` is a stable, kebab-case identifier that clients may rely on.
    """

    severity: Severity
    code: str
    message: str
    location: str = ""
    target: str = "input"

    @classmethod
    def error(cls, code: str, message: str, location: str = "", target: str = "input") -> Issue:
        return cls(Severity.ERROR, code, message, location, target)

    @classmethod
    def warning(cls, code: str, message: str, location: str = "", target: str = "input") -> Issue:
        return cls(Severity.WARNING, code, message, location, target)

    @classmethod
    def info(cls, code: str, message: str, location: str = "", target: str = "input") -> Issue:
        return cls(Severity.INFO, code, message, location, target)

    @property
    def is_error(self) -> bool:
        return self.severity is Severity.ERROR

    def at(self, prefix: str) -> Issue:
        """The same issue with its JSON-pointer location moved under `prefix`."""
        return Issue(self.severity, self.code, self.message, prefix + self.location, self.target)

    def to_dict(self) -> dict:
        return {
            "severity": self.severity.value,
            "code": self.code,
            "message": self.message,
            "location": self.location,
            "target": self.target,
        }

    def to_text(self) -> str:
        where = f" at {self.location}" if self.location else ""
        return f"{self.severity.value.upper()} [{self.code}]{where}: {self.message}"


@dataclass
class Report:
    """An ordered list of issues; `ok` while none is an error."""

    issues: list[Issue] = field(default_factory=list)

    def __iter__(self) -> Iterator[Issue]:
        return iter(self.issues)

    def __len__(self) -> int:
        return len(self.issues)

    def __bool__(self) -> bool:  # a Report is always truthy; ask `.ok` for the verdict
        return True

    def add(self, issue: Issue) -> None:
        self.issues.append(issue)

    def extend(self, issues: Iterable[Issue]) -> None:
        self.issues.extend(issues)

    @property
    def ok(self) -> bool:
        return not any(i.is_error for i in self.issues)

    @property
    def errors(self) -> list[Issue]:
        return [i for i in self.issues if i.is_error]

    @property
    def warnings(self) -> list[Issue]:
        return [i for i in self.issues if i.severity is Severity.WARNING]

    def to_json(self) -> list[dict]:
        return [i.to_dict() for i in self.issues]

    def to_text(self, source: str = "") -> str:
        prefix = f"{source}: " if source else ""
        return "\n".join(prefix + i.to_text() for i in self.issues)


# --- FHIR OperationOutcome ------------------------------------------------------------

# Gateway issue codes → FHIR IssueType (http://hl7.org/fhir/issue-type). Codes not
# listed fall back by severity: errors are "invalid", the rest "informational".
FHIR_ISSUE_TYPE = {
    "json-syntax": "structure",
    "json-nan": "structure",
    "json-duplicate-key": "structure",
    "json-too-deep": "too-costly",
    "body-too-large": "too-costly",
    "too-costly": "too-costly",
    "throttled": "throttled",
    "not-fhir": "structure",
    "fhir-structure": "structure",
    "fhir-required": "required",
    "fhir-value": "value",
    "unknown-resource-type": "not-supported",
    "unsupported-bundle-type": "not-supported",
    "reference-dangling": "not-found",
    "message-focus": "not-found",
    "nothing-kept": "business-rule",
    "no-phenopacket-target": "not-supported",
    "unmapped-code": "code-invalid",
    "unmapped-element": "not-supported",
    "profile-rule": "business-rule",
    "duplicate": "duplicate",
    "conflict": "conflict",
    "forbidden": "forbidden",
    "login": "login",
    "not-found": "not-found",
    "deleted": "deleted",
    "internal": "exception",
}

ISSUE_CODE_SYSTEM = "https://ga4gh-gateway.example.org/fhir/CodeSystem/issue-code"


def pointer_to_fhirpath(pointer: str, root: str = "Bundle") -> str:
    """Turn `/entry/2/resource/code/coding/0` into `Bundle.entry[2].resource.code.coding[0]`."""
    if not pointer or pointer == "/":
        return root
    out = root
    for token in pointer.lstrip("/").split("/"):
        token = token.replace("~1", "/").replace("~0", "~")
        out += f"[{token}]" if token.isdigit() else f".{token}"
    return out


def fhir_issue(issue: Issue, root: str = "Bundle") -> dict:
    """One `OperationOutcome.issue` element for an Issue."""
    fallback = "invalid" if issue.is_error else "informational"
    entry: dict = {
        "severity": issue.severity.value,
        "code": FHIR_ISSUE_TYPE.get(issue.code, fallback),
        "details": {
            "coding": [{"system": ISSUE_CODE_SYSTEM, "code": issue.code}],
            "text": issue.message,
        },
        "diagnostics": issue.message,
    }
    if issue.location:
        if issue.location.startswith("/") and issue.target == "input":
            entry["expression"] = [pointer_to_fhirpath(issue.location, root)]
        else:
            entry["location"] = [issue.location]
    return entry


def to_operation_outcome(issues: Iterable[Issue], root: str = "Bundle") -> dict:
    items = [fhir_issue(i, root) for i in issues]
    if not items:  # an OperationOutcome needs at least one issue
        items = [{"severity": "information", "code": "informational", "diagnostics": "All OK"}]
    return {"resourceType": "OperationOutcome", "issue": items}


def to_beacon_error(issues: Iterable[Issue], http_status: int = 400) -> dict:
    """The `error` member of a Beacon v2 error response (beaconCommonComponents BeaconError)."""
    messages = [i.message + (f" (at {i.location})" if i.location else "") for i in issues if i.is_error]
    return {"errorCode": http_status, "errorMessage": "; ".join(messages) or "Bad request"}
