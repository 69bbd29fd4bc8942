"""The MQTT topic layout of one site, shared by the BMS emulator, ingestion and controllers.

All topics of a site derive from ``Topics(site, prefix)``::

    {prefix}/{site}/sensors/{point}     sensor readings (JSON, QoS 1)
    {prefix}/{site}/setpoints/{field}   setpoint commands (JSON, QoS 1); field in SETPOINT_FIELDS
    {prefix}/{site}/status              retained gateway status; the last will says "offline"
    {prefix}/{site}/override            retained operator override (manual control at the BMS)
    {prefix}/{site}/birth               retained publisher birth: its clock and session
    {prefix}/{site}/acks                the BMS's echo of each command (JSON, QoS 1)

Payloads (all JSON objects)::

    sensors    {"value": float, "unit": str, "ts": float, "quality": "good"|"bad", "seq": int}
    setpoints  {"id": str, "value": float, "expires_at": float, "issued_at": float}
    status     {"state": "online"|"offline", "control": "site"|"remote"|"override", "ts": float}
    override   {"active": bool, "by": str, "ts": float}
    birth      {"clock": "wall"|"plant", "speed": float|null, "ts": float, "wall_ts": float,
                "session": int}
    acks       {"id": str, "field": str, "outcome": "applied"|"refused", "value": float|null,
                "expires_at": float|null, "reason": str, "ts": float}

``ts``, ``expires_at`` and ``issued_at`` are plant epoch seconds (simulated time for the
emulator). Sensor ``seq`` is per point and strictly increasing.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Final

from physics.plant.site_control import SETPOINT_FIELDS

logger = logging.getLogger(__name__)

DEFAULT_PREFIX: Final = "twinloop"
SENSORS: Final = "sensors"
SETPOINTS: Final = "setpoints"
STATUS: Final = "status"
OVERRIDE: Final = "override"
BIRTH: Final = "birth"
ACKS: Final = "acks"

_FORBIDDEN = frozenset("/+#\x00")


def _check_level(kind: str, value: str) -> None:
    if not value or any(ch in _FORBIDDEN for ch in value) or value != value.strip():
        raise ValueError(
            f"topic {kind} {value!r} must be a non-empty name without '/', '+', '#', "
            "NUL or surrounding spaces"
        )


@dataclass(frozen=True)
class Topics:
    """Every MQTT topic of one site, derived from ``site`` and ``prefix``."""

    site: str
    prefix: str = DEFAULT_PREFIX

    def __post_init__(self) -> None:
        _check_level("site", self.site)
        _check_level("prefix", self.prefix)

    @property
    def root(self) -> str:
        """``{prefix}/{site}``."""
        return f"{self.prefix}/{self.site}"

    # ------------------------------------------------------------------ topics
    def sensor(self, point: str) -> str:
        """Topic of one sensor point."""
        _check_level("point", point)
        return f"{self.root}/{SENSORS}/{point}"

    def setpoint(self, field: str) -> str:
        """Topic of one writable setpoint; ``field`` must be in ``SETPOINT_FIELDS``."""
        if field not in SETPOINT_FIELDS:
            raise ValueError(
                f"setpoint field {field!r} is not writable; allowed: {', '.join(SETPOINT_FIELDS)}"
            )
        return f"{self.root}/{SETPOINTS}/{field}"

    @property
    def status(self) -> str:
        return f"{self.root}/{STATUS}"

    @property
    def override(self) -> str:
        return f"{self.root}/{OVERRIDE}"

    @property
    def birth(self) -> str:
        """Retained birth of the site's sensor publisher (a ``BirthMessage``)."""
        return f"{self.root}/{BIRTH}"

    @property
    def acks(self) -> str:
        """Where the BMS echoes each command: the value applied, or why it refused it."""
        return f"{self.root}/{ACKS}"

    # ------------------------------------------------------------------ filters
    @property
    def sensors_filter(self) -> str:
        """Subscription filter matching every sensor point of the site."""
        return f"{self.root}/{SENSORS}/+"

    @property
    def setpoints_filter(self) -> str:
        """Subscription filter matching every setpoint topic of the site."""
        return f"{self.root}/{SETPOINTS}/+"

    def setpoint_topics(self) -> tuple[str, ...]:
        """The allow-listed setpoint topics, one per ``SETPOINT_FIELDS`` entry."""
        return tuple(self.setpoint(field) for field in SETPOINT_FIELDS)

    # ------------------------------------------------------------------ parsing
    def point_of(self, topic: str) -> str | None:
        """The sensor point named by ``topic``, or None if it is not one of this site's."""
        head = f"{self.root}/{SENSORS}/"
        if not topic.startswith(head):
            return None
        point = topic[len(head) :]
        if not point or any(ch in _FORBIDDEN for ch in point):
            return None
        return point

    def field_of(self, topic: str) -> str | None:
        """The setpoint field named by ``topic``, or None if it is not an allowed one."""
        head = f"{self.root}/{SETPOINTS}/"
        if not topic.startswith(head):
            return None
        field = topic[len(head) :]
        return field if field in SETPOINT_FIELDS else None
