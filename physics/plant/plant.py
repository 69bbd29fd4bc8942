"""The plant: the reference data center as a simulator that stands in for a real site.

``Plant.advance`` moves every site forward by internal steps (60 s by default) through the
compiled step of :mod:`physics.plant.kernel` (the one composition of the physics models),
then turns the ground truth into sensor readings. Commands are held until they expire; the
site's own control fills in whatever a command leaves out.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

import numpy as np
from numpy.typing import NDArray

from physics.plant.faults import FaultEvent, FaultSchedule
from physics.plant.kernel import Drivers, PlantEngine
from physics.plant.sensors import SensorFrame, SensorModel, SensorNoise, point_catalog
from physics.plant.site import SiteConfig, draw_hidden_params
from physics.plant.site_control import SETPOINT_FIELDS, SetpointCommand, command_matrix
from physics.weather import WeatherSeries

logger = logging.getLogger(__name__)

FloatArray = NDArray[np.float64]

ENERGY_COLUMNS: tuple[str, ...] = (
    "time_h",
    "it_power_kw",
    "chiller_power_kw",
    "economiser_power_kw",
    "ups_loss_kw",
    "pdu_loss_kw",
    "transformer_loss_kw",
    "lighting_kw",
    "aux_kw",
    "water_use_kg_s",
    "coil_heat_kw",
    "crah_fan_heat_kw",
    "room_gain_kw",
    "room_stored_kw",
    "chiller_load_kw",
    "economiser_heat_kw",
    "chw_stored_kw",
    "tower_heat_kw",
    "command_active",
)
"""Ground-truth columns logged beside the sensor points (never visible to the twin)."""


class Plant:
    """One or more simulated sites of the same design stepping in lock-step.

    What a controller may see is :meth:`step`'s :class:`SensorFrame`. ``last_log`` is the
    ground truth of the last step (true temperatures, energy flows, applied setpoints;
    columns ``log_names``) for the evaluator and KPIs only; the hidden site parameters are
    private.

    ``utilisation`` is the IT utilisation per pod with shape (n_steps, pods), one row per
    internal step from the start; ``seeds`` gives one site per seed (hidden parameters and
    sensor noise). The weather must cover ``start_h`` to the end of the run; ``start_h`` may
    be one hour of the year for all sites or one per site (e.g. twelve months of one site
    side by side).
    """

    def __init__(
        self,
        config: SiteConfig,
        *,
        weather: WeatherSeries,
        utilisation: FloatArray,
        start_h: float | Sequence[float],
        faults: Sequence[FaultEvent] = (),
        seeds: Sequence[int] = (0,),
        step_s: float = 60.0,
        noise: SensorNoise | None = None,
        warmup_steps: int = 180,
    ) -> None:
        if step_s <= 0 or step_s > 300:
            raise ValueError("step_s must lie in (0, 300] s for the plant's integration")
        util = np.asarray(utilisation, dtype=np.float64)
        if util.ndim != 2 or util.shape[1] != config.n_pods:
            raise ValueError(f"utilisation must have shape (n_steps, {config.n_pods})")
        self.config = config
        self.step_s = float(step_s)
        self.n_steps = util.shape[0]
        starts = np.atleast_1d(np.asarray(start_h, dtype=np.float64))
        self.start_h = float(starts[0])
        self._hidden = hidden = draw_hidden_params(config, seeds)
        self.faults = FaultSchedule(
            faults, n_crah=config.n_crah, n_chillers=config.n_chillers, n_pods=config.n_pods
        )
        self.sensors = SensorModel(point_catalog(config), noise or SensorNoise(), hidden.seeds)
        self.point_names = self.sensors.names
        self.log_names: tuple[str, ...] = (
            *ENERGY_COLUMNS,
            *(f"sp.{name}" for name in SETPOINT_FIELDS),
            *self.point_names,
        )
        if starts.shape[0] not in (1, hidden.n_sites):
            raise ValueError("start_h needs one value or one per site")
        self.n_sites = hidden.n_sites
        self.site_start_h = np.broadcast_to(starts, (self.n_sites,)).copy()
        elapsed_h = np.arange(self.n_steps) * self.step_s / 3600.0
        weather_now = weather.at(elapsed_h[:, None] + self.site_start_h[None, :])
        self._engine = PlantEngine(
            config,
            hidden,
            Drivers(
                dry_bulb_c=weather_now.dry_bulb_c,
                wet_bulb_c=weather_now.wet_bulb_c,
                rel_hum_frac=weather_now.rel_hum_frac,
                utilisation=np.clip(util, 0.0, 1.0),
                site_start_h=self.site_start_h,
            ),
            step_s=self.step_s,
            log_names=self.log_names,
        )
        self.command: SetpointCommand | None = None
        self.step_index = 0
        self.last_log: FloatArray = np.zeros((self.n_sites, len(self.log_names)))
        self.last_frame: SensorFrame | None = None
        self._fault_changes = self._fault_change_steps()
        if warmup_steps > 0:
            self._engine.run(
                0, warmup_steps, self.faults.effects_at(0.0), record=False, hold_first=True
            )
        logger.info(
            "plant ready: %d site(s) of %s, %d steps of %.0f s from hour %.1f",
            self.n_sites,
            config.name,
            self.n_steps,
            self.step_s,
            self.start_h,
        )

    # ------------------------------------------------------------------ public API
    @property
    def time_s(self) -> float:
        """Plant time since the start of the run."""
        return self.step_index * self.step_s

    @property
    def time_h(self) -> float:
        """Hour of the weather year now."""
        return self.start_h + self.time_s / 3600.0

    @property
    def done(self) -> bool:
        return bool(self.step_index >= self.n_steps)

    def apply_command(self, command: SetpointCommand | None) -> None:
        """Hold ``command`` until it expires (``None`` hands control back to the site)."""
        self.command = command
        expiry = -np.inf if command is None else float(command.expires_at_s)
        self._engine.hold(command_matrix(command, self.n_sites), expiry)

    def step(self) -> SensorFrame:
        """Advance one internal step and return the new sensor readings."""
        self.advance(1)
        assert self.last_frame is not None
        return self.last_frame

    def advance(self, n_steps: int) -> tuple[FloatArray, FloatArray]:
        """Advance ``n_steps`` under the held command; ground truth (steps, sites, log columns)
        and readings (steps, sites, points). ``last_log`` and ``last_frame`` hold the last step.
        """
        if n_steps < 1 or self.step_index + n_steps > self.n_steps:
            raise RuntimeError(
                f"cannot advance {n_steps} step(s): {self.n_steps - self.step_index} remain"
            )
        logs = np.empty((n_steps, self.n_sites, len(self.log_names)))
        readings = np.empty((n_steps, self.n_sites, len(self.point_names)))
        quality = np.empty(readings.shape, dtype=bool)
        n_points = len(self.point_names)
        done = 0
        while done < n_steps:
            first = self.step_index
            chunk = self._chunk_length(first, n_steps - done)
            effects = self.faults.effects_at(self.time_s / 3600.0)
            part = slice(done, done + chunk)
            logs[part] = self._engine.run(first, chunk, effects)
            self.step_index += chunk
            times_s = (np.arange(chunk, dtype=np.float64) + first + 1) * self.step_s
            truth = np.ascontiguousarray(logs[part, :, -n_points:])
            readings[part], quality[part] = self.sensors.read_many(truth, times_s, effects)
            done += chunk
        self.last_log = logs[-1]
        self.last_frame = SensorFrame(
            time_s=self.time_s, names=self.point_names, values=readings[-1], quality=quality[-1]
        )
        return logs, readings

    # ------------------------------------------------------------------ internals
    def _fault_change_steps(self) -> NDArray[np.int64]:
        """Steps at which the set of active faults changes (chunks never straddle one)."""
        hours = np.arange(self.n_steps) * self.step_s / 3600.0
        # FaultEvent.active is start <= t < end: the first step at or after each edge.
        edges = [e.start_h for e in self.faults.events] + [
            e.start_h + e.duration_h for e in self.faults.events if e.duration_h is not None
        ]
        steps = np.searchsorted(hours, np.asarray(edges, dtype=np.float64), side="left")
        return np.unique(steps[(steps > 0) & (steps < self.n_steps)]).astype(np.int64)

    def _chunk_length(self, first: int, most: int) -> int:
        """Steps from ``first`` that share fault effects (sensor faults apply per chunk)."""
        later = self._fault_changes[self._fault_changes > first]
        end = min(first + most, int(later[0])) if later.size else first + most
        return max(end - first, 1)
