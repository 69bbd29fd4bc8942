"""The alarm model: what is an alarm, its severity, raise and clear with hysteresis,
acknowledge (who, when), shelve, and the history, kept in the historian's append-only alarm
log (:class:`connectors.historian.AlarmRecord`).

Alarms (key → severity):

- ``inlet:<point>``: a rack inlet above ``inlet_high_c`` (ASHRAE's recommended 27 °C) is
  *high*, above ``inlet_critical_c`` (A1 allowable, 32 °C) *critical*; it clears only below
  ``inlet_high_c - inlet_deadband_k``. Every sample since the last evaluation counts, so an
  excursion between two evaluations is not missed.
- ``stale:<point>``: a site point whose newest reading lags the hall's newest by more than
  ``stale_after_s`` or is not good (*medium*); it clears once it lags by less than half that.
  The live loop's own series (``ctl.``, ``shadow.``, ``kpi.``, ``twin.``, ``alarms.``) are
  not sensors and never count: they stop by design when a policy leaves shadow or control;
  nor do a field device's setpoint readbacks (``setpoint.<field>``), empty by design once
  TwinLoop hands a setpoint back.
- ``feed``: no newer site reading for ``feed_silent_after_s`` of wall time (*critical*),
  judged by the evaluator (:class:`FeedWatch`).
- events of the live loop, momentary (raised and cleared at once, so they wait for an
  acknowledgement): a watchdog ``trip`` (*critical*), a ``rollback`` or ``write_error``
  (*high*), a ``sensor_fault`` (*medium*), a ``twin_error`` (*low*), and a
  shield intervention only where the policy asked for what the site forbids (``envelope``,
  ``invalid``, ``not_allowed``: *low*). A shield that only paced a move (``step``, ``hour``,
  ``dwell``, e.g. "chw_supply_c: 12.4475 -> 12.45 (step)") is an event, never an alarm.

A raise after a clear, or a rise in severity, is a new occurrence: it needs acknowledging
again. A shelved alarm is still evaluated and logged but left off the active list until its
shelf ends (on the readings' clock, the site's time base). Operators acknowledge, shelve and
unshelve on the dashboard (``dashboards.alarm_actions``); a viewer is refused on the server.

One evaluator: the live service (``twinloop serve``, the demo) runs
:class:`~control.alarm_loop.AlarmLoop` beside the control loop, with or without a dashboard
open, and appends the transitions (raise, clear, a shelf's end) to the log. Operators'
answers (ack, shelve, unshelve) are appended by the dashboard, usually another process. The
log is the state: before each evaluation the engine folds it again, so an answer written
meanwhile is seen, and it appends only if the log still holds the rows it read
(``expect_rows``; else it reads and evaluates again), so a transition is never decided on a
log an operator's answer has since changed. A restarted service picks up from its newest
record: a standing alarm is not raised twice.
"""

from __future__ import annotations

import logging
import math
import re
import threading
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field

from connectors.historian import (
    ALARM_SEVERITIES,
    AlarmLogChangedError,
    AlarmRecord,
    Event,
    HistorianStore,
    Reading,
)

logger = logging.getLogger(__name__)

ENGINE = "alarm engine"
"""The actor of the records the evaluation writes (raise, clear, a shelf's end)."""
LIVE_LOOP_PREFIXES: tuple[str, ...] = ("ctl.", "shadow.", "kpi.", "twin.", "alarms.")
"""Series the live loop writes; not site points, never stale alarms."""
SETPOINT_READBACK_PREFIX = "setpoint."
"""A field device's readback of a setpoint (``connectors.point_map``): never a stale alarm."""
EVALUATED_POINT = "alarms.evaluated"
"""The live service's evaluation, one reading each: its time is the newest reading evaluated
(the site's time base), its value the Unix time of the evaluation (how a dashboard tells a
running service from an archived run)."""
RACK_INLET = re.compile(r"rack_inlet_c\.(?P<pod>\d+)\.(?P<rack>\d+)")
"""A rack inlet's point (``physics.plant.sensors.point_catalog``)."""
MAX_TRIES = 5
"""Evaluations in a row that may find the log changed by another writer before giving up."""
EVENT_SEVERITY: Mapping[str, str] = {
    "trip": "critical",
    "rollback": "high",
    "write_error": "high",
    "sensor_fault": "medium",
    "twin_error": "low",
}
"""Event kinds that are alarms, and their severity (``shield``: see the module docstring)."""
SHIELD_ALARM_REASONS = frozenset({"envelope", "invalid", "not_allowed"})
"""Shield reasons that mean the policy asked for what the site forbids."""
_SHIELD_REASON = re.compile(r"\((?P<reason>[a-z_]+)\)(?:;|$)")


def severity_rank(severity: str) -> int:
    """0 for the most urgent."""
    return ALARM_SEVERITIES.index(severity)


def is_site_point(name: str) -> bool:
    return not name.startswith(LIVE_LOOP_PREFIXES)


def can_go_stale(name: str) -> bool:
    """A site sensor, whose lag or bad quality is a ``stale`` alarm. Not the live loop's
    series, and not a field device's setpoint readbacks (``setpoint.<field>``): those echo
    what holds the setpoint, and read empty by design once TwinLoop hands it back (Modbus
    holds NaN then); a device that stops answering makes its sensors stale anyway."""
    return is_site_point(name) and not name.startswith(SETPOINT_READBACK_PREFIX)


def rack_inlets(points: Iterable[str]) -> list[str]:
    return sorted(p for p in points if RACK_INLET.fullmatch(p))


@dataclass(frozen=True)
class AlarmConfig:
    """Limits of the alarm model (module docstring)."""

    inlet_high_c: float = 27.0
    inlet_critical_c: float = 32.0
    inlet_deadband_k: float = 0.5
    stale_after_s: float = 900.0
    feed_silent_after_s: float = 60.0
    look_back_s: float = 3600.0
    """How far back the first evaluation of an empty log looks."""
    period_s: float = 10.0
    """Wall seconds between two evaluations of the live service."""

    def __post_init__(self) -> None:
        if not self.inlet_critical_c > self.inlet_high_c:
            raise ValueError("inlet_critical_c must be above inlet_high_c")
        for name in (
            "inlet_deadband_k",
            "stale_after_s",
            "feed_silent_after_s",
            "look_back_s",
            "period_s",
        ):
            if not getattr(self, name) > 0:
                raise ValueError(f"alarm {name} must be positive, got {getattr(self, name)}")


@dataclass
class AlarmState:
    """One alarm now, folded from its log."""

    key: str
    severity: str
    message: str
    active: bool
    raised_s: float
    cleared_s: float | None = None
    acked_by: str | None = None
    acked_s: float | None = None
    shelved_by: str | None = None
    shelved_until_s: float | None = None
    shelve_reason: str = ""

    @property
    def acked(self) -> bool:
        return self.acked_by is not None

    @property
    def shelved(self) -> bool:
        return self.shelved_by is not None

    @property
    def standing(self) -> bool:
        """Active, or cleared but not yet acknowledged: an operator has something to do."""
        return self.active or not self.acked

    @property
    def status(self) -> str:
        if self.active:
            return "active, acknowledged" if self.acked else "active, unacknowledged"
        return "cleared, unacknowledged" if not self.acked else "normal"


def fold(
    records: Iterable[AlarmRecord], states: dict[str, AlarmState] | None = None
) -> dict[str, AlarmState]:
    """The alarms' states after ``records`` (in log order), on top of ``states``."""
    out = states if states is not None else {}
    for r in records:
        state = out.get(r.key)
        if r.action == "raise":
            new_occurrence = state is None or not state.active
            if state is None:
                state = out[r.key] = AlarmState(r.key, r.severity, r.message, True, r.time_s)
            state.severity, state.message, state.active = r.severity, r.message, True
            state.acked_by = state.acked_s = None  # a new occurrence, or a worse one
            if new_occurrence:
                state.raised_s, state.cleared_s = r.time_s, None
        elif state is None:
            continue  # an ack or shelf of an alarm this log never raised
        elif r.action == "clear":
            state.active, state.cleared_s = False, r.time_s
        elif r.action == "ack":
            state.acked_by, state.acked_s = r.actor, r.time_s
        elif r.action == "shelve":
            state.shelved_by, state.shelved_until_s = r.actor, r.until_s
            state.shelve_reason = r.message
        elif r.action == "unshelve":
            state.shelved_by = state.shelved_until_s = None
            state.shelve_reason = ""
    return out


def event_alarm(event: Event) -> tuple[str, str] | None:
    """(key, severity) when ``event`` is an alarm; None when it is only an event."""
    if event.kind == "shield":
        reasons = {m["reason"] for m in _SHIELD_REASON.finditer(event.message)}
        forbidden = sorted(reasons & SHIELD_ALARM_REASONS)
        return (f"shield:{forbidden[0]}", "low") if forbidden else None
    severity = EVENT_SEVERITY.get(event.kind)
    return None if severity is None else (f"{event.source}:{event.kind}", severity)


@dataclass
class _Pass:
    """The records one evaluation writes, applied to the states as they are made."""

    states: dict[str, AlarmState]
    wall_s: float
    records: list[AlarmRecord] = field(default_factory=list)
    events: list[Event] = field(default_factory=list)
    """The events read (oldest first)."""

    def add(self, time_s: float, key: str, action: str, severity: str, message: str) -> None:
        record = AlarmRecord(time_s, key, action, severity, message, ENGINE, self.wall_s)
        self.records.append(record)
        fold([record], self.states)

    def raise_(self, time_s: float, key: str, severity: str, message: str) -> None:
        state = self.states.get(key)
        worse = state is not None and severity_rank(severity) < severity_rank(state.severity)
        if state is None or not state.active or worse:
            self.add(time_s, key, "raise", severity, message)

    def clear(self, time_s: float, key: str, message: str) -> None:
        state = self.states.get(key)
        if state is not None and state.active:
            self.add(time_s, key, "clear", state.severity, message)


def alarm_states(store: HistorianStore) -> tuple[dict[str, AlarmState], int]:
    """Every alarm the log of ``store`` knows, by key, and the number of records folded (for
    ``add_alarm_records(..., expect_rows=)``)."""
    log = store.alarm_records()
    return fold(log), len(log)


class AlarmEngine:
    """Evaluates the alarms on a historian (module docstring): the live service's, one
    evaluation at a time."""

    def __init__(self, config: AlarmConfig, wall: Callable[[], float]) -> None:
        self.config = config
        self._wall = wall
        self._lock = threading.Lock()
        self._until_s: float | None = None
        """Readings and events up to this time were evaluated."""
        self._resumed = False
        """Whether ``_until_s`` was taken from the log (at the first evaluation)."""
        self._seen_events: set[Event] = set()
        """Events at ``_until_s`` already turned into alarms (the boundary is inclusive)."""
        self._raised_at_until: set[str] = set()
        """Alarms the log raised at ``_until_s`` when it was first read (a restart)."""

    def _resume(self, log: Sequence[AlarmRecord]) -> None:
        """Where an earlier evaluator (a restart) left off: its newest record."""
        engine_times = [r.time_s for r in log if r.actor == ENGINE]
        self._until_s = max(engine_times) if engine_times else None
        # Events at that second already raised their alarm before the restart.
        self._raised_at_until = {
            r.key for r in log if r.action == "raise" and r.time_s == self._until_s
        }
        self._resumed = True

    def evaluate(
        self, store: HistorianStore, latest: Mapping[str, Reading], *, feed_silent_s: float
    ) -> list[AlarmRecord]:
        """Raise and clear what the readings and events since the last evaluation say, end
        the shelves that ran out, on the log as it is now (operators' answers included); the
        records appended to the log."""
        if not latest:
            return []
        with self._lock:
            for _ in range(MAX_TRIES):
                log = store.alarm_records()
                if not self._resumed:
                    self._resume(log)
                run, newest_s, since_s = self._pass(store, fold(log), latest, feed_silent_s)
                try:
                    store.add_alarm_records(run.records, expect_rows=len(log))
                except AlarmLogChangedError as exc:  # an operator answered meanwhile
                    logger.info("alarms: evaluating again: %s", exc)
                    continue
                for record in run.records:
                    if record.action in ("raise", "clear"):
                        logger.info("alarm %s %s: %s", record.key, record.action, record.message)
                self._until_s = max(newest_s, since_s)
                if run.events:
                    last = run.events[-1].time_s
                    self._seen_events = {e for e in run.events if e.time_s == last}
                return run.records
            raise AlarmLogChangedError(
                f"the alarm log changed under {MAX_TRIES} evaluations in a row; evaluating later"
            )

    def _pass(
        self,
        store: HistorianStore,
        states: dict[str, AlarmState],
        latest: Mapping[str, Reading],
        feed_silent_s: float,
    ) -> tuple[_Pass, float, float]:
        """One evaluation on ``states`` (the log as read): (its records, the newest reading's
        time, the time it evaluated from)."""
        newest_s = max(r.time_s for r in latest.values())
        since_s = self._until_s if self._until_s is not None else newest_s - self.config.look_back_s
        run = _Pass(states, self._wall())
        self._inlets(store, latest, since_s, run)
        self._events(store, since_s, run)
        self._stale(latest, newest_s, run)
        self._feed(newest_s, feed_silent_s, run)
        for key, state in list(states.items()):
            if state.shelved_until_s is not None and state.shelved_until_s <= newest_s:
                run.add(newest_s, key, "unshelve", state.severity, "the shelf ran out")
        return run, newest_s, since_s

    # ------------------------------------------------------------------ conditions
    def _inlets(
        self, store: HistorianStore, latest: Mapping[str, Reading], since_s: float, run: _Pass
    ) -> None:
        cfg = self.config
        inlets = rack_inlets(latest)
        if not inlets:
            return
        frame = store.series(inlets, since_s=since_s)
        frame = frame[frame.index > since_s] if self._until_s is not None else frame
        for point in inlets:
            key = f"inlet:{point}"
            column = frame[point].dropna()
            for t, v in zip(
                column.index.to_numpy(float).tolist(), column.to_numpy(float).tolist(), strict=True
            ):
                state = run.states.get(key)
                active = state is not None and state.active
                if v > cfg.inlet_critical_c:
                    run.raise_(
                        t,
                        key,
                        "critical",
                        f"{point} at {v:.1f} °C (above {cfg.inlet_critical_c:g} °C)",
                    )
                elif v > cfg.inlet_high_c and not active:
                    run.raise_(
                        t, key, "high", f"{point} at {v:.1f} °C (above {cfg.inlet_high_c:g} °C)"
                    )
                elif active and v < cfg.inlet_high_c - cfg.inlet_deadband_k:
                    run.clear(t, key, f"{point} back to {v:.1f} °C")

    def _events(self, store: HistorianStore, since_s: float, run: _Pass) -> None:
        # Newest first from the store (by time, then as written): oldest first here.
        events = run.events = list(reversed(store.events(limit=-1, since_s=since_s)))
        for event in events:
            if event.time_s == since_s and event in self._seen_events:
                continue
            alarm = event_alarm(event)
            if alarm is not None:
                key, severity = alarm
                if event.time_s == since_s and key in self._raised_at_until:
                    continue
                message = f"{event.kind}: {event.message}"
                state = run.states.get(key)
                if state is not None and state.active:
                    run.add(event.time_s, key, "clear", state.severity, "superseded")
                run.add(event.time_s, key, "raise", severity, message)
                run.add(event.time_s, key, "clear", severity, "momentary (an event)")

    def _stale(self, latest: Mapping[str, Reading], newest_s: float, run: _Pass) -> None:
        limit = self.config.stale_after_s
        for point, reading in latest.items():
            if not can_go_stale(point):
                continue
            key = f"stale:{point}"
            lag = newest_s - reading.time_s
            if reading.quality != "good":
                run.raise_(newest_s, key, "medium", f"{point}: newest reading is {reading.quality}")
            elif lag > limit:
                run.raise_(newest_s, key, "medium", f"{point}: no reading for {lag:,.0f} s")
            elif lag < limit / 2.0:
                run.clear(newest_s, key, f"{point}: fresh again")

    def _feed(self, newest_s: float, silent_s: float, run: _Pass) -> None:
        limit = self.config.feed_silent_after_s
        if silent_s >= limit:
            message = f"no new readings for {silent_s:,.0f} s: ingestion or the BMS link is down"
            run.raise_(newest_s, "feed", "critical", message)
        elif math.isfinite(silent_s):
            run.clear(newest_s, "feed", "readings arrive again")


class FeedWatch:
    """How long (wall clock) the newest site reading has not moved on: a feed that stops
    leaves every point equally old, which no point-by-point comparison can see."""

    def __init__(self) -> None:
        self._newest_s: float | None = None
        self._since_s = 0.0
        self._lock = threading.Lock()

    def observe(self, newest_s: float, now_s: float) -> float:
        """Seconds since ``newest_s`` last changed: 0 when it just did, NaN on first sight
        (unknown: a service restarted during an outage neither clears nor raises the feed
        alarm until it has watched for itself)."""
        with self._lock:
            if self._newest_s is None:
                self._newest_s, self._since_s = newest_s, now_s
                return math.nan
            if newest_s > self._newest_s:
                self._newest_s, self._since_s = newest_s, now_s
            return max(0.0, now_s - self._since_s)


def standing(states: Mapping[str, AlarmState]) -> list[AlarmState]:
    """Alarms an operator has to see (active or unacknowledged, not shelved): most severe,
    then newest, first."""
    shown = [s for s in states.values() if s.standing and not s.shelved]
    return sorted(shown, key=lambda s: (severity_rank(s.severity), -s.raised_s, s.key))
