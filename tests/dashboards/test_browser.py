"""The dashboard end to end in real headless Chromium (Selenium + Debian's chromedriver),
served on a free loopback port in a thread: log in, every page renders its data, decisions
go through and bad ones are refused with a message, a viewer cannot act, an expired session
is told so. A screenshot of each page is kept in $TWINLOOP_TEST_ARTIFACTS (default
./test-artifacts/screenshots/)."""

from __future__ import annotations

import datetime as dt
import json
import os
import shutil
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from dash import Dash
from selenium import webdriver
from selenium.common.exceptions import (
    NoAlertPresentException,
    NoSuchElementException,
    StaleElementReferenceException,
    TimeoutException,
)
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webdriver import WebDriver
from selenium.webdriver.support.ui import WebDriverWait

from connectors.historian import Event, Historian, Reading
from control import approval
from control.alarm_loop import AlarmLoop
from control.alarms import AlarmConfig
from control.reservoir import Reservoir
from dashboards.app import create_app
from dashboards.context import AppContext
from dashboards.ids import (
    AlarmIds,
    ApprovalIds,
    FrameIds,
    HallIds,
    ReservoirIds,
    ShadowIds,
    TwinIds,
)
from dashboards.server import DashboardServer
from dashboards.session import CSRF_COOKIE, SESSION_COOKIE
from dashboards.site_time import SiteClock, WallAnchor
from tests.dashboards.conftest import (
    HOT_POINT,
    OPERATOR,
    OPERATOR_PASSWORD,
    VIEWER,
    VIEWER_PASSWORD,
    Built,
    callback_request,
    dash_request,
)

pytestmark = pytest.mark.integration

CHROMIUM, CHROMEDRIVER = "/usr/bin/chromium", "/usr/bin/chromedriver"
MIAMI = dt.timezone(dt.timedelta(hours=-5))
FLAGS = (
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
    "--window-size=1400,2000",
)
WAIT_S = 20.0
FORGE = """
const done = arguments[arguments.length - 1];
const token = document.cookie.split('; ').find(c => c.startsWith('_csrf_token=')).split('=')[1];
fetch('/_dash-update-component', {method: 'POST', body: arguments[0],
      headers: {'Content-Type': 'application/json', 'X-CSRFToken': token}})
  .then(r => r.text()).then(done, e => done(String(e)));
"""


def _artifacts() -> Path:
    folder = Path(os.environ.get("TWINLOOP_TEST_ARTIFACTS") or "test-artifacts/screenshots")
    folder.mkdir(parents=True, exist_ok=True)
    return folder


@pytest.fixture(scope="module")
def browser() -> Iterator[WebDriver]:
    if not (Path(CHROMIUM).is_file() and Path(CHROMEDRIVER).is_file()):
        pytest.skip("Debian's chromium and chromedriver are not installed")
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in FLAGS:
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    try:
        yield driver
    finally:
        driver.quit()


@pytest.fixture(scope="module")
def site(built: Built, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Site]:
    """The app over a private copy of the data, served on localhost (a free port)."""
    base = tmp_path_factory.mktemp("browser-site")
    shutil.copy2(built.historian, base / "historian.sqlite")
    shutil.copytree(built.reservoir, base / "reservoir")
    shutil.copy2(built.users, base / "users.json")
    data = Built(base / "historian.sqlite", base / "reservoir", base / "users.json", built.newest_s)
    # As in the demo: the emulated plant's clock on its weather year, in Miami's zone, and
    # decisions placed on it through the emulator's pace (300x).
    anchor = WallAnchor(plant_s=built.newest_s, wall_s=time.time(), speed=300.0)
    clock = SiteClock.plant(1962, MIAMI, anchor)
    app = create_app(data.historian, data.reservoir, data.users, refresh_s=2.0, clock=clock)
    # The live service's alarm evaluation, on its own connection (the dashboard evaluates
    # none); the test's plant stands still, so no feed alarm within the module's minutes.
    service_store = Historian(data.historian)
    service = AlarmLoop(service_store, AlarmConfig(period_s=0.5, feed_silent_after_s=3600.0))
    service.start()
    try:
        with DashboardServer(app, "127.0.0.1", 0) as server:
            yield Site(server.url.replace("127.0.0.1", "localhost"), data, app)
    finally:
        service.stop()
        service_store.close()


@dataclass(frozen=True)
class Site:
    url: str
    data: Built
    app: Dash


def _wait(driver: WebDriver, what: str, check: Callable[[WebDriver], object]) -> None:
    try:
        # A page being replaced (navigation, a re-render) leaves stale elements: look again.
        WebDriverWait(
            driver,
            WAIT_S,
            poll_frequency=0.2,
            ignored_exceptions=(NoSuchElementException, StaleElementReferenceException),
        ).until(lambda d: check(d))
    except TimeoutException:
        _shot(driver, "failure")
        pytest.fail(f"timed out waiting for {what}; page text: {_body(driver)[:1500]}")


def _body(driver: WebDriver) -> str:
    return str(driver.find_element(By.TAG_NAME, "body").text)


def _text(driver: WebDriver, element_id: str) -> str:
    found = driver.find_elements(By.ID, element_id)
    return str(found[0].text) if found else ""


def _wait_text(driver: WebDriver, element_id: str, needle: str) -> None:
    _wait(driver, f"{needle!r} in #{element_id}", lambda d: needle in _text(d, element_id))


def _wait_plotted(driver: WebDriver, graph_id: str) -> None:
    _wait(driver, f"#{graph_id} drawn", lambda d: _plotted(d, graph_id))


def _shot(driver: WebDriver, name: str) -> Path:
    path = _artifacts() / f"{name}.png"
    driver.save_screenshot(str(path))
    return path


def _login(driver: WebDriver, url: str, user: str, password: str, *, ok: bool = True) -> None:
    driver.get(url + "/logout")
    driver.find_element(By.ID, "username").send_keys(user)
    driver.find_element(By.ID, "password").send_keys(password)
    driver.find_element(By.ID, "login-submit").click()
    # The form's POST and its redirect must finish before the next navigation, or that
    # redirect can land after it (a race seen on a busy machine).
    if ok:
        _wait(driver, f"{user} logged in", lambda d: "Log out" in _body(d))


def _alert(driver: WebDriver) -> object:
    """The open JavaScript dialog, or None."""
    try:
        return driver.switch_to.alert
    except NoAlertPresentException:
        return None


def _plotted(driver: WebDriver, graph_id: str) -> bool:
    """Whether Plotly has drawn the graph with at least one trace."""
    script = (
        "const plot = document.querySelector(arguments[0] + ' .js-plotly-plot');"
        "return plot !== null && Array.isArray(plot.data) ? plot.data.length : 0;"
    )
    return int(driver.execute_script(script, f"#{graph_id}")) > 0


def test_login_and_the_live_hall(browser: WebDriver, site: Site) -> None:
    url = site.url
    browser.get(url + "/")
    _wait(browser, "the login page", lambda d: d.find_elements(By.ID, "login-submit"))
    _login(browser, url, OPERATOR, "not-the-password", ok=False)
    _wait_text(browser, "login-error", "wrong user name or password")
    _shot(browser, "login")
    _login(browser, url, OPERATOR, OPERATOR_PASSWORD)
    _wait_text(browser, HallIds.SUMMARY, "hottest rack inlet")
    for graph in (HallIds.HEATMAP, HallIds.TEMPERATURES, HallIds.POWER, HallIds.PUE):
        _wait_plotted(browser, graph)
    assert HOT_POINT in _text(browser, HallIds.SUMMARY)
    assert HOT_POINT in _text(browser, HallIds.ALARMS)
    assert "outdoor_rel_hum_frac" in _text(browser, HallIds.STALE)
    assert "olga (operator)" in _text(browser, FrameIds.USER)
    # One time base: site-local dates and times on every card, table and axis.
    assert "1962-07-01 02:59:01 UTC-05:00" in _text(browser, HallIds.SUMMARY)
    assert "1962-07-01" in _text(browser, HallIds.ALARMS)
    assert "UTC-05:00" in _text(browser, FrameIds.TIME_BASE)
    assert "plant hour" not in _body(browser)
    assert "supply_air_c\nTwinLoop" in _text(browser, HallIds.HOLDERS).replace(" ", "\n")
    # Savings against the counterfactual plant (a quarter more cooling): +20 %, one definition.
    assert "saving vs site's own control — counterfactual plant" in _text(browser, HallIds.SUMMARY)
    assert "+20.0 % since live" in _text(browser, HallIds.SUMMARY)
    assert "Saving = cooling energy" in _text(browser, HallIds.SUMMARY)
    axis = browser.execute_script(
        "return document.querySelector('#' + arguments[0] + ' .js-plotly-plot').layout"
        ".xaxis.title.text;",
        str(HallIds.TEMPERATURES),
    )
    assert axis == "emulated plant time (UTC-05:00)"
    _shot(browser, "hall")
    # Live: a new reading in the historian shows up without reloading the page.
    with Historian(site.data.historian) as hist:
        hist.write([Reading("rack_inlet_c.3.11", site.data.newest_s + 120.0, 29.9, "degC")])
    _wait_text(browser, HallIds.SUMMARY, "29.9 °C (rack_inlet_c.3.11)")
    # ... and the live service raises its alarm, with no page's help.
    _wait_text(browser, HallIds.ALARMS, "rack_inlet_c.3.11 at 29.9 °C")
    assert "alarms are evaluated by the live service; newest evaluation at" in _text(
        browser, HallIds.ALARMS
    )


def test_twin_page(browser: WebDriver) -> None:
    browser.find_element(By.ID, "nav-twin").click()
    _wait_plotted(browser, TwinIds.COMPARE)
    _wait_text(browser, TwinIds.SUMMARY, "median |error|")
    _wait_plotted(browser, TwinIds.PARAMETERS)
    assert "ua_scale" in _text(browser, TwinIds.SUMMARY)
    _shot(browser, "twin")


def test_reservoir_page(browser: WebDriver, site: Site) -> None:
    url = site.url
    browser.get(url + "/reservoir?policy=tr-candidate@1")
    _wait_text(browser, ReservoirIds.TABLE, "saving vs site's own control")
    _wait_text(browser, ReservoirIds.DETAIL, "verified")
    _wait_plotted(browser, ReservoirIds.PLOTS)
    _wait(
        browser,
        "the report image",
        lambda d: d.find_elements(By.CSS_SELECTOR, f"#{ReservoirIds.IMAGES} img"),
    )
    _shot(browser, "reservoir")
    browser.get(url + "/reservoir?policy=ghost@1")
    _wait_text(browser, ReservoirIds.NOTICE, "unknown policy 'ghost'")
    assert _text(browser, ReservoirIds.DETAIL) == ""


def _decide(driver: WebDriver, button: ApprovalIds, reason: str) -> None:
    box = driver.find_element(By.ID, ApprovalIds.REASON)
    box.clear()
    if reason:
        box.send_keys(reason)
    if button == ApprovalIds.PROMOTE:  # a promotion asks first: accept
        driver.find_element(By.ID, ApprovalIds.PROMOTE_BUTTON).click()
        _wait(driver, "the confirmation", lambda d: _alert(d) is not None)
        assert "Promote the chosen policy one step?" in driver.switch_to.alert.text
        driver.switch_to.alert.accept()
        return
    driver.find_element(By.ID, button).click()


def test_operator_decides_and_rolls_back(browser: WebDriver, site: Site) -> None:
    url, data = site.url, site.data
    browser.get(url + "/approvals?policy=tr-candidate@1")
    _wait_text(browser, ApprovalIds.PENDING, "tr-candidate@1")
    _wait_text(browser, ApprovalIds.WRITES, "outside the envelope")
    _decide(browser, ApprovalIds.APPROVE, "")
    _wait_text(browser, ApprovalIds.MESSAGE, "approve refused: give a reason")
    with Reservoir(data.reservoir) as res:
        assert res.get("tr-candidate@1").state == "pre_evaluated"
    _decide(browser, ApprovalIds.APPROVE, "twin evidence holds")
    _wait_text(browser, ApprovalIds.MESSAGE, "tr-candidate@1 is now approved (approve by olga)")
    _wait_text(browser, ApprovalIds.DECISIONS, "twin evidence holds")
    # The decisions (wall clock) and the setpoint writes (plant clock) on one time base.
    assert "1962-07-0" in _text(browser, ApprovalIds.DECISIONS)
    assert "1962-07-01" in _text(browser, ApprovalIds.WRITES)
    assert "(UTC)" not in _body(browser) and "wall clock" not in _body(browser)
    _shot(browser, "approvals")
    _decide(browser, ApprovalIds.PROMOTE, "to shadow")
    _wait_text(browser, ApprovalIds.MESSAGE, "is now shadow")
    _decide(browser, ApprovalIds.PROMOTE, "shadow matched the twin")
    _wait_text(browser, ApprovalIds.MESSAGE, "is now live")
    _wait_text(browser, ApprovalIds.CONTROL, "tr-candidate@1")
    # A rollback asks first: dismissed, nothing happens; accepted, it goes through.
    box = browser.find_element(By.ID, ApprovalIds.REASON)
    box.clear()
    box.send_keys("inlets rising")
    browser.find_element(By.ID, ApprovalIds.ROLLBACK_BUTTON).click()
    _wait(browser, "the confirmation", lambda d: _alert(d) is not None)
    alert = browser.switch_to.alert
    assert "Roll back now?" in alert.text and "at safe rates" in alert.text
    alert.dismiss()
    time.sleep(1.0)
    with Reservoir(data.reservoir) as res:
        assert res.get("tr-candidate@1").state == "live"
    browser.find_element(By.ID, ApprovalIds.ROLLBACK_BUTTON).click()
    _wait(browser, "the confirmation", lambda d: _alert(d) is not None)
    browser.switch_to.alert.accept()
    _wait_text(browser, ApprovalIds.MESSAGE, "rolled back by olga")
    _wait_text(browser, ApprovalIds.CONTROL, "the site's own control")
    with Reservoir(data.reservoir) as res:
        history = res.history("tr-candidate@1")
    assert [(h.to_state, h.actor) for h in history[-4:]] == [
        ("approved", "olga"),
        ("shadow", "olga"),
        ("live", "olga"),
        ("rolled_back", "olga"),
    ]
    _shot(browser, "approvals-after-rollback")


def test_a_viewer_cannot_act(browser: WebDriver, site: Site) -> None:
    url, data = site.url, site.data
    _login(browser, url, VIEWER, VIEWER_PASSWORD)
    _wait_text(browser, FrameIds.USER, "victor (viewer)")
    browser.get(url + "/approvals?policy=fixed-candidate@1")
    _wait_text(browser, ApprovalIds.PENDING, "fixed-candidate@1")
    assert "victor is a viewer" in _body(browser)
    for button in (
        ApprovalIds.APPROVE,
        ApprovalIds.REJECT,
        ApprovalIds.PROMOTE_BUTTON,
        ApprovalIds.ROLLBACK_BUTTON,
    ):
        assert not browser.find_element(By.ID, button).is_enabled()
    # A viewer posting the reject callback from the page's own session (as from the browser's
    # console, with the CSRF token of the cookie): the server refuses it all the same.
    body = callback_request(site.app, "fixed-candidate@1", "forged", ApprovalIds.REJECT)
    answer = browser.execute_async_script(FORGE, json.dumps(body))
    assert "victor is a viewer: only an operator may reject policies" in answer
    with Reservoir(data.reservoir) as res:
        assert res.get("fixed-candidate@1").state == "pre_evaluated"
    _shot(browser, "approvals-viewer")


def test_alarms_are_acknowledged_and_shelved(browser: WebDriver, site: Site) -> None:
    url, key = site.url, f"inlet:{HOT_POINT}"
    _login(browser, url, OPERATOR, OPERATOR_PASSWORD)
    browser.get(url + f"/alarms?alarm={key}")
    _wait_text(browser, AlarmIds.STANDING, key)
    standing = _text(browser, AlarmIds.STANDING)
    # Most severe first: the watchdog's trip (critical), then the hot racks (high).
    assert standing.index("watchdog:trip") < standing.index(key)
    assert "active, unacknowledged" in standing and "1962-07-01" in standing
    assert "fallback" not in standing  # an event, not an alarm
    _wait_text(browser, AlarmIds.COUNTS, "critical")
    _wait_text(browser, AlarmIds.EVALUATION, "alarms are evaluated by the live service")
    _shot(browser, "alarms")
    browser.find_element(By.ID, AlarmIds.ACK).click()
    _wait_text(browser, AlarmIds.MESSAGE, f"{key} acknowledged by {OPERATOR}")
    _wait_text(browser, AlarmIds.STANDING, f"{OPERATOR}, 1962-07-01")
    browser.find_element(By.ID, AlarmIds.SHELVE).click()
    _wait_text(browser, AlarmIds.MESSAGE, "shelve refused: give a reason")
    browser.find_element(By.ID, AlarmIds.REASON).send_keys("blanking panel missing, ticket 4711")
    browser.find_element(By.ID, AlarmIds.SHELVE).click()
    _wait_text(browser, AlarmIds.MESSAGE, f"{key} shelved for 1 h by {OPERATOR}")
    _wait_text(browser, AlarmIds.SHELVED, "blanking panel missing, ticket 4711")
    _wait(
        browser, "the shelved alarm off the list", lambda d: key not in _text(d, AlarmIds.STANDING)
    )
    history = _text(browser, AlarmIds.HISTORY)
    assert f"{key} shelve high {OPERATOR}" in history and f"{key} ack high {OPERATOR}" in history
    with Historian(site.data.historian, readonly=True) as hist:
        actions = [(r.action, r.actor) for r in hist.alarm_records(key=key)]
    assert actions[-2:] == [("ack", OPERATOR), ("shelve", OPERATOR)]
    _shot(browser, "alarms-acknowledged-and-shelved")


def test_a_viewer_cannot_answer_alarms(browser: WebDriver, site: Site) -> None:
    url = site.url
    _login(browser, url, VIEWER, VIEWER_PASSWORD)
    browser.get(url + "/alarms?alarm=watchdog:trip")
    _wait_text(browser, AlarmIds.STANDING, "watchdog:trip")
    assert "victor is a viewer" in _body(browser)
    for button in (AlarmIds.ACK, AlarmIds.SHELVE, AlarmIds.UNSHELVE):
        assert not browser.find_element(By.ID, button).is_enabled()
    values = {AlarmIds.ACK: 1, AlarmIds.CHOSEN: ["watchdog:trip"], AlarmIds.HOURS: 1.0}
    body = dash_request(site.app, AlarmIds.MESSAGE, values, AlarmIds.ACK)
    answer = browser.execute_async_script(FORGE, json.dumps(body))
    assert "victor is a viewer: only an operator may acknowledge alarms" in answer
    with Historian(site.data.historian, readonly=True) as hist:
        assert all(r.actor != VIEWER for r in hist.alarm_records())
    _shot(browser, "alarms-viewer")


def test_an_expired_session_is_told_so(browser: WebDriver, site: Site) -> None:
    data = site.data
    app = create_app(
        data.historian,
        data.reservoir,
        data.users,
        session_ttl_s=60.0,
        refresh_s=1.0,
        secret_file=data.users.parent / "short.secret",
    )
    context = app.server.extensions["twinloop_dashboard"]
    assert isinstance(context, AppContext)
    clock = [time.time()]
    context.now_s = lambda: clock[0]  # type: ignore[method-assign]
    with DashboardServer(app, "127.0.0.1", 0) as server:  # another host name: own cookies
        url = server.url
        _login(browser, url, OPERATOR, OPERATOR_PASSWORD)
        browser.get(url + "/approvals?policy=fixed-candidate@1")
        _wait_text(browser, ApprovalIds.PENDING, "fixed-candidate@1")
        clock[0] += 61.0  # the session's minute is up (the app's clock: no sleep)
        _wait_text(browser, FrameIds.SESSION_NOTICE, "your session has expired")
        _decide(browser, ApprovalIds.REJECT, "too late")
        _wait_text(browser, ApprovalIds.MESSAGE, "your session has expired; log in again")
        with Reservoir(data.reservoir) as res:
            assert res.get("fixed-candidate@1").state == "pre_evaluated"
        _shot(browser, "session-expired")
        browser.get(url + "/approvals")
        _wait(browser, "the login page", lambda d: d.find_elements(By.ID, "login-info"))
        assert "Your session has expired" in _text(browser, "login-info")


FORGE_STATUS = """
const done = arguments[arguments.length - 1];
const found = document.cookie.split('; ').find(c => c.startsWith('_csrf_token='));
fetch('/_dash-update-component', {method: 'POST', body: arguments[0],
      headers: {'Content-Type': 'application/json',
                'X-CSRFToken': found ? found.split('=')[1] : ''}})
  .then(r => r.text().then(t => r.status + ' ' + t)).then(done, e => done(String(e)));
"""


def test_logout_ends_the_session_even_for_a_copied_cookie(browser: WebDriver, site: Site) -> None:
    url, data = site.url, site.data
    _login(browser, url, OPERATOR, OPERATOR_PASSWORD)
    browser.get(url + "/approvals?policy=fixed-candidate@1")
    _wait_text(browser, ApprovalIds.PENDING, "fixed-candidate@1")
    copied = {c["name"]: c["value"] for c in browser.get_cookies()}
    assert set(copied) >= {SESSION_COOKIE, CSRF_COOKIE}
    browser.find_element(By.ID, "nav-logout").click()
    _wait(
        browser, "the logged-out notice", lambda d: "You have logged out" in _text(d, "login-info")
    )
    _shot(browser, "logged-out")
    # The cookies copied before the logout, put back (as someone who copied them would).
    for name in (SESSION_COOKIE, CSRF_COOKIE):
        browser.add_cookie({"name": name, "value": copied[name], "path": "/"})
    browser.get(url + "/approvals?policy=fixed-candidate@1")
    _wait(browser, "the login page", lambda d: "That session has ended" in _text(d, "login-info"))
    assert "/login?" in browser.current_url and not browser.find_elements(By.ID, "nav-logout")
    _shot(browser, "logout-cookie-reused")
    body = callback_request(site.app, "fixed-candidate@1", "replayed", ApprovalIds.REJECT)
    answer = browser.execute_async_script(FORGE_STATUS, json.dumps(body))
    assert answer.startswith("401 ") and "this session was logged out" in answer, answer
    with Reservoir(data.reservoir) as res:
        assert res.get("fixed-candidate@1").state == "pre_evaluated"


def test_reasons_are_bounded_and_long_words_wrap(browser: WebDriver, site: Site) -> None:
    url, data = site.url, site.data
    _login(browser, url, OPERATOR, OPERATOR_PASSWORD)
    browser.get(url + "/approvals?policy=fixed-candidate@1")
    _wait_text(browser, ApprovalIds.PENDING, "fixed-candidate@1")
    # Over the limit from outside the page: refused, naming the limit.
    body = callback_request(site.app, "fixed-candidate@1", "w" * 501, ApprovalIds.REJECT)
    answer = browser.execute_async_script(FORGE_STATUS, json.dumps(body))
    assert "the reason has 501 characters; at most 500 are kept" in answer, answer[:300]
    with Reservoir(data.reservoir) as res:
        assert res.get("fixed-candidate@1").state == "pre_evaluated"
    # The box takes no more than the limit; a 500-character word wraps in the audit.
    word = "unbroken" * 63  # 504 characters typed, 500 kept
    _decide(browser, ApprovalIds.REJECT, word)
    _wait_text(browser, ApprovalIds.MESSAGE, "fixed-candidate@1 is now rejected")
    _wait_text(browser, ApprovalIds.DECISIONS, word[:60])
    with Reservoir(data.reservoir) as res:
        assert res.history("fixed-candidate@1")[-1].reason == word[:500]
    wide = browser.execute_script(
        "return [document.documentElement.scrollWidth, window.innerWidth];"
    )
    assert wide[0] <= wide[1], f"the page scrolls sideways: {wide}"
    _shot(browser, "approvals-long-reason")


def test_operator_promotes_the_shadow_policy_to_live(browser: WebDriver, site: Site) -> None:
    url, data = site.url, site.data
    ref = "shadow-candidate@1"
    with Reservoir(data.reservoir) as res:
        res.register(
            "shadow-candidate",
            "rule",
            None,
            hyperparameters={"builtin": "trim-and-respond", "tag": "shadow"},
            training_scenarios=["tropical-typical-week"],
            actor="trainer",
        )
        res.add_evaluation(ref, on="twin", scenario="demo", kpis={"cooling_kwh": 1.0})
        res.transition(ref, "pre_evaluated", actor="gate1", reason="gate 1 passed on test")
        approval.approve(res, ref, operator=OPERATOR, reason="KPIs checked")
        approval.promote(res, ref, operator=OPERATOR, reason="to shadow")
    start = data.newest_s - 6 * 300.0
    with Historian(data.historian) as hist:
        hist.add_event(Event(start, "controller", "policy", f"loaded {ref} (shadow)"))
        hist.write(
            [
                Reading("shadow.supply_air_c", start + 300.0 * k, 21.0 + 0.2 * k, "degC")
                for k in range(6)
            ]
        )
    _login(browser, url, OPERATOR, OPERATOR_PASSWORD)
    browser.get(url + "/shadow")
    _wait_text(browser, ShadowIds.CARDS, ref)
    _wait_text(browser, ShadowIds.SUMMARY, "periods in shadow")
    _wait_plotted(browser, ShadowIds.FIGURES)
    assert "1962-07-0" in _text(browser, ShadowIds.CARDS)  # the site's calendar
    _shot(browser, "shadow")
    box = browser.find_element(By.ID, ShadowIds.REASON)
    box.send_keys("the shadow matched the site")
    # Promotion asks first: dismissed, nothing happens; accepted, it goes through.
    browser.find_element(By.ID, ShadowIds.PROMOTE_BUTTON).click()
    _wait(browser, "the confirmation", lambda d: _alert(d) is not None)
    alert = browser.switch_to.alert
    assert "Promote the policy in shadow to live?" in alert.text
    alert.dismiss()
    time.sleep(1.0)
    with Reservoir(data.reservoir) as res:
        assert res.get(ref).state == "shadow"
    browser.find_element(By.ID, ShadowIds.PROMOTE_BUTTON).click()
    _wait(browser, "the confirmation", lambda d: _alert(d) is not None)
    browser.switch_to.alert.accept()
    _wait_text(browser, ShadowIds.MESSAGE, f"{ref} is now live (promote by {OPERATOR})")
    with Reservoir(data.reservoir) as res:
        last = res.history(ref)[-1]
    assert (last.to_state, last.actor, last.reason) == (
        "live",
        OPERATOR,
        "the shadow matched the site",
    )
