"""Recordings: exploration covers the envelope, commands take effect, only readings are kept,
metadata round-trips, and every bad data directory gets a clear error."""

from __future__ import annotations

import dataclasses
import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from physics.plant.scenario import Scenario, load_scenario
from physics.plant.sensors import SensorFrame, point_catalog
from physics.plant.simulation import run_scenario
from twin.recording import (
    CMD_COLUMNS,
    ExplorationPolicy,
    RecordingError,
    RecordingMeta,
    commands_in_force,
    load_recordings,
    record_run,
)
from twin.spaces import ACTION_NAMES, ActionScale

SHORT = """\
name: rec-short
description: six hours in July, no faults
site: {variant: reference, seed: 11}
weather: {file: "pvlib:miami", start: "07-01"}
workload: {kind: diurnal, mean_frac: 0.6}
duration: 6 h
step: 60 s
control_period: 5 min
sensor_noise: 1.0
seed: 1
"""
SEED = 1


@pytest.fixture(scope="module")
def scenario(tmp_path_factory: pytest.TempPathFactory) -> Scenario:
    path = tmp_path_factory.mktemp("scenario") / "rec-short.yaml"
    path.write_text(SHORT, encoding="utf-8")
    return load_scenario(path)


@pytest.fixture(scope="module")
def recorded(scenario: Scenario, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A data directory with one explore and one site recording of the short scenario."""
    out = tmp_path_factory.mktemp("recordings")
    record_run(scenario, policy="explore", seed=SEED, out_dir=out)
    record_run(scenario, policy="site", seed=SEED, out_dir=out)
    return out


def _table(data_dir: Path, policy: str) -> pd.DataFrame:
    return pd.read_parquet(data_dir / f"rec-short-{policy}-s{SEED}.parquet")


def _copy(src: Path, dst: Path) -> Path:
    shutil.copytree(src, dst)
    return dst


# ---------------------------------------------------------------------- exploration policy
def _frame(time_s: float) -> SensorFrame:
    return SensorFrame(time_s, ("x",), np.zeros((1, 1)), np.ones((1, 1), dtype=bool))


def _weather_frame(wet_bulb_c: float) -> SensorFrame:
    return SensorFrame(
        0.0, ("outdoor_wet_bulb_c",), np.full((1, 1), wet_bulb_c), np.ones((1, 1), dtype=bool)
    )


def test_exploration_draws_condenser_water_the_tower_can_make() -> None:
    def lows(wet_bulb_c: float) -> float:
        policy = ExplorationPolicy(control_period_s=300.0, seed=3, hold_max_s=900.0)
        frame = _weather_frame(wet_bulb_c)
        cw = [policy(frame, 300.0 * k).cw_supply_c for k in range(3_000)]
        return min(v for v in cw if v is not None)

    assert 18.0 <= lows(25.0) < 18.5  # warm: from the 18 °C floor (the tower's approach)
    assert 10.0 <= lows(-5.0) < 10.5  # freezing: down to the action's 10 °C
    assert 12.0 <= lows(9.0) < 12.5  # between: wet bulb + 3 K


def test_exploration_holds_ranges_site_share_and_economiser_odds() -> None:
    scale = ActionScale()
    policy = ExplorationPolicy(control_period_s=300.0, seed=7, scale=scale)
    commands = [policy(_frame(300.0 * k), 300.0 * k) for k in range(20_000)]
    assert all(c.expires_at_s == pytest.approx(300.0 * k + 600.0) for k, c in enumerate(commands))
    history = policy.history()
    assert len(history) == 20_000
    assert list(history.columns) == ["time_s", "expires_at_s", *ACTION_NAMES]
    for i, name in enumerate(ACTION_NAMES):
        values = history[name].to_numpy()
        # The command carries exactly the history's values, None where left to the site.
        given = np.array([np.nan if (v := getattr(c, name)) is None else v for c in commands])
        np.testing.assert_array_equal(given, values)
        key = np.where(np.isnan(values), -1.0, values)
        edges = np.flatnonzero(np.diff(key) != 0) + 1
        holds = np.diff(edges)
        # Holds last 15 min .. 3 h = 3 .. 36 periods. Successive holds may draw the same
        # value (both left to the site, or the same economiser state) and merge, so only the
        # lower bound is exact; for the continuous ones the mean is near 19.5.
        assert holds.min() >= 3, name
        finite = values[np.isfinite(values)]
        assert np.isnan(values).mean() == pytest.approx(0.2, abs=0.05), name
        low = 18.0 if name == "cw_supply_c" else scale.low[i]  # no wet bulb: the floor
        assert finite.min() >= low and finite.max() <= scale.high[i], name
        if name == "economiser_enable":
            assert set(np.unique(finite)) == {0.0, 1.0}
            assert finite.mean() == pytest.approx(0.3, abs=0.06)
        else:
            assert 17 < holds.mean() < 23, name
            # Uniform over the range: both ends are visited.
            width = scale.high[i] - low
            assert finite.min() < low + 0.05 * width, name
            assert finite.max() > scale.high[i] - 0.05 * width, name
    # Components are held independently: mostly one changes at a time.
    changes = np.diff(np.nan_to_num(history[list(ACTION_NAMES)].to_numpy(), nan=-1.0), axis=0)
    together = (changes != 0).sum(axis=1)
    assert (together[together > 0] == 1).mean() > 0.7


def test_exploration_is_reproducible_from_its_seed() -> None:
    def run(seed: int) -> pd.DataFrame:
        policy = ExplorationPolicy(control_period_s=300.0, seed=seed)
        for k in range(200):
            policy(_frame(300.0 * k), 300.0 * k)
        return policy.history()

    pd.testing.assert_frame_equal(run(3), run(3))
    assert not run(3).equals(run(4))


def test_scenarios_recorded_with_one_seed_explore_differently(scenario: Scenario) -> None:
    def commands(name: str) -> pd.DataFrame:
        policy = ExplorationPolicy.for_scenario(dataclasses.replace(scenario, name=name), seed=0)
        for k in range(50):
            policy(_frame(300.0 * k), 300.0 * k)
        return policy.history()

    assert not commands("summer").equals(commands("heat-wave"))
    pd.testing.assert_frame_equal(commands("summer"), commands("summer"))


def test_exploration_rejects_bad_settings() -> None:
    with pytest.raises(ValueError, match="site_share"):
        ExplorationPolicy(control_period_s=300.0, site_share=1.5)
    with pytest.raises(ValueError, match="control_period_s"):
        ExplorationPolicy(control_period_s=0.0)
    with pytest.raises(ValueError, match="hold_min_s"):
        ExplorationPolicy(control_period_s=300.0, hold_min_s=7200.0, hold_max_s=3600.0)


def test_commands_in_force_follow_issue_and_expiry() -> None:
    history = pd.DataFrame(
        [
            [300.0, 900.0, 20.0, 0.5, np.nan, 30.0, 1.0],
            [600.0, 1200.0, 21.0, 0.6, 8.0, np.nan, 0.0],
            # a gap: nothing issued at 900 s, so the second command expires at 1200 s
            [1500.0, 2100.0, 22.0, 0.7, 9.0, 31.0, 1.0],
        ],
        columns=["time_s", "expires_at_s", *ACTION_NAMES],
    )
    times = np.arange(0.0, 1800.0, 300.0)  # 0, 300, ..., 1500
    got = commands_in_force(history, times)
    nan = np.nan
    expected = np.array(
        [
            [nan, nan, nan, nan, nan],  # before the first command: the site
            [20.0, 0.5, nan, 30.0, 1.0],
            [21.0, 0.6, 8.0, nan, 0.0],
            [21.0, 0.6, 8.0, nan, 0.0],  # 900 s: still valid
            [nan, nan, nan, nan, nan],  # 1200 s: expired
            [22.0, 0.7, 9.0, 31.0, 1.0],
        ]
    )
    np.testing.assert_array_equal(got, expected)


# ---------------------------------------------------------------------- recorded runs
def test_recording_has_readings_and_commands_only(recorded: Path, scenario: Scenario) -> None:
    points = [p.name for p in point_catalog(scenario.site)]
    for policy in ("explore", "site"):
        table = _table(recorded, policy)
        assert list(table.columns) == ["time_h", *points, *CMD_COLUMNS]
        assert len(table) == scenario.n_steps == 360
        # Ground truth (energy flows, applied setpoints) never leaves the plant.
        for hidden in ("coil_heat_kw", "it_kw", "sp.supply_air_c", "cooling_kw"):
            assert hidden not in table.columns
        assert not any(c.startswith("sp.") for c in table.columns)
        assert table["time_h"].iloc[0] == pytest.approx(scenario.start_h)
    assert sorted(p.name for p in recorded.iterdir()) == [
        "rec-short-explore-s1.json",
        "rec-short-explore-s1.parquet",
        "rec-short-site-s1.json",
        "rec-short-site-s1.parquet",
    ]


def test_explore_commands_lie_in_the_envelope_and_change(
    recorded: Path, scenario: Scenario
) -> None:
    table = _table(recorded, "explore")
    scale = ActionScale.within(scenario.site.limits)
    # The first control period runs before the policy has any readings: the site's control.
    assert table.loc[: scenario.steps_per_period - 1, list(CMD_COLUMNS)].isna().all().all()
    for i, column in enumerate(CMD_COLUMNS):
        values = table[column].to_numpy()
        finite = values[np.isfinite(values)]
        assert finite.size > 0, column
        assert finite.min() >= scale.low[i] and finite.max() <= scale.high[i], column
        # Two states at least (a value, another value or the site's control).
        assert np.unique(np.nan_to_num(values, nan=-1.0)).size >= 2, column
    # Over six hours the command changes many times (holds of 15 min .. 3 h, five of them).
    commanded = np.nan_to_num(table[list(CMD_COLUMNS)].to_numpy(), nan=-1.0)
    assert np.count_nonzero(np.diff(commanded, axis=0)) >= 8
    assert set(np.unique(table["cmd.economiser_enable"].dropna())) <= {0.0, 1.0}


def test_site_recording_has_no_commands(recorded: Path) -> None:
    assert _table(recorded, "site")[list(CMD_COLUMNS)].isna().all().all()


def test_commands_took_effect(recorded: Path, scenario: Scenario) -> None:
    explore, site = _table(recorded, "explore"), _table(recorded, "site")
    # Exploration moves the plant away from the site's fixed setpoints.
    assert (explore["supply_air_c"] - site["supply_air_c"]).abs().mean() > 0.5
    assert (explore["crah_fan_speed_frac"] - site["crah_fan_speed_frac"]).abs().mean() > 0.05
    # Supply air follows its command within 1 K once settled (15 min after a change) where
    # the chilled water is cold enough to reach it.
    cmd = explore["cmd.supply_air_c"].to_numpy()
    key = np.nan_to_num(cmd, nan=-1.0)
    since = np.zeros(len(cmd), dtype=int)
    for k in range(1, len(cmd)):
        since[k] = 0 if key[k] != key[k - 1] else since[k - 1] + 1
    reachable = np.isfinite(cmd) & (since >= 15) & (explore["chw_supply_c"] <= cmd - 4.0)
    assert reachable.sum() > 60
    error = (explore["supply_air_c"] - cmd)[reachable].abs()
    assert error.max() < 1.0


def test_recorded_commands_are_those_the_plant_applied(recorded: Path, scenario: Scenario) -> None:
    """Rerun with the same seed and compare ``cmd.*`` with the plant's applied setpoints."""
    policy = ExplorationPolicy.for_scenario(scenario, SEED)
    truth = run_scenario(scenario, policy).log
    table = _table(recorded, "explore")
    limits = scenario.site.limits
    for name in ACTION_NAMES:
        cmd = table[f"cmd.{name}"].to_numpy()
        applied = truth[f"sp.{name}"].to_numpy()
        on = np.isfinite(cmd)
        if name == "economiser_enable":
            np.testing.assert_array_equal(applied[on], cmd[on])
        else:
            low, high = getattr(limits, name)
            band = limits.deadband_frac if name == "fan_speed_frac" else limits.deadband_c
            np.testing.assert_allclose(applied[on], np.clip(cmd[on], low, high), atol=band)
    # Where no command was in force, the site's fixed supply-air setpoint ruled.
    off = ~np.isfinite(table["cmd.supply_air_c"].to_numpy())
    assert off.any()
    np.testing.assert_allclose(
        truth["sp.supply_air_c"].to_numpy()[off], scenario.site.defaults.supply_air_c, atol=0.05
    )


def test_metadata_round_trips(recorded: Path, scenario: Scenario) -> None:
    recordings = load_recordings(recorded)
    assert [r.name for r in recordings] == ["rec-short-explore-s1", "rec-short-site-s1"]
    explore = recordings[0]
    pd.testing.assert_frame_equal(explore.frame, _table(recorded, "explore"))
    assert explore.meta == RecordingMeta.for_run(scenario, policy="explore", seed=SEED)
    meta = explore.meta
    assert (meta.scenario, meta.source, meta.site_variant, meta.site_seed) == (
        "rec-short",
        "rec-short.yaml",
        "reference",
        11,
    )
    assert (meta.n_pods, meta.racks_per_pod, meta.step_s, meta.control_period_s) == (
        4,
        25,
        60.0,
        300.0,
    )
    assert meta.duration_h == 6.0 and meta.start_h == scenario.start_h
    assert (meta.policy, meta.seed, meta.weather_file) == ("explore", SEED, "pvlib:miami")
    assert meta.twinloop_version
    assert meta.points["supply_air_c"] == "degC"
    assert meta.points["it_power_kw.0"] == "kW"
    assert list(meta.points) == [p.name for p in point_catalog(scenario.site)]
    assert recordings[1].meta.policy == "site"
    raw = json.loads((recorded / "rec-short-explore-s1.json").read_text(encoding="utf-8"))
    assert raw["scenario"] == "rec-short" and raw["points"]["chw_supply_c"] == "degC"


def test_faults_and_heat_wave_reach_the_metadata() -> None:
    meta = RecordingMeta.for_run(load_scenario("twin-fault-fouling"), policy="site", seed=0)
    assert [(f["kind"], f["start_h"], f["target"]) for f in meta.faults] == [
        ("coil_fouling", 8.0, None),
        ("condenser_fouling", 8.0, None),
    ]
    again = RecordingMeta.from_dict(json.loads(meta.to_json()), "x.json")
    assert again == meta and again.faults == meta.faults
    wave = RecordingMeta.for_run(load_scenario("twin-test-heat-wave"), policy="site", seed=0)
    assert wave.heat_wave == (12.0, 48.0, 5.0)
    assert RecordingMeta.from_dict(json.loads(wave.to_json()), "x.json") == wave


def test_existing_recording_is_never_overwritten_silently(
    recorded: Path, scenario: Scenario, tmp_path: Path
) -> None:
    data = _copy(recorded, tmp_path / "data")
    target = data / "rec-short-site-s1.parquet"
    before = target.read_bytes()
    with pytest.raises(RecordingError, match="already exists") as info:
        record_run(scenario, policy="site", seed=SEED, out_dir=data)
    assert "rec-short-site-s1" in str(info.value)
    assert target.read_bytes() == before
    # A lone sidecar blocks too.
    target.unlink()
    with pytest.raises(RecordingError, match=r"rec-short-site-s1\.json: already exists"):
        record_run(scenario, policy="site", seed=SEED, out_dir=data)
    assert record_run(scenario, policy="site", seed=SEED, out_dir=data, overwrite=True) == target
    pd.testing.assert_frame_equal(pd.read_parquet(target), _table(recorded, "site"))
    assert not list(data.glob("*.tmp"))


def test_unknown_policy_is_refused(scenario: Scenario, tmp_path: Path) -> None:
    with pytest.raises(RecordingError, match="unknown recording policy 'oracle'"):
        record_run(scenario, policy="oracle", out_dir=tmp_path)
    assert not any(tmp_path.iterdir())


# ---------------------------------------------------------------------- bad data directories
def test_missing_directory(tmp_path: Path) -> None:
    with pytest.raises(RecordingError, match=r"nope: no such directory"):
        load_recordings(tmp_path / "nope")


def test_directory_without_recordings(tmp_path: Path) -> None:
    (tmp_path / "notes.txt").write_text("hello", encoding="utf-8")
    with pytest.raises(RecordingError, match="no recordings"):
        load_recordings(tmp_path)


def test_table_without_sidecar(recorded: Path, tmp_path: Path) -> None:
    data = _copy(recorded, tmp_path / "data")
    (data / "rec-short-site-s1.json").unlink()
    with pytest.raises(RecordingError, match=r"rec-short-site-s1\.parquet: no rec-short-site"):
        load_recordings(data)


def test_sidecar_without_table(recorded: Path, tmp_path: Path) -> None:
    data = _copy(recorded, tmp_path / "data")
    (data / "rec-short-site-s1.parquet").unlink()
    with pytest.raises(RecordingError, match=r"rec-short-site-s1\.json: metadata without"):
        load_recordings(data)


def test_missing_columns(recorded: Path, tmp_path: Path) -> None:
    data = _copy(recorded, tmp_path / "data")
    path = data / "rec-short-site-s1.parquet"
    pd.read_parquet(path).drop(columns=["supply_air_c", "cmd.fan_speed_frac"]).to_parquet(path)
    with pytest.raises(RecordingError) as info:
        load_recordings(data)
    message = str(info.value)
    assert "rec-short-site-s1.parquet: missing columns" in message
    assert "supply_air_c" in message and "cmd.fan_speed_frac" in message


@pytest.mark.parametrize(
    ("field", "value"),
    [("site_variant", "no_redundancy"), ("n_pods", 3), ("racks_per_pod", 20), ("site_seed", 12)],
)
def test_mixed_sites(recorded: Path, tmp_path: Path, field: str, value: object) -> None:
    data = _copy(recorded, tmp_path / "data")
    sidecar = data / "rec-short-site-s1.json"
    raw = json.loads(sidecar.read_text(encoding="utf-8"))
    raw[field] = value
    sidecar.write_text(json.dumps(raw), encoding="utf-8")
    with pytest.raises(RecordingError) as info:
        load_recordings(data)
    message = str(info.value)
    assert "rec-short-site-s1.parquet: site" in message
    assert "differs from" in message and "rec-short-explore-s1.parquet" in message


def test_unreadable_table(recorded: Path, tmp_path: Path) -> None:
    data = _copy(recorded, tmp_path / "data")
    (data / "rec-short-site-s1.parquet").write_bytes(b"not a parquet file")
    with pytest.raises(RecordingError, match=r"rec-short-site-s1\.parquet: cannot read"):
        load_recordings(data)


def test_unreadable_sidecar(recorded: Path, tmp_path: Path) -> None:
    data = _copy(recorded, tmp_path / "data")
    (data / "rec-short-site-s1.json").write_text("{not json", encoding="utf-8")
    with pytest.raises(RecordingError, match=r"rec-short-site-s1\.json: cannot read metadata"):
        load_recordings(data)


@pytest.mark.parametrize(
    ("edit", "names"),
    [
        (lambda raw: raw.pop("points"), "misses points"),
        (lambda raw: raw.update(n_pods="four"), "n_pods has the wrong type"),
        (lambda raw: raw.update(points=["supply_air_c"]), "points must map"),
        (lambda raw: raw.update(format_version=99), "format_version 99"),
    ],
    ids=["missing-key", "wrong-type", "bad-points", "newer-format"],
)
def test_bad_metadata(recorded: Path, tmp_path: Path, edit: object, names: str) -> None:
    data = _copy(recorded, tmp_path / "data")
    sidecar = data / "rec-short-explore-s1.json"
    raw = json.loads(sidecar.read_text(encoding="utf-8"))
    assert callable(edit)
    edit(raw)
    sidecar.write_text(json.dumps(raw), encoding="utf-8")
    with pytest.raises(RecordingError) as info:
        load_recordings(data)
    assert str(info.value).startswith(f"recording {sidecar}: ")
    assert names in str(info.value)
