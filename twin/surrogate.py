"""The physics-informed surrogate: a reduced model of the hall and plant in torch, with
physically meaningful parameters and small learned residuals.

One call of :meth:`PhysicsTwin.forward` advances a batch of twins by one control period
(300 s by default). It reduces the plant of :mod:`physics` to pod level:

* **CRAH units**: airflow and fan power by the affinity laws; the supply air follows its
  setpoint unless the coil cannot reach it (ε-NTU counterflow coil at full valve, UA scaled
  with flow); the valve's water flow is the least flow that reaches the setpoint (bisection).
* **Room air**: per pod one server node (hot aisle) fed by inlet air that is supply air plus
  local/cross recirculation and the deficit pulled through the containment when the CRAH
  airflow is short of what the racks draw; the node ODE is linear once the supply air is held,
  so it is integrated exactly over the period. Each rack's inlet is the supply air plus its
  own recirculation share of the pod's hot-aisle rise (plus a per-rack offset). The return
  plenum mixes hot-aisle outflow and bypass air and exchanges heat with a lumped structure node.
* **Chilled water**: coil returns mixed with the minimum-flow bypass into a return volume, the
  waterside economiser, chillers that hold the supply setpoint within capacity (DOE-2 EIR
  curves of the data sheet), supply volume, pump affinity law.
* **Condenser water and tower**: the tower makes the setpoint or its full-fan approach,
  whichever is warmer; fan power ∝ airflow ratio³.
* **Power chain**: the site's loss curves; facility = IT + cooling + losses + lighting + aux.
* **Unit status** (:class:`UnitStatus`, optional): tripped CRAH units take their share of the
  hall's airflow capacity with them and the BMS's failure sequence speeds the others up to
  hold airflow, capped at full speed (the units' air mixes in one hall, so it is a hall-level
  fraction); tripped chillers cap how many can be staged, so the supply warms once the load
  exceeds the remaining capacity; lost tower-fan capacity caps the fan's airflow ratio and
  with it the approach the tower can make (free convection at worst). Without a status every
  unit runs, and the step is the same computation as before status existed.

The site's deviations from its drawings live in learned structural parameters (per-rack
recirculation and offsets, pod airflow shares, thermal capacities, tower approach) and in a
vector ``theta`` of five physical multipliers, one row per twin, that data assimilation
tracks online: coil UA, chiller EIR, recirculation, thermal capacity, tower approach bias.
Residual networks add bounded corrections to what the reduced physics misses; the training
loss keeps them small and the energy balance closed (``twin/training.py``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields
from typing import Any

import torch
from torch import Tensor, nn

from physics.constants import CP_AIR_KJ_KG_K, CP_WATER_KJ_KG_K
from physics.power_chain import LossCurve
from twin.design import TwinDesign

THETA_NAMES: tuple[str, ...] = (
    "coil_ua_mult",
    "chiller_eir_mult",
    "recirc_mult",
    "capacity_mult",
    "tower_approach_bias_k",
)
"""The physical parameters assimilation tracks, in the column order of ``theta``."""

THETA_NOMINAL: tuple[float, ...] = (1.0, 1.0, 1.0, 1.0, 0.0)

VALVE_GRID_POINTS = 24


@dataclass(frozen=True)
class TwinState:
    """The twin's state; leading axis = twins. Everything but ``structure_c`` is a reading."""

    rack_inlet_c: Tensor  # (N, P, R)
    hot_aisle_c: Tensor  # (N, P)
    supply_air_c: Tensor  # (N,)
    return_air_c: Tensor
    structure_c: Tensor
    chw_supply_c: Tensor
    chw_return_c: Tensor
    cw_supply_c: Tensor

    def detach(self) -> TwinState:
        return TwinState(**{f.name: getattr(self, f.name).detach() for f in fields(self)})

    def index(self, idx: Tensor | slice) -> TwinState:
        return TwinState(**{f.name: getattr(self, f.name)[idx] for f in fields(self)})

    def where(self, mask: Tensor, other: TwinState) -> TwinState:
        """Per twin: this state where ``mask`` (N,) holds, else ``other``."""

        def pick(a: Tensor, b: Tensor) -> Tensor:
            m = mask.reshape(mask.shape + (1,) * (a.dim() - 1))
            return torch.where(m, a, b)

        return TwinState(
            **{f.name: pick(getattr(self, f.name), getattr(other, f.name)) for f in fields(self)}
        )


@dataclass(frozen=True)
class UnitStatus:
    """Equipment available during one period, per twin (N,); period means where the status
    changed inside the period.

    ``crah_running_frac``: the fraction of the hall's CRAH units running (1.0 all, 11/12 with
    one tripped); ``chillers_available``: how many chillers can be staged (not tripped, not
    locked out); ``tower_fan_frac``: the tower fans' airflow capacity left (1.0 intact, 0.0
    all fans lost).
    """

    crah_running_frac: Tensor
    chillers_available: Tensor
    tower_fan_frac: Tensor

    def index(self, idx: Tensor | slice) -> UnitStatus:
        return UnitStatus(**{f.name: getattr(self, f.name)[idx] for f in fields(self)})

    def to(self, device: torch.device | str) -> UnitStatus:
        return UnitStatus(**{f.name: getattr(self, f.name).to(device) for f in fields(self)})

    def clone(self) -> UnitStatus:
        return UnitStatus(**{f.name: getattr(self, f.name).clone() for f in fields(self)})

    @staticmethod
    def all_running(n: int, design: TwinDesign, device: torch.device | None = None) -> UnitStatus:
        """Every unit of ``design`` running, for ``n`` twins."""
        ones = torch.ones(n, device=device)
        return UnitStatus(ones, ones * float(design.n_chillers), ones.clone())

    @staticmethod
    def concat(parts: list[UnitStatus]) -> UnitStatus:
        return UnitStatus(
            **{f.name: torch.cat([getattr(p, f.name) for p in parts]) for f in fields(UnitStatus)}
        )


@dataclass(frozen=True)
class TwinInputs:
    """What drives one period: applied setpoints (N, 5) in physical units, in
    :data:`twin.spaces.ACTION_NAMES` order; mean IT power per pod (N, P); outdoor air (N,);
    the units available (None: every unit runs)."""

    setpoints: Tensor
    it_power_kw: Tensor
    outdoor_dry_bulb_c: Tensor
    outdoor_wet_bulb_c: Tensor
    status: UnitStatus | None = None
    chiller_on_frac: Tensor | None = None
    """Each chiller's recorded running share of the period (N, n_chillers), where replaying a
    recording; NaN rows or None: the twin stages its chillers itself, lead (lowest index)
    first, as the plant's sequence does."""

    def index(self, idx: Tensor | slice) -> TwinInputs:
        return TwinInputs(
            setpoints=self.setpoints[idx],
            it_power_kw=self.it_power_kw[idx],
            outdoor_dry_bulb_c=self.outdoor_dry_bulb_c[idx],
            outdoor_wet_bulb_c=self.outdoor_wet_bulb_c[idx],
            status=None if self.status is None else self.status.index(idx),
            chiller_on_frac=None if self.chiller_on_frac is None else self.chiller_on_frac[idx],
        )


@dataclass(frozen=True)
class TwinStep:
    """One period's prediction: the state at its end and the mean powers over it (kW)."""

    state: TwinState
    crah_fan_kw: Tensor
    chiller_kw: Tensor
    chw_pump_kw: Tensor
    cw_pump_kw: Tensor
    tower_fan_kw: Tensor
    cooling_kw: Tensor
    facility_kw: Tensor
    chw_flow_kg_s: Tensor
    valve_frac: Tensor
    """Mean CRAH chilled-water valve position (water flow / the valve's maximum)."""
    coil_heat_kw: Tensor
    chillers_on: Tensor
    heat_in_kw: Tensor
    """Heat into the room air (IT + CRAH fans + plenum gains) minus what the room stored."""
    residual_sq: Tensor
    """Mean squared (scaled) residual correction, per twin: the physics left unexplained."""


def _softplus_inv(x: float) -> float:
    return x + math.log(-math.expm1(-x))


def _decay(exponent: Tensor) -> Tensor:
    """exp(exponent) for decays, floored at exp(-30): a longer decay is complete anyway, and
    exponentials that underflow into subnormal floats run ~50x slower on CPUs."""
    return torch.exp(torch.clamp(exponent, min=-30.0))


def _smooth_max(a: Tensor, b: Tensor, sharpness: float = 8.0) -> Tensor:
    """max(a, b) smoothed over about 1/sharpness (keeps gradients on both sides)."""
    return b + nn.functional.softplus(a - b, beta=sharpness)


def _loss_kw(curve: LossCurve, load_kw: Tensor) -> Tensor:
    x = torch.clamp(load_kw, min=0.0) / curve.rated_kw
    return curve.rated_kw * (curve.a0 + x * (curve.a1 + x * curve.a2))


def _biquadratic(c: tuple[float, ...], x: Tensor, y: Tensor) -> Tensor:
    return c[0] + c[1] * x + c[2] * x * x + c[3] * y + c[4] * y * y + c[5] * x * y


class PhysicsTwin(nn.Module):
    """Reduced physics of one site plus learned residuals (see the module docstring).

    ``residual_hidden=0`` switches the residual networks off (physics only).
    """

    def __init__(self, design: TwinDesign, *, step_s: float = 300.0, residual_hidden: int = 64):
        super().__init__()
        if step_s <= 0:
            raise ValueError("step_s must be positive")
        self.design = design
        self.step_s = float(step_s)
        p, r = design.n_pods, design.racks_per_pod
        racks = torch.full((p,), float(r))
        # Learned structure (raw, unconstrained; transformed in the properties below).
        self.raw_rack_recirc = nn.Parameter(torch.full((p, r), math.log(0.05 / 0.95)))
        self.rack_offset_c = nn.Parameter(torch.zeros(p, r))
        self.raw_cross_recirc = nn.Parameter(torch.tensor(math.log(0.03 / 0.97)))
        self.raw_pod_airflow_kg_s = nn.Parameter(torch.log(racks * design.rack_design_airflow_kg_s))
        self.raw_pod_share = nn.Parameter(torch.zeros(p))
        self.raw_pod_capacity = nn.Parameter(torch.log(racks * design.server_capacity_kj_k))
        self.raw_structure_capacity = nn.Parameter(
            torch.tensor(math.log(design.structure_capacity_kj_k))
        )
        self.raw_structure_ua = nn.Parameter(torch.tensor(math.log(design.structure_ua_kw_k)))
        self.raw_envelope_ua = nn.Parameter(
            torch.tensor(_softplus_inv(max(design.envelope_ua_kw_k, 0.1)))
        )
        self.raw_crah_airflow_mult = nn.Parameter(torch.zeros(()))
        self.raw_coil_ua_mult = nn.Parameter(torch.zeros(()))
        # One EIR multiplier per chiller: a site's machines age and foul differently, and the
        # lead chiller runs most; one shared multiplier is right only for the mix of units
        # the commissioning data happened to run.
        self.raw_chiller_eir_mult = nn.Parameter(torch.zeros(design.n_chillers))
        self.raw_chw_tau_s = nn.Parameter(torch.tensor(math.log(300.0)))
        self.tower_approach_k = nn.Parameter(torch.tensor(3.0))
        self.tower_approach_per_range = nn.Parameter(torch.tensor(0.3))
        self.raw_tower_fan_exponent = nn.Parameter(torch.tensor(_softplus_inv(1.5)))
        self.hot_aisle_offset_c = nn.Parameter(torch.zeros(p))
        self.n_residuals = 6 + p + 3
        self.residual_hidden = residual_hidden
        self.residual: nn.Module | None = None
        if residual_hidden > 0:
            self.residual = nn.Sequential(
                nn.Linear(self.n_features, residual_hidden),
                nn.Tanh(),
                nn.Linear(residual_hidden, residual_hidden),
                nn.Tanh(),
                nn.Linear(residual_hidden, self.n_residuals),
            )
            last = self.residual[-1]
            assert isinstance(last, nn.Linear)
            nn.init.zeros_(last.weight)
            nn.init.zeros_(last.bias)
        # Valve flows per unit the valve solve evaluates, denser at low flow.
        self._valve_grid: Tensor
        self.register_buffer(
            "_valve_grid",
            design.crah_max_water_kg_s * torch.linspace(0.0, 1.0, VALVE_GRID_POINTS) ** 2,
            persistent=False,
        )
        # Bounds of the residual corrections: K for temperatures, log-multipliers for power.
        self.residual_bound: Tensor
        self.register_buffer(
            "residual_bound",
            torch.tensor([0.5, 0.5, 0.5, 0.5, 0.5, 0.5, *([0.5] * p), 0.15, 0.15, 0.15]),
        )

    # ------------------------------------------------------------------ parameters
    @property
    def n_features(self) -> int:
        return 16 + 2 * self.design.n_pods

    @property
    def rack_recirc(self) -> Tensor:
        return torch.sigmoid(self.raw_rack_recirc)

    @property
    def cross_recirc(self) -> Tensor:
        return torch.sigmoid(self.raw_cross_recirc)

    @property
    def pod_airflow_kg_s(self) -> Tensor:
        return torch.exp(self.raw_pod_airflow_kg_s)

    @property
    def pod_share(self) -> Tensor:
        return torch.softmax(self.raw_pod_share, dim=0)

    def physical_parameters(self) -> dict[str, float | list[float]]:
        """The learned physical parameters with their units, for reports."""
        d = self.design
        with torch.no_grad():
            return {
                "rack_recirc_frac_mean": float(self.rack_recirc.mean()),
                "cross_recirc_frac": float(self.cross_recirc),
                "pod_airflow_kg_s": self.pod_airflow_kg_s.tolist(),
                "pod_share": self.pod_share.tolist(),
                "pod_capacity_kj_k": torch.exp(self.raw_pod_capacity).tolist(),
                "structure_capacity_kj_k": float(torch.exp(self.raw_structure_capacity)),
                "structure_ua_kw_k": float(torch.exp(self.raw_structure_ua)),
                "envelope_ua_kw_k": float(nn.functional.softplus(self.raw_envelope_ua)),
                "crah_airflow_kg_s": float(
                    d.n_crah * d.crah_design_airflow_kg_s * torch.exp(self.raw_crah_airflow_mult)
                ),
                "coil_ua_kw_k": float(d.crah_design_ua_kw_k * torch.exp(self.raw_coil_ua_mult)),
                "chiller_eir_mult": torch.exp(self.raw_chiller_eir_mult).tolist(),
                "chw_time_constant_s": float(torch.exp(self.raw_chw_tau_s)),
                "tower_approach_k": float(self.tower_approach_k),
                "tower_approach_per_range": float(self.tower_approach_per_range),
            }

    # ------------------------------------------------------------------ state
    def initial_structure_c(
        self, hot_aisle_c: Tensor, supply_air_c: Tensor, return_air_c: Tensor
    ) -> Tensor:
        """Structure temperature consistent with a measured return air (hidden-state
        observer): inverts the plenum model at the current hot aisles, assuming nominal
        airflow (good to a fraction of a K, and forgotten within a few time constants)."""
        d = self.design
        m_air = torch.full_like(supply_air_c, d.n_crah * d.crah_design_airflow_kg_s)
        m_air = m_air * torch.exp(self.raw_crah_airflow_mult)
        mix = 0.5 * (hot_aisle_c.mean(dim=-1) + return_air_c)
        c_rate = m_air * CP_AIR_KJ_KG_K
        ua = c_rate * -torch.expm1(-torch.exp(self.raw_structure_ua) / c_rate)
        return mix - (mix - return_air_c) * c_rate / torch.clamp(ua, min=1e-3)

    def state_from_readings(
        self,
        rack_inlet_c: Tensor,
        hot_aisle_c: Tensor,
        supply_air_c: Tensor,
        return_air_c: Tensor,
        chw_supply_c: Tensor,
        chw_return_c: Tensor,
        cw_supply_c: Tensor,
    ) -> TwinState:
        structure = self.initial_structure_c(hot_aisle_c, supply_air_c, return_air_c)
        return TwinState(
            rack_inlet_c=rack_inlet_c,
            hot_aisle_c=hot_aisle_c,
            supply_air_c=supply_air_c,
            return_air_c=return_air_c,
            structure_c=torch.clamp(structure, 10.0, 45.0),
            chw_supply_c=chw_supply_c,
            chw_return_c=chw_return_c,
            cw_supply_c=cw_supply_c,
        )

    def nominal_theta(self, n: int, device: torch.device | None = None) -> Tensor:
        return torch.tensor(THETA_NOMINAL, device=device).expand(n, -1).clone()

    # ------------------------------------------------------------------ the step
    def forward(self, state: TwinState, inputs: TwinInputs, theta: Tensor) -> TwinStep:
        d, dt = self.design, self.step_s
        sp = inputs.setpoints
        sp_sat, fan, sp_chw, sp_cw, eco_enable = sp.unbind(-1)
        ua_mult, eir_mult, recirc_mult, cap_mult, approach_bias = theta.unbind(-1)
        it_kw = torch.clamp(inputs.it_power_kw, min=1.0)
        wet_bulb, dry_bulb = inputs.outdoor_wet_bulb_c, inputs.outdoor_dry_bulb_c

        status = inputs.status
        # --- CRAH fans and the coil limit (entering air = last return, water = last supply)
        fan = torch.clamp(fan, d.crah_min_speed_frac, 1.0)
        units: float | Tensor = d.n_crah
        if status is not None:
            # The BMS's failure sequence: the running units speed up to hold the airflow,
            # capped at full speed (at least one unit is taken to run).
            running = torch.clamp(status.crah_running_frac, min=1.0 / d.n_crah, max=1.0)
            fan = torch.clamp(fan / running, max=1.0)
            units = d.n_crah * running
        unit_air = d.crah_design_airflow_kg_s * fan * torch.exp(self.raw_crah_airflow_mult)
        m_air = units * unit_air
        c_air_total = m_air * CP_AIR_KJ_KG_K
        fan_kw = units * d.crah_design_fan_kw * fan**3
        fan_rise = fan_kw / c_air_total
        coil_ua = (
            d.crah_design_ua_kw_k
            * torch.exp(self.raw_coil_ua_mult)
            * torch.clamp(ua_mult, min=0.05)
        )
        t_in_coil = state.return_air_c
        t_water = state.chw_supply_c
        delta = torch.clamp(t_in_coil - t_water, min=0.0)

        r_a = d.crah_air_resistance_frac
        air_resistance = (r_a * (d.crah_design_airflow_kg_s / unit_air) ** 0.8)[:, None]
        c_a = (unit_air * CP_AIR_KJ_KG_K)[:, None]
        ua_c = coil_ua[:, None]
        drop_c = (delta / (unit_air * CP_AIR_KJ_KG_K))[:, None]

        def coil_leaving(water_kg_s: Tensor) -> Tensor:
            """Leaving air (N, G) for water flows per unit (N, G)."""
            m_w = torch.clamp(water_kg_s, min=1e-4)
            resistance = air_resistance + (1.0 - r_a) * (d.crah_design_water_kg_s / m_w) ** 0.85
            c_w = m_w * CP_WATER_KJ_KG_K
            c_min = torch.minimum(c_a, c_w)
            cr = torch.clamp(c_min / torch.maximum(c_a, c_w), max=1.0 - 1e-4)
            e = _decay(-(ua_c / (resistance * c_min)) * (1.0 - cr))
            eps = (1.0 - e) / (1.0 - cr * e)
            return t_in_coil[:, None] - eps * c_min * drop_c

        coil_min_c = coil_leaving(torch.full_like(c_a, d.crah_max_water_kg_s))[:, 0]
        coil_target = torch.minimum(sp_sat - fan_rise, t_in_coil)
        coil_leave = _smooth_max(coil_target, coil_min_c)
        # Valve: the least water flow reaching the coil's leaving temperature. Leaving air
        # falls monotonically with flow, so it is evaluated on a fixed grid of flows at once
        # and the crossing interpolated linearly (one batched call instead of a bisection).
        with torch.no_grad():
            grid = self._valve_grid.to(fan.dtype)
            curve = coil_leaving(grid.expand(fan.shape[0], -1))  # (N, G), falling
            warm = (curve > coil_leave[:, None]).sum(dim=-1).clamp(1, grid.numel() - 1)
            lo_i = warm - 1
            t_lo = curve.gather(1, lo_i[:, None])[:, 0]
            t_hi = curve.gather(1, warm[:, None])[:, 0]
            frac = torch.clamp((t_lo - coil_leave) / torch.clamp(t_lo - t_hi, min=1e-9), 0.0, 1.0)
            unit_water = grid[lo_i] + frac * (grid[warm] - grid[lo_i])
        coil_heat = c_air_total * (t_in_coil - coil_leave)
        coil_flow = units * unit_water

        features = self._features(state, inputs, coil_leave, coil_heat)
        res = self._residuals(features)
        supply_air = coil_leave + fan_rise + res[:, 0]

        # --- room air: pods (exact over the period with the supply held)
        share = self.pod_share
        recirc = self.rack_recirc * recirc_mult[:, None, None]  # (N, P, R)
        cross = self.cross_recirc
        inlet_mean_prev = state.rack_inlet_c.mean(dim=-1)
        speed_up = 1.0 + d.server_fan_speed_per_k * torch.relu(inlet_mean_prev - d.server_onset_c)
        m_srv = self.pod_airflow_kg_s * speed_up  # (N, P)
        rho = recirc.mean(dim=-1) + cross
        need = (1.0 - rho) * m_srv
        supplied = share * m_air[:, None]
        extra = nn.functional.softplus(need - supplied, beta=4.0) / m_srv
        rho_eff = torch.clamp(rho + extra, max=0.9)
        g = m_srv * CP_AIR_KJ_KG_K * (1.0 - rho_eff)
        t_sup = supply_air[:, None]
        hot_ss = t_sup + it_kw / g
        capacity = torch.exp(self.raw_pod_capacity) * cap_mult[:, None]
        decay = _decay(-g * dt / capacity)
        hot_prev = state.hot_aisle_c - self.hot_aisle_offset_c
        hot = hot_ss + (hot_prev - hot_ss) * decay + res[:, 6 : 6 + d.n_pods]
        pods_stored = capacity * (hot - hot_prev) / dt
        rise = (recirc + cross + extra[..., None]) * (hot - t_sup)[..., None]
        rack_inlet = t_sup[..., None] + rise + self.rack_offset_c

        # --- return plenum and structure
        hot_out = (1.0 - rho_eff) * m_srv
        out_flow = hot_out.sum(dim=-1)
        bypass = nn.functional.softplus(m_air - out_flow, beta=4.0)
        flow = out_flow + bypass
        c_rate = flow * CP_AIR_KJ_KG_K
        pdu_loss = _loss_kw(d.power_chain.pdu, it_kw.sum(dim=-1))
        ups_loss = _loss_kw(d.power_chain.ups, it_kw.sum(dim=-1) + pdu_loss)
        plenum_kw = pdu_loss + ups_loss + d.power_chain.lighting_kw
        mix = ((hot_out * hot).sum(dim=-1) + bypass * supply_air) / flow + plenum_kw / c_rate
        ua_st = c_rate * -torch.expm1(-torch.exp(self.raw_structure_ua) / c_rate)
        ua_env = nn.functional.softplus(self.raw_envelope_ua)
        st_ss = (ua_st * mix + ua_env * dry_bulb) / (ua_st + ua_env)
        c_struct = torch.exp(self.raw_structure_capacity) * cap_mult
        structure = st_ss + (state.structure_c - st_ss) * _decay(-(ua_st + ua_env) * dt / c_struct)
        struct_stored = c_struct * (structure - state.structure_c) / dt
        envelope = ua_env * (dry_bulb - 0.5 * (structure + state.structure_c))
        return_air = mix - (struct_stored - envelope) / c_rate + res[:, 1]

        # --- chilled water: return volume, economiser, chillers, supply
        curves = d.chiller_curves
        cw_prev = state.cw_supply_c
        x = torch.clamp(sp_chw, *curves.chw_leave_range_c)
        y = torch.clamp(cw_prev, *curves.cw_enter_range_c)
        cap_each = d.chiller_ref_capacity_kw * _biquadratic(curves.capft, x, y)
        n_on = torch.clamp(
            torch.ceil(coil_heat.detach() / (d.chiller_stage_up_frac * cap_each.detach())),
            1.0,
            float(d.n_chillers),
        )
        if status is not None:  # tripped chillers cannot be staged
            available = torch.clamp(status.chillers_available, 0.0, float(d.n_chillers))
            n_on = torch.minimum(n_on, available)
        primary = torch.maximum(coil_flow, n_on * d.chw_min_flow_per_chiller_kg_s)
        coil_return = t_water + coil_heat / (torch.clamp(coil_flow, min=1e-3) * CP_WATER_KJ_KG_K)
        mixed = (coil_flow * coil_return + (primary - coil_flow) * t_water) / primary
        ret_decay = _decay(-primary * dt / d.chw_return_mass_kg)
        chw_return = mixed + (state.chw_return_c - mixed) * ret_decay + res[:, 2]
        c_chw = primary * CP_WATER_KJ_KG_K
        eco_on = (eco_enable > 0.5) & (cw_prev < chw_return)
        c_cw_eco = d.cw_flow_per_chiller_kg_s * CP_WATER_KJ_KG_K
        eco_heat = torch.where(
            eco_on,
            d.economiser_effectiveness
            * torch.minimum(c_chw, torch.full_like(c_chw, c_cw_eco))
            * torch.clamp(chw_return - cw_prev, min=0.0),
            torch.zeros_like(c_chw),
        )
        eco_leave = chw_return - eco_heat / c_chw
        capacity_kw = n_on * cap_each
        leave = torch.minimum(eco_leave, torch.maximum(sp_chw, eco_leave - capacity_kw / c_chw))
        load = c_chw * (eco_leave - leave)
        chw_tau = torch.exp(self.raw_chw_tau_s)
        chw_supply = leave + (state.chw_supply_c - leave) * _decay(-dt / chw_tau) + res[:, 3]
        plr = torch.clamp(load / torch.clamp(capacity_kw, min=1e-6), min=d.chiller_min_plr, max=1.0)
        eir = _biquadratic(curves.eirft, torch.clamp(leave, *curves.chw_leave_range_c), y)
        eir_plr = curves.eirfplr[0] + curves.eirfplr[1] * plr + curves.eirfplr[2] * plr * plr
        chiller_kw = (
            capacity_kw
            / d.chiller_ref_cop
            * eir
            * eir_plr
            * self._running_eir_mult(n_on, inputs.chiller_on_frac)
            * torch.clamp(eir_mult, min=0.1)
            * (load > 0.0).to(load.dtype)
            * torch.exp(res[:, 6 + d.n_pods])
        )
        q = torch.clamp(primary / d.chw_design_flow_kg_s, min=0.3)
        chw_pump_kw = d.chw_pump_design_kw * q**3 * torch.exp(res[:, 8 + d.n_pods])

        # --- condenser water and tower
        # One cell keeps circulating while chillers are wanted but none is available.
        cells = torch.clamp(torch.maximum(n_on, eco_on.to(n_on.dtype)), min=1.0)
        cw_flow = cells * d.cw_flow_per_chiller_kg_s
        tower_heat = load + chiller_kw + eco_heat
        tower_range = tower_heat / (cw_flow * CP_WATER_KJ_KG_K)
        approach_full = torch.clamp(
            self.tower_approach_k + self.tower_approach_per_range * tower_range + approach_bias,
            min=0.3,
        )
        wanted_approach = torch.clamp(sp_cw - wet_bulb, min=0.05)
        exponent = nn.functional.softplus(self.raw_tower_fan_exponent)
        coldest = wet_bulb + approach_full
        ratio = torch.clamp(
            (approach_full / torch.maximum(wanted_approach, approach_full)) ** exponent,
            d.tower_min_airflow_ratio,
            1.0,
        )
        if status is not None:
            coldest, ratio = self._tower_fan_limit(
                status.tower_fan_frac,
                coldest,
                ratio,
                wet_bulb,
                approach_full,
                exponent,
                cw_prev,
                tower_range,
            )
        cw_leave = _smooth_max(sp_cw, coldest, sharpness=4.0)
        tower_fan_kw = cells * d.tower_design_fan_kw * ratio**3 * torch.exp(res[:, 7 + d.n_pods])
        cw_supply = cw_leave + res[:, 4]
        cw_pump_kw = cells * d.cw_pump_kw_per_chiller

        # --- power chain
        it_total = it_kw.sum(dim=-1)
        cooling_kw = chiller_kw + fan_kw + chw_pump_kw + cw_pump_kw + tower_fan_kw
        chain = d.power_chain
        ups_out = it_total + pdu_loss
        transformer_out = ups_out + ups_loss + cooling_kw + chain.lighting_kw + chain.aux_kw
        facility_kw = transformer_out + _loss_kw(chain.transformer, transformer_out)

        heat_in = it_total + fan_kw + plenum_kw - pods_stored.sum(dim=-1) - struct_stored
        heat_in = heat_in + envelope
        new_state = TwinState(
            rack_inlet_c=rack_inlet,
            hot_aisle_c=hot + self.hot_aisle_offset_c,
            supply_air_c=supply_air,
            return_air_c=return_air,
            structure_c=structure,
            chw_supply_c=chw_supply,
            chw_return_c=chw_return,
            cw_supply_c=cw_supply,
        )
        scaled = res / self.residual_bound
        return TwinStep(
            state=new_state,
            crah_fan_kw=fan_kw,
            chiller_kw=chiller_kw,
            chw_pump_kw=chw_pump_kw,
            cw_pump_kw=cw_pump_kw,
            tower_fan_kw=tower_fan_kw,
            cooling_kw=cooling_kw,
            facility_kw=facility_kw,
            chw_flow_kg_s=primary,
            valve_frac=unit_water / d.crah_max_water_kg_s * (units / d.n_crah),
            coil_heat_kw=coil_heat,
            chillers_on=n_on,
            heat_in_kw=heat_in,
            residual_sq=(scaled * scaled).mean(dim=-1),
        )

    def _running_eir_mult(self, n_on: Tensor, recorded: Tensor | None) -> Tensor:
        """The EIR multiplier of the chillers running (N,): their units' multipliers,
        weighted by how long each ran (``recorded``) or, where that is unknown, the first
        ``n_on`` units (lead first; the plant's staging order)."""
        units = torch.exp(self.raw_chiller_eir_mult)
        k = torch.arange(units.shape[0], dtype=n_on.dtype, device=n_on.device)
        weights = torch.clamp(n_on.detach()[:, None] - k, 0.0, 1.0)
        if recorded is not None:
            known = torch.isfinite(recorded).all(dim=-1, keepdim=True)
            known = known & (torch.nan_to_num(recorded).sum(dim=-1, keepdim=True) > 0.05)
            weights = torch.where(known, torch.nan_to_num(recorded).clamp(0.0, 1.0), weights)
        return (weights * units).sum(dim=-1) / torch.clamp(weights.sum(dim=-1), min=1e-6)

    def _load_from_state_dict(
        self,
        state_dict: dict[str, Any],
        prefix: str,
        local_metadata: dict[str, Any],
        strict: bool,
        missing_keys: list[str],
        unexpected_keys: list[str],
        error_msgs: list[str],
    ) -> None:
        # Twins saved before per-chiller EIR hold one multiplier: every unit starts from it.
        key = prefix + "raw_chiller_eir_mult"
        old = state_dict.get(key)
        if isinstance(old, Tensor) and old.dim() == 0:
            state_dict[key] = old.expand(self.design.n_chillers).clone()
        super()._load_from_state_dict(
            state_dict, prefix, local_metadata, strict, missing_keys, unexpected_keys, error_msgs
        )

    def _tower_fan_limit(
        self,
        fan_frac: Tensor,
        coldest: Tensor,
        ratio: Tensor,
        wet_bulb: Tensor,
        approach_full: Tensor,
        exponent: Tensor,
        cw_prev: Tensor,
        tower_range: Tensor,
    ) -> tuple[Tensor, Tensor]:
        """The coldest water the tower can make and its fan ratio with only ``fan_frac`` of
        its fan capacity: the approach at that airflow (the inverse of the fan law above), no
        worse than free convection's share of the full-fan drop; unchanged at ``fan_frac``
        1."""
        d = self.design
        frac = torch.clamp(fan_frac, 0.0, 1.0)
        lost = frac < 1.0
        at_frac = wet_bulb + approach_full * torch.clamp(frac, min=0.05) ** (-1.0 / exponent)
        entering = cw_prev + tower_range
        free = entering - d.tower_free_convection_frac * (entering - coldest)
        limited = torch.where(frac > 0.0, torch.minimum(at_frac, free), free)
        return (
            torch.where(lost, torch.maximum(limited, coldest), coldest),
            torch.where(lost, torch.minimum(ratio, frac), ratio),
        )

    def _features(
        self, state: TwinState, inputs: TwinInputs, coil_leave: Tensor, coil_heat: Tensor
    ) -> Tensor:
        """Scaled inputs of the residual networks (16 + 2 per pod)."""
        d = self.design
        sp = inputs.setpoints
        it_scale = d.racks_per_pod * d.rack_max_power_kw
        cols = [
            (sp[:, 0] - 21.0) / 4.0,
            (sp[:, 1] - 0.65) / 0.35,
            (sp[:, 2] - 10.0) / 4.0,
            (sp[:, 3] - 26.0) / 6.0,
            sp[:, 4] * 2.0 - 1.0,
            (state.supply_air_c - 21.0) / 4.0,
            (state.return_air_c - 32.0) / 6.0,
            (state.structure_c - 30.0) / 6.0,
            (state.chw_supply_c - 10.0) / 4.0,
            (state.chw_return_c - 15.0) / 4.0,
            (state.cw_supply_c - 26.0) / 6.0,
            (inputs.outdoor_dry_bulb_c - 25.0) / 8.0,
            (inputs.outdoor_wet_bulb_c - 20.0) / 6.0,
            (coil_leave - 20.0) / 4.0,
            (coil_heat - 0.8 * d.design_it_kw) / (0.4 * d.design_it_kw),
            (state.rack_inlet_c.amax(dim=(-1, -2)) - 24.0) / 4.0,
        ]
        pods = [
            (state.hot_aisle_c - 35.0) / 6.0,
            (inputs.it_power_kw - 0.6 * it_scale) / (0.3 * it_scale),
        ]
        return torch.cat([torch.stack(cols, dim=-1), *pods], dim=-1)

    def _residuals(self, features: Tensor) -> Tensor:
        if self.residual is None:
            return features.new_zeros(features.shape[0], self.n_residuals)
        out: Tensor = self.residual(features)
        return torch.tanh(out) * self.residual_bound
