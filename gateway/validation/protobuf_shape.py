"""A fast first look before protobuf's strict JSON parse: does a document plainly parse?

`json_format.ParseDict` (pure Python over the descriptors) costs about 2 ms per phenopacket, and a
resource-by-resource write validates a fragment per write. `plainly_parses` walks the same
descriptors with field maps built once and says True only for documents inside a conservative
subset of what ParseDict accepts: known field names (JSON or proto spelling, each field once, one
member per oneof), objects for messages, lists for repeated fields, strings for strings (no unpaired
surrogate), bools for bools, ints in range (or strings of digits) for integer fields, finite numbers for doubles, enum values
by name, Timestamps as protobuf reads them, map<string, string> as objects of strings. Anything else —
an error or merely a spelling it does not model (nulls, numbers as strings, other well-known types,
bytes) — answers False, and the caller asks ParseDict, whose verdict and message stand. So the answer
of the validation is ParseDict's in every case; only the plain valid case is faster.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import cache, lru_cache

from google.protobuf import json_format
from google.protobuf.descriptor import Descriptor, FieldDescriptor
from google.protobuf.timestamp_pb2 import Timestamp

_TIMESTAMP = "google.protobuf.Timestamp"
_DIGITS = re.compile(r"-?[0-9]{1,25}")
_SURROGATE = json_format._UNPAIRED_SURROGATE_PATTERN  # what ParseDict rejects in a string
_INT_RANGES = {
    FieldDescriptor.TYPE_INT32: (-(2**31), 2**31 - 1),
    FieldDescriptor.TYPE_SINT32: (-(2**31), 2**31 - 1),
    FieldDescriptor.TYPE_SFIXED32: (-(2**31), 2**31 - 1),
    FieldDescriptor.TYPE_UINT32: (0, 2**32 - 1),
    FieldDescriptor.TYPE_FIXED32: (0, 2**32 - 1),
    FieldDescriptor.TYPE_INT64: (-(2**63), 2**63 - 1),
    FieldDescriptor.TYPE_SINT64: (-(2**63), 2**63 - 1),
    FieldDescriptor.TYPE_SFIXED64: (-(2**63), 2**63 - 1),
    FieldDescriptor.TYPE_UINT64: (0, 2**64 - 1),
    FieldDescriptor.TYPE_FIXED64: (0, 2**64 - 1),
}


@dataclass(frozen=True)
class _Field:
    number: int
    kind: str  # "message", "timestamp", "map", "string", "bool", "int", "double", "enum", "other"
    repeated: bool
    oneof: str | None
    message: str | None = None  # the message's full name (kind "message")
    names: frozenset[str] = frozenset()  # enum value names (kind "enum")
    bounds: tuple[int, int] = (0, 0)  # kind "int"


def _kind(field: FieldDescriptor) -> str:
    if field.type == FieldDescriptor.TYPE_MESSAGE:
        message = field.message_type
        if message.GetOptions().map_entry:
            key, value = message.fields_by_name["key"], message.fields_by_name["value"]
            plain = key.type == value.type == FieldDescriptor.TYPE_STRING
            return "map" if plain else "other"
        if message.full_name == _TIMESTAMP:
            return "timestamp"
        return "other" if message.full_name.startswith("google.protobuf.") else "message"
    if field.type == FieldDescriptor.TYPE_STRING:
        return "string"
    if field.type == FieldDescriptor.TYPE_BOOL:
        return "bool"
    if field.type in _INT_RANGES:
        return "int"
    if field.type == FieldDescriptor.TYPE_DOUBLE:
        return "double"
    if field.type == FieldDescriptor.TYPE_ENUM:
        return "enum"
    return "other"  # float (its own range), bytes (base64), groups


_DESCRIPTORS: dict[str, Descriptor] = {}


@cache
def _fields(message_name: str) -> dict[str, _Field]:
    """JSON name and proto name -> the field, for one message (built once)."""
    descriptor = _DESCRIPTORS[message_name]
    out: dict[str, _Field] = {}
    for field in descriptor.fields:
        kind = _kind(field)
        message = None
        if kind == "message":
            message = field.message_type.full_name
            _DESCRIPTORS.setdefault(message, field.message_type)
        names = frozenset(field.enum_type.values_by_name) if kind == "enum" else frozenset()
        oneof = field.containing_oneof.name if field.containing_oneof is not None else None
        spec = _Field(
            field.number,
            kind,
            field.is_repeated and kind != "map",
            oneof,
            message,
            names,
            _INT_RANGES.get(field.type, (0, 0)),
        )
        out[field.json_name] = spec
        out[field.name] = spec
    return out


def plainly_parses(doc: object, descriptor: Descriptor) -> bool:
    """True only when `doc` certainly parses strictly into `descriptor`'s message (see the module)."""
    _DESCRIPTORS.setdefault(descriptor.full_name, descriptor)
    try:
        return _message(doc, descriptor.full_name)
    except RecursionError:
        return False


def _message(doc: object, name: str) -> bool:
    if not isinstance(doc, dict):
        return False
    fields = _fields(name)
    numbers: set[int] = set()
    oneofs: set[str] = set()
    for key, value in doc.items():
        spec = fields.get(key)
        if spec is None or spec.number in numbers or value is None:
            return False
        numbers.add(spec.number)
        if spec.oneof is not None:
            if spec.oneof in oneofs:
                return False
            oneofs.add(spec.oneof)
        if spec.repeated:
            if not isinstance(value, list) or not all(_value(item, spec) for item in value):
                return False
        elif not _value(value, spec):
            return False
    return True


@lru_cache(maxsize=4096)
def _timestamp_parses(value: str) -> bool:
    # cached: a packet's timestamps repeat (metaData.created, the same dates), and protobuf's parse is slow
    try:
        Timestamp().FromJsonString(value)
    except Exception:  # whatever protobuf raises: ParseDict will say it
        return False
    return True


def _value(value: object, spec: _Field) -> bool:
    kind = spec.kind
    if kind == "string":
        return isinstance(value, str) and (value.isascii() or not _SURROGATE.search(value))
    if kind == "message":
        assert spec.message is not None
        return _message(value, spec.message)
    if kind == "enum":
        return isinstance(value, str) and value in spec.names
    if kind == "bool":
        return isinstance(value, bool)
    if kind == "int":  # a JSON number, or a string of digits (proto3 JSON writes 64-bit ints so)
        if isinstance(value, str) and _DIGITS.fullmatch(value):
            value = int(value)
        return type(value) is int and spec.bounds[0] <= value <= spec.bounds[1]
    if kind == "double":
        return type(value) in (int, float) and abs(value) < 1e308  # NaN and infinities fail too
    if kind == "timestamp":
        return isinstance(value, str) and _timestamp_parses(value)
    if kind == "map":
        return isinstance(value, dict) and all(
            isinstance(k, str) and isinstance(v, str) and not _SURROGATE.search(k) and not _SURROGATE.search(v)
            for k, v in value.items()
        )
    return False
