"""The shadow page as plain functions over the shared test data: the candidate's would-be
setpoints beside what the site did, the twin's forecast under both, the summary's numbers,
and "Promote to live" with one or two operators' approvals."""

from __future__ import annotations

from typing import Any

import dash
import pytest

from connectors.historian import Event, Historian, Reading
from control import approval
from control.reservoir import Reservoir
from dashboards import shadow_view
from dashboards.app import page_for
from dashboards.context import AppContext
from dashboards.ids import ShadowIds
from dashboards.pages import approvals, shadow
from dashboards.shadow_view import (
    ForecastComparison,
    SetpointComparison,
    compare_forecasts,
    compare_setpoints,
    shadow_window,
)
from tests.dashboards.conftest import OPERATOR, VIEWER, Built, session_of, text_of

OLGA = session_of(OPERATOR, "operator")
OSCAR = session_of("oscar", "operator")
VICTOR = session_of(VIEWER, "viewer")
REF = "tr-candidate@1"
PERIODS = 6
OFFSET_C = 1.5
"""The candidate would run the supply air this much warmer than the site measured."""


def _into_shadow(data: Built) -> tuple[float, float]:
    """tr-candidate approved and in shadow; the live loop's shadow series for PERIODS
    periods of the test historian's last half hour. (start, end) of the window."""
    with Reservoir(data.reservoir) as res:
        approval.approve(res, REF, operator=OPERATOR, reason="KPIs checked")
        approval.promote(res, REF, operator=OPERATOR, reason="to shadow")
    start = data.newest_s - PERIODS * 300.0
    with Historian(data.historian) as hist:
        measured = hist.series(["supply_air_c"], since_s=start - 300.0)["supply_air_c"].dropna()
        hist.add_event(Event(start, "controller", "policy", f"loaded {REF} (shadow)"))
        rows: list[Reading] = []
        for k in range(PERIODS):
            t = start + 300.0 * k
            site = float(measured[measured.index <= t].iloc[-1])
            rows += [
                Reading("shadow.supply_air_c", t, site + OFFSET_C, "degC"),
                Reading("shadow.fan_speed_frac", t, 0.6, "frac"),
                Reading("shadow.economiser_enable", t, 0.0, "bool"),
                Reading("twin.shadow.cooling_power_kw", t, 100.0, "kW"),
                Reading("twin.cooling_power_kw", t, 110.0, "kW"),
            ]
        hist.write(rows)
    return start, start + 300.0 * (PERIODS - 1)


def test_no_policy_in_shadow_says_so(ctx: AppContext) -> None:
    cards, summary, figures, ref = shadow.refresh(ctx, VICTOR)
    assert "no policy has been in shadow yet" in text_of(cards)
    assert (summary, figures, ref) == ([], [], None)


def test_the_candidate_beside_the_site_and_the_twin(ctx: AppContext, data: Built) -> None:
    start, end = _into_shadow(data)
    cards, summary, figures, ref = shadow.refresh(ctx, VICTOR)  # a viewer sees it all
    assert ref == REF
    cards_text = text_of(cards)
    assert REF in cards_text and "still in shadow" in cards_text
    assert "0 of 1 (nobody yet)" in cards_text
    rows = {row[0]: row for row in shadow.summary_rows(*_comparisons(ctx, data))}
    supply = rows["supply air (°C)"]
    assert supply[1] == str(PERIODS)
    assert supply[4] == f"{OFFSET_C:.2f}"  # the mean difference, candidate − site
    assert rows["twin forecast: cooling power (kW)"][4] == "-10.00"
    assert rows["chilled water supply (°C)"][1] == "0"  # no shadow readings of it
    assert "shadow-summary-table" in str(summary)
    assert len(figures) == 7  # five setpoints, two forecasts
    supply_fig = figures[0].figure
    names = [t.name for t in supply_fig.data]
    assert names == [f"{REF} would have written", "TwinLoop wrote (live policy)", "site measured"]
    assert len(supply_fig.data[0].y) == PERIODS
    assert "no shadow readings" in str(figures[2].figure.layout.annotations[0].text)
    cooling = figures[5].figure
    assert [t.name for t in cooling.data][:2] == [
        f"twin forecast under {REF}",
        "twin forecast under what ran",
    ]
    with Historian(data.historian, readonly=True) as hist, Reservoir(data.reservoir) as res:
        window = shadow_window(hist, res.get(REF))
    assert window is not None and (window.start_s, window.end_s) == (start, end)


def _comparisons(
    ctx: AppContext, data: Built
) -> tuple[list[SetpointComparison], list[ForecastComparison]]:
    with Historian(data.historian, readonly=True) as hist, Reservoir(data.reservoir) as res:
        window = shadow_window(hist, res.get(REF))
        assert window is not None
        return compare_setpoints(hist, window), compare_forecasts(hist, window)


def test_the_window_ends_when_the_policy_goes_live(data: Built) -> None:
    start, _ = _into_shadow(data)
    with Historian(data.historian) as hist:
        hist.add_event(Event(start + 900.0, "controller", "policy", f"loaded {REF} (live)"))
    with Historian(data.historian, readonly=True) as hist, Reservoir(data.reservoir) as res:
        window = shadow_window(hist, res.get(REF))
    assert window is not None and not window.ongoing and window.end_s == start + 900.0


def test_a_viewer_cannot_promote(ctx: AppContext, data: Built) -> None:
    _into_shadow(data)
    message, reason, stamp = shadow.decide(ctx, VICTOR, REF, "looks fine")
    assert "refused" in text_of(message) and "operator" in text_of(message)
    assert reason is dash.no_update and stamp is dash.no_update
    with Reservoir(data.reservoir) as res:
        assert res.get(REF).state == "shadow"


def test_promote_needs_a_reason_and_a_policy_in_shadow(ctx: AppContext, data: Built) -> None:
    message, _, _ = shadow.decide(ctx, OLGA, "fixed-candidate@1", "go")
    assert "only a policy in shadow" in text_of(message)
    _into_shadow(data)
    message, _, _ = shadow.decide(ctx, OLGA, REF, "  ")
    assert "give a reason" in text_of(message)


def test_one_operator_promotes_to_live(ctx: AppContext, data: Built) -> None:
    _into_shadow(data)
    message, reason, _ = shadow.decide(ctx, OLGA, REF, "matched the site")
    assert text_of(message) == f"{REF} is now live (promote by {OPERATOR})"
    assert reason == ""
    with Reservoir(data.reservoir) as res:
        assert approval.in_control(res).ref == REF  # type: ignore[union-attr]


@pytest.fixture
def two_operators(ctx: AppContext, data: Built) -> None:
    ctx.users.add("oscar", "oscar-password-1", "operator")
    with Reservoir(data.reservoir) as res:
        approval.set_promotion_approvers(res, 2, actor="test")


@pytest.mark.usefixtures("two_operators")
def test_two_operators_first_approval_then_confirmation(ctx: AppContext, data: Built) -> None:
    _into_shadow(data)
    message, _, _ = shadow.decide(ctx, OLGA, REF, "matched the site")
    assert text_of(message) == (
        f"{REF} stays shadow: {OPERATOR}'s approval to go live is recorded (1 of 2); it goes "
        "live when a different operator confirms"
    )
    assert "1 of 2 (olga)" in text_of(shadow.refresh(ctx, OLGA)[0])
    decisions = text_of(approvals.refresh(ctx, OLGA)[3])  # the audit names it for what it is
    assert "stays shadow" in decisions and "approval 1 of 2 to go live: matched" in decisions
    message, _, _ = shadow.decide(ctx, OLGA, REF, "again")
    assert "olga has already approved" in text_of(message)
    message, _, _ = shadow.decide(ctx, OSCAR, REF, "agreed")
    assert text_of(message) == f"{REF} is now live (promote by oscar)"
    with Reservoir(data.reservoir) as res:
        last = res.history(REF)[-1]
    assert last.reason == "agreed (approved to go live by olga, oscar)"


def test_the_page_is_routed_and_only_an_operator_may_press_promote(ctx: AppContext) -> None:
    for session, disabled in ((VICTOR, True), (OLGA, False)):
        page = page_for(ctx, session, shadow.PATH)
        button = _find(page, str(ShadowIds.PROMOTE_BUTTON))
        assert button is not None and bool(button.disabled) is disabled
        dialog = _find(page, str(ShadowIds.PROMOTE))
        assert dialog is not None and "Promote the policy in shadow to live?" in dialog.message


def _find(component: Any, id_: str) -> Any:
    if getattr(component, "id", None) == id_:
        return component
    children = getattr(component, "children", None)
    for child in children if isinstance(children, list) else [children]:
        if child is not None and not isinstance(child, str) and (hit := _find(child, id_)):
            return hit
    return None


def test_a_window_older_than_the_newest_events_is_still_found(
    data: Built, monkeypatch: pytest.MonkeyPatch
) -> None:
    start, _ = _into_shadow(data)
    with Historian(data.historian) as hist:
        for k in range(5):
            hist.add_event(Event(start + 1.0 + k, "shield", "shield", f"clipped {k}"))
    monkeypatch.setattr(shadow_view, "EVENT_LIMIT", 3)
    with Historian(data.historian, readonly=True) as hist, Reservoir(data.reservoir) as res:
        window = shadow_window(hist, res.get(REF))
    assert window is not None and window.start_s == start
