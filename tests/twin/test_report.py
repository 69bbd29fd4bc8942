"""The twin report: accuracy.json holds what measure_accuracy measures with the targets
judged right, the Markdown, HTML and PNGs are written, the plotted predictions agree with
the accuracy figures, and an assimilation track is read and drawn."""

from __future__ import annotations

import json
import struct
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from physics import kpi
from twin.accuracy import Accuracy, measure_accuracy
from twin.dataset import PeriodData
from twin.design import TwinDesign
from twin.ensemble import TwinEnsemble
from twin.report import (
    ASSIMILATION_FAULTS,
    ASSIMILATION_TABLE,
    AssimilationTrack,
    FaultOnset,
    ReportError,
    _series,
    load_assimilation,
    twin_predictions,
    write_twin_report,
)
from twin.training import FitConfig, fit_twin

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
PNGS = ("timeseries.png", "parity.png", "horizon.png", "training.png", "assimilation.png")


def synthetic_track() -> pd.DataFrame:
    """Two tracked parameters (one with a std), the errors with and without assimilation."""
    time_h = np.arange(0.0, 6.0, 1.0 / 12.0)
    fouled = time_h >= 2.0
    return pd.DataFrame(
        {
            "time_h": time_h,
            "coil_ua_mult": np.where(fouled, 0.7, 1.0),
            "coil_ua_mult_std": np.full(time_h.size, 0.05),
            "chiller_eir_mult": np.ones(time_h.size),
            "inlet_abs_error_c": np.full(time_h.size, 0.1),
            "inlet_abs_error_open_c": np.where(fouled, 0.6, 0.1),
        }
    )


@pytest.fixture(scope="module")
def tiny_twin(design: TwinDesign, train_periods: PeriodData) -> TwinEnsemble:
    cfg = FitConfig(ensemble_size=1, iterations=5, horizon=6, batch_windows=16)
    return fit_twin(design, train_periods, cfg)


@pytest.fixture(scope="module")
def report(
    tiny_twin: TwinEnsemble, test_periods: PeriodData, tmp_path_factory: pytest.TempPathFactory
) -> tuple[Path, list[Path]]:
    out = tmp_path_factory.mktemp("report")
    track = AssimilationTrack(synthetic_track(), (FaultOnset("coil_fouling", 2.0),))
    return out, write_twin_report(tiny_twin, test_periods, out, horizon=12, assimilation=track)


@pytest.fixture(scope="module")
def accuracy(tiny_twin: TwinEnsemble, test_periods: PeriodData) -> Accuracy:
    return measure_accuracy(tiny_twin, test_periods, horizon_periods=12)


def _png_size(path: Path) -> tuple[int, int]:
    raw = path.read_bytes()
    assert raw[:8] == PNG_SIGNATURE and raw[12:16] == b"IHDR", f"{path.name} is not a PNG"
    width, height = struct.unpack(">II", raw[16:24])
    return int(width), int(height)


def test_every_file_is_written(report: tuple[Path, list[Path]]) -> None:
    out, paths = report
    expected = {"accuracy.json", "accuracy.md", "report.html", *PNGS}
    assert {p.name for p in paths} == expected
    assert {p.name for p in out.iterdir()} == expected
    for name in PNGS:
        width, height = _png_size(out / name)
        assert width >= 600 and height >= 400, name
        assert (out / name).stat().st_size > 10_000, name
    page = (out / "report.html").read_text(encoding="utf-8")
    assert "plotly" in page.lower() and 'src="http' not in page  # plotly.js inline: offline
    assert page.count("Plotly.newPlot") == 5  # series, parity, horizon, loss, assimilation
    for text in ("hottest rack inlet", "facility power", "coil_ua_mult", "coil_fouling"):
        assert text in page, text


def test_accuracy_json_is_measure_accuracy_with_the_targets_judged(
    report: tuple[Path, list[Path]], accuracy: Accuracy
) -> None:
    out, _ = report
    saved = json.loads((out / "accuracy.json").read_text(encoding="utf-8"))
    for name, value in accuracy.to_dict().items():
        assert saved[name] == pytest.approx(value, rel=1e-9), name
    assert (saved["horizon_periods"], saved["period_s"], saved["horizon_min"]) == (12, 300.0, 60.0)
    limits = {
        "inlet_median_abs_error_1step_c": 0.15,
        "inlet_p95_abs_error_1h_c": 0.5,
        "facility_mape_percent": 2.0,
        "cooling_mape_percent": 5.0,
    }
    assert {k: v["limit"] for k, v in saved["targets"].items()} == limits
    for name, target in saved["targets"].items():
        assert target["value"] == pytest.approx(getattr(accuracy, name), rel=1e-9)
        assert target["pass"] is (getattr(accuracy, name) <= limits[name])
    assert saved["targets_met"] is all(t["pass"] for t in saved["targets"].values())
    assert "1 h open loop" in saved["targets"]["inlet_p95_abs_error_1h_c"]["label"]
    reference = saved["ashrae_guideline_14"]
    assert {k: v["limit"] for k, v in reference.items()} == {
        "facility_cv_rmse_percent": 30.0,
        "facility_nmbe_percent": 10.0,
        "cooling_cv_rmse_percent": 30.0,
        "cooling_nmbe_percent": 10.0,
    }
    for name, criterion in reference.items():
        value = getattr(accuracy, name)
        bound = abs(value) if name.endswith("nmbe_percent") else value
        assert criterion["pass"] is (bound <= criterion["limit"])


def test_markdown_tables(report: tuple[Path, list[Path]], tiny_twin: TwinEnsemble) -> None:
    out, _ = report
    text = (out / "accuracy.md").read_text(encoding="utf-8")
    saved = json.loads((out / "accuracy.json").read_text(encoding="utf-8"))
    row = next(line for line in text.splitlines() if line.startswith("| facility power MAPE"))
    cells = [c.strip() for c in row.strip("|").split("|")]
    assert len(cells) == 4 and cells[2] == "≤ 2 %"
    assert cells[3] == ("pass" if saved["targets"]["facility_mape_percent"]["pass"] else "FAIL")
    nmbe = next(line for line in text.splitlines() if line.startswith("| cooling power NMBE"))
    assert "within ±10 %" in nmbe
    assert text.count("\n| 5 | ") == 1 and text.count("\n| 60 | ") == 1  # error by horizon
    for name in tiny_twin.summary["parameters"]:
        assert f"| {name} | " in text


def test_plotted_predictions_agree_with_the_accuracy(
    tiny_twin: TwinEnsemble, test_periods: PeriodData, accuracy: Accuracy
) -> None:
    pred = twin_predictions(tiny_twin, test_periods, horizon=12)
    np.testing.assert_allclose(pred.inlet_median_error_c, accuracy.error_by_horizon_c, rtol=1e-6)
    assert kpi.median_abs_error(*pred.inlet_1step_c) == pytest.approx(
        accuracy.inlet_median_abs_error_1step_c, rel=1e-6
    )
    assert np.all(pred.inlet_p95_error_c >= pred.inlet_median_error_c)
    np.testing.assert_allclose(pred.horizon_min, np.arange(5.0, 61.0, 5.0))
    labels = [s.label for s in pred.signals]
    assert labels[0].startswith("hottest rack inlet") and labels[1:] == [
        "supply air",
        "CHW supply",
        "cooling power",
        "facility power",
    ]
    hottest = pred.signals[0].measured[1]
    per_rack = test_periods.rack_inlet_c.mean(dim=0)
    assert np.nanmean(hottest) == pytest.approx(float(per_rack.max()), rel=1e-5)
    # The facility meter is a period mean: drawn at mid-period, 2.5 min after the reading.
    t_reading, t_mean = pred.signals[1].measured[0], pred.signals[4].measured[0]
    assert np.nanmin(t_mean) - np.nanmin(t_reading) == pytest.approx(2.5 / 60.0, abs=1e-4)


def test_series_break_between_runs() -> None:
    time_h = np.arange(8, dtype=np.float64)
    sequence = np.array([0, 0, 0, 1, 1, 1, 1, 1])
    t, y = _series(time_h, sequence, np.array([0, 1, 2, 3, 4, 6, 7]), np.arange(7.0))
    # A new sequence at 3 and a missing period at 5: two breaks.
    np.testing.assert_array_equal(np.isnan(y), [0, 0, 0, 1, 0, 0, 1, 0, 0])
    np.testing.assert_array_equal(t[~np.isnan(t)], [0, 1, 2, 3, 4, 6, 7])


def test_too_short_data_is_refused(
    tiny_twin: TwinEnsemble, test_periods: PeriodData, tmp_path: Path
) -> None:
    with pytest.raises(ReportError, match="no run of 13 consecutive control periods"):
        write_twin_report(tiny_twin, test_periods.index(torch.arange(10)), tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_assimilation_files_are_read(tmp_path: Path) -> None:
    assert load_assimilation(tmp_path) is None
    synthetic_track().to_parquet(tmp_path / ASSIMILATION_TABLE)
    faults = {"faults": [{"kind": "coil_fouling", "start_h": 2.0, "duration_h": None}]}
    (tmp_path / ASSIMILATION_FAULTS).write_text(json.dumps(faults), encoding="utf-8")
    track = load_assimilation(tmp_path)
    assert track is not None
    assert track.parameters == ("coil_ua_mult", "chiller_eir_mult")
    assert track.faults == (FaultOnset("coil_fouling", 2.0),)
    std = track.std("coil_ua_mult")
    assert std is not None and np.allclose(std, 0.05)
    assert track.std("chiller_eir_mult") is None

    (tmp_path / ASSIMILATION_FAULTS).write_text('{"faults": [{"kind": "x"}]}', encoding="utf-8")
    with pytest.raises(ReportError, match=r"assimilation\.json: expected"):
        load_assimilation(tmp_path)
    (tmp_path / ASSIMILATION_FAULTS).unlink()
    synthetic_track().drop(columns="inlet_abs_error_open_c").to_parquet(
        tmp_path / ASSIMILATION_TABLE
    )
    with pytest.raises(ReportError, match=r"assimilation\.parquet: missing column"):
        load_assimilation(tmp_path)
