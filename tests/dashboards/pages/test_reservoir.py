"""The reservoir page's callbacks on a real reservoir with real twin evaluations."""

from __future__ import annotations

import numpy as np
import pandas as pd
import plotly.graph_objects as go
import pytest

from control import approval
from control.reservoir import Reservoir
from dashboards.context import AppContext
from dashboards.pages import reservoir
from dashboards.reservoir_view import policy_rows, savings_pct
from tests.dashboards.conftest import CANDIDATES, Built, text_of


def test_table_lists_every_policy_with_savings(ctx: AppContext, data: Built) -> None:
    body, options = reservoir.overview(ctx)
    text = text_of(body)
    with Reservoir(data.reservoir) as res:
        records = res.list()
        rows = {r.ref: r for r in policy_rows(res)}
    assert [o["value"] for o in options] == [r.ref for r in records]
    for record in records:
        assert record.ref in text
    assert "saving vs site's own control" in text and "saving vs trim-and-respond@1" in text
    assert "saving vs fixed-setpoints@1" not in text  # the site's own control: one column
    assert "Saving = cooling energy" in text  # the one definition, under the table
    # tr-candidate runs trim-and-respond: its saving against the site's own control (fixed
    # setpoints) is the real difference of the two twin runs, against trim-and-respond zero.
    row = rows["tr-candidate@1"]
    with Reservoir(data.reservoir) as res:
        fixed = res.evaluations("fixed-setpoints")[0].kpis["cooling_kwh"]
        trim = res.evaluations("trim-and-respond")[0].kpis["cooling_kwh"]
    assert row.savings_vs_site_control_pct == pytest.approx((fixed - trim) / fixed * 100.0)
    assert row.savings_vs_baselines_pct == {"trim-and-respond@1": pytest.approx(0.0)}
    assert rows["fixed-setpoints@1"].savings_vs_site_control_pct is None  # itself


def test_savings_do_not_change_meaning_when_a_policy_goes_live(data: Built) -> None:
    with Reservoir(data.reservoir) as res:
        before = {r.ref: r.savings_vs_site_control_pct for r in policy_rows(res)}
        for state in ("approved", "shadow", "live"):
            res.transition("tr-candidate@1", state, actor="olga", reason="test")
        after = {r.ref: r.savings_vs_site_control_pct for r in policy_rows(res)}
    assert after == before
    assert after["fixed-setpoints@1"] is None and after["tr-candidate@1"] is not None


def test_savings_use_common_scenarios_only() -> None:
    mine = {"a": {"cooling_kwh": 90.0}, "b": {"cooling_kwh": 10.0}}
    theirs = {"a": {"cooling_kwh": 100.0}, "c": {"cooling_kwh": 1.0}}
    assert savings_pct(mine, theirs) == pytest.approx(10.0)
    assert savings_pct(mine, {"c": {"cooling_kwh": 1.0}}) is None


def test_detail_shows_evidence_and_plots(ctx: AppContext) -> None:
    note, body, plots, images = reservoir.detail(ctx, CANDIDATES[0])
    assert note == []
    text = text_of(body)
    for expected in (
        "tr-candidate@1",
        "pre_evaluated",
        "verified",
        "gate 1 passed on test",
        "Cooling energy in the twin against the site's own control, the baselines and the live",
        "fixed-setpoints@1 (kWh)",
    ):
        assert expected in text, expected
    assert isinstance(plots, go.Figure)
    assert [t.name for t in plots.data if t.showlegend is not False] == [
        "tropical-typical-week (twin)"
    ]
    captions = [figure.children[1].children for figure in images]
    assert "tropical-typical-week (twin): run.png" in captions, captions
    for figure in images:
        assert figure.children[0].src.startswith("data:image/png;base64,iVBOR")


@pytest.mark.parametrize("ref", ["ghost", "tr-candidate@7", "bad@ref@1"])
def test_unknown_policy_is_a_clear_message(ctx: AppContext, ref: str) -> None:
    note, body, _, images = reservoir.detail(ctx, ref)
    message = text_of(note)
    assert (
        "unknown policy" in message or "has no version 7" in message or "bad policy" in message
    ), message
    assert body == [] and images == []


def test_policy_comes_from_the_address() -> None:
    assert reservoir.policy_from_search("?policy=ppo%402") == "ppo@2"
    assert reservoir.policy_from_search("") is None


def test_report_plots_follow_the_stored_series(ctx: AppContext, data: Built) -> None:
    with Reservoir(data.reservoir) as res:
        evaluation = res.evaluations("tr-candidate@1")[0]
        plots = reservoir.report_plots(res, "tr-candidate@1")
    assert evaluation.report_dir is not None
    series = pd.read_parquet(evaluation.report_dir / "series.parquet")
    cooling, inlet = plots.data
    np.testing.assert_allclose(np.asarray(cooling.y, dtype=float), series["cooling_kwh"])
    np.testing.assert_allclose(np.asarray(inlet.y, dtype=float), series["max_inlet_c"])
    hours = np.asarray(cooling.x, dtype=float)
    assert np.isfinite(hours).all() and hours[0] == 0.0
    assert hours[-1] == pytest.approx(
        evaluation.kpis["duration_h"] * (len(series) - 1) / len(series)
    )


def test_the_page_opens_on_the_policy_in_control_or_the_newest(
    ctx: AppContext, data: Built
) -> None:
    """Without ?policy= the page is not half blank: it opens on the newest registered
    policy, and on the live one once a policy is in control."""
    with Reservoir(data.reservoir) as res:
        refs = {r.name: r.ref for r in res.list()}
    assert reservoir.default_policy(ctx) == refs[CANDIDATES[-1]]
    with Reservoir(data.reservoir) as res:
        live = refs[CANDIDATES[0]]
        approval.approve(res, live, operator="olga", reason="test")
        approval.promote(res, live, operator="olga", reason="shadow")
        approval.promote(res, live, operator="olga", reason="live")
    assert reservoir.default_policy(ctx) == live
