"""gateway.validation.fhir_shape vouches only for what the fhir.resources R4B models accept: real
resources take the fast path, no random mutation of them that the model rejects is vouched for, and
a rejected resource's findings (code, pointer) are the model's as before."""

from __future__ import annotations

import copy
import json
import random
import re

import pytest
from fhir.resources.R4B import get_fhir_model_class
from pydantic import ValidationError

from gateway.validation import ALL_BUNDLE_TYPES, validate_fhir
from gateway.validation.fhir import check_fhir
from gateway.validation.fhir_shape import plainly_valid

from .json_places import holder, places

pytestmark = pytest.mark.slow  # several seconds: pytest-xdist starts it first (tests/conftest.py)


def _model_accepts(resource) -> bool:
    try:
        get_fhir_model_class(resource["resourceType"]).model_validate(resource)
    except (ValidationError, ValueError, TypeError, KeyError):
        return False
    return True


def _real(fhir_dir) -> list[dict]:
    """Every resource of the real examples: lone ones and Bundle entries (contained ones inside them)."""
    found = []
    for path in sorted(fhir_dir.rglob("*.json")):
        doc = json.loads(path.read_text(encoding="utf-8"))
        if not isinstance(doc, dict) or "resourceType" not in doc:
            continue
        if doc["resourceType"] == "Bundle":
            found += [e["resource"] for e in doc.get("entry") or () if isinstance(e.get("resource"), dict)]
        else:
            found.append(doc)
    return found


# Replacements of one value that the model may or may not accept.
ODD_VALUES: list[object] = [
    None,
    "",
    " ",
    "\u00a0",
    "a\u2028b",
    " padded ",
    "two  spaces",
    "tab\there",
    "\ud800",
    "x",
    "-1",
    "http://example.org/a b",
    "urn:oid:1.2.abc",
    "2020",
    "2020-13",
    "2020-02-30",
    "2020-01-01T10:00:00",
    "2020-01-01T24:00:00Z",
    "2020-01-01T10:00:60Z",
    "2020-01-01T10:00:00.1234567+01:00",
    "2020-01-01T10:00+01:00",
    "10:00:00",
    "0000-01-01",
    0,
    -1,
    2**31,
    2**40,
    1.5,
    1e400,
    float("nan"),
    True,
    [],
    {},
    ["x"],
    [{}],
    [None],
    {"x": 1},
    {"resourceType": "Patient"},
]
# Element names that real resources use: added where they may not belong, or as a second choice type.
NAMES = [
    "valueString",
    "valueQuantity",
    "valueCodeableConcept",
    "valueBoolean",
    "valueDateTime",
    "valueInteger",
    "onsetDateTime",
    "onsetAge",
    "effectivePeriod",
    "effectiveDateTime",
    "status",
    "code",
    "coding",
    "system",
    "display",
    "text",
    "div",
    "url",
    "id",
    "resourceType",
    "extension",
    "contained",
    "reference",
    "subject",
    "_status",
    "fhir_comments",
    "resource_type",
    "class_fhir",
    "bogus",
]


def _mutations(rng, doc):
    spots = list(places(doc))[1:]
    for path, value in rng.sample(spots, min(20, len(spots))):
        parent = holder(doc, path[:-1])
        for odd in rng.sample(ODD_VALUES, 4):
            yield lambda d, p=path, v=odd: holder(d, p[:-1]).__setitem__(p[-1], copy.deepcopy(v))
        if isinstance(value, list) and value:  # one item where a list belongs
            yield lambda d, p=path, v=value: holder(d, p[:-1]).__setitem__(p[-1], copy.deepcopy(v[0]))
        elif not isinstance(value, list):  # a list where one value belongs
            yield lambda d, p=path, v=value: holder(d, p[:-1]).__setitem__(p[-1], [copy.deepcopy(v)])
        if isinstance(parent, dict):
            yield lambda d, p=path: holder(d, p[:-1]).pop(p[-1])  # a required element goes missing
            name = rng.choice(NAMES)
            other = copy.deepcopy(rng.choice(spots)[1])
            yield lambda d, p=path, n=name, v=other: holder(d, p[:-1]).__setitem__(n, v)
            if isinstance(path[-1], str) and path[-1][:1].islower():  # a second type of a choice [x]
                prefix = re.match(r"[a-z]+", path[-1]).group()
                yield lambda d, p=path, c=prefix: holder(d, p[:-1]).__setitem__(c + "String", "x")
                yield lambda d, p=path, c=prefix: holder(d, p[:-1]).__setitem__(c + "Boolean", True)


def test_real_resources_take_the_fast_path(fhir_dir):
    resources = _real(fhir_dir)
    assert len(resources) > 1000
    vouched = [r for r in resources if plainly_valid(r)]
    assert all(_model_accepts(r) for r in vouched)
    assert len(vouched) > 0.9 * len(resources)  # the plain case is the common case


def test_no_mutation_the_model_rejects_is_vouched_for(fhir_dir):
    rng = random.Random(11)
    resources = [r for r in _real(fhir_dir) if plainly_valid(r)]
    tried = rejected = vouched = 0
    for resource in rng.sample(resources, 150):
        for mutate in _mutations(rng, resource):
            changed = copy.deepcopy(resource)
            mutate(changed)
            tried += 1
            if not _model_accepts(changed):
                rejected += 1
                assert not plainly_valid(changed), changed
            elif plainly_valid(changed):
                vouched += 1
    assert tried > 10_000 and rejected > 3_000 and vouched > 1_000  # both verdicts are reached often


def test_every_real_document_has_the_same_findings_with_and_without_the_fast_path(fhir_dir):
    """validate_fhir (fast path: no models kept) and check_fhir (every resource parsed with its model) agree
    on every real Bundle and resource, warnings included."""
    checked = 0
    for path in sorted(fhir_dir.rglob("*.json")):
        doc = json.loads(path.read_text(encoding="utf-8"))
        if not isinstance(doc, dict) or "resourceType" not in doc:
            continue
        fast = validate_fhir(doc, bundle_types=ALL_BUNDLE_TYPES)
        parsed = check_fhir(doc, bundle_types=ALL_BUNDLE_TYPES).report
        assert [i.to_dict() for i in fast] == [i.to_dict() for i in parsed], path.name
        checked += 1
    assert checked > 250


@pytest.mark.parametrize(
    ("change", "code", "location"),
    [
        (lambda r: r.update(bogus=1), "fhir-structure", "/bogus"),
        (lambda r: r.pop("code"), "fhir-required", "/code"),
        (lambda r: r.update(status=""), "fhir-value", "/status"),
        (lambda r: r.update(valueString="x"), None, ""),  # a second type of value[x]
        (lambda r: r["code"].update(coding={"code": "x"}), None, "/code/coding"),
        (lambda r: r.update(effectiveDateTime="2020-02-30"), "fhir-value", "/effectiveDateTime"),
    ],
)
def test_rejections_are_the_models(change, code, location):
    resource = {
        "resourceType": "Observation",
        "id": "o1",
        "status": "final",
        "code": {"coding": [{"system": "http://loinc.org", "code": "8302-2"}]},
        "subject": {"reference": "Patient/p1"},
        "valueQuantity": {"value": 180, "unit": "cm"},
    }
    assert plainly_valid(resource) and validate_fhir(resource).ok
    change(resource)
    report = validate_fhir(resource)
    assert not plainly_valid(resource) and not report.ok
    # the same findings as the model's own parse (check_fhir keeps the model and always parses)
    assert [(i.code, i.location, i.message) for i in report.errors] == [
        (i.code, i.location, i.message) for i in check_fhir(resource).report.errors
    ]
    if code is not None:
        assert any(i.code == code and i.location == location for i in report.errors), report.errors
    else:
        assert any(i.location == location for i in report.errors), report.errors
