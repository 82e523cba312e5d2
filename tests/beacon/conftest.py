"""Fixtures for the Beacon tests: a node (app.create_app) over the in-memory fake variant store,
nodes over real ingested data, and the official-schema check."""

from __future__ import annotations

import atexit
import shutil
import tempfile

import pytest

from tests.beacon.fake_store import sample_store
from tests.beacon.official_schemas import BEACON, check_response

TEST_KEY = b"k" * 32


# These tests are about the Beacon framework, not disclosure control: their datasets declare an open
# policy explicitly (gateway.security.policy; the defaults would hide small test cohorts).
OPEN = {"security_level": "PUBLIC", "policy": {"profile": "open"}}


UNLIMITED = {"budget": {"anonymous": None, "registered": None}}  # many queries from one test caller
FAKE_DATASETS = ({"id": "ds1", "name": "Cohort one", **OPEN}, {"id": "ds2", "name": "Cohort two", **OPEN})


def make_app(variants, datasets=FAKE_DATASETS, **overrides):
    from app import create_app

    data_dir = tempfile.mkdtemp(prefix="beacon-test-")
    atexit.register(shutil.rmtree, data_dir, ignore_errors=True)
    app = create_app(
        {
            "data_dir": data_dir,
            "secret_key": TEST_KEY.hex(),
            "node": {"id": "org.example.test", "base_url": "http://localhost"},
            "datasets": list(datasets),
            "testing": True,
            "security": UNLIMITED,
            **overrides,
        }
    )
    if variants is not None:
        app.extensions["gateway"].variants = variants  # the in-memory store stands in for the VCF-backed one
    return app


def make_client(variants, datasets=FAKE_DATASETS):
    return make_app(variants, datasets).test_client()


@pytest.fixture(scope="session")
def official(reference_dir):
    assert BEACON.is_dir()
    return check_response


@pytest.fixture
def fake_store():
    return sample_store()


@pytest.fixture(scope="session")
def fake_node():
    app = make_app(sample_store())
    yield app
    app.extensions["gateway"].store.close()


@pytest.fixture
def beacon_client(fake_node, fake_store):
    fake_node.extensions["gateway"].variants = fake_store  # a fresh fake store per test, one app per session
    return fake_node.test_client()
