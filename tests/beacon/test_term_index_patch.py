"""A stale term index is patched, not read again, and the patched snapshot equals a full read of the store.

A node keeps ingesting while it is queried: every write makes the snapshot stale. These tests write in every
way the store changes (new individuals, replacements with other terms and sex, deletions, a second dataset,
key rotation) and compare, after each step, the patched snapshot with one built from scratch — on SQLite and
on the real PostgreSQL — and the index's answers with SQL's.
"""

from __future__ import annotations

import contextlib
import copy
import random
import threading
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import numpy as np
import pytest

from gateway.beacon.filters import PRESENT_KINDS
from gateway.beacon.individuals import current_snapshot
from gateway.beacon.term_index import Snapshot, TermIndex, index_for
from gateway.security.rotation import rotate_metadata
from gateway.services.ingest import ingest_phenopackets
from gateway.store.metadata import MetadataStore
from tests.beacon.real_node import reference_phenopackets
from tests.beacon.test_term_index import BROAD, _both, _context, _summary
from tests.pg_schema import fresh_schema

pytestmark = pytest.mark.slow  # several seconds: pytest-xdist starts it first (tests/conftest.py)

DATASETS = [
    {"id": "d1", "security_level": "PUBLIC", "policy": {"profile": "open"}},
    {"id": "d2", "security_level": "PUBLIC", "policy": {"profile": "open"}},
]


def _content(snapshot: Snapshot) -> tuple:
    """What a snapshot says, independent of how it was built: per pk its dataset, sex, subject, revision and
    terms."""
    dataset_of = {c: d for d, c in snapshot.dataset_code.items()}
    sex_of = {c: s for s, c in snapshot.sex_code.items()}
    terms: dict[int, set[str]] = {}
    for term, positions in snapshot.postings.items():
        assert np.all(np.diff(positions) > 0), term  # ascending, unique: what the masks rely on
        for position in positions.tolist():
            terms.setdefault(int(snapshot.pks[position]), set()).add(term)
    assert snapshot.versions is not None
    rows = {
        int(pk): (
            dataset_of[int(snapshot.dataset_codes[i])],
            sex_of[int(snapshot.sex_codes[i])],
            snapshot.subjects[i],
            int(snapshot.versions[i]),
            frozenset(terms.get(int(pk), ())),
        )
        for i, pk in enumerate(snapshot.pks.tolist())
    }
    assert list(rows) == sorted(rows)
    return tuple(rows.items())


def _changed(doc: dict, rng: random.Random, held_terms: list[str]) -> dict:
    """The same individual with other phenotypes and another sex (a replacement)."""
    doc = copy.deepcopy(doc)
    doc["subject"]["sex"] = rng.choice(["FEMALE", "MALE", "OTHER_SEX"])
    picked = rng.sample(held_terms, 3)
    doc["phenotypicFeatures"] = [{"type": {"id": t, "label": t}} for t in picked]
    return doc


def _replace_the_last_row(s, doc: dict) -> None:
    """Delete the individual with the highest pk, then store another one (revision 1, like the deleted one)."""
    import sqlalchemy as sa

    from gateway.store.tables import phenopackets

    with s.store.engine.connect() as connection:
        last_pk, subject = connection.execute(
            sa.select(phenopackets.c.pk, phenopackets.c.subject_id).order_by(phenopackets.c.pk.desc()).limit(1)
        ).one()
        connection.execute(sa.update(phenopackets).where(phenopackets.c.pk == last_pk).values(revision=1))
        connection.commit()
    s.store.delete_subject(subject)
    ingest_phenopackets([doc], store=s.store, key=s.key, dataset_id="d1")
    with s.store.engine.connect() as connection:
        new_pk = connection.execute(sa.select(sa.func.max(phenopackets.c.pk))).scalar_one()
    if s.store.engine.dialect.name == "sqlite":
        assert new_pk == last_pk  # the case this step is here for: same pk, same revision, another person


def _late_commit(s) -> None:
    """A replacement whose rows carry a stamp older than the patch window (a transaction that committed long
    after it stamped them): the window misses it, the sums of revisions do not."""
    import sqlalchemy as sa

    from gateway.store.tables import phenopackets

    with s.store.engine.connect() as connection:
        pk = connection.execute(sa.select(sa.func.min(phenopackets.c.pk))).scalar_one()
        stamp = datetime(2000, 1, 1, tzinfo=UTC)
        connection.execute(
            sa.update(phenopackets)
            .where(phenopackets.c.pk == pk)
            .values(sex="OTHER_SEX", revision=phenopackets.c.revision + 1, updated_at=stamp)
        )
        connection.commit()


def _exercise(app, key_reads: list[int]) -> None:
    s = app.extensions["gateway"]
    ctx = _context(app)
    index = index_for(s.store, ctx.cache, PRESENT_KINDS)
    docs = reference_phenopackets()
    for doc in docs[:30]:
        ingest_phenopackets([doc], store=s.store, key=s.key, dataset_id="d1")
    first = current_snapshot(ctx)
    assert first is not None and first.versions is not None
    held = sorted(t for t in first.postings if t.startswith("HP:"))[:60]
    rng = random.Random(3)
    patches_before = index.patches
    steps = [
        lambda: ingest_phenopackets(docs[30:33], store=s.store, key=s.key, dataset_id="d1"),  # new individuals
        lambda: ingest_phenopackets(  # replacements: other terms, other sex
            [_changed(d, rng, held) for d in docs[3:6]], store=s.store, key=s.key, dataset_id="d1"
        ),
        lambda: ingest_phenopackets(docs[40:42], store=s.store, key=s.key, dataset_id="d2"),  # another dataset
        lambda: s.store.delete_subject(s.store.list_phenopackets(dataset_id="d1", limit=1)[0][0].subject_id),
        lambda: (  # a deletion and a new individual in one step
            s.store.delete_subject(s.store.list_phenopackets(dataset_id="d2", limit=1)[0][0].subject_id),
            ingest_phenopackets(docs[45:46], store=s.store, key=s.key, dataset_id="d1"),
        ),
        lambda: _replace_the_last_row(s, docs[47]),  # SQLite gives the freed last pk to the next insert
        lambda: _late_commit(s),
        lambda: rotate_metadata(s.store, b"k" * 32),  # every row replaced: ids and subjects carried forward
    ]
    # The change log names every changed row (inserts, replacements, deletions, a late commit, a reused pk):
    # no step compares every row's version.
    every_row_read = [False] * len(steps)
    for step, reads_every_row in zip(steps, every_row_read, strict=True):
        before = len(key_reads)
        step()
        snapshot = current_snapshot(ctx)
        assert snapshot is not None
        assert (len(key_reads) > before) == reads_every_row, (steps.index(step), len(key_reads), before)
        rebuilt = index.source.read(snapshot.version, PRESENT_KINDS)
        assert _content(snapshot) == _content(rebuilt)
        for term in BROAD:
            body = {"query": {"filters": [term], "requestedGranularity": "record", "pagination": {"limit": 100}}}
            via_index, via_sql = _both(ctx, body, ("d1", "d2"))
            assert _summary(via_index) == _summary(via_sql)
    assert index.patches - patches_before == len(steps)  # every stale snapshot was patched, none read again


def _count_key_reads(monkeypatch) -> list[int]:
    from gateway.beacon import term_index

    calls: list[int] = []
    for reads in (term_index._SqliteReads, term_index._PostgresReads):
        real = reads.keys

        def counted(self, real=real):
            calls.append(1)
            return real(self)

        monkeypatch.setattr(reads, "keys", counted)
    return calls


@contextlib.contextmanager
def _node(postgres_url: str | None = None, prefix: str = "gw_term") -> Iterator[Any]:
    """A node with DATASETS on SQLite, or on a fresh schema of the real PostgreSQL; its store closed after."""
    from tests.beacon.conftest import make_app

    with fresh_schema(postgres_url, prefix) if postgres_url else contextlib.nullcontext() as url:
        app = make_app(None, datasets=DATASETS, **({"database_url": url} if url else {}))
        try:
            yield app
        finally:
            app.extensions["gateway"].store.close()


@contextlib.contextmanager
def _other_process(app) -> Iterator[MetadataStore]:
    """A second store on the node's database: its writes are another process's (not in the node's local_writes)."""
    other = MetadataStore.open(app.extensions["gateway"].store.engine.url.render_as_string(hide_password=False))
    try:
        yield other
    finally:
        other.close()


def _seeded(app, n: int = 20) -> tuple[Any, Any, TermIndex, list[dict], Snapshot]:
    """(services, query context, term index, reference documents, current snapshot) once the first n documents
    are stored in d1."""
    s = app.extensions["gateway"]
    ctx = _context(app)
    index = index_for(s.store, ctx.cache, PRESENT_KINDS)
    docs = reference_phenopackets()
    ingest_phenopackets(docs[:n], store=s.store, key=s.key, dataset_id="d1")
    first = current_snapshot(ctx)
    assert first is not None and first.size == n
    return s, ctx, index, docs, first


def _records(ctx, limit: int):
    """The record answer of d1's first `limit` individuals, through the record path (its page read checks the
    snapshot)."""
    from gateway.beacon import individuals
    from gateway.beacon.request import parse_post

    body = {"query": {"requestedGranularity": "record", "pagination": {"limit": limit}}}
    request = parse_post(individuals.INDIVIDUALS, body)
    selection = individuals.selection_for("individuals", request, ("d1",), (), ctx, record_page=True)
    return individuals.answer_selection(ctx, request, "record", selection)


def _sql_records(ctx, limit: int):
    body = {"query": {"requestedGranularity": "record", "pagination": {"limit": limit}}}
    return _both(ctx, body, ("d1",))[1]


def _hold_patches(index: TermIndex, monkeypatch) -> tuple[threading.Event, threading.Event]:
    """(gate, entered): the index's patches start (`entered` is set) and wait for `gate` — a patch in flight for
    as long as a test needs."""
    gate, entered = threading.Event(), threading.Event()
    real_patch = index.source.patch

    def held_patch(*args):
        entered.set()
        gate.wait(timeout=60)
        return real_patch(*args)

    monkeypatch.setattr(index.source, "patch", held_patch)
    return gate, entered


def test_sqlite_patched_snapshot_equals_a_full_read(monkeypatch):
    with _node() as app:
        _exercise(app, _count_key_reads(monkeypatch))


def test_postgres_patched_snapshot_equals_a_full_read(postgres_url, monkeypatch):
    with _node(postgres_url, "gw_term_patch") as app:
        assert app.extensions["gateway"].store.engine.dialect.name == "postgresql"
        _exercise(app, _count_key_reads(monkeypatch))


def test_a_patch_that_would_read_most_rows_is_left_to_a_full_read():
    from gateway.beacon.term_index import patched, snapshot_from

    old = snapshot_from(1, [(pk, "d1", "MALE", f"s{pk}", 1) for pk in range(1, 201)], [("HP:1", 1)])
    fetched = []

    def fetch(pks):
        fetched.append(pks)
        return [(pk, "d1", "MALE", f"s{pk}", 2) for pk in pks], {}

    everything_new = patched(old, 2, np.arange(1, 201, dtype=np.int64), np.full(200, 2, dtype=np.int64), fetch)
    assert everything_new is None and not fetched  # nothing read: the caller reads the store whole
    a_few_new = patched(old, 2, np.arange(1, 211, dtype=np.int64), np.ones(210, dtype=np.int64), fetch)
    assert a_few_new is not None and fetched == [list(range(201, 211))]


def test_a_rebuild_still_answers_when_patching_is_refused(monkeypatch):
    from gateway.beacon import term_index

    with _node() as app:
        s, ctx, index, docs, _ = _seeded(app)
        monkeypatch.setattr(term_index, "patched", lambda *args, **kwargs: None)
        ingest_phenopackets(docs[20:30], store=s.store, key=s.key, dataset_id="d1")
        before = index.patches
        snapshot = current_snapshot(ctx)
        assert snapshot is not None and snapshot.size == 30
        assert index.patches == before  # read again from scratch, and exact


@pytest.mark.parametrize("rows", [0, 1])
def test_patching_an_empty_or_single_row_store(rows):
    from gateway.beacon.term_index import patched, snapshot_from

    old = snapshot_from(1, [(1, "d1", "MALE", "s1", 1)][:rows], [("HP:1", 1)][:rows])
    fresh = patched(
        old,
        2,
        np.array([1, 2], dtype=np.int64),
        np.array([1, 1], dtype=np.int64),
        lambda pks: ([(pk, "d1", "FEMALE", f"s{pk}", 1) for pk in pks], {"HP:2": pks}),
    )
    assert fresh is not None and fresh.pks.tolist() == [1, 2]
    assert fresh.postings["HP:2"].tolist() == ([1] if rows else [0, 1])
    assert ("HP:1" in fresh.postings) == bool(rows)


def _prune_after_every_write(store, keep: int) -> None:
    """Make the change log keep only its last `keep` rows, pruned by every write (the triggers read this row)."""
    import sqlalchemy as sa

    from gateway.store.tables import phenopacket_changes_horizon

    with store.engine.begin() as connection:
        connection.execute(sa.update(phenopacket_changes_horizon).values(keep_entries=keep, prune_every=1))


def _log_size(store) -> int:
    import sqlalchemy as sa

    with store.engine.connect() as connection:
        return connection.execute(sa.text("SELECT count(*) FROM phenopacket_changes")).scalar_one()


def _pruned_past_the_mark(app, key_reads: list[int], keep_after: int) -> None:
    """A snapshot older than the log's pruned horizon is brought up to date by one comparison of every row's
    version, then patched from the log again (the log pruned to its last `keep_after` rows meanwhile)."""
    s = app.extensions["gateway"]
    ctx = _context(app)
    index = index_for(s.store, ctx.cache, PRESENT_KINDS)
    docs = reference_phenopackets()
    ingest_phenopackets(docs[:20], store=s.store, key=s.key, dataset_id="d1")
    assert current_snapshot(ctx) is not None
    _prune_after_every_write(s.store, keep=2)
    for doc in docs[20:25]:  # five log rows, of which the last two are kept
        ingest_phenopackets([doc], store=s.store, key=s.key, dataset_id="d1")
    assert _log_size(s.store) == 2
    before = len(key_reads)
    snapshot = current_snapshot(ctx)
    assert snapshot is not None and snapshot.size == 25
    assert len(key_reads) == before + 1  # the log could not tell: every row's version compared, once
    assert _content(snapshot) == _content(index.source.read(snapshot.version, PRESENT_KINDS))

    _prune_after_every_write(s.store, keep=keep_after)
    s.store.delete_subject(s.store.list_phenopackets(dataset_id="d1", limit=1)[0][0].subject_id)
    ingest_phenopackets(docs[25:26], store=s.store, key=s.key, dataset_id="d2")
    snapshot = current_snapshot(ctx)
    assert snapshot is not None and snapshot.size == 25
    assert len(key_reads) == before + 1  # from the log again
    assert _content(snapshot) == _content(index.source.read(snapshot.version, PRESENT_KINDS))


def test_sqlite_a_snapshot_past_the_pruned_log_is_compared_whole_once(monkeypatch):
    with _node() as app:
        # SQLite's mark is a seq: a prune that leaves the rows past it is no reason to compare every row.
        _pruned_past_the_mark(app, _count_key_reads(monkeypatch), keep_after=2)


def test_postgres_a_snapshot_past_the_pruned_log_is_compared_whole_once(postgres_url, monkeypatch):
    with _node(postgres_url, "gw_term_prune") as app:
        # No prune after the comparison: PostgreSQL's check after a prune is conservative (a write transaction
        # open anywhere in the cluster, e.g. another test's, holds the snapshot's xmin down).
        _pruned_past_the_mark(app, _count_key_reads(monkeypatch), keep_after=1000)


def test_postgres_a_transaction_that_commits_after_a_later_one_is_patched_in(postgres_url, monkeypatch):
    """PostgreSQL draws log sequence numbers before commit: a transaction may commit after one that drew later
    numbers and after a patch that read those. The patch after its commit must still take it in."""
    import sqlalchemy as sa

    from gateway.store.tables import phenopacket_changes, phenopackets

    key_reads = _count_key_reads(monkeypatch)
    with _node(postgres_url, "gw_term_late") as app:
        s, ctx, index, docs, _ = _seeded(app)
        with s.store.engine.connect() as early:
            first, last = early.execute(sa.select(sa.func.min(phenopackets.c.pk), sa.func.max(phenopackets.c.pk))).one()
            early.execute(
                sa.update(phenopackets)
                .where(phenopackets.c.pk == first)
                .values(sex="OTHER_SEX", revision=phenopackets.c.revision + 1)
            )
            early.execute(sa.delete(phenopackets).where(phenopackets.c.pk == last))
            early_seq = early.execute(sa.select(sa.func.max(phenopacket_changes.c.seq))).scalar_one()
            ingest_phenopackets(docs[20:23], store=s.store, key=s.key, dataset_id="d2")  # commits first
            middle = current_snapshot(ctx)
            assert middle is not None and middle.size == 23
            assert _content(middle) == _content(index.source.read(middle.version, PRESENT_KINDS))
            early.commit()
        with s.store.engine.connect() as connection:
            later = connection.execute(
                sa.select(sa.func.min(phenopacket_changes.c.seq)).where(phenopacket_changes.c.seq > early_seq)
            ).scalar_one()
        assert later is not None and later > early_seq  # the case: the late commit holds the lower numbers
        late = current_snapshot(ctx)
        assert late is not None and late.size == 22 and last not in late.pks.tolist()
        assert _content(late) == _content(index.source.read(late.version, PRESENT_KINDS))
        assert not key_reads  # all from the log


def test_postgres_concurrent_writers_leave_the_patched_snapshot_equal_to_a_full_read(postgres_url, monkeypatch):
    key_reads = _count_key_reads(monkeypatch)
    with _node(postgres_url, "gw_term_writers") as app:
        s, ctx, index, docs, first = _seeded(app, 30)
        held = sorted(t for t in first.postings if t.startswith("HP:"))[:60]
        failures: list[BaseException] = []

        def writer(n: int) -> None:
            rng = random.Random(n)
            try:
                for i in range(6):
                    if i % 3 == 2:  # a replacement of a shared individual: writers contend for its row
                        doc = _changed(docs[i + n], rng, held)
                        ingest_phenopackets([doc], store=s.store, key=s.key, dataset_id="d1")
                    else:
                        ingest_phenopackets([docs[30 + 6 * n + i]], store=s.store, key=s.key, dataset_id="d2")
            except BaseException as error:  # reported by the main thread
                failures.append(error)

        threads = [threading.Thread(target=writer, args=(n,)) for n in range(3)]
        for thread in threads:
            thread.start()
        patches_before = index.patches
        while any(thread.is_alive() for thread in threads):
            current_snapshot(ctx)  # patches while the writers commit
        for thread in threads:
            thread.join()
        assert not failures
        final = current_snapshot(ctx)
        assert final is not None
        assert _content(final) == _content(index.source.read(final.version, PRESENT_KINDS))
        assert index.patches > patches_before and not key_reads


def _record_answer_amid_writes(app, monkeypatch, writes: list[tuple[int, int]]) -> tuple[list[bool], int]:
    """A record answer of d1 while another client's writes, each replacing a row of the page, commit around its
    page reads: `writes[i]` = (before, after) the i-th read, how many. Checks that the answer comes from the index
    (not from SQL, hundreds of ms on a large store) and is SQL's; returns (whether each page read was current, how
    many change-counter reads the answer made besides its page reads)."""
    from gateway.beacon import individuals

    s, ctx, _, docs, first = _seeded(app)
    real_page, real_counter = s.store.reads.page, s.store.reads.change_counter
    held = sorted(t for t in first.postings if t.startswith("HP:"))[:60]
    pending = [_changed(doc, random.Random(2), held) for doc in docs[:10]]  # rows on the page
    page_reads: list[bool] = []
    counter_reads: list[int] = []

    def write(n: int) -> None:
        for _ in range(n):
            ingest_phenopackets([pending.pop(0)], store=s.store, key=s.key, dataset_id="d1")

    def page_amid_writes(pks, expected, since=None):
        before, after = writes[len(page_reads)] if len(page_reads) < len(writes) else (0, 0)
        write(before)
        page = real_page(pks, expected, since)
        page_reads.append(page.current)
        write(after)
        return page

    def counter():
        counter_reads.append(1)
        return real_counter()

    monkeypatch.setattr(s.store.reads, "page", page_amid_writes)
    monkeypatch.setattr(s.store.reads, "change_counter", counter)
    sql_answers = []
    real_answer = individuals.answer_selection

    def answer(ctx, request, granularity, selection, scope=None):
        if selection.snapshot is None:
            sql_answers.append(1)
        return real_answer(ctx, request, granularity, selection, scope)

    monkeypatch.setattr(individuals, "answer_selection", answer)
    got = _records(ctx, 100)
    counted = len(counter_reads)
    assert not sql_answers and got.total == 20
    monkeypatch.setattr(s.store.reads, "page", real_page)
    assert _summary(got) == _summary(_sql_records(ctx, 100))
    return page_reads, counted


def test_postgres_a_stale_page_read_serves_the_snapshot_patched_to_its_version(postgres_url, monkeypatch):
    """A write replaces a row of the page just before the page read: the read finds the store moved on. The
    snapshot is patched to the counter that read saw (no second counter read), and the rows it read are the store
    at that version: the answer comes from them, without reading the page again."""
    with _node(postgres_url, "gw_term_page_once") as app:
        page_reads, counter_reads = _record_answer_amid_writes(app, monkeypatch, [(1, 0)])
        assert page_reads == [False] and counter_reads == 0


def test_postgres_a_record_page_found_stale_twice_is_still_answered_from_the_index(postgres_url, monkeypatch):
    """A node that keeps ingesting: writes land before the first page read, between it and the patch, and before
    the second read. Each stale read leads to a patch; the answer comes from the last read's rows."""
    with _node(postgres_url, "gw_term_page") as app:
        page_reads, _ = _record_answer_amid_writes(app, monkeypatch, [(1, 1), (1, 0)])
        assert page_reads == [False, False]


def _readers_answer_around_a_patch(app, other, monkeypatch) -> None:
    """While one thread patches, another answers from the snapshot before the patch (another process's write is
    missing from it), unless this process wrote since: then it waits and reads its own write."""
    s, ctx, index, docs, first = _seeded(app)
    gate, entered = _hold_patches(index, monkeypatch)
    ingest_phenopackets(docs[20:21], store=other, key=s.key, dataset_id="d1")  # another process's write
    patched: list = []
    patcher = threading.Thread(target=lambda: patched.append(current_snapshot(ctx)))
    patcher.start()
    try:
        assert entered.wait(timeout=60)
        during = current_snapshot(ctx)
        assert during is first and index.stale_answers == 1  # not queued behind the patch in flight
        ingest_phenopackets(docs[21:22], store=s.store, key=s.key, dataset_id="d1")  # this process's own write
        threading.Timer(0.2, gate.set).start()
        mine = current_snapshot(ctx)
        assert mine is not None and mine.size == 22  # waited for the patch: its own write is in the answer
        assert index.stale_answers == 1
    finally:
        gate.set()
        patcher.join()
    assert patched[0] is not None and patched[0].size == 22
    assert _content(mine) == _content(index.source.read(mine.version, PRESENT_KINDS))


def test_sqlite_readers_answer_around_a_patch_but_read_their_own_writes(monkeypatch):
    with _node() as app, _other_process(app) as other:
        _readers_answer_around_a_patch(app, other, monkeypatch)


def test_postgres_readers_answer_around_a_patch_but_read_their_own_writes(postgres_url, monkeypatch):
    with _node(postgres_url, "gw_term_around") as app, _other_process(app) as other:
        _readers_answer_around_a_patch(app, other, monkeypatch)


def test_postgres_a_record_page_is_answered_around_a_patch_unless_its_rows_changed(postgres_url, monkeypatch):
    """While another thread patches, a record answer whose page rows did not change after the snapshot is the
    store as at the snapshot (not queued behind the patch); one whose page row changed is not."""
    with _node(postgres_url, "gw_term_page_around") as app, _other_process(app) as other:
        s, ctx, index, docs, first = _seeded(app)
        gate, entered = _hold_patches(index, monkeypatch)
        ingest_phenopackets(docs[20:21], store=other, key=s.key, dataset_id="d1")  # a new row: on no page
        patcher = threading.Thread(target=current_snapshot, args=(ctx,))
        patcher.start()
        try:
            assert entered.wait(timeout=60)
            around = _records(ctx, 5)
            assert around.total == 20 and index.latest() is first  # as at the snapshot, not behind the patch
            replaced = _changed(docs[0], random.Random(1), sorted(t for t in first.postings if t.startswith("HP:")))
            ingest_phenopackets([replaced], store=other, key=s.key, dataset_id="d1")  # a row on every page
            fresh = _records(ctx, 20)  # cannot be answered as at the snapshot: waits, and reads the store anew
            assert fresh.total == 21
            assert _summary(fresh) == _summary(_sql_records(ctx, 20))
        finally:
            gate.set()
            patcher.join()


def test_postgres_a_record_answer_after_another_process_write_holds_it(postgres_url, monkeypatch):
    """Another process stores an individual on no page: the next record answer holds it (its count), from the
    index patched by that request — no full read, no SQL — as a count answer does: a stale snapshot is answered
    around only while a patch is in flight."""
    with _node(postgres_url, "gw_term_page_next") as app, _other_process(app) as other:
        s, ctx, index, docs, _ = _seeded(app)
        key_reads = _count_key_reads(monkeypatch)
        patches = index.patches
        for n in (21, 22):
            ingest_phenopackets(docs[n - 1 : n], store=other, key=s.key, dataset_id="d1")  # a row on no page
            got = _records(ctx, 5)
            assert got.total == n and [len(r.records) for r in got.result_sets] == [5]
            assert index.patches == patches + n - 20 and not key_reads
        assert _summary(_records(ctx, 5)) == _summary(_sql_records(ctx, 5))


def test_postgres_a_patch_reads_in_one_statement_on_the_threads_own_connection(postgres_url, monkeypatch):
    """The request that finds the snapshot stale patches it on its path: on PostgreSQL that read is one statement
    (the counter, the change log since the snapshot, the changed rows and their terms) on the thread's own
    connection — not a pooled REPEATABLE READ transaction of several round trips, each of which costs milliseconds
    on a loaded machine. The patched snapshot still equals a full read."""
    import sqlalchemy as sa

    with _node(postgres_url, "gw_term_one_read") as app, _other_process(app) as other:
        s, ctx, index, docs, first = _seeded(app)
        held = sorted(t for t in first.postings if t.startswith("HP:"))[:60]
        ingest_phenopackets(docs[20:22], store=other, key=s.key, dataset_id="d1")  # new rows
        ingest_phenopackets([_changed(docs[0], random.Random(5), held)], store=other, key=s.key, dataset_id="d1")
        pooled: list[str] = []
        own: list[str] = []
        real_run = s.store.reads._run

        def counted_run(statement, parameters):
            own.append(statement)
            return real_run(statement, parameters)

        def on_pooled(conn, cursor, statement, *rest):
            pooled.append(statement)

        monkeypatch.setattr(s.store.reads, "_run", counted_run)
        sa.event.listen(s.store.engine, "before_cursor_execute", on_pooled)
        try:
            patches = index.patches
            patched = current_snapshot(ctx)
        finally:
            sa.event.remove(s.store.engine, "before_cursor_execute", on_pooled)
        assert patched is not None and patched.size == 22 and index.patches == patches + 1
        assert not pooled and len(own) == 2  # the counter that finds the snapshot stale, then the patch's read
        assert _content(patched) == _content(index.source.read(patched.version, PRESENT_KINDS))


def _present_terms_after_writes(app) -> None:
    """The SQL path's present terms (what a broad filter is cut down to) after another process's write: the terms
    written since are added to the cached set, which is not read whole again (a term only the cache holds stays);
    an unchanged store costs no read of terms at all (the same set comes back)."""
    from gateway.beacon.individuals import present_terms

    s, ctx, _, docs, _ = _seeded(app)
    before = present_terms(ctx)
    assert before is not None and present_terms(ctx) is before
    cached = ctx.cache["present_terms"]
    ctx.cache["present_terms"] = (*cached[:-1], cached[-1] | {"HP:9999999"})  # only the cache holds it
    new_term = next(t for t in ("HP:0000006", "HP:0000007", "HP:0001417") if t not in before)
    doc = copy.deepcopy(docs[20])
    doc["phenotypicFeatures"] = [{"type": {"id": new_term, "label": new_term}}]
    with _other_process(app) as other:
        ingest_phenopackets([doc], store=other, key=s.key, dataset_id="d1")
    after = present_terms(ctx)
    assert after is not None and new_term in after and "HP:9999999" in after
    assert before <= after


def test_sqlite_present_terms_after_a_write_are_the_cached_ones_and_those_written():
    with _node() as app:
        _present_terms_after_writes(app)


def test_postgres_present_terms_after_a_write_are_the_cached_ones_and_those_written(postgres_url):
    with _node(postgres_url, "gw_term_present") as app:
        _present_terms_after_writes(app)
