"""Paced stepping of the emulated devices' plants."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Coroutine
from typing import Any

import pytest

from connectors.pacing import pace


def run(coro: Coroutine[Any, Any, None]) -> None:
    """On a private loop: ``asyncio.run`` would leave the thread without an event loop,
    which bacpypes3 objects created later in this process expect."""
    loop = asyncio.new_event_loop()
    try:
        loop.run_until_complete(coro)
    finally:
        loop.close()


def test_steps_come_at_the_pace_until_done_and_a_failing_step_ends_the_pacing(
    caplog: pytest.LogCaptureFixture,
) -> None:
    stamps: list[float] = []

    async def step() -> None:
        stamps.append(time.monotonic())

    run(pace(step, lambda: len(stamps) >= 5, 0.05, "test"))
    assert len(stamps) == 5
    assert stamps[-1] - stamps[0] >= 4 * 0.05 - 0.01  # paced, not a burst

    calls = 0

    async def failing() -> None:
        nonlocal calls
        calls += 1
        raise RuntimeError("the plant's scenario has ended")

    run(pace(failing, lambda: False, 0.01, "dev"))
    assert calls == 1
    assert "dev: step failed" in caplog.text
    with pytest.raises(ValueError, match="period_s"):
        run(pace(step, lambda: True, 0.0, "test"))
