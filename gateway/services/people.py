"""Person identifiers inside submitted phenopackets and Families: one pseudonym per person.

A submitted document names people by the registry's own labels ("proband", "MOTHER", "Patient 2").
Every such label becomes a keyed pseudonym, the same one wherever it recurs in the document (subject,
biosample individualId, subjectOrBiosampleId, file-to-individual keys, and in a Family the relatives'
subjects and the pedigree's individualId/paternalId/maternalId), so the links between people hold
while the labels are gone. The scope of the pseudonyms is the proband's document id: the same label
in two unrelated documents names two different people.

Biosample ids ("biosample.1", a laboratory's sample number) become derived ids in the same scope,
wherever they recur (biosample id, derivedFromId, subjectOrBiosampleId, file keys): two people's
"biosample.1" stay two samples — in one Family too, where a relative's id that another member also uses is
derived with the relative's label (the proband's stay what they are when its packet is sent alone).
Interpretation ids are derived too (collections often give the interpretation the subject's own label). `subject.alternateIds` (the person's other record numbers)
become keyed pseudonyms outside any document's scope, so a record number shared by two documents
still links them. Derived ids and pseudonyms are what a key rotation carries forward.
"""

from __future__ import annotations

import copy
import json
import re
from collections import Counter
from typing import Any

import phenopackets

from gateway.issues import Issue, Report
from gateway.security.pseudonym import derived_id, pseudonymise
from gateway.validation.hpo import hpo_findings
from gateway.validation.phenopacket import validate_family, validate_phenopacket
from gateway.validation.proto_spelling import Respelled, respell
from translators.ages import parse_fhir_date, whole_years

PED_UNKNOWN = "0"  # PED's "no parent in the pedigree": a marker, not a person


class PersonIds:
    """Raw person labels of one submitted document → pseudonyms (the proband's is its subject id)."""

    def __init__(
        self,
        key: bytes,
        packet: dict[str, Any],
        biosample_ids: set[str] | None = None,
        renamed: dict[str, str] | None = None,
    ):
        subject = _dict(packet.get("subject"))
        self.key = key
        self.renamed = renamed if renamed is not None else {}  # every raw value replaced -> what replaced it
        self.raw_subject = subject.get("id") or packet.get("id")
        self.scope = f"phenopacket:{packet.get('id') or self.raw_subject}"
        self.subject_id = pseudonymise(key, self.scope, "phenopacket")
        # The document's biosample ids (in a Family: every member's), as sent.
        self.biosample_ids = biosample_ids if biosample_ids is not None else _biosample_ids(packet)
        # In a Family: the biosample ids more than one member uses ("biosample.1" for each), and the member
        # whose packet is being read (None: the proband). A relative's such id is derived with the relative's
        # label too, so two people's samples stay two; the proband's stay as they are alone.
        self.shared_biosamples: frozenset[str] = frozenset()
        self.member: str | None = None

    def for_member(self, label: str) -> PersonIds:
        """The same pseudonyms, reading the packet of the relative labelled `label`."""
        member = copy.copy(self)
        member.member = label
        return member

    def __call__(self, value: Any) -> Any:
        """A person label's pseudonym."""
        if not isinstance(value, str) or not value:
            return value
        return self.rename(
            value, self.subject_id if value == self.raw_subject else pseudonymise(self.key, value, self.scope)
        )

    def subject_or_biosample(self, value: Any) -> Any:
        """A reference to a biosample of the document or else to a person (subjectOrBiosampleId, file keys)."""
        return self.biosample(value) if value in self.biosample_ids else self(value)

    def biosample(self, value: Any) -> Any:
        if not isinstance(value, str) or not value:
            return value
        if self.member is not None and value in self.shared_biosamples:
            return self.rename(value, derived_id(self.key, "biosample", self.scope, self.member, value))
        return self.rename(value, derived_id(self.key, "biosample", self.scope, value))

    def interpretation(self, value: Any, person_id: str) -> Any:
        if not isinstance(value, str) or not value:
            return value
        return self.rename(value, derived_id(self.key, "interpretation", self.scope, person_id, value))

    def alternate(self, value: Any) -> Any:
        if not isinstance(value, str) or not value:
            return value
        return self.rename(value, pseudonymise(self.key, value, "alternateIds"))

    def rename(self, raw: str, new: str) -> str:
        """`new` replaces `raw`: noted in `renamed` (the first replacement of a value is the one kept)."""
        self.renamed.setdefault(raw, new)
        return new


def pseudonymise_packet(packet: dict[str, Any], person: PersonIds, subject_id: str, report: Report, base: str) -> None:
    """Replace every person label inside one phenopacket (in place); the subject becomes `subject_id`.

    Its biosample and interpretation ids become derived ids; a subjectOrBiosampleId or file key naming one
    of the document's biosamples follows that biosample, any other names a person.
    """
    subject = _dict(packet.get("subject"))
    subject["id"] = subject_id
    packet["subject"] = subject
    _dates_as_ages(packet, subject.get("dateOfBirth"), report, base)
    if subject.pop("dateOfBirth", None) is not None:
        report.add(
            Issue.warning("minimised", "subject.dateOfBirth removed (data minimisation)", f"{base}/subject/dateOfBirth")
        )
    if isinstance(subject.get("alternateIds"), list):
        subject["alternateIds"] = [person.alternate(v) for v in subject["alternateIds"]]
    for biosample in _dicts(packet.get("biosamples")):
        for name in ("id", "derivedFromId"):
            if name in biosample:
                biosample[name] = person.biosample(biosample[name])
        if "individualId" in biosample:
            biosample["individualId"] = person(biosample["individualId"])
        _pseudonymise_files(biosample, person)
    for interpretation in _dicts(packet.get("interpretations")):
        if "id" in interpretation:
            interpretation["id"] = person.interpretation(interpretation["id"], subject_id)
        diagnosis = interpretation.get("diagnosis")
        for genomic in _dicts(diagnosis.get("genomicInterpretations") if isinstance(diagnosis, dict) else None):
            if "subjectOrBiosampleId" in genomic:
                genomic["subjectOrBiosampleId"] = person.subject_or_biosample(genomic["subjectOrBiosampleId"])
    _pseudonymise_files(packet, person)


# The TimeElements of a phenopacket, by the member that holds one (a dose interval's `interval` is not one:
# the model defines it as timestamps only, and it stays as the FHIR translator leaves it).
TIME_ELEMENTS = frozenset(
    {"onset", "resolution", "timeAtLastEncounter", "timeOfDeath", "timeObserved", "timeOfCollection", "performed"}
    | {"startTime", "endTime"}
)


def _dates_as_ages(packet: dict[str, Any], birth_value: Any, report: Report, base: str) -> None:
    """Every date of the person's life (a TimeElement's timestamp or interval) becomes their age at it, in whole
    completed years, as the FHIR translator makes them (translators.ages); without a birth date, or before it,
    the date is removed with a warning. The dates are identifying; the ages say what Beacon filters ask."""
    birth = parse_fhir_date(birth_value, latest=True)
    converted: list[str] = []

    def age_at(value: Any) -> dict | None:
        at = parse_fhir_date(value, latest=False)
        years = whole_years(birth, at) if birth and at else -1
        return {"iso8601duration": f"P{years}Y"} if years >= 0 else None

    def as_ages(element: dict) -> dict | None:
        if "timestamp" in element:
            age = age_at(element["timestamp"])
            return {"age": age} if age else None
        interval = _dict(element.get("interval"))
        start, end = age_at(interval.get("start")), age_at(interval.get("end"))
        return {"ageRange": {"start": start, "end": end}} if start and end else None

    def visit(node: Any, path: str) -> None:
        items = list(node.items()) if isinstance(node, dict) else list(enumerate(node))
        for key, value in items:
            where = f"{path}/{key}"
            if key in TIME_ELEMENTS and isinstance(value, dict) and ("timestamp" in value or "interval" in value):
                ages = as_ages(value)
                if ages is not None:
                    node[key] = ages
                    converted.append(where)
                    continue
                del node[key]
                why = "it is before the birth date" if birth else "there is no birth date to make it an age"
                report.add(Issue.warning("minimised", f"{key}: a date, removed (data minimisation): {why}", where))
            elif isinstance(value, dict | list):
                visit(value, where)

    visit(packet, base)
    if converted:
        message = f"{len(converted)} date(s) of the person's life became their age at it (data minimisation)"
        report.add(Issue.info("minimised", message, converted[0]))


def prepare_packet(
    doc: dict, *, key: bytes, dataset_id: str, renamed: dict[str, str] | None = None
) -> tuple[dict | None, str, Report]:
    """Validate a submitted phenopacket and pseudonymise it; (packet, subject pseudonym, report).

    `renamed` receives every raw value replaced and its replacement (see `stored_issues`)."""
    report = Report()
    report.extend(validate_phenopacket(doc, target="input"))
    respelled = respell(doc, phenopackets.Phenopacket.DESCRIPTOR)  # what is stored is in the canonical spelling
    report.extend(hpo_findings(doc, "phenopacket", respelled=respelled))  # `gateway validate`'s rule: one verdict
    if not report.ok:
        return None, "", report
    packet = json.loads(json.dumps(respelled.document))  # our own copy: the caller's document stays untouched
    person = PersonIds(key, packet, renamed=renamed)
    notes = Report()
    pseudonymise_packet(packet, person, person.subject_id, notes, "")
    report.extend(_as_sent(notes, respelled))
    packet["id"] = person.rename(packet.get("id") or "", derived_id(key, "phenopacket", dataset_id, person.subject_id))
    return packet, person.subject_id, report


def _as_sent(report: Report, respelled: Respelled) -> list[Issue]:
    """Issues located in the canonical document, located in the document as sent."""
    if not respelled.changed:
        return list(report)
    return [Issue(i.severity, i.code, i.message, respelled.original_pointer(i.location), i.target) for i in report]


def prepare_family(
    doc: dict, *, key: bytes, dataset_id: str, renamed: dict[str, str] | None = None
) -> tuple[dict | None, dict | None, str, Report]:
    """Validate a submitted Family and pseudonymise it; (proband, family, subject pseudonym, report).

    The proband is stored as its phenopacket would be on its own (same identity: its document id),
    the Family around it with every person label replaced in the proband's scope.
    """
    report = Report()
    report.extend(validate_family(doc, target="input"))
    respelled = respell(doc, phenopackets.Family.DESCRIPTOR)
    report.extend(hpo_findings(doc, "family", respelled=respelled))
    if not report.ok:
        return None, None, "", report
    family = json.loads(json.dumps(respelled.document))
    notes = Report()  # located in the canonical document
    proband = family["proband"]  # required by the Family schema (validated above)
    members = [proband, *_dicts(family.get("relatives"))]
    person = PersonIds(key, proband, {i for member in members for i in _biosample_ids(member)}, renamed)
    used = Counter(i for member in members for i in _biosample_ids(member))
    person.shared_biosamples = frozenset(i for i, times in used.items() if times > 1)
    subject_id = person.subject_id
    pseudonymise_packet(proband, person, subject_id, notes, "/proband")
    proband["id"] = person.rename(proband.get("id") or "", derived_id(key, "phenopacket", dataset_id, subject_id))
    for n, relative in enumerate(_dicts(family.get("relatives"))):
        subject = _dict(relative.get("subject"))
        label = subject.get("id") or relative.get("id") or f"relative {n}"
        relative_id = person(label)
        pseudonymise_packet(relative, person.for_member(str(label)), relative_id, notes, f"/relatives/{n}")
        relative["id"] = derived_id(key, "relative-phenopacket", dataset_id, subject_id, relative_id)
    family["id"] = person.rename(family.get("id") or "", derived_id(key, "family", dataset_id, subject_id))
    pedigree = family.get("pedigree")
    for member in _dicts(pedigree.get("persons") if isinstance(pedigree, dict) else None):
        member["familyId"] = family["id"]
        for name in ("individualId", "paternalId", "maternalId"):
            if member.get(name) not in (None, "", PED_UNKNOWN):
                member[name] = person(member[name])
    for k, file in enumerate(_dicts(family.get("files"))):
        mapping = file.get("individualToFileIdentifiers")
        for named in sorted(set(mapping) & person.shared_biosamples if isinstance(mapping, dict) else ()):
            message = f"{named!r} is a biosample id of several members: this file key is read as the proband's"
            notes.add(Issue.warning("ambiguous-biosample", message, f"/files/{k}/individualToFileIdentifiers"))
    _pseudonymise_files(family, person)
    # The labels are gone: what is stored must still be a valid Family (links between people intact).
    notes.extend(validate_family(family, target="output"))
    report.extend(_as_sent(notes, respelled))
    if not report.ok:
        return None, None, "", report
    return proband, family, subject_id, report


def subject_label(key: bytes, doc: dict[str, Any]) -> str | None:
    """The keyed pseudonym of the label the sender gave the subject (a Family's: its proband's), or None when it
    gives none: what tells another person under a stored document id from an update (store migration 0015)."""
    holder = _dict(doc.get("proband")) if "proband" in doc else doc
    raw = _dict(holder.get("subject")).get("id")
    return pseudonymise(key, raw, "subject-label") if isinstance(raw, str) and raw else None


def stored_issues(report: Report, renamed: dict[str, str]) -> tuple[dict, ...]:
    """The issues kept with a stored document: a raw label the validator quoted (`'proband A'`) becomes
    what replaced it in the document, so the labels are gone from the row as from the document; a
    duplicate's note loses the locations (file names) it gave the sender."""
    if not report.issues:
        return ()
    by_repr = {repr(raw): new for raw, new in renamed.items() if raw}
    quoted = re.compile("|".join(re.escape(r) for r in sorted(by_repr, key=len, reverse=True))) if by_repr else None

    def redact(issue: Issue) -> str:
        if issue.code == "duplicate":
            return "another document of the same request had the same id: one of them was stored"
        return quoted.sub(lambda m: repr(by_repr[m.group(0)]), issue.message) if quoted else issue.message

    return tuple({**i.to_dict(), "message": redact(i)} for i in report)


def _pseudonymise_files(document: dict[str, Any], person: PersonIds) -> None:
    for file in _dicts(document.get("files")):
        mapping = file.get("individualToFileIdentifiers")
        if isinstance(mapping, dict):
            file["individualToFileIdentifiers"] = {person.subject_or_biosample(k): v for k, v in mapping.items()}


def _biosample_ids(packet: dict[str, Any]) -> set[str]:
    return {b["id"] for b in _dicts(packet.get("biosamples")) if isinstance(b.get("id"), str) and b["id"]}


def _dict(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _dicts(value: Any) -> list[dict[str, Any]]:
    return [v for v in value if isinstance(v, dict)] if isinstance(value, list) else []
