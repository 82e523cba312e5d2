"""The gateway's own JSON Schemas and the one place that loads and compiles them.

Each `<name>.schema.json` in this folder is addressed by `<name>` (e.g. "phenopacket-v2").
Schemas may `$ref` each other by file name; they are compiled once (jsonschema-rs) and cached.
The official upstream schemas in ../shared/reference are for tests; these are for runtime and
may be stricter than upstream, never looser.
"""

from __future__ import annotations

import json
from functools import cache
from pathlib import Path
from typing import Any

import jsonschema_rs

from gateway.issues import Issue

SCHEMA_DIR = Path(__file__).resolve().parent
_SUFFIX = ".schema.json"


def schema_names() -> list[str]:
    return sorted(p.name[: -len(_SUFFIX)] for p in SCHEMA_DIR.glob("*" + _SUFFIX))


@cache
def _load(name: str) -> dict:
    path = SCHEMA_DIR / f"{name}{_SUFFIX}"
    if not path.is_file():
        raise KeyError(f"no schema named {name!r} (known: {', '.join(schema_names())})")
    return json.loads(path.read_text(encoding="utf-8"))


def load_schema(name: str) -> dict:
    """The parsed schema document (a fresh copy: callers may not change the cached one)."""
    return json.loads(json.dumps(_load(name)))


@cache
def _registry() -> jsonschema_rs.Registry:
    # Every schema is registered under its $id so that relative $refs between files resolve offline.
    return jsonschema_rs.Registry([(_load(n)["$id"], _load(n)) for n in schema_names()])


@cache
def validator(name: str) -> Any:
    """The compiled jsonschema-rs validator for `name` (compiled on first use, then cached)."""
    schema = _load(name)
    return jsonschema_rs.validator_for(schema, registry=_registry(), base_uri=schema["$id"])


# jsonschema-rs error kinds → stable gateway issue codes.
_KIND_CODES = {
    "Required": "missing-field",
    "Enum": "invalid-enum",
    "Constant": "invalid-enum",
    "Pattern": "invalid-format",
    "Format": "invalid-format",
    "Type": "wrong-type",
    "AdditionalProperties": "unknown-field",
    "UnevaluatedProperties": "unknown-field",
    "MaxProperties": "invalid-choice",
    "MinProperties": "invalid-choice",
    "OneOfNotValid": "invalid-choice",
    "OneOfMultipleValid": "invalid-choice",
    "AnyOf": "invalid-value",
    "MinLength": "invalid-value",
    "Minimum": "invalid-value",
    "Maximum": "invalid-value",
    "MinItems": "invalid-value",
}


def _escape(token: str | int) -> str:
    return str(token).replace("~", "~0").replace("/", "~1")


def pointer(path: list | tuple) -> str:
    """RFC 6901 JSON pointer for a sequence of keys and indices."""
    return "".join("/" + _escape(t) for t in path)


def dotted(path: list | tuple) -> str:
    """`phenotypicFeatures[0].type.label`: the path style phenopacket-tools prints."""
    out = ""
    for t in path:
        out += f"[{t}]" if isinstance(t, int) else (f".{t}" if out else str(t))
    return out


def compiled_issues(
    compiled: Any, doc: Any, *, target: str = "output", open_objects: bool = False, prefix: str = ""
) -> list[Issue]:
    """jsonschema-rs errors as Issues located by JSON pointer (under `prefix`).

    With `open_objects`, members a closed schema does not expect are warnings: other
    nodes may add them, and the official schemas allow them.
    """
    if compiled.is_valid(doc):  # the fast path: no error objects are built
        return []
    issues = []
    for err in compiled.iter_errors(doc):
        path = list(err.instance_path)
        kind = type(err.kind).__name__
        code = _KIND_CODES.get(kind, "schema-violation")
        if kind == "Required":
            path.append(err.kind.property)
            message = f"`{dotted(path)}` is missing but it is required"
        else:
            message = f"{dotted(path) or 'the document'}: {err.message}"
        make = Issue.warning if open_objects and code == "unknown-field" else Issue.error
        issues.append(make(code, message, prefix + pointer(path), target))
    return issues


def schema_issues(name: str, doc: Any, target: str = "output") -> list[Issue]:
    """Every violation of schema `name` by `doc`, one Issue each, located by JSON pointer."""
    return compiled_issues(validator(name), doc, target=target)
