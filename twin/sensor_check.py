"""Sensor validation: a biased or stuck rack-inlet or supply-air sensor is flagged, reported
and replaced by an estimate before any policy sees it.

Why here, in :mod:`twin`: this is the step between a BMS reading and what a policy observes,
which every TwinLoop environment and the live loop share (:mod:`twin.spaces` builds the
observation, :class:`twin.plant_env.PlantEnv` and :class:`control.live.LiveController` feed
it); :mod:`control` depends on :mod:`twin`, not the reverse, so both can use it.

Feed :meth:`SensorValidator.update` each control period's readings (one row per snapshot:
the plant's internal steps of the period, or the live loop's one snapshot). Two tests run
on every monitored point, each a two-sided CUSUM on a residual standardised by a baseline
and a noise scale learned per sensor (robust exponential averages, Huber-clipped, learnt
only while the sensor is trusted):

* **neighbours** (rack inlets): the rack's deviation from its pod's robust centre (the
  median of the pod's trusted inlets), divided by the hall's deviation gain. The racks of a
  pod share supply air, load schedule and containment, so that deviation is nearly constant
  for a healthy sensor (measured on the reference plant under the MPC: 0.05 K standard
  deviation, the sensor noise, while the centre swings 5 K a day); a bias steps it.
  Pod-wide changes move the centre, not the deviation. What does move it is the operating
  point: recirculation stretches every deviation together (when the MPC takes over from the
  site, the hot racks' +0.7 K grow to +1.1 K within the hour), so the residual is the
  deviation over the gain, the median ratio of the racks' deviations to their learnt
  offsets (over racks with a clear offset), which one faulty rack cannot move.
* **twin** (optional ``expected``: a model's prediction of the point for this period, e.g.
  a calibrated twin's per-rack forecast): the residual reading − prediction. It adds what
  neighbours cannot see: a point without redundant neighbours (supply air — the inlets'
  offset above supply air wanders 2–4 K within hours as fan speed and load move, too much to
  reveal a 1.5 K bias), or a fault shared by a whole pod.
* **heat balance** (supply air, whenever the readings carry the coil-load points and
  ``expected`` gives no supply-air prediction): the supply air the metered coil load
  implies, :func:`physics.crah.supply_air_from_heat_balance_c` — return air less the heat
  the chilled water carries away over the airflow's heat capacity, plus the fans' heat. On
  the reference plant's truth it matches the mixed supply air within 0.014 K per period
  under fixed setpoints, but the chilled-water loop's storage swings it by up to ±0.9 K in
  a period while a policy moves the chilled-water setpoint every period; the test takes the
  last hour's mean residual (``balance_window_periods``), in which the swings cancel and a
  bias does not. A flagged supply air reads its reading less that mean and plus its learnt
  offset: the bias taken out. The residual moves
  as well when a chilled-water temperature, flow or return-air sensor is wrong, so the
  flag says that supply air disagrees with the coil's heat balance; the faulty sensor may
  be another of the six.

A point is also flagged **stuck** when its reading has not changed (by ``stuck_tol_c``) for
``stuck_periods`` periods while its neighbours moved: their centre by ``stuck_move_c`` plus
the readings' resolution (``reading_resolution_c``, e.g. a BACnet COV increment) or more, or
at least half of them changed every period (live sensors with noise do; a quantised BMS at a
steady state does not, and then nothing is flagged).

A flagged point is reported (:class:`SensorFlag`: which point, why, since when — the
CUSUM's change-point estimate, the last period it was at zero) and its readings replaced:
a rack inlet by its pod's robust centre plus its healthy offset learnt before the fault
(times the present gain), or by its own reading where that is hotter — a substitute never
reads cooler than the sensor, so a real local hot spot that the neighbour test takes for a
bias is never hidden (it is still reported), and a high-biased sensor costs cooling energy,
not safety; supply air by the prediction plus its learnt offset where ``expected`` gives
one, else NaN (missing, which every consumer already treats as a dropout). A flag clears only by an
explicit :meth:`SensorValidator.reset` (the operator fixed the sensor) or after
``clear_periods`` (24 h by default) of consecutive clean periods, each moving and within
``clear_z`` scales (or half of ``min_shift_c``) of the pre-fault offset: a full diurnal
cycle that a stuck or still biased sensor cannot pass while its neighbours move, so a
transient fault clears itself without letting a flapping sensor back into control.
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass
from typing import Literal

import numpy as np
from numpy.typing import ArrayLike, NDArray

from physics.crah import supply_air_from_heat_balance_c

FloatArray = NDArray[np.float64]
BoolArray = NDArray[np.bool_]
Reason = Literal["bias", "stuck"]
Source = Literal["neighbours", "twin", "heat_balance"]
SUPPLY_AIR = "supply_air_c"
HEAT_BALANCE_POINTS = (
    "return_air_c",
    "crah_airflow_kg_s",
    "crah_fan_power_kw",
    "chw_flow_kg_s",
    "chw_supply_c",
    "chw_return_c",
)
"""The readings :func:`physics.crah.supply_air_from_heat_balance_c` takes, in its order."""


@dataclass(frozen=True)
class SensorCheckConfig:
    """Tuning of :class:`SensorValidator`, in control periods and scales (noise σ)."""

    warmup_periods: int = 12
    """Periods that only learn a sensor's baseline and scale before its test starts."""
    baseline_tau_periods: float = 72.0
    """Time constant of the learnt offset (6 h at 5-min periods)."""
    scale_tau_periods: float = 288.0
    """Time constant of the learnt noise scale (24 h at 5-min periods)."""
    scale_floor_c: float = 0.05
    """Smallest noise scale (K): perfect sensors would otherwise make any wobble an alarm."""
    huber_z: float = 3.0
    """Residuals are clipped to ±this many scales before they update baseline and scale."""
    gain_offset_c: float = 0.3
    """Racks whose learnt offset is at least this (K) measure the deviation gain."""
    cusum_k: float = 1.0
    """Least CUSUM allowance (scales per period)."""
    min_shift_c: float = 0.5
    """Smallest bias the test is tuned to catch (K). The allowance is half of it where that
    is more than ``cusum_k`` scales, so the slow few-hundredths-of-a-kelvin shifts of a
    rack's deviation with load and airflow (measured: up to 0.1 K over a day) never add up
    to an alarm."""
    cusum_h: float = 15.0
    """CUSUM threshold (scales): a 1.5 K step on a 0.05 K sensor flags in one period."""
    balance_window_periods: int = 12
    """Periods averaged in the supply-air heat-balance residual. The chilled-water loop's
    storage makes one period's residual swing by up to ±0.9 K while a policy moves the
    chilled-water setpoint every period (trim-and-respond, measured); over an hour the swings
    cancel (standard deviation 0.04–0.06 K), where a sensor bias does not."""
    balance_steady_k: float = 1.0
    """The heat-balance test pauses while the chilled-water supply moved by more than this
    (K) over its window: a ramp (a controller taking over from the site) shifts the hour's
    residual one way through the loop's storage."""
    balance_scale_floor_c: float = 0.15
    """Smallest noise scale (K) of the hour-mean heat-balance residual: it wanders by up to
    0.3 K over a day with the load and the loop's state (measured), slowly enough that a
    sensor-noise floor would take the wander for a bias."""
    stuck_periods: int = 12
    stuck_tol_c: float = 0.005
    stuck_move_c: float = 0.3
    reading_resolution_c: float = 0.0
    """The smallest change the readings can show (a BACnet COV increment: a value is sent
    only once it moved that far). A point is stuck only when its neighbours' centre moved by
    ``stuck_move_c`` plus this: a live sensor behind a 0.3 K increment may hold its value
    through a 0.3 K drift of its pod."""
    clear_periods: int = 288
    clear_z: float = 3.0

    def __post_init__(self) -> None:
        if self.warmup_periods < 2 or self.stuck_periods < 2 or self.clear_periods < 1:
            raise ValueError("warmup_periods and stuck_periods must be ≥ 2, clear_periods ≥ 1")
        if self.balance_window_periods < 1:
            raise ValueError("balance_window_periods must be ≥ 1")
        positive = (
            self.baseline_tau_periods,
            self.scale_tau_periods,
            self.scale_floor_c,
            self.balance_scale_floor_c,
            self.balance_steady_k,
            self.min_shift_c,
            self.huber_z,
            self.cusum_h,
            self.stuck_move_c,
            self.clear_z,
        )
        if not all(math.isfinite(v) and v > 0 for v in positive):
            raise ValueError("SensorCheckConfig: taus, scale floor, thresholds must be > 0")
        if not (math.isfinite(self.reading_resolution_c) and self.reading_resolution_c >= 0):
            raise ValueError("SensorCheckConfig: reading_resolution_c must be ≥ 0")


@dataclass(frozen=True)
class SensorFlag:
    """A sensor the validator no longer trusts."""

    point: str
    reason: Reason
    source: Source
    since_s: float
    """Estimated fault onset: the CUSUM's last zero, or the first period of the frozen run."""
    flagged_at_s: float
    offset_c: float
    """The healthy offset its substitute adds (to the pod centre or the prediction)."""

    def summary(self) -> str:
        return (
            f"{self.point}: {self.reason} ({self.source}) since t={self.since_s:.0f} s, "
            f"flagged at t={self.flagged_at_s:.0f} s; substituted (offset {self.offset_c:+.2f} K)"
        )


class _CusumBank:
    """Two-sided CUSUMs over residuals of many points, with learnt baseline and scale."""

    def __init__(self, n: int, config: SensorCheckConfig) -> None:
        self.cfg = config
        self.floor = np.full(n, config.scale_floor_c)
        """Smallest scale per point (K)."""
        self.count = np.zeros(n, dtype=np.int64)
        self.baseline = np.zeros(n)
        self.var = np.zeros(n)
        self.up = np.zeros(n)
        self.down = np.zeros(n)
        self.zero_baseline = np.zeros(n)
        self.zero_time_s = np.full(n, np.nan)

    def scale(self) -> FloatArray:
        scale: FloatArray = np.maximum(np.sqrt(self.var), self.floor)
        return scale

    def z(self, residual: FloatArray) -> FloatArray:
        return (residual - self.baseline) / self.scale()

    def update(self, time_s: float, residual: FloatArray, trusted: BoolArray) -> BoolArray:
        """Test and learn from this period's residuals (NaN: no reading); the points whose
        CUSUM crossed its threshold. Only trusted points are tested and learnt from."""
        cfg = self.cfg
        seen = np.isfinite(residual) & trusted
        r = np.where(seen, residual, 0.0)
        warm = seen & (self.count < cfg.warmup_periods)
        # Warm-up: running mean and variance.
        n = self.count + 1.0
        delta = r - self.baseline
        self.baseline = np.where(warm, self.baseline + delta / n, self.baseline)
        self.var = np.where(warm, self.var + (delta * (r - self.baseline) - self.var) / n, self.var)
        testing = seen & ~warm
        z = np.where(testing, self.z(r), 0.0)
        k = np.maximum(cfg.cusum_k, 0.5 * cfg.min_shift_c / self.scale())
        self.up = np.where(testing, np.maximum(0.0, self.up + z - k), self.up)
        self.down = np.where(testing, np.maximum(0.0, self.down - z - k), self.down)
        alarm = testing & ((self.up > cfg.cusum_h) | (self.down > cfg.cusum_h))
        learn = testing & ~alarm & (np.maximum(self.up, self.down) <= cfg.cusum_h / 2.0)
        zc = np.clip(z, -cfg.huber_z, cfg.huber_z)
        scale = self.scale()
        self.baseline = np.where(
            learn, self.baseline + zc * scale / cfg.baseline_tau_periods, self.baseline
        )
        self.var = np.where(
            learn, self.var + ((zc * scale) ** 2 - self.var) / cfg.scale_tau_periods, self.var
        )
        at_zero = (seen & (self.up == 0.0) & (self.down == 0.0)) | (warm & seen)
        self.zero_baseline = np.where(at_zero, self.baseline, self.zero_baseline)
        self.zero_time_s = np.where(at_zero, time_s, self.zero_time_s)
        self.count += seen
        # An alarm falls back to the offset of the last in-control period.
        self.baseline = np.where(alarm, self.zero_baseline, self.baseline)
        return alarm

    def restart(self, i: int) -> None:
        """Forget the CUSUM state of point ``i`` (keeps its learnt baseline and scale)."""
        self.up[i] = self.down[i] = 0.0


class SensorValidator:
    """Flags biased and stuck rack-inlet and supply-air sensors of one site (see the module
    docstring) and substitutes estimates for them."""

    def __init__(
        self,
        names: tuple[str, ...],
        n_pods: int,
        racks_per_pod: int,
        config: SensorCheckConfig | None = None,
    ) -> None:
        self.config = config or SensorCheckConfig()
        self.names = tuple(names)
        index = {n: i for i, n in enumerate(self.names)}
        racks = [f"rack_inlet_c.{p}.{r:02d}" for p in range(n_pods) for r in range(racks_per_pod)]
        self.points: tuple[str, ...] = (*racks, SUPPLY_AIR)
        missing = [p for p in self.points if p not in index]
        if missing:
            raise KeyError(f"readings lack points {missing[:3]}")
        self._columns = np.array([index[p] for p in self.points])
        balance = [index.get(p) for p in HEAT_BALANCE_POINTS]
        self._balance_columns = np.array(balance) if all(c is not None for c in balance) else None
        self._supply_source: Source = "twin"
        self._balance_ring: deque[tuple[float, float, float]] = deque(
            maxlen=self.config.balance_window_periods
        )
        """(time, reading − heat balance, chilled-water supply) of the last periods."""
        self._n_pods, self._racks = n_pods, racks_per_pod
        self._n_racks = n_pods * racks_per_pod
        m = len(self.points)
        self._neighbours = _CusumBank(m, self.config)
        self._twin = _CusumBank(m, self.config)
        if self._balance_columns is not None:
            self._twin.floor[-1] = self.config.balance_scale_floor_c
        # Stuck test: each point's last reading, how many periods it has not changed and
        # since when; rings (order does not matter) of the neighbours' centre and of the
        # share of them that changed, over the last ``stuck_periods`` periods.
        self._last = np.full(m, np.nan)
        self._frozen_periods = np.zeros(m, dtype=np.int64)
        self._frozen_since_s = np.full(m, np.nan)
        self._ref_ring = np.full((self.config.stuck_periods + 1, m), np.nan)
        self._alive_ring = np.zeros((self.config.stuck_periods, m))
        self._period = 0
        self._clean = np.zeros(m, dtype=np.int64)
        self._flags: dict[int, SensorFlag] = {}
        self._gain = 1.0
        self.raised: tuple[SensorFlag, ...] = ()
        """Flags raised by the last :meth:`update`."""
        self.cleared: tuple[SensorFlag, ...] = ()
        """Flags cleared (after a long clean stretch) by the last :meth:`update`."""

    @property
    def flags(self) -> tuple[SensorFlag, ...]:
        """Every point now distrusted."""
        return tuple(self._flags[i] for i in sorted(self._flags))

    def reset(self, point: str | None = None) -> None:
        """The operator fixed ``point`` (every flagged point when None): trust it again and
        restart its tests from its learnt baseline."""
        for i in [i for i in self._flags if point is None or self.points[i] == point]:
            del self._flags[i]
            self._neighbours.restart(i)
            self._twin.restart(i)
            self._clean[i] = 0
            self._last[i] = np.nan
            self._frozen_periods[i] = 0

    # ------------------------------------------------------------------ one period
    def update(
        self,
        time_s: float,
        readings: ArrayLike,
        expected: dict[str, float] | None = None,
    ) -> FloatArray:
        """Check one control period's readings, (snapshots, points) or (points,), in
        :attr:`names` order, and return them with flagged points substituted (same shape).
        ``expected`` maps points to a prediction of their period mean (optional)."""
        raw = np.asarray(readings, dtype=np.float64)
        rows = np.atleast_2d(raw)
        x = _nanmean(rows[:, self._columns])
        trusted = np.ones(len(self.points), dtype=bool)
        trusted[list(self._flags)] = False
        centre = self._centres(x[None, : self._n_racks], trusted)[0]
        neighbour_ref = np.append(np.repeat(centre, self._racks), math.nan)
        prediction = np.full(len(self.points), np.nan)
        for name, value in (expected or {}).items():
            if name in self.points:
                prediction[self.points.index(name)] = value
        self._supply_source = "twin"
        if self._balance_columns is not None and SUPPLY_AIR not in (expected or {}):
            # The residual the test sees is the last hour's mean reading − heat balance:
            # the prediction is the reading less that mean.
            residual = x[-1] - self._heat_balance(rows)
            if math.isfinite(residual):
                chw_c = float(_nanmean(rows[:, self._balance_columns[-2:-1]])[0])
                self._balance_ring.append((time_s, residual, chw_c))
            full = len(self._balance_ring) == self._balance_ring.maxlen
            if full and self._balance_steady() and math.isfinite(x[-1]):
                prediction[-1] = x[-1] - self._balance_mean()
            self._supply_source = "heat_balance"
        deviation = x - neighbour_ref
        self._gain = self._deviation_gain(deviation, trusted)
        nb_residual = deviation / self._gain
        bias_nb = self._neighbours.update(time_s, nb_residual, trusted)
        bias_tw = self._twin.update(time_s, x - prediction, trusted)
        hall_ref = float(_nanmedian_last(centre))
        stuck_ref = np.append(np.repeat(centre, self._racks), hall_ref)
        stuck, stuck_since = self._stuck(time_s, x, stuck_ref, trusted)
        # A CUSUM alarm on a reading frozen for the last few periods is a stuck sensor.
        frozen = self._frozen_periods >= 3
        raised: list[SensorFlag] = []
        for i in np.flatnonzero(bias_nb | bias_tw | stuck):
            is_stuck = bool(stuck[i] or frozen[i])
            since = stuck_since[i] if stuck[i] else math.nan
            raised.append(self._raise(int(i), time_s, is_stuck, bool(bias_nb[i]), since))
        self.raised = tuple(raised)
        self.cleared = self._clear(nb_residual, x - prediction, trusted)
        flag = self._flags.get(len(self.points) - 1)
        if flag is not None and flag.source == "heat_balance" and self._balance_ring:
            # The substitute takes out the bias seen since the onset, not the hour's mean
            # (which holds the healthy periods before it for an hour).
            prediction[-1] = x[-1] - self._balance_mean(after_s=flag.since_s)
        return self._substitute(raw, prediction)

    def _balance_mean(self, after_s: float = -math.inf) -> float:
        """Mean supply-air heat-balance residual over the ring's periods after ``after_s``
        (all of them when none is)."""
        recent = [r for t, r, _ in self._balance_ring if t > after_s]
        return float(np.mean(recent or [r for _, r, _ in self._balance_ring]))

    def _balance_steady(self) -> bool:
        """Whether the chilled-water supply held within ``balance_steady_k`` over the ring:
        while it ramps (a controller taking over from the site moves it by several kelvin
        in an hour) the loop's storage shifts the hour's residual one way."""
        chw = [c for _, _, c in self._balance_ring if math.isfinite(c)]
        return bool(chw) and max(chw) - min(chw) <= self.config.balance_steady_k

    def _heat_balance(self, rows: FloatArray) -> float:
        """The period's mean supply air implied by the coil load (NaN without readings)."""
        assert self._balance_columns is not None
        columns = rows[:, self._balance_columns].T
        estimate = supply_air_from_heat_balance_c(*columns)
        return float(_nanmean(estimate[:, None])[0])

    def _centres(self, inlets: FloatArray, trusted: BoolArray) -> FloatArray:
        """Robust centre of each pod, (rows, pods): the median of its trusted inlets."""
        mask = trusted[: self._n_racks]
        pods = np.where(mask, inlets, np.nan).reshape(len(inlets), self._n_pods, self._racks)
        return _nanmedian_last(pods)

    def _stuck(
        self, time_s: float, x: FloatArray, ref: FloatArray, trusted: BoolArray
    ) -> tuple[BoolArray, FloatArray]:
        cfg = self.config
        with np.errstate(invalid="ignore"):
            same = np.abs(x - self._last) < cfg.stuck_tol_c  # False where either is NaN
        self._frozen_periods = np.where(same, self._frozen_periods + 1, 0)
        self._frozen_since_s = np.where(same, self._frozen_since_s, time_s)
        self._last = x
        # Which share of each pod's (and the hall's) trusted inlets changed this period.
        racks = (~same & trusted)[: self._n_racks].reshape(self._n_pods, self._racks)
        counted = trusted[: self._n_racks].reshape(self._n_pods, self._racks).sum(axis=1)
        share = racks.sum(axis=1) / np.maximum(counted, 1)
        hall = racks.sum() / max(int(counted.sum()), 1)
        self._ref_ring[self._period % len(self._ref_ring)] = ref
        self._alive_ring[self._period % len(self._alive_ring)] = np.append(
            np.repeat(share, self._racks), hall
        )
        self._period += 1
        with np.errstate(invalid="ignore"):
            moved: BoolArray = (
                np.ptp(self._ref_ring, axis=0) >= cfg.stuck_move_c + cfg.reading_resolution_c
            )
        alive: BoolArray = np.all(self._alive_ring >= 0.5, axis=0)
        still = self._frozen_periods >= cfg.stuck_periods
        stuck = still & (moved | alive) & trusted
        return stuck, self._frozen_since_s.copy()

    def _raise(
        self, i: int, time_s: float, stuck: bool, by_neighbours: bool, stuck_since_s: float
    ) -> SensorFlag:
        source: Source = "neighbours" if by_neighbours or stuck else "twin"
        if source == "twin" and self.points[i] == SUPPLY_AIR:
            source = self._supply_source
        on_neighbours = source == "neighbours" and i < self._n_racks
        bank = self._neighbours if on_neighbours else self._twin
        since = stuck_since_s if math.isfinite(stuck_since_s) else float(bank.zero_time_s[i])
        flag = SensorFlag(
            point=self.points[i],
            reason="stuck" if stuck else "bias",
            source=source,
            since_s=since,
            flagged_at_s=time_s,
            offset_c=float(bank.baseline[i]),
        )
        self._flags[i] = flag
        self._clean[i] = 0
        return flag

    def _deviation_gain(self, deviation: FloatArray, trusted: BoolArray) -> float:
        """How much the racks' deviations from their pods' centres are stretched now
        relative to when their offsets were learnt: the median ratio over the trusted racks
        with a clear offset (1 while fewer than three have one)."""
        cfg, bank = self.config, self._neighbours
        n = self._n_racks
        offset = bank.baseline[:n]
        with np.errstate(invalid="ignore"):
            ready = (
                trusted[:n]
                & (bank.count[:n] >= cfg.warmup_periods)
                & (np.abs(offset) >= cfg.gain_offset_c)
                & np.isfinite(deviation[:n])
            )
        if ready.sum() < 3:
            return 1.0
        gain = float(np.median(deviation[:n][ready] / offset[ready]))
        return float(np.clip(gain, 0.25, 4.0)) if math.isfinite(gain) else 1.0

    def _clear(
        self, nb_residual: FloatArray, tw_residual: FloatArray, trusted: BoolArray
    ) -> tuple[SensorFlag, ...]:
        """Count clean periods of flagged points; clear those with a long clean stretch."""
        cfg = self.config
        moving = self._frozen_periods < 3
        with np.errstate(invalid="ignore"):
            ok_nb = self._near(self._neighbours, nb_residual)
            ok_tw = self._near(self._twin, tw_residual)
        has_nb, has_tw = np.isfinite(nb_residual), np.isfinite(tw_residual)
        clean = moving & (has_nb | has_tw) & (ok_nb | ~has_nb) & (ok_tw | ~has_tw)
        self._clean = np.where(~trusted & clean, self._clean + 1, 0)
        done = [i for i in self._flags if self._clean[i] >= cfg.clear_periods]
        cleared = tuple(self._flags[i] for i in done)
        for i in done:
            del self._flags[i]
            self._neighbours.restart(i)
            self._twin.restart(i)
            self._clean[i] = 0
        return cleared

    def _near(self, bank: _CusumBank, residual: FloatArray) -> BoolArray:
        """Residuals within ``clear_z`` scales (or the CUSUM's allowance, if wider) of the
        learnt offset."""
        cfg = self.config
        tolerance = np.maximum(cfg.clear_z * bank.scale(), 0.5 * cfg.min_shift_c)
        near: BoolArray = np.abs(residual - bank.baseline) <= tolerance
        return near

    def _substitute(self, raw: FloatArray, prediction: FloatArray) -> FloatArray:
        if not self._flags:
            return raw
        rows = np.array(np.atleast_2d(raw), dtype=np.float64)
        trusted = np.ones(len(self.points), dtype=bool)
        trusted[list(self._flags)] = False
        centres = self._centres(rows[:, self._columns[: self._n_racks]], trusted)
        for i in self._flags:
            column = self._columns[i]
            if i < self._n_racks:
                offset = self._gain * self._neighbours.baseline[i]
                estimate = centres[:, i // self._racks] + offset
                rows[:, column] = np.fmax(rows[:, column], estimate)
            else:
                rows[:, column] = prediction[i] + self._twin.baseline[i]
        return rows.reshape(raw.shape)


def _nanmean(rows: FloatArray) -> FloatArray:
    """Column means ignoring NaN; NaN where a column has no reading."""
    finite = np.isfinite(rows)
    count = finite.sum(axis=0)
    total = np.where(finite, rows, 0.0).sum(axis=0)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(count > 0, total / np.maximum(count, 1), np.nan)


def _nanmedian_last(values: FloatArray) -> FloatArray:
    """Median over the last axis ignoring NaN (NaN where all are); np.nanmedian's result,
    without its masked-array cost on small arrays."""
    ordered = np.sort(values, axis=-1)  # NaN sorts last
    count = np.isfinite(values).sum(axis=-1)
    low = np.take_along_axis(ordered, np.maximum((count - 1) // 2, 0)[..., None], axis=-1)
    high = np.take_along_axis(ordered, np.maximum(count // 2, 0)[..., None], axis=-1)
    median = 0.5 * (low[..., 0] + high[..., 0])
    return np.where(count > 0, median, np.nan)
