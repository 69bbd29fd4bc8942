"""A purely neural twin: the baseline the physics-informed twin has to beat.

:class:`NeuralTwin` speaks the :class:`~twin.surrogate.PhysicsTwin` interface (same state,
inputs and step record) but holds no physics: a two-hidden-layer tanh network maps the
normalised current readings (every rack inlet, the hot aisles, the five hall temperatures),
the setpoints, IT power per pod and the outdoor air to the *change* of every reading over
the period and the period-mean meters. It is sized to about the parameter count of a
default :class:`PhysicsTwin` (:func:`matched_hidden`), so a comparison of the two is one of
structure, not of size.

What it cannot know, it does not pretend to learn:

* ``cooling_kw`` is the sum of the predicted parts; ``facility_kw`` is a learned output.
* ``coil_heat_kw`` is the steady-state room balance, IT power + CRAH fan power (no storage,
  no envelope), and ``heat_in_kw`` is set equal to it, so the training loss's energy-balance
  term is neutral for this model. ``residual_sq`` is zero.
* ``chillers_on`` follows the staging rule of the design at reference capacity.
* ``structure_c`` is not observed; it is carried as the return air.
* ``theta`` is accepted and ignored: there are no physical multipliers to track.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from twin.dataset import METER_NAMES, PeriodData
from twin.design import TwinDesign
from twin.surrogate import THETA_NOMINAL, PhysicsTwin, TwinInputs, TwinState, TwinStep

LEARNED_METERS: tuple[str, ...] = tuple(m for m in METER_NAMES if m != "cooling_kw")
"""The meters the network predicts (cooling is the sum of its parts)."""

_HALL_CENTRE_C = (21.0, 32.0, 10.0, 15.0, 26.0)
_HALL_SCALE_C = (4.0, 6.0, 4.0, 4.0, 6.0)
_SETPOINT_CENTRE = (21.0, 0.65, 10.0, 26.0, 0.5)
_SETPOINT_SCALE = (4.0, 0.35, 4.0, 6.0, 0.5)
_DELTA_SCALE_C = 0.5
_MIN_SCALE_FRAC = 0.1
"""Data-fitted scales never fall below this share of the design scales (a constant feature
in the training data must not blow up under new conditions by a division by ~0)."""


def n_inputs(design: TwinDesign) -> int:
    p, r = design.n_pods, design.racks_per_pod
    return p * r + p + 5 + 5 + p + 2


def n_outputs(design: TwinDesign) -> int:
    p, r = design.n_pods, design.racks_per_pod
    return p * r + p + 5 + len(LEARNED_METERS)


def network_parameters(design: TwinDesign, hidden: int) -> int:
    """Parameter count of a :class:`NeuralTwin` of width ``hidden`` (without building it)."""
    i, o, h = n_inputs(design), n_outputs(design), hidden
    return i * h + h + h * h + h + h * o + o


def matched_hidden(design: TwinDesign, physics_hidden: int = 64) -> int:
    """The hidden width whose parameter count is closest to a :class:`PhysicsTwin` with
    residual width ``physics_hidden``."""
    target = sum(
        p.numel() for p in PhysicsTwin(design, residual_hidden=physics_hidden).parameters()
    )
    widths = range(1, 4 * max(physics_hidden, 16) + 1)
    return min(widths, key=lambda h: abs(network_parameters(design, h) - target))


class NeuralTwin(nn.Module):
    """A plain network twin (see the module docstring); ``hidden=None`` sizes it to a
    default :class:`PhysicsTwin`. ``residual_hidden`` is the hidden width (for the card)."""

    def __init__(self, design: TwinDesign, *, step_s: float = 300.0, hidden: int | None = None):
        super().__init__()
        if step_s <= 0:
            raise ValueError("step_s must be positive")
        width = matched_hidden(design) if hidden is None else hidden
        if width < 1:
            raise ValueError(f"hidden width must be at least 1, got {width}")
        self.design = design
        self.step_s = float(step_s)
        self.residual_hidden = width
        self.net = nn.Sequential(
            nn.Linear(n_inputs(design), width),
            nn.Tanh(),
            nn.Linear(width, width),
            nn.Tanh(),
            nn.Linear(width, n_outputs(design)),
        )
        last = self.net[-1]
        assert isinstance(last, nn.Linear)
        # Start from persistence (no change) and mean meters.
        nn.init.zeros_(last.weight)
        nn.init.zeros_(last.bias)
        in_mean, in_scale, out_mean, out_scale = _design_normalisation(design)
        self.in_mean: Tensor
        self.in_scale: Tensor
        self.out_mean: Tensor
        self.out_scale: Tensor
        self.register_buffer("in_mean", in_mean)
        self.register_buffer("in_scale", in_scale)
        self.register_buffer("out_mean", out_mean)
        self.register_buffer("out_scale", out_scale)

    # ------------------------------------------------------------------ normalisation
    @torch.no_grad()
    def fit_normalisation(self, data: PeriodData) -> None:
        """Set the input and output normalisation from training data (mean and standard
        deviation per feature and per output; changes from consecutive periods). Kept as
        buffers, so they are saved with the state dict."""
        idx = data.windows(1)
        if idx.numel() < 2:
            raise ValueError("fit_normalisation needs at least two pairs of consecutive periods")
        n = idx.shape[0]
        now, nxt = data.index(idx), data.index(idx + 1)
        x = self._raw_features(
            now.rack_inlet_c,
            now.hot_aisle_c,
            now.hall,
            now.setpoints,
            now.it_power_kw,
            now.outdoor_dry_bulb_c,
            now.outdoor_wet_bulb_c,
        )
        delta = torch.cat(
            [
                (nxt.rack_inlet_c - now.rack_inlet_c).reshape(n, -1),
                nxt.hot_aisle_c - now.hot_aisle_c,
                nxt.hall - now.hall,
            ],
            dim=-1,
        )
        meters = now.meters[:, [METER_NAMES.index(m) for m in LEARNED_METERS]]
        y = torch.cat([delta, meters], dim=-1)
        _, in_scale, _, out_scale = _design_normalisation(self.design)
        self.in_mean.copy_(x.mean(dim=0))
        self.in_scale.copy_(torch.maximum(x.std(dim=0), _MIN_SCALE_FRAC * in_scale))
        self.out_mean.copy_(y.mean(dim=0))
        self.out_scale.copy_(torch.maximum(y.std(dim=0), _MIN_SCALE_FRAC * out_scale))

    # ------------------------------------------------------------------ state
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
        return TwinState(
            rack_inlet_c=rack_inlet_c,
            hot_aisle_c=hot_aisle_c,
            supply_air_c=supply_air_c,
            return_air_c=return_air_c,
            structure_c=return_air_c,
            chw_supply_c=chw_supply_c,
            chw_return_c=chw_return_c,
            cw_supply_c=cw_supply_c,
        )

    def nominal_theta(self, n: int, device: torch.device | None = None) -> Tensor:
        return torch.tensor(THETA_NOMINAL, device=device).expand(n, -1).clone()

    # ------------------------------------------------------------------ the step
    def forward(self, state: TwinState, inputs: TwinInputs, theta: Tensor) -> TwinStep:
        del theta  # no physical multipliers in a network
        d = self.design
        n, p, r = state.supply_air_c.shape[0], d.n_pods, d.racks_per_pod
        hall = torch.stack(
            [
                state.supply_air_c,
                state.return_air_c,
                state.chw_supply_c,
                state.chw_return_c,
                state.cw_supply_c,
            ],
            dim=-1,
        )
        x = self._raw_features(
            state.rack_inlet_c,
            state.hot_aisle_c,
            hall,
            inputs.setpoints,
            inputs.it_power_kw,
            inputs.outdoor_dry_bulb_c,
            inputs.outdoor_wet_bulb_c,
        )
        y = self.out_mean + self.out_scale * self.net((x - self.in_mean) / self.in_scale)
        k = p * r
        rack_inlet = state.rack_inlet_c + y[:, :k].reshape(n, p, r)
        hot_aisle = state.hot_aisle_c + y[:, k : k + p]
        new_hall = hall + y[:, k + p : k + p + 5]
        meters = dict(zip(LEARNED_METERS, y[:, k + p + 5 :].unbind(-1), strict=True))
        cooling = (
            meters["crah_fan_kw"]
            + meters["chiller_kw"]
            + meters["chw_pump_kw"]
            + meters["cw_pump_kw"]
            + meters["tower_fan_kw"]
        )
        coil_heat = inputs.it_power_kw.sum(dim=-1) + meters["crah_fan_kw"]
        chillers_on = torch.clamp(
            torch.ceil(coil_heat.detach() / (d.chiller_stage_up_frac * d.chiller_ref_capacity_kw)),
            1.0,
            float(d.n_chillers),
        )
        supply_air, return_air, chw_supply, chw_return, cw_supply = new_hall.unbind(-1)
        return TwinStep(
            state=TwinState(
                rack_inlet_c=rack_inlet,
                hot_aisle_c=hot_aisle,
                supply_air_c=supply_air,
                return_air_c=return_air,
                structure_c=return_air,
                chw_supply_c=chw_supply,
                chw_return_c=chw_return,
                cw_supply_c=cw_supply,
            ),
            crah_fan_kw=meters["crah_fan_kw"],
            chiller_kw=meters["chiller_kw"],
            chw_pump_kw=meters["chw_pump_kw"],
            cw_pump_kw=meters["cw_pump_kw"],
            tower_fan_kw=meters["tower_fan_kw"],
            cooling_kw=cooling,
            facility_kw=meters["facility_kw"],
            chw_flow_kg_s=meters["chw_flow_kg_s"],
            valve_frac=meters["valve_frac"],
            coil_heat_kw=coil_heat,
            chillers_on=chillers_on,
            heat_in_kw=coil_heat,
            residual_sq=torch.zeros_like(coil_heat),
        )

    def _raw_features(
        self,
        rack_inlet_c: Tensor,
        hot_aisle_c: Tensor,
        hall: Tensor,
        setpoints: Tensor,
        it_power_kw: Tensor,
        dry_bulb_c: Tensor,
        wet_bulb_c: Tensor,
    ) -> Tensor:
        """The network's inputs before normalisation (N, :func:`n_inputs`)."""
        return torch.cat(
            [
                rack_inlet_c.reshape(rack_inlet_c.shape[0], -1),
                hot_aisle_c,
                hall,
                setpoints,
                it_power_kw,
                dry_bulb_c[:, None],
                wet_bulb_c[:, None],
            ],
            dim=-1,
        )


def _design_normalisation(design: TwinDesign) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """Input mean/scale and output mean/scale from the design alone (before any data)."""
    d = design
    p, r = d.n_pods, d.racks_per_pod
    it_pod = r * d.rack_max_power_kw
    in_mean = [
        *[24.0] * (p * r),
        *[35.0] * p,
        *_HALL_CENTRE_C,
        *_SETPOINT_CENTRE,
        *[0.6 * it_pod] * p,
        25.0,
        20.0,
    ]
    in_scale = [
        *[4.0] * (p * r),
        *[6.0] * p,
        *_HALL_SCALE_C,
        *_SETPOINT_SCALE,
        *[0.3 * it_pod] * p,
        8.0,
        6.0,
    ]
    fan = d.n_crah * d.crah_design_fan_kw
    chiller = 0.6 * d.design_it_kw / d.chiller_ref_cop
    cw_pump = d.n_chillers * d.cw_pump_kw_per_chiller
    tower = d.n_chillers * d.tower_design_fan_kw
    facility = 0.6 * d.design_it_kw * 1.3
    meter_mean = {
        "crah_fan_kw": (0.3 * fan, 0.3 * fan),
        "chiller_kw": (0.5 * chiller, 0.5 * chiller),
        "chw_pump_kw": (0.5 * d.chw_pump_design_kw, 0.5 * d.chw_pump_design_kw),
        "cw_pump_kw": (0.5 * cw_pump, 0.5 * cw_pump),
        "tower_fan_kw": (0.3 * tower, 0.3 * tower),
        "facility_kw": (facility, 0.2 * facility),
        "chw_flow_kg_s": (0.7 * d.chw_design_flow_kg_s, 0.3 * d.chw_design_flow_kg_s),
        "valve_frac": (0.5, 0.3),
    }
    n_delta = p * r + p + 5
    out_mean = [*[0.0] * n_delta, *[meter_mean[m][0] for m in LEARNED_METERS]]
    out_scale = [*[_DELTA_SCALE_C] * n_delta, *[meter_mean[m][1] for m in LEARNED_METERS]]
    return (
        torch.tensor(in_mean),
        torch.tensor(in_scale),
        torch.tensor(out_mean),
        torch.tensor(out_scale),
    )
