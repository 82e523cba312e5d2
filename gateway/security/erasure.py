"""Erasure: a subject withdraws consent, or a dataset is withdrawn.

A subject's phenopackets (with their term and biosample rows, by cascade) and their
samples' genotypes in every variant dataset (allele and carrier counts corrected) go in
one metadata transaction: the variant store writes its new versions inside it, so a
failure there rolls the metadata deletion back. Cached dataset sizes are dropped. The
audit record names the subject only by a keyed hash, so the log keeps no pseudonym of a
person who left.
"""

from __future__ import annotations

import hashlib
import hmac
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from gateway.security.audit import AuditLog
    from gateway.security.service import Security
    from gateway.store.metadata import MetadataStore
    from gateway.variants.protocol import VariantStore


@dataclass(frozen=True)
class ErasureResult:
    phenopackets: int
    samples: int
    reference: str  # keyed hash of what was erased, as written to the audit log


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
    **who: Any,  # caller, issuer, request_id, endpoint: for the audit record
) -> ErasureResult:
    if not subject_id or len(subject_id) > 255:
        raise ValueError("give the subject's pseudonym (1-255 characters)")
    with store.transaction() as connection:
        removed = store.delete_subject_in(connection, subject_id)
        samples = variants.erase_individual(subject_id) if variants is not None else 0
    if security is not None:
        security.forget_sizes()
    result = ErasureResult(removed, samples, erasure_reference(key, "subject", subject_id))
    if audit is not None:
        audit.append(
            decision="allowed",
            action="erase-subject",
            reason=f"{result.reference}: {removed} phenopacket(s), {samples} sample(s)",
            **who,
        )
    return result


def erase_dataset(
    store: MetadataStore,
    variants: VariantStore | None,
    dataset_id: str,
    *,
    key: bytes,
    audit: AuditLog | None = None,
    security: Security | None = None,
    **who: Any,  # caller, issuer, request_id, endpoint: for the audit record
) -> ErasureResult:
    removed = store.delete_dataset(dataset_id)
    had_variants = variants is not None and dataset_id in variants.datasets()
    if variants is not None:
        variants.delete_dataset(dataset_id)
        variants.refresh()
    if security is not None:
        security.forget_sizes()
    result = ErasureResult(removed, int(had_variants), dataset_id)
    if audit is not None:
        audit.append(
            decision="allowed",
            action="erase-dataset",
            datasets=[dataset_id],
            reason=f"{removed} phenopacket(s), variant store {'removed' if had_variants else 'absent'}",
            **who,
        )
    return result
