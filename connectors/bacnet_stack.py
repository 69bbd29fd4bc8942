"""What the BACnet device and client share: a bacpypes3 application on its own event loop.

bacpypes3 is asyncio; the connectors around it (ingestion, the setpoint writer, the live
controller) are threaded. :class:`LoopThread` runs one event loop in a daemon thread and
:meth:`LoopThread.call` runs a coroutine there from any other thread, waiting at most a
given time. :func:`open_application` builds a BACnet/IP application (a device object and
one IPv4 network port) bound to ``host:port``; its device object serves
``time-of-device-restart`` (the moment it was opened, on the device's clock) and
``last-restart-reason`` (``coldstart``), as a controller does after a power-up: how a
client tells that the device restarted and forgot its COV subscriptions
(:mod:`connectors.bacnet_restart`).

bacpypes3 binds its UDP socket with ``SO_REUSEPORT`` and retries for ever while the port
is taken. :func:`open_application` therefore first binds the port itself without that
option: a port another socket holds (another device, or another process of the same user
listening in) is refused with a :class:`BacnetPortError` naming it, instead of a silent
shared port. Who-Is broadcasts go to 47808 only: devices on other ports are addressed
directly, never discovered.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import socket
import threading
from collections.abc import Callable, Coroutine, Sequence
from datetime import datetime
from typing import Any, TypeVar

from bacpypes3.app import Application
from bacpypes3.basetypes import DateTime, RestartReason, TimeStamp
from bacpypes3.local.device import DeviceObject
from bacpypes3.local.networkport import NetworkPortObject
from bacpypes3.primitivedata import Date, ObjectIdentifier, Time

from twinloop.errors import TwinLoopError

logger = logging.getLogger(__name__)

T = TypeVar("T")
VENDOR_ID = 999
"""bacpypes3's identifier for unregistered vendors (TwinLoop has none)."""
BIND_TIMEOUT_S = 5.0


class BacnetPortError(TwinLoopError, OSError):
    """The address a BACnet application should bind cannot be bound."""


class LoopThread:
    """An asyncio event loop in a daemon thread (module docstring)."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._started = False

    def _run(self) -> None:
        asyncio.set_event_loop(self.loop)
        self.loop.run_forever()

    def start(self) -> None:
        if not self._started:
            self._thread.start()
            self._started = True

    def call(self, coro: Coroutine[Any, Any, T], timeout_s: float) -> T:
        """Run ``coro`` on the loop and wait for its result (``TimeoutError`` after
        ``timeout_s``, the coroutine then cancelled)."""
        future = asyncio.run_coroutine_threadsafe(coro, self.loop)
        try:
            return future.result(timeout=timeout_s)
        except concurrent.futures.TimeoutError:
            future.cancel()
            raise TimeoutError(f"{self.name}: no result within {timeout_s:g} s") from None

    def stop(self) -> None:
        if not self._started:
            self.loop.close()
            return
        if self.loop.is_running():
            self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(timeout=5.0)
        if not self._thread.is_alive():
            self.loop.close()
        self._started = False


def _probe(host: str, port: int) -> None:
    """Bind ``host:port`` once without SO_REUSEPORT; refuse a port someone holds."""
    probe = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        probe.bind((host, port))
    except OSError as exc:
        raise BacnetPortError(f"BACnet address {host}:{port}: {exc.strerror}") from None
    finally:
        probe.close()


WILDCARD_DEVICE = ObjectIdentifier(("device", 4_194_303))


def _answer_wildcard(app: Application, device: DeviceObject) -> None:
    """Answer for the wildcard device instance 4194303 as for the device itself (ASHRAE 135
    15.5.2: how ``twinloop bacnet discover`` asks a device whose instance it does not know),
    and name the device's own identifier in the answer (15.5.1.2: the ACK identifies the
    object actually read; a wildcard never establishes its identity, and an independent
    stack, rusty-bacnet, refuses a ReadProperty-ACK that echoes it).
    bacpypes3 0.0.110 compares the request's identifier with a plain tuple, which never
    matches: it would answer ``unknown-object``. The requests are rewritten to the
    device's identifier before bacpypes3 serves them; other services find the device
    object through the wildcard too."""
    own = device.objectIdentifier
    lookup = app.get_object_id

    def get_object_id(objid: Any) -> Any:
        return lookup(own if objid == WILDCARD_DEVICE else objid)

    app.get_object_id = get_object_id
    read_one = app.do_ReadPropertyRequest
    read_many = app.do_ReadPropertyMultipleRequest

    async def read_property(apdu: Any) -> None:
        if apdu.objectIdentifier == WILDCARD_DEVICE:
            apdu.objectIdentifier = own
        await read_one(apdu)

    async def read_property_multiple(apdu: Any) -> None:
        for spec in apdu.listOfReadAccessSpecs or ():
            if spec.objectIdentifier == WILDCARD_DEVICE:
                spec.objectIdentifier = own
        await read_many(apdu)

    app.do_ReadPropertyRequest = read_property
    app.do_ReadPropertyMultipleRequest = read_property_multiple


async def close_application(app: Application, drain_s: float = 0.5) -> None:
    """Close ``app`` on its loop: what is in flight there (an answer, a notification) gets
    up to ``drain_s`` to finish first and is cancelled after, so nothing sends on the closed
    socket (asyncio would log that as an unretrieved task exception)."""
    current = asyncio.current_task()
    pending = [t for t in asyncio.all_tasks() if t is not current and not t.done()]
    if pending:
        await asyncio.wait(pending, timeout=drain_s)
    app.close()
    for task in asyncio.all_tasks():
        if task is not current and not task.done():
            task.cancel()


class ClockedDevice(DeviceObject):  # type: ignore[misc]
    """A device object whose ``local-date`` and ``local-time`` come from ``_clock`` (the
    emulated plant's calendar), not from this machine's wall clock."""

    _clock: Callable[[], datetime] | None = None

    @property
    def localDate(self) -> Date:  # noqa: N802 (BACnet's property name)
        if self._clock is None:
            return Date.now()
        return Date(self._clock().date())

    @localDate.setter
    def localDate(self, value: Any) -> None:  # noqa: N802
        """Set by nobody: the plant's clock is the plant's."""

    @property
    def localTime(self) -> Time:  # noqa: N802 (BACnet's property name)
        if self._clock is None:
            return Time.now()
        return Time(self._clock().time())

    @localTime.setter
    def localTime(self, value: Any) -> None:  # noqa: N802
        """Set by nobody: the plant's clock is the plant's."""


async def open_application(
    host: str,
    port: int,
    *,
    device_instance: int,
    name: str,
    objects: Sequence[Any] = (),
    prefix_len: int = 32,
    clock: Callable[[], datetime] | None = None,
) -> Application:
    """A BACnet/IP application at ``host:port`` serving ``objects`` besides its device
    object; returns once its socket is bound. Call on the loop that will run it. With
    ``clock``, the device object's local date and time are ``clock()``'s (else this
    machine's), its ``time-of-device-restart`` too (module docstring)."""
    _probe(host, port)
    started = datetime.now() if clock is None else clock()
    device = ClockedDevice(
        objectIdentifier=("device", device_instance),
        objectName=name,
        vendorIdentifier=VENDOR_ID,
        timeOfDeviceRestart=TimeStamp(dateTime=DateTime(started)),
        lastRestartReason=RestartReason("coldstart"),
    )
    device._clock = clock
    network_port = NetworkPortObject(
        f"{host}/{prefix_len}:{port}",
        objectIdentifier=("network-port", 1),
        objectName=f"{name}-port",
    )
    app = Application.from_object_list([device, network_port, *objects])
    _answer_wildcard(app, device)
    for link_layer in app.link_layers.values():
        ready = getattr(getattr(link_layer, "server", None), "_local_transport_ready", None)
        if ready is None:
            continue
        try:
            await asyncio.wait_for(ready.wait(), BIND_TIMEOUT_S)
        except TimeoutError:
            app.close()
            raise BacnetPortError(
                f"BACnet address {host}:{port}: not bound within {BIND_TIMEOUT_S:g} s"
            ) from None
    logger.info("BACnet application %r (device %d) on %s:%d", name, device_instance, host, port)
    return app
