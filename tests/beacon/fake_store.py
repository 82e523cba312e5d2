"""An in-memory variant store implementing the VariantReader protocol, for parser and envelope tests."""

from __future__ import annotations

import fnmatch

import numpy as np

from gateway.variants.protocol import CarrierRow, DatasetSamples, SampleRow, VariantReader
from gateway.variants.query import Carrier, VariantHit, VariantQuery


def _bases_match(pattern: str | None, value: str) -> bool:
    if not pattern:
        return True
    return fnmatch.fnmatchcase(value, pattern.replace("N", "?")) if "N" in pattern else pattern == value


def matches(q: VariantQuery, h: VariantHit) -> bool:
    length = h.extra.get("length", len(h.reference_bases))
    checks = [
        q.dataset_ids is None or h.dataset_id in q.dataset_ids,
        q.assembly is None or q.assembly == h.assembly,
        q.reference_name is None or q.reference_name == h.reference_name,
        not (q.start is not None and q.end is None) or h.start == q.start,
        not (q.start is not None and q.end is not None) or (h.start < q.end and h.end > q.start),
        q.start_range is None or q.start_range[0] <= h.start <= q.start_range[1],
        q.end_range is None or q.end_range[0] <= h.end <= q.end_range[1],
        _bases_match(q.reference_bases, h.reference_bases),
        _bases_match(q.alternate_bases, h.alternate_bases),
        not q.variant_types or h.variant_type in q.variant_types,
        q.min_length is None or length >= q.min_length,
        q.max_length is None or length <= q.max_length,
        q.gene_id is None or q.gene_id in h.genes,
        q.aa_change is None or q.aa_change in h.aa_changes,
        not q.variant_ids or h.variant_id in q.variant_ids,
    ]
    return all(checks)


class FakeVariantStore:
    def __init__(self, hits: list[VariantHit], carriers: dict[str, list[Carrier]]):
        self.hits = hits
        self._carriers = carriers
        self.calls: list[tuple[str, VariantQuery]] = []

    def datasets(self) -> list[str]:
        return sorted({h.dataset_id for h in self.hits})

    def _matching(self, q: VariantQuery) -> list[VariantHit]:
        return [h for h in self.hits if matches(q, h)]

    def search(self, q: VariantQuery, *, skip: int = 0, limit: int = 10) -> tuple[list[VariantHit], int]:
        self.calls.append(("search", q))
        found = self._matching(q)
        return found[skip : skip + limit], len(found)

    def count(self, q: VariantQuery) -> int:
        self.calls.append(("count", q))
        return len(self._matching(q))

    def exists(self, q: VariantQuery) -> bool:
        self.calls.append(("exists", q))
        return bool(self._matching(q))

    def carrier_count(self, q: VariantQuery) -> int:
        samples = {(h.dataset_id, c.sample_id) for h in self._matching(q) for c in self._carriers.get(h.variant_id, [])}
        return len(samples)

    def get(self, variant_id: str) -> VariantHit | None:
        return next((h for h in self.hits if h.variant_id == variant_id), None)

    def carriers(self, variant_id: str, limit: int | None = None) -> list[Carrier]:
        return list(self._carriers.get(variant_id, []))[:limit]

    def carrier_rows(self, variant_id: str, limit: int | None = None) -> list[CarrierRow]:
        return [(c.sample_id, c.biosample_id, c.individual_id, c.zygosity) for c in self.carriers(variant_id, limit)]

    def carrier_indexes(self, variant_id: str) -> np.ndarray | None:
        found = self.get(variant_id)
        if found is None:
            return None
        order = {name: i for i, name in enumerate(self._samples(found.dataset_id))}
        return np.array(sorted(order[c.sample_id] for c in self._carriers.get(variant_id, [])), dtype="<u4")

    def variants_of_individual(
        self, individual_id: str, *, skip: int = 0, limit: int = 10, dataset_ids: tuple[str, ...] | None = None
    ) -> tuple[list[VariantHit], int]:
        held = [
            h
            for h in self.hits
            if any(c.individual_id == individual_id for c in self._carriers.get(h.variant_id, []))
            and (dataset_ids is None or h.dataset_id in dataset_ids)
        ]
        return held[skip : skip + limit], len(held)

    def _samples(self, dataset_id: str) -> dict[str, Carrier]:
        hits = (h for h in self.hits if h.dataset_id == dataset_id)
        return {c.sample_id: c for h in hits for c in self._carriers.get(h.variant_id, [])}

    def sample_count(self, dataset_id: str) -> int:
        return len(self._samples(dataset_id))

    def dataset_samples(self, dataset_id: str) -> DatasetSamples | None:
        if dataset_id not in self.datasets():
            return None
        rows = tuple(
            SampleRow(c.sample_id, c.individual_id, c.biosample_id) for c in self._samples(dataset_id).values()
        )
        return DatasetSamples(dataset_id, "v1", "2024-06-01T00:00:00Z", "GRCh38", len(self.hits), rows)


def as_reader(store: FakeVariantStore) -> VariantReader:
    return store  # mypy checks here that the fake implements the protocol


def hit(dataset, chrom, start, ref, alt, vtype, end=None, **kw) -> VariantHit:
    end = end if end is not None else start + len(ref)
    vid = f"{dataset}:GRCh38:{chrom}-{start}-{ref}-{alt}"
    return VariantHit(vid, dataset, kw.pop("assembly", "GRCh38"), chrom, start, end, ref, alt, vtype, **kw)


def sample_store() -> FakeVariantStore:
    """Two datasets; SNPs, indels, symbolic SVs, annotations, carriers linked and unlinked."""
    hits = [
        hit(
            "ds1",
            "17",
            43045711,
            "G",
            "A",
            "SNP",
            genes=("BRCA1",),
            aa_changes=("p.Arg1443Ter",),
            molecular_effects=("SO:0001587",),
            identifiers=("rs80357123",),
            allele_count=3,
            allele_number=20,
            carrier_count=2,
        ),
        hit(
            "ds1",
            "17",
            43045800,
            "AT",
            "A",
            "DEL",
            genes=("BRCA1",),
            allele_count=1,
            allele_number=20,
            carrier_count=1,
            extra={"length": 1},
        ),
        hit(
            "ds1",
            "17",
            43046000,
            "C",
            "CTT",
            "INS",
            allele_count=1,
            allele_number=20,
            carrier_count=1,
            extra={"length": 2},
        ),
        hit("ds1", "22", 1000, "C", "T", "SNP", allele_count=0, allele_number=20),
        hit(
            "ds1",
            "22",
            5000,
            "A",
            "<DEL>",
            "DEL",
            end=15000,
            extra={"length": 10000},
            allele_count=1,
            allele_number=20,
            carrier_count=1,
        ),
        hit("ds1", "22", 20000, "G", "<DUP>", "DUP", end=30000, extra={"length": 10000}),
        hit("ds1", "22", 40000, "T", "<INV>", "INV", end=41000, extra={"length": 1000}),
        hit(
            "ds2", "17", 43045711, "G", "A", "SNP", genes=("BRCA1",), allele_count=1, allele_number=10, carrier_count=1
        ),
        hit(
            "ds2",
            "7",
            140753335,
            "A",
            "T",
            "SNP",
            genes=("BRAF",),
            aa_changes=("V600E",),
            molecular_effects=("SO:0001583",),
            allele_count=2,
            allele_number=10,
            carrier_count=2,
        ),
    ]
    carriers = {
        hits[0].variant_id: [Carrier("S1", "bs-1", "ind-1", "GENO:0000135"), Carrier("S2", None, None, "GENO:0000136")],
        hits[1].variant_id: [Carrier("S1", "bs-1", "ind-1", "GENO:0000135")],
        hits[2].variant_id: [Carrier("S3", None, None, "GENO:0000135")],
        hits[4].variant_id: [Carrier("S2", None, None, "GENO:0000135")],
        hits[7].variant_id: [Carrier("T1", "bs-9", "ind-9", "GENO:0000135")],
        hits[8].variant_id: [Carrier("T1", "bs-9", "ind-9", "GENO:0000135"), Carrier("T2", None, None, "GENO:0000134")],
    }
    return FakeVariantStore(hits, carriers)
