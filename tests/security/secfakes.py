"""A small in-memory variant store implementing the VariantStore protocol, for the security tests."""

from __future__ import annotations

from dataclasses import replace

import numpy as np

from gateway.variants.protocol import CarrierRow, DatasetSamples, VariantStore
from gateway.variants.query import Carrier, VariantHit, VariantQuery


def _matches(q: VariantQuery, h: VariantHit) -> bool:
    return (
        (q.dataset_ids is None or h.dataset_id in q.dataset_ids)
        and (q.reference_name is None or q.reference_name == h.reference_name)
        and (q.start is None or (h.start == q.start if q.end is None else h.start < q.end and h.end > q.start))
        and (q.reference_bases is None or q.reference_bases in ("N", h.reference_bases))
        and (q.alternate_bases is None or q.alternate_bases in ("N", h.alternate_bases))
        and (not q.variant_ids or h.variant_id in q.variant_ids)
        and (q.gene_id is None or q.gene_id in h.genes)
    )


class FakeVariantStore:
    def __init__(
        self, hits: list[VariantHit], samples: dict[str, int], carriers: dict[str, list[Carrier]] | None = None
    ):
        self.hits = hits
        self.samples = samples
        self._carriers = carriers or {}

    @classmethod
    def standard(cls) -> FakeVariantStore:
        """Per dataset, variants at positions 1000+i on chromosome 1 with allele counts 1, 2, 3, … (i+1)."""
        hits = []
        for ds, n in (("ds-public", 12), ("ds-small", 6), ("ds-controlled", 12)):
            for i in range(n):
                hits.append(
                    VariantHit(
                        variant_id=f"{ds}:GRCh38:1-{1000 + i}-A-G",
                        dataset_id=ds,
                        assembly="GRCh38",
                        reference_name="1",
                        start=1000 + i,
                        end=1001 + i,
                        reference_bases="A",
                        alternate_bases="G",
                        variant_type="SNP",
                        allele_count=i + 1,
                        allele_number=120,
                        carrier_count=i + 1,
                        genes=("GENE1",),
                    )
                )
        return cls(hits, {"ds-public": 60, "ds-small": 10, "ds-controlled": 60})

    def with_hits(self, hits: list[VariantHit]) -> FakeVariantStore:
        return FakeVariantStore(hits, self.samples, self._carriers)

    def datasets(self) -> list[str]:
        return sorted(self.samples)

    def sample_count(self, dataset_id: str) -> int:
        return self.samples.get(dataset_id, 0)

    def _matching(self, q: VariantQuery) -> list[VariantHit]:
        return [h for h in self.hits if _matches(q, h)]

    def search(self, q: VariantQuery, *, skip: int = 0, limit: int = 10) -> tuple[list[VariantHit], int]:
        found = self._matching(q)
        return found[skip : skip + limit], len(found)

    def count(self, q: VariantQuery) -> int:
        return len(self._matching(q))

    def exists(self, q: VariantQuery) -> bool:
        return bool(self._matching(q))

    def carrier_count(self, q: VariantQuery) -> int:
        return sum(h.carrier_count for h in self._matching(q))

    def carriers(self, variant_id: str, limit: int | None = None) -> list[Carrier]:
        return self._carriers.get(variant_id, [])

    def carrier_rows(self, variant_id: str, limit: int | None = None) -> list[CarrierRow]:
        return [(c.sample_id, c.biosample_id, c.individual_id, c.zygosity) for c in self.carriers(variant_id, limit)]

    def get(self, variant_id: str) -> VariantHit | None:
        return next((h for h in self.hits if h.variant_id == variant_id), None)

    def carrier_indexes(self, variant_id: str) -> np.ndarray | None:
        return None if self.get(variant_id) is None else np.empty(0, dtype="<u4")  # no per-sample rows

    def variants_of_individual(
        self, individual_id: str, *, skip: int = 0, limit: int = 10, dataset_ids: tuple[str, ...] | None = None
    ) -> tuple[list[VariantHit], int]:
        return [], 0  # no sample of these datasets is linked to an individual

    def dataset_samples(self, dataset_id: str) -> DatasetSamples | None:
        return None  # sample counts only: no per-sample rows, so no runs or analyses

    def refresh(self) -> None:
        pass

    def erase_individual(self, individual_id: str) -> int:
        return 0

    def purge_erased(self, dataset_ids: list[str] | None = None) -> int:
        return 0

    def delete_dataset(self, dataset_id: str) -> None:
        self.hits = [h for h in self.hits if h.dataset_id != dataset_id]
        self.samples.pop(dataset_id, None)


def as_store(store: FakeVariantStore) -> VariantStore:
    return store  # mypy checks here that the fake implements the protocol


__all__ = ["FakeVariantStore", "replace"]
