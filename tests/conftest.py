"""Shared fixtures: short recorded plant runs of the twin's training site, twins fitted on them."""

from __future__ import annotations

from pathlib import Path

import pytest

from physics.plant.scenario import load_scenario
from twin.dataset import PeriodData, periods_from_recordings
from twin.design import TwinDesign
from twin.ensemble import TwinEnsemble
from twin.recording import Recording, load_recordings, record_run
from twin.training import FitConfig, fit_twin

SCENARIO = """\
name: {name}
site: {{variant: reference, seed: 11}}
weather: {{file: "pvlib:miami", start: "{start}"}}
workload: {{kind: diurnal, mean_frac: 0.6}}
duration: {duration}
step: 60 s
control_period: 5 min
sensor_noise: 1.0
seed: {seed}
"""


def record(tmp: Path, name: str, start: str, duration: str, seed: int) -> list[Recording]:
    path = tmp / f"{name}.yaml"
    path.write_text(SCENARIO.format(name=name, start=start, duration=duration, seed=seed))
    out = tmp / name
    record_run(load_scenario(path), policy="explore", seed=seed, out_dir=out)
    return load_recordings(out)


@pytest.fixture(scope="session")
def design() -> TwinDesign:
    return TwinDesign.for_variant("reference")


@pytest.fixture(scope="session")
def train_periods(tmp_path_factory: pytest.TempPathFactory, design: TwinDesign) -> PeriodData:
    """Two exploratory days of January on the reference site (seed 11)."""
    recs = record(tmp_path_factory.mktemp("train"), "train", "01-10", "2 d", 1)
    return periods_from_recordings(recs, design)


@pytest.fixture(scope="session")
def test_periods(tmp_path_factory: pytest.TempPathFactory, design: TwinDesign) -> PeriodData:
    """One exploratory day of July on the same site (held out: other season and seed)."""
    recs = record(tmp_path_factory.mktemp("test"), "test", "07-12", "1 d", 2)
    return periods_from_recordings(recs, design)


@pytest.fixture(scope="session")
def fitted_twin(design: TwinDesign, train_periods: PeriodData) -> TwinEnsemble:
    """A quickly fitted one-member twin of the training site."""
    cfg = FitConfig(ensemble_size=1, iterations=60, batch_windows=48, horizon=6)
    return fit_twin(design, train_periods, cfg)


FOULING = """\
name: fouling
site: {variant: reference, seed: 11}
weather: {file: "pvlib:miami", start: "07-20"}
workload: {kind: diurnal, mean_frac: 0.6}
duration: 12 h
step: 60 s
control_period: 5 min
sensor_noise: 1.0
faults:
  - {kind: coil_fouling, at: 4 h, magnitude: 0.3}
seed: 4
"""


@pytest.fixture(scope="session")
def fouling_recordings(tmp_path_factory: pytest.TempPathFactory) -> list[Recording]:
    """Twelve exploratory hours of July with every CRAH coil losing 30 % of its UA at 4 h."""
    tmp = tmp_path_factory.mktemp("fouling")
    path = tmp / "fouling.yaml"
    path.write_text(FOULING)
    record_run(load_scenario(path), policy="explore", seed=4, out_dir=tmp / "rec")
    return load_recordings(tmp / "rec")


@pytest.fixture(scope="session")
def fouling_periods(fouling_recordings: list[Recording], design: TwinDesign) -> PeriodData:
    """The fouling run as control periods."""
    return periods_from_recordings(fouling_recordings, design)


@pytest.fixture(scope="session")
def ensemble_twin(design: TwinDesign, train_periods: PeriodData) -> TwinEnsemble:
    """A quickly fitted two-member twin of the training site, with its competence model."""
    cfg = FitConfig(ensemble_size=2, iterations=60, batch_windows=48, horizon=6)
    return fit_twin(design, train_periods, cfg)
