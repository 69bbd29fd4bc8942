"""Extrapolation: physics-informed twin vs a pure neural network of about the same size.

Both are fitted with the same budget on mild January data only (twin-train-mild, explored
with seed 0), then measured on that training data, on held-out summer days (twin-test-summer,
seed 1) and on an August heat wave (twin-test-heat-wave, seed 2). Writes ``results.json``
and ``heat_wave_error_by_horizon.png`` to ``--out``; recordings go to ``--out/recordings``
and are reused when already there.

    python benchmarks/twin_extrapolation.py [--members 1] [--iterations 200] [--train-days 10]

``--neural-iterations`` / ``--lr-network`` give the network a longer or different schedule
than the physics twin (the default is the same FitConfig budget for both).
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from dataclasses import asdict, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import torch

from physics.plant.scenario import load_scenario
from twin.accuracy import HEADLINE_ACCURACY, Accuracy, measure_accuracy
from twin.dataset import PeriodData, design_of, periods_from_recordings
from twin.design import TwinDesign
from twin.ensemble import TwinEnsemble
from twin.model import ModelKind, parameter_count
from twin.recording import Recording, load_recordings, record_run, recording_path
from twin.training import FitConfig, fit_twin

DATASETS: dict[str, tuple[str, int]] = {
    "mild_train": ("twin-train-mild", 0),
    "summer": ("twin-test-summer", 1),
    "heat_wave": ("twin-test-heat-wave", 2),
}
"""Data set → (shipped scenario, exploration seed)."""

SHOWN = HEADLINE_ACCURACY


def recordings(name: str, scenario_name: str, seed: int, root: Path) -> list[Recording]:
    """The explored recording of ``scenario_name`` in ``root/name``, recorded if missing."""
    scenario = load_scenario(scenario_name)
    out_dir = root / name
    path = recording_path(scenario, policy="explore", seed=seed, out_dir=out_dir, overwrite=True)
    if path.is_file() and path.with_suffix(".json").is_file():
        print(f"reusing {path}")
    else:
        started = time.perf_counter()
        record_run(scenario, policy="explore", seed=seed, out_dir=out_dir, overwrite=True)
        print(f"recorded {path} in {time.perf_counter() - started:.0f} s")
    return load_recordings(out_dir)


def first_days(data: PeriodData, days: float) -> PeriodData:
    """The periods of the first ``days`` of ``data``."""
    elapsed_h = data.time_h - data.time_h[0]
    return data.index(torch.nonzero(elapsed_h < 24.0 * days).flatten())


def fit(
    kind: ModelKind, design: TwinDesign, data: PeriodData, cfg: FitConfig
) -> tuple[TwinEnsemble, dict[str, Any]]:
    ensemble = fit_twin(design, data, cfg, kind=kind, progress=True)
    info = {
        "parameters_per_member": parameter_count(ensemble.first),
        "hidden_width": ensemble.first.residual_hidden,
        "fit_wall_s": ensemble.summary["fit_wall_s"],
        "final_loss": ensemble.summary["final_loss"],
    }
    return ensemble, info


def plot(results: dict[str, Any], path: Path) -> None:
    fig, ax = plt.subplots(figsize=(7.0, 4.2))
    styles = {"physics": "tab:blue", "neural": "tab:red"}
    for kind, colour in styles.items():
        for name, line, label in (
            ("heat_wave", "-", "heat wave (test)"),
            ("mild_train", ":", "mild January (training)"),
        ):
            errors = results["models"][kind]["accuracy"][name]["error_by_horizon_c"]
            minutes = [5 * (h + 1) for h in range(len(errors))]
            ax.plot(minutes, errors, line, color=colour, marker="o", ms=3, label=f"{kind}, {label}")
    ax.set_xlabel("open-loop horizon (min)")
    ax.set_ylabel("median |rack inlet error| (K)")
    ax.set_title("Trained on mild weather only: error by horizon")
    ax.set_ylim(bottom=0.0)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--iterations", type=int, default=500)
    parser.add_argument("--members", type=int, default=3)
    parser.add_argument("--train-days", type=float, default=10.0)
    parser.add_argument("--out", type=Path, default=Path("out/bench/twin_extrapolation"))
    parser.add_argument(
        "--neural-iterations",
        type=int,
        default=None,
        help="iterations of the neural twin (default: --iterations, the same budget)",
    )
    parser.add_argument(
        "--lr-network",
        type=float,
        default=FitConfig.lr_network,
        help="learning rate of the neural twin (default: FitConfig's)",
    )
    parser.add_argument("--threads", type=int, default=2, help="torch CPU threads")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    args.out.mkdir(parents=True, exist_ok=True)

    recs = {
        name: recordings(name, scenario, seed, args.out / "recordings")
        for name, (scenario, seed) in DATASETS.items()
    }
    design = design_of(recs["mild_train"])
    data = {name: periods_from_recordings(r, design) for name, r in recs.items()}
    data["mild_train"] = first_days(data["mild_train"], args.train_days)

    cfg = FitConfig(ensemble_size=args.members, iterations=args.iterations, seed=args.seed)
    neural_cfg = replace(
        cfg, iterations=args.neural_iterations or args.iterations, lr_network=args.lr_network
    )
    results: dict[str, Any] = {
        "measured": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": f"{platform.processor() or platform.machine()}, torch {torch.__version__}, "
        f"{args.threads} thread(s)",
        "site": design.site_name,
        "datasets": {
            name: {"scenario": DATASETS[name][0], "seed": DATASETS[name][1], "periods": len(d)}
            for name, d in data.items()
        },
        "train_days": args.train_days,
        "config": {"physics": asdict(cfg), "neural": asdict(neural_cfg)},
        "models": {},
    }
    runs: tuple[tuple[ModelKind, FitConfig], ...] = (("physics", cfg), ("neural", neural_cfg))
    for kind, kind_cfg in runs:
        ensemble, info = fit(kind, design, data["mild_train"], kind_cfg)
        accuracy: dict[str, Accuracy] = {
            name: measure_accuracy(ensemble, d) for name, d in data.items()
        }
        info["accuracy"] = {name: a.to_dict() for name, a in accuracy.items()}
        results["models"][kind] = info

    (args.out / "results.json").write_text(json.dumps(results, indent=2) + "\n")
    plot(results, args.out / "heat_wave_error_by_horizon.png")

    models = results["models"]
    print(
        f"\nparameters per member: physics {models['physics']['parameters_per_member']}, "
        f"neural {models['neural']['parameters_per_member']} "
        f"(hidden {models['neural']['hidden_width']}); fit wall: "
        f"physics {models['physics']['fit_wall_s']} s, neural {models['neural']['fit_wall_s']} s"
    )
    for name in DATASETS:
        print(f"\n{name} ({results['datasets'][name]['periods']} periods)")
        print(f"  {'metric':34s} {'physics':>10s} {'neural':>10s}")
        for metric in SHOWN:
            p = models["physics"]["accuracy"][name][metric]
            n = models["neural"]["accuracy"][name][metric]
            print(f"  {metric:34s} {p:10.3f} {n:10.3f}")
    print(f"\nwrote {args.out / 'results.json'} and {args.out / 'heat_wave_error_by_horizon.png'}")


if __name__ == "__main__":
    main()
