"""Values in Modbus registers: a point map entry's type and word order <-> 16-bit words.

A register is an unsigned 16-bit word. ``int16``/``uint16`` take one, ``int32``/``uint32``/
``float32`` two, in the entry's word order (``big``: the high word first, as most meters
send it; ``little``: the low word first). :func:`decode` never trusts its input: a wrong
number of words or a word outside 0-65535 raises :class:`RegisterError`; a float32 NaN is
returned as NaN (a meter's "no value"; for a TwinLoop setpoint, the hand-back).
"""

from __future__ import annotations

import logging
import math
import struct
from collections.abc import Sequence

from connectors.point_map import REGISTER_WORDS

logger = logging.getLogger(__name__)

NAN_WORDS_BIG = (0x7FC0, 0x0000)
"""A float32 quiet NaN, high word first."""

_FORMATS = {"int16": ">h", "uint16": ">H", "int32": ">i", "uint32": ">I", "float32": ">f"}
_RANGES = {
    "int16": (-(2**15), 2**15 - 1),
    "uint16": (0, 2**16 - 1),
    "int32": (-(2**31), 2**31 - 1),
    "uint32": (0, 2**32 - 1),
}


class RegisterError(ValueError):
    """Words that are not a value of the type, or a value the type cannot carry."""


def _order(words: Sequence[int], word_order: str) -> list[int]:
    return list(words) if word_order == "big" or len(words) == 1 else list(reversed(words))


def encode(raw: float, kind: str, word_order: str = "big") -> list[int]:
    """The words of ``raw`` (raw units: TwinLoop value / scale; integers rounded)."""
    if kind == "float32":
        packed = struct.pack(">f", raw)
    else:
        if not math.isfinite(raw):
            raise RegisterError(f"{raw} cannot be stored in a {kind}")
        number = round(raw)
        low, high = _RANGES[kind]
        if not low <= number <= high:
            raise RegisterError(f"{raw:g} does not fit a {kind}")
        packed = struct.pack(_FORMATS[kind], number)
    words = [int.from_bytes(packed[i : i + 2], "big") for i in range(0, len(packed), 2)]
    return _order(words, word_order)


def decode(words: Sequence[int], kind: str, word_order: str = "big") -> float:
    """The raw value of ``words`` (module docstring)."""
    n = REGISTER_WORDS[kind]
    if len(words) != n:
        raise RegisterError(f"a {kind} takes {n} register(s), got {len(words)}")
    for w in words:
        if isinstance(w, bool) or not isinstance(w, int) or not 0 <= w <= 0xFFFF:
            raise RegisterError(f"register word {w!r} is not 0-65535")
    data = b"".join(w.to_bytes(2, "big") for w in _order(words, word_order))
    return float(struct.unpack(_FORMATS[kind], data)[0])
