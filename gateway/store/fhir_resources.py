"""FHIR resources as received, per dataset: the rows behind the FHIR REST surface.

Plain functions over a caller's connection (`MetadataStore.transaction()`), so that a resource,
the resources it attaches and the phenopacket they make change in one transaction. The store
knows nothing of FHIR's rules: which Patient a resource belongs to is decided by
gateway.services.fhir_resources and handed in as `patient_id`.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa

from gateway.store.tables import fhir_resources

PATIENT = "Patient"


@dataclass(frozen=True)
class StoredResource:
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
    resource: dict[str, Any]
    received_at: datetime
    updated_at: datetime

    @property
    def pending(self) -> bool:
        """Names a Patient that has not arrived (yet)."""
        return self.patient_ref is not None and self.patient_id is None and self.resource_type != PATIENT


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


def _heads(connection: sa.Connection, *where: Any) -> list[ResourceHead]:
    query = sa.select(*_HEAD).where(*where).order_by(fhir_resources.c.resource_type, fhir_resources.c.resource_id)
    return [ResourceHead(**row) for row in connection.execute(query).mappings()]


def heads_of_patient(connection: sa.Connection, dataset_id: str, patient_id: str) -> list[ResourceHead]:
    """`of_patient` without the content."""
    return _heads(connection, fhir_resources.c.dataset_id == dataset_id, fhir_resources.c.patient_id == patient_id)


def unattached_heads(connection: sa.Connection, dataset_id: str) -> list[ResourceHead]:
    """`unattached` without the content."""
    return _heads(
        connection,
        fhir_resources.c.dataset_id == dataset_id,
        fhir_resources.c.patient_ref.is_(None),
        fhir_resources.c.resource_type != PATIENT,
    )


def contents(connection: sa.Connection, pks: Sequence[int]) -> dict[int, dict[str, Any]]:
    """The kept content of resources by primary key."""
    if not pks:
        return {}
    query = sa.select(fhir_resources.c.pk, fhir_resources.c.resource).where(fhir_resources.c.pk.in_(list(pks)))
    return {pk: resource for pk, resource in connection.execute(query).all()}


def content_hash(resource: dict[str, Any]) -> str:
    """Of the content a client controls: `meta` (versionId, lastUpdated) is the server's."""
    content = {k: v for k, v in resource.items() if k != "meta"}
    return hashlib.sha256(json.dumps(content, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


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
    return changed


def restate(
    connection: sa.Connection,
    form: Callable[[dict[str, Any], str | None], tuple[dict[str, Any], str | None]],
    batch: int = 500,
) -> int:
    """Rewrite every kept resource (and its patient reference) into `form`'s storage form, in batches by pk;
    the number of rows changed. A row is written only when the form differs and only if nobody changed it
    meanwhile (same content hash); its version stays: the content a client sent is the same."""
    c = fhir_resources.c
    changed, last = 0, 0
    while True:
        found = connection.execute(
            sa.select(c.pk, c.resource, c.patient_ref, c.content_hash).where(c.pk > last).order_by(c.pk).limit(batch)
        ).all()
        if not found:
            return changed
        for pk, resource, patient_ref, digest in found:
            kept, reference = form(resource, patient_ref)
            if (kept, reference) != (resource, patient_ref):
                changed += connection.execute(
                    sa.update(fhir_resources)
                    .where(c.pk == pk, c.content_hash == digest)
                    .values(resource=kept, patient_ref=reference, content_hash=content_hash(kept))
                ).rowcount
        last = found[-1][0]


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
    head, bar, value = reference.rpartition("|")
    return f"{head}{bar}{step(value)}" if bar and head.startswith(PATIENT + "?identifier=") else reference


def _utc(stamp: datetime) -> datetime:
    return stamp.replace(tzinfo=UTC) if stamp.tzinfo is None else stamp.astimezone(UTC)


def _stored(row: Any) -> StoredResource:
    values = dict(row)
    for name in ("received_at", "updated_at"):
        values[name] = _utc(values[name])
    return StoredResource(**values)


def _select(connection: sa.Connection, *where: Any) -> list[StoredResource]:
    query = (
        sa.select(fhir_resources).where(*where).order_by(fhir_resources.c.resource_type, fhir_resources.c.resource_id)
    )
    return [_stored(row) for row in connection.execute(query).mappings()]


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


def patient_by_full_url(connection: sa.Connection, dataset_id: str, full_url: str, like: bool = False) -> str | None:
    """The id of the dataset's Patient sent with this fullUrl (`like`: a LIKE pattern), the first, if any."""
    matches = fhir_resources.c.full_url.like(full_url) if like else fhir_resources.c.full_url == full_url
    query = (
        sa.select(fhir_resources.c.resource_id)
        .where(fhir_resources.c.dataset_id == dataset_id, fhir_resources.c.resource_type == PATIENT, matches)
        .order_by(fhir_resources.c.pk)
        .limit(1)
    )
    return connection.execute(query).scalar()


def patients(connection: sa.Connection, dataset_id: str) -> list[StoredResource]:
    return _select(connection, fhir_resources.c.dataset_id == dataset_id, fhir_resources.c.resource_type == PATIENT)


def unattached(connection: sa.Connection, dataset_id: str) -> list[StoredResource]:
    """Resources about no patient (Medication, a Specimen without subject …), reachable by reference."""
    return _select(
        connection,
        fhir_resources.c.dataset_id == dataset_id,
        fhir_resources.c.patient_ref.is_(None),
        fhir_resources.c.resource_type != PATIENT,
    )


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
    query = (
        sa.select(c.resource_id)
        .where(c.dataset_id == dataset_id, c.resource_type == PATIENT, c.subject_id == subject_id)
        .order_by(c.resource_id)
    )
    return list(connection.execute(query).scalars())


def delete_all(connection: sa.Connection, resources: Sequence[StoredResource]) -> None:
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
    patient_ref: str | None,
    patient_id: str | None,
    subject_id: str | None,
    existing: StoredResource | None,
    now: datetime,
) -> int:
    """Insert or replace one resource; returns its new version."""
    values = {
        "resource": resource,
        "content_hash": content_hash,
        "full_url": full_url,
        "patient_ref": patient_ref,
        "patient_id": patient_id,
        "subject_id": subject_id,
        "updated_at": now,
    }
    if existing is None:
        connection.execute(
            sa.insert(fhir_resources).values(
                dataset_id=dataset_id,
                resource_type=resource_type,
                resource_id=resource_id,
                version=1,
                received_at=now,
                **values,
            )
        )
        return 1
    version = existing.version + 1
    connection.execute(
        sa.update(fhir_resources).where(fhir_resources.c.pk == existing.pk).values(version=version, **values)
    )
    return version


def delete(connection: sa.Connection, resource: StoredResource) -> None:
    connection.execute(sa.delete(fhir_resources).where(fhir_resources.c.pk == resource.pk))


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
