"""A node shutting down (its fan-out pool closed, or the interpreter exiting) while the peers' metadata is being
refreshed in the background: the refresh ends quietly. Before: "network metadata refresh failed" with a
RuntimeError traceback ("cannot schedule new futures after shutdown") at the end of test runs."""

from __future__ import annotations

import logging

import pytest

from gateway.network.client import Call, FanOut, FanOutClosed
from gateway.network.directory import PeerDirectory
from gateway.network.peers import Peer

PEER = Peer(url="http://peer.invalid/api", beacon_id="org.example.peer", timeout=1.0)


def _local_call(peer: Peer, endpoint: str) -> Call:
    body = b'{"meta": {}, "response": {}}'
    return Call(
        f"{peer.url}/{endpoint}", "GET", f"{peer.url}/{endpoint}", 1.0, local=lambda: (200, "application/json", body)
    )


def _directory(fanout: FanOut, interval: float = 3600.0) -> PeerDirectory:
    return PeerDirectory([PEER], fanout, _local_call, budget=1.0, refresh_interval=interval)


def test_a_background_refresh_after_the_pool_closed_ends_quietly(caplog):
    fanout = FanOut(max_workers=2)
    directory = _directory(fanout)
    directory.refresh()  # works while open
    fanout.close()
    with caplog.at_level(logging.DEBUG, logger="gateway.network"):
        directory._refresh_in_background()
    assert [r for r in caplog.records if r.levelno >= logging.WARNING] == []
    assert directory._refreshing is False  # the next refresh is not blocked


def test_a_closed_pool_refuses_work_with_its_own_error():
    """What the directory recognises: a closed fan-out, not any RuntimeError."""
    fanout = FanOut(max_workers=1)
    fanout.close()
    with pytest.raises(FanOutClosed):
        fanout.run([_local_call(PEER, "info")], 1.0)


def test_the_refresh_timer_stops_when_the_pool_is_closed(caplog):
    fanout = FanOut(max_workers=2)
    directory = _directory(fanout, interval=0.01)
    with caplog.at_level(logging.DEBUG, logger="gateway.network"):
        directory.snapshot()  # starts the timer (and a first refresh)
        timer = directory._timer
        assert timer is not None
        fanout.close()
        timer.join(10)  # a bound on waiting, not a speed figure: a timer that never ends fails here
    assert not timer.is_alive()
    assert [r for r in caplog.records if r.levelno >= logging.WARNING] == []
