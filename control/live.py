"""The live controller: one control period at a time, from a sensor snapshot to a setpoint
command behind the shield and the watchdog.

Every period (:meth:`LiveController.step`):

1. follow the reservoir: load the ``live`` and ``shadow`` policies (artifact verified first;
   a tampered or unloadable one is rolled back by the ``watchdog``);
2. take a fresh snapshot of the site's points and check it (:class:`~control.watchdog.Watchdog`);
   build the observation exactly as every TwinLoop environment does
   (:func:`~twin.spaces.build_observation`; stale or bad points count as missing, biased or
   stuck inlet and supply-air sensors are replaced by estimates, :mod:`twin.sensor_check`,
   and reported as ``sensor_fault`` events), with the
   site's forecasts: the weather from the ``forecaster`` (persistence of the measured wet
   bulb by default), the IT power from the site's own history of this loop
   (:class:`~twin.forecast.LoadHistory`, one reading per period, seasonal naive);
3. the shadow policy, if any, computes its action on the live data; what it would write
   (after its own shield) is logged as ``shadow.<field>`` — never written;
4. the live policy, unless the operator's override is active (then nothing is written, ever),
   is checked by the watchdog (stale data, inlet breach) and asked for an action; any trip or
   exception hands control back to the site — nothing more is written, the last command
   expires within one control period — and rolls the policy back in the reservoir. A policy
   that leaves control otherwise (an operator's rollback to the site) is handed back at safe
   rates: the setpoints move towards the site's by the shield's step limits, one period at a
   time, unless an inlet is over its limit (then at once; :mod:`control.hand_back`); each
   start and end is a ``hand_back`` event;
5. the action goes through the :class:`~control.shield.Shield` to the
   :class:`SetpointSink` with an id and an expiry of one control period;
   ``ctl.<field>``, ``kpi.*`` and events (trips, rollbacks, shield interventions, write
   errors, sensor faults) go to the historian;
6. after the write (off the sensor → setpoint path), with a twin given
   (:class:`~control.twin_tracker.TwinTracker`), the period that ended is assimilated and the
   next one forecast (``twin.*``); that forecast is what the watchdog holds against the
   measured hottest inlet one period later (twin–plant divergence).

Everything outside (sensor snapshot, override, sink, historian, policy loading) is passed
in, so the controller runs the same against the real MQTT connectors and in a unit test.
"""

from __future__ import annotations

import logging
import math
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Literal, Protocol

import numpy as np
from numpy.typing import NDArray

from connectors.historian import Event, HistorianStore, Reading
from control import approval, hand_back
from control.policy import Policy
from control.reservoir import PolicyRecord, Reservoir
from control.shield import Shield, ShieldConfig, ShieldResult, site_reference
from control.twin_tracker import TwinTracker
from control.watchdog import Freshness, Sample, Trip, Watchdog, WatchdogConfig
from physics.plant.sensors import point_catalog
from physics.plant.site import SiteConfig, site_variant
from physics.plant.site_control import SETPOINT_FIELDS
from twin.forecast import LoadHistory
from twin.sensor_check import SensorCheckConfig, SensorValidator
from twin.spaces import (
    FORECAST_IT_H,
    ActionScale,
    HallReadings,
    ObservationSpec,
    build_observation,
)

logger = logging.getLogger(__name__)

FloatArray = NDArray[np.float64]
Mode = Literal["site", "live", "override", "tripped", "hand_back"]
WATCHDOG = "watchdog"
SOURCE = "live"
SENSOR_CHECK = "sensor_check"
FIELD_UNITS: Mapping[str, str] = {
    "supply_air_c": "degC",
    "fan_speed_frac": "frac",
    "chw_supply_c": "degC",
    "cw_supply_c": "degC",
    "economiser_enable": "bool",
}


class SetpointSink(Protocol):
    """Where commands go (the connectors' setpoint writer, or a test's recorder). ``write``
    returns once every field was accepted and raises otherwise."""

    def write(
        self,
        command_fields: Mapping[str, float],
        expires_at_s: float,
        *,
        issued_at_s: float,
        command_id: str,
    ) -> None: ...


SnapshotSource = Callable[[], Mapping[str, Sample]]
PolicyLoader = Callable[[PolicyRecord], Policy]
Forecaster = Callable[[float, HallReadings], tuple[float, float]]
"""(hour of year, readings) -> the wet-bulb forecasts in 1 h and 3 h (°C). The IT-power
forecast is the controller's own, from its history (:class:`~twin.forecast.LoadHistory`)."""


def persistence_forecast(time_h: float, hall: HallReadings) -> tuple[float, float]:
    """No weather service: the wet bulb persists."""
    wet_bulb = float(hall.outdoor_wet_bulb_c[0])
    return wet_bulb, wet_bulb


def plant_hour_of_year(now_s: float) -> float:
    """Plant clock: epoch seconds counted from 1 January 00:00 of the weather year."""
    return (now_s / 3600.0) % 8760.0


def unix_hour_of_year(now_s: float) -> float:
    """Wall clock: Unix seconds (UTC) as hour of the year."""
    now = datetime.fromtimestamp(now_s, UTC)
    start = datetime(now.year, 1, 1, tzinfo=UTC)
    return ((now - start).total_seconds() / 3600.0) % 8760.0


@dataclass(frozen=True)
class StepReport:
    """What one control period did."""

    time_s: float
    mode: Mode
    written: Mapping[str, float] = field(default_factory=dict)
    shadow: Mapping[str, float] | None = None
    trip: Trip | None = None
    freshness: Freshness | None = None
    shield: ShieldResult | None = None


@dataclass
class _Slot:
    """A loaded policy and its own shield (the shadow's mimics what it would write)."""

    record: PolicyRecord
    policy: Policy
    shield: Shield
    last_action: FloatArray


class LiveController:
    """Runs the reservoir's live and shadow policies on the site (module docstring)."""

    def __init__(
        self,
        *,
        reservoir: Reservoir,
        snapshot: SnapshotSource,
        sink: SetpointSink,
        historian: HistorianStore,
        loader: PolicyLoader,
        site: SiteConfig | None = None,
        control_period_s: float = 300.0,
        shield: ShieldConfig | None = None,
        watchdog: WatchdogConfig | None = None,
        override: Callable[[], bool] = lambda: False,
        forecaster: Forecaster = persistence_forecast,
        hour_of_year: Callable[[float], float] = unix_hour_of_year,
        twin: TwinTracker | None = None,
        sensor_check: SensorCheckConfig | None = SensorCheckConfig(),  # noqa: B008 (frozen)
        hand_back_inlet_limit_c: float = hand_back.DEFAULT_INLET_LIMIT_C,
    ) -> None:
        if not (math.isfinite(control_period_s) and control_period_s > 0):
            raise ValueError("control_period_s must be a positive number of seconds")
        self.reservoir = reservoir
        self.site = site or site_variant("reference")
        self.period_s = float(control_period_s)
        self.shield_config = (shield or ShieldConfig()).within(self.site.limits)
        self.scale = ActionScale.within(self.site.limits)
        self.spec = ObservationSpec(
            n_pods=self.site.n_pods,
            design_it_kw=self.site.n_racks * self.site.server.max_power_kw,
        )
        self.points = tuple(p.name for p in point_catalog(self.site))
        self.sensor_validator = (
            None
            if sensor_check is None
            else SensorValidator(
                self.points, self.site.n_pods, self.site.racks_per_pod, sensor_check
            )
        )
        """Distrusts biased or stuck inlet and supply-air sensors (:mod:`twin.sensor_check`):
        every policy, the KPIs and the shadow see its substitutes."""
        self.watchdog = Watchdog(watchdog)
        self._snapshot = snapshot
        self._sink = sink
        self._historian = historian
        self._loader = loader
        self._override = override
        self._forecaster = forecaster
        self.load_history = LoadHistory(1, self.period_s / 3600.0)
        """The site's IT power, one reading per period: the IT forecast's only source."""
        self._hour_of_year = hour_of_year
        self.twin = twin
        self._live: _Slot | None = None
        self._shadow: _Slot | None = None
        self.hand_back_inlet_limit_c = float(hand_back_inlet_limit_c)
        self._handing_back: dict[str, float] | None = None
        """The setpoints in force while control goes back to the site (:mod:`control.hand_back`)."""
        self._writing = False
        self._override_active = False
        self._last_time_s = -math.inf
        self._inputs: tuple[Freshness, HallReadings]

    # ------------------------------------------------------------------ policies
    @property
    def live_ref(self) -> str | None:
        return None if self._live is None else self._live.record.ref

    @property
    def shadow_ref(self) -> str | None:
        return None if self._shadow is None else self._shadow.record.ref

    def _sync(self, now_s: float, wet_bulb_c: float) -> None:
        """Load what the reservoir says is live and in shadow; drop what no longer is."""
        live = approval.in_control(self.reservoir)
        shadows = self.reservoir.list(state="shadow")
        self._live = self._follow(self._live, live, now_s, wet_bulb_c)
        self._shadow = self._follow(
            self._shadow, shadows[0] if shadows else None, now_s, wet_bulb_c
        )

    def _follow(
        self, slot: _Slot | None, record: PolicyRecord | None, now_s: float, wet_bulb_c: float
    ) -> _Slot | None:
        if record is None:
            return None
        if slot is not None and slot.record.ref == record.ref:
            return slot
        if not self.reservoir.verify(record.ref):
            self._roll_back(record, now_s, "artifact changed since registration; not loaded")
            return None
        try:
            policy = self._loader(record)
            policy.reset(1)
        except Exception as exc:  # an unloadable policy never runs
            self._roll_back(record, now_s, f"cannot load: {type(exc).__name__}: {exc}")
            return None
        reference = site_reference(self.site.defaults, wet_bulb_c)
        action = self.scale.to_action(np.array([reference[f] for f in SETPOINT_FIELDS]))
        logger.info("live controller: loaded %s (%s)", record.ref, record.state)
        self._event(now_s, "policy", f"loaded {record.ref} ({record.state})")
        return _Slot(
            record,
            policy,
            Shield(self.shield_config, reference=reference, time_s=now_s),
            np.asarray(action, dtype=np.float64),
        )

    def _roll_back(self, record: PolicyRecord, now_s: float, why: str) -> None:
        reason = f"{why} ({record.ref})"
        try:
            approval.rollback_policy(self.reservoir, record.ref, operator=WATCHDOG, reason=reason)
        except approval.ApprovalError as exc:
            logger.error("live controller: could not roll back %s: %s", record.ref, exc)
        self._event(now_s, "rollback", reason, source=WATCHDOG)

    # ------------------------------------------------------------------ one period
    def step(self, now_s: float) -> StepReport:
        """Run one control period at plant time ``now_s`` (see the module docstring)."""
        if not math.isfinite(now_s) or now_s <= self._last_time_s:
            raise ValueError(f"control time must increase: {now_s} after {self._last_time_s}")
        self._last_time_s = now_s
        report = self._decide(now_s)
        # Off the sensor → setpoint path: the shadow, KPIs and the twin come after the write.
        fresh, hall = self._inputs
        report = replace(report, shadow=self._run_shadow(now_s, fresh, hall))
        self._kpis(now_s, hall)
        if self.twin is not None:
            self._track(now_s, report)
        return report

    def _decide(self, now_s: float) -> StepReport:
        try:
            snapshot: Mapping[str, Sample] | None = self._snapshot()
        except Exception:
            logger.exception("live controller: the snapshot source failed")
            snapshot = None
        fresh = self.watchdog.freshness(snapshot, now_s)
        hall = self._hall(snapshot or {}, now_s)
        fresh = _with_checked_inlets(fresh, hall)
        self.load_history.record(hall.it_power_kw[:1])
        wet_bulb = float(hall.outdoor_wet_bulb_c[0])
        previous = self._live if self._writing else None
        self._sync(now_s, wet_bulb if math.isfinite(wet_bulb) else 25.0)
        self._inputs = (fresh, hall)
        override = self._check_override(now_s)
        if self._live is None:
            if previous is not None:  # it left control without a trip: hand back gently
                self._start_hand_back(previous, now_s, wet_bulb)
            if self._handing_back is not None:
                if not override:
                    return self._hand_back(now_s, fresh, hall, wet_bulb)
                self._end_hand_back(now_s, "ended: an operator override holds the points")
            self._writing = False
            return StepReport(now_s, "override" if override else "site", freshness=fresh)
        if self._handing_back is not None:
            self._end_hand_back(now_s, f"ended: {self._live.record.ref} took control")
        if override:
            self._writing = False
            return StepReport(now_s, "override", freshness=fresh)
        slot = self._live
        trip = self.watchdog.check(now_s, fresh, predicted_inlet_c=self._predicted_inlet(now_s))
        action: FloatArray | None = None
        if trip is None:
            try:
                action = self._act(slot, hall, now_s)
            except Exception as exc:
                logger.exception("live controller: %s failed", slot.record.ref)
                trip = self.watchdog.controller_error(now_s, exc)
        if trip is not None or action is None:
            assert trip is not None
            self._trip(slot, trip)
            return StepReport(now_s, "tripped", trip=trip, freshness=fresh)
        if not self._writing:  # taking over from the site: pace from its setpoints
            reference = site_reference(self.site.defaults, wet_bulb)
            slot.shield.reset(reference, now_s)
        result = slot.shield.project_action(action, self.scale, now_s)
        written = self._write(slot, result, now_s)
        return StepReport(now_s, "live", written=written, freshness=fresh, shield=result)

    # ------------------------------------------------------------------ hand-back
    def _site_setpoints(self, wet_bulb_c: float) -> dict[str, float]:
        return site_reference(self.site.defaults, wet_bulb_c if math.isfinite(wet_bulb_c) else 25.0)

    def _start_hand_back(self, slot: _Slot, now_s: float, wet_bulb_c: float) -> None:
        last = {f: slot.shield.last(f) for f in SETPOINT_FIELDS}
        self._handing_back = last
        target = self._site_setpoints(wet_bulb_c)
        history = self.reservoir.history(slot.record.ref)
        why = (
            f" ({history[-1].to_state} by {history[-1].actor}: {history[-1].reason})"
            if history
            else ""
        )
        text = (
            f"handing back from {slot.record.ref}{why} to the site's own control at safe "
            f"rates: {hand_back.describe(last, target)}"
        )
        logger.info("live controller: %s", text)
        self._event(now_s, "hand_back", text)

    def _end_hand_back(self, now_s: float, text: str) -> None:
        self._handing_back = None
        self._writing = False
        logger.info("live controller: hand-back %s", text)
        self._event(now_s, "hand_back", text)

    def _hand_back(
        self, now_s: float, fresh: Freshness, hall: HallReadings, wet_bulb_c: float
    ) -> StepReport:
        """One period of handing back (module :mod:`control.hand_back`)."""
        assert self._handing_back is not None
        inlets = hall.rack_inlet_c[0]
        hottest = float(np.nanmax(inlets)) if np.isfinite(inlets).any() else math.nan
        limit = self.hand_back_inlet_limit_c
        if not fresh.ok:
            self._end_hand_back(
                now_s, "at once: the data are not fresh; the site holds every point"
            )
            return StepReport(now_s, "site", freshness=fresh)
        if hottest > limit:
            self._end_hand_back(
                now_s,
                f"at once: rack inlet {hottest:.1f} °C over {limit:g} °C; the site holds every "
                "point",
            )
            return StepReport(now_s, "site", freshness=fresh)
        target = self._site_setpoints(wet_bulb_c)
        values = hand_back.step_towards(self._handing_back, target, self.shield_config)
        command_id = f"hand-back-{uuid.uuid4().hex[:12]}"
        try:
            self._sink.write(
                values, now_s + self.period_s, issued_at_s=now_s, command_id=command_id
            )
        except Exception as exc:  # the last command expires: the site takes over at once
            logger.error("live controller: hand-back command %s not written: %s", command_id, exc)
            self._event(now_s, "write_error", f"{command_id}: {type(exc).__name__}: {exc}")
            self._end_hand_back(now_s, "at once: a hand-back command could not be written")
            return StepReport(now_s, "site", freshness=fresh)
        self._writing = True
        self._handing_back = values
        self._record(now_s, "ctl", values)
        if hand_back.arrived(values, target, self.shield_config):
            self._end_hand_back(
                now_s, "complete: every setpoint is at the site's; the site's own control holds"
            )
        return StepReport(now_s, "hand_back", written=values, freshness=fresh)

    def _predicted_inlet(self, now_s: float) -> float | None:
        """The twin's forecast, made one period ago, of the hottest inlet now."""
        pending = None if self.twin is None else self.twin.pending
        if pending is None or abs(pending.time_s - now_s) > self.period_s / 2.0:
            return None
        return pending.rack_inlet_max_c

    def _track(self, now_s: float, report: StepReport) -> None:
        """Keep the twin calibrated and log its forecast of the coming period."""
        assert self.twin is not None
        command = report.written if report.written else None
        try:
            values = self.twin.update(now_s, command, report.shadow)
        except Exception as exc:  # the twin informs; it never stops the loop
            logger.exception("live controller: twin update failed")
            self._event(now_s, "twin_error", f"{type(exc).__name__}: {exc}")
            return
        if "savings_pct" in values:
            self._record(now_s, "kpi", {"savings_pct": values.pop("savings_pct")})
        self._record(now_s, "twin", values)

    def _act(self, slot: _Slot, hall: HallReadings, now_s: float) -> FloatArray:
        obs = self._observe(hall, now_s, slot.last_action)
        action = np.asarray(slot.policy.act(obs), dtype=np.float64)
        if action.shape not in ((1, len(SETPOINT_FIELDS)), (len(SETPOINT_FIELDS),)):
            raise ValueError(f"policy answered shape {action.shape}, not (1, 5)")
        return action.reshape(-1)

    def _write(self, slot: _Slot, result: ShieldResult, now_s: float) -> dict[str, float]:
        command_id = f"{slot.record.ref}-{uuid.uuid4().hex[:12]}"
        expires = now_s + self.period_s
        if result.intervened:
            self._event(now_s, "shield", result.summary(), source="shield")
        if not result.fields:
            self._writing = False
            return {}
        try:
            self._sink.write(result.fields, expires, issued_at_s=now_s, command_id=command_id)
        except Exception as exc:  # the last good command expires: the site takes over
            logger.error("live controller: command %s not written: %s", command_id, exc)
            self._event(now_s, "write_error", f"{command_id}: {type(exc).__name__}: {exc}")
            self._writing = False
            return {}
        slot.shield.commit(result)
        self._writing = True
        applied = np.array([slot.shield.last(f) for f in SETPOINT_FIELDS])
        slot.last_action = self.scale.to_action(applied)
        self._record(now_s, "ctl", result.fields)
        return dict(result.fields)

    def _trip(self, slot: _Slot, trip: Trip) -> None:
        """Hand control back to the site: write nothing more, roll the policy back."""
        logger.warning("watchdog trip (%s): %s", trip.kind, trip.message)
        self._writing = False
        self._live = None
        self.watchdog.reset()
        self._event(trip.time_s, "trip", f"{trip.kind}: {trip.message}", source=WATCHDOG)
        self._roll_back(slot.record, trip.time_s, f"watchdog trip, {trip.kind}: {trip.message}")

    def _run_shadow(
        self, now_s: float, fresh: Freshness, hall: HallReadings
    ) -> dict[str, float] | None:
        slot = self._shadow
        if slot is None or not fresh.ok:
            return None
        try:
            action = self._act(slot, hall, now_s)
        except Exception as exc:
            logger.exception("live controller: shadow %s failed", slot.record.ref)
            self._shadow = None
            self._roll_back(slot.record, now_s, f"shadow policy error: {type(exc).__name__}: {exc}")
            return None
        result = slot.shield.project_action(action, self.scale, now_s)
        slot.shield.commit(result)
        applied = np.array([slot.shield.last(f) for f in SETPOINT_FIELDS])
        slot.last_action = self.scale.to_action(applied)
        self._record(now_s, "shadow", result.fields)
        return dict(result.fields)

    def _check_override(self, now_s: float) -> bool:
        try:
            active = bool(self._override())
        except Exception:
            logger.exception("live controller: override source failed; assuming active")
            active = True
        if active != self._override_active:
            text = "operator override active: not writing" if active else "override released"
            self._event(now_s, "override", text)
            self._override_active = active
        return active

    # ------------------------------------------------------------------ data
    def _hall(self, snapshot: Mapping[str, Sample], now_s: float) -> HallReadings:
        """Readings of every point; missing, bad or stale ones are NaN."""
        limit = self.watchdog.config.stale_after_s
        values = np.full(len(self.points), np.nan)
        for i, name in enumerate(self.points):
            sample = snapshot.get(name)
            if (
                sample is not None
                and sample.quality == "good"
                and not sample.stale
                and now_s - sample.ts <= limit
            ):
                values[i] = sample.value
        values = self._check_sensors(values, now_s)
        return HallReadings.from_points(
            self.points, values, self.site.n_pods, self.site.racks_per_pod
        )

    def _check_sensors(self, values: FloatArray, now_s: float) -> FloatArray:
        """The snapshot's values with distrusted sensors substituted; every flag raised or
        cleared becomes a ``sensor_fault`` / ``sensor_cleared`` event."""
        validator = self.sensor_validator
        if validator is None:
            return values
        checked = validator.update(now_s, values)
        for flag in validator.raised:
            logger.warning("sensor check: %s", flag.summary())
            self._event(now_s, "sensor_fault", flag.summary(), source=SENSOR_CHECK)
        for flag in validator.cleared:
            logger.info("sensor check: %s trusted again after a clean stretch", flag.point)
            self._event(
                now_s, "sensor_cleared", f"{flag.point}: trusted again", source=SENSOR_CHECK
            )
        return checked

    def _observe(
        self, hall: HallReadings, now_s: float, last_action: FloatArray
    ) -> NDArray[np.float32]:
        time_h = self._hour_of_year(now_s)
        wb_1h, wb_3h = self._forecaster(time_h, hall)
        it_1h = float(self.load_history.forecast_kw([FORECAST_IT_H])[0, 0])
        return build_observation(
            self.spec,
            hall,
            time_h=time_h,
            forecast_wet_bulb_1h_c=wb_1h,
            forecast_wet_bulb_3h_c=wb_3h,
            forecast_it_power_1h_kw=it_1h,
            last_action=last_action,
        )

    def _kpis(self, now_s: float, hall: HallReadings) -> None:
        it_kw = float(hall.it_power_kw[0])
        cooling_kw = float(hall.cooling_power_kw[0])
        facility_kw = float(hall.facility_power_kw[0])
        inlet = hall.rack_inlet_c[0]
        kpis = {
            "it_power_kw": it_kw,
            "cooling_power_kw": cooling_kw,
            "facility_power_kw": facility_kw,
            "pue": facility_kw / it_kw if it_kw > 0 else math.nan,
            "rack_inlet_max_c": float(np.nanmax(inlet)) if np.isfinite(inlet).any() else math.nan,
        }
        self._record(now_s, "kpi", kpis)

    def _record(self, now_s: float, prefix: str, values: Mapping[str, float]) -> None:
        readings = [
            Reading(f"{prefix}.{name}", now_s, float(v), FIELD_UNITS.get(name, ""))
            for name, v in values.items()
            if math.isfinite(v)
        ]
        try:
            self._historian.write(readings)
        except Exception:
            logger.exception("live controller: could not write %s.* to the historian", prefix)

    def _event(self, now_s: float, kind: str, message: str, *, source: str = SOURCE) -> None:
        try:
            self._historian.add_event(Event(now_s, source, kind, message))
        except Exception:
            logger.exception("live controller: could not record event %s: %s", kind, message)


def _with_checked_inlets(fresh: Freshness, hall: HallReadings) -> Freshness:
    """The watchdog's hottest inlet after the sensor check: a low-biased sensor's substitute
    (never cooler than its reading) can only raise it, so a hot spot behind a faulty sensor
    still trips the inlet limit."""
    with np.errstate(invalid="ignore"):
        finite = hall.rack_inlet_c[np.isfinite(hall.rack_inlet_c)]
    checked = float(finite.max()) if finite.size else math.nan
    if math.isfinite(checked) and not checked <= fresh.hottest_inlet_c:
        return replace(fresh, hottest_inlet_c=checked)
    return fresh
