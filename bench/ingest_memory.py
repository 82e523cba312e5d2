"""Peak RSS of one ingest worker as the number of samples grows (issue 14: memory flat in the number of samples).

    python bench/make_vcf.py --samples 2500 --megabases 1 --seed 5 -o /tmp/vmem2500.vcf.gz
    python bench/make_vcf.py --samples 25000 --megabases 0.3 --seed 3 -o /tmp/vmem25k.vcf.gz
    python bench/make_vcf.py --samples 100000 --megabases 0.1 --seed 4 -o /tmp/vmem100k.vcf.gz
    python bench/ingest_memory.py /tmp/vmem2500.vcf.gz /tmp/vmem25k.vcf.gz /tmp/vmem100k.vcf.gz [--tree DIR]

Each ingest runs in its own process (bench/vcf_ingest.py's worker mode), so the peak RSS of the parsing child is
its own. `--tree DIR` runs another checkout's code the same way (e.g. the commit before a change), for a paired
before/after in one run. Short spans keep the cohorts quick to simulate; note that a span of fewer than 8,192
records fills only part of one reverse-index chunk, and untouched zeroed pages do not count in RSS.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def samples_of(path: Path) -> int:
    out = subprocess.run(["bcftools", "query", "-l", str(path)], check=True, capture_output=True, text=True)
    return len(out.stdout.split())


def run(tree: Path, path: Path) -> dict:
    out = subprocess.run(
        [sys.executable, str(tree / "bench" / "vcf_ingest.py"), "--worker", str(path), "--assembly", "GRCh38"],
        capture_output=True,
        text=True,
    )
    if out.returncode != 0:
        return {"error": (out.stderr.strip().splitlines() or ["?"])[-1][:200]}
    return json.loads(out.stdout.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("vcf", type=Path, nargs="+")
    parser.add_argument("--tree", type=Path, action="append", default=[], help="another checkout to compare")
    args = parser.parse_args(argv)
    trees = [ROOT, *args.tree]
    print(f"{'samples':>8} {'records':>8} " + " ".join(f"{'peak MB ' + t.name:>22} {'s':>7}" for t in trees))
    for path in args.vcf:
        cells = []
        records = "?"
        for tree in trees:
            result = run(tree, path)
            if "error" in result:
                cells.append(f"{result['error'][:22]:>22} {'':>7}")
                continue
            records = result["records"]
            peak = max(result["rss_child_mb"], result["rss_parent_mb"])
            cells.append(f"{peak:>22.0f} {result['seconds']:>7.1f}")
        print(f"{samples_of(path):>8} {records!s:>8} " + " ".join(cells), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
