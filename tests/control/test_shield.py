"""The safety shield: nothing outside the envelope or off the allow-list is ever written, and
the rate limits hold over whole sequences, whatever the policy outputs."""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Mapping

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from control.shield import (
    CONTINUOUS_FIELDS,
    ECONOMISER,
    Shield,
    ShieldConfig,
    ShieldResult,
    site_reference,
)
from physics.plant.site import SetpointLimits
from physics.plant.site_control import SETPOINT_FIELDS
from twin.spaces import ActionScale

TOL = 1e-9


class WriteLog:
    """What went out, per field, checked against the config after every command."""

    def __init__(self, config: ShieldConfig, reference: Mapping[str, float], time_s: float):
        self.config = config
        self.writes: dict[str, deque[tuple[float, float]]] = {
            name: deque([(time_s, reference[name])]) for name in SETPOINT_FIELDS
        }
        self.commands = 0
        self.economiser_changed_s = -math.inf
        self.reference = dict(reference)

    def check(self, result: ShieldResult) -> None:
        cfg = self.config
        self.commands += 1
        for name, value in result.fields.items():
            assert name in cfg.allowed, f"wrote {name}, not allow-listed"
            assert math.isfinite(value), f"wrote a non-finite {name}"
            low, high = cfg.envelope(name)
            assert low - TOL <= value <= high + TOL, f"{name}={value} outside [{low}, {high}]"
            history = self.writes[name]
            last_v = history[-1][1]
            if name == ECONOMISER:
                assert value in (0.0, 1.0)
                if value != last_v:
                    since = result.time_s - self.economiser_changed_s
                    assert since >= cfg.economiser_min_dwell_s
                    self.economiser_changed_s = result.time_s
            else:
                ref = min(max(self.reference[name], low), high)
                if min(last_v, ref) - TOL <= value <= max(last_v, ref) + TOL:
                    pass  # back towards the site's setpoint: never rate-limited
                else:
                    assert abs(value - last_v) <= cfg.step_limit(name) + TOL
                    recent = [v for t, v in history if t >= result.time_s - cfg.window_s]
                    recent = recent or [last_v]
                    # Up by at most the hourly limit from the hour's lowest value, down from its
                    # highest (a return towards the site's setpoint may lie in between).
                    moved = value - min(recent) if value > last_v else max(recent) - value
                    assert moved <= cfg.hour_limit(name) + TOL, (
                        f"{name} moved {moved} away within an hour"
                    )
            history.append((result.time_s, value))
            while history[0][0] < result.time_s - cfg.window_s:
                history.popleft()

    def fallback(self, result: ShieldResult, shield: Shield) -> None:
        """Fields not written fall back to the site's value; pacing starts again from it."""
        for name in SETPOINT_FIELDS:
            if name not in result.fields:
                value = shield.last(name)
                if name == ECONOMISER and value != self.writes[name][-1][1]:
                    self.economiser_changed_s = result.time_s
                if value != self.writes[name][-1][1]:
                    self.writes[name] = deque([(result.time_s, value)])
                else:
                    self.writes[name].append((result.time_s, value))


def run_sequence(
    shield: Shield, log: WriteLog, proposals: list[dict[str, float]], dt_s: list[float], t0: float
) -> None:
    t = t0
    for proposed, dt in zip(proposals, dt_s, strict=True):
        t += dt
        result = shield.project(proposed, t)
        log.check(result)
        shield.commit(result)
        log.fallback(result, shield)


ADVERSARIAL = (math.nan, math.inf, -math.inf, 1e308, -1e308, 0.0, -1.0, 1.0, 1e-300)


def adversarial_actions(rng: np.random.Generator, n: int) -> np.ndarray:
    """(n, 5) policy outputs: uniform, alternating extremes, huge, non-finite mixed in."""
    actions = rng.uniform(-1.0, 1.0, (n, 5))
    kind = rng.integers(0, 4, n)
    extremes = np.where(np.arange(n) % 2 == 0, -1.0, 1.0)[:, None]
    actions = np.where((kind == 1)[:, None], extremes, actions)
    huge = rng.choice([1e30, -1e30, 1e308, -1e308, 3.0, -7.0], (n, 5))
    actions = np.where((kind == 2)[:, None], huge, actions)
    bad = (kind == 3)[:, None] & (rng.random((n, 5)) < 0.5)
    return np.where(bad, rng.choice([np.nan, np.inf, -np.inf], (n, 5)), actions)


def test_100k_random_and_adversarial_outputs_never_leave_the_envelope() -> None:
    rng = np.random.default_rng(7)
    scale = ActionScale()
    config = ShieldConfig()
    reference = site_reference()
    shield = Shield(config, reference=reference)
    log = WriteLog(config, reference, 0.0)
    n = 100_000
    actions = adversarial_actions(rng, n)
    raw = rng.random(n) < 0.2  # proposals by name, with names off the allow-list
    with np.errstate(over="ignore"):
        supply = rng.choice(ADVERSARIAL, n) * rng.uniform(-50, 50, n)
    condenser = rng.normal(20.0, 30.0, n)
    times = np.cumsum(rng.choice([60.0, 300.0, 900.0], n))
    for i in range(n):
        t = float(times[i])
        if raw[i]:
            proposed = {
                "supply_air_c": float(supply[i]),
                "chiller_enable": 1.0,
                "rack_inlet_c.0.00": 12.0,
                "cw_supply_c": float(condenser[i]),
            }
            result = shield.project(proposed, t)
            refused = {x.field for x in result.interventions if x.reason == "not_allowed"}
            assert refused == {"chiller_enable", "rack_inlet_c.0.00"}
        else:
            result = shield.project_action(actions[i], scale, t)
        log.check(result)
        shield.commit(result)
        log.fallback(result, shield)
    assert log.commands == n


@settings(max_examples=100, deadline=None)
@given(
    proposals=st.lists(
        st.dictionaries(
            st.sampled_from([*SETPOINT_FIELDS, "valve_frac", "", "supply_air_c "]),
            st.floats(allow_nan=True, allow_infinity=True),
            max_size=7,
        ),
        min_size=1,
        max_size=60,
    ),
    dt=st.lists(st.sampled_from([0.0, 1.0, 60.0, 300.0, 3_600.0, 7_200.0]), min_size=60),
    allowed=st.sets(st.sampled_from(SETPOINT_FIELDS)),
    invalid=st.sampled_from(["hold", "drop"]),
)
def test_property_any_proposal_sequence_stays_in_envelope_and_rates(
    proposals: list[dict[str, float]], dt: list[float], allowed: set[str], invalid: str
) -> None:
    config = ShieldConfig(
        allowed=tuple(sorted(allowed)),
        invalid="hold" if invalid == "hold" else "drop",
    )
    reference = site_reference(wet_bulb_c=1.0)  # economiser on, condenser water 12 °C
    shield = Shield(config, reference=reference, time_s=100.0)
    log = WriteLog(config, {n: shield.last(n) for n in SETPOINT_FIELDS}, 100.0)
    run_sequence(shield, log, proposals, dt[: len(proposals)], 100.0)


def test_rate_limits_step_and_hour() -> None:
    config = ShieldConfig(supply_air_step_k=0.5, supply_air_per_hour_k=2.0)
    shield = Shield(config, reference=site_reference())  # supply air 19 °C
    values = []
    for k in range(1, 13):  # one hour of 5-minute periods, always asking for 27 °C
        result = shield.project({"supply_air_c": 27.0}, 300.0 * k)
        shield.commit(result)
        values.append(result.fields["supply_air_c"])
    assert values[:4] == pytest.approx([19.5, 20.0, 20.5, 21.0])
    assert max(values) == pytest.approx(21.0)  # 2 K within the hour, then held
    reasons = [i.reason for i in shield.project({"supply_air_c": 27.0}, 3_600.0).interventions]
    assert reasons == ["hour"]
    # Once the first writes leave the window, it may climb again.
    later = shield.project({"supply_air_c": 27.0}, 300.0 * 12 + 600.0)
    assert later.fields["supply_air_c"] > 21.0
    # The way back to the site's setpoint (19 °C) is never paced: cooling may not wait.
    back = shield.project({"supply_air_c": 19.0}, 300.0 * 12 + 600.0)
    assert back.fields["supply_air_c"] == pytest.approx(19.0) and not back.intervened
    shield.commit(back)
    # Beyond it the pacing applies again: within the hour it was at 21 °C, so 19 °C holds.
    beyond = shield.project({"supply_air_c": 18.0}, 300.0 * 13 + 600.0)
    assert beyond.fields["supply_air_c"] == pytest.approx(19.0)
    assert [i.reason for i in beyond.interventions] == ["hour"]


def test_non_finite_holds_the_last_safe_value_or_drops_the_field() -> None:
    hold = Shield(ShieldConfig(invalid="hold"), reference=site_reference())
    result = hold.project({"supply_air_c": math.nan, "fan_speed_frac": math.inf}, 300.0)
    assert result.fields == {"supply_air_c": 19.0, "fan_speed_frac": 1.0}
    assert {i.reason for i in result.interventions} == {"invalid"}
    drop = Shield(ShieldConfig(invalid="drop"), reference=site_reference())
    result = drop.project({"supply_air_c": -math.inf, "chw_supply_c": 7.4}, 300.0)
    assert result.fields == {"chw_supply_c": pytest.approx(7.4)}
    assert [(i.field, i.applied) for i in result.interventions] == [("supply_air_c", None)]


def test_action_nan_is_not_read_as_economiser_off() -> None:
    shield = Shield(reference=site_reference(wet_bulb_c=-8.0))  # economiser on
    result = shield.project_action([0.0, 0.0, 0.0, 0.0, math.nan], ActionScale(), 300.0)
    assert result.fields[ECONOMISER] == 1.0


def test_economiser_dwell() -> None:
    shield = Shield(ShieldConfig(economiser_min_dwell_s=1_800.0), reference=site_reference())
    first = shield.project({ECONOMISER: 1.0}, 300.0)
    assert first.fields[ECONOMISER] == 1.0  # the site's state counts as long settled
    shield.commit(first)
    back = shield.project({ECONOMISER: 0.0}, 600.0)
    assert back.fields[ECONOMISER] == 1.0 and back.interventions[0].reason == "dwell"
    assert shield.project({ECONOMISER: 0.0}, 2_100.0).fields[ECONOMISER] == 0.0


def test_envelope_narrowed_to_equipment_limits_and_reference_clipped() -> None:
    config = ShieldConfig(supply_air_c=(15.0, 30.0)).within(SetpointLimits())
    assert config.supply_air_c == (16.0, 27.0)
    shield = Shield(config, reference={**site_reference(), "supply_air_c": 40.0})
    assert shield.last("supply_air_c") == 27.0
    with pytest.raises(ValueError, match="does not overlap"):
        ShieldConfig(chw_supply_c=(20.0, 25.0)).within(SetpointLimits())


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"supply_air_c": (27.0, 18.0)}, "supply_air_c"),
        ({"supply_air_step_k": -1.0}, "supply_air_step_k"),
        ({"fan_speed_per_hour_frac": math.nan}, "fan_speed_per_hour_frac"),
        ({"allowed": ("supply_air_c", "valve_frac")}, "valve_frac"),
        ({"window_s": 0.0}, "window_s"),
    ],
)
def test_bad_config_is_refused_with_the_field_named(kwargs: dict[str, object], match: str) -> None:
    with pytest.raises(ValueError, match=match):
        ShieldConfig(**kwargs)  # type: ignore[arg-type]


def test_time_must_not_run_backwards() -> None:
    shield = Shield(reference=site_reference(), time_s=1_000.0)
    with pytest.raises(ValueError, match="not after"):
        shield.project({"supply_air_c": 20.0}, 999.0)


def test_continuous_fields_are_the_first_four() -> None:
    assert (*CONTINUOUS_FIELDS, ECONOMISER) == SETPOINT_FIELDS
