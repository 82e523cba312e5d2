"""Live HTTP servers on 127.0.0.1 (port 0) for `gateway verify`: the gateway itself and a broken Beacon."""

from __future__ import annotations

import threading

import pytest
from werkzeug.serving import make_server


def _serve(app):
    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    return server, thread


@pytest.fixture
def live_url():
    """Start a WSGI app in a thread; yields a function app → base URL; every server is shut down afterwards."""
    started = []

    def start(app) -> str:
        server, thread = _serve(app)
        started.append((server, thread))
        return f"http://127.0.0.1:{server.server_port}"

    yield start
    for server, thread in started:
        server.shutdown()
        thread.join(timeout=5)


@pytest.fixture
def gateway_node(app, live_url):
    """The gateway's own server with the Beacon tests' in-memory variants, over real HTTP."""
    from dataclasses import replace

    from tests.beacon.fake_store import sample_store

    services = app.extensions["gateway"]
    services.variants = sample_store()
    url = live_url(app)
    # /map names absolute URLs from the node's configured base URL: make it the live server's.
    # The fake store's datasets, declared open (as a test node's are) so that every granularity is served.
    from gateway.config import DatasetConfig

    declared = tuple(
        DatasetConfig(id=d, name=d, security_level="PUBLIC", policy={"profile": "open"}) for d in ("ds1", "ds2")
    )
    services.config = replace(
        services.config, node=replace(services.config.node, base_url=url), datasets=services.config.datasets + declared
    )
    return url + "/api"
