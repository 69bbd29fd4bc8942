"""Reference tests for the hot-aisle-contained hall: analytic steady states, energy balances."""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from physics.constants import CP_AIR_KJ_KG_K
from physics.room_air import RoomParams, RoomState, RoomStep, room_air_step

PARAMS = RoomParams()
B, P, R = 2, 2, 3


@dataclass(frozen=True)
class Inputs:
    supply_air_c: np.ndarray
    pod_supply_airflow_kg_s: np.ndarray
    rack_power_kw: np.ndarray
    rack_airflow_kg_s: np.ndarray
    rack_recirc_frac: np.ndarray
    cross_recirc_frac: np.ndarray
    server_capacity_kj_k: np.ndarray
    plenum_heat_kw: np.ndarray
    outdoor_c: np.ndarray

    @property
    def need_kg_s(self) -> np.ndarray:
        """Cold-aisle air the pods draw: (1 − ρ̄ − x) · Σ m_r."""
        m_pod = self.rack_airflow_kg_s.sum(axis=2)
        rho_pod = (self.rack_airflow_kg_s * self.rack_recirc_frac).sum(axis=2) / m_pod
        cross_pod = self.cross_recirc_frac.sum(axis=2)
        return np.asarray((1.0 - rho_pod - cross_pod) * m_pod)


def _inputs(seed: int = 0, supply_ratio: float = 1.15) -> Inputs:
    rng = np.random.default_rng(seed)
    power = rng.uniform(5.0, 15.0, (B, P, R))
    airflow = power / (CP_AIR_KJ_KG_K * 12.0) * rng.uniform(0.85, 1.15, (B, P, R))
    rho = rng.uniform(0.02, 0.08, (B, P, R))
    cross = rng.uniform(0.01, 0.03, (B, P, P)) * (1.0 - np.eye(P))
    inp = Inputs(
        supply_air_c=np.array([18.0, 21.0]),
        pod_supply_airflow_kg_s=np.zeros((B, P)),
        rack_power_kw=power,
        rack_airflow_kg_s=airflow,
        rack_recirc_frac=rho,
        cross_recirc_frac=cross,
        server_capacity_kj_k=rng.uniform(200.0, 300.0, (B, P, R)),
        plenum_heat_kw=np.array([3.0, 1.5]),
        outdoor_c=np.array([42.0, 4.0]),
    )
    return replace(inp, pod_supply_airflow_kg_s=supply_ratio * inp.need_kg_s)


def _state(server_c: float = 30.0, structure_c: float = 24.0, return_c: float = 28.0) -> RoomState:
    return RoomState(
        server_c=np.full((B, P, R), server_c),
        structure_c=np.full(B, structure_c),
        return_air_c=np.full(B, return_c),
    )


def _step(state: RoomState, inp: Inputs, dt_s: float, params: RoomParams = PARAMS) -> RoomStep:
    return room_air_step(
        params,
        state,
        supply_air_c=inp.supply_air_c,
        pod_supply_airflow_kg_s=inp.pod_supply_airflow_kg_s,
        rack_power_kw=inp.rack_power_kw,
        rack_airflow_kg_s=inp.rack_airflow_kg_s,
        rack_recirc_frac=inp.rack_recirc_frac,
        cross_recirc_frac=inp.cross_recirc_frac,
        server_capacity_kj_k=inp.server_capacity_kj_k,
        plenum_heat_kw=inp.plenum_heat_kw,
        outdoor_c=inp.outdoor_c,
        dt_s=dt_s,
    )


def _steady(inp: Inputs, params: RoomParams = PARAMS) -> RoomStep:
    """Iterate with constant inputs until nothing moves any more."""
    state = _state()
    for _ in range(5_000):
        out = _step(state, inp, 300.0, params)
        moved = max(
            float(np.abs(out.state.server_c - state.server_c).max()),
            float(np.abs(out.state.structure_c - state.structure_c).max()),
            float(np.abs(out.state.return_air_c - state.return_air_c).max()),
        )
        state = out.state
        if moved < 1e-12:
            return out
    raise AssertionError("room air did not settle")


def test_steady_exhaust_is_inlet_plus_power_over_capacity_rate() -> None:
    inp = _inputs()
    out = _steady(inp)
    expected = out.rack_inlet_c + inp.rack_power_kw / (inp.rack_airflow_kg_s * CP_AIR_KJ_KG_K)
    np.testing.assert_allclose(out.state.server_c, expected, rtol=1e-10)
    np.testing.assert_allclose(out.rack_heat_to_air_kw, inp.rack_power_kw, rtol=1e-9)
    # Every rack breathes air at least as warm as the supply, and some recirculation shows.
    assert np.all(out.rack_inlet_c > inp.supply_air_c[:, None, None])


@pytest.mark.parametrize("supply_ratio", [0.85, 1.0, 1.3])
def test_steady_air_side_energy_balance_closes(supply_ratio: float) -> None:
    inp = _inputs(seed=3, supply_ratio=supply_ratio)
    out = _steady(inp)
    m_supply = inp.pod_supply_airflow_kg_s.sum(axis=1)
    removed_kw = m_supply * CP_AIR_KJ_KG_K * (out.state.return_air_c - inp.supply_air_c)
    envelope_kw = PARAMS.envelope_ua_kw_k * (inp.outdoor_c - out.state.structure_c)
    np.testing.assert_allclose(out.envelope_gain_kw, envelope_kw, rtol=1e-9, atol=1e-9)
    # Site 0 gains heat through the envelope (42 °C outside), site 1 loses it (4 °C).
    assert envelope_kw[0] > 0.0 > envelope_kw[1]
    added_kw = inp.rack_power_kw.sum(axis=(1, 2)) + inp.plenum_heat_kw + envelope_kw
    np.testing.assert_allclose(removed_kw, added_kw, rtol=1e-6)


def test_no_recirculation_and_surplus_air_gives_supply_temperature_at_inlets() -> None:
    inp = replace(
        _inputs(seed=1, supply_ratio=1.2),
        rack_recirc_frac=np.zeros((B, P, R)),
        cross_recirc_frac=np.zeros((B, P, P)),
    )
    # From a hot, non-uniform start, not just at steady state.
    state = replace(_state(), server_c=np.linspace(25.0, 45.0, B * P * R).reshape(B, P, R))
    out = _step(state, inp, 60.0)
    np.testing.assert_allclose(
        out.rack_inlet_c, np.broadcast_to(inp.supply_air_c[:, None, None], (B, P, R)), atol=1e-12
    )
    m_pod = inp.rack_airflow_kg_s.sum(axis=2)
    np.testing.assert_allclose(out.bypass_kg_s, inp.pod_supply_airflow_kg_s - m_pod, rtol=1e-12)
    np.testing.assert_array_equal(out.extra_recirc_frac, 0.0)


def test_supply_deficit_recirculates_and_surplus_bypasses() -> None:
    short = _inputs(seed=2, supply_ratio=0.8)
    spare = _inputs(seed=2, supply_ratio=1.25)
    out_short = _steady(short)
    out_spare = _steady(spare)
    m_pod = short.rack_airflow_kg_s.sum(axis=2)

    np.testing.assert_allclose(
        out_short.extra_recirc_frac, 0.2 * short.need_kg_s / m_pod, rtol=1e-12
    )
    np.testing.assert_array_equal(out_short.bypass_kg_s, 0.0)
    np.testing.assert_array_equal(out_spare.extra_recirc_frac, 0.0)
    np.testing.assert_allclose(out_spare.bypass_kg_s, 0.25 * spare.need_kg_s, rtol=1e-12)

    assert np.all(out_short.extra_recirc_frac > 0.0)
    assert np.all(out_short.rack_inlet_c > out_spare.rack_inlet_c + 0.5)


@pytest.mark.parametrize("deficit_frac", [0.1, 0.2, 0.4])
def test_deficit_inlet_matches_analytic_recirculation(deficit_frac: float) -> None:
    # Identical racks, no leakage paths: inlet = T_sup + e/(1 − e) · P/(m c_p),
    # from T_in = T_sup + e (T_ex − T_sup) and T_ex = T_in + P/(m c_p).
    power_kw, airflow = 10.0, 0.75
    inp = Inputs(
        supply_air_c=np.array([18.0, 22.0]),
        pod_supply_airflow_kg_s=np.full((B, P), (1.0 - deficit_frac) * R * airflow),
        rack_power_kw=np.full((B, P, R), power_kw),
        rack_airflow_kg_s=np.full((B, P, R), airflow),
        rack_recirc_frac=np.zeros((B, P, R)),
        cross_recirc_frac=np.zeros((B, P, P)),
        server_capacity_kj_k=np.full((B, P, R), 250.0),
        plenum_heat_kw=np.zeros(B),
        outdoor_c=np.array([25.0, 25.0]),
    )
    out = _steady(inp)
    rise_k = deficit_frac / (1.0 - deficit_frac) * power_kw / (airflow * CP_AIR_KJ_KG_K)
    expected = np.broadcast_to((inp.supply_air_c + rise_k)[:, None, None], (B, P, R))
    np.testing.assert_allclose(out.extra_recirc_frac, deficit_frac, rtol=1e-12)
    np.testing.assert_allclose(out.rack_inlet_c, expected, rtol=1e-10)


@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 10_000), dt_s=st.sampled_from([1.0, 30.0, 60.0, 900.0]))
def test_transient_server_heat_storage_closes_exactly(seed: int, dt_s: float) -> None:
    rng = np.random.default_rng(seed)
    base = _inputs(seed=seed % 7)
    state = _state(server_c=27.0)
    start = state.server_c.copy()
    energy_in_kj = np.zeros((B, P, R))
    energy_to_air_kj = np.zeros((B, P, R))
    for _ in range(40):
        inp = replace(
            base,
            rack_power_kw=base.rack_power_kw * rng.uniform(0.3, 1.3, (B, P, R)),
            supply_air_c=base.supply_air_c + rng.uniform(-3.0, 3.0, B),
            pod_supply_airflow_kg_s=base.pod_supply_airflow_kg_s * rng.uniform(0.7, 1.3, (B, P)),
        )
        out = _step(state, inp, dt_s)
        energy_in_kj += inp.rack_power_kw * dt_s
        energy_to_air_kj += out.rack_heat_to_air_kw * dt_s
        state = out.state
    stored_kj = base.server_capacity_kj_k * (state.server_c - start)
    np.testing.assert_allclose(
        energy_in_kj - energy_to_air_kj,
        stored_kj,
        rtol=1e-9,
        atol=1e-9 * float(np.abs(energy_in_kj).max()),
    )


def test_server_node_update_is_the_exact_exponential() -> None:
    # Fixed inlet (no recirculation, surplus air): one long step equals many short ones and
    # both equal T_ss + (T_0 − T_ss) exp(−m c_p t / C).
    inp = replace(
        _inputs(seed=4, supply_ratio=1.5),
        rack_recirc_frac=np.zeros((B, P, R)),
        cross_recirc_frac=np.zeros((B, P, P)),
    )
    state0 = _state(server_c=40.0)
    one = _step(state0, inp, 600.0).state.server_c
    state = state0
    for _ in range(60):
        state = _step(state, inp, 10.0).state
    g = inp.rack_airflow_kg_s * CP_AIR_KJ_KG_K
    t_ss = inp.supply_air_c[:, None, None] + inp.rack_power_kw / g
    analytic = t_ss + (40.0 - t_ss) * np.exp(-g * 600.0 / inp.server_capacity_kj_k)
    np.testing.assert_allclose(one, analytic, rtol=1e-12)
    np.testing.assert_allclose(state.server_c, analytic, rtol=1e-12)


def test_output_shapes() -> None:
    inp = _inputs()
    out = _step(_state(), inp, 60.0)
    assert out.state.server_c.shape == (B, P, R)
    assert out.rack_inlet_c.shape == (B, P, R)
    assert out.rack_heat_to_air_kw.shape == (B, P, R)
    assert out.hot_aisle_c.shape == (B, P)
    assert out.bypass_kg_s.shape == (B, P)
    assert out.extra_recirc_frac.shape == (B, P)
    for arr in (out.state.structure_c, out.state.return_air_c, out.envelope_gain_kw):
        assert arr.shape == (B,)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"server_capacity_kj_k": 0.0},
        {"structure_capacity_kj_k": -1.0},
        {"structure_ua_kw_k": -0.1},
        {"envelope_ua_kw_k": -0.1},
    ],
)
def test_invalid_params_raise(kwargs: dict[str, float]) -> None:
    with pytest.raises(ValueError):
        RoomParams(**kwargs)


def test_loss_of_all_airflow_heats_the_hall_at_the_rate_its_thermal_mass_allows() -> None:
    inp = replace(_inputs(seed=3), pod_supply_airflow_kg_s=np.zeros((B, P)))
    inp = replace(inp, outdoor_c=np.array([24.0, 24.0]))
    state = _state(server_c=30.0, structure_c=27.0, return_c=28.0)
    capacity = inp.server_capacity_kj_k.sum(axis=(1, 2)) + PARAMS.structure_capacity_kj_k

    def stored_kj(s: RoomState) -> np.ndarray:
        return np.asarray(
            (inp.server_capacity_kj_k * s.server_c).sum(axis=(1, 2))
            + PARAMS.structure_capacity_kj_k * s.structure_c
        )

    for _ in range(3):  # let the air paths settle
        state = _step(state, inp, 60.0).state
    start, start_kj = state, stored_kj(state)
    steps = 20
    for _ in range(steps):
        state = _step(state, inp, 60.0).state
    duration_s = steps * 60.0
    heat_kw = inp.rack_power_kw.sum(axis=(1, 2)) + inp.plenum_heat_kw
    expected_k_per_s = heat_kw / capacity
    measured_k_per_s = (stored_kj(state) - start_kj) / capacity / duration_s
    np.testing.assert_allclose(measured_k_per_s, expected_k_per_s, rtol=0.2)
    # Every server warms: nothing in the hall is cooled when the air stops.
    assert (state.server_c > start.server_c).all()
    assert np.isfinite(state.return_air_c).all()


def test_cross_pod_matrix_carries_one_pods_exhaust_into_anothers_inlets() -> None:
    """Pod 0 draws 10 % of its air from pod 1's hot aisle; nothing flows the other way.

    Steady state with surplus supply and no local leakage: pod 1's inlets sit at the supply
    temperature and its hot aisle at T_sup + P/(m·cp); pod 0's inlets sit at
    T_sup + 0.1·(T_ha1 − T_sup).
    """
    base = _inputs(seed=5)
    power = np.full((B, P, R), 10.0)
    airflow = np.full((B, P, R), 10.0 / (CP_AIR_KJ_KG_K * 12.0))
    cross = np.zeros((B, P, P))
    cross[:, 0, 1] = 0.1
    inp = replace(
        base,
        rack_power_kw=power,
        rack_airflow_kg_s=airflow,
        rack_recirc_frac=np.zeros((B, P, R)),
        cross_recirc_frac=cross,
    )
    inp = replace(inp, pod_supply_airflow_kg_s=1.3 * inp.need_kg_s)
    state = _state()
    for _ in range(400):
        result = _step(state, inp, 60.0)
        state = result.state
    t_sup = inp.supply_air_c[:, None]
    hot_1 = t_sup[:, 0] + 12.0
    np.testing.assert_allclose(result.rack_inlet_c[:, 1, :], np.repeat(t_sup, R, axis=1))
    np.testing.assert_allclose(result.hot_aisle_c[:, 1], hot_1, rtol=1e-9)
    expected_0 = t_sup[:, 0] + 0.1 * (hot_1 - t_sup[:, 0])
    np.testing.assert_allclose(result.rack_inlet_c[:, 0, :], np.repeat(expected_0[:, None], R, 1))
