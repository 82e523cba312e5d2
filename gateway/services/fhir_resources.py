"""FHIR resources one at a time: create, update, delete, read, pending (the FHIR REST surface).

The resources a hospital sends are kept as received (gateway.store.fhir_resources) and are the
source of truth: on every change, a patient's current resources are assembled into one
collection Bundle and sent through the same pipeline as a posted Bundle (validate → translate →
validate the phenopacket → store), replacing that patient's phenopacket in the same transaction.
So an update replaces a resource's contribution, a delete removes it, the same resource twice
changes nothing, and the order of arrival does not matter: a resource whose Patient is not
known yet is kept *pending* and applied when the Patient arrives.

A patient is scoped to its dataset. A resource names its patient by `subject` or `patient`; the
reference is resolved against the dataset's stored Patients with the Bundle's own rules
(translators.fhir.references.BundleIndex: `Patient/{id}`, a fullUrl sent earlier, or
`Patient?identifier=system|value`).
"""

from __future__ import annotations

import hashlib
import json
import re
import uuid
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from functools import partial
from typing import Any, TypeVar
from urllib.parse import parse_qsl

import sqlalchemy as sa

import mappings
from gateway.errors import BadInput, GatewayError, Gone, NotFound
from gateway.ids import check_dataset_id
from gateway.issues import Issue, Report
from gateway.security.pseudonym import PSEUDONYM, derived_id, id_functions, pseudonymise
from gateway.services.fhir_incremental import (
    Assembly,
    Fragment,
    FragmentCache,
    Load,
    facts_of,
    key_fingerprint,
    loose_keys,
    merged_phenopacket,
    parts_of,
    url_tail,
)
from gateway.services.fhir_same_resource import references_renamed, same_resources
from gateway.services.fhir_same_resource import renamed as same_renamed
from gateway.services.ingest import IngestOutcome, entry_index
from gateway.store import fhir_resources as rows
from gateway.store.fhir_resources import PATIENT, Prefetched, ResourceHead, ResourceState, StoredResource
from gateway.store.index_rows import ReadAhead
from gateway.store.metadata import MetadataStore, UnknownDatasetError
from gateway.store.records import PhenopacketRecord
from gateway.validation.fhir import r4_resource_types, validate_fhir
from gateway.validation.phenopacket import validate_phenopacket
from translators.fhir.assemble import DATING_TYPES
from translators.fhir.common import IdFunctions, reference_of
from translators.fhir.patient import EVENT_DATE_ELEMENTS, PATIENT_ANIMAL
from translators.fhir.references import MESSAGE_HEADER_NOTE, RELATIVE_REF, BundleIndex, with_identified_patient_links
from translators.fhir.tokens import Token, parse_token
from translators.fhir_to_phenopacket import BundleTranslation, translate_bundle, translated_resource_types

# The links by which a resource names the patient it is about (the translator reads the same two).
PATIENT_LINKS = ("subject", "patient")
# What is kept of a Patient (data minimisation): what the translator reads — its identifiers, sex, birth and
# death (with their primitive extensions), the patient-animal extension — and what FHIR needs to read it back
# (id, meta, modifier extensions, whose meaning a reader must not miss). Names, contacts, addresses, narrative,
# contained resources, other extensions (birth place, mother's maiden name, nationality…), marital status,
# languages, practitioners, links to other records: dropped before it is kept.
KEPT_PATIENT_ELEMENTS = frozenset(
    {"resourceType", "id", "meta", "implicitRules", "language", "modifierExtension", "identifier", "active"}
    | {"gender", "_gender", "birthDate", "_birthDate", "deceasedBoolean", "deceasedDateTime"}
    | {"_deceasedBoolean", "_deceasedDateTime", "extension"}
)
# What is kept of an Encounter, Immunization or AllergyIntolerance: who it is about and when (it dates the
# patient's last encounter; nothing else of it reaches a phenopacket), and what R4 requires of it so that it
# reads back as valid FHIR (Encounter.class, Immunization.vaccineCode). `identifier`: conditional writes find it.
DATE_TRACE_ELEMENTS = frozenset(
    {"resourceType", "id", "meta", "identifier", "status", "class", "vaccineCode", *PATIENT_LINKS}
    | set(EVENT_DATE_ELEMENTS)
)
PATIENT_LINK_POINTER = re.compile(r"/entry/(\d+)/resource/(subject|patient)/reference")
DEFAULT_PENDING_DAYS = 30.0  # Config.fhir_pending_days
FHIR_ID = re.compile(r"[A-Za-z0-9\-.]{1,64}")  # FHIR R4 datatypes.html#id
MAX_REFERENCE_KEY = 1024  # a longer reference names no kept resource (a fullUrl is at most this long)
T = TypeVar("T")


class ResourceRejected(GatewayError):
    """The resource, or the phenopacket it would change, is not valid: nothing was stored."""

    status = 422
    code = "processing"


class VersionConflict(GatewayError):
    """If-Match named another version than the stored one (FHIR http.html#concurrency): nothing changed."""

    status = 412
    code = "conflict"


class AmbiguousReference(GatewayError):
    """A conditional patient reference matches several stored Patients (FHIR http.html#trules: the
    interaction fails with 412): nothing changed."""

    status = 412
    code = "multiple-matches"


@dataclass
class ResourceChange:
    """What one interaction did to one resource."""

    resource_type: str
    resource_id: str
    version: int
    status: str  # created | updated | unchanged | deleted | absent | exists (If-None-Exist matched)
    pending: bool = False
    phenopacket_id: str | None = None
    issues: list[Issue] = field(default_factory=list)
    patient_id: str | None = None  # the stored Patient it was attached to when written
    entry: int | None = None  # the Bundle entry it was sent in (keep_bundle), for that entry's response

    @property
    def location(self) -> str:
        return f"{self.resource_type}/{self.resource_id}/_history/{self.version}"


@dataclass(frozen=True)
class ResourceWrite:
    """One create/update/delete asked for (a REST call or one transaction entry)."""

    resource_type: str
    resource_id: str | None  # None: create, the gateway names it
    resource: dict[str, Any] | None  # None: delete
    full_url: str | None = None
    if_match: int | None = None  # the version the client read (If-Match / entry.request.ifMatch)
    if_none_exist: str | None = None  # a POST entry's request.ifNoneExist (conditional create)
    # a conditional update or delete (`Type?identifier=token`): the one kept resource it matches is the one written
    conditional: str | None = None


# Kept although no phenopacket element comes from them: an IPS Composition's type (and any meta.profile)
# selects the profile its patient's resources are read with (mappings.detect_profile).
PROFILE_TYPES = frozenset({"Composition"})


def supported_types() -> list[str]:
    """The resource types kept: those the translator maps, and those that choose its profile
    (others would be stored for nothing)."""
    return sorted({*translated_resource_types(), *PROFILE_TYPES})


def check_type(resource_type: str) -> None:
    """404 for a type not kept here (FHIR http.html: an unsupported type is Not Found)."""
    if resource_type in supported_types():
        return
    if resource_type not in r4_resource_types():
        raise NotFound(f"{resource_type!r} is not a FHIR R4 resource type", code="not-found")
    raise NotFound(
        f"resource type {resource_type} is not kept here (no phenopacket element comes from it); "
        f"supported: {', '.join(supported_types())}",
        code="unknown-resource-type",
    )


def check_id(resource_id: str) -> None:
    if not FHIR_ID.fullmatch(resource_id):
        raise BadInput(f"{resource_id[:80]!r} is not a FHIR id (1-64 of A-Z a-z 0-9 - .)", code="fhir-value")


def check_resource(resource: Any, resource_type: str, resource_id: str | None) -> list[Issue]:
    """Structural checks of one resource on its own (references are resolved later, against the store)."""
    if resource_id is not None:
        check_id(resource_id)
    if not isinstance(resource, dict) or resource.get("resourceType") != resource_type:
        found = resource.get("resourceType") if isinstance(resource, dict) else type(resource).__name__
        raise BadInput(f"the body must be a {resource_type} resource, not {found!r}", code="not-fhir")
    if resource_id is not None and resource.get("id") not in (None, resource_id):
        raise BadInput(f"the resource's id {resource.get('id')!r} differs from the URL's id {resource_id!r}")
    report = validate_fhir(resource)
    if not report.ok:
        raise ResourceRejected(f"the {resource_type} is not valid FHIR R4", issues=report.errors + report.warnings)
    return report.warnings


def read_resource(store: MetadataStore, dataset_id: str, resource_type: str, resource_id: str) -> StoredResource:
    check_dataset_id(dataset_id)
    check_type(resource_type)
    with store.engine.connect() as connection:
        found = rows.get(connection, dataset_id, resource_type, resource_id)
        gone = None if found is not None else rows.deleted_version(connection, dataset_id, resource_type, resource_id)
    if gone is not None:  # FHIR http.html#read: a deleted resource is 410 Gone, not 404
        raise Gone(f"{resource_type}/{resource_id} was deleted (its last version was {gone})", code="deleted")
    if found is None:
        raise NotFound(f"{resource_type}/{resource_id} is not stored in dataset {dataset_id!r}")
    return found


def search_by_patient(
    store: MetadataStore, dataset_id: str, resource_type: str, patient: str, key: bytes
) -> list[StoredResource]:
    """`GET /fhir/{type}?patient=` / `?subject=`: the type's resources about that stored Patient
    (`Patient/{id}`, a bare id, or `Patient?identifier=system|value`); none when it is not stored."""
    check_dataset_id(dataset_id)
    check_type(resource_type)
    reference = patient if "/" in patient or "?" in patient else f"{PATIENT}/{patient}"
    with store.engine.connect() as connection:
        patient_id = _resolve_patient(connection, dataset_id, stored_reference(connection, dataset_id, reference, key))
        if patient_id is None:
            return []
        return [r for r in rows.of_patient(connection, dataset_id, patient_id) if r.resource_type == resource_type]


def search_by_identifier(
    store: MetadataStore, dataset_id: str, resource_type: str, search: str, key: bytes
) -> list[StoredResource]:
    """`GET /fhir/{type}?identifier=token` (`search`: `conditional_search`'s): the kept resources of the type it
    matches, Patients by the pseudonyms of their identifiers."""
    check_dataset_id(dataset_id)
    check_type(resource_type)
    with store.engine.connect() as connection:
        return _matching(connection, dataset_id, resource_type, search, key)


def pending_resources(store: MetadataStore, dataset_id: str | None = None) -> list[StoredResource]:
    if dataset_id is not None:
        check_dataset_id(dataset_id)
    with store.engine.connect() as connection:
        return rows.pending(connection, dataset_id)


def apply_writes(
    writes: list[ResourceWrite],
    *,
    store: MetadataStore,
    key: bytes,
    dataset_id: str,
    profile: str | None = None,
    now: datetime | None = None,
    rebuild: bool = True,
    pending_days: float = DEFAULT_PENDING_DAYS,
    cache: FragmentCache | None = None,
    connection: sa.Connection | None = None,
    rebuild_patients: frozenset[str] = frozenset(),
) -> list[ResourceChange]:
    """Apply writes in one transaction, all or nothing; rebuild every patient they touch.
    `connection`: the caller's transaction to join (a Bundle's phenopackets saved in it just before).

    `cache`: the application's FragmentCache (Services.fhir_fragments), so that a write translates
    only what it changed; without one, each rebuild translates all the patient's resources.

    Pending resources of the dataset older than `pending_days` (0: never) are dropped first, in
    the same transaction, and said so on the first change (the request is audited as a change).

    Raises ResourceRejected (422) when a rebuilt patient's phenopacket would not be valid.
    `rebuild=False`: the writes are a Bundle whose phenopackets were just made from it: a patient is
    rebuilt only when it has kept resources beyond these writes (sent earlier, resource by resource), or
    is one of `rebuild_patients` (some of the Bundle's resources were taken as kept ones, under other ids).
    """
    check_dataset_id(dataset_id)
    now = now or datetime.now(UTC)
    for write in writes:
        check_type(write.resource_type)
    arguments = (writes, store, key, dataset_id, profile, now, rebuild, pending_days, cache, rebuild_patients)
    if connection is not None:
        return _apply_writes_in(connection, *arguments)
    return _in_dataset_transaction(store, dataset_id, lambda own: _apply_writes_in(own, *arguments))


def _in_dataset_transaction(store: MetadataStore, dataset_id: str, work: Callable[[sa.Connection], T]) -> T:
    """`work` in one transaction; a dataset nobody declared yet is created on first use, and `work` run again."""
    try:
        return store.in_transaction(work)
    except UnknownDatasetError:
        store.ensure_dataset(dataset_id)
        return store.in_transaction(work)


def create_resource(
    write: ResourceWrite,
    *,
    store: MetadataStore,
    key: bytes,
    dataset_id: str,
    profile: str | None = None,
    pending_days: float = DEFAULT_PENDING_DAYS,
    cache: FragmentCache | None = None,
    if_none_exist: str | None = None,
) -> ResourceChange:
    """`POST /fhir/{type}`: a create, in one transaction, with two answers that create nothing.

    - `If-None-Exist: identifier=token` (FHIR http.html#ccreate, the one search supported): a kept resource of
      the type matching it is the answer (status `exists`, nothing written), several are 412, none: created.
    - A resource whose id is not kept, with the content of a kept resource of its stored patient (the rule of
      a document made again, gateway.services.fhir_same_resource: but for id, meta, narrative, references by
      what they name), is that resource, written under the kept id (`same-resource`): hospitals send the same
      resource again by POST with an id made afresh, and two copies would cite one fact twice.
    """
    check_dataset_id(dataset_id)
    check_type(write.resource_type)
    search = _identifier_search(write.resource_type, if_none_exist) if if_none_exist is not None else None

    def create(connection: sa.Connection) -> ResourceChange:
        rows.lock_dataset(connection, dataset_id)  # what is looked for is not created meanwhile
        if search is not None:
            found = _matching(connection, dataset_id, write.resource_type, search, key)
            if len(found) > 1:
                named = " and ".join(f"{write.resource_type}/{f.resource_id}" for f in found[:2])
                message = f"If-None-Exist {if_none_exist!r} matches more than one kept resource ({named})"
                raise AmbiguousReference(message, issues=[Issue.error("multiple-matches", message)])
            if found:
                return ResourceChange(
                    write.resource_type,
                    found[0].resource_id,
                    found[0].version,
                    "exists",
                    patient_id=found[0].patient_id,
                )
        kept_as, sent_id = _as_kept_resource(connection, dataset_id, write, key)
        (change,) = apply_writes(
            [kept_as],
            store=store,
            key=key,
            dataset_id=dataset_id,
            profile=profile,
            pending_days=pending_days,
            cache=cache,
            connection=connection,
        )
        if kept_as is not write:
            name = f"{write.resource_type}/{sent_id or '(no id)'}"
            change.issues.append(
                Issue.info(
                    "same-resource",
                    f"{name} has the content of the kept {change.resource_type}/{change.resource_id} of the same "
                    f"patient: the same resource, kept as {change.resource_type}/{change.resource_id}; nothing "
                    "was created",
                )
            )
        return change

    return _in_dataset_transaction(store, dataset_id, create)


def _identifier_search(resource_type: str, query: str, asked_by: str = "If-None-Exist") -> str:
    """The conditional reference a conditional request's query names (`identifier=token`); BadInput for another
    (a list or one Identifier, R4 Composition's, is indexed alike: store migration 0016)."""
    params = parse_qsl(query.strip().lstrip("?"), keep_blank_values=True)
    if len(params) != 1 or params[0][0] != "identifier" or parse_token(params[0][1]) is None:
        raise BadInput(
            f"{asked_by} supports one search, identifier=token (system|value, value, |value, system|), "
            f"not {query[:80]!r}",
            code="not-supported",
        )
    return f"{resource_type}?identifier={params[0][1]}"


def conditional_search(resource_type: str, query: str) -> str:
    """The search of a conditional update or delete (`PUT`/`DELETE {type}?identifier=token`, FHIR
    http.html#cond-update, #cdelete): `Type?identifier=token`; BadInput (400) for another search."""
    return _identifier_search(resource_type, query, "a conditional update or delete")


def _resolved(
    connection: sa.Connection, dataset_id: str, write: ResourceWrite, key: bytes
) -> ResourceWrite | ResourceChange:
    """A conditional update or delete as the write of the one kept resource its search matches, in the writing
    transaction (the dataset is locked: what is matched cannot change meanwhile). FHIR http.html#cond-update: no
    match creates (under the body's id, else one the gateway names), one match is updated (a body naming another
    id is the client's mistake: 400), several are 412; #cdelete: no match deletes nothing (the change `absent`)."""
    assert write.conditional is not None
    found = _matching(connection, dataset_id, write.resource_type, write.conditional, key)
    if len(found) > 1:
        named = " and ".join(f"{write.resource_type}/{f.resource_id}" for f in found[:2])
        message = f"{write.conditional!r} matches more than one kept resource ({named}): name one"
        raise AmbiguousReference(message, issues=[Issue.error("multiple-matches", message)])
    plain = replace(write, conditional=None)
    if not found:
        if write.resource is None:
            return ResourceChange(write.resource_type, "", 0, "absent")
        return plain
    match = found[0].resource_id
    sent_id = (write.resource or {}).get("id")
    if sent_id not in (None, match):
        message = (
            f"the resource's id {sent_id!r} is not that of the kept {write.resource_type}/{match} the search matches"
        )
        raise BadInput(message, issues=[Issue.error("invalid", message)])
    resource = None if write.resource is None else {**write.resource, "id": match}
    return replace(plain, resource_id=match, resource=resource)


def _matching(
    connection: sa.Connection, dataset_id: str, resource_type: str, search: str, key: bytes
) -> list[StoredResource]:
    """The kept resources of a type an identifier search matches (a Patient's identifiers by their pseudonyms):
    those the identifier index names, matched as a Bundle's entries are (BundleIndex: one rule for both)."""
    if resource_type == PATIENT:
        search = stored_reference(connection, dataset_id, search, key)
    candidates = _identified(connection, dataset_id, search)
    matched = BundleIndex.build([_entry(c) for c in candidates]).conditional_matches(search)
    return [candidates[n] for n in matched]


def _identified(connection: sa.Connection, dataset_id: str, search: str) -> list[StoredResource]:
    """The kept resources the identifier index names for `Type?identifier=token` (at rest; none: not a token)."""
    resource_type, _, query = search.partition("?")
    params = parse_qsl(query)
    token = parse_token(params[0][1]) if len(params) == 1 and params[0][0] == "identifier" else None
    if token is None:
        return []
    return rows.identified(connection, dataset_id, resource_type, token.system, token.value)


def _as_kept_resource(
    connection: sa.Connection, dataset_id: str, write: ResourceWrite, key: bytes
) -> tuple[ResourceWrite, str | None]:
    """The write under the id of the kept resource of its stored patient with the same content (itself when
    none; a Patient, or an id already kept, is always itself), and the id it was sent with."""
    sent_id = write.resource_id or (write.resource or {}).get("id")
    if write.resource is None or write.resource_type == PATIENT:
        return write, sent_id
    if sent_id and rows.get(connection, dataset_id, write.resource_type, sent_id) is not None:
        return write, sent_id  # an update of that resource
    kept_form = at_rest(_any_system_matched(connection, dataset_id, write.resource, key), key)
    reference = patient_reference(kept_form)
    patient_id = _resolve_patient(connection, dataset_id, reference) if reference else None
    heads = rows.heads_of_patient(connection, dataset_id, patient_id) if patient_id else []
    if not any(h.resource_type == write.resource_type for h in heads):  # nothing it could be: no content read
        return write, sent_id
    kept = assemble(connection, dataset_id, patient_id) if patient_id else None
    if not kept:
        return write, sent_id
    # the kept Patient is sent too, so that the resource's reference to it names the same resource in both
    patient = ResourceWrite(PATIENT, kept[0].resource_id, kept[0].resource, kept[0].full_url)
    sent = ResourceWrite(write.resource_type, sent_id or "sent", kept_form, write.full_url)
    adopted = same_resources([patient, sent], kept, partial(at_rest, key=key))
    if not adopted:
        return write, sent_id
    kept_id = adopted[0].kept_id
    return replace(write, resource_id=kept_id, resource={**write.resource, "id": kept_id}, full_url=None), sent_id


def _apply_writes_in(
    connection: sa.Connection,
    writes: list[ResourceWrite],
    store: MetadataStore,
    key: bytes,
    dataset_id: str,
    profile: str | None,
    now: datetime,
    rebuild: bool,
    pending_days: float,
    cache: FragmentCache | None,
    rebuild_patients: frozenset[str] = frozenset(),
) -> list[ResourceChange]:
    lone = None if any(w.conditional for w in writes) else _lone_put(writes)
    if lone is None:
        exists, oldest_pending = rows.lock_and_read_dataset(connection, dataset_id)
        prefetched = None
    else:  # a lone write's own row and Patient come with the dataset where one round trip can read them
        exists, oldest_pending, prefetched = rows.read_dataset_and_states(connection, dataset_id, *lone)
    if not exists:
        raise UnknownDatasetError([dataset_id])
    expired = _expire_pending(connection, dataset_id, now, pending_days, oldest_pending)
    asked = [w if w.conditional is None else _resolved(connection, dataset_id, w, key) for w in writes]
    writes = [w for w in asked if isinstance(w, ResourceWrite)]
    changes: list[ResourceChange] = []
    touched: dict[str, str | None] = {}  # patient id -> subject pseudonym of its phenopacket before
    known = _Known.read_ahead(connection, dataset_id, writes)
    if prefetched is not None and not expired:  # (what expired was deleted since)
        known.prefetched = prefetched
    for write in writes:
        if write.resource is None:
            change = _delete(connection, dataset_id, write, touched, known)
        else:
            change = _put(connection, dataset_id, write, now, key, touched, known)
        changes.append(change)
    written = {(w.resource_type, c.resource_id) for w, c in zip(writes, changes, strict=True)}
    if not rebuild:  # a Bundle's phenopackets replaced what kept resources made: unchanged ones count too
        for change in changes:
            owner = _patient_of(connection, dataset_id, change, known)
            if owner is not None:
                _touch(connection, dataset_id, owner, touched, known)
    built = {
        patient_id: _rebuild(
            connection,
            store,
            key,
            dataset_id,
            patient_id,
            old_subject,
            profile,
            now,
            cache,
            known.written,
            known.digests,
        )
        for patient_id, old_subject in sorted(touched.items())
        if rebuild or patient_id in rebuild_patients or _grown(connection, dataset_id, patient_id, written)
    }
    for change in changes:
        patient_id = _patient_of(connection, dataset_id, change, known)
        change.phenopacket_id = built.get(patient_id) if patient_id else None
    made = iter(changes)  # with the change of each conditional delete that matched nothing, in its place
    changes = [next(made) if isinstance(w, ResourceWrite) else w for w in asked]
    if expired and changes:
        changes[0].issues.append(_expired_issue(expired, pending_days))
    return changes


def _lone_put(writes: list[ResourceWrite]) -> tuple[str, str, str | None] | None:
    """(type, id, the Patient id a `Patient/{id}` reference names) of a lone write that keeps a resource."""
    resource = writes[0].resource if len(writes) == 1 else None
    if resource is None:
        return None
    write = writes[0]
    resource_id = write.resource_id or resource.get("id") or _id_from_full_url(write.full_url)
    reference = None if write.resource_type == PATIENT else patient_reference(resource)
    relative = RELATIVE_REF.fullmatch(reference) if reference else None  # at rest the same (at_rest)
    return write.resource_type, resource_id, relative.group(2) if relative and relative.group(1) == PATIENT else None


def _expire_pending(
    connection: sa.Connection, dataset_id: str, now: datetime, days: float, oldest: datetime | None
) -> list[StoredResource]:
    """Drop the dataset's pending resources that waited longer than `days` for their Patient
    (`oldest`: when the oldest pending one last changed; none that old, nothing is read)."""
    if days <= 0 or oldest is None or oldest > now - timedelta(days=days):
        return []
    expired = rows.pending_before(connection, dataset_id, now - timedelta(days=days))
    rows.delete_all(connection, expired)
    return expired


def _expired_issue(expired: list[StoredResource], days: float) -> Issue:
    named = ", ".join(f"{r.resource_type}/{r.resource_id}" for r in expired[:10])
    more = f" and {len(expired) - 10} more" if len(expired) > 10 else ""
    return Issue.warning(
        "expired",
        f"{len(expired)} pending resource(s) waited more than {days:g} days for their Patient and were dropped: "
        f"{named}{more}",
    )


def purge_pending(
    store: MetadataStore,
    dataset_id: str | None = None,
    *,
    older_than_days: float = 0.0,
    now: datetime | None = None,
) -> list[StoredResource]:
    """The operator's purge: drop pending resources (of one dataset, or all) older than the given days."""
    if dataset_id is not None:
        check_dataset_id(dataset_id)
    before = (now or datetime.now(UTC)) - timedelta(days=max(older_than_days, 0.0))
    with store.transaction() as connection:
        datasets = [dataset_id] if dataset_id else sorted({r.dataset_id for r in rows.pending(connection)})
        purged: list[StoredResource] = []
        for dataset in datasets:
            rows.lock_dataset(connection, dataset)
            found = rows.pending_before(connection, dataset, before)
            rows.delete_all(connection, found)
            purged += found
        return purged


@dataclass
class _Known:
    """What one transaction has read or written already: the rows its writes name (read at once), the
    Patients references resolved to and their subjects (cleared when a Patient changes), and the
    content it wrote (assembling a patient then reads only the others' content)."""

    rows: dict[tuple[str, str], ResourceState | None]  # None: read, and not stored
    patients: dict[str, str] = field(default_factory=dict)
    subjects: dict[str, str | None] = field(default_factory=dict)  # Patient id -> its row's subject_id
    written: dict[int, dict[str, Any]] = field(default_factory=dict)  # pk -> content kept by this transaction
    digests: dict[int, str] = field(default_factory=dict)  # pk -> the content hash of what it kept
    patient_written: bool = False  # a Patient was written or deleted: pending resources may have moved
    prefetched: Prefetched | None = None  # a lone write's state_and_patient, read with the dataset

    @classmethod
    def read_ahead(cls, connection: sa.Connection, dataset_id: str, writes: list[ResourceWrite]) -> _Known:
        if len(writes) < 2:
            return cls({})
        named = {(w.resource_type, w.resource_id or (w.resource or {}).get("id") or "") for w in writes}
        named |= {(w.resource_type, _id_from_full_url(w.full_url)) for w in writes if w.full_url}
        stored = rows.get_many(connection, dataset_id, named)
        return cls({name: stored.get(name) for name in named})

    def existing(
        self,
        connection: sa.Connection,
        dataset_id: str,
        resource_type: str,
        resource_id: str,
        reference: str | None = None,
    ) -> ResourceState | None:
        """The stored state of a resource. With a `Patient/{id}` reference not resolved yet, that Patient's
        row is read in the same round trip (a single write: two reads become one)."""
        name = (resource_type, resource_id)
        if name in self.rows:  # read ahead; used once: a later write of the same resource reads again
            return self.rows.pop(name)
        relative = RELATIVE_REF.fullmatch(reference) if reference and reference not in self.patients else None
        asked = relative.group(2) if relative and relative.group(1) == PATIENT else None
        ahead, self.prefetched = self.prefetched, None  # used once
        if ahead is not None and (ahead.resource_type, ahead.resource_id, ahead.patient_id) == (*name, asked):
            own, patient = ahead.own, ahead.patient
        else:
            own, patient = rows.state_and_patient(connection, dataset_id, resource_type, resource_id, asked)
        if patient is not None and reference is not None:
            self.patients[reference] = patient.resource_id
            self.subjects[patient.resource_id] = patient.subject_id
        return own

    def patient(self, connection: sa.Connection, dataset_id: str, reference: str) -> str | None:
        if reference not in self.patients:
            found = _resolve_patient(connection, dataset_id, reference)
            if found is None:
                return None
            self.patients[reference] = found
        return self.patients[reference]

    def patient_changed(self) -> None:
        self.patients.clear()
        self.subjects.clear()
        self.patient_written = True


def _put(
    connection: sa.Connection,
    dataset_id: str,
    write: ResourceWrite,
    now: datetime,
    key: bytes,
    touched: dict[str, str | None],
    known: _Known,
) -> ResourceChange:
    assert write.resource is not None
    resource_id = write.resource_id or write.resource.get("id") or _id_from_full_url(write.full_url)
    sent = with_identified_patient_links({**write.resource, "id": resource_id})
    resource = at_rest(_any_system_matched(connection, dataset_id, sent, key), key)
    patient_ref = None if write.resource_type == PATIENT else patient_reference(resource)
    existing = known.existing(connection, dataset_id, write.resource_type, resource_id, patient_ref)
    _check_version(write, existing)
    digest = rows.content_hash(resource)
    same_url = write.full_url is None or write.full_url == existing.full_url if existing else False
    if existing is not None and existing.content_hash == digest and same_url:
        unchanged = ResourceChange(write.resource_type, resource_id, existing.version, "unchanged", existing.pending)
        unchanged.patient_id = existing.patient_id
        return unchanged

    if write.resource_type == PATIENT:
        patient_id: str | None = resource_id
        known.subjects[resource_id] = existing.subject_id if existing else None  # its subject before this write
    elif patient_ref is None:
        patient_id = None
    else:
        patient_id = known.patient(connection, dataset_id, patient_ref)
    subject_id = _subject_of(resource, key, dataset_id) if write.resource_type == PATIENT else None
    if subject_id is not None:
        _refuse_second_patient_id(connection, dataset_id, resource_id, subject_id)
    for old in (existing.patient_id if existing else None, patient_id):
        if old is not None:
            _touch(connection, dataset_id, old, touched, known)
    full_url = write.full_url or (existing.full_url if existing else None)
    pk, version = rows.put(
        connection,
        dataset_id=dataset_id,
        resource_type=write.resource_type,
        resource_id=resource_id,
        resource=resource,
        content_hash=digest,
        full_url=full_url,
        full_url_tail=url_tail(full_url),
        reference_keys=reference_keys(resource),
        patient_ref=patient_ref,
        patient_id=patient_id,
        subject_id=subject_id,
        existing=existing,
        now=now,
    )
    known.written[pk] = resource
    known.digests[pk] = digest
    if write.resource_type == PATIENT:
        known.patient_changed()
        _adopt_pending(connection, dataset_id, resource_id, _systemless_matches(write.resource, key))
    elif patient_ref is None:  # about no patient: the patients whose resources point to it change
        urls = {full_url, existing.full_url if existing else None}  # a reference by the fullUrl it had too
        for referrer in _referrers(connection, dataset_id, write.resource_type, resource_id, urls):
            _touch(connection, dataset_id, referrer, touched, known)
    change = ResourceChange(write.resource_type, resource_id, version, "created" if existing is None else "updated")
    change.patient_id = patient_id
    if write.resource_type == PATIENT and _id_is_a_record_number(write.resource, resource_id):
        change.issues.append(ID_IS_RECORD_NUMBER)
    if patient_ref is not None and patient_id is None:
        change.pending = True
        change.issues.append(
            Issue.warning(
                "pending",
                f"the patient {patient_ref!r} is not stored in dataset {dataset_id!r} yet: the "
                f"{write.resource_type} is kept and applied when that Patient arrives",
                "/" + _link_of(resource) + "/reference",
            )
        )
    return change


# Resource ids are the sender's and kept as sent (a client reads and updates by them): a Patient whose id is its
# record number carries that number into every row and reference. Said, so that the sender can choose opaque ids.
ID_IS_RECORD_NUMBER = Issue.warning(
    "id-is-identifier",
    "the Patient's id is one of its identifier values (a record number): ids are kept as sent, so the number is "
    "stored in clear in every resource that references the Patient — give Patients opaque ids (FHIR ids carry no "
    "meaning); its identifiers are kept as pseudonyms",
    "/id",
)


def _id_is_a_record_number(patient: dict[str, Any], resource_id: str) -> bool:
    values = {i.get("value") for i in patient.get("identifier") or () if isinstance(i, dict)}
    return resource_id in values


def _any_system_matched(
    connection: sa.Connection, dataset_id: str, resource: dict[str, Any], key: bytes
) -> dict[str, Any]:
    """`resource` with a patient reference by an identifier token without system kept as the identifier it
    matches (`stored_reference`); any other resource as it is (no read)."""
    for link in PATIENT_LINKS:
        target = resource.get(link)
        reference = reference_of(target)
        if reference is None:
            continue
        token = _patient_token(reference)
        if isinstance(target, dict) and token is not None and token.system is None:
            return {**resource, link: {**target, "reference": stored_reference(connection, dataset_id, reference, key)}}
        return resource
    return resource


def _refuse_second_patient_id(connection: sa.Connection, dataset_id: str, resource_id: str, subject_id: str) -> None:
    """A person is one Patient per dataset: its identity is the profile's patient identifier (pseudonymised),
    and a second Patient id with the same one is refused, never joined. Joining would merge two records
    whose sex, birth and death may disagree, and a delete of either could not say whose data goes; FHIR
    states that two records are one person explicitly (Patient.link, $merge), not by a repeated identifier."""
    others = [p for p in rows.patient_ids_of_subject(connection, dataset_id, subject_id) if p != resource_id]
    if not others:
        return
    message = (
        f"Patient/{resource_id} has the patient identifier of Patient/{others[0]}, stored in dataset "
        f"{dataset_id!r}: one person, two Patient ids. Nothing was stored (the stored phenopacket is unchanged): "
        f"send it as Patient/{others[0]}, or delete Patient/{others[0]} first"
    )
    raise ResourceRejected(message, issues=[Issue.error("duplicate", message, "/identifier")])


def _delete(
    connection: sa.Connection,
    dataset_id: str,
    write: ResourceWrite,
    touched: dict[str, str | None],
    known: _Known,
) -> ResourceChange:
    assert write.resource_id is not None
    existing = known.existing(connection, dataset_id, write.resource_type, write.resource_id)
    if write.resource_type == PATIENT:
        known.patient_changed()
    _check_version(write, existing)
    if existing is None:  # FHIR: deleting what is not there succeeds and changes nothing
        return ResourceChange(write.resource_type, write.resource_id, 0, "absent")
    if existing.patient_id is not None:
        _touch(connection, dataset_id, existing.patient_id, touched, known)
    if existing.patient_ref is None and existing.resource_type != PATIENT:
        urls = {existing.full_url}
        for referrer in _referrers(connection, dataset_id, existing.resource_type, existing.resource_id, urls):
            _touch(connection, dataset_id, referrer, touched, known)
    # the tombstone names the person it was about (an erasure of them removes it)
    subject = existing.subject_id if existing.resource_type == PATIENT else touched.get(existing.patient_id or "")
    rows.delete(connection, existing, subject, datetime.now(UTC))
    known.written.pop(existing.pk, None)
    if existing.resource_type == PATIENT:  # its resources wait for a Patient again
        orphans = [r.pk for r in rows.of_patient(connection, dataset_id, existing.resource_id)]
        rows.attach(connection, orphans, None)
    return ResourceChange(write.resource_type, write.resource_id, existing.version, "deleted")


def _check_version(write: ResourceWrite, existing: ResourceState | None) -> None:
    if write.if_match is None or (existing is not None and existing.version == write.if_match):
        return
    stored = f"version {existing.version}" if existing else "no version (it is not stored)"
    raise VersionConflict(
        f"{write.resource_type}/{write.resource_id or '?'}: If-Match names version {write.if_match}, "
        f"the stored one is {stored}; read it again and retry",
        issues=[Issue.error("conflict", f"If-Match version {write.if_match} is not the stored {stored}")],
    )


def parse_if_match(value: str | None) -> int | None:
    """The version of an If-Match ETag (`W/"3"`, `"3"`); BadInput for anything else."""
    if value is None:
        return None
    tag = value.strip().removeprefix("W/").strip('"')
    if not tag.isdigit() or len(tag) > 9:
        raise BadInput(f'If-Match must be a version ETag such as W/"3", not {value[:40]!r}', code="fhir-value")
    return int(tag)


def _touch(connection: sa.Connection, dataset_id: str, patient_id: str, touched: dict, known: _Known) -> None:
    """Mark a patient for rebuilding, remembering its phenopacket's subject as it is now (kept on its
    row: read with the row when this transaction read it already)."""
    if patient_id in touched:
        return
    if patient_id in known.subjects:
        touched[patient_id] = known.subjects[patient_id]
    else:
        touched[patient_id] = rows.subject_of_patient(connection, dataset_id, patient_id)


def at_rest(resource: dict[str, Any], key: bytes) -> dict[str, Any]:
    """The form a resource is kept in: no hospital identifier in clear (data minimisation).

    No resource keeps its narrative, nor a patient link its `display` (the patient's name). A Patient keeps
    only what a phenopacket needs (KEPT_PATIENT_ELEMENTS) and its identifier values
    become their keyed pseudonyms, the same ones a Bundle's subject is named by; a conditional
    patient reference (`Patient?identifier=system|value`) names the pseudonym too. So the rows hold
    no record number, and a patient sent as a Bundle and one sent resource by resource meet by the
    pseudonym of the profile's identifier (translate with `at_rest_ids`).
    """
    kept = dict(resource)
    # the narrative is generated HTML that repeats the patient's name and record number; nothing reads it
    kept.pop("text", None)
    if kept.get("resourceType") in DATING_TYPES:  # only its date counts: the rest is not kept (data minimisation)
        kept = {k: v for k, v in kept.items() if k in DATE_TRACE_ELEMENTS}
    if kept.get("resourceType") == PATIENT:
        kept = {k: v for k, v in kept.items() if k in KEPT_PATIENT_ELEMENTS}
        if isinstance(kept.get("extension"), list):
            kept["extension"] = [e for e in kept["extension"] if _read_patient_extension(e)]
            if not kept["extension"]:
                del kept["extension"]
        if isinstance(kept.get("identifier"), list):
            kept["identifier"] = [_pseudonymous_identifier(i, key) for i in kept["identifier"]]
    for link in PATIENT_LINKS:
        if isinstance(kept.get(link), dict):
            kept[link] = _patient_link_at_rest(kept[link], key)
    return kept


def _patient_link_at_rest(link: dict[str, Any], key: bytes) -> dict[str, Any]:
    """A patient link as kept: without its `display` (the patient's name, as the sender shows it), a conditional
    reference's and a logical reference's identifier value as their pseudonyms."""
    kept = {k: v for k, v in link.items() if k != "display"}
    reference = reference_of(kept)
    if reference is not None:
        kept["reference"] = pseudonymous_reference(reference, key)
    if isinstance(kept.get("identifier"), dict):
        kept["identifier"] = _pseudonymous_identifier(kept["identifier"], key)
    return kept


def _read_patient_extension(extension: Any) -> bool:
    """A Patient extension the translator reads (the animal one: a species is not a human's phenopacket)."""
    url = extension.get("url") if isinstance(extension, dict) else None
    return isinstance(url, str) and url.split("|", 1)[0] == PATIENT_ANIMAL


def rekey_identifiers(
    store: MetadataStore, key: bytes, *, batch: int = 500, progress: Callable[[int, int], None] | None = None
) -> int:
    """Restate the kept resources `at_rest` (`gateway fhir rekey-identifiers`): rows kept before identifiers
    were pseudonymised at rest hold them in clear until their next update. Idempotent (a pseudonym is not
    pseudonymised again); the phenopackets do not change (they were always made from the pseudonyms).
    A data migration cannot do it: the key is the gateway's, not the database's. Returns the rows changed."""

    def form(resource: dict[str, Any], patient_ref: str | None) -> tuple[dict[str, Any], str | None]:
        return at_rest(resource, key), pseudonymous_reference(patient_ref, key) if patient_ref else None

    return restate_resources(store, form, batch=batch, progress=progress)


def restate_resources(
    store: MetadataStore,
    form: Callable[[dict[str, Any], str | None], tuple[dict[str, Any], str | None]],
    *,
    batch: int = 500,
    progress: Callable[[int, int], None] | None = None,
) -> int:
    """Rewrite every kept resource into `form`, `batch` rows per transaction (a table of millions is never one
    transaction holding its locks and its undo for hours); the rows changed. A failure leaves the batches before
    it done; running again finishes the work, since a row already in `form` is not written again and a row
    changed meanwhile by a client is left alone (compare-and-set on its content hash). `progress(rows changed,
    last pk)` after each batch."""
    changed, last = 0, 0
    while True:
        done, reached = store.in_transaction(partial(rows.restate_batch, form=form, after=last, batch=batch))
        if reached is None:
            return changed
        changed, last = changed + done, reached
        if progress is not None:
            progress(changed, last)


def _pseudonymous_identifier(identifier: Any, key: bytes) -> Any:
    if not isinstance(identifier, dict) or not isinstance(identifier.get("value"), str) or not identifier["value"]:
        return identifier
    value, system = identifier["value"], identifier.get("system")
    if PSEUDONYM.fullmatch(value):
        return identifier
    return {**identifier, "value": pseudonymise(key, value, system if isinstance(system, str) else None)}


def _patient_token(reference: str) -> Token | None:
    """The identifier token of a conditional patient reference `Patient?identifier=…` (None: not one)."""
    resource_type, mark, query = reference.partition("?")
    params = parse_qsl(query) if mark else []
    if resource_type != PATIENT or len(params) != 1 or params[0][0] != "identifier":
        return None
    return parse_token(params[0][1])


def pseudonymous_reference(reference: str, key: bytes) -> str:
    """`Patient?identifier=token` with the value's pseudonym (in its system; a token without system: the
    pseudonym of the value alone, as an identifier without system has); any other reference unchanged."""
    token = _patient_token(reference)
    if token is None or token.value is None or PSEUDONYM.fullmatch(token.value):
        return reference
    value = pseudonymise(key, token.value, token.system or None)
    return f"{PATIENT}?identifier={Token(token.system, value).written()}"


def stored_reference(connection: sa.Connection, dataset_id: str, reference: str, key: bytes) -> str:
    """The at-rest form of a patient reference. A token without system names its value in any system
    (search.html#token), but a stored Patient's identifiers are pseudonymised within their system: it is
    matched here, with the value in clear, against each system the dataset's Patients use, and kept as the
    identifier it matched (FHIR http.html#trules replaces a conditional reference by its match; by identifier,
    a Patient sent again under another id is found again). Matching none, it keeps the pseudonym of the value
    alone, which a Patient identifier without system matches when it arrives. Two Patients: AmbiguousReference."""
    token = _patient_token(reference)
    if token is None or token.system is not None or token.value is None or PSEUDONYM.fullmatch(token.value):
        return pseudonymous_reference(reference, key)
    found: dict[str, str] = {}  # patient id -> the reference that matched it
    for system in rows.identifier_systems(connection, dataset_id, PATIENT):
        candidate = f"{PATIENT}?identifier={Token(system, pseudonymise(key, token.value, system or None)).written()}"
        patients = _identified(connection, dataset_id, candidate)
        for position in BundleIndex.build([_entry(p) for p in patients]).conditional_matches(candidate):
            found.setdefault(patients[position].resource_id, candidate)
    if len(found) > 1:
        _ambiguous(reference, sorted(found))
    return next(iter(found.values()), pseudonymous_reference(reference, key))


def at_rest_ids(key: bytes) -> IdFunctions:
    """The translator's ids for resources kept `at_rest`: an identifier value that is a pseudonym
    already is the subject; anything else is pseudonymised as on the Bundle path."""

    def subject(value: str, system: str | None = None) -> str:
        return value if PSEUDONYM.fullmatch(value) else pseudonymise(key, value, system)

    return IdFunctions(subject=subject, derived=id_functions(key).derived)


def _id_from_full_url(full_url: str | None) -> str:
    """A resource sent without an id is named by its fullUrl (the same entry twice is the same
    resource): a urn:uuid's uuid, else a digest of the URL; with neither, a fresh id."""
    if full_url:
        tail = full_url.rsplit(":", 1)[-1].rsplit("/", 1)[-1]
        return tail if FHIR_ID.fullmatch(tail) else hashlib.sha256(full_url.encode()).hexdigest()[:32]
    return uuid.uuid4().hex


def _subject_of(patient: dict[str, Any], key: bytes, dataset_id: str) -> str | None:
    """The subject pseudonym the translator gives this Patient (it changes with its identifiers).

    The Patient was validated on arrival: only its translation is run (no second parse)."""
    translation = _translate([patient], key, dataset_id, None, datetime.now(UTC))
    return translation.packets[0].subject_id if translation.packets else None


def _translate(
    resources: Sequence[dict[str, Any]] | Sequence[StoredResource],
    key: bytes,
    dataset_id: str,
    profile: str | None,
    now: datetime,
) -> BundleTranslation:
    """Translate resources that were each validated when they arrived (never parsed again here)."""
    entries = [
        _entry(r) if isinstance(r, StoredResource) else r if "resource" in r else {"resource": r} for r in resources
    ]
    bundle = {"resourceType": "Bundle", "type": "collection", "entry": _linked_to_patient(entries)}
    name = profile if profile and profile != "auto" else mappings.detect_profile(bundle)
    if name not in mappings.profile_names():
        raise ResourceRejected(f"unknown profile {name!r}; known: {', '.join(mappings.profile_names())}")
    return translate_bundle(
        bundle, profile=mappings.load_profile(name), ids=at_rest_ids(key), now=now, namespace=dataset_id
    )


def _linked_to_patient(entries: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """A patient's kept resources (its Patient first) with each patient link that no longer names that Patient
    naming it as `Patient/{id}`. The store attached each resource to its Patient when it was written; a link by a
    `urn:uuid` names an entry of the message it came in, and the Patient sent again since (a conditional update, a
    document made afresh) has another fullUrl, so the link alone would leave the resource out of the phenopacket.
    FHIR http.html#trules gives a resolved urn reference the server's `Type/id` in the same way."""
    patient = entries[0].get("resource") if entries else None
    if len(entries) < 2 or not isinstance(patient, dict) or patient.get("resourceType") != PATIENT:
        return entries
    index = BundleIndex.build(entries[:1])
    linked = entries[:1]
    for entry in entries[1:]:
        resource = entry["resource"]
        link = next((name for name in PATIENT_LINKS if reference_of(resource.get(name))), None)
        reference = reference_of(resource.get(link)) if link else None
        if link is None or reference is None or index.resolve(reference) is not None:
            linked.append(entry)  # no patient link (a Medication), or one that names the Patient
            continue
        relinked = {**resource[link], "reference": f"{PATIENT}/{patient['id']}"}
        linked.append({**entry, "resource": {**resource, link: relinked}})
    return linked


def _rebuild(
    connection: sa.Connection,
    store: MetadataStore,
    key: bytes,
    dataset_id: str,
    patient_id: str,
    old_subject: str | None,
    profile: str | None,
    now: datetime,
    cache: FragmentCache | None,
    written: dict[int, dict[str, Any]] | None = None,
    digests: dict[int, str] | None = None,
) -> str | None:
    """Replace the patient's phenopacket by the one its current resources make; its id (None: none left).

    With a cache, only the parts the write changed are translated (gateway.services.fhir_incremental);
    `written`: content this transaction kept, by primary key (not read back), `digests` its content hashes."""
    record, read_ahead = None, None
    if cache is not None:
        record, read_ahead = _incremental_record(
            connection, cache, key, dataset_id, patient_id, old_subject, profile, now, written, digests
        )
    if record is None:
        resources = assemble(connection, dataset_id, patient_id)
        if resources is None:  # the Patient was deleted: so is its phenopacket
            if old_subject is not None:
                store.delete_phenopackets_in(connection, old_subject, dataset_id)
            return None
        record = make_phenopacket(resources, key=key, dataset_id=dataset_id, profile=profile, now=now)
    if old_subject is not None and old_subject != record.subject_id:  # the Patient's identifier changed
        store.delete_phenopackets_in(connection, old_subject, dataset_id)
        read_ahead = None  # the rows of the phenopacket just deleted
    # _apply_writes_in checked the dataset
    store.save_phenopackets_in(connection, [record], dataset_checked=True, read_ahead=read_ahead)
    return record.id


def _grown(connection: sa.Connection, dataset_id: str, patient_id: str, written: set[tuple[str, str]]) -> bool:
    """Whether a patient has kept resources besides `written` (then a Bundle's phenopacket misses them)."""
    heads = rows.heads_of_patient(connection, dataset_id, patient_id)
    return any((h.resource_type, h.resource_id) not in written for h in heads)


def make_phenopacket(
    resources: list[StoredResource], *, key: bytes, dataset_id: str, profile: str | None, now: datetime
) -> PhenopacketRecord:
    """The phenopacket of a Patient (first) and its resources, checked; ResourceRejected when not valid."""
    translation = _translate(resources, key, dataset_id, profile, now)
    phenopacket, subject_id, issues = _checked(translation, resources)
    # FamilyMemberHistory makes a Family: stored with the phenopacket, replaced with it
    family = next((p.family for p in translation.packets if p.entry_indexes and p.entry_indexes[0] == 0), None)
    return _record(phenopacket, subject_id, issues, resources, key, dataset_id, family=family)


def _checked(translation: BundleTranslation, owners: Sequence[Any]) -> tuple[dict[str, Any], str, list[Issue]]:
    """The Patient's (entry 0) phenopacket, validated, with every issue located at `Type/id` of `owners`."""
    packets = [p for p in translation.packets if p.entry_indexes and p.entry_indexes[0] == 0]
    checked = validate_phenopacket(packets[0].phenopacket, target="output") if len(packets) == 1 else Report()
    found = [*translation.issues, *(packets[0].issues if packets else ()), *checked]
    issues = [_relocate(i, owners) for i in found]
    if len(packets) != 1 or any(i.is_error for i in issues):
        errors = [i for i in issues if i.is_error] or [Issue.error("processing", "no phenopacket could be made")]
        patient = owners[0].resource_id
        raise ResourceRejected(f"Patient/{patient}'s phenopacket would not be valid; nothing was stored", issues=errors)
    return packets[0].phenopacket, packets[0].subject_id, issues


def _record(
    phenopacket: dict[str, Any],
    subject_id: str,
    issues: list[Issue],
    resources: Sequence[Any],
    key: bytes,
    dataset_id: str,
    names: dict[tuple[str, str, str], str] | None = None,
    family: dict[str, Any] | None = None,
) -> PhenopacketRecord:
    document = _with_provenance(phenopacket, resources, key, dataset_id, names)
    return PhenopacketRecord(
        id=document["id"],
        dataset_id=dataset_id,
        subject_id=subject_id,
        document=document,
        source=f"fhir-rest:{len(resources)} resources",
        issues=tuple(i.to_dict() for i in issues if not i.is_error),
        family=family,
    )


def _incremental_record(
    connection: sa.Connection,
    cache: FragmentCache,
    key: bytes,
    dataset_id: str,
    patient_id: str,
    subject_id: str | None,
    profile: str | None,
    now: datetime,
    written: dict[int, dict[str, Any]] | None = None,
    digests: dict[int, str] | None = None,
) -> tuple[PhenopacketRecord | None, ReadAhead | None]:
    """The phenopacket from cached parts (fhir_incremental) — None: translate everything at once —, and the
    index rows of the patient's phenopacket now (of `subject_id`), for its write to diff against.

    The same assembly as fhir_incremental.assemble_parts, with the patient's heads read in one round trip with
    the Patient's content, those index rows and the patient-less heads its references may name — guessed: those
    its last assembly looked up (FragmentCache.references) and those of the content this transaction wrote; a
    reference outside the guess costs a second read. Other content is read only for what `written` (this
    transaction's) does not hold."""
    remembered = cache.get(cache.references, (dataset_id, patient_id)) or frozenset()
    written, digests = written or {}, digests or {}
    # the written content's facts, kept under its hash: the assembly finds them there (worked out once)
    guessed = set(remembered).union(
        *(facts_of(content, digests[pk], cache).reaches for pk, content in written.items() if pk in digests)
    )
    attached, prefetched, held, read_ahead = rows.assembly_heads(
        connection, dataset_id, patient_id, subject_id, loose_keys(guessed)
    )
    patient = [h for h in attached if h.resource_type == PATIENT]
    if not patient:
        return None, read_ahead
    members = [h for h in attached if h.resource_type != PATIENT]

    def reach(references: list[str]) -> list[ResourceHead]:
        unguessed = [r for r in references if r not in guessed]
        return [*prefetched, *(rows.loose_heads(connection, dataset_id, loose_keys(unguessed)) if unguessed else ())]

    load = partial(_contents, connection, {**held, **(written or {})})
    assembly = parts_of(patient[0], members, reach, load, cache)
    if assembly.looked_up != remembered:
        cache.put(cache.references, (dataset_id, patient_id), assembly.looked_up)
    return incremental_record(assembly, load, cache, key, dataset_id, profile, now), read_ahead


def _contents(connection: sa.Connection, held: dict[int, dict[str, Any]], pks: list[int]) -> dict[int, dict]:
    """Kept content by primary key: what is held in memory already, the rest in one read."""
    found = {pk: held[pk] for pk in pks if pk in held}
    missing = [pk for pk in pks if pk not in found]
    return {**found, **rows.contents(connection, missing)} if missing else found


def incremental_record(
    assembly: Assembly,
    load: Load,
    cache: FragmentCache,
    key: bytes,
    dataset_id: str,
    profile: str | None,
    now: datetime,
) -> PhenopacketRecord | None:
    """The record of an assembled patient from its parts' fragments (and the Family its
    FamilyMemberHistory makes, rebuilt around the merged phenopacket); None: translate all at once."""
    name = profile if profile and profile != "auto" else assembly.profile

    def translate(heads: list[ResourceHead], contents: dict[int, dict[str, Any]]) -> Fragment:
        entries = [_entry_of(contents[h.pk], h.full_url) for h in heads]
        translation = _translate(entries, key, dataset_id, name, now)
        phenopacket, _, issues = _checked(translation, heads)
        packet = next(p for p in translation.packets if p.entry_indexes and p.entry_indexes[0] == 0)
        names = [(h.resource_type, h.resource_id) for h in heads]  # entry index -> (type, id)
        return Fragment(
            phenopacket,
            tuple(issues),
            family=packet.family,
            named_versions=packet.named_versions,
            diseases_from=tuple(tuple(names[e] for e in made) for made in packet.disease_entries),
            versions_from=tuple((prefix, (phase, *names[e])) for prefix, phase, e in packet.version_places),
            features_from=tuple(None if p is None else (p[0], *names[p[1]]) for p in packet.feature_places),
        )

    scope = (key_fingerprint(key), dataset_id, name, now.date())
    made = merged_phenopacket(assembly, translate, load, cache=cache, scope=scope, now=now)
    if made is None:
        return None
    phenopacket, issues, family = made
    names = cache.provenance.setdefault(key_fingerprint(key), {})
    return _record(
        phenopacket, phenopacket["subject"]["id"], issues, assembly.heads, key, dataset_id, names, family=family
    )


def assemble(connection: sa.Connection, dataset_id: str, patient_id: str) -> list[StoredResource] | None:
    """The Patient first, then its resources and the patient-less ones they reach, in (type, id) order.

    A fixed order (not arrival order) so that the same resources always make the same phenopacket.
    None when the Patient itself is not stored.
    """
    attached = rows.patient_rows(connection, dataset_id, patient_id)
    patient = [r for r in attached if r.resource_type == PATIENT]
    if not patient:
        return None
    others = [r for r in attached if r.resource_type != PATIENT]
    # The patient-less resources its references reach, read by the keys those references may name (never
    # the dataset's whole unattached set) and resolved among them as fhir_incremental.parts_of does.
    asked: set[str] = set()
    candidates: dict[int, StoredResource] = {}
    reached: set[int] = set()
    frontier = others
    while frontier:
        references = {ref for r in frontier for ref in _references(r.resource)}
        if new := references - asked:
            asked |= new
            candidates.update((r.pk, r) for r in rows.loose_rows(connection, dataset_id, loose_keys(new)))
        loose = sorted(candidates.values(), key=lambda r: (r.resource_type, r.resource_id))
        index = BundleIndex.build([_entry(r) for r in loose])
        found = {
            loose[i].pk
            for r in frontier
            for ref in _references(r.resource)
            if (i := index.resolve(ref)) is not None and loose[i].pk not in reached
        }
        reached |= found
        frontier = [candidates[pk] for pk in sorted(found)]
    members = [*others, *(candidates[pk] for pk in reached)]
    return [patient[0], *sorted(members, key=lambda r: (r.resource_type, r.resource_id))]


def _entry(resource: StoredResource) -> dict[str, Any]:
    return _entry_of(resource.resource, resource.full_url)


def _entry_of(resource: dict[str, Any], full_url: str | None) -> dict[str, Any]:
    entry: dict[str, Any] = {"resource": resource}
    if full_url:
        entry["fullUrl"] = full_url
    return entry


def _references(node: Any) -> Iterable[str]:
    if isinstance(node, dict):
        for name, value in node.items():
            if name == "reference" and isinstance(value, str):
                yield value
            else:
                yield from _references(value)
    elif isinstance(node, list):
        for value in node:
            yield from _references(value)


def _relocate(issue: Issue, resources: Sequence[Any]) -> Issue:
    """An issue of the assembled Bundle, located at `Type/id` plus the pointer inside that resource."""
    if issue.target != "input" or not issue.location.startswith("/entry/"):
        return issue
    _, _, position, *rest = issue.location.split("/")
    if not position.isdigit() or int(position) >= len(resources):
        return issue
    owner = resources[int(position)]
    inside = "/" + "/".join(rest[1:]) if rest[:1] == ["resource"] else ""
    location = f"{owner.resource_type}/{owner.resource_id}{inside}"
    return Issue(issue.severity, issue.code, issue.message, location, "stored")


def _with_provenance(
    phenopacket: dict[str, Any],
    resources: Sequence[Any],
    key: bytes,
    dataset_id: str,
    names: dict[tuple[str, str, str], str] | None = None,
) -> dict[str, Any]:
    """metaData.externalReferences: one per contributing resource, by keyed id (the hospital's ids
    may carry a record number) and version; the operator maps them back with GET /fhir/{type}/{id}.
    `names`: keyed ids computed before (FragmentCache.provenance), so a write computes only new ones."""
    names = {} if names is None else names
    references = []
    for r in resources:
        name = (dataset_id, r.resource_type, r.resource_id)
        if name not in names:
            names[name] = provenance_id(key, *name)
        references.append({"id": names[name], "description": f"FHIR {r.resource_type}, version {r.version}"})
    meta = dict(phenopacket.get("metaData") or {})
    meta["externalReferences"] = [*(meta.get("externalReferences") or []), *references]
    return {**phenopacket, "metaData": meta}


def provenance_id(key: bytes, dataset_id: str, resource_type: str, resource_id: str) -> str:
    """The keyed id a resource has in its phenopacket's metaData.externalReferences (kind fhir_resource:
    a derived id may carry no hyphen in its kind, or a key rotation could not carry it forward)."""
    return derived_id(key, "fhir_resource", dataset_id, f"{resource_type}/{resource_id}")


def patient_reference(resource: dict[str, Any]) -> str | None:
    for link in PATIENT_LINKS:
        reference = reference_of(resource.get(link))
        if reference is not None:
            return reference
    return None


def _link_of(resource: dict[str, Any]) -> str:
    return next((link for link in PATIENT_LINKS if reference_of(resource.get(link))), PATIENT_LINKS[0])


def _resolve_patient(connection: sa.Connection, dataset_id: str, reference: str) -> str | None:
    """The stored Patient a reference names, by the Bundle's resolution rules; None: not (yet) stored.

    Look-ups by column for `Patient/{id}` (its id, or the tail of an absolute fullUrl) and a fullUrl
    sent before; a conditional reference through the identifier index."""
    relative = RELATIVE_REF.fullmatch(reference)
    if relative and relative.group(1) == PATIENT:
        found = rows.get(connection, dataset_id, PATIENT, relative.group(2))
        if found is not None:
            return found.resource_id
        return rows.patient_by_full_url(connection, dataset_id, f"{PATIENT}/{relative.group(2)}", tail=True)
    if "?" not in reference:  # an absolute URL or urn: the fullUrl a Patient was sent with
        versionless = reference.split("/_history/", 1)[0]
        return rows.patient_by_full_url(connection, dataset_id, versionless)
    patients = _identified(connection, dataset_id, reference)
    matched = BundleIndex.build([_entry(p) for p in patients]).conditional_matches(reference)
    ids = sorted({patients[n].resource_id for n in matched if patients[n].resource_type == PATIENT})
    if len(ids) > 1:  # taking the first would put one person's data in another's phenopacket
        _ambiguous(reference, ids)
    return ids[0] if ids else None


def _ambiguous(reference: str, patient_ids: list[str]) -> None:
    both = " and ".join(f"Patient/{p}" for p in patient_ids[:2])
    message = f"{reference!r} matches more than one stored Patient ({both}); name one by Patient/{{id}}"
    raise AmbiguousReference(message, issues=[Issue.error("multiple-matches", message)])


def _adopt_pending(connection: sa.Connection, dataset_id: str, patient_id: str, systemless: dict[str, str]) -> None:
    """Attach the pending resources that name this (new or changed) Patient. A pending reference by a value
    without system (`Patient?identifier=value`: any system) holds the pseudonym of the value alone, which the
    kept identifiers (pseudonymised within their system) cannot match: `systemless` maps it to the reference of
    the identifier it names (`_systemless_matches`), which it is kept as from now on (as `stored_reference`
    keeps one whose Patient was stored already)."""
    patient = rows.get(connection, dataset_id, PATIENT, patient_id)
    assert patient is not None
    index = BundleIndex.build([_entry(patient)])
    adopted = []
    for waiting in rows.pending(connection, dataset_id):
        token = _patient_token(waiting.patient_ref or "")
        matched = systemless.get(token.value or "") if token is not None and token.system is None else None
        if matched is not None:
            link = _link_of(waiting.resource)
            resource = {**waiting.resource, link: {**waiting.resource[link], "reference": matched}}
            rows.restate(connection, waiting.pk, resource, matched)
        elif index.resolve(waiting.patient_ref) is None:
            continue
        adopted.append(waiting.pk)
    rows.attach(connection, adopted, patient_id)


def _systemless_matches(patient: dict[str, Any], key: bytes) -> dict[str, str]:
    """{the pseudonym of an identifier value alone: the at-rest reference to that identifier in its system} for
    the identifiers of a Patient as sent (in clear: its kept form holds only their pseudonyms in their system)."""
    found: dict[str, str] = {}
    for identifier in patient.get("identifier") or []:
        value = identifier.get("value") if isinstance(identifier, dict) else None
        system = identifier.get("system") if isinstance(identifier, dict) else None
        if isinstance(value, str) and value and isinstance(system, str) and system and not PSEUDONYM.fullmatch(value):
            reference = f"{PATIENT}?identifier={Token(system, pseudonymise(key, value, system)).written()}"
            found.setdefault(pseudonymise(key, value), reference)
    return found


def _referrers(
    connection: sa.Connection, dataset_id: str, resource_type: str, resource_id: str, full_urls: set[str | None]
) -> set[str]:
    """The Patients whose phenopacket a patient-less resource may be part of: those with a resource whose
    references may name it (`reference_keys`, looked up by index), directly or through other patient-less
    resources (a Medication named as another's ingredient). A candidate set: the reference rules decide when
    each patient is assembled."""
    patients: set[str] = set()
    seen: set[int] = set()
    targets = [(resource_type, resource_id, full_urls)]
    while targets:
        keys = {key for kind, rid, urls in targets for key in _target_keys(kind, rid, urls)}
        found = [r for r in rows.referrers(connection, dataset_id, keys) if r.pk not in seen]
        seen.update(r.pk for r in found)
        patients.update(r.patient_id for r in found if r.patient_id)
        loose = [r for r in found if r.patient_id is None and r.patient_ref is None and r.resource_type != PATIENT]
        targets = [(r.resource_type, r.resource_id, {r.full_url}) for r in loose]
    return patients


def _target_keys(resource_type: str, resource_id: str, full_urls: set[str | None]) -> set[str]:
    """The `reference_keys` a reference to this resource has (BundleIndex.resolve's rules): its `Type/id`, its
    fullUrl and that URL's `Type/id` tail, `Type?` (a conditional reference to its type)."""
    keys = {f"{resource_type}/{resource_id}", f"{resource_type}?"}
    for url in full_urls:
        if url:
            keys.update(key for key in (url, url_tail(url)) if key)
    return keys


def reference_keys(resource: dict[str, Any]) -> str | None:
    """The keys a resource's references may name their targets by, as kept (a JSON list; None: none): a reference
    as written and without `/_history/`, `Type?` for a conditional one. References to a Patient are left out:
    a Patient is never looked up by its referrers (a resource is attached to its Patient). Frozen in migration
    0012 for the rows kept before: change both together."""
    keys: set[str] = set()
    for reference in _references(resource):
        if not reference or reference.startswith("#"):
            continue
        if "?" in reference:
            wanted = reference.partition("?")[0]
            if wanted != PATIENT:
                keys.add(wanted + "?")
            continue
        versionless = reference.split("/_history/", 1)[0]
        if versionless.rsplit("/", 2)[-2:-1] == [PATIENT]:
            continue
        keys.update(key for key in (reference, versionless) if len(key) <= MAX_REFERENCE_KEY)
    return json.dumps(sorted(keys)) if keys else None


def _patient_of(connection: sa.Connection, dataset_id: str, change: ResourceChange, known: _Known) -> str | None:
    if change.resource_type == PATIENT:
        return change.resource_id
    if change.patient_id is not None or change.status in ("deleted", "absent"):
        return change.patient_id
    if not known.patient_written:  # only a Patient written in this transaction adopts a pending resource
        return None
    stored = rows.get(connection, dataset_id, change.resource_type, change.resource_id)  # adopted since?
    return stored.patient_id if stored else None


# --- Bundles whose entries are kept one by one --------------------------------------------


@dataclass
class EntryResult:
    """What happened to one Bundle entry kept as a resource."""

    index: int
    change: ResourceChange | None  # None: not kept (a type the gateway does not map) or refused (batch)
    issues: list[Issue] = field(default_factory=list)


def keeps_resources(doc: Any) -> bool:
    """Whether a submitted document goes to the resource store rather than straight to a phenopacket:
    a lone resource of a mapped type, or a Bundle without any Patient (its entries are about patients
    sent earlier, or still to come)."""
    if not isinstance(doc, dict):
        return False
    if doc.get("resourceType") != "Bundle":
        return doc.get("resourceType") in supported_types()
    listed = doc.get("entry")
    entries: list[Any] = listed if isinstance(listed, list) else []
    types = [
        e["resource"].get("resourceType")
        for e in entries
        if isinstance(e, dict) and isinstance(e.get("resource"), dict)
    ]
    return bool(types) and PATIENT not in types and any(t in supported_types() for t in types)


def apply_document(
    doc: dict[str, Any],
    *,
    store: MetadataStore,
    key: bytes,
    dataset_id: str,
    profile: str | None = None,
    now: datetime | None = None,
    pending_days: float = DEFAULT_PENDING_DAYS,
    cache: FragmentCache | None = None,
    set_aside: Mapping[int, Sequence[Issue]] | None = None,
) -> tuple[str, list[EntryResult]]:
    """Keep a lone resource or a Patient-less Bundle resource by resource; (bundle type, one result per entry).

    A transaction (collection, document) is all or nothing (ResourceRejected); a batch entry by entry: an
    entry that is not valid R4 is refused alone, and so are the entries `set_aside` (refused before, with why).
    References to patients resolve against the dataset's stored Patients, else the entry is pending.
    """
    bundle = doc if doc.get("resourceType") == "Bundle" else {"resourceType": "Bundle", "type": "collection"}
    bundle_type = str(bundle.get("type") or "collection")
    report = validate_fhir(doc)
    # A patient reference that does not resolve inside the Bundle is resolved against the store here.
    errors = [i for i in report.errors if i.code != "reference-dangling"]
    refused: dict[int, list[Issue]] = {n: list(issues) for n, issues in (set_aside or {}).items()}
    located = [(entry_index(i.location), i) for i in errors]
    if bundle_type == "batch" and all(n is not None for n, _ in located):
        for n, issue in located:
            if n is not None:
                refused.setdefault(n, []).append(issue)
        errors = []
    if errors:
        raise ResourceRejected("the document is not valid FHIR R4; nothing was stored", issues=errors)
    results, writes = _entry_writes(doc, report.warnings)
    if not keeps_resources(doc):  # a Bundle with Patients: its patient references must name one, here or stored
        for issue in _unresolved_patients(doc, report.errors, store, key, dataset_id):
            entry = int(issue.location.split("/")[2])  # every pointer here starts /entry/{n}/
            results[entry].issues.append(issue)
            writes[entry] = None
    full_urls = [w.full_url if w is not None else None for w in writes]
    _conditional_creates(writes, results, refused, store, key, dataset_id)
    for index, issues in refused.items():  # only what refused it: the rest of its checks are moot
        results[index] = EntryResult(index, None, issues)
        writes[index] = None
    writes = _placeholders_resolved(writes, results, full_urls)
    apply = partial(
        apply_writes,
        store=store,
        key=key,
        dataset_id=dataset_id,
        profile=profile,
        now=now,
        pending_days=pending_days,
        cache=cache,
    )
    if bundle_type == "batch":
        for result, write in zip(results, writes, strict=True):
            if write is None:
                continue
            try:
                (result.change,) = apply([write])  # each entry its own write: translate only the part it changed
            except (ResourceRejected, VersionConflict, AmbiguousReference, BadInput) as rejection:
                result.issues.extend(rejection.issues)
        return bundle_type, results
    entry_errors = [i for r in results for i in r.issues if i.is_error]
    if entry_errors:
        raise ResourceRejected("an entry cannot be applied; nothing was stored", issues=entry_errors)
    changes = iter(apply([w for w in writes if w is not None]))
    for result, write in zip(results, writes, strict=True):
        if write is not None:
            result.change = next(changes)
    return bundle_type, results


def _placeholders_resolved(
    writes: list[ResourceWrite | None], results: list[EntryResult], full_urls: list[str | None]
) -> list[ResourceWrite | None]:
    """The writes with every reference to an entry's `urn:` fullUrl naming the resource as kept, `Type/id` (FHIR
    http.html#trules: the server SHALL replace them), so that a client reading a resource back can follow its
    references. An entry an ifNoneExist matched is named by the kept resource; a conditional update's id is
    known only when it runs, so references to it stay (the store resolves them by its fullUrl)."""
    kept_as: dict[str, str] = {}
    for write, result, full_url in zip(writes, results, full_urls, strict=True):
        if not full_url:
            continue
        if write is not None and write.resource is not None and write.conditional is None:
            resource_id = write.resource_id or write.resource.get("id") or _id_from_full_url(full_url)
            kept_as[full_url] = f"{write.resource_type}/{resource_id}"
        elif write is None and result.change is not None and result.change.status == "exists":
            kept_as[full_url] = f"{result.change.resource_type}/{result.change.resource_id}"
    kept_as = {url: name for url, name in kept_as.items() if url.startswith("urn:")}
    if not kept_as:
        return writes
    return [
        replace(w, resource=references_renamed(w.resource, kept_as)) if w is not None and w.resource is not None else w
        for w in writes
    ]


def _conditional_creates(
    writes: list[ResourceWrite | None],
    results: list[EntryResult],
    refused: dict[int, list[Issue]],
    store: MetadataStore,
    key: bytes,
    dataset_id: str,
) -> None:
    """The POST entries with `request.ifNoneExist` (FHIR http.html#ccreate) that match a kept resource: answered
    `exists` and not written; several matches or another search than identifier=token: refused (412, 400).
    Looked up before the entries' transaction (as the entry requests are checked before it)."""
    asked = {n: w for n, w in enumerate(writes) if w is not None and w.if_none_exist and n not in refused}
    if not asked:
        return
    with store.engine.connect() as connection:
        for n, write in asked.items():
            assert write.if_none_exist is not None
            where = f"/entry/{n}/request/ifNoneExist"
            try:
                search = _identifier_search(write.resource_type, write.if_none_exist)
            except BadInput as unsupported:
                refused[n] = [Issue.error("not-supported", unsupported.message, where)]
                continue
            found = _matching(connection, dataset_id, write.resource_type, search, key)
            if len(found) > 1:
                message = f"ifNoneExist {write.if_none_exist!r} matches more than one kept {write.resource_type}"
                refused[n] = [Issue.error("multiple-matches", message, where)]
            elif found:
                change = ResourceChange(write.resource_type, found[0].resource_id, found[0].version, "exists")
                results[n].change, writes[n] = change, None


@dataclass
class ConditionalCreates:
    """The `request.ifNoneExist` entries of a Bundle with Patients (FHIR http.html#trules, conditional create in
    a transaction or batch), looked up before the Bundle is processed."""

    doc: dict[str, Any]  # the Bundle with each matched entry standing for the kept resource it matched
    existing: dict[int, ResourceChange]  # entry -> the kept resource it matched (status `exists`): not created
    refused: dict[int, list[Issue]]  # entry -> why it cannot be done (multiple-matches: 412; not-supported: 400)
    elsewhere: set[int] = field(default_factory=set)  # entries that matched another patient's resource

    def match_issues(self) -> list[Issue]:
        """What each matched entry came to (`exists`, or `another-patient`), located at its ifNoneExist."""
        return [i for change in self.existing.values() for i in change.issues]

    def sender_issues(self, issues: Iterable[Issue]) -> list[Issue]:
        """`issues` of the Bundle processed as `doc`, but what was said of an `elsewhere` entry's stand-in."""
        hidden = tuple(f"/entry/{n}/resource" for n in self.elsewhere)
        return [i for i in issues if not (hidden and i.location.startswith(hidden))]


def conditional_creates(
    doc: dict[str, Any], *, store: MetadataStore, key: bytes, dataset_id: str
) -> ConditionalCreates:
    """A matched entry is not created: the kept resource stands in its place in the Bundle (its id and content,
    the patient link as sent, so that it belongs to the Bundle's patient), and every reference of the Bundle to
    the entry (its fullUrl, its `Type/id`) names the kept resource, as FHIR replaces them. So the phenopacket
    made from the Bundle is the one its patient's kept resources make, and the entry's response is 200 with the
    kept resource's location. Keep the Bundle's entries but the matched ones (`existing`)."""
    listed = doc.get("entry")
    entries: list[Any] = listed if isinstance(listed, list) else []
    if not any(
        isinstance(e, dict) and isinstance(e.get("request"), dict) and e["request"].get("ifNoneExist") for e in entries
    ):
        return ConditionalCreates(doc, {}, {})  # nothing asked: no entry is read twice
    _, writes = _entry_writes(doc, [])
    results = [EntryResult(n, None) for n in range(len(writes))]
    refused: dict[int, list[Issue]] = {}
    _conditional_creates(writes, results, refused, store, key, dataset_id)
    matched = {r.index: r.change for r in results if r.change is not None}
    if not matched:
        return ConditionalCreates(doc, {}, refused)
    with store.engine.connect() as connection:
        kept = {n: rows.get(connection, dataset_id, c.resource_type, c.resource_id) for n, c in matched.items()}
        existing = {n: change for n, change in matched.items() if kept[n] is not None}  # (not deleted since)
        owners = {
            n: _subject_of_patient(connection, dataset_id, found.patient_id)
            for n, found in kept.items()
            if found is not None and found.patient_id is not None and found.resource_type != PATIENT
        }
    entries = list(entries)
    index = BundleIndex.build(entries)
    renamed: dict[str, str] = {}  # what named a matched entry -> Type/id of the kept resource
    elsewhere: set[int] = set()
    for n, change in existing.items():
        sent, found = entries[n]["resource"], kept[n]
        assert found is not None
        kept_name = f"{change.resource_type}/{change.resource_id}"
        where = f"/entry/{n}/request/ifNoneExist"
        if n in owners and not _about_kept_patient(entries, index, n, found, owners[n], key, dataset_id):
            # Another person's resource: FHIR answers the match and creates nothing, and none of it may enter
            # this patient's phenopacket. A valid resource that no patient's translation takes holds the entry's
            # place (indexes stay), its references are not renamed, and what the translator says of it is not
            # the sender's business (`elsewhere`).
            entries[n] = {**entries[n], "resource": {"resourceType": "Basic", "code": {"text": "not created"}}}
            elsewhere.add(n)
            message = (
                f"ifNoneExist matched the kept {kept_name}, which is another patient's: not created, and nothing of "
                "it is added to this patient's phenopacket (check the identifier the search names)"
            )
            change.issues.append(Issue.warning("another-patient", message, where))
            continue
        for name in (entries[n].get("fullUrl"), f"{change.resource_type}/{sent['id']}" if sent.get("id") else None):
            if isinstance(name, str) and name != kept_name:
                renamed[name] = kept_name
        stand_in = dict(found.resource)
        for link in PATIENT_LINKS if change.resource_type != PATIENT else ():
            stand_in.pop(link, None)
            if link in sent:
                stand_in[link] = sent[link]
        entries[n] = {**entries[n], "resource": stand_in}
        message = f"ifNoneExist matched the kept {kept_name}: not created (the Bundle's references to it name it)"
        change.issues.append(Issue.info("exists", message, where))
    entries = [references_renamed(entry, renamed) for entry in entries]
    return ConditionalCreates({**doc, "entry": entries}, existing, refused, elsewhere)


def _subject_of_patient(connection: sa.Connection, dataset_id: str, patient_id: str) -> str | None:
    found = rows.get(connection, dataset_id, PATIENT, patient_id)
    return found.subject_id if found is not None else None


def _about_kept_patient(
    entries: list[Any], index: BundleIndex, n: int, kept: StoredResource, owner: str | None, key: bytes, dataset_id: str
) -> bool:
    """Whether Bundle entry `n` is about the patient `kept` belongs to (`owner`: that Patient's subject): its
    Patient in the Bundle has that subject (as the translator names it, by its identifiers), or it names the
    kept Patient as `Patient/{id}`."""
    reference = patient_reference(entries[n]["resource"])
    if reference is None:
        return False
    at = index.resolve(reference, n)
    patient = entries[at].get("resource") if at is not None and isinstance(entries[at], dict) else None
    if isinstance(patient, dict) and patient.get("resourceType") == PATIENT:
        return owner is not None and _subject_of(patient, key, dataset_id) == owner
    return reference == f"{PATIENT}/{kept.patient_id}"


def about_stored_patients(report: Iterable[Issue]) -> bool:
    """Whether a Bundle's only errors are patient references that do not resolve inside it: they may
    name Patients stored before, so the Bundle is applied resource by resource (`apply_document`)."""
    errors = [i for i in report if i.is_error]
    return bool(errors) and all(
        i.code == "reference-dangling" and i.location.rsplit("/", 2)[-2] in PATIENT_LINKS for i in errors
    )


def stored_entries(outcome: IngestOutcome) -> list[int]:
    """The Bundle entries that went into a stored phenopacket."""
    return [i for packet in outcome.packets if packet.saved is not None for i in packet.entry_indexes]


def keep_bundle(
    doc: dict[str, Any],
    entry_indexes: Iterable[int],
    *,
    store: MetadataStore,
    key: bytes,
    dataset_id: str,
    profile: str | None = None,
    pending_days: float = DEFAULT_PENDING_DAYS,
    cache: FragmentCache | None = None,
    connection: sa.Connection | None = None,
) -> list[ResourceChange]:
    """Keep the resources of a Bundle whose phenopackets were just stored (POST /fhir, `gateway ingest fhir`),
    in the transaction `connection` that stored them (`store_fhir_outcome(also=...)`): both or neither.

    So the two channels meet: a resource sent later on its own, about a patient of this Bundle,
    is applied to the same phenopacket (by `Patient/{id}`, the Bundle's fullUrl, or the pseudonym of
    its identifier). A patient that has resources from earlier messages is rebuilt from all of them.
    `entry_indexes`: the entries that went into a stored phenopacket (a batch's refused patients not).
    """
    _, writes = _entry_writes(doc, [])
    wanted = sorted(set(entry_indexes))
    sent = [(i, w) for i in wanted if i < len(writes) and (w := writes[i]) is not None and w.resource is not None]
    kept_entries = [i for i, _ in sent]
    kept = [w for _, w in sent]
    if not kept:
        return []
    entry_of = {(w.resource_type, w.resource_id): i for i, w in enumerate(writes) if w is not None}

    def keep(own: sa.Connection) -> list[ResourceChange]:
        renamed, adopted = _as_stored_patients(own, kept, key, dataset_id)
        renamed, same = _as_stored_resources(own, renamed, key, dataset_id)
        renamed = _urns_named_as_kept(renamed)
        changes = apply_writes(
            renamed,
            store=store,
            key=key,
            dataset_id=dataset_id,
            profile=profile,
            rebuild=False,
            pending_days=pending_days,
            cache=cache,
            connection=own,
            # the Bundle's phenopacket named these resources by the ids it sent: made again from the kept ones
            rebuild_patients=frozenset(c.patient_id for c in same.values() if c.patient_id),
        )
        for n, change in enumerate(changes):  # one change per write, in order (apply_writes)
            change.entry = kept_entries[n]
            # a change's own issues are located in its resource: in the Bundle, in its entry
            change.issues = [
                i.at(f"/entry/{kept_entries[n]}/resource") if i.code == ID_IS_RECORD_NUMBER.code else i
                for i in change.issues
            ]
            if n in same:
                sent = same[n].sent_id
                change.issues.append(
                    Issue.info(
                        "same-resource",
                        f"{change.resource_type}/{sent} has the content of the stored "
                        f"{change.resource_type}/{change.resource_id} of the same patient: the same resource, kept "
                        f"as {change.resource_type}/{change.resource_id} (references to it in this Bundle too)",
                        f"/entry/{entry_of.get((change.resource_type, sent), 0)}/resource",
                    )
                )
        for change in changes:
            if change.resource_type == PATIENT and change.resource_id in adopted:
                sent = adopted[change.resource_id]
                change.issues.append(
                    Issue.info(
                        "same-person",
                        f"Patient/{sent} has the patient identifier of the stored Patient/{change.resource_id}: "
                        f"the same person, kept as Patient/{change.resource_id} (references to it in this Bundle "
                        "too)",
                        f"/entry/{entry_of.get((PATIENT, sent), 0)}/resource/identifier",
                    )
                )
        return changes

    if connection is not None:
        return keep(connection)
    return store.in_transaction(keep)


def _urns_named_as_kept(writes: list[ResourceWrite]) -> list[ResourceWrite]:
    """A Bundle's kept writes with every reference to one of their `urn:` fullUrls naming that resource as kept,
    `Type/id` (http.html#trules; `_placeholders_resolved` does the same for a Bundle without Patient), so that a
    client reading one back can follow it. The rows keep their fullUrl: a later message may still cite it."""
    kept_as = {
        w.full_url: f"{w.resource_type}/{w.resource_id or w.resource.get('id') or _id_from_full_url(w.full_url)}"
        for w in writes
        if w.full_url and w.full_url.startswith("urn:") and w.resource is not None and w.conditional is None
    }
    if not kept_as:
        return writes
    return [
        replace(w, resource=references_renamed(w.resource, kept_as)) if w.resource is not None else w for w in writes
    ]


def _as_stored_patients(
    connection: sa.Connection, writes: list[ResourceWrite], key: bytes, dataset_id: str
) -> tuple[list[ResourceWrite], dict[str, str]]:
    """A Bundle's writes with each Patient that has the identifier of a stored Patient under another id taken as
    that stored Patient (its id, and every reference to it in the Bundle's resources), and {stored id: sent id}.

    A Bundle is a snapshot of its patients as the sender sees them now, and documents (an IPS) are often made
    afresh with new resource ids for every request: the person is the one the profile's patient identifier
    names, so the Bundle updates that person rather than being refused as a second Patient id (which a
    Patient sent on its own is: gateway.services.fhir_resources._refuse_second_patient_id)."""
    alias: dict[str, str] = {}  # sent id -> stored id
    for write in writes:
        if write.resource_type != PATIENT or write.resource is None:
            continue
        sent_id = write.resource_id or write.resource.get("id")
        subject_id = _subject_of(at_rest({**write.resource, "id": sent_id or "sent"}, key), key, dataset_id)
        if sent_id is None or subject_id is None:
            continue
        stored = rows.patient_ids_of_subject(connection, dataset_id, subject_id)
        if stored and sent_id not in stored:
            alias[sent_id] = stored[0]
    if not alias:
        return writes, {}
    renamed = []
    for write in writes:
        sent = write.resource_id or (write.resource or {}).get("id")
        if write.resource_type == PATIENT and sent in alias and write.resource is not None:
            stored_id = alias[sent]
            renamed.append(replace(write, resource_id=stored_id, resource={**write.resource, "id": stored_id}))
        else:
            renamed.append(replace(write, resource=_patient_references_renamed(write.resource, alias)))
    return renamed, {stored: sent for sent, stored in alias.items()}


@dataclass(frozen=True)
class _Same:
    sent_id: str
    patient_id: str | None  # the stored Patient whose resource it is


def _as_stored_resources(
    connection: sa.Connection, writes: list[ResourceWrite], key: bytes, dataset_id: str
) -> tuple[list[ResourceWrite], dict[int, _Same]]:
    """A Bundle's writes with each resource that is a kept resource of one of its stored Patients (the same
    content under a new id, gateway.services.fhir_same_resource) written under the kept id; {write index: what
    was sent}."""
    patients = [w.resource_id for w in writes if w.resource_type == PATIENT and w.resource_id]
    found: dict[int, _Same] = {}
    for patient_id in patients:
        kept = assemble(connection, dataset_id, patient_id)
        if not kept or len(kept) == 1:  # not stored before, or nothing of it but the Patient
            continue
        adopted = same_resources(writes, kept, partial(at_rest, key=key))
        writes = same_renamed(writes, adopted)
        found |= {a.index: _Same(a.sent_id, patient_id) for a in adopted}
    return writes, found


def _patient_references_renamed(value: Any, alias: dict[str, str]) -> Any:
    """`value` with every reference string to Patient/{sent id} (relative or absolute) naming the stored id."""
    if isinstance(value, dict):
        return {k: _patient_references_renamed(v, alias) for k, v in value.items()}
    if isinstance(value, list):
        return [_patient_references_renamed(v, alias) for v in value]
    if isinstance(value, str) and "Patient/" in value:
        head, _, tail = value.rpartition("Patient/")
        rid, bar, version = tail.partition("/_history/")
        if rid in alias and (head == "" or head.endswith("/")):
            return f"{head}Patient/{alias[rid]}{bar}{version}"
    return value


def _unresolved_patients(
    doc: dict[str, Any], errors: list[Issue], store: MetadataStore, key: bytes, dataset_id: str
) -> list[Issue]:
    """The dangling patient references of a Bundle that name no stored Patient either."""
    unresolved = []
    with store.engine.connect() as connection:
        for issue in errors:
            found = PATIENT_LINK_POINTER.fullmatch(issue.location)
            if found is None:  # a patient link inside a contained resource: never a stored Patient
                unresolved.append(issue)
                continue
            link = found.group(2)
            reference = reference_of(doc["entry"][int(found.group(1))]["resource"].get(link)) or ""
            if (
                _resolve_patient(connection, dataset_id, stored_reference(connection, dataset_id, reference, key))
                is None
            ):
                message = (
                    f"{link} reference {reference!r} names no Patient of the Bundle nor one stored in {dataset_id!r}"
                )
                unresolved.append(Issue.error("reference-dangling", message, issue.location))
    return unresolved


_INSIDE_ENTRY = re.compile(r"/entry/(\d+)/")  # a pointer into an entry (not the entry itself)


def _entry_writes(doc: dict[str, Any], warnings: list[Issue]) -> tuple[list[EntryResult], list[ResourceWrite | None]]:
    """One write per entry (None: not kept), honouring entry.request (PUT Type/id, POST, DELETE Type/id)."""
    entries = (doc.get("entry") or []) if doc.get("resourceType") == "Bundle" else [{"resource": doc}]
    prefix = "/entry/" if doc.get("resourceType") == "Bundle" else None
    results: list[EntryResult] = []
    writes: list[ResourceWrite | None] = []
    by_entry: dict[int | None, list[Issue]] = {}  # each entry's warnings, found once (not a scan per entry)
    for issue in warnings:
        inside = _INSIDE_ENTRY.match(issue.location)
        by_entry.setdefault(int(inside.group(1)) if inside else None, []).append(issue)
    for index, entry in enumerate(entries):
        where = f"{prefix}{index}" if prefix else ""
        result = EntryResult(index, None, list(warnings) if prefix is None else by_entry.get(index, []))
        results.append(result)
        request = entry.get("request") if isinstance(entry.get("request"), dict) else {}
        method = str(request.get("method") or "PUT").upper()
        url, _, query = str(request.get("url") or "").partition("?")
        resource = entry.get("resource") if isinstance(entry.get("resource"), dict) else None
        url_type, _, url_id = url.strip("/").partition("/")
        resource_type = str(resource.get("resourceType")) if resource else url_type
        # PUT/DELETE Type?identifier=token: a conditional update or delete (fhir_requests refused other searches)
        conditional = f"{resource_type}?{query}" if query and not url_id and method in ("PUT", "DELETE") else None
        if index == 0 and resource_type == "MessageHeader" and doc.get("type") == "message":
            result.issues.append(MESSAGE_HEADER_NOTE)  # the envelope of a message, processed (messaging.html)
            writes.append(None)
        elif resource_type not in supported_types():
            result.issues.append(
                Issue.info(
                    "not-kept", f"{resource_type or 'the entry'} is not mapped to a phenopacket: not kept", where
                )
            )
            writes.append(None)
        elif url_id and not FHIR_ID.fullmatch(url_id):
            result.issues.append(Issue.error("fhir-value", f"{url_id[:80]!r} is not a FHIR id", where + "/request/url"))
            writes.append(None)
        elif method == "DELETE":
            if_match = _entry_if_match(request)
            if url_id or conditional:
                writes.append(
                    ResourceWrite(resource_type, url_id or None, None, if_match=if_match, conditional=conditional)
                )
            else:
                writes.append(None)
                result.issues.append(
                    Issue.error(
                        "fhir-value", "DELETE needs a url Type/id or Type?identifier=token", where + "/request/url"
                    )
                )
        else:
            assert resource is not None
            resource_id = url_id if method == "PUT" and url_id else resource.get("id")
            full_url = entry.get("fullUrl") if isinstance(entry.get("fullUrl"), str) else None
            if_none_exist = request.get("ifNoneExist") if method == "POST" else None
            create_unless = if_none_exist if isinstance(if_none_exist, str) else None
            writes.append(
                ResourceWrite(
                    resource_type, resource_id, resource, full_url, _entry_if_match(request), create_unless, conditional
                )
            )
    return results, writes


def _entry_if_match(request: dict[str, Any]) -> int | None:
    value = request.get("ifMatch")
    return parse_if_match(value) if isinstance(value, str) else None


@dataclass
class HeldResources:
    """Resources kept in memory the way the store keeps them (at-rest form, content hash), one write at a time,
    each write giving its patient's assembly: the service path without a database, for the benchmark and the
    test that compare every merged write with a whole translation (bench/fhir_ingest.py,
    tests/translators/test_fhir_parts_in_memory.py)."""

    key: bytes
    dataset_id: str
    contents: dict[int, dict[str, Any]] = field(default_factory=dict)
    heads: dict[int, ResourceHead] = field(default_factory=dict)
    owner_of: dict[int, int | None] = field(default_factory=dict)  # pk -> pk of its Patient (None: no patient)

    def load(self, pks: list[int]) -> dict[int, dict[str, Any]]:
        return {pk: self.contents[pk] for pk in pks}

    def keep(self, resource: dict[str, Any], full_url: str | None, cache: FragmentCache) -> Assembly | None:
        """Keep one resource; the assembly of its patient after it (None: about no stored patient yet)."""
        pk = len(self.heads)
        kept = at_rest(resource, self.key)
        self.contents[pk] = kept
        self.heads[pk] = ResourceHead(pk, kept["resourceType"], kept["id"], 1, full_url, rows.content_hash(kept))
        if kept["resourceType"] == PATIENT:
            self.owner_of[pk] = pk
        else:
            patients = [p for p, head in self.heads.items() if head.resource_type == PATIENT]
            reference = patient_reference(kept)
            entries = [{"resource": self.contents[p], "fullUrl": self.heads[p].full_url} for p in patients]
            found = BundleIndex.build(entries).resolve(reference) if reference else None
            self.owner_of[pk] = None if found is None else patients[found]
        owner = self.owner_of[pk]
        if owner is None:
            return None
        members = [self.heads[p] for p, o in self.owner_of.items() if o == owner and p != owner]
        loose = [self.heads[p] for p, o in self.owner_of.items() if o is None]  # all of them: a superset
        return parts_of(self.heads[owner], members, lambda _references: loose, self.load, cache)

    def stored(self, head: ResourceHead, now: datetime) -> StoredResource:
        """The kept resource as the store would give it back (for a whole translation)."""
        return StoredResource(
            head.pk,
            self.dataset_id,
            head.resource_type,
            head.resource_id,
            1,
            head.full_url,
            None,
            None,
            None,
            head.content_hash,
            self.contents[head.pk],
            now,
            now,
        )
