"""FHIR resources as received, per dataset: the rows behind the FHIR REST surface.

Plain functions over a caller's connection (`MetadataStore.transaction()`), so that a resource,
the resources it attaches and the phenopacket they make change in one transaction. The store
knows nothing of FHIR's rules: which Patient a resource belongs to is decided by
gateway.services.fhir_resources and handed in as `patient_id`.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import orjson
import sqlalchemy as sa

from gateway.store import index_rows
from gateway.store.index_rows import ReadAhead
from gateway.store.tables import (
    Document,
    datasets,
    fhir_deleted,
    fhir_identifiers,
    fhir_resource_references,
    fhir_resources,
)
from gateway.store.values import InParameter, parameter_value

PATIENT = "Patient"


@dataclass(frozen=True)
class ResourceState:
    """A kept resource without its content: what a write checks and changes (version, links, hash)."""

    pk: int
    dataset_id: str
    resource_type: str
    resource_id: str
    version: int
    full_url: str | None
    patient_ref: str | None
    patient_id: str | None
    subject_id: str | None
    content_hash: str

    @property
    def pending(self) -> bool:
        """Names a Patient that has not arrived (yet)."""
        return self.patient_ref is not None and self.patient_id is None and self.resource_type != PATIENT


@dataclass(frozen=True)
class StoredResource(ResourceState):
    resource: dict[str, Any]
    received_at: datetime
    updated_at: datetime


@dataclass(frozen=True)
class ResourceHead:
    """A kept resource without its content: enough to assemble a patient and name what changed."""

    pk: int
    resource_type: str
    resource_id: str
    version: int
    full_url: str | None
    content_hash: str


_HEAD = (
    fhir_resources.c.pk,
    fhir_resources.c.resource_type,
    fhir_resources.c.resource_id,
    fhir_resources.c.version,
    fhir_resources.c.full_url,
    fhir_resources.c.content_hash,
)


# --- the per-write path ------------------------------------------------------------------
# Its statements are built once, here: SQLAlchemy keeps a statement's cache key on the object, so a
# statement executed again is found in the compiled cache without rebuilding and hashing a fresh tree
# (that cost more than running it on SQLite). Each of them is one round trip.
_c = fhir_resources.c
_STATE = (
    _c.pk,
    _c.dataset_id,
    _c.resource_type,
    _c.resource_id,
    _c.version,
    _c.full_url,
    _c.patient_ref,
    _c.patient_id,
    _c.subject_id,
    _c.content_hash,
)
_STATE_NAMES = [column.name for column in _STATE]
_PENDING = (_c.patient_ref.is_not(None), _c.patient_id.is_(None), _c.resource_type != PATIENT)
_OLDEST_PENDING = (
    sa.select(sa.func.min(_c.updated_at))
    .where(_c.dataset_id == datasets.c.id, *_PENDING)
    .correlate(datasets)
    .scalar_subquery()
    .label("oldest_pending")
)
_DATASET_STATE = sa.select(datasets.c.id, _OLDEST_PENDING).where(datasets.c.id == sa.bindparam("dataset_id"))
# PostgreSQL: the same with the dataset's lock (lock_dataset) taken by the statement. Its snapshot may predate
# the lock, which matters only for the oldest pending time: a stale one just sends the expiry to read
# `pending_before` (a statement after the lock: it sees every committed row) or waits for the next write.
_LOCK_AND_DATASET_STATE = sa.select(
    datasets.c.id,
    _OLDEST_PENDING,
    sa.func.pg_advisory_xact_lock(sa.func.hashtext(sa.bindparam("purpose", type_=sa.Text))),
).where(datasets.c.id == sa.bindparam("dataset_id"))
# The row a write replaces and, in the same round trip, the Patient a `Patient/{id}` reference names.
_OWN_OR_PATIENT = sa.or_(
    sa.and_(_c.resource_type == sa.bindparam("resource_type"), _c.resource_id == sa.bindparam("resource_id")),
    sa.and_(_c.resource_type == PATIENT, _c.resource_id == sa.bindparam("patient_id")),
)
_STATE_AND_PATIENT = sa.select(*_STATE).where(_c.dataset_id == sa.bindparam("dataset_id"), _OWN_OR_PATIENT)
# SQLite: _DATASET_STATE and _STATE_AND_PATIENT in one round trip (a row per state found, or one without).
# Not on PostgreSQL: there the lock comes first, and a statement's snapshot may predate the lock it waits for.
_DATASET_AND_STATES = (
    sa.select(datasets.c.id, _OLDEST_PENDING, *_STATE)
    .select_from(datasets.outerjoin(fhir_resources, sa.and_(_c.dataset_id == datasets.c.id, _OWN_OR_PATIENT)))
    .where(datasets.c.id == sa.bindparam("dataset_id"))
)
# A patient's heads and the patient-less ones its references may name in one read, with the Patient's own
# content (every part is translated with it; a minimised Patient is small). The patient's rows are a range of
# ix_fhir_resources_patient; the patient-less ones are looked up by the keys a reference finds a resource by
# (`LooseKeys`), each by its index, never the dataset's whole unattached set (it grows with the dataset). No
# ORDER BY (the caller sorts), or SQLite walks the whole dataset for the order. The index rows of the patient's
# phenopacket come along (resource_type "#" + their table: no FHIR type starts so), for the phenopacket's write
# to diff against (gateway.store.index_rows).
_PATIENT_CONTENT = sa.type_coerce(sa.case((_c.resource_type == PATIENT, _c.resource), else_=sa.null()), Document)
_INDEX_MARK = "#"


def _loose_selects(*columns: Any) -> list[sa.Select]:
    """The dataset's patient-less rows with one of the keys :urls (fullUrl), :tails (fullUrl's Type/id tail),
    :types x :ids (identity), every one of the :every_of types: one select per index, so that each is a lookup
    (an OR of them is a scan). `patient_id` is tested through coalesce, so that it is a filter and not an index
    range: SQLite cannot tell how many keys a parameter holds and would rather walk every patient-less row."""
    loose = (
        _c.dataset_id == sa.bindparam("dataset_id"),
        sa.func.coalesce(_c.patient_id, "") == "",
        _c.patient_ref.is_(None),
    )
    return [
        sa.select(*columns).where(*loose, InParameter(_c.full_url, "urls")),
        sa.select(*columns).where(*loose, InParameter(_c.full_url_tail, "tails")),
        sa.select(*columns).where(*loose, InParameter(_c.resource_type, "types"), InParameter(_c.resource_id, "ids")),
        sa.select(*columns).where(*loose, InParameter(_c.resource_type, "every_of")),
    ]


_ASSEMBLY_HEADS = sa.union_all(
    sa.select(*_HEAD, _c.patient_id, _PATIENT_CONTENT).where(
        _c.dataset_id == sa.bindparam("dataset_id"), _c.patient_id == sa.bindparam("patient_id")
    ),
    *_loose_selects(*_HEAD, _c.patient_id, sa.type_coerce(sa.null(), Document)),
    *(
        select.with_only_columns(
            pk, table, a, sa.cast(sa.null(), sa.Integer), b, c, sa.null(), sa.type_coerce(sa.null(), Document)
        )
        for select in index_rows.of_subject(_INDEX_MARK)
        for pk, table, a, b, c in [select.selected_columns]
    ),
)
_LOOSE_HEADS = sa.union_all(*_loose_selects(*_HEAD))
_PATIENT_ROWS = sa.select(fhir_resources).where(
    _c.dataset_id == sa.bindparam("dataset_id"), _c.patient_id == sa.bindparam("patient_id")
)
_LOOSE_ROWS = sa.union_all(*_loose_selects(fhir_resources))


@dataclass(frozen=True)
class LooseKeys:
    """The keys patient-less rows are looked up by (which keys a reference is found by is the caller's rule)."""

    urls: frozenset[str] = frozenset()  # fullUrl
    tails: frozenset[str] = frozenset()  # the `Type/id` tail of an absolute fullUrl (full_url_tail)
    types: frozenset[str] = frozenset()  # resource_type x resource_id: a superset of the pairs asked
    ids: frozenset[str] = frozenset()
    every_of: frozenset[str] = frozenset()  # types whose every patient-less row is wanted

    def params(self, connection: sa.Connection) -> dict[str, Any]:
        """As InParameter values (each a single parameter: the statement is compiled once, however many keys)."""
        dialect = connection.dialect.name
        return {name: parameter_value(dialect, sorted(getattr(self, name))) for name in self.__dataclass_fields__}


# The rows whose references may name a resource by one of :keys (fhir_resource_references, by its index).
_REFERRERS = (
    sa.select(_c.pk, _c.resource_type, _c.resource_id, _c.full_url, _c.patient_id, _c.patient_ref)
    .select_from(fhir_resource_references.join(fhir_resources, _c.pk == fhir_resource_references.c.resource_pk))
    .where(
        fhir_resource_references.c.dataset_id == sa.bindparam("dataset_id"),
        InParameter(fhir_resource_references.c.ref_key, "keys"),
    )
    .distinct()
)


@dataclass(frozen=True)
class Referrer:
    pk: int
    resource_type: str
    resource_id: str
    full_url: str | None
    patient_id: str | None
    patient_ref: str | None


def referrers(connection: sa.Connection, dataset_id: str, keys: set[str]) -> list[Referrer]:
    """The dataset's rows with a reference key among `keys` (`reference_keys`: the caller's rule)."""
    if not keys:
        return []
    values = {"dataset_id": dataset_id, "keys": parameter_value(connection.dialect.name, sorted(keys))}
    return [Referrer(*row) for row in connection.execute(_REFERRERS, values)]


_CONTENTS = sa.select(_c.pk, _c.resource).where(_c.pk.in_(sa.bindparam("pks", expanding=True)))
# A new row's version: 1, or the next after the last of the resource the REST API deleted under this id
# (fhir_deleted, migration 0014), worked out by the INSERT itself (no statement more on a create).
_REVIVED_VERSION = (
    sa.select(sa.func.coalesce(sa.func.max(fhir_deleted.c.version), 0) + 1)
    .where(
        fhir_deleted.c.dataset_id == sa.bindparam("tomb_dataset"),
        fhir_deleted.c.resource_type == sa.bindparam("tomb_type"),
        fhir_deleted.c.resource_id == sa.bindparam("tomb_id"),
    )
    .scalar_subquery()
)
_INSERT = sa.insert(fhir_resources).values(version=_REVIVED_VERSION).returning(_c.pk, _c.version)
_UPDATE = sa.update(fhir_resources).where(_c.pk == sa.bindparam("row_pk"))


def lock_and_read_dataset(connection: sa.Connection, dataset_id: str) -> tuple[bool, datetime | None]:
    """`lock_dataset`, then whether the dataset exists and when its oldest pending resource last changed
    (None: none pending): one round trip. When the dataset does not exist no lock is taken (there is
    nothing to write to: the caller gives up)."""
    row: Any
    if connection.dialect.name == "postgresql":
        purpose = f"/fhir-resources/{dataset_id}"
        row = connection.execute(_LOCK_AND_DATASET_STATE, {"dataset_id": dataset_id, "purpose": purpose}).first()
    else:  # SQLite writers are serialised already (BEGIN IMMEDIATE)
        row = connection.execute(_DATASET_STATE, {"dataset_id": dataset_id}).first()
    if row is None:
        return False, None
    return True, _utc(row[1]) if row[1] is not None else None


@dataclass(frozen=True)
class Prefetched:
    """What lock_and_read_dataset read of one write's rows ahead (state_and_patient's answer)."""

    resource_type: str
    resource_id: str
    patient_id: str | None
    own: ResourceState | None
    patient: ResourceState | None


def read_dataset_and_states(
    connection: sa.Connection, dataset_id: str, resource_type: str, resource_id: str, patient_id: str | None
) -> tuple[bool, datetime | None, Prefetched | None]:
    """`lock_and_read_dataset` and, where the same round trip can (SQLite: writers are serialised before the
    transaction's first statement), `state_and_patient`; None: not read (read it after the lock)."""
    if connection.dialect.name == "postgresql":
        return (*lock_and_read_dataset(connection, dataset_id), None)
    asked = {"dataset_id": dataset_id, "resource_type": resource_type, "resource_id": resource_id}
    found = connection.execute(_DATASET_AND_STATES, {**asked, "patient_id": patient_id}).all()
    if not found:
        return False, None, None
    oldest = _utc(found[0][1]) if found[0][1] is not None else None
    states = [ResourceState(**dict(zip(_STATE_NAMES, row[2:], strict=True))) for row in found if row[2] is not None]
    own, patient = _own_and_patient(states, resource_type, resource_id, patient_id)
    return True, oldest, Prefetched(resource_type, resource_id, patient_id, own, patient)


def _own_and_patient(
    states: list[ResourceState], resource_type: str, resource_id: str, patient_id: str | None
) -> tuple[ResourceState | None, ResourceState | None]:
    own = next((r for r in states if (r.resource_type, r.resource_id) == (resource_type, resource_id)), None)
    patient = next((r for r in states if r.resource_type == PATIENT and r.resource_id == patient_id), None)
    return own, patient


def state_and_patient(
    connection: sa.Connection, dataset_id: str, resource_type: str, resource_id: str, patient_id: str | None
) -> tuple[ResourceState | None, ResourceState | None]:
    """The stored state of a resource (None: not stored) and of the Patient `patient_id` (None: not
    stored, or not asked), in one round trip."""
    found = connection.execute(
        _STATE_AND_PATIENT,
        {
            "dataset_id": dataset_id,
            "resource_type": resource_type,
            "resource_id": resource_id,
            "patient_id": patient_id,
        },
    ).all()
    return _own_and_patient([ResourceState(**row._mapping) for row in found], resource_type, resource_id, patient_id)


def assembly_heads(
    connection: sa.Connection,
    dataset_id: str,
    patient_id: str,
    subject_id: str | None = None,
    loose: LooseKeys = LooseKeys(),
) -> tuple[list[ResourceHead], list[ResourceHead], dict[int, dict[str, Any]], ReadAhead | None]:
    """(`heads_of_patient`, the patient-less heads with one of the `loose` keys, the Patient's content by primary
    key, the index rows of the dataset's phenopacket of `subject_id` — None: there is none) in one round trip."""
    attached: list[ResourceHead] = []
    found_loose: dict[int, ResourceHead] = {}  # a row may have several of the keys
    patient: dict[int, dict[str, Any]] = {}
    index: list[tuple[int, str, Any, Any, Any]] = []
    found = connection.execute(
        _ASSEMBLY_HEADS,
        {"dataset_id": dataset_id, "patient_id": patient_id, "subject_id": subject_id, **loose.params(connection)},
    )
    for *head, owner, content in found:
        if head[1].startswith(_INDEX_MARK):
            index.append((head[0], head[1].removeprefix(_INDEX_MARK), head[2], head[4], head[5]))
            continue
        if owner == patient_id:
            attached.append(ResourceHead(*head))
            if content is not None:
                patient[head[0]] = content
        else:
            found_loose[head[0]] = ResourceHead(*head)
    return sorted(attached, key=_order), sorted(found_loose.values(), key=_order), patient, ReadAhead.of(index)


def loose_heads(connection: sa.Connection, dataset_id: str, keys: LooseKeys) -> list[ResourceHead]:
    """The dataset's patient-less heads with one of the keys, sorted by (type, id)."""
    found = connection.execute(_LOOSE_HEADS, {"dataset_id": dataset_id, **keys.params(connection)})
    return sorted({row[0]: ResourceHead(*row) for row in found}.values(), key=_order)


def patient_rows(connection: sa.Connection, dataset_id: str, patient_id: str) -> list[StoredResource]:
    """`of_patient` by its index range, unsorted."""
    return [
        _stored(row)
        for row in connection.execute(_PATIENT_ROWS, {"dataset_id": dataset_id, "patient_id": patient_id}).mappings()
    ]


def loose_rows(connection: sa.Connection, dataset_id: str, keys: LooseKeys) -> list[StoredResource]:
    """`loose_heads` with their content."""
    found = connection.execute(_LOOSE_ROWS, {"dataset_id": dataset_id, **keys.params(connection)}).mappings()
    return sorted({row["pk"]: _stored(row) for row in found}.values(), key=_order)


def _order(row: ResourceHead | StoredResource) -> tuple[str, str]:
    return row.resource_type, row.resource_id


def _heads(connection: sa.Connection, *where: Any) -> list[ResourceHead]:
    query = sa.select(*_HEAD).where(*where).order_by(fhir_resources.c.resource_type, fhir_resources.c.resource_id)
    return [ResourceHead(**row) for row in connection.execute(query).mappings()]


def heads_of_patient(connection: sa.Connection, dataset_id: str, patient_id: str) -> list[ResourceHead]:
    """`of_patient` without the content."""
    return _heads(connection, fhir_resources.c.dataset_id == dataset_id, fhir_resources.c.patient_id == patient_id)


def contents(connection: sa.Connection, pks: Sequence[int]) -> dict[int, dict[str, Any]]:
    """The kept content of resources by primary key."""
    if not pks:
        return {}
    return {pk: resource for pk, resource in connection.execute(_CONTENTS, {"pks": list(pks)}).all()}


# What orjson may spell otherwise than json.dumps(ensure_ascii): any number that is not an integer (1e16 there is
# 1e+16, 1e-05 here is 0.00001), NaN and infinities (null here); a string that merely contains these falls back
# too. Non-ASCII (and DEL) is escaped below.
_SPELLED_OTHERWISE = re.compile(rb"[:,\[]-?[0-9]+[.eE]|null")
_NOT_PRINTABLE_ASCII = re.compile("[^\x00-\x7e]")


def _ascii_escape(match: re.Match[str]) -> str:
    code = ord(match.group())
    if code < 0x10000:
        return f"\\u{code:04x}"
    code -= 0x10000  # past the BMP: a surrogate pair, as json.dumps writes it
    return f"\\u{0xD800 | (code >> 10):04x}\\u{0xDC00 | (code & 0x3FF):04x}"


def content_hash(resource: dict[str, Any]) -> str:
    """Of the content a client controls: `meta` (versionId, lastUpdated) is the server's.

    The hash of json.dumps(sort_keys, compact, ASCII) — kept in every stored row, so its bytes must never change;
    orjson writes the same bytes many times faster where nothing in `_SPELLED_OTHERWISE` appears."""
    content = {k: v for k, v in resource.items() if k != "meta"}
    try:
        text = orjson.dumps(content, option=orjson.OPT_SORT_KEYS)
    except TypeError:  # integers past 64 bits, keys that are not strings, lone surrogates
        text = b"null"
    if _SPELLED_OTHERWISE.search(text):
        text = json.dumps(content, sort_keys=True, separators=(",", ":")).encode()
    elif not text.isascii() or b"\x7f" in text:  # only strings hold these: escaped as json.dumps escapes them
        text = _NOT_PRINTABLE_ASCII.sub(_ascii_escape, text.decode()).encode()
    return hashlib.sha256(text).hexdigest()


def rotate_pseudonyms(connection: sa.Connection, step: Callable[[str], str]) -> int:
    """Carry the pseudonyms kept in resources one rotation step forward (gateway.security.rotation):
    a Patient row's subject and identifier values, and conditional patient references."""
    changed = 0
    for row in connection.execute(sa.select(fhir_resources)).mappings().all():
        resource = _stepped(dict(row["resource"]), step)
        patient_ref = _stepped_reference(row["patient_ref"], step) if row["patient_ref"] else None
        subject_id = step(row["subject_id"]) if row["subject_id"] else None
        if (resource, patient_ref, subject_id) == (row["resource"], row["patient_ref"], row["subject_id"]):
            continue
        connection.execute(
            sa.update(fhir_resources)
            .where(fhir_resources.c.pk == row["pk"])
            .values(
                resource=resource, content_hash=content_hash(resource), patient_ref=patient_ref, subject_id=subject_id
            )
        )
        changed += 1
    c = fhir_deleted.c
    for dataset, kind, rid, subject in connection.execute(
        sa.select(c.dataset_id, c.resource_type, c.resource_id, c.subject_id)
    ):
        if subject:  # a tombstone's person, so that erasing them under the new key finds it
            where = (c.dataset_id == dataset, c.resource_type == kind, c.resource_id == rid)
            connection.execute(sa.update(fhir_deleted).where(*where).values(subject_id=step(subject)))
    return changed


def restate_batch(
    connection: sa.Connection,
    form: Callable[[dict[str, Any], str | None], tuple[dict[str, Any], str | None]],
    after: int,
    batch: int = 500,
) -> tuple[int, int | None]:
    """Rewrite up to `batch` kept resources with a pk above `after` (and their patient reference) into `form`'s
    storage form: (rows changed, the last pk read; None when there was none left). A row is written only when
    the form differs and only if nobody changed it meanwhile (same content hash); its version stays: the
    content a client sent is the same."""
    c = fhir_resources.c
    found = connection.execute(
        sa.select(c.pk, c.resource, c.patient_ref, c.content_hash).where(c.pk > after).order_by(c.pk).limit(batch)
    ).all()
    changed = 0
    for pk, resource, patient_ref, digest in found:
        kept, reference = form(resource, patient_ref)
        if (kept, reference) != (resource, patient_ref):
            changed += connection.execute(
                sa.update(fhir_resources)
                .where(c.pk == pk, c.content_hash == digest)
                .values(resource=kept, patient_ref=reference, content_hash=content_hash(kept))
            ).rowcount
    return changed, found[-1][0] if found else None


def _stepped(resource: dict[str, Any], step: Callable[[str], str]) -> dict[str, Any]:
    if resource.get("resourceType") == PATIENT and isinstance(resource.get("identifier"), list):
        resource["identifier"] = [
            {**i, "value": step(i["value"])} if isinstance(i, dict) and isinstance(i.get("value"), str) else i
            for i in resource["identifier"]
        ]
    for link in ("subject", "patient"):
        target = resource.get(link)
        if isinstance(target, dict) and isinstance(target.get("reference"), str):
            resource[link] = {**target, "reference": _stepped_reference(target["reference"], step)}
    return resource


def _stepped_reference(reference: str, step: Callable[[str], str]) -> str:
    """A conditional patient reference with its pseudonym stepped, in every token form (`value`, `|value`,
    `system|value`; `system|` holds none): the value is what follows the last bar, or the whole token without
    one. `step` changes pseudonyms only, so a value in clear (a bar escaped in it included) stays as it is."""
    prefix = PATIENT + "?identifier="
    if not reference.startswith(prefix):
        return reference
    head, bar, value = reference.removeprefix(prefix).rpartition("|")
    return f"{prefix}{head}{bar}{step(value)}" if value else reference


def _utc(stamp: datetime) -> datetime:
    return stamp.replace(tzinfo=UTC) if stamp.tzinfo is None else stamp.astimezone(UTC)


def _stored(row: Any) -> StoredResource:
    values = dict(row)
    values.pop("full_url_tail", None)  # derived from full_url: a lookup key, not the resource's
    values.pop("reference_keys", None)  # derived from the content: lookup keys
    for name in ("received_at", "updated_at"):
        values[name] = _utc(values[name])
    return StoredResource(**values)


def _select(connection: sa.Connection, *where: Any) -> list[StoredResource]:
    """The rows `where` names, by (type, id). Sorted here, not by the database: an ORDER BY (type, id) made SQLite's
    planner (no statistics) walk the dataset through the identity index rather than look the few rows up by the
    index that pins them (the pending rows, a subject's Patient): every Patient write read the whole dataset."""
    found = [_stored(row) for row in connection.execute(sa.select(fhir_resources).where(*where)).mappings()]
    return sorted(found, key=_order)


def identified(
    connection: sa.Connection, dataset_id: str, resource_type: str, system: str | None, value: str | None
) -> list[StoredResource]:
    """The dataset's kept resources of a type with an identifier in `system` (None: any; "": none) of `value`
    (None: any), by (type, id): found through fhir_identifiers (a Patient's values are its pseudonyms)."""
    where = [fhir_identifiers.c.dataset_id == dataset_id, fhir_identifiers.c.resource_type == resource_type]
    if system is not None:
        where.append(fhir_identifiers.c.system == system)
    if value is not None:
        where.append(fhir_identifiers.c.value == value)
    return _select(connection, fhir_resources.c.pk.in_(sa.select(fhir_identifiers.c.resource_pk).where(*where)))


# Each next system is one seek in ix_fhir_identifiers_system (a "loose index scan"): the cost grows with the
# number of systems (a handful), not of identifiers, as a DISTINCT over the index would.
_SYSTEMS = sa.text(
    """WITH RECURSIVE found(system) AS (
        SELECT min(system) FROM fhir_identifiers WHERE dataset_id = :dataset_id AND resource_type = :resource_type
        UNION ALL
        SELECT (SELECT min(i.system) FROM fhir_identifiers AS i
                WHERE i.dataset_id = :dataset_id AND i.resource_type = :resource_type AND i.system > found.system)
        FROM found WHERE found.system IS NOT NULL
    )
    SELECT system FROM found WHERE system IS NOT NULL"""
)


def identifier_systems(connection: sa.Connection, dataset_id: str, resource_type: str) -> list[str]:
    """The identifier systems the dataset's resources of a type use ("": none), from the index alone."""
    found = connection.execute(_SYSTEMS, {"dataset_id": dataset_id, "resource_type": resource_type}).scalars()
    return sorted(found)


def lock_dataset(connection: sa.Connection, dataset_id: str) -> None:
    """Serialise the resource writes of one dataset until the transaction ends.

    A write reads the patient's other resources (and the pending ones a new Patient adopts) and
    writes the phenopacket they make: two at once, each blind to the other's uncommitted rows, would
    leave a phenopacket without one of them or a resource pending for ever. SQLite writers are
    serialised already (BEGIN IMMEDIATE); on PostgreSQL a transaction-scoped advisory lock does it.
    """
    if connection.dialect.name == "postgresql":
        connection.execute(
            sa.text("SELECT pg_advisory_xact_lock(hashtext(:purpose))"), {"purpose": f"/fhir-resources/{dataset_id}"}
        )


def get(connection: sa.Connection, dataset_id: str, resource_type: str, resource_id: str) -> StoredResource | None:
    found = _select(
        connection,
        fhir_resources.c.dataset_id == dataset_id,
        fhir_resources.c.resource_type == resource_type,
        fhir_resources.c.resource_id == resource_id,
    )
    return found[0] if found else None


def get_many(
    connection: sa.Connection, dataset_id: str, names: set[tuple[str, str]]
) -> dict[tuple[str, str], StoredResource]:
    """The stored ones of resources named (type, id), in one query."""
    ids = sorted({rid for _, rid in names if rid})
    found = _select(connection, fhir_resources.c.dataset_id == dataset_id, fhir_resources.c.resource_id.in_(ids))
    return {(r.resource_type, r.resource_id): r for r in found if (r.resource_type, r.resource_id) in names}


def of_patient(connection: sa.Connection, dataset_id: str, patient_id: str) -> list[StoredResource]:
    """The Patient's own row and every resource attached to it."""
    return _select(connection, fhir_resources.c.dataset_id == dataset_id, fhir_resources.c.patient_id == patient_id)


def patient_by_full_url(connection: sa.Connection, dataset_id: str, full_url: str, tail: bool = False) -> str | None:
    """The id of the dataset's Patient sent with this fullUrl (`tail`: whose absolute fullUrl ends with this
    `Patient/id`, full_url_tail), the first, if any: a lookup by either index."""
    column = fhir_resources.c.full_url_tail if tail else fhir_resources.c.full_url
    query = (
        sa.select(fhir_resources.c.resource_id)
        .where(fhir_resources.c.dataset_id == dataset_id, column == full_url, fhir_resources.c.resource_type == PATIENT)
        .order_by(fhir_resources.c.pk)
        .limit(1)
    )
    return connection.execute(query).scalar()


def patients(connection: sa.Connection, dataset_id: str) -> list[StoredResource]:
    return _select(connection, fhir_resources.c.dataset_id == dataset_id, fhir_resources.c.resource_type == PATIENT)


def pending(connection: sa.Connection, dataset_id: str | None = None) -> list[StoredResource]:
    where = [
        fhir_resources.c.patient_ref.is_not(None),
        fhir_resources.c.patient_id.is_(None),
        fhir_resources.c.resource_type != PATIENT,
    ]
    if dataset_id is not None:
        where.append(fhir_resources.c.dataset_id == dataset_id)
    return _select(connection, *where)


def pending_before(connection: sa.Connection, dataset_id: str | None, before: datetime) -> list[StoredResource]:
    """Pending resources last changed at or before `before` (of one dataset, or of all). The times are
    read first (no content), the rows themselves only when some are that old."""
    c = fhir_resources.c
    where = [c.patient_ref.is_not(None), c.patient_id.is_(None), c.resource_type != PATIENT]
    if dataset_id is not None:
        where.append(c.dataset_id == dataset_id)
    stamps = connection.execute(sa.select(c.pk, c.updated_at).where(*where)).all()
    old = [pk for pk, stamp in stamps if _utc(stamp) <= before]
    return _select(connection, c.pk.in_(old)) if old else []


def subject_of_patient(connection: sa.Connection, dataset_id: str, patient_id: str) -> str | None:
    """The subject pseudonym kept on a Patient's row (None: no such Patient)."""
    c = fhir_resources.c
    query = sa.select(c.subject_id).where(
        c.dataset_id == dataset_id, c.resource_type == PATIENT, c.resource_id == patient_id
    )
    return connection.execute(query).scalar()


def patient_ids_of_subject(connection: sa.Connection, dataset_id: str, subject_id: str) -> list[str]:
    """The ids of the dataset's Patients whose phenopacket has this subject (one person: at most one)."""
    c = fhir_resources.c
    query = sa.select(c.resource_id).where(
        c.dataset_id == dataset_id, c.resource_type == PATIENT, c.subject_id == subject_id
    )
    return sorted(connection.execute(query).scalars())  # (not ORDER BY: see _select)


def delete_all(connection: sa.Connection, resources: Sequence[ResourceState]) -> None:
    if resources:
        connection.execute(sa.delete(fhir_resources).where(fhir_resources.c.pk.in_([r.pk for r in resources])))


def put(
    connection: sa.Connection,
    *,
    dataset_id: str,
    resource_type: str,
    resource_id: str,
    resource: dict[str, Any],
    content_hash: str,
    full_url: str | None,
    full_url_tail: str | None,
    reference_keys: str | None,
    patient_ref: str | None,
    patient_id: str | None,
    subject_id: str | None,
    existing: ResourceState | None,
    now: datetime,
) -> tuple[int, int]:
    """Insert or replace one resource; (its primary key, its new version)."""
    values = {
        "resource": resource,
        "content_hash": content_hash,
        "full_url": full_url,
        "full_url_tail": full_url_tail,
        "reference_keys": reference_keys,  # fhir_resource_references follows it (triggers: migration 0012)
        "patient_ref": patient_ref,
        "patient_id": patient_id,
        "subject_id": subject_id,
        "updated_at": now,
    }
    if existing is None:
        identity = {"dataset_id": dataset_id, "resource_type": resource_type, "resource_id": resource_id}
        tomb = {"tomb_dataset": dataset_id, "tomb_type": resource_type, "tomb_id": resource_id}
        pk, version = connection.execute(_INSERT, {**identity, **tomb, "received_at": now, **values}).one()
        if version > 1:  # created again after a delete: it is no longer gone
            _revived(connection, dataset_id, resource_type, resource_id)
        return pk, version
    version = existing.version + 1
    connection.execute(_UPDATE, {"row_pk": existing.pk, "version": version, **values})
    return existing.pk, version


def delete(connection: sa.Connection, resource: ResourceState, subject_id: str | None, now: datetime) -> None:
    """Delete a resource through the REST API, leaving its tombstone (its last version; `subject_id`: the person
    it was about, when known). Erasure and expiry delete without one (`delete_all`, `erase_subject`)."""
    connection.execute(sa.delete(fhir_resources).where(fhir_resources.c.pk == resource.pk))
    identity = {"dataset_id": resource.dataset_id, "resource_type": resource.resource_type}
    tomb = {**identity, "resource_id": resource.resource_id, "version": resource.version}
    connection.execute(fhir_deleted.insert().values(**tomb, subject_id=subject_id, deleted_at=now))


def _revived(connection: sa.Connection, dataset_id: str, resource_type: str, resource_id: str) -> None:
    """A deleted resource created again: its tombstone goes."""
    c = fhir_deleted.c
    where = (c.dataset_id == dataset_id, c.resource_type == resource_type, c.resource_id == resource_id)
    connection.execute(sa.delete(fhir_deleted).where(*where))


def deleted_version(connection: sa.Connection, dataset_id: str, resource_type: str, resource_id: str) -> int | None:
    """The last version of a resource the REST API deleted (None: it was never kept, or erased)."""
    c = fhir_deleted.c
    query = sa.select(c.version).where(
        c.dataset_id == dataset_id, c.resource_type == resource_type, c.resource_id == resource_id
    )
    return connection.execute(query).scalar()


def restate(connection: sa.Connection, pk: int, resource: dict[str, Any], patient_ref: str | None) -> None:
    """Keep a resource in another form of the same content (a patient reference as the identifier it matched):
    its version stays, the content a client sent is the same."""
    values = {"resource": resource, "patient_ref": patient_ref, "content_hash": content_hash(resource)}
    connection.execute(sa.update(fhir_resources).where(fhir_resources.c.pk == pk).values(**values))


def attach(connection: sa.Connection, pks: Sequence[int], patient_id: str | None) -> None:
    """Point resources at a Patient (None: back to pending)."""
    if pks:
        connection.execute(
            sa.update(fhir_resources).where(fhir_resources.c.pk.in_(list(pks))).values(patient_id=patient_id)
        )


def erase_subject(connection: sa.Connection, subject_id: str, dataset_id: str | None = None) -> int:
    """Delete the Patients whose phenopacket has this subject, with every resource attached to them."""
    query = sa.select(fhir_resources.c.dataset_id, fhir_resources.c.resource_id).where(
        fhir_resources.c.resource_type == PATIENT, fhir_resources.c.subject_id == subject_id
    )
    if dataset_id is not None:
        query = query.where(fhir_resources.c.dataset_id == dataset_id)
    removed = 0
    tombstones = sa.delete(fhir_deleted).where(fhir_deleted.c.subject_id == subject_id)
    if dataset_id is not None:
        tombstones = tombstones.where(fhir_deleted.c.dataset_id == dataset_id)
    connection.execute(tombstones)  # what was deleted of the person leaves no trace either
    for dataset, patient_id in connection.execute(query).all():
        removed += connection.execute(
            sa.delete(fhir_resources).where(
                fhir_resources.c.dataset_id == dataset, fhir_resources.c.patient_id == patient_id
            )
        ).rowcount
    return removed


def of_subject(connection: sa.Connection, dataset_id: str, subject_id: str, resource_type: str) -> list[StoredResource]:
    """The resources of one type attached to the Patients whose phenopacket has this subject."""
    patient_ids = sa.select(fhir_resources.c.resource_id).where(
        fhir_resources.c.dataset_id == dataset_id,
        fhir_resources.c.resource_type == PATIENT,
        fhir_resources.c.subject_id == subject_id,
    )
    return _select(
        connection,
        fhir_resources.c.dataset_id == dataset_id,
        fhir_resources.c.resource_type == resource_type,
        fhir_resources.c.patient_id.in_(patient_ids.scalar_subquery()),
    )
