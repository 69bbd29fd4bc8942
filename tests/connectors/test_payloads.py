"""Property tests of the payload decoders: any bytes give a reading or a counted reason."""

from __future__ import annotations

import json
import math
from collections import Counter

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from connectors.payloads import (
    MAX_PAYLOAD_BYTES,
    REJECT_REASONS,
    PayloadError,
    SensorMessage,
    SetpointMessage,
    decode_override,
    decode_sensor,
    decode_setpoint,
)
from connectors.topics import Topics
from tests.connectors.junk import JUNK_KINDS, junk_stream

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=6)
    ),
    max_leaves=20,
)


@settings(max_examples=150, deadline=None)
@given(st.binary(max_size=6000))
def test_any_bytes_decode_or_raise_a_known_reason(payload: bytes) -> None:
    try:
        msg = decode_sensor(payload)
    except PayloadError as exc:
        assert exc.reason in REJECT_REASONS
    else:
        assert math.isfinite(msg.ts)
        assert msg.quality in ("good", "bad")


@settings(max_examples=150, deadline=None)
@given(
    st.dictionaries(st.sampled_from(["value", "unit", "ts", "quality", "seq", "x"]), json_values)
)
def test_any_json_object_decodes_or_raises_a_known_reason(data: dict[str, object]) -> None:
    payload = json.dumps(data, allow_nan=True).encode()
    for decode in (decode_sensor, decode_setpoint, decode_override):
        try:
            decode(payload)
        except PayloadError as exc:
            assert exc.reason in REJECT_REASONS


@settings(max_examples=100, deadline=None)
@given(
    value=st.floats(-50, 150),
    ts=st.floats(0, 1e9),  # epoch seconds: a negative ts is refused
    seq=st.integers(0, 2**63 - 1),
)
def test_good_sensor_messages_round_trip(value: float, ts: float, seq: int) -> None:
    msg = SensorMessage(value=value, unit="degC", ts=ts, quality="good", seq=seq)
    assert decode_sensor(msg.encode(), "degC") == msg


def test_bad_quality_reading_carries_null() -> None:
    msg = SensorMessage(value=math.nan, unit="kW", ts=1.0, quality="bad", seq=3)
    assert json.loads(msg.encode())["value"] is None
    back = decode_sensor(msg.encode())
    assert math.isnan(back.value) and back.quality == "bad"
    with pytest.raises(PayloadError) as err:
        decode_sensor(b'{"value": null, "unit": "kW", "ts": 1, "quality": "good", "seq": 1}')
    assert err.value.reason == "bad_quality_value"


@settings(max_examples=100, deadline=None)
@given(
    command_id=st.text(min_size=1, max_size=128),
    value=st.floats(allow_nan=False, allow_infinity=False),
    expires=st.floats(0, 1e9),
)
def test_setpoint_messages_round_trip(command_id: str, value: float, expires: float) -> None:
    msg = SetpointMessage(id=command_id, value=value, expires_at=expires, issued_at=0.0)
    assert decode_setpoint(msg.encode()) == msg


@pytest.mark.parametrize(
    ("payload", "reason"),
    [
        (b"\xff\xfe", "non_utf8"),
        (b"{", "invalid_json"),
        (b"[1]", "not_object"),
        (b'{"value": 1, "unit": "degC", "ts": 1, "quality": "good"}', "missing_field"),
        (b'{"value": "1", "unit": "degC", "ts": 1, "quality": "good", "seq": 1}', "wrong_type"),
        (b'{"value": true, "unit": "degC", "ts": 1, "quality": "good", "seq": 1}', "wrong_type"),
        (b'{"value": 1, "unit": "degC", "ts": 1, "quality": "good", "seq": 1.0}', "wrong_type"),
        (b'{"value": NaN, "unit": "degC", "ts": 1, "quality": "good", "seq": 1}', "non_finite"),
        (b'{"value": 1e999, "unit": "degC", "ts": 1, "quality": "good", "seq": 1}', "non_finite"),
        (b'{"value": 151, "unit": "degC", "ts": 1, "quality": "good", "seq": 1}', "out_of_range"),
        (b'{"value": -1, "unit": "kW", "ts": 1, "quality": "good", "seq": 1}', "out_of_range"),
        (b'{"value": 1.5, "unit": "frac", "ts": 1, "quality": "good", "seq": 1}', "out_of_range"),
        (b'{"value": 1, "unit": "degC", "ts": 1, "quality": "good", "seq": -1}', "out_of_range"),
        (b" " * (MAX_PAYLOAD_BYTES + 1), "oversize"),
    ],
)
def test_each_reason(payload: bytes, reason: str) -> None:
    with pytest.raises(PayloadError) as err:
        decode_sensor(payload)
    assert err.value.reason == reason


def test_wrong_unit_is_checked_when_known() -> None:
    payload = SensorMessage(20.0, "degF", 1.0, "good", 1).encode()
    with pytest.raises(PayloadError) as err:
        decode_sensor(payload, "degC")
    assert err.value.reason == "wrong_unit"


def test_junk_generator_covers_every_kind() -> None:
    units = {"supply_air_c": "degC", "facility_power_kw": "kW", "crah_fan_speed_frac": "frac"}
    stream = junk_stream(Topics("s"), units, 3000, seed=1)
    kinds = Counter(reason for _, _, reason in stream if reason is not None)
    # A huge integer is refused as out_of_range, the reason it is labelled with.
    assert set(kinds) == set(JUNK_KINDS) - {"huge_integer"}
    assert len(JUNK_KINDS) >= 8


def test_oversize_integers_and_negative_times_are_counted_reasons() -> None:
    """A 4,000-digit integer is a PayloadError (counted), never an OverflowError."""
    huge = "9" * 4000
    cases = {
        f'{{"value": {huge}, "unit": "degC", "ts": 1, "quality": "good", "seq": 1}}': (
            "out_of_range"
        ),
        f'{{"value": 1, "unit": "degC", "ts": {huge}, "quality": "good", "seq": 1}}': (
            "out_of_range"
        ),
        '{"value": 1, "unit": "degC", "ts": -5, "quality": "good", "seq": 1}': "out_of_range",
        '{"value": 1e300, "unit": "K", "ts": 1, "quality": "good", "seq": 1}': "unknown_unit",
    }
    for text, reason in cases.items():
        with pytest.raises(PayloadError) as err:
            decode_sensor(text.encode())
        assert err.value.reason == reason
    with pytest.raises(PayloadError) as err:
        decode_override(f'{{"active": true, "by": "x", "ts": {huge}}}'.encode())
    assert err.value.reason == "out_of_range"
    with pytest.raises(PayloadError) as err:
        decode_setpoint(f'{{"id": "a", "value": {huge}, "expires_at": 1, "issued_at": 0}}'.encode())
    assert err.value.reason == "out_of_range"


def test_command_echoes_are_decoded_strictly() -> None:
    from connectors.payloads import CommandAck, decode_ack

    applied = CommandAck("c1.supply_air_c", "supply_air_c", "applied", 21.0, 600.0, "", 60.0)
    assert decode_ack(applied.encode()) == applied
    refused = CommandAck("c2", "cw_supply_c", "refused", None, None, "x" * 500, 60.0)
    assert decode_ack(refused.encode()).reason == "x" * 200
    for bad in (
        b'{"id": "", "field": "f", "outcome": "applied", "value": 1, "expires_at": 2,'
        b' "reason": "", "ts": 0}',
        b'{"id": "a", "field": "f", "outcome": "maybe", "value": 1, "expires_at": 2,'
        b' "reason": "", "ts": 0}',
        b'{"id": "a", "field": "f", "outcome": "applied", "value": null, "expires_at": 2,'
        b' "reason": "", "ts": 0}',
        b'{"id": "a", "field": "f", "outcome": "refused", "value": null, "expires_at": null,'
        b' "reason": "", "ts": 0}',
        b'{"id": "a", "field": "f", "outcome": "applied", "value": 1e999, "expires_at": 2,'
        b' "reason": "", "ts": 0}',
    ):
        with pytest.raises(PayloadError):
            decode_ack(bad)


def test_connector_errors_are_twinloop_errors() -> None:
    """Each keeps its own base and is also the error a user can act on (one line)."""
    from connectors.broker import BrokerError
    from connectors.historian import HistorianError
    from connectors.setpoint_writer import SetpointError
    from twinloop.errors import TwinLoopError

    for error, base in (
        (HistorianError, ValueError),
        (BrokerError, RuntimeError),
        (PayloadError, ValueError),
        (SetpointError, RuntimeError),
    ):
        assert issubclass(error, TwinLoopError) and issubclass(error, base)
