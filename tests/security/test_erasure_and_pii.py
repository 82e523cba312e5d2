"""End to end over real FHIR input: no identifying datum in any output, and erasure leaves nothing behind."""

from __future__ import annotations

import json
import logging
import re
from pathlib import Path

import pytest

from tests.security.sechelpers import OPERATOR_TOKEN, audit_records, bearer, make_node

FHIR = Path(__file__).resolve().parents[2] / ".." / "shared" / "reference" / "fhir"
MARFAN = "mii-seltene-erkrankungen/Bundle-bundle-marfan-complete.json"
MARFAN_ID = "https://www.medizininformatik-initiative.de/fhir/sid/patient-id|MRF-2024-001"
OPERATOR = bearer(OPERATOR_TOKEN)
VCF = """##fileformat=VCFv4.2
##contig=<ID=1,length=248956422>
##FORMAT=<ID=GT,Number=1,Type=String,Description="Genotype">
#CHROM\tPOS\tID\tREF\tALT\tQUAL\tFILTER\tINFO\tFORMAT\tS1\tS2
1\t1001\t.\tA\tG\t.\tPASS\t.\tGT\t0/1\t0/0
1\t1002\t.\tC\tT\t.\tPASS\t.\tGT\t1/1\t0/1
1\t1003\t.\tG\tA\t.\tPASS\t.\tGT\t0/0\t0/1
"""


def _bundles() -> list[Path]:
    if not FHIR.is_dir():
        pytest.skip(f"reference FHIR examples not found at {FHIR}")
    return [FHIR / MARFAN, *sorted((FHIR / "mii-testdata").glob("Bundle-mii-exa-test-data-bundle-pat-*.json"))]


def _identifying(resource: dict) -> set[str]:
    """Names, identifiers, addresses, telecoms and exact birth dates of a Patient, as strings to look for."""
    found: set[str] = set()
    for ident in resource.get("identifier", []):
        found.add(str(ident.get("value", "")))
    for name in resource.get("name", []):
        found.update(name.get("given", []))
        found.add(name.get("family", ""))
        found.add(name.get("text", ""))
    for address in resource.get("address", []):
        found.update(address.get("line", []))
        found.update(str(address.get(k, "")) for k in ("city", "postalCode", "text"))
    for telecom in resource.get("telecom", []):
        found.add(str(telecom.get("value", "")))
    if resource.get("birthDate"):
        found.add(resource["birthDate"])
    found.add(resource.get("id", ""))
    return {s for s in found if len(s) >= 4}


@pytest.fixture
def node(tmp_path, jwks_files):
    app = make_node(tmp_path, jwks_files, [{"id": "mii", "security_level": "CONTROLLED"}])
    yield app
    app.extensions["gateway"].store.close()


def _ingest(node) -> set[str]:
    client = node.test_client()
    secrets: set[str] = set()
    for path in _bundles():
        bundle = json.loads(path.read_text())
        for entry in bundle.get("entry", []):
            if entry.get("resource", {}).get("resourceType") == "Patient":
                secrets |= _identifying(entry["resource"])
        resp = client.post(
            "/fhir?dataset=mii", data=path.read_bytes(), headers={**OPERATOR, "Content-Type": "application/fhir+json"}
        )
        assert resp.status_code in (200, 201), resp.get_data(as_text=True)[:500]
    return secrets


def _ingest_vcf(node, tmp_path) -> None:
    from gateway.services.genomic import run_vcf_ingest

    vcf = tmp_path / "two.vcf"
    vcf.write_text(VCF)
    svc = node.extensions["gateway"]
    code = run_vcf_ingest(
        svc.config,
        path=str(vcf),
        dataset_id="mii",
        assembly="GRCh38",
        sample_map={"S1": MARFAN_ID},
        skip_invalid=False,
        show_progress=False,
    )
    assert code == 0
    from gateway.variants.store import VariantStore

    svc.variants = VariantStore(svc.config.data_dir)


def _outputs(node) -> str:
    client = node.test_client()
    parts = [client.get("/phenopackets?limit=1000", headers=OPERATOR).get_data(as_text=True)]
    for entry in ("g_variants", "individuals", "biosamples"):
        resp = client.get(f"/api/{entry}?requestedGranularity=record&limit=1000", headers=OPERATOR)
        parts.append(resp.get_data(as_text=True))
    parts.append(
        client.get(
            "/api/g_variants?referenceName=1&start=1000&end=1010&requestedGranularity=record", headers=OPERATOR
        ).get_data(as_text=True)
    )
    parts.append(client.get("/api/g_variants?referenceName=1&start=1000&end=1010").get_data(as_text=True))
    parts.append(json.dumps(audit_records(node)))
    return "\n".join(parts)


def test_no_name_identifier_address_or_birth_date_in_any_output(node, tmp_path, caplog):
    caplog.set_level(logging.DEBUG)
    secrets = _ingest(node)
    _ingest_vcf(node, tmp_path)
    assert len(secrets) >= 10  # the scan has something to look for
    text = _outputs(node) + "\n" + caplog.text
    assert "pid-" in text  # the outputs do hold the subjects, pseudonymised
    # As a token of its own: a year-only birth date ("1962") also occurs, by chance, inside the random hex of
    # request ids and hashes (once in ~8 full runs); inside a longer run of letters and digits it discloses nothing.
    leaked = sorted(s for s in secrets if re.search(rf"(?<![0-9A-Za-z]){re.escape(s)}(?![0-9A-Za-z])", text))
    assert leaked == []


def _subject_of_marfan(node) -> str:
    from gateway.security.pseudonym import pseudonymise

    system, _, value = MARFAN_ID.rpartition("|")
    return pseudonymise(node.extensions["gateway"].key, value, system)


def test_after_erasure_no_query_finds_the_subject(node, tmp_path):
    _ingest(node)
    _ingest_vcf(node, tmp_path)
    subject = _subject_of_marfan(node)
    client = node.test_client()
    before = _outputs(node)
    assert subject in before
    rec = client.get(
        "/api/g_variants?referenceName=1&start=1000&referenceBases=A&alternateBases=G&requestedGranularity=record",
        headers=OPERATOR,
    ).get_json()
    assert rec["responseSummary"]["exists"] is True  # carried only by S1, the Marfan patient
    resp = client.delete(f"/admin/subjects/{subject}", headers=OPERATOR)
    assert resp.status_code == 200 and resp.get_json()["phenopackets"] == 1 and resp.get_json()["samples"] == 1
    after = _outputs(node)
    assert subject not in after
    rec = client.get(
        "/api/g_variants?referenceName=1&start=1000&referenceBases=A&alternateBases=G&requestedGranularity=record",
        headers=OPERATOR,
    ).get_json()
    hits = [r for rs in rec.get("response", {}).get("resultSets", []) for r in rs["results"]]
    assert all(r["info"]["alleleCount"] == 0 for r in hits)  # its only allele was the erased subject's
    assert all(subject not in json.dumps(r) for r in hits)
    assert client.get("/phenopackets?dataset=mii&limit=1000", headers=OPERATOR).get_json()["total"] >= 1
    erasures = [r for r in audit_records(node) if r.get("action") == "erase-subject"]
    assert [r["phase"] for r in erasures] == ["intent", "outcome"]  # write-ahead: intent, then what was done
    assert subject not in json.dumps(audit_records(node))
    assert node.extensions["gateway"].security.audit.verify().ok


def _revision_of(store, subject_id: str) -> int:
    import sqlalchemy as sa

    from gateway.store.tables import phenopackets

    with store.engine.connect() as connection:
        query = sa.select(phenopackets.c.revision).where(phenopackets.c.subject_id == subject_id)
        return connection.execute(query).scalar_one()


def test_key_rotation_carries_every_id_forward(node, tmp_path):
    from gateway.security.keys import secret_key
    from gateway.security.rotation import rotate_keys

    _ingest(node)
    _ingest_vcf(node, tmp_path)
    svc = node.extensions["gateway"]
    old_subject = _subject_of_marfan(node)
    old_revision = _revision_of(svc.store, old_subject)
    result = rotate_keys(svc.config.data_dir, svc.store)
    assert result["phenopackets"] >= 2 and result["linked_samples"] == 1
    new_key = secret_key(svc.config)
    assert new_key.chain and bytes(new_key) == bytes(svc.key)
    from gateway.security.pseudonym import chain_step, pseudonymise

    system, _, value = MARFAN_ID.rpartition("|")
    new_subject = pseudonymise(new_key, value, system)
    assert new_subject == chain_step(new_key.chain[-1], old_subject)
    found = svc.store.find_by_subject(new_subject)
    assert len(found) == 1 and found[0].document["subject"]["id"] == new_subject
    assert _revision_of(svc.store, new_subject) == old_revision + 1  # a changed row: the term index patches it
    assert svc.store.find_by_subject(old_subject) == []
    from gateway.variants.store import VariantStore

    variants = VariantStore(svc.config.data_dir)
    carriers = variants.carriers(
        next(
            iter(
                variants.search(
                    __import__("gateway.variants.query", fromlist=["VariantQuery"]).VariantQuery(
                        reference_name="1", start=1000
                    )
                )[0]
            )
        ).variant_id
    )
    assert {c.individual_id for c in carriers} == {new_subject}
    assert (Path(svc.config.data_dir) / "key-chain").stat().st_mode & 0o077 == 0


def test_key_rotation_carries_the_kept_fhir_resources_forward(node):
    """The resources kept for the REST channel hold pseudonyms (identifiers at rest, the Patient's
    subject): after a rotation, a Condition sent later still meets the rotated phenopacket."""
    from gateway.security.keys import secret_key
    from gateway.security.pseudonym import pseudonymise
    from gateway.security.rotation import rotate_keys

    _ingest(node)
    svc = node.extensions["gateway"]
    rotate_keys(svc.config.data_dir, svc.store)
    svc.key = secret_key(svc.config)  # what a restarted worker reads
    system, _, value = MARFAN_ID.rpartition("|")
    new_subject = pseudonymise(svc.key, value, system)
    marfan = json.loads(next(p for p in _bundles() if "marfan" in p.name).read_text())
    condition = next(e["resource"] for e in marfan["entry"] if e["resource"]["id"] == "condition-cataract")
    condition = {**condition, "id": "condition-later", "subject": {"reference": f"Patient?identifier={MARFAN_ID}"}}
    resp = node.test_client().post(
        "/fhir/Condition?dataset=mii",
        data=json.dumps(condition),
        headers={**OPERATOR, "Content-Type": "application/fhir+json", "Prefer": "return=OperationOutcome"},
    )
    assert resp.status_code == 201, resp.get_data(as_text=True)
    codes = [i["details"]["coding"][0]["code"] for i in resp.get_json()["issue"]]
    assert "pending" not in codes
    (packet,) = svc.store.find_by_subject(new_subject)
    assert len(packet.document["diseases"]) >= 2
    assert len(svc.store.list_phenopackets(dataset_id="mii", limit=1000)[0]) == len(
        {p.subject_id for p in svc.store.list_phenopackets(dataset_id="mii", limit=1000)[0]}
    )
