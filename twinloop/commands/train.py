"""``twinloop train`` (DRL agents trained in the twin, here or on Ray; optionally chosen by
their pessimistic twin score and registered) and ``twinloop preevaluate`` (loop 1: a
candidate against the incumbent in the twin; gate 1)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from physics.plant.scenario import load_scenario
from twinloop.commands.arguments import CommandError, Subparsers, add_ray_flags, check_ray_flags
from twinloop.commands.reservoir import ROOT_HELP, actor, reservoir_root

if TYPE_CHECKING:
    from control.scaleout import Candidate
    from control.training import TrainedAgent

_OVERRIDES = (
    ("total_timesteps", "timesteps"),
    ("n_envs", "n_envs"),
    ("episode_hours", "episode_hours"),
    ("twin", "twin"),
    ("seed", "seed"),
    ("device", "device"),
    ("checkpoint_every", "checkpoint_every"),
)
"""Training-config keys and the flags that override them."""


def _candidates(args: argparse.Namespace) -> list[Candidate]:
    """The batch the flags ask for, checked before anything trains: a folder that holds a
    trained agent is refused unless ``--overwrite``."""
    from control.scaleout import candidates
    from control.training import TrainConfig

    check_ray_flags(args)
    if args.parallel < 1:
        raise CommandError(f"--parallel must be at least 1 (got {args.parallel})")
    overrides: dict[str, object] = {
        key: getattr(args, flag) for key, flag in _OVERRIDES if getattr(args, flag) is not None
    }
    if args.device is not None:
        from control.torch_ppo import gpu_fallback

        if (why := gpu_fallback(args.device)) is not None:
            print(f"twinloop: {why}", file=sys.stderr, flush=True)
            overrides["device"] = "cpu"
    if args.scenario:
        overrides["scenarios"] = list(args.scenario)
    if args.no_randomisation:
        overrides["randomisation"] = False
    if args.no_shield:
        overrides["shield"] = False
    configs = [
        TrainConfig.from_yaml(
            algo,
            overrides=overrides,
            path=Path(args.hyperparams) if args.hyperparams else None,
        )
        for algo in dict.fromkeys(args.algo)
    ]
    runs = candidates(configs, args.parallel, Path(args.out))
    for run in runs:
        if (run.out_dir / "model.zip").exists() and not args.overwrite:
            raise CommandError(f"--out {run.out_dir}: holds a trained agent; use --overwrite")
    return runs


def _register(run: Candidate, artifact: Path, name: str, args: argparse.Namespace) -> bool:
    """Register ``artifact`` as ``name`` in the reservoir (here, on this machine: its SQLite
    file is local); False, the reason printed, when the reservoir refuses."""
    from control.reservoir import Reservoir, ReservoirError

    try:
        with Reservoir(reservoir_root(args)) as reservoir:
            record = reservoir.register(
                name,
                "drl",
                artifact,
                hyperparameters=run.config.to_dict(),
                training_scenarios=run.config.scenarios,
                description=f"SB3 {run.config.algo.upper()} trained in the twin",
                actor=actor(),
            )
    except ReservoirError as exc:  # the other candidates still get registered
        print(f"twinloop: error: {exc}", file=sys.stderr)
        return False
    print(
        f"registered {record.ref} ({record.state}, sha256 {record.artifact_hash[:12]})",
        flush=True,
    )
    return True


def _cmd_train(args: argparse.Namespace) -> int:
    """Exit 0; 2 on bad input (nothing trained) or when a finished candidate could not be
    selected or registered; 1 when a run failed (the finished ones are saved)."""
    from control.scaleout import RayUnavailableError, ScaleOutError, train_many

    runs = _candidates(args)
    failed: list[str] = []

    def finished(i: int, trained: TrainedAgent) -> None:
        run = runs[i]
        final = trained.final_mean_return
        label = run.label if len(runs) > 1 else run.config.algo
        print(
            f"{label}: {trained.timesteps:,} steps in {trained.wall_s:.0f} s; mean episode "
            f"return at the end {'n/a' if final is None else f'{final:.2f}'}"
        )
        print(run.out_dir, flush=True)
        artifact: Path | None = run.out_dir
        if args.select_suite:
            artifact = _select(run, args)
        if artifact is None:
            failed.append(run.label)
            return
        if args.register:
            name = args.register if len(runs) == 1 else f"{args.register}-{run.label}"
            if not _register(run, artifact, name, args):
                failed.append(name)

    try:
        train_many(
            runs,
            ray_address=args.ray,
            workers=args.workers,
            progress=not args.quiet,
            on_result=finished,
        )
    except RayUnavailableError:
        raise  # Ray's address: nothing ran (exit 2)
    except ScaleOutError as exc:  # a run failed; the finished ones are saved (registered)
        print(f"twinloop: error: {exc}", file=sys.stderr)
        return 1
    return 2 if failed else 0


def _select(run: Candidate, args: argparse.Namespace) -> Path | None:
    """Choose the run's snapshot by its pessimistic twin score on ``--select-suite``; the
    folder to register, or None (printed why) when no snapshot keeps gate 1's rules."""
    from control.selection import select_snapshot
    from twin.design import TwinDesign
    from twin.vec_env import load_twin

    site = load_scenario(run.config.scenarios[0]).site
    twin = load_twin(run.config.twin, TwinDesign.from_site(site))
    selection = select_snapshot(run.out_dir, twin, suite=args.select_suite, progress=not args.quiet)
    for row in selection.rows:
        verdict = (
            f"{row['pessimistic_savings_percent']:.2f} % in the least favourable member"
            if not row["broken"]
            else "breaks: " + row["broken"][0]
        )
        print(f"  {Path(row['snapshot']).name}: {verdict}")
    if selection.chosen is None:
        print(
            f"twinloop: error: {run.out_dir}: no snapshot keeps gate 1's rules on "
            f"{args.select_suite}; nothing to register",
            file=sys.stderr,
        )
        return None
    print(f"selected: {selection.chosen} (see {run.out_dir / 'selection.json'})", flush=True)
    return selection.chosen


def _cmd_preevaluate(args: argparse.Namespace) -> int:
    """Exit 0 when the candidate passes gate 1, 1 when it does not."""
    from control.gate import GateConfig
    from control.preevaluation import pre_evaluate
    from control.reservoir import Reservoir
    from twin.ensemble import TwinEnsemble

    gate = GateConfig.from_yaml(Path(args.gate)) if args.gate else GateConfig()
    twin = TwinEnsemble.load(Path(args.twin)) if args.twin else None
    with Reservoir(reservoir_root(args), create=False) as reservoir:
        report = pre_evaluate(
            reservoir,
            args.candidate,
            args.incumbent,
            twin=twin,
            out_dir=Path(args.out),
            suite=args.suite,
            gate=gate,
            progress=not args.quiet,
        )
    print(report.markdown())
    print(Path(args.out) / "gate1.md")
    return 0 if report.passed else 1


def add_commands(sub: Subparsers) -> None:
    """``train`` and ``preevaluate``."""
    tr = sub.add_parser(
        "train", help="train DRL agents (SB3) in the twin, here or on Ray; optionally register"
    )
    tr.add_argument(
        "--algo",
        required=True,
        action="append",
        choices=("ppo", "sac", "td3"),
        help="algorithm (repeat for one candidate batch of several)",
    )
    tr.add_argument(
        "--out",
        required=True,
        help="folder for model.zip, progress.csv, logs (several candidates: ALGO-seedN/ each)",
    )
    tr.add_argument(
        "--parallel",
        type=int,
        default=1,
        metavar="N",
        help="N candidates per algorithm, seeds SEED..SEED+N-1 (default: 1)",
    )
    tr.add_argument("--timesteps", type=int, default=None, help="override total_timesteps")
    tr.add_argument("--n-envs", type=int, default=None, help="override n_envs")
    tr.add_argument("--episode-hours", type=float, default=None, help="override episode_hours")
    tr.add_argument("--scenario", action="append", help="training scenario (repeat)")
    tr.add_argument("--twin", default=None, help="saved twin folder (default: the drawings)")
    tr.add_argument("--seed", type=int, default=None)
    tr.add_argument(
        "--device",
        default=None,
        help="cpu (default) or cuda: PPO then trains in torch on the GPU over the "
        "device-resident twin; without a GPU it falls back to the CPU with a warning",
    )
    tr.add_argument(
        "--checkpoint-every",
        type=int,
        default=None,
        metavar="STEPS",
        help="save a loadable snapshot every STEPS environment steps into checkpoints/ "
        "(with the wall-clock so far, in checkpoints.csv)",
    )
    tr.add_argument(
        "--select-suite",
        default=None,
        metavar="SUITE",
        help="choose the snapshot to keep (and register) by its pessimistic score in the twin "
        "on this suite (e.g. 'selection'; not gate 1's suite); copied into OUT/selected",
    )
    tr.add_argument("--hyperparams", default=None, help="YAML (default: control/hyperparams.yaml)")
    tr.add_argument("--no-randomisation", action="store_true", help="no domain randomisation")
    tr.add_argument(
        "--no-shield",
        action="store_true",
        help="train without the site's shield (default: behind it, as the agent will run)",
    )
    tr.add_argument(
        "--register",
        default=None,
        metavar="NAME",
        help="register in the reservoir (several candidates: NAME-ALGO-seedN each)",
    )
    tr.add_argument("--root", default=None, help=ROOT_HELP)
    tr.add_argument("--overwrite", action="store_true", help="replace an agent in --out")
    tr.add_argument("--quiet", action="store_true", help="no progress bar")
    add_ray_flags(tr, "candidate")
    tr.set_defaults(func=_cmd_train)

    pre = sub.add_parser(
        "preevaluate",
        help="loop 1: run a candidate and the incumbent through the suite in the twin; gate 1",
    )
    pre.add_argument("candidate", help="reservoir REF of the candidate (NAME or NAME@VERSION)")
    pre.add_argument("--incumbent", required=True, help="reservoir REF to beat")
    pre.add_argument("--suite", default="pre-evaluation", help="suite (default: pre-evaluation)")
    pre.add_argument("--twin", default=None, help="saved twin folder (default: the drawings)")
    pre.add_argument("--gate", default=None, help="YAML of the site's gate-1 rules")
    pre.add_argument("--root", default=None, help=ROOT_HELP)
    pre.add_argument("--out", required=True, help="folder for the runs and gate1.json/.md")
    pre.add_argument("--quiet", action="store_true", help="no progress bars")
    pre.set_defaults(func=_cmd_preevaluate)
