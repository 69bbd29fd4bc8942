"""Savings against the site's own control on a real historian: the counterfactual plant's
measured saving, the twin's estimate with its uncertainty (the only one a real site has),
over the periods a policy wrote, live and cumulative, in kWh, % and PUE."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from connectors.historian import Historian, Reading
from dashboards.pages.hall import savings_cards
from dashboards.savings import live_savings
from tests.dashboards.conftest import text_of

PERIOD_S = 300.0
H = PERIOD_S / 3600.0


def _fill(h: Historian, *, counterfactual: bool) -> None:
    rows: list[Reading] = []
    for k in range(12):
        t = 1000.0 + k * PERIOD_S
        rows += [
            Reading("kpi.cooling_power_kw", t, 200.0 + (10.0 if k == 11 else 0.0), "kW"),
            Reading("kpi.it_power_kw", t, 1000.0, "kW"),
            Reading("kpi.facility_power_kw", t, 1400.0, "kW"),
            # The twin at t forecasts the period ending at t + 300 s.
            Reading("twin.site.cooling_power_kw", t, 240.0, "kW"),
            Reading("twin.cooling_power_kw", t, 210.0, "kW"),
        ]
        if counterfactual:  # the reference plant's clock runs a few seconds apart
            rows.append(Reading("kpi.reference_cooling_power_kw", t + 7.0, 250.0, "kW"))
        if k >= 4:  # a policy writes from the fifth period on
            rows.append(Reading("ctl.supply_air_c", t, 22.0, "degC"))
    h.write(rows)


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Historian]:
    with Historian(tmp_path / "h.sqlite") as h:
        yield h


def test_the_counterfactual_plant_and_the_twins_estimate(store: Historian) -> None:
    _fill(store, counterfactual=True)
    measured, estimated = live_savings(store)
    assert (measured.baseline, measured.estimate) == ("counterfactual plant", False)
    total = measured.cumulative
    assert total.periods == 8
    assert total.baseline_kwh == pytest.approx(8 * 250.0 * H)
    assert total.actual_kwh == pytest.approx((7 * 200.0 + 210.0) * H)
    assert total.saved_pct == pytest.approx(100.0 * (2000.0 - 1610.0) / 2000.0)
    assert total.pue_actual == pytest.approx(1.4)
    assert total.pue_baseline == pytest.approx((8 * 1400.0 - 1610.0 + 2000.0) / 8000.0)
    assert measured.latest.periods == 1 and measured.latest.saved_pct == pytest.approx(16.0)
    assert measured.uncertainty_pct is None
    assert estimated.estimate and estimated.baseline == "twin's estimate (IPMVP Option D)"
    assert estimated.cumulative.baseline_kwh == pytest.approx(8 * 240.0 * H)
    # The twin forecast 210 kW: 10 kW off seven times, 0 once → RMS over 240 kW.
    rms = ((7 * 10.0**2) / 8) ** 0.5
    assert estimated.uncertainty_pct == pytest.approx(100.0 * rms / 240.0)
    text = text_of(savings_cards([measured, estimated]))
    assert "counterfactual plant" in text and "+19.5 % since live" in text
    assert "PUE 1.400 vs 1.449" in text  # measured against the counterfactual
    assert "≈ +16.1 ± 3.9 % since live" in text and "PUE 1.400 vs 1.439" in text
    assert "Saving = cooling energy" in text


def test_a_real_site_has_the_twins_estimate_only(store: Historian) -> None:
    _fill(store, counterfactual=False)
    found = live_savings(store)
    assert [s.baseline for s in found] == ["twin's estimate (IPMVP Option D)"]


def test_nothing_to_show_before_a_policy_writes(store: Historian) -> None:
    store.write([Reading("kpi.cooling_power_kw", t, 200.0) for t in (0.0, 300.0)])
    assert live_savings(store) == []
    assert "no policy has written yet" in text_of(savings_cards([]))
