"""The plant's step: the models of :mod:`physics` composed into one compiled loop.

This is the only composition of a plant step. Each physical model (servers, CRAH coils and
valves, the hall's air, the chilled-water loop, chillers and their staging, the economiser,
the tower, pumps, the power chain, the site's own control) is a compiled scalar function in
its own module (see :mod:`physics.compiled`); this module calls them in the order of a step
and keeps the plant's state between calls. Order within a step: setpoints (command or site
control, dead-bands) → servers → CRAH fans, supply-air loop and coils → room air →
chilled-water loop, economiser and chillers (with staging timers) → condenser water and
tower → pumps → power chain → ground-truth row. Water and room nodes are integrated exactly
over the step; the plenum and condenser-water temperatures lag one step.

Everything crosses into compiled code as named structures: :class:`Design` (the site's
parameter records), :class:`Drivers` (weather and load over the run), the hidden-parameter
and fault-effect records, :class:`Command`, :class:`PlantState` (updated in place) and
:class:`LogLayout` (where each ground-truth column goes, derived from the column names).
"""

from __future__ import annotations

import math
from typing import Any, NamedTuple

import numpy as np
from numpy.typing import NDArray

from physics import chilled_water as chw
from physics import chiller, cooling_tower, crah, economiser, power_chain, pumps, servers
from physics.chiller import StagingParams
from physics.compiled import as_record, jit_inline, jit_loop, record_type
from physics.constants import CP_AIR_KJ_KG_K, CP_WATER_KJ_KG_K
from physics.plant.faults import FaultEffects
from physics.plant.site import HiddenParams, SiteConfig
from physics.plant.site_control import economiser_enable_step, resolve, site_control
from physics.room_air import hall_step

FloatArray = NDArray[np.float64]

FaultEffectsRecord = record_type(
    FaultEffects, exclude=("sensor_bias", "sensor_stuck"), module=__name__
)


class Design(NamedTuple):
    """The site's equipment as compiled code reads it."""

    site: Any
    """:class:`SiteConfig` as a record (``site.crah.design_airflow_kg_s``, ...)."""
    staging: Any
    """:class:`StagingParams` of the chiller plant as a record."""
    valve_terms: FloatArray
    """The CRAH valve solve's tabulated water-side terms (:func:`crah.valve_water_terms`)."""
    step_s: float

    @classmethod
    def of(cls, config: SiteConfig, step_s: float) -> Design:
        staging = StagingParams(
            min_on_time_s=config.chiller_min_on_s,
            min_off_time_s=config.chiller_min_off_s,
            restart_delay_s=config.chiller_restart_delay_s,
        )
        return cls(
            as_record(config), as_record(staging), crah.valve_water_terms(config.crah), step_s
        )


class Drivers(NamedTuple):
    """What drives the plant over the whole run, one row per internal step."""

    dry_bulb_c: FloatArray  # (steps, sites)
    wet_bulb_c: FloatArray  # (steps, sites)
    rel_hum_frac: FloatArray  # (steps, sites)
    utilisation: FloatArray  # (steps, pods)
    site_start_h: FloatArray  # (sites,) hour of the weather year at step 0


class Command(NamedTuple):
    """The command held by the plant: values per site (NaN = not given) and its expiry."""

    values: FloatArray  # (sites, 5) in SETPOINT_FIELDS order
    expires_at_s: float


class PlantState(NamedTuple):
    """Every state variable of the plant, one row per site; updated in place by a step."""

    server_c: FloatArray  # (sites, pods, racks) server node = rack exhaust
    structure_c: FloatArray  # (sites,)
    return_air_c: FloatArray  # (sites,) return plenum, reaches the coils next step
    rack_inlet_c: FloatArray  # (sites, pods, racks) last step's inlets (server response)
    chw_supply_c: FloatArray  # (sites,)
    chw_return_c: FloatArray  # (sites,)
    cw_supply_c: FloatArray  # (sites,) condenser water leaving the tower
    chiller_on: NDArray[np.bool_]  # (sites, chillers)
    time_in_state_s: FloatArray  # (sites, chillers)
    restart_timer_s: FloatArray  # (sites, chillers)
    applied: FloatArray  # (sites, 5) setpoints applied last step (dead-band reference)
    has_applied: NDArray[np.bool_]  # (1,) whether ``applied`` holds a step's setpoints
    plenum_heat_kw: FloatArray  # (sites,) PDU/UPS losses and lighting into the plenum
    tower_range_k: FloatArray  # (sites,) last step's tower range
    supply_main_c: FloatArray  # (sites, segments) the supply main's mixed segments
    economiser_enabled: NDArray[np.bool_]  # (sites,) the site control's economiser enable
    economiser_since_s: FloatArray  # (sites,) time since the enable last switched
    economiser_unhelpful_s: FloatArray  # (sites,) time predicted unhelpful while enabled

    @classmethod
    def initial(cls, config: SiteConfig, n_sites: int) -> PlantState:
        """A plant at its default setpoints with every chiller off and free to start."""
        d, b = config.defaults, n_sites
        shape = (b, config.n_pods, config.racks_per_pod)
        supply = np.full(b, d.supply_air_c)
        chillers = (b, config.n_chillers)
        return cls(
            server_c=np.full(shape, d.supply_air_c + 11.0),
            structure_c=supply + 8.0,
            return_air_c=supply + 9.0,
            rack_inlet_c=np.full(shape, d.supply_air_c + 0.5),
            chw_supply_c=np.full(b, d.chw_supply_c),
            chw_return_c=np.full(b, d.chw_supply_c + 5.0),
            cw_supply_c=np.full(b, d.cw_supply_c),
            chiller_on=np.zeros(chillers, dtype=np.bool_),
            time_in_state_s=np.full(chillers, np.inf),
            restart_timer_s=np.zeros(chillers),
            applied=np.zeros((b, 5)),
            has_applied=np.zeros(1, dtype=np.bool_),
            plenum_heat_kw=np.full(b, 60.0),
            tower_range_k=np.full(b, 5.0),
            supply_main_c=np.full((b, config.chw_loop.supply_main_segments), d.chw_supply_c),
            economiser_enabled=np.zeros(b, dtype=np.bool_),
            economiser_since_s=np.full(b, d.economiser_hold_s),
            economiser_unhelpful_s=np.zeros(b),
        )


class LogLayout(NamedTuple):
    """Column of each ground-truth quantity in a log row (first column of a block)."""

    time_h: int
    it_power_kw: int
    chiller_power_kw: int
    economiser_power_kw: int
    ups_loss_kw: int
    pdu_loss_kw: int
    transformer_loss_kw: int
    lighting_kw: int
    aux_kw: int
    water_use_kg_s: int
    coil_heat_kw: int
    crah_fan_heat_kw: int
    room_gain_kw: int
    room_stored_kw: int
    chiller_load_kw: int
    economiser_heat_kw: int
    chw_stored_kw: int
    tower_heat_kw: int
    command_active: int
    setpoints: int
    rack_inlet_c: int
    hot_aisle_c: int
    pod_it_power_kw: int
    supply_air_c: int
    return_air_c: int
    crah_fan_speed_frac: int
    crah_fan_power_kw: int
    crah_airflow_kg_s: int
    crah_valve_frac: int
    crah_running: int
    chw_supply_c: int
    chw_return_c: int
    chw_flow_kg_s: int
    chw_pump_power_kw: int
    unit_chiller_power_kw: int
    chiller_running: int
    chiller_alarm: int
    chillers_on: int
    cw_supply_c: int
    cw_return_c: int
    cw_pump_power_kw: int
    tower_fan_power_kw: int
    tower_fan_speed_frac: int
    tower_fan_alarm: int
    economiser_enabled: int
    ups_output_kw: int
    facility_power_kw: int
    outdoor_dry_bulb_c: int
    outdoor_wet_bulb_c: int
    outdoor_rel_hum_frac: int

    @classmethod
    def of(cls, names: tuple[str, ...]) -> LogLayout:
        """Columns found by name in the plant's ``log_names``."""
        blocks = {
            "setpoints": "sp.supply_air_c",
            "rack_inlet_c": "rack_inlet_c.0.00",
            "hot_aisle_c": "hot_aisle_c.0",
            "pod_it_power_kw": "it_power_kw.0",
            "crah_valve_frac": "crah_valve_frac.00",
            "crah_running": "crah_running.00",
            "unit_chiller_power_kw": "chiller_power_kw.0",
            "chiller_running": "chiller_running.0",
            "chiller_alarm": "chiller_alarm.0",
        }
        index = {name: i for i, name in enumerate(names)}
        return cls(*(index[blocks.get(field, field)] for field in cls._fields))


# ---------------------------------------------------------------------------- the step
class _Scratch(NamedTuple):
    """Per-call work arrays of the step (allocated once per call, reused by every step)."""

    setpoints: FloatArray  # (5,)
    site: FloatArray  # (5,)
    rack_power_kw: FloatArray  # (pods, racks)
    rack_airflow_kg_s: FloatArray  # (pods, racks)
    rack_recirc_frac: FloatArray  # (pods, racks)
    pod_supply_kg_s: FloatArray  # (pods,)
    hot_aisle_c: FloatArray  # (pods,)
    bypass_kg_s: FloatArray  # (pods,)
    extra_recirc_frac: FloatArray  # (pods,)
    room_work: FloatArray  # (4, pods)
    unit_airflow_kg_s: FloatArray  # (crah,)
    unit_water_kg_s: FloatArray  # (crah,)
    capacity_kw: FloatArray  # (chillers,)
    cw_enter_c: FloatArray  # (chillers,)
    available: NDArray[np.bool_]  # (chillers,)
    chiller_kw: FloatArray  # (chillers,)


def _scratch(n_pods: int, n_racks: int, n_crah: int, n_chillers: int) -> _Scratch:
    return _Scratch(
        np.empty(5),
        np.empty(5),
        np.empty((n_pods, n_racks)),
        np.empty((n_pods, n_racks)),
        np.empty((n_pods, n_racks)),
        np.empty(n_pods),
        np.empty(n_pods),
        np.empty(n_pods),
        np.empty(n_pods),
        np.empty((4, n_pods)),
        np.empty(n_crah),
        np.empty(n_crah),
        np.empty(n_chillers),
        np.empty(n_chillers),
        np.empty(n_chillers, dtype=np.bool_),
        np.empty(n_chillers),
    )


@jit_inline
def _servers(d: Design, h: Any, fx: Any, st: PlantState, util: Any, b: int, w: _Scratch) -> float:
    """Rack power and airflow (fans and leakage respond to last step's inlets); IT kW."""
    # Arrays are taken out of the structures once: reading one through a tuple inside a
    # loop costs an atomic reference count per iteration.
    p = d.site.server
    surge, inlets, scale = fx.util_delta, st.rack_inlet_c[b], h.rack_power_scale[b]
    power_kw, airflow_kg_s = w.rack_power_kw, w.rack_airflow_kg_s
    it_kw = 0.0
    n_pods, n_racks = power_kw.shape
    for q in range(n_pods):
        frac = servers.power_frac(p.idle_frac, util[q] + surge[q])
        for r in range(n_racks):
            power, _, airflow = servers.rack_operating_point(p, frac, inlets[q, r], scale[q, r])
            power_kw[q, r] = power
            airflow_kg_s[q, r] = airflow
            it_kw += power
    return it_kw


@jit_inline
def _air_handlers(
    d: Design, h: Any, fx: Any, st: PlantState, b: int, w: _Scratch
) -> tuple[float, float, float, float, float, float, float]:
    """CRAH fans, the supply-air loop on each valve and the coils: total airflow, fan kW,
    coil heat, coil water flow, mixed supply air, the coils' mixed water return and the
    running units' fan speed."""
    p = d.site.crah
    air_in = st.return_air_c[b]
    water_in = st.chw_supply_c[b]
    fan_sp, supply_sp = w.setpoints[1], w.setpoints[0]
    running_units, stuck, fouling = fx.crah_running, fx.crah_stuck_valve, fx.crah_ua_mult
    site_ua, terms = h.crah_ua_mult[b], d.valve_terms
    unit_air, unit_water = w.unit_airflow_kg_s, w.unit_water_kg_s
    n_units = unit_air.shape[0]
    n_running = 0
    for i in range(n_units):
        n_running += int(running_units[i])
    # The BMS's failure sequence: when a unit trips, the others speed up to hold airflow.
    speed = min(fan_sp * n_units / n_running, 1.0) if 0 < n_running < n_units else fan_sp
    total_air = fan_kw_sum = coil_heat = coil_water = supply_num = 0.0
    for i in range(n_units):
        running = running_units[i]
        m_a = crah.fan_airflow(p, speed) if running else 0.0
        fan_kw = crah.fan_power(p, speed) if running else 0.0
        rise = fan_kw / max(m_a * CP_AIR_KJ_KG_K, 1e-9)  # the fan sits after the coil
        ua_mult = site_ua[i] * fouling[i]
        if not running:
            m_w = 0.0
        elif not math.isnan(stuck[i]):
            m_w = stuck[i] * p.max_water_flow_kg_s
        else:
            m_w = crah.valve_flow(p, terms, air_in, water_in, m_a, supply_sp - rise, ua_mult)
        leave = crah.coil_leaving(p, air_in, water_in, m_a, m_w, ua_mult)
        coil_heat += m_a * CP_AIR_KJ_KG_K * (air_in - leave)
        supply_num += (leave + rise) * m_a
        total_air += m_a
        coil_water += m_w
        fan_kw_sum += fan_kw
        unit_air[i] = m_a
        unit_water[i] = m_w
    supply_air = supply_num / max(total_air, 1e-9) if total_air > 0 else air_in
    coil_return = water_in + coil_heat / max(coil_water * CP_WATER_KJ_KG_K, 1e-9)
    return total_air, fan_kw_sum, coil_heat, coil_water, supply_air, coil_return, speed


@jit_inline
def _room(
    d: Design,
    h: Any,
    fx: Any,
    st: PlantState,
    b: int,
    w: _Scratch,
    supply_air_c: float,
    total_air: float,
    outdoor_c: float,
) -> tuple[float, float, float, float]:
    """The hall over the step (server nodes updated in place, inlets into the state):
    new structure and return-air temperatures, envelope gain and heat stored in the room."""
    recirc, pod_supply = w.rack_recirc_frac, w.pod_supply_kg_s
    site_recirc, share, door = h.rack_recirc_frac[b], h.pod_airflow_share[b], fx.pod_extra_recirc
    n_pods, n_racks = recirc.shape
    for q in range(n_pods):
        pod_supply[q] = total_air * share[q]
        for r in range(n_racks):
            recirc[q, r] = site_recirc[q, r] + door[q]
    structure, ret, struct_gain, env_gain, stored = hall_step(
        d.site.room,
        st.server_c[b],
        st.structure_c[b],
        supply_air_c,
        w.pod_supply_kg_s,
        w.rack_power_kw,
        w.rack_airflow_kg_s,
        w.rack_recirc_frac,
        h.cross_recirc_frac[b],
        h.server_capacity_kj_k[b],
        st.plenum_heat_kw[b],
        outdoor_c,
        d.step_s,
        d.site.room.structure_capacity_kj_k * h.structure_capacity_mult[b],
        st.rack_inlet_c[b],
        w.hot_aisle_c,
        w.bypass_kg_s,
        w.extra_recirc_frac,
        w.room_work,
    )
    return structure, ret, env_gain, stored + (struct_gain + env_gain)


@jit_inline
def _stage_chillers(
    d: Design, h: Any, fx: Any, st: PlantState, b: int, w: _Scratch, coil_heat: float
) -> float:
    """Chillers available and staged for the demand; the demand (kW) is returned.

    A chiller is out when tripped by a fault or when its condenser water is above the
    high-pressure cut-out; staging then holds it off for the restart delay.
    """
    s = d.site
    chw_sp = w.setpoints[2]
    cap, cw_enter, available = w.capacity_kw, w.cw_enter_c, w.available
    lift, tripped, cap_mult = fx.condenser_lift_k, fx.chiller_tripped, h.chiller_cap_mult[b]
    total_cap = 0.0
    n_available = 0
    for k in range(cap.shape[0]):
        cw_enter[k] = st.cw_supply_c[b] + lift[k]
        cap[k] = chiller.capacity(s.chiller, chw_sp, cw_enter[k], cap_mult[k])
        total_cap += cap[k]
        available[k] = not tripped[k] and cw_enter[k] <= s.chiller_max_condenser_c
        n_available += int(available[k])
    warm_k = max(st.chw_supply_c[b] - chw_sp, 0.0)
    demand = coil_heat + warm_k * s.chiller_stage_recovery_kw_per_k
    request = chiller.stage_request(
        demand, total_cap / cap.shape[0], n_available, s.chiller_stage_up_frac
    )
    chiller.advance_staging(
        d.staging,
        st.chiller_on[b],
        st.time_in_state_s[b],
        st.restart_timer_s[b],
        available,
        request,
        d.step_s,
    )
    return float(demand)


@jit_inline
def _chilled_water(
    d: Design,
    h: Any,
    fx: Any,
    st: PlantState,
    b: int,
    w: _Scratch,
    coil_water: float,
    coil_return: float,
) -> tuple[float, float, float, float, float, float, float, float, float, int]:
    """Return mixing, economiser, chillers, supply main and volume, pump. Returns primary
    flow, economiser heat, chiller load, chiller kW, pump kW, new supply and return
    temperatures, stored heat, whether the economiser ran and the chillers on."""
    s, dt = d.site, d.step_s
    loop = s.chw_loop
    supply_c = st.chw_supply_c[b]
    cap, on, unit_kw, cw_enter = w.capacity_kw, st.chiller_on[b], w.chiller_kw, w.cw_enter_c
    cap_mult, eir_mult = h.chiller_cap_mult[b], h.chiller_eir_mult[b]
    n_on = 0
    on_capacity = 0.0
    for k in range(cap.shape[0]):
        if on[k]:
            n_on += 1
            on_capacity += cap[k]
    primary = chw.primary_flow(coil_water, n_on, loop.min_flow_per_chiller_kg_s)
    mixed = chw.mixed_return(coil_return, coil_water, supply_c, primary)
    ret, ret_stored = chw.tank_step(st.chw_return_c[b], mixed, primary, loop.return_mass_kg, dt)
    eco_on = w.setpoints[4] > 0.5 and st.cw_supply_c[b] < ret
    eco_heat, eco_leave, _ = economiser.exchange(
        s.economiser_effectiveness,
        eco_on,
        ret,
        primary,
        st.cw_supply_c[b],
        s.cw_flow_per_chiller_kg_s if eco_on else 0.0,
    )
    leave = chw.chiller_leaving(eco_leave, primary, w.setpoints[2], on_capacity)
    load = primary * CP_WATER_KJ_KG_K * (eco_leave - leave)
    chiller_sum = 0.0
    for k in range(cap.shape[0]):
        share = (cap[k] if on[k] else 0.0) / max(on_capacity, 1e-9)
        unit_kw[k] = chiller.operating_point(
            s.chiller, max(load * share, 0.0), leave, cw_enter[k], cap_mult[k], eir_mult[k]
        )[2]
        chiller_sum += unit_kw[k]
    main = st.supply_main_c[b]
    main_stored = chw.main_step(main, leave, primary, loop.supply_main_mass_kg, dt)
    supply_new, supply_stored = chw.tank_step(supply_c, main[-1], primary, loop.supply_mass_kg, dt)
    pump_kw = pumps.variable_speed_power(
        s.chw_pump_design_kw, primary / loop.design_flow_kg_s, 0.3, 0.0, fx.pump_efficiency_mult
    )
    stored = ret_stored + supply_stored + main_stored
    return (
        primary,
        eco_heat,
        load,
        chiller_sum,
        pump_kw,
        supply_new,
        ret,
        stored,
        1.0 if eco_on else 0.0,
        n_on,
    )


@jit_inline
def _condenser(
    d: Design,
    h: Any,
    fx: Any,
    st: PlantState,
    b: int,
    wet_bulb_c: float,
    cw_setpoint_c: float,
    cells: int,
    tower_heat: float,
) -> tuple[float, float, float, float, float, float]:
    """Condenser water and the tower (cells staged with the chillers or the economiser):
    return and leaving water, fan ratio and kW, condenser pump kW, make-up water."""
    s = d.site
    cw_supply = st.cw_supply_c[b]
    cw_flow = cells * s.cw_flow_per_chiller_kg_s
    cw_return = cw_supply + tower_heat / max(cw_flow * CP_WATER_KJ_KG_K, 1e-9)
    flow_ratio = 1.0 if cells > 0 else 0.0
    bias = h.tower_approach_bias_k[b]
    target = cw_setpoint_c - wet_bulb_c - bias
    ratio = min(
        cooling_tower.airflow_for_approach(
            s.tower, wet_bulb_c, st.tower_range_k[b], flow_ratio, target
        ),
        fx.tower_fan_max_frac,
    )
    if fx.tower_fan_max_frac > 0:
        approach = cooling_tower.approach(
            wet_bulb_c, st.tower_range_k[b], flow_ratio, max(ratio, 1e-3)
        )
        leaving = wet_bulb_c + max(approach + bias, target)
        fan_kw = cells * cooling_tower.fan_power(s.tower, ratio) if cells > 0 else 0.0
    else:  # fans failed: free convection does a fraction of the full-fan temperature drop
        full_fan = cooling_tower.approach(wet_bulb_c, st.tower_range_k[b], flow_ratio, 1.0)
        leaving = cw_return - s.tower.free_convection_frac * (
            cw_return - (wet_bulb_c + full_fan + bias)
        )
        fan_kw = 0.0
    leaving = min(leaving, cw_return) if cells > 0 else cw_supply
    water_kg_s = cooling_tower.water_use(s.tower, tower_heat, cw_flow)[3]
    ratio_seen = ratio if cells > 0 else 0.0
    return cw_return, leaving, ratio_seen, fan_kw, cells * s.cw_pump_kw_per_chiller, water_kg_s


class _Step(NamedTuple):
    """One site's step, as the ground-truth row records it."""

    it_kw: float
    total_air: float
    fan_speed: float
    crah_fan_kw: float
    coil_heat: float
    supply_air: float
    env_gain: float
    room_stored: float
    primary: float
    eco_heat: float
    load: float
    chiller_kw: float
    chw_pump_kw: float
    chw_stored: float
    eco_on: float
    n_on: int
    cells: int
    tower_heat: float
    cw_return: float
    cw_leaving: float
    tower_ratio: float
    tower_fan_kw: float
    cw_pump_kw: float
    water_kg_s: float
    pdu: float
    ups: float
    transformer: float
    facility: float


@jit_inline
def _site_step(
    d: Design,
    h: Any,
    fx: Any,
    st: PlantState,
    b: int,
    w: _Scratch,
    util: FloatArray,
    dry_bulb_c: float,
    wet_bulb_c: float,
) -> _Step:
    """Advance site ``b`` one step under the setpoints in ``w.setpoints``; returns what the
    ground truth records (the state's next values are returned, not yet committed)."""
    s = d.site
    sp = w.setpoints
    it_kw = _servers(d, h, fx, st, util, b, w)
    total_air, crah_fan_kw, coil_heat, coil_water, supply_air, coil_return, fan_speed = (
        _air_handlers(d, h, fx, st, b, w)
    )
    structure, ret_air, env_gain, room_stored = _room(
        d, h, fx, st, b, w, supply_air, total_air, dry_bulb_c
    )
    demand = _stage_chillers(d, h, fx, st, b, w, coil_heat)
    (
        primary,
        eco_heat,
        load,
        chiller_kw,
        chw_pump_kw,
        supply_new,
        ret_new,
        chw_stored,
        eco_on,
        n_on,
    ) = _chilled_water(d, h, fx, st, b, w, coil_water, coil_return)
    # Condenser pumps and tower cells follow the chillers; one keeps circulating while
    # chillers are wanted but held off (e.g. after a high-pressure cut-out).
    cells = max(n_on, 1 if (eco_on > 0.5 or demand > 0.0) else 0)
    tower_heat = load + chiller_kw + eco_heat
    cw_return, cw_leaving, ratio, tower_fan_kw, cw_pump_kw, water_kg_s = _condenser(
        d, h, fx, st, b, wet_bulb_c, sp[3], cells, tower_heat
    )
    mechanical = chiller_kw + crah_fan_kw + chw_pump_kw + cw_pump_kw + tower_fan_kw
    pdu, ups, transformer, facility = power_chain.chain(s.power_chain, it_kw, mechanical)
    st.structure_c[b] = structure
    st.return_air_c[b] = ret_air
    st.chw_supply_c[b] = supply_new
    st.chw_return_c[b] = ret_new
    return _Step(
        it_kw,
        total_air,
        fan_speed,
        crah_fan_kw,
        coil_heat,
        supply_air,
        env_gain,
        room_stored,
        primary,
        eco_heat,
        load,
        chiller_kw,
        chw_pump_kw,
        chw_stored,
        eco_on,
        n_on,
        cells,
        tower_heat,
        cw_return,
        cw_leaving,
        ratio,
        tower_fan_kw,
        cw_pump_kw,
        water_kg_s,
        pdu,
        ups,
        transformer,
        facility,
    )


@jit_inline
def _write_row(
    d: Design,
    fx: Any,
    lay: LogLayout,
    st: PlantState,
    b: int,
    w: _Scratch,
    x: _Step,
    row: FloatArray,
    time_h: float,
    active: float,
    weather: tuple[float, float, float],
    return_air_before: float,
    plenum_heat_before: float,
) -> None:
    """The step's ground truth in ``log_names`` order: energy flows, setpoints, points."""
    s = d.site
    row[lay.time_h] = time_h
    row[lay.it_power_kw] = x.it_kw
    row[lay.chiller_power_kw] = x.chiller_kw
    row[lay.economiser_power_kw] = 0.0
    row[lay.ups_loss_kw] = x.ups
    row[lay.pdu_loss_kw] = x.pdu
    row[lay.transformer_loss_kw] = x.transformer
    row[lay.lighting_kw] = s.power_chain.lighting_kw
    row[lay.aux_kw] = s.power_chain.aux_kw
    row[lay.water_use_kg_s] = x.water_kg_s
    row[lay.coil_heat_kw] = x.coil_heat
    row[lay.crah_fan_heat_kw] = x.crah_fan_kw
    row[lay.room_gain_kw] = x.it_kw + plenum_heat_before + x.env_gain
    row[lay.room_stored_kw] = x.room_stored
    row[lay.chiller_load_kw] = x.load
    row[lay.economiser_heat_kw] = x.eco_heat
    row[lay.chw_stored_kw] = x.chw_stored
    row[lay.tower_heat_kw] = x.tower_heat
    row[lay.command_active] = active
    setpoints = w.setpoints
    for f in range(5):
        row[lay.setpoints + f] = setpoints[f]
    inlets, hot_aisle, power = st.rack_inlet_c[b], w.hot_aisle_c, w.rack_power_kw
    n_pods, n_racks = power.shape
    for q in range(n_pods):
        for r in range(n_racks):
            row[lay.rack_inlet_c + q * n_racks + r] = inlets[q, r]
        row[lay.hot_aisle_c + q] = hot_aisle[q]
        row[lay.pod_it_power_kw + q] = power[q].sum()
    row[lay.supply_air_c] = x.supply_air
    row[lay.return_air_c] = return_air_before
    row[lay.crah_fan_speed_frac] = x.fan_speed if x.total_air > 0 else 0.0
    row[lay.crah_fan_power_kw] = x.crah_fan_kw
    row[lay.crah_airflow_kg_s] = x.total_air
    unit_water = w.unit_water_kg_s
    running_units = fx.crah_running
    for i in range(unit_water.shape[0]):
        row[lay.crah_valve_frac + i] = unit_water[i] / s.crah.max_water_flow_kg_s
        row[lay.crah_running + i] = 1.0 if running_units[i] else 0.0
    row[lay.chw_supply_c] = st.chw_supply_c[b]
    row[lay.chw_return_c] = st.chw_return_c[b]
    row[lay.chw_flow_kg_s] = x.primary
    row[lay.chw_pump_power_kw] = x.chw_pump_kw
    unit_kw = w.chiller_kw
    on, available = st.chiller_on[b], w.available
    for k in range(unit_kw.shape[0]):
        row[lay.unit_chiller_power_kw + k] = unit_kw[k]
        row[lay.chiller_running + k] = 1.0 if on[k] else 0.0
        row[lay.chiller_alarm + k] = 0.0 if available[k] else 1.0
    row[lay.chillers_on] = x.n_on
    row[lay.cw_supply_c] = x.cw_leaving
    row[lay.cw_return_c] = x.cw_return
    row[lay.cw_pump_power_kw] = x.cw_pump_kw
    row[lay.tower_fan_power_kw] = x.tower_fan_kw
    row[lay.tower_fan_speed_frac] = x.tower_ratio
    row[lay.tower_fan_alarm] = 1.0 if fx.tower_fan_max_frac < 1.0 else 0.0
    row[lay.economiser_enabled] = x.eco_on
    row[lay.ups_output_kw] = x.it_kw + x.pdu
    row[lay.facility_power_kw] = x.facility
    row[lay.outdoor_dry_bulb_c] = weather[0]
    row[lay.outdoor_wet_bulb_c] = weather[1]
    row[lay.outdoor_rel_hum_frac] = weather[2]


@jit_loop
def run_steps(
    d: Design,
    drivers: Drivers,
    hidden: Any,
    faults: Any,
    command: Command,
    st: PlantState,
    lay: LogLayout,
    first_step: int,
    n_steps: int,
    hold_first: bool,
    out: FloatArray,
    w: _Scratch,
) -> None:
    """Advance every site ``n_steps`` from ``first_step`` in place; ground-truth rows go to
    ``out`` (steps, sites, columns) unless it has no rows. ``hold_first`` repeats the
    weather and load of ``first_step`` (the warm-up)."""
    n_sites = st.server_c.shape[0]
    record = out.shape[0] > 0
    time_s0 = first_step * d.step_s
    for t in range(n_steps):
        time_s = time_s0 + t * d.step_s
        k = first_step if hold_first else first_step + t
        valid = time_s < command.expires_at_s
        for b in range(n_sites):
            wet_bulb = drivers.wet_bulb_c[k, b]
            eco, since, unhelpful = economiser_enable_step(
                d.site.defaults,
                st.economiser_enabled[b],
                st.economiser_since_s[b],
                st.economiser_unhelpful_s[b],
                wet_bulb,
                st.chw_return_c[b],
                d.step_s,
            )
            st.economiser_enabled[b] = eco
            st.economiser_since_s[b] = since
            st.economiser_unhelpful_s[b] = unhelpful
            w.site[0], w.site[1], w.site[2], w.site[3], w.site[4] = site_control(
                d.site.defaults, eco
            )
            supplied = resolve(
                d.site.limits,
                w.site,
                command.values[b],
                valid,
                st.applied[b],
                st.has_applied[0],
                w.setpoints,
            )
            return_air_before = st.return_air_c[b]
            plenum_before = st.plenum_heat_kw[b]
            x = _site_step(
                d,
                hidden,
                faults,
                st,
                b,
                w,
                drivers.utilisation[k],
                drivers.dry_bulb_c[k, b],
                wet_bulb,
            )
            if record:
                _write_row(
                    d,
                    faults,
                    lay,
                    st,
                    b,
                    w,
                    x,
                    out[t, b],
                    drivers.site_start_h[b] + time_s / 3600.0,
                    1.0 if supplied else 0.0,
                    (drivers.dry_bulb_c[k, b], wet_bulb, drivers.rel_hum_frac[k, b]),
                    return_air_before,
                    plenum_before,
                )
            st.cw_supply_c[b] = x.cw_leaving
            for f in range(5):
                st.applied[b, f] = w.setpoints[f]
            st.plenum_heat_kw[b] = x.pdu + x.ups + d.site.power_chain.lighting_kw
            st.tower_range_k[b] = max(x.cw_return - x.cw_leaving, 0.5) if x.cells > 0 else 5.0
        st.has_applied[0] = True


class PlantEngine:
    """A plant's compiled state and the structures its steps read; runs chunks of steps.

    ``hidden`` are the sites' hidden parameters; ``drivers`` the weather and load of the
    whole run; ``log_names`` the ground-truth columns (their layout is derived from them).
    """

    def __init__(
        self,
        config: SiteConfig,
        hidden: HiddenParams,
        drivers: Drivers,
        *,
        step_s: float,
        log_names: tuple[str, ...],
    ) -> None:
        self.design = Design.of(config, step_s)
        self.hidden = as_record(hidden)
        self.drivers = Drivers(*(np.ascontiguousarray(a, dtype=np.float64) for a in drivers))
        self.n_sites = hidden.n_sites
        self.state = PlantState.initial(config, self.n_sites)
        self.layout = LogLayout.of(log_names)
        self.n_log = len(log_names)
        self.command = Command(np.full((self.n_sites, 5), np.nan), -math.inf)
        self._faults: tuple[FaultEffects, Any] | None = None
        self._compiled: Any = None
        self._scratch = _scratch(
            config.n_pods, config.racks_per_pod, config.n_crah, config.n_chillers
        )

    def hold(self, values: FloatArray, expires_at_s: float) -> None:
        """Hold a command: values (sites, 5), NaN where the site's own control applies."""
        values = np.ascontiguousarray(values, dtype=np.float64).reshape(self.n_sites, 5)
        self.command = Command(values, float(expires_at_s))

    def run(
        self,
        first_step: int,
        n_steps: int,
        effects: FaultEffects,
        *,
        record: bool = True,
        hold_first: bool = False,
    ) -> FloatArray:
        """Advance ``n_steps`` from ``first_step`` under one set of fault effects; ground
        truth (steps, sites, columns), or no rows when ``record`` is false."""
        if self._faults is None or self._faults[0] is not effects:
            self._faults = (effects, as_record(effects))
        out = np.empty((n_steps if record else 0, self.n_sites, self.n_log))
        args = (
            self.design,
            self.drivers,
            self.hidden,
            self._faults[1],
            self.command,
            self.state,
            self.layout,
            int(first_step),
            int(n_steps),
            bool(hold_first),
            out,
            self._scratch,
        )
        if self._compiled is None:
            # The first call compiles (or loads) the kernel for these argument types. Every
            # later call passes arguments of exactly these types (the structures are built
            # the same way each time), so it calls that compiled entry point directly:
            # typing ~200 nested arguments again costs ~20 µs, more than five steps of
            # physics, and a controller calls once per period.
            run_steps(*args)
            dispatcher: Any = run_steps
            signature = tuple(dispatcher.typeof_pyval(a) for a in args)
            self._compiled = dispatcher.overloads[signature].entry_point
        else:
            self._compiled(*args)
        return out
