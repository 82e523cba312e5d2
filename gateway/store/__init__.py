"""Storage: the metadata store (SQLAlchemy; SQLite by default, PostgreSQL in production).

The store never knows about HTTP or FHIR. It receives finished, validated documents
(`PhenopacketRecord`) and keeps them, all-or-nothing.
"""

from gateway.store.records import PhenopacketRecord, SaveResult, StoredPhenopacket

__all__ = ["PhenopacketRecord", "SaveResult", "StoredPhenopacket"]
