"""A built-in policy taken live through gate 1 and the operator's steps, recorded as a
test's: what the live loop's tests need in a reservoir."""

from __future__ import annotations

from control import approval
from control.preevaluation import register_builtin
from control.reservoir import Reservoir


def deploy(res: Reservoir, name: str) -> str:
    """Register the built-in ``name`` in ``res`` and take it live; its ref."""
    ref = register_builtin(res, name, actor="test").ref
    res.add_evaluation(ref, on="twin", scenario="w", kpis={"cooling_kwh": 1.0})
    res.transition(ref, "pre_evaluated", actor="gate1", reason="passed")
    approval.approve(res, ref, operator="ann", reason="ok")
    approval.promote(res, ref, operator="ann", reason="shadow")
    approval.promote(res, ref, operator="ann", reason="live")
    return ref
