"""Protobuf's other JSON spellings of a phenopacket, read as the canonical one.

The proto3 JSON mapping lets a parser accept each field under its lowerCamelCase JSON name *or* its
original proto name (`meta_data`, `phenotypic_features`), and each enum value by name *or* by number
(`"sex": 2`), each 32-bit integer and double as a number *or* a string of one (`"fractions": "30"`), and
`null` for any field as its default (left out). Tools that print with `preserving_proto_field_name`
(Python's json_format, some pipelines) write the first; numbers appear where enums were written by hand.
The gateway's schema and store speak the canonical spelling (camelCase names, enum names, numbers as
numbers, no nulls), so such a document is respelled before anything else looks at it: same content,
canonical form. 64-bit integers stay as sent (canonical JSON writes them as strings; both are accepted);
"NaN" and "Infinity" stay strings (JSON has no such number; validation refuses them). A document that gives one field
under both names is left as it is, and `twice` says where (Python's protobuf parser takes it,
one of the two silently lost; validation refuses it).

`respell` walks the protobuf descriptors; map keys (`individualToFileIdentifiers`, `fileAttributes`)
and the well-known types (Timestamp) are values, never respelled.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from functools import cache
from typing import Any

import orjson
from google.protobuf.descriptor import Descriptor, FieldDescriptor

from gateway.yamlio import NumberText


@dataclass
class Respelled:
    """A document in the canonical spelling and, for each respelled key, its path there → the key as sent."""

    document: Any
    renamed: dict[tuple, str] = field(default_factory=dict)  # canonical path (of the member) → original key
    enums: list[tuple] = field(default_factory=list)  # canonical paths of enum numbers made names
    twice: list[tuple] = field(default_factory=list)  # paths of proto-named members whose field is also camelCase
    numbers: list[tuple] = field(default_factory=list)  # canonical paths of numbers given as strings
    nulls: list[tuple] = field(default_factory=list)  # canonical paths of members given as null (left out)
    yaml_numbers: list[tuple] = field(default_factory=list)  # YAML numbers made the field's type (no note)

    @property
    def changed(self) -> bool:
        return bool(self.renamed or self.enums or self.numbers or self.nulls or self.yaml_numbers)

    def original_pointer(self, location: str) -> str:
        """A JSON pointer into the canonical document, as a pointer into the document as sent."""
        if not self.renamed or not location.startswith("/"):
            return location
        parts = location[1:].split("/")
        path: list = []
        out = []
        for part in parts:
            step = int(part) if part.isdigit() else part
            path.append(step)
            out.append(self.renamed.get(tuple(path), part))
        return "/" + "/".join(out)


@dataclass(frozen=True)
class _Spec:
    json_name: str
    message: str | None  # a message to walk into (not map entries, not google.protobuf types)
    repeated: bool
    enum: dict[int, str] | None  # number → name
    number: type | None = None  # int or float: a 32-bit integer or a double/float field
    text: bool = False  # a string or 64-bit integer field: a YAML number there is the text it is written as


_DESCRIPTORS: dict[str, Descriptor] = {}
_NUMBER_TYPES: dict[int, type] = {
    **dict.fromkeys(
        (
            FieldDescriptor.TYPE_INT32,
            FieldDescriptor.TYPE_SINT32,
            FieldDescriptor.TYPE_SFIXED32,
            FieldDescriptor.TYPE_UINT32,
            FieldDescriptor.TYPE_FIXED32,
        ),
        int,
    ),
    FieldDescriptor.TYPE_DOUBLE: float,
    FieldDescriptor.TYPE_FLOAT: float,
}
_TEXT_TYPES = frozenset(
    {
        FieldDescriptor.TYPE_STRING,
        FieldDescriptor.TYPE_INT64,
        FieldDescriptor.TYPE_UINT64,
        FieldDescriptor.TYPE_SINT64,
        FieldDescriptor.TYPE_FIXED64,
        FieldDescriptor.TYPE_SFIXED64,
    }
)
_INTEGER = re.compile(r"-?[0-9]{1,10}")
_DECIMAL = re.compile(r"-?[0-9]{1,300}(\.[0-9]{1,300})?([eE][+-]?[0-9]{1,3})?")


@cache
def _fields(message_name: str) -> dict[str, _Spec]:
    """Both spellings of each field of one message → its spec."""
    out: dict[str, _Spec] = {}
    for f in _DESCRIPTORS[message_name].fields:
        message = None
        if f.type == FieldDescriptor.TYPE_MESSAGE:
            child = f.message_type
            if not child.GetOptions().map_entry and not child.full_name.startswith("google.protobuf."):
                message = child.full_name
                _DESCRIPTORS.setdefault(message, child)
        enum = None
        if f.type == FieldDescriptor.TYPE_ENUM:
            enum = {v.number: v.name for v in f.enum_type.values}
        text = f.type in _TEXT_TYPES
        spec = _Spec(f.json_name, message, f.is_repeated, enum, _NUMBER_TYPES.get(f.type), text)
        out[f.json_name] = spec
        out[f.name] = spec
    return out


@cache
def _field_names(message_name: str) -> tuple[frozenset[str], frozenset[str]]:
    """Both spellings of every enum field, and of every 32-bit integer or double field, reachable from one
    message."""
    enums: set[str] = set()
    numbers: set[str] = set()
    seen: set[str] = set()
    stack = [message_name]
    while stack:
        name = stack.pop()
        if name in seen:
            continue
        seen.add(name)
        for key, spec in _fields(name).items():
            if spec.enum is not None:
                enums.add(key)
            if spec.number is not None:
                numbers.add(key)
            if spec.message is not None:
                stack.append(spec.message)
    return frozenset(enums), frozenset(numbers)


_UNDERSCORED_NAME = re.compile(rb'_[^"\\]*":')  # the end of a member name with an underscore
# after a member name: a number, a string holding only a number, or null (the name is read back from there:
# a pattern that starts at every name is five times slower)
_NUMBER_OR_NULL = re.compile(rb'":(?:(-?[0-9])|"-?[0-9]+(?:\.[0-9]+)?(?:[eE][+-]?[0-9]+)?"[,}]|null)')


def _maybe_other_spelling(text: bytes, message_name: str) -> bool:
    """In compact JSON: a member name with an underscore, an enum member given a number, a number member given
    a string, or a null."""
    if _UNDERSCORED_NAME.search(text):
        return True
    enums, numbers = _field_names(message_name)
    for found in _NUMBER_OR_NULL.finditer(text):
        if text[found.start() + 2 : found.start() + 3] == b"n":
            return True
        name = text[text.rfind(b'"', 0, found.start()) + 1 : found.start()].decode(errors="replace")
        if name in enums or (found.group(1) is None and name in numbers):  # (a YAML number is text here)
            return True
    return False


def respell(doc: Any, descriptor: Descriptor) -> Respelled:
    """`doc` in the canonical spelling (the same object when it already is)."""
    _DESCRIPTORS.setdefault(descriptor.full_name, descriptor)
    try:  # nearly every document is canonical already: a text search says so faster than the walk
        if not _maybe_other_spelling(orjson.dumps(doc, option=orjson.OPT_PASSTHROUGH_SUBCLASS), descriptor.full_name):
            return Respelled(doc)
    except TypeError:  # not plain JSON data (YAML's NumberText, integers past 64 bits...): walk
        pass
    found = Respelled(doc)
    try:
        found.document = _message(doc, descriptor.full_name, (), found)
    except RecursionError:  # deeper than anything valid: validation will say what is wrong with it
        return Respelled(doc)
    return found


def _message(doc: Any, name: str, path: tuple, found: Respelled) -> Any:
    if not isinstance(doc, dict):
        return doc
    fields = _fields(name)
    members = []  # in the order sent
    changed = False
    for key, value in doc.items():
        spec = fields.get(key) if isinstance(key, str) else None
        if spec is None:  # unknown: validation reports it where it is
            members.append((key, value))
            continue
        if value is None:  # protobuf reads null as the field's default: as if it were left out
            found.nulls.append((*path, spec.json_name))
            changed = True
            continue
        new_key = key
        if key != spec.json_name:
            if spec.json_name in doc:
                found.twice.append((*path, key))
            else:
                new_key = spec.json_name
                found.renamed[(*path, new_key)] = key
        new_value = _value(value, spec, (*path, new_key), found)
        changed = changed or new_key != key or new_value is not value
        members.append((new_key, new_value))
    return dict(members) if changed else doc


def _value(value: Any, spec: _Spec, path: tuple, found: Respelled) -> Any:
    if spec.repeated and isinstance(value, list):
        items = [_one(item, spec, (*path, n), found) for n, item in enumerate(value)]
        return value if all(a is b for a, b in zip(items, value, strict=True)) else items
    return _one(value, spec, path, found)


def _one(value: Any, spec: _Spec, path: tuple, found: Respelled) -> Any:
    if isinstance(value, NumberText):  # YAML: the text where the field wants text, else the number
        found.yaml_numbers.append(path)
        if spec.text:
            return str(value)
        value = value.number
    if spec.message is not None:
        return _message(value, spec.message, path, found)
    if spec.enum is not None and type(value) is int and value in spec.enum:
        found.enums.append(path)
        return spec.enum[value]
    if spec.number is not None and isinstance(value, str):
        if spec.number is int and _INTEGER.fullmatch(value):
            found.numbers.append(path)
            return int(value)
        if spec.number is float and _DECIMAL.fullmatch(value):
            number = float(value)
            if abs(number) < 1e308:
                found.numbers.append(path)
                return int(number) if number.is_integer() and _INTEGER.fullmatch(value) else number
    return value
