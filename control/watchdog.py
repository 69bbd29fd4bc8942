"""The live loop's watchdog: decides, every control period, whether the controller may act.

It trips on

* **stale data** — a key point missing, of bad quality, flagged stale by ingestion (a
  sequence gap) or older than ``stale_after_s`` of plant time; too few rack-inlet points
  fresh; or no snapshot at all;
* **controller errors** — the policy raised or answered with the wrong shape;
* **twin–plant divergence** — the twin's forecast of the hottest rack inlet off the
  measurement by more than ``divergence_c`` for ``divergence_periods`` periods in a row;
* **inlet breach** — the hottest fresh rack inlet above ``inlet_trip_c``.

A trip hands control back to the site's built-in control: the live controller stops
writing, and since every command expires one control period after it was issued, the site's
own setpoints are back within one period. The controller also rolls the live policy back in
the reservoir under the actor ``watchdog``. The watchdog itself is pure bookkeeping (no I/O),
so every rule is testable on its own.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal, Protocol

TripKind = Literal["stale_data", "controller_error", "divergence", "inlet_breach"]

KEY_POINTS: tuple[str, ...] = (
    "supply_air_c",
    "return_air_c",
    "chw_supply_c",
    "cw_supply_c",
    "facility_power_kw",
    "outdoor_wet_bulb_c",
)
INLET_PREFIX = "rack_inlet_c."


class Sample(Protocol):
    """What the watchdog needs of one point (``connectors.ingestion.PointState`` has it)."""

    @property
    def value(self) -> float: ...
    @property
    def ts(self) -> float: ...
    @property
    def quality(self) -> str: ...
    @property
    def stale(self) -> bool: ...


@dataclass(frozen=True)
class WatchdogConfig:
    """Thresholds of the trip rules (plant seconds, °C)."""

    stale_after_s: float = 180.0
    """A key point older than this (plant time) is stale: three 60 s sensor samples missed."""
    key_points: tuple[str, ...] = KEY_POINTS
    min_fresh_inlet_fraction: float = 0.8
    inlet_trip_c: float = 30.0
    """Between ASHRAE's recommended (27 °C) and allowable (A1: 32 °C) limits."""
    divergence_c: float = 2.0
    divergence_periods: int = 3

    def __post_init__(self) -> None:
        if not (math.isfinite(self.stale_after_s) and self.stale_after_s > 0):
            raise ValueError("WatchdogConfig.stale_after_s must be a positive number of seconds")
        if not 0.0 <= self.min_fresh_inlet_fraction <= 1.0:
            raise ValueError("WatchdogConfig.min_fresh_inlet_fraction must lie in [0, 1]")
        if not 15.0 <= self.inlet_trip_c <= 45.0:
            raise ValueError("WatchdogConfig.inlet_trip_c must lie in 15–45 °C")
        if not (math.isfinite(self.divergence_c) and self.divergence_c > 0):
            raise ValueError("WatchdogConfig.divergence_c must be a positive number")
        if self.divergence_periods < 1:
            raise ValueError("WatchdogConfig.divergence_periods must be at least 1")


@dataclass(frozen=True)
class Trip:
    """Why the watchdog took control away, at plant time ``time_s``."""

    time_s: float
    kind: TripKind
    message: str


@dataclass(frozen=True)
class Freshness:
    """The data check of one snapshot: ``ok`` or the reason it is not."""

    ok: bool
    reason: str
    hottest_inlet_c: float
    """Hottest fresh, good rack inlet (NaN if none)."""
    fresh_inlets: int
    inlets: int


def _fresh(sample: Sample | None, now_s: float, stale_after_s: float) -> bool:
    return (
        sample is not None
        and sample.quality == "good"
        and not sample.stale
        and math.isfinite(sample.value)
        and now_s - sample.ts <= stale_after_s
    )


class Watchdog:
    """The trip rules over successive control periods (see the module docstring)."""

    def __init__(self, config: WatchdogConfig | None = None) -> None:
        self.config = config or WatchdogConfig()
        self._diverged_periods = 0

    def freshness(self, snapshot: Mapping[str, Sample] | None, now_s: float) -> Freshness:
        """Whether ``snapshot`` is fresh enough to act on at plant time ``now_s``."""
        cfg = self.config
        if not snapshot:
            return Freshness(False, "no sensor data", math.nan, 0, 0)
        inlets = [name for name in snapshot if name.startswith(INLET_PREFIX)]
        fresh = [n for n in inlets if _fresh(snapshot[n], now_s, cfg.stale_after_s)]
        hottest = max((snapshot[n].value for n in fresh), default=math.nan)
        stale = [n for n in cfg.key_points if not _fresh(snapshot.get(n), now_s, cfg.stale_after_s)]
        if stale:
            shown = ", ".join(stale[:4]) + (" …" if len(stale) > 4 else "")
            ages = [now_s - s.ts for n in stale if (s := snapshot.get(n)) is not None]
            age = f" (oldest {max(ages):.0f} s)" if ages else ""
            return Freshness(
                False, f"stale key point(s) {shown}{age}", hottest, len(fresh), len(inlets)
            )
        if not inlets or len(fresh) < cfg.min_fresh_inlet_fraction * len(inlets):
            return Freshness(
                False,
                f"only {len(fresh)} of {len(inlets)} rack inlets fresh",
                hottest,
                len(fresh),
                len(inlets),
            )
        return Freshness(True, "", hottest, len(fresh), len(inlets))

    def check(
        self,
        now_s: float,
        freshness: Freshness,
        *,
        predicted_inlet_c: float | None = None,
    ) -> Trip | None:
        """The trip for this period's data, if any. ``predicted_inlet_c`` is the twin's
        forecast of the hottest inlet now (made one period ago), when a twin runs."""
        cfg = self.config
        if not freshness.ok:
            return Trip(now_s, "stale_data", freshness.reason)
        hottest = freshness.hottest_inlet_c
        if hottest > cfg.inlet_trip_c:
            return Trip(
                now_s,
                "inlet_breach",
                f"hottest rack inlet {hottest:.2f} °C above the trip limit {cfg.inlet_trip_c:g} °C",
            )
        if predicted_inlet_c is not None and math.isfinite(predicted_inlet_c):
            error = abs(predicted_inlet_c - hottest)
            self._diverged_periods = self._diverged_periods + 1 if error > cfg.divergence_c else 0
            if self._diverged_periods >= cfg.divergence_periods:
                self._diverged_periods = 0
                return Trip(
                    now_s,
                    "divergence",
                    f"twin off the hottest inlet by {error:.2f} °C (> {cfg.divergence_c:g} °C) "
                    f"for {cfg.divergence_periods} periods",
                )
        return None

    def controller_error(self, now_s: float, error: BaseException) -> Trip:
        """The trip for a policy that raised (or answered nonsense)."""
        return Trip(now_s, "controller_error", f"{type(error).__name__}: {error}")

    def reset(self) -> None:
        self._diverged_periods = 0
