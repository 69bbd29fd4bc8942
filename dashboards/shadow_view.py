"""What a policy in shadow would have written beside what the site did, from the historian.

The live loop logs a shadow policy's would-be setpoints as ``shadow.<field>`` every control
period (never written), TwinLoop's written setpoints as ``ctl.<field>``, the plant's
measured setpoints under their sensor names, and the twin's forecast of the coming period
under the command applied (``twin.cooling_power_kw``, ``twin.rack_inlet_max_c``) and under the
shadow's (``twin.shadow.*``; :mod:`control.twin_tracker`). The shadow window is read from
the live loop's events: from ``loaded REF (shadow)`` to the next policy loaded, or a
rollback of REF, or (still in shadow) the newest shadow reading.

"What the site did" at a shadow period is TwinLoop's written setpoint of that period when a
live policy wrote it, else the newest measured value at or before it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import pandas as pd

from connectors.historian import Event, HistorianStore
from control.reservoir import PolicyRecord, Reservoir
from dashboards.points import SETPOINT_MEASURED
from physics.plant.site_control import SETPOINT_FIELDS

SITE_POINTS: dict[str, str] = {f: m[0] for f, m in SETPOINT_MEASURED.items()}
"""Each writable setpoint and the site point that measures it."""
LABELS: dict[str, tuple[str, str]] = {f: (m[1], m[2]) for f, m in SETPOINT_MEASURED.items()}
"""Each writable setpoint's name for an operator and its unit (as the hall names them)."""
FORECASTS: tuple[tuple[str, str, str, str], ...] = (
    ("cooling_power_kw", "cooling power", "kW", "kpi.cooling_power_kw"),
    ("rack_inlet_max_c", "hottest rack inlet", "°C", "kpi.rack_inlet_max_c"),
)
"""(twin output, label, unit, measured point): forecast under the shadow's command
(``twin.shadow.NAME``) and under the command applied (``twin.NAME``)."""
EVENT_LIMIT = 5000
"""The newest events searched first for the window's start (all of them if it is older)."""


@dataclass(frozen=True)
class ShadowWindow:
    """When ``ref`` ran in shadow, on the historian's clock."""

    ref: str
    state: str
    """The policy's state now (shadow while it still runs)."""
    start_s: float
    end_s: float
    ongoing: bool


@dataclass(frozen=True)
class SetpointComparison:
    field: str
    frame: pd.DataFrame
    """Indexed by time: ``candidate`` (shadow.*), ``written`` (ctl.*, NaN where nothing was
    written), ``measured`` (the site point), ``site_did`` (written, else the newest measured)."""

    @property
    def periods(self) -> int:
        return int(self.frame["candidate"].notna().sum())

    def difference(self) -> pd.Series:
        return (self.frame["candidate"] - self.frame["site_did"]).dropna()


@dataclass(frozen=True)
class ForecastComparison:
    name: str
    frame: pd.DataFrame
    """Indexed by time: ``candidate`` (twin.shadow.NAME), ``applied`` (twin.NAME),
    ``measured``."""


def shadow_policy(reservoir: Reservoir) -> PolicyRecord | None:
    """The policy in shadow, else the last one that was (None if none ever was)."""
    shadows = reservoir.list(state="shadow")
    if shadows:
        return shadows[0]
    entered = [
        h for h in reservoir.history() if h.to_state == "shadow" and h.from_state != "shadow"
    ]
    return reservoir.get(entered[-1].policy) if entered else None


def _loaded(event: Event) -> tuple[str, str] | None:
    """(ref, state) of a live-loop ``loaded REF (STATE)`` event."""
    if event.kind != "policy" or not event.message.startswith("loaded "):
        return None
    ref, _, state = event.message[len("loaded ") :].partition(" (")
    return ref, state.rstrip(")")


def shadow_window(historian: HistorianStore, record: PolicyRecord) -> ShadowWindow | None:
    """The last shadow window of ``record`` (module docstring); None if it never ran."""
    events = list(reversed(historian.events(limit=EVENT_LIMIT)))  # oldest first
    starts = [i for i, e in enumerate(events) if _loaded(e) == (record.ref, "shadow")]
    if not starts and len(events) == EVENT_LIMIT:  # further back than the newest events
        events = list(reversed(historian.events(limit=-1)))
        starts = [i for i, e in enumerate(events) if _loaded(e) == (record.ref, "shadow")]
    if not starts:
        return None
    first = starts[-1]
    start_s = events[first].time_s
    for e in events[first + 1 :]:
        loaded = _loaded(e)
        ended = (loaded is not None and (loaded[1] == "shadow" or loaded[0] == record.ref)) or (
            e.kind == "rollback" and record.ref in e.message
        )
        if ended:
            return ShadowWindow(record.ref, record.state, start_s, e.time_s, ongoing=False)
    newest = historian.latest([f"shadow.{f}" for f in SETPOINT_FIELDS])
    end_s = max([start_s, *(r.time_s for r in newest.values())])
    return ShadowWindow(record.ref, record.state, start_s, end_s, ongoing=True)


def compare_setpoints(historian: HistorianStore, window: ShadowWindow) -> list[SetpointComparison]:
    """Per writable setpoint, the candidate's would-be value beside what the site did."""
    out: list[SetpointComparison] = []
    for field in SETPOINT_FIELDS:
        names = [f"shadow.{field}", f"ctl.{field}", SITE_POINTS[field]]
        raw = historian.series(names, since_s=window.start_s, until_s=window.end_s)
        frame = pd.DataFrame(
            {
                "candidate": raw[names[0]],
                "written": raw[names[1]],
                "measured": raw[names[2]],
            },
            index=raw.index,
        )
        measured_before = frame["measured"].ffill()
        frame["site_did"] = frame["written"].fillna(measured_before)
        out.append(SetpointComparison(field, frame))
    return out


def compare_forecasts(historian: HistorianStore, window: ShadowWindow) -> list[ForecastComparison]:
    """The twin's forecast under the candidate's command and under the one applied, with
    what was measured."""
    out: list[ForecastComparison] = []
    for name, _, _, measured in FORECASTS:
        names = [f"twin.shadow.{name}", f"twin.{name}", measured]
        raw = historian.series(names, since_s=window.start_s, until_s=window.end_s)
        frame = pd.DataFrame(
            {"candidate": raw[names[0]], "applied": raw[names[1]], "measured": raw[names[2]]},
            index=raw.index,
        )
        out.append(ForecastComparison(name, frame))
    return out


def mean_or_nan(values: pd.Series) -> float:
    clean = values.dropna()
    return float(clean.mean()) if len(clean) else math.nan
