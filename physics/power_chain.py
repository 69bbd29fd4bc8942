"""Electrical power chain of the site: utility transformer → UPS → PDU → IT.

Each stage loses ``P_loss = P_rated · (a0 + a1·x + a2·x²)`` with ``x = P_out / P_rated``
the load fraction on its output (the form of EnergyPlus's UPS / transformer loss
curves: no-load, proportional and copper-like quadratic terms). IT load passes the PDU
and then the UPS; mechanical (cooling) load, lighting and auxiliaries bypass the UPS but
pass the transformer. The transformer is treated at unity power factor (kVA = kW).

``facility_kw`` is summed in one documented order, left to right::

    it_power_kw + pdu_loss_kw + ups_loss_kw + mechanical_power_kw
                + lighting_kw + aux_kw + transformer_loss_kw
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from numpy.typing import ArrayLike, NDArray

from physics.compiled import as_record, elementwise, jit, record_type

FloatArray = NDArray[np.float64]


@dataclass(frozen=True)
class LossCurve:
    """Quadratic loss curve of one conversion stage, coefficients per unit of rating."""

    rated_kw: float
    a0: float
    a1: float
    a2: float

    def __post_init__(self) -> None:
        if self.rated_kw <= 0.0:
            raise ValueError("rated_kw must be positive")
        if min(self.a0, self.a1, self.a2) < 0.0:
            raise ValueError("loss coefficients must be non-negative (losses grow with load)")


LossCurveRecord = record_type(LossCurve)


@jit
def stage_loss(curve: LossCurve, load_kw: float) -> float:
    """Loss of a stage delivering ``load_kw`` (negative load treated as zero)."""
    x = max(load_kw, 0.0) / curve.rated_kw
    return curve.rated_kw * (curve.a0 + x * (curve.a1 + x * curve.a2))


def loss_kw(curve: LossCurve, load_kw: ArrayLike) -> FloatArray:
    """Loss of a stage delivering ``load_kw`` (negative load treated as zero)."""
    return np.asarray(elementwise(stage_loss, as_record(curve), load_kw))


def _default_ups() -> LossCurve:
    # Double-conversion UPS: ≈ 95 % at 50 % load, ≈ 95.5 % at 60 %, ≈ 96 % at full load.
    return LossCurve(rated_kw=1500.0, a0=0.020, a1=0.006, a2=0.013)


def _default_pdu() -> LossCurve:
    # PDU transformer + distribution: ≈ 1.5–2 % loss near 1 MW of IT.
    return LossCurve(rated_kw=1200.0, a0=0.005, a1=0.0, a2=0.015)


def _default_transformer() -> LossCurve:
    # 2500 kVA utility transformer: 0.3 % no-load (core) + 1 % copper loss at full load.
    return LossCurve(rated_kw=2500.0, a0=0.003, a1=0.0, a2=0.010)


@dataclass(frozen=True)
class PowerChainParams:
    """Ratings and loss curves of the power chain plus the non-IT, non-cooling loads."""

    ups: LossCurve = field(default_factory=_default_ups)
    pdu: LossCurve = field(default_factory=_default_pdu)
    transformer: LossCurve = field(default_factory=_default_transformer)
    lighting_kw: float = 10.0
    aux_kw: float = 15.0
    """Security, BMS, offices."""

    def __post_init__(self) -> None:
        if self.lighting_kw < 0.0 or self.aux_kw < 0.0:
            raise ValueError("lighting_kw and aux_kw must be non-negative")


@dataclass(frozen=True)
class PowerChainFlows:
    """Losses and totals of the power chain (arrays broadcast from the inputs)."""

    pdu_loss_kw: FloatArray
    ups_loss_kw: FloatArray
    transformer_loss_kw: FloatArray
    lighting_kw: FloatArray
    aux_kw: FloatArray
    facility_kw: FloatArray
    """Total drawn from the utility, summed in the module's documented order."""


PowerChainParamsRecord = record_type(PowerChainParams)


@jit
def chain(
    p: PowerChainParams, it_power_kw: float, mechanical_power_kw: float
) -> tuple[float, float, float, float]:
    """PDU, UPS and transformer losses and the facility power (kW) for IT and mechanical
    loads: IT → PDU → UPS; the transformer carries everything, lighting and aux included."""
    pdu = stage_loss(p.pdu, it_power_kw)
    ups_out = it_power_kw + pdu
    ups = stage_loss(p.ups, ups_out)
    transformer_out = ups_out + ups + mechanical_power_kw + p.lighting_kw + p.aux_kw
    transformer = stage_loss(p.transformer, transformer_out)
    facility = (
        it_power_kw + pdu + ups + mechanical_power_kw + p.lighting_kw + p.aux_kw + transformer
    )
    return pdu, ups, transformer, facility


def power_chain(
    params: PowerChainParams, it_power_kw: ArrayLike, mechanical_power_kw: ArrayLike
) -> PowerChainFlows:
    """Losses of each stage and the facility power for IT and mechanical loads (:func:`chain`)."""
    pdu, ups, transformer, facility = elementwise(
        chain, as_record(params), it_power_kw, mechanical_power_kw, n_out=4
    )
    return PowerChainFlows(
        pdu_loss_kw=pdu,
        ups_loss_kw=ups,
        transformer_loss_kw=transformer,
        lighting_kw=np.full(pdu.shape, params.lighting_kw),
        aux_kw=np.full(pdu.shape, params.aux_kw),
        facility_kw=facility,
    )
