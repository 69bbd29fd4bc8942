"""A BACnet device's restart, told by its device object's ``time-of-device-restart``.

A device that restarts forgets its COV subscriptions, yet answers the next health read as
if nothing happened: without a sign of the restart, a COV client would keep the last
notified values as fresh until its next renewal. BACnet's sign is the device object's
``time-of-device-restart`` (a BACnetTimeStamp the device sets when it starts, with
``last-restart-reason``): read with the health read every period, a stamp other than the
one last seen is a restart (:meth:`RestartWatch.see`).

**The stamp is hostile until checked.** A value that is no BACnetTimeStamp is counted
(``restart_time:wrong_type``) and ignored; a date and time later than the device's own
local time (read in the same answer) by more than :data:`FUTURE_TOLERANCE_S` is counted
(``restart_time:future``) and ignored (the last stamp believed stays). A stamp earlier
than the last one (``restart_time:backwards``) is counted and still taken as a restart:
a controller whose clock lost its time in a power cut restarts with an earlier stamp,
and re-subscribing costs one request per point, while missing a restart costs stale
values believed fresh. A time-of-day or sequence-number stamp, or a date with wildcards,
is compared for equality only.
"""

from __future__ import annotations

import logging
from collections import Counter
from datetime import datetime
from typing import Any

from bacpypes3.basetypes import TimeStamp

logger = logging.getLogger(__name__)

RESTART_PROPERTY = "time-of-device-restart"
FUTURE_TOLERANCE_S = 60.0
"""How far past the device's own local time a restart stamp may be (the two are read in
one answer from one clock, so only the resolution and the time between reading them)."""

Stamp = tuple[str, tuple[int, ...]]
"""A time stamp's choice and its numbers: what two stamps are compared by."""


def stamp_of(value: Any) -> tuple[Stamp, datetime | None]:
    """A BACnetTimeStamp as comparable numbers, and its date and time when it has one
    without wildcards. ``TypeError`` or ``ValueError`` for anything else."""
    if not isinstance(value, TimeStamp):
        raise TypeError(f"not a BACnetTimeStamp: {type(value).__name__}")
    choice = value._choice
    if choice == "sequenceNumber":
        number = int(value.sequenceNumber)
        if not 0 <= number <= 65_535:
            raise ValueError(f"sequence number {number} out of range")
        return (choice, (number,)), None
    if choice == "time":
        return (choice, tuple(int(v) for v in value.time)), None
    if choice == "dateTime":
        date = tuple(int(v) for v in value.dateTime.date)
        time_of_day = tuple(int(v) for v in value.dateTime.time)
        if len(date) != 4 or len(time_of_day) != 4:
            raise ValueError("a date-time of the wrong shape")
        stamp: Stamp = (choice, date + time_of_day)
        year, month, day, _weekday = date
        hour, minute, second, hundredths = time_of_day
        if 255 in (year, month, day, hour, minute, second, hundredths) or hundredths > 99:
            return stamp, None  # wildcards: equality only
        when = datetime(1900 + year, month, day, hour, minute, second, hundredths * 10_000)
        return stamp, when
    raise TypeError(f"a BACnetTimeStamp without a known choice: {choice!r}")


class RestartWatch:
    """The restart stamps of one device, period by period (module docstring)."""

    def __init__(self, tolerance_s: float = FUTURE_TOLERANCE_S) -> None:
        self.tolerance_s = tolerance_s
        self.stamp: Stamp | None = None
        """The last stamp believed."""
        self.at: datetime | None = None
        self.counts: Counter[str] = Counter()

    def see(self, value: Any, device_now: datetime | None) -> bool:
        """Take this period's ``time-of-device-restart`` (``device_now``: the device's
        local date and time in the same answer, if it gave one); True when the device
        restarted since the stamp last believed."""
        try:
            stamp, at = stamp_of(value)
        except (TypeError, ValueError, OverflowError, AttributeError) as exc:
            self.counts["restart_time:wrong_type"] += 1
            logger.debug("bacnet restart: unreadable time-of-device-restart: %s", exc)
            return False
        if at is not None and device_now is not None:
            ahead_s = (at - device_now).total_seconds()
            if ahead_s > self.tolerance_s:
                self.counts["restart_time:future"] += 1
                logger.debug("bacnet restart: a restart %.0f s in the device's future", ahead_s)
                return False
        last, last_at = self.stamp, self.at
        self.stamp, self.at = stamp, at
        if last is None or stamp == last:
            return False
        if at is not None and last_at is not None and at < last_at:
            self.counts["restart_time:backwards"] += 1
        return True
