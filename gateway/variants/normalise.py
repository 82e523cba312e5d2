"""Reference names, assemblies and variant classes: one internal form for every spelling.

Internally a chromosome is "1".."22", "X", "Y" or "MT". Outside, clients say "chr22",
"NC_000022.11" or "refseq:NC_000022.11"; the RefSeq accession also names the assembly.
The accession and length table is mappings/variants/chromosomes.yaml (shared with the FHIR translator).
"""

from __future__ import annotations

import re
from functools import cache

from mappings import load_table

ASSEMBLIES = ("GRCh37", "GRCh38")
_ASSEMBLY_ALIASES = {
    "grch37": "GRCh37",
    "hg19": "GRCh37",
    "b37": "GRCh37",
    "grch37.p13": "GRCh37",
    "grch38": "GRCh38",
    "hg38": "GRCh38",
    "b38": "GRCh38",
    "grch38.p13": "GRCh38",
    "grch38.p14": "GRCh38",
}


@cache
def _chromosome_table() -> dict[str, dict[str, tuple[str, int]]]:
    """assembly → chromosome → (refseq accession, length)."""
    table = load_table("variants/chromosomes")["assemblies"]
    return {
        assembly: {chrom: (accession, int(length)) for chrom, (accession, length) in chroms.items()}
        for assembly, chroms in table.items()
    }


@cache
def _accession_index() -> dict[str, tuple[str, str]]:
    """Versionless RefSeq accession → (chromosome, assembly of that version)."""
    index: dict[str, tuple[str, str]] = {}
    for assembly, chroms in _chromosome_table().items():
        for chrom, (accession, _) in chroms.items():
            index[accession] = (chrom, assembly)
            index.setdefault(accession.split(".")[0], (chrom, assembly))
    return index


_CHR_PREFIX = re.compile(r"^(?:chr)?", re.IGNORECASE)


@cache
def normalise_reference_name(name: str) -> str:
    """The internal chromosome name; unknown names (decoys, alt contigs) pass through unchanged."""
    text = name.strip()
    if text.lower().startswith("refseq:"):
        text = text[len("refseq:") :]
    hit = _accession_index().get(text) or _accession_index().get(text.split(".")[0])
    if hit:
        return hit[0]
    bare = _CHR_PREFIX.sub("", text)
    upper = bare.upper()
    if upper in ("M", "MT"):
        return "MT"
    if upper in ("X", "Y"):
        return upper
    if bare.isdigit():
        return str(int(bare))
    return text


def assembly_of_accession(name: str) -> str | None:
    """The assembly that a versioned RefSeq accession belongs to ("NC_000022.10" → "GRCh37"); None if unknown."""
    text = name.removeprefix("refseq:")
    if text.startswith("NC_012920"):  # the mitochondrial sequence is shared by both assemblies
        return None
    hit = _accession_index().get(text)
    return hit[1] if hit and "." in text else None


def normalise_assembly(name: str | None) -> str | None:
    """ "GRCh38", "hg38", "GRCh38.p14" → "GRCh38"; unknown → None."""
    if not name:
        return None
    return _ASSEMBLY_ALIASES.get(name.strip().lower())


def refseq_accession(name: str, assembly: str) -> str:
    """The RefSeq accession of a chromosome in an assembly ("22", "GRCh38" → "NC_000022.11")."""
    chrom = normalise_reference_name(name)
    asm = normalise_assembly(assembly) or assembly
    try:
        return _chromosome_table()[asm][chrom][0]
    except KeyError:
        raise ValueError(f"no RefSeq accession for chromosome {name!r} in assembly {assembly!r}") from None


def chromosome_length(name: str, assembly: str) -> int | None:
    entry = _chromosome_table().get(assembly, {}).get(normalise_reference_name(name))
    return entry[1] if entry else None


def assembly_from_lengths(lengths: dict[str, int]) -> set[str]:
    """The assemblies consistent with the contig lengths given (empty set: none of ours)."""
    votes: set[str] = set()
    for name, length in lengths.items():
        chrom = normalise_reference_name(name)
        matches = {asm for asm, chroms in _chromosome_table().items() if chroms.get(chrom, (None, -1))[1] == length}
        known = any(chrom in chroms for chroms in _chromosome_table().values())
        if not known or len(matches) == len(ASSEMBLIES):  # decoys, and MT whose length is shared
            continue
        votes |= matches if matches else {"unknown"}
    return votes


def assembly_from_text(text: str) -> str | None:
    """Guess an assembly from free text such as a ##reference path ("…/GRCh38_full_analysis_set.fa")."""
    lowered = text.lower()
    for alias in ("grch38", "hg38", "grch37", "hg19", "b37", "hs37d5"):
        if alias in lowered:
            return "GRCh37" if alias in ("grch37", "hg19", "b37", "hs37d5") else "GRCh38"
    return None


# --- variant classes -------------------------------------------------------------------

SYMBOLIC_CLASSES = {"DEL": "DEL", "DUP": "DUP", "CNV": "CNV", "INS": "INS", "INV": "INV"}


def variant_class(ref: str, alt: str) -> str:
    """One of query.VARIANT_CLASSES for a (ref, alt) pair; symbolic alleles by their first id part."""
    if alt.startswith("<"):
        kind = alt[1:-1].split(":")[0].upper()
        return SYMBOLIC_CLASSES.get(kind, "SV")
    if len(ref) == 1 and len(alt) == 1:
        return "SNP"
    if len(ref) == len(alt):
        return "MNP"
    if len(ref) == 1 and alt.startswith(ref):
        return "INS"
    if len(alt) == 1 and ref.startswith(alt):
        return "DEL"
    return "INDEL"


def variant_length(ref: str, alt: str, start: int, end: int, svlen: int | None = None) -> int:
    """The length the Beacon variantMin/MaxLength filters compare: |SVLEN| or the span after the padding base for
    symbolic alleles, the net change for indels, the length for SNPs and MNPs."""
    if alt.startswith("<"):
        return abs(svlen) if svlen else max(end - start - 1, 0)
    if len(ref) == len(alt):
        return len(ref)
    return abs(len(alt) - len(ref))
