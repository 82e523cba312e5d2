"""What leaving no bytes of an erased person costs (gateway.security.erasure, docs/ERASURE.md).

    python bench/erasure_bytes.py [--samples 2500] [--records 4000] [--repeat 3] [--data /tmp/eb-bench]

Measured in the same run, as ratios against a floor:
- variant store: erasing one person of a single-file version of `--samples` samples, as written now (VACUUM INTO a
  fresh file, secure_delete=ON, journal in memory) and as written before (page copy by the backup API, secure_delete
  off as in SQLite's own default, rollback journal on disk); floor: a plain copy of the version file, fsynced (an erasure
  writes a new version, so it costs at least that). Erasures of different people, the two ways interleaved.
- metadata store (SQLite, WAL): saving the 300 reference phenopackets (batches of 50, new then updated) with
  secure_delete ON vs OFF; and one subject's erasure request (its purge queued), the purge job (WAL truncation)
  apart, and both in one call as the request ran them before the purge became a job (gateway.security.purge_jobs).
- PostgreSQL (with `--postgres URL`): the same among `--patients` phenopackets (several sizes may be given; the
  purge is VACUUM (INDEX_CLEANUP ON)), in a scratch database created and dropped by the run; and `--burst`
  erasures queued, then one purge job for all of them. The VACUUM runs in the server: these are wall-clock
  times, measured interleaved in one run.
The cohort (vcfgen's random genotypes, `--records` sites) is ingested once into `--data` and reused.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sqlite3
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import sqlalchemy as sa  # noqa: E402

from gateway.security.purge_jobs import run_due  # noqa: E402
from gateway.variants import store as store_module  # noqa: E402
from gateway.variants.ingest import ingest_vcf  # noqa: E402
from gateway.variants.layout import current_version, dataset_dir  # noqa: E402
from gateway.variants.store import VariantStore  # noqa: E402


def page_copy_for_erasure(source: sqlite3.Connection, target: Path) -> sqlite3.Connection:
    """The copy before this change: pages as they are (free ones too), rollback journal on disk, and secure_delete
    off as SQLite's own default (Debian's build turns it on, and then this costs a little more)."""
    with sqlite3.connect(target) as copy:
        source.backup(copy)
    conn = sqlite3.connect(target, isolation_level=None)
    conn.execute("PRAGMA secure_delete = OFF")
    return conn


def timed(call) -> float:
    started = time.perf_counter()
    call()
    return time.perf_counter() - started


def cohort(data: Path, samples: int, records: int) -> Path:
    if not (data / "variants" / "c" / "CURRENT").is_file():
        from tests.variants.vcfgen import write_vcf

        vcf = write_vcf(data.with_suffix(".vcf"), seed=3, n_records=records, n_samples=samples)
        sample_map = {f"SAMPLE{i:03d}": f"I{i}" for i in range(samples)}
        ingest_vcf(vcf, dataset_id="c", data_dir=data, assembly="GRCh38", sample_map=sample_map)
    return data


def copy_floor(data: Path) -> float:
    ds_dir = dataset_dir(data, "c")
    live = ds_dir / (current_version(ds_dir) or "")
    target = ds_dir.parent / "floor.sqlite"

    def copy() -> None:
        shutil.copyfile(live, target)
        with open(target, "rb+") as f:
            os.fsync(f.fileno())

    try:
        return timed(copy)
    finally:
        target.unlink(missing_ok=True)


def variant_erasures(data: Path, samples: int, repeat: int) -> dict[str, list[float]]:
    store = VariantStore(data)
    erased = {int(s.name.split("-")[1]) for s in store.dataset_samples("c").samples if s.name.startswith("erased-")}
    people = iter(f"I{i}" for i in range(samples) if i not in erased)
    now, before, floor = [], [], []
    fresh = store_module._copy_for_erasure
    try:
        for _ in range(repeat):
            floor.append(copy_floor(data))
            store_module._copy_for_erasure = fresh
            now.append(timed(lambda: store.erase_individual(next(people))))
            store_module._copy_for_erasure = page_copy_for_erasure
            before.append(timed(lambda: store.erase_individual(next(people))))
    finally:
        store_module._copy_for_erasure = fresh
        store.close()
    return {"floor": floor, "now": now, "before": before}


def metadata_costs(scratch: Path) -> dict[str, float]:
    documents = __import__("bench.store_save", fromlist=["load"]).load()
    out: dict[str, float] = {}
    for mode in ("ON", "OFF") * 3:  # interleaved: the machine's load changes reach both alike
        for key, seconds in metadata_run(scratch / f"meta-{mode}-{time.time_ns()}.sqlite", mode, documents).items():
            out[key] = out.get(key, 0.0) + seconds
    return out


def metadata_run(path: Path, mode: str, documents: list[dict]) -> dict[str, float]:
    """Seconds of two rounds of saves (new, then replaced documents: freed cells) and of four erasures in one store
    whose connections all have secure_delete `mode`: two as the request runs them now (the purge queued) and two as
    before (the purge, a WAL truncation, inside the request), the queued purges timed apart."""
    from gateway.security.erasure import erase_subject
    from gateway.store import MetadataStore, PhenopacketRecord

    store = MetadataStore.open(f"sqlite:///{path}")

    @sa.event.listens_for(store.engine, "connect")
    def _mode(dbapi_connection, _record):
        dbapi_connection.execute(f"PRAGMA secure_delete = {mode}")

    store.engine.dispose()  # connections from now on get the mode
    store.ensure_dataset("bench")
    records = [PhenopacketRecord(f"{d['id']}", "bench", f"subject-{i}", d) for i, d in enumerate(documents)]
    out = {f"save {mode}": 0.0}
    for _ in range(4):  # new, then replaced three times
        for b in range(0, len(records), 50):
            out[f"save {mode}"] += timed(lambda b=b: store.save_phenopackets(records[b : b + 50]))
    for n in range(1, 5):

        def erase(n: int = n) -> None:
            erase_subject(store, None, f"subject-{n}", key=b"k" * 32)

        kinds = ("purge inside",) if n % 2 else ("request", "purge job")
        for kind in kinds:
            out.setdefault(f"erase {mode} {kind}", 0.0)
        if n % 2:
            out[f"erase {mode} purge inside"] += timed(lambda: (erase(), run_due(store)))
        else:
            out[f"erase {mode} request"] += timed(erase)
            out[f"erase {mode} purge job"] += timed(lambda: run_due(store))
    store.close()
    return out


def postgres_costs(url: str, patients: int, repeat: int, burst: int) -> dict[str, list[float]]:
    """Seconds of one subject's erasure among `patients` phenopackets: the request as now (purge queued), the purge
    job apart, and the request as before (erasure + purge in it), interleaved; then `burst` erasures queued and their
    purges run as one job (one VACUUM serves them all)."""
    import uuid

    from sqlalchemy.engine import make_url

    from gateway.security.erasure import erase_subject
    from gateway.store import MetadataStore, PhenopacketRecord

    documents = __import__("bench.store_save", fromlist=["load"]).load()
    base = make_url(url)
    name = f"gw_bench_erasure_{uuid.uuid4().hex[:8]}"
    admin = sa.create_engine(base, poolclass=sa.pool.NullPool, isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.exec_driver_sql(f'CREATE DATABASE "{name}"')
    out: dict[str, list[float]] = {"request": [], "purge job": [], "purge inside": [], "burst requests": []}
    try:
        store = MetadataStore.open(base.set(database=name).render_as_string(hide_password=False))
        store.ensure_dataset("bench")
        records = [
            PhenopacketRecord(f"p{i}", "bench", f"subject-{i}", documents[i % len(documents)]) for i in range(patients)
        ]
        for first in range(0, len(records), 500):
            store.save_phenopackets(records[first : first + 500])
        with store.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as connection:
            connection.exec_driver_sql("VACUUM ANALYZE")  # a steady state: the load's own dead tuples gone
        subjects = iter(f"subject-{n}" for n in range(patients))

        def erase() -> None:
            erase_subject(store, None, next(subjects), key=b"k" * 32)

        for _ in range(repeat):
            out["request"].append(timed(erase))
            out["purge job"].append(timed(lambda: run_due(store)))
            out["purge inside"].append(timed(lambda: (erase(), run_due(store))))
        out["burst requests"] = [timed(erase) for _ in range(burst)]
        out["burst purge job"] = [timed(lambda: run_due(store))]
        store.close()
    finally:
        with admin.connect() as connection:
            connection.exec_driver_sql(f'DROP DATABASE "{name}" WITH (FORCE)')
        admin.dispose()
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--samples", type=int, default=2500)
    parser.add_argument("--records", type=int, default=4000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--data", type=Path, default=Path(tempfile.gettempdir()) / "eb-bench")
    parser.add_argument("--postgres", help="PostgreSQL URL (a scratch database is created and dropped)")
    parser.add_argument("--patients", type=int, nargs="+", default=[6000])
    parser.add_argument("--burst", type=int, default=20, help="erasures queued before one purge job (PostgreSQL)")
    args = parser.parse_args()
    print("load:", os.getloadavg())
    data = cohort(args.data, args.samples, args.records)
    size = sum(p.stat().st_size for p in (data / "variants" / "c").glob("v*.sqlite"))
    r = variant_erasures(data, args.samples, args.repeat)
    floor = statistics.median(r["floor"])
    print(f"variant store, {args.samples} samples, version file {size / 1e6:.1f} MB (medians of {args.repeat}):")
    print(f"  floor (copy + fsync of the version file) {floor * 1e3:.1f} ms")
    for label in ("before", "now"):
        s = statistics.median(r[label])
        print(f"  erasure {label:>6}: {s * 1e3:8.1f} ms = {s / floor:5.1f} x floor")
    print(f"  now / before: {statistics.median(r['now']) / statistics.median(r['before']):.2f}")
    with tempfile.TemporaryDirectory() as scratch:
        m = metadata_costs(Path(scratch))
    print(
        "metadata store (SQLite WAL), 300 phenopackets saved new then replaced 3 times, batches of 50, 3 stores each:"
    )
    print(
        f"  secure_delete ON {m['save ON']:.2f} s, OFF {m['save OFF']:.2f} s: ON / OFF {m['save ON'] / m['save OFF']:.2f}"
    )
    for mode in ("ON", "OFF"):
        inside, request, job = (m[f"erase {mode} {k}"] / 6 for k in ("purge inside", "request", "purge job"))
        print(
            f"  erasure of one subject (secure_delete {mode}, mean of 6): request {request * 1e3:.1f} ms + purge job "
            f"{job * 1e3:.1f} ms; before, with the WAL truncation in the request, {inside * 1e3:.1f} ms"
        )
    for patients in args.patients:
        pg = postgres_costs(args.postgres, patients, args.repeat, args.burst) if args.postgres else None
        if pg is None:
            break
        request, job, inside = (statistics.median(pg[k]) for k in ("request", "purge job", "purge inside"))
        burst = sum(pg["burst requests"]) + pg["burst purge job"][0]
        print(
            f"PostgreSQL, {patients} phenopackets (medians of {args.repeat}): erasure request {request * 1e3:.1f} ms, "
            f"purge job {job * 1e3:.1f} ms; before (VACUUM in the request) {inside * 1e3:.1f} ms = "
            f"{inside / request:.1f} x the request now"
        )
        print(
            f"  {args.burst} erasures queued, then one purge job: {pg['burst purge job'][0] * 1e3:.0f} ms for all "
            f"({burst * 1e3 / args.burst:.1f} ms per erasure in all, vs {inside * 1e3:.1f} ms each before)"
        )
    print("load:", os.getloadavg())
    return 0


if __name__ == "__main__":
    sys.exit(main())
