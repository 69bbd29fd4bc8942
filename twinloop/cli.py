"""The ``twinloop`` command: parses arguments, sets up logging, calls library functions."""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import tempfile
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING

from physics.plant.scenario import ScenarioError, load_scenario, shipped_scenarios
from physics.weather import WeatherError
from twinloop.cli_compare import add_compare_commands
from twinloop.cli_connectors import add_connectors_commands
from twinloop.cli_dashboard import add_dashboard_commands
from twinloop.cli_demo import add_demo_commands
from twinloop.cli_live import add_live_commands

if TYPE_CHECKING:
    from control.scaleout import Candidate
    from twin.dataset import PeriodData
    from twin.design import TwinDesign
    from twin.ensemble import TwinEnsemble

logger = logging.getLogger("twinloop")

POLICIES = ("baseline",)


def _setup_logging(verbosity: int) -> None:
    level = logging.WARNING - 10 * verbosity
    logging.basicConfig(
        level=max(level, logging.DEBUG),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )


def _cmd_simulate(args: argparse.Namespace) -> int:
    from physics.plant.simulation import run_scenario, write_outputs

    if args.policy not in POLICIES:
        raise ScenarioError(f"unknown policy {args.policy!r} (available: {', '.join(POLICIES)})")
    scenario = load_scenario(args.scenario)
    print(
        f"simulating {scenario.name}: {scenario.duration_h / 24:g} days of site "
        f"{scenario.site.name} (seed {scenario.site_seed}) under {args.policy} control",
        file=sys.stderr,
    )
    result = run_scenario(scenario, progress=not args.quiet, engine=args.engine)
    paths = write_outputs(result, Path(args.out))
    k = result.kpis
    summary = {
        "pue": round(k.pue, 4),
        "cooling_kwh": round(k.cooling_kwh, 1),
        "it_kwh": round(k.it_kwh, 1),
        "violation_kh_above_27": round(k.violation_kh_above_27, 3),
        "max_inlet_c": round(k.max_inlet_c, 2),
        "simulated_days_per_s": round(scenario.duration_h / 24 / max(result.wall_s, 1e-9), 2),
    }
    print(json.dumps(summary, indent=2))
    print("wrote: " + ", ".join(str(p) for p in paths), file=sys.stderr)
    return 0


def _cmd_twin_record(args: argparse.Namespace) -> int:
    from twin.recording import RecordingError, record_run, recording_path

    out_dir = Path(args.out)
    try:
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
    except RecordingError as exc:
        print(f"twinloop: error: {exc}", file=sys.stderr)
        return 2
    return 0


class _TwinInputError(ValueError):
    """A bad argument or folder of a ``twin`` subcommand, found before any work is done."""


def _at_least_one(args: argparse.Namespace, *names: str) -> None:
    for name in names:
        value = getattr(args, name)
        if value < 1:
            flag = "--" + name.replace("_", "-")
            raise _TwinInputError(f"{flag} must be at least 1 (got {value})")


def _check_out(out_dir: Path, data_dir: Path) -> None:
    """A folder, or none yet; not the recordings' (files there would read as recordings)."""
    if out_dir.exists() and not out_dir.is_dir():
        raise _TwinInputError(f"--out {out_dir}: exists and is not a folder")
    if out_dir.resolve() == data_dir.resolve():
        raise _TwinInputError(f"--out {out_dir}: is the folder of recordings; write elsewhere")


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
        raise _TwinInputError(
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
    from twin.dataset import DatasetError
    from twin.recording import RecordingError
    from twin.report import accuracy_line
    from twin.training import FitConfig, fit_twin

    data_dir, out_dir = Path(args.data), Path(args.out)
    try:
        _at_least_one(args, "members", "iterations", "horizon")
        _check_out(out_dir, data_dir)
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
    except (_TwinInputError, RecordingError, DatasetError) as exc:
        print(f"twinloop: error: {exc}", file=sys.stderr)
        return 2
    print(out_dir)
    print(f"training data ({accuracy.periods} periods): {accuracy_line(accuracy.to_dict())}")
    return 0


def _cmd_twin_competence(args: argparse.Namespace) -> int:
    from twin.competence import CompetenceModel, period_features
    from twin.dataset import DatasetError
    from twin.ensemble import TwinEnsemble, TwinLoadError
    from twin.recording import RecordingError

    twin_dir = Path(args.twin)
    try:
        ensemble = TwinEnsemble.load(twin_dir)
        _, data, _ = _recorded_periods(Path(args.data), horizon=1, twin=ensemble)
        model = CompetenceModel.fit(data)
        checks = []
        for folder in args.check or []:
            _, held, _ = _recorded_periods(Path(folder), horizon=1, twin=ensemble)
            share = float((model.ratio(period_features(held, model.scale)) > 1.0).mean())
            checks.append((folder, len(held), share))
    except (_TwinInputError, RecordingError, DatasetError, TwinLoadError) as exc:
        print(f"twinloop: error: {exc}", file=sys.stderr)
        return 2
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
    import json

    from twin.calibration import OUTPUTS, calibrate, coverage, member_predictions, split_halves
    from twin.dataset import DatasetError
    from twin.ensemble import TwinEnsemble, TwinLoadError
    from twin.recording import RecordingError

    twin_dir = Path(args.twin)
    try:
        ensemble = TwinEnsemble.load(twin_dir)
        _, data, _ = _recorded_periods(Path(args.data), horizon=args.horizon, twin=ensemble)
        first, second = split_halves(data)
        calibration = calibrate(member_predictions(ensemble, first, horizon=args.horizon))
        checked = coverage(member_predictions(ensemble, second, horizon=args.horizon), calibration)
    except (_TwinInputError, RecordingError, DatasetError, TwinLoadError, ValueError) as exc:
        print(f"twinloop: error: {exc}", file=sys.stderr)
        return 2
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
    from twin.dataset import DatasetError
    from twin.ensemble import TwinEnsemble, TwinLoadError
    from twin.recording import RecordingError
    from twin.report import (
        ACCURACY_JSON,
        ReportError,
        accuracy_line,
        load_assimilation,
        targets_line,
        write_twin_report,
    )

    twin_dir, data_dir, out_dir = Path(args.twin), Path(args.data), Path(args.out)
    try:
        _at_least_one(args, "horizon")
        _check_out(out_dir, data_dir)
        ensemble = TwinEnsemble.load(twin_dir)
        _, data, _ = _recorded_periods(data_dir, horizon=args.horizon, twin=ensemble)
        # A track made for this report's data first, else the one kept with the twin.
        assimilation = load_assimilation(out_dir) or load_assimilation(twin_dir)
        paths = write_twin_report(
            ensemble, data, out_dir, horizon=args.horizon, assimilation=assimilation
        )
    except (_TwinInputError, RecordingError, DatasetError, TwinLoadError, ReportError) as exc:
        print(f"twinloop: error: {exc}", file=sys.stderr)
        return 2
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
    from twin.dataset import DatasetError
    from twin.ensemble import TwinEnsemble, TwinLoadError
    from twin.recording import RecordingError, load_recordings

    twin_dir, data_dir, out_dir = Path(args.twin), Path(args.data), Path(args.out)
    try:
        _at_least_one(args, "members")
        _check_out(out_dir, data_dir)
        ensemble = TwinEnsemble.load(twin_dir)
        _, data, _ = _recorded_periods(data_dir, horizon=1, twin=ensemble)
        fitted = ensemble.summary.get("observation_std")
        config = FilterConfig(members=args.members, seed=args.seed)
        if fitted:
            config = replace(config, observation_std=tuple(fitted))
        assimilator = EnsembleKalmanAssimilator.for_ensemble(ensemble, config)
    except (_TwinInputError, RecordingError, DatasetError, TwinLoadError, TypeError) as exc:
        print(f"twinloop: error: {exc}", file=sys.stderr)
        return 2
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


def _check_ray_flags(args: argparse.Namespace) -> None:
    if args.workers is not None and args.ray != "local":
        raise _TwinInputError("--workers sets the size of a local Ray instance: use --ray local")
    if args.workers is not None and args.workers < 1:
        raise _TwinInputError(f"--workers must be at least 1 (got {args.workers})")


def _cmd_evaluate(args: argparse.Namespace) -> int:
    from control.evaluation import EvaluationResult, write_comparison
    from control.scaleout import RayUnavailableError, ScaleOutError, evaluate_many
    from control.suites import SuiteError, expand
    from twin.ensemble import TwinLoadError

    out_dir = Path(args.out)

    def write(_: int, result: EvaluationResult) -> None:
        result.write(out_dir / result.scenario)
        k = result.kpis
        print(
            f"{result.scenario} ({args.on}): cooling {k['cooling_kwh']:,.0f} kWh, PUE "
            f"{k['pue']:.3f}, {k['violation_kh_above_27']:.2f} K·h above 27 °C, max inlet "
            f"{k['max_inlet_c']:.1f} °C",
            flush=True,
        )

    try:
        _check_ray_flags(args)
        scenarios = expand(args.scenario)
        twin_dir = Path(args.twin) if args.on == "twin" and args.twin is not None else None
        if twin_dir is not None:
            from twin.ensemble import TwinEnsemble

            TwinEnsemble.load(twin_dir)  # a bad folder fails here, before any run
        if out_dir.exists() and not out_dir.is_dir():
            raise _TwinInputError(f"--out {out_dir}: exists and is not a folder")
        # Each result is written as it arrives: a later failure loses none of them.
        results = evaluate_many(
            args.policy,
            scenarios,
            on=args.on,
            twin_dir=twin_dir,
            ray_address=args.ray,
            workers=args.workers,
            progress=not args.quiet,
            on_result=write,
        )
    except (TwinLoadError, SuiteError, RayUnavailableError, ValueError) as exc:
        # Bad input (a policy, suite, twin, flag or Ray address): nothing ran.
        print(f"twinloop: error: {exc}", file=sys.stderr)
        return 2
    except ScaleOutError as exc:  # a run failed; the finished ones are written
        print(f"twinloop: error: {exc}", file=sys.stderr)
        return 1
    write_comparison(results, out_dir)
    print(out_dir)
    return 0


def _add_twin_commands(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
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


def _text_table(
    headers: Sequence[str], rows: Sequence[Sequence[str]], *, right: Sequence[int] = ()
) -> str:
    """Rows as aligned columns under a header and a rule; columns in ``right`` right-aligned."""
    widths = [max([len(h), *(len(row[i]) for row in rows)]) for i, h in enumerate(headers)]

    def line(cells: Sequence[str]) -> str:
        return "  ".join(
            cell.rjust(width) if i in right else cell.ljust(width)
            for i, (cell, width) in enumerate(zip(cells, widths, strict=True))
        ).rstrip()

    return "\n".join([line(headers), line(["-" * w for w in widths]), *map(line, rows)])


_KPI_FORMATS = {
    "cooling_kwh": "{:,.1f}",
    "pue": "{:.4f}",
    "violation_kh_above_27": "{:.3f}",
    "max_inlet_c": "{:.2f}",
}
"""Decimals of the key KPIs as ``twinloop simulate`` prints them."""


def _kpi_text(name: str, value: object) -> str:
    """A KPI for a table; "—" where a policy has none."""
    if not isinstance(value, int | float) or value != value:  # None or NaN
        return "—"
    if name in _KPI_FORMATS:
        return _KPI_FORMATS[name].format(value)
    return f"{value:,.0f}" if abs(value) >= 1_000 else f"{value:.4g}"


def _reservoir_root(args: argparse.Namespace) -> Path:
    from control.reservoir import default_root

    return Path(args.root) if args.root is not None else default_root()


def _cmd_reservoir_list(args: argparse.Namespace) -> int:
    from control.reservoir import Reservoir, ReservoirError

    try:
        with Reservoir(_reservoir_root(args), create=False) as reservoir:
            records = reservoir.list(state=args.state, kind=args.kind)
    except ReservoirError as exc:
        print(f"twinloop: error: {exc}", file=sys.stderr)
        return 2
    if not records:
        print(f"no policies in {_reservoir_root(args)}", file=sys.stderr)
        return 0
    rows = [
        [
            r.name,
            str(r.version),
            r.kind,
            r.state,
            r.created_at[:16].replace("T", " "),
            r.artifact_hash[:12],
        ]
        for r in records
    ]
    headers = ("name", "version", "kind", "state", "created (UTC)", "sha256")
    print(_text_table(headers, rows, right=(1,)))
    return 0


def _cmd_reservoir_show(args: argparse.Namespace) -> int:
    from control.reservoir import Reservoir, ReservoirError, ordered_kpis

    try:
        with Reservoir(_reservoir_root(args), create=False) as reservoir:
            record = reservoir.get(args.ref)
            path = reservoir.artifact_path(record.ref)
            digest = reservoir.current_hash(record.ref)
            evaluations = reservoir.evaluations(record.ref)
            history = reservoir.history(record.ref)
    except ReservoirError as exc:
        print(f"twinloop: error: {exc}", file=sys.stderr)
        return 2
    if digest == record.artifact_hash:
        check = "verified"
    else:
        check = "MISSING" if digest is None else f"CHANGED since registration (now {digest})"
    fields = [
        ("kind", record.kind),
        ("state", record.state),
        ("created", record.created_at),
        ("description", record.description or "—"),
        ("parent", record.parent or "—"),
        ("training", ", ".join(record.training_scenarios) or "—"),
        ("artifact", "— (hash of the hyper-parameters)" if path is None else str(path)),
        ("sha256", f"{record.artifact_hash} ({check})"),
    ]
    print(record.ref)
    print("\n".join(f"  {key:12s} {value}" for key, value in fields))
    print("hyper-parameters")
    for key, value in sorted(record.hyperparameters.items()):
        print(f"  {key} = {json.dumps(value)}")
    print(f"evaluations ({len(evaluations)})")
    if evaluations:
        kpis = ordered_kpis(k for e in evaluations for k in e.kpis)
        rows = [
            [
                str(e.id),
                e.on,
                e.scenario,
                *(_kpi_text(k, e.kpis.get(k)) for k in kpis),
                e.created_at,
                "—" if e.report_dir is None else str(e.report_dir),
            ]
            for e in evaluations
        ]
        headers = ("id", "on", "scenario", *kpis, "at", "report")
        table = _text_table(headers, rows, right=[0, *range(3, 3 + len(kpis))])
        print("\n".join("  " + line for line in table.splitlines()))
    print(f"history ({len(history)})")
    rows = [
        [
            h.at,
            h.actor,
            f"{h.from_state or '—'} → {h.to_state}",
            (h.artifact_hash or "missing")[:12],
            h.reason,
        ]
        for h in history
    ]
    table = _text_table(("at", "actor", "change", "sha256", "reason"), rows)
    print("\n".join("  " + line for line in table.splitlines()))
    return 0


def _cmd_reservoir_compare(args: argparse.Namespace) -> int:
    from control.reservoir import Reservoir, ReservoirError

    try:
        with Reservoir(_reservoir_root(args), create=False) as reservoir:
            table = reservoir.compare(args.refs, on=args.on)
            refs = list(dict.fromkeys(reservoir.get(ref).ref for ref in args.refs))
    except ReservoirError as exc:
        print(f"twinloop: error: {exc}", file=sys.stderr)
        return 2
    where = "" if args.on is None else f" on the {args.on}"
    if table.empty:
        print(f"twinloop: error: no evaluations{where} of {', '.join(refs)}", file=sys.stderr)
        return 2
    for ref in refs:
        if ref not in set(table["policy"]):
            print(f"note: {ref} has no evaluations{where}", file=sys.stderr)
    kpis = [str(c) for c in table.columns[4:]]
    rows = [
        [str(r["policy"]), str(r["kind"]), str(r["on"]), str(r["scenario"])]
        + [_kpi_text(k, r[k]) for k in kpis]
        for _, r in table.iterrows()
    ]
    print(_text_table([str(c) for c in table.columns], rows, right=range(4, 4 + len(kpis))))
    return 0


def _actor() -> str:
    import getpass

    try:
        return getpass.getuser()
    except (KeyError, OSError):  # no user name in a container
        return "unknown"


def _cmd_reservoir_add_baselines(args: argparse.Namespace) -> int:
    from control.catalog import BUILTIN_POLICIES
    from control.preevaluation import register_builtin
    from control.reservoir import Reservoir, ReservoirError

    try:
        with Reservoir(_reservoir_root(args)) as reservoir:
            for name in BUILTIN_POLICIES:
                record = register_builtin(reservoir, name, actor=_actor())
                print(f"{record.ref:28s} {record.kind:6s} {record.state}")
    except ReservoirError as exc:
        print(f"twinloop: error: {exc}", file=sys.stderr)
        return 2
    return 0


def _cmd_preevaluate(args: argparse.Namespace) -> int:
    from control.catalog import PolicyNotFoundError
    from control.gate import GateConfig
    from control.preevaluation import pre_evaluate
    from control.reservoir import Reservoir, ReservoirError
    from control.suites import SuiteError
    from twin.ensemble import TwinEnsemble, TwinLoadError

    try:
        gate = GateConfig.from_yaml(Path(args.gate)) if args.gate else GateConfig()
        twin = TwinEnsemble.load(Path(args.twin)) if args.twin else None
        with Reservoir(_reservoir_root(args), create=False) as reservoir:
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
    except (ReservoirError, PolicyNotFoundError, SuiteError, TwinLoadError, ValueError) as exc:
        print(f"twinloop: error: {exc}", file=sys.stderr)
        return 2
    print(report.markdown())
    print(Path(args.out) / "gate1.md")
    return 0 if report.passed else 1


def _cmd_train(args: argparse.Namespace) -> int:
    from control.reservoir import Reservoir, ReservoirError
    from control.scaleout import (
        RayUnavailableError,
        ScaleOutError,
        candidates,
        train_many,
    )
    from control.training import TrainConfig, TrainedAgent

    out_dir = Path(args.out)
    overrides: dict[str, object] = {}
    for key, value in (
        ("total_timesteps", args.timesteps),
        ("n_envs", args.n_envs),
        ("episode_hours", args.episode_hours),
        ("twin", args.twin),
        ("seed", args.seed),
        ("device", args.device),
        ("checkpoint_every", args.checkpoint_every),
    ):
        if value is not None:
            overrides[key] = value
    if args.scenario:
        overrides["scenarios"] = list(args.scenario)
    if args.no_randomisation:
        overrides["randomisation"] = False
    try:
        _check_ray_flags(args)
        if args.parallel < 1:
            raise _TwinInputError(f"--parallel must be at least 1 (got {args.parallel})")
        configs = [
            TrainConfig.from_yaml(
                algo,
                overrides=overrides,
                path=Path(args.hyperparams) if args.hyperparams else None,
            )
            for algo in dict.fromkeys(args.algo)
        ]
        runs = candidates(configs, args.parallel, out_dir)
        for run in runs:
            if (run.out_dir / "model.zip").exists() and not args.overwrite:
                raise _TwinInputError(
                    f"--out {run.out_dir}: holds a trained agent; use --overwrite"
                )
    except (ValueError, OSError) as exc:
        print(f"twinloop: error: {exc}", file=sys.stderr)
        return 2
    failed: list[str] = []

    def finished(i: int, trained: TrainedAgent) -> None:
        run: Candidate = runs[i]
        final = trained.final_mean_return
        label = run.label if len(runs) > 1 else run.config.algo
        print(
            f"{label}: {trained.timesteps:,} steps in {trained.wall_s:.0f} s; mean episode "
            f"return at the end {'n/a' if final is None else f'{final:.2f}'}"
        )
        print(run.out_dir, flush=True)
        artifact = run.out_dir
        if args.select_suite:
            artifact_or_none = _select(run, args)
            if artifact_or_none is None:
                failed.append(run.label)
                return
            artifact = artifact_or_none
        if not args.register:
            return
        name = args.register if len(runs) == 1 else f"{args.register}-{run.label}"
        try:  # registered here, on this machine: the reservoir's SQLite file is local
            with Reservoir(_reservoir_root(args)) as reservoir:
                record = reservoir.register(
                    name,
                    "drl",
                    artifact,
                    hyperparameters=run.config.to_dict(),
                    training_scenarios=run.config.scenarios,
                    description=f"SB3 {run.config.algo.upper()} trained in the twin",
                    actor=_actor(),
                )
        except ReservoirError as exc:
            print(f"twinloop: error: {exc}", file=sys.stderr)
            failed.append(name)
            return
        print(
            f"registered {record.ref} ({record.state}, sha256 {record.artifact_hash[:12]})",
            flush=True,
        )

    try:
        train_many(
            runs,
            ray_address=args.ray,
            workers=args.workers,
            progress=not args.quiet,
            on_result=finished,
        )
    except (RayUnavailableError, ValueError) as exc:  # Ray's address: nothing ran
        print(f"twinloop: error: {exc}", file=sys.stderr)
        return 2
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


def _add_ray_flags(parser: argparse.ArgumentParser, per: str) -> None:
    parser.add_argument(
        "--ray",
        default=None,
        metavar="ADDRESS",
        help=f"one Ray task per {per}: 'local' (a Ray instance started for this run), 'auto' "
        "or HOST:PORT / ray://HOST:PORT of a cluster (default: here, one after the other)",
    )
    parser.add_argument(
        "--workers",
        type=int,
        default=None,
        metavar="N",
        help="CPUs of the local Ray instance (with --ray local; default: all)",
    )


def _add_reservoir_commands(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    from control.reservoir import EVALUATED_ON, KINDS, STATES

    root_help = "reservoir folder (default: $TWINLOOP_HOME/reservoir, else runs/reservoir)"
    res = sub.add_parser("reservoir", help="the policy reservoir: list, show, compare")
    res.add_argument("--root", default=None, help=root_help)
    # --root also after the subcommand; there it overrides only when given.
    root_after = argparse.ArgumentParser(add_help=False)
    root_after.add_argument("--root", default=argparse.SUPPRESS, help=root_help)
    res_sub = res.add_subparsers(dest="reservoir_command", required=True)

    ls = res_sub.add_parser(
        "list", parents=[root_after], help="every policy version: kind, state, created, hash"
    )
    ls.add_argument("--state", choices=STATES, help="only policies in this state")
    ls.add_argument("--kind", choices=KINDS, help="only policies of this kind")
    ls.set_defaults(func=_cmd_reservoir_list)

    show = res_sub.add_parser(
        "show", parents=[root_after], help="one policy: all fields, evaluations, history"
    )
    show.add_argument("ref", help="NAME (latest version) or NAME@VERSION")
    show.set_defaults(func=_cmd_reservoir_show)

    cmp = res_sub.add_parser(
        "compare", parents=[root_after], help="the KPIs of policies side by side"
    )
    cmp.add_argument("refs", nargs="+", metavar="REF", help="NAME or NAME@VERSION")
    cmp.add_argument("--on", choices=EVALUATED_ON, default=None, help="only twin or plant runs")
    cmp.set_defaults(func=_cmd_reservoir_compare)

    base = res_sub.add_parser(
        "add-baselines", parents=[root_after], help="register the built-in rule baselines"
    )
    base.set_defaults(func=_cmd_reservoir_add_baselines)

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
    tr.add_argument("--device", default=None, help="cpu or cuda")
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
        "--register",
        default=None,
        metavar="NAME",
        help="register in the reservoir (several candidates: NAME-ALGO-seedN each)",
    )
    tr.add_argument("--root", default=None, help=root_help)
    tr.add_argument("--overwrite", action="store_true", help="replace an agent in --out")
    tr.add_argument("--quiet", action="store_true", help="no progress bar")
    _add_ray_flags(tr, "candidate")
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
    pre.add_argument("--root", default=None, help=root_help)
    pre.add_argument("--out", required=True, help="folder for the runs and gate1.json/.md")
    pre.add_argument("--quiet", action="store_true", help="no progress bars")
    pre.set_defaults(func=_cmd_preevaluate)


def _cmd_scenarios(args: argparse.Namespace) -> int:
    for name, path in sorted(shipped_scenarios().items()):
        scenario = load_scenario(path)
        print(f"{name:28s} {scenario.duration_h / 24:5.1f} d  {scenario.description.strip()}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="twinloop", description="Data-center digital twin and dual-loop cooling control."
    )
    parser.add_argument("-v", "--verbose", action="count", default=1, help="more log output")
    sub = parser.add_subparsers(dest="command", required=True)

    sim = sub.add_parser("simulate", help="run a scenario on the plant; write KPIs and plots")
    sim.add_argument("--scenario", required=True, help="scenario YAML file or shipped name")
    sim.add_argument("--policy", default="baseline", help="control policy (default: baseline)")
    sim.add_argument("--out", required=True, help="output folder")
    sim.add_argument("--quiet", action="store_true", help="no progress bar")
    sim.add_argument(
        "--engine",
        choices=("numba", "numpy"),
        default="numba",
        help="compiled plant step (default) or the numpy reference",
    )
    sim.set_defaults(func=_cmd_simulate)

    ev = sub.add_parser(
        "evaluate", help="run a policy over scenarios on the plant or in the twin; KPIs + plots"
    )
    ev.add_argument(
        "--policy",
        required=True,
        help="fixed-setpoints | trim-and-respond | mpc | oracle-mpc | a trained agent's folder",
    )
    ev.add_argument(
        "--scenario",
        action="append",
        required=True,
        help="scenario or suite (pre-evaluation, held-out), name or file; repeat for several",
    )
    ev.add_argument("--on", choices=("plant", "twin"), default="plant", help="default: plant")
    ev.add_argument("--twin", default=None, help="saved twin folder (with --on twin)")
    ev.add_argument("--out", required=True, help="output folder (one subfolder per scenario)")
    ev.add_argument("--quiet", action="store_true", help="no progress bar")
    _add_ray_flags(ev, "scenario")
    ev.set_defaults(func=_cmd_evaluate)

    sc = sub.add_parser("scenarios", help="list the shipped scenarios")
    sc.set_defaults(func=_cmd_scenarios)

    _add_twin_commands(sub)
    _add_reservoir_commands(sub)
    add_compare_commands(sub)
    add_dashboard_commands(sub)
    add_live_commands(sub)
    add_connectors_commands(sub)
    add_demo_commands(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    _setup_logging(args.verbose - 1)
    try:
        return int(args.func(args))
    except (ScenarioError, WeatherError) as exc:
        print(f"twinloop: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("twinloop: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
