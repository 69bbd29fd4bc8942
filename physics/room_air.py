"""Room air of a hot-aisle-contained hall: per-rack server nodes, pod hot aisles, a shared return
plenum and the hall structure.

Air paths (per pod ``i``, rack ``r``), all mass-conserving:

* the CRAH units blow supply air at ``T_sup`` into a shared underfloor plenum; pod ``i``
  receives ``s_i`` (its share, set by floor tiles);
* a rack draws ``m_r``; a fraction ``rho_r`` of it leaks back from its own hot aisle
  (local recirculation), a fraction ``X_ij`` comes over the containment from the hot aisle
  of another pod ``j`` (the cross-pod recirculation matrix, the pod-level form of Tang,
  Gupta & Varsamopoulos 2008), the rest is cold-aisle air;
* if the pod's cold air ``s_i`` is short of what its racks need, the deficit is pulled
  through the containment from the hot aisle (extra recirculation ``e_i``); a surplus
  bypasses to the return plenum at ``T_sup``;
* the return plenum mixes hot-aisle outflows and bypass air, exchanges heat with the hall
  structure (which also sees the envelope), and feeds the CRAH returns.

Each rack is one lumped server node (thermal mass ``C_r``) whose temperature is the rack
exhaust temperature: ``C_r dT_s/dt = P_r − m_r c_p (T_s − T_in)``, integrated exactly over a
step (exponential update), so stored heat is accounted for exactly. Air itself is
algebraic (its capacity is lumped into the structure); recirculated air carries the hot-aisle
temperature at the start of the step, and the return-plenum temperature reaches the CRAH
coils one step later (a one-step transport delay).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from physics.compiled import as_record, jit, record_type
from physics.constants import CP_AIR_KJ_KG_K

FloatArray = NDArray[np.float64]


@dataclass(frozen=True)
class RoomParams:
    """Thermal capacities and conductances of the hall."""

    server_capacity_kj_k: float = 250.0
    """Heat capacity of one rack of servers (metal, boards, heat sinks)."""
    structure_capacity_kj_k: float = 14_000.0
    """Hall structure (slab, walls, ceiling, cabling) plus the room air."""
    structure_ua_kw_k: float = 25.0
    """Conductance between the return-plenum air and the structure."""
    envelope_ua_kw_k: float = 1.5
    """Conductance between outdoors and the structure."""

    def __post_init__(self) -> None:
        for name in ("server_capacity_kj_k", "structure_capacity_kj_k"):
            if getattr(self, name) <= 0:
                raise ValueError(f"{name} must be positive")
        for name in ("structure_ua_kw_k", "envelope_ua_kw_k"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must not be negative")


@dataclass
class RoomState:
    """Dynamic state of the hall; leading axis = sites."""

    server_c: FloatArray
    """Server node (= rack exhaust) temperature, shape (sites, pods, racks)."""
    structure_c: FloatArray
    """Hall structure temperature, shape (sites,)."""
    return_air_c: FloatArray
    """Return-plenum air temperature seen by the CRAH coils, shape (sites,)."""


@dataclass(frozen=True)
class RoomStep:
    """What happened in the hall during one step."""

    state: RoomState
    rack_inlet_c: FloatArray
    hot_aisle_c: FloatArray
    rack_heat_to_air_kw: FloatArray
    bypass_kg_s: FloatArray
    extra_recirc_frac: FloatArray
    structure_gain_kw: FloatArray
    envelope_gain_kw: FloatArray


RoomParamsRecord = record_type(RoomParams)


@jit
def hall_step(
    p: RoomParams,
    server_c: FloatArray,
    structure_c: float,
    supply_air_c: float,
    pod_supply_airflow_kg_s: FloatArray,
    rack_power_kw: FloatArray,
    rack_airflow_kg_s: FloatArray,
    rack_recirc_frac: FloatArray,
    cross_recirc_frac: FloatArray,
    server_capacity_kj_k: FloatArray,
    plenum_heat_kw: float,
    outdoor_c: float,
    dt_s: float,
    structure_capacity_kj_k: float,
    out_inlet_c: FloatArray,
    out_hot_aisle_c: FloatArray,
    out_bypass_kg_s: FloatArray,
    out_extra_recirc_frac: FloatArray,
    work: FloatArray,
) -> tuple[float, float, float, float, float]:
    """Advance one hall by ``dt_s`` with the supply air held over the step.

    Arrays: pods ``P``, racks ``R``; ``server_c`` (P, R) is updated in place; rack inlets,
    new hot-aisle temperatures, bypass and extra recirculation are written to the ``out_``
    arrays; ``work`` (4, P) is scratch. Returns the new structure temperature, the return
    air, the structure's and the envelope's heat gains and the heat stored in the servers
    (kW).
    """
    n_pods, n_racks = server_c.shape
    m_pod, rho_pod, hot_old, cross_pod = work[0], work[1], work[2], work[3]
    for q in range(n_pods):
        m = mr = hot = 0.0
        for r in range(n_racks):
            m += rack_airflow_kg_s[q, r]
            mr += rack_airflow_kg_s[q, r] * rack_recirc_frac[q, r]
            hot += rack_airflow_kg_s[q, r] * server_c[q, r]
        m_pod[q] = m
        rho_pod[q] = mr / m
        hot_old[q] = hot / m
        cross_pod[q] = cross_recirc_frac[q].sum()
    t_sup = supply_air_c
    stored_servers = 0.0
    for q in range(n_pods):
        need = (1.0 - rho_pod[q] - cross_pod[q]) * m_pod[q]
        out_extra_recirc_frac[q] = max(need - pod_supply_airflow_kg_s[q], 0.0) / m_pod[q]
        out_bypass_kg_s[q] = max(pod_supply_airflow_kg_s[q] - need, 0.0)
        cross_rise = -cross_pod[q] * t_sup
        for j in range(n_pods):
            cross_rise += cross_recirc_frac[q, j] * hot_old[j]
        hot = 0.0
        for r in range(n_racks):
            mix_frac = rack_recirc_frac[q, r] + out_extra_recirc_frac[q]
            inlet = t_sup + mix_frac * (hot_old[q] - t_sup) + cross_rise
            out_inlet_c[q, r] = inlet
            # Server node: exact exponential update towards the steady exhaust temperature.
            g_kw_k = rack_airflow_kg_s[q, r] * CP_AIR_KJ_KG_K
            cap = server_capacity_kj_k[q, r]
            steady = inlet + rack_power_kw[q, r] / g_kw_k
            new = steady + (server_c[q, r] - steady) * math.exp(-g_kw_k * dt_s / cap)
            stored_servers += cap * (new - server_c[q, r]) / dt_s
            server_c[q, r] = new
            hot += rack_airflow_kg_s[q, r] * new
        out_hot_aisle_c[q] = hot / m_pod[q]
    # Return plenum: mix hot-aisle outflows and bypass, then exchange with the structure.
    # Each hot aisle sends to the plenum what its own and other pods' racks did not draw.
    plenum_flow = mix_num = bypass_sum = 0.0
    for q in range(n_pods):
        drawn = 0.0
        for i in range(n_pods):
            drawn += cross_recirc_frac[i, q] * m_pod[i]
        hot_out = max((1.0 - rho_pod[q] - out_extra_recirc_frac[q]) * m_pod[q] - drawn, 0.0)
        plenum_flow += hot_out
        mix_num += hot_out * out_hot_aisle_c[q]
        bypass_sum += out_bypass_kg_s[q]
    plenum_flow += bypass_sum  # = the supply airflow (mass balance)
    if plenum_flow > 1e-9:
        mix = (mix_num + bypass_sum * t_sup) / max(plenum_flow, 1e-9)
    else:
        mix = out_hot_aisle_c.sum() / n_pods
    capacity_rate = max(plenum_flow, 1e-6) * CP_AIR_KJ_KG_K
    mix += plenum_heat_kw / capacity_rate
    # Structure: lumped node between plenum air and outdoors, exact update. The air can
    # give up at most what its stream carries: the surface acts with effectiveness
    # 1 − exp(−UA/(m·cp)), so the return air stays between the mix and the structure.
    ua_st = capacity_rate * -math.expm1(-p.structure_ua_kw_k / capacity_rate)
    ua_sum = ua_st + p.envelope_ua_kw_k
    steady = (ua_st * mix + p.envelope_ua_kw_k * outdoor_c) / ua_sum
    c_st = structure_capacity_kj_k
    structure_new = steady + (structure_c - steady) * math.exp(-ua_sum * dt_s / c_st)
    stored_structure = c_st * (structure_new - structure_c) / dt_s
    envelope_gain = p.envelope_ua_kw_k * (outdoor_c - 0.5 * (structure_new + structure_c))
    structure_gain = stored_structure - envelope_gain
    return_air = mix - structure_gain / capacity_rate
    return structure_new, return_air, structure_gain, envelope_gain, stored_servers


def room_air_step(
    params: RoomParams,
    state: RoomState,
    *,
    supply_air_c: FloatArray,
    pod_supply_airflow_kg_s: FloatArray,
    rack_power_kw: FloatArray,
    rack_airflow_kg_s: FloatArray,
    rack_recirc_frac: FloatArray,
    cross_recirc_frac: FloatArray,
    server_capacity_kj_k: FloatArray,
    plenum_heat_kw: FloatArray,
    outdoor_c: FloatArray,
    dt_s: float,
    structure_capacity_kj_k: FloatArray | None = None,
) -> RoomStep:
    """Advance the hall by ``dt_s`` seconds with the supply air held over the step
    (:func:`hall_step` for each site).

    Shapes: sites ``B``, pods ``P``, racks ``R``. ``supply_air_c`` (B,),
    ``pod_supply_airflow_kg_s`` (B, P), rack arrays (B, P, R), ``cross_recirc_frac`` (B, P, P)
    with ``[b, i, j]`` the share of pod i's rack intake drawn from pod j's hot aisle (zero
    diagonal: a pod's own leakage is ``rack_recirc_frac``),
    ``plenum_heat_kw`` (B,) heat released into the return plenum (lighting, PDU losses),
    ``outdoor_c`` (B,), ``structure_capacity_kj_k`` (B,) per-site structure capacity (defaults
    to ``params.structure_capacity_kj_k``).
    """
    b, n_pods, n_racks = np.shape(state.server_c)

    def per_site(value: object, shape: tuple[int, ...]) -> FloatArray:
        return np.ascontiguousarray(np.broadcast_to(np.asarray(value, np.float64), shape))

    rack = (b, n_pods, n_racks)
    power = per_site(rack_power_kw, rack)
    airflow = per_site(rack_airflow_kg_s, rack)
    recirc = per_site(rack_recirc_frac, rack)
    capacity = per_site(server_capacity_kj_k, rack)
    cross = per_site(cross_recirc_frac, (b, n_pods, n_pods))
    pod_supply = per_site(pod_supply_airflow_kg_s, (b, n_pods))
    scalars = [
        per_site(v, (b,))
        for v in (
            supply_air_c,
            plenum_heat_kw,
            outdoor_c,
            params.structure_capacity_kj_k
            if structure_capacity_kj_k is None
            else structure_capacity_kj_k,
            state.structure_c,
        )
    ]
    server = np.array(state.server_c, dtype=np.float64)
    before = server.copy()
    inlet = np.empty(rack)
    hot_aisle = np.empty((b, n_pods))
    bypass = np.empty((b, n_pods))
    extra = np.empty((b, n_pods))
    results = np.empty((b, 5))
    work = np.empty((4, n_pods))
    record = as_record(params)
    for site in range(b):
        sup, plenum, outdoor, c_struct, struct = (float(v[site]) for v in scalars)
        results[site] = hall_step(
            record,
            server[site],
            struct,
            sup,
            pod_supply[site],
            power[site],
            airflow[site],
            recirc[site],
            cross[site],
            capacity[site],
            plenum,
            outdoor,
            dt_s,
            c_struct,
            inlet[site],
            hot_aisle[site],
            bypass[site],
            extra[site],
            work,
        )
    return RoomStep(
        state=RoomState(server_c=server, structure_c=results[:, 0], return_air_c=results[:, 1]),
        rack_inlet_c=inlet,
        hot_aisle_c=hot_aisle,
        rack_heat_to_air_kw=power - capacity * (server - before) / dt_s,
        bypass_kg_s=bypass,
        extra_recirc_frac=extra,
        structure_gain_kw=results[:, 2],
        envelope_gain_kw=results[:, 3],
    )
