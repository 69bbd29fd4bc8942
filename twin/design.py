"""What the twin knows of a site before it sees any data: the drawings and data sheets.

Equipment counts, design flows, fan and pump ratings, the chillers' published EIR curves and
the power chain's loss curves come from the site's :class:`~physics.plant.site.SiteConfig`
(the owner's documents). The site's hidden deviations from them are *not* here: the twin has
to learn those from sensor data.
"""

from __future__ import annotations

from dataclasses import dataclass

from physics.chiller import ChillerCurves
from physics.plant.site import SetpointLimits, SiteConfig, SiteDefaults, site_variant
from physics.power_chain import PowerChainParams


@dataclass(frozen=True)
class TwinDesign:
    """Design data of one site, as plain numbers the surrogate is built from."""

    site_name: str
    n_pods: int
    racks_per_pod: int
    n_crah: int
    crah_design_airflow_kg_s: float
    crah_design_fan_kw: float
    crah_min_speed_frac: float
    crah_design_water_kg_s: float
    crah_max_water_kg_s: float
    crah_design_ua_kw_k: float
    crah_air_resistance_frac: float
    rack_design_airflow_kg_s: float
    rack_max_power_kw: float
    server_fan_speed_per_k: float
    server_onset_c: float
    server_capacity_kj_k: float
    structure_capacity_kj_k: float
    structure_ua_kw_k: float
    envelope_ua_kw_k: float
    n_chillers: int
    chiller_ref_capacity_kw: float
    chiller_ref_cop: float
    chiller_curves: ChillerCurves
    chiller_stage_up_frac: float
    chiller_min_plr: float
    chw_min_flow_per_chiller_kg_s: float
    chw_design_flow_kg_s: float
    chw_pump_design_kw: float
    chw_supply_mass_kg: float
    chw_return_mass_kg: float
    cw_flow_per_chiller_kg_s: float
    cw_pump_kw_per_chiller: float
    tower_design_fan_kw: float
    tower_min_airflow_ratio: float
    tower_free_convection_frac: float
    economiser_effectiveness: float
    power_chain: PowerChainParams
    limits: SetpointLimits
    defaults: SiteDefaults

    @classmethod
    def from_site(cls, config: SiteConfig) -> TwinDesign:
        loop = config.chw_loop
        return cls(
            site_name=config.name,
            n_pods=config.n_pods,
            racks_per_pod=config.racks_per_pod,
            n_crah=config.n_crah,
            crah_design_airflow_kg_s=config.crah.design_airflow_kg_s,
            crah_design_fan_kw=config.crah.design_fan_power_kw,
            crah_min_speed_frac=config.crah.min_speed_frac,
            crah_design_water_kg_s=config.crah.design_water_flow_kg_s,
            crah_max_water_kg_s=config.crah.max_water_flow_kg_s,
            crah_design_ua_kw_k=config.crah.design_ua_kw_k,
            crah_air_resistance_frac=config.crah.air_side_resistance_frac,
            rack_design_airflow_kg_s=config.server.design_airflow_kg_s,
            rack_max_power_kw=config.server.max_power_kw,
            server_fan_speed_per_k=config.server.fan_speed_per_k,
            server_onset_c=config.server.leakage_onset_c,
            server_capacity_kj_k=config.room.server_capacity_kj_k,
            structure_capacity_kj_k=config.room.structure_capacity_kj_k,
            structure_ua_kw_k=config.room.structure_ua_kw_k,
            envelope_ua_kw_k=config.room.envelope_ua_kw_k,
            n_chillers=config.n_chillers,
            chiller_ref_capacity_kw=config.chiller.ref_capacity_kw,
            chiller_ref_cop=config.chiller.ref_cop,
            chiller_curves=config.chiller.curves,
            chiller_stage_up_frac=config.chiller_stage_up_frac,
            chiller_min_plr=config.chiller.min_plr,
            chw_min_flow_per_chiller_kg_s=loop.min_flow_per_chiller_kg_s,
            chw_design_flow_kg_s=loop.design_flow_kg_s,
            chw_pump_design_kw=config.chw_pump_design_kw,
            chw_supply_mass_kg=loop.supply_mass_kg + loop.supply_main_mass_kg,
            chw_return_mass_kg=loop.return_mass_kg,
            cw_flow_per_chiller_kg_s=config.cw_flow_per_chiller_kg_s,
            cw_pump_kw_per_chiller=config.cw_pump_kw_per_chiller,
            tower_design_fan_kw=config.tower.design_fan_power_kw,
            tower_min_airflow_ratio=config.tower.min_airflow_ratio,
            tower_free_convection_frac=config.tower.free_convection_frac,
            economiser_effectiveness=config.economiser_effectiveness,
            power_chain=config.power_chain,
            limits=config.limits,
            defaults=config.defaults,
        )

    @classmethod
    def for_variant(cls, name: str) -> TwinDesign:
        return cls.from_site(site_variant(name))

    @property
    def design_it_kw(self) -> float:
        return self.n_pods * self.racks_per_pod * self.rack_max_power_kw
