"""Person identifiers inside submitted phenopackets and Families: one pseudonym per person.

A submitted document names people by the registry's own labels ("proband", "MOTHER", "Patient 2").
Every such label becomes a keyed pseudonym, the same one wherever it recurs in the document (subject,
biosample individualId, subjectOrBiosampleId, file-to-individual keys, and in a Family the relatives'
subjects and the pedigree's individualId/paternalId/maternalId), so the links between people hold
while the labels are gone. The scope of the pseudonyms is the proband's document id: the same label
in two unrelated documents names two different people.
"""

from __future__ import annotations

import json
from typing import Any

from gateway.issues import Issue, Report
from gateway.security.pseudonym import derived_id, pseudonymise
from gateway.validation.phenopacket import validate_family, validate_phenopacket

PED_UNKNOWN = "0"  # PED's "no parent in the pedigree": a marker, not a person


class PersonIds:
    """Raw person labels of one submitted document → pseudonyms (the proband's is its subject id)."""

    def __init__(self, key: bytes, packet: dict[str, Any]):
        subject = _dict(packet.get("subject"))
        self.key = key
        self.raw_subject = subject.get("id") or packet.get("id")
        self.scope = f"phenopacket:{packet.get('id') or self.raw_subject}"
        self.subject_id = pseudonymise(key, self.scope, "phenopacket")

    def __call__(self, value: Any) -> Any:
        if not isinstance(value, str) or not value:
            return value
        return self.subject_id if value == self.raw_subject else pseudonymise(self.key, value, self.scope)


def pseudonymise_packet(packet: dict[str, Any], person: PersonIds, subject_id: str, report: Report, base: str) -> None:
    """Replace every person label inside one phenopacket (in place); the subject becomes `subject_id`.

    subjectOrBiosampleId values naming one of the packet's own biosamples stay as they are.
    """
    subject = _dict(packet.get("subject"))
    subject["id"] = subject_id
    packet["subject"] = subject
    if subject.pop("dateOfBirth", None) is not None:
        report.add(
            Issue.warning("minimised", "subject.dateOfBirth removed (data minimisation)", f"{base}/subject/dateOfBirth")
        )
    biosample_ids = set()
    for biosample in _dicts(packet.get("biosamples")):
        biosample_ids.add(biosample.get("id"))
        if "individualId" in biosample:
            biosample["individualId"] = person(biosample["individualId"])
    for interpretation in _dicts(packet.get("interpretations")):
        diagnosis = interpretation.get("diagnosis")
        for genomic in _dicts(diagnosis.get("genomicInterpretations") if isinstance(diagnosis, dict) else None):
            named = genomic.get("subjectOrBiosampleId")
            if named is not None and named not in biosample_ids:
                genomic["subjectOrBiosampleId"] = person(named)
    _pseudonymise_files(packet, person)


def prepare_packet(doc: dict, *, key: bytes, dataset_id: str) -> tuple[dict | None, str, Report]:
    """Validate a submitted phenopacket and pseudonymise it; (packet, subject pseudonym, report)."""
    report = Report()
    report.extend(validate_phenopacket(doc, target="input"))
    if not report.ok:
        return None, "", report
    packet = json.loads(json.dumps(doc))  # our own copy: the caller's document stays untouched
    person = PersonIds(key, packet)
    pseudonymise_packet(packet, person, person.subject_id, report, "")
    packet["id"] = derived_id(key, "phenopacket", dataset_id, person.subject_id)
    return packet, person.subject_id, report


def prepare_family(doc: dict, *, key: bytes, dataset_id: str) -> tuple[dict | None, dict | None, str, Report]:
    """Validate a submitted Family and pseudonymise it; (proband, family, subject pseudonym, report).

    The proband is stored as its phenopacket would be on its own (same identity: its document id),
    the Family around it with every person label replaced in the proband's scope.
    """
    report = Report()
    report.extend(validate_family(doc, target="input"))
    if not report.ok:
        return None, None, "", report
    family = json.loads(json.dumps(doc))
    proband = family["proband"]  # required by the Family schema (validated above)
    person = PersonIds(key, proband)
    subject_id = person.subject_id
    pseudonymise_packet(proband, person, subject_id, report, "/proband")
    proband["id"] = derived_id(key, "phenopacket", dataset_id, subject_id)
    for n, relative in enumerate(_dicts(family.get("relatives"))):
        subject = _dict(relative.get("subject"))
        relative_id = person(subject.get("id") or relative.get("id") or f"relative {n}")
        pseudonymise_packet(relative, person, relative_id, report, f"/relatives/{n}")
        relative["id"] = derived_id(key, "relative-phenopacket", dataset_id, subject_id, relative_id)
    family["id"] = derived_id(key, "family", dataset_id, subject_id)
    pedigree = family.get("pedigree")
    for member in _dicts(pedigree.get("persons") if isinstance(pedigree, dict) else None):
        member["familyId"] = family["id"]
        for name in ("individualId", "paternalId", "maternalId"):
            if member.get(name) not in (None, "", PED_UNKNOWN):
                member[name] = person(member[name])
    _pseudonymise_files(family, person)
    # The labels are gone: what is stored must still be a valid Family (links between people intact).
    report.extend(validate_family(family, target="output"))
    if not report.ok:
        return None, None, "", report
    return proband, family, subject_id, report


def _pseudonymise_files(document: dict[str, Any], person: PersonIds) -> None:
    for file in _dicts(document.get("files")):
        mapping = file.get("individualToFileIdentifiers")
        if isinstance(mapping, dict):
            file["individualToFileIdentifiers"] = {person(k): v for k, v in mapping.items()}


def _dict(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _dicts(value: Any) -> list[dict[str, Any]]:
    return [v for v in value if isinstance(v, dict)] if isinstance(value, list) else []
