"""Sensor ingestion: MQTT → validation → historian, never stopped by one bad message.

:class:`MqttIngestor` follows Home Assistant's MQTT design: paho's ``on_message`` only copies
topic and payload into a :class:`queue.Queue`; a consumer thread decodes and validates
(:func:`connectors.payloads.decode_sensor`), counts every rejected message by reason, tracks
per-point sequence numbers (a replayed or old ``seq`` is rejected, a gap marks the point
stale) and writes accepted readings to the historian in batches (one transaction each).

Every network input is checked before it is believed:

- the point must be in the site's catalog (:class:`connectors.catalog.PointCatalog`), with
  its own unit and a value inside the bounds of its kind (``unknown_point``,
  ``wrong_unit``, ``unknown_unit``, ``out_of_range``);
- ``ts`` must not be ahead of the publisher's declared time base
  (:class:`connectors.time_base.TimeBase`, from the retained birth message on
  ``{prefix}/{site}/birth``; ``future_ts``);
- ``seq`` must increase, by at most :data:`MAX_SEQ_STEP` (``replayed``, ``seq_jump``); a
  birth with a new session resets every point's sequence (Sparkplug's rule), so a publisher
  restart, or one reading with ``seq`` 2^63-1, cannot lock a point out.
Handlers registered with :meth:`MqttIngestor.add_handler` see each accepted reading; each
call is wrapped, so a raising handler never stops the next message.

The connection is a :class:`connectors.mqtt_service.MqttService`: MQTT 5 with a persistent
session (``clean_start=False`` plus a ``SessionExpiryInterval``), subscribed at QoS 1 after
every (re)connection, reconnects with exponential backoff, guarded callbacks and its
counters (connects, disconnects, sessions taken over...) in :meth:`MqttIngestor.stats`.

Nothing is lost or stored twice across a restart: a QoS 1 message is acknowledged (PUBACK)
only once the batch holding it is committed to the historian (or it is rejected), so a
message received by a process that dies before the commit stays in the broker's session and
is delivered again to the next one (MQTT 5 resends unacknowledged messages on reconnect).
The CONNECT's Receive Maximum lets the broker send up to :data:`RECEIVE_MAXIMUM` messages
before the first acknowledgement, so batches stay large. A message redelivered after its
batch was committed is stored once (the historian's unique key on point, time and sequence;
counted as ``duplicates``). A message received before a reconnect is not acknowledged on
the new connection (its id may name another message there); the broker resends it. At
start the newest stored sequence number of each point is read back, so readings lost while
ingestion was down show as ``gaps``.
"""

from __future__ import annotations

import contextlib
import logging
import queue
import statistics
import threading
import time
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import paho.mqtt.client as mqtt

from connectors.broker import BrokerAddress, BrokerError
from connectors.catalog import PointCatalog
from connectors.historian import HistorianStore, Reading
from connectors.mqtt_client import DEFAULT_SESSION_EXPIRY_S
from connectors.mqtt_service import COUNTERS as SERVICE_COUNTERS
from connectors.mqtt_service import MqttService
from connectors.payloads import (
    REJECT_REASONS,
    PayloadError,
    SensorMessage,
    decode_birth,
    decode_sensor,
)
from connectors.time_base import TimeBase
from connectors.topics import Topics

logger = logging.getLogger(__name__)

ReadingHandler = Callable[[Reading], None]
_Ack = tuple[int, int]
"""(connection number, MQTT message id) of a QoS 1 message to acknowledge once settled."""

RECEIVE_MAXIMUM = 65535
"""Unacknowledged QoS 1 messages the broker may send before ingestion acknowledges (MQTT 5's
largest; at most ``max_queue``)."""
MAX_SEQ_STEP = 1_000_000
"""The largest forward jump of one point's ``seq`` within a publisher session (a million
missed samples); a bigger one is refused as ``seq_jump``."""

NET_COUNTERS: tuple[str, ...] = (*SERVICE_COUNTERS, "dropped_queue_full")
COUNTERS: tuple[str, ...] = (
    "received",
    "accepted",
    "written",
    "batches",
    "gaps",
    "handler_errors",
    "write_errors",
    "dropped_write_failed",
    "births",
    "duplicates",
    "acked",
)


@dataclass(frozen=True)
class PointState:
    """What ingestion knows of one point now."""

    point: str
    value: float
    unit: str
    ts: float
    quality: str
    seq: int
    stale: bool
    stale_reason: str
    """"" when fresh; "gap" (a sequence number was skipped) or "silence" (nothing for
    ``stale_after_s``)."""
    age_s: float
    """Wall-clock seconds since the last accepted message."""


@dataclass
class _Track:
    reading: Reading
    received_mono: float
    gap: bool
    session: int
    """The ingestor's publisher session when it was accepted (a new birth starts another)."""


class MqttIngestor:
    """Subscribe to a site's sensors and store them; see the module docstring."""

    def __init__(
        self,
        address: BrokerAddress,
        topics: Topics,
        historian: HistorianStore,
        *,
        client_id: str | None = None,
        units: Mapping[str, str] | None = None,
        catalog: PointCatalog | None = None,
        time_base: TimeBase | None = None,
        session_expiry_s: int = DEFAULT_SESSION_EXPIRY_S,
        qos: int = 1,
        batch_size: int = 2000,
        batch_wait_s: float = 0.05,
        stale_after_s: float = 10.0,
        max_queue: int = 1_000_000,
        reconnect_min_s: int = 1,
        reconnect_max_s: int = 8,
        points: Sequence[str] | None = None,
    ) -> None:
        if points is not None and not points:
            raise ValueError("points: give at least one point, or None for all of the site's")
        if batch_size < 1 or batch_wait_s <= 0 or stale_after_s <= 0:
            raise ValueError("batch_size, batch_wait_s and stale_after_s must be positive")
        self.address = address
        self.topics = topics
        self.historian = historian
        if catalog is None:
            catalog = PointCatalog(units) if units is not None else PointCatalog.reference()
        self.catalog = catalog
        """The allow-list: only these points, in these units and bounds, are stored."""
        self.time_base = time_base or TimeBase()
        self.session_expiry_s = session_expiry_s
        self.qos = qos
        self.batch_size = batch_size
        self.batch_wait_s = batch_wait_s
        self.stale_after_s = stale_after_s
        self.client_id = client_id or f"twinloop-ingest-{topics.site}"
        self.subscriptions: tuple[str, ...] = (
            (topics.sensors_filter,) if points is None else tuple(topics.sensor(p) for p in points)
        ) + (topics.birth,)
        """The sensor filter, or one topic per point of a share (:mod:`connectors.ingest_pool`)."""
        self._inbox: queue.SimpleQueue[tuple[str | None, bytes, _Ack | None]] = queue.SimpleQueue()
        self._stored_seq: dict[str, int] = {}
        """Each point's newest stored ``seq`` at start, until its first reading (gaps only)."""
        self.max_queue = max_queue
        self._handlers: list[ReadingHandler] = []
        self._tracks: dict[str, _Track] = {}
        self._session = 0
        self._session_seq: int | None = None
        """The current session's first sequence number, if its birth gave one."""
        self._horizon = -float("inf")
        """Cached ``ts`` horizon; recomputed when a reading is beyond it (it only grows)."""
        # Counters have one writer each (paho's thread or the consumer thread), so the hot
        # path takes no lock; readers may see a value one message old.
        self._dropped_queue_full = 0
        self._counts: Counter[str] = Counter(dict.fromkeys(COUNTERS, 0))
        self._rejected: Counter[str] = Counter(dict.fromkeys(REJECT_REASONS, 0))
        self._enqueued = 0
        self._processed = 0
        self._settled = 0
        """Messages processed and, if accepted, committed to the historian."""
        self._stop = threading.Event()
        self._consumer: threading.Thread | None = None
        self._client_started = False
        self._mqtt = MqttService(
            address,
            self.client_id,
            name="ingestion",
            subscriptions=[(t, self.qos) for t in self.subscriptions],
            on_message=self._on_message,
            session_expiry_s=session_expiry_s,
            receive_maximum=min(RECEIVE_MAXIMUM, max_queue),
            manual_ack=True,  # PUBACK once stored: see the module docstring
            reconnect_min_s=reconnect_min_s,
            reconnect_max_s=reconnect_max_s,
        )

    @property
    def last_connect_mono(self) -> float | None:
        """When the latest connection was made (monotonic clock), None before the first."""
        return self._mqtt.last_connect_mono

    @property
    def _client(self) -> mqtt.Client:
        return self._mqtt.client

    # ------------------------------------------------------------------ network thread
    def _on_message(self, message: mqtt.MQTTMessage) -> None:
        # Only copy and enqueue (paho's network thread; the service base guards it).
        try:
            topic: str | None = message.topic
        except UnicodeDecodeError:
            topic = None
        ack = (self._mqtt.generation, message.mid) if message.qos > 0 else None
        self.submit(topic, bytes(message.payload), ack)

    def submit(self, topic: str | None, payload: bytes, ack: _Ack | None = None) -> None:
        """Queue one message for the consumer thread, as ``on_message`` does (one caller
        thread at a time); ``ack`` (connection, message id) is acknowledged once the message
        is settled. A full queue drops it unacknowledged and counts ``dropped_queue_full``."""
        if self._enqueued - self._processed >= self.max_queue:
            self._dropped_queue_full += 1
            return
        self._inbox.put((topic, payload, ack))
        self._enqueued += 1

    # ------------------------------------------------------------------ lifecycle
    def start(self, *, wait_s: float | None = 10.0, connect: bool = True) -> MqttIngestor:
        """Start the consumer thread and connect; wait for the first connection if asked.

        ``connect=False`` runs only the consumer (messages come from :meth:`submit`).
        """
        if self._consumer is None:
            self._stop.clear()
            self._consumer = threading.Thread(
                target=self._consume, name=f"ingest-{self.topics.site}", daemon=True
            )
            self._consumer.start()
            if connect:
                self._load_stored_seq()
                self._mqtt.start(wait_s=None)
                self._client_started = True
        if not connect:
            return self
        if wait_s is not None and not self._mqtt.wait_connected(wait_s):
            raise BrokerError(f"ingestion could not connect to {self.address} within {wait_s} s")
        return self

    def stop(self, *, drain_s: float = 10.0) -> None:
        """Disconnect (the session stays on the broker), store what is queued, stop."""
        if self._consumer is None:
            return
        if self._client_started:
            self._mqtt.stop()
            self._client_started = False
        self.drain(drain_s)
        self._stop.set()
        self._consumer.join(timeout=drain_s)
        self._consumer = None

    def __enter__(self) -> MqttIngestor:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def connected(self) -> bool:
        return self._mqtt.connected

    def wait_connected(self, timeout_s: float) -> bool:
        return self._mqtt.wait_connected(timeout_s)

    def drain(self, timeout_s: float = 10.0) -> bool:
        """Wait until everything received so far is decoded and stored."""
        target = self._enqueued
        deadline = time.monotonic() + timeout_s
        while self._settled < target:
            if time.monotonic() > deadline:
                return False
            time.sleep(0.005)
        return True

    def add_handler(self, handler: ReadingHandler) -> None:
        """Call ``handler(reading)`` for each accepted reading (exceptions are counted)."""
        self._handlers.append(handler)

    # ------------------------------------------------------------------ consumer
    def _reject(self, reason: str, topic: str | None, detail: str) -> None:
        self._rejected[reason] += 1
        logger.debug("rejected %s (%s): %s", topic, reason, detail)

    def _consume(self) -> None:
        """Take what is queued (up to ``batch_size``), validate it, commit it as one batch.

        Batches grow with the load: while one is being committed the next accumulates.
        """
        get = self._inbox.get_nowait
        while True:
            try:
                items = [self._inbox.get(timeout=self.batch_wait_s)]
            except queue.Empty:
                if self._stop.is_set():
                    return
                continue
            with contextlib.suppress(queue.Empty):
                while len(items) < self.batch_size:
                    items.append(get())
            batch: list[Reading] = []
            for topic, payload, _ in items:
                try:
                    reading = self.accept(topic, payload)
                except Exception:  # a bug must not stop ingestion: count it and go on
                    logger.exception("ingestion: unexpected error on %s", topic)
                    self._reject("handler_error", topic, "unexpected error")
                    continue
                if reading is not None:
                    batch.append(reading)
            self._processed += len(items)
            if batch:
                self._store(batch)
            self._acknowledge(items)
            self._settled = self._processed

    def _store(self, batch: list[Reading]) -> None:
        """Commit ``batch``; retry while the store fails (and ingestion is not stopping)."""
        for attempt in range(1_000_000):
            try:
                written = self.historian.write(batch)
            except Exception:
                logger.exception("ingestion: historian write of %d readings failed", len(batch))
                self._counts["write_errors"] += 1
                if self._stop.is_set() and attempt >= 3:
                    self._counts["dropped_write_failed"] += len(batch)
                    return
                time.sleep(min(5.0, self.batch_wait_s * 2**attempt))
                continue
            self._counts["written"] += written
            self._counts["duplicates"] += len(batch) - written
            self._counts["batches"] += 1
            return

    def _acknowledge(self, items: list[tuple[str | None, bytes, _Ack | None]]) -> None:
        """PUBACK the settled messages that came on the current connection (the broker
        resends the others after a reconnect)."""
        current = self._mqtt.generation
        mids = [ack[1] for _, _, ack in items if ack is not None and ack[0] == current]
        if not mids:
            return
        try:
            self._counts["acked"] += self._mqtt.ack_many(mids, current)
        except Exception:  # not acknowledged: delivered again after the next reconnect
            logger.exception("ingestion: could not acknowledge %d message(s)", len(mids))

    def _load_stored_seq(self) -> None:
        """Each subscribed point's newest stored ``seq`` (for gaps across a restart)."""
        try:
            stored = self.historian.latest()
        except Exception:
            logger.exception("ingestion: could not read the stored sequence numbers")
            return
        self._stored_seq = {p: r.seq for p, r in stored.items() if p in self.catalog and r.seq > 0}

    def accept(self, topic: str | None, payload: bytes) -> Reading | None:
        """Decode and validate one message; the reading to store, or None if rejected.

        Runs on the consumer thread (public for tests of the decoding rules).
        """
        self._counts["received"] += 1
        if topic == self.topics.birth:
            self._birth(payload)
            return None
        decoded = self._decode(topic, payload)
        if decoded is None:
            return None
        point, msg = decoded
        gap = self._follows_gap(point, msg, topic)
        if gap is None:
            return None
        reading = Reading(point, msg.ts, msg.value, msg.unit, msg.quality, msg.seq)
        self._tracks[point] = _Track(reading, time.monotonic(), gap, self._session)
        self._counts["accepted"] += 1
        for handler in self._handlers:
            try:
                handler(reading)
            except Exception:
                logger.exception("ingestion: handler %r failed on %s", handler, point)
                self._counts["handler_errors"] += 1
        return reading

    def _decode(self, topic: str | None, payload: bytes) -> tuple[str, SensorMessage] | None:
        """The point and its checked message: a catalog point, its unit and bounds, a ``ts``
        within the publisher's time base; None (counted) otherwise."""
        point = self.topics.point_of(topic) if topic is not None else None
        if point is None:
            self._reject("unknown_topic", topic, "not a sensor topic of this site")
            return None
        rule = self.catalog.rule(point)
        if rule is None:
            self._reject("unknown_point", None, f"point {point[:40]!r} is not in the catalog")
            return None
        try:
            msg = decode_sensor(payload, rule.unit, (rule.low, rule.high))
        except PayloadError as exc:
            self._reject(exc.reason, topic, exc.detail)
            return None
        if msg.ts > self._horizon:
            self._horizon = self.time_base.horizon(self.plant_estimate())
            if msg.ts > self._horizon:
                self._reject("future_ts", topic, f"ts {msg.ts} > horizon {self._horizon}")
                return None
        return point, msg

    def _follows_gap(self, point: str, msg: SensorMessage, topic: str | None) -> bool | None:
        """Judge ``msg.seq``: None (counted) when replayed or jumping too far, else whether
        samples were skipped before it. A point's first reading in a publisher session is
        judged against the birth's ``seq`` (no gap), or, after a restart of ingestion,
        against the newest stored one (a gap only)."""
        track = self._tracks.get(point)
        in_session = track is not None and track.session == self._session
        if in_session:
            assert track is not None
            last: int | None = track.reading.seq
        else:
            last = None if self._session_seq is None else self._session_seq - 1
        if last is not None and msg.seq <= last:
            self._reject("replayed", topic, f"seq {msg.seq} <= {last}")
            return None
        if last is not None and msg.seq - last > MAX_SEQ_STEP:
            self._reject("seq_jump", topic, f"seq {msg.seq} jumps from {last}")
            return None
        stored = self._stored_seq.pop(point, None)
        if in_session:
            gap = msg.seq != (last or 0) + 1
        else:  # never judged against the birth; against the store, only forward jumps count
            gap = stored is not None and stored + 1 < msg.seq <= stored + MAX_SEQ_STEP
        if gap:
            self._counts["gaps"] += 1
        return gap

    def _birth(self, payload: bytes) -> None:
        """A publisher's birth: adopt its time base; a new session resets the sequences."""
        if not payload:  # the retained birth cleared
            return
        try:
            birth = decode_birth(payload)
        except PayloadError as exc:
            reason = exc.reason if exc.reason in ("oversize", "non_utf8", "invalid_json") else None
            self._reject(reason or "bad_birth", self.topics.birth, exc.detail)
            return
        self._counts["births"] += 1
        if self.time_base.set_birth(birth):
            self._session += 1
            self._session_seq = birth.seq
        self._horizon = -float("inf")

    def plant_estimate(self) -> float:
        """The plant clock from the data: the median ``ts`` of the points seen (one bad
        sample cannot move it); -inf before any reading. Only computed for a stepped
        publisher, whose ``ts`` horizon depends on it."""
        if not self.time_base.stepped or not self._tracks:
            return -float("inf")
        return float(statistics.median(t.reading.time_s for t in list(self._tracks.values())))

    # ------------------------------------------------------------------ introspection
    def snapshot(self) -> dict[str, PointState]:
        """Latest value, quality and staleness of every point seen."""
        now = time.monotonic()
        out: dict[str, PointState] = {}
        for point, track in list(self._tracks.items()):
            r = track.reading
            age = now - track.received_mono
            reason = "gap" if track.gap else ("silence" if age > self.stale_after_s else "")
            out[point] = PointState(
                point=point,
                value=r.value,
                unit=r.unit,
                ts=r.time_s,
                quality=r.quality,
                seq=r.seq,
                stale=bool(reason),
                stale_reason=reason,
                age_s=age,
            )
        return out

    def stats(self) -> dict[str, Any]:
        """Counters: received, accepted, written, batches, gaps, connects, disconnects,
        handler_errors, ..., ``rejected`` by reason and the queue depth."""
        counts: dict[str, Any] = {
            **self._mqtt.counters(),
            "dropped_queue_full": self._dropped_queue_full,
            **self._counts,
        }
        counts["rejected"] = {k: v for k, v in list(self._rejected.items()) if v}
        counts["rejected_total"] = sum(counts["rejected"].values())
        counts["queue_depth"] = self._enqueued - self._processed
        counts["connected"] = self.connected
        return counts
