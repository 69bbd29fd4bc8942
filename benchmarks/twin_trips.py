"""The twin on summer weeks with unit trips, fitted on the site's own January data only.

The physics twin is fitted as in ``benchmarks/twin_extrapolation.py`` (mild January,
twin-train-mild explored with seed 0, first ``--train-days``), then measured on summer days
and the August heat wave without trips (twin-test-summer, twin-test-heat-wave) and with them
(``benchmarks/scenarios/twin-test-*-trips.yaml``: the same days with a chiller trip, a CRAH
fan trip and a workload surge). Each test set is measured twice with the same fitted twin:
with the recorded unit status as input, and ignoring it (every unit taken as running, which
is the twin before it took unit status). Besides the whole-set accuracy it reports the 1-h
p95 rack-inlet error over the windows that overlap a trip, and the one-period errors of CRAH
fan power and chilled-water supply during the trips. Writes ``results.json`` to ``--out``;
recordings go to ``--out/recordings`` and are reused when already there.

    python benchmarks/twin_trips.py [--members 1] [--iterations 200] [--train-days 10]
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import torch

from physics.plant.scenario import load_scenario
from twin.accuracy import measure_accuracy
from twin.dataset import METER_NAMES, PeriodData, design_of, periods_from_recordings
from twin.ensemble import TwinEnsemble
from twin.recording import Recording, load_recordings, record_run, recording_path
from twin.rollout import rollout, targets_along
from twin.training import FitConfig, fit_twin

HERE = Path(__file__).resolve().parent
DATASETS: dict[str, tuple[str, int]] = {
    "mild_train": ("twin-train-mild", 0),
    "summer": ("twin-test-summer", 1),
    "heat_wave": ("twin-test-heat-wave", 2),
    "summer_trips": (str(HERE / "scenarios" / "twin-test-summer-trips.yaml"), 1),
    "heat_wave_trips": (str(HERE / "scenarios" / "twin-test-heat-wave-trips.yaml"), 2),
}
"""Data set → (scenario, exploration seed)."""

HORIZON = 12
"""1 h of 5-min periods."""


def recordings(name: str, scenario_name: str, seed: int, root: Path) -> list[Recording]:
    """The explored recording of ``scenario_name`` in ``root/name``, recorded if missing."""
    scenario = load_scenario(scenario_name)
    out_dir = root / name
    path = recording_path(scenario, policy="explore", seed=seed, out_dir=out_dir, overwrite=True)
    if not (path.is_file() and path.with_suffix(".json").is_file()):
        record_run(scenario, policy="explore", seed=seed, out_dir=out_dir, overwrite=True)
    return load_recordings(out_dir)


def first_days(data: PeriodData, days: float) -> PeriodData:
    elapsed_h = data.time_h - data.time_h[0]
    return data.index(torch.nonzero(elapsed_h < 24.0 * days).flatten())


def degraded(data: PeriodData, n_chillers: int) -> dict[str, torch.Tensor]:
    """Per period: whether a CRAH unit, a chiller or tower fan capacity was out."""
    s = data.unit_status
    if s is None:
        none = torch.zeros(len(data), dtype=torch.bool)
        return {"crah": none, "chiller": none, "tower": none}
    return {
        "crah": s.crah_running_frac < 1.0,
        "chiller": s.chillers_available < n_chillers,
        "tower": s.tower_fan_frac < 1.0,
    }


@torch.no_grad()
def trip_errors(
    ensemble: TwinEnsemble, data: PeriodData, out: dict[str, torch.Tensor]
) -> dict[str, float | int | None]:
    """Errors where units were out: 1-h p95 rack-inlet error over the windows that overlap a
    trip; one-period errors of CRAH fan power (CRAH trips) and of the chilled-water supply
    (chiller trips)."""
    any_out = out["crah"] | out["chiller"] | out["tower"]
    starts = data.windows(HORIZON)
    span = starts[:, None] + torch.arange(HORIZON + 1)[None, :]
    hit = starts[any_out[span].any(dim=1)]
    result: dict[str, float | int | None] = {"trip_windows": int(hit.numel())}
    if hit.numel():
        pred = rollout(ensemble, data, hit, HORIZON)
        inlet = targets_along(data, hit, HORIZON)[0]
        err = (pred.rack_inlet_c - inlet).abs().numpy()
        result["inlet_p95_abs_error_1h_trip_windows_c"] = float(np.percentile(err, 95.0))
    one = data.windows(1)
    fan_i = METER_NAMES.index("crah_fan_kw")
    for kind, label in (("crah", "crah_fan_kw"), ("chiller", "chw_supply_c")):
        idx = one[out[kind][one]]
        key = f"{label}_mean_error_1step_during_{kind}_trip"
        if idx.numel() == 0:
            result[key] = None
            continue
        pred = rollout(ensemble, data, idx, 1)
        _, _, hall, meters, _ = targets_along(data, idx, 1)
        if kind == "crah":
            result[key] = float((pred.meters[0, :, fan_i] - meters[0, :, fan_i]).mean())
        else:
            result[key] = float((pred.hall[0, :, 2] - hall[0, :, 2]).mean())
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--iterations", type=int, default=200)
    parser.add_argument("--members", type=int, default=1)
    parser.add_argument("--train-days", type=float, default=10.0)
    parser.add_argument("--out", type=Path, default=Path("out/bench/twin_trips"))
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads")
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
    started = time.perf_counter()
    ensemble = fit_twin(design, data["mild_train"], cfg, kind="physics", progress=False)
    fit_s = time.perf_counter() - started

    results: dict[str, Any] = {
        "measured": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": f"{platform.processor() or platform.machine()}, torch {torch.__version__}, "
        f"{args.threads} thread(s)",
        "config": {"members": args.members, "iterations": args.iterations, "seed": args.seed},
        "train_days": args.train_days,
        "fit_wall_s": round(fit_s, 1),
        "datasets": {},
    }
    for name, d in data.items():
        out = degraded(d, design.n_chillers)
        entry: dict[str, Any] = {
            "scenario": DATASETS[name][0].rsplit("/", 1)[-1],
            "periods": len(d),
            "periods_with_units_out": {k: int(v.sum()) for k, v in out.items()},
        }
        for mode, dd in (("with_status", d), ("ignoring_status", replace(d, unit_status=None))):
            acc = measure_accuracy(ensemble, dd)
            entry[mode] = {
                "inlet_p95_abs_error_1h_c": acc.inlet_p95_abs_error_1h_c,
                "inlet_median_abs_error_1step_c": acc.inlet_median_abs_error_1step_c,
                "cooling_mape_percent": acc.cooling_mape_percent,
                "facility_mape_percent": acc.facility_mape_percent,
                **(trip_errors(ensemble, dd, out) if any(v.any() for v in out.values()) else {}),
            }
        results["datasets"][name] = entry

    (args.out / "results.json").write_text(json.dumps(results, indent=2) + "\n")
    print(f"fit {fit_s:.0f} s ({args.members} member(s), {args.iterations} iterations)")
    for name, entry in results["datasets"].items():
        print(
            f"\n{name} ({entry['periods']} periods, units out: {entry['periods_with_units_out']})"
        )
        for mode in ("with_status", "ignoring_status"):
            shown = ", ".join(
                f"{k} {v:.3f}" if isinstance(v, float) else f"{k} {v}"
                for k, v in entry[mode].items()
            )
            print(f"  {mode}: {shown}")
    print(f"\nwrote {args.out / 'results.json'}")


if __name__ == "__main__":
    main()
