"""Fixtures shared by every test room."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
REFERENCE = (REPO / ".." / "shared" / "reference").resolve()
OPERATOR_TOKEN = "test-operator-token"
TEST_KEY_HEX = "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff"


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


@pytest.fixture
def app(gateway_config):
    from app import create_app

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
