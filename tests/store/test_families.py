"""Issue 11: FamilyMemberHistory becomes a Phenopacket Family stored with the proband's phenopacket —
from a Bundle and resource by resource, replaced on update, erased with the subject, every person id
pseudonymised — and a Phenopacket v2 Family document is accepted by phenopacket ingest. Real MII test
data from ../shared/reference/fhir (SQLite and PostgreSQL)."""

from __future__ import annotations

import copy
import json
import math
import re

import pytest
import sqlalchemy as sa

from gateway.security.erasure import erase_subject
from gateway.security.rotation import rotate_metadata
from gateway.services.fhir_resources import ResourceWrite, apply_writes, supported_types
from gateway.services.ingest import family_issues, ingest_fhir, ingest_phenopackets, process_fhir
from gateway.store import PhenopacketRecord, StoreError
from gateway.store.tables import phenopacket_families
from gateway.validation.phenopacket import validate_family

KEY = b"family-test-key-not-a-secret-000"
SELTENE = "mii-testdata/Bundle-mii-exa-test-data-bundle-seltene-1.json"
MOLGEN = "mii-testdata/Bundle-mii-exa-test-data-bundle-molgen-1.json"
LONE_HISTORY = "mii-testdata/FamilyMemberHistory-mii-exa-test-data-patient-3-seltene-familienanamnese-1.json"
PATIENT_ID = "mii-exa-test-data-seltene-patient-1"
PERSON_ID = re.compile(r"(pid|relative)-[0-9a-f]{24,32}")


def _fhir(reference_dir, name):
    return json.loads((reference_dir / "fhir" / name).read_text(encoding="utf-8"))


def _resources(bundle, resource_type):
    return [copy.deepcopy(e["resource"]) for e in bundle["entry"] if e["resource"]["resourceType"] == resource_type]


def _family_rows(store) -> int:
    with store.engine.connect() as connection:
        return connection.execute(sa.select(sa.func.count()).select_from(phenopacket_families)).scalar_one()


def _person_ids(family):
    """Every identifier of a person in a Family, wherever the model puts one."""
    persons = family["pedigree"]["persons"]
    found = [family["proband"]["subject"]["id"], *(r["subject"]["id"] for r in family["relatives"])]
    names = ("individualId", "paternalId", "maternalId")
    found += [p[n] for p in persons for n in names if p.get(n, "0") != "0"]  # "0": PED's no parent
    for packet in (family["proband"], *family["relatives"]):
        found += [b["individualId"] for b in packet.get("biosamples", ()) if "individualId" in b]
        found += [
            g["subjectOrBiosampleId"]
            for i in packet.get("interpretations", ())
            for g in i.get("diagnosis", {}).get("genomicInterpretations", ())
        ]
    for file in family.get("files", ()):
        found += list(file.get("individualToFileIdentifiers", {}))
    return found


def _without_meta(family):
    """What the family says about people (metaData lists the resources of the message it came in)."""
    return {
        "id": family["id"],
        "relatives": [{k: v for k, v in r.items() if k != "metaData"} for r in family["relatives"]],
        "pedigree": family["pedigree"],
    }


# --- FHIR: a Bundle -----------------------------------------------------------------------------------------


def test_bundle_family_history_is_stored_with_the_proband(store, reference_dir):
    outcome = ingest_fhir(_fhir(reference_dir, SELTENE), store=store, key=KEY, dataset_id="ds1")
    assert outcome.stored
    (packet,) = outcome.packets
    family = store.get_family(packet.saved.id)
    assert family is not None  # was: translated, then dropped on the floor
    document = family.document
    assert validate_family(document, target="output").ok
    assert document["proband"] == store.get_phenopacket(packet.saved.id).document  # one proband, never two
    assert len(document["relatives"]) == 2
    proband_person = document["pedigree"]["persons"][0]
    assert proband_person["individualId"] == packet.subject_id
    relatives = {r["subject"]["id"] for r in document["relatives"]}
    assert {proband_person["maternalId"], proband_person["paternalId"]} == relatives  # mother and father
    mother = next(r for r in document["relatives"] if r["subject"]["id"] == proband_person["maternalId"])
    assert {d["term"]["id"] for d in mother["diseases"]} >= {"ORPHA:558"}  # Marfan, as sent


def test_every_person_id_in_the_family_is_a_pseudonym(store, reference_dir):
    bundle = _fhir(reference_dir, SELTENE)
    outcome = ingest_fhir(bundle, store=store, key=KEY, dataset_id="ds1")
    family = store.get_family(outcome.packets[0].saved.id).document
    assert all(PERSON_ID.fullmatch(i) for i in _person_ids(family))
    text = json.dumps(family)
    for resource in _resources(bundle, "Patient") + _resources(bundle, "FamilyMemberHistory"):
        assert resource["id"] not in text
    assert "SELT-TEST-001" not in text and "Seltenfall" not in text and "1960" not in text  # no bornDate either


def test_each_patient_of_a_bundle_gets_their_own_family(store, reference_dir):
    outcome = ingest_fhir(_fhir(reference_dir, MOLGEN), store=store, key=KEY, dataset_id="ds1")
    families = [store.get_family(p.saved.id) for p in outcome.packets]
    assert len(families) == 2 and all(families)
    assert len({f.id for f in families}) == 2
    for packet, family in zip(outcome.packets, families, strict=True):
        assert family.document["pedigree"]["persons"][0]["individualId"] == packet.subject_id
    assert _family_rows(store) == 2


# --- FHIR: resource by resource -------------------------------------------------------------------------------


def _write(resource):
    return ResourceWrite(resource["resourceType"], resource["id"], resource)


@pytest.mark.parametrize("patient_first", [True, False])
def test_resource_by_resource_makes_the_family_the_bundle_makes(store, reference_dir, patient_first):
    """Every resource of the real Bundle sent on its own (Patient first, or last): the same Family."""
    bundle = _fhir(reference_dir, SELTENE)
    writes = [
        ResourceWrite(e["resource"]["resourceType"], e["resource"]["id"], e["resource"], e.get("fullUrl"))
        for e in bundle["entry"]
        if e["resource"]["resourceType"] in supported_types()
    ]
    assert writes[0].resource_type == "Patient" and len(writes) > 3
    for write in writes if patient_first else reversed(writes):
        apply_writes([write], store=store, key=KEY, dataset_id="ds1")
    (stored,) = store.list_phenopackets(dataset_id="ds1")[0]
    family = store.get_family(stored.id)
    assert family is not None
    from_bundle = process_fhir(bundle, key=KEY, dataset_id="ds1").packets[0].family
    assert _without_meta(family.document) == _without_meta(from_bundle)
    assert family.document["pedigree"]["persons"][0]["affectedStatus"] == "AFFECTED"
    assert validate_family(family.document, target="output").ok


def test_lone_family_member_history_file_joins_its_patient(store, reference_dir):
    """The reference file as a hospital sends it: one FamilyMemberHistory, its Patient sent earlier."""
    patient = _resources(_fhir(reference_dir, SELTENE), "Patient")[0]
    apply_writes([_write(patient)], store=store, key=KEY, dataset_id="ds1")
    (stored,) = store.list_phenopackets(dataset_id="ds1")[0]
    assert store.get_family(stored.id) is None
    apply_writes([_write(_fhir(reference_dir, LONE_HISTORY))], store=store, key=KEY, dataset_id="ds1")
    family = store.get_family(stored.id).document
    assert family["pedigree"]["persons"][0]["maternalId"] == family["relatives"][0]["subject"]["id"]


def test_update_replaces_and_delete_removes_the_family(store, reference_dir):
    bundle = _fhir(reference_dir, SELTENE)
    patient, (mother, father) = _resources(bundle, "Patient")[0], _resources(bundle, "FamilyMemberHistory")
    apply_writes([_write(patient), _write(mother), _write(father)], store=store, key=KEY, dataset_id="ds1")
    packet_id = store.list_phenopackets(dataset_id="ds1")[0][0].id

    mother["condition"] = mother["condition"][:1]  # the hospital corrects the history: one condition left
    apply_writes([_write(mother)], store=store, key=KEY, dataset_id="ds1")
    family = store.get_family(packet_id).document
    assert sorted(len(r.get("diseases", ())) for r in family["relatives"]) == [1, len(father["condition"])]

    apply_writes([ResourceWrite("FamilyMemberHistory", father["id"], None)], store=store, key=KEY, dataset_id="ds1")
    assert len(store.get_family(packet_id).document["relatives"]) == 1
    apply_writes([ResourceWrite("FamilyMemberHistory", mother["id"], None)], store=store, key=KEY, dataset_id="ds1")
    assert store.get_family(packet_id) is None  # no history left: no family, the phenopacket stays
    assert store.get_phenopacket(packet_id) is not None
    assert _family_rows(store) == 0


def test_deleting_the_patient_removes_its_family(store, reference_dir):
    bundle = _fhir(reference_dir, SELTENE)
    patient = _resources(bundle, "Patient")[0]
    apply_writes(
        [_write(r) for r in [patient, *_resources(bundle, "FamilyMemberHistory")]],
        store=store,
        key=KEY,
        dataset_id="ds1",
    )
    assert _family_rows(store) == 1
    apply_writes([ResourceWrite("Patient", patient["id"], None)], store=store, key=KEY, dataset_id="ds1")
    assert store.list_phenopackets(dataset_id="ds1")[1] == 0 and _family_rows(store) == 0


def test_same_bundle_again_replaces_the_family_without_a_second_one(store, reference_dir):
    bundle = _fhir(reference_dir, SELTENE)
    first = ingest_fhir(bundle, store=store, key=KEY, dataset_id="ds1").packets[0].saved
    again = ingest_fhir(bundle, store=store, key=KEY, dataset_id="ds1").packets[0].saved
    assert first.id == again.id and not again.created
    assert _family_rows(store) == 1


# --- erasure, atomicity, key rotation ----------------------------------------------------------------------------


def test_erasing_the_subject_erases_the_family(store, reference_dir):
    outcome = ingest_fhir(_fhir(reference_dir, SELTENE), store=store, key=KEY, dataset_id="ds1")
    packet = outcome.packets[0]
    result = erase_subject(store, None, packet.subject_id, key=KEY)
    assert result.phenopackets == 1
    assert store.get_family(packet.saved.id) is None and _family_rows(store) == 0


def test_erasing_a_relative_takes_them_out_of_the_family_for_good(store, reference_dir):
    """A relative's pseudonym erased: gone from the Family, and the FamilyMemberHistory they came from too,
    so that the proband's next change (resource by resource) does not bring them back."""
    bundle = _fhir(reference_dir, SELTENE)
    patient, histories = _resources(bundle, "Patient")[0], _resources(bundle, "FamilyMemberHistory")
    apply_writes([_write(r) for r in [patient, *histories]], store=store, key=KEY, dataset_id="ds1")
    packet_id = store.list_phenopackets(dataset_id="ds1")[0][0].id
    family = store.get_family(packet_id).document
    mother = family["pedigree"]["persons"][0]["maternalId"]

    result = erase_subject(store, None, mother, key=KEY)
    assert (result.phenopackets, result.families) == (0, 1)
    family = store.get_family(packet_id).document
    assert mother not in json.dumps(family) and len(family["relatives"]) == 1
    assert "maternalId" not in family["pedigree"]["persons"][0]
    assert validate_family(family, target="output").ok

    apply_writes([_write({**patient, "gender": "female"})], store=store, key=KEY, dataset_id="ds1")  # a rebuild
    assert mother not in json.dumps(store.get_family(packet_id).document)

    father = family["pedigree"]["persons"][0]["paternalId"]
    assert erase_subject(store, None, father, key=KEY).families == 1
    assert store.get_family(packet_id) is None and store.get_phenopacket(packet_id) is not None


def test_erasing_a_relative_of_a_family_document(store, reference_dir):
    proband, mother, father = _real_packets(reference_dir, 3)
    doc = _family_of(proband, mother)
    doc["relatives"].append(father)
    doc["pedigree"]["persons"][0]["paternalId"] = father["subject"]["id"]
    doc["pedigree"]["persons"].append({"familyId": doc["id"], "individualId": father["subject"]["id"], "sex": "MALE"})
    doc["files"][0]["individualToFileIdentifiers"][father["subject"]["id"]] = "S3"
    results, reports = ingest_phenopackets([doc], store=store, key=KEY, dataset_id="ds1")
    assert all(r.ok for r in reports)
    family = store.get_family(results[0].id).document
    erased = family["pedigree"]["persons"][0]["maternalId"]
    assert erase_subject(store, None, erased, key=KEY).families == 1
    family = store.get_family(results[0].id).document
    assert erased not in json.dumps(family) and len(family["relatives"]) == 1
    assert len(family["files"][0]["individualToFileIdentifiers"]) == 2
    assert validate_family(family, target="output").ok
    kept = family["relatives"][0]["subject"]["id"]
    assert erase_subject(store, None, kept, key=KEY).families == 1
    assert store.get_family(results[0].id) is None  # no relative left: no family
    assert erase_subject(store, None, kept, key=KEY).families == 0  # nothing left to erase


def test_withdrawing_the_dataset_removes_its_families(store, reference_dir):
    ingest_fhir(_fhir(reference_dir, SELTENE), store=store, key=KEY, dataset_id="ds1")
    store.delete_dataset("ds1")
    assert _family_rows(store) == 0


def test_a_family_that_cannot_be_written_leaves_nothing(store, reference_dir):
    (packet,) = process_fhir(_fhir(reference_dir, SELTENE), key=KEY, dataset_id="ds1").packets
    broken = {**packet.family, "notANumber": math.nan}  # refused by the JSON writer inside the transaction
    record = PhenopacketRecord(packet.phenopacket["id"], "ds1", packet.subject_id, packet.phenopacket, family=broken)
    with pytest.raises((ValueError, sa.exc.StatementError), match="not JSON compliant"):  # per driver
        store.save_phenopackets([record])
    assert store.list_phenopackets(dataset_id="ds1")[1] == 0 and _family_rows(store) == 0
    with pytest.raises(StoreError, match="family"):
        store.save_phenopackets([PhenopacketRecord("p", "ds1", "s", {}, family={"relatives": []})])


def test_an_invalid_family_is_an_output_error():
    family = {
        "id": "family-1",
        "proband": {"id": "p", "subject": {"id": "a"}, "metaData": {}},
        "pedigree": {"persons": [{"familyId": "family-1", "individualId": "a", "sex": "MALE"}] * 2},
    }
    issues = family_issues(family)
    assert any(i.is_error and i.code == "duplicate-id" and i.location.startswith("/pedigree") for i in issues)
    assert not any(i.location.startswith("/proband") for i in issues)  # the phenopacket's own validation says those


def test_key_rotation_carries_the_family_along(store, reference_dir):
    outcome = ingest_fhir(_fhir(reference_dir, SELTENE), store=store, key=KEY, dataset_id="ds1")
    before = store.get_family(outcome.packets[0].saved.id)
    rotate_metadata(store, b"the-next-key-in-the-chain-000000")
    (packet,) = store.list_phenopackets(dataset_id="ds1")[0]
    after = store.get_family(packet.id)
    assert after is not None and after.id != before.id
    persons = after.document["pedigree"]["persons"]
    assert persons[0]["individualId"] == packet.subject_id != before.subject_id
    assert {p["familyId"] for p in persons} == {after.id}
    assert {persons[0]["maternalId"], persons[0]["paternalId"]} == {
        r["subject"]["id"] for r in after.document["relatives"]
    }


# --- phenopacket ingest of a Family document -----------------------------------------------------------------------


def _real_packets(reference_dir, n):
    """Real phenopacket-store documents with a genomic interpretation naming their subject."""
    found = []
    for path in sorted((reference_dir / "phenopackets").glob("*/PMID_*.json")):
        doc = json.loads(path.read_text(encoding="utf-8"))
        named = [
            g.get("subjectOrBiosampleId")
            for i in doc.get("interpretations", ())
            for g in i.get("diagnosis", {}).get("genomicInterpretations", ())
        ]
        if doc["subject"]["id"] in named:
            found.append(doc)
        if len(found) == n:
            return found
    raise AssertionError("not enough reference phenopackets with interpretations")


def _family_of(proband, mother):
    """A trio-less family as a registry writes it: the registry's own labels for people."""
    return {
        "id": "registry-family-7",
        "proband": proband,
        "relatives": [mother],
        "pedigree": {
            "persons": [
                {
                    "familyId": "registry-family-7",
                    "individualId": proband["subject"]["id"],
                    "maternalId": mother["subject"]["id"],
                    "paternalId": "0",
                    "sex": "MALE",
                    "affectedStatus": "AFFECTED",
                },
                {"familyId": "registry-family-7", "individualId": mother["subject"]["id"], "sex": "FEMALE"},
            ]
        },
        "files": [
            {
                "uri": "file://data/genomes/registry-family-7.vcf.gz",
                "individualToFileIdentifiers": {proband["subject"]["id"]: "S1", mother["subject"]["id"]: "S2"},
            }
        ],
        "metaData": proband["metaData"],
    }


def test_a_family_document_is_stored_with_every_label_pseudonymised(store, reference_dir):
    proband, mother = _real_packets(reference_dir, 2)
    doc = _family_of(proband, mother)
    labels = {proband["subject"]["id"], mother["subject"]["id"]}
    results, reports = ingest_phenopackets([doc], store=store, key=KEY, dataset_id="ds1")
    assert all(r.ok for r in reports) and results[0].created
    family = store.get_family(results[0].id).document
    assert validate_family(family, target="output").ok
    assert all(PERSON_ID.fullmatch(i) for i in _person_ids(family))
    assert not labels & set(_person_ids(family))
    person = family["pedigree"]["persons"][0]
    relative = family["relatives"][0]
    assert person["individualId"] == family["proband"]["subject"]["id"] == results[0].subject_id
    assert person["maternalId"] == relative["subject"]["id"] and person["paternalId"] == "0"
    named = relative["interpretations"][0]["diagnosis"]["genomicInterpretations"][0]["subjectOrBiosampleId"]
    assert named == relative["subject"]["id"]  # the relative's interpretation names the relative, as before
    assert set(family["files"][0]["individualToFileIdentifiers"]) == {person["individualId"], relative["subject"]["id"]}
    assert {p["familyId"] for p in family["pedigree"]["persons"]} == {family["id"]} != {"registry-family-7"}


def test_a_family_document_updates_the_probands_own_phenopacket(store, reference_dir):
    proband, mother = _real_packets(reference_dir, 2)
    alone, _ = ingest_phenopackets([proband], store=store, key=KEY, dataset_id="ds1")
    with_family, _ = ingest_phenopackets([_family_of(proband, mother)], store=store, key=KEY, dataset_id="ds1")
    assert with_family[0].id == alone[0].id and not with_family[0].created  # the same person, now with family
    assert store.get_family(alone[0].id) is not None
    kept_before = store.get_family(alone[0].id).document
    changed = {**proband, "phenotypicFeatures": proband.get("phenotypicFeatures", [])[:1]}
    _, reports = ingest_phenopackets([changed], store=store, key=KEY, dataset_id="ds1")  # sent again without
    assert [i.code for i in reports[0]] == ["family-kept"]
    kept = store.get_family(alone[0].id).document  # another document of the schema: it stays around the new one
    assert kept["relatives"] == kept_before["relatives"] and kept["pedigree"] == kept_before["pedigree"]
    assert kept["proband"] == store.get_phenopacket(alone[0].id).document


def test_a_family_exported_by_the_gateway_can_be_ingested_elsewhere(store, reference_dir):
    outcome = ingest_fhir(_fhir(reference_dir, SELTENE), store=store, key=KEY, dataset_id="ds1")
    exported = store.get_family(outcome.packets[0].saved.id).document
    store.ensure_dataset("ds2")
    results, reports = ingest_phenopackets([exported], store=store, key=KEY, dataset_id="ds2")
    assert all(r.ok for r in reports)
    family = store.get_family(results[0].id).document
    assert len(family["relatives"]) == 2 and family["id"] != exported["id"]


def test_an_invalid_family_document_is_refused_with_pointers_and_stores_nothing(store, reference_dir):
    path = reference_dir / "phenopackets" / "_phenopacket-tools" / "io-test-v2" / "family.json"
    doc = json.loads(path.read_text(encoding="utf-8"))
    results, reports = ingest_phenopackets([doc], store=store, key=KEY, dataset_id="ds1")
    assert results == []
    errors = [i for i in reports[0] if i.is_error]
    assert any(i.location == "/relatives/0/id" for i in errors)
    assert any(i.location.startswith("/pedigree/persons/0") for i in errors)
    assert store.list_phenopackets(dataset_id="ds1")[1] == 0 and _family_rows(store) == 0


def test_two_members_samples_with_one_label_stay_two_samples(store, reference_dir):
    """A registry numbers each person's samples from 1: the proband's and the mother's "biosample.1" got one
    pseudonymised id in the stored Family, so the two samples read as one (pheno-real-2's open item)."""
    proband, mother = (copy.deepcopy(p) for p in _real_packets(reference_dir, 2))
    for member in (proband, mother):
        member["biosamples"] = [{"id": "biosample.1", "individualId": member["subject"]["id"]}]
        member["biosamples"].append({"id": "biosample.2", "derivedFromId": "biosample.1"})
        genomic = member["interpretations"][0]["diagnosis"]["genomicInterpretations"][0]
        genomic["subjectOrBiosampleId"] = "biosample.2"
    alone, _ = ingest_phenopackets([copy.deepcopy(proband)], store=store, key=KEY, dataset_id="ds1")
    alone_ids = [b["id"] for b in store.get_phenopacket(alone[0].id).document["biosamples"]]
    doc = _family_of(proband, mother)
    results, reports = ingest_phenopackets([doc], store=store, key=KEY, dataset_id="ds1")
    assert all(r.ok for r in reports), [str(i) for r in reports for i in r]
    family = store.get_family(results[0].id).document
    own = [b["id"] for b in family["proband"]["biosamples"]]
    theirs = [b["id"] for b in family["relatives"][0]["biosamples"]]
    assert own == alone_ids  # the proband's ids are those its packet has alone
    assert not set(own) & set(theirs) and len(set(theirs)) == 2
    # inside each member's packet the links follow that member's own samples
    assert family["relatives"][0]["biosamples"][1]["derivedFromId"] == theirs[0]
    relative_genomic = family["relatives"][0]["interpretations"][0]["diagnosis"]["genomicInterpretations"][0]
    assert relative_genomic["subjectOrBiosampleId"] == theirs[1]
    proband_genomic = family["proband"]["interpretations"][0]["diagnosis"]["genomicInterpretations"][0]
    assert proband_genomic["subjectOrBiosampleId"] == own[1]


def test_a_family_file_key_naming_a_shared_sample_label_is_warned(reference_dir):
    from gateway.services.people import prepare_family

    proband, mother = (copy.deepcopy(p) for p in _real_packets(reference_dir, 2))
    for member in (proband, mother):
        member["biosamples"] = [{"id": "biosample.1", "individualId": member["subject"]["id"]}]
    doc = _family_of(proband, mother)
    doc["files"][0]["individualToFileIdentifiers"] = {"biosample.1": "S1"}
    _, family, _, report = prepare_family(doc, key=KEY, dataset_id="ds1")
    assert [(i.code, i.location) for i in report if i.code == "ambiguous-biosample"] == [
        ("ambiguous-biosample", "/files/0/individualToFileIdentifiers")
    ]
    assert list(family["files"][0]["individualToFileIdentifiers"]) == [family["proband"]["biosamples"][0]["id"]]
