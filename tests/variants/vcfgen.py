"""A small seeded VCF generator for tests: SNPs, MNPs, indels, multi-allelics, symbolic SVs,
ANN annotations, haploid chrX calls and missing genotypes, on GRCh38 contigs."""

from __future__ import annotations

import random
from pathlib import Path

import pysam

GRCH38_LENGTHS = {"chr1": 248956422, "chr2": 242193529, "chrX": 156040895}
GENES = ["BRCA1", "TP53", "CFTR", "MYH7", "LDLR"]
PROTEIN = ["p.Val600Glu", "p.Arg12Cys", "p.Gly13Asp", "p.Leu858Arg"]
ANN_HEADER = (
    "##INFO=<ID=ANN,Number=.,Type=String,Description=\"Functional annotations: 'Allele | Annotation | "
    "Annotation_Impact | Gene_Name | Gene_ID | Feature_Type | Feature_ID | Transcript_BioType | Rank | HGVS.c | "
    "HGVS.p | cDNA.pos / cDNA.length | CDS.pos / CDS.length | AA.pos / AA.length | Distance | ERRORS / WARNINGS / INFO' \">"
)


def header(samples: list[str], *, contigs: bool = True, extra: list[str] = ()) -> list[str]:
    lines = ["##fileformat=VCFv4.2"]
    if contigs:
        lines += [f"##contig=<ID={c},length={n}>" for c, n in GRCH38_LENGTHS.items()]
    lines += [
        '##INFO=<ID=END,Number=1,Type=Integer,Description="End">',
        '##INFO=<ID=SVLEN,Number=A,Type=Integer,Description="SV length">',
        '##INFO=<ID=SVTYPE,Number=1,Type=String,Description="SV type">',
        ANN_HEADER,
        '##ALT=<ID=DEL,Description="Deletion">',
        '##ALT=<ID=DUP,Description="Duplication">',
        '##FORMAT=<ID=GT,Number=1,Type=String,Description="Genotype">',
        *extra,
    ]
    columns = ["#CHROM", "POS", "ID", "REF", "ALT", "QUAL", "FILTER", "INFO"]
    if samples:
        columns += ["FORMAT", *samples]
    return [*lines, "\t".join(columns)]


def _bases(rng: random.Random, n: int) -> str:
    return "".join(rng.choice("ACGT") for _ in range(n))


def _gt(rng: random.Random, n_alts: int, haploid: bool) -> str:
    def allele() -> str:
        r = rng.random()
        if r < 0.03:
            return "."
        if r < 0.75:
            return "0"
        return str(rng.randint(1, n_alts))

    if haploid:
        return allele()
    return f"{allele()}{rng.choice('/|')}{allele()}"


def records(seed: int, n_records: int, n_samples: int) -> list[str]:
    rng = random.Random(seed)
    out = []
    for chrom in GRCH38_LENGTHS:
        pos = rng.randint(10_000, 20_000)
        for _ in range(n_records // len(GRCH38_LENGTHS)):
            pos += rng.choice([0, 1, 3, 40, 200, 1500, 5000]) if out else 1
            kind = rng.random()
            info = []
            ref = _bases(rng, 1)
            if kind < 0.55:
                alts = [rng.choice([b for b in "ACGT" if b != ref])]
            elif kind < 0.7:
                alts = rng.sample([b for b in "ACGT" if b != ref], rng.randint(2, 3))
            elif kind < 0.8:
                ref = _bases(rng, rng.randint(2, 6))
                alts = [ref[0]]  # deletion
            elif kind < 0.88:
                alts = [ref + _bases(rng, rng.randint(1, 8))]  # insertion
            elif kind < 0.93:
                ref = _bases(rng, 2)
                alts = [_bases(rng, 2)]
                if alts[0] == ref:
                    alts = [ref[::-1] if ref[::-1] != ref else ("AC" if ref != "AC" else "GT")]
            else:
                length = rng.choice([300, 2_000, 50_000, 1_200_000])
                svtype = rng.choice(["DEL", "DUP"])
                alts = [f"<{svtype}>"]
                info += [f"END={pos + length}", f"SVTYPE={svtype}", f"SVLEN={-length if svtype == 'DEL' else length}"]
            if rng.random() < 0.5:
                ann = []
                for alt in alts:
                    gene = rng.choice(GENES)
                    effect = rng.choice(
                        ["missense_variant", "synonymous_variant", "intron_variant&splice_region_variant"]
                    )
                    change = rng.choice(PROTEIN) if effect == "missense_variant" else ""
                    ann.append(
                        f"{alt}|{effect}|MODERATE|{gene}|{gene}|transcript|NM_1.1|protein_coding|1/2|c.1A>G|{change}|||||"
                    )
                info.append("ANN=" + ",".join(ann))
            ident = f"rs{rng.randint(1, 10**7)}" if rng.random() < 0.3 else "."
            row = [chrom, str(pos), ident, ref, ",".join(alts), "50", "PASS", ";".join(info) or "."]
            if n_samples:
                haploid = chrom == "chrX" and rng.random() < 0.5
                row += ["GT"] + [_gt(rng, len(alts), haploid) for _ in range(n_samples)]
            out.append("\t".join(row))
    return out


def write_vcf(path: Path, seed: int = 1, n_records: int = 300, n_samples: int = 12, **kw) -> Path:
    samples = [f"SAMPLE{i:03d}" for i in range(n_samples)]
    lines = header(samples, **kw) + records(seed, n_records, n_samples)
    path.write_text("\n".join(lines) + "\n")
    return path


def split_by_samples(plain, out, keep: list[str], drop_uncarried: bool = False):
    """A BGZF VCF of `plain` with only the sample columns `keep` (in that order). `drop_uncarried`: leave out the
    records where none of them has an alternate allele (as `bcftools view -s … -c 1` does)."""
    lines = plain.read_text().splitlines()
    columns = next(line for line in lines if line.startswith("#CHROM")).split("\t")
    picked = list(range(9)) + [columns.index(name) for name in keep]
    written = []
    for line in lines:
        if line.startswith("##"):
            written.append(line)
            continue
        fields = line.split("\t")
        if drop_uncarried and not line.startswith("#"):
            calls = [fields[i].split(":")[0] for i in picked[9:]]
            if not any(a not in ("0", ".") for gt in calls for a in gt.replace("|", "/").split("/")):
                continue
        written.append("\t".join(fields[i] for i in picked))
    plain_out = out.with_suffix("")
    plain_out.write_text("\n".join(written) + "\n")
    pysam.tabix_compress(str(plain_out), str(out), force=True)
    return out
