"""The plant: the reference data center as a simulator that stands in for a real site.

``Plant.step`` advances every site by one internal step (60 s by default). Order within a
step: setpoints (command or site control) → servers → CRAH fans, supply-air loop and coils →
room air → chilled-water loop, economiser and chillers (with staging timers) → condenser
water and tower → pumps → power chain → sensors. Water and room nodes are integrated
exactly over the step; the plenum and condenser-water temperatures lag one step.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np
from numpy.typing import NDArray

from physics import chilled_water as chw
from physics import cooling_tower as ct
from physics import crah
from physics.chiller import (
    ChillerStagingState,
    StagingParams,
    capft,
    chiller_power_kw,
    stage_chillers,
    update_staging,
)
from physics.constants import CP_AIR_KJ_KG_K, CP_WATER_KJ_KG_K
from physics.economiser import economiser_heat_kw
from physics.plant.faults import FaultEffects, FaultEvent, FaultSchedule
from physics.plant.kernel import CompiledStepper
from physics.plant.sensors import SensorFrame, SensorModel, SensorNoise, point_catalog
from physics.plant.site import SiteConfig, draw_hidden_params
from physics.plant.site_control import (
    SETPOINT_FIELDS,
    SetpointCommand,
    Setpoints,
    resolve_setpoints,
    site_setpoints,
)
from physics.power_chain import PowerChainFlows, power_chain
from physics.pumps import pump_power_kw
from physics.room_air import RoomState, RoomStep, room_air_step
from physics.servers import server_operating_point
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


@dataclass
class _State:
    room: RoomState
    rack_inlet_c: FloatArray
    chw_supply_c: FloatArray
    chw_return_c: FloatArray
    cw_supply_c: FloatArray
    staging: ChillerStagingState
    setpoints: Setpoints | None
    plenum_heat_kw: FloatArray
    tower_range_k: FloatArray
    supply_main_c: FloatArray
    """Supply-main segment temperatures, (segments, sites)."""


@dataclass(frozen=True)
class _Weather:
    dry_bulb_c: FloatArray
    wet_bulb_c: FloatArray
    rel_hum_frac: FloatArray


@dataclass(frozen=True)
class _AirSide:
    airflow_kg_s: FloatArray  # (sites, units)
    fan_kw: FloatArray  # (sites, units)
    water_kg_s: FloatArray  # (sites, units)
    coil_heat_kw: FloatArray  # (sites,)
    supply_air_c: FloatArray
    coil_return_c: FloatArray


@dataclass(frozen=True)
class _WaterSide:
    staging: ChillerStagingState
    demand_kw: FloatArray
    primary_kg_s: FloatArray
    ret: chw.TankStep
    main: chw.TankStep
    supply: chw.TankStep
    economiser_on: NDArray[np.bool_]
    economiser_heat_kw: FloatArray
    chiller_load_kw: FloatArray
    chiller_kw_each: FloatArray  # (sites, chillers)
    pump_kw: FloatArray


@dataclass(frozen=True)
class _CondenserSide:
    cells: NDArray[np.int64]
    return_c: FloatArray
    leaving_c: FloatArray
    fan_ratio: FloatArray
    fan_kw: FloatArray
    pump_kw: FloatArray
    heat_kw: FloatArray
    water_use_kg_s: FloatArray


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
    side by side). ``engine`` chooses this module's numpy step (the reference) or the
    compiled step of :mod:`physics.plant.kernel`, which is held to it by tests.
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
        engine: Literal["numpy", "numba"] = "numpy",
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
        self._hidden = draw_hidden_params(config, seeds)
        self.faults = FaultSchedule(
            faults, n_crah=config.n_crah, n_chillers=config.n_chillers, n_pods=config.n_pods
        )
        self.sensors = SensorModel(
            point_catalog(config), noise or SensorNoise(), self._hidden.seeds
        )
        self.point_names = self.sensors.names
        self.log_names: tuple[str, ...] = (
            *ENERGY_COLUMNS,
            *(f"sp.{name}" for name in SETPOINT_FIELDS),
            *self.point_names,
        )
        if starts.shape[0] not in (1, self._hidden.n_sites):
            raise ValueError("start_h needs one value or one per site")
        self.site_start_h = np.broadcast_to(starts, (self._hidden.n_sites,)).copy()
        elapsed_h = np.arange(self.n_steps) * self.step_s / 3600.0
        self._weather = weather.at(elapsed_h[:, None] + self.site_start_h[None, :])
        self._util = np.clip(util, 0.0, 1.0)
        self._staging_params = StagingParams(
            min_on_time_s=config.chiller_min_on_s,
            min_off_time_s=config.chiller_min_off_s,
            restart_delay_s=config.chiller_restart_delay_s,
        )
        self.n_sites = self._hidden.n_sites
        self.command: SetpointCommand | None = None
        self.step_index = 0
        self._state = self._initial_state()
        self.last_log: FloatArray = np.zeros((self.n_sites, len(self.log_names)))
        self.last_frame: SensorFrame | None = None
        self._fault_changes = self._fault_change_steps()
        self._compiled: CompiledStepper | None = None
        if engine == "numba":
            self._compiled = CompiledStepper(
                config,
                self._hidden,
                self._state,
                step_s=self.step_s,
                site_start_h=self.site_start_h,
                dry_bulb_c=self._weather.dry_bulb_c,
                wet_bulb_c=self._weather.wet_bulb_c,
                rel_hum_frac=self._weather.rel_hum_frac,
                utilisation=self._util,
                n_log=len(self.log_names),
            )
            if warmup_steps > 0:
                raw, _ = self._raw_setpoints(np.zeros(warmup_steps, dtype=np.int64))
                self._compiled.run(
                    0, raw, False, self.faults.effects_at(0.0), record=False, repeat_first=True
                )
        elif engine != "numpy":
            raise ValueError(f"unknown plant engine {engine!r} (numpy or numba)")
        else:
            for _ in range(warmup_steps):
                self._advance(0, self.faults.effects_at(0.0), record=False)
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
        done = 0
        while done < n_steps:
            first = self.step_index
            chunk = self._chunk_length(first, n_steps - done)
            effects = self.faults.effects_at(self.time_s / 3600.0)
            part = slice(done, done + chunk)
            if self._compiled is not None:
                raw, active = self._raw_setpoints(np.arange(first, first + chunk))
                logs[part] = self._compiled.run(first, raw, active, effects)
                self.step_index += chunk
            else:
                for i in range(chunk):
                    self._advance(self.step_index, effects, record=True)
                    logs[done + i] = self.last_log
                    self.step_index += 1
            times_s = (np.arange(chunk, dtype=np.float64) + first + 1) * self.step_s
            truth = np.ascontiguousarray(logs[part, :, -len(self.point_names) :])
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
        """Steps from ``first`` that share fault effects and the command's validity."""
        end = first + most
        later = self._fault_changes[self._fault_changes > first]
        if later.size:
            end = min(end, int(later[0]))
        if self.command is not None and self.command.valid_at(first * self.step_s):
            expiry = first + 1
            while expiry < end and self.command.valid_at(expiry * self.step_s):
                expiry += 1
            end = min(end, expiry)
        return max(end - first, 1)

    def _raw_setpoints(self, steps: NDArray[np.int64]) -> tuple[FloatArray, bool]:
        """Setpoints before dead-bands for ``steps`` (one command validity), (steps, sites, 5)."""
        site = site_setpoints(self.config.defaults, self._weather.wet_bulb_c[steps])
        time_s = float(steps[0]) * self.step_s
        resolved, active = resolve_setpoints(self.command, time_s, site, None, self.config.limits)
        raw = np.stack([getattr(resolved, name) for name in SETPOINT_FIELDS], axis=-1)
        return raw, active

    def _initial_state(self) -> _State:
        cfg, b = self.config, self.n_sites
        shape = (b, cfg.n_pods, cfg.racks_per_pod)
        supply = np.full(b, cfg.defaults.supply_air_c)
        return _State(
            room=RoomState(
                server_c=np.full(shape, cfg.defaults.supply_air_c + 11.0),
                structure_c=supply + 8.0,
                return_air_c=supply + 9.0,
            ),
            rack_inlet_c=np.full(shape, cfg.defaults.supply_air_c + 0.5),
            chw_supply_c=np.full(b, cfg.defaults.chw_supply_c),
            chw_return_c=np.full(b, cfg.defaults.chw_supply_c + 5.0),
            cw_supply_c=np.full(b, cfg.defaults.cw_supply_c),
            staging=ChillerStagingState.all_off(cfg.n_chillers, (b,)),
            setpoints=None,
            plenum_heat_kw=np.full(b, 60.0),
            tower_range_k=np.full(b, 5.0),
            supply_main_c=np.full(
                (cfg.chw_loop.supply_main_segments, b), cfg.defaults.chw_supply_c
            ),
        )

    def _advance(self, k: int, fx: FaultEffects, *, record: bool) -> None:
        cfg, hid, st, dt = self.config, self._hidden, self._state, self.step_s
        weather = _Weather(
            dry_bulb_c=self._weather.dry_bulb_c[k],
            wet_bulb_c=self._weather.wet_bulb_c[k],
            rel_hum_frac=self._weather.rel_hum_frac[k],
        )
        site = site_setpoints(cfg.defaults, weather.wet_bulb_c)
        sp, command_active = resolve_setpoints(
            self.command, self.time_s, site, st.setpoints, cfg.limits
        )

        # Servers (fans and leakage respond to last step's inlet temperature).
        util = np.clip(self._util[k] + fx.util_delta, 0.0, 1.0)
        servers = server_operating_point(
            cfg.server, util[None, :, None], st.rack_inlet_c, hid.rack_power_scale
        )
        air = self._air_handlers(sp, fx)
        room = room_air_step(
            cfg.room,
            st.room,
            supply_air_c=air.supply_air_c,
            pod_supply_airflow_kg_s=air.airflow_kg_s.sum(axis=1)[:, None] * hid.pod_airflow_share,
            rack_power_kw=servers.power_kw,
            rack_airflow_kg_s=servers.airflow_kg_s,
            rack_recirc_frac=hid.rack_recirc_frac + fx.pod_extra_recirc[None, :, None],
            cross_recirc_frac=hid.cross_recirc_frac,
            server_capacity_kj_k=hid.server_capacity_kj_k,
            plenum_heat_kw=st.plenum_heat_kw,
            outdoor_c=weather.dry_bulb_c,
            dt_s=dt,
            structure_capacity_kj_k=cfg.room.structure_capacity_kj_k * hid.structure_capacity_mult,
        )
        water = self._chilled_water(sp, fx, air)
        cond = self._condenser(sp, fx, water, weather.wet_bulb_c)

        it_kw = servers.power_kw.sum(axis=(1, 2))
        mechanical = (
            water.chiller_kw_each.sum(axis=1)
            + air.fan_kw.sum(axis=1)
            + water.pump_kw
            + cond.pump_kw
            + cond.fan_kw
        )
        flows = power_chain(cfg.power_chain, it_kw, mechanical)
        if record:
            self.last_log = self._truth_row(
                sp, command_active, weather, servers.power_kw, air, room, water, cond, flows
            )
        self._state = _State(
            room=room.state,
            rack_inlet_c=room.rack_inlet_c,
            chw_supply_c=water.supply.temp_c,
            chw_return_c=water.ret.temp_c,
            cw_supply_c=cond.leaving_c,
            staging=water.staging,
            setpoints=sp,
            plenum_heat_kw=flows.pdu_loss_kw + flows.ups_loss_kw + flows.lighting_kw,
            tower_range_k=np.where(
                cond.cells > 0, np.maximum(cond.return_c - cond.leaving_c, 0.5), 5.0
            ),
            supply_main_c=water.main.temp_c,
        )

    def _air_handlers(self, sp: Setpoints, fx: FaultEffects) -> _AirSide:
        """CRAH fans, the supply-air loop on each valve, and the coils."""
        cfg, st, b = self.config, self._state, self.n_sites
        running = np.broadcast_to(fx.crah_running, (b, cfg.n_crah))
        speed = np.broadcast_to(sp.fan_speed_frac[:, None], (b, cfg.n_crah))
        airflow = np.where(running, crah.fan_airflow_kg_s(cfg.crah, speed), 0.0)
        fan_kw = np.where(running, crah.fan_power_kw(cfg.crah, speed), 0.0)
        fan_rise = fan_kw / np.maximum(airflow * CP_AIR_KJ_KG_K, 1e-9)
        ua_mult = self._hidden.crah_ua_mult * fx.crah_ua_mult
        air_in = np.broadcast_to(st.room.return_air_c[:, None], (b, cfg.n_crah))
        water_in = np.broadcast_to(st.chw_supply_c[:, None], (b, cfg.n_crah))
        water = crah.valve_water_flow_for_setpoint(
            cfg.crah, air_in, water_in, airflow, sp.supply_air_c[:, None] - fan_rise, ua_mult
        )
        stuck = np.isfinite(fx.crah_stuck_valve)
        water = np.where(
            stuck, np.nan_to_num(fx.crah_stuck_valve) * cfg.crah.max_water_flow_kg_s, water
        )
        water = np.where(running, water, 0.0)
        coil_leave = crah.coil_leaving_air_c(cfg.crah, air_in, water_in, airflow, water, ua_mult)
        coil_heat = airflow * CP_AIR_KJ_KG_K * (air_in - coil_leave)
        total_air = airflow.sum(axis=1)
        supply_air = np.where(
            total_air > 0,
            ((coil_leave + fan_rise) * airflow).sum(axis=1) / np.maximum(total_air, 1e-9),
            st.room.return_air_c,
        )
        coil_water = water.sum(axis=1)
        coil_return = st.chw_supply_c + coil_heat.sum(axis=1) / np.maximum(
            coil_water * CP_WATER_KJ_KG_K, 1e-9
        )
        return _AirSide(
            airflow_kg_s=airflow,
            fan_kw=fan_kw,
            water_kg_s=water,
            coil_heat_kw=coil_heat.sum(axis=1),
            supply_air_c=supply_air,
            coil_return_c=coil_return,
        )

    def _chilled_water(self, sp: Setpoints, fx: FaultEffects, air: _AirSide) -> _WaterSide:
        """Staging, return mixing, economiser, chillers, supply main and volume, pump."""
        cfg, hid, st, dt, b = self.config, self._hidden, self._state, self.step_s, self.n_sites
        loop = cfg.chw_loop
        cw_enter = st.cw_supply_c[:, None] + fx.condenser_lift_k
        cap_each = (
            cfg.chiller.ref_capacity_kw
            * hid.chiller_cap_mult
            * capft(cfg.chiller.curves, sp.chw_supply_c[:, None], cw_enter)
        )
        # A chiller is out when tripped by a fault or when its condenser water is above the
        # high-pressure cut-out; staging then holds it off for the restart delay.
        available = ~np.broadcast_to(fx.chiller_tripped, (b, cfg.n_chillers)) & (
            cw_enter <= cfg.chiller_max_condenser_c
        )
        warm_k = np.maximum(st.chw_supply_c - sp.chw_supply_c, 0.0)
        demand = air.coil_heat_kw + warm_k * cfg.chiller_stage_recovery_kw_per_k
        request = stage_chillers(
            demand, cap_each.mean(axis=1), available.sum(axis=1), cfg.chiller_stage_up_frac
        )
        staging = update_staging(st.staging, request, available, dt, self._staging_params)
        on = staging.on
        coil_water = air.water_kg_s.sum(axis=1)
        primary = chw.primary_flow_kg_s(coil_water, on.sum(axis=1), loop)
        mixed = chw.mixed_return_c(air.coil_return_c, coil_water, st.chw_supply_c, primary)
        ret = chw.mixed_tank_step(st.chw_return_c, mixed, primary, loop.return_mass_kg, dt)
        eco_on = (sp.economiser_enable > 0.5) & (st.cw_supply_c < ret.temp_c)
        cw_flow_eco = np.where(eco_on, cfg.cw_flow_per_chiller_kg_s, 0.0)
        eco = economiser_heat_kw(
            cfg.economiser_effectiveness, eco_on, ret.temp_c, primary, st.cw_supply_c, cw_flow_eco
        )
        capacity = (cap_each * on).sum(axis=1)
        leave = chw.chiller_leaving_c(eco.chw_leave_c, primary, sp.chw_supply_c, capacity)
        load = primary * CP_WATER_KJ_KG_K * (eco.chw_leave_c - leave)
        share = np.where(on, cap_each, 0.0) / np.maximum(capacity, 1e-9)[:, None]
        chiller_kw_each = chiller_power_kw(
            cfg.chiller,
            load[:, None] * share,
            leave[:, None],
            cw_enter,
            cap_scale=hid.chiller_cap_mult,
            eir_scale=hid.chiller_eir_mult,
        ).power_kw
        main = chw.segmented_main_step(
            st.supply_main_c, leave, primary, loop.supply_main_mass_kg, dt
        )
        supply = chw.mixed_tank_step(
            st.chw_supply_c, main.temp_c[-1], primary, loop.supply_mass_kg, dt
        )
        pump_kw = pump_power_kw(
            cfg.chw_pump_design_kw,
            primary / loop.design_flow_kg_s,
            efficiency_multiplier=fx.pump_efficiency_mult,
        )
        return _WaterSide(
            staging=staging,
            demand_kw=demand,
            primary_kg_s=primary,
            ret=ret,
            main=main,
            supply=supply,
            economiser_on=eco_on,
            economiser_heat_kw=eco.heat_kw,
            chiller_load_kw=load,
            chiller_kw_each=chiller_kw_each,
            pump_kw=pump_kw,
        )

    def _condenser(
        self, sp: Setpoints, fx: FaultEffects, water: _WaterSide, wet_bulb_c: FloatArray
    ) -> _CondenserSide:
        """Condenser water and the tower (cells staged with the chillers or the economiser)."""
        cfg, st = self.config, self._state
        # Condenser pumps and tower cells follow the chillers; one keeps circulating while
        # chillers are wanted but held off (e.g. after a high-pressure cut-out).
        wanted = np.maximum(water.economiser_on.astype(int), (water.demand_kw > 0).astype(int))
        cells = np.maximum(water.staging.on.sum(axis=1), wanted)
        cw_flow = cells * cfg.cw_flow_per_chiller_kg_s
        tower_heat = (
            water.chiller_load_kw + water.chiller_kw_each.sum(axis=1) + water.economiser_heat_kw
        )
        cw_return = st.cw_supply_c + tower_heat / np.maximum(cw_flow * CP_WATER_KJ_KG_K, 1e-9)
        flow_ratio = np.where(cells > 0, 1.0, 0.0)
        bias = self._hidden.tower_approach_bias_k
        target_approach = sp.cw_supply_c - wet_bulb_c - bias
        ratio = np.minimum(
            ct.airflow_ratio_for_approach(
                cfg.tower, wet_bulb_c, st.tower_range_k, flow_ratio, target_approach
            ),
            fx.tower_fan_max_frac,
        )
        if fx.tower_fan_max_frac > 0:
            approach = ct.approach_k(
                wet_bulb_c, st.tower_range_k, flow_ratio, np.maximum(ratio, 1e-3)
            )
            leaving = wet_bulb_c + np.maximum(approach + bias, target_approach)
            fan_kw = np.where(cells > 0, cells * ct.tower_fan_power_kw(cfg.tower, ratio), 0.0)
        else:  # fans failed: free convection does a fraction of the full-fan temperature drop
            full_fan = ct.approach_k(wet_bulb_c, st.tower_range_k, flow_ratio, 1.0)
            leaving = cw_return - cfg.tower.free_convection_frac * (
                cw_return - (wet_bulb_c + full_fan + bias)
            )
            fan_kw = np.zeros_like(cw_return)
        leaving = np.where(cells > 0, np.minimum(leaving, cw_return), st.cw_supply_c)
        return _CondenserSide(
            cells=cells,
            return_c=cw_return,
            leaving_c=leaving,
            fan_ratio=ratio * (cells > 0),
            fan_kw=fan_kw,
            pump_kw=cells * cfg.cw_pump_kw_per_chiller,
            heat_kw=tower_heat,
            water_use_kg_s=ct.tower_water_use_kg_s(cfg.tower, tower_heat, cw_flow).total_kg_s,
        )

    def _truth_row(
        self,
        sp: Setpoints,
        command_active: bool,
        weather: _Weather,
        rack_power_kw: FloatArray,
        air: _AirSide,
        room: RoomStep,
        water: _WaterSide,
        cond: _CondenserSide,
        flows: PowerChainFlows,
    ) -> FloatArray:
        """Ground truth in ``log_names`` order: energy columns, setpoints, sensor points."""
        cfg, st, b = self.config, self._state, self.n_sites
        it_kw = rack_power_kw.sum(axis=(1, 2))
        chiller_kw = water.chiller_kw_each.sum(axis=1)
        crah_fan_kw = air.fan_kw.sum(axis=1)
        total_air = air.airflow_kg_s.sum(axis=1)
        room_stored = (
            self._hidden.server_capacity_kj_k
            * (room.state.server_c - st.room.server_c)
            / self.step_s
        ).sum(axis=(1, 2)) + (room.structure_gain_kw + room.envelope_gain_kw)
        energy = (
            self.site_start_h + self.time_s / 3600.0,
            it_kw,
            chiller_kw,
            np.zeros(b),
            flows.ups_loss_kw,
            flows.pdu_loss_kw,
            flows.transformer_loss_kw,
            flows.lighting_kw,
            flows.aux_kw,
            cond.water_use_kg_s,
            air.coil_heat_kw,
            crah_fan_kw,
            it_kw + st.plenum_heat_kw + room.envelope_gain_kw,
            room_stored,
            water.chiller_load_kw,
            water.economiser_heat_kw,
            water.ret.stored_kw + water.supply.stored_kw + water.main.stored_kw,
            cond.heat_kw,
            np.full(b, float(command_active)),
        )
        points = (
            room.rack_inlet_c.reshape(b, -1),
            room.hot_aisle_c,
            rack_power_kw.sum(axis=2),
            air.supply_air_c[:, None],
            st.room.return_air_c[:, None],
            np.where(total_air > 0, sp.fan_speed_frac, 0.0)[:, None],
            crah_fan_kw[:, None],
            total_air[:, None],
            air.water_kg_s / cfg.crah.max_water_flow_kg_s,
            water.supply.temp_c[:, None],
            water.ret.temp_c[:, None],
            water.primary_kg_s[:, None],
            water.pump_kw[:, None],
            water.chiller_kw_each,
            water.staging.on.sum(axis=1)[:, None].astype(float),
            cond.leaving_c[:, None],
            cond.return_c[:, None],
            cond.pump_kw[:, None],
            cond.fan_kw[:, None],
            cond.fan_ratio[:, None],
            water.economiser_on[:, None].astype(float),
            (it_kw + flows.pdu_loss_kw)[:, None],
            flows.facility_kw[:, None],
            weather.dry_bulb_c[:, None],
            weather.wet_bulb_c[:, None],
            weather.rel_hum_frac[:, None],
        )
        return np.concatenate([np.stack(energy, axis=1), sp.as_matrix(), *points], axis=1)
