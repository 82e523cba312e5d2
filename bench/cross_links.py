"""`/g_variants/{id}/individuals` as the cohort grows, paged in memory vs every carrier sent to SQL (not a test).

    python bench/cross_links.py /tmp/vmem2500.vcf.gz /tmp/vmem25k.vcf.gz [--repeat 20] [--work DIR]

Each VCF becomes one dataset, every sample linked to an individual that has a stored phenopacket (SQLite metadata
store, one file). The engine answers the cross-link for the variant with the most carriers, at record granularity
(a page of 10) and at count granularity: once by the index path (the carriers' sample indexes mapped through the
linked-sample index onto the in-memory individuals index; gateway/beacon/links.py) and once by the SQL path (every
carrier's individual id sent as one parameter). Printed: p50 CPU ms of each, their ratio, and the carriers.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from record_response import sample_names  # noqa: E402 (bench/ is this script's own folder on sys.path)


def document(subject: str) -> dict:
    return {
        "id": f"pp-{subject}",
        "subject": {"id": subject, "sex": "FEMALE"},
        "phenotypicFeatures": [{"type": {"id": "HP:0001250", "label": "Seizure"}}],
        "metaData": {"created": "2026-01-01T00:00:00Z", "phenopacketSchemaVersion": "2.0.2"},
    }


def cpu_ms(call, repeat: int) -> float:
    got = []
    for _ in range(repeat):
        started = time.thread_time()
        call()
        got.append((time.thread_time() - started) * 1000)
    return statistics.median(got)


def prepare(vcf: Path, work: Path):
    from gateway.store import MetadataStore, PhenopacketRecord
    from gateway.variants.ingest import ingest_vcf

    names = sample_names(vcf)
    url = f"sqlite:///{work / 'gateway.sqlite'}"
    if not (work / "variants").exists():
        ingest_vcf(vcf, dataset_id="bench", data_dir=work, assembly="GRCh38",
                   sample_map={n: f"ind-{i}" for i, n in enumerate(names)})  # fmt: skip
        store = MetadataStore.open(url)
        store.ensure_dataset("bench")
        for first in range(0, len(names), 2000):
            batch = range(first, min(first + 2000, len(names)))
            store.save_phenopackets(
                [PhenopacketRecord(f"pp-{i}", "bench", f"ind-{i}", document(f"ind-{i}"), source="bench") for i in batch]
            )
        store.close()
    return url, len(names)


def measure(vcf: Path, work: Path, repeat: int) -> dict:
    from gateway.beacon import links
    from gateway.beacon.context import QueryContext
    from gateway.beacon.engine import answer
    from gateway.beacon.entry_types import BEACON_ENTRY_TYPES
    from gateway.beacon.request import parse_post
    from gateway.config import config_from_mapping
    from gateway.security.service import Security
    from gateway.store import MetadataStore
    from gateway.variants.query import VariantQuery
    from gateway.variants.store import VariantStore

    url, samples = prepare(vcf, work)
    config = config_from_mapping(
        {"datasets": [{"id": "bench", "security_level": "PUBLIC", "policy": {"profile": "open"}}]}
    )
    key = b"k" * 32
    variants, store = VariantStore(work), MetadataStore.open(url)
    ctx = QueryContext(config=config, key=key, variants=variants, store=store,
                       security=Security.from_config(config, key, ()))  # fmt: skip
    hits, _ = variants.search(VariantQuery(), limit=1_000_000)
    common = max(hits, key=lambda h: h.carrier_count)
    out: dict = {"samples": samples, "carriers": common.carrier_count}
    index_path = links._carrier_individuals_from_index
    g_variants, individuals = BEACON_ENTRY_TYPES.get("g_variants"), BEACON_ENTRY_TYPES.get("individuals")
    assert g_variants is not None and individuals is not None
    for granularity in ("record", "count"):
        request = parse_post(individuals, {"query": {"requestedGranularity": granularity}})

        def run(request=request):
            body, status = answer(ctx, g_variants, request, common.variant_id, "individuals", individuals)
            assert status == 200 and body["responseSummary"]["numTotalResults"] == common.carrier_count, body
            return body

        run()  # builds the in-memory index and the linked-sample index
        indexed = cpu_ms(run, repeat)
        links._carrier_individuals_from_index = lambda *a: None  # type: ignore[assignment]
        try:
            run()
            by_sql = cpu_ms(run, repeat)
        finally:
            links._carrier_individuals_from_index = index_path  # type: ignore[assignment]
        out[granularity] = (indexed, by_sql)
    store.close()
    variants.close()
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("vcfs", type=Path, nargs="+")
    parser.add_argument("--repeat", type=int, default=20)
    parser.add_argument("--work", type=Path, default=None, help="keep (and reuse) the stores here")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="cross-links-") as tmp:
        rows = []
        for vcf in args.vcfs:
            work = (args.work or Path(tmp)) / vcf.name.split(".")[0]
            work.mkdir(parents=True, exist_ok=True)
            rows.append(measure(vcf, work, args.repeat))
    print(
        f"{'samples':>9} {'carriers':>9} "
        + " ".join(f"{g + ' (index / SQL ms, ratio)':>36}" for g in ("record", "count"))
    )
    for row in rows:
        cells = [f"{row[g][0]:7.2f} / {row[g][1]:7.2f} {row[g][0] / row[g][1]:5.2f}x" for g in ("record", "count")]
        print(f"{row['samples']:>9} {row['carriers']:>9} " + " ".join(f"{c:>36}" for c in cells))
    print(f"load average {os.getloadavg()[0]:.1f} ({os.cpu_count()} cores); CPU time per request, p50")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
