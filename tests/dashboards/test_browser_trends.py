"""The hall's trends in real headless Chromium, as tests/dashboards/test_browser.py serves
them: a preset range, a zoom on one chart that the others follow, an absolute range typed
wrong then right, and a click on the heat map that drills into a pod's racks. A screenshot
is kept beside the other pages' ($TWINLOOP_TEST_ARTIFACTS, default
./test-artifacts/screenshots/)."""

from __future__ import annotations

from typing import Any

import pytest
from selenium.webdriver.common.action_chains import ActionChains
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webdriver import WebDriver

from dashboards.ids import HallIds
from tests.dashboards.conftest import OPERATOR, OPERATOR_PASSWORD
from tests.dashboards.test_browser import (  # the same fixtures and helpers
    Site,
    _login,
    _shot,
    _text,
    _wait,
    _wait_plotted,
    _wait_text,
    browser,
    site,
)

pytestmark = pytest.mark.integration
__all__ = ["browser", "site"]

_PLOT = "document.querySelector('#' + arguments[0] + ' .js-plotly-plot')"


def _js(driver: WebDriver, body: str, *args: Any) -> Any:
    return driver.execute_script(f"const plot = {_PLOT}; {body}", *args)


def _x_range(driver: WebDriver, graph: HallIds) -> list[str] | None:
    """The x-range the chart shows now (its full layout: what Plotly drew)."""
    found = _js(
        driver,
        "return plot && plot._fullLayout && plot._fullLayout.xaxis "
        "? plot._fullLayout.xaxis.range : null;",
        str(graph),
    )
    return None if found is None else [str(v).replace("T", " ") for v in found]


def _x_span(driver: WebDriver, graph: HallIds) -> list[str]:
    """The first and last x value of the chart's first trace (site-local, "YYYY-MM-DD hh:mm")."""
    return [
        str(v).replace("T", " ")
        for v in _js(
            driver, "const x = plot.data[0].x; return [x[0], x[x.length - 1]];", str(graph)
        )
    ]


def _preset(driver: WebDriver, label: str) -> None:
    driver.find_element(
        By.XPATH, f"//*[@id='{HallIds.WINDOW}']//label[contains(normalize-space(.), '{label}')]"
    ).click()


def _click_cell(driver: WebDriver, rack: int, pod: int) -> None:
    """A real mouse click on the heat map's cell (category indices on both axes)."""
    where = _js(
        driver,
        "const xa = plot._fullLayout.xaxis, ya = plot._fullLayout.yaxis;"
        "const r = plot.getBoundingClientRect();"
        "return [xa._offset + xa.l2p(arguments[1]) - r.width / 2,"
        "        ya._offset + ya.l2p(arguments[2]) - r.height / 2];",
        str(HallIds.HEATMAP),
        rack,
        pod,
    )
    element = driver.find_element(By.CSS_SELECTOR, f"#{HallIds.HEATMAP} .js-plotly-plot")
    chain = ActionChains(driver).move_to_element_with_offset(element, int(where[0]), int(where[1]))
    chain.pause(0.3).click().perform()


def test_a_preset_a_shared_zoom_and_a_pod_drill_down(browser: WebDriver, site: Site) -> None:
    _login(browser, site.url, OPERATOR, OPERATOR_PASSWORD)
    browser.get(site.url + "/")
    charts = (HallIds.TEMPERATURES, HallIds.POWER, HallIds.PUE, HallIds.SETPOINTS)
    for graph in charts:
        _wait_plotted(browser, graph)
    _wait_text(browser, HallIds.RANGE_MESSAGE, "showing last 6 h")
    full = _x_span(browser, HallIds.TEMPERATURES)
    # The last hour: every chart starts an hour before the newest reading (02:59:01).
    _preset(browser, "last 1 h")
    _wait_text(browser, HallIds.RANGE_MESSAGE, "showing last 1 h")
    _wait(
        browser,
        "the last hour on every chart",
        lambda d: all(_x_span(d, g)[0] >= "1962-07-01 01:59" for g in charts[:3]),
    )
    assert full[0] < "1962-07-01 00:01"
    # A zoom on the temperatures (as a drag reports it) is followed by the other charts.
    zoom = ["1962-07-01 02:15:00", "1962-07-01 02:45:00"]
    _js(browser, "Plotly.relayout(plot, {'xaxis.range': arguments[1]});", str(charts[0]), zoom)
    for graph in charts[1:]:
        _wait(
            browser,
            f"#{graph} zoomed with the temperatures",
            lambda d, g=graph: (_x_range(d, g) or [""])[0].startswith("1962-07-01 02:15"),
        )
    assert (_x_range(browser, HallIds.SETPOINTS) or ["", ""])[1].startswith("1962-07-01 02:45")
    # An absolute range typed the wrong way round is explained; then a valid one is drawn.
    start = browser.find_element(By.ID, HallIds.RANGE_START)
    end = browser.find_element(By.ID, HallIds.RANGE_END)
    start.send_keys("1962-07-01 01:00\n")
    end.send_keys("1962-07-01 00:30\n")
    _wait_text(browser, HallIds.RANGE_MESSAGE, "is not after the start")
    assert "Traceback" not in _text(browser, HallIds.RANGE_MESSAGE)
    end.clear()
    end.send_keys("1962-07-01 01:30\n")
    _wait_text(browser, HallIds.RANGE_MESSAGE, "showing 1962-07-01 01:00:00 UTC-05:00 to")
    _wait(
        browser,
        "the absolute range on the temperatures",
        lambda d: (
            _x_span(d, HallIds.TEMPERATURES)[0].startswith("1962-07-01 01:00")
            and _x_span(d, HallIds.TEMPERATURES)[1].startswith("1962-07-01 01:30")
        ),
    )
    _shot(browser, "hall-range")
    # A click on pod 2's row of the heat map drills into its 25 racks, the limit drawn.
    _click_cell(browser, 7, 2)
    _wait(
        browser,
        "pod 2's racks",
        lambda d: (
            _js(d, "return plot && plot.data ? plot.data.length : 0;", str(HallIds.DRILL)) == 25
        ),
    )
    assert "pod 2" in _text(browser, HallIds.POD)
    title = _js(browser, "return plot.layout.title.text;", str(HallIds.DRILL))
    assert "pod 2, every rack" in title
    assert "inlet limit 27 °C" in _text(browser, HallIds.DRILL)
    browser.execute_script(
        "document.getElementById(arguments[0]).scrollIntoView();", str(HallIds.SETPOINTS)
    )
    _shot(browser, "hall-trends")
    # One rack of the pod, from the rack dropdown: its trend alone.
    browser.find_element(By.ID, HallIds.RACK).click()
    _wait(
        browser,
        "the pod's racks listed",
        lambda d: d.find_elements(By.XPATH, "//*[normalize-space(text())='rack 07']"),
    )
    browser.find_element(By.XPATH, "//*[normalize-space(text())='rack 07']").click()
    _wait(
        browser,
        "rack 07 alone",
        lambda d: (
            _js(d, "return plot.data.length === 1 ? plot.data[0].name : '';", str(HallIds.DRILL))
            == "rack 07"
        ),
    )
    assert "rack_inlet_c.2.07 (pod 2)" in _js(
        browser, "return plot.layout.title.text;", str(HallIds.DRILL)
    )
