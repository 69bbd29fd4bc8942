"""Ingestion speed: sensor messages per second from Mosquitto into the historian, on loopback.

Starts the broker TwinLoop runs (``MosquittoBroker``: the product configuration, persistence
saved every 5 s), an :class:`MqttIngestor` (or an :class:`IngestPool` of ``--workers``)
writing to a SQLite historian, and
``--publishers`` separate processes that publish valid sensor payloads (the emulator's format,
one topic per point, ``seq`` increasing per point) as fast as they can, each as its own BMS
gateway identity (``bms.0`` ...: processes sharing one identity take over each other's
session) and through the product's publish path (:class:`connectors.mqtt_service.MqttService`,
every publish checked, waiting for room in paho's outbox). The rate is messages validated
and committed to the historian per second, from the first message received to the last one
committed; every message must arrive and every publisher must report all of its messages
sent and accepted (the run fails otherwise).

    python benchmarks/ingestion_speed.py [--messages 200000] [--publishers 2] [--qos 1]
        [--workers 2] [--save-on-change]

``--qos 1`` is how the BMS emulator publishes telemetry (issue 17): every delivery is
acknowledged, to the publisher by the broker and to the broker by ingestion once the reading
is committed. ``--save-on-change`` measures the broker saving its database on every change
(the persistence before issue 17, where each acknowledgement costs a database save);
``--qos 0`` the fire-and-forget telemetry of before.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import multiprocessing
import os
import platform
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from tqdm import tqdm

from connectors.broker import GATEWAY_IDENTITIES, BrokerAddress, MosquittoBroker
from connectors.historian import Historian
from connectors.ingest_pool import IngestPool
from connectors.ingestion import MqttIngestor
from connectors.mqtt_service import MqttService
from connectors.payloads import SensorMessage
from connectors.topics import Topics

TOPICS = Topics("bench")


def _publish(address: BrokerAddress, worker: int, n: int, n_points: int, qos: int) -> None:
    """One gateway process: its own identity (``bms.<worker>``), the product's publish path
    (:class:`MqttService`: every publish checked, waiting for room when paho's outbox is
    full). Exits 1 if any message was not sent or the broker refused it."""
    service = MqttService(address, f"bench-publisher-{worker}", name=f"publisher {worker}")
    service.client.max_inflight_messages_set(100)  # the broker's Receive Maximum
    service.start(wait_s=30.0)
    topics = [TOPICS.sensor(f"p{worker}_{i:03d}") for i in range(n_points)]
    info = None
    unsent = 0
    for k in range(n):
        seq, point = divmod(k, n_points)
        msg = SensorMessage(
            value=20.0 + (k % 7) * 0.1, unit="degC", ts=60.0 * seq, quality="good", seq=seq + 1
        )
        info = service.publish(topics[point], msg.encode(), qos=qos, wait_s=60.0)
        unsent += info.rc != 0
    if info is not None and qos and not unsent:
        info.wait_for_publish(120)  # QoS 1 is acknowledged in order: the last one is the end
    counts = service.counters()
    service.stop()
    failed = unsent + counts["publish_refused"] + counts["taken_over"]
    if failed:
        print(f"publisher {worker}: {unsent} not sent, counters {counts}", flush=True)
    raise SystemExit(1 if failed else 0)


def _raw_publish(address: BrokerAddress, worker: int, n: int, n_points: int) -> None:
    """One gateway process through the lean load generator (:mod:`mqtt_load`): the same
    topics and payloads as :func:`_publish`, QoS 1, every PUBACK checked. Exits 1 unless
    every message was acknowledged with success."""
    from mqtt_load import MqttLoadError, publish_all  # the benchmarks folder, run as a script

    def messages() -> Iterator[tuple[str, bytes]]:
        topics = [TOPICS.sensor(f"p{worker}_{i:03d}") for i in range(n_points)]
        for k in range(n):
            seq, point = divmod(k, n_points)
            value = 20.0 + (k % 7) * 0.1
            msg = SensorMessage(value, "degC", 60.0 * seq, "good", seq + 1)
            yield topics[point], msg.encode()

    try:
        acked = publish_all(
            address.host,
            address.port,
            address.username,
            address.password,
            f"bench-raw-publisher-{worker}",
            messages(),
        )
    except (MqttLoadError, OSError) as exc:
        print(f"publisher {worker}: {exc}", flush=True)
        raise SystemExit(1) from exc
    raise SystemExit(0 if acked == n else 1)


def _mosquitto_pub(address: BrokerAddress, worker: int, n: int, qos: int, folder: Path) -> Any:
    """``mosquitto_pub -l``: one point per publisher, one line per message (C, light on CPU)."""
    lines = folder / f"publisher-{worker}.jsonl"
    with lines.open("w") as fh:
        for seq in range(1, n + 1):
            msg = SensorMessage(20.0 + (seq % 7) * 0.1, "degC", 60.0 * seq, "good", seq)
            fh.write(msg.encode().decode() + "\n")
    args = [
        "mosquitto_pub",
        "-h",
        address.host,
        "-p",
        str(address.port),
        "-u",
        str(address.username),
        "-P",
        str(address.password),
        "-V",
        "mqttv5",
        "-q",
        str(qos),
        "-l",
        "-t",
        TOPICS.sensor(f"p{worker}_000"),
        "-i",
        f"bench-c-publisher-{worker}",
    ]
    return subprocess.Popen(args, stdin=lines.open("rb"))


def _end_publishers(procs: list[Any], grace_s: float = 30.0) -> None:
    """Let each publisher finish (its last PUBACK, its verdict); stop those still running
    after ``grace_s`` (an interrupted run)."""
    deadline = time.monotonic() + grace_s
    for proc in procs:
        left = max(0.1, deadline - time.monotonic())
        if isinstance(proc, subprocess.Popen):
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=left)
            if proc.poll() is None:
                proc.terminate()
            proc.wait(timeout=60)
        else:
            proc.join(timeout=left)
            if proc.is_alive():
                proc.terminate()
            proc.join(timeout=60)


def _proc_cpu_s(pid: int) -> float:
    """User + system CPU seconds of a process (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _point_names(publishers: int, points: int, client: str) -> list[str]:
    per = 1 if client == "c" else points
    return [f"p{w}_{i:03d}" for w in range(publishers) for i in range(per)]


def measure(
    messages: int,
    publishers: int,
    points: int,
    qos: int,
    save_on_change: bool,
    client: str,
    workers: int = 1,
) -> dict[str, Any]:
    if not 1 <= publishers <= len(GATEWAY_IDENTITIES):
        raise SystemExit(
            f"--publishers must lie in 1..{len(GATEWAY_IDENTITIES)} (one identity each)"
        )
    per = messages // publishers
    total = per * publishers
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        with (
            MosquittoBroker(folder / "broker", autosave_on_changes=save_on_change) as broker,
            Historian(folder / "historian.sqlite") as historian,
        ):
            first: list[float] = []
            ingestor: MqttIngestor | IngestPool
            names = _point_names(publishers, points, client)
            units = dict.fromkeys(names, "degC")  # the catalog: every point published
            if workers == 1:
                ingestor = MqttIngestor(
                    broker.address("ingest"), TOPICS, historian, qos=1, units=units
                )
                ingestor.add_handler(
                    lambda r: first.append(time.perf_counter()) if not first else None
                )
            else:
                ingestor = IngestPool(
                    [broker.address(f"ingest.{k}") for k in range(workers)],
                    TOPICS,
                    historian.path,
                    names,
                    workers=workers,
                    qos=1,
                    units=units,
                )
            with ingestor:
                assert broker.proc is not None
                broker_cpu0, cpu0 = _proc_cpu_s(broker.proc.pid), time.process_time()
                pool_pids = ingestor.worker_pids if isinstance(ingestor, IngestPool) else []
                pool_cpu0 = sum(_proc_cpu_s(pid) for pid in pool_pids)
                ctx = multiprocessing.get_context("spawn")
                procs: list[Any] = []
                if client == "c":
                    lines_dir = folder / "lines"
                    lines_dir.mkdir()
                    started = time.perf_counter()
                    procs = [
                        _mosquitto_pub(
                            broker.address(GATEWAY_IDENTITIES[w]), w, per, qos, lines_dir
                        )
                        for w in range(publishers)
                    ]
                else:
                    if client == "raw" and qos != 1:
                        raise SystemExit("--client raw publishes at QoS 1 only")
                    procs = [
                        ctx.Process(
                            target=_raw_publish if client == "raw" else _publish,
                            args=(broker.address(GATEWAY_IDENTITIES[w]), w, per, points)
                            + (() if client == "raw" else (qos,)),
                        )
                        for w in range(publishers)
                    ]
                    started = time.perf_counter()
                    for proc in procs:
                        proc.start()
                try:
                    with tqdm(total=total, unit="msg", desc="ingested", leave=False) as bar:
                        done, progress_at = 0, time.monotonic()
                        while done < total and time.monotonic() - progress_at < 15.0:
                            time.sleep(0.05)
                            now = int(ingestor.stats()["written"])
                            if now and not first:  # the pool: first commit seen
                                first.append(time.perf_counter())
                            if now > done:
                                bar.update(now - done)
                                done, progress_at = now, time.monotonic()
                    finished = time.perf_counter()
                    cpu = time.process_time() - cpu0
                    broker_cpu = _proc_cpu_s(broker.proc.pid) - broker_cpu0
                    pool_cpu = sum(_proc_cpu_s(pid) for pid in pool_pids) - pool_cpu0
                finally:
                    _end_publishers(procs)
                stats = ingestor.stats()
            exits = [p.returncode if isinstance(p, subprocess.Popen) else p.exitcode for p in procs]
            takeovers = broker.takeovers()
            stored = len(historian.series(["p0_000"]))
    written = written_now = int(stats.get("written", 0))
    wall = finished - (first[0] if first else started)
    return {
        "messages": total,
        "written": written,
        "rejected": stats.get("rejected_total", 0),
        "rejected_by_reason": stats.get("rejected", {}),
        "publishers": publishers,
        "ingest_workers": workers,
        "points": publishers if client == "c" else points * publishers,
        "publisher": {
            "c": "mosquitto_pub -l (C)",
            "raw": "lean load generator (benchmarks/mqtt_load.py, pre-encoded packets)",
            "python": "paho (Python processes)",
        }[client],
        "qos": qos,
        "broker_persistence": "save on every change"
        if save_on_change
        else "saved every 5 s (autosave_on_changes false, autosave_interval 5)",
        "wall_s": round(wall, 3),
        "end_to_end_s": round(finished - started, 3),
        "msgs_per_s": round(written / wall, 1) if wall > 0 else 0.0,
        "ingest_cpu_s": round(cpu, 3) if workers == 1 else None,
        "ingest_msgs_per_cpu_s": round(written / cpu, 1) if cpu > 0 and workers == 1 else None,
        "broker_cpu_s": round(broker_cpu, 3),
        "pool_cpu_s": round(pool_cpu, 3) if workers > 1 else None,
        # Broker and ingestion CPU per message: the rate two cores would sustain with the
        # publishers on other machines, as a site's BMS gateways are.
        "broker_plus_ingest_us_per_msg": round(
            1e6 * (broker_cpu + (pool_cpu if workers > 1 else cpu)) / max(written_now, 1), 1
        ),
        "batches": stats.get("batches", 0),
        "publisher_exit_codes": exits,
        "broker_session_takeovers": takeovers,
        "ingest_disconnects": stats.get("disconnects", 0),
        "ingest_dropped_queue_full": stats.get("dropped_queue_full", 0),
        "stored_rows_p0_000": stored,
    }


def measure_consumer(messages: int, points: int) -> dict[str, Any]:
    """The stage after MQTT alone: queue -> decode/validate -> batched historian commits."""
    with tempfile.TemporaryDirectory() as tmp, Historian(Path(tmp) / "h.sqlite") as historian:
        topics = [TOPICS.sensor(f"p{i:03d}") for i in range(points)]
        items = []
        for k in range(messages):
            seq, point = divmod(k, points)
            msg = SensorMessage(20.0 + (k % 7) * 0.1, "degC", 60.0 * seq, "good", seq + 1)
            items.append((topics[point], msg.encode()))
        units = {f"p{i:03d}": "degC" for i in range(points)}
        ingestor = MqttIngestor(BrokerAddress(), TOPICS, historian, units=units)
        ingestor.start(connect=False)
        cpu0 = time.process_time()
        started = time.perf_counter()
        for topic, payload in items:
            ingestor.submit(topic, payload)
        assert ingestor.drain(600), "the consumer did not finish"
        wall = time.perf_counter() - started
        cpu = time.process_time() - cpu0
        stats = ingestor.stats()
        ingestor.stop()
    return {
        "stage": "consumer only (no MQTT): decode, validate, commit",
        "messages": messages,
        "written": int(stats["written"]),
        "wall_s": round(wall, 3),
        "msgs_per_s": round(int(stats["written"]) / wall, 1),
        "cpu_s": round(cpu, 3),
        "msgs_per_cpu_s": round(int(stats["written"]) / cpu, 1),
        "batches": stats["batches"],
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=200_000)
    parser.add_argument("--publishers", type=int, default=2)
    parser.add_argument("--points", type=int, default=140, help="points per publisher")
    parser.add_argument("--qos", type=int, choices=(0, 1), default=1)
    parser.add_argument(
        "--workers", type=int, default=1, help="ingestion processes, each with a share of points"
    )
    parser.add_argument(
        "--save-on-change",
        action="store_true",
        help="the broker saves its database on every change (before issue 17)",
    )
    parser.add_argument(
        "--client",
        choices=("python", "raw", "c"),
        default="python",
        help="publishers: paho processes (140 points each), the lean load generator "
        "(benchmarks/mqtt_load.py; same points and payloads, a few µs per message) or "
        "mosquitto_pub -l (one point each)",
    )
    parser.add_argument(
        "--consumer-only",
        action="store_true",
        help="measure the stage after MQTT alone (decode, validate, historian commits)",
    )
    parser.add_argument("--json", type=Path, help="also write the result here")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    if args.consumer_only:
        stage = measure_consumer(args.messages, args.points)
        print(json.dumps(stage, indent=2))
        print(
            f"RESULT ingestion consumer stage: {stage['written']}/{stage['messages']} messages "
            f"decoded, validated and committed at {stage['msgs_per_s']:,.0f} msg/s (no MQTT); "
            f"{stage['msgs_per_cpu_s']:,.0f} msg per CPU second"
        )
        return 0 if stage["written"] == stage["messages"] else 1
    result = measure(
        args.messages,
        args.publishers,
        args.points,
        args.qos,
        args.save_on_change,
        args.client,
        args.workers,
    )
    result["machine"] = f"{platform.machine()}, {os.cpu_count()} CPUs, {platform.python_version()}"
    if args.json:
        args.json.write_text(json.dumps(result, indent=2) + "\n")
    complete = result["written"] == result["messages"] and not any(result["publisher_exit_codes"])
    print(json.dumps(result, indent=2))
    print(
        f"RESULT ingestion: {result['written']}/{result['messages']} messages through Mosquitto "
        f"into the historian at {result['msgs_per_s']:,.0f} msg/s (QoS {args.qos}, "
        f"{args.publishers} publisher process(es), {args.workers} ingestion process(es), "
        "target >= 20,000)" + ("" if complete else "  INCOMPLETE: messages missing")
    )
    return 0 if complete else 1


if __name__ == "__main__":
    raise SystemExit(main())
