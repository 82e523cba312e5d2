"""Fuzz the Beacon API from its own OpenAPI description (schemathesis): no request may produce a 500.

Bounded: a few examples per operation over a small synthetic node, so the whole run stays well under a minute.
"""

from __future__ import annotations

import pytest

schemathesis = pytest.importorskip(
    "schemathesis", reason="schemathesis is a test dependency (pip install schemathesis)"
)
from hypothesis import HealthCheck, Phase, settings  # noqa: E402
from schemathesis.checks import not_a_server_error  # noqa: E402

pytestmark = pytest.mark.slow  # several seconds: pytest-xdist starts it first (tests/conftest.py)

EXAMPLES_PER_OPERATION = 2


schema = schemathesis.pytest.from_fixture("beacon_schema")


@pytest.fixture(scope="module")
def beacon_schema():
    from tests.beacon.conftest import make_app

    # The synthetic cohort (FHIR patients, their VCF) ingested through the real pipelines behind one node.
    app = make_app(None, demo=True)
    yield schemathesis.openapi.from_wsgi("/api/openapi.json", app)
    app.extensions["gateway"].store.close()


@schema.parametrize()
@settings(
    max_examples=EXAMPLES_PER_OPERATION,
    deadline=None,
    suppress_health_check=list(HealthCheck),
    derandomize=True,
    phases=[Phase.explicit, Phase.generate],  # no shrinking: a 500 is reported as found
)
def test_no_server_errors(case):
    case.call_and_validate(checks=[not_a_server_error])
