"""Network fan-out overhead: a network node (gunicorn, one worker) over 3 and 10 local peer processes.

Each peer is a tiny fixture process (this file with --peer) answering valid Beacon individuals responses
after an injected delay. For every request the client measures the total latency; the floor is the
slowest healthy peer's latency as the network's client saw it (`info.network.peers[].latencyMs`), so
total - floor is what federation costs: the hop to the network node, fan-out, checks, merge, validation.
A last run adds a black-holed peer to show the total stays bounded by the timeout.

    python bench/network.py [--requests 200]

Targets (issue 7): boolean and count overhead ≤ 20 ms at p99 with 10 peers; total ≤ timeout always.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

REPO = Path(__file__).resolve().parents[1]


# --- the fixture peer ------------------------------------------------------------------------


def peer_main(port: int, delay: float, records: int, beacon_id: str, hang: bool) -> None:
    def body(granularity: str) -> bytes:
        meta = {
            "beaconId": beacon_id,
            "apiVersion": "v2.1.1",
            "returnedGranularity": granularity,
            "returnedSchemas": [{"entityType": "individual", "schema": "beacon-individual-v2.0.0"}],
            "receivedRequestSummary": {
                "apiVersion": "v2.1.1",
                "requestedSchemas": [],
                "pagination": {"skip": 0, "limit": 10},
                "requestedGranularity": granularity,
            },
        }
        doc: dict = {"meta": meta, "responseSummary": {"exists": True}}
        if granularity != "boolean":
            doc["responseSummary"]["numTotalResults"] = records
        if granularity == "record":
            results = [
                {"id": f"{beacon_id}-{i}", "sex": {"id": "NCIT:C16576", "label": "female"}} for i in range(records)
            ]
            rs = {"id": "ds", "setType": "dataset", "exists": True, "resultsCount": records, "results": results}
            doc["response"] = {"resultSets": [{**rs, "beaconId": beacon_id}]}
        return json.dumps(doc).encode()

    cache = {g: body(g) for g in ("boolean", "count", "record")}

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        disable_nagle_algorithm = True  # headers and body go in two writes: no 40 ms delayed-ACK stall

        def log_message(self, *args):
            pass

        def do_GET(self):
            if hang:
                time.sleep(3600)
            if delay:
                time.sleep(delay)
            params = parse_qs(urlsplit(self.path).query)
            granularity = params.get("requestedGranularity", ["boolean"])[0]
            path = urlsplit(self.path).path
            status, payload = (
                (200, cache.get(granularity, cache["boolean"])) if path.endswith("/individuals") else (404, b"{}")
            )
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

    server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
    server.daemon_threads = True
    server.serve_forever()


# --- the driver ----------------------------------------------------------------------------------


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_ready(url: str, seconds: float = 30) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(url, timeout=1):
                return
        except urllib.error.HTTPError:
            return
        except OSError:
            time.sleep(0.1)
    raise RuntimeError(f"{url} not ready")


def start_network(peers: list[dict], root: Path, processes: list) -> str:
    network = root / f"network-{len(peers)}-{time.monotonic_ns()}.yaml"
    network.write_text(json.dumps({"peers": peers, "refresh_interval": 600}))
    port = free_port()
    env = {
        **os.environ,
        "GATEWAY_DATA_DIR": str(root / f"net-{port}"),
        "GATEWAY_SECRET_KEY": "33" * 32,
        "GATEWAY_LOG_LEVEL": "WARNING",
    }
    env.pop("GATEWAY_CONFIG", None)
    cmd = [
        sys.executable,
        "-m",
        "gateway.cli",
        "serve",
        "--workers",
        "1",
        "--port",
        str(port),
        "--network",
        str(network),
    ]
    processes.append(subprocess.Popen(cmd, cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
    url = f"http://127.0.0.1:{port}"
    wait_ready(url + "/health")
    return url


def start_peers(delays: list[float], records: int, processes: list, hang: int = 0) -> list[dict]:
    peers = []
    for i, delay in enumerate(delays + [0.0] * hang):
        port = free_port()
        cmd = [
            sys.executable,
            __file__,
            "--peer",
            str(port),
            "--delay",
            str(delay),
            "--records",
            str(records),
            "--id",
            f"org.bench.p{i}",
        ]
        if i >= len(delays):
            cmd.append("--hang")
        processes.append(subprocess.Popen(cmd))
        peers.append({"url": f"http://127.0.0.1:{port}/api", "beaconId": f"org.bench.p{i}", "timeout": 1})
    for peer in peers[: len(delays)]:
        wait_ready(peer["url"] + "/individuals")
    return peers


def measure(url: str, granularity: str, n: int) -> dict:
    totals, overheads = [], []
    for i in range(n + 10):
        started = time.perf_counter()
        with urllib.request.urlopen(f"{url}/api/individuals?requestedGranularity={granularity}", timeout=30) as r:
            body = json.loads(r.read())
        total = (time.perf_counter() - started) * 1000
        healthy = [p["latencyMs"] for p in body["info"]["network"]["peers"] if p["status"] == "ok"]
        if i >= 10:  # warm-up excluded
            totals.append(total)
            overheads.append(total - max(healthy or [0.0]))
    return {
        "granularity": granularity,
        "returned": body["meta"]["returnedGranularity"],
        "total_p50": pct(totals, 50),
        "total_p99": pct(totals, 99),
        "overhead_p50": pct(overheads, 50),
        "overhead_p99": pct(overheads, 99),
    }


def pct(values: list[float], q: int) -> float:
    ordered = sorted(values)
    return round(ordered[min(len(ordered) - 1, int(len(ordered) * q / 100))], 2)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--requests", type=int, default=200)
    parser.add_argument("--records", type=int, default=10, help="records per peer at record granularity")
    parser.add_argument("--peer", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--delay", type=float, default=0.0, help=argparse.SUPPRESS)
    parser.add_argument("--id", default="org.bench.peer", help=argparse.SUPPRESS)
    parser.add_argument("--hang", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.peer:
        peer_main(args.peer, args.delay, args.records, args.id, args.hang)
        return
    processes: list[subprocess.Popen] = []
    root = Path(tempfile.mkdtemp(prefix="bench-network-"))
    setups = {
        "3 peers (0, 5, 20 ms)": ([0.0, 0.005, 0.02], 0),
        "10 peers (0-20 ms, one 50 ms)": ([0.0, 0.0, 0.002, 0.005, 0.005, 0.01, 0.01, 0.02, 0.02, 0.05], 0),
        "10 peers + 1 black-holed (timeout 1 s)": ([0.0, 0.0, 0.002, 0.005, 0.005, 0.01, 0.01, 0.02, 0.02, 0.05], 1),
    }
    try:
        print(f"{'setup':42} {'query':8} {'p50 ms':>8} {'p99 ms':>8} {'over p50':>9} {'over p99':>9}")
        for name, (delays, hang) in setups.items():
            peers = start_peers(delays, args.records, processes, hang)
            url = start_network(peers, root, processes)
            n = args.requests if not hang else max(20, args.requests // 10)
            for granularity in ("boolean", "count", "record"):
                m = measure(url, granularity, n)
                print(
                    f"{name:42} {granularity:8} {m['total_p50']:8.1f} {m['total_p99']:8.1f}"
                    f" {m['overhead_p50']:9.1f} {m['overhead_p99']:9.1f}"
                )
    finally:
        for process in processes:
            process.terminate()
        for process in processes:
            process.wait(timeout=10)


if __name__ == "__main__":
    main()
