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

import logging
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from physics.constants import CP_AIR_KJ_KG_K

logger = logging.getLogger(__name__)

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


def _relax(value: FloatArray, target: FloatArray, decay: FloatArray) -> FloatArray:
    """Exact solution of a first-order lag after one step: target + (value − target)·decay."""
    return np.asarray(target + (value - target) * decay, dtype=np.float64)


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
    """Advance the hall by ``dt_s`` seconds with the supply air held over the step.

    Shapes: sites ``B``, pods ``P``, racks ``R``. ``supply_air_c`` (B,),
    ``pod_supply_airflow_kg_s`` (B, P), rack arrays (B, P, R), ``cross_recirc_frac`` (B, P, P)
    with ``[b, i, j]`` the share of pod i's rack intake drawn from pod j's hot aisle (zero
    diagonal: a pod's own leakage is ``rack_recirc_frac``),
    ``plenum_heat_kw`` (B,) heat released into the return plenum (lighting, PDU losses),
    ``outdoor_c`` (B,), ``structure_capacity_kj_k`` (B,) per-site structure capacity (defaults
    to ``params.structure_capacity_kj_k``).
    """
    t_sup = supply_air_c[:, None]
    m_rack = rack_airflow_kg_s
    m_pod = m_rack.sum(axis=2)
    rho_pod = (m_rack * rack_recirc_frac).sum(axis=2) / m_pod
    cross_pod = cross_recirc_frac.sum(axis=2)
    need = (1.0 - rho_pod - cross_pod) * m_pod
    deficit = np.maximum(need - pod_supply_airflow_kg_s, 0.0)
    bypass = np.maximum(pod_supply_airflow_kg_s - need, 0.0)
    extra = deficit / m_pod

    hot_aisle = (m_rack * state.server_c).sum(axis=2) / m_pod
    cross_rise = np.einsum("bij,bj->bi", cross_recirc_frac, hot_aisle) - cross_pod * t_sup
    inlet = (
        t_sup[..., None]
        + (rack_recirc_frac + extra[..., None]) * (hot_aisle - t_sup)[..., None]
        + cross_rise[..., None]
    )

    # Server nodes: exact exponential update towards the steady exhaust temperature.
    g_kw_k = m_rack * CP_AIR_KJ_KG_K
    steady = inlet + rack_power_kw / g_kw_k
    decay = np.exp(-g_kw_k * dt_s / server_capacity_kj_k)
    server_new = _relax(state.server_c, steady, decay)
    heat_to_air = rack_power_kw - server_capacity_kj_k * (server_new - state.server_c) / dt_s

    # Return plenum: mix hot-aisle outflows and bypass, then exchange with the structure.
    # Each hot aisle sends to the plenum what its own and other pods' racks did not draw.
    drawn_by_others = np.einsum("bij,bi->bj", cross_recirc_frac, m_pod)
    hot_out = np.maximum((1.0 - rho_pod - extra) * m_pod - drawn_by_others, 0.0)
    hot_aisle_new = (m_rack * server_new).sum(axis=2) / m_pod
    plenum_flow = hot_out.sum(axis=1) + bypass.sum(axis=1)  # = supply airflow (mass balance)
    mix = np.where(
        plenum_flow > 1e-9,
        ((hot_out * hot_aisle_new).sum(axis=1) + bypass.sum(axis=1) * supply_air_c)
        / np.maximum(plenum_flow, 1e-9),
        hot_aisle_new.mean(axis=1),
    )
    capacity_rate = np.maximum(plenum_flow, 1e-6) * CP_AIR_KJ_KG_K
    mix = mix + plenum_heat_kw / capacity_rate

    # Structure: lumped node between plenum air and outdoors, exact update. The air can
    # give up at most what its stream carries: the surface acts with effectiveness
    # 1 − exp(−UA/(m·cp)), so the return air stays between the mix and the structure.
    ua_st = capacity_rate * -np.expm1(-params.structure_ua_kw_k / capacity_rate)
    ua_env = params.envelope_ua_kw_k
    ua_sum = ua_st + ua_env
    struct_steady = (ua_st * mix + ua_env * outdoor_c) / ua_sum
    c_struct = (
        params.structure_capacity_kj_k
        if structure_capacity_kj_k is None
        else np.asarray(structure_capacity_kj_k, dtype=np.float64)
    )
    struct_decay = np.exp(-ua_sum * dt_s / c_struct)
    structure_new = _relax(state.structure_c, struct_steady, struct_decay)
    stored_kw = c_struct * (structure_new - state.structure_c) / dt_s
    envelope_gain = ua_env * (outdoor_c - 0.5 * (structure_new + state.structure_c))
    structure_gain = stored_kw - envelope_gain
    return_air = mix - structure_gain / capacity_rate

    return RoomStep(
        state=RoomState(server_c=server_new, structure_c=structure_new, return_air_c=return_air),
        rack_inlet_c=inlet,
        hot_aisle_c=hot_aisle_new,
        rack_heat_to_air_kw=heat_to_air,
        bypass_kg_s=bypass,
        extra_recirc_frac=extra,
        structure_gain_kw=structure_gain,
        envelope_gain_kw=envelope_gain,
    )
