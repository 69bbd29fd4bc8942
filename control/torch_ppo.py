"""PPO in torch over the device-resident twin: rollouts and updates never leave the device.

:func:`train_torch_ppo` trains the PPO of a :class:`~control.training.TrainConfig` in
:class:`~twin.torch_vec_env.TorchTwinVectorEnv` (one per training scenario, the environments
shared out between them as in the SB3 path, with the config's reward, pessimism, member
drawing and domain randomisation). The algorithm is Stable-Baselines3's PPO with its
defaults: a diagonal Gaussian with a state-independent log-std, orthogonal initialisation,
actions clipped to [-1, 1] for the environment, GAE(λ) with the value of the last
observation added to the reward at a time-limit truncation, per-minibatch advantage
normalisation, clipped surrogate, unclipped value loss, Adam (eps 1e-5) and gradient-norm
clipping. The network has the exact module layout of SB3's ``MlpPolicy``
(:class:`ActorCritic`), so the trained weights are loaded into an SB3 ``PPO`` and saved as
``model.zip`` beside ``training.json`` and ``progress.csv``: the reservoir, gate 1 and the
live loop take it like any agent that ``twinloop train`` writes.

Why not skrl or TorchRL: docs/gpu-training.md.
"""

from __future__ import annotations

import csv
import itertools
import json
import logging
import math
import time
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import gymnasium
import numpy as np
import torch
from torch import Tensor, nn

from control.training import (
    ACTIVATIONS,
    METADATA_FILE,
    MODEL_FILE,
    PROGRESS_FILE,
    TrainConfig,
    TrainedAgent,
    _metadata,
)
from twin.ensemble import TwinEnsemble
from twin.spaces import ACTION_NAMES, action_space
from twin.torch_vec_env import TorchTwinVectorEnv
from twin.vec_env import Randomisation

logger = logging.getLogger(__name__)

HALF_LOG_2PI = 0.5 * math.log(2.0 * math.pi)

NO_GPU_MESSAGE = (
    "--device {requested}: no CUDA GPU is available here (torch.cuda.is_available() is "
    "False); training on the CPU instead"
)


def gpu_fallback(requested: str) -> str | None:
    """Why ``requested`` cannot be used here (a CUDA device without a GPU), or None."""
    if requested == "auto" or torch.device(requested).type != "cuda":
        return None
    return None if torch.cuda.is_available() else NO_GPU_MESSAGE.format(requested=requested)


def resolve_device(requested: str) -> torch.device:
    """``requested`` as a torch device; a CUDA device where there is no GPU falls back to the
    CPU with one warning (:data:`NO_GPU_MESSAGE`)."""
    if requested == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if (why := gpu_fallback(requested)) is not None:
        logger.warning(why)
        return torch.device("cpu")
    return torch.device(requested)


@dataclass(frozen=True)
class PpoSettings:
    """SB3 PPO's hyper-parameters that this trainer uses (same names and defaults)."""

    learning_rate: float = 3e-4
    n_steps: int = 2048
    batch_size: int = 64
    n_epochs: int = 10
    gamma: float = 0.99
    gae_lambda: float = 0.95
    clip_range: float = 0.2
    ent_coef: float = 0.0
    vf_coef: float = 0.5
    max_grad_norm: float = 0.5
    pi: tuple[int, ...] = (64, 64)
    vf: tuple[int, ...] = (64, 64)
    activation_fn: str = "tanh"
    log_std_init: float = 0.0
    """Initial log standard deviation of the Gaussian actions (SB3's ``log_std_init``)."""

    @classmethod
    def from_config(cls, config: TrainConfig) -> PpoSettings:
        """The settings of a PPO config (refuses SB3 options this trainer does not run)."""
        hp = dict(config.hyperparameters)
        policy = hp.pop("policy", "MlpPolicy")
        if policy != "MlpPolicy":
            raise ValueError(f"the torch PPO trains an MlpPolicy, not {policy!r}")
        kwargs = hp.pop("policy_kwargs", None) or {}
        arch = kwargs.get("net_arch", {"pi": [64, 64], "vf": [64, 64]})
        pi, vf = (arch["pi"], arch["vf"]) if isinstance(arch, dict) else (arch, arch)
        policy_fields = ("net_arch", "activation_fn", "log_std_init")
        if set(kwargs) - set(policy_fields):
            raise ValueError(f"policy_kwargs {sorted(kwargs)}: only {', '.join(policy_fields)}")
        known = {f for f in cls.__dataclass_fields__ if f not in ("pi", "vf", *policy_fields)}
        if unknown := sorted(set(hp) - known):
            raise ValueError(f"the torch PPO does not take {', '.join(unknown)}")
        integers = ("n_steps", "batch_size", "n_epochs")
        values: dict[str, Any] = {k: int(v) if k in integers else float(v) for k, v in hp.items()}
        return cls(
            **values,
            pi=tuple(int(x) for x in pi),
            vf=tuple(int(x) for x in vf),
            activation_fn=str(kwargs.get("activation_fn", "tanh")),
            log_std_init=float(kwargs.get("log_std_init", 0.0)),
        )

    def sb3_kwargs(self) -> dict[str, Any]:
        """SB3 ``PPO`` keyword arguments of the same model."""
        return {
            "learning_rate": self.learning_rate,
            "n_steps": self.n_steps,
            "batch_size": self.batch_size,
            "n_epochs": self.n_epochs,
            "gamma": self.gamma,
            "gae_lambda": self.gae_lambda,
            "clip_range": self.clip_range,
            "ent_coef": self.ent_coef,
            "vf_coef": self.vf_coef,
            "max_grad_norm": self.max_grad_norm,
            "policy_kwargs": {
                "net_arch": {"pi": list(self.pi), "vf": list(self.vf)},
                "activation_fn": ACTIVATIONS[self.activation_fn],
                "log_std_init": self.log_std_init,
            },
        }


def _mlp(sizes: Sequence[int], activation: type[nn.Module]) -> nn.Sequential:
    layers: list[nn.Module] = []
    for a, b in itertools.pairwise(sizes):
        layers += [nn.Linear(a, b), activation()]
    return nn.Sequential(*layers)


class _Extractor(nn.Module):
    def __init__(self, obs: int, s: PpoSettings, activation: type[nn.Module]) -> None:
        super().__init__()
        self.policy_net = _mlp([obs, *s.pi], activation)
        self.value_net = _mlp([obs, *s.vf], activation)


class ActorCritic(nn.Module):
    """SB3 ``MlpPolicy``'s modules and parameter names (``mlp_extractor.policy_net``,
    ``mlp_extractor.value_net``, ``action_net``, ``value_net``, ``log_std``) and its
    orthogonal initialisation."""

    def __init__(self, obs_size: int, settings: PpoSettings) -> None:
        super().__init__()
        activation = ACTIVATIONS[settings.activation_fn]
        self.mlp_extractor = _Extractor(obs_size, settings, activation)
        last_pi = settings.pi[-1] if settings.pi else obs_size
        last_vf = settings.vf[-1] if settings.vf else obs_size
        self.action_net = nn.Linear(last_pi, len(ACTION_NAMES))
        self.value_net = nn.Linear(last_vf, 1)
        self.log_std = nn.Parameter(torch.full((len(ACTION_NAMES),), settings.log_std_init))
        for module, gain in (
            (self.mlp_extractor, math.sqrt(2.0)),
            (self.action_net, 0.01),
            (self.value_net, 1.0),
        ):
            for layer in module.modules():
                if isinstance(layer, nn.Linear):
                    nn.init.orthogonal_(layer.weight, gain=gain)
                    nn.init.zeros_(layer.bias)

    def forward(self, obs: Tensor) -> tuple[Tensor, Tensor]:
        """Action means (N, 5) and values (N,)."""
        mean = self.action_net(self.mlp_extractor.policy_net(obs))
        value = self.value_net(self.mlp_extractor.value_net(obs)).squeeze(-1)
        return mean, value

    def value(self, obs: Tensor) -> Tensor:
        out: Tensor = self.value_net(self.mlp_extractor.value_net(obs)).squeeze(-1)
        return out

    def sample(self, obs: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """A Gaussian action (N, 5), its log-probability (N,) and the value (N,)."""
        mean, value = self(obs)
        action = mean + self.log_std.exp() * torch.randn_like(mean)
        return action, self.log_prob(mean, action), value

    def log_prob(self, mean: Tensor, action: Tensor) -> Tensor:
        """Log-density (N,) of ``action`` under the diagonal Gaussian at ``mean``."""
        z = (action - mean) * torch.exp(-self.log_std)
        return (-0.5 * z * z - self.log_std - HALF_LOG_2PI).sum(dim=-1)

    def entropy(self) -> Tensor:
        """Entropy of the diagonal Gaussian (the same for every observation)."""
        return (0.5 + HALF_LOG_2PI + self.log_std).sum()


class ScenarioMix:
    """Several device envs (one scenario each) stepped as one: environments
    ``[bounds[k], bounds[k + 1])`` are part ``k``."""

    def __init__(self, parts: Sequence[TorchTwinVectorEnv]) -> None:
        self.parts = list(parts)
        self.bounds = np.cumsum([0, *(p.num_envs for p in parts)]).tolist()
        self.num_envs = int(self.bounds[-1])
        self.obs_size = parts[0].sim.spec.size

    def reset(self, seed: int) -> Tensor:
        return torch.cat([p.reset(seed=seed + k)[0] for k, p in enumerate(self.parts)])

    def step(self, actions: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor | None]:
        """Observations, rewards, truncations and the final observations (None where no
        episode ended; else (N, obs), meaningful where truncated)."""
        results = [
            p.step(actions[lo:hi])
            for p, lo, hi in zip(self.parts, self.bounds[:-1], self.bounds[1:], strict=True)
        ]
        obs = torch.cat([r[0] for r in results])
        reward = torch.cat([r[1] for r in results])
        truncated = torch.cat([r[3] for r in results])
        final = None
        if any("final_obs" in r[4] for r in results):
            final = torch.cat([r[4].get("final_obs", r[0]) for r in results])
        return obs, reward, truncated, final


def make_device_env(config: TrainConfig, device: torch.device) -> ScenarioMix:
    """The training environments of ``config`` on ``device`` (as the SB3 path builds them)."""
    twin = TwinEnsemble.load(Path(config.twin)) if config.twin is not None else None
    randomisation = Randomisation() if config.randomisation else None
    sizes = [len(a) for a in np.array_split(np.arange(config.n_envs), len(config.scenarios))]
    return ScenarioMix(
        [
            TorchTwinVectorEnv(
                n,
                scenario=scenario,
                twin=twin,
                episode_hours=config.episode_hours,
                randomisation=randomisation,
                device=device,
                seed=config.seed + k,
                reward=config.reward_function(),
                pessimism=config.pessimism_function(),
                member_per_episode=config.member_per_episode,
            )
            for k, (scenario, n) in enumerate(zip(config.scenarios, sizes, strict=True))
        ]
    )


@dataclass
class Rollout:
    obs: Tensor
    actions: Tensor
    log_prob: Tensor
    values: Tensor
    advantages: Tensor
    returns: Tensor


class TorchPpo:
    """PPO over a :class:`ScenarioMix` on its device (see the module docstring)."""

    def __init__(
        self, env: ScenarioMix, settings: PpoSettings, device: torch.device, seed: int
    ) -> None:
        torch.manual_seed(seed)
        self.env = env
        self.s = settings
        self.device = device
        self.model = ActorCritic(env.obs_size, settings).to(device)
        self.optimiser = torch.optim.Adam(
            self.model.parameters(), lr=settings.learning_rate, eps=1e-5
        )
        self.obs = env.reset(seed)
        self.timesteps = 0
        self.updates = 0
        n = env.num_envs
        self._episode_return = torch.zeros(n, device=device)
        self.finished_returns: list[float] = []
        """Mean return of the episodes that ended in each rollout (one value per rollout
        with endings)."""

    @torch.no_grad()
    def collect(self) -> Rollout:
        """``n_steps`` steps of every environment and their GAE advantages."""
        s, n, dev = self.s, self.env.num_envs, self.device
        size = self.env.obs_size
        obs = torch.empty(s.n_steps, n, size, device=dev)
        actions = torch.empty(s.n_steps, n, len(ACTION_NAMES), device=dev)
        log_prob = torch.empty(s.n_steps, n, device=dev)
        values = torch.empty(s.n_steps, n, device=dev)
        rewards = torch.empty(s.n_steps, n, device=dev)
        dones = torch.empty(s.n_steps, n, device=dev)
        ended_sum = torch.zeros((), device=dev)
        ended_count = torch.zeros((), device=dev)
        for t in range(s.n_steps):
            action, lp, value = self.model.sample(self.obs)
            obs[t], actions[t], values[t], log_prob[t] = self.obs, action, value, lp
            next_obs, reward, truncated, final = self.env.step(action.clamp(-1.0, 1.0))
            reward = reward.to(torch.float32)
            self._episode_return += reward
            if final is not None:
                # Time-limit truncation: bootstrap from the episode's last observation.
                bootstrap = self.model.value(final)
                reward = torch.where(truncated, reward + s.gamma * bootstrap, reward)
                ended_sum += torch.where(truncated, self._episode_return, 0.0).sum()
                ended_count += truncated.sum()
                self._episode_return = torch.where(truncated, 0.0, self._episode_return)
            rewards[t], dones[t] = reward, truncated.to(torch.float32)
            self.obs = next_obs
        if int(ended_count) > 0:
            self.finished_returns.append(float(ended_sum / ended_count))
        last_value = self.model.value(self.obs)
        advantages = torch.empty_like(rewards)
        gae = torch.zeros(n, device=dev)
        for t in reversed(range(s.n_steps)):
            next_value = last_value if t == s.n_steps - 1 else values[t + 1]
            alive = 1.0 - dones[t]
            delta = rewards[t] + s.gamma * next_value * alive - values[t]
            gae = delta + s.gamma * s.gae_lambda * alive * gae
            advantages[t] = gae
        self.timesteps += s.n_steps * n
        return Rollout(obs, actions, log_prob, values, advantages, advantages + values)

    def update(self, rollout: Rollout) -> dict[str, float]:
        """``n_epochs`` passes of minibatch PPO over the rollout."""
        s = self.s
        flat = [
            x.reshape(-1, *x.shape[2:])
            for x in (
                rollout.obs,
                rollout.actions,
                rollout.log_prob,
                rollout.advantages,
                rollout.returns,
            )
        ]
        total = flat[0].shape[0]
        batch = min(s.batch_size, total)
        stats = torch.zeros(3, device=self.device)
        for _ in range(s.n_epochs):
            order = torch.randperm(total, device=self.device)
            for lo in range(0, total, batch):
                idx = order[lo : lo + batch]
                obs, act, old_lp, adv, ret = (x[idx] for x in flat)
                if idx.numel() > 1:
                    adv = (adv - adv.mean()) / (adv.std() + 1e-8)
                mean, value = self.model(obs)
                lp = self.model.log_prob(mean, act)
                ratio = torch.exp(lp - old_lp)
                policy_loss = -torch.min(
                    adv * ratio, adv * torch.clamp(ratio, 1 - s.clip_range, 1 + s.clip_range)
                ).mean()
                value_loss = torch.nn.functional.mse_loss(ret, value)
                entropy = self.model.entropy()
                loss = policy_loss + s.vf_coef * value_loss - s.ent_coef * entropy
                self.optimiser.zero_grad(set_to_none=True)
                loss.backward()  # type: ignore[no-untyped-call]
                nn.utils.clip_grad_norm_(self.model.parameters(), s.max_grad_norm)
                self.optimiser.step()
                stats += torch.stack([policy_loss.detach(), value_loss.detach(), entropy.detach()])
        self.updates += 1
        steps = s.n_epochs * math.ceil(total / batch)
        p, v, e = (stats / steps).tolist()
        return {"policy_loss": p, "value_loss": v, "entropy": e}

    def learn(self, total_timesteps: int, on_update: Any = None) -> None:
        """Rollouts and updates until ``total_timesteps`` environment steps are done."""
        while self.timesteps < total_timesteps:
            stats = self.update(self.collect())
            if on_update is not None:
                on_update(self, stats)


class _SpacesOnly(gymnasium.Env[Any, Any]):
    """The twin's spaces without an environment: enough to build the SB3 model to save."""

    def __init__(self, obs_space: gymnasium.spaces.Space[Any]) -> None:
        self.observation_space = obs_space
        self.action_space = action_space()


def to_sb3(model: ActorCritic, settings: PpoSettings, env: TorchTwinVectorEnv, seed: int) -> Any:
    """An SB3 ``PPO`` with ``model``'s weights (on the CPU)."""
    from stable_baselines3 import PPO

    with warnings.catch_warnings():
        # The saved model records the run's batch size; its one-env buffer is never filled.
        warnings.filterwarnings("ignore", "You have specified a mini-batch size", UserWarning)
        sb3 = PPO(
            "MlpPolicy",
            _SpacesOnly(env.single_observation_space),
            seed=seed,
            device="cpu",
            verbose=0,
            **settings.sb3_kwargs(),
        )
    state = {k: v.detach().cpu() for k, v in model.state_dict().items()}
    mine = set(state)
    theirs = {k for k in sb3.policy.state_dict() if "features_extractor" not in k}
    if mine != theirs:
        raise RuntimeError(f"the torch PPO's parameters {sorted(mine ^ theirs)} differ from SB3's")
    sb3.policy.load_state_dict(state, strict=False)
    return sb3


def train_torch_ppo(
    config: TrainConfig, out_dir: Path, *, device: torch.device, progress: bool = True
) -> TrainedAgent:
    """Train the PPO of ``config`` on ``device`` and write ``model.zip`` (SB3),
    ``training.json`` and ``progress.csv`` into ``out_dir``."""
    if config.algo != "ppo":
        raise ValueError(f"the torch trainer trains PPO, not {config.algo}")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    settings = PpoSettings.from_config(config)
    env = make_device_env(config, device)
    logger.info(
        "training ppo (torch) on %s: %d steps, %d envs, scenarios %s",
        device,
        config.total_timesteps,
        config.n_envs,
        ", ".join(config.scenarios),
    )
    started = time.perf_counter()
    ppo = TorchPpo(env, settings, device, config.seed)
    progress_path = out_dir / PROGRESS_FILE
    with progress_path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(
            [
                "time/total_timesteps",
                "time/wall_s",
                "rollout/ep_rew_mean",
                "train/policy_loss",
                "train/value_loss",
                "train/entropy",
            ]
        )

        def on_update(p: TorchPpo, stats: dict[str, float]) -> None:
            last = p.finished_returns[-1] if p.finished_returns else ""
            wall = time.perf_counter() - started
            writer.writerow([p.timesteps, f"{wall:.2f}", last, *stats.values()])
            handle.flush()
            if progress:
                logger.info("ppo %d steps, %.1f s, return %s", p.timesteps, wall, last)

        ppo.learn(config.total_timesteps, on_update)
    wall_s = time.perf_counter() - started
    sb3 = to_sb3(ppo.model, settings, env.parts[0], config.seed)
    model_path = out_dir / MODEL_FILE
    sb3.save(model_path)
    final = float(np.mean(ppo.finished_returns[-1:])) if ppo.finished_returns else None
    metadata = _metadata(config, ppo.timesteps, wall_s, final, ["csv"])
    metadata["trainer"] = {"name": "torch-ppo", "device": str(device)}
    metadata_path = out_dir / METADATA_FILE
    metadata_path.write_text(json.dumps(metadata, indent=2) + "\n", encoding="utf-8")
    logger.info("trained ppo (torch, %s) in %.1f s; model in %s", device, wall_s, model_path)
    return TrainedAgent(
        config=config,
        out_dir=out_dir,
        model_path=model_path,
        metadata_path=metadata_path,
        progress_csv=progress_path,
        tensorboard=False,
        timesteps=ppo.timesteps,
        wall_s=wall_s,
        final_mean_return=final,
    )
