"""Fixtures for the Beacon tests: a node over the in-memory fake store, and the official-schema check.

The node is a minimal Flask app with only the Beacon blueprint, so these tests do not
depend on the other surfaces; app.create_app registers the same blueprint at /api.
"""

from __future__ import annotations

import pytest
from fake_store import sample_store
from flask import Flask
from official_schemas import BEACON, check_response

from gateway.api.beacon import beacon_blueprint
from gateway.api.context import Services
from gateway.config import config_from_mapping

TEST_KEY = b"k" * 32


# These tests are about the Beacon framework, not disclosure control: their datasets declare an open
# policy explicitly (gateway.security.policy; the defaults would hide small test cohorts).
OPEN = {"security_level": "PUBLIC", "policy": {"profile": "open"}}


def make_client(
    variants,
    datasets=({"id": "ds1", "name": "Cohort one", **OPEN}, {"id": "ds2", "name": "Cohort two", **OPEN}),
):
    config = config_from_mapping(
        {
            "node": {"id": "org.example.test", "base_url": "http://localhost"},
            "datasets": list(datasets),
            "testing": True,
        }
    )
    app = Flask(__name__)
    app.extensions["gateway"] = Services(config=config, key=TEST_KEY, operator_tokens=(), store=None, variants=variants)
    app.register_blueprint(beacon_blueprint(), url_prefix="/api")
    return app.test_client()


@pytest.fixture(scope="session")
def official(reference_dir):
    assert BEACON.is_dir()
    return check_response


@pytest.fixture
def fake_store():
    return sample_store()


@pytest.fixture
def beacon_client(fake_store):
    return make_client(fake_store)
