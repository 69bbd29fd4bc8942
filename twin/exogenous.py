"""What drives the twin from outside, per control period: weather, IT load and faults.

A scenario file fixes them for the plant; :class:`ExogenousTable` evaluates the same
scenario at control-period resolution for the twin: outdoor dry and wet bulb (period means
of the same weather file, heat wave included), each pod's utilisation (period mean of the
same workload generator and seed) and the faults the twin can represent, as multipliers of
its physical parameters ``theta``, or as the units available (CRAH fan trips, chiller trips
and tower fan failures; the period mean of the plant's fault schedule, step by step).
IT power per pod follows from utilisation through the servers' published power curve at
nameplate (``it_power_scale`` covers the site's deviation).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from physics.plant.faults import FaultSchedule
from physics.plant.scenario import Scenario
from physics.servers import utilisation_power_frac
from physics.workload import make_workload
from twin.surrogate import THETA_NAMES, THETA_NOMINAL

FloatArray = NDArray[np.float64]

CONDENSER_LIFT_EIR_PER_K = 0.023
"""Relative chiller power per K of extra condensing lift: the slope of the DOE-2 EIRFT curve
in condenser water at 7 °C chilled water and 30 °C condenser water."""

TWIN_FAULTS: tuple[str, ...] = (
    "coil_fouling",
    "condenser_fouling",
    "workload_surge",
    "crah_fan_trip",
    "chiller_trip",
    "tower_fan_failure",
)
"""Fault kinds the twin represents; the others act on the plant only (the twin sees their
effect through its sensors, and assimilation follows it)."""


@dataclass(frozen=True)
class ExogenousTable:
    """Per-period drivers of one scenario; row ``k`` covers ``[k, k+1)`` control periods."""

    time_h: FloatArray  # (T,) hour of the year at the period's start
    dry_bulb_c: FloatArray  # (T,)
    wet_bulb_c: FloatArray  # (T,)
    utilisation: FloatArray  # (T, P)
    it_power_kw: FloatArray  # (T, P) at nameplate
    theta_fault: FloatArray  # (T, 5) multipliers (additive K for the tower bias)
    period_s: float
    crah_running_frac: FloatArray  # (T,) fraction of CRAH units running
    chillers_available: FloatArray  # (T,) chillers not tripped
    tower_fan_frac: FloatArray  # (T,) tower fan capacity left

    @property
    def n_periods(self) -> int:
        return int(self.time_h.shape[0])

    @classmethod
    def from_scenario(cls, scenario: Scenario) -> ExogenousTable:
        site = scenario.site
        per = scenario.steps_per_period
        n_periods = scenario.n_steps // per
        if n_periods < 2:
            raise ValueError(f"scenario {scenario.name}: shorter than two control periods")
        step_h = scenario.step_s / 3600.0
        grid_h = scenario.start_h + np.arange(n_periods * per) * step_h
        weather = scenario.weather().at(grid_h)
        util = make_workload(scenario.workload, grid_h, site.n_pods, seed=scenario.seed)
        elapsed_h = (np.arange(n_periods) * per + 0.5 * per) * step_h
        theta = np.tile(np.asarray(THETA_NOMINAL, dtype=np.float64), (n_periods, 1))
        surge = np.zeros((n_periods, site.n_pods))
        for event in scenario.faults:
            end = np.inf if event.duration_h is None else event.start_h + event.duration_h
            active = (elapsed_h >= event.start_h) & (elapsed_h < end)
            if event.kind == "coil_fouling":
                share = 1.0 if event.target is None else 1.0 / site.n_crah
                theta[active, THETA_NAMES.index("coil_ua_mult")] *= 1.0 - event.strength * share
            elif event.kind == "condenser_fouling":
                eir = 1.0 + CONDENSER_LIFT_EIR_PER_K * event.strength
                theta[active, THETA_NAMES.index("chiller_eir_mult")] *= eir
            elif event.kind == "workload_surge":
                pods = slice(None) if event.target is None else int(event.target)
                surge[active, pods] += event.strength

        def period_mean(values: FloatArray) -> FloatArray:
            shaped = values.reshape(n_periods, per, *values.shape[1:])
            return np.asarray(shaped.mean(axis=1))

        status = unit_status_steps(scenario, n_periods * per)
        utilisation = np.clip(period_mean(util) + surge, 0.0, 1.0)
        pod_max_kw = site.racks_per_pod * site.server.max_power_kw
        it_kw = pod_max_kw * utilisation_power_frac(site.server.idle_frac, utilisation)
        return cls(
            time_h=np.asarray(grid_h[::per][:n_periods], dtype=np.float64),
            dry_bulb_c=period_mean(weather.dry_bulb_c),
            wet_bulb_c=period_mean(weather.wet_bulb_c),
            utilisation=utilisation,
            it_power_kw=np.asarray(it_kw, dtype=np.float64),
            theta_fault=theta,
            period_s=scenario.control_period_s,
            crah_running_frac=period_mean(status[:, 0]),
            chillers_available=period_mean(status[:, 1]),
            tower_fan_frac=period_mean(status[:, 2]),
        )


def unit_status_steps(scenario: Scenario, n_steps: int) -> FloatArray:
    """Units available at each plant step (n_steps, 3: CRAH running fraction, chillers not
    tripped, tower fan capacity left), from the scenario's faults as the plant schedules them
    (an event acts on the steps that start inside ``[start_h, start_h + duration_h)``)."""
    site = scenario.site
    schedule = FaultSchedule(
        scenario.faults, n_crah=site.n_crah, n_chillers=site.n_chillers, n_pods=site.n_pods
    )
    out = np.empty((n_steps, 3))
    step_h = scenario.step_s / 3600.0
    for k in range(n_steps):
        fx = schedule.effects_at(k * step_h)
        out[k] = (
            float(fx.crah_running.mean()),
            float(site.n_chillers - fx.chiller_tripped.sum()),
            fx.tower_fan_max_frac,
        )
    return out
