"""A defended node over the synthetic demo cohort (60 individuals with sex, age, HPO terms and genotypes),
built through the real pipelines, for the disclosure and inference attacks.

Its dataset is PUBLIC with the default defences (k = 5, rounding 10, rare alleles ≤ 2, 10-year age
bands, small groups answered as empty) and opened to records for PUBLIC and REGISTERED callers, the
most exposed configuration an operator can choose: every rule must hold on every route even then.
"""

from __future__ import annotations

import sqlalchemy as sa

from tests.security.sechelpers import OPERATOR_TOKEN, bearer, node_config

DATASET = "synthetic-demo"
EXPOSED = {
    "id": DATASET,
    "security_level": "PUBLIC",
    "policy": {"max_granularity": {"public": "record", "registered": "record"}, "min_public_size": 0},
}
OPERATOR = bearer(OPERATOR_TOKEN)
DAYS_PER_YEAR = 365.2425


def make_demo_node(tmp_path, jwks_files, policy: dict | None = None, budget: dict | None = None):
    from app import create_app

    dataset = {**EXPOSED, "policy": {**EXPOSED["policy"], **(policy or {})}}
    config = node_config(tmp_path, jwks_files, [dataset])
    config["demo"] = True
    config["security"]["budget"] = budget or {"window_seconds": 3600, "anonymous": None, "registered": None}
    return create_app(config)


def people(app) -> list[dict]:
    """The truth the attacker is after: each individual's id, sex, age in whole years and present HPO terms."""
    from gateway.store.tables import phenopacket_terms, phenopackets

    store = app.extensions["gateway"].store
    p, t = phenopackets.c, phenopacket_terms.c
    with store.engine.connect() as connection:
        rows = connection.execute(sa.select(p.pk, p.subject_id, p.sex, p.age_days).where(p.dataset_id == DATASET)).all()
        terms = connection.execute(sa.select(t.phenopacket_pk, t.term).where(t.kind == "phenotype")).all()
    by_pk: dict[int, set[str]] = {}
    for pk, term in terms:
        by_pk.setdefault(pk, set()).add(term)
    return [
        {
            "id": r.subject_id,
            "sex": r.sex,
            "age": int(r.age_days // DAYS_PER_YEAR) if r.age_days is not None else None,
            "terms": by_pk.get(r.pk, set()),
        }
        for r in rows
    ]


def variants_by_allele_count(app) -> list[tuple[str, int]]:
    """(variant id, allele count) of every variant of the dataset."""
    from gateway.variants.query import VariantQuery

    store = app.extensions["gateway"].variants
    hits, _ = store.search(VariantQuery(dataset_ids=(DATASET,)), skip=0, limit=10_000)
    return [(h.variant_id, h.allele_count) for h in hits]
