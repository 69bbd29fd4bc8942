"""Who holds each writable setpoint right now: the site's own control, TwinLoop (with the
live policy, or handing back to the site), or an override at the BMS.

Read from what the live loop leaves in the historian: a ``ctl.<field>`` reading in the
newest control period means TwinLoop wrote that field (its command expires one period
later); the newest ``override`` event of the live loop says whether the operator's override
at the BMS is active (then TwinLoop writes nothing); the newest ``hand_back`` event whether
a hand-back to the site is under way (:mod:`control.hand_back`); the reservoir names the
live policy.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from connectors.historian import Event, HistorianStore, Reading
from physics.plant.site_control import SETPOINT_FIELDS

SITE = "the site's own control"
OVERRIDE = "override at the BMS (TwinLoop writes nothing)"
HANDING_BACK = "TwinLoop, handing back to the site at safe rates"


@dataclass(frozen=True)
class Holder:
    """One writable point and who holds it."""

    field: str
    holder: str
    twinloop_value: float | None
    """TwinLoop's newest setpoint for it, when TwinLoop holds it."""


def _newest(events: list[Event], kind: str) -> Event | None:
    return next((e for e in events if e.kind == kind), None)


def holders(
    store: HistorianStore, latest: Mapping[str, Reading], live_ref: str | None
) -> list[Holder]:
    """Every setpoint field and who holds it (module docstring)."""
    loop_times = [r.time_s for name, r in latest.items() if name.startswith("kpi.")]
    newest_period_s = max(loop_times, default=None)
    events = store.events(limit=200)
    override = _newest(events, "override")
    overridden = override is not None and "override active" in override.message
    hand_back = _newest(events, "hand_back")
    handing_back = hand_back is not None and hand_back.message.startswith("handing back")
    out: list[Holder] = []
    for field in SETPOINT_FIELDS:
        command = latest.get(f"ctl.{field}")
        written = (
            command is not None
            and newest_period_s is not None
            and command.time_s >= newest_period_s
        )
        if overridden:
            out.append(Holder(field, OVERRIDE, None))
        elif written and command is not None:
            who = HANDING_BACK if handing_back else f"TwinLoop: {live_ref or 'a policy'}"
            out.append(Holder(field, who, command.value))
        else:
            out.append(Holder(field, SITE, None))
    return out
