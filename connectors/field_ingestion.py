"""Ingestion over a field protocol: a :class:`~connectors.field_link.FieldLink` (BACnet/IP,
Modbus TCP) polled into the live controller's snapshot and the historian.

Every :meth:`FieldIngestor.poll_once` reads every mapped point of the device in one
:meth:`FieldLink.poll`, stores what was read in the historian (one batch, the poll's number
as ``seq``) and updates each point's state. :meth:`FieldIngestor.snapshot` gives the
controller a :class:`~connectors.ingestion.PointState` per point (the watchdog's
``Sample``), as MQTT ingestion does. :meth:`FieldIngestor.start` polls on a daemon thread
every ``interval_s``; a caller that steps an emulated plant calls :meth:`poll_once` itself.

**Staleness comes from the device's health, never from silence.** Polling asks every
period, so every answer, or its absence, says something:

- the device answered as its allow-listed identity: each point read is fresh; a point the
  device gave no believable value for (``out_of_range``, ``wrong_type``, an error
  response...) keeps its last value, stale with that reason; a point whose request alone
  got no answer (``timeout``, an abort) keeps its last value and time, and the watchdog
  judges its age;
- the device did not answer (or another device did) ``failed_polls_to_stale`` polls in a
  row: every point is stale (``device: timeout``), so the watchdog trips and the site's own
  control takes over;
- no poll answered for ``stale_after_s`` wall seconds (the poller itself stopped or hangs):
  every point is stale (``no answered poll``).

Device loss and recovery are events in the historian (source ``field``).

**A mixed site** (:class:`~connectors.multi_link.MultiLink`: a BACnet BMS beside Modbus
meters) is judged device by device from :attr:`PollResult.devices`: a device that did not
answer ``failed_polls_to_stale`` polls in a row makes its own points stale (``device
<name>: <reason>``; ``device_lost``/``device_back`` events name it) while the others' stay
fresh; a poll that missed a device is counted ``partial_polls``, never ``answered_polls``.
Only when no device answered is the poll a failed one, as above.

**Timestamps** come from ``clock`` (the wall clock on a site, the plant's clock when a test
steps an emulator), or with ``device_clock`` from the device's own clock, read in the same
poll (:attr:`PollResult.device_time_s`): an emulated site served over BACnet then runs on the
plant's clock as it does over MQTT. Each device time is checked first
(:class:`~connectors.device_clock.DeviceClockGuard`): a poll whose time is refused is a poll
without an answer (``device_clock:<reason>``; its readings are neither stored nor believed,
and ``failed_polls_to_stale`` of them in a row make every point stale). A poll at the same
device time as the one before is the same sample again: nothing is stored and each point
keeps its age, so a device whose clock stands still goes stale as a silent one does.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass

from connectors.device_clock import DeviceClockGuard
from connectors.field_link import FieldLink, PollResult
from connectors.historian import Event, HistorianStore, Reading
from connectors.ingestion import PointState

logger = logging.getLogger(__name__)

SOURCE = "field"
DEFAULT_FAILED_POLLS_TO_STALE = 2


@dataclass
class _Track:
    reading: Reading
    read_mono: float


class FieldIngestor:
    """A field device's points polled into a snapshot and the historian (module docstring)."""

    def __init__(
        self,
        link: FieldLink,
        historian: HistorianStore | None,
        *,
        clock: Callable[[], float] = time.time,
        failed_polls_to_stale: int = DEFAULT_FAILED_POLLS_TO_STALE,
        stale_after_s: float = 60.0,
        name: str = "bms",
        device_clock: DeviceClockGuard | None = None,
    ) -> None:
        if failed_polls_to_stale < 1:
            raise ValueError("failed_polls_to_stale must be at least 1")
        if not (math.isfinite(stale_after_s) and stale_after_s > 0):
            raise ValueError("stale_after_s must be a positive number of seconds")
        self.link = link
        self.historian = historian
        self.clock = clock
        self.failed_polls_to_stale = failed_polls_to_stale
        self.stale_after_s = float(stale_after_s)
        self.name = name
        self.device_clock = device_clock
        self._sample_s: float | None = None
        self._lock = threading.Lock()
        self._tracks: dict[str, _Track] = {}
        self._errors: dict[str, str] = {}
        self._failed_polls = 0
        self._device_reason = ""
        self._answered_mono: float | None = None
        self._device_failed: Counter[str] = Counter()
        """A composite link's device -> polls in a row it did not answer."""
        self._device_reasons: dict[str, str] = {}
        self._point_device: dict[str, str] = {}
        self._last_poll: PollResult | None = None
        self._seq = 0
        self._counts: Counter[str] = Counter()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    # ------------------------------------------------------------------ polling
    def poll_once(self) -> PollResult:
        """Poll the device once, store what was read and update every point's state."""
        result = self.link.poll()
        now_s = self.clock()
        mono = time.monotonic()
        repeated = False
        if self.device_clock is not None and result.device_ok:
            device_s, why = self.device_clock.check(result.device_time_s)
            if device_s is None:
                result = _unanswered(result, f"device_clock:{why}")
                self._counts[f"clock_refused.{why}"] += 1
                if self._sample_s is not None:  # events stay on the device's time base
                    now_s = self._sample_s
            else:
                repeated = device_s == self._sample_s
                now_s = self._sample_s = device_s
        self._seq += 1
        readings = [
            Reading(r.point, now_s, r.value, r.unit, r.quality, self._seq)
            for r in result.readings.values()
            if r.quality != "good" or math.isfinite(r.value)
        ]
        lost = back = False
        device_lost: list[str] = []
        device_back: list[str] = []
        with self._lock:
            self._last_poll = result
            if result.device_ok:
                back = self._failed_polls >= self.failed_polls_to_stale
                self._failed_polls = 0
                self._device_reason = ""
                self._answered_mono = mono
                self._errors = dict(result.errors)
                for reading in readings if not repeated else ():
                    self._tracks[reading.point] = _Track(reading, mono)
                device_lost, device_back = self._judge_devices(result)
            else:
                self._failed_polls += 1
                reason = result.errors.get("device") or _commonest(result.errors) or "no answer"
                self._device_reason = reason
                lost = self._failed_polls == self.failed_polls_to_stale
        self._counts["polls"] += 1
        self._counts[
            "failed_polls"
            if not result.device_ok
            else "partial_polls"
            if result.partial
            else "answered_polls"
        ] += 1
        if repeated:  # the device's same sample again: nothing new to store
            self._counts["repeated_samples"] += 1
            readings = []
        self._counts["readings"] += len(readings) if result.device_ok else 0
        if lost:
            self._event(now_s, "device_lost", f"{self.name}: {reason}: every point stale")
            logger.warning(
                "field ingestion: %s not answering (%s): points stale", self.name, reason
            )
        if back:
            self._event(now_s, "device_back", f"{self.name}: answering again")
            logger.warning("field ingestion: %s answers again", self.name)
        for device in device_lost:
            why = self._device_reasons.get(device, "")
            self._event(now_s, "device_lost", f"{device}: {why}: its points stale")
            logger.warning("field ingestion: %s not answering (%s): its points stale", device, why)
        for device in device_back:
            self._event(now_s, "device_back", f"{device}: answering again")
            logger.warning("field ingestion: %s answers again", device)
        if result.device_ok and readings and self.historian is not None:
            try:
                self.historian.write(readings)
            except Exception:
                self._counts["write_errors"] += 1
                logger.exception(
                    "field ingestion: historian write of %d readings failed", len(readings)
                )
        return result

    def _judge_devices(self, result: PollResult) -> tuple[list[str], list[str]]:
        """A composite poll's devices (module docstring): those lost and those back now.
        Called with the lock held."""
        lost: list[str] = []
        back: list[str] = []
        for device, health in result.devices.items():
            for point in health.points:
                self._point_device[point] = device
            if health.ok:
                if self._device_failed[device] >= self.failed_polls_to_stale:
                    back.append(device)
                self._device_failed[device] = 0
                self._device_reasons.pop(device, None)
            else:
                self._device_failed[device] += 1
                self._device_reasons[device] = health.reason
                if self._device_failed[device] == self.failed_polls_to_stale:
                    lost.append(device)
        return lost, back

    def _event(self, now_s: float, kind: str, message: str) -> None:
        if self.historian is None:
            return
        try:
            self.historian.add_event(Event(now_s, SOURCE, kind, message))
        except Exception:
            logger.exception("field ingestion: could not record event %s", kind)

    @property
    def last_poll(self) -> PollResult | None:
        with self._lock:
            return self._last_poll

    # ------------------------------------------------------------------ the snapshot
    def snapshot(self) -> dict[str, PointState]:
        """Latest value, quality and staleness of every point read (module docstring)."""
        mono = time.monotonic()
        with self._lock:
            device_down = self._failed_polls >= self.failed_polls_to_stale
            overdue = self._answered_mono is None or mono - self._answered_mono > self.stale_after_s
            out: dict[str, PointState] = {}
            for point, track in self._tracks.items():
                r = track.reading
                if device_down:
                    reason = f"device: {self._device_reason}"
                elif overdue:
                    reason = "no answered poll"
                elif (failed := self._device_failed[self._point_device.get(point, "")]) > 0:
                    # Its device did not answer: stale once it has not for long enough, else
                    # no news (the reading's age tells), as for a single device.
                    device = self._point_device[point]
                    stale = failed >= self.failed_polls_to_stale
                    reason = f"device {device}: {self._device_reasons[device]}" if stale else ""
                else:
                    reason = self._errors.get(point, "")
                    if _transport(reason):  # no news: the reading's age tells
                        reason = ""
                out[point] = PointState(
                    point=point,
                    value=r.value,
                    unit=r.unit,
                    ts=r.time_s,
                    quality=r.quality,
                    seq=r.seq,
                    stale=bool(reason),
                    stale_reason=reason,
                    age_s=mono - track.read_mono,
                )
            return out

    def stats(self) -> dict[str, int]:
        """Polls (answered, failed), readings stored, historian write errors and the
        link's own counters (``link.<name>``)."""
        link = {f"link.{k}": v for k, v in self.link.counters().items()}
        return {**self._counts, **link}

    # ------------------------------------------------------------------ the poller thread
    def start(self, interval_s: float) -> FieldIngestor:
        """Poll every ``interval_s`` wall seconds on a daemon thread, first poll now."""
        if not (math.isfinite(interval_s) and interval_s > 0):
            raise ValueError("interval_s must be a positive number of seconds")
        if self._thread is not None:
            return self
        self._stop.clear()
        self._thread = threading.Thread(
            target=self._run, args=(float(interval_s),), name=f"field-poll-{self.name}", daemon=True
        )
        self._thread.start()
        return self

    def _run(self, interval_s: float) -> None:
        next_tick = time.monotonic()
        while not self._stop.is_set():
            try:
                self.poll_once()
            except Exception:  # the link names what the network says; this is a bug
                self._counts["poll_errors"] += 1
                logger.exception("field ingestion: poll of %s failed", self.name)
            next_tick += interval_s
            delay = next_tick - time.monotonic()
            if delay < 0:
                next_tick = time.monotonic()
                delay = 0.0
            self._stop.wait(delay)

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=30.0)
            self._thread = None


def _unanswered(result: PollResult, reason: str) -> PollResult:
    """``result`` as a poll without an answer, for ``reason`` (its readings dropped)."""
    return dataclasses.replace(
        result, readings={}, errors={**result.errors, "device": reason}, device_ok=False
    )


def _transport(reason: str) -> bool:
    """A failure to get an answer, not an answer about the value."""
    return reason in ("timeout", "no_answer") or reason.startswith(
        ("abort:", "reject:", "decode_error")
    )


def _commonest(errors: dict[str, str]) -> str:
    if not errors:
        return ""
    return Counter(errors.values()).most_common(1)[0][0]
