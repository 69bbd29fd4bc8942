"""Scale-out: evaluate a policy over many scenarios, or train many candidates, as Ray tasks.

:func:`evaluate_many` runs :func:`control.evaluation.evaluate` once per scenario and
:func:`train_many` runs :func:`control.training.train_agent` once per configuration. Without
a Ray address both run in this process, one after the other; with one, each run is a Ray task
(``num_cpus=1``) on

- ``"local"``: a Ray instance started here with ``workers`` CPUs and stopped afterwards;
- ``"auto"``, ``"HOST:PORT"`` or ``"ray://HOST:PORT"``: an existing cluster (``ray start``);
  this process connects and disconnects, the cluster keeps running. Its nodes need the
  project installed and the twin and agent folders at the same paths.

If Ray is already initialised in this process (a notebook), that instance is used and left
running. Workers build the policy themselves from its spec (a built-in name or an agent's
folder; see :mod:`control.catalog`), so nothing unpicklable is shipped, and run torch on one
thread each. Results come back in input order; a failed run raises :class:`ScaleOutError`
naming the scenario or candidate, after the finished ones were handed to ``on_result``.
Ray Tune is not used: the runs are independent and need no search or scheduling.
"""

from __future__ import annotations

import functools
import logging
import os
import socket
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from tqdm import tqdm

from control.catalog import BUILTIN_POLICIES, policy_factory
from control.evaluation import EvaluationResult, Target, evaluate
from physics.plant.scenario import Scenario, load_scenario
from twinloop.errors import TwinLoopError

if TYPE_CHECKING:
    from control.training import TrainConfig, TrainedAgent
    from twin.ensemble import TwinEnsemble

logger = logging.getLogger(__name__)

LOCAL = "local"
"""The Ray address that starts a Ray instance on this machine for the duration of a call."""
OBJECT_STORE_BYTES = 256 * 1024**2
"""Object store of a local instance: results are KPIs and per-period series (small)."""
CONNECT_TIMEOUT_S = 5.0
"""How long a cluster's address may take to accept a connection."""

R = TypeVar("R")


class ScaleOutError(TwinLoopError, RuntimeError):
    """A run that failed (``what`` names its scenario or candidate), or Ray unreachable."""

    def __init__(self, what: str, cause: BaseException | str) -> None:
        reason = cause if isinstance(cause, str) else f"{type(cause).__name__}: {cause}"
        lines = reason.strip().splitlines() or [""]
        # One line (a CLI prints it as is); the whole error stays in ``__cause__``.
        super().__init__(f"{what}: {lines[0]}" + (" [...]" if len(lines) > 1 else ""))
        self.what = what


class RayUnavailableError(ScaleOutError):
    """Ray could not be started here or reached at the address given."""


# ----------------------------------------------------------------------------- Ray session
def _check_address(ray_address: str | None, workers: int | None) -> None:
    if workers is not None and (
        isinstance(workers, bool) or not isinstance(workers, int) or workers < 1
    ):
        raise ValueError(f"workers must be a positive integer, got {workers!r}")
    if ray_address is not None and not (isinstance(ray_address, str) and ray_address.strip()):
        raise ValueError(f"a Ray address is 'local', 'auto' or HOST:PORT, got {ray_address!r}")
    if workers is not None and ray_address != LOCAL:
        raise ValueError(
            f"workers sets the size of a local Ray instance (ray address {LOCAL!r}); "
            "without Ray runs go one after the other and a cluster has its own size"
        )


def _check_reachable(ray_address: str) -> None:
    """A ``HOST:PORT`` or ``ray://HOST:PORT`` that nothing answers on fails in seconds (Ray
    itself keeps retrying for minutes)."""
    hostport = ray_address.removeprefix("ray://")
    host, sep, port = hostport.rpartition(":")
    if not sep or not port.isdigit():
        if ray_address.startswith("ray://"):
            raise RayUnavailableError(f"Ray at {ray_address}", "expected ray://HOST:PORT")
        return  # 'auto' and the like: Ray resolves them itself
    try:
        with socket.create_connection((host.strip("[]"), int(port)), timeout=CONNECT_TIMEOUT_S):
            pass
    except OSError as exc:
        raise RayUnavailableError(f"Ray at {ray_address}", f"nothing answers ({exc})") from None


@contextmanager
def ray_session(ray_address: str, workers: int | None = None) -> Iterator[None]:
    """Ray initialised for the block: a local instance (``"local"``, ``workers`` CPUs,
    default all) or a connection to a cluster; shut down / disconnected afterwards. An
    instance already initialised in this process is used as it is and left running."""
    _check_address(ray_address, workers)
    import ray

    if ray.is_initialized():
        logger.info("using the Ray instance already initialised in this process")
        yield
        return
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    options: dict[str, Any] = {
        "include_dashboard": False,
        "log_to_driver": False,
        "logging_level": logging.WARNING,
    }
    try:
        if ray_address == LOCAL:
            # Ray runs workers at nice 15; on a shared machine that puts the suite behind
            # everything else, where a run here would have the usual priority.
            os.environ.setdefault("RAY_worker_niceness", "0")
            cpus = workers or os.cpu_count() or 1
            ray.init(LOCAL, num_cpus=cpus, object_store_memory=OBJECT_STORE_BYTES, **options)
        else:
            _check_reachable(ray_address)
            ray.init(address=ray_address, **options)
    except RayUnavailableError:
        raise
    except (ConnectionError, ValueError, RuntimeError) as exc:
        ray.shutdown()
        raise RayUnavailableError(
            f"Ray at {ray_address}", f"cannot start or connect ({exc})"
        ) from None
    resources = ray.cluster_resources()  # type: ignore[no-untyped-call]
    logger.info("Ray at %s: %s", ray_address, resources)
    try:
        yield
    finally:
        ray.shutdown()


def _run_all(
    task: Callable[..., R],
    jobs: Sequence[tuple[str, tuple[Any, ...]]],
    *,
    ray_address: str | None,
    workers: int | None,
    progress: bool,
    desc: str,
    unit: str,
    on_result: Callable[[int, R], None] | None,
) -> list[R]:
    """``task(*args)`` for every ``(label, args)`` of ``jobs``, in order of ``jobs``."""
    _check_address(ray_address, workers)
    results: dict[int, R] = {}

    def arrived(i: int, result: R) -> None:
        results[i] = result
        if on_result is not None:
            on_result(i, result)

    def bar() -> tqdm[Any]:
        return tqdm(total=len(jobs), desc=desc, unit=unit, disable=not progress)

    if ray_address is None:
        with bar() as shown:
            for i, (label, args) in enumerate(jobs):
                try:
                    result = task(*args)
                except Exception as exc:
                    raise ScaleOutError(label, exc) from exc
                arrived(i, result)
                shown.update(1)
    else:
        with ray_session(ray_address, workers), bar() as shown:
            _gather_on_ray(task, jobs, arrived, shown)
    return [results[i] for i in range(len(jobs))]


def _gather_on_ray(
    task: Callable[..., R],
    jobs: Sequence[tuple[str, tuple[Any, ...]]],
    arrived: Callable[[int, R], None],
    bar: tqdm[Any],
) -> None:
    import ray

    remote = ray.remote(num_cpus=1)(_in_worker)
    index = {remote.remote(task, *args): i for i, (_, args) in enumerate(jobs)}
    pending = list(index)
    while pending:
        done, pending = ray.wait(pending, num_returns=1)
        for ref in done:
            i = index[ref]
            try:
                result = ray.get(ref)
            except ray.exceptions.RayError as exc:
                # The others are left to finish (or to end with the job at ray.shutdown), not
                # cancelled: ray.cancel() racing a task's completion aborts the driver itself
                # ("Check failed: it != submissible_tasks_.end()", ray-project/ray#54846),
                # seen here in Ray 2.60 taking pytest down with it.
                logger.warning(
                    "%s failed; %d other task(s) left to finish", jobs[i][0], len(pending)
                )
                cause = getattr(exc, "cause", None)
                cause = cause if isinstance(cause, BaseException) else exc
                raise ScaleOutError(jobs[i][0], cause) from cause
            arrived(i, result)
            bar.update(1)


def _in_worker(task: Callable[..., R], *args: Any) -> R:
    """The body of every Ray task: ``task(*args)`` on one torch thread (a task holds one
    CPU; the workers of a machine share its cores)."""
    import torch

    if torch.get_num_threads() != 1:
        torch.set_num_threads(1)
    return task(*args)


# ----------------------------------------------------------------------------- evaluation
@functools.lru_cache(maxsize=2)
def _twin(twin_dir: str) -> TwinEnsemble:
    from twin.ensemble import TwinEnsemble

    return TwinEnsemble.load(Path(twin_dir))


def _evaluate_one(
    policy_spec: str, scenario: Scenario, on: Target, twin_dir: str | None
) -> EvaluationResult:
    """One evaluation, the policy built here from its spec."""
    twin = _twin(twin_dir) if on == "twin" and twin_dir is not None else None
    policy = policy_factory(policy_spec, twin=twin)(scenario)
    return evaluate(policy, scenario, on=on, twin=twin)


def _portable_spec(policy_spec: str) -> str:
    """A built-in name as it is; an agent's folder as an absolute path (workers may run
    elsewhere). An unknown spec raises :class:`~control.catalog.PolicyNotFoundError` here,
    before any work is sent out."""
    if policy_spec in BUILTIN_POLICIES:
        return policy_spec
    if not (Path(policy_spec) / "model.zip").is_file():
        policy_factory(policy_spec)  # raises, naming the spec
    return str(Path(policy_spec).resolve())


def evaluate_many(
    policy_spec: str,
    scenarios: Sequence[Scenario | str | Path],
    *,
    on: Target = "plant",
    twin_dir: str | Path | None = None,
    ray_address: str | None = None,
    workers: int | None = None,
    progress: bool = False,
    on_result: Callable[[int, EvaluationResult], None] | None = None,
) -> list[EvaluationResult]:
    """:func:`~control.evaluation.evaluate` of the policy ``policy_spec`` names on each
    scenario (in the twin of ``twin_dir`` with ``on="twin"``; None: the drawings), here or as
    Ray tasks at ``ray_address``; results in the order of ``scenarios``. ``on_result(i,
    result)`` is called on this process as each run finishes."""
    if on not in ("plant", "twin"):
        raise ValueError(f"evaluate on 'plant' or 'twin', not {on!r}")
    if not scenarios:
        raise ValueError("no scenarios to evaluate")
    loaded = [s if isinstance(s, Scenario) else load_scenario(s) for s in scenarios]
    spec = _portable_spec(policy_spec)
    twin = None if twin_dir is None else str(Path(twin_dir).resolve())
    jobs = [(f"scenario {s.name}", (spec, s, on, twin)) for s in loaded]
    where = "here" if ray_address is None else f"on Ray at {ray_address}"
    logger.info("evaluating %s on %d scenario(s) (%s) %s", policy_spec, len(jobs), on, where)
    return _run_all(
        _evaluate_one,
        jobs,
        ray_address=ray_address,
        workers=workers,
        progress=progress,
        desc=f"{policy_spec} on {on}",
        unit="scenario",
        on_result=on_result,
    )


# ----------------------------------------------------------------------------- training
@dataclass(frozen=True)
class Candidate:
    """One training run of a batch: its configuration and the folder it writes."""

    label: str
    """``ALGO-seedN``: names the run's folder and, registered, its policy."""
    config: TrainConfig
    out_dir: Path


def candidates(configs: Sequence[TrainConfig], parallel: int, out_dir: Path) -> list[Candidate]:
    """``parallel`` seeds (the config's seed and the next ones) of each of ``configs``. A
    batch of one writes into ``out_dir`` itself; more, each into ``out_dir/ALGO-seedN``."""
    from dataclasses import replace

    if isinstance(parallel, bool) or not isinstance(parallel, int) or parallel < 1:
        raise ValueError(f"parallel must be a positive integer, got {parallel!r}")
    if not configs:
        raise ValueError("no training configuration given")
    runs = [replace(c, seed=c.seed + k) for c in configs for k in range(parallel)]
    labels = [f"{c.algo}-seed{c.seed}" for c in runs]
    if len(set(labels)) != len(labels):
        raise ValueError("two candidates of the batch have the same algorithm and seed")
    out_dir = Path(out_dir)
    if len(runs) == 1:
        return [Candidate(labels[0], runs[0], out_dir)]
    return [Candidate(lab, c, out_dir / lab) for lab, c in zip(labels, runs, strict=True)]


def _train_one(config: TrainConfig, out_dir: Path, progress: bool) -> TrainedAgent:
    """One training run."""
    from control.training import train_agent

    return train_agent(config, out_dir, progress=progress)


def _portable_config(config: TrainConfig) -> TrainConfig:
    """``config`` with its twin folder and scenario files as absolute paths (a worker's
    working folder is not this process's)."""
    from dataclasses import replace

    scenarios = tuple(str(Path(s).resolve()) if Path(s).is_file() else s for s in config.scenarios)
    twin = None if config.twin is None else str(Path(config.twin).resolve())
    return replace(config, scenarios=scenarios, twin=twin)


def train_many(
    runs: Sequence[Candidate],
    *,
    ray_address: str | None = None,
    workers: int | None = None,
    progress: bool = False,
    on_result: Callable[[int, TrainedAgent], None] | None = None,
) -> list[TrainedAgent]:
    """:func:`~control.training.train_agent` for each candidate, here (one after the other,
    each with its own progress bar) or as Ray tasks; results in the order of ``runs``.
    ``on_result(i, agent)`` runs on this process as each finishes: register it there (the
    reservoir's SQLite file is local to this machine)."""
    if not runs:
        raise ValueError("no candidates to train")
    here = ray_address is None
    jobs = [
        (
            f"candidate {r.label}",
            (
                r.config if here else _portable_config(r.config),
                Path(r.out_dir).resolve(),
                progress and here,
            ),
        )
        for r in runs
    ]
    return _run_all(
        _train_one,
        jobs,
        ray_address=ray_address,
        workers=workers,
        progress=progress and (len(jobs) > 1 or not here),
        desc="candidates",
        unit="run",
        on_result=on_result,
    )
