"""JSON payloads on the wire (see :mod:`connectors.topics`) and their strict decoders.

Decoders never trust the input: every failure raises :class:`PayloadError` with a *reason*
from :data:`REJECT_REASONS`, which ingestion counts. A bad-quality sensor reading (a dropout)
carries ``"value": null``; a good one must carry a finite number inside the physical range
of its unit.
"""

from __future__ import annotations

import json
import logging
import math
from dataclasses import dataclass
from typing import Any, Final, Literal

from twinloop.errors import TwinLoopError

logger = logging.getLogger(__name__)

MAX_PAYLOAD_BYTES: Final = 4096

REJECT_REASONS: tuple[str, ...] = (
    "oversize",
    "non_utf8",
    "invalid_json",
    "not_object",
    "missing_field",
    "wrong_type",
    "non_finite",
    "out_of_range",
    "wrong_unit",
    "bad_quality_value",
    "replayed",
    "unknown_topic",
    "handler_error",
    "unknown_point",
    "unknown_unit",
    "future_ts",
    "seq_jump",
    "bad_birth",
)
"""Why a message is rejected; ingestion keeps one counter per reason."""

PHYSICAL_RANGE: dict[str, tuple[float, float]] = {
    "degC": (-50.0, 150.0),
    "kW": (0.0, 1.0e6),
    "frac": (-0.05, 1.05),
    "kg/s": (0.0, 1.0e5),
    "count": (0.0, 1.0e4),
    "bool": (0.0, 1.0),
}
"""Physically possible values per unit (a reading outside is impossible, not just unusual).
Fractions allow 5 % of measurement error at their limits: a transmitter at 100 % fan speed
reads 1.02 now and then (the plant's sensor noise does), but never 1.5."""

Quality = Literal["good", "bad"]


class PayloadError(ValueError, TwinLoopError):
    """A payload that cannot be accepted; ``reason`` is one of :data:`REJECT_REASONS`."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail


@dataclass(frozen=True)
class SensorMessage:
    value: float
    """NaN for a bad-quality reading without a value."""
    unit: str
    ts: float
    quality: Quality
    seq: int

    def encode(self) -> bytes:
        value = None if math.isnan(self.value) else self.value
        return json.dumps(
            {
                "value": value,
                "unit": self.unit,
                "ts": self.ts,
                "quality": self.quality,
                "seq": self.seq,
            },
            allow_nan=False,
        ).encode()


@dataclass(frozen=True)
class SetpointMessage:
    id: str
    value: float
    expires_at: float
    issued_at: float

    def encode(self) -> bytes:
        return json.dumps(
            {
                "id": self.id,
                "value": self.value,
                "expires_at": self.expires_at,
                "issued_at": self.issued_at,
            },
            allow_nan=False,
        ).encode()


@dataclass(frozen=True)
class StatusMessage:
    state: Literal["online", "offline"]
    control: Literal["site", "remote", "override"]
    ts: float

    def encode(self) -> bytes:
        return json.dumps({"state": self.state, "control": self.control, "ts": self.ts}).encode()


@dataclass(frozen=True)
class OverrideMessage:
    active: bool
    by: str
    ts: float

    def encode(self) -> bytes:
        return json.dumps({"active": self.active, "by": self.by, "ts": self.ts}).encode()


AckOutcome = Literal["applied", "refused"]
MAX_REASON_CHARS = 200


@dataclass(frozen=True)
class CommandAck:
    """The BMS's echo of one setpoint command, on ``{prefix}/{site}/acks``: the value it
    applied and until when (its own lifetime cap may shorten the command's), or why it
    refused the command. The BMS echoes a command id again each time it receives it."""

    id: str
    field: str
    outcome: AckOutcome
    value: float | None
    """The value applied; None when refused."""
    expires_at: float | None
    """When the BMS hands the field back to the site; None when refused."""
    reason: str
    """Why it was refused ("" when applied)."""
    ts: float

    def encode(self) -> bytes:
        return json.dumps(
            {
                "id": self.id,
                "field": self.field,
                "outcome": self.outcome,
                "value": self.value,
                "expires_at": self.expires_at,
                "reason": self.reason[:MAX_REASON_CHARS],
                "ts": self.ts,
            },
            allow_nan=False,
        ).encode()


Clock = Literal["wall", "plant"]


@dataclass(frozen=True)
class BirthMessage:
    """A publisher's declaration, retained on ``{prefix}/{site}/birth`` (Sparkplug's NBIRTH):
    which clock its ``ts`` follow and a new ``session`` each time it starts.

    ``clock`` "wall": ``ts`` are Unix seconds. "plant": emulated plant time, ``ts`` at
    ``wall_ts`` (Unix seconds) and advancing ``speed`` plant seconds per wall second, or
    stepped by its driver when ``speed`` is None. A new session resets the sequence numbers
    of every point of the publisher; ``seq``, when given, is the lowest sequence number its
    readings in the session carry (the first reading of each point must be near it)."""

    clock: Clock
    speed: float | None
    ts: float
    wall_ts: float
    session: int
    seq: int | None = None

    def encode(self) -> bytes:
        return json.dumps(
            {
                "clock": self.clock,
                "speed": self.speed,
                "ts": self.ts,
                "wall_ts": self.wall_ts,
                "session": self.session,
                "seq": self.seq,
            },
            allow_nan=False,
        ).encode()


# --------------------------------------------------------------------------- decoding
def _reject_constant(name: str) -> float:
    raise PayloadError("non_finite", f"JSON constant {name} is not a finite number")


_DECODER = json.JSONDecoder(parse_constant=_reject_constant)
"""One decoder for every payload (``json.loads`` with an argument builds a new one per call)."""


def load_object(payload: bytes) -> dict[str, Any]:
    """Size, UTF-8 and JSON checks; the payload must be one JSON object."""
    if len(payload) > MAX_PAYLOAD_BYTES:
        raise PayloadError("oversize", f"{len(payload)} bytes > {MAX_PAYLOAD_BYTES}")
    try:
        text = payload.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise PayloadError("non_utf8", str(exc)) from None
    try:
        data = _DECODER.decode(text)
    except PayloadError:
        raise
    except (ValueError, RecursionError) as exc:
        raise PayloadError("invalid_json", str(exc)[:200]) from None
    if not isinstance(data, dict):
        raise PayloadError("not_object", f"payload is a JSON {type(data).__name__}")
    return data


def _field(data: dict[str, Any], name: str) -> Any:
    if name not in data:
        raise PayloadError("missing_field", f"no {name!r}")
    return data[name]


def _number(data: dict[str, Any], name: str) -> float:
    value = _field(data, name)
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise PayloadError("wrong_type", f"{name!r} must be a number, got {type(value).__name__}")
    try:
        out = float(value)
    except OverflowError:  # an integer of hundreds of digits: a counted rejection
        raise PayloadError("out_of_range", f"{name!r} has {len(str(value))} digits") from None
    if not math.isfinite(out):
        raise PayloadError("non_finite", f"{name!r} is {out}")
    return out


def _string(data: dict[str, Any], name: str) -> str:
    value = _field(data, name)
    if not isinstance(value, str):
        raise PayloadError("wrong_type", f"{name!r} must be a string, got {type(value).__name__}")
    return value


def decode_sensor(
    payload: bytes,
    expected_unit: str | None = None,
    bounds: tuple[float, float] | None = None,
) -> SensorMessage:
    """A sensor reading, checked field by field and against the physical range of its unit
    (a unit without one is refused as ``unknown_unit``), or against ``bounds`` when given
    (the point's own, from its catalog)."""
    data = load_object(payload)
    for name in ("value", "unit", "ts", "quality", "seq"):
        _field(data, name)
    unit = _string(data, "unit")
    quality = _string(data, "quality")
    if quality not in ("good", "bad"):
        raise PayloadError("wrong_type", f"'quality' must be good or bad, got {quality[:20]!r}")
    ts = _number(data, "ts")
    if ts < 0:
        raise PayloadError("out_of_range", f"'ts' {ts} is negative")
    seq = data["seq"]
    if isinstance(seq, bool) or not isinstance(seq, int):
        raise PayloadError("wrong_type", f"'seq' must be an integer, got {type(seq).__name__}")
    if not 0 <= seq < 2**63:
        raise PayloadError("out_of_range", f"'seq' {seq} outside [0, 2^63)")
    if expected_unit is not None and unit != expected_unit:
        raise PayloadError("wrong_unit", f"unit {unit[:20]!r}, expected {expected_unit!r}")
    if unit not in PHYSICAL_RANGE:
        raise PayloadError("unknown_unit", f"unit {unit[:20]!r} has no physical range")
    if data["value"] is None:
        if quality == "good":
            raise PayloadError("bad_quality_value", "a good reading needs a value")
        value = math.nan
    else:
        value = _number(data, "value")
        low, high = bounds if bounds is not None else PHYSICAL_RANGE[unit]
        if not low <= value <= high:
            raise PayloadError("out_of_range", f"{value} {unit} outside [{low}, {high}]")
    return SensorMessage(value=value, unit=unit, ts=ts, quality=quality, seq=seq)  # type: ignore[arg-type]


def decode_birth(payload: bytes) -> BirthMessage:
    """A birth message; every field checked (``speed`` positive and finite, or null)."""
    data = load_object(payload)
    clock = _string(data, "clock")
    if clock not in ("wall", "plant"):
        raise PayloadError("bad_birth", f"'clock' must be wall or plant, got {clock[:20]!r}")
    speed: float | None = None
    if _field(data, "speed") is not None:
        speed = _number(data, "speed")
        if not 0 < speed <= 1e6:
            raise PayloadError("bad_birth", f"'speed' {speed} outside (0, 1e6]")
    session = _field(data, "session")
    if isinstance(session, bool) or not isinstance(session, int) or not 0 <= session < 2**63:
        raise PayloadError("bad_birth", "'session' must be an integer in [0, 2^63)")
    ts, wall_ts = _number(data, "ts"), _number(data, "wall_ts")
    if ts < 0 or wall_ts < 0:
        raise PayloadError("bad_birth", "'ts' and 'wall_ts' must not be negative")
    seq = data.get("seq")
    if seq is not None and (
        isinstance(seq, bool) or not isinstance(seq, int) or not 0 <= seq < 2**63
    ):
        raise PayloadError("bad_birth", "'seq' must be null or an integer in [0, 2^63)")
    return BirthMessage(clock, speed, ts, wall_ts, session, seq)  # type: ignore[arg-type]


def decode_setpoint(payload: bytes) -> SetpointMessage:
    """A setpoint command: non-empty id (<= 128 chars), finite value, expiry and issue time."""
    data = load_object(payload)
    return SetpointMessage(
        id=_command_id(data),
        value=_number(data, "value"),
        expires_at=_number(data, "expires_at"),
        issued_at=_number(data, "issued_at"),
    )


def decode_override(payload: bytes) -> OverrideMessage:
    """The operator override; an empty retained payload (cleared) means not active."""
    if not payload:
        return OverrideMessage(active=False, by="", ts=0.0)
    data = load_object(payload)
    active = _field(data, "active")
    if not isinstance(active, bool):
        raise PayloadError("wrong_type", "'active' must be true or false")
    by = data.get("by", "")
    if not isinstance(by, str):
        raise PayloadError("wrong_type", "'by' must be a string")
    if "ts" not in data:
        data["ts"] = 0.0
    return OverrideMessage(active=active, by=by, ts=_number(data, "ts"))


def _command_id(data: dict[str, Any]) -> str:
    command_id = _string(data, "id")
    if not command_id or len(command_id) > 128:
        raise PayloadError("out_of_range", "'id' must have 1 to 128 characters")
    return command_id


def _optional_number(data: dict[str, Any], name: str) -> float | None:
    return None if _field(data, name) is None else _number(data, name)


def decode_ack(payload: bytes) -> CommandAck:
    """A BMS's command echo: every field checked; an applied echo carries a value and an
    expiry, a refused one a reason."""
    data = load_object(payload)
    command_id = _command_id(data)
    field, outcome, reason = (
        _string(data, "field"),
        _string(data, "outcome"),
        _string(data, "reason"),
    )
    if not field or len(field) > 64:
        raise PayloadError("out_of_range", "'field' must have 1 to 64 characters")
    if outcome not in ("applied", "refused"):
        raise PayloadError(
            "wrong_type", f"'outcome' must be applied or refused, got {outcome[:20]!r}"
        )
    value, expires_at = _optional_number(data, "value"), _optional_number(data, "expires_at")
    if outcome == "applied" and (value is None or expires_at is None):
        raise PayloadError("missing_field", "an applied echo needs 'value' and 'expires_at'")
    if outcome == "refused" and not reason:
        raise PayloadError("missing_field", "a refused echo needs a 'reason'")
    return CommandAck(
        id=command_id,
        field=field,
        outcome=outcome,  # type: ignore[arg-type]
        value=value,
        expires_at=expires_at,
        reason=reason[:MAX_REASON_CHARS],
        ts=_number(data, "ts"),
    )
