import json
from datetime import UTC, datetime
from pathlib import Path

import pytest

REFERENCE = Path(__file__).resolve().parents[2] / ".." / "shared" / "reference"
FHIR = REFERENCE / "fhir"
TEST_KEY = b"golden-test-key-not-a-secret-000"
NOW = datetime(2026, 1, 1, tzinfo=UTC)


def read_fhir(relative: str) -> dict:
    path = FHIR / relative
    if not path.is_file():
        pytest.fail(f"reference file missing: {path}")
    return json.loads(path.read_text(encoding="utf-8"))


@pytest.fixture
def reference_fhir():
    return read_fhir
