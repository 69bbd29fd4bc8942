"""Site design (what the owner knows) and hidden per-site parameters (what only the plant knows).

A site variant fixes the equipment; :func:`draw_hidden_params` draws, from a seed, the
deviations a real site has from its drawings: ±10–20 % on coil UA and chiller curves,
uneven floor-tile airflow, rack-level recirculation, tower approach, installed IT power and
thermal masses. Two seeds give two different sites; the same seed gives the same site.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, replace

import numpy as np
from numpy.typing import NDArray

from physics.chilled_water import ChilledWaterLoopParams
from physics.chiller import ChillerParams
from physics.compiled import record_type
from physics.cooling_tower import CoolingTowerParams
from physics.crah import CrahParams
from physics.power_chain import PowerChainParams
from physics.room_air import RoomParams
from physics.servers import ServerParams

FloatArray = NDArray[np.float64]


@dataclass(frozen=True)
class SetpointLimits:
    """The envelope the plant's actuators accept; commands are clipped into it."""

    supply_air_c: tuple[float, float] = (16.0, 27.0)
    fan_speed_frac: tuple[float, float] = (0.3, 1.0)
    chw_supply_c: tuple[float, float] = (5.5, 16.0)
    cw_supply_c: tuple[float, float] = (10.0, 35.0)
    deadband_c: float = 0.05
    deadband_frac: float = 0.005


@dataclass(frozen=True)
class SiteDefaults:
    """The site's own (conventional, fixed) setpoints, applied when no valid command exists.

    As most legacy halls run: a cool, fixed supply-air setpoint, CRAH fans at full speed,
    44 °F-class chilled water and the design condenser-water temperature.
    """

    supply_air_c: float = 19.0
    fan_speed_frac: float = 1.0
    chw_supply_c: float = 7.0
    cw_supply_c: float = 29.4
    economiser_cw_supply_c: float = 12.0
    """Condenser-water setpoint while the economiser runs (the tower makes cold water)."""
    # The waterside economiser's enable, as ASHRAE Guideline 36 sequences it (defaults of
    # the reference implementation in the Modelica Buildings library's
    # Buildings.Controls.OBC.ASHRAE.G36.Plants.Chillers.Economizers).
    economiser_hx_approach_k: float = 2.0
    """Design approach of the plate exchanger (predicted leaving = wet bulb + tower approach
    + this)."""
    economiser_tower_range_k: float = 5.0
    """Tower range at which its approach is predicted (YorkCalc, full fan, design flow)."""
    economiser_enable_offset_k: float = 2.0
    """Enable when the predicted exchanger leaving water is this far below the chilled-water
    return."""
    economiser_disable_offset_k: float = 1.0
    """Disable when it is no longer this far below the return ..."""
    economiser_disable_delay_s: float = 120.0
    """... for this long."""
    economiser_hold_s: float = 1200.0
    """Minimum time enabled or disabled between switches."""


@dataclass(frozen=True)
class SiteConfig:
    """The equipment of a site variant (its drawings)."""

    name: str = "reference"
    n_pods: int = 4
    racks_per_pod: int = 25
    server: ServerParams = field(default_factory=ServerParams)
    room: RoomParams = field(default_factory=RoomParams)
    crah: CrahParams = field(default_factory=CrahParams)
    n_crah: int = 12
    chw_loop: ChilledWaterLoopParams = field(default_factory=ChilledWaterLoopParams)
    chiller: ChillerParams = field(default_factory=ChillerParams)
    n_chillers: int = 3
    chiller_min_on_s: float = 900.0
    chiller_min_off_s: float = 600.0
    chiller_restart_delay_s: float = 1_200.0
    chiller_stage_up_frac: float = 0.9
    chiller_max_condenser_c: float = 40.0
    """High-pressure cut-out: entering condenser water above this trips a chiller."""
    chiller_stage_recovery_kw_per_k: float = 40.0
    """Staging adds this much demand per K the supply water runs above its setpoint, so the
    plant brings on another chiller when water runs warm (as a BMS's stage-up timer does)."""
    chw_pump_design_kw: float = 22.0
    cw_flow_per_chiller_kg_s: float = 36.0
    cw_pump_kw_per_chiller: float = 11.0
    tower: CoolingTowerParams = field(
        default_factory=lambda: CoolingTowerParams(
            design_water_flow_kg_s=36.0, design_fan_power_kw=11.0
        )
    )
    economiser_effectiveness: float = 0.8
    power_chain: PowerChainParams = field(default_factory=PowerChainParams)
    limits: SetpointLimits = field(default_factory=SetpointLimits)
    defaults: SiteDefaults = field(default_factory=SiteDefaults)

    def __post_init__(self) -> None:
        for name in ("n_pods", "racks_per_pod", "n_crah", "n_chillers"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be at least 1")
        if self.n_chillers > 63:
            raise ValueError("n_chillers must be at most 63 (staging keeps chillers as bits)")

    @property
    def n_racks(self) -> int:
        return self.n_pods * self.racks_per_pod


SetpointLimitsRecord = record_type(SetpointLimits)
SiteDefaultsRecord = record_type(SiteDefaults)
SiteConfigRecord = record_type(SiteConfig)


SITE_VARIANTS: dict[str, SiteConfig] = {
    "reference": SiteConfig(),
    # N chillers and N CRAH units: a trip is felt at once (for resilience scenarios).
    "no_redundancy": SiteConfig(
        name="no_redundancy",
        n_chillers=2,
        n_crah=11,
        chiller=replace(ChillerParams(), ref_capacity_kw=650.0),
    ),
}


def site_variant(name: str) -> SiteConfig:
    """The site configuration called ``name`` (see :data:`SITE_VARIANTS`)."""
    try:
        return SITE_VARIANTS[name]
    except KeyError:
        known = ", ".join(sorted(SITE_VARIANTS))
        raise ValueError(f"unknown site variant {name!r} (known: {known})") from None


@dataclass(frozen=True)
class HiddenParams:
    """Per-site truths the twin never sees. Leading axis = sites."""

    rack_power_scale: FloatArray  # (B, P, R) installed IT relative to nameplate
    rack_recirc_frac: FloatArray  # (B, P, R) local hot-aisle recirculation
    cross_recirc_frac: FloatArray  # (B, P, P) pod i's intake from pod j's hot aisle
    pod_airflow_share: FloatArray  # (B, P) floor-tile share of supply air, sums to 1
    crah_ua_mult: FloatArray  # (B, n_crah)
    chiller_eir_mult: FloatArray  # (B, n_chillers)
    chiller_cap_mult: FloatArray  # (B, n_chillers)
    tower_approach_bias_k: FloatArray  # (B,)
    server_capacity_kj_k: FloatArray  # (B, P, R)
    structure_capacity_mult: FloatArray  # (B,)
    seeds: tuple[int, ...]

    @property
    def n_sites(self) -> int:
        return len(self.seeds)


HiddenParamsRecord = record_type(HiddenParams, exclude=("seeds",))


def draw_hidden_params(config: SiteConfig, seeds: Sequence[int]) -> HiddenParams:
    """Draw each site's hidden parameters from its seed (deterministic)."""
    if len(seeds) == 0:
        raise ValueError("at least one site seed is needed")
    p, r = config.n_pods, config.racks_per_pod
    rows: dict[str, list[FloatArray]] = {}

    def put(name: str, value: FloatArray) -> None:
        rows.setdefault(name, []).append(np.asarray(value, dtype=np.float64))

    end_racks = np.zeros(r)
    end_racks[[0, -1]] = 1.0
    for seed in seeds:
        rng = np.random.default_rng(np.random.SeedSequence([seed, 0x5173]))
        put("rack_power_scale", rng.uniform(0.85, 1.15, (p, r)))
        put("rack_recirc_frac", (0.03 + 0.04 * end_racks) * rng.uniform(0.6, 1.4, (p, r)))
        # Neighbouring pods leak more into each other than distant ones.
        distance = np.abs(np.subtract.outer(np.arange(p), np.arange(p)))
        cross = np.where(distance == 0, 0.0, 0.02 / np.maximum(distance, 1))
        put("cross_recirc_frac", cross * rng.uniform(0.5, 1.5, (p, p)))
        share = rng.uniform(0.9, 1.1, p)
        put("pod_airflow_share", share / share.sum())
        put("crah_ua_mult", rng.uniform(0.85, 1.15, config.n_crah))
        put("chiller_eir_mult", rng.uniform(0.92, 1.12, config.n_chillers))
        put("chiller_cap_mult", rng.uniform(0.9, 1.1, config.n_chillers))
        put("tower_approach_bias_k", np.asarray(rng.uniform(-0.3, 0.8)))
        put(
            "server_capacity_kj_k",
            config.room.server_capacity_kj_k * rng.uniform(0.8, 1.2, (p, r)),
        )
        put("structure_capacity_mult", np.asarray(rng.uniform(0.85, 1.15)))
    stacked = {name: np.stack(values) for name, values in rows.items()}
    return HiddenParams(seeds=tuple(int(s) for s in seeds), **stacked)
