"""Live HTTP servers on 127.0.0.1 (port 0) for `gateway verify`: the gateway itself and a broken Beacon."""

from __future__ import annotations

import sys
import threading
from pathlib import Path

import pytest
from werkzeug.serving import make_server

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "beacon"))


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
    from fake_store import sample_store

    app.extensions["gateway"].variants = sample_store()
    return live_url(app) + "/api"
