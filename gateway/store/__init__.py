"""Storage: the metadata store (SQLAlchemy; SQLite by default, PostgreSQL in production).

The store never knows about HTTP or FHIR. It receives finished, validated documents
(`PhenopacketRecord`) and keeps them, all-or-nothing.
"""

from gateway.store.indexing import index_fields
from gateway.store.metadata import MetadataStore, StoreError, UnknownDatasetError
from gateway.store.records import PhenopacketRecord, SaveResult, StoredFamily, StoredPhenopacket

__all__ = [
    "MetadataStore",
    "PhenopacketRecord",
    "SaveResult",
    "StoreError",
    "StoredFamily",
    "StoredPhenopacket",
    "UnknownDatasetError",
    "index_fields",
]
