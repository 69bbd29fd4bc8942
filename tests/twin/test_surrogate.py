"""The reduced physics of the twin: balances, monotone responses, parameter effects."""

from __future__ import annotations

import pytest
import torch

from twin.design import TwinDesign
from twin.surrogate import THETA_NAMES, PhysicsTwin, TwinInputs, TwinState, TwinStep

N = 3


def _inputs(
    supply_air_c: float = 19.0,
    fan: float = 1.0,
    chw_c: float = 7.0,
    cw_c: float = 29.4,
    eco: float = 0.0,
    it_kw: float = 150.0,
    wet_bulb_c: float = 22.0,
) -> TwinInputs:
    sp = torch.tensor([supply_air_c, fan, chw_c, cw_c, eco]).expand(N, -1)
    return TwinInputs(
        setpoints=sp,
        it_power_kw=torch.full((N, 4), it_kw),
        outdoor_dry_bulb_c=torch.full((N,), 28.0),
        outdoor_wet_bulb_c=torch.full((N,), wet_bulb_c),
    )


def _start(twin: PhysicsTwin) -> TwinState:
    return twin.state_from_readings(
        torch.full((N, 4, 25), 20.0),
        torch.full((N, 4), 32.0),
        torch.full((N,), 19.0),
        torch.full((N,), 30.0),
        torch.full((N,), 7.0),
        torch.full((N,), 12.0),
        torch.full((N,), 29.4),
    )


def _settle(
    twin: PhysicsTwin, inputs: TwinInputs, theta: torch.Tensor | None = None, steps: int = 150
) -> TwinStep:
    state = _start(twin)
    th = twin.nominal_theta(N) if theta is None else theta
    with torch.no_grad():
        for _ in range(steps):
            out = twin(state, inputs, th)
            state = out.state
    return out


@pytest.fixture(scope="module")
def twin(design: TwinDesign) -> PhysicsTwin:
    return PhysicsTwin(design, residual_hidden=0)


def test_shapes_and_theta_names(twin: PhysicsTwin) -> None:
    out = twin(_start(twin), _inputs(), twin.nominal_theta(N))
    assert out.state.rack_inlet_c.shape == (N, 4, 25)
    assert out.state.hot_aisle_c.shape == (N, 4)
    assert out.cooling_kw.shape == (N,)
    assert twin.nominal_theta(N).shape == (N, len(THETA_NAMES))


def test_steady_state_closes_the_energy_balance(twin: PhysicsTwin) -> None:
    out = _settle(twin, _inputs())
    it_kw = 600.0
    # Coil heat equals what entered the room air once nothing is being stored: IT, the
    # CRAH fans, power-chain losses and lighting in the plenum (≈ 50 kW), the envelope.
    assert torch.allclose(out.coil_heat_kw, out.heat_in_kw, rtol=0.01)
    gains = out.coil_heat_kw - it_kw - out.crah_fan_kw
    assert ((gains > 30.0) & (gains < 80.0)).all()
    facility = out.facility_kw
    assert (facility > it_kw + out.cooling_kw).all()
    pue = facility / it_kw
    assert ((pue > 1.2) & (pue < 1.7)).all()


def test_supply_air_setpoint_moves_the_inlets(twin: PhysicsTwin) -> None:
    cool = _settle(twin, _inputs(supply_air_c=18.0))
    warm = _settle(twin, _inputs(supply_air_c=24.0))
    rise = warm.state.rack_inlet_c.mean() - cool.state.rack_inlet_c.mean()
    assert 5.0 < float(rise) < 7.0
    assert torch.allclose(warm.state.supply_air_c, torch.tensor(24.0), atol=0.2)


def test_low_fan_speed_starves_the_racks_and_saves_fan_power(twin: PhysicsTwin) -> None:
    full = _settle(twin, _inputs(fan=1.0))
    low = _settle(twin, _inputs(fan=0.35))
    assert (low.crah_fan_kw < 0.1 * full.crah_fan_kw).all()
    # At 35 % speed the CRAHs blow less than the racks draw: hot-aisle air is pulled back.
    assert float(low.state.rack_inlet_c.max()) > float(full.state.rack_inlet_c.max()) + 1.0


def test_warmer_chilled_water_saves_chiller_power(twin: PhysicsTwin) -> None:
    cold = _settle(twin, _inputs(chw_c=7.0))
    warm = _settle(twin, _inputs(chw_c=10.0))
    assert (warm.chiller_kw < cold.chiller_kw).all()


def test_fouled_coil_needs_more_water(twin: PhysicsTwin) -> None:
    clean = _settle(twin, _inputs(supply_air_c=18.0))
    theta = twin.nominal_theta(N)
    theta[:, THETA_NAMES.index("coil_ua_mult")] = 0.7
    fouled = _settle(twin, _inputs(supply_air_c=18.0), theta)
    assert (fouled.valve_frac > clean.valve_frac * 1.1).all()
    assert torch.allclose(fouled.state.supply_air_c, clean.state.supply_air_c, atol=0.05)


def test_chiller_eir_multiplier_scales_chiller_power(twin: PhysicsTwin) -> None:
    base = _settle(twin, _inputs(), steps=40)
    theta = twin.nominal_theta(N)
    theta[:, THETA_NAMES.index("chiller_eir_mult")] = 1.2
    worse = _settle(twin, _inputs(), theta, steps=40)
    assert torch.allclose(worse.chiller_kw, 1.2 * base.chiller_kw, rtol=0.02)


def test_economiser_in_cold_weather_cuts_chiller_power(twin: PhysicsTwin) -> None:
    off = _settle(twin, _inputs(cw_c=12.0, wet_bulb_c=5.0, eco=0.0))
    on = _settle(twin, _inputs(cw_c=12.0, wet_bulb_c=5.0, eco=1.0))
    assert (on.chiller_kw < 0.9 * off.chiller_kw).all()


def test_residuals_start_at_zero_and_are_bounded(design: TwinDesign) -> None:
    twin = PhysicsTwin(design, residual_hidden=16)
    physics = PhysicsTwin(design, residual_hidden=0)
    physics.load_state_dict(twin.state_dict(), strict=False)
    a = twin(_start(twin), _inputs(), twin.nominal_theta(N))
    b = physics(_start(physics), _inputs(), physics.nominal_theta(N))
    assert torch.allclose(a.state.rack_inlet_c, b.state.rack_inlet_c)
    with torch.no_grad():
        for p in twin.residual.parameters():  # type: ignore[union-attr]
            p.fill_(5.0)
    c = twin(_start(twin), _inputs(), twin.nominal_theta(N))
    shift = (c.state.supply_air_c - b.state.supply_air_c).detach().abs().max()
    assert 0.0 < float(shift) <= 0.5 + 1e-5


def test_bad_step_is_refused(design: TwinDesign) -> None:
    with pytest.raises(ValueError, match="step_s"):
        PhysicsTwin(design, step_s=0.0)


def test_valve_solve_matches_the_plants_crah_model(twin: PhysicsTwin) -> None:
    import numpy as np

    from physics import crah
    from physics.plant.site import SiteConfig

    params = SiteConfig().crah
    for supply_c, fan in ((19.0, 1.0), (22.0, 0.6), (17.0, 0.8)):
        out = twin(_start(twin), _inputs(supply_air_c=supply_c, fan=fan), twin.nominal_theta(N))
        airflow = params.design_airflow_kg_s * fan
        fan_rise = params.design_fan_power_kw * fan**3 / (airflow * 1.006)
        reference = crah.valve_water_flow_for_setpoint(
            params,
            np.array([30.0]),
            np.array([7.0]),
            np.array([airflow]),
            np.array([supply_c - fan_rise]),
            np.array([1.0]),
        )[0]
        got = float(out.valve_frac[0]) * params.max_water_flow_kg_s
        assert got == pytest.approx(reference, rel=0.03, abs=0.02)


def test_each_chiller_has_its_own_eir_and_the_lead_runs_first(design: TwinDesign) -> None:
    twin = PhysicsTwin(design, residual_hidden=0)
    base = _settle(twin, _inputs())
    on = int(base.chillers_on[0])
    assert 1 <= on < design.n_chillers  # the check needs an idle chiller
    with torch.no_grad():
        twin.raw_chiller_eir_mult[on:] = 1.0  # only idle units made costlier: no change
    idle = _settle(twin, _inputs())
    assert torch.allclose(idle.chiller_kw, base.chiller_kw)
    with torch.no_grad():
        twin.raw_chiller_eir_mult[0] = 0.1  # the lead made costlier
    lead = _settle(twin, _inputs())
    ratio = float(lead.chiller_kw[0] / base.chiller_kw[0])
    assert ratio == pytest.approx((on - 1 + torch.exp(torch.tensor(0.1)).item()) / on, rel=1e-3)


def test_recorded_running_units_weight_the_eir(design: TwinDesign) -> None:
    twin = PhysicsTwin(design, residual_hidden=0)
    with torch.no_grad():
        twin.raw_chiller_eir_mult.copy_(torch.log(torch.tensor([1.0, 1.0, 1.3])))
    with torch.no_grad():
        staged = twin(_start(twin), _inputs(), twin.nominal_theta(N))
    recorded = torch.zeros(N, design.n_chillers)
    recorded[:, 2] = 1.0  # the recording says the third unit ran the whole period
    recorded[1] = float("nan")  # a period without the points: staged by the twin
    given = _inputs()
    with torch.no_grad():
        replay = twin(
            _start(twin),
            TwinInputs(
                given.setpoints,
                given.it_power_kw,
                given.outdoor_dry_bulb_c,
                given.outdoor_wet_bulb_c,
                chiller_on_frac=recorded,
            ),
            twin.nominal_theta(N),
        )
    assert float(replay.chiller_kw[0] / staged.chiller_kw[0]) > 1.05
    assert replay.chiller_kw[1] == pytest.approx(float(staged.chiller_kw[1]))


def test_a_twin_saved_with_one_eir_loads_it_into_every_chiller(design: TwinDesign) -> None:
    twin = PhysicsTwin(design, residual_hidden=0)
    state = twin.state_dict()
    state["raw_chiller_eir_mult"] = torch.tensor(0.25)  # the pre-per-chiller format
    twin.load_state_dict(state)
    assert twin.raw_chiller_eir_mult.tolist() == pytest.approx([0.25] * design.n_chillers)
