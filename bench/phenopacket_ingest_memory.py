"""Peak memory and CPU of `gateway ingest phenopacket` as a collection grows (not a test).

    python bench/phenopacket_ingest_memory.py [--sizes 1000 4000] [--tree PATH_OF_ANOTHER_CHECKOUT]

A national node loads collections of tens of thousands of phenopackets at once. The corpus is the real
phenopackets of ../shared/reference/phenopackets, copied with a new document id each (so every copy is a new
person) into files of one document, to the sizes asked; each size is ingested into a fresh SQLite store by a
child process, and the child's peak RSS (getrusage) and CPU time are reported, with those of `--tree` (the
code before, another checkout) in the same run. Flat peak RSS is the target: the memory must not grow with
the collection. Results go to bench/out/phenopacket_ingest_memory.json.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
REFERENCE = (REPO / ".." / "shared" / "reference" / "phenopackets").resolve()
KEY = "00" * 32


def corpus() -> list[dict]:
    found = []
    for path in sorted(REFERENCE.rglob("*.json")):
        doc = json.loads(path.read_text(encoding="utf-8"))
        if isinstance(doc, dict) and "subject" in doc and "metaData" in doc:
            found.append(doc)
    return found


def write_collection(folder: Path, docs: list[dict], size: int) -> None:
    folder.mkdir(parents=True)
    for n in range(size):
        doc = dict(docs[n % len(docs)])
        doc["id"] = f"{doc.get('id', 'doc')}-copy{n}"
        (folder / f"doc{n:06d}.json").write_text(json.dumps(doc), encoding="utf-8")


def ingest(tree: Path, folder: Path, data_dir: Path) -> dict:
    """One child process: (peak RSS MB, CPU s, exit status, documents stored)."""
    env = {**os.environ, "PYTHONPATH": str(tree), "GATEWAY_DATA_DIR": str(data_dir), "GATEWAY_SECRET_KEY": KEY}
    env.pop("GATEWAY_DATABASE_URL", None)
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    done = subprocess.run(
        [sys.executable, "-m", "gateway.cli", "ingest", "phenopacket", "--skip-invalid", str(folder)],
        cwd=tree,
        env=env,
        capture_output=True,
        text=True,
    )
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return {
        "peak_rss_mb": round(after.ru_maxrss / 1024, 1),  # of the largest child so far: sizes run in rising order
        "cpu_s": round(cpu, 2),
        "exit": done.returncode,
        "stored": done.stdout.count(": stored phenopacket"),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[1000, 4000])
    parser.add_argument("--tree", type=Path, help="another checkout (the code before), measured in the same run")
    args = parser.parse_args()
    docs = corpus()
    trees = {"this": REPO, **({"before": args.tree.resolve()} if args.tree else {})}
    results: dict[str, dict] = {name: {} for name in trees}
    with tempfile.TemporaryDirectory() as tmp:
        for size in sorted(args.sizes):
            folder = Path(tmp) / f"c{size}"
            write_collection(folder, docs, size)
            for name, tree in trees.items():
                # RUSAGE_CHILDREN's maxrss is the largest child's: each measurement in a child of its own
                probe = [
                    sys.executable,
                    __file__,
                    "--measure",
                    str(tree),
                    str(folder),
                    str(Path(tmp) / f"{name}{size}"),
                ]
                out = subprocess.run(probe, capture_output=True, text=True, check=True).stdout
                results[name][size] = json.loads(out)
                print(f"{name:6s} {size:7,d} documents: {results[name][size]}", flush=True)
    out_dir = REPO / "bench" / "out"
    out_dir.mkdir(exist_ok=True)
    (out_dir / "phenopacket_ingest_memory.json").write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    if len(sys.argv) == 5 and sys.argv[1] == "--measure":
        print(json.dumps(ingest(Path(sys.argv[2]), Path(sys.argv[3]), Path(sys.argv[4]))))
        sys.exit(0)
    sys.exit(main())
