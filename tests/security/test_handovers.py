"""Beacon handovers (issue 13): individual → its phenopacket, dataset → a VCF export of its variants, each
offered only to callers who may read that data, and each target refusing everyone else."""

from __future__ import annotations

import pytest

from tests.beacon.official_schemas import check_response
from tests.beacon.real_node import reference_phenopackets
from tests.security.sechelpers import OPERATOR_TOKEN, bearer, make_node


@pytest.fixture
def node(tmp_path, jwks_files, fake_variants):
    from gateway.services.ingest import ingest_phenopackets

    datasets = [
        {"id": "ds-public", "security_level": "PUBLIC", "policy": {"profile": "open"}},
        {"id": "ds-controlled", "security_level": "CONTROLLED", "policy": {"grants": ["urn:grant:controlled"]}},
    ]
    app = make_node(tmp_path, jwks_files, datasets, fake_variants)
    services = app.extensions["gateway"]
    packets = reference_phenopackets()
    for dataset, docs in (("ds-controlled", packets[:8]), ("ds-public", packets[8:14])):
        results, _ = ingest_phenopackets(docs, store=services.store, key=services.key, dataset_id=dataset)
        assert results
    yield app
    services.store.close()


def _individuals(client, dataset, headers=None):
    return client.get(
        f"/api/individuals?requestedGranularity=record&datasetIds={dataset}&limit=100", headers=headers or {}
    )


def test_a_controlled_caller_is_handed_each_individuals_phenopacket(node, mint):
    client = node.test_client()
    token = bearer(mint.passport(mint.visa("urn:grant:controlled")))
    body = _individuals(client, "ds-controlled", token).json
    assert check_response(body) == []
    [result_set] = body["response"]["resultSets"]
    handovers = result_set["resultsHandovers"]
    assert len(handovers) == len(result_set["results"]) > 0
    for handover, record in zip(handovers, result_set["results"], strict=True):
        assert handover["url"] == f"https://node.example.org/phenopackets/{record['info']['phenopacketId']}"
        assert handover["handoverType"]["id"] == "CUSTOM:phenopacket-v2"
        path = handover["url"].removeprefix("https://node.example.org")
        packet = client.get(path, headers=token)
        assert packet.status_code == 200 and packet.json["id"] == record["info"]["phenopacketId"]


def test_no_phenopacket_handover_or_read_without_controlled_access(node, mint):
    client = node.test_client()
    public = _individuals(client, "ds-public").json  # records (open policy), but anonymous
    [result_set] = public["response"]["resultSets"]
    assert result_set["results"] and "resultsHandovers" not in result_set
    packet_id = result_set["results"][0]["info"]["phenopacketId"]
    assert client.get(f"/phenopackets/{packet_id}").status_code == 401
    registered = bearer(mint.token())
    assert client.get(f"/phenopackets/{packet_id}", headers=registered).status_code == 404
    # A grant for ds-controlled reads ds-controlled's phenopackets, not ds-public's.
    granted = bearer(mint.passport(mint.visa("urn:grant:controlled")))
    assert client.get(f"/phenopackets/{packet_id}", headers=granted).status_code == 404
    assert client.get(f"/phenopackets/{packet_id}", headers=bearer(OPERATOR_TOKEN)).status_code == 200
    counted = client.get("/api/individuals?requestedGranularity=count&datasetIds=ds-controlled", headers=granted).json
    assert "beaconHandovers" not in counted and "response" not in counted


def test_a_controlled_caller_is_handed_the_datasets_vcf_export(node, mint, fake_variants):
    client = node.test_client()
    token = bearer(mint.passport(mint.visa("urn:grant:controlled")))
    body = client.get("/api/datasets", headers=token).json
    assert check_response(body) == []
    urls = {h["url"] for h in body["beaconHandovers"]}
    assert urls == {"https://node.example.org/datasets/ds-controlled/variants.vcf"}  # not ds-public's
    vcf = client.get("/datasets/ds-controlled/variants.vcf", headers=token)
    assert vcf.status_code == 200 and vcf.mimetype == "text/x-vcf"
    lines = vcf.get_data(as_text=True).splitlines()
    assert lines[0] == "##fileformat=VCFv4.3" and lines[lines.index(next(x for x in lines if x.startswith("#CHROM")))]
    sites = [line.split("\t") for line in lines if not line.startswith("#")]
    expected = sorted(
        (h.reference_name, h.start + 1, h.reference_bases, h.alternate_bases, h.allele_count)
        for h in fake_variants.hits
        if h.dataset_id == "ds-controlled"
    )
    got = sorted((c, int(p), r, a, int(i.split(";")[0].removeprefix("AC="))) for c, p, _, r, a, _, _, i in sites)
    assert got == expected and got


@pytest.mark.parametrize(
    ("who", "status"), [("anonymous", 401), ("registered", 403), ("other-grant", 403), ("operator", 200)]
)
def test_the_vcf_export_follows_the_same_authorisation(node, mint, who, status):
    headers = {
        "anonymous": {},
        "registered": bearer(mint.token()),
        "other-grant": bearer(mint.passport(mint.visa("urn:grant:some-other-dataset"))),
        "operator": bearer(OPERATOR_TOKEN),
    }[who]
    client = node.test_client()
    assert client.get("/datasets/ds-controlled/variants.vcf", headers=headers).status_code == status
    datasets = client.get("/api/datasets", headers=headers).json
    assert ("beaconHandovers" in datasets) == (status == 200)


def test_a_family_is_handed_over_only_with_its_probands_phenopacket(node, mint, reference_dir):
    """Relatives (FamilyMemberHistory) are individual-level data of the proband's record: the same rule."""
    import json

    from gateway.services.ingest import ingest_fhir

    services = node.extensions["gateway"]
    bundle = json.loads(
        (reference_dir / "fhir/mii-testdata/Bundle-mii-exa-test-data-bundle-seltene-1.json").read_text()
    )
    outcome = ingest_fhir(bundle, store=services.store, key=services.key, dataset_id="ds-controlled")
    packet_id = outcome.packets[0].saved.id
    client = node.test_client()
    token = bearer(mint.passport(mint.visa("urn:grant:controlled")))
    [result_set] = _individuals(client, "ds-controlled", token).json["response"]["resultSets"]
    families = [h for h in result_set["resultsHandovers"] if h["handoverType"]["id"] == "CUSTOM:phenopacket-family-v2"]
    assert [h["url"] for h in families] == [f"https://node.example.org/phenopackets/{packet_id}/family"]
    assert client.get(f"/phenopackets/{packet_id}/family", headers=token).status_code == 200
    assert client.get(f"/phenopackets/{packet_id}/family", headers=bearer(mint.token())).status_code == 404
    public = _individuals(client, "ds-public").json["response"]["resultSets"][0]
    assert "resultsHandovers" not in public
