"""The variant store as the rest of the gateway sees it: a typing Protocol, no implementation.

`gateway.variants.store.VariantStore` (one SQLite file per dataset version) implements it; so does
the tests' in-memory fake (tests/beacon/fake_store.py), and so would any future backend. The Beacon
engine, the access rules and the demo loader type their store as `VariantReader` (queries only) or
`VariantStore` (queries and the changes erasure needs), never as the SQLite class.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import numpy as np

from gateway.variants.query import Carrier, VariantHit, VariantQuery

# A carrier as a plain tuple, in Carrier's field order: (sample_id, biosample_id, individual_id, zygosity).
CarrierRow = tuple[str, str | None, str | None, str]


@dataclass(frozen=True)
class SampleRow:
    """One VCF sample of a dataset's live version, linked or not."""

    name: str
    individual_id: str | None
    biosample_id: str | None


@dataclass(frozen=True)
class DatasetSamples:
    """The samples of a dataset's live version; `version` changes whenever the dataset does."""

    dataset_id: str
    version: str
    created: str  # ISO date-time of the version
    assembly: str
    records: int  # variant records written
    samples: tuple[SampleRow, ...]


class VariantReader(Protocol):
    """The queries the Beacon side runs (g_variants, cross-links, access rules)."""

    def datasets(self) -> list[str]:
        """Datasets with a live version, sorted."""
        ...

    def search(self, q: VariantQuery, *, skip: int = 0, limit: int = 10) -> tuple[list[VariantHit], int]:
        """One page of hits and the total number of hits."""
        ...

    def count(self, q: VariantQuery) -> int: ...

    def exists(self, q: VariantQuery) -> bool: ...

    def carrier_count(self, q: VariantQuery) -> int:
        """Distinct samples carrying any hit."""
        ...

    def get(self, variant_id: str) -> VariantHit | None: ...

    def carriers(self, variant_id: str, limit: int | None = None) -> list[Carrier]: ...

    def carrier_rows(self, variant_id: str, limit: int | None = None) -> list[CarrierRow]:
        """`carriers` as tuples (the record builder's fast path)."""
        ...

    def carrier_indexes(self, variant_id: str) -> np.ndarray | None:
        """The variant's carriers as ascending sample indexes, positions in `dataset_samples(...).samples` of the
        variant's dataset (no object per carrier: cross-links page over them); None for an unknown variant."""
        ...

    def variants_of_individual(
        self, individual_id: str, *, skip: int = 0, limit: int = 10, dataset_ids: tuple[str, ...] | None = None
    ) -> tuple[list[VariantHit], int]:
        """One page of the variants the individual carries, and their number (in `dataset_ids` only, when given)."""
        ...

    def sample_count(self, dataset_id: str) -> int:
        """Samples of the dataset's live version that are not erased (0 for an unknown dataset)."""
        ...

    def dataset_samples(self, dataset_id: str) -> DatasetSamples | None:
        """The live version's samples, or None when the dataset has no live version."""
        ...


class VariantStore(VariantReader, Protocol):
    """A reader that also takes the changes erasure and ingest make."""

    def refresh(self) -> None:
        """Forget cached version pointers (after an ingest in this process)."""
        ...

    def delete_dataset(self, dataset_id: str) -> None: ...

    def erase_individual(self, individual_id: str) -> int:
        """Take the individual's samples out of every answer; the number of samples changed."""
        ...

    def purge_erased(self, dataset_ids: list[str] | None = None) -> int:
        """Remove from the files the samples of erasures still pending there; the number of datasets rewritten."""
        ...
