"""The second phase of an erasure: the purge of the deleted rows' old copies is a durable job (gateway.security.
purge_jobs), queued in the erasure's transaction, run outside the request, retried after a failure, never run twice
for one claim, and audited. The first phase alone already takes the person out of every answer."""

from __future__ import annotations

import json
import sqlite3
import threading
import time
from pathlib import Path

import pytest
import sqlalchemy as sa

from gateway.security import purge_jobs
from gateway.security.audit import AuditLog
from gateway.security.erasure import erase_subject
from gateway.store import MetadataStore, PhenopacketRecord
from tests.security.sechelpers import OPERATOR_TOKEN, bearer, node_config

KEY = b"k" * 32
OPERATOR = bearer(OPERATOR_TOKEN)
PHENOPACKETS = Path(__file__).resolve().parents[2] / ".." / "shared" / "reference" / "phenopackets"


def _documents(n: int) -> list[dict]:
    documents = [json.loads(p.read_text()) for p in sorted(PHENOPACKETS.glob("*/PMID_*.json"))[:n]]
    assert len(documents) == n
    return documents


def _store_with_subjects(url: str, n: int = 6) -> MetadataStore:
    store = MetadataStore.open(url)
    store.ensure_dataset("ds")
    store.save_phenopackets(
        [
            PhenopacketRecord(f"pp-{i}", "ds", f"pid-subject-{i}", {**doc, "subject": {"id": f"pid-subject-{i}"}})
            for i, doc in enumerate(_documents(n))
        ]
    )
    return store


@pytest.fixture
def sqlite_url(tmp_path):
    return f"sqlite:///{tmp_path / 'gateway.sqlite'}"


def _status(store: MetadataStore, job: int) -> dict:
    (row,) = [j for j in purge_jobs.jobs(store) if j["id"] == job]
    return row


def test_the_erasure_queues_its_purge_and_the_purge_runs_once_and_is_audited(sqlite_url, tmp_path):
    store = _store_with_subjects(sqlite_url)
    audit = AuditLog(tmp_path / "data")
    try:
        result = erase_subject(store, None, "pid-subject-2", key=KEY, audit=audit, caller="test")
        assert store.find_by_subject("pid-subject-2") == []  # phase one: gone from the store at once
        assert purge_jobs.pending_count(store) == 1
        job = _status(store, result.purge_job)
        assert (job["status"], job["action"], job["attempts"]) == ("pending", "erase-subject", 0)
        assert job["reference"] == result.reference and "pid-subject-2" not in json.dumps(job)
        assert purge_jobs.next_due_in(store) == 0.0

        run = purge_jobs.run_due(store, audit=audit, caller="purge-worker")
        assert run.done == (result.purge_job,) and run.failed == () and run.next_in is None
        job = _status(store, result.purge_job)
        assert (job["status"], job["attempts"], job["last_error"]) == ("done", 1, "")
        assert job["done_at"] is not None
        assert purge_jobs.run_due(store, audit=audit).done == ()  # idempotent: nothing left to do
        records = [r for r in audit.records() if r.get("action") in ("erase-subject", "erase-purge")]
        assert [(r["action"], r["phase"]) for r in records] == [
            ("erase-subject", "intent"),
            ("erase-subject", "outcome"),
            ("erase-purge", "outcome"),
        ]
        assert f"purge of old copies queued (purge job {result.purge_job})" in records[1]["reason"]
        purged = (
            f"erase-subject {result.reference}: old copies of the deleted rows purged (purge job {result.purge_job})"
        )
        assert records[2]["reason"] == purged
        assert "pid-subject-2" not in json.dumps(list(audit.records()))
        assert audit.verify().ok
    finally:
        store.close()


def test_a_queued_purge_survives_a_restart_and_a_new_worker_runs_it(sqlite_url):
    store = _store_with_subjects(sqlite_url)
    jobs = [erase_subject(store, None, f"pid-subject-{i}", key=KEY).purge_job for i in (1, 4)]
    store.close()  # the process stops before any worker ran

    store = MetadataStore.open(sqlite_url)
    try:
        assert purge_jobs.pending_count(store) == 2
        runs: list[purge_jobs.PurgeRun] = []
        ran = threading.Event()

        def run() -> purge_jobs.PurgeRun:
            runs.append(purge_jobs.run_due(store))
            ran.set()
            return runs[-1]

        worker = purge_jobs.PurgeWorker(run)
        worker.start()  # its first pass takes the jobs left from before the restart
        assert ran.wait(30)
        worker.stop()
        assert runs[0].done == tuple(jobs)  # one purge serves every job due
        assert purge_jobs.pending_count(store) == 0
    finally:
        store.close()


def test_a_worker_wakes_on_an_erasure_and_purges_without_being_asked(sqlite_url):
    store = _store_with_subjects(sqlite_url)
    done = threading.Event()

    def run() -> purge_jobs.PurgeRun:
        result = purge_jobs.run_due(store)
        if result.done:
            done.set()
        return result

    worker = purge_jobs.PurgeWorker(run)
    try:
        worker.start()
        job = erase_subject(store, None, "pid-subject-3", key=KEY, wake_purge=worker.wake).purge_job
        assert done.wait(30)
        assert _status(store, job)["status"] == "done"
    finally:
        worker.stop()
        store.close()


def test_a_failed_purge_stays_queued_with_its_error_and_is_retried(sqlite_url, tmp_path):
    """A reader holding an older snapshot keeps the WAL from being truncated (the deleted rows' old frames stay):
    the job stays pending, with the error and a back-off, and the next run after the reader finished purges."""
    store = _store_with_subjects(sqlite_url)

    @sa.event.listens_for(store.engine, "connect")
    def short_busy_timeout(dbapi_connection, _record):  # after the store's own (60 s): the test need not wait
        dbapi_connection.execute("PRAGMA busy_timeout = 50")

    store.engine.dispose()
    reader = sqlite3.connect(tmp_path / "gateway.sqlite", isolation_level=None)
    try:
        reader.execute("BEGIN")
        assert reader.execute("SELECT count(*) FROM phenopackets").fetchone()[0] == 6  # a snapshot from before
        job = erase_subject(store, None, "pid-subject-5", key=KEY).purge_job
        failed = purge_jobs.run_due(store)
        assert failed.failed == (job,) and failed.done == () and "older snapshot" in failed.error
        status = _status(store, job)
        assert (status["status"], status["attempts"]) == ("pending", 1) and "older snapshot" in status["last_error"]
        assert 0 < failed.next_in <= purge_jobs.FIRST_RETRY_S  # retried after the back-off, not at once
        assert purge_jobs.run_due(store).done == ()  # not due yet
        reader.execute("COMMIT")
        retried = purge_jobs.run_due(store, force=True)  # the operator's `gateway erasure purge`
        assert retried.done == (job,)
        assert (_status(store, job)["status"], _status(store, job)["attempts"]) == ("done", 2)
    finally:
        reader.close()
        store.close()


def test_a_claimed_job_is_not_purged_again_until_its_lease_runs_out(sqlite_url):
    store = _store_with_subjects(sqlite_url)
    try:
        job = erase_subject(store, None, "pid-subject-0", key=KEY).purge_job
        assert [c.id for c in purge_jobs._claim(store, force=False)] == [job]  # a worker that then died
        assert purge_jobs.run_due(store).done == ()  # another worker leaves it alone while the lease runs
        due_in = purge_jobs.next_due_in(store)
        assert due_in is not None and purge_jobs.LEASE.total_seconds() - 60 < due_in <= purge_jobs.LEASE.total_seconds()
        assert purge_jobs.run_due(store, force=True).done == (job,)
    finally:
        store.close()


def test_on_postgresql_the_purge_is_queued_and_run_outside_the_erasure(postgres_url):
    from tests.pg_schema import fresh_schema

    with fresh_schema(postgres_url, "gw_purge_test") as url:
        store = _store_with_subjects(url)
        try:
            result = erase_subject(store, None, "pid-subject-1", key=KEY)
            assert store.find_by_subject("pid-subject-1") == []
            assert _status(store, result.purge_job)["status"] == "pending"
            assert purge_jobs.run_due(store).done == (result.purge_job,)
            assert _status(store, result.purge_job)["status"] == "done"
        finally:
            store.close()


# --- over HTTP: the operator sees and runs the jobs; before the purge, the person is already in no answer ---


@pytest.fixture
def node(tmp_path, jwks_files):
    from app import create_app

    app = create_app(
        {
            **node_config(tmp_path, jwks_files, [{"id": "ds", "security_level": "CONTROLLED"}]),
            "erasure_purge_worker": False,
        }
    )
    yield app
    app.extensions["gateway"].store.close()


def test_the_operator_lists_and_runs_the_purge_jobs(node):
    svc = node.extensions["gateway"]
    assert svc.purges is None  # switched off: nothing runs the jobs but the operator
    doc = _documents(1)[0]
    svc.store.save_phenopackets([PhenopacketRecord("pp", "ds", "pid-http", {**doc, "subject": {"id": "pid-http"}})])
    client = node.test_client()
    assert client.get("/admin/erasure/purges").status_code == 401
    erased = client.delete("/admin/subjects/pid-http", headers=OPERATOR).get_json()
    job = erased["purge"]["job"]
    assert erased["purge"]["status"] == "pending"
    listed = client.get("/admin/erasure/purges?status=pending", headers=OPERATOR).get_json()
    assert listed["pending"] == 1 and [j["id"] for j in listed["jobs"]] == [job]
    # Phase one alone: the person is in no answer while the purge waits.
    assert client.get("/api/individuals/pid-http", headers=OPERATOR).get_json()["responseSummary"]["exists"] is False
    assert client.get("/phenopackets?dataset=ds&subject=pid-http", headers=OPERATOR).get_json()["total"] == 0
    assert client.get("/admin/erasure/purges?status=nope", headers=OPERATOR).status_code == 400
    ran = client.post("/admin/erasure/purges", headers=OPERATOR)
    assert ran.status_code == 200 and ran.get_json() == {"done": [job], "failed": []}
    listed = client.get("/admin/erasure/purges", headers=OPERATOR).get_json()
    assert listed["pending"] == 0 and listed["jobs"][0]["status"] == "done"
    outcome = [r for r in svc.security.audit.records() if r.get("action") == "erase-purge"]
    assert len(outcome) == 1 and outcome[0]["reason"].startswith(f"erase-subject {erased['erased']}: ")


def test_the_server_worker_purges_after_an_http_erasure(tmp_path, jwks_files):
    from app import create_app

    app = create_app(node_config(tmp_path, jwks_files, [{"id": "ds", "security_level": "CONTROLLED"}]))
    svc = app.extensions["gateway"]
    try:
        doc = _documents(1)[0]
        svc.store.save_phenopackets([PhenopacketRecord("pp", "ds", "pid-w", {**doc, "subject": {"id": "pid-w"}})])
        job = app.test_client().delete("/admin/subjects/pid-w", headers=OPERATOR).get_json()["purge"]["job"]
        for _ in range(300):  # the worker thread runs it; waited for, not timed
            if _status(svc.store, job)["status"] == "done":
                break
            time.sleep(0.1)
        assert _status(svc.store, job)["status"] == "done"
    finally:
        svc.purges.stop()
        svc.store.close()


# --- bounded retries: a purge that keeps failing ends in a visible failed state, and the operator retries it ---


def _held_snapshot(store: MetadataStore, path: Path) -> sqlite3.Connection:
    """A reader holding a snapshot from before (the WAL cannot be truncated: every purge attempt fails)."""

    @sa.event.listens_for(store.engine, "connect")
    def short_busy_timeout(dbapi_connection, _record):
        dbapi_connection.execute("PRAGMA busy_timeout = 50")

    store.engine.dispose()
    reader = sqlite3.connect(path, isolation_level=None)
    reader.execute("BEGIN")
    reader.execute("SELECT count(*) FROM phenopackets").fetchone()
    return reader


def test_a_purge_failing_every_attempt_is_marked_failed_and_left_to_the_operator(sqlite_url, tmp_path):
    store = _store_with_subjects(sqlite_url)
    audit = AuditLog(tmp_path / "data")
    reader = _held_snapshot(store, tmp_path / "gateway.sqlite")
    try:
        job = erase_subject(store, None, "pid-subject-4", key=KEY).purge_job
        first = purge_jobs.run_due(store, audit=audit, max_attempts=3)
        assert first.failed == (job,) and _status(store, job)["status"] == "pending"
        purge_jobs.run_due(store, audit=audit, force=True, max_attempts=3)  # attempt 2: still pending
        assert (_status(store, job)["status"], _status(store, job)["attempts"]) == ("pending", 2)
        last = purge_jobs.run_due(store, audit=audit, force=True, max_attempts=3)
        assert last.failed == (job,)
        failed = _status(store, job)
        assert (failed["status"], failed["attempts"], failed["not_before"]) == ("failed", 3, None)
        assert "older snapshot" in failed["last_error"]
        # No worker takes it any more: it is neither pending nor due.
        assert purge_jobs.pending_count(store) == 0 and purge_jobs.pending_count(store, purge_jobs.FAILED) == 1
        assert purge_jobs.next_due_in(store) is None
        assert purge_jobs.run_due(store, audit=audit, max_attempts=3) == purge_jobs.PurgeRun()
        assert [j["id"] for j in purge_jobs.jobs(store, status=purge_jobs.FAILED)] == [job]
        reasons = [r["reason"] for r in audit.records() if r.get("action") == "erase-purge"]
        assert [r.split(": ", 1)[1] for r in reasons] == [
            f"purge attempt 1 failed (purge job {job})",
            f"purge attempt 2 failed (purge job {job})",
            f"purge attempt 3 failed; no more retries (`gateway erasure purge` tries again) (purge job {job})",
        ]
        reader.execute("COMMIT")  # the cause fixed: the operator's run takes failed jobs too
        assert purge_jobs.run_due(store, audit=audit, force=True, max_attempts=3).done == (job,)
        assert _status(store, job)["status"] == "done"
    finally:
        reader.close()
        store.close()


def test_the_operator_sees_failed_purges_over_http_and_in_the_cli(node, tmp_path, capsys, monkeypatch):
    svc = node.extensions["gateway"]
    doc = _documents(1)[0]
    svc.store.save_phenopackets([PhenopacketRecord("pp", "ds", "pid-f", {**doc, "subject": {"id": "pid-f"}})])
    client = node.test_client()
    job = client.delete("/admin/subjects/pid-f", headers=OPERATOR).get_json()["purge"]["job"]
    reader = _held_snapshot(svc.store, tmp_path / "data" / "gateway.sqlite")
    try:
        assert purge_jobs.run_due(svc.store, force=True, max_attempts=1).failed == (job,)
        listed = client.get("/admin/erasure/purges", headers=OPERATOR).get_json()
        assert (listed["pending"], listed["failed"]) == (0, 1)
        only = client.get("/admin/erasure/purges?status=failed", headers=OPERATOR).get_json()["jobs"]
        assert [(j["id"], j["status"]) for j in only] == [(job, "failed")]
        assert client.get("/admin/erasure/purges?status=pending", headers=OPERATOR).get_json()["jobs"] == []
    finally:
        reader.close()
    from gateway.cli import main

    monkeypatch.setenv("GATEWAY_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("GATEWAY_SECRET_KEY", svc.config.secret_key)
    monkeypatch.delenv("GATEWAY_CONFIG", raising=False)
    monkeypatch.delenv("GATEWAY_DATABASE_URL", raising=False)
    assert main(["erasure", "status", "--status", "failed"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == "0 purge job(s) pending, 1 failed"
    assert lines[1].startswith(f"{job}\tfailed\terase-subject\t") and "older snapshot" in lines[1]
    ran = client.post("/admin/erasure/purges", headers=OPERATOR)  # the reader is gone: the retry succeeds
    assert ran.status_code == 200 and ran.get_json() == {"done": [job], "failed": []}


# --- jobs queued by another process: the server's worker notices them without being woken in-process ---

_QUEUE_IN_ANOTHER_PROCESS = """
import sys
from gateway.security.erasure import erase_subject
from gateway.store import MetadataStore
store = MetadataStore.open(sys.argv[1])
print(erase_subject(store, None, sys.argv[2], key=b"k" * 32).purge_job)
store.close()
"""


def _queue_in_another_process(url: str, subject: str) -> int:
    import os
    import subprocess
    import sys

    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])}
    done = subprocess.run(
        [sys.executable, "-c", _QUEUE_IN_ANOTHER_PROCESS, url, subject],
        env=env,
        capture_output=True,
        text=True,
        check=True,
        timeout=120,
    )
    return int(done.stdout.strip())


def _worker_purges(store: MetadataStore, url: str, *, poll_s: float, listen: bool) -> None:
    """A server's worker (as app.start_purge_worker builds it) purges a job that another process queued."""
    runs: list[purge_jobs.PurgeRun] = []
    purged = threading.Event()

    def run() -> purge_jobs.PurgeRun:
        runs.append(purge_jobs.run_due(store))
        if runs[-1].done:
            purged.set()
        return runs[-1]

    worker = purge_jobs.PurgeWorker(run, due_in=lambda: purge_jobs.next_due_in(store), poll_s=poll_s)
    worker.listener = purge_jobs.PurgeListener.for_store(store, worker.wake) if listen else None
    try:
        worker.start()
        if listen:
            assert worker.listener is not None and worker.listener.listening.wait(30)
        started = len(runs)
        job = _queue_in_another_process(url, "pid-subject-2")
        assert purged.wait(60), "the worker never noticed the job queued by the other process"
        assert job in [j for r in runs[started:] for j in r.done]
        assert _status(store, job)["status"] == "done"
    finally:
        worker.stop()


def test_a_worker_polls_for_jobs_queued_by_another_process(sqlite_url):
    store = _store_with_subjects(sqlite_url)
    try:
        _worker_purges(store, sqlite_url, poll_s=0.2, listen=False)
    finally:
        store.close()


def test_on_postgresql_a_notify_wakes_the_worker_of_another_process(postgres_url):
    """The poll is an hour here: only the NOTIFY sent by the other process's erasure can wake the worker."""
    from tests.pg_schema import fresh_schema

    with fresh_schema(postgres_url, "gw_purge_notify") as url:
        store = _store_with_subjects(url)
        try:
            assert purge_jobs.PurgeListener.for_store(store, lambda: None) is not None
            _worker_purges(store, url, poll_s=3600, listen=True)
        finally:
            store.close()


def test_a_sqlite_store_has_no_listener_and_the_config_bounds_are_checked(sqlite_url):
    from gateway.config import ConfigError, config_from_mapping

    store = MetadataStore.open(sqlite_url)
    try:
        assert purge_jobs.PurgeListener.for_store(store, lambda: None) is None
    finally:
        store.close()
    with pytest.raises(ConfigError, match="erasure_purge_poll_s"):
        config_from_mapping({"erasure_purge_poll_s": 0})
    with pytest.raises(ConfigError, match="erasure_purge_max_attempts"):
        config_from_mapping({"erasure_purge_max_attempts": 0})
