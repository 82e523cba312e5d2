"""The attack matrix over HTTP: every case is denied or downgraded, and leaves an audit record."""

from __future__ import annotations

import time

import pytest

from tests.security.sechelpers import OPERATOR_TOKEN, audit_records, bearer

Q = "/api/g_variants?referenceName=1&start=1000&end=1012&assemblyId=GRCh38"


def _last_audit(app) -> dict:
    return audit_records(app)[-1]


def _error(resp) -> dict:
    body = resp.get_json()
    assert "error" in body and body["error"]["errorCode"] == resp.status_code, body
    assert "Traceback" not in resp.get_data(as_text=True) and "/work/" not in resp.get_data(as_text=True)
    return body["error"]


BAD_TOKENS = {
    "expired": lambda m: m.token(exp=int(time.time()) - 3600, iat=int(time.time()) - 7200),
    "not-yet-valid": lambda m: m.token(nbf=int(time.time()) + 3600),
    "alg-none": lambda m: "eyJhbGciOiJub25lIiwidHlwIjoiSldUIn0." + m.token().split(".")[1] + ".",
    "unknown-kid": lambda m: m.token(kid="nope"),
    "foreign-jku": lambda m: m.token(headers={"jku": "https://evil.example.com/jwks.json"}),
    "wrong-issuer": lambda m: m.token(iss="https://evil.example.com/"),
    "wrong-audience": lambda m: m.token(aud="https://elsewhere.example.org"),
    "tampered": lambda m: (lambda t: t[0] + "." + t[1][:-4] + "AAAA." + t[2])(m.token().split(".")),
    "foreign-key": lambda m: m.token(key="foreign"),
    "not-a-bearer": None,
}


@pytest.mark.parametrize("case", sorted(BAD_TOKENS))
def test_a_token_that_fails_is_401_never_a_silent_downgrade(secure_node, mint, case):
    client = secure_node.test_client()
    make = BAD_TOKENS[case]
    headers = {"Authorization": "Basic dXNlcjpwYXNz"} if make is None else bearer(make(mint))
    resp = client.get(Q, headers=headers)
    assert resp.status_code == 401
    assert "invalid_token" in resp.headers["WWW-Authenticate"]
    _error(resp)
    record = _last_audit(secure_node)
    assert record["decision"] == "denied" and record["status"] == 401 and record["caller"] == "anonymous"
    assert record.get("reason")


def test_hs256_with_the_public_key_is_401(secure_node, keys):
    import base64
    import hashlib
    import hmac
    import json

    from cryptography.hazmat.primitives import serialization

    pem = (
        keys["rsa"]
        .public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    )
    enc = lambda b: base64.urlsafe_b64encode(b).rstrip(b"=").decode()  # noqa: E731
    now = int(time.time())
    header = enc(json.dumps({"alg": "HS256", "kid": "rsa-1"}).encode())
    payload = enc(
        json.dumps(
            {
                "iss": "https://login.example.org/",
                "sub": "x",
                "aud": "https://node.example.org",
                "iat": now,
                "exp": now + 60,
            }
        ).encode()
    )
    sig = enc(hmac.new(pem, f"{header}.{payload}".encode(), hashlib.sha256).digest())
    resp = secure_node.test_client().get(Q, headers=bearer(f"{header}.{payload}.{sig}"))
    assert resp.status_code == 401
    assert _last_audit(secure_node)["decision"] == "denied"


def test_no_token_is_public_boolean_and_audited(secure_node):
    resp = secure_node.test_client().get(Q + "&requestedGranularity=record")
    body = resp.get_json()
    assert resp.status_code == 200
    assert body["meta"]["returnedGranularity"] == "boolean"
    assert body["responseSummary"] == {"exists": True}
    record = _last_audit(secure_node)
    assert record["caller"] == "anonymous" and record["decision"] == "suppressed"
    assert record["requested_granularity"] == "record" and record["returned_granularity"] == "boolean"
    assert set(record["datasets"]) == {"ds-public", "ds-small", "ds-controlled"}


def test_restricted_dataset_is_not_readable_by_anyone(secure_node, mint):
    client = secure_node.test_client()
    for headers in ({}, bearer(mint.token())):
        resp = client.get(Q + "&datasetIds=ds-controlled&requestedGranularity=count", headers=headers)
        assert resp.status_code == 403
        _error(resp)
        assert _last_audit(secure_node)["decision"] == "denied"


def test_valid_visa_for_another_dataset_grants_nothing(secure_node, mint):
    token = mint.passport(mint.visa("urn:grant:some-other-dataset"))
    resp = secure_node.test_client().get(Q + "&datasetIds=ds-controlled", headers=bearer(token))
    assert resp.status_code == 403
    assert _last_audit(secure_node)["caller"] == "researcher-1"


def test_visa_with_conditions_is_not_honoured(secure_node, mint):
    token = mint.passport(
        mint.visa("urn:grant:controlled", conditions=[[{"type": "AffiliationAndRole", "value": "x"}]])
    )
    resp = secure_node.test_client().get(Q + "&datasetIds=ds-controlled", headers=bearer(token))
    assert resp.status_code == 403
    assert _last_audit(secure_node)["decision"] == "denied"


def test_a_granting_visa_gives_exact_counts_and_records(secure_node, mint):
    token = mint.passport(mint.visa("urn:grant:controlled"))
    client = secure_node.test_client()
    resp = client.get(Q + "&datasetIds=ds-controlled&requestedGranularity=count", headers=bearer(token))
    assert resp.status_code == 200
    assert resp.get_json()["responseSummary"]["numTotalResults"] == 12  # exact, not rounded
    resp = client.get(Q + "&datasetIds=ds-controlled&requestedGranularity=record", headers=bearer(token))
    assert resp.get_json()["meta"]["returnedGranularity"] == "record"
    assert _last_audit(secure_node)["decision"] == "allowed"


def test_the_dataset_url_is_a_grant_value_too(secure_node, mint):
    token = mint.passport(mint.visa("https://node.example.org/api/datasets/ds-controlled"))
    resp = secure_node.test_client().get(
        Q + "&datasetIds=ds-controlled&requestedGranularity=count", headers=bearer(token)
    )
    assert resp.get_json()["responseSummary"]["numTotalResults"] == 12


def test_registered_counts_are_rounded(secure_node, mint):
    resp = secure_node.test_client().get(
        Q + "&datasetIds=ds-public&requestedGranularity=count", headers=bearer(mint.token())
    )
    body = resp.get_json()
    assert body["meta"]["returnedGranularity"] == "count"
    assert body["responseSummary"]["numTotalResults"] == 10  # 12 rounded to the nearest 10
    assert any("rounded" in n for n in body["info"]["privacy"])


def test_small_counts_become_boolean_with_a_note(secure_node, mint):
    resp = secure_node.test_client().get(
        "/api/g_variants?referenceName=1&start=1000&end=1003&datasetIds=ds-public&requestedGranularity=count",
        headers=bearer(mint.token()),
    )
    body = resp.get_json()
    assert body["meta"]["returnedGranularity"] == "boolean"
    assert body["responseSummary"] == {"exists": True}
    assert "carrierCount" not in body.get("info", {})
    assert any("below 5" in n for n in body["info"]["privacy"])
    record = _last_audit(secure_node)
    assert record["decision"] == "suppressed" and record["count_before_suppression"] == 3


def test_small_dataset_is_not_served_to_public(secure_node, mint):
    client = secure_node.test_client()
    resp = client.get(Q + "&datasetIds=ds-small")
    assert resp.status_code == 403
    resp = client.get(Q + "&datasetIds=ds-small", headers=bearer(mint.token()))
    assert resp.status_code == 200  # REGISTERED callers are not bound by the public minimum size


@pytest.mark.parametrize("ac,expected", [(1, False), (2, False), (3, True)])
def test_rare_alleles_are_absent_for_public(secure_node, mint, ac, expected):
    start = 1000 + ac - 1  # the variant at 1000+i has allele count i+1
    url = f"/api/g_variants?referenceName=1&start={start}&referenceBases=A&alternateBases=G&datasetIds=ds-public"
    client = secure_node.test_client()
    assert client.get(url).get_json()["responseSummary"]["exists"] is expected
    assert "privacy" not in (client.get(url).get_json().get("info") or {})  # an absent rare allele looks like absent
    assert client.get(url, headers=bearer(mint.token())).get_json()["responseSummary"]["exists"] is True
    assert _last_audit(secure_node)["caller"] == "researcher-1"


def test_phenotype_plus_variant_is_yes_no_for_anonymous(secure_node):
    client = secure_node.test_client()
    body = {
        "query": {
            "requestParameters": {"referenceName": "1", "start": [1000], "end": [1012], "datasetIds": ["ds-public"]},
            "filters": [{"id": "HP:0001166"}],
            "requestedGranularity": "count",
        }
    }
    secure_node.extensions["gateway"].config.dataset("ds-public").policy["max_granularity"] = {"public": "count"}
    resp = client.post("/api/g_variants", json=body)
    data = resp.get_json()
    assert resp.status_code == 200, data
    assert data["meta"]["returnedGranularity"] == "boolean"
    assert any("phenotype" in n for n in data["info"]["privacy"])
    assert _last_audit(secure_node)["decision"] == "suppressed"
    # Without the phenotype filter the same anonymous caller may have the (rounded) count the policy opens.
    del body["query"]["filters"]
    data = client.post("/api/g_variants", json=body).get_json()
    assert data["meta"]["returnedGranularity"] == "count"


def test_budget_exhaustion_per_ip_and_per_subject(tmp_path, jwks_files, fake_variants, mint):
    from tests.security.sechelpers import make_node

    app = make_node(
        tmp_path,
        jwks_files,
        [{"id": "ds-public", "security_level": "PUBLIC"}],
        fake_variants,
        budget={"window_seconds": 60, "anonymous": 3, "registered": 4},
    )
    client = app.test_client()
    statuses = [client.get(Q, environ_base={"REMOTE_ADDR": "192.0.2.1"}).status_code for _ in range(4)]
    assert statuses == [200, 200, 200, 429]
    assert _last_audit(app)["decision"] == "budget-exceeded"
    # another address has its own budget; a forged X-Forwarded-For from an untrusted peer changes nothing
    assert client.get(Q, environ_base={"REMOTE_ADDR": "192.0.2.2"}).status_code == 200
    forged = client.get(Q, environ_base={"REMOTE_ADDR": "192.0.2.1"}, headers={"X-Forwarded-For": "198.51.100.9"})
    assert forged.status_code == 429
    # behind a trusted proxy, each forwarded caller is budgeted on their own
    via_proxy = {"REMOTE_ADDR": "10.1.2.3"}
    assert client.get(Q, environ_base=via_proxy, headers={"X-Forwarded-For": "198.51.100.7"}).status_code == 200
    token = bearer(mint.token(sub="heavy-user"))
    assert [client.get(Q, headers=token).status_code for _ in range(5)] == [200, 200, 200, 200, 429]
    assert _last_audit(app)["caller"] == "heavy-user"
    # the operator is not budgeted
    assert client.get(Q, headers=bearer(OPERATOR_TOKEN)).status_code == 200
    app.extensions["gateway"].store.close()


def test_operator_role_token_may_write_other_tokens_may_not(secure_node, mint):
    client = secure_node.test_client()
    resp = client.delete("/admin/subjects/pid-0000", headers=bearer(mint.token()))
    assert resp.status_code == 403
    assert _last_audit(secure_node)["decision"] == "denied"
    resp = client.delete("/admin/subjects/pid-0000", headers=bearer(mint.token(roles=["gateway-operator"])))
    assert resp.status_code == 200
    resp = client.delete("/admin/subjects/pid-0000", headers=bearer(mint.token(kid="nope", roles=["gateway-operator"])))
    assert resp.status_code == 401


def test_fhir_surface_answers_401_as_operation_outcome(secure_node, mint):
    resp = secure_node.test_client().post("/fhir", json={"resourceType": "Bundle"}, headers=bearer(mint.token(kid="x")))
    assert resp.status_code == 401
    assert resp.get_json()["resourceType"] == "OperationOutcome"


# --- budgets that cannot be shed (issue 12, section 3) ---------------------------------------------


def _budgeted_node(tmp_path, jwks_files, fake_variants, **budget):
    from tests.security.sechelpers import make_node

    datasets = [
        {"id": "ds-public", "security_level": "PUBLIC", "policy": {"min_public_size": 0}},
        {"id": "ds-controlled", "security_level": "CONTROLLED", "policy": {"grants": ["urn:grant:controlled"]}},
    ]
    return make_node(
        tmp_path, jwks_files, datasets, fake_variants, budget={"window_seconds": 60, "anonymous": 3, **budget}
    )


def test_a_grant_for_a_dataset_the_node_does_not_hold_lifts_no_budget(tmp_path, jwks_files, fake_variants, mint):
    app = _budgeted_node(tmp_path, jwks_files, fake_variants, registered=3)
    client = app.test_client()
    foreign = bearer(mint.passport(mint.visa("urn:grant:some-other-dataset")))
    assert [client.get(Q, headers=foreign).status_code for _ in range(4)] == [200, 200, 200, 429]
    app.extensions["gateway"].store.close()


def test_a_grant_lifts_the_budget_only_for_its_own_datasets_queries(tmp_path, jwks_files, fake_variants, mint):
    app = _budgeted_node(tmp_path, jwks_files, fake_variants, registered=3)
    client = app.test_client()
    granted = bearer(mint.passport(mint.visa("urn:grant:controlled", sub="granted-user"), sub="granted-user"))
    own = Q + "&datasetIds=ds-controlled"
    assert all(client.get(own, headers=granted).status_code == 200 for _ in range(6))  # unbudgeted: CONTROLLED
    # the same caller's queries over the public dataset (or over both) are budgeted like any registered caller's
    statuses = [client.get(Q + "&datasetIds=ds-public", headers=granted).status_code for _ in range(3)]
    statuses.append(client.get(Q, headers=granted).status_code)
    assert statuses == [200, 200, 200, 429]
    app.extensions["gateway"].store.close()


def test_registered_callers_spend_from_their_address_budget_too(tmp_path, jwks_files, fake_variants, mint):
    app = _budgeted_node(tmp_path, jwks_files, fake_variants, registered=4)
    client = app.test_client()
    env = {"REMOTE_ADDR": "192.0.2.77"}
    statuses = [
        client.get(Q, headers=bearer(mint.token(sub=f"sock-puppet-{i}")), environ_base=env).status_code
        for i in range(5)
    ]
    assert statuses == [200, 200, 200, 200, 429]  # new identities from one address shed nothing
    app.extensions["gateway"].store.close()


def test_a_visa_issued_to_another_subject_is_ignored(secure_node, mint):
    client = secure_node.test_client()
    url = Q + "&datasetIds=ds-controlled&requestedGranularity=count"
    stolen = mint.visa("urn:grant:controlled", sub="someone-else")
    resp = client.get(url, headers=bearer(mint.passport(stolen)))
    assert resp.status_code == 403
    # without a LinkedIdentities visa, even the holder's own identity at the visa issuer is another identity
    own_unlinked = mint.passport(mint.visa("urn:grant:controlled"), link=False)
    assert client.get(url, headers=bearer(own_unlinked)).status_code == 403
    # a LinkedIdentities visa from the passport's issuer binds the other identity to the holder
    linked = mint.passport(
        stolen, mint.linked_identities("researcher-1", ("someone-else", "https://visas.example.org/")), link=False
    )
    assert client.get(url, headers=bearer(linked)).status_code == 200
    # a LinkedIdentities visa issued to another identity links nothing
    forged_link = mint.visa("someone-else,https%3A%2F%2Fvisas.example.org%2F", type_="LinkedIdentities", sub="intruder")
    assert client.get(url, headers=bearer(mint.passport(stolen, forged_link, link=False))).status_code == 403


VALIDATION = [
    ("/validate?type=phenopacket", {"id": "x"}),
    ("/fhir/Bundle/$validate", {"resourceType": "Bundle", "type": "collection", "entry": []}),
]


@pytest.mark.parametrize("path,document", VALIDATION)
def test_validation_endpoints_spend_the_budget(tmp_path, jwks_files, fake_variants, path, document):
    app = _budgeted_node(tmp_path, jwks_files, fake_variants)
    client = app.test_client()
    statuses = [client.post(path, json=document).status_code for _ in range(4)]
    assert statuses[:3] != [429] * 3 and statuses[3] == 429, statuses
    assert _last_audit(app)["decision"] == "budget-exceeded"
    if path.startswith("/fhir"):
        assert client.post(path, json=document).get_json()["resourceType"] == "OperationOutcome"
    # informational documents stay free (a verifier reads them many times)
    assert client.get("/api/filtering_terms").status_code == 200
    assert client.get("/api/map").status_code == 200
    app.extensions["gateway"].store.close()
