"""PostgreSQL's change counter (migrations 0002, 0006) never makes one metadata writer wait for another.

Before migration 0006 every writing transaction updated the one `store_version` row, so a second writer
waited on that row's lock until the first committed, and two writers that then touched each other's rows
deadlocked. Each test holds a writer open and asks another to write under a short lock_timeout.
"""

from __future__ import annotations

import threading

import pytest
import sqlalchemy as sa

from gateway.store import MetadataStore, PhenopacketRecord
from gateway.store.reads import CHANGE_COUNTER
from tests.pg_schema import fresh_schema


@pytest.fixture
def pg_store(postgres_url):
    with fresh_schema(postgres_url, "gw_slots") as url:
        store = MetadataStore.open(url)
        store.ensure_dataset("ds1")
        store.save_phenopackets(
            [
                PhenopacketRecord(f"pp-{i}", "ds1", f"s{i}", {"id": f"pp-{i}", "subject": {"id": f"s{i}"}})
                for i in range(4)
            ]
        )
        yield store
        store.close()


def _writer(store: MetadataStore) -> sa.Connection:
    """An open transaction that gives up after 2 s instead of waiting for a lock."""
    connection = store.engine.connect()
    connection.execute(sa.text("SET lock_timeout = '2s'"))
    return connection


def _touch(connection: sa.Connection, subject: str) -> None:
    statement = sa.text("UPDATE phenopackets SET revision = revision + 1 WHERE subject_id = :s")
    assert connection.execute(statement, {"s": subject}).rowcount == 1


def _counter(store: MetadataStore) -> int:
    assert store.reads is not None
    return store.reads.change_counter()


def test_a_second_writer_does_not_wait_for_an_open_one(pg_store):
    before = _counter(pg_store)
    first, second = _writer(pg_store), _writer(pg_store)
    try:
        _touch(first, "s0")  # open, holding whatever the trigger locked
        _touch(second, "s1")  # before 0006: LockNotAvailable on the store_version row
        second.commit()
        saving = threading.Thread(  # the store's own path, which sets no lock_timeout: watched from here
            target=pg_store.save_phenopackets, args=([PhenopacketRecord("pp-9", "ds1", "s9", {"id": "pp-9"})],)
        )
        saving.start()
        saving.join(10)
        assert not saving.is_alive()
        assert _counter(pg_store) >= before + 2  # committed writes are counted, the open one not yet
        first.commit()
        assert _counter(pg_store) >= before + 3
    finally:
        first.close()
        second.close()


def test_writers_crossing_over_each_others_rows_do_not_deadlock(pg_store):
    first, second = _writer(pg_store), _writer(pg_store)
    failures: list[BaseException] = []
    try:
        _touch(first, "s0")
        _touch(second, "s1")

        def first_then_waits() -> None:
            try:
                _touch(first, "s1")  # waits for `second` only, which never waits for `first`
                first.commit()
            except BaseException as error:  # surfaced by the assertion below
                failures.append(error)

        waiting = threading.Thread(target=first_then_waits)
        waiting.start()
        _touch(second, "s2")
        second.commit()
        waiting.join(10)
        assert not waiting.is_alive() and failures == []
    finally:
        first.close()
        second.close()


def test_every_commit_raises_the_counter_once_and_a_rollback_not_at_all(pg_store):
    before = _counter(pg_store)
    with pg_store.engine.connect() as connection:
        _touch(connection, "s0")
        connection.rollback()
    assert _counter(pg_store) == before
    # A bump undone with its savepoint is made again by the transaction's next write.
    with pg_store.engine.connect() as connection, connection.begin():
        with connection.begin_nested() as savepoint:
            _touch(connection, "s0")
            savepoint.rollback()
        _touch(connection, "s1")
        _touch(connection, "s2")
    assert _counter(pg_store) == before + 1


def test_as_many_slots_as_writers_were_open_at_once(pg_store):
    before = _counter(pg_store)
    writers = [_writer(pg_store) for _ in range(4)]
    try:
        for n, writer in enumerate(writers):
            _touch(writer, f"s{n}")
        for writer in writers:
            writer.commit()
    finally:
        for writer in writers:
            writer.close()
    with pg_store.engine.connect() as connection:
        slots = connection.execute(sa.text("SELECT count(*) FROM store_version")).scalar_one()
        assert connection.execute(sa.text(CHANGE_COUNTER)).scalar_one() == before + 4
    assert 4 <= slots <= 5  # 0002's row plus one per writer that found every slot taken


def test_hot_reads_survive_a_lost_connection(pg_store):
    """The reads' own connections are out of the pool (no liveness ping): a lost one is replaced on the next read."""
    assert pg_store.reads is not None
    before = pg_store.reads.change_counter()
    with pg_store.engine.connect() as connection:
        pids = connection.execute(sa.text("SELECT pid FROM pg_stat_activity WHERE pid <> pg_backend_pid()")).scalars()
        mine = pg_store.reads._local.connection.info.backend_pid
        assert mine in set(pids)
        assert connection.execute(sa.text("SELECT pg_terminate_backend(:p)"), {"p": mine}).scalar_one()
    assert pg_store.reads.change_counter() == before
    assert pg_store.reads._local.connection.info.backend_pid != mine
