"""Save throughput of the metadata store (phenopackets/s), SQLite and PostgreSQL.

Uses the 300 real phenopackets of ../shared/reference, saved as new patients and then
saved again (updates), in batches of 1 (one patient per bundle) and of 50.

    python bench/store_save.py [--postgres postgresql+psycopg://postgres@127.0.0.1:5432/test]
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
import uuid
from pathlib import Path

import sqlalchemy as sa
from sqlalchemy.engine import make_url

from gateway.store import MetadataStore, PhenopacketRecord

REFERENCE = Path(__file__).resolve().parents[1] / ".." / "shared" / "reference" / "phenopackets"


def load() -> list[dict]:
    return [json.loads(f.read_text()) for f in sorted(REFERENCE.glob("*/PMID_*.json"))]


def run(url: str, documents: list[dict], copies: int) -> None:
    store = MetadataStore.open(url)
    store.ensure_dataset("bench")
    records = [
        PhenopacketRecord(f"{doc['id']}#{n}", "bench", f"subject-{n}-{i}", doc, source="bench")
        for n in range(copies)
        for i, doc in enumerate(documents)
    ]
    for batch in (1, 50):
        for label in ("insert", "update"):
            if label == "insert":
                with store.transaction() as connection:
                    connection.execute(sa.text("DELETE FROM phenopackets"))
            started = time.perf_counter()
            for start in range(0, len(records), batch):
                store.save_phenopackets(records[start : start + batch])
            elapsed = time.perf_counter() - started
            print(
                f"  batch {batch:>3} {label}: {len(records) / elapsed:8.0f} phenopackets/s ({len(records)} in {elapsed:.2f} s)"
            )
    store.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--postgres", help="PostgreSQL URL; a scratch schema is created and dropped")
    parser.add_argument("--copies", type=int, default=4, help="times the 300 documents are saved as new patients")
    args = parser.parse_args()
    documents = load()
    with tempfile.TemporaryDirectory() as scratch:
        print("SQLite (WAL, file):")
        run(f"sqlite:///{scratch}/bench.sqlite", documents, args.copies)
    if args.postgres:
        base = make_url(args.postgres)
        schema = f"gw_bench_{uuid.uuid4().hex[:8]}"
        admin = sa.create_engine(base)
        with admin.begin() as connection:
            connection.exec_driver_sql(f'CREATE SCHEMA "{schema}"')
        try:
            print("PostgreSQL:")
            url = base.update_query_dict({"options": f"-csearch_path={schema}"}).render_as_string(hide_password=False)
            run(url, documents, args.copies)
        finally:
            with admin.begin() as connection:
                connection.exec_driver_sql(f'DROP SCHEMA "{schema}" CASCADE')
            admin.dispose()


if __name__ == "__main__":
    main()
