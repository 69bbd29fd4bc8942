"""Tests for the transformer → UPS → PDU → IT power chain."""

from __future__ import annotations

import numpy as np
import pytest

from physics.power_chain import LossCurve, PowerChainParams, loss_kw, power_chain

PARAMS = PowerChainParams()


def _efficiency(curve: LossCurve, load_frac: float) -> float:
    load = load_frac * curve.rated_kw
    return float(load / (load + loss_kw(curve, load)))


@pytest.mark.parametrize(
    ("load_frac", "low", "high"),
    [(0.25, 0.90, 0.935), (0.5, 0.945, 0.955), (0.75, 0.955, 0.965), (1.0, 0.958, 0.967)],
)
def test_ups_efficiency_is_that_of_a_double_conversion_ups(
    load_frac: float, low: float, high: float
) -> None:
    assert low <= _efficiency(PARAMS.ups, load_frac) <= high


def test_pdu_and_transformer_efficiency_plausible() -> None:
    for frac in (0.25, 0.5, 0.75, 1.0):
        assert 0.975 <= _efficiency(PARAMS.pdu, frac) <= 0.99
        assert 0.985 <= _efficiency(PARAMS.transformer, frac) <= 0.995
    # Transformer: 0.3 % no-load + 1 % copper loss at rated load.
    assert loss_kw(PARAMS.transformer, 0.0) == pytest.approx(7.5)
    assert loss_kw(PARAMS.transformer, 2500.0) == pytest.approx(32.5)


def test_losses_monotone_in_load() -> None:
    load = np.linspace(0.0, 1500.0, 61)
    for curve in (PARAMS.ups, PARAMS.pdu, PARAMS.transformer):
        assert np.all(np.diff(loss_kw(curve, load)) > 0.0)
    facility = power_chain(PARAMS, load, 300.0).facility_kw
    assert np.all(np.diff(facility) > 0.0)


def test_facility_power_sums_exactly_and_shape_is_preserved() -> None:
    rng = np.random.default_rng(3)
    it = rng.uniform(200.0, 1200.0, size=(4, 24))
    mech = rng.uniform(50.0, 500.0, size=(4, 24))
    flows = power_chain(PARAMS, it, mech)
    for arr in (flows.pdu_loss_kw, flows.ups_loss_kw, flows.lighting_kw, flows.facility_kw):
        assert arr.shape == (4, 24)
    recomputed = (
        it
        + flows.pdu_loss_kw
        + flows.ups_loss_kw
        + mech
        + flows.lighting_kw
        + flows.aux_kw
        + flows.transformer_loss_kw
    )
    np.testing.assert_array_equal(flows.facility_kw, recomputed)


def test_routing_ups_carries_it_only_transformer_carries_everything() -> None:
    base = power_chain(PARAMS, 1000.0, 300.0)
    more_mech = power_chain(PARAMS, 1000.0, 600.0)
    assert more_mech.ups_loss_kw == base.ups_loss_kw
    assert more_mech.pdu_loss_kw == base.pdu_loss_kw
    assert more_mech.transformer_loss_kw > base.transformer_loss_kw
    ups_out = 1000.0 + base.pdu_loss_kw
    assert base.ups_loss_kw == pytest.approx(loss_kw(PARAMS.ups, ups_out))
    xfmr_out = ups_out + base.ups_loss_kw + 300.0 + 10.0 + 15.0
    assert base.transformer_loss_kw == pytest.approx(loss_kw(PARAMS.transformer, xfmr_out))
    # Reference site at 1 MW IT: chain losses ≈ 8 % of IT.
    chain = base.pdu_loss_kw + base.ups_loss_kw + base.transformer_loss_kw
    assert 0.06 < chain / 1000.0 < 0.10


def test_params_validate() -> None:
    with pytest.raises(ValueError, match="rated_kw"):
        LossCurve(rated_kw=0.0, a0=0.0, a1=0.0, a2=0.0)
    with pytest.raises(ValueError, match="non-negative"):
        PowerChainParams(lighting_kw=-1.0)
