"""Ingestion in several processes through Mosquitto into one historian."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from connectors.broker import MosquittoBroker
from connectors.historian import open_historian
from connectors.ingest_pool import IngestPool, deal
from connectors.mqtt_client import make_client
from connectors.payloads import SensorMessage
from connectors.topics import Topics

TOPICS = Topics("pool")


def test_points_are_dealt_round_robin_into_disjoint_shares() -> None:
    shares = deal(["c", "a", "b", "e", "d", "a"], 2)
    assert shares == [["a", "c", "e"], ["b", "d"]]
    with pytest.raises(ValueError, match="3 workers need at least as many points, got 2"):
        deal(["a", "b"], 3)
    with pytest.raises(ValueError, match="workers must be at least 1"):
        deal(["a"], 0)


@pytest.mark.parametrize("backend", ["sqlite", "postgres"])
def test_two_workers_store_every_reading_once_in_order(
    volatile_broker: MosquittoBroker,
    tmp_path: Path,
    backend: str,
    request: pytest.FixtureRequest,
) -> None:
    points = [f"t{i:02d}" for i in range(8)]
    per_point = 500
    store = (
        str(tmp_path / "historian.sqlite")
        if backend == "sqlite"
        else str(request.getfixturevalue("postgres_url"))
    )
    open_historian(store).close()  # created before the workers open it
    units = dict.fromkeys(points, "degC")
    identities = [volatile_broker.address(name) for name in ("ingest.0", "ingest.1")]
    pool = IngestPool(identities, TOPICS, store, points, workers=2, units=units)
    publisher = make_client(volatile_broker.address("bms"), "pool-publisher")
    address = volatile_broker.address("bms")
    publisher.max_inflight_messages_set(1000)
    with pool:
        publisher.connect(address.host, address.port)
        publisher.loop_start()
        infos = []
        for seq in range(1, per_point + 1):
            for point in points:
                msg = SensorMessage(20.0 + seq * 1e-3, "degC", 60.0 * seq, "good", seq)
                infos.append(publisher.publish(TOPICS.sensor(point), msg.encode(), qos=1))
        # Junk on one point: rejected by its worker and counted in the pool's totals.
        publisher.publish(TOPICS.sensor(points[0]), b"\xff\xfe", qos=1).wait_for_publish(10)
        for info in infos[-50:]:
            info.wait_for_publish(30)
        deadline = time.monotonic() + 60
        total = per_point * len(points)
        while pool.stats()["written"] < total and time.monotonic() < deadline:
            time.sleep(0.05)
        assert pool.stats()["alive"] == 2
        publisher.disconnect()
        publisher.loop_stop()
    stats = pool.stats()  # the workers' last counters, written as they stopped
    assert stats["written"] == total and stats["accepted"] == total
    assert stats["gaps"] == 0  # each point in order, in one worker
    assert stats["rejected"] == {"non_utf8": 1} and stats["rejected_total"] == 1
    assert stats["workers"] == 2 and stats["alive"] == 0  # stopped
    with open_historian(store, readonly=True) as historian:
        frame = historian.series(points)
    assert list(frame.columns) == points and len(frame) == per_point
    assert frame.notna().all().all()  # every point at every time, stored once
    assert frame["t03"].iloc[-1] == pytest.approx(20.0 + per_point * 1e-3)
