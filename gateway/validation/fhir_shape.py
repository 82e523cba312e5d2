"""A fast first look before the `fhir.resources` parse: is a resource plainly valid R4B?

A resource-by-resource write checks its resource with the R4B pydantic model first, and that parse
costs as much as everything else in memory together (a third of it in fhir_core's Python
validators). `plainly_valid` walks the same models' fields, read once per class, and says True only
for resources inside a conservative subset of what the parse accepts: JSON names of elements (no
`_element` extensions, no `fhir_comments`, no nulls, no empty objects or arrays), objects for
complex types, arrays exactly where the element repeats, at most one type of each choice `[x]`
(and one where it is required), every required element present, `resourceType` only on resources
(the right one; `contained` dispatched on it), and primitives in a plain spelling of their type
(`_PRIMITIVES`), codes of required bindings the model lists whole among those codes. Anything else — an error, or merely a spelling it does not model (url, uuid,
base64Binary, time, leap seconds, more than microseconds) — answers False, and the caller parses
with the model, whose verdict and messages stand. So a rejection is the model's in every case;
only the plain valid case is faster. tests/validation/test_fhir_shape.py mutates the real
resources of ../shared/reference/fhir at random to hold it to that.
"""

from __future__ import annotations

import datetime
import re
import types
import typing
from collections.abc import Callable
from dataclasses import dataclass
from functools import cache
from typing import Any

from fhir.resources.R4B import get_fhir_model_class
from fhir_core import types as fhir_types

_SURROGATE = re.compile("[\ud800-\udfff]")  # a lone surrogate: pydantic-core cannot take the string
_CODE = re.compile(r"\S+( \S+)*")  # stricter than R4's [^\s]+(\s[^\s]+)*: single spaces only
_ID = re.compile(r"[A-Za-z0-9\-.]{1,64}")
_URI = re.compile(r"\S+")
_OID = fhir_types.Oid.pattern
_DECIMAL = fhir_types.Decimal.pattern
_DATE = fhir_types.Date.pattern
_DATETIME = fhir_types.DateTime.pattern
_INSTANT = fhir_types.Instant.pattern
_TIME_PART = re.compile(r"T\d\d:\d\d:(\d\d)(?:\.(\d+))?")


def _string(value: object) -> bool:
    """Some non-whitespace content (R4's string regex), no lone surrogate."""
    return isinstance(value, str) and bool(value.strip()) and (value.isascii() or not _SURROGATE.search(value))


def _matching(pattern: re.Pattern[str]) -> Callable[[object], bool]:
    return lambda value: _string(value) and pattern.fullmatch(value) is not None  # type: ignore[arg-type]


def _date(value: object) -> bool:
    if not (_string(value) and _DATE.fullmatch(value)):  # type: ignore[arg-type]
        return False
    return len(value) < 10 or _calendar_day(value)  # type: ignore[arg-type]


def _date_time(pattern: re.Pattern[str]) -> Callable[[object], bool]:
    def check(value: object) -> bool:
        if not (_string(value) and pattern.fullmatch(value)):  # type: ignore[arg-type]
            return False
        text: str = value  # type: ignore[assignment]
        if len(text) < 10:
            return True  # a year or a year and month: kept as the string
        if not _calendar_day(text):
            return False
        time = _TIME_PART.match(text, 10)
        if time is None:
            return len(text) == 10
        # A leap second and more than microseconds take other ways through the model: let it say.
        return time.group(1) != "60" and len(time.group(2) or "") <= 6

    return check


def _calendar_day(text: str) -> bool:
    try:
        datetime.date.fromisoformat(text[:10])
    except ValueError:
        return False
    return True


def _integer(low: int, high: int) -> Callable[[object], bool]:
    return lambda value: type(value) is int and low <= value <= high


def _decimal(value: object) -> bool:
    return type(value) in (int, float) and _DECIMAL.fullmatch(str(value)) is not None


def _boolean(value: object) -> bool:
    return type(value) is bool


def _never(value: object) -> bool:
    return False


# By the name of the fhir_core annotation class; a primitive missing here is never plainly valid.
_PRIMITIVES: dict[str, Callable[[object], bool]] = {
    "String": _string,
    "Markdown": _string,
    "Xhtml": _string,
    "Code": _matching(_CODE),
    "Id": _matching(_ID),
    "Uri": _matching(_URI),
    "Canonical": _matching(_URI),
    "Oid": _matching(_OID),
    "Date": _date,
    "DateTime": _date_time(_DATETIME),
    "Instant": _date_time(_INSTANT),
    "Decimal": _decimal,
}


@dataclass(frozen=True)
class _Field:
    repeated: bool
    model: type | None  # a complex type or resource (None: a primitive)
    check: Callable[[object], bool]  # a primitive's value
    choice: str | None  # the choice element `[x]` it is a type of
    codes: frozenset[str] | None = None  # a `code` bound to a required value set the model lists whole


@dataclass(frozen=True)
class _Shape:
    resource_type: str | None  # resources: what `resourceType` must say
    fields: dict[str, _Field]  # by JSON name
    required: tuple[str, ...]
    choices: dict[str, bool]  # choice -> required


def plainly_valid(resource: object) -> bool:
    """True only when `resource` certainly parses with its R4B model (see the module)."""
    if not isinstance(resource, dict) or not isinstance(resource.get("resourceType"), str):
        return False
    model = _resource_model(resource["resourceType"])
    if model is None:
        return False
    try:
        return _object(resource, model)
    except RecursionError:
        return False


@cache
def _resource_model(resource_type: str) -> type | None:
    try:
        model = get_fhir_model_class(resource_type)
    except (KeyError, ValueError):
        return None
    return model if model.has_resource_base() and model.__resource_type__ == resource_type else None


def _object(value: object, model: type) -> bool:
    if not isinstance(value, dict) or not value:
        return False
    shape = _shape(model)
    fields = shape.fields
    chosen: set[str] = set()
    for name, item in value.items():
        if name == "resourceType":
            if shape.resource_type is None or item != shape.resource_type:
                return False
            continue
        spec = fields.get(name)
        if spec is None:
            return False
        if spec.choice is not None:
            if spec.choice in chosen:
                return False
            chosen.add(spec.choice)
        if spec.repeated:
            if not isinstance(item, list) or not item or not all(_value(x, spec) for x in item):
                return False
        elif not _value(item, spec):
            return False
    if any(name not in value for name in shape.required):
        return False
    return all(choice in chosen for choice, required in shape.choices.items() if required)


def _value(value: object, spec: _Field) -> bool:
    if spec.model is None:
        return spec.check(value)
    if spec.model.__name__ == "Resource":  # `contained`: any resource, by its resourceType
        if not isinstance(value, dict) or not isinstance(value.get("resourceType"), str):
            return False
        model = _resource_model(value["resourceType"])
        return model is not None and _object(value, model)
    return _object(value, spec.model)


@cache
def _shape(model: type) -> _Shape:
    fields: dict[str, _Field] = {}
    required: list[str] = []
    choices: dict[str, bool] = {}
    for name, info in model.model_fields.items():  # type: ignore[attr-defined]
        extra = info.json_schema_extra or {}
        if not extra.get("element_property") or name.endswith("__ext"):
            continue  # fhir_comments and the `_element` extensions: never plainly valid
        alias = info.alias or name
        repeated, inner = _unwrapped(info.annotation)
        element = _element_model(inner)
        codes = _listed_codes(extra.get("enum_values"))
        check = _never if element is not None else _primitive(inner)
        if codes is not None:
            check = _bound(check, codes)
        choice = extra.get("one_of_many")
        fields[alias] = _Field(repeated, element, check, choice, codes)
        if choice is not None:
            choices[choice] = choices.get(choice, False) or extra.get("one_of_many_required") is True
        if info.is_required() or extra.get("element_required"):
            required.append(alias)
    resource_type = model.__resource_type__ if model.has_resource_base() else None  # type: ignore[attr-defined]
    return _Shape(resource_type, fields, tuple(required), choices)


def _bound(check: Callable[[object], bool], codes: frozenset[str]) -> Callable[[object], bool]:
    # a code outside its required value set is not plainly valid: the caller parses and reports it
    # (gateway.validation.fhir_codes), so a resource this module vouches for has no unbound code to look for
    return lambda value: check(value) and value in codes  # type: ignore[operator]


def _listed_codes(listed: Any) -> frozenset[str] | None:
    """The codes of a required binding as the model lists them; None where the list is cut short ("+")."""
    if not listed or "+" in listed:
        return None
    return frozenset(listed)


def _unwrapped(annotation: Any) -> tuple[bool, Any]:
    """(repeats, the element's type) of an `Optional[List[...]]`-like annotation."""
    repeated = False
    while True:
        origin = typing.get_origin(annotation)
        if origin in (typing.Union, types.UnionType):
            kept = [a for a in typing.get_args(annotation) if a is not type(None)]
            if len(kept) != 1:
                return repeated, None  # fhir_comments and the like
            annotation = kept[0]
        elif origin is list:
            if repeated:
                return repeated, None
            repeated, annotation = True, typing.get_args(annotation)[0]
        else:
            return repeated, annotation


def _element_model(annotation: Any) -> type | None:
    getter = getattr(annotation, "get_model_klass", None)
    return getter() if getter is not None else None


def _primitive(annotation: Any) -> Callable[[object], bool]:
    if annotation is bool:
        return _boolean
    if typing.get_origin(annotation) is not typing.Annotated:
        return _never
    base, *metadata = typing.get_args(annotation)
    kind = type(metadata[0]).__name__ if metadata else ""
    if base is int and kind in ("Integer", "UnsignedInt", "PositiveInt", "Integer64"):
        return _integer(metadata[0].min_length, metadata[0].max_length)
    return _PRIMITIVES.get(kind, _never)
