"""`gateway index rebuild` / MetadataStore.rebuild_index: phenopackets stored by a version that indexed less are
indexed again from their documents. "Stored by an older version" is made here by taking rows out of the index (a
term kind it did not have, the sex it read otherwise): what the upgrade would find."""

from __future__ import annotations

import json

import sqlalchemy as sa

from gateway.cli import main
from gateway.store import MetadataStore
from gateway.store.tables import phenopacket_changes, phenopacket_terms, phenopackets
from tests.pg_schema import fresh_schema


def _reference_packets(reference_dir, n: int) -> list[dict]:
    found = sorted(p for p in (reference_dir / "phenopackets").rglob("*.json"))
    packets = []
    for path in found:
        text = path.read_text()
        if '"geneContext"' not in text:  # a packet whose gene the index reads (since 2026-12-01)
            continue
        doc = json.loads(text)
        if isinstance(doc, dict) and "subject" in doc and doc.get("interpretations"):
            packets.append(doc)
        if len(packets) == n:
            return packets
    raise AssertionError("not enough reference phenopackets with interpretations")


def _index(store: MetadataStore) -> dict:
    with store.engine.connect() as connection:
        terms = connection.execute(
            sa.select(
                phenopacket_terms.c.phenopacket_pk,
                phenopacket_terms.c.kind,
                phenopacket_terms.c.term,
                phenopacket_terms.c.label,
            )
        ).all()
        rows = connection.execute(sa.select(phenopackets.c.pk, phenopackets.c.sex, phenopackets.c.revision)).all()
    return {
        "terms": sorted(map(tuple, terms)),
        "sex": {r.pk: r.sex for r in rows},
        "rev": {r.pk: r.revision for r in rows},
    }


def _as_an_older_version_left_it(store: MetadataStore, pk: int) -> None:
    """One phenopacket without its gene and disease rows and without its sex; every other one as it is."""
    with store.transaction() as connection:
        connection.execute(
            sa.delete(phenopacket_terms).where(
                phenopacket_terms.c.phenopacket_pk == pk, phenopacket_terms.c.kind.in_(("gene", "disease"))
            )
        )
        connection.execute(sa.update(phenopackets).where(phenopackets.c.pk == pk).values(sex=None))


def test_index_rebuild_restores_what_an_older_version_did_not_index(env, reference_dir, tmp_path, capsys):
    folder = tmp_path / "packets"
    folder.mkdir()
    for n, packet in enumerate(_reference_packets(reference_dir, 3)):
        (folder / f"p{n}.json").write_text(json.dumps(packet))
    assert main(["ingest", "phenopacket", str(folder), "--dataset", "rd"]) == 0
    from gateway.config import load_config

    store = MetadataStore.open(load_config().resolved_database_url)
    try:
        current = _index(store)
        genes = sorted({t[0] for t in current["terms"] if t[1] == "gene"})
        assert genes, "a reference packet names its gene"
        pk = genes[0]
        _as_an_older_version_left_it(store, pk)
        assert _index(store)["terms"] != current["terms"]
        capsys.readouterr()
        assert main(["index", "rebuild", "--batch", "2"]) == 0
        assert "1 stored phenopacket(s) indexed again" in capsys.readouterr().out
        rebuilt = _index(store)
        assert rebuilt["terms"] == current["terms"] and rebuilt["sex"] == current["sex"]
        assert rebuilt["rev"] == {k: v + (k == pk) for k, v in current["rev"].items()}  # running nodes patch
        assert main(["index", "rebuild", "--dataset", "rd"]) == 0  # again: nothing left to do
        assert "0 stored phenopacket(s) indexed again" in capsys.readouterr().out
        assert _index(store) == rebuilt
    finally:
        store.close()
    records = [json.loads(line) for line in (env / "data" / "audit" / "audit.jsonl").read_text().splitlines()]
    assert [r["phase"] for r in records if r.get("action") == "cli index rebuild"] == ["intent", "outcome"] * 2


def test_index_rebuild_on_postgresql_logs_the_change_for_running_nodes(postgres_url, reference_dir):
    from gateway.services.ingest import ingest_phenopackets

    with fresh_schema(postgres_url, "gw_reindex") as url:
        store = MetadataStore.open(url)
        try:
            store.ensure_dataset("rd")
            results, reports = ingest_phenopackets(
                _reference_packets(reference_dir, 2), store=store, key=bytes(32), dataset_id="rd"
            )
            assert len(results) == 2 and all(r.ok for r in reports)
            current = _index(store)
            pk = max(t[0] for t in current["terms"] if t[1] == "gene")
            _as_an_older_version_left_it(store, pk)
            with store.engine.connect() as connection:
                logged = connection.execute(sa.select(sa.func.count()).select_from(phenopacket_changes)).scalar()
            assert store.rebuild_index(batch=1) == 1
            assert _index(store)["terms"] == current["terms"] and _index(store)["sex"] == current["sex"]
            with store.engine.connect() as connection:
                now_logged = connection.execute(sa.select(sa.func.count()).select_from(phenopacket_changes)).scalar()
            assert now_logged == logged + 1  # the trigger saw the raised revision: term indexes patch themselves
            assert store.rebuild_index() == 0
        finally:
            store.close()
