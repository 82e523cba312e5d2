"""`/g_variants/{id}/individuals` and `/g_variants/{id}/biosamples` as the cohort grows (not a test).

    python bench/cross_links.py /tmp/vmem2500.vcf.gz /tmp/vmem25k.vcf.gz [--repeat 20] [--work DIR]

Each VCF becomes one dataset, every sample linked to an individual and a biosample that have a stored phenopacket
(SQLite metadata store, one file). The engine answers the cross-links for the variant with the most carriers, at
record granularity (a page of 10) and at count granularity. Individuals: by the index path (the carriers' sample
indexes mapped through the linked-sample index onto the in-memory individuals index; gateway/beacon/links.py), by
the SQL path (the carriers' ids gathered from the sample indexes into a temporary table the selection joins), and
by the previous SQL path (a Carrier built per carrier, every id sent as one array parameter). Biosamples: the SQL
path and the previous one. Printed: p50 CPU ms of each, and the carriers.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from record_response import sample_names  # noqa: E402 (bench/ is this script's own folder on sys.path)


def document(subject: str) -> dict:
    return {
        "id": f"pp-{subject}",
        "subject": {"id": subject, "sex": "FEMALE"},
        "phenotypicFeatures": [{"type": {"id": "HP:0001250", "label": "Seizure"}}],
        "biosamples": [{"id": f"bs-{subject[4:]}", "individualId": subject}],
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
        number = {n: i for i, n in enumerate(names)}
        ingest_vcf(vcf, dataset_id="bench", data_dir=work, assembly="GRCh38",
                   link_sample=lambda n: (f"ind-{number[n]}", f"bs-{number[n]}"))  # fmt: skip
        store = MetadataStore.open(url)
        store.ensure_dataset("bench")
        for first in range(0, len(names), 2000):
            batch = range(first, min(first + 2000, len(names)))
            store.save_phenopackets(
                [PhenopacketRecord(f"pp-{i}", "bench", f"ind-{i}", document(f"ind-{i}"), source="bench") for i in batch]
            )
        store.close()
    return url, len(names)


def previous_individuals(ctx, request, granularity, datasets, record_id):
    """The SQL path before the temporary table: a Carrier per carrier, every id in one array parameter."""
    from gateway.beacon import individuals
    from gateway.beacon.individuals import phenopackets
    from gateway.store.values import in_values

    ids = sorted({c.individual_id for c in ctx.variants.carriers(record_id) if c.individual_id})
    extra = [in_values(phenopackets.c.subject_id, ids)]
    return individuals.answer_selection(
        ctx, request, granularity, individuals.selection_for("individuals", request, datasets, extra, ctx)
    )


def previous_biosamples(ctx, request, granularity, datasets, record_id):
    from gateway.beacon import individuals
    from gateway.store.values import in_values

    ids = sorted({c.biosample_id for c in ctx.variants.carriers(record_id) if c.biosample_id})
    extra = [in_values(individuals.biosamples.c.biosample_id, ids)]
    return individuals.answer_selection(
        ctx, request, granularity, individuals.selection_for("biosamples", request, datasets, extra, ctx)
    )


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
    biosamples = BEACON_ENTRY_TYPES.get("biosamples")
    assert g_variants is not None and individuals is not None and biosamples is not None
    previous = replace(g_variants, cross_links={**g_variants.cross_links, "individuals": previous_individuals,
                                                "biosamples": previous_biosamples})  # fmt: skip
    for granularity in ("record", "count"):
        for target, entry in (("individuals", individuals), ("biosamples", biosamples)):
            request = parse_post(entry, {"query": {"requestedGranularity": granularity}})

            def run(request=request, target=target, entry=entry, source=g_variants):
                body, status = answer(ctx, source, request, common.variant_id, target, entry)
                assert status == 200 and body["responseSummary"]["numTotalResults"] == common.carrier_count, body
                return body

            figures = []
            if target == "individuals":
                run()  # builds the in-memory index and the linked-sample index
                figures.append(cpu_ms(run, repeat))
            links._carrier_individuals_from_index = lambda *a: None  # type: ignore[assignment]
            try:
                for source in (g_variants, previous):
                    run(source=source)
                    figures.append(cpu_ms(lambda source=source: run(source=source), repeat))
            finally:
                links._carrier_individuals_from_index = index_path  # type: ignore[assignment]
            out[(target, granularity)] = figures
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
    print(f"{'samples':>9} {'carriers':>9}  CPU ms per request, p50: individuals index / SQL / previous SQL;"
          " biosamples SQL / previous SQL")  # fmt: skip
    for row in rows:
        for granularity in ("record", "count"):
            cells = [" / ".join(f"{x:.2f}" for x in row[(t, granularity)]) for t in ("individuals", "biosamples")]
            print(f"{row['samples']:>9} {row['carriers']:>9}  {granularity:<7} {cells[0]:<28} {cells[1]}")
    print(f"load average {os.getloadavg()[0]:.1f} ({os.cpu_count()} cores); CPU time per request, p50")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
