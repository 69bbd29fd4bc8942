"""The live service's alarm evaluation: every ``period_s`` of wall time, with or without a
dashboard open, :class:`AlarmLoop` brings the historian's alarm log up to its newest readings
and events (:class:`~control.alarms.AlarmEngine`, the model in :mod:`control.alarms`) and
records that it did (one :data:`~control.alarms.EVALUATED_POINT` reading per evaluation).

The feed alarm is judged here: the wall seconds since the newest *site* reading moved on (the
live loop's own series keep moving while the BMS link is down). An evaluation that fails (a
historian busy past its timeout, a dropped PostgreSQL connection) is logged and tried again
one period later; it never stops the control loop.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

from connectors.historian import AlarmRecord, HistorianStore, Reading
from control.alarms import EVALUATED_POINT, AlarmConfig, AlarmEngine, FeedWatch, is_site_point

logger = logging.getLogger(__name__)


class AlarmLoop:
    """Evaluates the alarms of ``store`` every ``config.period_s`` (module docstring)."""

    def __init__(
        self,
        store: HistorianStore,
        config: AlarmConfig,
        *,
        wall: Callable[[], float] = time.time,
    ) -> None:
        self.store = store
        self.config = config
        self.engine = AlarmEngine(config, wall)
        self.feed = FeedWatch()
        self._wall = wall
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.evaluations = 0
        self.failures = 0

    def evaluate(self) -> list[AlarmRecord]:
        """One evaluation now; the records it appended to the alarm log."""
        latest = self.store.latest()
        latest.pop(EVALUATED_POINT, None)
        if not latest:
            return []
        now_s = self._wall()
        site_s = [r.time_s for name, r in latest.items() if is_site_point(name)]
        silent_s = self.feed.observe(max(site_s), now_s) if site_s else 0.0
        records = self.engine.evaluate(self.store, latest, feed_silent_s=silent_s)
        newest_s = max(r.time_s for r in latest.values())
        # seq: the evaluation's wall time in ms, so every evaluation is a row of its own.
        self.store.write([Reading(EVALUATED_POINT, newest_s, now_s, "s", seq=int(now_s * 1e3))])
        self.evaluations += 1
        return records

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self.evaluate()
            except Exception:
                self.failures += 1
                logger.exception("alarms: evaluation failed; trying again in %g s", self.period_s)
            self._stop.wait(self.period_s)

    @property
    def period_s(self) -> float:
        return self.config.period_s

    def start(self) -> AlarmLoop:
        if self._thread is None:
            self._stop.clear()
            self._thread = threading.Thread(target=self._run, name="alarm-loop", daemon=True)
            self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=30.0)
            self._thread = None
