"""Loopback fixtures for the network tests: in-process peers served over real sockets, and faulty peers.

Healthy in-process peers are Flask apps with the Beacon blueprint over the in-memory variant store of
tests/beacon, served by werkzeug in a thread on 127.0.0.1. Faulty peers are a tiny http.server that
misbehaves in one named way each. The three-process end-to-end test lives in test_e2e_processes.py.
"""

from __future__ import annotations

import json
import socket
import threading
import time
from contextlib import contextmanager, suppress
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from flask import Flask
from werkzeug.serving import make_server

from gateway.api.beacon import beacon_blueprint
from gateway.api.context import Services
from gateway.beacon.entry_types import BEACON_ENTRY_TYPES
from gateway.config import config_from_mapping
from gateway.security.service import Security
from tests.beacon.fake_store import sample_store
from tests.beacon.official_schemas import check_response

TEST_KEY = b"n" * 32
# declared explicitly so the security defaults (thresholds, rounding) do not change the answers
OPEN_POLICY = {"profile": "open", "max_granularity": "record"}


def peer_app(beacon_id: str, datasets=("ds1", "ds2"), store=None, policy: dict | None = None) -> Flask:
    config = config_from_mapping(
        {
            "node": {"id": beacon_id, "base_url": "http://127.0.0.1"},
            "datasets": [
                {"id": d, "name": d, "security_level": "PUBLIC", "policy": dict(policy or OPEN_POLICY)}
                for d in datasets
            ],
            "testing": True,
        }
    )
    app = Flask(beacon_id)
    app.extensions["gateway"] = Services(
        config=config,
        key=TEST_KEY,
        operator_tokens=(),
        store=None,  # type: ignore[arg-type]  # a Beacon over variants only
        security=Security.from_config(config, TEST_KEY, (), audit=False),
        variants=store or sample_store(),
    )
    app.register_blueprint(beacon_blueprint(BEACON_ENTRY_TYPES), url_prefix="/api")
    return app


@contextmanager
def serve(app):
    """Serve a WSGI app on a free loopback port in a thread; yields the base URL."""
    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}"
    finally:
        server.shutdown()
        server.server_close()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class _Faulty(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True
    behaviour = "html"
    release: threading.Event

    def log_message(self, *args):  # quiet
        pass

    def _send(self, status: int, content_type: str, body: bytes) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        with suppress(OSError):
            self.wfile.write(body)

    def do_POST(self):
        length = int(self.headers.get("Content-Length") or 0)
        if length:
            self.rfile.read(length)
        self.do_GET()

    def do_GET(self):
        b = self.behaviour
        type(self).seen.append({"path": self.path, "headers": dict(self.headers)})
        if b == "ok":
            self._send(200, "application/json", json.dumps(_valid_boolean(self.beacon_id)).encode())
            return
        if b == "trickle":  # a valid length, sent one byte at a time: only a real cancel frees the reader
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", "1000")
            self.end_headers()
            for _ in range(1000):
                if self.release.wait(0.05):
                    return
                try:
                    self.wfile.write(b" ")
                    self.wfile.flush()
                except OSError:
                    return
            return
        if b == "hang":
            self.release.wait(30)
            return
        if b == "slow":
            if self.release.wait(6):
                return
            self._send(200, "application/json", json.dumps(_valid_boolean("org.example.slow")).encode())
        elif b == "html":
            self._send(200, "text/html", b"<html><body>Service temporarily down</body></html>")
        elif b == "500":
            self._send(500, "application/json", b'{"message": "internal"}')
        elif b == "invalid-json":
            self._send(200, "application/json", b'{"meta": {"beaconId": "x", ')
        elif b == "schema-invalid":
            body = _valid_boolean("org.example.bad")
            body["responseSummary"] = {"exists": "yes"}
            self._send(200, "application/json", json.dumps(body).encode())
        elif b == "huge":
            # 50 MB of a syntactically plausible answer, sent without Content-Length (chunked) so the
            # cap must cut it while reading
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            piece = b'{"pad": "' + b"x" * (1024 * 1024 - 12) + b'"},'
            try:
                self.wfile.write(b"%x\r\n%s\r\n" % (1, b"["))
                for _ in range(50):
                    if self.release.is_set():
                        return
                    self.wfile.write(b"%x\r\n%s\r\n" % (len(piece), piece))
                self.wfile.write(b"0\r\n\r\n")
            except OSError:
                pass
        else:
            self._send(404, "text/plain", b"no such behaviour")


def _valid_boolean(beacon_id: str) -> dict:
    return {
        "meta": {
            "beaconId": beacon_id,
            "apiVersion": "v2.1.1",
            "returnedGranularity": "boolean",
            "returnedSchemas": [{"entityType": "genomicVariation", "schema": "beacon-g_variant-v2.0.0"}],
            "receivedRequestSummary": {
                "apiVersion": "v2.1.1",
                "requestedSchemas": [],
                "pagination": {"skip": 0, "limit": 10},
                "requestedGranularity": "boolean",
            },
        },
        "responseSummary": {"exists": True},
    }


@contextmanager
def faulty_peer(behaviour: str, beacon_id: str = "org.example.fixture", seen: list | None = None):
    """A fixture peer at the yielded Beacon base URL; requests it receives are appended to `seen`."""
    release = threading.Event()
    attributes = {
        "behaviour": behaviour,
        "release": release,
        "beacon_id": beacon_id,
        "seen": [] if seen is None else seen,
    }
    handler = type("Handler", (_Faulty,), attributes)
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/api"
    finally:
        release.set()
        server.shutdown()
        server.server_close()


def network_app(network: dict, node_id: str = "org.example.network", tmp_path=None, extra: dict | None = None):
    from app import create_app

    return create_app(
        {
            "data_dir": tmp_path / "network-data",
            "secret_key": "00" * 32,
            "operator_tokens": ["network-operator"],
            "testing": True,
            "node": {"id": node_id, "name": "Test network", "base_url": "http://net.example"},
            "network": network,
            **(extra or {}),
        }
    )


@pytest.fixture(scope="session")
def official():
    return check_response


@pytest.fixture
def timer():
    class Timer:
        def __enter__(self):
            self.start = time.monotonic()
            return self

        def __exit__(self, *exc):
            self.seconds = time.monotonic() - self.start

    return Timer
