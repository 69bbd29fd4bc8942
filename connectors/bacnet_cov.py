"""Sensor reads by COV subscription (BACnet SubscribeCOV), where the device offers it.

Polling asks for every value every period; under change-of-value a device sends a sensor's
value when it has moved by the object's ``covIncrement`` (any change for a binary input),
and nothing while it is steady. So under COV silence is no news, and freshness comes from
elsewhere (docs/bacnet.md):

- **the subscription's lifetime.** Each sensor object is subscribed for ``lifetime_s``
  (device seconds) and renewed before it ends: at each poll, once less than half the
  lifetime, or less than two poll intervals, is left. A subscription whose renewal got no
  answer (``cov_renew:timeout``) or that ran out (``cov_expired``) makes its point stale
  until it is renewed; a device that refuses the renewal sends the object back to polling
  (``auto``) or leaves it stale (``cov``);
- **the device's health**, read every period anyway: the client's cheap
  ReadPropertyMultiple asks the device object for its identifier and ``system-status``.
  A device that does not answer makes every point stale after the ingestor's failed polls,
  whether or not its values were steady; a status other than operational makes every COV
  point stale (``device_status:<status>``). When the device answers again every
  subscription is made anew (a restarted device has forgotten them), and a point is fresh
  again only once the device's first notification after the subscription has come
  (``cov_pending`` until then; the client waits up to a second, or the request timeout if
  longer, for them);
- **the device's restarts.** A device that restarts between two polls answers the next
  health read as before, its subscriptions forgotten. The health read also asks for the
  device object's ``time-of-device-restart`` (:mod:`connectors.bacnet_restart`); when it
  has changed, every COV point is made stale at once (``device: restarted``), every
  subscription is made anew in the same poll, and each point is fresh again with the
  device's first notification (counted: ``device_restarts``).

A steady value subscribed and alive is a reading of every period: the client reports it
with the poll's time, the ingestor stores it.

**Modes** (the site file's ``bacnet: reads:``): ``poll``, ReadPropertyMultiple only (no
subscription); ``cov``, every sensor by subscription, a refused one stale
(``cov_refused:<reason>``); ``auto`` (the default), subscribe and fall back to polling,
object by object, where the device refuses (an error, reject or abort answer, or three
subscriptions unanswered while the device answers reads), the refusal logged and counted
(``cov_fallback``, ``cov_refused:<reason>``). Setpoints are always polled: the
override check needs their current command priority every period.

**Notifications are hostile until checked.** Confirmed or unconfirmed, a notification is
believed only when it comes from the device's address, names the device as its initiator,
carries this client's subscriber process identifier (random per start) and a subscribed
object, and its present value is of the object's type, finite and, scaled, inside the
entry's limits. Anything else is dropped and counted by name (``cov_rejected:<why>``:
``foreign_address``, ``wrong_device``, ``unknown_process``, ``unknown_object``,
``wrong_type``, ``missing``, ``non_finite``, ``out_of_range``); a bad value from the device
itself also makes its point stale until a good one comes, as a bad polled value does. A
confirmed notification that is rejected gets an error answer (``unknown-subscription``).

**The device side.** :func:`serve_cov` makes a bacpypes3 device count the notifications it
sends (or refuse every subscription, ``services/cov-subscription-failed``, to emulate a
device without COV); :func:`cov_increment` is the emulated device's increment per unit, set
above the emulated sensors' noise; :func:`set_reliability` tells subscribers when a point
goes to fault or back (bacpypes3 derives status flags from the reliability without
announcing them).
"""

from __future__ import annotations

import asyncio
import logging
import math
import secrets
import threading
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, MutableMapping
from dataclasses import dataclass, field
from typing import Any, Literal

from bacpypes3.apdu import (
    ConfirmedCOVNotificationRequest,
    ErrorRejectAbortNack,
    SimpleAckPDU,
    SubscribeCOVRequest,
    UnconfirmedCOVNotificationRequest,
)
from bacpypes3.app import Application
from bacpypes3.basetypes import BinaryPV, StatusFlags
from bacpypes3.errors import ExecutionError, ServicesError
from bacpypes3.pdu import Address
from bacpypes3.primitivedata import ObjectIdentifier, Real

from connectors.point_map import BINARY, PointEntry

logger = logging.getLogger(__name__)

ReadMode = Literal["cov", "poll", "auto"]
READ_MODES: tuple[ReadMode, ...] = ("cov", "poll", "auto")
DEFAULT_LIFETIME_S = 300
"""Five minutes: renewed every poll past half of it, so a one-minute poll renews every
150 s and a missed renewal has 150 s before the subscription ends."""
MIN_LIFETIME_S, MAX_LIFETIME_S = 1, 86_400
IN_FLIGHT = 16
"""Subscription requests outstanding at once: each one's timeout starts when it is sent,
not behind a queue of a few hundred."""
SILENT_TRIES = 3
"""Unanswered first subscriptions, while the device answers reads, before ``auto`` polls
the object instead."""
OPERATIONAL = ("operational", "operational-read-only")
RESTARTED = "device: restarted"
"""Why a COV point is stale from a device's restart until its first notification."""
COV_INCREMENT_BY_UNIT: dict[str, float] = {
    "degC": 0.3,
    "kW": 5.0,
    "kg/s": 1.0,
    "frac": 0.02,
    "count": 1.0,
}
"""The emulated device's increment per TwinLoop unit: about three times the emulated
sensors' noise (0.1 degC, 1 % of a meter's reading, 0.005 of a fraction), so a steady
plant's noise sends (almost) nothing."""

Subscription = Literal["new", "active", "refused", "polled"]


def cov_increment(unit: str, scale: float) -> float:
    """The COV increment of an analog point in the device's raw units."""
    return COV_INCREMENT_BY_UNIT.get(unit, 0.1) / scale


def set_reliability(obj: Any, reliability: str) -> None:
    """Set a local object's reliability and announce its status flags to the COV
    subscribers when they change (bacpypes3 computes ``statusFlags`` from the reliability
    but its change monitors only hear attributes set directly)."""
    before = obj.statusFlags
    obj.reliability = reliability
    after = obj.statusFlags
    if list(before) != list(after):
        for monitor in list(obj._property_monitors["statusFlags"]):
            monitor(before, after)


def serve_cov(
    app: Application, counts: MutableMapping[str, int], accepts: Callable[[], bool]
) -> None:
    """A device's COV side: count each notification sent (``cov_notifications``), and
    refuse every subscription or renewal while ``accepts()`` is False (``cov_refused``)."""
    send = app.cov_notification

    def counted(cov: Any, apdu: Any) -> None:
        counts["cov_notifications"] = counts.get("cov_notifications", 0) + 1
        send(cov, apdu)

    app.cov_notification = counted

    subscribe = app.do_SubscribeCOVRequest

    async def subscribe_if_accepted(apdu: Any) -> None:
        if not accepts():
            counts["cov_refused"] = counts.get("cov_refused", 0) + 1
            raise ExecutionError(errorClass="services", errorCode="covSubscriptionFailed")
        await subscribe(apdu)

    app.do_SubscribeCOVRequest = subscribe_if_accepted


def _answer_name(answer: BaseException) -> str:
    error_class = getattr(answer, "errorClass", None)
    error_code = getattr(answer, "errorCode", None)
    if error_class is not None and error_code is not None:
        return f"{error_class}/{error_code}"
    reason = getattr(answer, "apduAbortRejectReason", None)
    kind = "reject" if type(answer).__name__.startswith("Reject") else "abort"
    return f"{kind}:{reason}"


@dataclass
class _Sub:
    entry: PointEntry
    objid: ObjectIdentifier
    state: Subscription = "new"
    expires_at: float = 0.0
    """Loop time the device ends the subscription, unless renewed."""
    props: dict[str, Any] = field(default_factory=dict)
    notified: bool = False
    """A notification came since the last (re)subscription."""
    asking: bool = False
    """A subscription request is in flight (the device may notify before its ack lands)."""
    timeouts: int = 0
    """First subscriptions sent in a row without an answer."""
    problem: str = ""
    """Why the point is stale now (a failed renewal, a refusal, a bad notified value)."""


class CovReader:
    """A client's COV subscriptions to one device (module docstring). Every method runs on
    the client's event loop; the notifications arrive there too."""

    def __init__(
        self,
        entries: Iterable[PointEntry],
        *,
        address: Address,
        device_instance: int,
        mode: ReadMode,
        lifetime_s: int = DEFAULT_LIFETIME_S,
        confirmed: bool = False,
        timeout_s: float = 3.0,
    ) -> None:
        if mode not in ("cov", "auto"):
            raise ValueError(f"a COV reader reads by cov or auto, not {mode!r}")
        if not MIN_LIFETIME_S <= lifetime_s <= MAX_LIFETIME_S:
            raise ValueError(f"lifetime_s must be in [{MIN_LIFETIME_S}, {MAX_LIFETIME_S}]")
        self.address = address
        self.device = ObjectIdentifier(("device", device_instance))
        self.mode = mode
        self.lifetime_s = int(lifetime_s)
        self.confirmed = confirmed
        self.timeout_s = timeout_s
        self.process_id = secrets.randbelow((1 << 22) - 1) + 1
        self._subs: dict[tuple[str, int], _Sub] = {}
        for e in entries:
            ref = e.bacnet
            if ref is None or e.point is None or e.writable:
                continue
            self._subs[(ref.object, ref.instance)] = _Sub(
                e, ObjectIdentifier((ref.object, ref.instance))
            )
        self._app: Application | None = None
        self._counts: Counter[str] = Counter(
            {
                "cov_subscribes": 0,
                "cov_renewals": 0,
                "cov_notifications": 0,
                "cov_fallback": 0,
                "device_restarts": 0,
            }
        )
        self._counts_lock = threading.Lock()  # counted on the loop, read from any thread
        self._device_down = False
        self._last_refresh: float | None = None
        self._arrived = asyncio.Event()
        self._in_flight = asyncio.Semaphore(IN_FLIGHT)

    # ------------------------------------------------------------------ lifecycle
    async def start(self, app: Application) -> None:
        """Take the application's COV notifications and subscribe every sensor."""
        self._app = app
        app.do_UnconfirmedCOVNotificationRequest = self._unconfirmed
        app.do_ConfirmedCOVNotificationRequest = self._confirmed
        await self._subscribe([s for s in self._subs.values() if s.state == "new"], at_start=True)

    async def close(self) -> None:
        """Cancel the live subscriptions (best effort: an unanswered cancel just expires)."""
        if self._app is None:
            return
        live = [s for s in self._subs.values() if s.state == "active"]
        if live and not self._device_down:
            cancels = asyncio.gather(*(self._request(s, cancel=True) for s in live))
            try:
                await asyncio.wait_for(cancels, self.timeout_s)
            except TimeoutError:
                logger.info("bacnet cov: cancellations unanswered; they expire on their own")
        self._app = None

    def serves(self, key: tuple[str, int]) -> bool:
        """Whether the object is read by subscription (so the poll skips it)."""
        sub = self._subs.get(key)
        return sub is not None and sub.state != "polled"

    # ------------------------------------------------------------------ subscribing
    async def _request(self, sub: _Sub, *, cancel: bool = False) -> str | None:
        """One SubscribeCOV (or its cancellation); None when acknowledged, else why not."""
        assert self._app is not None
        if cancel:
            request = SubscribeCOVRequest(
                subscriberProcessIdentifier=self.process_id,
                monitoredObjectIdentifier=sub.objid,
                destination=self.address,
            )
        else:
            request = SubscribeCOVRequest(
                subscriberProcessIdentifier=self.process_id,
                monitoredObjectIdentifier=sub.objid,
                issueConfirmedNotifications=self.confirmed,
                lifetime=self.lifetime_s,
                destination=self.address,
            )
        try:
            async with self._in_flight:
                answer = await asyncio.wait_for(self._app.request(request), self.timeout_s)
        except TimeoutError:
            return "timeout"
        except ErrorRejectAbortNack as exc:
            return _answer_name(exc)
        if isinstance(answer, ErrorRejectAbortNack):
            return _answer_name(answer)
        return None

    async def _subscribe(self, subs: list[_Sub], *, at_start: bool = False) -> None:
        """(Re)subscribe ``subs`` at once; wait a little for the device's first
        notifications, which a subscription asks for."""
        if not subs:
            return
        loop = asyncio.get_running_loop()
        sent_at = loop.time()
        for s in subs:
            s.asking = True
            if s.state != "active":
                s.notified = False  # fresh only once the device has notified again
        answers = await asyncio.gather(*(self._request(s) for s in subs))
        fresh: list[_Sub] = []
        for sub, why in zip(subs, answers, strict=True):
            sub.asking = False
            renewal = sub.state == "active"
            self._count("cov_renewals" if renewal else "cov_subscribes")
            if why is None:
                sub.timeouts = 0
                if not sub.notified:
                    fresh.append(sub)
                sub.state, sub.expires_at = "active", sent_at + self.lifetime_s
                if sub.problem != RESTARTED:  # that one ends with a notification
                    sub.problem = ""
            elif why == "timeout" and renewal:
                sub.problem = "cov_renew:timeout"  # stale until a renewal is answered
                self._count("cov_renew_failed")
            elif why == "timeout":
                sub.timeouts += 1
                if not at_start and self.mode == "auto" and sub.timeouts >= SILENT_TRIES:
                    self._refused(sub, why, renewal)
            else:
                self._refused(sub, why, renewal)
        if fresh:
            self._arrived.clear()
            deadline = loop.time() + max(self.timeout_s, 1.0)  # after the last answer
            while any(not s.notified for s in fresh):
                left = deadline - loop.time()
                if left <= 0:
                    break
                try:
                    await asyncio.wait_for(self._arrived.wait(), left)
                except TimeoutError:
                    break
                self._arrived.clear()

    def _restarted(self) -> list[_Sub]:
        """The device restarted: its subscriptions are gone. Every point read by COV is
        stale from now until the device notifies it again; returns them, to subscribe."""
        self._count("device_restarts")
        again = [s for s in self._subs.values() if s.state != "polled"]
        for s in again:
            s.state, s.notified, s.problem = "new", False, RESTARTED
        logger.warning(
            "bacnet cov: device %s at %s restarted: %d points stale, subscribing anew",
            self.device[1],
            self.address,
            len(again),
        )
        return again

    def _refused(self, sub: _Sub, why: str, renewal: bool) -> None:
        self._count(f"cov_refused:{why}")
        name = sub.entry.name
        if self.mode == "auto":
            sub.state = "polled"
            sub.problem = f"cov_renew:{why}" if renewal else ""
            self._count("cov_fallback")
            logger.warning("bacnet cov: %s refused (%s): polled instead", name, why)
        else:
            sub.state = "refused"
            sub.problem = f"cov_refused:{why}"
            logger.warning("bacnet cov: %s refused (%s): stale (reads: cov)", name, why)

    async def refresh(
        self, device_ok: bool, system_status: str | None, restarted: bool = False
    ) -> tuple[dict[tuple[str, int], dict[str, Any]], dict[str, str]]:
        """After the period's health read: renew what is due (everything after the device
        was away or ``restarted``), then the subscribed points' values and why the others
        have none."""
        loop = asyncio.get_running_loop()
        now = loop.time()
        interval = 0.0 if self._last_refresh is None else now - self._last_refresh
        self._last_refresh = now
        if not device_ok:
            self._device_down = True
        else:
            margin = max(self.lifetime_s / 2.0, 2.0 * interval)
            due = [
                s
                for s in self._subs.values()
                if s.state == "new"
                or (s.state == "active" and (self._device_down or s.expires_at - now < margin))
                or (s.state == "refused" and self._device_down)  # a restart may take it now
            ]
            if self._device_down:
                for s in due:
                    s.state, s.problem = "new", ""  # back, maybe restarted: subscribe anew
            if restarted:
                due = self._restarted()
            self._device_down = False
            await self._subscribe(due)
        return self._values(loop.time(), system_status)

    def _values(
        self, now: float, system_status: str | None
    ) -> tuple[dict[tuple[str, int], dict[str, Any]], dict[str, str]]:
        values: dict[tuple[str, int], dict[str, Any]] = {}
        errors: dict[str, str] = {}
        bad_status = system_status is not None and system_status not in OPERATIONAL
        for key, sub in self._subs.items():
            name = sub.entry.name
            if sub.state == "polled":
                if sub.problem:  # the poll that fell back did not read it yet
                    errors[name] = sub.problem
                    sub.problem = ""
                continue
            if sub.problem:
                errors[name] = sub.problem
            elif sub.state != "active":
                errors[name] = "cov_pending"
            elif now >= sub.expires_at:
                errors[name] = "cov_expired"
                self._count("cov_expired")
            elif not sub.notified:
                errors[name] = "cov_pending"
            elif bad_status:
                errors[name] = f"device_status:{system_status}"
            else:
                values[key] = dict(sub.props)
        return values, errors

    # ------------------------------------------------------------------ notifications
    async def _unconfirmed(self, apdu: UnconfirmedCOVNotificationRequest) -> None:
        self.take(apdu)

    async def _confirmed(self, apdu: ConfirmedCOVNotificationRequest) -> None:
        why = self.take(apdu)
        if why in ("foreign_address", "wrong_device", "unknown_process", "unknown_object"):
            raise ServicesError(errorCode="unknownSubscription")
        assert self._app is not None
        await self._app.response(SimpleAckPDU(context=apdu))

    def take(self, apdu: Any) -> str | None:
        """Check one notification and believe it or count why not (module docstring);
        returns the reason it was rejected, None when taken."""
        try:
            why, sub, props = self._check(apdu)
        except Exception as exc:  # whatever the bytes decoded to: counted, never raised
            logger.debug("bacnet cov: unreadable notification: %r", exc)
            why, sub, props = "wrong_type", None, {}
        if why is not None:
            self._count(f"cov_rejected:{why}")
            if sub is not None:
                sub.problem = why  # the device's own value is unbelievable: stale
            logger.debug("bacnet cov: notification from %s rejected: %s", apdu.pduSource, why)
            return why
        assert sub is not None
        sub.props, sub.notified, sub.problem = props, True, ""
        self._count("cov_notifications")
        self._arrived.set()
        return None

    def _check(self, apdu: Any) -> tuple[str | None, _Sub | None, dict[str, Any]]:
        if apdu.pduSource != self.address:
            return "foreign_address", None, {}
        if apdu.initiatingDeviceIdentifier != self.device:
            return "wrong_device", None, {}
        if apdu.subscriberProcessIdentifier != self.process_id:
            return "unknown_process", None, {}
        objid = apdu.monitoredObjectIdentifier
        try:
            key = (str(objid[0]), int(objid[1]))
        except (TypeError, ValueError, IndexError):
            return "unknown_object", None, {}
        sub = self._subs.get(key)
        if sub is None or not (sub.state == "active" or sub.asking):
            return "unknown_object", None, {}
        by_name = {str(pv.propertyIdentifier): pv.value for pv in apdu.listOfValues or ()}
        if "present-value" not in by_name:
            return "missing", sub, {}
        entry = sub.entry
        try:
            if entry.bacnet is not None and entry.bacnet.object in BINARY:
                raw: Any = int(by_name["present-value"].cast_out(BinaryPV))
                value = float(raw)
            else:
                raw = float(by_name["present-value"].cast_out(Real))
                value = raw * entry.scale
            flags = by_name.get("status-flags")
            status = list(flags.cast_out(StatusFlags)) if flags is not None else None
        except Exception:
            return "wrong_type", sub, {}
        if not math.isfinite(value):
            return "non_finite", sub, {}
        assert entry.limits is not None
        low, high = entry.limits
        bad = status is not None and (bool(status[1]) or bool(status[3]))
        if not bad and not low <= value <= high:
            return "out_of_range", sub, {}
        return None, sub, {"present-value": raw, "status-flags": status}

    def _count(self, name: str) -> None:
        with self._counts_lock:
            self._counts[name] += 1

    def counters(self) -> dict[str, int]:
        """Subscriptions sent and renewed, notifications taken, fallbacks, refusals and
        rejections by name, and ``cov_subscribed``, the objects read by COV now."""
        live = sum(s.state == "active" for s in self._subs.values())
        with self._counts_lock:
            return {**self._counts, "cov_subscribed": live}

    def states(self) -> Mapping[str, str]:
        """Each sensor's way of being read now: new, active, refused or polled."""
        return {s.entry.name: s.state for s in self._subs.values()}
