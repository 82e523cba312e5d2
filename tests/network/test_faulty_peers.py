"""Bad peers on loopback: refused, black-holed, slow, HTML, 500, invalid JSON, schema-invalid, 50 MB.
Each time the network answers within its budget, flags the peer with a reason, merges only the healthy
peer, and its answer meets the official schemas."""

from __future__ import annotations

import time
from contextlib import ExitStack

import pytest

from gateway.network.client import Call, FanOut
from tests.network.conftest import faulty_peer, free_port, network_app

pytestmark = pytest.mark.slow  # several seconds: pytest-xdist starts it first (tests/conftest.py)

QUERY = {"referenceName": "17", "start": "43045711", "alternateBases": "A", "requestedGranularity": "count"}
# behaviour -> (expected status, words in the reason)
FAULTS = {
    "refused": ("error", "refused"),
    "hang": ("timeout", "within"),
    "slow": ("timeout", "within"),
    "html": ("error", "text/html"),
    "500": ("error", "500"),
    "invalid-json": ("error", "invalid JSON"),
    "schema-invalid": ("error", "not a valid Beacon"),
    "huge": ("error", "byte limit"),
}


def _peer_url(stack: ExitStack, behaviour: str) -> str:
    if behaviour == "refused":
        return f"http://127.0.0.1:{free_port()}/api"  # bound, then released: nobody listens
    return stack.enter_context(faulty_peer(behaviour))


@pytest.mark.parametrize("behaviour", sorted(FAULTS))
def test_a_faulty_peer_is_flagged_and_the_network_still_answers(behaviour, tmp_path, official):
    with ExitStack() as stack:
        healthy = stack.enter_context(faulty_peer("ok", beacon_id="org.example.healthy"))
        bad = _peer_url(stack, behaviour)
        network = {"peers": [{"url": healthy}, {"url": bad, "timeout": 1}], "budget": 1.2}
        client = network_app(network, tmp_path=tmp_path).test_client()
        started = time.monotonic()
        response = client.get("/api/g_variants", query_string=QUERY)
        elapsed = time.monotonic() - started
    body = response.get_json()
    assert response.status_code == 200 and official(body) == []
    # within the budget: far less than the slow peer (6 s) or the hung one (30 s) would have cost, with room for a
    # machine busy with other work (the bound is what a missing budget would break, not a speed figure)
    assert elapsed < 1.2 + 2.5, f"answered after {elapsed:.2f} s"
    healthy_line, bad_line = body["info"]["network"]["peers"]
    assert healthy_line["status"] == "ok" and healthy_line["beaconId"] == "org.example.healthy"
    status, words = FAULTS[behaviour]
    assert bad_line["status"] == status and words in bad_line["reason"], bad_line
    assert body["responseSummary"]["exists"] is True  # the healthy fixture's answer survives


def test_all_faults_at_once_with_the_default_timeout(tmp_path, official):
    """Eight bad peers and one good one, default 5 s timeouts: one answer, within the budget."""
    with ExitStack() as stack:
        healthy = stack.enter_context(faulty_peer("ok", beacon_id="org.example.healthy"))
        urls = [_peer_url(stack, b) for b in sorted(FAULTS)]
        client = network_app({"peers": [healthy, *urls]}, tmp_path=tmp_path).test_client()
        started = time.monotonic()
        response = client.post(
            "/api/g_variants", json={"meta": {"apiVersion": "v2.0"}, "query": {"requestedGranularity": "boolean"}}
        )
        elapsed = time.monotonic() - started
    body = response.get_json()
    assert response.status_code == 200 and official(body) == []
    # the black-holed peers cost the 5 s timeout, not the 30 s they would hang (room for a busy machine)
    assert 4.9 < elapsed < 5.0 + 3.0, f"answered after {elapsed:.2f} s"
    lines = body["info"]["network"]["peers"]
    assert [line["status"] for line in lines] == ["ok"] + [FAULTS[b][0] for b in sorted(FAULTS)]
    assert body["info"]["network"]["peersAnswered"] == 1


def test_no_healthy_peer_gives_a_schema_valid_gateway_error(tmp_path, official):
    with faulty_peer("html") as html, faulty_peer("500") as broken:
        client = network_app({"peers": [html, broken]}, tmp_path=tmp_path).test_client()
        response = client.get("/api/g_variants", query_string=QUERY)
    body = response.get_json()
    assert response.status_code == 502 and official(body) == []
    assert "text/html" in body["error"]["errorMessage"] and "500" in body["error"]["errorMessage"]


def test_a_peer_answering_as_another_beacon_is_refused(tmp_path, official):
    with faulty_peer("ok", beacon_id="org.example.impostor") as impostor, faulty_peer("ok") as good:
        network = {"peers": [{"url": impostor, "beaconId": "org.example.expected"}, {"url": good}]}
        body = network_app(network, tmp_path=tmp_path).test_client().get("/api/g_variants", query_string=QUERY)
    body = body.get_json()
    assert official(body) == []
    first = body["info"]["network"]["peers"][0]
    assert first["status"] == "error" and "org.example.impostor" in first["reason"]


def test_a_trickling_peer_is_really_cancelled():
    """One pool thread only: if the cancelled read kept it busy, the next call could not start in time."""
    fanout = FanOut(max_workers=1)
    try:
        with faulty_peer("trickle") as trickle, faulty_peer("ok") as ok:
            started = time.monotonic()
            (reply,) = fanout.run([Call("t", "GET", trickle + "/g_variants", timeout=0.5)], budget=5)
            assert reply.status == "timeout" and time.monotonic() - started < 3  # the trickle lasts 50 s
            started = time.monotonic()
            (reply,) = fanout.run([Call("o", "GET", ok + "/g_variants", timeout=1)], budget=5)
            assert reply.status == "ok" and reply.http_status == 200, reply
            assert time.monotonic() - started < 3  # a pool thread still reading the trickle: 1 s timeout, then 50 s
    finally:
        fanout.close()


def test_kept_alive_connections_are_reused_and_a_closed_one_is_retried():
    fanout = FanOut(max_workers=2)
    seen: list = []
    try:
        with faulty_peer("ok", seen=seen) as ok:
            replies = [fanout.run([Call("o", "GET", ok + "/info", timeout=1)], budget=1)[0] for _ in range(3)]
            assert [r.status for r in replies] == ["ok"] * 3 and len(seen) == 3
        with faulty_peer("ok") as again:  # the old server is gone: its idle connections are dead
            (reply,) = fanout.run([Call("o", "GET", again + "/info", timeout=1)], budget=1)
            assert reply.status == "ok"
    finally:
        fanout.close()


def test_when_a_peer_drops_every_idle_connection_the_retry_uses_a_new_one():
    """A peer (gunicorn's keep-alive timeout, a proxy) closes every idle kept-alive connection at once. Before: the
    one retry took the next idle connection of the pool, as dead as the first, and the call failed
    (`RemoteDisconnected`): a network node's page that asked the peer several things at once got 502s."""
    import http.server
    import threading

    class DropsAfterEachAnswer(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"  # keep-alive, said and then not kept

        def do_GET(self):
            body = b'{"ok": true}'
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
            self.close_connection = True  # closed silently once answered, as an idle timeout does

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), DropsAfterEachAnswer)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    base = f"http://127.0.0.1:{server.server_address[1]}"
    fanout = FanOut(max_workers=4)
    try:
        calls = [Call(f"c{n}", "GET", f"{base}/info", timeout=2) for n in range(4)]
        assert [r.status for r in fanout.run(calls, budget=3)] == ["ok"] * 4  # four connections now idle (dead)
        time.sleep(0.1)
        for _ in range(3):
            replies = fanout.run(calls, budget=3)
            assert [r.status for r in replies] == ["ok"] * 4, [r.reason for r in replies]
    finally:
        fanout.close()
        server.shutdown()
