"""The content hash kept in every stored FHIR row: its bytes are json.dumps's, whichever encoder writes them.

A row's hash says whether a resource sent again changes anything; were the bytes to change with the
encoder, every resource a hospital sends again after an upgrade would become a new version."""

from __future__ import annotations

import hashlib
import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.store.fhir_resources import content_hash

from ..validation.test_fhir_shape import _real

pytestmark = pytest.mark.slow  # several seconds: pytest-xdist starts it first (tests/conftest.py)


def _reference_hash(resource: dict) -> str:
    content = {k: v for k, v in resource.items() if k != "meta"}
    return hashlib.sha256(json.dumps(content, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


def test_every_real_resource_hashes_as_json_dumps_does(reference_dir):
    resources = _real(reference_dir / "fhir")
    assert len(resources) > 1000
    assert [r.get("id") for r in resources if content_hash(r) != _reference_hash(r)] == []


_scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**80), max_value=2**80)
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text()
)
_json = st.recursive(
    _scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=6), inner, max_size=4),
    max_leaves=20,
)


@settings(max_examples=500, deadline=None)
@given(st.dictionaries(st.text(max_size=8), _json, max_size=6))
def test_any_json_content_hashes_as_json_dumps_does(resource):
    assert content_hash(resource) == _reference_hash(resource)


@pytest.mark.parametrize(
    "value",
    [
        "\x7f",
        "\x00\x1f\t\n",
        "Müller",
        "😀",
        1e16,
        1e-7,
        1e-05,
        0.00015,
        5e-324,
        float("nan"),
        float("inf"),
        2**70,
        -0.0,
        "nullish",
    ],
)
def test_spellings_the_encoders_differ_on_hash_as_json_dumps_does(value):
    resource = {"resourceType": "Observation", "note": [{"text": value}], "valueQuantity": {"value": value}}
    assert content_hash(resource) == _reference_hash(resource)


def test_keys_sort_by_code_point_past_ascii_too():
    resource = {"z": 1, "ä": 2, "😀": 3, "\uffff": 4, "A": 5, "urn": "urn:uuid:5e1f", "x": "1e5"}
    assert content_hash(resource) == _reference_hash(resource)


def test_the_server_s_meta_is_not_content():
    resource = {"resourceType": "Patient", "id": "p", "gender": "female"}
    stamped = {**resource, "meta": {"versionId": "3", "lastUpdated": "2026-12-01T10:00:00Z"}}
    assert content_hash(stamped) == content_hash(resource)
    assert content_hash({**resource, "gender": "male"}) != content_hash(resource)
