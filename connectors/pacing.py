"""Paced stepping of an emulated device's plant: ``speed`` plant seconds per wall second.

The BACnet and Modbus faces of the emulated site step their plant the same way: one step,
then sleep until the next step is due; a device that falls behind (a loaded machine) runs
the late step at once and does not try to catch up with a burst.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

logger = logging.getLogger(__name__)


async def pace(
    step: Callable[[], Awaitable[None]],
    done: Callable[[], bool],
    period_s: float,
    name: str,
) -> None:
    """Await ``step()`` every ``period_s`` wall seconds until ``done()``; a step that raises
    is logged and ends the pacing (the device keeps answering, its plant stands still)."""
    if not period_s > 0:
        raise ValueError(f"period_s must be positive, got {period_s}")
    loop = asyncio.get_running_loop()
    next_t = loop.time()
    while not done():
        try:
            await step()
        except Exception:
            logger.exception("%s: step failed; stopping the pacing", name)
            return
        next_t += period_s
        delay = next_t - loop.time()
        if delay > 0:
            await asyncio.sleep(delay)
        else:
            next_t = loop.time()
            await asyncio.sleep(0)
