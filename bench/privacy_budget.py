"""What the inference defences cost honest users, and what they deny an attacker (not a test).

    python bench/privacy_budget.py [--cohorts demo pxf]

Two cohorts, each served as a PUBLIC dataset whose counts are opened to anonymous callers:
`demo`, the synthetic demo cohort (60 individuals), and `pxf`, the 300 reference phenopackets in
../shared/reference/phenopackets (a rare-disease cohort: most phenotypes and diagnoses are held by a
handful of people). Each cohort is served twice in the same run: with the inference defences of
issue 12 (small groups answered as empty, age filters in 10-year bands: the defaults) and without
them (`small_groups: boolean`, `age_band_years: 0`: what the node answered before).

Honest queries: one per filter a user would send alone — every phenotype and disease term held
(with descendants), each sex, and age thresholds at the ages people ask about (2, 5, 10, 16, 18,
30, 40, 50, 60, 65, 80 years, both directions). A query is "answered as before" when the defended
answer shows the same existence and count as the undefended one. Reported over all queries and over
queries on groups of at least k individuals (the target is ≥ 95 % there); plus the mean budget
units an honest query costs (gateway.security.policy.information_cost).

The bisection replay (the attacks of issue 12, §2): for every phenotype held by 2…4 people, age
bisection for the group's youngest and oldest member; for the oldest man, isolation by age and a
yes/no query per phenotype term. Recovered attributes (an age within a year, a phenotype read as
present) are counted with and without the defences.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
REFERENCE = REPO.parent / "shared" / "reference"

K = 5
AGES = (2, 5, 10, 16, 18, 30, 40, 50, 60, 65, 80)
DAYS_PER_YEAR = 365.2425
OPERATOR = "bench-operator-token"


def make_node(cohort: str, defended: bool):
    from app import create_app

    dataset_id = "synthetic-demo" if cohort == "demo" else "pxf"
    policy: dict = {"max_granularity": {"public": "count"}, "min_public_size": 0}
    if not defended:
        policy.update(small_groups="boolean", age_band_years=0)
    app = create_app(
        {
            "data_dir": tempfile.mkdtemp(prefix="privacy-bench-"),
            "secret_key": "00" * 32,
            "log_level": "WARNING",
            "operator_tokens": [OPERATOR],
            "demo": cohort == "demo",
            "node": {"id": "org.example.bench", "base_url": "http://localhost"},
            "datasets": [{"id": dataset_id, "security_level": "PUBLIC", "policy": policy}],
            "security": {"budget": {"anonymous": None, "registered": None}, "audit": False},
        }
    )
    if cohort == "pxf":
        from gateway.services.ingest import ingest_phenopackets

        services = app.extensions["gateway"]
        for path in sorted((REFERENCE / "phenopackets").glob("*/*.json")):
            if not path.parent.name.startswith("_"):
                ingest_phenopackets(
                    [json.loads(path.read_text())], store=services.store, key=services.key, dataset_id=dataset_id
                )
    return app, dataset_id


def truth(app, dataset_id: str) -> list[dict]:
    import sqlalchemy as sa

    from gateway.store.tables import phenopacket_terms, phenopackets

    p, t = phenopackets.c, phenopacket_terms.c
    with app.extensions["gateway"].store.engine.connect() as connection:
        rows = connection.execute(sa.select(p.pk, p.sex, p.age_days).where(p.dataset_id == dataset_id)).all()
        terms = connection.execute(
            sa.select(t.phenopacket_pk, t.term, t.kind).where(
                t.dataset_id == dataset_id, t.kind.in_(("phenotype", "disease"))
            )
        ).all()
    held: dict[int, set[str]] = {}
    for pk, term, _ in terms:
        held.setdefault(pk, set()).add(term)
    return [
        {
            "sex": r.sex,
            "age": None if r.age_days is None else r.age_days / DAYS_PER_YEAR,
            "terms": held.get(r.pk, set()),
        }
        for r in rows
    ]


def honest_queries(people: list[dict]) -> list[list[dict]]:
    terms = sorted({t for p in people for t in p["terms"]})
    queries = [[{"id": t}] for t in terms]
    queries += [[{"id": "NCIT:C20197"}], [{"id": "NCIT:C16576"}]]
    for years in AGES:
        queries.append([{"id": "age", "operator": ">=", "value": f"P{years}Y"}])
        queries.append([{"id": "age", "operator": "<", "value": f"P{years}Y"}])
    return queries


def ask(client, filters: list[dict], headers=None) -> tuple[bool, int | None]:
    body = {"query": {"filters": filters, "requestedGranularity": "count"}}
    answer = client.post("/api/individuals", json=body, headers=headers or {}).get_json()
    summary = answer["responseSummary"]
    return summary["exists"], summary.get("numTotalResults")


def utility(cohort: str) -> dict:
    from gateway.security.policy import information_cost

    defended, dataset_id = make_node(cohort, True)
    plain, _ = make_node(cohort, False)
    people = truth(defended, dataset_id)
    operator = {"Authorization": f"Bearer {OPERATOR}"}
    queries = honest_queries(people)
    same = same_large = large = 0
    cost = 0
    for filters in queries:
        size = ask(defended.test_client(), filters, operator)[1] or 0
        before = ask(plain.test_client(), filters)
        after = ask(defended.test_client(), filters)
        cost += information_cost(size, len(people), K)
        same += before == after
        if size >= K:
            large += 1
            same_large += before == after
    return {
        "cohort": cohort,
        "individuals": len(people),
        "queries": len(queries),
        "answered_as_before": same / len(queries),
        "queries_on_groups_ge_k": large,
        "answered_as_before_ge_k": same_large / max(large, 1),
        "mean_budget_units": cost / len(queries),
        "replay": {"undefended": replay(plain, people), "defended": replay(defended, people)},
    }


def _bisect_age(client, group: list[dict], older: bool) -> int | None:
    low, high = 0, 120
    while low < high:
        mid = (low + high + (1 if older else 0)) // 2
        found = ask(client, [*group, {"id": "age", "operator": ">=" if older else "<", "value": f"P{mid}Y"}])[0]
        if older:
            low, high = (mid, high) if found else (low, mid - 1)
        else:
            low, high = (low, mid) if found else (mid + 1, high)
    guess = low if older else low - 1
    return guess if 0 < guess < 119 else None


def replay(app, people: list[dict]) -> dict:
    """The bisection attacks; recovered attributes counted against the truth."""
    client = app.test_client()
    by_term: dict[str, list[dict]] = {}
    for person in people:
        for term in person["terms"]:
            by_term.setdefault(term, []).append(person)
    ages_recovered = ages_tried = 0
    for term, group in sorted(by_term.items()):
        ages = sorted(p["age"] for p in group if p["age"] is not None)
        if not 2 <= len(group) <= 4 or not ages:
            continue
        base = [{"id": term, "includeDescendantTerms": False}]
        for older, true in ((False, ages[0]), (True, ages[-1])):
            ages_tried += 1
            guess = _bisect_age(client, base, older)
            ages_recovered += guess is not None and abs(guess - int(true)) <= 1
    men = sorted((p for p in people if p["sex"] == "MALE" and p["age"] is not None), key=lambda p: p["age"])
    terms_recovered = 0
    if men:
        male = {"id": "NCIT:C20197"}
        oldest = _bisect_age(client, [male], True)
        isolate = [male, {"id": "age", "operator": ">=", "value": f"P{oldest if oldest is not None else 0}Y"}]
        for term in sorted({t for p in people for t in p["terms"]}):
            if ask(client, [*isolate, {"id": term, "includeDescendantTerms": False}])[0] and term in men[-1]["terms"]:
                terms_recovered += 1
    return {"ages_tried": ages_tried, "ages_recovered": ages_recovered, "phenotypes_recovered": terms_recovered}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--cohorts", nargs="+", default=["demo", "pxf"], choices=["demo", "pxf"])
    args = parser.parse_args()
    for cohort in args.cohorts:
        result = utility(cohort)
        print(json.dumps(result))
        print(
            f"{cohort}: {result['individuals']} individuals, {result['queries']} honest single queries: "
            f"{result['answered_as_before']:.1%} answered as before; on groups ≥ {K}: "
            f"{result['answered_as_before_ge_k']:.1%} of {result['queries_on_groups_ge_k']}; "
            f"mean cost {result['mean_budget_units']:.2f} budget units; bisection replay recovered "
            f"{result['replay']['undefended']} without the defences, {result['replay']['defended']} with them"
        )


if __name__ == "__main__":
    main()
