"""The plant's step compiled with numba: the same equations as the numpy models, as loops.

:class:`physics.plant.plant.Plant` is the reference: every model lives in its own numpy
module with its own reference tests. This kernel restates the composed step in scalar form
so that a single site runs at thousands of steps per second, and
``tests/physics/plant/test_kernel.py`` holds it to the numpy plant step by step (faults,
commands and several sites included). A change to a physics module must be made here too;
that test fails until it is.

Everything is passed as arrays or scalars (no Python objects); :func:`pack_params` flattens
a :class:`SiteConfig` into the named tuple the kernel reads.
"""

from __future__ import annotations

import logging
import math
from typing import Any, NamedTuple

import numba as nb
import numpy as np
from numpy.typing import NDArray

from physics import cooling_tower as ct
from physics import crah
from physics.constants import CP_AIR_KJ_KG_K, CP_WATER_KJ_KG_K, H_FG_WATER_KJ_KG
from physics.plant.site import SiteConfig

logger = logging.getLogger(__name__)

FloatArray = NDArray[np.float64]

_FAST = {"contract", "afn", "arcp"}
"""LLVM fast-math flags that keep NaN/inf semantics (the stuck-valve NaN test needs them)."""

_VALVE_STEPS = crah.BISECTION_STEPS
_VALVE_GRID = 2**_VALVE_STEPS
"""The valve bisection halves [0, max flow] seven times: every flow it tries is max·j/128."""

CP_A = CP_AIR_KJ_KG_K
CP_W = CP_WATER_KJ_KG_K


class KernelParams(NamedTuple):
    """A site design flattened for the kernel (floats, ints and small float arrays)."""

    # servers
    srv_pmax: float
    srv_idle: float
    srv_fan_frac: float
    srv_onset: float
    srv_leak: float
    srv_fan_per_k: float
    srv_max_speed: float
    srv_airflow: float
    # CRAH
    crah_air0: float
    crah_fan_kw: float
    crah_min_speed: float
    crah_water0: float
    crah_water_max: float
    crah_ua0: float
    crah_r_air: float
    crah_water_term: FloatArray
    """(m_w0 / m_w)^0.85 at the valve bisection's 2^7 + 1 dyadic flows (exact, no pow)."""
    # room
    struct_ua: float
    env_ua: float
    # chilled-water loop and pumps
    supply_mass: float
    return_mass: float
    main_mass: float
    main_segments: int
    min_flow_per_chiller: float
    chw_design_flow: float
    chw_pump_kw: float
    cw_flow_per_chiller: float
    cw_pump_kw: float
    # chillers
    ch_ref_cap: float
    ch_ref_cop: float
    ch_min_plr: float
    ch_curves: FloatArray  # capft(6) eirft(6) eirfplr(3) xlo xhi ylo yhi plrlo plrhi
    ch_min_on: float
    ch_min_off: float
    ch_restart: float
    ch_stage_frac: float
    ch_recovery: float
    ch_max_condenser: float
    # tower and economiser
    tw_min_ratio: float
    tw_fan_curve: FloatArray
    tw_fan_kw: float
    tw_free_frac: float
    tw_drift: float
    tw_cycles: float
    tw_grid: FloatArray  # (3, 3, 3) YorkCalc
    tw_limits: FloatArray  # twb lo, twb hi, range hi, flow lo, flow hi, max lg
    eco_eff: float
    # power chain: (rated, a0, a1, a2) for pdu, ups, transformer
    pc_curves: FloatArray
    lighting_kw: float
    aux_kw: float
    # setpoint dead-bands
    deadband_c: float
    deadband_frac: float


def pack_params(cfg: SiteConfig) -> KernelParams:
    """Flatten a site configuration for :func:`run_steps`."""
    c = cfg.chiller.curves
    pc = cfg.power_chain
    if cfg.chiller.cap_multiplier != 1.0 or cfg.chiller.eir_multiplier != 1.0:
        raise ValueError("the kernel takes chiller deviations from the hidden parameters only")
    return KernelParams(
        srv_pmax=cfg.server.max_power_kw,
        srv_idle=cfg.server.idle_frac,
        srv_fan_frac=cfg.server.fan_power_frac,
        srv_onset=cfg.server.leakage_onset_c,
        srv_leak=cfg.server.leakage_frac_per_k,
        srv_fan_per_k=cfg.server.fan_speed_per_k,
        srv_max_speed=cfg.server.max_fan_speed,
        srv_airflow=cfg.server.design_airflow_kg_s,
        crah_air0=cfg.crah.design_airflow_kg_s,
        crah_fan_kw=cfg.crah.design_fan_power_kw,
        crah_min_speed=cfg.crah.min_speed_frac,
        crah_water0=cfg.crah.design_water_flow_kg_s,
        crah_water_max=cfg.crah.max_water_flow_kg_s,
        crah_ua0=cfg.crah.design_ua_kw_k,
        crah_r_air=cfg.crah.air_side_resistance_frac,
        crah_water_term=np.exp(
            0.85
            * (
                np.log(cfg.crah.design_water_flow_kg_s)
                - np.log(
                    np.maximum(
                        cfg.crah.max_water_flow_kg_s * np.arange(_VALVE_GRID + 1) / _VALVE_GRID,
                        1e-6,
                    )
                )
            )
        ),
        struct_ua=cfg.room.structure_ua_kw_k,
        env_ua=cfg.room.envelope_ua_kw_k,
        supply_mass=cfg.chw_loop.supply_mass_kg,
        return_mass=cfg.chw_loop.return_mass_kg,
        main_mass=cfg.chw_loop.supply_main_mass_kg,
        main_segments=cfg.chw_loop.supply_main_segments,
        min_flow_per_chiller=cfg.chw_loop.min_flow_per_chiller_kg_s,
        chw_design_flow=cfg.chw_loop.design_flow_kg_s,
        chw_pump_kw=cfg.chw_pump_design_kw,
        cw_flow_per_chiller=cfg.cw_flow_per_chiller_kg_s,
        cw_pump_kw=cfg.cw_pump_kw_per_chiller,
        ch_ref_cap=cfg.chiller.ref_capacity_kw,
        ch_ref_cop=cfg.chiller.ref_cop,
        ch_min_plr=cfg.chiller.min_plr,
        ch_curves=np.array(
            [
                *c.capft,
                *c.eirft,
                *c.eirfplr,
                *c.chw_leave_range_c,
                *c.cw_enter_range_c,
                *c.plr_range,
            ],
            dtype=np.float64,
        ),
        ch_min_on=cfg.chiller_min_on_s,
        ch_min_off=cfg.chiller_min_off_s,
        ch_restart=cfg.chiller_restart_delay_s,
        ch_stage_frac=cfg.chiller_stage_up_frac,
        ch_recovery=cfg.chiller_stage_recovery_kw_per_k,
        ch_max_condenser=cfg.chiller_max_condenser_c,
        tw_min_ratio=cfg.tower.min_airflow_ratio,
        tw_fan_curve=np.array(cfg.tower.fan_power_curve, dtype=np.float64),
        tw_fan_kw=cfg.tower.design_fan_power_kw,
        tw_free_frac=cfg.tower.free_convection_frac,
        tw_drift=cfg.tower.drift_frac,
        tw_cycles=cfg.tower.cycles_of_concentration,
        tw_grid=np.asarray(ct.YORKCALC_COEFFS, dtype=np.float64).reshape(3, 3, 3),
        tw_limits=np.array(
            [
                *ct.YORKCALC_WET_BULB_RANGE_C,
                ct.YORKCALC_RANGE_K[1],
                *ct.YORKCALC_WATER_FLOW_RATIO_RANGE,
                ct.YORKCALC_MAX_LG_RATIO,
            ],
            dtype=np.float64,
        ),
        eco_eff=cfg.economiser_effectiveness,
        pc_curves=np.array(
            [
                [pc.pdu.rated_kw, pc.pdu.a0, pc.pdu.a1, pc.pdu.a2],
                [pc.ups.rated_kw, pc.ups.a0, pc.ups.a1, pc.ups.a2],
                [pc.transformer.rated_kw, pc.transformer.a0, pc.transformer.a1, pc.transformer.a2],
            ],
            dtype=np.float64,
        ),
        lighting_kw=pc.lighting_kw,
        aux_kw=pc.aux_kw,
        deadband_c=cfg.limits.deadband_c,
        deadband_frac=cfg.limits.deadband_frac,
    )


# ---------------------------------------------------------------------------- pieces
@nb.njit(cache=True, fastmath=_FAST)
def _clip(x: float, lo: float, hi: float) -> float:
    return min(max(x, lo), hi)


@nb.njit(cache=True, fastmath=_FAST)
def _biquad(cv: Any, off: int, x: float, y: float) -> float:
    return float(
        cv[off]
        + cv[off + 1] * x
        + cv[off + 2] * x * x
        + cv[off + 3] * y
        + cv[off + 4] * y * y
        + cv[off + 5] * x * y
    )


@nb.njit(cache=True, fastmath=_FAST)
def _coil_leaving(
    p: Any, air_in: float, water_in: float, m_a: float, m_w: float, ua_mult: float
) -> float:
    """crah.coil_leaving_air_c for one unit."""
    c_air = m_a * CP_A
    c_w = m_w * CP_W
    c_min = min(c_air, c_w)
    c_max = max(max(c_air, c_w), 1e-9)
    ma = max(m_a, 1e-6)
    mw = max(m_w, 1e-6)
    r = p.crah_r_air
    res = r * (p.crah_air0 / ma) ** 0.8 + (1.0 - r) * (p.crah_water0 / mw) ** 0.85
    ua = p.crah_ua0 * ua_mult / res
    ntu = ua / max(c_min, 1e-9)
    cr = min(max(c_min / c_max, 0.0), 1.0)
    if abs(1.0 - cr) < 1e-6:
        eps = ntu / (1.0 + ntu)
    else:
        e = math.exp(-ntu * (1.0 - cr))
        eps = (1.0 - e) / (1.0 - cr * e)
    q = eps * c_min * max(air_in - water_in, 0.0)
    return float(air_in - q / max(c_air, 1e-9))


@nb.njit(cache=True, fastmath=_FAST)
def _valve_flow(
    p: Any, air_in: float, water_in: float, m_a: float, target: float, ua_mult: float
) -> float:
    """crah.valve_water_flow_for_setpoint for one unit (same bisection and secant)."""
    c_air = max(m_a * CP_A, 1e-9)
    r = p.crah_r_air
    r_air = r * (p.crah_air0 / max(m_a, 1e-6)) ** 0.8
    ua_scale = p.crah_ua0 * ua_mult
    delta_max = max(air_in - water_in, 0.0)

    lo_j = 0
    hi_j = _VALVE_GRID
    t_lo = air_in
    t_hi = _leave_inline(air_in, c_air, r, r_air, ua_scale, delta_max, p, hi_j)
    unreachable = t_hi > target
    for _ in range(_VALVE_STEPS):
        mid_j = (lo_j + hi_j) // 2
        t_mid = _leave_inline(air_in, c_air, r, r_air, ua_scale, delta_max, p, mid_j)
        if t_mid > target:
            lo_j = mid_j
            t_lo = t_mid
        else:
            hi_j = mid_j
            t_hi = t_mid
    lo = p.crah_water_max * lo_j / _VALVE_GRID
    hi = p.crah_water_max * hi_j / _VALVE_GRID
    span = t_lo - t_hi if abs(t_lo - t_hi) > 1e-9 else 1.0
    frac = _clip((t_lo - target) / span, 0.0, 1.0)
    flow = lo + frac * (hi - lo)
    if unreachable:
        flow = p.crah_water_max
    if air_in <= target:
        flow = 0.0
    return float(flow)


@nb.njit(cache=True, fastmath=_FAST)
def _leave_inline(
    air_in: float,
    c_air: float,
    r: float,
    r_air: float,
    ua_scale: float,
    delta_max: float,
    p: Any,
    j: int,
) -> float:
    m_w = max(p.crah_water_max * j / _VALVE_GRID, 1e-6)
    ua = ua_scale / (r_air + (1.0 - r) * p.crah_water_term[j])
    c_w = m_w * CP_W
    c_min = min(c_air, c_w)
    cr = min(c_min / max(c_air, c_w), 1.0 - 1e-9)
    e = math.exp(-(ua / c_min) * (1.0 - cr))
    eps = (1.0 - e) / (1.0 - cr * e)
    return float(air_in - eps * c_min * delta_max / c_air)


@nb.njit(cache=True, fastmath=_FAST)
def _york_coeffs(p: Any, twb: float, tr: float) -> tuple[float, float, float]:
    """YorkCalc as a quadratic in LG: its three coefficients at a wet bulb and range."""
    g = p.tw_grid
    a0 = a1 = a2 = 0.0
    tr_j = 1.0
    for j in range(3):
        twb_i = 1.0
        for i in range(3):
            w = tr_j * twb_i
            a0 += g[0, j, i] * w
            a1 += g[1, j, i] * w
            a2 += g[2, j, i] * w
            twb_i *= twb
        tr_j *= tr
    return a0, a1, a2


@nb.njit(cache=True, fastmath=_FAST)
def _approach(p: Any, wet_bulb: float, range_k: float, fr_water: float, fr_air: float) -> float:
    lim = p.tw_limits
    twb = _clip(wet_bulb, lim[0], lim[1])
    tr = _clip(range_k, 0.0, lim[2])
    fw = _clip(fr_water, lim[3], lim[4])
    lg = min(fw / max(fr_air, 1e-3), lim[5])
    a0, a1, a2 = _york_coeffs(p, twb, tr)
    return float(a0 + a1 * lg + a2 * lg * lg)


@nb.njit(cache=True, fastmath=_FAST)
def _airflow_for_approach(
    p: Any, wet_bulb: float, range_k: float, fr_water: float, target: float
) -> float:
    """cooling_tower.airflow_ratio_for_approach for one tower."""
    lim = p.tw_limits
    twb = _clip(wet_bulb, lim[0], lim[1])
    tr = _clip(range_k, 0.0, lim[2])
    fw = _clip(fr_water, lim[3], lim[4])
    a0, a1, a2 = _york_coeffs(p, twb, tr)
    lg_lo = min(fw, lim[5])
    lg_hi = min(fw / p.tw_min_ratio, lim[5])
    c = a0 - target
    sq = math.sqrt(max(a1 * a1 - 4.0 * a2 * c, 0.0))
    safe_a2 = a2 if abs(a2) > 1e-12 else 1e-12
    root_a = (-a1 + sq) / (2.0 * safe_a2)
    root_b = (-a1 - sq) / (2.0 * safe_a2)
    if abs(a2) > 1e-12:
        root = root_a if lg_lo <= root_a <= lg_hi else root_b
    else:
        root = -c / a1 if abs(a1) > 1e-12 else lg_lo
    root = _clip(root, lg_lo, lg_hi)
    ratio = fw / max(root, 1e-9)
    if a0 + lg_lo * (a1 + lg_lo * a2) > target:
        ratio = 1.0
    if a0 + lg_hi * (a1 + lg_hi * a2) <= target:
        ratio = p.tw_min_ratio
    return _clip(ratio, p.tw_min_ratio, 1.0)


@nb.njit(cache=True, fastmath=_FAST)
def _tower_fan_kw(p: Any, ratio: float) -> float:
    r = _clip(ratio, 0.0, 1.0)
    k = p.tw_fan_curve
    speed = max(r, p.tw_min_ratio)
    curve = k[0] + speed * (k[1] + speed * (k[2] + speed * k[3]))
    return float(p.tw_fan_kw * max(curve, 0.0) * min(r / p.tw_min_ratio, 1.0))


@nb.njit(cache=True, fastmath=_FAST)
def _loss(pc: Any, row: int, load: float) -> float:
    x = max(load, 0.0) / pc[row, 0]
    return float(pc[row, 0] * (pc[row, 1] + x * (pc[row, 2] + x * pc[row, 3])))


@nb.njit(cache=True, fastmath=_FAST)
def _tank(temp: float, inflow: float, flow: float, mass: float, dt: float) -> tuple[float, float]:
    new = inflow + (temp - inflow) * math.exp(-flow * dt / mass)
    return new, mass * CP_W * (new - temp) / dt


@nb.njit(cache=True, fastmath=_FAST)
def _stage(
    p: Any,
    on: Any,
    tis: Any,
    restart: Any,
    b: int,
    available: Any,
    request: int,
    dt: float,
) -> None:
    """chiller.update_staging for one site, in place."""
    k_n = on.shape[1]
    old = on[b].copy()
    locked = np.zeros(k_n, dtype=np.bool_)
    free = np.zeros(k_n, dtype=np.bool_)
    n_locked = 0
    for k in range(k_n):
        tis[b, k] += dt
        restart[b, k] = max(restart[b, k] - dt, 0.0)
        if old[k] and not available[k]:
            restart[b, k] = p.ch_restart
        still = old[k] and available[k]
        locked[k] = still and tis[b, k] < p.ch_min_on
        free[k] = still and not locked[k]
        if locked[k]:
            n_locked += 1
    n_keep = max(request - n_locked, 0)
    new = locked.copy()
    kept = 0
    for k in range(k_n):
        if free[k] and kept < n_keep:
            new[k] = True
            kept += 1
    n_new = 0
    for k in range(k_n):
        if new[k]:
            n_new += 1
    n_start = max(request - n_new, 0)
    started = 0
    for k in range(k_n):
        startable = (
            (not old[k]) and available[k] and tis[b, k] >= p.ch_min_off and restart[b, k] <= 0.0
        )
        if startable and started < n_start:
            new[k] = True
            started += 1
    for k in range(k_n):
        if new[k] != old[k]:
            tis[b, k] = 0.0
        on[b, k] = new[k]


@nb.njit(cache=True, fastmath=_FAST)
def run_steps(
    p: Any,
    dt: float,
    time_s0: float,
    site_start_h: Any,
    dry: Any,
    wet: Any,
    rh: Any,
    util: Any,
    raw_sp: Any,
    active: Any,
    fx_ua: Any,
    fx_running: Any,
    fx_stuck: Any,
    fx_tripped: Any,
    fx_lift: Any,
    fx_tower_max: float,
    fx_door: Any,
    fx_pump_eff: float,
    fx_util: Any,
    h_power_scale: Any,
    h_recirc: Any,
    h_cross: Any,
    h_share: Any,
    h_crah_ua: Any,
    h_eir: Any,
    h_cap: Any,
    h_bias: Any,
    h_server_cap: Any,
    h_struct_cap: Any,
    server_c: Any,
    structure_c: Any,
    return_air: Any,
    rack_inlet: Any,
    chw_supply: Any,
    chw_return: Any,
    cw_supply: Any,
    on: Any,
    tis: Any,
    restart: Any,
    prev_sp: Any,
    has_prev: Any,
    plenum_heat: Any,
    tower_range: Any,
    main: Any,
    out: Any,
    record: bool,
) -> None:
    """Advance every site ``len(dry)`` steps in place; write truth rows into ``out``."""
    n_steps, n_sites = dry.shape
    _, n_pods, n_racks = server_c.shape
    n_crah = fx_ua.shape[0]
    n_ch = fx_tripped.shape[0]
    n_seg = main.shape[0]
    cv = p.ch_curves
    pc = p.pc_curves
    power = np.empty((n_pods, n_racks))
    airflow_r = np.empty((n_pods, n_racks))
    inlet = np.empty((n_pods, n_racks))
    new_srv = np.empty((n_pods, n_racks))
    m_pod = np.empty(n_pods)
    rho_pod = np.empty(n_pods)
    extra = np.empty(n_pods)
    bypass = np.empty(n_pods)
    hot_old = np.empty(n_pods)
    hot_new = np.empty(n_pods)
    hot_out = np.empty(n_pods)
    cross_pod = np.empty(n_pods)
    unit_air = np.empty(n_crah)
    unit_fan = np.empty(n_crah)
    unit_water = np.empty(n_crah)
    cap_each = np.empty(n_ch)
    chiller_kw = np.empty(n_ch)
    cw_enter = np.empty(n_ch)
    available = np.empty(n_ch, dtype=np.bool_)
    sp = np.empty(5)
    for t in range(n_steps):
        time_s = time_s0 + t * dt
        for b in range(n_sites):
            # ---- setpoints with dead-bands against the last applied ones
            for f in range(5):
                sp[f] = raw_sp[t, b, f]
            if has_prev[0]:
                for f in (0, 2, 3):
                    if abs(sp[f] - prev_sp[b, f]) < p.deadband_c:
                        sp[f] = prev_sp[b, f]
                if abs(sp[1] - prev_sp[b, 1]) < p.deadband_frac:
                    sp[1] = prev_sp[b, 1]
            sp_sa, sp_fan, sp_chw, sp_cw, sp_eco = sp[0], sp[1], sp[2], sp[3], sp[4]
            wb = wet[t, b]
            # ---- servers
            it_kw = 0.0
            for q in range(n_pods):
                u = _clip(util[t, q] + fx_util[q], 0.0, 1.0)
                curve = p.srv_idle + (1.0 - p.srv_idle) * (2.0 * u - u**1.4)
                for r in range(n_racks):
                    scale = h_power_scale[b, q, r]
                    pmax = p.srv_pmax * scale
                    excess = max(rack_inlet[b, q, r] - p.srv_onset, 0.0)
                    board = pmax * (curve - p.srv_fan_frac) * (1.0 + p.srv_leak * excess)
                    speed = min(1.0 + p.srv_fan_per_k * excess, p.srv_max_speed)
                    fan = pmax * p.srv_fan_frac * speed**3
                    power[q, r] = board + fan
                    airflow_r[q, r] = p.srv_airflow * scale * speed
                    it_kw += power[q, r]
            # ---- CRAH units
            air_in = return_air[b]
            water_in = chw_supply[b]
            speed_c = _clip(sp_fan, p.crah_min_speed, 1.0)
            total_air = 0.0
            coil_heat = 0.0
            coil_water = 0.0
            supply_num = 0.0
            crah_fan = 0.0
            for i in range(n_crah):
                if fx_running[i]:
                    m_a = p.crah_air0 * speed_c
                    fan_kw = p.crah_fan_kw * speed_c**3
                else:
                    m_a = 0.0
                    fan_kw = 0.0
                rise = fan_kw / max(m_a * CP_A, 1e-9)
                ua_mult = h_crah_ua[b, i] * fx_ua[i]
                if not fx_running[i]:
                    m_w = 0.0
                elif not math.isnan(fx_stuck[i]):
                    m_w = fx_stuck[i] * p.crah_water_max
                else:
                    m_w = _valve_flow(p, air_in, water_in, m_a, sp_sa - rise, ua_mult)
                leave = _coil_leaving(p, air_in, water_in, m_a, m_w, ua_mult)
                coil_heat += m_a * CP_A * (air_in - leave)
                supply_num += (leave + rise) * m_a
                total_air += m_a
                coil_water += m_w
                crah_fan += fan_kw
                unit_air[i] = m_a
                unit_fan[i] = fan_kw
                unit_water[i] = m_w
            supply_air = supply_num / max(total_air, 1e-9) if total_air > 0 else air_in
            coil_return = chw_supply[b] + coil_heat / max(coil_water * CP_W, 1e-9)
            # ---- room air
            t_sup = supply_air
            for q in range(n_pods):
                m = 0.0
                mr = 0.0
                hot = 0.0
                for r in range(n_racks):
                    m += airflow_r[q, r]
                    mr += airflow_r[q, r] * (h_recirc[b, q, r] + fx_door[q])
                    hot += airflow_r[q, r] * server_c[b, q, r]
                m_pod[q] = m
                rho_pod[q] = mr / m
                hot_old[q] = hot / m
                cp_sum = 0.0
                for j in range(n_pods):
                    cp_sum += h_cross[b, q, j]
                cross_pod[q] = cp_sum
            room_stored = 0.0
            for q in range(n_pods):
                need = (1.0 - rho_pod[q] - cross_pod[q]) * m_pod[q]
                s_q = total_air * h_share[b, q]
                extra[q] = max(need - s_q, 0.0) / m_pod[q]
                bypass[q] = max(s_q - need, 0.0)
                cross_rise = -cross_pod[q] * t_sup
                for j in range(n_pods):
                    cross_rise += h_cross[b, q, j] * hot_old[j]
                hot = 0.0
                for r in range(n_racks):
                    rho = h_recirc[b, q, r] + fx_door[q]
                    tin = t_sup + (rho + extra[q]) * (hot_old[q] - t_sup) + cross_rise
                    inlet[q, r] = tin
                    g = airflow_r[q, r] * CP_A
                    cap = h_server_cap[b, q, r]
                    steady = tin + power[q, r] / g
                    new = steady + (server_c[b, q, r] - steady) * math.exp(-g * dt / cap)
                    room_stored += cap * (new - server_c[b, q, r]) / dt
                    new_srv[q, r] = new
                    hot += airflow_r[q, r] * new
                hot_new[q] = hot / m_pod[q]
            plenum_flow = 0.0
            mix_num = 0.0
            bypass_sum = 0.0
            for q in range(n_pods):
                drawn = 0.0
                for i2 in range(n_pods):
                    drawn += h_cross[b, i2, q] * m_pod[i2]
                hot_out[q] = max((1.0 - rho_pod[q] - extra[q]) * m_pod[q] - drawn, 0.0)
                plenum_flow += hot_out[q]
                mix_num += hot_out[q] * hot_new[q]
                bypass_sum += bypass[q]
            plenum_flow += bypass_sum
            if plenum_flow > 1e-9:
                mix = (mix_num + bypass_sum * t_sup) / max(plenum_flow, 1e-9)
            else:
                mix = 0.0
                for q in range(n_pods):
                    mix += hot_new[q]
                mix /= n_pods
            cap_rate = max(plenum_flow, 1e-6) * CP_A
            mix += plenum_heat[b] / cap_rate
            ua_st = cap_rate * -math.expm1(-p.struct_ua / cap_rate)
            ua_sum = ua_st + p.env_ua
            outdoor = dry[t, b]
            st_steady = (ua_st * mix + p.env_ua * outdoor) / ua_sum
            c_st = h_struct_cap[b]
            st_new = st_steady + (structure_c[b] - st_steady) * math.exp(-ua_sum * dt / c_st)
            stored_st = c_st * (st_new - structure_c[b]) / dt
            env_gain = p.env_ua * (outdoor - 0.5 * (st_new + structure_c[b]))
            struct_gain = stored_st - env_gain
            new_return = mix - struct_gain / cap_rate
            room_stored += struct_gain + env_gain
            # ---- chilled water
            cap_sum = 0.0
            n_avail = 0
            for k in range(n_ch):
                cw_enter[k] = cw_supply[b] + fx_lift[k]
                x = _clip(sp_chw, cv[15], cv[16])
                y = _clip(cw_enter[k], cv[17], cv[18])
                cap_each[k] = p.ch_ref_cap * h_cap[b, k] * _biquad(cv, 0, x, y)
                cap_sum += cap_each[k]
                available[k] = (not fx_tripped[k]) and cw_enter[k] <= p.ch_max_condenser
                if available[k]:
                    n_avail += 1
            demand = coil_heat + max(chw_supply[b] - sp_chw, 0.0) * p.ch_recovery
            per = max(cap_sum / n_ch * p.ch_stage_frac, 1e-9)
            if demand > 0.0 and n_avail > 0:
                request = int(min(max(math.ceil(demand / per), 1.0), max(n_avail, 1)))
            else:
                request = 0
            _stage(p, on, tis, restart, b, available, request, dt)
            n_on = 0
            capacity = 0.0
            for k in range(n_ch):
                if on[b, k]:
                    n_on += 1
                    capacity += cap_each[k]
            primary = max(coil_water, n_on * p.min_flow_per_chiller)
            prim_safe = max(primary, 1e-9)
            mixed = (
                coil_water * coil_return + max(prim_safe - coil_water, 0.0) * chw_supply[b]
            ) / (prim_safe)
            ret_new, ret_stored = _tank(chw_return[b], mixed, primary, p.return_mass, dt)
            eco_on = sp_eco > 0.5 and cw_supply[b] < ret_new
            eco_heat = 0.0
            eco_leave = ret_new
            if eco_on:
                eps = _clip(p.eco_eff, 0.0, 1.0)
                c_chw = max(primary, 0.0) * CP_W
                c_cw = p.cw_flow_per_chiller * CP_W
                eco_heat = eps * min(c_chw, c_cw) * max(ret_new - cw_supply[b], 0.0)
                if c_chw > 0.0:
                    eco_leave = ret_new - eco_heat / c_chw
            reachable = eco_leave - capacity / (prim_safe * CP_W)
            leave_chw = min(eco_leave, max(sp_chw, reachable))
            load = primary * CP_W * (eco_leave - leave_chw)
            chiller_sum = 0.0
            for k in range(n_ch):
                share = (cap_each[k] if on[b, k] else 0.0) / max(capacity, 1e-9)
                load_k = max(load * share, 0.0)
                x = _clip(leave_chw, cv[15], cv[16])
                y = _clip(cw_enter[k], cv[17], cv[18])
                cap_k = max(p.ch_ref_cap * h_cap[b, k] * _biquad(cv, 0, x, y), 1e-9)
                plr = _clip(load_k / cap_k, 0.0, cv[20])
                pl = _clip(max(plr, p.ch_min_plr), cv[19], cv[20])
                eirfplr = cv[12] + cv[13] * pl + cv[14] * pl * pl
                kw = cap_k / p.ch_ref_cop * _biquad(cv, 6, x, y) * eirfplr * h_eir[b, k]
                chiller_kw[k] = kw if load_k > 0.0 else 0.0
                chiller_sum += chiller_kw[k]
            upstream = leave_chw
            main_stored = 0.0
            for s in range(n_seg):
                seg_new, seg_stored = _tank(main[s, b], upstream, primary, p.main_mass / n_seg, dt)
                main[s, b] = seg_new
                main_stored += seg_stored
                upstream = seg_new
            sup_new, sup_stored = _tank(chw_supply[b], upstream, primary, p.supply_mass, dt)
            flow_frac = max(primary / p.chw_design_flow, 0.0)
            qp = max(flow_frac, 0.3)
            chw_pump = p.chw_pump_kw * qp * (qp * qp) / max(fx_pump_eff, 1e-6)
            if flow_frac <= 0.0:
                chw_pump = 0.0
            # ---- condenser water and tower
            cells = max(n_on, 1 if (eco_on or demand > 0.0) else 0)
            cw_flow = cells * p.cw_flow_per_chiller
            tower_heat = load + chiller_sum + eco_heat
            cw_ret = cw_supply[b] + tower_heat / max(cw_flow * CP_W, 1e-9)
            fr = 1.0 if cells > 0 else 0.0
            bias = h_bias[b]
            target = sp_cw - wb - bias
            ratio = min(_airflow_for_approach(p, wb, tower_range[b], fr, target), fx_tower_max)
            if fx_tower_max > 0:
                appr = _approach(p, wb, tower_range[b], fr, max(ratio, 1e-3))
                leaving = wb + max(appr + bias, target)
                tower_fan = cells * _tower_fan_kw(p, ratio) if cells > 0 else 0.0
            else:
                full_fan = _approach(p, wb, tower_range[b], fr, 1.0)
                leaving = cw_ret - p.tw_free_frac * (cw_ret - (wb + full_fan + bias))
                tower_fan = 0.0
            leaving = min(leaving, cw_ret) if cells > 0 else cw_supply[b]
            cw_pump = cells * p.cw_pump_kw
            evap = max(tower_heat, 0.0) / H_FG_WATER_KJ_KG
            drift = p.tw_drift * max(cw_flow, 0.0)
            water_use = evap + drift + max(evap / (p.tw_cycles - 1.0) - drift, 0.0)
            # ---- power chain
            mech = chiller_sum + crah_fan + chw_pump + cw_pump + tower_fan
            pdu = _loss(pc, 0, it_kw)
            ups_out = it_kw + pdu
            ups = _loss(pc, 1, ups_out)
            trf = _loss(pc, 2, ups_out + ups + mech + p.lighting_kw + p.aux_kw)
            facility = it_kw + pdu + ups + mech + p.lighting_kw + p.aux_kw + trf
            # ---- truth row
            if record:
                row = out[t, b]
                row[0] = site_start_h[b] + time_s / 3600.0
                row[1] = it_kw
                row[2] = chiller_sum
                row[3] = 0.0
                row[4] = ups
                row[5] = pdu
                row[6] = trf
                row[7] = p.lighting_kw
                row[8] = p.aux_kw
                row[9] = water_use
                row[10] = coil_heat
                row[11] = crah_fan
                row[12] = it_kw + plenum_heat[b] + env_gain
                row[13] = room_stored
                row[14] = load
                row[15] = eco_heat
                row[16] = ret_stored + sup_stored + main_stored
                row[17] = tower_heat
                row[18] = active[t]
                for f in range(5):
                    row[19 + f] = sp[f]
                c = 24
                for q in range(n_pods):
                    for r in range(n_racks):
                        row[c] = inlet[q, r]
                        c += 1
                for q in range(n_pods):
                    row[c] = hot_new[q]
                    c += 1
                for q in range(n_pods):
                    pod_kw = 0.0
                    for r in range(n_racks):
                        pod_kw += power[q, r]
                    row[c] = pod_kw
                    c += 1
                row[c] = supply_air
                row[c + 1] = return_air[b]
                row[c + 2] = sp_fan if total_air > 0 else 0.0
                row[c + 3] = crah_fan
                row[c + 4] = total_air
                c += 5
                for i in range(n_crah):
                    row[c] = unit_water[i] / p.crah_water_max
                    c += 1
                row[c] = sup_new
                row[c + 1] = ret_new
                row[c + 2] = primary
                row[c + 3] = chw_pump
                c += 4
                for k in range(n_ch):
                    row[c] = chiller_kw[k]
                    c += 1
                row[c] = n_on
                row[c + 1] = leaving
                row[c + 2] = cw_ret
                row[c + 3] = cw_pump
                row[c + 4] = tower_fan
                row[c + 5] = ratio if cells > 0 else 0.0
                row[c + 6] = 1.0 if eco_on else 0.0
                row[c + 7] = it_kw + pdu
                row[c + 8] = facility
                row[c + 9] = dry[t, b]
                row[c + 10] = wb
                row[c + 11] = rh[t, b]
            # ---- state
            for q in range(n_pods):
                for r in range(n_racks):
                    server_c[b, q, r] = new_srv[q, r]
                    rack_inlet[b, q, r] = inlet[q, r]
            structure_c[b] = st_new
            return_air[b] = new_return
            chw_supply[b] = sup_new
            chw_return[b] = ret_new
            cw_supply[b] = leaving
            for f in range(5):
                prev_sp[b, f] = sp[f]
            plenum_heat[b] = pdu + ups + p.lighting_kw
            tower_range[b] = max(cw_ret - leaving, 0.5) if cells > 0 else 5.0
        has_prev[0] = True


class CompiledStepper:
    """Owns the kernel's state arrays for a plant and runs chunks of steps through it.

    Built from the numpy plant's initial state, hidden parameters and weather, so both
    engines start from the same place.
    """

    def __init__(
        self,
        config: SiteConfig,
        hidden: Any,
        state: Any,
        *,
        step_s: float,
        site_start_h: FloatArray,
        dry_bulb_c: FloatArray,
        wet_bulb_c: FloatArray,
        rel_hum_frac: FloatArray,
        utilisation: FloatArray,
        n_log: int,
    ) -> None:
        self.params = pack_params(config)
        self.step_s = step_s
        self.n_log = n_log
        self._site_start_h = np.ascontiguousarray(site_start_h)
        self._dry, self._wet, self._rh = (
            np.ascontiguousarray(a) for a in (dry_bulb_c, wet_bulb_c, rel_hum_frac)
        )
        self._util = np.ascontiguousarray(utilisation)
        self._hidden = (
            np.ascontiguousarray(hidden.rack_power_scale),
            np.ascontiguousarray(hidden.rack_recirc_frac),
            np.ascontiguousarray(hidden.cross_recirc_frac),
            np.ascontiguousarray(hidden.pod_airflow_share),
            np.ascontiguousarray(hidden.crah_ua_mult),
            np.ascontiguousarray(hidden.chiller_eir_mult),
            np.ascontiguousarray(hidden.chiller_cap_mult),
            np.ascontiguousarray(hidden.tower_approach_bias_k),
            np.ascontiguousarray(hidden.server_capacity_kj_k),
            np.ascontiguousarray(
                config.room.structure_capacity_kj_k * hidden.structure_capacity_mult
            ),
        )
        n_sites = site_start_h.shape[0]
        self._state = (
            state.room.server_c.copy(),
            state.room.structure_c.copy(),
            state.room.return_air_c.copy(),
            state.rack_inlet_c.copy(),
            state.chw_supply_c.copy(),
            state.chw_return_c.copy(),
            state.cw_supply_c.copy(),
            np.ascontiguousarray(state.staging.on.copy()),
            np.ascontiguousarray(state.staging.time_in_state_s.copy()),
            np.ascontiguousarray(state.staging.restart_timer_s.copy()),
            np.zeros((n_sites, 5)),
            np.zeros(1, dtype=np.bool_),
            state.plenum_heat_kw.copy(),
            state.tower_range_k.copy(),
            np.ascontiguousarray(state.supply_main_c.copy()),
        )

    def run(
        self,
        first_step: int,
        raw_setpoints: FloatArray,
        command_active: bool,
        effects: Any,
        *,
        record: bool = True,
        repeat_first: bool = False,
    ) -> FloatArray:
        """Advance ``len(raw_setpoints)`` steps from ``first_step``; truth (steps, sites, log).

        ``repeat_first`` holds the weather and load of ``first_step`` (the warm-up).
        """
        n = raw_setpoints.shape[0]
        last = first_step if repeat_first else first_step + n - 1
        rows = np.linspace(first_step, last, n).round().astype(np.int64)
        out = np.empty((n if record else 0, self._site_start_h.shape[0], self.n_log))
        run_steps(
            self.params,
            self.step_s,
            first_step * self.step_s,
            self._site_start_h,
            self._dry[rows],
            self._wet[rows],
            self._rh[rows],
            self._util[rows],
            np.ascontiguousarray(raw_setpoints),
            np.full(n, float(command_active)),
            np.ascontiguousarray(effects.crah_ua_mult, dtype=np.float64),
            np.ascontiguousarray(effects.crah_running),
            np.ascontiguousarray(effects.crah_stuck_valve, dtype=np.float64),
            np.ascontiguousarray(effects.chiller_tripped),
            np.ascontiguousarray(effects.condenser_lift_k, dtype=np.float64),
            float(effects.tower_fan_max_frac),
            np.ascontiguousarray(effects.pod_extra_recirc, dtype=np.float64),
            float(effects.pump_efficiency_mult),
            np.ascontiguousarray(effects.util_delta, dtype=np.float64),
            *self._hidden,
            *self._state,
            out,
            record,
        )
        return out
