"""Strict JSON reading for everything that arrives from outside.

Rejects what RFC 8259 leaves undefined or what would hurt the node: NaN/Infinity,
duplicate keys, absurd nesting, numbers too long to convert (Python refuses integers of
more than 4,300 digits), NUL characters (PostgreSQL text and JSONB cannot hold them),
non-object roots where an object is required. Each problem becomes an `Issue` with line
and column, so HTTP and CLI report it alike. YAML input goes through `gateway.yamlio`.
"""

from __future__ import annotations

import json
import re
from typing import Any

from gateway.errors import BadInput
from gateway.issues import Issue


class JSONInputError(BadInput, ValueError):
    """Unreadable JSON from outside: one issue with line and column."""

    def __init__(self, issue: Issue):
        super().__init__(issue.message, issues=(issue,))
        self.issue = issue

    def __reduce__(self):  # raised in a bounded child (gateway.bounded) and re-raised in the server
        return (type(self), (self.issue,))


# A JSON string escape for U+0000 that is not itself an escaped backslash followed by "u0000".
_NUL_ESCAPE = re.compile(r"(?<!\\)(?:\\\\)*\\u0000")


def _no_constants(name: str) -> Any:
    raise _Reject("json-nan", f"{name} is not a JSON number")


class _Reject(BadInput):
    """Raised inside the decoder's hooks; becomes one JSONInputError with line and column."""

    def __init__(self, code: str, message: str):
        super().__init__(message, code=code)


def _pairs(pairs: list[tuple[str, Any]]) -> dict:
    out = dict(pairs)
    if len(out) != len(pairs):
        seen: set[str] = set()
        dup = next(k for k, _ in pairs if k in seen or seen.add(k))  # type: ignore[func-returns-value]
        raise _Reject("json-duplicate-key", f"duplicate key {dup!r} in an object")
    return out


def _deeper_than(node: Any, limit: int) -> bool:
    """True when containers nest more than `limit` levels; stops descending at the limit.

    A plain recursive walk over the parsed document: leaves are skipped at C speed by
    isinstance, and the recursion never goes deeper than `limit` + 1 frames.
    """
    if limit <= 0:
        return True
    children = node.values() if isinstance(node, dict) else node
    return any(_deeper_than(child, limit - 1) for child in children if isinstance(child, (dict, list)))


# NDJSON (a document per line: FHIR Bulk Data) is read whole into one transaction or report: bounded, decompressed,
# so that a large export or a gzip bomb is a clear refusal rather than the machine's memory (≈ 8 bytes of Python
# objects per byte of JSON). `max_ndjson_bytes` in the configuration for the ingest.
NDJSON_MAX_BYTES = 256 * 1024 * 1024


def loads_strict(data: bytes | str, *, max_depth: int = 64, require_object: bool = True) -> Any:
    """Parse JSON strictly or raise JSONInputError carrying one Issue."""
    if isinstance(data, bytes):
        try:
            data = data.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise JSONInputError(Issue.error("json-syntax", f"body is not UTF-8 text (byte {exc.start})")) from exc
    try:
        doc = json.loads(data, object_pairs_hook=_pairs, parse_constant=_no_constants)
    except _Reject as exc:
        raise JSONInputError(Issue.error(exc.code, exc.message)) from None
    except json.JSONDecodeError as exc:
        raise JSONInputError(
            Issue.error("json-syntax", f"not valid JSON: {exc.msg}", f"line {exc.lineno}, column {exc.colno}")
        ) from None
    except RecursionError:
        raise JSONInputError(Issue.error("json-too-deep", f"JSON nested deeper than {max_depth} levels")) from None
    except ValueError as exc:  # int() refuses more than sys.get_int_max_str_digits() digits
        raise JSONInputError(Issue.error("json-number", f"a number in the JSON is too long: {exc}"[:200])) from None
    if "\\u0000" in data and _NUL_ESCAPE.search(data):
        raise JSONInputError(Issue.error("json-nul", "NUL characters (\\u0000) are not accepted in JSON text"))
    if isinstance(doc, (dict, list)) and _deeper_than(doc, max_depth):
        raise JSONInputError(Issue.error("json-too-deep", f"JSON nested deeper than {max_depth} levels"))
    if require_object and not isinstance(doc, dict):
        raise JSONInputError(Issue.error("json-syntax", "the document must be a JSON object"))
    return doc
