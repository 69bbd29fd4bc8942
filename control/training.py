"""Training DRL agents (Stable-Baselines3 PPO, SAC, TD3) in the batched twin.

A :class:`TrainConfig` says what to train: the algorithm, the environment id, the SB3
hyper-parameters (from ``control/hyperparams.yaml``, keyed by environment id then
algorithm, with overrides), the budget, the training scenarios and the twin.
:func:`train_agent` runs it in :class:`~control.sb3_env.TwinSB3VecEnv` under SB3's
``VecMonitor`` with domain randomisation — per environment and episode the start in the
scenario (weather, workload), the site's physical parameters, the IT scale and a weather
offset; across scenarios, the faults they schedule — and writes ``model.zip``,
``training.json``, the training curves as ``progress.csv`` (and TensorBoard events when the
``tensorboard`` package is installed) into one directory.

Several scenarios: the ``n_envs`` environments are shared out between them in contiguous
blocks (:class:`~control.sb3_env.ScenarioMixVecEnv`), so every rollout mixes them in fixed
proportions.
"""

from __future__ import annotations

import copy
import dataclasses
import difflib
import importlib.util
import inspect
import json
import logging
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any, TypeVar

import gymnasium
import numpy as np
import stable_baselines3
import torch
import yaml
from stable_baselines3 import PPO, SAC, TD3
from stable_baselines3.common.base_class import BaseAlgorithm
from stable_baselines3.common.callbacks import BaseCallback, CallbackList
from stable_baselines3.common.logger import configure
from stable_baselines3.common.noise import (
    ActionNoise,
    NormalActionNoise,
    OrnsteinUhlenbeckActionNoise,
)
from stable_baselines3.common.utils import get_device
from stable_baselines3.common.vec_env import VecEnv, VecMonitor
from tqdm import tqdm

from control.sb3_env import ScenarioMixVecEnv, ShieldedVecEnv, TwinSB3VecEnv
from twin.ensemble import TwinEnsemble
from twin.reward import CoolingEnergyReward, Pessimism
from twin.spaces import ACTION_NAMES
from twin.vec_env import Randomisation
from twinloop.errors import TwinLoopError

logger = logging.getLogger(__name__)


class TrainConfigError(TwinLoopError, ValueError):
    """A training configuration (hyper-parameters file, overrides) that cannot be used;
    the message names the field or file."""


ALGORITHMS: dict[str, type[BaseAlgorithm]] = {"ppo": PPO, "sac": SAC, "td3": TD3}
OFF_POLICY = frozenset({"sac", "td3"})
DEFAULT_ENV_ID = "TwinLoop/DataCenter-v0"
TRAINABLE_ENV_IDS: tuple[str, ...] = (DEFAULT_ENV_ID,)
"""Environment ids :func:`train_agent` can build a batched training environment for."""
MODEL_FILE, METADATA_FILE, PROGRESS_FILE = "model.zip", "training.json", "progress.csv"
CHECKPOINT_DIR, CHECKPOINT_INDEX = "checkpoints", "checkpoints.csv"

_D = TypeVar("_D")

CONFIG_KEYS = frozenset(
    {"n_envs", "total_timesteps", "episode_hours", "randomisation", "scenarios", "twin"}
    | {"seed", "device", "reward", "checkpoint_every", "pessimism", "member_per_episode"}
    | {"shield"}
)
"""Keys of a YAML block (or overrides) that are :class:`TrainConfig` fields, not SB3's."""
NOISE_KEYS = frozenset({"noise_type", "noise_std"})
_MANAGED = frozenset({"self", "env", "seed", "device", "verbose", "tensorboard_log"})
_MANAGED |= {"_init_setup_model", "action_noise", "rollout_buffer_class", "replay_buffer_class"}
ACTIVATIONS: dict[str, type[torch.nn.Module]] = {
    "relu": torch.nn.ReLU,
    "tanh": torch.nn.Tanh,
    "elu": torch.nn.ELU,
    "leaky_relu": torch.nn.LeakyReLU,
    "silu": torch.nn.SiLU,
    "gelu": torch.nn.GELU,
}


def hyperparameter_names(algo: str) -> frozenset[str]:
    """The keys a hyper-parameter block of ``algo`` may hold besides :data:`CONFIG_KEYS`:
    the SB3 constructor's arguments (less those :func:`train_agent` sets) and, off-policy,
    the exploration-noise keys."""
    params = inspect.signature(ALGORITHMS[algo].__init__).parameters
    names = frozenset(params) - _MANAGED
    return names | NOISE_KEYS if algo in OFF_POLICY else names


def _positive_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 1


def _check_hyperparameters(algo: str, hp: Mapping[str, Any]) -> None:
    """Raise ``ValueError`` naming every key ``algo`` does not take, or a bad value of ours."""
    allowed = hyperparameter_names(algo)
    if bad := sorted(set(hp) - allowed):
        hints = []
        for key in bad:
            close = difflib.get_close_matches(key, sorted(allowed | CONFIG_KEYS), n=1)
            hints.append(f"{key} (did you mean {close[0]}?)" if close else key)
        raise TrainConfigError(f"unknown {algo} hyper-parameter(s): {', '.join(hints)}")
    if not isinstance(hp.get("policy", "MlpPolicy"), str):
        raise TrainConfigError("hyper-parameter policy must be a policy name such as 'MlpPolicy'")
    noise = hp.get("noise_type")
    if noise is not None and noise not in ("normal", "ornstein-uhlenbeck"):
        raise TrainConfigError(f"noise_type {noise!r}: use 'normal' or 'ornstein-uhlenbeck'")
    if noise is not None and not float(hp.get("noise_std", 0.1)) > 0.0:
        raise TrainConfigError("noise_std must be positive")
    policy_kwargs = hp.get("policy_kwargs") or {}
    if not isinstance(policy_kwargs, dict):
        raise TrainConfigError("hyper-parameter policy_kwargs must be a mapping")
    activation = policy_kwargs.get("activation_fn")
    if activation is not None and activation not in ACTIVATIONS:
        raise TrainConfigError(
            f"policy_kwargs.activation_fn {activation!r}: use one of {', '.join(ACTIVATIONS)}"
        )


@dataclass(frozen=True)
class TrainConfig:
    """What one training run trains, on what, for how long (validated on construction)."""

    algo: str
    env_id: str = DEFAULT_ENV_ID
    hyperparameters: dict[str, Any] = field(default_factory=dict)
    """SB3 constructor keyword arguments plus ``noise_type``/``noise_std`` (off-policy)."""
    total_timesteps: int = 100_000
    n_envs: int = 16
    episode_hours: float = 24.0
    scenarios: tuple[str, ...] = ("tropical-typical-week",)
    twin: str | None = None
    """A saved twin's directory, or ``None`` for the physics of the site's drawings."""
    seed: int = 0
    device: str = "cpu"
    randomisation: bool = True
    reward: dict[str, float] = field(default_factory=dict)
    """Keyword arguments of :class:`~twin.reward.CoolingEnergyReward` (e.g. the thermal
    penalty ``violation_kwh_per_kh``); empty = the default reward."""
    checkpoint_every: int = 0
    """Save a loadable snapshot every this many environment steps (0 = none): how good the
    agent was after how much wall-clock, judged afterwards on the plant."""
    pessimism: dict[str, float] = field(default_factory=dict)
    """Keyword arguments of :class:`~twin.reward.Pessimism`: the twin's uncertainty and the
    actuators' travel priced in the reward, so the agent stays where the twin is right."""
    member_per_episode: bool = False
    """Draw the ensemble member each episode runs (else each environment keeps one)."""
    shield: bool = True
    """Train behind the site's safety shield (:class:`~control.sb3_env.ShieldedVecEnv`), as
    the agent will run in pre-evaluation and live: each episode starts from the site's own
    setpoints and the shield paces every move. Off, the agent learns moves the shield will
    not let through (measured on a pessimistic PPO trained without it: 26.5 % savings
    unshielded, 22.5 % behind the shield on the same plant run)."""

    def __post_init__(self) -> None:
        algo = self.algo.lower()
        if algo not in ALGORITHMS:
            raise TrainConfigError(
                f"unknown algorithm {self.algo!r} (known: {', '.join(ALGORITHMS)})"
            )
        object.__setattr__(self, "algo", algo)
        if self.env_id not in TRAINABLE_ENV_IDS:
            raise TrainConfigError(
                f"unknown env id {self.env_id!r}: agents train in {', '.join(TRAINABLE_ENV_IDS)}"
            )
        hp = copy.deepcopy(dict(self.hyperparameters))
        object.__setattr__(self, "hyperparameters", hp)
        _check_hyperparameters(algo, hp)
        self._check_budget()
        self._set_scenarios()
        if self.twin is not None:
            object.__setattr__(self, "twin", str(self.twin))
        self._set_reward_and_pessimism()
        for name in ("member_per_episode", "shield"):
            if not isinstance(getattr(self, name), bool):
                raise TrainConfigError(f"{name} must be true or false, got {getattr(self, name)!r}")

    def _check_budget(self) -> None:
        """The step budget, episode length, seed, checkpoint interval and randomisation."""
        for name in ("total_timesteps", "n_envs"):
            if not _positive_int(getattr(self, name)):
                raise TrainConfigError(
                    f"{name} must be a positive integer, got {getattr(self, name)!r}"
                )
        if not isinstance(self.episode_hours, int | float) or not self.episode_hours > 0:
            raise TrainConfigError(f"episode_hours must be positive, got {self.episode_hours!r}")
        if not isinstance(self.seed, int) or isinstance(self.seed, bool):
            raise TrainConfigError(f"seed must be an integer, got {self.seed!r}")
        if not isinstance(self.checkpoint_every, int) or isinstance(self.checkpoint_every, bool):
            raise TrainConfigError(
                f"checkpoint_every must be an integer, got {self.checkpoint_every!r}"
            )
        if self.checkpoint_every < 0:
            raise TrainConfigError(
                f"checkpoint_every must be 0 or more, got {self.checkpoint_every}"
            )
        if not isinstance(self.randomisation, bool):
            raise TrainConfigError(
                f"randomisation must be true or false, got {self.randomisation!r}"
            )

    def _set_scenarios(self) -> None:
        """``scenarios`` as a tuple of names (one name alone is one scenario), at least one
        and no more than there are environments."""
        scenarios = (self.scenarios,) if isinstance(self.scenarios, str) else self.scenarios
        scenarios = tuple(str(s) for s in scenarios)
        if not scenarios:
            raise TrainConfigError("at least one training scenario is needed")
        if self.n_envs < len(scenarios):
            raise TrainConfigError(f"n_envs={self.n_envs} cannot cover {len(scenarios)} scenarios")
        object.__setattr__(self, "scenarios", scenarios)

    def _set_reward_and_pessimism(self) -> None:
        """``reward`` and ``pessimism`` as plain dicts that build their dataclasses."""
        if not isinstance(self.reward, Mapping):
            raise TrainConfigError(
                f"reward must be a mapping of CoolingEnergyReward fields, got {self.reward!r}"
            )
        object.__setattr__(self, "reward", dict(self.reward))
        self.reward_function()
        if not isinstance(self.pessimism, Mapping):
            raise TrainConfigError(
                f"pessimism must be a mapping of Pessimism fields, got {self.pessimism!r}"
            )
        object.__setattr__(self, "pessimism", dict(self.pessimism))
        self.pessimism_function()

    def pessimism_function(self) -> Pessimism:
        """The training penalties (raises ValueError naming a bad or unknown field)."""
        return _numeric_dataclass(Pessimism, self.pessimism, "pessimism")

    def reward_function(self) -> CoolingEnergyReward:
        """The training reward (raises ValueError naming a bad or unknown field)."""
        return _numeric_dataclass(CoolingEnergyReward, self.reward, "reward")

    @classmethod
    def from_yaml(
        cls,
        algo: str,
        env_id: str = DEFAULT_ENV_ID,
        overrides: Mapping[str, Any] | None = None,
        *,
        path: Path | None = None,
    ) -> TrainConfig:
        """The block of ``algo`` under ``env_id`` in ``path`` (default: the packaged
        ``control/hyperparams.yaml``), updated key by key from ``overrides``."""
        if path is None:
            source = resources.files("control").joinpath("hyperparams.yaml")
            text, where = source.read_text(encoding="utf-8"), "control/hyperparams.yaml"
        else:
            where = str(path)
            try:
                text = Path(path).read_text(encoding="utf-8")
            except OSError as exc:
                raise TrainConfigError(f"{where}: cannot read ({exc.strerror})") from None
        try:
            raw = yaml.safe_load(text)
        except yaml.YAMLError as exc:
            raise TrainConfigError(f"{where}: not valid YAML ({exc})") from None
        if not isinstance(raw, dict) or not all(isinstance(v, dict) for v in raw.values()):
            raise TrainConfigError(f"{where}: expected env id -> algorithm -> hyper-parameters")
        if env_id not in raw:
            raise TrainConfigError(
                f"unknown env id {env_id!r}: {where} has {', '.join(sorted(raw))}"
            )
        key = algo.lower()
        if key not in ALGORITHMS:
            raise TrainConfigError(f"unknown algorithm {algo!r} (known: {', '.join(ALGORITHMS)})")
        if not isinstance(raw[env_id].get(key), dict):
            raise TrainConfigError(f"{where}: no {key} block under {env_id}")
        merged: dict[str, Any] = {**raw[env_id][key], **(overrides or {})}
        fields = {k: merged.pop(k) for k in sorted(CONFIG_KEYS) if k in merged}
        if isinstance(fields.get("scenarios"), list):
            fields["scenarios"] = tuple(fields["scenarios"])
        return cls(algo=key, env_id=env_id, hyperparameters=merged, **fields)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready copy (``training.json``)."""
        out = dataclasses.asdict(self)
        out["scenarios"] = list(self.scenarios)
        return out

    def sb3_kwargs(self) -> dict[str, Any]:
        """The SB3 constructor's keyword arguments (names resolved to objects)."""
        kwargs = copy.deepcopy(self.hyperparameters)
        kwargs.setdefault("policy", "MlpPolicy")
        policy_kwargs = kwargs.get("policy_kwargs")
        if policy_kwargs and "activation_fn" in policy_kwargs:
            policy_kwargs["activation_fn"] = ACTIVATIONS[policy_kwargs["activation_fn"]]
        if isinstance(kwargs.get("train_freq"), list):
            kwargs["train_freq"] = tuple(kwargs["train_freq"])
        noise_type, noise_std = kwargs.pop("noise_type", None), kwargs.pop("noise_std", 0.1)
        if noise_type is not None:
            mean, sigma = np.zeros(len(ACTION_NAMES)), np.full(len(ACTION_NAMES), noise_std)
            noise: ActionNoise = (
                NormalActionNoise(mean, sigma)
                if noise_type == "normal"
                else OrnsteinUhlenbeckActionNoise(mean, sigma)
            )
            kwargs["action_noise"] = noise
        return kwargs


def _numeric_dataclass(cls: type[_D], values: Mapping[str, Any], what: str) -> _D:
    """``cls`` from a mapping of its numeric fields; a ValueError names an unknown or bad one."""
    known = {f.name for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    if bad := sorted(set(values) - known):
        raise TrainConfigError(
            f"unknown {what} field(s) {', '.join(bad)} (known: {', '.join(sorted(known))})"
        )
    try:
        return cls(**{k: float(v) for k, v in values.items()})
    except (TypeError, ValueError) as exc:
        raise TrainConfigError(f"{what}: {exc}") from None


def make_training_env(config: TrainConfig) -> VecMonitor:
    """The batched twin of ``config`` under ``VecMonitor`` (episode returns and lengths)."""
    twin = TwinEnsemble.load(Path(config.twin)) if config.twin is not None else None
    randomisation = Randomisation() if config.randomisation else None
    sizes = [len(a) for a in np.array_split(np.arange(config.n_envs), len(config.scenarios))]
    twins = [
        TwinSB3VecEnv(
            n,
            scenario=scenario,
            twin=twin,
            episode_hours=config.episode_hours,
            randomisation=randomisation,
            device=get_device(config.device),
            seed=config.seed + k,
            reward=config.reward_function(),
            pessimism=config.pessimism_function(),
            member_per_episode=config.member_per_episode,
        )
        for k, (scenario, n) in enumerate(zip(config.scenarios, sizes, strict=True))
    ]
    parts: list[VecEnv] = [ShieldedVecEnv(t) for t in twins] if config.shield else [*twins]
    return VecMonitor(parts[0] if len(parts) == 1 else ScenarioMixVecEnv(parts))


class TqdmProgress(BaseCallback):
    """A tqdm progress bar over the run's timesteps, with the mean episode return so far
    (SB3's own bar needs ``rich``)."""

    def __init__(self, desc: str) -> None:
        super().__init__()
        self.desc = desc
        self.bar: Any = None

    def _on_training_start(self) -> None:
        total = self.locals["total_timesteps"] - self.model.num_timesteps
        self.bar = tqdm(total=total, desc=self.desc, unit="step", dynamic_ncols=True)

    def _on_step(self) -> bool:
        self.bar.update(self.training_env.num_envs)
        return True

    def _on_rollout_end(self) -> None:
        if self.model.ep_info_buffer:
            mean = float(np.mean([e["r"] for e in self.model.ep_info_buffer]))
            self.bar.set_postfix(ep_return=f"{mean:.1f}", refresh=False)

    def _on_training_end(self) -> None:
        self.bar.close()


class Checkpoints(BaseCallback):
    """Every ``every`` environment steps, a snapshot the reservoir and ``twinloop evaluate``
    can load: ``checkpoints/step-NNNNNNNNN/`` with ``model.zip`` and a ``training.json``
    that records the steps and the wall-clock so far; one row per snapshot in
    ``checkpoints.csv``."""

    def __init__(self, every: int, out_dir: Path, metadata: Mapping[str, Any]) -> None:
        super().__init__()
        self.every = every
        self.out_dir = out_dir
        self.metadata = dict(metadata)
        self.started = time.perf_counter()
        self.next_at = every

    def _on_training_start(self) -> None:
        self.started = time.perf_counter()
        self.next_at = self.model.num_timesteps + self.every
        index = self.out_dir / CHECKPOINT_INDEX
        index.write_text("timesteps,wall_s,mean_episode_return,path\n", encoding="utf-8")

    def _on_step(self) -> bool:
        if self.model.num_timesteps >= self.next_at:
            self.save()
            while self.next_at <= self.model.num_timesteps:
                self.next_at += self.every
        return True

    def save(self) -> Path:
        """Write one snapshot now and index it."""
        wall_s = time.perf_counter() - self.started
        steps = int(self.model.num_timesteps)
        folder = self.out_dir / CHECKPOINT_DIR / f"step-{steps:09d}"
        folder.mkdir(parents=True, exist_ok=True)
        self.model.save(folder / MODEL_FILE)
        returns = [float(e["r"]) for e in self.model.ep_info_buffer or ()]
        mean = float(np.mean(returns)) if returns else None
        metadata = {**self.metadata, "timesteps": steps, "wall_s": round(wall_s, 2)}
        metadata["final_mean_episode_return"] = mean
        (folder / METADATA_FILE).write_text(json.dumps(metadata, indent=2) + "\n", "utf-8")
        with (self.out_dir / CHECKPOINT_INDEX).open("a", encoding="utf-8") as index:
            shown = "" if mean is None else f"{mean:.3f}"
            index.write(f"{steps},{wall_s:.2f},{shown},{folder.relative_to(self.out_dir)}\n")
        logger.info("checkpoint at %d steps (%.0f s): %s", steps, wall_s, folder)
        return folder


@dataclass(frozen=True)
class TrainedAgent:
    """What :func:`train_agent` wrote, and how the run went."""

    config: TrainConfig
    out_dir: Path
    model_path: Path
    metadata_path: Path
    progress_csv: Path
    tensorboard: bool
    """Whether TensorBoard event files were written into ``out_dir``."""
    timesteps: int
    wall_s: float
    final_mean_return: float | None
    """Mean return of the last (up to ``stats_window_size``) episodes; ``None`` if none ended."""


def _metadata(
    config: TrainConfig, timesteps: int, wall_s: float, final: float | None, formats: list[str]
) -> dict[str, Any]:
    """``training.json``: what was trained, how far, how long, with which library versions."""
    return {
        "algo": config.algo,
        "env_id": config.env_id,
        "config": config.to_dict(),
        "timesteps": timesteps,
        "wall_s": round(wall_s, 2),
        "final_mean_episode_return": final,
        "log_formats": formats,
        "versions": {
            "stable_baselines3": stable_baselines3.__version__,
            "torch": torch.__version__,
            "gymnasium": gymnasium.__version__,
        },
    }


def tensorboard_available() -> bool:
    """Whether SB3 can write TensorBoard events (the ``tensorboard`` package is installed)."""
    return importlib.util.find_spec("tensorboard") is not None


def train_agent(config: TrainConfig, out_dir: Path, *, progress: bool = True) -> TrainedAgent:
    """Train the agent of ``config`` and write ``model.zip``, ``training.json`` and the
    training logs into ``out_dir``. PPO on a CUDA device trains with
    :func:`control.torch_ppo.train_torch_ppo` over the device-resident twin; a CUDA device
    where there is no GPU falls back to the CPU (SB3) with one warning."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    from control.torch_ppo import resolve_device, train_torch_ppo

    device = resolve_device(config.device)
    if config.algo == "ppo" and device.type == "cuda":
        # On a GPU, PPO trains in torch over the device-resident twin (docs/gpu-training.md).
        if config.shield:
            logger.warning(
                "the GPU learner trains without the site's shield (docs/gpu-training.md): "
                "train on the CPU for an agent that learned the shield's pace"
            )
        return train_torch_ppo(config, out_dir, device=device, progress=progress)
    if device.type != torch.device(config.device).type:
        config = dataclasses.replace(config, device=str(device))
    formats = ["csv"]
    if tensorboard_available():
        formats.append("tensorboard")
    else:
        logger.warning("tensorboard is not installed: training curves go to %s only", PROGRESS_FILE)
    env = make_training_env(config)
    model = ALGORITHMS[config.algo](
        env=env, seed=config.seed, device=config.device, verbose=0, **config.sb3_kwargs()
    )
    model.set_logger(configure(str(out_dir), formats))
    rich_bar = progress and importlib.util.find_spec("rich") is not None
    callbacks: list[BaseCallback] = []
    if progress and not rich_bar:
        callbacks.append(TqdmProgress(config.algo))
    if config.checkpoint_every:
        callbacks.append(
            Checkpoints(config.checkpoint_every, out_dir, _metadata(config, 0, 0.0, None, formats))
        )
    logger.info(
        "training %s on %s: %d steps, %d envs, scenarios %s",
        config.algo,
        config.env_id,
        config.total_timesteps,
        config.n_envs,
        ", ".join(config.scenarios),
    )
    # Off-policy SB3 logs every ``log_interval`` finished episodes; the twin's episodes end
    # together, so one row of progress.csv per batch of ``n_envs`` (on-policy: per rollout).
    log_interval = config.n_envs if config.algo in OFF_POLICY else 1
    started = time.perf_counter()
    try:
        model.learn(
            config.total_timesteps,
            callback=CallbackList(callbacks) if callbacks else None,
            log_interval=log_interval,
            progress_bar=rich_bar,
        )
    finally:
        model.logger.close()
        env.close()
    wall_s = time.perf_counter() - started
    model_path = out_dir / MODEL_FILE
    model.save(model_path)
    returns = [float(e["r"]) for e in model.ep_info_buffer or ()]
    final = float(np.mean(returns)) if returns else None
    metadata = _metadata(config, int(model.num_timesteps), wall_s, final, formats)
    metadata_path = out_dir / METADATA_FILE
    metadata_path.write_text(json.dumps(metadata, indent=2) + "\n", encoding="utf-8")
    logger.info("trained %s in %.1f s; model in %s", config.algo, wall_s, model_path)
    return TrainedAgent(
        config=config,
        out_dir=out_dir,
        model_path=model_path,
        metadata_path=metadata_path,
        progress_csv=out_dir / PROGRESS_FILE,
        tensorboard="tensorboard" in formats,
        timesteps=int(model.num_timesteps),
        wall_s=wall_s,
        final_mean_return=final,
    )
