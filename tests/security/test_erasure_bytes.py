"""Erased data do not survive as bytes on disk: after an erasure, no file under the data directory (variant versions,
partition units, manifests, the metadata database and its WAL) holds the person's sample name, ids or reverse-index
blob. SQLite only unlinks a deleted row from its b-tree: unless secure_delete is on, the freed cells and pages keep
its bytes. Its compile-time default differs between builds (Debian's libsqlite3 turns it on, SQLite's own default and
other builds leave it off), so these tests run with the default forced off, as on such a build."""

from __future__ import annotations

import json
import os
import sqlite3
from pathlib import Path

import pytest

from gateway.security.pseudonym import pseudonymise
from gateway.variants.distributed_ingest import ingest_partitioned
from gateway.variants.ingest import ingest_vcf
from gateway.variants.store import VariantStore
from tests.security.sechelpers import OPERATOR_TOKEN, bearer, make_node
from tests.variants.vcfgen import split_by_samples, write_vcf

pytestmark = pytest.mark.slow  # several seconds: pytest-xdist starts it first (tests/conftest.py)

SAMPLE = "ZQXJSAMPLE7731"
INDIVIDUAL = "pid-QWPVINDIVIDUAL4420"
BIOSAMPLE = "bs-KRMTBIOSAMPLE9054"
OTHERS = ("pid-other-", "bs-other-")
OPERATOR = bearer(OPERATOR_TOKEN)


@pytest.fixture(autouse=True)
def secure_delete_off_by_default(monkeypatch):
    """Every SQLite connection this process opens starts with secure_delete off, as on a build without
    SQLITE_SECURE_DELETE: what the gateway needs must be asked for, not inherited from the build."""
    connect = sqlite3.connect

    def connect_default_off(*args, **kwargs):
        conn = connect(*args, **kwargs)
        conn.execute("PRAGMA secure_delete = OFF")
        return conn

    monkeypatch.setattr(sqlite3, "connect", connect_default_off)
    monkeypatch.setattr(sqlite3.dbapi2, "connect", connect_default_off)  # the module SQLAlchemy connects through


def _link(name: str) -> tuple[str, str]:
    if name == SAMPLE:
        return INDIVIDUAL, BIOSAMPLE
    return OTHERS[0] + name, OTHERS[1] + name


def _cohort_vcf(tmp_path: Path) -> Path:
    plain = write_vcf(tmp_path / "cohort.vcf", seed=7, n_records=900, n_samples=12)
    plain.write_text(plain.read_text().replace("SAMPLE005", SAMPLE))
    return plain


def _files(data_dir: Path) -> dict[Path, bytes]:
    return {p: p.read_bytes() for p in sorted(data_dir.rglob("*")) if p.is_file()}


def _reverse_index(data_dir: Path) -> list[bytes]:
    """The person's per-sample blobs (the variants they carry, their non-diploid calls) in every unit file: those
    long enough to be theirs alone (no other sample's blob in any file contains them)."""
    theirs, others = [], []
    for path in sorted((data_dir / "variants").rglob("*.sqlite")):
        conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
        try:
            idx = conn.execute("SELECT idx FROM samples WHERE name = ?", (SAMPLE,)).fetchone()
            if not conn.execute("SELECT 1 FROM sqlite_master WHERE name='sample_variants'").fetchone():
                continue
            for table in ("sample_variants", "sample_called", "sample_hom"):
                for sample, blob in conn.execute(f"SELECT sample, vids FROM {table}"):
                    (theirs if idx is not None and sample == idx[0] else others).append(blob)
        finally:
            conn.close()
    return [b for b in theirs if len(b) >= 24 and not any(b in o for o in others)]


def _open_deleted_files(data_dir: Path) -> list[str]:
    """Files under `data_dir` that this process holds open although they were unlinked."""
    held = []
    for fd in Path("/proc/self/fd").iterdir():
        try:
            target = os.readlink(fd)
        except OSError:
            continue
        if target.startswith(str(data_dir)) and target.endswith(" (deleted)"):
            held.append(target)
    return held


def _leftovers(data_dir: Path, needles: list[bytes]) -> list[str]:
    return sorted(
        f"{path.relative_to(data_dir)}: {needle[:24]!r}"
        for path, raw in _files(data_dir).items()
        for needle in needles
        if needle in raw
    )


def _ingest(kind: str, tmp_path: Path) -> Path:
    plain, data_dir = _cohort_vcf(tmp_path), tmp_path / "data"
    common = {"dataset_id": "cohort", "data_dir": data_dir, "assembly": "GRCh38", "link_sample": _link}
    if kind == "single":
        ingest_vcf(plain, **common)
    else:
        samples = [f"SAMPLE{i:03d}" for i in range(12)]
        samples[5] = SAMPLE
        first, second = samples[:6], samples[6:]
        ingest_partitioned(split_by_samples(plain, tmp_path / "b0.vcf.gz", first), span=20_000, **common)
        ingest_partitioned(
            split_by_samples(plain, tmp_path / "b1.vcf.gz", second), span=20_000, add_samples=True, **common
        )
    return data_dir


def _stale_pages_of_the_person(data_dir: Path) -> None:
    """Free pages in the live files that hold the person's rows, as a writer without secure_delete leaves them
    (a staging table dropped, an erasure by an older version): an erasure copying pages would carry them on."""
    for path in sorted((data_dir / "variants").rglob("*.sqlite")):
        conn = sqlite3.connect(path, isolation_level=None)
        try:
            conn.execute("CREATE TABLE staging AS SELECT * FROM samples WHERE name = ?", (SAMPLE,))
            if conn.execute("SELECT 1 FROM sqlite_master WHERE name='sample_variants'").fetchone():
                conn.execute(
                    "INSERT INTO staging(idx, name) SELECT 0, vids FROM sample_variants WHERE sample IN "
                    "(SELECT idx FROM samples WHERE name = ?)",
                    (SAMPLE,),
                )
            conn.execute("DROP TABLE staging")
            assert conn.execute("PRAGMA freelist_count").fetchone()[0] >= 1
        finally:
            conn.close()


@pytest.mark.parametrize("stale", [False, True], ids=["fresh", "stale-free-pages"])
@pytest.mark.parametrize("kind", ["single", "partitioned"])
def test_an_erased_sample_leaves_no_bytes_in_any_variant_file(kind, stale, tmp_path):
    data_dir = _ingest(kind, tmp_path)
    if stale:
        _stale_pages_of_the_person(data_dir)
    blobs = _reverse_index(data_dir)
    assert len(blobs) >= 1  # the person's variant list is there to look for
    needles = [SAMPLE.encode(), INDIVIDUAL.encode(), BIOSAMPLE.encode(), *blobs]
    assert len(_leftovers(data_dir, needles)) >= 3  # the scan finds them before the erasure
    store = VariantStore(data_dir)
    try:
        assert store.dataset_samples("cohort").samples[5].name == SAMPLE  # this thread has the old version open
        assert store.erase_individual(INDIVIDUAL) == 1
        assert store.dataset_samples("cohort").samples[5].name == "erased-5"  # the erasure happened
        # A partitioned version's units still hold the person until the purge job (gateway/variants/pending.py).
        assert store.purge_erased() == (1 if kind == "partitioned" else 0)
        # The old files are unlinked; the erasing thread keeps none of them open (an open file keeps its bytes).
        assert _open_deleted_files(data_dir) == []
    finally:
        store.close()
    assert _leftovers(data_dir, needles) == []
    # the others are still there, in the bytes as in the answers
    assert _leftovers(data_dir, [(OTHERS[0] + "SAMPLE004").encode()]) != []


# --- the metadata store: phenopackets, kept FHIR resources, index rows; the database file, its WAL and -shm ---

FHIR = Path(__file__).resolve().parents[2] / ".." / "shared" / "reference" / "fhir"
MARFAN = FHIR / "mii-seltene-erkrankungen" / "Bundle-bundle-marfan-complete.json"
OTHER = FHIR / "mii-testdata" / "Bundle-mii-exa-test-data-bundle-pat-1.json"
IDENTIFIER = "MRN-QZXV-88231"
NOTE = "QZNOTE the patient Quetzalbert mentioned his uncle in Wuppertal 5521"


def _marfan_with_distinctive_data() -> bytes:
    bundle = json.loads(MARFAN.read_text())
    for entry in bundle["entry"]:
        resource = entry["resource"]
        if resource["resourceType"] == "Patient":
            resource["identifier"][0]["value"] = IDENTIFIER
            resource["name"] = [{"family": "Xylophonius", "given": ["Quetzalbert"]}]
        elif resource.get("id") == "condition-marfan-suspected":
            resource["note"] = [{"text": NOTE}]
    return json.dumps(bundle).encode()


@pytest.fixture
def node(tmp_path, jwks_files):
    if not MARFAN.is_file():
        pytest.skip(f"reference FHIR examples not found at {FHIR}")
    app = make_node(tmp_path, jwks_files, [{"id": "mii", "security_level": "CONTROLLED"}])
    yield app
    app.extensions["gateway"].store.close()


def _ingest_linked_vcf(node, tmp_path: Path, sample_map: dict[str, str]) -> None:
    from gateway.services.genomic import run_vcf_ingest

    plain = _cohort_vcf(tmp_path)
    svc = node.extensions["gateway"]
    code = run_vcf_ingest(
        svc.config,
        path=str(plain),
        dataset_id="mii",
        assembly="GRCh38",
        sample_map=sample_map,
        skip_invalid=False,
        show_progress=False,
    )
    assert code == 0
    svc.variants = VariantStore(svc.config.data_dir)


def test_an_erased_subject_leaves_no_bytes_in_any_file_of_the_node(node, tmp_path):
    client = node.test_client()
    for body in (_marfan_with_distinctive_data(), OTHER.read_bytes()):
        resp = client.post(
            "/fhir?dataset=mii", data=body, headers={**OPERATOR, "Content-Type": "application/fhir+json"}
        )
        assert resp.status_code in (200, 201), resp.get_data(as_text=True)[:500]
    svc = node.extensions["gateway"]
    system = "https://www.medizininformatik-initiative.de/fhir/sid/patient-id"
    subject = pseudonymise(svc.key, IDENTIFIER, system)
    _ingest_linked_vcf(node, tmp_path, {SAMPLE: f"{system}|{IDENTIFIER}"})
    (other,) = [
        p.subject_id for p in svc.store.list_phenopackets(dataset_id="mii", limit=10)[0] if p.subject_id != subject
    ]
    data_dir = Path(svc.config.data_dir)
    for path in (f"/api/individuals/{subject}", f"/phenopackets?dataset=mii&subject={subject}"):
        assert client.get(path, headers=OPERATOR).status_code == 200  # reads of the person: in the audit log
    needles = [subject.encode(), NOTE.encode(), NOTE[:20].encode(), IDENTIFIER.encode(), SAMPLE.encode()]
    assert len(_leftovers(data_dir, needles)) >= 4  # on disk before the erasure (the database, its WAL, variants)
    resp = client.delete(f"/admin/subjects/{subject}", headers=OPERATOR)
    assert resp.status_code == 200 and resp.get_json()["phenopackets"] == 1 and resp.get_json()["samples"] == 1
    assert _open_deleted_files(data_dir) == []
    assert svc.store.find_by_subject(subject) == [] and len(svc.store.find_by_subject(other)) == 1
    # The second phase (the purge worker would run it; here the operator runs it now): the WAL's old copies go.
    job = resp.get_json()["purge"]["job"]
    assert client.post("/admin/erasure/purges", headers=OPERATOR).status_code == 200
    listed = client.get("/admin/erasure/purges", headers=OPERATOR).get_json()
    assert [j["status"] for j in listed["jobs"] if j["id"] == job] == ["done"]
    assert _leftovers(data_dir, needles) == []
    assert _leftovers(data_dir, [other.encode()]) != []  # the other patient is still there


# --- PostgreSQL: the erased subject's rows, dead tuples and index entries gone after the erasure's purge ---

PG_SUBJECT = "pid-PGERASEDSUBJECT4242"
PHENOPACKETS = Path(__file__).resolve().parents[2] / ".." / "shared" / "reference" / "phenopackets"


@pytest.fixture
def private_database(postgres_url):
    """A database of this test alone: VACUUM removes a dead tuple only when no transaction of the same database
    may still see it, and other tests (other sessions, on the same server) keep transactions open in theirs."""
    import uuid

    import sqlalchemy as sa
    from sqlalchemy.engine import make_url

    base = make_url(postgres_url)
    name = f"gw_erasure_{uuid.uuid4().hex[:10]}"
    admin = sa.create_engine(base, poolclass=sa.pool.NullPool, isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.exec_driver_sql(f'CREATE DATABASE "{name}"')
    try:
        yield base.set(database=name).render_as_string(hide_password=False)
    finally:
        with admin.connect() as connection:
            connection.exec_driver_sql(f'DROP DATABASE "{name}" WITH (FORCE)')
        admin.dispose()


def _tuples_naming(store, needle: str) -> list[str]:
    """(table or index, block) of every heap tuple, live or dead, and every index entry whose data holds `needle`,
    read from the pages themselves (pageinspect): what a VACUUM has not yet reclaimed."""
    import sqlalchemy as sa

    heap_needle, index_needle = needle.encode().hex(), " ".join(f"{b:02x}" for b in needle.encode())
    found = []
    with store.engine.connect() as connection:
        relations = connection.execute(
            sa.text(
                "SELECT c.relname, c.relkind FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
                "WHERE n.nspname = 'public' AND (c.relkind = 'r' OR (c.relkind = 'i' AND c.relam = 403))"
            )
        ).all()
        for name, kind in relations:
            blocks = connection.execute(sa.text("SELECT pg_relation_size(CAST(:n AS regclass)) / 8192"), {"n": name})
            for block in range(int(blocks.scalar_one())):
                if kind == "i":
                    if block == 0:
                        continue  # the btree meta page
                    query = "SELECT count(*) FROM bt_page_items(get_raw_page(:n, :b)) WHERE position(:x in data) > 0"
                else:
                    query = (
                        "SELECT count(*) FROM heap_page_items(get_raw_page(:n, :b)) "
                        "WHERE t_data IS NOT NULL AND position(decode(:x, 'hex') in t_data) > 0"
                    )
                needle_of_kind = index_needle if kind == "i" else heap_needle
                if connection.execute(sa.text(query), {"n": name, "b": block, "x": needle_of_kind}).scalar_one():
                    found.append(f"{name}:{block}")
    return found


def test_on_postgresql_the_erased_subject_leaves_no_tuple_nor_index_entry(private_database):
    import sqlalchemy as sa

    from gateway.security.erasure import erase_subject
    from gateway.security.purge_jobs import run_due
    from gateway.store import MetadataStore, PhenopacketRecord

    store = MetadataStore.open(private_database)
    try:
        with store.engine.connect() as connection:
            connection.exec_driver_sql("CREATE EXTENSION pageinspect")
            connection.commit()
        store.ensure_dataset("ds")
        documents = [json.loads(p.read_text()) for p in sorted(PHENOPACKETS.glob("*/PMID_*.json"))[:40]]
        assert len(documents) == 40
        subjects = [PG_SUBJECT if i == 7 else f"pid-kept-{i}" for i in range(len(documents))]
        store.save_phenopackets(
            [
                PhenopacketRecord(f"pp-{i}", "ds", subject, {**doc, "subject": {"id": subject}})
                for i, (subject, doc) in enumerate(zip(subjects, documents, strict=True))
            ]
        )
        assert len(_tuples_naming(store, PG_SUBJECT)) >= 2  # its row and its index entry, before the erasure
        result = erase_subject(store, None, PG_SUBJECT, key=b"k" * 32)
        assert result.phenopackets == 1 and store.find_by_subject(PG_SUBJECT) == []
        assert len(_tuples_naming(store, PG_SUBJECT)) >= 1  # dead tuples and index entries: the purge is queued
        assert run_due(store).done == (result.purge_job,)  # the second phase, as the purge worker runs it
        assert _tuples_naming(store, PG_SUBJECT) == []
        assert _tuples_naming(store, "pid-kept-8") != []  # the others are where they were
        with store.engine.connect() as connection:
            assert connection.execute(sa.text("SELECT count(*) FROM phenopackets")).scalar_one() == 39
    finally:
        store.close()
