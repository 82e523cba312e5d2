"""What crosses the store's boundary: plain, immutable records."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any


@dataclass(frozen=True)
class PhenopacketRecord:
    """A validated phenopacket on its way into the store.

    `subject_id` is the keyed pseudonym of the patient. One phenopacket per
    (dataset_id, subject_id): saving again replaces the earlier version.
    """

    id: str
    dataset_id: str
    subject_id: str
    document: dict[str, Any]
    source: str = ""  # identity of the source document, e.g. "Bundle/<id>" or "sha256:<digest>"
    issues: tuple[dict[str, Any], ...] = ()  # Issue.to_dict() of the warnings met on the way in
    # The validated Phenopacket Family around this phenopacket (relatives, pedigree), or None: none.
    # Its `proband` is not kept (the proband is `document`); saving without one removes an earlier family,
    # unless `keep_family`: a submitted phenopacket sent alone is the proband's own document, and the Family
    # around it is another (phenopacket schema), kept as stored. FHIR rebuilds never keep one: a Family made
    # from FamilyMemberHistory goes when they do.
    family: dict[str, Any] | None = None
    keep_family: bool = False
    # The keyed pseudonym of the label the sender gave the subject (a submitted phenopacket's; None: made from
    # FHIR): one document id about another person is refused, not taken as an update (services.ingest).
    subject_label: str | None = None


@dataclass(frozen=True)
class SaveResult:
    id: str
    subject_id: str
    created: bool  # False when an earlier version was replaced


@dataclass(frozen=True)
class StoredPhenopacket:
    id: str
    dataset_id: str
    subject_id: str
    sex: str | None
    phenotypes: tuple[str, ...]  # observed HPO ids
    excluded_phenotypes: tuple[str, ...]
    diseases: tuple[str, ...]
    document: dict[str, Any]
    source: str
    issues: tuple[dict[str, Any], ...]
    created_at: datetime
    updated_at: datetime
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class StoredFamily:
    """A Family as served: its proband is the phenopacket as stored now."""

    id: str
    phenopacket_id: str
    dataset_id: str
    subject_id: str
    document: dict[str, Any]  # the Family: id, proband, relatives, pedigree, files, metaData
    updated_at: datetime
