"""The BMS emulator: serves the simulated plant over MQTT as a site's BMS gateway would.

Each plant step it publishes every sensor point of site 0 on ``{prefix}/{site}/sensors/{point}``
(value, unit, ts, quality, seq) at QoS 1. It takes setpoint commands from
``{prefix}/{site}/setpoints/{field}`` and judges each as a real BMS does:

- a command whose id was seen before is a duplicate and is never applied again; its echo is
  sent again (so a sender that re-sends until it hears back is idempotent);
- a command already expired (``expires_at`` <= plant time), or issued further ahead of the
  plant clock than ``max_command_s``, is refused;
- a value outside the BMS's own envelope (the plant's ``SetpointLimits``; the economiser
  enable is 0 or 1) is refused, not clipped: the sender learns its command did not hold;
- the newest command wins: one issued before the active command of its field is refused as
  superseded;
- a command's lifetime is capped: it lapses at ``expires_at`` or ``max_command_s`` after it
  arrived, whichever is first (a site setting, three control periods by default), so the
  hand-back to the site never depends on the sender alone; the field then falls back to
  the site's built-in control;
- while the retained operator override is active no command is applied (refused) and the
  site's own control runs.

Every command with a readable id is echoed on ``{prefix}/{site}/acks``
(:class:`~connectors.payloads.CommandAck`): the value applied and until when, or why it was
refused. The connection is a :class:`connectors.mqtt_service.MqttService`: a publish the
broker refuses (PUBACK reason code >= 0x80, e.g. an ACL denial, which paho otherwise reports
as published) is logged and counted as ``publish_refused``, one paho did not take (its outbox
full during a long disconnection) as ``publish_dropped`` (ingestion then sees the gap in
``seq``), and a session taken over by another process with the same identity as
``taken_over``.

Status is retained on ``{prefix}/{site}/status`` (online + which control is in charge), with a
last will saying ``offline``. Times are plant epoch seconds: ``epoch_s`` + plant time.

Sequence numbers are ``(boot second << 32) + sample count`` so they keep increasing across a
restart of the emulator (ingestion rejects an old or replayed ``seq``). At every connection,
before it says online, the emulator publishes its retained birth
(:class:`~connectors.payloads.BirthMessage`): plant clock, its speed (null when stepped by the
caller or unpaced) and a session (the boot second), which resets ingestion's sequence
tracking and bounds the ``ts`` it accepts.

Pacing: ``speed`` simulated seconds per wall second in a background thread (``math.inf`` for
as fast as possible), or no thread at all and the caller drives :meth:`BmsEmulator.step`.
"""

from __future__ import annotations

import contextlib
import logging
import math
import queue
import threading
import time
from collections import Counter, OrderedDict
from dataclasses import replace
from typing import Any, Literal

import paho.mqtt.client as mqtt

from connectors.broker import BrokerAddress
from connectors.mqtt_client import DEFAULT_SESSION_EXPIRY_S
from connectors.mqtt_service import MqttService
from connectors.payloads import (
    BirthMessage,
    CommandAck,
    PayloadError,
    SensorMessage,
    SetpointMessage,
    StatusMessage,
    decode_override,
    decode_setpoint,
)
from connectors.topics import Topics
from physics.plant.plant import Plant
from physics.plant.site_control import SetpointCommand

logger = logging.getLogger(__name__)

Control = Literal["site", "remote", "override"]
_SEEN_IDS = 100_000
DEFAULT_MAX_COMMAND_S = 900.0
"""A command's longest life at the BMS: three of the live loop's 300 s control periods."""
COUNTERS: tuple[str, ...] = (
    "applied",
    "duplicates",
    "expired",
    "superseded",
    "rejected",
    "overridden",
    "out_of_envelope",
    "future_issue",
    "capped",
    "steps",
    "published",
    "echoed",
    "publish_refused",
    "publish_dropped",
    "taken_over",
)


class BmsEmulator:
    """A plant behind an MQTT BMS gateway; see the module docstring."""

    def __init__(
        self,
        plant: Plant,
        address: BrokerAddress,
        topics: Topics,
        *,
        client_id: str | None = None,
        speed: float | None = None,
        epoch_s: float = 0.0,
        sensor_qos: int = 1,
        max_command_s: float = DEFAULT_MAX_COMMAND_S,
        session_expiry_s: int = DEFAULT_SESSION_EXPIRY_S,
        reconnect_min_s: int = 1,
        reconnect_max_s: int = 4,
    ) -> None:
        if speed is not None and not speed > 0:
            raise ValueError("speed must be positive (simulated seconds per wall second)")
        if not (math.isfinite(max_command_s) and max_command_s > 0):
            raise ValueError("max_command_s must be a positive number of plant seconds")
        self.max_command_s = float(max_command_s)
        """The longest a command holds after it arrives (plant seconds)."""
        self.plant = plant
        self.address = address
        self.topics = topics
        self.speed = speed
        self.epoch_s = float(epoch_s)
        self.sensor_qos = sensor_qos
        self.session_expiry_s = session_expiry_s
        self.client_id = client_id or f"twinloop-bms-{topics.site}"
        self.units = {p.name: p.unit for p in plant.sensors.points}
        self._sensor_topics = [topics.sensor(name) for name in plant.point_names]
        self._seq_base = int(time.time()) << 32
        self._samples = 0
        self._inbox: queue.Queue[tuple[str, bytes]] = queue.Queue()
        self._active: dict[str, SetpointMessage] = {}
        self._seen: OrderedDict[str, bytes] = OrderedDict()
        """Command ids seen, each with its echo (sent again for a duplicate)."""
        self._override = False
        self._control: Control | None = None
        self._counts: Counter[str] = Counter({name: 0 for name in COUNTERS})
        self.applied_ids: list[str] = []
        self._lock = threading.RLock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._last_reading: mqtt.MQTTMessageInfo | None = None
        """The newest reading published; stop waits for its PUBACK (QoS 1 goes in order)."""
        self._mqtt = MqttService(
            address,
            self.client_id,
            name="bms emulator",
            subscriptions=[(topics.setpoints_filter, 1), (topics.override, 1)],
            on_message=self._on_message,
            on_ready=self._on_ready,
            will=(topics.status, self._status_payload("offline", "site"), 1, True),
            session_expiry_s=session_expiry_s,
            reconnect_min_s=reconnect_min_s,
            reconnect_max_s=reconnect_max_s,
        )

    @property
    def _client(self) -> mqtt.Client:
        return self._mqtt.client

    # ------------------------------------------------------------------ clock
    @property
    def now_s(self) -> float:
        """Plant epoch seconds now."""
        return self.epoch_s + self.plant.time_s

    def birth(self) -> BirthMessage:
        """This emulator's birth: its plant clock now, speed and session."""
        paced = self.speed is not None and math.isfinite(self.speed)
        return BirthMessage(
            clock="plant",
            speed=self.speed if paced else None,
            ts=self.now_s,
            wall_ts=time.time(),
            session=self._seq_base >> 32,
            seq=self._seq_base + self._samples + 1,
        )

    @property
    def control(self) -> Control:
        if self._override:
            return "override"
        return "remote" if self._valid_commands() else "site"

    def _status_payload(self, state: Literal["online", "offline"], control: Control) -> bytes:
        return StatusMessage(state=state, control=control, ts=self.now_s).encode()

    # ------------------------------------------------------------------ network thread
    def _on_ready(self, client: mqtt.Client, refused: list[Any]) -> None:
        """Subscribed (SUBACK): birth and online status go out before the service counts as
        connected, so a command published after that finds its subscriber."""
        self._mqtt.publish(self.topics.birth, self.birth().encode(), 1, True)
        self._mqtt.publish(
            self.topics.status, self._status_payload("online", self.control), 1, True
        )
        logger.info("bms emulator online at %s", self.address)

    def _on_message(self, message: mqtt.MQTTMessage) -> None:
        self._inbox.put_nowait((message.topic, bytes(message.payload)))

    # ------------------------------------------------------------------ commands
    def _remember(self, command_id: str, echo: bytes) -> None:
        self._seen[command_id] = echo
        while len(self._seen) > _SEEN_IDS:
            self._seen.popitem(last=False)

    def _echo(self, ack: CommandAck) -> None:
        """Remember ``ack`` for its id and publish it (QoS 1) when connected."""
        payload = ack.encode()
        self._remember(ack.id, payload)
        self._send_echo(payload)

    def _send_echo(self, payload: bytes) -> None:
        if self._mqtt.connected:
            self._mqtt.publish(self.topics.acks, payload, qos=1)
            self._counts["echoed"] += 1

    def _envelope(self, field: str) -> tuple[float, float]:
        """The values the BMS accepts for ``field`` (its actuators' limits)."""
        if field == "economiser_enable":
            return (0.0, 1.0)
        low, high = getattr(self.plant.config.limits, field)
        return (float(low), float(high))

    def _valid_commands(self) -> dict[str, SetpointMessage]:
        now = self.now_s
        return {f: m for f, m in self._active.items() if m.expires_at > now}

    def process_commands(self) -> None:
        """Apply every command and override message received so far (in arrival order)."""
        with self._lock:
            while True:
                try:
                    topic, payload = self._inbox.get_nowait()
                except queue.Empty:
                    break
                try:
                    self._handle(topic, payload)
                except Exception:  # never let one message stop the plant
                    logger.exception("bms emulator: failed on %s", topic)
                    self._counts["rejected"] += 1
            self._apply_to_plant()

    def _handle(self, topic: str, payload: bytes) -> None:
        if topic == self.topics.override:
            try:
                override = decode_override(payload)
            except PayloadError as exc:
                logger.warning("bms emulator: bad override payload: %s", exc)
                self._counts["rejected"] += 1
                return
            if override.active != self._override:
                logger.warning(
                    "operator override %s by %r",
                    "ON" if override.active else "off",
                    override.by,
                )
            self._override = override.active
            if override.active:
                self._active.clear()
            return
        field = self.topics.field_of(topic)
        if field is None:
            logger.warning("bms emulator: command on a non-writable topic %s", topic)
            self._counts["rejected"] += 1
            return
        try:
            msg = decode_setpoint(payload)
        except PayloadError as exc:
            logger.warning("bms emulator: rejected command on %s: %s", topic, exc)
            self._counts["rejected"] += 1
            return
        if msg.id in self._seen:
            self._counts["duplicates"] += 1
            self._send_echo(self._seen[msg.id])
            return
        refusal = self._refusal(field, msg)
        if refusal is not None:
            counter, reason = refusal
            self._counts[counter] += 1
            self._echo(CommandAck(msg.id, field, "refused", None, None, reason, self.now_s))
            return
        capped = min(msg.expires_at, self.now_s + self.max_command_s)
        if capped < msg.expires_at:
            self._counts["capped"] += 1
            msg = replace(msg, expires_at=capped)
        self._active[field] = msg
        self._counts["applied"] += 1
        self.applied_ids.append(msg.id)
        self._echo(CommandAck(msg.id, field, "applied", msg.value, capped, "", self.now_s))

    def _refusal(self, field: str, msg: SetpointMessage) -> tuple[str, str] | None:
        """Why the BMS refuses ``msg`` (the counter and the reason echoed), or None."""
        now = self.now_s
        low, high = self._envelope(field)
        if self._override:
            return ("overridden", "operator override active")
        if msg.expires_at <= now:
            return ("expired", f"expired at {msg.expires_at:.0f} (plant time {now:.0f})")
        if msg.issued_at > now + self.max_command_s:
            return ("future_issue", f"issued at {msg.issued_at:.0f}, ahead of {now:.0f}")
        if not low <= msg.value <= high or (
            field == "economiser_enable" and msg.value not in (0.0, 1.0)
        ):
            return ("out_of_envelope", f"{msg.value:g} outside the envelope [{low:g}, {high:g}]")
        active = self._active.get(field)
        if active is not None and msg.issued_at < active.issued_at:
            return ("superseded", f"superseded by {active.id}")
        return None

    def _apply_to_plant(self) -> None:
        valid = self._valid_commands()
        self._active = valid  # lapsed commands are forgotten: the site takes the field back
        if valid and not self._override:
            values: dict[str, float] = {f: m.value for f, m in valid.items()}
            self.plant.apply_command(
                SetpointCommand(
                    command_id="+".join(m.id for m in valid.values()),
                    expires_at_s=min(m.expires_at for m in valid.values()) - self.epoch_s,
                    **values,
                )
            )
        else:
            self.plant.apply_command(None)
        control = self.control
        if control != self._control:
            self._control = control
            if self._mqtt.connected:
                self._mqtt.publish(
                    self.topics.status, self._status_payload("online", control), 1, True
                )

    def active_commands(self) -> dict[str, SetpointMessage]:
        """Commands in force now, by field."""
        with self._lock:
            return dict(self._valid_commands())

    # ------------------------------------------------------------------ stepping
    def step(self, n_steps: int = 1) -> None:
        """Apply pending commands, advance the plant and publish readings, ``n_steps`` times."""
        for _ in range(n_steps):
            with self._lock:
                self.process_commands()
                if self.plant.done:
                    raise RuntimeError("the plant's scenario has ended")
                frame = self.plant.step()
                self._counts["steps"] += 1
                self._samples += 1
                seq = self._seq_base + self._samples
                ts = self.now_s
                values, quality = frame.values[0], frame.quality[0]
            for i, topic in enumerate(self._sensor_topics):
                good = bool(quality[i]) and math.isfinite(float(values[i]))
                msg = SensorMessage(
                    value=float(values[i]) if good else math.nan,
                    unit=self.units[self.plant.point_names[i]],
                    ts=ts,
                    quality="good" if good else "bad",
                    seq=seq,
                )
                self._last_reading = self._mqtt.publish(topic, msg.encode(), qos=self.sensor_qos)
            with self._lock:
                self._counts["published"] += len(self._sensor_topics)

    def counters(self) -> dict[str, int]:
        """The counts of :data:`COUNTERS`: commands applied, duplicates, refused by reason
        (expired, superseded, overridden, out_of_envelope, future_issue), unreadable
        (rejected), lifetimes capped; steps, readings published, echoes sent and publishes
        the broker refused."""
        net = self._mqtt.counters()
        with self._lock:
            return {
                **self._counts,
                **{k: net[k] for k in ("publish_refused", "publish_dropped", "taken_over")},
            }

    # ------------------------------------------------------------------ lifecycle
    def start(self, *, wait_s: float | None = 10.0) -> BmsEmulator:
        """Connect; with ``speed`` set, also start the pacing thread."""
        self._stop.clear()
        self._mqtt.start(wait_s=wait_s)
        if self.speed is not None and self._thread is None:
            self._thread = threading.Thread(
                target=self._run, name=f"bms-{self.topics.site}", daemon=True
            )
            self._thread.start()
        return self

    def wait_connected(self, timeout_s: float) -> bool:
        return self._mqtt.wait_connected(timeout_s)

    def _run(self) -> None:
        assert self.speed is not None
        period_s = self.plant.step_s / self.speed
        next_t = time.monotonic()
        while not self._stop.is_set() and not self.plant.done:
            try:
                self.step()
            except Exception:
                logger.exception("bms emulator: step failed; stopping the pacing thread")
                break
            if math.isfinite(period_s):
                next_t += period_s
                delay = next_t - time.monotonic()
                if delay > 0:
                    self._stop.wait(delay)
                else:
                    next_t = time.monotonic()

    def stop(self) -> None:
        """Stop pacing, publish offline status and disconnect (the session stays)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10.0)
            self._thread = None
        if self._mqtt.connected:
            # The readings still in paho's queue go out first: a stop loses none of them.
            if self._last_reading is not None and self.sensor_qos > 0:
                with contextlib.suppress(RuntimeError, ValueError):
                    self._last_reading.wait_for_publish(10.0)
            info = self._mqtt.publish(
                self.topics.status, self._status_payload("offline", "site"), 1, True
            )
            with contextlib.suppress(RuntimeError, ValueError):
                info.wait_for_publish(2.0)
        self._mqtt.stop()

    def __enter__(self) -> BmsEmulator:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
