"""Erasure: a subject withdraws consent, or a dataset is withdrawn.

A subject's phenopackets (with their term, biosample and family rows, by cascade), their place as a
relative in other probands' Families, and their
samples' genotypes in every variant dataset (allele and carrier counts corrected) go in
one metadata transaction: the variant store writes its new versions inside it, so a
failure there rolls the metadata deletion back. Cached dataset sizes are dropped. The
audit record names the subject only by a keyed hash, so the log keeps no pseudonym of a
person who left. The audit is write-ahead: the intent is on disk (fsynced) before anything
is deleted, and an unwritable log refuses the erasure (OSError) before it starts; the
outcome follows, and failing to write it does not undo or hide an erasure that happened.

What is deleted is also gone as bytes, as far as the stores can see to it (docs/ERASURE.md): the variant store
writes its new versions with nothing of the erased samples in them and SQLite zeroes deleted rows (secure_delete).
The old copies the database keeps (SQLite's WAL, PostgreSQL's dead tuples and index entries) are purged in a second
phase, outside the request: the erasure's transaction queues a durable job (gateway.security.purge_jobs) and
`wake_purge` tells the node's purge worker.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from gateway.security.purge_jobs import enqueue_in

if TYPE_CHECKING:
    from gateway.security.audit import AuditLog
    from gateway.security.service import Security
    from gateway.store.metadata import MetadataStore
    from gateway.variants.protocol import VariantStore

log = logging.getLogger(__name__)
MAX_ID = 255


def _audit_intent(
    audit: Any, action: str, reference: str, who: dict[str, Any], datasets: list[str] | None = None
) -> None:
    if audit is not None:  # raises OSError when the log cannot be written: nothing has been erased yet
        audit.append(
            durable=True, phase="intent", decision="allowed", action=action, reason=reference, datasets=datasets, **who
        )


def _audit_outcome(audit: Any, who: dict[str, Any], **fields: Any) -> None:
    if audit is None:
        return
    try:
        audit.append(phase="outcome", decision="allowed", **fields, **who)
    except OSError:  # the erasure happened and its intent is on disk: report it done, log the gap
        log.exception("audit outcome of an erasure not written (its intent record is on disk)")


@dataclass(frozen=True)
class ErasureResult:
    phenopackets: int
    samples: int
    reference: str  # keyed hash of what was erased, as written to the audit log
    families: int = 0  # Families of other probands the person was taken out of (as a relative)
    purge_job: int = 0  # the queued second phase (gateway.security.purge_jobs)


def erasure_reference(key: bytes, kind: str, value: str) -> str:
    return kind + "-" + hmac.new(key, f"erased\x1f{kind}\x1f{value}".encode(), hashlib.sha256).hexdigest()[:24]


def erase_subject(
    store: MetadataStore,
    variants: VariantStore | None,
    subject_id: str,
    *,
    key: bytes,
    audit: AuditLog | None = None,
    security: Security | None = None,
    wake_purge: Callable[[], None] | None = None,
    **who: Any,  # caller, issuer, request_id, endpoint: for the audit record
) -> ErasureResult:
    if not subject_id or len(subject_id) > MAX_ID:
        raise ValueError(f"give the subject's pseudonym (1-{MAX_ID} characters)")
    reference = erasure_reference(key, "subject", subject_id)
    _audit_intent(audit, "erase-subject", reference, who)
    with store.transaction() as connection:
        removed = store.delete_subject_in(connection, subject_id)  # their own Family goes with it
        probands = store.erase_relative_in(connection, subject_id)  # and they leave other probands' Families
        for dataset_id, proband in probands:
            _forget_family_history(connection, key, subject_id, dataset_id, proband)
        samples = variants.erase_individual(subject_id) if variants is not None else 0
        job = enqueue_in(connection, "erase-subject", reference)
    if security is not None:
        security.forget_sizes()
    families = len(probands)
    result = ErasureResult(removed, samples, reference, families, job)
    _audit_outcome(
        audit,
        who,
        action="erase-subject",
        reason=f"{result.reference}: {removed} phenopacket(s), {samples} sample(s), {families} family record(s); "
        f"purge of old copies queued (purge job {job})",
    )
    if wake_purge is not None:
        wake_purge()
    return result


def _forget_family_history(connection: Any, key: bytes, relative_id: str, dataset_id: str, proband: str) -> None:
    """The FamilyMemberHistory a relative came from (FHIR REST surface), deleted: kept, the proband's next
    rebuild would bring the relative back. Its relative id is keyed from the resource (translators/fhir/family)."""
    from gateway.security.pseudonym import derived_id
    from gateway.store import fhir_resources

    for history in fhir_resources.of_subject(connection, dataset_id, proband, "FamilyMemberHistory"):
        source = f"FamilyMemberHistory/{history.resource_id}"
        if derived_id(key, "relative", dataset_id, proband, source) == relative_id:
            fhir_resources.delete_all(connection, [history])  # erased: no tombstone


def erase_dataset(
    store: MetadataStore,
    variants: VariantStore | None,
    dataset_id: str,
    *,
    key: bytes,
    audit: AuditLog | None = None,
    security: Security | None = None,
    wake_purge: Callable[[], None] | None = None,
    **who: Any,  # caller, issuer, request_id, endpoint: for the audit record
) -> ErasureResult:
    if not dataset_id or len(dataset_id) > MAX_ID or any(ord(c) < 32 for c in dataset_id):
        raise ValueError(f"give the dataset id (1-{MAX_ID} printable characters)")
    # Only a name the variant store holds is handed to it: an id it cannot name (x:y) has no variants to erase.
    had_variants = variants is not None and dataset_id in variants.datasets()
    _audit_intent(audit, "erase-dataset", "", who, datasets=[dataset_id])
    with store.transaction() as connection:
        removed = store.delete_dataset_in(connection, dataset_id)
        job = enqueue_in(connection, "erase-dataset", dataset_id)
    if had_variants and variants is not None:
        variants.delete_dataset(dataset_id)
        variants.refresh()
    if security is not None:
        security.forget_sizes()
    result = ErasureResult(removed, int(had_variants), dataset_id, purge_job=job)
    _audit_outcome(
        audit,
        who,
        action="erase-dataset",
        datasets=[dataset_id],
        reason=f"{removed} phenopacket(s), variant store {'removed' if had_variants else 'absent'}; "
        f"purge of old copies queued (purge job {job})",
    )
    if wake_purge is not None:
        wake_purge()
    return result
