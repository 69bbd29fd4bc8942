"""`twinloop train`: a tiny agent trained in the twin, registered, and run from the reservoir."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from control.preevaluation import policy_factory_of
from control.reservoir import Reservoir
from physics.plant.scenario import load_scenario
from twinloop.cli import main


def test_train_registers_a_runnable_drl_policy(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # a tiny network: a second thread only contends
    try:
        _train_and_register(tmp_path, capsys)
    finally:
        torch.set_num_threads(threads)


def _train_and_register(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out, root = tmp_path / "agent", tmp_path / "res"
    argv = ["train", "--algo", "ppo", "--timesteps", "256", "--n-envs", "2"]
    argv += ["--episode-hours", "1", "--scenario", "tropical-typical-week", "--out", str(out)]
    assert main([*argv, "--register", "ppo-tiny", "--root", str(root), "--quiet"]) == 0
    assert "registered ppo-tiny@1 (candidate" in capsys.readouterr().out
    assert (out / "model.zip").is_file() and (out / "training.json").is_file()
    # Trained behind the site's shield unless told otherwise.
    assert json.loads((out / "training.json").read_text())["config"]["shield"] is True
    with Reservoir(root) as reservoir:
        record = reservoir.get("ppo-tiny")
        assert record.kind == "drl" and reservoir.verify(record.ref)
        policy = policy_factory_of(reservoir, record)(load_scenario("tropical-typical-week"))
    actions = policy.act(np.zeros((3, 34), dtype=np.float32))
    assert actions.shape == (3, 5) and np.all(np.abs(actions) <= 1.0)
    # A second run into the same folder is refused: nothing trained is lost.
    assert main([*argv, "--quiet"]) == 2
    assert "holds a trained agent" in capsys.readouterr().err
    assert main(["train", "--algo", "ppo", "--out", str(tmp_path / "x"), "--n-envs", "0"]) == 2


def test_train_on_cuda_without_a_gpu_falls_back_to_the_cpu(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    if torch.cuda.is_available():
        pytest.skip("a GPU is present: nothing to fall back from")
    out = tmp_path / "agent"
    argv = ["train", "--algo", "ppo", "--timesteps", "64", "--n-envs", "2", "--device", "cuda"]
    argv += ["--episode-hours", "1", "--scenario", "tropical-typical-week", "--out", str(out)]
    assert main([*argv, "--quiet"]) == 0
    err = capsys.readouterr().err
    assert err.count("no CUDA GPU is available here") == 1 and "training on the CPU" in err
    metadata = json.loads((out / "training.json").read_text())
    assert metadata["config"]["device"] == "cpu" and (out / "model.zip").is_file()


def test_train_without_the_shield_is_recorded(tmp_path: Path) -> None:
    out = tmp_path / "agent"
    argv = ["train", "--algo", "ppo", "--timesteps", "64", "--n-envs", "2", "--no-shield"]
    argv += ["--episode-hours", "1", "--scenario", "tropical-typical-week", "--out", str(out)]
    assert main([*argv, "--quiet"]) == 0
    assert json.loads((out / "training.json").read_text())["config"]["shield"] is False
