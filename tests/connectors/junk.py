"""Generated bad (and good) sensor messages, each labelled with the reason ingestion must give.

Used by the decoder tests and by the integration test that pushes them through Mosquitto.
"""

from __future__ import annotations

import json
import random
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from connectors.payloads import MAX_PAYLOAD_BYTES, PHYSICAL_RANGE
from connectors.topics import Topics

JUNK_KINDS: tuple[str, ...] = (
    "non_utf8",
    "invalid_json",
    "not_object",
    "missing_field",
    "wrong_type",
    "non_finite",
    "out_of_range",
    "wrong_unit",
    "oversize",
    "replayed",
    "unknown_point",
    "future_ts",
    "seq_jump",
    "huge_integer",
)

Message = tuple[str, bytes, str | None]
"""(topic, payload, expected reject reason or None for a good message)."""


def _parses(text: str) -> bool:
    try:
        json.loads(text)
    except ValueError:
        return False
    return True


def _good(unit: str, seq: int, rng: random.Random) -> dict[str, object]:
    low, high = PHYSICAL_RANGE[unit]
    low, high = max(low, -40.0), min(high, 2000.0)
    return {
        "value": rng.uniform(low, high),
        "unit": unit,
        "ts": 1000.0 + seq,
        "quality": "good",
        "seq": seq,
    }


@dataclass
class _Case:
    """One message being spoiled: its topic, its good body and what the builder may use."""

    topics: Topics
    topic: str
    unit: str
    body: dict[str, object]
    last_seq: int
    rng: random.Random


def _non_utf8(c: _Case) -> bytes:
    return b'{"value": 1.0, "unit": "' + bytes([0xFF, 0xFE, c.rng.randrange(128, 256)]) + b'"}'


def _invalid_json(c: _Case) -> bytes:
    text = json.dumps(c.body)
    cut = c.rng.randrange(1, len(text))
    broken = text[:cut] + c.rng.choice(["", "}", ",,", "'"])
    if _parses(broken):  # a cut at a field boundary plus "}" is still valid JSON
        broken += ",,"
    return broken.encode()


def _not_object(c: _Case) -> bytes:
    return json.dumps(c.rng.choice([[1, 2], 3.5, "x", None, True])).encode()


def _missing_field(c: _Case) -> None:
    del c.body[c.rng.choice(["value", "unit", "ts", "quality", "seq"])]


_WRONG: dict[str, list[object]] = {
    "value": ["12.5", [1.0], {"v": 1}, True],
    "ts": ["now", [0], False],
    "seq": [1.5, "7", True, [1]],
    "unit": [1, None, ["degC"]],
    "quality": [1, None, "excellent"],
}


def _wrong_type(c: _Case) -> None:
    name = c.rng.choice(["value", "ts", "seq", "unit", "quality"])
    c.body[name] = c.rng.choice(_WRONG[name])


def _non_finite(c: _Case) -> bytes:
    name = c.rng.choice(["value", "ts"])
    token = c.rng.choice(["NaN", "Infinity", "-Infinity", "1e999", "-1e999"])
    c.body[name] = "__TOKEN__"
    return json.dumps(c.body).replace('"__TOKEN__"', token).encode()


def _out_of_range(c: _Case) -> None:
    low, high = PHYSICAL_RANGE[c.unit]
    c.body["value"] = c.rng.choice(
        [low - 1.0 - c.rng.random() * 1e3, high + 1.0 + c.rng.random() * 1e3]
    )


def _wrong_unit(c: _Case) -> None:
    c.body["unit"] = c.rng.choice(["degF", "W", "%", "K", ""])


def _oversize(c: _Case) -> None:
    c.body["pad"] = "x" * (MAX_PAYLOAD_BYTES + c.rng.randrange(1, 4096))


def _replayed(c: _Case) -> None:
    c.body["seq"] = c.rng.randint(max(0, c.last_seq - 50), c.last_seq)


def _unknown_point(c: _Case) -> None:
    c.topic = f"{c.topics.root}/sensors/no_such_point_{c.rng.randrange(99)}"


def _future_ts(c: _Case) -> None:
    c.body["ts"] = c.rng.choice([1e12, 1e15, 4e9])


def _seq_jump(c: _Case) -> None:
    c.body["seq"] = c.rng.choice([2**63 - 1, c.last_seq + 10**7])


def _huge_integer(c: _Case) -> None:  # float() of it overflows: counted, never raised
    c.body[c.rng.choice(["value", "ts"])] = int("9" * c.rng.randrange(400, 4000))


_SPOILERS: dict[str, Callable[[_Case], bytes | None]] = {
    "non_utf8": _non_utf8,
    "invalid_json": _invalid_json,
    "not_object": _not_object,
    "missing_field": _missing_field,
    "wrong_type": _wrong_type,
    "non_finite": _non_finite,
    "out_of_range": _out_of_range,
    "wrong_unit": _wrong_unit,
    "oversize": _oversize,
    "replayed": _replayed,
    "unknown_point": _unknown_point,
    "future_ts": _future_ts,
    "seq_jump": _seq_jump,
    "huge_integer": _huge_integer,
}
_REASON = {"huge_integer": "out_of_range"}
"""Kinds whose expected reason is not their own name."""


def junk_stream(topics: Topics, units: Mapping[str, str], n: int, seed: int = 0) -> list[Message]:
    """``n`` messages, about a tenth good, the rest junk spread over :data:`JUNK_KINDS`."""
    rng = random.Random(seed)
    points = sorted(units)
    last_seq: dict[str, int] = {}
    out: list[Message] = []
    for i in range(n):
        point = rng.choice(points)
        kind = "good" if i % 10 == 0 or point not in last_seq else rng.choice(JUNK_KINDS)
        seq = last_seq.get(point, 0) + 1
        case = _Case(
            topics,
            topics.sensor(point),
            units[point],
            _good(units[point], seq, rng),
            last_seq.get(point, 0),
            rng,
        )
        if kind == "good":
            last_seq[point] = seq
            out.append((case.topic, json.dumps(case.body).encode(), None))
            continue
        payload = _SPOILERS[kind](case)
        if payload is None:
            payload = json.dumps(case.body).encode()
        out.append((case.topic, payload, _REASON.get(kind, kind)))
    return out
