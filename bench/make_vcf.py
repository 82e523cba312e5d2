"""Seeded generator of realistic cohort VCFs (benchmark data only; needs msprime and bcftools/bgzip).

Coalescent simulation with human-like parameters (Ne 10,000, recombination 1e-8 and
mutation 1.29e-8 per bp per generation, nucleotide alleles under Jukes-Cantor), written
as a BGZF VCF with diploid phased genotypes; --sites-only drops the sample columns.

    python bench/make_vcf.py --samples 2500 --megabases 25 --seed 2 -o /tmp/cohort.vcf.gz
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np


def simulate(samples: int, megabases: float, seed: int):
    import msprime

    ts = msprime.sim_ancestry(
        samples=samples,
        population_size=10_000,
        sequence_length=int(megabases * 1_000_000),
        recombination_rate=1e-8,
        ploidy=2,
        random_seed=seed,
    )
    return msprime.sim_mutations(ts, rate=1.29e-8, model=msprime.JC69(), random_seed=seed)


def write_vcf(ts, out: Path, *, chrom: str, sites_only: bool) -> None:
    """Write BGZF-compressed VCF; positions shifted to 1-based (VCF forbids POS 0)."""
    bgzip = shutil.which("bgzip")
    if bgzip is None:
        sys.exit("bgzip (tabix package) is required")
    names = [f"S{i + 1:05d}" for i in range(ts.num_individuals)]
    with open(out, "wb") as sink:
        if sites_only:
            bcftools = shutil.which("bcftools") or sys.exit("bcftools is required for --sites-only")
            strip = subprocess.Popen([bcftools, "view", "-G", "-Oz", "-"], stdin=subprocess.PIPE, stdout=sink)
            target = strip
        else:
            target = subprocess.Popen([bgzip, "-c"], stdin=subprocess.PIPE, stdout=sink)
        import io

        text = io.TextIOWrapper(target.stdin, encoding="ascii", write_through=False)
        ts.write_vcf(
            text,
            contig_id=chrom,
            individual_names=names,
            position_transform=lambda x: np.asarray(x, dtype=np.int64) + 1,
        )
        text.flush()
        target.stdin.close()
        if target.wait() != 0:
            sys.exit("compression failed")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--samples", type=int, default=2500)
    parser.add_argument("--megabases", type=float, default=25.0)
    parser.add_argument("--seed", type=int, default=2)
    parser.add_argument("--chrom", default="22")
    parser.add_argument("--sites-only", action="store_true")
    parser.add_argument("-o", "--output", type=Path, required=True)
    args = parser.parse_args(argv)
    started = time.monotonic()
    ts = simulate(args.samples, args.megabases, args.seed)
    write_vcf(ts, args.output, chrom=args.chrom, sites_only=args.sites_only)
    print(
        f"{args.output}: {ts.num_sites} sites, {args.samples} samples, {args.output.stat().st_size / 1e6:.1f} MB "
        f"in {time.monotonic() - started:.1f} s",
        file=sys.stderr,
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
