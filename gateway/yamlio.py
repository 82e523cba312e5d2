"""Bounded YAML reading for everything that arrives from outside (request bodies, CLI files).

`yaml.safe_load` builds no objects but still does unbounded work: an alias bomb (a few
hundred bytes whose anchors refer to each other) expands to billions of nodes as soon as
anything walks the document, and deep nesting overflows the composer's recursion (→ 500).
Here aliases and anchors are refused outright (no JSON-shaped document needs them), nesting
is limited to `max_depth`, integers longer than Python converts are refused, and NUL
characters (which PostgreSQL cannot store) are refused. Problems become `JSONInputError`
with one `Issue` carrying `name:line`, as for JSON.
"""

from __future__ import annotations

import re
from typing import Any

import yaml

from gateway.errors import BadInput
from gateway.issues import Issue
from gateway.jsonio import JSONInputError

_SURROGATE = re.compile("[\ud800-\udfff]")

DEFAULT_MAX_DEPTH = 64


class _Refused(BadInput):
    """A limit hit while composing; becomes a JSONInputError with the document's name and line."""

    def __init__(self, code: str, message: str, mark: Any = None):
        super().__init__(message, code=code)
        self.mark = mark


class _BoundedLoader(yaml.SafeLoader):
    """A SafeLoader that composes no aliases and no structure deeper than `max_depth`."""

    max_depth = DEFAULT_MAX_DEPTH

    def __init__(self, stream):
        super().__init__(stream)
        self._depth = 0

    def compose_node(self, parent, index):
        if self.check_event(yaml.AliasEvent):
            event = self.peek_event()
            raise _Refused("yaml-alias", "YAML aliases (*name) are not accepted", event.start_mark)
        event = self.peek_event()
        if getattr(event, "anchor", None):
            raise _Refused("yaml-alias", "YAML anchors (&name) are not accepted", event.start_mark)
        if self.check_event(yaml.SequenceStartEvent, yaml.MappingStartEvent):
            self._depth += 1
            if self._depth > self.max_depth:
                raise _Refused("yaml-too-deep", f"YAML nested deeper than {self.max_depth} levels", event.start_mark)
            try:
                return super().compose_node(parent, index)
            finally:
                self._depth -= 1
        return super().compose_node(parent, index)

    def construct_scalar(self, node):
        value = super().construct_scalar(node)
        if isinstance(value, str) and "\x00" in value:
            raise _Refused("yaml-nul", "NUL characters are not accepted in YAML text", node.start_mark)
        if isinstance(value, str) and _SURROGATE.search(value):
            raise _Refused("yaml-text", "an unpaired surrogate (\\ud800-\\udfff) is no text", node.start_mark)
        return value

    def construct_mapping(self, node, deep=False):
        # JSON-shaped documents only: a key YAML reads as a number, a boolean or null (`1:`, `yes:`, `null:`)
        # has no JSON form, and the validators crashed on it
        mapping = super().construct_mapping(node, deep=deep)
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            if not isinstance(key, str):
                message = f"a mapping key must be text; {key_node.value!r} is read as {type(key).__name__}: quote it"
                raise _Refused("yaml-key", message, key_node.start_mark)
        return mapping


# A date or timestamp stays the text it is (`created: 2021-05-14T10:35:00Z` unquoted), as in JSON and as
# other YAML readers of phenopackets and FHIR take it: YAML 1.1 would make it a datetime, which no JSON
# document holds (the validators crashed on it).
_BoundedLoader.yaml_implicit_resolvers = {
    first: [(tag, regexp) for tag, regexp in resolvers if tag != "tag:yaml.org,2002:timestamp"]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}
_BoundedLoader.add_constructor("tag:yaml.org,2002:timestamp", yaml.SafeLoader.construct_yaml_str)


class NumberText(str):
    """A plain YAML scalar YAML reads as a number (`2.0`, `1.10`, `30`), kept as the text it is written as, with
    `number` the number YAML makes of it. Which one the document means depends on the field: a reader that knows
    the fields (gateway.validation.proto_spelling for phenopackets) takes the text where a field wants text
    (`phenopacketSchemaVersion: 2.0`, `version: 1.10`: YAML would make 2.0 and 1.1 of them) and the number
    elsewhere; `plain_numbers` makes every one its number (what YAML alone would have read)."""

    number: int | float


def _number_text(construct):
    def build(loader, node):
        text = NumberText(node.value)
        text.number = construct(loader, node)
        return text

    return build


class _NumberTextLoader(_BoundedLoader):
    pass


_NumberTextLoader.add_constructor("tag:yaml.org,2002:int", _number_text(yaml.SafeLoader.construct_yaml_int))
_NumberTextLoader.add_constructor("tag:yaml.org,2002:float", _number_text(yaml.SafeLoader.construct_yaml_float))


def plain_numbers(value: Any) -> Any:
    """`value` with every NumberText its number (the same object when there is none)."""
    if isinstance(value, NumberText):
        return value.number
    if isinstance(value, dict):
        items = {k: plain_numbers(v) for k, v in value.items()}
        return value if all(items[k] is v for k, v in value.items()) else items
    if isinstance(value, list):
        listed = [plain_numbers(v) for v in value]
        return value if all(a is b for a, b in zip(listed, value, strict=True)) else listed
    return value


def load_bounded(
    text: str | bytes, name: str = "input", *, max_depth: int = DEFAULT_MAX_DEPTH, number_text: bool = False
) -> Any:
    """Parse one YAML document with the limits above; raise JSONInputError carrying one Issue.

    `number_text`: numbers come as NumberText (see there)."""
    if isinstance(text, bytes):
        try:
            text = text.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise JSONInputError(Issue.error("yaml-syntax", f"not UTF-8 text (byte {exc.start})", name)) from None
    loader = (_NumberTextLoader if number_text else _BoundedLoader)(text)
    loader.max_depth = max_depth
    try:
        return loader.get_single_data()
    except _Refused as exc:
        raise JSONInputError(Issue.error(exc.code, exc.message, _where(name, exc.mark))) from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        message = f"not valid YAML: {exc}".split("\n")[0]
        raise JSONInputError(Issue.error("yaml-syntax", message, _where(name, mark))) from None
    except ValueError as exc:  # an integer longer than int() converts
        raise JSONInputError(Issue.error("yaml-number", f"a number is too long: {exc}"[:200], name)) from None
    except RecursionError:  # a defence in depth: the depth limit should stop it first
        raise JSONInputError(Issue.error("yaml-too-deep", "YAML nested too deeply", name)) from None
    finally:
        loader.dispose()


def _where(name: str, mark: Any) -> str:
    return f"{name}:{mark.line + 1}" if mark is not None else name
