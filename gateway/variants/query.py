"""The contract between the Beacon layer and the variant store.

The Beacon request parser (gateway.beacon) turns a g_variants request into a
`VariantQuery`; the variant store (gateway.variants.store) answers it with
`VariantHit`s. Coordinates here are Beacon's: 0-based, half-open, like VRS.
"""

from __future__ import annotations

from dataclasses import dataclass, field

# Normalised variant classes used inside the store. The Beacon parser maps
# VCF-style names (SNP, DEL, DUP, INS, CNV, INDEL, MNP) and ontology ids (SO:…, EFO:…)
# onto these.
VARIANT_CLASSES = ("SNP", "MNP", "INS", "DEL", "INDEL", "DUP", "CNV", "INV", "SV")


@dataclass(frozen=True)
class VariantQuery:
    """One g_variants query; every field is optional and the set fields are ANDed.

    - sequence query: reference_name + start (single value) + reference_bases/alternate_bases
    - range query: reference_name + start + end (variants overlapping [start, end))
    - bracket query: start_range=(min,max) and end_range=(min,max) on the variant's start/end
    - gene_id / aa_change: from the ANN/CSQ annotations read at ingest
    """

    dataset_ids: tuple[str, ...] | None = None  # None: every dataset the caller may see
    assembly: str | None = None  # "GRCh37" | "GRCh38"
    reference_name: str | None = None  # normalised chromosome name: "1".."22", "X", "Y", "MT"
    start: int | None = None  # 0-based
    end: int | None = None  # 0-based, exclusive
    start_range: tuple[int, int] | None = None  # bracket query: min <= start <= max
    end_range: tuple[int, int] | None = None
    reference_bases: str | None = None  # "N" matches any base
    alternate_bases: str | None = None
    variant_types: tuple[str, ...] = ()  # any of VARIANT_CLASSES
    min_length: int | None = None
    max_length: int | None = None
    gene_id: str | None = None
    aa_change: str | None = None
    variant_ids: tuple[str, ...] = ()  # /g_variants/{id}


@dataclass(frozen=True)
class Carrier:
    sample_id: str  # the sample name from the VCF
    biosample_id: str | None  # linked biosample, when the sample is linked
    individual_id: str | None  # linked individual (pseudonym), when the sample is linked
    zygosity: str  # GENO CURIE: GENO:0000135 heterozygous, GENO:0000136 homozygous, GENO:0000134 hemizygous


@dataclass(frozen=True)
class VariantHit:
    variant_id: str  # stable: dataset + assembly + chrom + pos + ref + alt
    dataset_id: str
    assembly: str
    reference_name: str  # normalised, e.g. "22"
    start: int  # 0-based
    end: int  # 0-based exclusive
    reference_bases: str
    alternate_bases: str  # may be symbolic, e.g. "<DEL>"
    variant_type: str  # one of VARIANT_CLASSES
    genes: tuple[str, ...] = ()
    aa_changes: tuple[str, ...] = ()
    molecular_effects: tuple[str, ...] = ()  # SO terms "SO:0001583" from annotations
    identifiers: tuple[str, ...] = ()  # e.g. dbSNP ids from the ID column
    allele_count: int = 0
    allele_number: int = 0
    carrier_count: int = 0
    extra: dict = field(default_factory=dict)
