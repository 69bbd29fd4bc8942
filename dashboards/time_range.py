"""The time range of a trend page: a preset (the last 1 h, 6 h, 24 h, 7 d, or everything)
or an absolute range typed in the site's local date and time, as the charts' axes show it.

Presets end at the newest reading of the page's data (a plant clock's "now" is its newest
reading, not the wall clock). :func:`resolve` turns the operator's choice into historian times
or refuses it with a :class:`TimeRangeError` that says what is wrong, for the page to show.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import pandas as pd
from dash import Dash, Input, Output, State, callback_context, dcc, html, no_update
from dash.development.base_component import Component

from connectors.historian import HistorianStore
from dashboards.figures import MAX_POINTS, notice
from dashboards.site_time import SiteClock, SiteClockError
from twinloop.errors import TwinLoopError

logger = logging.getLogger(__name__)

ABSOLUTE = "absolute"
ALL = "all"
PRESETS: tuple[tuple[str, str, float | None], ...] = (
    ("1h", "last 1 h", 1.0),
    ("6h", "last 6 h", 6.0),
    ("24h", "last 24 h", 24.0),
    ("7d", "last 7 d", 168.0),
    (ALL, "all", None),
)
"""(value, label, hours back from the newest reading; None: from the oldest)."""
_HOURS = {value: hours for value, _, hours in PRESETS}
INPUT_FORMAT = "YYYY-MM-DD HH:MM"
_INPUT_STYLE = {"width": "240px", "margin": "0"}


class TimeRangeError(TwinLoopError, ValueError):
    """A range the page cannot show; the message says why, in the operator's terms."""


@dataclass(frozen=True)
class TimeRange:
    """Historian times [since_s, until_s] (since_s None: from the oldest reading)."""

    since_s: float | None
    until_s: float
    label: str

    def start_or(self, oldest_s: float) -> float:
        return oldest_s if self.since_s is None else self.since_s


def parse_local(text: str | None, clock: SiteClock, what: str) -> float:
    """The historian time of ``text``, a site-local date and time such as
    ``2026-07-03 14:05`` (seconds optional; a stated offset is converted to the site's zone)."""
    cleaned = (text or "").strip()
    if not cleaned:
        raise TimeRangeError(f"the {what} is empty: type a date and time ({INPUT_FORMAT})")
    try:
        stamp: Any = pd.Timestamp(cleaned)
    except (ValueError, TypeError, OverflowError):
        stamp = None
    if stamp is None or pd.isna(stamp):
        raise TimeRangeError(
            f"the {what} {cleaned!r} is not a date and time: type it as {INPUT_FORMAT}"
        )
    try:
        return clock.historian_time(stamp.to_pydatetime())
    except (SiteClockError, ValueError, OverflowError) as exc:
        raise TimeRangeError(f"the {what} {cleaned!r} cannot be used: {exc}") from None


def resolve(
    choice: str | float | None,
    start: str | None,
    end: str | None,
    *,
    clock: SiteClock,
    newest_s: float,
) -> TimeRange:
    """The range the operator chose: a preset value of :data:`PRESETS` (or a number of hours),
    or :data:`ABSOLUTE` with ``start`` and ``end`` typed in site-local time."""
    if choice == ABSOLUTE:
        since_s = parse_local(start, clock, "start")
        until_s = parse_local(end, clock, "end")
        if until_s <= since_s:
            raise TimeRangeError(
                f"the end ({clock.text(until_s)}) is not after the start ({clock.text(since_s)})"
            )
        return TimeRange(since_s, until_s, f"{clock.text(since_s)} to {clock.text(until_s)}")
    if choice is None or choice == "":
        choice = PRESETS[1][0]
    if isinstance(choice, str) and choice in _HOURS:
        hours = _HOURS[choice]
        label = dict((v, lab) for v, lab, _ in PRESETS)[choice]
    else:
        try:
            hours = float(choice)
        except (TypeError, ValueError):
            known = ", ".join([v for v, _, _ in PRESETS] + [ABSOLUTE])
            raise TimeRangeError(f"unknown time range {choice!r} (one of {known})") from None
        if not (math.isfinite(hours) and hours > 0):
            raise TimeRangeError(f"a time range needs a positive number of hours, got {choice}")
        label = f"last {hours:g} h"
    since = None if hours is None else newest_s - hours * 3600.0
    return TimeRange(since, newest_s, label)


def range_key(choice: Any, start: str | None, end: str | None) -> str:
    """One string per chosen range: the charts' ``uirevision``, so that a refresh keeps the
    operator's zoom and a new range resets it."""
    if choice == ABSOLUTE:
        return f"{ABSOLUTE}|{(start or '').strip()}|{(end or '').strip()}"
    return str(choice)


def range_controls(
    choice_id: Any,
    start_id: Any,
    end_id: Any,
    message_id: Any,
    *,
    value: str = "6h",
    start: str = "",
    end: str = "",
) -> html.Div:
    """The presets as radio buttons, an absolute range (start, end: site-local, applied on
    Enter or leaving the field) and the line where a range that cannot be used is explained."""
    options: Sequence[dict[str, Any]] = [
        *({"label": label, "value": v} for v, label, _ in PRESETS),
        {"label": "from … to …", "value": ABSOLUTE},
    ]
    return html.Div(
        [
            dcc.RadioItems(
                id=choice_id,
                options=list(options),
                value=value,
                inline=True,
                className="tl-range-presets",
            ),
            dcc.Input(
                id=start_id,
                type="text",
                value=start,
                placeholder=f"from {INPUT_FORMAT}",
                debounce=True,
                className="tl-range-input",
                style=_INPUT_STYLE,
            ),
            dcc.Input(
                id=end_id,
                type="text",
                value=end,
                placeholder=f"to {INPUT_FORMAT}",
                debounce=True,
                className="tl-range-input",
                style=_INPUT_STYLE,
            ),
            html.Span(id=message_id, className="tl-range-message"),
        ],
        className="tl-range",
        style={"display": "flex", "flexWrap": "wrap", "gap": "8px", "alignItems": "center"},
    )


def choose_absolute(start: str | None, end: str | None, current: Any) -> Any:
    """The choice once the operator has typed a range: absolute where both ends are filled
    in, else unchanged (Dash's ``no_update`` is the caller's)."""
    if (start or "").strip() and (end or "").strip():
        return ABSOLUTE
    return current


def set_callbacks(app: Dash, choice_id: Any, start_id: Any, end_id: Any) -> None:
    """Typing both ends of a range selects the absolute range."""

    @app.callback(
        Output(choice_id, "value"),
        Input(start_id, "value"),
        Input(end_id, "value"),
        State(choice_id, "value"),
        prevent_initial_call=True,
    )
    def _absolute(start: str | None, end: str | None, current: Any) -> Any:
        chosen = choose_absolute(start, end, current)
        return no_update if chosen == current else chosen


def series_in(
    historian: HistorianStore,
    points: Sequence[str],
    rng: TimeRange,
    *,
    how: str = "mean",
    max_points: int = MAX_POINTS,
) -> pd.DataFrame:
    """``points`` over ``rng`` for a chart, bounded: at most ``max_points`` (+1) rows however
    long the range, reduced by the historian (:meth:`~connectors.historian.SqlHistorian
    .downsampled`, ``how`` of each time bucket) instead of loaded row by row."""
    return historian.downsampled(
        points, since_s=rng.since_s, until_s=rng.until_s, buckets=max_points, how=how
    )


def chosen(
    choice: str | float | None,
    start: str | None,
    end: str | None,
    *,
    clock: SiteClock,
    newest_s: float,
    default: str,
) -> tuple[TimeRange, Component]:
    """The range the operator chose (:func:`resolve`) and a line saying which it is; a range
    that cannot be used is explained (an error line) and the ``default`` preset shown."""
    try:
        rng = resolve(choice, start, end, clock=clock, newest_s=newest_s)
    except TimeRangeError as exc:
        logger.debug("time range refused: %s", exc)
        rng = resolve(default, None, None, clock=clock, newest_s=newest_s)
        return rng, notice(f"{exc}; showing the {rng.label}", kind="error")
    return rng, html.Span(f"showing {rng.label}", className="tl-range-shown")


def changed(inputs: Sequence[tuple[Any, str]]) -> bool:
    """Whether the running callback was triggered by one of the range controls ``inputs``
    (a page's stored zoom is then being forgotten and must not be applied)."""
    return callback_context.triggered_id in {component for component, _ in inputs}
