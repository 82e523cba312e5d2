"""VCF Zarr (bio2zarr) against the gateway's own variant store, measured in one run (issue 14).

    python bench/zarr_eval.py /tmp/zarr-eval/c2500.vcf.gz [/tmp/zarr-eval/c25k.vcf.gz] [--queries 100]

Needs the `zarr` extra (`pip install .[zarr]`: bio2zarr, which brings zarr and numcodecs); the VCF must be BGZF
with a .tbi/.csi index (bio2zarr partitions by it). For each VCF:

- build: a bare pysam scan of the VCF (htslib parses every record with its genotypes: the floor), our
  `ingest_vcf` into a temporary data directory, and `bio2zarr.vcf.convert` (explode + encode, one process);
  then the one extra array a Zarr query path would need to answer counts without genotypes: carriers per allele.
- size on disk of both stores.
- the Beacon's carrier queries, warm, per call, on the same random variants, every answer checked equal:
  exact variant exists, carrier count, first page of 10 carrier ids, 10 kb range count, the variants one sample
  carries (count and first page of 10: /individuals/{id}/g_variants). Zarr "raw" reads call_genotype chunks
  (variants x samples) with numpy; Zarr "precomputed" reads the carriers-per-allele array instead.
- object storage: the same Zarr queries through fsspec from a file:// URL (zarr's FsspecStore), with the number
  of store GETs per query (each one a ranged GET or whole-object GET on S3); our SQLite unit fetched whole through
  fsspec into a local cache (an immutable unit is fetched once), then queried locally.
"""

from __future__ import annotations

import argparse
import os
import random
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from gateway.variants.ingest import ingest_vcf  # noqa: E402
from gateway.variants.query import VariantQuery  # noqa: E402
from gateway.variants.store import VariantStore  # noqa: E402

PAGE = 10


def tree_bytes(path: Path) -> int:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file())


def timed(call: Callable[[], object]) -> tuple[float, object]:
    started = time.perf_counter()
    out = call()
    return time.perf_counter() - started, out


def pysam_scan(vcf: Path) -> int:
    import pysam

    n = 0
    with pysam.VariantFile(str(vcf)) as f:
        for rec in f:
            n += rec.pos > 0
    return n


class ZarrCohort:
    """Carrier queries over a VCF Zarr group, reading chunks with zarr/numpy (no index beyond region_index)."""

    def __init__(self, group, *, index_in_memory: bool = False) -> None:
        self.g = group
        self.gt = group["call_genotype"]
        self.pos = group["variant_position"]
        self.alleles = group["variant_allele"]
        self.counts = group.get("variant_allele_carriers", None)
        if index_in_memory:  # per-site columns held as numpy arrays (what a server would keep): only genotypes read
            self.pos, self.alleles = self.pos[:], self.alleles[:]
            self.counts = None if self.counts is None else self.counts[:]
        self.vchunk = self.gt.chunks[0]
        self.schunk = self.gt.chunks[1]
        # The region index is VCF Zarr's own: per variant chunk its contig, first and last position.
        self.regions = group["region_index"][:]
        self.sample_ids = group["sample_id"][:]

    def _chunks_over(self, start: int, end: int) -> list[int]:
        """Variant chunks whose positions (1-based) can fall in [start, end]."""
        r = self.regions
        return [int(c) for c in r[(r[:, 2] <= end) & (r[:, 4] >= start), 0]]

    def locate(self, pos1: int, alt: str) -> tuple[int, int] | None:
        """(variant row, allele index) of a 1-based position and ALT."""
        for c in self._chunks_over(pos1, pos1):
            lo = c * self.vchunk
            positions = self.pos[lo : lo + self.vchunk]
            rows = np.flatnonzero(positions == pos1)
            if rows.size:
                alleles = self.alleles[lo + rows[0] : lo + rows[-1] + 1]
                for k, row in enumerate(alleles):
                    hit = np.flatnonzero(row[1:] == alt)
                    if hit.size:
                        return lo + int(rows[k]), int(hit[0]) + 1
        return None

    def exists(self, pos1: int, alt: str, *, precomputed: bool) -> bool:
        """Raw: the allele is listed at that position (observed or not: VCF Zarr keeps no AC unless INFO has it)."""
        found = self.locate(pos1, alt)
        if found is None or not precomputed:
            return found is not None
        return bool(self.counts[found[0], found[1]] > 0)

    def carrier_count_raw(self, pos1: int, alt: str) -> int:
        row, allele = self.locate(pos1, alt)
        return int(((self.gt[row] == allele).any(axis=1)).sum())

    def carrier_count_pre(self, pos1: int, alt: str) -> int:
        row, allele = self.locate(pos1, alt)
        return int(self.counts[row, allele])

    def carriers_page(self, pos1: int, alt: str) -> list[str]:
        """The first PAGE carrier ids: sample chunks read one by one until the page is full."""
        row, allele = self.locate(pos1, alt)
        out: list[str] = []
        n = self.gt.shape[1]
        for lo in range(0, n, self.schunk):
            block = self.gt[row, lo : lo + self.schunk]
            hits = np.flatnonzero((block == allele).any(axis=1))[: PAGE - len(out)]
            out += [str(s) for s in self.sample_ids[lo + hits]]
            if len(out) >= PAGE:
                break
        return out

    def range_count(self, start0: int, end0: int, *, precomputed: bool) -> int:
        """Observed alternate alleles of sites starting in the 0-based [start0, end0) (SNVs here)."""
        total = 0
        for c in self._chunks_over(start0 + 1, end0):
            lo = c * self.vchunk
            positions = self.pos[lo : lo + self.vchunk]
            rows = np.flatnonzero((positions > start0) & (positions <= end0))
            if not rows.size:
                continue
            a, b = lo + rows[0], lo + rows[-1] + 1
            if precomputed:
                total += int((self.counts[a:b, 1:] > 0).sum())
            else:  # without counts an allele is "observed" only by decoding its genotypes
                gt = self.gt[a:b]
                n_alleles = self.alleles.shape[1]
                total += sum(int((gt == k).any(axis=(1, 2)).sum()) for k in range(1, n_alleles))
        return total

    def variants_of_sample(self, j: int) -> tuple[int, list[tuple[int, str]]]:
        """(alternate alleles sample j carries, the first PAGE of them as (position, alt)): every variant chunk."""
        total, page = 0, []
        n_alleles = self.alleles.shape[1]
        for lo in range(0, self.gt.shape[0], self.vchunk):
            calls = self.gt[lo : lo + self.vchunk, j]  # reads and decodes the whole (variants x samples) chunk
            carried = [np.flatnonzero((calls == k).any(axis=1)) for k in range(1, n_alleles)]
            total += sum(rows.size for rows in carried)
            if len(page) < PAGE and any(rows.size for rows in carried):
                positions, alleles = self.pos[lo : lo + self.vchunk], self.alleles[lo : lo + self.vchunk]
                for k, rows in enumerate(carried, start=1):
                    page += [(lo + int(r), k, int(positions[r]), str(alleles[r, k])) for r in rows]
        page.sort()  # ours lists split alleles in VCF order: by row, then allele index
        return total, [(pos, alt) for _, _, pos, alt in page[:PAGE]]


def add_carrier_counts(path: Path) -> None:
    """The precomputed field: carriers per (variant, allele), one pass over call_genotype chunks."""
    import zarr

    g = zarr.open_group(str(path), mode="r+")
    gt = g["call_genotype"]
    n_alleles = g["variant_allele"].shape[1]
    out = g.create_array(
        "variant_allele_carriers", shape=(gt.shape[0], n_alleles), chunks=(gt.chunks[0], n_alleles), dtype="int32"
    )
    for lo in range(0, gt.shape[0], gt.chunks[0]):
        calls = gt[lo : lo + gt.chunks[0]]
        out[lo : lo + calls.shape[0]] = np.stack(
            [(calls == k).any(axis=2).sum(axis=1) for k in range(n_alleles)], axis=1
        )


def per_call_us(call: Callable, items: list, rounds: int = 3) -> float:
    for item in items[:5]:
        call(item)
    times = []
    for _ in range(rounds):
        started = time.perf_counter()
        for item in items:
            call(item)
        times.append((time.perf_counter() - started) / len(items) * 1e6)
    return statistics.median(times)


def our_queries(store: VariantStore) -> dict[str, Callable]:
    def exact(q):
        return VariantQuery(reference_name=q["chrom"], start=q["start"], alternate_bases=q["alt"])

    return {
        "exists": lambda q: store.exists(exact(q)),
        "carrier count": lambda q: store.carrier_count(exact(q)),
        "carriers, first 10": lambda q: [r[0] for r in store.carrier_rows(q["vid"], limit=PAGE)],
        "10 kb range count": lambda q: store.count(
            VariantQuery(reference_name=q["chrom"], start=q["r0"], end=q["r0"] + 10_000)
        ),
        "one sample's variants": lambda q: (
            lambda hits, total: (total, [(h.start + 1, h.alternate_bases) for h in hits])
        )(*store.variants_of_individual(q["sample"], limit=PAGE)),
    }


def zarr_queries(z: ZarrCohort, *, precomputed: bool) -> dict[str, Callable]:
    index = {str(s): i for i, s in enumerate(z.sample_ids)}
    return {
        "exists": lambda q: z.exists(q["start"] + 1, q["alt"], precomputed=precomputed),
        "carrier count": lambda q: (z.carrier_count_pre if precomputed else z.carrier_count_raw)(
            q["start"] + 1, q["alt"]
        ),
        "carriers, first 10": lambda q: z.carriers_page(q["start"] + 1, q["alt"]),
        "10 kb range count": lambda q: z.range_count(q["r0"], q["r0"] + 10_000, precomputed=precomputed),
        "one sample's variants": lambda q: z.variants_of_sample(index[q["sample"]]),
    }


def pick_queries(store: VariantStore, samples: list[str], n: int) -> list[dict]:
    hits, _ = store.search(VariantQuery(), limit=10_000_000)
    rng = random.Random(7)
    out = []
    for h in rng.sample(hits, min(n, len(hits))):
        out.append(
            {
                "chrom": h.reference_name,
                "start": h.start,
                "alt": h.alternate_bases,
                "vid": h.variant_id,
                "r0": max(h.start - rng.randint(0, 10_000), 0),
                "sample": rng.choice(samples),
            }
        )
    return out


def check_equal(ours: dict[str, Callable], theirs: dict[str, Callable], queries: list[dict], label: str) -> None:
    for name, call in ours.items():
        for q in queries[:20] if name == "one sample's variants" else queries:
            a, b = call(q), theirs[name](q)
            if a != b:
                raise SystemExit(f"{label} disagrees on {name} for {q}: ours {a!r}, zarr {b!r}")


def measure_queries(table: dict[str, dict[str, Callable]], queries: list[dict]) -> dict[str, dict[str, float]]:
    slow = queries[: max(len(queries) // 10, 5)]  # a sample's variants reads the whole matrix column: fewer calls
    return {
        label: {
            name: per_call_us(call, slow if name == "one sample's variants" else queries)
            for name, call in calls.items()
        }
        for label, calls in table.items()
    }


def gets_per_query(logging_store, calls: dict[str, Callable], queries: list[dict]) -> dict[str, float]:
    out = {}
    for name, call in calls.items():
        items = queries[:5]
        before = logging_store.counter["get"]
        for q in items:
            call(q)
        out[name] = (logging_store.counter["get"] - before) / len(items)
    return out


def evaluate(vcf: Path, n_queries: int) -> None:
    import pysam
    import zarr
    from bio2zarr import vcf as b2z
    from zarr.storage import FsspecStore, LoggingStore

    samples = list(pysam.VariantFile(str(vcf)).header.samples)
    with tempfile.TemporaryDirectory(prefix="zarr-eval-") as tmp:
        root = Path(tmp)
        floor_s, records = timed(lambda: pysam_scan(vcf))
        ours_s, _ = timed(
            lambda: ingest_vcf(vcf, dataset_id="z", data_dir=root / "ours", assembly="GRCh38",
                               sample_map={s: s for s in samples})
        )  # fmt: skip
        vcz = root / "cohort.vcz"
        zarr_s, _ = timed(lambda: b2z.convert([str(vcf)], str(vcz), worker_processes=0))
        pre_s, _ = timed(lambda: add_carrier_counts(vcz))
        ours_bytes = tree_bytes(root / "ours" / "variants")
        counts_bytes = tree_bytes(vcz / "variant_allele_carriers")
        zarr_bytes = tree_bytes(vcz) - counts_bytes
        print(f"\n{vcf.name}: {len(samples):,} samples, {records:,} records; load average {os.getloadavg()[0]:.1f}")
        print(f"  pysam scan (floor)      {floor_s:7.2f} s   1.00x")
        print(
            f"  our ingest              {ours_s:7.2f} s   {ours_s / floor_s:5.2f}x   store {ours_bytes / 1e6:7.2f} MB"
        )
        print(f"  bio2zarr convert        {zarr_s:7.2f} s   {zarr_s / floor_s:5.2f}x   store {zarr_bytes / 1e6:7.2f} MB"
              f"   (Zarr/ours: time {zarr_s / ours_s:.2f}x, size {zarr_bytes / ours_bytes:.2f}x)")  # fmt: skip
        print(f"  + carriers per allele   {pre_s:7.2f} s            +{counts_bytes / 1e6:6.2f} MB")

        store = VariantStore(root / "ours")
        queries = pick_queries(store, samples, n_queries)
        z_local = ZarrCohort(zarr.open_group(str(vcz), mode="r"))
        z_memory = ZarrCohort(zarr.open_group(str(vcz), mode="r"), index_in_memory=True)
        logged = LoggingStore(FsspecStore.from_url(f"file://{vcz}", read_only=True), log_level="ERROR")
        z_fsspec = ZarrCohort(zarr.open_group(logged, mode="r"))
        table = {
            "ours (SQLite)": our_queries(store),
            "Zarr raw": zarr_queries(z_local, precomputed=False),
            "Zarr precomputed": zarr_queries(z_local, precomputed=True),
            "Zarr raw, index in RAM": zarr_queries(z_memory, precomputed=False),
            "Zarr precomp., in RAM": zarr_queries(z_memory, precomputed=True),
            "Zarr raw, fsspec": zarr_queries(z_fsspec, precomputed=False),
            "Zarr precomp., fsspec": zarr_queries(z_fsspec, precomputed=True),
        }
        for label, calls in table.items():
            if label != "ours (SQLite)":
                check_equal(table["ours (SQLite)"], calls, queries, label)
        store.close()
        # Our unit through fsspec: fetched whole into a local cache once (immutable), then queried as a local file.
        cached = root / "fsspec-cache"
        fetch_s, _ = timed(lambda: fetch_units(f"file://{root / 'ours'}", cached))
        table["ours, fsspec-cached"] = our_queries(VariantStore(cached))
        check_equal(table["ours (SQLite)"], table["ours, fsspec-cached"], queries, "fsspec-cached copy")
        results = measure_queries(table, queries)
        report(results, ours_bytes, fetch_s)
        gets = {label: gets_per_query(logged, zarr_queries(z_fsspec, precomputed=label.endswith("precomputed")),
                                      queries) for label in ("raw", "precomputed")}  # fmt: skip
        print("  store GETs per query through fsspec (S3: one request each): "
              + "; ".join(f"{n}: raw {gets['raw'][n]:.1f}, precomputed {gets['precomputed'][n]:.1f}"
                          for n in gets["raw"]))  # fmt: skip
        chunks = [f.stat().st_size for f in (vcz / "call_genotype").rglob("*") if f.is_file() and f.name != "zarr.json"]
        print(f"  call_genotype: {len(chunks)} chunk objects, {statistics.mean(chunks) / 1e3:.0f} kB each on average "
              f"(chunks {z_local.vchunk} variants x {z_local.schunk} samples)")  # fmt: skip
        pages = cold_pages_per_query(root / "ours", queries)
        print("  our store, pages read per query on a cold open (4 kB each; a ranged GET each without a local cache): "
              + "; ".join(f"{n}: {v:.1f}" for n, v in pages.items()))  # fmt: skip


def cache_misses(conn) -> int:
    """SQLite pages this connection read from its file (SQLITE_DBSTATUS_CACHE_MISS, through ctypes: CPython's
    sqlite3 keeps the sqlite3* right after the object header). On a ranged-read VFS each is one ranged GET."""
    import _sqlite3
    import ctypes

    lib = ctypes.CDLL(_sqlite3.__file__)
    db = ctypes.c_void_p.from_address(id(conn) + 2 * ctypes.sizeof(ctypes.c_void_p)).value
    current, high = ctypes.c_int(), ctypes.c_int()
    if lib.sqlite3_db_status(ctypes.c_void_p(db), 8, ctypes.byref(current), ctypes.byref(high), 0) != 0:
        raise RuntimeError("sqlite3_db_status failed")
    return current.value


def cold_pages_per_query(data_dir: Path, queries: list[dict]) -> dict[str, float]:
    """Pages each query reads on a freshly opened store (nothing cached but the sample table, which an open reads
    once): what a VFS over ranged GETs would fetch per query."""
    out = {}
    for name in our_queries(VariantStore(data_dir)):
        pages = 0
        for q in queries[:5]:
            store = VariantStore(data_dir)
            opened = store._open("z")
            conn = opened.conn
            before = cache_misses(conn)
            opened.sample_table()
            out["(open: sample table)"] = cache_misses(conn) - before
            before = cache_misses(conn)
            our_queries(store)[name](q)
            pages += cache_misses(conn) - before
            store.close()
        out[name] = pages / 5
    return out


def fetch_units(url: str, dest: Path) -> None:
    """Copy a data directory's files through fsspec (what a node does once per immutable unit from S3/GCS)."""
    import fsspec

    fs, path = fsspec.core.url_to_fs(url)
    for remote in fs.find(path):
        local = dest / Path(remote).relative_to(path)
        local.parent.mkdir(parents=True, exist_ok=True)
        with fs.open(remote, "rb") as src, open(local, "wb") as out:
            shutil.copyfileobj(src, out, 1 << 20)


def report(results: dict[str, dict[str, float]], ours_bytes: int, fetch_s: float) -> None:
    base = results["ours (SQLite)"]
    print(f"  {'per call, warm (µs; ratio to ours)':<26}" + "".join(f"{n:>24}" for n in base))
    for label, got in results.items():
        print(f"  {label:<26}" + "".join(f"{got[n]:>14,.0f} {got[n] / base[n]:>7.2f}x" for n in got))
    print(f"  our store fetched whole through fsspec (file://): {fetch_s * 1e3:.0f} ms for {ours_bytes / 1e6:.2f} MB")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("vcf", type=Path, nargs="+")
    parser.add_argument("--queries", type=int, default=100)
    args = parser.parse_args(argv)
    for vcf in args.vcf:
        evaluate(vcf, args.queries)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
