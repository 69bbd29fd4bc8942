"""The twin's accuracy and assimilation figures, end to end through the command line.

Runs exactly what a user runs (``twinloop twin record | fit | report | assimilate``):

1. records the plant under exploration: ten mild January days for training
   (``twin-train-mild``, seed 0) and, held out, three summer days (``twin-test-summer``,
   seed 1), a heat wave (``twin-test-heat-wave``, seed 2) and a fouling run
   (``twin-fault-fouling``: every CRAH coil loses 30 % of its UA and every condenser
   fouls by 3 K at 8 h, seed 4);
2. fits an ensemble twin on the training days only;
3. reports its accuracy on each held-out set against the issue's targets;
4. assimilates the fouling run and reports how fast the rack-inlet error is back in bounds.

Everything lands under ``--out`` (default ``out/bench/twin``); recordings and the fitted twin
are reused when present (``--refit`` fits again). Prints one JSON summary at the end.

    python benchmarks/twin_figures.py [--members 3] [--iterations 500]
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import torch

from twin.accuracy import HEADLINE_ACCURACY
from twinloop.cli import main as twinloop

RECORDINGS: dict[str, tuple[str, int]] = {
    "train": ("twin-train-mild", 0),
    "summer": ("twin-test-summer", 1),
    "heat_wave": ("twin-test-heat-wave", 2),
    "fouling": ("twin-fault-fouling", 4),
}


def run(*argv: str) -> None:
    print("$ twinloop " + " ".join(argv), flush=True)
    status = twinloop(list(argv))
    if status != 0:
        raise SystemExit(f"twinloop {argv[0]} {argv[1]} failed with status {status}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="out/bench/twin")
    parser.add_argument("--members", type=int, default=3)
    parser.add_argument("--iterations", type=int, default=500)
    parser.add_argument("--refit", action="store_true")
    args = parser.parse_args()
    torch.set_num_threads(2)
    out = Path(args.out)
    timings: dict[str, float] = {}
    for name, (scenario, seed) in RECORDINGS.items():
        folder = out / "data" / name
        if not any(folder.glob("*.parquet")):
            started = time.perf_counter()
            run(
                "twin",
                "record",
                "--scenario",
                scenario,
                "--seed",
                str(seed),
                "--out",
                str(folder),
                "--quiet",
            )
            timings[f"record_{name}_s"] = round(time.perf_counter() - started, 1)
    twin_dir = out / "twin"
    if args.refit or not (twin_dir / "twin.pt").exists():
        started = time.perf_counter()
        run(
            "twin",
            "fit",
            "--data",
            str(out / "data" / "train"),
            "--out",
            str(twin_dir),
            "--members",
            str(args.members),
            "--iterations",
            str(args.iterations),
            "--overwrite",
        )
        timings["fit_s"] = round(time.perf_counter() - started, 1)
    summary: dict[str, Any] = {
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": f"{platform.machine()}, {torch.get_num_threads()} threads, "
        f"torch {torch.__version__}",
        "members": args.members,
        "iterations": args.iterations,
        "timings": timings,
    }
    for name in ("train", "summer", "heat_wave"):
        report = out / f"report-{name}"
        run(
            "twin",
            "report",
            "--twin",
            str(twin_dir),
            "--data",
            str(out / "data" / name),
            "--out",
            str(report),
        )
        summary[name] = json.loads((report / "accuracy.json").read_text(encoding="utf-8"))
    fouling = out / "report-fouling"
    started = time.perf_counter()
    run(
        "twin",
        "assimilate",
        "--twin",
        str(twin_dir),
        "--data",
        str(out / "data" / "fouling"),
        "--out",
        str(fouling),
        "--quiet",
    )
    timings["assimilate_s"] = round(time.perf_counter() - started, 1)
    run(
        "twin",
        "report",
        "--twin",
        str(twin_dir),
        "--data",
        str(out / "data" / "fouling"),
        "--out",
        str(fouling),
    )
    summary["fouling"] = json.loads((fouling / "assimilation.json").read_text(encoding="utf-8"))
    keep = HEADLINE_ACCURACY
    brief = {k: summary[k] for k in ("date", "machine", "members", "iterations", "timings")}
    for name in ("train", "summer", "heat_wave"):
        brief[name] = {k: summary[name][k] for k in keep}
    brief["fouling"] = summary["fouling"]
    (out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n", encoding="utf-8")
    print(json.dumps(brief, indent=2))


if __name__ == "__main__":
    main()
