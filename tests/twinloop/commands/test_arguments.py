"""The scale-out flags (`twinloop/commands/arguments.py`): `twinloop evaluate --ray` and
`twinloop train --parallel/--ray`, checked before anything runs."""

from __future__ import annotations

import json
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch

from control.reservoir import Reservoir
from tests.control.test_scaleout import ray_daemons, wait_gone
from tests.twinloop.cli_process import one_error_line, run_cli
from twinloop.cli import main

SCENARIO = """\
name: {name}
site: {{variant: reference, seed: {seed}}}
weather: {{file: "pvlib:miami", start: "{start}"}}
workload: {{kind: constant, mean_frac: 0.6}}
duration: 2 h
step: 60 s
control_period: 5 min
seed: {seed}
"""
TINY = ["--timesteps", "128", "--n-envs", "2", "--episode-hours", "1"]
TINY += ["--scenario", "tropical-typical-week"]


@pytest.fixture
def scenarios(tmp_path: Path) -> list[Path]:
    paths = []
    for i, start in enumerate(("07-10", "08-01")):
        path = tmp_path / f"s{i}.yaml"
        path.write_text(SCENARIO.format(name=f"short-{i}", seed=i + 3, start=start))
        paths.append(path)
    return paths


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--workers", "2"], "--workers sets the size of a local Ray instance: use --ray local"),
        (["--ray", "local", "--workers", "0"], "--workers must be at least 1 (got 0)"),
        (["--ray", "auto", "--workers", "2"], "--workers sets the size of a local Ray"),
        (["--ray", "127.0.0.1:{port}"], "Ray at 127.0.0.1:{port}: nothing answers"),
        (["--ray", "local", "--policy", "nope"], "unknown policy 'nope'"),
    ],
)
def test_bad_scale_out_flags_are_one_line_and_exit_2(
    scenarios: list[Path],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    extra: list[str],
    message: str,
) -> None:
    port = str(free_port())
    extra = [e.replace("{port}", port) for e in extra]
    out = tmp_path / "o"
    argv = ["evaluate", "--policy", "fixed-setpoints", "--scenario", str(scenarios[0])]
    assert main([*argv, "--out", str(out), "--quiet", *extra]) == 2
    err = capsys.readouterr().err
    assert err.startswith("twinloop: error: ") and err.count("\n") == 1
    assert message.replace("{port}", port) in err
    assert not out.exists()


def test_a_failed_run_is_one_line_and_exit_1(
    scenarios: list[Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    agent = tmp_path / "agent"
    agent.mkdir()
    (agent / "model.zip").write_bytes(b"not a model")
    argv = ["evaluate", "--policy", str(agent), "--scenario", str(scenarios[0])]
    assert main([*argv, "--out", str(tmp_path / "o"), "--quiet"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("twinloop: error: scenario short-0: ") and err.count("\n") == 1


def test_train_flags_are_checked_before_training(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "agents"
    argv = ["train", "--algo", "ppo", *TINY, "--out", str(out), "--quiet"]
    assert main([*argv, "--parallel", "0"]) == 2
    assert "--parallel must be at least 1 (got 0)" in capsys.readouterr().err
    assert main([*argv, "--parallel", "2", "--workers", "2"]) == 2
    assert "use --ray local" in capsys.readouterr().err
    # A candidate's folder that holds an agent is not trained over.
    (out / "ppo-seed1").mkdir(parents=True)
    (out / "ppo-seed1" / "model.zip").write_bytes(b"earlier agent")
    assert main([*argv, "--parallel", "2"]) == 2
    assert f"--out {out / 'ppo-seed1'}: holds a trained agent" in capsys.readouterr().err
    assert (out / "ppo-seed1" / "model.zip").read_bytes() == b"earlier agent"
    assert not (out / "ppo-seed0").exists()


@pytest.fixture
def one_torch_thread() -> Iterator[None]:
    """A tiny network: a second thread only contends (as Ray's workers run)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.mark.usefixtures("one_torch_thread")
def test_train_parallel_here_registers_each_candidate(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out, root = tmp_path / "agents", tmp_path / "res"
    argv = ["train", "--algo", "ppo", *TINY, "--out", str(out), "--parallel", "2"]
    assert main([*argv, "--seed", "3", "--register", "tiny", "--root", str(root), "--quiet"]) == 0
    printed = capsys.readouterr().out
    assert "registered tiny-ppo-seed3@1 (candidate" in printed
    assert "registered tiny-ppo-seed4@1 (candidate" in printed
    for seed in (3, 4):
        meta = json.loads((out / f"ppo-seed{seed}" / "training.json").read_text())
        assert meta["config"]["seed"] == seed and meta["timesteps"] >= 128
    with Reservoir(root) as reservoir:
        assert sorted(r.name for r in reservoir.list()) == ["tiny-ppo-seed3", "tiny-ppo-seed4"]


@pytest.mark.integration
@pytest.mark.slow  # a second Ray start; tests/control/test_scaleout.py covers Ray by default
def test_evaluate_on_local_ray_matches_a_run_here(scenarios: list[Path], tmp_path: Path) -> None:
    """`twinloop evaluate --ray local --workers 2` as a user runs it: the same KPIs as
    without Ray, and no Ray process left once the command has ended."""
    argv = ["evaluate", "--policy", "trim-and-respond"]
    for path in scenarios:
        argv += ["--scenario", str(path)]
    before = ray_daemons()
    done = run_cli(*argv, "--out", "ray", "--ray", "local", "--workers", "2", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert wait_gone(ray_daemons() - before) == set(), "Ray processes left running"
    assert main([*argv, "--out", str(tmp_path / "here"), "--quiet"]) == 0
    for name in ("short-0", "short-1"):
        on_ray = json.loads((tmp_path / "ray" / name / "kpis.json").read_text())["kpis"]
        here = json.loads((tmp_path / "here" / name / "kpis.json").read_text())["kpis"]
        for kpis in (on_ray, here):
            del kpis["computational_time_ratio"]  # the policy's compute time: a timing
        assert on_ray == here
    summary = (tmp_path / "ray" / "summary.csv").read_text().splitlines()
    assert [line.split(",")[1] for line in summary[1:]] == ["short-0", "short-1"]


@pytest.mark.integration
@pytest.mark.slow
def test_train_parallel_on_local_ray_registers_here(tmp_path: Path) -> None:
    argv = ["train", "--algo", "ppo", "--algo", "sac", *TINY, "--out", "agents"]
    argv += ["--ray", "local", "--workers", "2", "--register", "tiny", "--root", "res"]
    done = run_cli(*argv, "--quiet", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    for label in ("ppo-seed0", "sac-seed0"):
        assert f"registered tiny-{label}@1 (candidate" in done.stdout
        assert (tmp_path / "agents" / label / "model.zip").is_file()
    with Reservoir(tmp_path / "res") as reservoir:
        assert all(reservoir.verify(f"tiny-{label}") for label in ("ppo-seed0", "sac-seed0"))


def test_an_unreachable_cluster_from_a_process(tmp_path: Path) -> None:
    done = run_cli(
        "train", "--algo", "ppo", *TINY, "--out", "a", "--ray", f"127.0.0.1:{free_port()}",
        cwd=tmp_path,
    )  # fmt: skip
    assert done.returncode == 2
    assert "nothing answers" in one_error_line(done.stderr)
