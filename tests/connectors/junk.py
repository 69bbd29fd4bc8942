"""Generated bad (and good) sensor messages, each labelled with the reason ingestion must give.

Used by the decoder tests and by the integration test that pushes them through Mosquitto.
"""

from __future__ import annotations

import json
import random
from collections.abc import Mapping

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


def junk_stream(topics: Topics, units: Mapping[str, str], n: int, seed: int = 0) -> list[Message]:
    """``n`` messages, about a tenth good, the rest junk spread over :data:`JUNK_KINDS`."""
    rng = random.Random(seed)
    points = sorted(units)
    last_seq: dict[str, int] = {}
    out: list[Message] = []
    for i in range(n):
        point = rng.choice(points)
        unit = units[point]
        topic = topics.sensor(point)
        kind = "good" if i % 10 == 0 or point not in last_seq else rng.choice(JUNK_KINDS)
        seq = last_seq.get(point, 0) + 1
        body = _good(unit, seq, rng)
        reason: str | None = kind
        if kind == "good":
            last_seq[point] = seq
            reason = None
        elif kind == "non_utf8":
            payload = (
                b'{"value": 1.0, "unit": "' + bytes([0xFF, 0xFE, rng.randrange(128, 256)]) + b'"}'
            )
            out.append((topic, payload, reason))
            continue
        elif kind == "invalid_json":
            text = json.dumps(body)
            cut = rng.randrange(1, len(text))
            broken = text[:cut] + rng.choice(["", "}", ",,", "'"])
            if _parses(broken):  # a cut at a field boundary plus "}" is still valid JSON
                broken += ",,"
            out.append((topic, broken.encode(), reason))
            continue
        elif kind == "not_object":
            out.append(
                (topic, json.dumps(rng.choice([[1, 2], 3.5, "x", None, True])).encode(), reason)
            )
            continue
        elif kind == "missing_field":
            del body[rng.choice(["value", "unit", "ts", "quality", "seq"])]
        elif kind == "wrong_type":
            name = rng.choice(["value", "ts", "seq", "unit", "quality"])
            wrong: dict[str, list[object]] = {
                "value": ["12.5", [1.0], {"v": 1}, True],
                "ts": ["now", [0], False],
                "seq": [1.5, "7", True, [1]],
                "unit": [1, None, ["degC"]],
                "quality": [1, None, "excellent"],
            }
            body[name] = rng.choice(wrong[name])
        elif kind == "non_finite":
            name = rng.choice(["value", "ts"])
            token = rng.choice(["NaN", "Infinity", "-Infinity", "1e999", "-1e999"])
            body[name] = "__TOKEN__"
            text = json.dumps(body).replace('"__TOKEN__"', token)
            out.append((topic, text.encode(), reason))
            continue
        elif kind == "out_of_range":
            low, high = PHYSICAL_RANGE[unit]
            body["value"] = rng.choice(
                [low - 1.0 - rng.random() * 1e3, high + 1.0 + rng.random() * 1e3]
            )
        elif kind == "wrong_unit":
            body["unit"] = rng.choice(["degF", "W", "%", "K", ""])
        elif kind == "oversize":
            body["pad"] = "x" * (MAX_PAYLOAD_BYTES + rng.randrange(1, 4096))
        elif kind == "replayed":
            body["seq"] = rng.randint(max(0, last_seq[point] - 50), last_seq[point])
        elif kind == "unknown_point":
            topic = f"{topics.root}/sensors/no_such_point_{rng.randrange(99)}"
        elif kind == "future_ts":
            body["ts"] = rng.choice([1e12, 1e15, 4e9])
        elif kind == "seq_jump":
            body["seq"] = rng.choice([2**63 - 1, last_seq[point] + 10**7])
        elif kind == "huge_integer":  # float() of it overflows: counted, never raised
            body[rng.choice(["value", "ts"])] = int("9" * rng.randrange(400, 4000))
            reason = "out_of_range"
        out.append((topic, json.dumps(body).encode(), reason))
    return out
