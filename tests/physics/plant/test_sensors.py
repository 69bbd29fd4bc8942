"""Sensor points and the measurement model: noise, bias, faults, dropouts, determinism."""

from __future__ import annotations

import numpy as np
import pytest

from physics.plant.faults import FaultEffects, FaultEvent, FaultSchedule
from physics.plant.sensors import PointSpec, SensorModel, SensorNoise, point_catalog
from physics.plant.site import SiteConfig, site_variant

CONFIG = SiteConfig()
POINTS = point_catalog(CONFIG)
UNITS = np.array([p.unit for p in POINTS])
TRUTH_BY_UNIT = {"degC": 22.0, "kW": 100.0, "kg/s": 40.0, "frac": 0.5, "count": 2.0, "bool": 1.0}


def _truth(n_sites: int = 2) -> np.ndarray:
    row = np.array([TRUTH_BY_UNIT[u] for u in UNITS])
    return np.tile(row, (n_sites, 1))


def _effects(*events: FaultEvent, time_h: float = 0.0) -> FaultEffects:
    schedule = FaultSchedule(
        events, n_crah=CONFIG.n_crah, n_chillers=CONFIG.n_chillers, n_pods=CONFIG.n_pods
    )
    return schedule.effects_at(time_h)


NO_FAULTS = _effects()


def _model(noise: SensorNoise, seeds: tuple[int, ...] = (1, 2)) -> SensorModel:
    return SensorModel(POINTS, noise, seeds)


# --- point catalog ----------------------------------------------------------------------------


def test_reference_site_has_100_rack_inlets_and_unique_names() -> None:
    names = [p.name for p in POINTS]
    assert len(names) == len(set(names))
    inlets = [n for n in names if n.startswith("rack_inlet_c.")]
    assert len(inlets) == 100
    assert inlets[0] == "rack_inlet_c.0.00" and inlets[-1] == "rack_inlet_c.3.24"
    assert all(p.unit == "degC" for p in POINTS if p.name.startswith("rack_inlet_c."))
    assert sum(n.startswith("crah_valve_frac.") for n in names) == CONFIG.n_crah
    assert sum(n.startswith("chiller_power_kw.") for n in names) == CONFIG.n_chillers
    assert {"supply_air_c", "chw_supply_c", "facility_power_kw", "outdoor_wet_bulb_c"} <= set(names)
    assert set(UNITS) <= set(TRUTH_BY_UNIT)


def test_catalog_follows_the_site_variant() -> None:
    other = point_catalog(site_variant("no_redundancy"))
    names = [p.name for p in other]
    assert sum(n.startswith("crah_valve_frac.") for n in names) == 11
    assert sum(n.startswith("chiller_power_kw.") for n in names) == 2
    # One CRAH fewer (valve, running) and one chiller fewer (power, running, alarm).
    assert len(names) == len(POINTS) - 5


# --- noise ------------------------------------------------------------------------------------


def test_noise_validation() -> None:
    with pytest.raises(ValueError, match="noise level"):
        SensorNoise(level=-0.1)
    with pytest.raises(ValueError, match="dropout_prob"):
        SensorNoise(dropout_prob=1.0)


def test_zero_noise_reads_truth_exactly() -> None:
    model = _model(SensorNoise(level=0.0))
    truth = _truth()
    truth[0, 0] = 31.25
    for t in (0.0, 3600.0, 30 * 86_400.0):
        frame = model.read(truth, t, NO_FAULTS)
        np.testing.assert_array_equal(frame.values, truth)
        assert frame.quality.all()
        assert frame.names == tuple(p.name for p in POINTS)
        assert frame.time_s == t
    assert frame.as_dict(0)["rack_inlet_c.0.00"] == 31.25


def _residuals(level: float, n_reads: int = 1500) -> np.ndarray:
    """Readings minus truth, shape (reads, sites, points), all at time 0 (no drift)."""
    model = _model(SensorNoise(level=level))
    truth = _truth()
    return np.stack([model.read(truth, 0.0, NO_FAULTS).values - truth for _ in range(n_reads)])


@pytest.mark.parametrize("level", [1.0, 2.0])
def test_noise_std_matches_the_spec(level: float) -> None:
    noise = SensorNoise(level=level)
    res = _residuals(level)
    std = res.std(axis=0)  # per site and point, around the fixed calibration bias
    temp, frac = UNITS == "degC", UNITS == "frac"
    relative = np.isin(UNITS, ["kW", "kg/s"])
    assert np.mean(std[:, temp]) == pytest.approx(level * noise.temperature_std_c, rel=0.05)
    assert np.all(np.abs(std[:, temp] / (level * noise.temperature_std_c) - 1) < 0.15)
    assert np.mean(std[:, frac]) == pytest.approx(level * noise.fraction_std, rel=0.05)
    truth_rel = np.array([TRUTH_BY_UNIT[u] for u in UNITS[relative]])
    assert np.mean(std[:, relative] / truth_rel) == pytest.approx(
        level * noise.relative_std, rel=0.05
    )
    # Counts and flags are read without noise or bias.
    exact = np.isin(UNITS, ["count", "bool"])
    assert np.all(res[:, :, exact] == 0.0)


def test_temperature_calibration_bias_is_fixed_per_point_and_site() -> None:
    noise = SensorNoise()
    res = _residuals(1.0)
    bias = res.mean(axis=0)[:, UNITS == "degC"]  # (sites, temperature points)
    # The hidden bias spreads across points with about its specified std ...
    assert np.std(bias) == pytest.approx(noise.temperature_bias_std_c, rel=0.3)
    # ... and differs between sites.
    assert not np.allclose(bias[0], bias[1], atol=0.01)
    # Non-temperature points carry no bias.
    assert np.all(np.abs(res.mean(axis=0)[:, UNITS == "kW"]) < 0.2)


def test_temperature_drift_grows_with_time() -> None:
    noise = SensorNoise(temperature_std_c=0.0)
    model = _model(noise)
    truth = _truth()
    temp = UNITS == "degC"
    at_0 = model.read(truth, 0.0, NO_FAULTS).values[:, temp]
    day = 86_400.0
    at_100 = model.read(truth, 100 * day, NO_FAULTS).values[:, temp]
    at_200 = model.read(truth, 200 * day, NO_FAULTS).values[:, temp]
    drift_100 = at_100 - at_0
    # Linear in time, per point, with a per-day std of temperature_drift_std_c_per_day.
    np.testing.assert_allclose(at_200 - at_0, 2 * drift_100, atol=1e-9)
    assert np.std(drift_100) / 100 == pytest.approx(noise.temperature_drift_std_c_per_day, rel=0.3)


# --- scheduled sensor faults ------------------------------------------------------------------


def test_sensor_bias_fault_applies_only_to_its_point_and_window() -> None:
    model = _model(SensorNoise(level=0.0))
    truth = _truth()
    schedule = FaultSchedule(
        [FaultEvent("sensor_bias", 1.0, duration_h=1.0, magnitude=2.5, target="supply_air_c")],
        n_crah=CONFIG.n_crah,
        n_chillers=CONFIG.n_chillers,
        n_pods=CONFIG.n_pods,
    )
    i = model.index("supply_air_c")
    before = model.read(truth, 0.5 * 3600, schedule.effects_at(0.5)).values
    np.testing.assert_array_equal(before, truth)
    during = model.read(truth, 1.5 * 3600, schedule.effects_at(1.5)).values
    np.testing.assert_array_equal(during[:, i], truth[:, i] + 2.5)
    np.testing.assert_array_equal(np.delete(during, i, axis=1), np.delete(truth, i, axis=1))
    after = model.read(truth, 2.0 * 3600, schedule.effects_at(2.0)).values
    np.testing.assert_array_equal(after, truth)


def test_sensor_stuck_freezes_while_active_and_releases_after() -> None:
    model = _model(SensorNoise(level=1.0))
    schedule = FaultSchedule(
        [FaultEvent("sensor_stuck", 1.0, duration_h=1.0, target="chw_supply_c")],
        n_crah=CONFIG.n_crah,
        n_chillers=CONFIG.n_chillers,
        n_pods=CONFIG.n_pods,
    )
    i = model.index("chw_supply_c")
    j = model.index("chw_return_c")
    base = _truth()

    def read(time_h: float, offset: float) -> np.ndarray:
        return model.read(base + offset, time_h * 3600, schedule.effects_at(time_h)).values

    onset = read(1.0, 0.0)
    frozen = onset[:, i].copy()
    for time_h, offset in ((1.25, 3.0), (1.5, -2.0), (1.99, 5.0)):
        values = read(time_h, offset)
        np.testing.assert_array_equal(values[:, i], frozen)
        # Other points keep following the truth.
        np.testing.assert_allclose(values[:, j], base[:, j] + offset, atol=1.0)
    released = read(2.0, 5.0)
    np.testing.assert_allclose(released[:, i], base[:, i] + 5.0, atol=1.0)
    assert np.all(np.abs(released[:, i] - frozen) > 3.0)


def test_sensor_stuck_refreezes_at_the_new_value_on_a_second_fault() -> None:
    model = _model(SensorNoise(level=0.0))
    schedule = FaultSchedule(
        [
            FaultEvent("sensor_stuck", 1.0, duration_h=1.0, target="supply_air_c"),
            FaultEvent("sensor_stuck", 3.0, duration_h=1.0, target="supply_air_c"),
        ],
        n_crah=CONFIG.n_crah,
        n_chillers=CONFIG.n_chillers,
        n_pods=CONFIG.n_pods,
    )
    i = model.index("supply_air_c")
    base = _truth()
    for time_h, offset, expected in ((1.0, 1.0, 23.0), (1.5, 2.0, 23.0), (2.5, 3.0, 25.0)):
        values = model.read(base + offset, time_h * 3600, schedule.effects_at(time_h)).values
        np.testing.assert_array_equal(values[:, i], expected)
    for time_h, offset in ((3.0, 4.0), (3.5, 9.0)):
        values = model.read(base + offset, time_h * 3600, schedule.effects_at(time_h)).values
        np.testing.assert_array_equal(values[:, i], 26.0)


# --- dropouts, determinism, names -------------------------------------------------------------


def test_dropouts_give_nan_with_bad_quality_at_the_given_rate() -> None:
    model = _model(SensorNoise(level=0.0, dropout_prob=0.2))
    truth = _truth()
    frames = [model.read(truth, 60.0 * k, NO_FAULTS) for k in range(200)]
    quality = np.stack([f.quality for f in frames])
    values = np.stack([f.values for f in frames])
    assert np.mean(~quality) == pytest.approx(0.2, abs=0.01)
    np.testing.assert_array_equal(np.isnan(values), ~quality)
    np.testing.assert_array_equal(values[quality], np.broadcast_to(truth, values.shape)[quality])


def test_same_seeds_give_the_same_readings() -> None:
    noise = SensorNoise(level=1.0, dropout_prob=0.05)
    a, b, c = _model(noise, (3, 4)), _model(noise, (3, 4)), _model(noise, (3, 5))
    truth = _truth()
    for k in range(5):
        ra, rb, rc = (m.read(truth, 60.0 * k, NO_FAULTS) for m in (a, b, c))
        np.testing.assert_array_equal(ra.values, rb.values)
        np.testing.assert_array_equal(ra.quality, rb.quality)
        assert not np.array_equal(ra.values, rc.values, equal_nan=True)


def test_unknown_point_raises_key_error_naming_it() -> None:
    model = _model(SensorNoise())
    assert model.index("supply_air_c") == [p.name for p in POINTS].index("supply_air_c")
    with pytest.raises(KeyError, match="unknown sensor point 'no_such_point'"):
        model.index("no_such_point")
    effects = _effects(FaultEvent("sensor_bias", 0.0, target="no_such_point"))
    with pytest.raises(KeyError, match="no_such_point"):
        model.read(_truth(), 0.0, effects)


def test_small_catalog_works() -> None:
    points = (PointSpec("a_c", "degC"), PointSpec("b_kw", "kW"))
    model = SensorModel(points, SensorNoise(level=0.0), (0,))
    frame = model.read(np.array([[20.0, 5.0]]), 0.0, NO_FAULTS)
    assert frame.as_dict() == {"a_c": 20.0, "b_kw": 5.0}
