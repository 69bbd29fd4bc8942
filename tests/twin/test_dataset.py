"""Recorded runs → control periods."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

from physics.plant.site import SiteDefaults
from twin.dataset import (
    METER_NAMES,
    DatasetError,
    PeriodData,
    applied_setpoints,
    periods_from_frame,
)
from twin.design import TwinDesign


def test_periods_cover_the_run_in_one_sequence(train_periods: PeriodData) -> None:
    # Two days at 5-min periods; the first period only provides a start state.
    assert len(train_periods) == 2 * 288 - 1
    assert train_periods.rack_inlet_c.shape == (575, 4, 25)
    assert train_periods.meters.shape == (575, len(METER_NAMES))
    assert int(train_periods.sequence.unique().numel()) == 1
    assert torch.isfinite(train_periods.meters).all()
    dt = torch.diff(train_periods.time_h)
    assert torch.allclose(dt, torch.full_like(dt, 5 / 60), atol=1e-3)


def test_windows_stay_inside_sequences() -> None:
    seq = torch.tensor([0, 0, 0, 1, 1, 1, 1])
    data = PeriodData(
        rack_inlet_c=torch.zeros(7, 1, 1),
        hot_aisle_c=torch.zeros(7, 1),
        hall=torch.zeros(7, 5),
        setpoints=torch.zeros(7, 5),
        it_power_kw=torch.zeros(7, 1),
        outdoor_dry_bulb_c=torch.zeros(7),
        outdoor_wet_bulb_c=torch.zeros(7),
        meters=torch.zeros(7, len(METER_NAMES)),
        time_h=torch.arange(7.0),
        sequence=seq,
    )
    assert data.windows(2).tolist() == [0, 3, 4]
    assert data.windows(7).numel() == 0
    both = PeriodData.concat([data, data])
    assert both.sequence.unique().numel() == 4


def test_site_control_fills_uncommanded_setpoints() -> None:
    frame = pd.DataFrame(
        {
            "cmd.supply_air_c": [22.0, np.nan, np.nan],
            "cmd.fan_speed_frac": [np.nan, 0.5, np.nan],
            "chw_return_c": [12.0, 12.0, 12.0],
        }
    )
    sp = applied_setpoints(frame, SiteDefaults(), np.array([20.0, -8.0, 0.0]))
    assert sp[0].tolist() == [22.0, 1.0, 7.0, 29.4, 0.0]
    # Freezing wet bulb: the predicted exchanger leaving water is well below the return, so
    # the site enables the economiser and asks the tower for 12 °C.
    assert sp[1].tolist() == [19.0, 0.5, 7.0, 12.0, 1.0]
    # At 0 °C the tower cannot bring the exchanger 2 K below a 12 °C return: chillers only.
    assert sp[2].tolist() == [19.0, 1.0, 7.0, 29.4, 0.0]


def test_recorded_economiser_status_wins_over_the_prediction() -> None:
    frame = pd.DataFrame({"chw_return_c": [12.0, 12.0], "economiser_enabled": [1.0, np.nan]})
    sp = applied_setpoints(frame, SiteDefaults(), np.array([20.0, -8.0]))
    # The status point says the economiser ran (its timers held it on) though the prediction
    # at 20 °C says otherwise; where the point is missing the prediction fills in.
    assert sp[:, 4].tolist() == [1.0, 1.0] and sp[:, 3].tolist() == [12.0, 12.0]


def test_a_dropout_splits_the_sequence(design: TwinDesign) -> None:
    rows = 60
    cols = {
        **{f"rack_inlet_c.{p}.{r:02d}": 20.0 for p in range(4) for r in range(25)},
        **{f"hot_aisle_c.{p}": 32.0 for p in range(4)},
        **{f"it_power_kw.{p}": 150.0 for p in range(4)},
        **{f"crah_valve_frac.{i:02d}": 0.5 for i in range(design.n_crah)},
        "supply_air_c": 19.0,
        "return_air_c": 30.0,
        "chw_supply_c": 7.0,
        "chw_return_c": 12.0,
        "cw_supply_c": 29.0,
        "crah_fan_power_kw": 78.0,
        "chw_pump_power_kw": 5.0,
        "cw_pump_power_kw": 22.0,
        "tower_fan_power_kw": 5.0,
        "chiller_power_kw.0": 60.0,
        "facility_power_kw": 900.0,
        "chw_flow_kg_s": 30.0,
        "outdoor_dry_bulb_c": 28.0,
        "outdoor_wet_bulb_c": 22.0,
    }
    frame = pd.DataFrame({k: np.full(rows, v) for k, v in cols.items()})
    frame["time_h"] = np.arange(rows) / 60.0
    frame.loc[29, "supply_air_c"] = np.nan  # the start state of period 5
    frame.loc[12, "facility_power_kw"] = np.nan  # a meter reading inside period 1
    data = periods_from_frame(frame, design, step_s=60.0, control_period_s=300.0)
    assert len(data) == 11 - 2
    assert data.sequence.tolist() == [0, 1, 1, 1, 2, 2, 2, 2, 2]
    with pytest.raises(DatasetError, match="lacks column"):
        periods_from_frame(
            frame.drop(columns=["facility_power_kw"]), design, step_s=60.0, control_period_s=300.0
        )
    with pytest.raises(DatasetError, match="whole number"):
        periods_from_frame(frame, design, step_s=60.0, control_period_s=90.0)
    with pytest.raises(DatasetError, match="too short"):
        periods_from_frame(frame.iloc[:7], design, step_s=60.0, control_period_s=300.0)
