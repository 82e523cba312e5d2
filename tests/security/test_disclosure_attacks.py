"""The attack matrix, part two: what is disclosed about people, whatever the route (issue 12, sections 1 and 2).

Over a defended node holding the synthetic demo cohort (tests/security/demo_node.py), opened to records
for PUBLIC and REGISTERED callers: every route /map advertises, and every cross-link, meets the same
rare-allele, phenotype+variant, small-group (k), rounding and age-band rules; and the bisection attacks
that isolated people through yes/no answers recover no one's age, sex or phenotype.
"""

from __future__ import annotations

import re

import pytest

from tests.security.demo_node import (
    DATASET,
    OPERATOR,
    make_demo_node,
    people,
    variants_by_allele_count,
)
from tests.security.sechelpers import AUDIENCE, bearer

K, STEP = 5, 10


@pytest.fixture(scope="module")
def demo(tmp_path_factory, jwks_files):
    app = make_demo_node(tmp_path_factory.mktemp("demo-node"), jwks_files)
    yield app
    app.extensions["gateway"].store.close()


@pytest.fixture(scope="module")
def facts(demo):
    """Ids to put into the routes: a rare (AC = 1) variant and its carrier's records, a common variant."""
    client = demo.test_client()
    counts = variants_by_allele_count(demo)
    rare = next(v for v, ac in counts if ac == 1)
    common = next(v for v, ac in counts if ac >= 10)

    def first_id(path: str) -> str:
        body = client.get(path + "?requestedGranularity=record", headers=OPERATOR).get_json()
        return body["response"]["resultSets"][0]["results"][0]["id"]

    individual = first_id(f"/api/g_variants/{rare}/individuals")
    return {
        "g_variants": rare,
        "common": common,
        "individuals": individual,
        "biosamples": first_id(f"/api/g_variants/{rare}/biosamples"),
        "analyses": first_id(f"/api/individuals/{individual}/analyses"),
        "runs": first_id(f"/api/individuals/{individual}/runs"),
        "datasets": DATASET,
        "cohorts": client.get("/api/cohorts?requestedGranularity=record").get_json()["response"]["collections"][0][
            "id"
        ],
    }


def routes(client, facts) -> list[str]:
    """Every URL /map lists (root, single entry, every cross-link), with the ids above put in."""
    sets = client.get("/api/map").get_json()["response"]["endpointSets"]
    urls: set[str] = set()
    for endpoint_set in sets.values():
        urls.update(u for k, u in endpoint_set.items() if k in ("rootUrl", "singleEntryUrl"))
        urls.update(e["url"] for e in (endpoint_set.get("endpoints") or {}).values())
    out = []
    for url in sorted(urls):
        path = url.removeprefix(AUDIENCE)
        if "filtering_terms" in path:
            continue  # informational, no answer about people
        entry = path.split("/")[2]
        out.append(path.replace("{id}", facts[entry]))
    assert len(out) >= 30, out  # 7 entry types, their single entries and 24 cross-links
    return out


def _shown_counts(body: dict) -> list[int]:
    summary = body.get("responseSummary") or {}
    counts = [summary["numTotalResults"]] if "numTotalResults" in summary else []
    counts += [rs["resultsCount"] for rs in (body.get("response") or {}).get("resultSets", []) if "resultsCount" in rs]
    return counts


PEOPLE = ("individuals", "biosamples", "analyses", "runs")


def _about_people(path: str) -> bool:
    parts = path.split("/")
    return parts[-1] in PEOPLE or (len(parts) == 5 and parts[2] in PEOPLE)  # /x/{id}/y about one person


@pytest.mark.parametrize("who", ["anonymous", "registered"])
def test_every_route_of_map_meets_every_rule(demo, facts, mint, who):
    client = demo.test_client()
    headers = {} if who == "anonymous" else bearer(mint.token())
    checked = 0
    for path in routes(client, facts):
        body = client.get(path + "?requestedGranularity=record", headers=headers).get_json()
        truth = client.get(path + "?requestedGranularity=record", headers=OPERATOR).get_json()
        exists = (body.get("responseSummary") or {}).get("exists")
        true_total = (truth.get("responseSummary") or {}).get("numTotalResults")
        # rare alleles (PUBLIC): any answer about the AC = 1 variant is "absent"
        if who == "anonymous" and path.startswith(f"/api/g_variants/{facts['g_variants']}"):
            assert exists is False, (path, body)
        # small groups: an answer resting on 1 … k-1 individuals looks empty (one person: always)
        if _about_people(path) and true_total is not None and 0 < true_total < K:
            assert exists is False and body.get("responseSummary", {}).get("numTotalResults", 0) == 0, (path, body)
        single = len(path.split("/")) == 5 and path.split("/")[2] in PEOPLE
        if single or (len(path.split("/")) == 4 and path.split("/")[2] in PEOPLE):
            assert exists is False, (path, body)  # /individuals/{id}, /individuals/{id}/…: about one person
        # threshold and rounding: every count shown is 0 or a multiple of the step at least k
        # (a catalogue's own total counts datasets or cohorts, not people: their inner counts are checked below)
        catalogue = path.split("/")[-1] in ("datasets", "cohorts") or path.split("/")[2] in ("datasets", "cohorts")
        for count in [] if catalogue and len(path.split("/")) <= 4 else _shown_counts(body):
            assert count == 0 or (count >= K and count % STEP == 0), (path, count)
        for rs in (body.get("response") or {}).get("resultSets", []):
            assert len(rs.get("results") or []) == 0 or rs.get("resultsCount", K) >= K, (path, rs)
        for collection in (body.get("response") or {}).get("collections", []):
            for event in collection.get("collectionEvents", []):
                for name in ("eventGenders", "eventDiseases"):
                    for counts in ((event.get(name) or {}).get("distribution") or {}).values():
                        assert all(c == 0 or (c >= K and c % STEP == 0) for c in counts.values()), (path, event)
        checked += 1
    assert checked >= 30


def test_cross_links_from_a_rare_variant_say_what_the_direct_query_says(demo, facts):
    client = demo.test_client()
    rare = facts["g_variants"]
    direct = client.get(f"/api/g_variants/{rare}").get_json()["responseSummary"]["exists"]
    assert direct is False
    for target in ("individuals", "biosamples"):
        for granularity in ("boolean", "count", "record"):
            body = client.get(f"/api/g_variants/{rare}/{target}?requestedGranularity={granularity}").get_json()
            assert body["responseSummary"]["exists"] is False, (target, granularity, body)
            assert "privacy" not in body.get("info", {}) or all("rare" not in n for n in body["info"]["privacy"])


def test_anonymous_variant_plus_phenotype_is_yes_no_on_every_route(demo, facts):
    client = demo.test_client()
    common = facts["common"]
    for target in ("individuals", "biosamples"):
        body = client.get(
            f"/api/g_variants/{common}/{target}?filters=HP:0001250&requestedGranularity=record"
        ).get_json()
        assert body["meta"]["returnedGranularity"] == "boolean", body
        assert "numTotalResults" not in body["responseSummary"] and not body.get("response", {}).get("resultSets")


def test_cohort_age_range_shows_bands_not_the_extremes(demo):
    client = demo.test_client()
    ages = sorted(p["age"] for p in people(demo) if p["age"] is not None)
    for headers in ({}, OPERATOR):
        cohort = client.get("/api/cohorts?requestedGranularity=record", headers=headers).get_json()
        age_range = cohort["response"]["collections"][0]["inclusionCriteria"]["ageRange"]
        years = [int(re.match(r"P(\d+)Y", age_range[e]["iso8601duration"]).group(1)) for e in ("start", "end")]
        if headers:
            assert years == [ages[0], ages[-1]]  # CONTROLLED (the operator) sees the exact range
        else:
            assert years[0] % 5 == 0 and years[1] % 5 == 0 and years[0] <= ages[0] and years[1] > ages[-1]
            assert ages[0] not in years and ages[-1] not in years


def test_unknown_and_hidden_datasets_get_the_same_refusal(tmp_path, jwks_files, mint):
    from tests.security.sechelpers import make_node

    app = make_node(
        tmp_path,
        jwks_files,
        [
            {"id": "ds-public", "security_level": "PUBLIC", "policy": {"min_public_size": 0}},
            {"id": "ds-hidden", "security_level": "CONTROLLED"},
        ],
    )
    client = app.test_client()
    for headers in ({}, bearer(mint.token())):
        for method in ("get", "post"):
            answers = []
            for name in ("ds-hidden", "ds-nope"):
                if method == "get":
                    resp = client.get(f"/api/individuals?datasetIds={name}", headers=headers)
                else:
                    resp = client.post(
                        "/api/individuals",
                        json={"query": {"requestParameters": {"datasetIds": [name]}}},
                        headers=headers,
                    )
                error = resp.get_json()["error"]
                answers.append((resp.status_code, error["errorMessage"].replace(name, "NAME")))
            assert answers[0] == answers[1], answers
    # the operator is told a name is unknown
    assert client.get("/api/individuals?datasetIds=ds-nope", headers=OPERATOR).status_code == 400
    app.extensions["gateway"].store.close()


# --- the bisection attacks, replayed ------------------------------------------------------------


class Oracle:
    """The attacker's view: a yes/no (or a count) per query, and the number of queries answered."""

    def __init__(self, client, headers=None):
        self.client, self.headers = client, headers or {}
        self.asked = self.answered = 0
        self.refused = False

    def count(self, filters: list[dict]) -> int | None:
        """The count shown (None: yes/no only, or refused); `exists` as 1/0 when no count is shown."""
        self.asked += 1
        body = {"query": {"filters": filters, "requestedGranularity": "count"}}
        resp = self.client.post("/api/individuals", json=body, headers=self.headers)
        if resp.status_code == 429:
            self.refused = True
            return None
        assert resp.status_code == 200, resp.get_json()
        self.answered += 1
        summary = resp.get_json()["responseSummary"]
        return summary.get("numTotalResults", 1 if summary["exists"] else 0)

    def yes(self, filters: list[dict]) -> bool:
        return bool(self.count(filters))


def age(op: str, years: int) -> dict:
    return {"id": "age", "operator": op, "value": f"P{years}Y"}


def youngest_and_oldest(oracle: Oracle, group: list[dict]) -> tuple[int | None, int | None]:
    """Bisection on `age <` and `age >` over a group: its youngest and oldest member's age in years."""
    low, high = 0, 120
    while low < high and not oracle.refused:  # smallest t with someone younger than t
        mid = (low + high) // 2
        if oracle.yes([*group, age("<", mid)]):
            high = mid
        else:
            low = mid + 1
    youngest = low - 1 if 0 < low < 120 else None
    low, high = 0, 120
    while low < high and not oracle.refused:  # largest t with someone older than t (+1 year)
        mid = (low + high + 1) // 2
        if oracle.yes([*group, age(">=", mid)]):
            low = mid
        else:
            high = mid - 1
    oldest = low if 0 < low < 120 else None
    return youngest, oldest


def _close(guess: int | None, true: int) -> bool:
    """A recovered age: within a year of the truth (durations in years and ages in days round differently)."""
    return guess is not None and abs(guess - true) <= 1


def _smallest_term_group(truth: list[dict], size: int) -> tuple[str, list[dict]]:
    counts: dict[str, list[dict]] = {}
    for person in truth:
        for term in person["terms"]:
            counts.setdefault(term, []).append(person)
    term = min((t for t, g in counts.items() if len(g) == size), key=str)
    return term, counts[term]


def test_anonymous_age_bisection_recovers_no_age(demo):
    """~30 anonymous `age <`/`age >` queries used to give the exact ages of the 3 people of a phenotype."""
    truth = people(demo)
    term, group = _smallest_term_group(truth, 3)
    oracle = Oracle(demo.test_client())
    youngest, oldest = youngest_and_oldest(oracle, [{"id": term, "includeDescendantTerms": False}])
    ages = sorted(p["age"] for p in group)
    recovered = [a for a, true in ((youngest, ages[0]), (oldest, ages[-1])) if _close(a, true)]
    assert oracle.asked <= 40
    assert recovered == [], (term, ages, youngest, oldest)


def test_registered_splitting_a_suppressed_group_recovers_nothing(demo, mint):
    """Counts 1…4 used to become `exists: true`: 39 REGISTERED queries split a group of 4 by sex and age."""
    truth = people(demo)
    term, group = _smallest_term_group(truth, 4)
    oracle = Oracle(demo.test_client(), bearer(mint.token(sub="splitter")))
    base = [{"id": term, "includeDescendantTerms": False}]
    recovered = 0
    for sex in ("NCIT:C20197", "NCIT:C16576"):
        members = [p for p in group if p["sex"] == {"NCIT:C20197": "MALE", "NCIT:C16576": "FEMALE"}[sex]]
        youngest, oldest = youngest_and_oldest(oracle, [*base, {"id": sex}])
        true_ages = sorted(p["age"] for p in members)
        recovered += sum(1 for a in (youngest, oldest) if any(_close(a, t) for t in true_ages))
    assert oracle.asked <= 40
    assert recovered == 0


def test_reading_an_isolated_mans_phenotypes_recovers_nothing(demo):
    """Isolate the oldest man by age bisection, then ask yes/no for every HPO term (≈250 queries before)."""
    truth = people(demo)
    men = sorted((p for p in truth if p["sex"] == "MALE" and p["age"] is not None), key=lambda p: p["age"])
    target = men[-1]
    oracle = Oracle(demo.test_client())
    male = {"id": "NCIT:C20197"}
    _, oldest = youngest_and_oldest(oracle, [male])
    isolate = [male, age(">=", oldest if oldest is not None else target["age"])]
    terms = sorted({t for p in truth for t in p["terms"]})
    read = {t for t in terms if oracle.yes([*isolate, {"id": t, "includeDescendantTerms": False}])}
    assert not _close(oldest, target["age"])
    assert read & target["terms"] == set(), read


def test_the_budget_charges_narrow_answers_more(tmp_path, jwks_files):
    """After Raisaro et al. 2017: the budget counts information disclosed, so bisection runs out first."""
    app = make_demo_node(tmp_path, jwks_files, budget={"window_seconds": 3600, "anonymous": 40, "registered": 40})
    client = app.test_client()
    truth = people(app)
    term, _ = _smallest_term_group(truth, 3)
    broad = Oracle(client)
    env = {"REMOTE_ADDR": "192.0.2.50"}
    broad.client = app.test_client()
    answered_broad = 0
    for _ in range(45):
        resp = client.post("/api/individuals", json={"query": {"filters": []}}, environ_base=env)
        answered_broad += resp.status_code == 200
    narrow_env = {"REMOTE_ADDR": "192.0.2.51"}
    answered_narrow = 0
    for _ in range(45):
        resp = client.post(
            "/api/individuals",
            json={"query": {"filters": [{"id": term, "includeDescendantTerms": False}]}},
            environ_base=narrow_env,
        )
        answered_narrow += resp.status_code == 200
    assert answered_broad == 40  # one unit per query about the whole cohort
    assert answered_narrow <= 40 // 3  # a query narrowing to a small group costs 1 + log2(60 / k) = 4 units
    app.extensions["gateway"].store.close()


def test_network_answers_carry_the_peers_protected_answers(demo, facts, tmp_path):
    """A network node merges what each peer disclosed: its answers meet the same rules (rare allele, small group)."""
    from tests.network.conftest import network_app, serve

    rare = facts["g_variants"]
    truth = people(demo)
    small_term, _ = _smallest_term_group(truth, 3)
    with serve(demo) as peer_url:
        network = network_app({"peers": [{"url": peer_url + "/api", "timeout": 10}]}, tmp_path=tmp_path)
        client = network.test_client()
        for path in (f"/api/g_variants/{rare}", f"/api/g_variants/{rare}/individuals"):
            body = client.get(path + "?requestedGranularity=count").get_json()
            assert body["responseSummary"]["exists"] is False, (path, body)
        body = client.post(
            "/api/individuals",
            json={
                "query": {
                    "filters": [{"id": small_term, "includeDescendantTerms": False}],
                    "requestedGranularity": "count",
                }
            },
        ).get_json()
        assert body["responseSummary"]["exists"] is False, body
        whole = client.post("/api/individuals", json={"query": {"requestedGranularity": "count"}}).get_json()
        assert whole["responseSummary"]["exists"] is True  # the same network answers what may be disclosed
        network.extensions["gateway"].store.close()
