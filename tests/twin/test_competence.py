"""The twin's competence model: interpolation inside its data, extrapolation outside it."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from physics.plant.scenario import Scenario, load_scenario
from twin.competence import (
    COMPETENCE_FILE,
    FEATURE_NAMES,
    SWITCH_WINDOW,
    CompetenceModel,
    period_features,
    switch_counts,
)
from twin.dataset import PeriodData
from twin.ensemble import TwinEnsemble
from twin.spaces import ActionScale
from twin.vec_env import BatchedTwin

from ..conftest import SCENARIO

SCALE = ActionScale()


def test_switches_are_counted_in_a_window_within_each_sequence() -> None:
    econ = np.array([0, 1, 0, 1, 1, 1, 1, 1, 1, 0, 1], dtype=float)
    seq = np.array([0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 1])
    counts = switch_counts(econ, seq)
    # switches at 1, 2, 3; the sequence break at 9 is not a switch; 9 → 10 is.
    assert counts.tolist() == [0, 1, 2, 3, 3, 3, 3, 2, 1, 0, 1]
    assert SWITCH_WINDOW == 6


def test_held_out_exploration_interpolates_and_unseen_operation_extrapolates(
    train_periods: PeriodData, test_periods: PeriodData
) -> None:
    model = CompetenceModel.fit(train_periods, SCALE)
    # Another season and seed of the same exploration: the weather differs, the operation
    # does not, so the twin's data covers it (about 1 % exceed by construction).
    held_out = model.ratio(period_features(test_periods, SCALE))
    assert (held_out > 1.0).mean() < 0.1
    # The exploit a PPO agent found: condenser water high, economiser toggled every period.
    n = 24
    sp = np.tile([22.0, 0.6, 12.0, 33.0, 0.0], (n, 1))
    sp[::2, 4] = 1.0
    prev = sp[::-1].copy()
    x = np.column_stack(
        [sp, np.abs(sp[:, :4] - prev[:, :4]), np.full(n, 5.0), np.full(n, 12.0), np.full(n, 33.0)]
    )
    from twin.competence import feature_scale

    ratio = model.ratio(x / feature_scale(SCALE))
    assert (ratio > 1.0).all()
    why = model.explain(x[:1] / feature_scale(SCALE))[0]
    assert why.ratio > 1.0 and "economiser_switches" in dict(why.features)


def test_saved_with_the_twin_and_refused_when_corrupt(
    ensemble_twin: TwinEnsemble, tmp_path: Path
) -> None:
    assert ensemble_twin.competence is not None  # fit_twin builds it
    ensemble_twin.save(tmp_path / "twin")
    loaded = TwinEnsemble.load(tmp_path / "twin")
    assert loaded.competence is not None
    x = ensemble_twin.competence.train[:5]
    np.testing.assert_allclose(loaded.competence.ratio(x), ensemble_twin.competence.ratio(x))
    (tmp_path / "twin" / COMPETENCE_FILE).write_bytes(b"not a numpy archive")
    with pytest.raises(ValueError, match="competence model"):
        TwinEnsemble.load(tmp_path / "twin")
    with pytest.raises(ValueError, match="periods"):
        CompetenceModel(np.zeros((10, 3)), SCALE)
    with pytest.raises(ValueError, match="finite"):
        CompetenceModel(np.full((10, len(FEATURE_NAMES)), np.nan), SCALE)


def test_condenser_water_the_tower_cannot_make_counts_as_full_fan(
    train_periods: PeriodData,
) -> None:
    """On a hot night the tower delivers 27 °C whatever it is asked below that: asking 10 °C
    is the operation the data recorded at 18 °C (full fan), not a new one."""
    from twin.competence import features, reachable_setpoints

    model = CompetenceModel.fit(train_periods, SCALE)
    n = 12
    delivered = np.full(n, 27.0)
    asked = np.tile([24.0, 0.6, 12.0, 10.0, 0.0], (n, 1))
    at_floor = asked.copy()
    at_floor[:, 3] = 18.0
    args = (np.zeros(n), np.full(n, 12.0), delivered, SCALE)
    np.testing.assert_array_equal(
        features(asked, asked, *args), features(at_floor, at_floor, *args)
    )
    np.testing.assert_array_equal(reachable_setpoints(asked, delivered)[:, 3], 27.0)
    # A setpoint the tower can make (above the water delivered) is kept as asked.
    high = asked.copy()
    high[:, 3] = 33.0
    np.testing.assert_array_equal(reachable_setpoints(high, delivered), high)
    assert model.ratio(features(asked, asked, *args)).shape == (n,)


def test_a_competence_model_of_older_features_is_refused_and_rebuilt(
    ensemble_twin: TwinEnsemble, tmp_path: Path
) -> None:
    import json

    ensemble_twin.save(tmp_path / "twin")
    path = tmp_path / "twin" / COMPETENCE_FILE
    with np.load(path) as saved:
        train, meta = saved["train"], json.loads(str(saved["meta"]))
    del meta["version"]  # what TwinLoop saved before reachable condenser water
    np.savez_compressed(path, train=train, meta=np.array(json.dumps(meta)))
    with pytest.raises(ValueError, match=r"version 1.*refit it"):
        TwinEnsemble.load(tmp_path / "twin")
    assert TwinEnsemble.load(tmp_path / "twin", competence=False).competence is None


@pytest.fixture(scope="module")
def july(tmp_path_factory: pytest.TempPathFactory) -> Scenario:
    path = tmp_path_factory.mktemp("competence") / "july.yaml"
    path.write_text(SCENARIO.format(name="july", start="07-12", duration="6 h", seed=3))
    return load_scenario(path)


def test_the_batched_twin_tracks_competence_per_environment(
    ensemble_twin: TwinEnsemble, july: Scenario
) -> None:
    import torch

    sim = BatchedTwin(
        2, scenario=july, twin=ensemble_twin, episode_hours=2.0, random_start=False,
        track_competence=True,
    )  # fmt: skip
    sim.reset_envs(torch.arange(2))
    site = SCALE.to_action(np.array([20.0, 0.8, 7.0, 29.0, 0.0]))
    chatter = SCALE.to_action(np.array([22.0, 0.6, 12.0, 33.0, 1.0]))
    ratios = []
    for t in range(12):
        env1 = chatter.copy()
        env1[4] = 1.0 if t % 2 else -1.0
        sim.step(torch.tensor(np.stack([site, env1]), dtype=torch.float32))
        ratios.append(sim.last_competence_ratio.copy())
    r = np.array(ratios)
    # Once the switch window has filled (and condenser water has risen), it is outside.
    assert (r[SWITCH_WINDOW:, 1] > 1.0).all(), r
    assert r[:, 0].max() < 0.5 < r[SWITCH_WINDOW:, 1].min()
    with pytest.raises(ValueError, match="competence model"):
        BatchedTwin(1, scenario=july, twin=None, episode_hours=2.0, track_competence=True)
