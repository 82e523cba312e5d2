"""`gateway ingest phenopacket` over a collection of any size (gateway.services.ingest.ingest_phenopacket_stream).

Before, the command held every document twice (as read and pseudonymised) and every record in memory, then
stored them in one call: ~90 KB per document, 0.97 GB for the 10,578 documents of phenopacket-store, so a
national collection of 100,000 needed ~9 GB. Now a document is let go once checked and spooled, and the
records are stored `batch` at a time inside one transaction: still all or nothing."""

from __future__ import annotations

import gc
import weakref

import pytest

from gateway.services.ingest import ingest_phenopacket_stream
from tests.store.test_phenopacket_real_identifiers import _packet

KEY = bytes(range(32))


class _Doc(dict):
    """A document the test can watch being let go (a plain dict takes no weak reference)."""


def _documents(count, alive, label="proband"):
    for n in range(count):
        doc = _Doc(_packet(f"PMID_{n}_doc", label))
        alive.append(weakref.ref(doc))
        yield f"doc-{n}.json", doc


def test_documents_are_let_go_as_they_are_checked_and_stored_in_batches(store):
    alive: list[weakref.ref] = []
    batches: list[int] = []
    save = store.save_phenopackets_in

    def counted(connection, records, **options):
        batches.append(len(records))
        return save(connection, records, **options)

    store.save_phenopackets_in = counted  # type: ignore[method-assign]
    said: list[str] = []
    gc.collect()
    result = ingest_phenopacket_stream(
        _documents(120, alive),
        store=store,
        key=KEY,
        dataset_id="big",
        say=lambda where, _: said.append(where),
        batch=25,
    )
    gc.collect()
    assert len(result.stored) == 120 and result.refused == 0 and result.checked == 120
    assert sum(1 for ref in alive if ref() is not None) <= 1  # none held but the last one read
    assert batches == [25, 25, 25, 25, 20]
    assert len({r.id for _, r, _ in result.stored}) == 120 and all(r.created for _, r, _ in result.stored)
    assert store.list_phenopackets(dataset_id="big", limit=1000)[1] == 120


def test_one_refused_document_stores_nothing_and_skip_invalid_the_others(store):
    docs = [(f"doc-{n}.json", _packet(f"PMID_{n}_doc", "proband")) for n in range(5)]
    docs[3][1]["subject"] = "not an individual"
    result = ingest_phenopacket_stream(iter(docs), store=store, key=KEY, dataset_id="ds", say=lambda *_: None)
    assert result.stored == [] and result.refused == 1
    assert store.list_phenopackets(dataset_id="ds")[1] == 0
    kept = ingest_phenopacket_stream(
        iter(docs), store=store, key=KEY, dataset_id="ds", say=lambda *_: None, skip_invalid=True
    )
    assert [where for where, _, _ in kept.stored] == ["doc-0.json", "doc-1.json", "doc-2.json", "doc-4.json"]


def test_an_unreadable_source_stores_nothing_unless_skip_invalid(store):
    docs = [("a.json", _packet("PMID_1_a", "a"))]
    nothing = ingest_phenopacket_stream(
        iter(docs), store=store, key=KEY, dataset_id="ds", say=lambda *_: None, unreadable=lambda: True
    )
    assert nothing.stored == []
    kept = ingest_phenopacket_stream(
        iter(docs),
        store=store,
        key=KEY,
        dataset_id="ds",
        say=lambda *_: None,
        unreadable=lambda: True,
        skip_invalid=True,
    )
    assert len(kept.stored) == 1


@pytest.mark.parametrize("same", [True, False])
def test_repeated_ids_across_the_stream_are_said_with_every_location(store, same):
    first = _packet("PMID_7_x", "x")
    second = first if same else {**_packet("PMID_7_x", "y")}
    docs = [("one.json", first), ("mid.json", _packet("PMID_8_z", "z")), ("two.json", second)]
    said: dict[str, list] = {}
    result = ingest_phenopacket_stream(
        iter(docs),
        store=store,
        key=KEY,
        dataset_id="ds",
        say=lambda where, issues: said.setdefault(where, []).extend(issues),
    )
    duplicates = {where: [i for i in issues if i.code == "duplicate"] for where, issues in said.items()}
    assert "two.json" in duplicates["one.json"][0].message and "one.json" in duplicates["two.json"][0].message
    if same:  # stored once, both told so
        assert [w for w, _, _ in result.stored] == ["one.json", "mid.json", "two.json"]
        assert result.stored[0][1] == result.stored[2][1]
        assert store.list_phenopackets(dataset_id="ds")[1] == 2
    else:  # one id, two people: nothing stored
        assert result.stored == [] and all(i.is_error for i in duplicates["one.json"])
        assert store.list_phenopackets(dataset_id="ds")[1] == 0


def test_a_retried_transaction_reads_the_spool_from_its_start(store):
    """PostgreSQL retries a transaction that lost a deadlock (MetadataStore.in_transaction): the second attempt
    must store every document again, not find the spool read to its end."""
    attempts = []
    real = store.in_transaction

    def twice(work):
        def first_attempt_fails(connection):
            attempts.append(len(attempts))
            result = work(connection)
            if len(attempts) == 1:
                raise RuntimeError("lost a deadlock")  # rolled back, then run again
            return result

        try:
            return real(first_attempt_fails)
        except RuntimeError:
            return real(first_attempt_fails)

    store.in_transaction = twice  # type: ignore[method-assign]
    docs = [(f"doc-{n}.json", _packet(f"PMID_{n}_doc", "proband")) for n in range(7)]
    result = ingest_phenopacket_stream(iter(docs), store=store, key=KEY, dataset_id="ds", say=lambda *_: None, batch=3)
    assert attempts == [0, 1]
    assert len(result.stored) == 7 and store.list_phenopackets(dataset_id="ds")[1] == 7
