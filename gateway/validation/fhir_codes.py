"""Required value-set bindings of `code` elements, for every resource type and data type.

The R4B models check a code's spelling, not its value set, but they list the codes of each `code`
element bound to a required value set (fhir.resources' `enum_values`; cut short with "+" where the
value set is long, and then not checked here). `unbound_codes` walks a resource along the same
field tables as the fast path (gateway.validation.fhir_shape) and names every code outside its
list. Elements the model does not know are left to the model's own parse, which reports them.
"""

from __future__ import annotations

from collections.abc import Iterator

from gateway.validation.fhir_shape import _Field, _resource_model, _shape


def unbound_codes(resource: dict) -> Iterator[tuple[str, str, frozenset[str]]]:
    """(JSON pointer, code, the codes allowed) for each code of `resource` outside its required value set."""
    model = _resource_model(resource.get("resourceType")) if isinstance(resource.get("resourceType"), str) else None
    if model is not None:
        yield from _walk(resource, model, "")


def _walk(value: dict, model: type, where: str) -> Iterator[tuple[str, str, frozenset[str]]]:
    fields = _shape(model).fields
    for name, item in value.items():
        spec = fields.get(name)
        if spec is None:
            continue
        place = f"{where}/{name}"
        if spec.repeated and isinstance(item, list):
            for n, one in enumerate(item):
                yield from _element(one, spec, f"{place}/{n}")
        else:
            yield from _element(item, spec, place)


def _element(value: object, spec: _Field, place: str) -> Iterator[tuple[str, str, frozenset[str]]]:
    if spec.model is None:
        if spec.codes is not None and isinstance(value, str) and value not in spec.codes:
            yield place, value, spec.codes
        return
    if not isinstance(value, dict):
        return
    if spec.model.__name__ == "Resource":  # `contained`: any resource, by its resourceType
        model = _resource_model(value["resourceType"]) if isinstance(value.get("resourceType"), str) else None
        if model is not None:
            yield from _walk(value, model, place)
        return
    yield from _walk(value, spec.model, place)
