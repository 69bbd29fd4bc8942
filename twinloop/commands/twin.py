"""``twinloop twin …``: record the plant, fit an ensemble twin on the recordings, and build
its competence model, calibrate its intervals, report its accuracy and assimilate data."""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING

from physics.plant.scenario import load_scenario
from twinloop.commands.arguments import CommandError, Subparsers, at_least_one, check_out

if TYPE_CHECKING:
    from twin.dataset import PeriodData
    from twin.design import TwinDesign
    from twin.ensemble import TwinEnsemble


def _cmd_twin_record(args: argparse.Namespace) -> int:
    from twin.recording import RecordingError, record_run, recording_path

    out_dir = Path(args.out)
    # Check every scenario and target first: nothing runs if any of them is bad.
    scenarios = [load_scenario(spec) for spec in args.scenario]
    targets: set[Path] = set()
    for scenario in scenarios:
        path = recording_path(
            scenario,
            policy=args.policy,
            seed=args.seed,
            out_dir=out_dir,
            overwrite=args.overwrite,
        )
        if path in targets:
            raise RecordingError(f"recording {path}: scenario {scenario.name} given twice")
        targets.add(path)
    for scenario in scenarios:
        print(
            f"recording {scenario.name}: {scenario.duration_h / 24:g} days of site "
            f"{scenario.site.name} (seed {scenario.site_seed}) under {args.policy} control "
            f"(seed {args.seed})",
            file=sys.stderr,
        )
        path = record_run(
            scenario,
            policy=args.policy,
            seed=args.seed,
            out_dir=out_dir,
            progress=not args.quiet,
            overwrite=args.overwrite,
        )
        print(path)
    return 0


def _recorded_periods(
    data_dir: Path, *, horizon: int, twin: TwinEnsemble | None = None
) -> tuple[TwinDesign, PeriodData, float]:
    """The recordings in ``data_dir`` as control periods (design, periods, period in s),
    checked against ``twin`` where given and for a window of ``horizon`` periods."""
    from twin.dataset import DatasetError, design_of, periods_from_recordings
    from twin.recording import load_recordings

    recordings = load_recordings(data_dir)
    design = design_of(recordings)
    period_s = recordings[0].meta.control_period_s
    for rec in recordings[1:]:
        if rec.meta.control_period_s != period_s:
            raise DatasetError(
                f"recording {rec.path}: control period {rec.meta.control_period_s:g} s differs "
                f"from {period_s:g} s of {recordings[0].path.name}; keep one per directory"
            )
    if twin is not None and design.site_name != twin.design.site_name:
        raise DatasetError(
            f"recordings {data_dir}: site {design.site_name}, but the twin was fitted on "
            f"site {twin.design.site_name}"
        )
    if twin is not None and period_s != twin.step_s:
        raise DatasetError(
            f"recordings {data_dir}: control period {period_s:g} s, but the twin steps "
            f"{twin.step_s:g} s"
        )
    try:
        data = periods_from_recordings(recordings, design)
    except DatasetError as exc:
        raise DatasetError(f"recordings {data_dir}: {exc}") from None
    if data.windows(horizon).numel() == 0:
        raise DatasetError(
            f"recordings {data_dir}: no run of {horizon + 1} consecutive control periods "
            f"({(horizon + 1) * period_s / 60:g} min) for a horizon of {horizon}; "
            "record longer runs or shorten --horizon"
        )
    return design, data, period_s


def _refuse_saved_twin(out_dir: Path) -> None:
    from twin.ensemble import CARD_FILE, MODEL_FILE

    present = [name for name in (MODEL_FILE, CARD_FILE) if (out_dir / name).exists()]
    if present:
        raise CommandError(
            f"twin {out_dir}: already holds a saved twin ({', '.join(present)}); "
            "replace it with --overwrite"
        )


def _save_twin(ensemble: TwinEnsemble, out_dir: Path, *, overwrite: bool) -> list[Path]:
    """Save beside the target, then move the files in: a failed save loses nothing."""
    if not overwrite:
        _refuse_saved_twin(out_dir)  # again: another run may have saved one while we fitted
    out_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=out_dir, prefix=".twin-") as tmp:
        staged = ensemble.save(Path(tmp))
        paths = [out_dir / p.name for p in staged]
        for src, dst in zip(staged, paths, strict=True):
            os.replace(src, dst)
    return paths


def _cmd_twin_fit(args: argparse.Namespace) -> int:
    from twin.accuracy import measure_accuracy
    from twin.report import accuracy_line
    from twin.training import FitConfig, fit_twin

    data_dir, out_dir = Path(args.data), Path(args.out)
    at_least_one(args, "members", "iterations", "horizon")
    check_out(out_dir, data_dir)
    if not args.overwrite:
        _refuse_saved_twin(out_dir)
    design, data, period_s = _recorded_periods(data_dir, horizon=args.horizon)
    cfg = FitConfig(
        ensemble_size=args.members,
        iterations=args.iterations,
        horizon=args.horizon,
        seed=args.seed,
    )
    print(
        f"fitting {cfg.ensemble_size} member(s) × {cfg.iterations} iterations on "
        f"{len(data)} control periods of site {design.site_name} from {data_dir}",
        file=sys.stderr,
    )
    ensemble = fit_twin(design, data, cfg, step_s=period_s, progress=not args.quiet)
    _save_twin(ensemble, out_dir, overwrite=args.overwrite)
    accuracy = measure_accuracy(ensemble, data, horizon_periods=args.horizon)
    print(out_dir)
    print(f"training data ({accuracy.periods} periods): {accuracy_line(accuracy.to_dict())}")
    return 0


def _cmd_twin_competence(args: argparse.Namespace) -> int:
    from twin.competence import CompetenceModel, period_features
    from twin.ensemble import TwinEnsemble

    twin_dir = Path(args.twin)
    ensemble = TwinEnsemble.load(twin_dir, competence=False)
    _, data, _ = _recorded_periods(Path(args.data), horizon=1, twin=ensemble)
    model = CompetenceModel.fit(data)
    checks = []
    for folder in args.check or []:
        _, held, _ = _recorded_periods(Path(folder), horizon=1, twin=ensemble)
        share = float((model.ratio(period_features(held, model.scale)) > 1.0).mean())
        checks.append((folder, len(held), share))
    path = model.save(twin_dir)
    print(path)
    print(
        f"competence model of {len(model.train)} training periods (k={model.k}; a period is "
        f"outside when farther from them than {model.quantile:.0%} of theirs from each other)"
    )
    for folder, n, share in checks:
        print(f"{folder}: {share * 100:.1f} % of {n} periods outside the twin's data")
    return 0


def _cmd_twin_calibrate(args: argparse.Namespace) -> int:
    from twin.calibration import OUTPUTS, calibrate, coverage, member_predictions, split_halves
    from twin.ensemble import TwinEnsemble

    twin_dir = Path(args.twin)
    ensemble = TwinEnsemble.load(twin_dir)
    _, data, _ = _recorded_periods(Path(args.data), horizon=args.horizon, twin=ensemble)
    first, second = split_halves(data)
    calibration = calibrate(member_predictions(ensemble, first, horizon=args.horizon))
    checked = coverage(member_predictions(ensemble, second, horizon=args.horizon), calibration)
    ensemble.summary["calibration"] = calibration.to_dict() | {
        "data": str(args.data),
        "horizon_periods": args.horizon,
        "coverage": checked,
    }
    _save_twin(ensemble, twin_dir, overwrite=True)
    print(json.dumps(ensemble.summary["calibration"], indent=2))
    for flag in ("interpolating", "extrapolating"):
        row = checked[flag]
        cells = ", ".join(f"{name} {row[name] * 100:.1f} %" for name in OUTPUTS)
        print(f"90 % intervals, {flag} ({row['windows']} windows): {cells}")
    return 0


def _cmd_twin_report(args: argparse.Namespace) -> int:
    from twin.ensemble import TwinEnsemble
    from twin.report import (
        ACCURACY_JSON,
        accuracy_line,
        load_assimilation,
        targets_line,
        write_twin_report,
    )

    twin_dir, data_dir, out_dir = Path(args.twin), Path(args.data), Path(args.out)
    at_least_one(args, "horizon")
    check_out(out_dir, data_dir)
    ensemble = TwinEnsemble.load(twin_dir)
    _, data, _ = _recorded_periods(data_dir, horizon=args.horizon, twin=ensemble)
    # A track made for this report's data first, else the one kept with the twin.
    assimilation = load_assimilation(out_dir) or load_assimilation(twin_dir)
    paths = write_twin_report(
        ensemble, data, out_dir, horizon=args.horizon, assimilation=assimilation
    )
    summary = json.loads((out_dir / ACCURACY_JSON).read_text(encoding="utf-8"))
    print(f"held-out data ({summary['periods']} periods): {accuracy_line(summary)}")
    print(targets_line(summary))
    print("wrote: " + ", ".join(str(p) for p in paths), file=sys.stderr)
    return 0


def _cmd_twin_assimilate(args: argparse.Namespace) -> int:
    from twin.assimilation import (
        EnsembleKalmanAssimilator,
        FilterConfig,
        assimilate,
        write_run,
    )
    from twin.ensemble import TwinEnsemble
    from twin.recording import load_recordings

    twin_dir, data_dir, out_dir = Path(args.twin), Path(args.data), Path(args.out)
    at_least_one(args, "members")
    check_out(out_dir, data_dir)
    ensemble = TwinEnsemble.load(twin_dir)
    _, data, _ = _recorded_periods(data_dir, horizon=1, twin=ensemble)
    fitted = ensemble.summary.get("observation_std")
    config = FilterConfig(members=args.members, seed=args.seed)
    if fitted:
        config = replace(config, observation_std=tuple(fitted))
    assimilator = EnsembleKalmanAssimilator.for_ensemble(ensemble, config)
    run = assimilate(assimilator, data, progress=not args.quiet)
    faults = [
        {"kind": f["kind"], "start_h": rec.meta.start_h + float(f["start_h"])}
        for rec in load_recordings(data_dir)
        for f in rec.meta.faults
    ]
    paths = write_run(run, out_dir, faults)
    summary = json.loads(paths[1].read_text(encoding="utf-8"))
    print(out_dir)
    for fault, rec in zip(summary["faults"], summary["recovery"], strict=True):
        after = rec["recovered_after_h"]
        print(
            f"{fault['kind']} at hour {fault['start_h']:.1f}: inlet error back to "
            f"<= {rec['limit_c']} °C after "
            + ("never" if after is None else f"{after:.2f} h")
            + f"; worst 1-h median in the first 6 h {rec['peak_c']:.2f} °C "
            f"(without assimilation {rec['peak_open_c']:.2f} °C); within the limit "
            f"{rec['within_limit']:.0%} of the time after ({rec['within_limit_open']:.0%} without)"
        )
    flagged = int(run.diverged.sum())
    print(f"divergence flagged in {flagged} of {len(run.diverged)} periods")
    return 0


def add_commands(sub: Subparsers) -> None:
    """``twin record``, ``fit``, ``competence``, ``calibrate``, ``report`` and ``assimilate``."""
    twin = sub.add_parser("twin", help="the digital twin: record, fit, report, assimilate")
    twin_sub = twin.add_subparsers(dest="twin_command", required=True)

    rec = twin_sub.add_parser(
        "record",
        help="run scenarios under exploration; write sensor readings and commands (no truth)",
    )
    rec.add_argument(
        "--scenario",
        action="append",
        required=True,
        help="scenario YAML file or shipped name (repeat for several)",
    )
    rec.add_argument("--out", required=True, help="folder of recordings")
    rec.add_argument(
        "--policy",
        choices=("explore", "site"),
        default="explore",
        help="random setpoint holds (default) or the site's built-in control",
    )
    rec.add_argument("--seed", type=int, default=0, help="exploration seed (default: 0)")
    rec.add_argument(
        "--overwrite", action="store_true", help="replace existing recordings of the same name"
    )
    rec.add_argument("--quiet", action="store_true", help="no progress bar")
    rec.set_defaults(func=_cmd_twin_record)

    fit = twin_sub.add_parser("fit", help="fit an ensemble twin on recordings; save it")
    fit.add_argument("--data", required=True, help="folder of recordings (`twin record`)")
    fit.add_argument("--out", required=True, help="folder to save the twin in")
    fit.add_argument("--members", type=int, default=3, help="ensemble members (default: 3)")
    fit.add_argument(
        "--iterations", type=int, default=500, help="training iterations per member (default: 500)"
    )
    fit.add_argument(
        "--horizon",
        type=int,
        default=12,
        help="open-loop training horizon in control periods (default: 12, 1 h at 5 min)",
    )
    fit.add_argument("--seed", type=int, default=0, help="training seed (default: 0)")
    fit.add_argument("--overwrite", action="store_true", help="replace a twin saved in --out")
    fit.add_argument("--quiet", action="store_true", help="no progress bar")
    fit.set_defaults(func=_cmd_twin_fit)

    comp = twin_sub.add_parser(
        "competence",
        help="(re)build a saved twin's competence model: where it can be believed",
    )
    comp.add_argument("--twin", required=True, help="folder of a saved twin (`twin fit`)")
    comp.add_argument("--data", required=True, help="the recordings the twin was fitted on")
    comp.add_argument(
        "--check",
        action="append",
        metavar="DATA",
        help="recordings to score: the share of their periods outside the twin's data",
    )
    comp.set_defaults(func=_cmd_twin_competence)

    cal = twin_sub.add_parser(
        "calibrate",
        help="turn the ensemble's spread into 90 %% intervals on held-out recordings "
        "(conformal; calibrated on the first half, coverage on the second)",
    )
    cal.add_argument("--twin", required=True, help="folder of a saved twin (`twin fit`)")
    cal.add_argument("--data", required=True, help="held-out recordings of the twin's site")
    cal.add_argument(
        "--horizon", type=int, default=12, help="open-loop horizon in periods (default: 12)"
    )
    cal.set_defaults(func=_cmd_twin_calibrate)

    rep = twin_sub.add_parser(
        "report", help="accuracy of a saved twin on held-out recordings: JSON, Markdown, plots"
    )
    rep.add_argument("--twin", required=True, help="folder of a saved twin (`twin fit`)")
    rep.add_argument("--data", required=True, help="folder of held-out recordings")
    rep.add_argument("--out", required=True, help="output folder")
    rep.add_argument(
        "--horizon",
        type=int,
        default=12,
        help="open-loop horizon in control periods (default: 12, 1 h at 5 min)",
    )
    rep.set_defaults(func=_cmd_twin_report)

    da = twin_sub.add_parser(
        "assimilate",
        help="track the twin's physical parameters over recordings (ensemble Kalman filter)",
    )
    da.add_argument("--twin", required=True, help="folder of a saved twin (`twin fit`)")
    da.add_argument("--data", required=True, help="folder of recordings to assimilate")
    da.add_argument("--out", required=True, help="output folder (assimilation.parquet/.json)")
    da.add_argument("--members", type=int, default=64, help="filter members (default: 64)")
    da.add_argument("--seed", type=int, default=0, help="filter seed (default: 0)")
    da.add_argument("--quiet", action="store_true", help="no progress bar")
    da.set_defaults(func=_cmd_twin_assimilate)
