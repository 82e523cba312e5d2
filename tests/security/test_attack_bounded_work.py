"""The attack matrix, hostile inputs (issue 12 §4): every one answers a 4xx (or a report) in the surface's
own error dialect, quickly, and never a 500. Each case failed (500, or a dead worker) before its fix."""

from __future__ import annotations

import json
import time

import pytest
import sqlalchemy as sa

from tests.conftest import OPERATOR_TOKEN
from tests.pg_schema import fresh_schema
from tests.security.sechelpers import audit_records, bearer

OPERATOR = {"Authorization": f"Bearer {OPERATOR_TOKEN}"}
FHIR = "application/fhir+json"

# 342 bytes that expand to 9**6 (531,441) nodes when anything walks the document.
ALIAS_BOMB = (
    b'a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]\n'
    b"b: &b [*a,*a,*a,*a,*a,*a,*a,*a,*a]\nc: &c [*b,*b,*b,*b,*b,*b,*b,*b,*b]\n"
    b"d: &d [*c,*c,*c,*c,*c,*c,*c,*c,*c]\ne: &e [*d,*d,*d,*d,*d,*d,*d,*d,*d]\n"
    b"f: &f [*e,*e,*e,*e,*e,*e,*e,*e,*e]\nmetaData: *f\n"
)
BIG_INT = b"1" * 5000


def _not_a_500(resp) -> None:
    text = resp.get_data(as_text=True)
    assert resp.status_code < 500, text[:300]
    assert "Traceback" not in text


def _report_issue_codes(resp) -> set[str]:
    assert resp.status_code == 200, resp.get_data(as_text=True)[:300]
    return {i["code"] for i in resp.get_json()[0]["issues"]}


def test_a_yaml_alias_bomb_is_refused_before_anything_walks_it(client):
    started = time.monotonic()
    resp = client.post("/validate?type=phenopacket", data=ALIAS_BOMB)
    assert "yaml-alias" in _report_issue_codes(resp)
    assert time.monotonic() - started < 5


@pytest.mark.parametrize("closed", [False, True])
def test_deeply_nested_yaml_is_a_report_not_a_500(client, closed):
    body = b"a: " + b"[" * 5000 + (b"]" * 5000 if closed else b"")
    resp = client.post("/validate?type=phenopacket", data=body)
    assert _report_issue_codes(resp) & {"yaml-too-deep", "yaml-syntax"}


def test_a_5000_digit_integer_is_refused_on_every_json_surface(client):
    resp = client.post("/validate", data=b'{"subject": {"id": "x"}, "a": ' + BIG_INT + b"}")
    assert "json-number" in _report_issue_codes(resp)
    resp = client.post("/validate", data=b"subject: {id: x}\na: " + BIG_INT)
    assert "yaml-number" in _report_issue_codes(resp)
    resp = client.post(
        "/api/individuals",
        data=b'{"query": {"pagination": {"limit": ' + BIG_INT + b"}}}",
        content_type="application/json",
    )
    assert resp.status_code == 400 and resp.get_json()["error"]["errorCode"] == 400
    resp = client.post(
        "/fhir/Bundle/$validate", data=b'{"resourceType": "Bundle", "total": ' + BIG_INT + b"}", content_type=FHIR
    )
    assert resp.status_code == 400 and resp.get_json()["resourceType"] == "OperationOutcome"
    resp = client.post(
        "/phenopackets", data=b'{"id": "p", "x": ' + BIG_INT + b"}", content_type="application/json", headers=OPERATOR
    )
    assert resp.status_code == 400 and "error" in resp.get_json()


def test_nul_escapes_in_json_are_refused_and_escaped_backslashes_are_not(client):
    resp = client.post("/validate", data=b'{"id": "a\\u0000b", "subject": {"id": "x"}}')
    assert "json-nul" in _report_issue_codes(resp)
    resp = client.post("/validate", data=b'{"id": "a\\\\u0000b", "subject": {"id": "x"}}')
    assert "json-nul" not in _report_issue_codes(resp)


def test_an_8000_character_request_id_is_neither_echoed_nor_logged(secure_node):
    client = secure_node.test_client()
    resp = client.get("/api/info", headers={"X-Request-ID": "x" * 8000})
    assert resp.status_code == 200
    assert len(resp.headers["X-Request-ID"]) <= 128 and "xxxx" not in resp.headers["X-Request-ID"]
    assert all(len(r.get("request_id") or "") <= 128 for r in audit_records(secure_node))
    resp = client.get("/api/info", headers={"X-Request-ID": "abc def<script>"})
    assert resp.headers["X-Request-ID"] != "abc"
    resp = client.get("/api/info", headers={"X-Request-ID": "trace-42.a_b:c"})
    assert resp.headers["X-Request-ID"] == "trace-42.a_b:c"  # a well-formed id is kept for tracing


@pytest.mark.parametrize("shape", [["gateway-operator"], "admin", 7])
def test_a_signed_token_with_a_malformed_realm_access_is_401(secure_node, mint, shape):
    resp = secure_node.test_client().get("/api/info", headers=bearer(mint.token(realm_access=shape)))
    assert resp.status_code == 401, resp.get_data(as_text=True)[:300]
    assert resp.get_json()["error"]["errorCode"] == 401


def test_malformed_roles_claim_is_401(secure_node, mint):
    resp = secure_node.test_client().get("/api/info", headers=bearer(mint.token(roles={"a": 1})))
    assert resp.status_code == 401


# --- PostgreSQL: what SQLite lets through -----------------------------------------------------------------------


@pytest.fixture
def pg_node(tmp_path, postgres_url, gateway_config):
    """A node on its own PostgreSQL schema (dropped afterwards)."""
    from app import create_app

    with fresh_schema(postgres_url, "gw_attack") as url:
        datasets = [{"id": "default", "security_level": "PUBLIC"}]
        app = create_app({**gateway_config, "database_url": url, "datasets": datasets})
        try:
            yield app
        finally:
            app.extensions["gateway"].store.close()


@pytest.mark.parametrize(
    "path",
    [
        "/api/individuals/a%00b",
        "/api/biosamples/a%00b",
        "/api/individuals?filters=HP:0001250&skip=0%00",
        "/phenopackets/a%00b",
        "/fhir/Patient/a%00b",
    ],
)
def test_nul_in_ids_on_postgresql_is_400(pg_node, path):
    resp = pg_node.test_client().get(path, headers=OPERATOR)
    assert resp.status_code == 400, resp.get_data(as_text=True)[:300]
    if path.startswith("/api"):
        assert resp.get_json()["error"]["errorCode"] == 400
    if path.startswith("/fhir"):
        assert resp.get_json()["resourceType"] == "OperationOutcome"


def _with_excluded_feature(reference_dir) -> dict:
    path = reference_dir / "phenopackets" / "TRIM63" / "PMID_25801283_proband_III_4.json"
    doc = json.loads(path.read_text())
    assert any(f.get("excluded") for f in doc["phenotypicFeatures"])
    return doc


def _broad_excluded_cases() -> list[tuple[list[dict], bool]]:
    """Broad excluded: filters and whether the stored individual (who excluded HP:0000822 Hypertension) matches.

    `excluded:x` follows the ontology upwards (issue 13): it holds for whoever excluded x or an ancestor of x.
    Excluding Hypertension excludes its descendants (HP:0000875 Episodic hypertension), not Phenotypic
    abnormality (HP:0000118) or All (HP:0000001). Before, `excluded:` expanded downwards to ~18,000 terms per
    broad filter, past PostgreSQL's 65,535 bind parameters; the present-term form still expands that far (then
    cut to the terms the store holds). Every form is answered, never a 500."""
    broad = ["HP:0000118", "HP:0000001", "HP:0000118", "HP:0000001"]
    return [
        ([{"id": f"excluded:{t}"} for t in broad], False),
        ([{"id": "excluded:HP:0000822"}, {"id": "excluded:HP:0000875"}] * 2, True),
        ([{"id": f"excluded:{t}", "includeDescendantTerms": False} for t in broad], False),
        ([{"id": t} for t in broad], True),  # present terms: the individual has phenotypic abnormalities
    ]


def test_broad_excluded_filters_are_answered_by_the_ontology(pg_node, reference_dir):
    client = pg_node.test_client()
    resp = client.post("/phenopackets", json=_with_excluded_feature(reference_dir), headers=OPERATOR)
    assert resp.status_code in (200, 201), resp.get_data(as_text=True)[:300]
    for filters, expected in _broad_excluded_cases():
        resp = client.post("/api/individuals", json={"query": {"filters": filters}}, headers=OPERATOR)
        _not_a_500(resp)
        assert resp.status_code == 200
        assert resp.get_json()["responseSummary"]["exists"] is expected, (filters, resp.get_json())


def test_broad_excluded_filters_on_sqlite_too(app, client, reference_dir):
    resp = client.post("/phenopackets", json=_with_excluded_feature(reference_dir), headers=OPERATOR)
    assert resp.status_code in (200, 201)
    for filters, expected in _broad_excluded_cases():
        resp = client.post("/api/individuals", json={"query": {"filters": filters}}, headers=OPERATOR)
        assert resp.status_code == 200 and resp.get_json()["responseSummary"]["exists"] is expected, filters


def _term_set_query(node, n_terms: int) -> list[str]:
    """The stored terms among `n_terms` candidate HPO ids, bound the way broad filters bind them."""
    from gateway.store.tables import phenopacket_terms
    from gateway.store.values import in_values

    candidates = [f"HP:{i:07d}" for i in range(n_terms)]
    query = sa.select(phenopacket_terms.c.term).where(in_values(phenopacket_terms.c.term, candidates)).distinct()
    with node.extensions["gateway"].store.engine.connect() as connection:
        return sorted(connection.execute(query).scalars())


@pytest.mark.parametrize("backend", ["postgresql", "sqlite"])
def test_term_sets_beyond_the_bind_parameter_limit_are_one_parameter(request, reference_dir, backend):
    """Any term set of more than 500 goes as one bound parameter: 100,000 candidates (PostgreSQL allows 65,535
    parameters; IN lists of four broad filters once exceeded it, a 500)."""
    node = request.getfixturevalue("pg_node" if backend == "postgresql" else "app")
    resp = node.test_client().post("/phenopackets", json=_with_excluded_feature(reference_dir), headers=OPERATOR)
    assert resp.status_code in (200, 201), resp.get_data(as_text=True)[:300]
    assert "HP:0000822" in _term_set_query(node, 100_000)


def test_fifty_broad_hpo_filters_are_refused_not_expanded(client):
    body = {"query": {"filters": [{"id": "HP:0000118"}] * 50}}
    resp = client.post("/api/individuals", json=body)
    assert resp.status_code == 400
    assert "expand to more than" in resp.get_json()["error"]["errorMessage"]
    # Without descendants the same filters cost nothing and are answered.
    body = {"query": {"filters": [{"id": "HP:0000118", "includeDescendantTerms": False}] * 50}}
    assert client.post("/api/individuals", json=body).status_code == 200


# --- time and memory limits: a costly document costs one answer, never a worker ---------------------------------


@pytest.fixture
def tight_node(gateway_config):
    """A node whose validation children get 1 MB on top of what they inherit (and every FHIR body goes to one)."""
    from app import create_app

    app = create_app({**gateway_config, "work_memory_mb": 1, "work_inline_bytes": 0, "max_body_bytes": 40 * 2**20})
    yield app
    app.extensions["gateway"].store.close()


def _costly_body() -> bytes:
    """30 MB of JSON that needs ~700 MB as objects (ten million empty objects): beyond 1 MB on top of whatever
    free heap the child inherits from a long-running parent (RLIMIT_AS counts new mappings only)."""
    return b"[" + b"{}," * 10_000_000 + b"{}]"


def test_validation_over_the_memory_limit_is_413_and_the_worker_lives(tight_node):
    client = tight_node.test_client()
    body = _costly_body()
    resp = client.post("/validate", data=body)
    assert resp.status_code == 413 and resp.get_json()["error"]["issues"][0]["code"] == "too-costly"
    resp = client.post("/fhir/Bundle/$validate", data=body, content_type=FHIR)
    assert resp.status_code == 413 and resp.get_json()["issue"][0]["code"] == "too-costly"
    resp = client.post("/fhir", data=body, content_type=FHIR, headers=OPERATOR)
    assert resp.status_code == 413 and resp.get_json()["resourceType"] == "OperationOutcome"
    assert tight_node.extensions["gateway"].store.list_phenopackets(limit=1)[1] == 0  # nothing stored
    assert client.get("/health").status_code == 200  # this process (the "worker") is still here


def test_validation_over_the_time_limit_is_413(gateway_config, reference_dir):
    from app import create_app

    app = create_app({**gateway_config, "work_seconds": 0.001, "work_inline_bytes": 0})
    body = (reference_dir / "fhir" / "mii-seltene-erkrankungen" / "Bundle-bundle-marfan-complete.json").read_bytes()
    started = time.monotonic()
    resp = app.test_client().post("/fhir/Bundle/$validate", data=body, content_type=FHIR)
    assert resp.status_code == 413 and "longer than" in resp.get_json()["issue"][0]["diagnostics"]
    assert time.monotonic() - started < 5
    app.extensions["gateway"].store.close()


def test_within_the_limits_validation_answers_as_before(client, reference_dir):
    body = (reference_dir / "fhir" / "mii-seltene-erkrankungen" / "Bundle-bundle-marfan-complete.json").read_bytes()
    resp = client.post("/fhir/Bundle/$validate", data=body, content_type=FHIR)
    assert resp.status_code == 200 and resp.get_json()["resourceType"] == "OperationOutcome"
    resp = client.post("/validate", data=body)
    assert resp.status_code == 200 and resp.get_json()[0]["kind"] == "fhir"


@pytest.mark.parametrize("path", ["/fhir", "/phenopackets"])
def test_a_300_character_dataset_id_on_postgresql_is_400(pg_node, reference_dir, path):
    if path == "/fhir":
        body = (reference_dir / "fhir" / "mii-seltene-erkrankungen" / "Bundle-bundle-marfan-complete.json").read_bytes()
    else:
        body = json.dumps(_with_excluded_feature(reference_dir)).encode()
    client = pg_node.test_client()
    resp = client.post(f"{path}?dataset={'a' * 300}", data=body, content_type=FHIR, headers=OPERATOR)
    assert resp.status_code == 400, resp.get_data(as_text=True)[:300]
    assert resp.get_json()["resourceType" if path == "/fhir" else "error"]
    assert pg_node.extensions["gateway"].store.list_phenopackets(limit=1)[1] == 0
    resp = client.get(f"/phenopackets?dataset={'a' * 300}", headers=OPERATOR)
    assert resp.status_code < 500


def test_validation_is_budgeted_like_a_query(tmp_path, jwks_files):
    from tests.security.sechelpers import OPERATOR_TOKEN as SECURE_OPERATOR
    from tests.security.sechelpers import make_node

    node = make_node(tmp_path, jwks_files, [], budget={"window_seconds": 60, "anonymous": 2, "registered": 10})
    client = node.test_client()
    body = b'{"subject": {"id": "x"}}'
    assert [client.post("/validate", data=body).status_code for _ in range(3)] == [200, 200, 429]
    resp = client.post("/fhir/Bundle/$validate", data=b'{"resourceType": "Bundle"}', content_type=FHIR)
    assert resp.status_code == 429 and resp.get_json()["issue"][0]["code"] == "throttled"
    operator = {"Authorization": f"Bearer {SECURE_OPERATOR}"}
    assert client.post("/validate", data=body, headers=operator).status_code == 200  # operators are not counted
    node.extensions["gateway"].store.close()


def test_a_fhir_body_above_the_inline_size_goes_to_the_bounded_child(gateway_config, reference_dir):
    from app import create_app

    app = create_app({**gateway_config, "work_seconds": 0.001})  # default work_inline_bytes (256 KiB)
    body = (reference_dir / "fhir" / "mii-seltene-erkrankungen" / "Bundle-bundle-marfan-complete.json").read_bytes()
    client = app.test_client()
    assert client.post("/fhir/Bundle/$validate", data=body, content_type=FHIR).status_code == 200  # 50 KB: inline
    padded = body + b" " * (300 * 1024)  # the same document past the inline size
    resp = client.post("/fhir/Bundle/$validate", data=padded, content_type=FHIR)
    assert resp.status_code == 413 and resp.get_json()["issue"][0]["code"] == "too-costly"
    app.extensions["gateway"].store.close()
