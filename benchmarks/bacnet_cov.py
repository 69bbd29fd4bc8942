"""BACnet sensor reads by COV subscription against ReadPropertyMultiple polling (issue 18):
the messages each costs a plant, and how long a dead device takes to make the points stale.

    OMP_NUM_THREADS=1 python benchmarks/bacnet_cov.py [--periods 30] [--scenario NAME]
    OMP_NUM_THREADS=1 python benchmarks/bacnet_cov.py --restarts 10 [--interval 1.0]

Traffic: the emulated site's bacpypes3 device on loopback and TwinLoop's client, once per
read mode (``poll``, ``cov``). Each period the plant steps one sensor step (60 s, noise on)
or, with the plant held ("steady"), not at all, and the ingestor reads once. Counted at the
client: ReadPropertyMultiple requests (each answered by one datagram), SubscribeCOV
requests (each acknowledged) and the notifications taken; the device counts what it sent.
Rates are per second of a site polled every 60 s; the subscriptions' renewals (every
sensor every half lifetime: request, ack and the notification the device sends on renewal)
are added at the default lifetime, since a run of seconds renews nothing.

Dead device: the ingestor's poller thread at ``--interval`` wall seconds, the device
stopped; the time until every point is stale (``device: timeout``), once per mode.

Restarted device (``--restarts N``): COV reads, the ingestor's poller thread at
``--interval``; N times the device is stopped and a new one started at once on the same
address (same instance, the plant stepped ten minutes on so its values differ), between
two polls; the time from the old device's stop until every sensor point is fresh with
the new device's value, and the detecting poll's own duration (stale marking,
re-subscription, first notifications). Then once more with a device that does not serve
``time-of-device-restart`` (the behaviour before issue 18's fix): how many of its points
the ingestor still holds fresh with the old device's values five polls later.
Prints one JSON line per measurement.
"""

from __future__ import annotations

import argparse
import json
import math
import socket
import time
from typing import Any

from connectors.bacnet_client import BacnetClient
from connectors.bacnet_cov import DEFAULT_LIFETIME_S
from connectors.bacnet_device import BacnetBmsDevice
from connectors.catalog import PointCatalog
from connectors.field_ingestion import FieldIngestor
from connectors.point_map import PointMap, reference_point_map
from physics.plant.plant import Plant
from physics.plant.scenario import load_scenario
from physics.plant.simulation import build_plant

SITE_PERIOD_S = 60.0


def free_udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def site_map(plant: Plant) -> PointMap:
    catalog = PointCatalog.for_site(plant.config)
    return reference_point_map(
        catalog, address=f"127.0.0.1:{free_udp_port()}", device_instance=1001
    )


class Wire:
    """Datagrams and bytes through the client's UDP socket, both ways."""

    def __init__(self, client: BacnetClient) -> None:
        self.sent = self.received = self.sent_bytes = self.received_bytes = 0

        async def install() -> None:
            for link in client.app.link_layers.values():
                server = getattr(link, "server", None)
                transport = getattr(server, "local_transport", None)
                protocol = getattr(server, "local_protocol", None)
                if transport is None or protocol is None:
                    continue
                send, receive = transport.sendto, protocol.datagram_received

                def sendto(data: bytes, addr: Any = None, send: Any = send) -> None:
                    self.sent += 1
                    self.sent_bytes += len(data)
                    send(data, addr)

                def received(data: bytes, addr: Any, receive: Any = receive) -> None:
                    self.received += 1
                    self.received_bytes += len(data)
                    receive(data, addr)

                transport.sendto = sendto
                protocol.datagram_received = received

        client._loop.call(install(), 5.0)

    def totals(self) -> tuple[int, int]:
        return self.sent + self.received, self.sent_bytes + self.received_bytes


def settle(device: BacnetBmsDevice, client: BacnetClient, base: tuple[int, int]) -> None:
    """Wait until every notification the device sent has reached the client (2 s at most)."""
    deadline = time.monotonic() + 2.0
    while time.monotonic() < deadline:
        sent = device.counters()["cov_notifications"] - base[0]
        taken = client.counters().get("cov_notifications", 0) - base[1]
        if taken >= sent:
            return
        time.sleep(0.005)


def traffic(scenario: str, reads: str, periods: int, steady: bool) -> dict[str, Any]:
    plant = build_plant(load_scenario(scenario))
    point_map = site_map(plant)
    sensors = sum(e.point is not None for e in point_map.points)
    with (
        BacnetBmsDevice(plant, point_map) as device,
        BacnetClient(
            point_map,
            local_port=free_udp_port(),
            timeout_s=2.0,
            reads=reads,  # type: ignore[arg-type]
        ) as client,
    ):
        device.step()
        ingestor = FieldIngestor(client, None)
        ingestor.poll_once()
        time.sleep(0.2)
        wire = Wire(client)
        before = client.counters()
        dev_before = device.counters()["cov_notifications"]
        poll_ms: list[float] = []
        for _ in range(periods):
            taken = client.counters().get("cov_notifications", 0)
            base = (device.counters()["cov_notifications"], taken)
            if not steady:
                device.step()
            settle(device, client, base)
            started = time.perf_counter()
            result = ingestor.poll_once()
            poll_ms.append(1000 * (time.perf_counter() - started))
            assert result.device_ok and len(result.readings) == len(point_map.points)
        after = client.counters()
        sent = device.counters()["cov_notifications"] - dev_before
        datagrams, octets = wire.totals()
        renewal_bytes = 0.0
        cov = client._cov
        if cov is not None:  # one renewal of every subscription, measured on the wire
            base = (device.counters()["cov_notifications"], after["cov_notifications"])
            subs = [s for s in cov._subs.values() if s.state == "active"]
            client._call(cov._subscribe(subs))
            settle(device, client, base)
            renewal_bytes = (wire.totals()[1] - octets) / len(subs)

    def delta(name: str) -> int:
        return int(after.get(name, 0) - before.get(name, 0))

    rpm = delta("read_requests")
    notes = delta("cov_notifications")
    per_period = {
        "read_requests": rpm / periods,
        "notifications": notes / periods,
        "subscribe_requests": (delta("cov_subscribes") + delta("cov_renewals")) / periods,
    }
    renewal_per_s = renewal_bytes_per_s = 0.0
    if reads != "poll":
        half = DEFAULT_LIFETIME_S / 2.0
        renewal_per_s = 3 * sensors / half  # request, ack, notification
        renewal_bytes_per_s = sensors * renewal_bytes / half
    poll_ms.sort()
    return {
        "measure": "traffic",
        "reads": reads,
        "plant": "held" if steady else "stepping 60 s a period",
        "periods": periods,
        "sensors": sensors,
        "per_period": per_period,
        "device_sent_notifications": sent,
        "rpm_requests_per_s": per_period["read_requests"] / SITE_PERIOD_S,
        "notifications_per_s": per_period["notifications"] / SITE_PERIOD_S,
        "wire_per_period": {"datagrams": datagrams / periods, "bytes": octets / periods},
        "renewal_bytes_per_sensor": round(renewal_bytes, 1),
        "renewal_datagrams_per_s": round(renewal_per_s, 3),
        "datagrams_per_s": round(datagrams / periods / SITE_PERIOD_S + renewal_per_s, 3),
        "bytes_per_s": round(octets / periods / SITE_PERIOD_S + renewal_bytes_per_s, 1),
        "poll_ms_median": round(poll_ms[len(poll_ms) // 2], 1),
        "poll_ms_worst": round(poll_ms[-1], 1),
    }


def dead_device(scenario: str, reads: str, interval_s: float, timeout_s: float) -> dict[str, Any]:
    plant = build_plant(load_scenario(scenario))
    point_map = site_map(plant)
    device = BacnetBmsDevice(plant, point_map).start()
    device.step()
    client = BacnetClient(
        point_map,
        local_port=free_udp_port(),
        timeout_s=timeout_s,
        reads=reads,  # type: ignore[arg-type]
    ).start()
    ingestor = FieldIngestor(client, None).start(interval_s)
    try:
        deadline = time.monotonic() + 10.0
        while ingestor.stats().get("answered_polls", 0) < 2 and time.monotonic() < deadline:
            time.sleep(0.01)
        device.stop()
        killed = time.monotonic()
        while time.monotonic() - killed < 10 * interval_s + 10 * timeout_s:
            snap = ingestor.snapshot()
            if snap and all(s.stale for s in snap.values()):
                break
            time.sleep(0.005)
        detected_s = time.monotonic() - killed
        reasons = sorted({s.stale_reason for s in ingestor.snapshot().values()})
    finally:
        ingestor.stop()
        client.stop()
    return {
        "measure": "dead_device",
        "reads": reads,
        "poll_interval_s": interval_s,
        "timeout_s": timeout_s,
        "stale_after_s": round(detected_s, 3),
        "stale_after_periods": round(detected_s / interval_s, 2),
        "reasons": reasons,
    }


def _fresh_with(ingestor: FieldIngestor, device: BacnetBmsDevice) -> tuple[int, int]:
    """Sensor points the snapshot holds fresh with ``device``'s own values, and of those
    still fresh, how many hold another value."""
    frame = device.plant.last_frame
    assert frame is not None
    snap = ingestor.snapshot()
    good = fresh_old = 0
    for i, name in enumerate(device.plant.point_names):
        state = snap.get(name)
        if state is None or state.stale or not frame.quality[0][i]:
            continue
        if math.isclose(state.value, float(frame.values[0][i]), rel_tol=1e-6, abs_tol=1e-6):
            good += 1
        else:
            fresh_old += 1
    return good, fresh_old


def restarted_device(
    scenario: str, repeats: int, interval_s: float, timeout_s: float
) -> list[dict[str, Any]]:
    plant = build_plant(load_scenario(scenario))
    point_map = site_map(plant)
    device = BacnetBmsDevice(plant, point_map).start()
    device.step()
    client = BacnetClient(point_map, local_port=free_udp_port(), timeout_s=timeout_s, reads="cov")
    client.start()
    ingestor = FieldIngestor(client, None).start(interval_s)
    frame = plant.last_frame
    assert frame is not None
    good_points = int(frame.quality[0].sum())
    fresh_s: list[float] = []
    resubscribe_ms: list[float] = []
    start_ms: list[float] = []
    out: list[dict[str, Any]] = []
    try:
        deadline = time.monotonic() + 10.0
        while ingestor.stats().get("answered_polls", 0) < 2 and time.monotonic() < deadline:
            time.sleep(0.01)
        for _ in range(repeats):
            restarts = client.counters()["device_restarts"]
            device.stop()
            started = time.monotonic()  # the device is gone; the new one starts now
            device = BacnetBmsDevice(plant, point_map).start()
            device.step(10)
            start_ms.append(1000 * (time.monotonic() - started))
            while time.monotonic() - started < 5 * interval_s + 10 * timeout_s:
                if client.counters()["device_restarts"] > restarts:
                    good, _ = _fresh_with(ingestor, device)
                    frame = plant.last_frame
                    assert frame is not None
                    if good == int(frame.quality[0].sum()):
                        break
                time.sleep(0.002)
            fresh_s.append(time.monotonic() - started)
            last = ingestor.last_poll
            assert last is not None
            resubscribe_ms.append(1000 * last.duration_s)
        fresh_s.sort()
        resubscribe_ms.sort()
        start_ms.sort()
        out.append(
            {
                "measure": "restarted_device",
                "reads": "cov",
                "poll_interval_s": interval_s,
                "timeout_s": timeout_s,
                "restarts": repeats,
                "detected": client.counters()["device_restarts"],
                "sensor_points": good_points,
                "device_start_ms_median": round(start_ms[len(start_ms) // 2], 1),
                "restart_to_fresh_s_median": round(fresh_s[len(fresh_s) // 2], 3),
                "restart_to_fresh_s_worst": round(fresh_s[-1], 3),
                "detecting_poll_ms_median": round(resubscribe_ms[len(resubscribe_ms) // 2], 1),
                "detecting_poll_ms_worst": round(resubscribe_ms[-1], 1),
            }
        )
        # The control: a new device without time-of-device-restart (a stock bacpypes3
        # device, bacpypes3 refusing the whole request for it) seen by a fresh client.
        ingestor.stop()
        client.stop()
        client = BacnetClient(
            point_map, local_port=free_udp_port(), timeout_s=timeout_s, reads="cov"
        ).start()
        _unstamp(device)
        ingestor = FieldIngestor(client, None)
        ingestor.poll_once()
        device.stop()
        device = BacnetBmsDevice(plant, point_map).start()
        _unstamp(device)
        device.step(10)
        for _ in range(5):
            time.sleep(interval_s)
            ingestor.poll_once()
        good, fresh_old = _fresh_with(ingestor, device)
        out.append(
            {
                "measure": "restarted_device_unstamped",
                "reads": "cov",
                "polls_after_restart": 5,
                "detected": client.counters()["device_restarts"],
                "sensor_points": good_points,
                "fresh_with_new_values": good,
                "fresh_with_old_values": fresh_old,
            }
        )
    finally:
        ingestor.stop()
        client.stop()
        device.stop()
    return out


def _unstamp(device: BacnetBmsDevice) -> None:
    async def unset() -> None:
        assert device._app is not None and device._app.device_object is not None
        device._app.device_object.timeOfDeviceRestart = None

    device._loop.call(unset(), 5.0)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--scenario", default="tropical-typical-week")
    parser.add_argument("--periods", type=int, default=30)
    parser.add_argument("--interval", type=float, default=1.0, help="poller interval (s)")
    parser.add_argument("--timeout", type=float, default=0.5, help="request timeout (s)")
    parser.add_argument("--restarts", type=int, default=0, help="only the restart measure")
    args = parser.parse_args()
    if args.restarts > 0:
        for line in restarted_device(args.scenario, args.restarts, args.interval, args.timeout):
            print(json.dumps(line), flush=True)
        return
    for steady in (True, False):
        for reads in ("poll", "cov"):
            print(json.dumps(traffic(args.scenario, reads, args.periods, steady)), flush=True)
    for reads in ("poll", "cov"):
        result = dead_device(args.scenario, reads, args.interval, args.timeout)
        print(json.dumps(result), flush=True)


if __name__ == "__main__":
    main()
