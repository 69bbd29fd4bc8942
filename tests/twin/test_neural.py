"""The neural baseline twin: the twin interface, its size, that it learns, that it saves."""

from __future__ import annotations

import json
from dataclasses import fields
from pathlib import Path

import pytest
import torch
from torch import nn

from twin.accuracy import measure_accuracy
from twin.dataset import PeriodData
from twin.design import TwinDesign
from twin.ensemble import CARD_FILE, TwinEnsemble
from twin.model import parameter_count
from twin.neural import NeuralTwin
from twin.rollout import rollout
from twin.surrogate import PhysicsTwin, TwinInputs, TwinStep
from twin.training import FitConfig, fit_twin, rollout_loss

N = 3


def _inputs(design: TwinDesign) -> TwinInputs:
    return TwinInputs(
        setpoints=torch.tensor([19.0, 0.8, 8.0, 27.0, 0.0]).expand(N, -1),
        it_power_kw=torch.full((N, design.n_pods), 150.0),
        outdoor_dry_bulb_c=torch.full((N,), 28.0),
        outdoor_wet_bulb_c=torch.full((N,), 22.0),
    )


def test_step_fills_every_field_with_finite_values_of_the_right_shape(
    design: TwinDesign,
) -> None:
    torch.manual_seed(0)
    twin = NeuralTwin(design)
    last = twin.net[-1]
    assert isinstance(last, nn.Linear)
    nn.init.normal_(last.weight, std=0.3)  # a net that moves, not the persistence start
    p, r = design.n_pods, design.racks_per_pod
    state = twin.state_from_readings(
        torch.full((N, p, r), 22.0),
        torch.full((N, p), 34.0),
        torch.full((N,), 19.0),
        torch.full((N,), 31.0),
        torch.full((N,), 8.0),
        torch.full((N,), 13.0),
        torch.full((N,), 27.0),
    )
    step = twin(state, _inputs(design), twin.nominal_theta(N))
    assert isinstance(step, TwinStep)
    assert step.state.rack_inlet_c.shape == (N, p, r)
    assert step.state.hot_aisle_c.shape == (N, p)
    for f in fields(step.state):
        value = getattr(step.state, f.name)
        assert torch.isfinite(value).all(), f.name
        if f.name not in ("rack_inlet_c", "hot_aisle_c"):
            assert value.shape == (N,), f.name
    for f in fields(step):
        if f.name != "state":
            value = getattr(step, f.name)
            assert value.shape == (N,), f.name
            assert torch.isfinite(value).all(), f.name
    assert not torch.equal(step.state.rack_inlet_c, state.rack_inlet_c)
    parts = (
        step.crah_fan_kw + step.chiller_kw + step.chw_pump_kw + step.cw_pump_kw + step.tower_fan_kw
    )
    torch.testing.assert_close(step.cooling_kw, parts)
    torch.testing.assert_close(step.heat_in_kw, step.coil_heat_kw)
    assert float(step.residual_sq.abs().max()) == 0.0
    # theta is ignored: no physical multipliers in a network
    other = twin(state, _inputs(design), 2.0 * twin.nominal_theta(N))
    torch.testing.assert_close(other.facility_kw, step.facility_kw)


def test_size_matches_the_physics_twin(design: TwinDesign) -> None:
    neural, physics = NeuralTwin(design), PhysicsTwin(design)
    n, m = parameter_count(neural), parameter_count(physics)
    assert 0.7 * m <= n <= 1.3 * m
    assert neural.residual_hidden > 1


@pytest.fixture(scope="module")
def fitted(design: TwinDesign, train_periods: PeriodData) -> TwinEnsemble:
    cfg = FitConfig(ensemble_size=1, iterations=100, batch_windows=32, horizon=4, lr_network=1e-2)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # a network this small trains fastest on one thread
    try:
        return fit_twin(design, train_periods, cfg, kind="neural")
    finally:
        torch.set_num_threads(threads)


def test_a_tiny_fit_lowers_the_loss(
    design: TwinDesign, fitted: TwinEnsemble, train_periods: PeriodData
) -> None:
    assert fitted.kind == "neural"
    assert fitted.summary["model"] == "neural"
    assert isinstance(fitted.first, NeuralTwin)
    # The untrained network (normalised on the same data) predicts persistence and mean
    # meters whatever its seed: the last layer starts at zero.
    start = NeuralTwin(design, hidden=fitted.first.residual_hidden)
    start.fit_normalisation(train_periods)
    cfg = FitConfig(horizon=4)
    windows = train_periods.windows(cfg.horizon)[::4]
    with torch.no_grad():
        before, _ = rollout_loss(start, train_periods, windows, cfg)
        after, _ = rollout_loss(fitted.first, train_periods, windows, cfg)
    assert float(after) < 0.8 * float(before)


def test_save_and_load_round_trip_keeps_the_kind_and_the_predictions(
    fitted: TwinEnsemble, test_periods: PeriodData, tmp_path: Path
) -> None:
    fitted.save(tmp_path / "twin")
    assert json.loads((tmp_path / "twin" / CARD_FILE).read_text())["model"] == "neural"
    loaded = TwinEnsemble.load(tmp_path / "twin")
    assert loaded.kind == "neural"
    starts = test_periods.windows(6)[:50]
    with torch.no_grad():
        a = rollout(fitted, test_periods, starts, 6)
        b = rollout(loaded, test_periods, starts, 6)
    assert torch.equal(a.rack_inlet_c, b.rack_inlet_c)
    assert torch.equal(a.meters, b.meters)
    assert measure_accuracy(fitted, test_periods) == measure_accuracy(loaded, test_periods)


def test_a_card_without_a_model_field_loads_as_physics(
    design: TwinDesign, test_periods: PeriodData, tmp_path: Path
) -> None:
    ensemble = TwinEnsemble([PhysicsTwin(design, residual_hidden=8)])
    ensemble.save(tmp_path)
    card = json.loads((tmp_path / CARD_FILE).read_text())
    del card["model"]
    (tmp_path / CARD_FILE).write_text(json.dumps(card))
    loaded = TwinEnsemble.load(tmp_path)
    assert loaded.kind == "physics"
    assert isinstance(loaded.first, PhysicsTwin)
    idx = test_periods.windows(1)[:4]
    with torch.no_grad():
        a, b = rollout(ensemble, test_periods, idx, 1), rollout(loaded, test_periods, idx, 1)
    assert torch.equal(a.meters, b.meters)


def test_members_of_different_kinds_are_refused(design: TwinDesign) -> None:
    with pytest.raises(ValueError, match="different kinds"):
        TwinEnsemble([PhysicsTwin(design), NeuralTwin(design)])
