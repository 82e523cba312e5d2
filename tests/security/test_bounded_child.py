"""gateway.bounded: results, exceptions and limits of the forked worker child."""

from __future__ import annotations

import os
import time

import pytest

from gateway.bounded import WorkLimitExceeded, run_bounded
from gateway.jsonio import JSONInputError, loads_strict

MB = 2**20


def _allocate(n_bytes: int) -> int:
    return len(bytearray(n_bytes))


def _spin() -> None:
    while True:
        pass


def test_the_result_and_the_exception_come_back_as_if_run_here():
    assert run_bounded(sorted, [3, 1, 2], seconds=5, memory_bytes=64 * MB) == [1, 2, 3]
    with pytest.raises(JSONInputError) as caught:
        run_bounded(loads_strict, b"{nope", seconds=5, memory_bytes=64 * MB)
    assert caught.value.issue.code == "json-syntax"  # the Issue survives the trip between processes


def test_memory_beyond_the_limit_is_reported_not_fatal():
    assert run_bounded(_allocate, 8 * MB, seconds=5, memory_bytes=256 * MB) == 8 * MB
    with pytest.raises(WorkLimitExceeded) as caught:
        run_bounded(_allocate, 2048 * MB, seconds=5, memory_bytes=256 * MB)
    assert caught.value.limit == "memory"


def test_time_beyond_the_limit_kills_the_child():
    started = time.monotonic()
    with pytest.raises(WorkLimitExceeded) as caught:
        run_bounded(_spin, seconds=0.3, memory_bytes=64 * MB)
    assert caught.value.limit == "time"
    assert time.monotonic() - started < 3


def test_a_child_that_dies_is_a_crash_not_a_hang():
    with pytest.raises(WorkLimitExceeded) as caught:
        run_bounded(os._exit, 7, seconds=5, memory_bytes=64 * MB)
    assert caught.value.limit == "crash"
