"""Growth by sample batches: erasure, adding a batch and query latency as the cohort grows batch by batch.

    python bench/sample_batches.py /tmp/sb-cohort4000.vcf.gz [--batch 500] [--batches 1 2 4 8] [--span 250000]

For each cohort of k batches of `--batch` samples (the first k x batch samples of the VCF), the same cohort is
ingested two ways, both partitioned in one process (`--workers 1`):
- one batch: the whole cohort's VCF in one ingest (what an erasure rewrote before sample batches: every unit);
- k batches: the first batch, then each further one with `add_samples` (a VCF of its samples only).
Measured in the same run (ratios, medians of `--repeat` erasures of different people of the last batch):
the CPU time of one person's erasure request (a manifest with the erasure pending) and of its purge job (the units
of the person's batch rewritten: what the request did before), k batches / one batch, and the bytes of unit files
each wrote, the time to add the last batch (vs re-ingesting the whole
cohort), and warm in-process query latency on the k-batch store vs the one-batch store (exact lookup, carrier count,
10 kb range count).
The k-batch store is also compacted (`gateway variants compact`, on a copy): its compaction time vs re-ingesting the
cohort, and its query latency vs the one-batch store ("compacted" rows); `--no-compaction` skips it.

The erasure request reads the person's delta from their own rows (reverse index, its homozygous part, called-allele
exceptions: store._carried_losses); units written before the homozygous part read each carried variant's carrier
row instead (_carried_losses_from_sets, rows that grow with the batch). Both are timed on the same units and person
("delta read"), and at the end the request's CPU time at each cohort size is given relative to the smallest: with a
generator whose per-person data does not grow with the cohort (tests.variants.vcfgen: random genotypes at fixed
sites), a request ∝ the person's data stays flat.
"""

from __future__ import annotations

import argparse
import gzip
import os
import random
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from gateway.variants.compact import compact_dataset  # noqa: E402
from gateway.variants.distributed_ingest import ingest_partitioned  # noqa: E402
from gateway.variants.query import VariantQuery  # noqa: E402
from gateway.variants.store import VariantStore, _carried_losses, _carried_losses_from_sets  # noqa: E402


def cut(source: Path, out: Path, columns: range) -> Path:
    """A BGZF VCF of `source` with only the sample columns `columns` (0-based sample numbers)."""
    import pysam

    keep = list(range(9)) + [9 + i for i in columns]
    plain = out.with_suffix("")
    with gzip.open(source, "rt") as f, open(plain, "w") as sink:
        for line in f:
            if line.startswith("##"):
                sink.write(line)
                continue
            fields = line.rstrip("\n").split("\t")
            sink.write("\t".join(fields[i] for i in keep) + "\n")
    pysam.tabix_compress(str(plain), str(out), force=True)
    plain.unlink()
    return out


def timed(call) -> float:
    started = time.perf_counter()
    call()
    return time.perf_counter() - started


def unit_files(data_dir: Path) -> dict[Path, int]:
    return {p: p.stat().st_size for p in (data_dir / "variants" / "c").glob("parts-*/*.sqlite")}


def erase_measured(store: VariantStore, data_dir: Path, person: str) -> tuple[float, int, float, int]:
    """CPU seconds of one erasure's request and of its purge job (gateway/variants/pending.py), and the bytes of unit
    files each wrote (load-independent). The request writes a manifest only; the purge rewrites the units, as the
    request did before the erasure had two phases."""
    before = set(unit_files(data_dir))
    request = cpu_timed(lambda: store.erase_individual(person))
    written = set(unit_files(data_dir))
    purge = cpu_timed(lambda: store.purge_erased(["c"]))
    after = unit_files(data_dir)
    return (request, sum(after[p] for p in written - before if p in after), purge,
            sum(size for path, size in after.items() if path not in written))  # fmt: skip


def delta_read(data_dir: Path, sample: int) -> tuple[float, float]:
    """CPU seconds to read one manifest sample's erasure delta over the units of its batch: from its own rows, and
    from the carrier rows of the variants it carries (the path of units written before sample_hom)."""
    import sqlite3

    from gateway.variants.batched import batches_of, erased_by_batch

    store = VariantStore(data_dir)
    try:
        ds = store._open("c")
        ((batch, (local, _)),) = erased_by_batch(batches_of(ds.batches, ds.sample_total()), [sample]).items()
        paths = [ds.dir / p.file for p in ds.partitions if p.batch == batch]
    finally:
        store.close()
    conns = [sqlite3.connect(f"file:{path}?mode=ro&immutable=1", uri=True) for path in paths]
    try:
        for conn in conns:  # warm both alike
            _carried_losses(conn, local, {})
        own = cpu_timed(lambda: [_carried_losses(conn, local, {}) for conn in conns])
        sets = cpu_timed(lambda: [_carried_losses_from_sets(conn, local, True, {}) for conn in conns])
    finally:
        for conn in conns:
            conn.close()
    return own, sets


def cpu_timed(call) -> float:
    started = time.process_time()
    call()
    return time.process_time() - started


def per_call_us(call, queries) -> float:
    for q in queries:
        call(q)
    rounds = []
    for _ in range(3):
        started = time.perf_counter()
        for q in queries:
            call(q)
        rounds.append((time.perf_counter() - started) / len(queries) * 1e6)
    return statistics.median(rounds)


def query_latency(store: VariantStore, exact: list, ranges: list) -> dict[str, float]:
    return {
        "exact lookup": per_call_us(lambda q: store.search(q, limit=10), exact),
        "carrier count": per_call_us(store.carrier_count, exact),
        "10 kb range count": per_call_us(store.count, ranges),
    }


def one_size(vcf: Path, root: Path, k: int, batch: int, span: int, repeat: int, compaction: bool = True) -> dict:
    names = [f"s{i}" for i in range(k * batch)]  # the sample map links sample i to individual I<i>
    with gzip.open(vcf, "rt") as f:
        header = next(line for line in f if line.startswith("#CHROM")).rstrip("\n").split("\t")[9:]
    sample_map = {header[i]: f"I{i}" for i in range(len(names))}
    common = {"dataset_id": "c", "assembly": "GRCh38", "span": span, "sample_map": sample_map}
    whole = cut(vcf, root / f"whole{k}.vcf.gz", range(k * batch))
    parts = [cut(vcf, root / f"b{k}-{b}.vcf.gz", range(b * batch, (b + 1) * batch)) for b in range(k)]
    one_dir, many_dir = root / f"one{k}", root / f"many{k}"
    whole_s = timed(lambda: ingest_partitioned(whole, data_dir=one_dir, **common))
    add_s = 0.0
    for b, part in enumerate(parts):
        add_s = timed(lambda part=part, b=b: ingest_partitioned(part, data_dir=many_dir, add_samples=b > 0, **common))
    compact_dir = root / f"compacted{k}"
    shutil.copytree(many_dir, compact_dir)
    compact_s = timed(lambda: compact_dataset(compact_dir, "c")) if compaction else 0.0
    one, many, compacted = VariantStore(one_dir), VariantStore(many_dir), VariantStore(compact_dir)
    try:
        hits, _ = one.search(VariantQuery(), limit=100_000)
        rng = random.Random(k)
        picked = rng.sample(hits, min(200, len(hits)))
        exact = [VariantQuery(reference_name=h.reference_name, start=h.start, alternate_bases=h.alternate_bases)
                 for h in picked]  # fmt: skip
        ranges = [VariantQuery(reference_name=h.reference_name, start=h.start, end=h.start + 10_000) for h in picked]
        latency = {
            "one": query_latency(one, exact, ranges),
            "many": query_latency(many, exact, ranges),
        }
        if compaction:
            latency["compacted"] = query_latency(compacted, exact, ranges)
        people = [f"I{(k - 1) * batch + i}" for i in range(repeat)]  # people of the last batch
        reads = [delta_read(one_dir, (k - 1) * batch + i) for i in range(repeat, 2 * repeat)]
        erase_one, erase_many = [], []
        for p in people:  # interleaved, so that the machine's load changes reach both alike
            erase_one.append(erase_measured(one, one_dir, p))
            erase_many.append(erase_measured(many, many_dir, p))
    finally:
        one.close()
        many.close()
        compacted.close()
    return {
        "samples": k * batch,
        "sites": len(hits),
        "whole ingest s": whole_s,
        "add last batch s": add_s,
        "compact s": compact_s,
        "erase one batch s": statistics.median(e[0] for e in erase_one),
        "erase k batches s": statistics.median(e[0] for e in erase_many),
        "erase one batch MB": erase_one[0][1] / 1e6,
        "erase k batches MB": erase_many[0][1] / 1e6,
        "purge one batch s": statistics.median(e[2] for e in erase_one),
        "purge k batches s": statistics.median(e[2] for e in erase_many),
        "purge one batch MB": erase_one[0][3] / 1e6,
        "purge k batches MB": erase_many[0][3] / 1e6,
        "delta own rows s": statistics.median(r[0] for r in reads),
        "delta carrier sets s": statistics.median(r[1] for r in reads),
        "latency": latency,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("vcf", type=Path)
    parser.add_argument("--batch", type=int, default=500)
    parser.add_argument("--batches", type=int, nargs="+", default=[1, 2, 4, 8])
    parser.add_argument("--span", type=int, default=250_000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--no-compaction", action="store_true", help="skip the compaction and its latency rows")
    args = parser.parse_args(argv)
    print(f"load average at start: {os.getloadavg()}")
    requests = []
    with tempfile.TemporaryDirectory(prefix="sample-batches-") as tmp:
        for k in args.batches:
            r = one_size(args.vcf, Path(tmp), k, args.batch, args.span, args.repeat, not args.no_compaction)
            requests.append((r["samples"], r["erase one batch s"], r["erase k batches s"]))
            print(
                f"{r['samples']:>6} samples ({k} x {args.batch}), {r['sites']} sites: erasure request (CPU) one batch "
                f"{r['erase one batch s']:.3f} s, {k} batches {r['erase k batches s']:.3f} s, unit files written "
                f"{r['erase one batch MB']:.1f} / {r['erase k batches MB']:.1f} MB; its purge job one batch "
                f"{r['purge one batch s']:.3f} s, {k} batches {r['purge k batches s']:.3f} s (request / purge "
                f"{r['erase one batch s'] / r['purge one batch s']:.3f} / {r['erase k batches s'] / r['purge k batches s']:.3f}),"
                f" unit files rewritten {r['purge one batch MB']:.1f} / {r['purge k batches MB']:.1f} MB; "
                f"add last batch {r['add last batch s']:.2f} s vs whole ingest {r['whole ingest s']:.2f} s "
                f"({r['add last batch s'] / r['whole ingest s']:.2f}); compaction {r['compact s']:.2f} s "
                f"({r['compact s'] / r['whole ingest s']:.2f} of the whole ingest)"
            )
            own, sets = r["delta own rows s"], r["delta carrier sets s"]
            print(
                f"    delta read (one batch of {r['samples']}, CPU): from the person's own rows {own * 1e3:.1f} ms, "
                f"from the carrier rows {sets * 1e3:.1f} ms ({own / sets:.3f})"
            )
            for name, one_us in r["latency"]["one"].items():
                many_us = r["latency"]["many"][name]
                packed = r["latency"].get("compacted", {}).get(name)
                print(
                    f"    {name}: one batch {one_us:.0f} us, {k} batches {many_us:.0f} us ({many_us / one_us:.2f}x)"
                    + (f", compacted {packed:.0f} us ({packed / one_us:.2f}x)" if packed is not None else "")
                )
    first_samples, first_one, first_many = requests[0]
    for samples, one, many in requests:
        print(
            f"erasure request at {samples} samples vs {first_samples}: one batch {one / first_one:.2f}x, "
            f"batched {many / first_many:.2f}x"
        )
    print(f"load average at end: {os.getloadavg()}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
