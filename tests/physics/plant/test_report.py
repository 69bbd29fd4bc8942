"""The run report: files written, HTML self-contained, PNGs valid."""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from physics import kpi
from physics.plant import report

STEP_S = 60.0
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def _frame(n: int = 360) -> pd.DataFrame:
    """Six hours at 1-minute steps; 4 pods × 3 racks with a warm afternoon."""
    rng = np.random.default_rng(1)
    t_h = np.arange(n) * STEP_S / 3600.0
    it = 800.0 + 100.0 * np.sin(2 * np.pi * t_h / 6.0)
    data: dict[str, np.ndarray] = {
        "time_h": t_h,
        "it_power_kw": it,
        "chiller_power_kw": 0.2 * it,
        "crah_fan_power_kw": np.full(n, 40.0),
        "chw_pump_power_kw": np.full(n, 20.0),
        "cw_pump_power_kw": np.full(n, 15.0),
        "tower_fan_power_kw": np.full(n, 10.0),
        "ups_loss_kw": 0.04 * it,
        "pdu_loss_kw": 0.01 * it,
        "transformer_loss_kw": np.full(n, 5.0),
        "lighting_kw": np.full(n, 5.0),
        "aux_kw": np.full(n, 3.0),
        "water_use_kg_s": np.full(n, 0.4),
        "supply_air_c": 20.0 + 0.1 * rng.standard_normal(n),
        "return_air_c": 32.0 + 0.2 * rng.standard_normal(n),
        "chw_supply_c": np.full(n, 12.0),
        "chw_return_c": np.full(n, 18.0),
        "outdoor_dry_bulb_c": 25.0 + 5.0 * np.sin(2 * np.pi * t_h / 24.0),
        "sp.crah_supply_air_temp_c": np.where(t_h < 3.0, 20.0, 21.0),
    }
    facility = sum(v for k, v in data.items() if k.endswith("_kw") and k != "it_power_kw")
    data["facility_power_kw"] = it + facility
    for pod in range(4):
        for rack in range(3):
            hot = 2.0 * np.sin(np.pi * t_h / 6.0) * (rack + 1)
            data[f"rack_inlet_c.{pod}.{rack:02d}"] = 23.0 + hot + 0.2 * rng.standard_normal(n)
    return pd.DataFrame(data)


@pytest.fixture(scope="module")
def written(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    frame = _frame()
    kpis = kpi.compute_kpis(frame, STEP_S)
    return report.write_report(frame, kpis, tmp_path_factory.mktemp("run") / "out", "Run ÄB-7")


def test_all_files_are_written(written: list[Path]) -> None:
    assert [p.name for p in written] == ["report.html", "temperatures.png", "power.png", "pue.png"]
    assert all(p.is_file() for p in written)


def test_html_is_self_contained(written: list[Path]) -> None:
    page = written[0].read_text(encoding="utf-8")
    assert "<title>Run ÄB-7</title>" in page
    assert "Plotly.newPlot" in page
    sources = re.findall(r"<script[^>]*\bsrc\s*=\s*['\"]?([^'\" >]+)", page, flags=re.IGNORECASE)
    assert sources == []  # plotly.js is inlined, nothing is fetched (no cdn.plot.ly, no https)
    assert "<link" not in page
    assert len(page) > 1_000_000  # the inlined plotly.js bundle
    assert "rci_hi_percent" in page and "actuator_travel.crah_supply_air_temp_c" in page


def test_pngs_are_valid_and_non_trivial(written: list[Path]) -> None:
    for path in written[1:]:
        content = path.read_bytes()
        assert content[:8] == PNG_MAGIC
        assert len(content) > 10_000


def test_series_decimation_and_rolling_pue() -> None:
    n = 3 * report.MAX_PLOT_POINTS + 7
    frame = pd.DataFrame(
        {
            "it_power_kw": np.full(n, 1000.0),
            "facility_power_kw": np.where(np.arange(n) < n // 2, 1300.0, 1500.0),
            "rack_inlet_c.0.00": np.full(n, 24.0),
        }
    )
    floats = [f.name for f in dataclasses.fields(kpi.KpiReport) if f.type == "float"]
    values: dict[str, Any] = {**dict.fromkeys(floats, 0.0), "duration_h": n * STEP_S / 3600.0}
    kpis = kpi.KpiReport(**values)
    series = report.report_series(frame, kpis)
    assert series.time_h.size <= report.MAX_PLOT_POINTS
    assert series.pue_1h is not None
    assert series.pue_1h[0] == pytest.approx(1.3)
    assert series.pue_1h[-1] == pytest.approx(1.5)
    assert series.time_h[1] == pytest.approx(4 * STEP_S / 3600.0)  # no time_h: from step
