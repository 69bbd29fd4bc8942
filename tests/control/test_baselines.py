"""Rule baselines: the site's fixed setpoints and trim-and-respond resets."""

from __future__ import annotations

import numpy as np
import pytest

from control.baselines import FixedSetpoints, TrimAndRespond, TrimRespondConfig
from control.policy import Policy, decode_observation, pods_of
from twin.spaces import ActionScale, HallReadings, ObservationSpec, build_observation

SPEC = ObservationSpec()
SCALE = ActionScale()


def _obs(
    n: int = 1,
    hottest_c: float = 22.0,
    mean_c: float = 21.0,
    supply_air_c: float = 19.0,
    wet_bulb_c: float = 24.0,
) -> np.ndarray:
    inlet = np.full((n, 4, 25), mean_c)
    inlet[:, :, 0] = hottest_c
    inlet[:, :, 1:] = mean_c - (hottest_c - mean_c) / 24.0
    hall = HallReadings(
        rack_inlet_c=inlet,
        hot_aisle_c=np.full((n, 4), 33.0),
        supply_air_c=np.full(n, supply_air_c),
        return_air_c=np.full(n, 31.0),
        chw_supply_c=np.full(n, 7.0),
        chw_return_c=np.full(n, 12.0),
        cw_supply_c=np.full(n, 29.0),
        it_power_kw=np.full(n, 600.0),
        cooling_power_kw=np.full(n, 250.0),
        facility_power_kw=np.full(n, 900.0),
        outdoor_dry_bulb_c=np.full(n, 30.0),
        outdoor_wet_bulb_c=np.full(n, wet_bulb_c),
    )
    return build_observation(
        SPEC,
        hall,
        time_h=100.0,
        forecast_wet_bulb_1h_c=wet_bulb_c,
        forecast_wet_bulb_3h_c=wet_bulb_c,
        forecast_it_power_1h_kw=600.0,
        last_action=np.zeros(5),
    )


def test_decoding_inverts_the_observation_scaling() -> None:
    values = decode_observation(SPEC, _obs(2, hottest_c=26.5))
    assert values["supply_air_c"] == pytest.approx([19.0, 19.0])
    assert pods_of(values, "rack_inlet_max_c") == pytest.approx(np.full((2, 4), 26.5))
    with pytest.raises(ValueError, match="components"):
        decode_observation(SPEC, np.zeros((1, 3), dtype=np.float32))


def test_fixed_setpoints_are_the_sites_own() -> None:
    policy = FixedSetpoints()
    assert isinstance(policy, Policy)
    sp = SCALE.to_setpoints(policy.act(_obs(wet_bulb_c=24.0)))[0]
    assert sp == pytest.approx([19.0, 1.0, 7.0, 29.4, 0.0], abs=1e-4)
    # G36's enable: the exchanger's predicted leaving water (wet bulb + tower approach +
    # exchanger approach) against the 12 °C chilled-water return the observation shows.
    policy.reset(1)
    mild = SCALE.to_setpoints(policy.act(_obs(wet_bulb_c=1.0)))[0]
    assert mild[4] == 0.0  # about 13 °C predicted: no use against a 12 °C return
    cold = SCALE.to_setpoints(policy.act(_obs(wet_bulb_c=-8.0)))[0]
    assert cold[4] == 1.0 and cold[3] == pytest.approx(12.0, abs=1e-4)
    # Once enabled it holds for the minimum on time even when the weather turns.
    held = SCALE.to_setpoints(policy.act(_obs(wet_bulb_c=24.0)))[0]
    assert held[4] == 1.0


def test_trim_and_respond_trims_when_cool_and_responds_when_hot() -> None:
    policy = TrimAndRespond()
    policy.reset(1)
    cool = [SCALE.to_setpoints(policy.act(_obs(hottest_c=22.0)))[0] for _ in range(10)]
    assert cool[-1][0] > cool[0][0]  # supply air trimmed up
    assert cool[-1][1] < cool[0][1]  # fans trimmed down
    assert cool[-1][2] > cool[0][2]  # chilled water trimmed up
    hot = SCALE.to_setpoints(policy.act(_obs(hottest_c=26.0)))[0]
    assert hot[0] < cool[-1][0] - 1.0  # four pods ask: respond by the capped step
    assert hot[1] > cool[-1][1]
    fresh = TrimAndRespond()
    fresh.reset(1)
    for _ in range(10):
        fresh.act(_obs(hottest_c=22.0))
    before = SCALE.to_setpoints(fresh.act(_obs(hottest_c=22.0)))[0]
    starved = SCALE.to_setpoints(fresh.act(_obs(hottest_c=24.0, mean_c=21.0)))[0]
    assert starved[1] > before[1]  # uneven intake (not hot) asks for more air
    assert starved[0] > before[0]  # … while the supply air keeps trimming up
    short = SCALE.to_setpoints(policy.act(_obs(supply_air_c=25.0)))[0]
    assert short[2] < hot[2]  # coils cannot hold the supply air: colder water


def test_trim_and_respond_stays_in_its_limits_and_per_env() -> None:
    cfg = TrimRespondConfig()
    policy = TrimAndRespond(config=cfg)
    policy.reset(3)
    for _ in range(200):
        sp = SCALE.to_setpoints(policy.act(_obs(3, hottest_c=20.0)))
    assert sp[:, 0] == pytest.approx(np.full(3, cfg.supply_air_c[1]), abs=1e-3)
    assert sp[:, 1] == pytest.approx(np.full(3, cfg.fan_frac[0]), abs=1e-3)
    for _ in range(200):
        sp = SCALE.to_setpoints(policy.act(_obs(3, hottest_c=30.0, supply_air_c=30.0)))
    assert sp[:, 0] == pytest.approx(np.full(3, cfg.supply_air_c[0]), abs=1e-3)
    assert sp[:, 2] == pytest.approx(np.full(3, cfg.chw_c[0]), abs=1e-3)
    with pytest.raises(ValueError, match="low < high"):
        TrimRespondConfig(fan_frac=(1.0, 0.5))
