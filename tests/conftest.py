"""Fixtures shared by every test room."""

from __future__ import annotations

import os
import shutil
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
REFERENCE = (REPO / ".." / "shared" / "reference").resolve()
OPERATOR_TOKEN = "test-operator-token"
TEST_KEY_HEX = "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff"


@pytest.hookimpl(tryfirst=True)  # before pytest-xdist reads the marks
def pytest_collection_modifyitems(config, items):
    """README's test command runs the suite on pytest-xdist workers (`-n auto --dist loadgroup
    --no-loadscope-reorder`). A test module goes to one worker whole, so its module-scoped fixtures (servers,
    ingested nodes) are built once, not once per worker; tests/ui shares one gateway process and one Chromium across
    its modules, so it is one group. The groups holding a test marked `slow` are handed out first, then the others,
    largest first: the run does not end on one worker still busy with a long module while the other waits."""
    groups: dict[str, list] = {}
    for item in items:
        marker = item.get_closest_marker("xdist_group")
        if marker is None:
            module = Path(str(item.path)).relative_to(REPO).as_posix()
            decorator = pytest.mark.xdist_group("tests/ui" if module.startswith("tests/ui/") else module)
            item.add_marker(decorator)
            marker = decorator.mark
        groups.setdefault(str(marker.args[0] if marker.args else marker.kwargs.get("name")), []).append(item)
    # on a worker, pytest-xdist has set `dist` to "no" and `loadgroup` to whether the controller's was "loadgroup"
    if getattr(config.option, "loadgroup", False):
        ordered = sorted(
            groups.values(), key=lambda tests: (not any(t.get_closest_marker("slow") for t in tests), -len(tests))
        )
        items[:] = [item for tests in ordered for item in tests]


@pytest.fixture(scope="session")
def reference_dir() -> Path:
    if not REFERENCE.is_dir():  # a user's fresh clone without ../shared; CI always has it
        pytest.skip(f"reference material not found at {REFERENCE}")
    return REFERENCE


@pytest.fixture
def gateway_config(tmp_path):
    """Overrides for create_app: a private data dir, a known key and operator token."""
    return {
        "data_dir": tmp_path / "data",
        "secret_key": TEST_KEY_HEX,
        "operator_tokens": [OPERATOR_TOKEN],
        "testing": True,
        "node": {"id": "org.example.test", "name": "Test node", "base_url": "http://localhost"},
    }


@pytest.fixture
def env(tmp_path, monkeypatch):
    """The `gateway` command's environment (run in-process through gateway.cli.main): a private data dir and a
    known key, no config file, the embedded store."""
    monkeypatch.setenv("GATEWAY_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("GATEWAY_SECRET_KEY", TEST_KEY_HEX)
    monkeypatch.delenv("GATEWAY_CONFIG", raising=False)
    monkeypatch.delenv("GATEWAY_DATABASE_URL", raising=False)
    return tmp_path


@pytest.fixture(scope="session")
def migrated_sqlite(tmp_path_factory) -> Path:
    """An embedded store's file migrated to head once per session (per pytest-xdist worker). The `app` and `store`
    fixtures start from a copy of it rather than running every migration again for each test (≈ 0.1 s each); what
    migrating an empty file does is tested on its own (tests/store/test_store_migrations.py), and every other node
    the tests build still migrates its own."""
    from gateway.store import MetadataStore

    path = tmp_path_factory.mktemp("migrated-sqlite") / "gateway.sqlite"
    MetadataStore.open(f"sqlite:///{path}").close()  # closed: checkpointed, no -wal file beside it
    return path


def place_migrated(template: Path, database_url: str) -> None:
    """Put a copy of the migrated template where the SQLite URL `database_url` points, private as the node's own."""
    from sqlalchemy.engine import make_url

    target = Path(str(make_url(database_url).database))
    target.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    shutil.copyfile(template, target)
    target.chmod(0o600)


@pytest.fixture
def app(gateway_config, migrated_sqlite):
    from app import create_app
    from gateway.config import load_config

    database_url = load_config(overrides=gateway_config).resolved_database_url  # as create_app reads it
    if database_url.startswith("sqlite"):
        place_migrated(migrated_sqlite, database_url)
    application = create_app(gateway_config)
    yield application
    application.extensions["gateway"].store.close()


@pytest.fixture
def client(app):
    return app.test_client()


@pytest.fixture
def operator():
    return {"Authorization": f"Bearer {OPERATOR_TOKEN}"}


@pytest.fixture(scope="session")
def postgres_url() -> str:
    url = os.environ.get("GATEWAY_TEST_DATABASE_URL")
    if not url:
        pytest.skip("GATEWAY_TEST_DATABASE_URL is not set (CI sets it to the local PostgreSQL)")
    return url


def wait_for_job(client, href: str, headers: dict | None = None, seconds: float = 60.0) -> dict:
    """Poll an ingest job until it has left its waiting states; its last state."""
    headers = headers if headers is not None else {"Authorization": f"Bearer {OPERATOR_TOKEN}"}
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        state = client.get(href, headers=headers).get_json()
        if state["status"] not in ("queued", "running", "receiving"):
            return state
        time.sleep(0.1)
    raise AssertionError(f"job {href} still running after {seconds} s")
