from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import pysam
import pytest

REFERENCE = Path(__file__).resolve().parents[2] / ".." / "shared" / "reference"
VCF_REFERENCE = REFERENCE / "vcf"


@dataclass(frozen=True)
class TruthVariant:
    chrom: str
    start: int
    end: int
    ref: str
    alt: str
    genes: frozenset[str]
    carriers: frozenset[str]
    zygosity: tuple[tuple[str, str], ...]
    ac: int
    an: int
    observed: bool = True  # an alternate allele seen: AC > 0 in the genotypes (sites-only: INFO AC > 0, or no AC/AN)


def _chrom(name: str) -> str:
    bare = name[3:] if name.lower().startswith("chr") else name
    return "MT" if bare.upper() in ("M", "MT") else bare.upper() if bare.upper() in ("X", "Y") else bare


def _info_end(rec) -> int:
    """END as written in the INFO column (pysam derives stop from SVLEN in some htslib versions)."""
    match = re.search(r"(?:^|;)END=(\d+)", str(rec).split("\t")[7])
    return int(match.group(1)) if match else rec.stop


def pysam_truth(path: Path) -> list[TruthVariant]:
    """An independent reading of the file with pysam: one entry per stored (split) allele, first duplicate wins."""
    out: dict[tuple, TruthVariant] = {}
    with pysam.VariantFile(str(path)) as vf:
        ann = "ANN" in vf.header.info
        for rec in vf:
            for a, alt in enumerate(rec.alts or (), start=1):
                if alt == "*" or "[" in alt or "]" in alt:
                    continue
                symbolic = alt.startswith("<")
                end = _info_end(rec) if symbolic else rec.start + len(rec.ref)
                carriers, zyg, ac, an = set(), [], 0, 0
                for name, call in rec.samples.items():
                    gt = [g for g in (call.get("GT") or ()) if True]
                    called = [g for g in gt if g is not None]
                    an += len(called)
                    n = sum(1 for g in called if g == a)
                    ac += n
                    if n:
                        carriers.add(name)
                        zyg.append((name, "hemi" if len(gt) == 1 else "hom" if n == len(gt) else "het"))
                genes = set()
                if ann and "ANN" in rec.info:
                    for entry in rec.info["ANN"]:
                        fields = entry.split("|")
                        if fields[0] == alt or len(rec.alts) == 1:
                            genes.add(fields[3])
                if rec.samples:
                    observed = ac > 0
                else:
                    info_ac = rec.info["AC"][a - 1] if "AC" in rec.info else 0
                    observed = (info_ac or 0) > 0 or not (rec.info.get("AN") or 0)
                key = (_chrom(rec.chrom), rec.start, rec.ref.upper(), alt.upper() if not symbolic else alt, end)
                if key not in out:
                    out[key] = TruthVariant(
                        key[0],
                        rec.start,
                        end,
                        key[2],
                        key[3],
                        frozenset(genes),
                        frozenset(carriers),
                        tuple(sorted(zyg)),
                        ac,
                        an,
                        observed,
                    )
    return list(out.values())


@pytest.fixture(scope="session")
def vcf_reference() -> Path:
    assert VCF_REFERENCE.is_dir(), f"reference VCFs missing at {VCF_REFERENCE}"
    return VCF_REFERENCE


def cli_on(monkeypatch, data_dir: Path):
    """The `gateway` CLI's main, run on `data_dir` with a test key and no configuration file or database URL
    from the environment."""
    from gateway.cli import main

    monkeypatch.setenv("GATEWAY_DATA_DIR", str(data_dir))
    monkeypatch.setenv("GATEWAY_SECRET_KEY", "ab" * 32)
    monkeypatch.delenv("GATEWAY_CONFIG", raising=False)
    monkeypatch.delenv("GATEWAY_DATABASE_URL", raising=False)
    return main
