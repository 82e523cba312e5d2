"""Gene symbols, protein changes and SO effects from SnpEff `ANN` or VEP `CSQ` INFO fields.

ANN has a fixed field order (SnpEff's spec); CSQ declares its order in the header
("… Format: Allele|Consequence|…"). Consequence names map to SO ids through mappings/variants/so_effects.yaml.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import cache

from mappings import load_table

ANN_FIELDS = (
    "allele",
    "effect",
    "impact",
    "gene",
    "gene_id",
    "feature_type",
    "feature_id",
    "biotype",
    "rank",
    "hgvs_c",
    "hgvs_p",
)
_CSQ_NAMES = {"Allele": "allele", "Consequence": "effect", "SYMBOL": "gene", "HGVSp": "hgvs_p"}
_AA3 = {
    "Ala": "A", "Arg": "R", "Asn": "N", "Asp": "D", "Cys": "C", "Gln": "Q", "Glu": "E", "Gly": "G", "His": "H",
    "Ile": "I", "Leu": "L", "Lys": "K", "Met": "M", "Phe": "F", "Pro": "P", "Ser": "S", "Thr": "T", "Trp": "W",
    "Tyr": "Y", "Val": "V", "Ter": "*", "Sec": "U", "Pyl": "O",
}  # fmt: skip
_SIMPLE_PROTEIN_CHANGE = re.compile(r"^p\.\(?([A-Z][a-z]{2})(\d+)([A-Z][a-z]{2}|=)\)?$")


@cache
def so_effects() -> dict[str, str]:
    return dict(load_table("variants/so_effects")["effects"])


def short_protein_change(hgvs_p: str) -> str | None:
    """ "p.Val600Glu" → "V600E" (the form Beacon examples use for aminoacidChange); None for complex changes."""
    match = _SIMPLE_PROTEIN_CHANGE.match(hgvs_p)
    if not match:
        return None
    ref, pos, alt = match.groups()
    if ref not in _AA3 or (alt != "=" and alt not in _AA3):
        return None
    return f"{_AA3[ref]}{pos}{_AA3[ref] if alt == '=' else _AA3[alt]}"


@dataclass(frozen=True)
class AnnotationFormat:
    info_id: str  # "ANN" or "CSQ"
    positions: dict[str, int]  # our field name → index in a "|"-separated entry


def annotation_format(header_text: str) -> AnnotationFormat | None:
    """Which annotation field the file carries and its field order; None without ANN/CSQ."""
    for line in header_text.splitlines():
        if line.startswith("##INFO=<ID=ANN,"):
            return AnnotationFormat("ANN", {name: i for i, name in enumerate(ANN_FIELDS)})
        if line.startswith("##INFO=<ID=CSQ,"):
            match = re.search(r"Format:\s*([^\"]+)", line)
            if not match:
                continue
            names = [n.strip() for n in match.group(1).split("|")]
            positions = {_CSQ_NAMES[n]: i for i, n in enumerate(names) if n in _CSQ_NAMES}
            return AnnotationFormat("CSQ", positions)
    return None


def _allele_matches(entry_allele: str | None, ref: str, alt: str, n_alts: int) -> bool:
    if entry_allele is None or n_alts == 1:
        return True
    if entry_allele == alt:
        return True
    # VEP writes indel alleles without the shared padding base ("-" for a deletion).
    if ref and alt and ref[0] == alt[0]:
        trimmed = alt[1:] or "-"
        return entry_allele == trimmed
    return False


def parse_annotations(
    fmt: AnnotationFormat, value: str, ref: str, alt: str, n_alts: int
) -> tuple[list[str], list[str], list[str]]:
    """(genes, protein changes, SO ids) for one ALT allele, each de-duplicated in first-seen order."""
    genes: dict[str, None] = {}
    changes: dict[str, None] = {}
    effects: dict[str, None] = {}
    pos = fmt.positions
    table = so_effects()
    for entry in value.split(","):
        fields = entry.split("|")

        def field(name: str, fields: list[str] = fields) -> str | None:
            i = pos.get(name)
            return fields[i].strip() if i is not None and i < len(fields) and fields[i].strip() else None

        if not _allele_matches(field("allele"), ref, alt, n_alts):
            continue
        gene = field("gene")
        if gene:
            genes[gene] = None
        hgvs_p = field("hgvs_p")
        if hgvs_p:
            changes[hgvs_p.split(":", 1)[-1]] = None  # VEP prefixes the protein id: "ENSP…:p.Val600Glu"
        for term in (field("effect") or "").replace(",", "&").split("&"):
            so_id = table.get(term.strip())
            if so_id:
                effects[so_id] = None
    return list(genes), list(changes), list(effects)
