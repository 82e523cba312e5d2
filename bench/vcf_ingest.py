"""VCF ingest against `bcftools query`, side by side in one run (paired, repeated), with peak RSS.

    python bench/vcf_ingest.py /tmp/cohort2500.vcf.gz [--repeat 3]

Floors (issue 3): sites-only ingest >= 0.5x `bcftools query -f '%CHROM\\t%POS\\t%REF\\t%ALT\\n'` records/s;
genotype ingest into the query-ready store >= 1.0x `bcftools query -f '%POS[\\t%GT]\\n'` (stretch 2x).
The sites-only file is derived with `bcftools view -G` when it does not exist yet. Each ingest runs in
its own process (the benchmark's worker mode) so that its peak RSS, parsing child included, is its own.
"""

from __future__ import annotations

import argparse
import json
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SITES_FORMAT = "%CHROM\t%POS\t%REF\t%ALT\n"
GT_FORMAT = "%POS[\t%GT]\n"


def worker(path: str, assembly: str) -> None:
    """Worker mode: one ingest, then a JSON line with its time and peak RSS (this process and its children)."""
    sys.path.insert(0, str(ROOT))
    from gateway.variants.ingest import ingest_vcf

    with tempfile.TemporaryDirectory(prefix="ingest-bench-") as data:
        started = time.perf_counter()
        summary = ingest_vcf(path, dataset_id="bench", data_dir=Path(data), assembly=assembly)
        seconds = time.perf_counter() - started
        size = sum(p.stat().st_size for p in Path(data).rglob("*.sqlite"))
    print(
        json.dumps(
            {
                "seconds": seconds,
                "records": summary.records_read,
                "variants": summary.records_written,
                "store_mb": size / 1e6,
                "rss_parent_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
                "rss_child_mb": resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024,
            }
        )
    )


def run_ingest(path: Path, assembly: str) -> dict:
    out = subprocess.run(
        [sys.executable, __file__, "--worker", str(path), "--assembly", assembly],
        check=True,
        capture_output=True,
        text=True,
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def run_bcftools(path: Path, fmt: str) -> dict:
    started = time.perf_counter()
    with subprocess.Popen(["bcftools", "query", "-f", fmt, str(path)], stdout=subprocess.PIPE) as proc:
        records = sum(chunk.count(b"\n") for chunk in iter(lambda: proc.stdout.read(1 << 20), b""))
    seconds = time.perf_counter() - started
    return {"seconds": seconds, "records": records}


def compare(
    label: str, path: Path, fmt: str, floor: float, repeat: int, assembly: str, also: Path | None = None
) -> None:
    """`also`: a second floor, the same bcftools query on another file (the issue's 92k sites/s figure was
    `bcftools query` of the sites columns on the genotype file)."""
    ours, theirs, second = [], [], []
    for _ in range(repeat):  # paired: each round runs both, so machine load hits both alike
        theirs.append(run_bcftools(path, fmt))
        if also is not None:
            second.append(run_bcftools(also, fmt))
        ours.append(run_ingest(path, assembly))
    records = ours[0]["records"]
    our_rate = statistics.median(records / r["seconds"] for r in ours)
    their_rate = statistics.median(r["records"] / r["seconds"] for r in theirs)
    ratio = our_rate / their_rate
    rss = max(max(r["rss_parent_mb"], r["rss_child_mb"]) for r in ours)
    print(
        f"{label}: {path.name}, {records} records, {ours[0]['variants']} variants, store {ours[0]['store_mb']:.1f} MB"
    )
    print(f"  bcftools query        {their_rate:10,.0f} records/s")
    print(
        f"  ingest (query-ready)  {our_rate:10,.0f} records/s   ratio {ratio:.2f}x  (floor {floor}x)  {'OK' if ratio >= floor else 'BELOW FLOOR'}"
    )
    if second:
        rate = statistics.median(r["records"] / r["seconds"] for r in second)
        ratio2 = our_rate / rate
        print(f"  bcftools query on {also.name} (the issue's floor): {rate:,.0f} records/s   ratio {ratio2:.2f}x")
    print(f"  ingest peak RSS       {rss:10.0f} MB (parent or parsing child; target <= 500 MB)")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("vcf", type=Path, help="a cohort VCF with genotypes (bench/make_vcf.py)")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--assembly", default="GRCh38")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        worker(str(args.vcf), args.assembly)
        return 0
    if shutil.which("bcftools") is None:
        sys.exit("bcftools is required (apt-get install bcftools)")
    sites = args.vcf.with_name(args.vcf.name.replace(".vcf.gz", ".sites.vcf.gz"))
    if not sites.exists():
        subprocess.run(["bcftools", "view", "-G", "-Oz", "-o", str(sites), str(args.vcf)], check=True)
    compare("sites-only", sites, SITES_FORMAT, 0.5, args.repeat, args.assembly, also=args.vcf)
    compare("genotypes", args.vcf, GT_FORMAT, 1.0, args.repeat, args.assembly)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
