"""The FHIR and phenopacket ingest pipeline, shared by HTTP and CLI.

validate input → translate (pure) → validate output → store (one transaction).
Nothing here knows about Flask: the API and the CLI render the outcome.
"""

from __future__ import annotations

import hashlib
import json
import re
import tempfile
from collections import defaultdict
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import orjson

import mappings
from gateway.ids import check_dataset_id
from gateway.issues import Issue, Report
from gateway.security.pseudonym import id_functions
from gateway.services.people import prepare_family, prepare_packet, stored_issues, subject_label
from gateway.store.fhir_resources import lock_dataset
from gateway.store.metadata import UnknownDatasetError
from gateway.store.records import PhenopacketRecord, SaveResult
from gateway.validation.fhir import validate_fhir
from gateway.validation.phenopacket import detect_kind, validate_family, validate_phenopacket
from translators.fhir_to_phenopacket import as_bundle, translate_bundle

# Bundle types whose entries stand or fall together; a batch is judged patient by patient.
ATOMIC_BUNDLE_TYPES = {"transaction", "collection", "document", "message"}  # a message is processed whole
_ENTRY_POINTER = re.compile(r"^/entry/(\d+)(?:/|$)")


@dataclass
class PacketOutcome:
    subject_id: str
    phenopacket: dict
    entry_indexes: list[int]
    issues: list[Issue]
    saved: SaveResult | None = None
    family: dict | None = None  # the Phenopacket Family around it (FamilyMemberHistory), validated

    @property
    def ok(self) -> bool:
        return not any(i.is_error for i in self.issues)


@dataclass
class IngestOutcome:
    """What happened to one submitted document."""

    bundle_type: str
    profile: str
    report: Report  # every issue, input and output side
    packets: list[PacketOutcome] = field(default_factory=list)
    stored: bool = False
    entry_count: int = 0

    @property
    def rejected(self) -> bool:
        """Nothing was (or would be) stored because of errors."""
        return not self.report.ok and not any(p.saved for p in self.packets)

    def issues_by_entry(self) -> dict[int | None, list[Issue]]:
        """Input-side issues grouped by the bundle entry their pointer falls in (None: bundle level)."""
        grouped: dict[int | None, list[Issue]] = defaultdict(list)
        for issue in self.report:
            match = _ENTRY_POINTER.match(issue.location) if issue.target == "input" else None
            grouped[int(match.group(1)) if match else None].append(issue)
        return grouped


def entry_index(location: str) -> int | None:
    """The Bundle entry a JSON pointer falls in (None: outside every entry)."""
    found = _ENTRY_POINTER.match(location)
    return int(found.group(1)) if found else None


def source_identity(doc: dict) -> str:
    """Identity of a submitted document: its Bundle.identifier or id, else a digest of its content."""
    ident = doc.get("identifier")
    if isinstance(ident, dict) and ident.get("value"):
        return f"{doc.get('resourceType', 'Bundle')}/identifier/{ident.get('system', '')}|{ident['value']}"
    if doc.get("id"):
        return f"{doc.get('resourceType', 'Bundle')}/{doc['id']}"
    digest = hashlib.sha256(json.dumps(doc, sort_keys=True, separators=(",", ":")).encode()).hexdigest()
    return f"sha256:{digest}"


def _resolve_profile(doc: dict, requested: str | None) -> tuple[str, Issue | None]:
    name = requested if requested and requested != "auto" else mappings.detect_profile(doc)
    if name not in mappings.profile_names():
        return "generic", Issue.error(
            "profile-unknown", f"unknown profile {name!r}; known: {', '.join(mappings.profile_names())}"
        )
    return name, None


def process_fhir(
    doc: dict,
    *,
    key: bytes,
    dataset_id: str,
    profile: str | None = None,
    now: datetime | None = None,
    created_by: str = "genomic-gateway",
) -> IngestOutcome:
    """Validate and translate a FHIR document; store nothing (see `ingest_fhir`)."""
    check_dataset_id(dataset_id)  # the namespace of the ids made here; InvalidDatasetId before any work
    now = now or datetime.now(UTC)
    report = Report()
    report.extend(validate_fhir(doc))
    if doc.get("resourceType") != "Bundle" and report.ok:
        doc = as_bundle(doc)
    bundle_type = doc.get("type", "collection") if doc.get("resourceType") == "Bundle" else "collection"
    profile_name, profile_issue = _resolve_profile(doc, profile)
    if profile_issue:
        report.add(profile_issue)
    outcome = IngestOutcome(bundle_type, profile_name, report, entry_count=len(doc.get("entry") or ()))
    entry_errors = _entry_errors(report) if bundle_type == "batch" else None
    if not report.ok and not entry_errors:
        return outcome  # structurally broken input is never translated (a batch: see _entry_errors)

    translation = translate_bundle(
        _with_skeletons(doc, entry_errors) if entry_errors else doc,
        profile=mappings.load_profile(profile_name),
        ids=id_functions(key),
        now=now,
        namespace=dataset_id,
        created_by=created_by,
    )
    report.extend(translation.issues)
    for packet in translation.packets:
        checked = validate_phenopacket(packet.phenopacket, target="output")
        issues = [*packet.issues, *checked, *family_issues(packet.family)]
        report.extend(issues)
        own_errors = [e for i in packet.entry_indexes for e in (entry_errors or {}).get(i, ())]
        outcome.packets.append(
            PacketOutcome(
                packet.subject_id,
                packet.phenopacket,
                packet.entry_indexes,
                [*issues, *own_errors],
                family=packet.family,
            )
        )
    if not translation.packets:
        report.add(Issue.warning("no-patient", "the document holds no Patient, so no phenopacket was made"))
    return outcome


def family_issues(family: dict | None) -> list[Issue]:
    """The Family's own findings, validated like every output (its proband's are the phenopacket's).

    Located by JSON pointer into the Family; an error keeps the patient's phenopacket from being stored.
    """
    if family is None:
        return []
    return [
        Issue(i.severity, i.code, f"the Family: {i.message}", i.location, i.target)
        for i in validate_family(family, target="output")
        if not i.location.startswith("/proband")
    ]


def _with_skeletons(doc: dict, entry_errors: dict[int, list[Issue]]) -> dict:
    """The batch with each refused entry's resource cut to what the translator may read of any JSON: its type,
    id and patient link. The translator takes valid FHIR only; the skeleton still groups the entry with its
    patient, whose phenopacket is then refused with it (a refused Patient takes its resources along)."""
    entries = list(doc.get("entry") or ())
    for n in entry_errors:
        entry = entries[n] if n < len(entries) else None
        if isinstance(entry, dict):
            entries[n] = {**entry, "resource": _skeleton(entry.get("resource"))}
    return {**doc, "entry": entries}


def _skeleton(resource: Any) -> dict | None:
    if not isinstance(resource, dict) or not isinstance(resource.get("resourceType"), str):
        return None
    kept: dict[str, Any] = {"resourceType": resource["resourceType"]}
    if isinstance(resource.get("id"), str):
        kept["id"] = resource["id"]
    for link in ("subject", "patient"):
        value = resource.get(link)
        if isinstance(value, dict) and isinstance(value.get("reference"), str):
            kept[link] = {"reference": value["reference"]}
    return kept


def _entry_errors(report: Report) -> dict[int, list[Issue]] | None:
    """A batch is judged entry by entry: its errors by entry, or None when one lies outside every entry.

    Such a batch is still translated; a patient any of whose entries has an error is not stored,
    the other patients are (ingest_fhir).
    """
    grouped: dict[int, list[Issue]] = defaultdict(list)
    for issue in report.errors:
        match = _ENTRY_POINTER.match(issue.location) if issue.target == "input" else None
        if match is None:
            return None
        grouped[int(match.group(1))].append(issue)
    return grouped


def records_for(packets: list[PacketOutcome], dataset_id: str, source: str) -> list[PhenopacketRecord]:
    return [
        PhenopacketRecord(
            id=p.phenopacket["id"],
            dataset_id=dataset_id,
            subject_id=p.subject_id,
            document=p.phenopacket,
            source=source,
            issues=tuple(i.to_dict() for i in p.issues),
            family=p.family,
        )
        for p in packets
    ]


def process_fhir_bytes(
    data: bytes,
    *,
    max_depth: int,
    key: bytes,
    dataset_id: str,
    profile: str | None = None,
    parameters: bool = False,
) -> tuple[IngestOutcome, str]:
    """Parse, validate and translate a FHIR body; (outcome, source identity). Pure: run in a bounded child.

    `parameters` ($validate): a `Parameters` body is unwrapped to the resource it carries, and the
    input's issues are located under that resource's pointer in the body.
    """
    from gateway.jsonio import loads_strict

    doc = loads_strict(data, max_depth=max_depth)
    where = ""
    if parameters and isinstance(doc, dict) and doc.get("resourceType") == "Parameters":
        doc, where = unwrap_validate_parameters(doc)
    outcome = process_fhir(doc, key=key, dataset_id=dataset_id, profile=profile)
    if where:
        outcome.report = Report([i.at(where) if i.target == "input" else i for i in outcome.report])
    return outcome, source_identity(doc)


def unwrap_validate_parameters(parameters: dict) -> tuple[dict, str]:
    """The resource wrapped in a $validate Parameters (parameter `resource`) and its JSON pointer;
    `mode` and `profile` are optional there and do not change what this gateway checks."""
    from gateway.jsonio import JSONInputError

    listed = parameters.get("parameter")
    found = [
        (p.get("resource"), f"/parameter/{n}/resource")
        for n, p in enumerate(listed if isinstance(listed, list) else ())
        if isinstance(p, dict) and p.get("name") == "resource"
    ]
    resource = found[0][0] if len(found) == 1 else None
    if not isinstance(resource, dict):
        message = "a $validate Parameters must carry exactly one parameter 'resource' with the resource to validate"
        raise JSONInputError(Issue.error("not-fhir", message, "/parameter"))
    return resource, found[0][1]


def ingest_fhir(
    doc: dict,
    *,
    store,
    key: bytes,
    dataset_id: str,
    profile: str | None = None,
    now=None,
    also: Callable[[Any, IngestOutcome], None] | None = None,
) -> IngestOutcome:
    """Validate, translate and store: atomic bundles all or nothing, batches per patient (`also`: see
    `store_fhir_outcome`)."""
    outcome = process_fhir(doc, key=key, dataset_id=dataset_id, profile=profile, now=now)
    return store_fhir_outcome(outcome, store=store, dataset_id=dataset_id, source=source_identity(doc), also=also)


def store_fhir_outcome(
    outcome: IngestOutcome,
    *,
    store,
    dataset_id: str,
    source: str,
    also: Callable[[Any, IngestOutcome], None] | None = None,
) -> IngestOutcome:
    """Store what `process_fhir` made: atomic bundles all or nothing, batches per patient.

    `also(connection, outcome)` runs in the same transaction after the phenopackets are saved (the Bundle's
    resources kept for the REST surface): either both are stored or neither is."""
    if outcome.bundle_type in ATOMIC_BUNDLE_TYPES or not outcome.packets:
        if not outcome.report.ok:
            return outcome
        to_save = outcome.packets
    else:  # batch: errors outside every entry reject all; otherwise each patient stands alone
        if _entry_errors(outcome.report) is None and any(
            i.is_error for i in outcome.report if i not in _packet_issue_set(outcome)
        ):
            return outcome
        to_save = [p for p in outcome.packets if p.ok]
    if to_save and also is not None:
        records = records_for(to_save, dataset_id, source)

        def save_and_keep(connection) -> None:
            store.ensure_dataset_in(connection, dataset_id)
            lock_dataset(connection, dataset_id)  # first, as every resource write takes it: no lock-order deadlock
            for packet, result in zip(to_save, store.save_phenopackets_in(connection, records), strict=True):
                packet.saved = result
            outcome.stored = True
            also(connection, outcome)

        store.in_transaction(save_and_keep)
    elif to_save:
        results = _save_creating_dataset(store, dataset_id, records_for(to_save, dataset_id, source))
        for packet, result in zip(to_save, results, strict=True):
            packet.saved = result
        outcome.stored = True
    return outcome


def _save_creating_dataset(store, dataset_id: str, records: list[PhenopacketRecord]) -> list[SaveResult]:
    """Save; a dataset nobody declared yet is created on first use (the store refuses unknown ones).

    Trying first keeps the common case to one transaction instead of a look-up per request.
    """
    try:
        return store.save_phenopackets(records)
    except UnknownDatasetError:
        store.ensure_dataset(dataset_id)
        return store.save_phenopackets(records)


def _packet_issue_set(outcome: IngestOutcome) -> set[Issue]:
    return {i for p in outcome.packets for i in p.issues}


# --- phenopackets posted as they are (registries) --------------------------------------


def prepare_phenopacket(doc: dict, *, key: bytes, dataset_id: str) -> tuple[dict | None, str, Report]:
    """Validate a submitted phenopacket and pseudonymise it; (packet, subject pseudonym, report).

    The person's identity is the document's own `id`, not `subject.id`: published collections reuse
    labels such as "proband" or "Patient 2" for unrelated people, who must not collapse into one.
    Every person identifier inside the document becomes a pseudonym (gateway.services.people).
    """
    return prepare_packet(doc, key=key, dataset_id=dataset_id)


def _prepare(
    doc: dict, *, key: bytes, dataset_id: str, renamed: dict[str, str]
) -> tuple[dict | None, dict | None, str, Report]:
    """A phenopacket, or a Family (its proband stored as the phenopacket, the rest around it)."""
    if detect_kind(doc) == "family":
        return prepare_family(doc, key=key, dataset_id=dataset_id, renamed=renamed)
    packet, subject_id, report = prepare_packet(doc, key=key, dataset_id=dataset_id, renamed=renamed)
    return packet, None, subject_id, report


def phenopacket_documents(doc: Any) -> tuple[list[tuple[str, dict]], list[Issue]]:
    """The phenopackets (and Families) one submitted JSON value holds, each with its JSON pointer in it.

    One document (pointer ""), an array of them ("/n"), `{"phenopackets": [...]}` ("/phenopackets/n"), or a
    Phenopacket v2 Cohort, whose members are stored as phenopackets ("/members/n"): what a Cohort says
    beyond its members (its id, description, files) has no place in the store, which a warning says.
    Anything that is not such a document is an error with its pointer; (documents, issues).
    """
    if isinstance(doc, list):
        listed, base = doc, ""
    elif isinstance(doc, dict) and detect_kind(doc) == "cohort" and isinstance(doc.get("members"), list):
        listed, base = doc["members"], "/members"
    elif isinstance(doc, dict) and isinstance(doc.get("phenopackets"), list):
        listed, base = doc["phenopackets"], "/phenopackets"
    elif isinstance(doc, dict):
        return [("", doc)], []
    else:
        return [], [Issue.error("not-phenopacket", "expected a Phenopacket, a Family, a Cohort or an array of them")]
    found = [(f"{base}/{n}", d) for n, d in enumerate(listed) if isinstance(d, dict)]
    issues = [
        Issue.error("not-phenopacket", "expected a Phenopacket or a Family (a JSON object)", f"{base}/{n}")
        for n, d in enumerate(listed)
        if not isinstance(d, dict)
    ]
    if not listed:
        issues.append(Issue.error("not-phenopacket", "no phenopacket in it", base or "/"))
    if base == "/members":
        left = [name for name in ("id", "description", "files") if doc.get(name) not in (None, "", [], {})]
        if left:
            message = f"a Cohort's members are stored as phenopackets; its {', '.join(left)} are not kept"
            issues.append(Issue.warning("cohort-not-kept", message, f"/{left[0]}"))
    return found, issues


def ingest_phenopackets(
    docs: list[dict],
    *,
    store,
    key: bytes,
    dataset_id: str,
    locations: list[str] | None = None,
    skip_invalid: bool = False,
) -> tuple[list[SaveResult], list[Report]]:
    """Store phenopackets all or nothing (`ingest_phenopacket_stream` over documents in memory: POST
    /phenopackets): any invalid document rejects the whole request (`skip_invalid`: the documents whose report
    has no error are stored, the results are theirs, in order); (results, a report per document).

    The same document `id` twice in one request: as the same document, it is stored once and said so on
    both (a warning with the other's location: `locations`, else the document's position); with other
    content, it is an error on both (which of the two is that person is not for the gateway to guess).
    `store=None` only checks.
    """
    where = locations or [f"document {n}" for n in range(len(docs))]
    position = {location: n for n, location in enumerate(where)}
    if len(position) != len(docs):
        raise ValueError("each document needs a location of its own")
    reports = [Report() for _ in docs]

    def say(location: str, issues: list[Issue]) -> None:
        reports[position[location]].extend(issues)

    streamed = ingest_phenopacket_stream(
        zip(where, docs, strict=True), store=store, key=key, dataset_id=dataset_id, say=say, skip_invalid=skip_invalid
    )
    return [result for _, result, _ in streamed.stored], reports


@dataclass
class _Seen:
    """What a streamed ingest keeps of one document between its passes (the document itself is spooled)."""

    location: str
    subject_id: str | None  # None: nothing to store (not a phenopacket)
    digest: str  # of the phenopacket as sent (a Family's proband): the same one twice is stored once
    ok: bool
    relatives: int | None  # a Family's relatives; None: a phenopacket
    pointer: str  # where its id is
    named: Any  # its id as sent
    family_digest: str | None = None  # of a Family as sent
    stored_id: str | None = None  # the phenopacket id it is stored under
    label: str | None = None  # the pseudonym of its subject's label (people.subject_label)


@dataclass
class StreamedIngest:
    stored: list[tuple[str, SaveResult, int | None]]  # (location, result, a Family's relatives), in order
    refused: int  # documents with errors (not stored)
    checked: int  # documents read


def ingest_phenopacket_stream(
    documents: Iterable[tuple[str, dict]],
    *,
    store: Any,
    key: bytes,
    dataset_id: str,
    say: Callable[[str, list[Issue]], None],
    skip_invalid: bool = False,
    unreadable: Callable[[], bool] = lambda: False,
    batch: int = 500,
) -> StreamedIngest:
    """`ingest_phenopackets` for collections of any size (`gateway ingest phenopacket`): the same checks, the
    same all-or-nothing (`skip_invalid`: the valid ones), with memory bounded by `batch` documents, not by the
    collection. Pass one checks and pseudonymises each document as it is read, says its issues (`say`) and
    spools the prepared one to a temporary file; the repeated ids are said when all are seen; pass two stores
    the spooled documents in one transaction, `batch` at a time. `store=None` only checks. `unreadable()`,
    asked after pass one: whether a source could not be read (then, as for a refused document, nothing is
    stored unless `skip_invalid`)."""
    check_dataset_id(dataset_id)
    seen: list[_Seen] = []
    with tempfile.TemporaryFile() as spool:
        for location, doc in documents:
            renamed: dict[str, str] = {}
            packet, family, subject_id, report = _prepare(doc, key=key, dataset_id=dataset_id, renamed=renamed)
            is_family = "proband" in doc
            relatives = family.get("relatives") if family is not None else None
            seen.append(
                _Seen(
                    location,
                    subject_id if packet is not None else None,
                    _digest(doc["proband"] if is_family and isinstance(doc["proband"], dict) else doc),
                    report.ok,
                    (len(relatives) if isinstance(relatives, list) else 0) if is_family else None,
                    "/proband/id" if is_family else "/id",
                    (doc.get("proband") or {}).get("id") if is_family else doc.get("id"),
                    _digest(doc) if is_family else None,
                    packet["id"] if packet is not None else None,
                    subject_label(key, doc) if packet is not None else None,
                )
            )
            say(location, list(report))
            if packet is not None:
                kept = {"n": len(seen) - 1, "packet": packet, "family": family, "subject": subject_id}
                kept["label"] = seen[-1].label
                spool.write(_spooled({**kept, "issues": stored_issues(report, renamed)}) + b"\n")
        first_of = _say_duplicates(seen, say)
        if store is not None:
            _say_other_people(store, dataset_id, seen, say)
        refused = sum(not s.ok for s in seen)
        if store is None or not seen or ((refused or unreadable()) and not skip_invalid):
            return StreamedIngest([], refused, len(seen))
        _say_families_kept(store, seen, first_of, say)
        by_index = store.in_transaction(
            lambda connection: _store_spooled(store, connection, spool, seen, first_of, dataset_id, batch)
        )
    stored = [
        (s.location, by_index[first_of.get(n, n)], s.relatives)
        for n, s in enumerate(seen)
        if s.ok and first_of.get(n, n) in by_index
    ]
    return StreamedIngest(stored, refused, len(seen))


def _say_other_people(store: Any, dataset_id: str, seen: list[_Seen], say: Callable[[str, list[Issue]], None]) -> None:
    """A document whose id is stored in the dataset about another subject (the stored row's subject label differs)
    is an error: one id names one person, and taking it as an update would replace that person's record. Rows with
    no label (made from FHIR, or stored before migration 0015) are not compared."""
    asked = [s for s in seen if s.ok and s.subject_id is not None and s.label is not None]
    if not asked:
        return
    try:
        with store.engine.connect() as connection:
            stored = store.subject_labels_in(connection, dataset_id, [s.subject_id for s in asked])
    except UnknownDatasetError:
        return
    for s in asked:
        label = stored.get(s.subject_id)
        if label is not None and label != s.label:
            holder = "/proband" if s.pointer.startswith("/proband") else ""
            message = (
                f"phenopacket id {s.named!r} is stored in dataset {dataset_id!r} about another subject than this "
                "document's (its subject.id differs): one id names one person, and an update would replace that "
                "person's record. Erase the stored one first (gateway erase), or give this document an id of its own"
            )
            say(s.location, [Issue.error("another-person", message, f"{holder}/subject/id")])
            s.ok = False


def _say_families_kept(
    store: Any, seen: list[_Seen], first_of: dict[int, int], say: Callable[[str, list[Issue]], None]
) -> None:
    """A phenopacket sent alone replaces the one stored; the Family stored around it is another document (the
    phenopacket schema's Family) and stays, its proband now this one: said, so that a sender who meant to drop
    the relatives knows how (send the Family without them)."""
    alone = {
        s.stored_id: n
        for n, s in enumerate(seen)
        if s.ok and s.stored_id and s.family_digest is None and first_of.get(n, n) == n
    }
    if not alone:
        return
    for stored_id in sorted(store.with_family(list(alone))):
        message = (
            "the Family stored around this phenopacket is kept, with this document as its proband (send the Family "
            "to change its relatives or pedigree)"
        )
        note = Issue.info("family-kept", message, seen[alone[stored_id]].pointer)
        say(seen[alone[stored_id]].location, [note])


def _say_duplicates(seen: list[_Seen], say: Callable[[str, list[Issue]], None]) -> dict[int, int]:
    """One document id more than once, said on each with the others' locations: a warning when it is the same
    phenopacket every time (stored once; {a copy: the one stored}), else an error on each (one id cannot name
    two people). A phenopacket sent alone and as the proband of a Family (collections publish both) is the same
    one: the Family is what is stored, with it; two different Families around it are an error."""
    groups: dict[str, list[int]] = defaultdict(list)
    for n, s in enumerate(seen):
        if s.subject_id is not None:
            groups[s.subject_id].append(n)
    first_of: dict[int, int] = {}
    for indexes in groups.values():
        if len(indexes) < 2:
            continue
        families = [n for n in indexes if seen[n].family_digest is not None]
        same = len({seen[n].digest for n in indexes}) == 1 and len({seen[n].family_digest for n in families}) <= 1
        # stored: the Family (it holds the proband), a valid one first (--skip-invalid stores the valid ones)
        ranked = sorted(indexes, key=lambda n: (not seen[n].ok, seen[n].family_digest is None, n))
        kept = ranked[0]
        for n in indexes:
            others = [seen[m].location for m in indexes if m != n]
            listed = ", ".join(others[:5]) + (f" and {len(others) - 5} more" if len(others) > 5 else "")
            named = seen[n].named
            if same:
                message = f"phenopacket id {named!r} is also at {listed}, the same document: stored once"
                if families and n != kept:
                    message += f", with its Family ({seen[kept].location})"
                issue = Issue.warning("duplicate", message, seen[n].pointer)
                if n != kept:
                    first_of[n] = kept
            else:
                message = f"phenopacket id {named!r} is also at {listed} with other content: one id cannot name two documents (nothing is stored)"
                issue = Issue.error("duplicate", message, seen[n].pointer)
                seen[n].ok = False
            say(seen[n].location, [issue])
    return first_of


def _store_spooled(
    store: Any,
    connection: Any,
    spool: Any,
    seen: list[_Seen],
    first_of: dict[int, int],
    dataset_id: str,
    batch: int,
) -> dict[int, SaveResult]:
    store.ensure_dataset_in(connection, dataset_id)
    spool.seek(0)  # from the start on every attempt (a deadlock retry runs this again)
    saved: dict[int, SaveResult] = {}
    pending: list[tuple[int, PhenopacketRecord]] = []

    def flush() -> None:
        results = store.save_phenopackets_in(connection, [r for _, r in pending], dataset_checked=True)
        saved.update((n, result) for (n, _), result in zip(pending, results, strict=True))
        pending.clear()

    copies = set(first_of.values())
    for line in spool:
        item = orjson.loads(line)
        n = item["n"]
        if not seen[n].ok or n in first_of:
            continue
        issues = tuple(item["issues"]) + (_STORED_ONCE if n in copies else ())
        packet, family = item["packet"], item["family"]
        source = f"{'Family' if family else 'Phenopacket'}/{packet['id']}"
        record = PhenopacketRecord(
            id=packet["id"],
            dataset_id=dataset_id,
            subject_id=item["subject"],
            document=packet,
            source=source,
            issues=issues,
            family=family,
            keep_family=family is None,  # a phenopacket sent alone: the Family stored around it is another document
            subject_label=item.get("label"),
        )
        pending.append((n, record))
        if len(pending) >= batch:
            flush()
    if pending:
        flush()
    return saved


# the note a stored document keeps of its copies in the request (their locations are the sender's, not the row's)
_STORED_ONCE = stored_issues(Report([Issue.warning("duplicate", "copies", "/id")]), {})


def _digest(doc: dict) -> str:
    try:
        text = orjson.dumps(doc, option=orjson.OPT_SORT_KEYS)
    except TypeError:  # integers past 64 bits
        text = json.dumps(doc, sort_keys=True).encode()
    return hashlib.sha256(text).hexdigest()


def _spooled(item: dict) -> bytes:
    try:
        return orjson.dumps(item)
    except TypeError:
        return json.dumps(item, separators=(",", ":")).encode()
