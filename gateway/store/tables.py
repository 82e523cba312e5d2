"""The metadata store's tables, as SQLAlchemy Core objects.

These definitions are what queries are written against (the Beacon layer builds its
filters on them). They never create anything: the schema is made by the Alembic
migrations in `gateway/store/migrations/`, and a test checks that the migrated
database and these definitions agree.

Beacon filters become indexed look-ups: an HPO/disease filter is
`phenopacket_terms WHERE kind = ? AND term IN (...) [AND dataset_id = ?]` on
`ix_terms_lookup`, which also covers `phenopacket_pk` so the join needs no table read;
sex and age are columns of `phenopackets` indexed per dataset.
"""

from __future__ import annotations

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import JSONB

# Term kinds in `phenopacket_terms.kind` (see gateway.store.indexing).
PHENOTYPE = "phenotype"
EXCLUDED_PHENOTYPE = "excluded_phenotype"
DISEASE = "disease"
EXCLUDED_DISEASE = "excluded_disease"
BIOSAMPLE_PHENOTYPE = "biosample_phenotype"
SAMPLED_TISSUE = "sampled_tissue"
BIOSAMPLE_TERM = "biosample_term"  # histology, tumour grade/stage/TNM, markers, sample type and status
MEASUREMENT = "measurement"
MEDICAL_ACTION = "medical_action"
GENE = "gene"  # a gene of a genomic interpretation not REJECTED (its CURIE, e.g. HGNC:3603)
TERM_KINDS = (
    PHENOTYPE,
    EXCLUDED_PHENOTYPE,
    DISEASE,
    EXCLUDED_DISEASE,
    BIOSAMPLE_PHENOTYPE,
    SAMPLED_TISSUE,
    BIOSAMPLE_TERM,
    MEASUREMENT,
    MEDICAL_ACTION,
    GENE,
)

# JSONB on PostgreSQL (indexable, compact); JSON text elsewhere.
Document = sa.JSON().with_variant(JSONB(), "postgresql")
# SQLite only auto-increments a column declared exactly INTEGER PRIMARY KEY.
SurrogateKey = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
Timestamp = sa.DateTime(timezone=True)

metadata = sa.MetaData()

datasets = sa.Table(
    "datasets",
    metadata,
    sa.Column("id", sa.String(255), primary_key=True),
    sa.Column("name", sa.String(1024), nullable=False, server_default=""),
    sa.Column("description", sa.Text(), nullable=False, server_default=""),
    sa.Column("created_at", Timestamp, nullable=False),
    sa.Column("updated_at", Timestamp, nullable=False),
)

phenopackets = sa.Table(
    "phenopackets",
    metadata,
    # Surrogate key: the phenopacket id may change between versions of the same
    # patient, and the term rows should not have to follow it.
    sa.Column("pk", SurrogateKey, primary_key=True, autoincrement=True),
    sa.Column("id", sa.String(255), nullable=False),
    sa.Column(
        "dataset_id",
        sa.String(255),
        sa.ForeignKey("datasets.id", name="fk_phenopackets_dataset", ondelete="CASCADE"),
        nullable=False,
    ),
    sa.Column("subject_id", sa.String(255), nullable=False),
    sa.Column("sex", sa.String(32), nullable=True),
    sa.Column("age_iso", sa.String(64), nullable=True),  # subject.timeAtLastEncounter as given
    sa.Column("age_days", sa.Float(), nullable=True),  # the same, in days, for range filters
    sa.Column("vital_status", sa.String(32), nullable=True),
    sa.Column("document", Document, nullable=False),
    sa.Column("source", sa.String(1024), nullable=False, server_default=""),
    # The keyed pseudonym of the subject label a submitted phenopacket gave (migration 0015); NULL: made from FHIR.
    sa.Column("subject_label", sa.String(64), nullable=True),
    sa.Column("issues", Document, nullable=False),
    sa.Column("revision", sa.Integer(), nullable=False),  # 1 on insert, +1 on every replacement
    sa.Column("created_at", Timestamp, nullable=False),
    sa.Column("updated_at", Timestamp, nullable=False),
    sa.UniqueConstraint("id", name="uq_phenopackets_id"),
    sa.UniqueConstraint("dataset_id", "subject_id", name="uq_phenopackets_dataset_subject"),
    sa.Index("ix_phenopackets_subject", "subject_id"),
    sa.Index("ix_phenopackets_dataset_sex", "dataset_id", "sex"),
    sa.Index("ix_phenopackets_dataset_age", "dataset_id", "age_days"),
)

phenopacket_terms = sa.Table(
    "phenopacket_terms",
    metadata,
    sa.Column(
        "phenopacket_pk",
        SurrogateKey,
        sa.ForeignKey("phenopackets.pk", name="fk_terms_phenopacket", ondelete="CASCADE"),
        nullable=False,
    ),
    sa.Column("dataset_id", sa.String(255), nullable=False),  # copied so a per-dataset filter needs no join
    sa.Column("kind", sa.String(32), nullable=False),
    sa.Column("term", sa.String(255), nullable=False),
    sa.Column("label", sa.String(1024), nullable=True),
    sa.PrimaryKeyConstraint("phenopacket_pk", "kind", "term", name="pk_phenopacket_terms"),
    sa.Index("ix_terms_lookup", "kind", "term", "dataset_id", "phenopacket_pk"),
)

biosamples = sa.Table(
    "biosamples",
    metadata,
    sa.Column(
        "phenopacket_pk",
        SurrogateKey,
        sa.ForeignKey("phenopackets.pk", name="fk_biosamples_phenopacket", ondelete="CASCADE"),
        nullable=False,
    ),
    sa.Column("biosample_id", sa.String(255), nullable=False),
    sa.Column("dataset_id", sa.String(255), nullable=False),
    sa.Column("sampled_tissue", sa.String(255), nullable=True),
    sa.PrimaryKeyConstraint("phenopacket_pk", "biosample_id", name="pk_biosamples"),
    sa.Index("ix_biosamples_dataset_biosample", "dataset_id", "biosample_id"),
)

# The Family around a phenopacket (its proband): relatives, pedigree, files and metaData as one
# document, without the proband (that is the phenopacket row, so the two can never disagree).
# Written in the proband's transaction, replaced with it, and gone with it (cascade).
phenopacket_families = sa.Table(
    "phenopacket_families",
    metadata,
    sa.Column(
        "phenopacket_pk",
        SurrogateKey,
        sa.ForeignKey("phenopackets.pk", name="fk_families_phenopacket", ondelete="CASCADE"),
        primary_key=True,
        autoincrement=False,
    ),
    sa.Column("id", sa.String(255), nullable=False),  # the Family's id
    sa.Column("dataset_id", sa.String(255), nullable=False),
    sa.Column("relatives", sa.Integer(), nullable=False),
    sa.Column("document", Document, nullable=False),
    sa.Column("updated_at", Timestamp, nullable=False),
    sa.Index("ix_phenopacket_families_id", "id"),
)

# One row per phenopacket inserted, replaced or deleted, written by triggers in the writing transaction
# (migration 0008): the term index patches itself from the rows it has not seen. `xid` (PostgreSQL only) is the
# writing transaction, compared with a reader's MVCC snapshot; pruned to the last `keep_entries` rows.
phenopacket_changes = sa.Table(
    "phenopacket_changes",
    metadata,
    sa.Column("seq", SurrogateKey, primary_key=True, autoincrement=True),
    sa.Column("phenopacket_pk", SurrogateKey, nullable=False),
    sa.Column("xid", sa.BigInteger(), nullable=True),
    sa.Index("ix_phenopacket_changes_xid", "xid", "phenopacket_pk"),
    sqlite_autoincrement=True,
)

# One row (id 1): the highest `seq` and `xid` pruned from `phenopacket_changes`, and how much is kept.
phenopacket_changes_horizon = sa.Table(
    "phenopacket_changes_horizon",
    metadata,
    sa.Column("id", sa.Integer(), primary_key=True, autoincrement=False),
    sa.Column("pruned_seq", sa.BigInteger(), nullable=False),
    sa.Column("pruned_xid", sa.BigInteger(), nullable=False),
    sa.Column("keep_entries", sa.BigInteger(), nullable=False),
    sa.Column("prune_every", sa.BigInteger(), nullable=False),
    sa.Column("prunes", sa.BigInteger(), nullable=False),  # how many prunes have deleted rows (PostgreSQL's check)
)

# One row (id 1): on PostgreSQL bumped by a trigger in every transaction that writes `phenopackets` or
# `phenopacket_terms` (migration 0002), read by per-process caches to know they are still current.
store_version = sa.Table(
    "store_version",
    metadata,
    sa.Column("id", sa.Integer(), primary_key=True, autoincrement=False),
    sa.Column("version", sa.BigInteger(), nullable=False),
)

# FHIR resources as the REST surface received them (gateway.services.fhir_resources): per dataset,
# one row per resource, the latest version. `patient_ref` is the subject/patient reference as
# written; `patient_id` the stored Patient it resolved to (the Patient's own id on a Patient row).
# A row with a `patient_ref` but no `patient_id` is pending: its Patient has not arrived yet.
_PENDING = sa.text("patient_ref IS NOT NULL AND patient_id IS NULL")  # see ResourceState.pending
fhir_resources = sa.Table(
    "fhir_resources",
    metadata,
    sa.Column("pk", SurrogateKey, primary_key=True, autoincrement=True),
    sa.Column(
        "dataset_id",
        sa.String(255),
        sa.ForeignKey("datasets.id", name="fk_fhir_resources_dataset", ondelete="CASCADE"),
        nullable=False,
    ),
    sa.Column("resource_type", sa.String(64), nullable=False),
    sa.Column("resource_id", sa.String(64), nullable=False),
    sa.Column("version", sa.Integer(), nullable=False),  # 1 on create, +1 on every change of content
    sa.Column("full_url", sa.String(1024), nullable=True),  # as sent in a Bundle: its references use it
    sa.Column("patient_ref", sa.String(1024), nullable=True),
    sa.Column("patient_id", sa.String(64), nullable=True),
    # On a Patient row: the subject pseudonym of its phenopacket, so that erasing a subject erases these rows.
    sa.Column("subject_id", sa.String(255), nullable=True),
    sa.Column("content_hash", sa.String(64), nullable=False),  # the same resource again changes nothing
    sa.Column("resource", Document, nullable=False),
    sa.Column("received_at", Timestamp, nullable=False),
    sa.Column("updated_at", Timestamp, nullable=False),
    # The `Type/id` tail of an absolute fullUrl (a reference finds the resource by it): see migration 0009.
    sa.Column("full_url_tail", sa.String(1024), nullable=True),
    # The keys the resource's references may name their targets by (a JSON list; fhir_resource_references holds
    # them one per row, kept so by triggers: migration 0012).
    sa.Column("reference_keys", sa.Text(), nullable=True),
    sa.UniqueConstraint("dataset_id", "resource_type", "resource_id", name="uq_fhir_resources_identity"),
    sa.Index("ix_fhir_resources_patient", "dataset_id", "patient_id"),
    sa.Index("ix_fhir_resources_subject_of", "subject_id", "dataset_id", "resource_type"),  # migration 0013
    sa.Index("ix_fhir_resources_full_url", "dataset_id", "full_url"),
    sa.Index("ix_fhir_resources_full_url_tail", "dataset_id", "full_url_tail"),
    # pending rows (a patient reference, no patient yet) by age: the expiry reads the first
    sa.Index("ix_fhir_resources_pending", "dataset_id", "updated_at", sqlite_where=_PENDING, postgresql_where=_PENDING),
)

# Which kept resources' references may name a resource, by key (a reference as written and without `/_history/`;
# `Type?` for a conditional one): so a write of a resource that belongs to no patient finds the patients whose
# phenopackets it changes by index, not by reading the dataset. Filled from fhir_resources.reference_keys by
# triggers on insert and update, emptied with its row (ON DELETE CASCADE): migration 0012.
fhir_resource_references = sa.Table(
    "fhir_resource_references",
    metadata,
    sa.Column(
        "resource_pk",
        SurrogateKey,
        sa.ForeignKey("fhir_resources.pk", name="fk_fhir_resource_references_resource", ondelete="CASCADE"),
        primary_key=True,
    ),
    sa.Column("ref_key", sa.String(1024), primary_key=True),
    sa.Column("dataset_id", sa.String(255), nullable=False),
    sa.Index("ix_fhir_resource_references_key", "dataset_id", "ref_key"),
)

# Each kept resource's identifiers (system, '' for none; value as kept: a Patient's as its pseudonym), so a
# conditional reference, create, update or delete (`Type?identifier=token`) finds its match by index. Filled from
# fhir_resources.resource by triggers on insert and update, emptied with its row (ON DELETE CASCADE): migration 0013
# (a list of Identifiers), 0016 (one Identifier, R4 Composition's).
fhir_identifiers = sa.Table(
    "fhir_identifiers",
    metadata,
    sa.Column(
        "resource_pk",
        SurrogateKey,
        sa.ForeignKey("fhir_resources.pk", name="fk_fhir_identifiers_resource", ondelete="CASCADE"),
        primary_key=True,
    ),
    sa.Column("system", sa.String(1024), primary_key=True),
    sa.Column("value", sa.String(1024), primary_key=True),
    sa.Column("dataset_id", sa.String(255), nullable=False),
    sa.Column("resource_type", sa.String(64), nullable=False),
    sa.Index("ix_fhir_identifiers_value", "dataset_id", "resource_type", "value", "system"),
    sa.Index("ix_fhir_identifiers_system", "dataset_id", "resource_type", "system"),
)

# A FHIR resource the REST API deleted (migration 0014): its last version, so that a read answers 410 Gone and the
# id created again continues the versions. `subject_id`: the person it was about, when known (an erasure removes
# their tombstones). None is written for an erasure or an expired pending resource.
fhir_deleted = sa.Table(
    "fhir_deleted",
    metadata,
    sa.Column(
        "dataset_id",
        sa.String(255),
        sa.ForeignKey("datasets.id", name="fk_fhir_deleted_dataset", ondelete="CASCADE"),
        primary_key=True,
    ),
    sa.Column("resource_type", sa.String(64), primary_key=True),
    sa.Column("resource_id", sa.String(64), primary_key=True),
    sa.Column("version", sa.Integer(), nullable=False),
    sa.Column("subject_id", sa.String(255), nullable=True),
    sa.Column("deleted_at", Timestamp, nullable=False),
    sa.Index("ix_fhir_deleted_subject", "subject_id"),
)

# The second phase of an erasure (gateway.security.purge_jobs): one row per erasure whose deleted rows' old copies
# (PostgreSQL dead tuples and index entries, SQLite WAL frames) are still to be purged, written in the erasure's
# transaction. `status` pending -> done; `not_before` is a claimed row's lease or a failed attempt's back-off.
erasure_purges = sa.Table(
    "erasure_purges",
    metadata,
    sa.Column("id", SurrogateKey, primary_key=True, autoincrement=True),
    sa.Column("action", sa.String(32), nullable=False),  # erase-subject / erase-dataset
    sa.Column("reference", sa.String(255), nullable=False),  # the audit log's keyed reference, never a pseudonym
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("attempts", sa.Integer(), nullable=False),
    sa.Column("last_error", sa.Text(), nullable=False),
    sa.Column("created_at", Timestamp, nullable=False),
    sa.Column("updated_at", Timestamp, nullable=False),
    sa.Column("not_before", Timestamp, nullable=True),
    sa.Column("done_at", Timestamp, nullable=True),
    sa.Index("ix_erasure_purges_due", "status", "not_before"),
)
