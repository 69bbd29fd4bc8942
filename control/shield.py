"""The safety shield: every setpoint a policy proposes is projected into the site envelope
before anything is written.

Per field the shield enforces, in this order of precedence:

1. the allow-list: only the configured subset of
   :data:`~physics.plant.site_control.SETPOINT_FIELDS` is ever written; any other name (an
   unknown point, a field the site keeps for itself) is refused and reported;
2. the envelope: ASHRAE-minded bounds narrowed to the equipment's
   :class:`~physics.plant.site.SetpointLimits` (always wins);
3. a rate limit per control period (one :meth:`Shield.project` call) relative to the last
   value written;
4. a rate limit per hour: over any window of ``window_s`` (default one hour) a move away
   from the window's lowest (highest) value is at most ``max_per_hour`` up (down);

the rate limits pace moves *away* from the site's own setpoint (the reference); a move back
towards it, up to it, is never held back (that is where a rollback lands anyway, and a policy
that must cool fast when the load rises may not be slowed: measured offline, the MPC behind
symmetric limits overshot 27 °C);
5. the economiser switches at most once per ``economiser_min_dwell_s``.

A value that is not finite (NaN, ±Inf) holds the last safe value (``invalid="hold"``) or is
left out so the site's own control supplies it (``invalid="drop"``). The shield is pure until
:meth:`Shield.commit` records what was actually delivered, so an undelivered command never
moves the reference the rate limits are measured from. Every change the shield made is
returned as an :class:`Intervention` for the log.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass, field, fields, replace
from typing import Any, Literal

import numpy as np
from numpy.typing import ArrayLike

from physics.plant.site import SetpointLimits, SiteDefaults
from physics.plant.site_control import SETPOINT_FIELDS, site_setpoints
from twin.spaces import ActionScale

InvalidHandling = Literal["hold", "drop"]
Reason = Literal["not_allowed", "invalid", "envelope", "step", "hour", "dwell"]

CONTINUOUS_FIELDS: tuple[str, ...] = SETPOINT_FIELDS[:4]
"""Fields with a range and rate limits; the last field (economiser) is on/off."""
ECONOMISER = "economiser_enable"


@dataclass(frozen=True)
class ShieldConfig:
    """Envelope and rate limits of one site (defaults: ASHRAE-minded, conservative)."""

    supply_air_c: tuple[float, float] = (18.0, 27.0)
    """Supply air never below the recommended inlet minimum nor above its maximum."""
    fan_speed_frac: tuple[float, float] = (0.3, 1.0)
    chw_supply_c: tuple[float, float] = (5.5, 16.0)
    cw_supply_c: tuple[float, float] = (10.0, 35.0)
    supply_air_step_k: float = 0.5
    supply_air_per_hour_k: float = 2.0
    fan_speed_step_frac: float = 0.1
    fan_speed_per_hour_frac: float = 0.4
    chw_supply_step_k: float = 0.5
    chw_supply_per_hour_k: float = 2.0
    cw_supply_step_k: float = 1.0
    cw_supply_per_hour_k: float = 4.0
    economiser_min_dwell_s: float = 1_800.0
    window_s: float = 3_600.0
    """The window of the per-hour limits."""
    allowed: tuple[str, ...] = SETPOINT_FIELDS
    """The points the controller may write."""
    invalid: InvalidHandling = "hold"

    def __post_init__(self) -> None:
        for name in CONTINUOUS_FIELDS:
            low, high = getattr(self, name)
            if not (math.isfinite(low) and math.isfinite(high) and low < high):
                raise ValueError(f"ShieldConfig.{name}: need finite low < high, got {low, high}")
        for f in fields(self):
            if f.name.endswith(("_k", "_frac", "_s")) and f.name not in CONTINUOUS_FIELDS:
                value = getattr(self, f.name)
                if not (isinstance(value, int | float) and math.isfinite(value) and value >= 0):
                    raise ValueError(f"ShieldConfig.{f.name} must be a finite number >= 0")
        if self.window_s <= 0:
            raise ValueError("ShieldConfig.window_s must be positive")
        unknown = sorted(set(self.allowed) - set(SETPOINT_FIELDS))
        if unknown:
            raise ValueError(
                f"ShieldConfig.allowed: unknown setpoint(s) {', '.join(unknown)} "
                f"(known: {', '.join(SETPOINT_FIELDS)})"
            )
        if self.invalid not in ("hold", "drop"):
            raise ValueError(f"ShieldConfig.invalid must be 'hold' or 'drop', not {self.invalid!r}")

    def within(self, limits: SetpointLimits) -> ShieldConfig:
        """This configuration with each range narrowed to the equipment's limits."""
        narrowed: dict[str, Any] = {}
        for name in CONTINUOUS_FIELDS:
            low, high = getattr(self, name)
            lim_low, lim_high = getattr(limits, name)
            if max(low, lim_low) >= min(high, lim_high):
                raise ValueError(
                    f"ShieldConfig.{name} {low, high} does not overlap the equipment's "
                    f"limits {lim_low, lim_high}"
                )
            narrowed[name] = (max(low, lim_low), min(high, lim_high))
        return replace(self, **narrowed)

    def step_limit(self, name: str) -> float:
        return float(getattr(self, _RATE_NAMES[name][0]))

    def hour_limit(self, name: str) -> float:
        return float(getattr(self, _RATE_NAMES[name][1]))

    def envelope(self, name: str) -> tuple[float, float]:
        """(low, high) of a field; (0, 1) for the economiser."""
        if name == ECONOMISER:
            return (0.0, 1.0)
        low, high = getattr(self, name)
        return float(low), float(high)


_RATE_NAMES: dict[str, tuple[str, str]] = {
    "supply_air_c": ("supply_air_step_k", "supply_air_per_hour_k"),
    "fan_speed_frac": ("fan_speed_step_frac", "fan_speed_per_hour_frac"),
    "chw_supply_c": ("chw_supply_step_k", "chw_supply_per_hour_k"),
    "cw_supply_c": ("cw_supply_step_k", "cw_supply_per_hour_k"),
}


@dataclass(frozen=True)
class Intervention:
    """One change the shield made: what was proposed, what goes out (None: nothing)."""

    field: str
    proposed: float
    applied: float | None
    reason: Reason

    def describe(self) -> str:
        out = "not written" if self.applied is None else f"{self.applied:.4g}"
        return f"{self.field}: {self.proposed!r} -> {out} ({self.reason})"


@dataclass(frozen=True)
class ShieldResult:
    """The projected command: the fields to write and every intervention."""

    time_s: float
    fields: Mapping[str, float]
    interventions: tuple[Intervention, ...] = ()

    @property
    def intervened(self) -> bool:
        return bool(self.interventions)

    def summary(self) -> str:
        return "; ".join(i.describe() for i in self.interventions)


def site_reference(
    defaults: SiteDefaults | None = None, wet_bulb_c: float = 25.0
) -> dict[str, float]:
    """The site's own setpoints (what runs before the controller writes, and after)."""
    sp = site_setpoints(defaults or SiteDefaults(), np.array([wet_bulb_c]))
    return {name: float(getattr(sp, name)[0]) for name in SETPOINT_FIELDS}


@dataclass
class _Track:
    """What was written to one field: the last value and the window of recent writes."""

    last: float
    last_change_s: float
    window: deque[tuple[float, float]] = field(default_factory=deque)


class Shield:
    """Projects proposed setpoints into the envelope (see the module docstring)."""

    def __init__(
        self,
        config: ShieldConfig | None = None,
        *,
        reference: Mapping[str, float] | None = None,
        time_s: float = 0.0,
    ) -> None:
        self.config = config or ShieldConfig()
        cfg = self.config
        self._limits: dict[str, tuple[float, float, float, float]] = {
            name: (*cfg.envelope(name), cfg.step_limit(name), cfg.hour_limit(name))
            for name in CONTINUOUS_FIELDS
        }
        self._allowed = frozenset(cfg.allowed)
        self._tracks: dict[str, _Track] = {}
        self._last_time_s = -math.inf
        self.reset(reference or site_reference(), time_s)

    # ------------------------------------------------------------------ state
    def reset(self, reference: Mapping[str, float], time_s: float) -> None:
        """Start again from the site's own setpoints ``reference`` (e.g. after control was
        handed back to the site); its values are taken as written at ``time_s``."""
        missing = [name for name in SETPOINT_FIELDS if name not in reference]
        if missing:
            raise ValueError(f"shield reference lacks {', '.join(missing)}")
        self._tracks = {}
        self._reference: dict[str, float] = {}
        for name in SETPOINT_FIELDS:
            value = float(reference[name])
            if not math.isfinite(value):
                raise ValueError(f"shield reference {name} is not finite: {value}")
            low, high = self.config.envelope(name)
            value = min(max(value, low), high)
            if name == ECONOMISER:
                value = 1.0 if value >= 0.5 else 0.0
            self._reference[name] = value
            # The reference counts as a change long ago: the economiser may switch at once.
            self._tracks[name] = _Track(value, -math.inf, deque([(time_s, value)]))
        self._last_time_s = time_s

    def last(self, name: str) -> float:
        """The last value written to (or assumed for) a field."""
        return self._tracks[name].last

    def commit(self, result: ShieldResult, reference: Mapping[str, float] | None = None) -> None:
        """Record a projected command as delivered. Fields it left out fall back to the site
        (``reference``, default: the values assumed at the last reset) from now on; the rate
        limits of such a field start again from the site's value."""
        if result.time_s < self._last_time_s:
            raise ValueError(
                f"shield: command at {result.time_s} s is older than the last "
                f"({self._last_time_s} s)"
            )
        fallback = {**self._reference, **(reference or {})}
        for name, track in self._tracks.items():
            if name in result.fields:
                value = float(result.fields[name])
            else:
                # Not written: the site's own control supplies the field from now on, and the
                # rate limits start again from its value (the shield cannot pace the site).
                low, high = self.config.envelope(name)
                value = min(max(float(fallback[name]), low), high)
                if value != track.last:
                    track.window.clear()
            if value != track.last:
                track.last_change_s = result.time_s
            track.last = value
            track.window.append((result.time_s, value))
        self._last_time_s = result.time_s

    # ------------------------------------------------------------------ projection
    def project(self, proposed: Mapping[str, float], time_s: float) -> ShieldResult:
        """The command to write for ``proposed`` setpoints at ``time_s`` (no state change)."""
        if not math.isfinite(time_s) or time_s < self._last_time_s:
            raise ValueError(
                f"shield: time {time_s} s is not after the last command ({self._last_time_s} s)"
            )
        out: dict[str, float] = {}
        notes: list[Intervention] = []
        for name, raw in proposed.items():
            value = _as_float(raw)
            if name not in self._allowed:
                notes.append(Intervention(str(name), value, None, "not_allowed"))
                continue
            track = self._tracks[name]
            if not math.isfinite(value):
                if self.config.invalid == "hold":
                    out[name] = track.last
                    notes.append(Intervention(name, value, track.last, "invalid"))
                else:
                    notes.append(Intervention(name, value, None, "invalid"))
                continue
            if name == ECONOMISER:
                applied, reason = self._economiser(track, value, time_s)
            else:
                applied, reason = self._continuous(name, track, value, time_s)
            out[name] = applied
            if reason is not None:
                notes.append(Intervention(name, value, applied, reason))
        return ShieldResult(time_s, out, tuple(notes))

    def project_action(self, action: ArrayLike, scale: ActionScale, time_s: float) -> ShieldResult:
        """:meth:`project` for a policy's scaled action (5,); a component that is not finite
        stays not finite (it is not silently read as 0 or as economiser off)."""
        a = np.asarray(action, dtype=np.float64).reshape(-1)
        if a.shape != (len(SETPOINT_FIELDS),):
            raise ValueError(f"an action has {len(SETPOINT_FIELDS)} components, got {a.shape}")
        finite = np.isfinite(a)
        setpoints = scale.to_setpoints(np.where(finite, a, 0.0))
        setpoints = np.where(finite, setpoints, np.nan)
        return self.project(dict(zip(SETPOINT_FIELDS, setpoints.tolist(), strict=True)), time_s)

    def _economiser(
        self, track: _Track, value: float, time_s: float
    ) -> tuple[float, Reason | None]:
        on = 1.0 if value >= 0.5 else 0.0
        if on != track.last and time_s - track.last_change_s < self.config.economiser_min_dwell_s:
            return track.last, "dwell"
        return on, None if value == on else "envelope"

    def _continuous(
        self, name: str, track: _Track, value: float, time_s: float
    ) -> tuple[float, Reason | None]:
        env_low, env_high, step, hour = self._limits[name]
        window = track.window
        while window and window[0][0] < time_s - self.config.window_s:
            window.popleft()
        if window:
            seen_max = max(v for _, v in window)
            seen_min = min(v for _, v in window)
        else:
            seen_max = seen_min = track.last
        bounds: list[tuple[float, float, Reason]] = [
            (env_low, env_high, "envelope"),
            (track.last - step, track.last + step, "step"),
            (seen_max - hour, seen_min + hour, "hour"),
        ]
        low, high = -math.inf, math.inf
        for b_low, b_high, _ in bounds:
            low, high = max(low, b_low), min(high, b_high)
        if low > high:  # cannot happen from a consistent history; the envelope wins
            low, high = env_low, env_high
            value = track.last
        # Rate limits pace moves away from the site's own setpoint, never the way back to
        # it: the site's setpoint is where a rollback lands in one period anyway, and a
        # policy that must cool fast (load rising, a coil fouling) may not be held back.
        reference = min(max(self._reference[name], env_low), env_high)
        if reference < track.last:
            low = min(low, reference)
        elif reference > track.last:
            high = max(high, reference)
        applied = min(max(value, low), high)
        if applied == value:
            return applied, None
        if not env_low <= value <= env_high:
            return applied, "envelope"
        # Otherwise the bound that binds names the reason.
        edge = 1 if value > applied else 0
        for bound in bounds[1:]:
            if bound[edge] == applied:
                return applied, bound[2]
        return applied, "envelope"


def _as_float(value: object) -> float:
    try:
        return float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError, OverflowError):
        return math.nan
