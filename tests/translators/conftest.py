import json
from datetime import UTC, datetime
from pathlib import Path

import pytest

from gateway.security.pseudonym import id_functions

REFERENCE = Path(__file__).resolve().parents[2] / ".." / "shared" / "reference"
FHIR = REFERENCE / "fhir"
TEST_KEY = b"golden-test-key-not-a-secret-000"
NOW = datetime(2026, 1, 1, tzinfo=UTC)
TEST_IDS = id_functions(TEST_KEY)  # the gateway's keyed pseudonyms, as the ingest service passes them


def read_fhir(relative: str) -> dict:
    path = FHIR / relative
    if not path.is_file():
        pytest.fail(f"reference file missing: {path}")
    return json.loads(path.read_text(encoding="utf-8"))


@pytest.fixture
def reference_fhir():
    return read_fhir
