"""The plant's verification figures: energy balance, chiller COP, plausibility, chiller trip.

    python benchmarks/plant_figures.py

(annualised PUE: benchmarks/annual_pue.py; speed: benchmarks/plant_speed.py). The same
checks run as assertions in tests/physics/plant/test_plant.py and tests/physics/test_chiller.py.
"""

from __future__ import annotations

import json

import numpy as np

from physics.chiller import ChillerParams, chiller_power_kw
from physics.constants import CP_WATER_KJ_KG_K, RHO_WATER_KG_M3
from physics.kpi import rack_inlet_columns
from physics.plant.scenario import load_scenario
from physics.plant.simulation import run_scenario


def energy_balance() -> dict[str, float]:
    result = run_scenario(load_scenario("tropical-typical-week"))
    log = result.log
    removed = log["coil_heat_kw"].sum()
    gains = (log["room_gain_kw"] + log["crah_fan_heat_kw"] - log["room_stored_kw"]).sum()
    into_water = (log["coil_heat_kw"] - log["chw_stored_kw"]).sum()
    by_plant = (log["chiller_load_kw"] + log["economiser_heat_kw"]).sum()
    mechanical = log[
        [
            "chiller_power_kw",
            "crah_fan_power_kw",
            "chw_pump_power_kw",
            "cw_pump_power_kw",
            "tower_fan_power_kw",
        ]
    ].sum(axis=1)
    parts = (
        log["it_power_kw"]
        + log["pdu_loss_kw"]
        + log["ups_loss_kw"]
        + mechanical
        + log["lighting_kw"]
        + log["aux_kw"]
        + log["transformer_loss_kw"]
    )
    return {
        "week_room_balance_error_percent": float(100 * (removed - gains) / gains),
        "week_water_balance_error_percent": float(100 * (by_plant - into_water) / into_water),
        "facility_minus_parts_max_abs_kw": float(np.abs(log["facility_power_kw"] - parts).max()),
        "week_pue": result.kpis.pue,
        "week_min_inlet_c": result.kpis.min_inlet_c,
        "week_max_inlet_c": result.kpis.max_inlet_c,
        "week_violation_kh_above_27": result.kpis.violation_kh_above_27,
        "week_wall_s": result.wall_s,
    }


def chiller_cop() -> dict[str, float]:
    params = ChillerParams()

    def cop(chw_c: float, cw_c: float) -> float:
        return float(chiller_power_kw(params, 1e6, chw_c, cw_c).cop)

    return {
        "cop_at_6.67_29.4": cop(6.67, 29.4),
        "cop_error_percent": 100 * (cop(6.67, 29.4) - params.ref_cop) / params.ref_cop,
        "cop_cw_24": cop(6.67, 24.0),
        "cop_cw_35": cop(6.67, 35.0),
        "cop_chw_5": cop(5.0, 29.4),
        "cop_chw_10": cop(10.0, 29.4),
    }


def chiller_trip() -> dict[str, float]:
    scenario = load_scenario("chiller-trip")
    log = run_scenario(scenario).log
    t_h = (log["time_h"] - log["time_h"].iloc[0]).to_numpy()
    inlet = log[rack_inlet_columns(log)].to_numpy()
    window = (t_h >= 36.5) & (t_h < 37.9)
    rate = np.polyfit(t_h[window] * 60.0, inlet[window].mean(axis=1), 1)[0]
    cfg = scenario.site
    loop = cfg.chw_loop
    water = (
        (loop.supply_volume_m3 + loop.return_volume_m3 + loop.supply_main_volume_m3)
        * RHO_WATER_KG_M3
        * CP_WATER_KJ_KG_K
    )
    room = cfg.room.server_capacity_kj_k * cfg.n_racks + cfg.room.structure_capacity_kj_k
    net = float(
        (log["room_gain_kw"] + log["crah_fan_heat_kw"] - log["chiller_load_kw"])[window].mean()
    )
    return {
        "trip_inlet_rise_k_per_min": float(rate),
        "trip_expected_k_per_min": net / (water + room) * 60.0,
        "trip_net_heat_kw": net,
        "trip_max_inlet_c": float(inlet[window].max()),
    }


def main() -> None:
    figures = {**chiller_cop(), **energy_balance(), **chiller_trip()}
    print(json.dumps({k: round(v, 6) for k, v in figures.items()}, indent=2))


if __name__ == "__main__":
    main()
