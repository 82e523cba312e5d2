"""Whatever the document, the validators answer with issues and never raise."""

from __future__ import annotations

import copy
import json

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gateway.validation import validate_fhir, validate_phenopacket

from .json_places import places

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=8),
    lambda children: st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=8), children, max_size=3),
    max_leaves=8,
)


def _replace(doc, path, value):
    if not path:
        return value
    doc = copy.deepcopy(doc)
    node = doc
    for token in path[:-1]:
        node = node[token]
    node[path[-1]] = value
    return doc


def _check_mutations(validate, doc, data):
    paths = [path for path, _ in places(doc)]
    for _ in range(5):
        path = data.draw(st.sampled_from(paths))
        mutated = _replace(doc, path, data.draw(json_values))
        report = validate(mutated)
        for issue in report:  # every location is a JSON pointer (or the root)
            assert issue.location == "" or issue.location.startswith("/")
        json.dumps(report.to_json())


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_mutated_phenopackets_never_raise(packet, data):
    _check_mutations(validate_phenopacket, packet, data)


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_mutated_bundles_never_raise(marfan, data):
    marfan["entry"] = marfan["entry"][:4]
    _check_mutations(validate_fhir, marfan, data)
