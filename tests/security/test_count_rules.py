"""The count rules as properties: no count 1 … k-1 ever reaches a PUBLIC or REGISTERED caller."""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gateway.security.policy import rounded, suppressed
from gateway.variants.query import VariantHit
from tests.security.secfakes import FakeVariantStore
from tests.security.sechelpers import bearer, make_node


@given(st.integers(min_value=0, max_value=10**6), st.integers(1, 100), st.integers(1, 20))
def test_rounded_counts_are_never_small(count, step, threshold):
    if suppressed(count, threshold):
        return
    value = rounded(count, step, threshold)
    assert value == 0 if count == 0 else value >= threshold
    if step > 1 and count:
        assert value % step == 0


@given(st.integers(-5, 100), st.integers(1, 20))
def test_suppressed_is_exactly_one_to_k_minus_one(count, k):
    assert suppressed(count, k) == (1 <= count <= k - 1)


def _numbers(body: dict) -> list[int]:
    """Every count-like number in a Beacon response (summary, result sets, info)."""
    out = []
    summary = body.get("responseSummary", {})
    if "numTotalResults" in summary:
        out.append(summary["numTotalResults"])
    for rs in (body.get("response") or {}).get("resultSets", []):
        out.append(rs["resultsCount"])
    out += [v for k, v in (body.get("info") or {}).items() if k.endswith("Count") and isinstance(v, int)]
    return out


@pytest.fixture(scope="module")
def node(tmp_path_factory, jwks_files):
    datasets = [
        {
            "id": "ds-public",
            "security_level": "PUBLIC",
            "policy": {"max_granularity": {"public": "count", "registered": "record"}},
        },
        {"id": "ds-controlled", "security_level": "CONTROLLED", "policy": {"grants": ["urn:grant:c"]}},
    ]
    app = make_node(
        tmp_path_factory.mktemp("node"),
        jwks_files,
        datasets,
        FakeVariantStore.standard(),
        budget={"anonymous": 10**6, "registered": 10**6},
    )
    yield app
    app.extensions["gateway"].store.close()


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    allele_counts=st.lists(st.integers(1, 12), min_size=0, max_size=30),
    window=st.tuples(st.integers(0, 30), st.integers(1, 31)),
    granularity=st.sampled_from(["boolean", "count", "record"]),
    who=st.sampled_from(["anonymous", "registered"]),
)
def test_no_small_count_ever_appears(node, mint, allele_counts, window, granularity, who):
    hits = [
        VariantHit(
            variant_id=f"ds-public:GRCh38:1-{i}-A-G",
            dataset_id="ds-public",
            assembly="GRCh38",
            reference_name="1",
            start=i,
            end=i + 1,
            reference_bases="A",
            alternate_bases="G",
            variant_type="SNP",
            allele_count=ac,
            allele_number=200,
            carrier_count=ac,
        )
        for i, ac in enumerate(allele_counts)
    ]
    node.extensions["gateway"].variants = FakeVariantStore(hits, {"ds-public": 100, "ds-controlled": 100})
    start, end = min(window), max(window) + 1
    url = f"/api/g_variants?referenceName=1&start={start}&end={end}&requestedGranularity={granularity}"
    headers = bearer(mint.token()) if who == "registered" else {}
    body = node.test_client().get(url, headers=headers).get_json()
    assert "error" not in body, body
    for number in _numbers(body):
        assert not 1 <= number <= 4, (number, body)
