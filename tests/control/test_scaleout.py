"""Scale-out: many evaluations and training runs here or as Ray tasks, with the same results."""

from __future__ import annotations

import os
import socket
import time
from dataclasses import replace
from pathlib import Path

import pytest

from control.catalog import PolicyNotFoundError, policy_factory
from control.evaluation import EvaluationResult, evaluate
from control.reservoir import Reservoir
from control.scaleout import (
    LOCAL,
    RayUnavailableError,
    ScaleOutError,
    _portable_config,
    candidates,
    evaluate_many,
    ray_session,
    train_many,
)
from control.training import TrainConfig, TrainedAgent
from physics.plant.scenario import Scenario, load_scenario

SCENARIO = """\
name: {name}
site: {{variant: reference, seed: {seed}}}
weather: {{file: "pvlib:miami", start: "{start}"}}
workload: {{kind: diurnal, mean_frac: 0.6, amplitude_frac: 0.1}}
duration: 2 h
step: 60 s
control_period: 5 min
seed: {seed}
"""
STARTS = ("06-02", "07-14", "08-20", "09-05")
RAY_DAEMONS = frozenset({"raylet", "gcs_server"})


def ray_daemons(parent: int | None = None) -> set[int]:
    """Pids of Ray's raylet and GCS server processes (children of ``parent`` if given),
    zombies left out."""
    pids = set()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:  # gone meanwhile
            continue
        comm = stat[stat.index("(") + 1 : stat.rindex(")")]
        state, ppid = stat[stat.rindex(")") + 2 :].split()[:2]
        if comm in RAY_DAEMONS and state != "Z" and parent in (None, int(ppid)):
            pids.add(int(entry.name))
    return pids


def wait_gone(pids: set[int], timeout_s: float = 15.0) -> set[int]:
    """The pids of ``pids`` still running after up to ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    while (alive := pids & ray_daemons()) and time.monotonic() < deadline:
        time.sleep(0.2)
    return alive


@pytest.fixture
def suite(tmp_path: Path) -> list[Scenario]:
    """Four two-hour scenarios on different dates and site seeds."""
    paths = []
    for i, start in enumerate(STARTS):
        path = tmp_path / f"s{i}.yaml"
        path.write_text(SCENARIO.format(name=f"short-{i}", seed=i + 1, start=start))
        paths.append(path)
    return [load_scenario(p) for p in paths]


def same_run(a: EvaluationResult, b: EvaluationResult) -> bool:
    """Same policy, scenario, series and KPIs (the policy's compute-time ratio aside)."""
    timing = "computational_time_ratio"
    kpis_a = {k: v for k, v in a.kpis.items() if k != timing}
    kpis_b = {k: v for k, v in b.kpis.items() if k != timing}
    return (
        (a.policy, a.scenario, a.on) == (b.policy, b.scenario, b.on)
        and kpis_a == kpis_b
        and a.series.equals(b.series)
    )


def corrupt_agent(folder: Path) -> Path:
    """A folder that looks like a trained agent but whose model cannot be read."""
    folder.mkdir()
    (folder / "model.zip").write_bytes(b"not a zip archive")
    return folder


def tiny_config(seed: int = 0) -> TrainConfig:
    return TrainConfig.from_yaml(
        "ppo",
        overrides={
            "total_timesteps": 128,
            "n_envs": 2,
            "n_steps": 64,
            "batch_size": 64,
            "episode_hours": 1.0,
            "scenarios": ["tropical-typical-week"],
            "seed": seed,
        },
    )


def test_local_runs_are_evaluate_in_input_order(suite: list[Scenario]) -> None:
    arrived: list[int] = []
    results = evaluate_many(
        "trim-and-respond", suite, on_result=lambda i, r: arrived.append(i), progress=False
    )
    assert arrived == [0, 1, 2, 3]
    assert [r.scenario for r in results] == [s.name for s in suite]
    direct = evaluate(policy_factory("trim-and-respond")(suite[2]), suite[2])
    assert same_run(results[2], direct)
    # Different dates and sites: different runs, not one result copied.
    assert len({round(r.kpis["cooling_kwh"], 6) for r in results}) == len(suite)


def test_scenarios_may_be_given_by_path_and_run_in_the_twin(tmp_path: Path) -> None:
    path = tmp_path / "one.yaml"
    path.write_text(SCENARIO.format(name="one", seed=7, start="07-01"))
    [result] = evaluate_many("fixed-setpoints", [path], on="twin")
    assert result.on == "twin" and result.scenario == "one"
    assert result.kpis["cooling_kwh"] > 0 and "max_inlet_spread_c" in result.kpis


def test_a_failed_run_names_its_scenario(suite: list[Scenario], tmp_path: Path) -> None:
    agent = corrupt_agent(tmp_path / "agent")
    with pytest.raises(ScaleOutError, match=r"^scenario short-0: ") as info:
        evaluate_many(str(agent), suite)
    assert info.value.what == "scenario short-0" and info.value.__cause__ is not None


def test_bad_arguments_fail_before_any_run(suite: list[Scenario]) -> None:
    arrived: list[int] = []

    def record(i: int, _: EvaluationResult) -> None:
        arrived.append(i)

    with pytest.raises(PolicyNotFoundError, match="unknown policy 'nope'"):
        evaluate_many("nope", suite, on_result=record)
    with pytest.raises(ValueError, match="workers must be a positive integer"):
        evaluate_many("fixed-setpoints", suite, ray_address=LOCAL, workers=0, on_result=record)
    with pytest.raises(ValueError, match="workers sets the size of a local Ray instance"):
        evaluate_many("fixed-setpoints", suite, workers=2, on_result=record)
    with pytest.raises(ValueError, match="evaluate on 'plant' or 'twin'"):
        evaluate_many("fixed-setpoints", suite, on="moon", on_result=record)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="no scenarios"):
        evaluate_many("fixed-setpoints", [], on_result=record)
    assert arrived == []


@pytest.fixture
def unused_tcp_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_an_address_nobody_answers_fails_fast(unused_tcp_port: int) -> None:
    started = time.monotonic()
    address = f"127.0.0.1:{unused_tcp_port}"
    with (
        pytest.raises(RayUnavailableError, match=rf"^Ray at {address}: nothing answers"),
        ray_session(address),
    ):
        pytest.fail("connected to nothing")
    with (
        pytest.raises(RayUnavailableError, match="expected ray://HOST:PORT"),
        ray_session("ray://nowhere"),
    ):
        pytest.fail("connected to nothing")
    assert time.monotonic() - started < 10.0


def test_candidates_are_seeds_of_each_algorithm(tmp_path: Path) -> None:
    base = tiny_config(seed=5)
    [single] = candidates([base], 1, tmp_path / "one")
    assert single.out_dir == tmp_path / "one" and single.config == base
    sac = TrainConfig.from_yaml("sac", overrides={"seed": 5})
    runs = candidates([base, sac], 2, tmp_path / "batch")
    assert [r.label for r in runs] == ["ppo-seed5", "ppo-seed6", "sac-seed5", "sac-seed6"]
    assert [r.out_dir.name for r in runs] == [r.label for r in runs]
    assert [r.config.seed for r in runs] == [5, 6, 5, 6]
    with pytest.raises(ValueError, match="parallel must be a positive integer"):
        candidates([base], 0, tmp_path)
    with pytest.raises(ValueError, match="same algorithm and seed"):
        candidates([base, base], 1, tmp_path)


def test_training_sent_to_ray_names_files_by_absolute_path(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    Path("mine.yaml").write_text(SCENARIO.format(name="mine", seed=1, start="07-01"))
    config = TrainConfig.from_yaml(
        "ppo",
        overrides={"n_envs": 2, "scenarios": ["mine.yaml", "tropical-typical-week"]},
    )
    sent = _portable_config(replace(config, twin="twins/t1"))
    assert sent.scenarios == (str(tmp_path / "mine.yaml"), "tropical-typical-week")
    assert sent.twin == str(tmp_path / "twins" / "t1")
    assert _portable_config(config).twin is None


@pytest.mark.integration
def test_local_ray_with_two_workers(suite: list[Scenario], tmp_path: Path) -> None:
    """A local Ray instance with 2 CPUs: a suite evaluated with the same results as here,
    a failed task named, two candidates trained and registered here; Ray gone afterwards."""
    import ray

    here = evaluate_many("trim-and-respond", suite)
    before = ray_daemons(parent=os.getpid())
    with ray_session(LOCAL, workers=2):
        daemons = ray_daemons(parent=os.getpid()) - before
        resources = ray.cluster_resources()  # type: ignore[no-untyped-call]
        assert resources["CPU"] == 2.0
        # Inside the session every call uses that instance and leaves it running.
        arrived: list[int] = []
        on_ray = evaluate_many(
            "trim-and-respond",
            suite,
            ray_address=LOCAL,
            on_result=lambda i, r: arrived.append(i),
        )
        assert sorted(arrived) == [0, 1, 2, 3]
        assert all(same_run(a, b) for a, b in zip(here, on_ray, strict=True))
        with pytest.raises(ScaleOutError, match=r"^scenario short-\d: ") as info:
            evaluate_many(str(corrupt_agent(tmp_path / "agent")), suite, ray_address=LOCAL)
        cause = info.value.__cause__  # the worker's own error, not Ray's wrapper
        assert cause is not None and not isinstance(cause, ray.exceptions.RayError)

        root = tmp_path / "reservoir"
        runs = candidates([tiny_config()], 2, tmp_path / "agents")

        def register(i: int, agent: TrainedAgent) -> None:
            with Reservoir(root) as reservoir:
                reservoir.register(
                    f"tiny-{runs[i].label}",
                    "drl",
                    agent.out_dir,
                    hyperparameters=agent.config.to_dict(),
                    training_scenarios=agent.config.scenarios,
                )

        trained = train_many(runs, ray_address=LOCAL, on_result=register)
        assert ray.is_initialized()
    assert daemons, "no raylet or GCS server was started"
    assert not ray.is_initialized()
    assert wait_gone(daemons) == set(), "Ray processes left running"
    assert [t.config.seed for t in trained] == [0, 1]
    assert all(t.timesteps >= 128 and t.model_path.is_file() for t in trained)
    assert trained[0].model_path.read_bytes() != trained[1].model_path.read_bytes()
    with Reservoir(root) as reservoir:
        names = sorted(r.name for r in reservoir.list())
        assert names == ["tiny-ppo-seed0", "tiny-ppo-seed1"]
        assert all(reservoir.verify(f"{n}@1") for n in names)
