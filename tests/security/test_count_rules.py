"""The count rules as properties: no count 1 … k-1 ever reaches a PUBLIC or REGISTERED caller."""

from __future__ import annotations

from dataclasses import replace

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gateway.security.policy import protect_record, rounded, suppressed
from gateway.variants.query import Carrier, VariantHit
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


COUNT_NAMES = {"numTotalResults", "resultsCount", "alleleNumber", "individuals", "cohortSize", "eventSize"}


def _numbers(node, key: str = "", counting: bool = False) -> list[int]:
    """Every count-like number anywhere in a Beacon response, records and collections included: integers named
    like counts, every integer in a distribution, the length of each list of cases, and the allele count a
    frequency implies (frequency times allele number)."""
    out: list[int] = []
    if isinstance(node, bool):
        return out
    if isinstance(node, int):
        if counting or key in COUNT_NAMES or key.endswith(("Count", "Size")):
            out.append(node)
        return out
    if isinstance(node, list):
        if key == "caseLevelData":
            out.append(len(node))
        for item in node:
            out += _numbers(item, key, counting)
        return out
    if isinstance(node, dict):
        number = (node.get("info") or {}).get("alleleNumber") if isinstance(node.get("info"), dict) else None
        for population in node.get("frequencyInPopulations") or ():
            for frequency in population["frequencies"]:
                if number:
                    out.append(round(frequency["alleleFrequency"] * number))
        for k, v in node.items():
            out += _numbers(v, k, counting or k == "distribution")
    return out


@pytest.fixture(scope="module")
def node(tmp_path_factory, jwks_files):
    datasets = [
        {
            "id": "ds-public",
            "security_level": "PUBLIC",
            "policy": {"max_granularity": {"public": "record", "registered": "record"}},
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
    hits = [_hit(i, ac) for i, ac in enumerate(allele_counts)]
    carriers = {
        h.variant_id: [Carrier(f"S{j}", None, None, "GENO:0000135") for j in range(h.carrier_count)] for h in hits
    }
    node.extensions["gateway"].variants = FakeVariantStore(hits, {"ds-public": 100, "ds-controlled": 100}, carriers)
    start, end = min(window), max(window) + 1
    url = f"/api/g_variants?referenceName=1&start={start}&end={end}&requestedGranularity={granularity}"
    headers = bearer(mint.token()) if who == "registered" else {}
    body = node.test_client().get(url, headers=headers).get_json()
    assert "error" not in body, body
    numbers = _numbers(body)
    for number in numbers:
        assert not 1 <= number <= 4, (number, body)


def _hit(i: int, ac: int, an: int = 200) -> VariantHit:
    return VariantHit(
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
        allele_number=an,
        carrier_count=ac,
    )


def test_counts_inside_variant_records_for_a_registered_caller(node, mint):
    hits = [_hit(0, 3), _hit(1, 20), _hit(2, 37), _hit(3, 8), _hit(4, 60), _hit(5, 9)]
    carriers = {h.variant_id: [Carrier(f"S{j}", None, None, "GENO:0000135") for j in range(3)] for h in hits}
    node.extensions["gateway"].variants = FakeVariantStore(hits, {"ds-public": 100, "ds-controlled": 100}, carriers)
    url = "/api/g_variants?referenceName=1&start=0&end=10&datasetIds=ds-public&requestedGranularity=record"
    body = node.test_client().get(url, headers=bearer(mint.token())).get_json()
    assert body["meta"]["returnedGranularity"] == "record", body
    infos = {r["variantInternalId"]: r for r in body["response"]["resultSets"][0]["results"]}
    small = infos["ds-public:GRCh38:1-0-A-G"]
    assert "alleleCount" not in small["info"] and "carrierCount" not in small["info"]
    assert small["info"]["alleleNumber"] == 200
    assert "frequencyInPopulations" not in small  # 3/200 would give the count back
    assert all("caseLevelData" not in r for r in infos.values())  # three carriers: a small count
    assert infos["ds-public:GRCh38:1-2-A-G"]["info"]["alleleCount"] == 40  # 37 rounded
    assert "frequencyInPopulations" not in infos["ds-public:GRCh38:1-2-A-G"]
    exact = infos["ds-public:GRCh38:1-1-A-G"]  # 20 and 200 need no rounding: the frequency is shown
    assert exact["info"]["alleleCount"] == 20 and exact["frequencyInPopulations"][0]["frequencies"]
    privacy = " ".join(body["info"]["privacy"])
    assert "inside records are not shown" in privacy and "case-level" in privacy
    from tests.security.sechelpers import audit_records

    assert audit_records(node)[-1]["decision"] == "suppressed"


def test_a_controlled_caller_sees_records_exactly(node, mint):
    hits = [_hit(i, 3) for i in range(6)]
    hits = [
        replace(h, dataset_id="ds-controlled", variant_id=h.variant_id.replace("public", "controlled")) for h in hits
    ]
    carriers = {h.variant_id: [Carrier("S1", None, None, "GENO:0000135")] for h in hits}
    node.extensions["gateway"].variants = FakeVariantStore(hits, {"ds-public": 100, "ds-controlled": 100}, carriers)
    url = "/api/g_variants?referenceName=1&start=0&end=10&datasetIds=ds-controlled&requestedGranularity=record"
    token = mint.passport(mint.visa("urn:grant:c"))
    body = node.test_client().get(url, headers=bearer(token)).get_json()
    records = body["response"]["resultSets"][0]["results"]
    assert all(r["info"]["alleleCount"] == 3 and len(r["caseLevelData"]) == 1 for r in records)
    assert "privacy" not in body.get("info", {})


_json_leaf = st.one_of(st.integers(-3, 60), st.booleans(), st.text(max_size=3))
_keys = st.sampled_from(["alleleCount", "cohortSize", "eventSize", "individuals", "label", "n", "distribution", "x"])


@given(
    record=st.recursive(
        _json_leaf,
        lambda inner: st.one_of(st.lists(inner, max_size=4), st.dictionaries(_keys, inner, max_size=4)),
        max_leaves=25,
    ),
    k=st.integers(1, 8),
    step=st.integers(1, 10),
)
def test_protect_record_leaves_no_small_count(record, k, step):
    shown, changes = protect_record({"r": record}, k, step)
    for number in _numbers(shown):
        assert not 1 <= number < k, (number, shown)
    if not changes:
        assert shown == {"r": record}


@pytest.fixture(scope="module")
def cohort_node(tmp_path_factory, jwks_files):
    """A few real FHIR patients in a PUBLIC dataset whose records the operator opened to every tier."""
    from tests.security.test_erasure_and_pii import OPERATOR, _bundles

    datasets = [
        {
            "id": "mii",
            "security_level": "PUBLIC",
            "policy": {"max_granularity": {"public": "record", "registered": "record"}, "min_public_size": 0},
        }
    ]
    app = make_node(tmp_path_factory.mktemp("cohorts"), jwks_files, datasets)
    client = app.test_client()
    for path in _bundles():
        resp = client.post(
            "/fhir?dataset=mii", data=path.read_bytes(), headers={**OPERATOR, "Content-Type": "application/fhir+json"}
        )
        assert resp.status_code in (200, 201), resp.get_data(as_text=True)[:300]
    yield app
    app.extensions["gateway"].store.close()


@pytest.mark.parametrize("path", ["/api/cohorts", "/api/datasets", "/api/cohorts/mii-all", "/api/datasets/mii"])
@pytest.mark.parametrize("who", ["anonymous", "registered", "operator"])
def test_counts_inside_collections(cohort_node, mint, path, who):
    from tests.security.test_erasure_and_pii import OPERATOR

    headers = {"anonymous": {}, "registered": bearer(mint.token()), "operator": OPERATOR}[who]
    resp = cohort_node.test_client().get(path + "?requestedGranularity=record", headers=headers)
    body = resp.get_json()
    assert resp.status_code == 200, body
    assert "response" in body, body
    records = body["response"]["collections"]
    assert records and records[0]["id"].startswith("mii")
    if who == "operator":  # exact counts: the small ones the other callers must not see are there
        numbers = _numbers(records)
        assert 8 in numbers  # the eight patients, unrounded
        assert path.startswith("/api/datasets") or any(1 <= n <= 4 for n in numbers), records
        return
    for number in _numbers(records):
        assert not 1 <= number <= 4, (number, records)
    assert any("inside records" in n for n in body["info"]["privacy"])
