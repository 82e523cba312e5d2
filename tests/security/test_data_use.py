"""Data-use conditions: a grant is honoured only for an intended use the dataset's DUO terms permit."""

from __future__ import annotations

import logging

import pytest

from gateway.security.data_use import parse_use, use_refusal
from tests.security.sechelpers import audit_records, bearer, make_node

GRU, HMB, DS, POA, CC = "DUO:0000042", "DUO:0000006", "DUO:0000007", "DUO:0000011", "DUO:0000043"
NRES, NPU, NCU, NPUNCU, IRB, NPOA, US = (
    "DUO:0000004",
    "DUO:0000045",
    "DUO:0000046",
    "DUO:0000018",
    "DUO:0000021",
    "DUO:0000044",
    "DUO:0000026",
)
DIABETES, CANCER = "MONDO:0005015", "MONDO:0004992"


@pytest.mark.parametrize(
    "dataset,use,permitted",
    [
        ([NRES], f"{POA}", True),
        ([NRES], f"{CC}", True),
        ([GRU], f"{HMB}", True),
        ([GRU], f"{DS} {DIABETES}", True),
        ([GRU], f"{POA}", True),
        ([GRU], f"{CC}", False),
        ([HMB], f"{DS} {CANCER}", True),
        ([HMB], f"{HMB}", True),
        ([HMB], f"{GRU}", False),
        ([HMB], f"{POA}", False),
        ([DS, DIABETES], f"{DS} {DIABETES}", True),
        ([DS, DIABETES], f"{DS} {CANCER}", False),
        ([DS, DIABETES], f"{DS}", False),  # a disease-specific use must name its disease
        ([DS, DIABETES], f"{HMB}", False),
        ([DS, DIABETES, CC], f"{CC}", True),
        ([GRU, NPOA], f"{POA}", False),
        ([GRU, NPOA], f"{HMB}", True),
        ([HMB, NCU], f"{HMB}", False),
        ([HMB, NCU], f"{HMB} {NCU}", True),
        ([HMB, NCU], f"{HMB},{NPUNCU}", True),
        ([HMB, NPU], f"{HMB} {NCU}", False),
        ([HMB, NPUNCU], f"{HMB} {NPU} {NCU}", True),
        ([HMB, IRB], f"{HMB}", False),
        ([HMB, IRB], f"{HMB} {IRB}", True),
        ([HMB, US], f"{HMB}", True),  # user-specific: checked by the committee that issued the grant
        (["DUO:0000012"], f"{HMB}", False),  # research-specific restriction: cannot be evaluated, fail closed
        ([], f"{POA}", True),  # a dataset without terms restricts no purpose
    ],
)
def test_duo_permission_table(dataset, use, permitted):
    reason = use_refusal(dataset, parse_use(use))
    assert (reason is None) is permitted, reason


@pytest.mark.parametrize("value", ["", "general research", f"{NCU}", "DUO:9999999 " + HMB, "DUO:0000006;drop"])
def test_an_unreadable_use_permits_nothing(value):
    use = parse_use(value)
    assert use.problem
    assert use_refusal([NRES], use) == use.problem


@pytest.fixture
def duo_node(tmp_path, jwks_files, fake_variants):
    datasets = [
        {
            "id": "ds-controlled",
            "security_level": "CONTROLLED",
            "data_use_conditions": [HMB, NCU],
            "policy": {"grants": ["urn:grant:controlled"]},
        }
    ]
    app = make_node(tmp_path, jwks_files, datasets, fake_variants)
    yield app
    app.extensions["gateway"].store.close()


Q = "/api/g_variants?referenceName=1&start=1000&end=1012&datasetIds=ds-controlled&requestedGranularity=count"


def _ask(app, token):
    return app.test_client().get(Q, headers=bearer(token))


def test_grant_with_a_compatible_use_is_controlled(duo_node, mint):
    token = mint.passport(mint.visa("urn:grant:controlled"), mint.visa(f"{DS} {DIABETES} {NCU}", "ResearchPurpose"))
    resp = _ask(duo_node, token)
    assert resp.status_code == 200, resp.get_json()
    assert resp.get_json()["responseSummary"]["numTotalResults"] == 12  # exact: CONTROLLED
    assert audit_records(duo_node)[-1]["decision"] == "allowed"


def test_grant_without_a_named_use_is_honoured_as_before(duo_node, mint):
    resp = _ask(duo_node, mint.passport(mint.visa("urn:grant:controlled")))
    assert resp.get_json()["responseSummary"]["numTotalResults"] == 12


@pytest.mark.parametrize(
    "use,why",
    [(POA, "not permitted by DUO:0000006"), (HMB, "requires DUO:0000046"), ("not a curie", "not a list of CURIEs")],
)
def test_grant_with_an_incompatible_use_is_not_controlled_and_audited(duo_node, mint, use, why):
    token = mint.passport(mint.visa("urn:grant:controlled"), mint.visa(use, "ResearchPurpose"))
    resp = _ask(duo_node, token)
    assert resp.status_code == 403  # the dataset is CONTROLLED: a REGISTERED caller is not served
    record = audit_records(duo_node)[-1]
    assert record["decision"] == "denied" and record["caller"] == "researcher-1"
    assert "ds-controlled" in record["reason"] and why in record["reason"], record["reason"]


def test_any_of_several_uses_may_open_the_grant(duo_node, mint):
    token = mint.passport(
        mint.visa("urn:grant:controlled"),
        mint.visa(POA, "ResearchPurpose"),
        mint.visa(f"{HMB} {NCU}", "ResearchPurpose"),
    )
    assert _ask(duo_node, token).status_code == 200


def test_a_grant_conditioned_on_a_use_binds_that_use(duo_node, mint):
    use = f"{HMB} {NCU}"
    conditioned = mint.visa("urn:grant:controlled", conditions=[[{"type": "ResearchPurpose", "value": f"const:{use}"}]])
    # the condition is met by the passport's use visa: honoured, and checked against the dataset's terms
    assert _ask(duo_node, mint.passport(conditioned, mint.visa(use, "ResearchPurpose"))).status_code == 200
    # not met (no such use visa): the grant is ignored
    assert _ask(duo_node, mint.passport(conditioned, mint.visa(HMB, "ResearchPurpose"))).status_code == 403
    # met, but the use it is bound to is not permitted: refused with the reason
    poa = mint.visa("urn:grant:controlled", conditions=[[{"type": "ResearchPurpose", "value": f"const:{POA}"}]])
    assert _ask(duo_node, mint.passport(poa, mint.visa(POA, "ResearchPurpose"))).status_code == 403
    assert "not permitted" in audit_records(duo_node)[-1]["reason"]


@pytest.mark.parametrize(
    "conditions,logged",
    [
        ([[{"type": "AffiliationAndRole", "value": "const:faculty@uni.example"}]], "not supported"),
        ([[{"type": "ResearchPurpose", "value": "pattern:DUO:*"}]], "only const:"),
        ([[{"type": "ResearchPurpose", "value": f"const:{HMB}"}], [{"type": "LinkedIdentities", "value": "x"}]], ""),
        ({"type": "ResearchPurpose"}, "malformed"),
    ],
)
def test_a_condition_not_understood_is_ignored_and_logged(duo_node, mint, caplog, conditions, logged):
    grant = mint.visa("urn:grant:controlled", conditions=conditions)
    with caplog.at_level(logging.WARNING, logger="gateway.security.tokens"):
        resp = _ask(duo_node, mint.passport(grant, mint.visa(HMB, "ResearchPurpose")))
    assert resp.status_code == 403
    messages = " ".join(r.getMessage() for r in caplog.records if r.name == "gateway.security.tokens")
    assert "not honoured" in messages or "malformed" in messages
    assert logged in messages


def test_the_use_visa_type_is_configurable(tmp_path, jwks_files, fake_variants, mint):
    datasets = [
        {"id": "ds-controlled", "security_level": "CONTROLLED", "data_use_conditions": [HMB]},
    ]
    app = make_node(tmp_path, jwks_files, datasets, fake_variants, data_use={"visa_type": "https://example.org/use"})
    token = mint.passport(mint.visa("ds-controlled"), mint.visa(POA, "https://example.org/use"))
    assert _ask(app, token).status_code == 403
    token = mint.passport(mint.visa("ds-controlled"), mint.visa(POA, "ResearchPurpose"))  # not a use visa here
    assert _ask(app, token).status_code == 200
    app.extensions["gateway"].store.close()
