"""Ingestion in several processes: each subscribes to its own share of the site's points.

One :class:`~connectors.ingestion.MqttIngestor` is bound by one CPU core (paho's network
thread and the decoding consumer share Python's GIL). :class:`IngestPool` runs ``workers``
of them as processes. The points are dealt out round-robin (sorted by name), and each worker
subscribes to the topics of its points only, so every point is ingested by exactly one
process and its sequence numbers (gaps, replays) are judged in order. MQTT 5 shared
subscriptions would balance messages instead of points and break that order, so they are
not used. Each worker has its own identity (one address per worker: a broker that binds
client ids to user names, as TwinLoop's does, lets no two processes share one), client id and
persistent session, and writes through its own connection to the same SQLite historian
(WAL: writers take turns, readers never wait).

Counters of every worker are summed by :meth:`IngestPool.stats`; rejected messages are
counted by reason per worker and summed the same way.
"""

from __future__ import annotations

import logging
import multiprocessing
import time
from collections.abc import Sequence
from dataclasses import dataclass
from multiprocessing.sharedctypes import Synchronized, SynchronizedArray
from pathlib import Path
from typing import Any

from connectors import ingestion
from connectors.broker import BrokerAddress, BrokerError
from connectors.payloads import REJECT_REASONS
from connectors.topics import Topics

logger = logging.getLogger(__name__)

COUNTERS: tuple[str, ...] = (
    *ingestion.COUNTERS,
    *ingestion.NET_COUNTERS,
    "queue_depth",
    *(f"rejected.{reason}" for reason in REJECT_REASONS),
)
"""What each worker publishes to the pool, in this order."""
PUBLISH_EVERY_S = 0.05


def deal(points: Sequence[str], workers: int) -> list[list[str]]:
    """``points`` dealt round-robin, sorted by name, into ``workers`` non-empty shares."""
    if workers < 1:
        raise ValueError(f"workers must be at least 1, got {workers}")
    unique = sorted(set(points))
    if len(unique) < workers:
        raise ValueError(f"{workers} workers need at least as many points, got {len(unique)}")
    return [unique[k::workers] for k in range(workers)]


@dataclass(frozen=True)
class _WorkerSpec:
    index: int
    address: BrokerAddress
    site: str
    prefix: str
    historian: str
    points: tuple[str, ...]
    client_id: str
    ingestor_kwargs: dict[str, Any]


def _flatten(stats: dict[str, Any]) -> list[int]:
    rejected = stats.get("rejected", {})
    out = []
    for name in COUNTERS:
        if name.startswith("rejected."):
            out.append(int(rejected.get(name.split(".", 1)[1], 0)))
        else:
            out.append(int(stats.get(name, 0)))
    return out


def _run_worker(
    spec: _WorkerSpec,
    counters: SynchronizedArray[int],
    ready: Synchronized[int],
    stop: Any,
) -> None:
    """One worker process: ingest its share until ``stop`` is set, publishing counters."""
    from connectors.historian import open_historian
    from connectors.ingestion import MqttIngestor

    logging.basicConfig(level=logging.WARNING)
    width = len(COUNTERS)
    base = spec.index * width
    with open_historian(spec.historian) as historian:
        ingestor = MqttIngestor(
            spec.address,
            Topics(spec.site, prefix=spec.prefix),
            historian,
            client_id=spec.client_id,
            points=spec.points,
            **spec.ingestor_kwargs,
        )
        try:
            ingestor.start(wait_s=30.0)
        except BrokerError:
            logger.exception("ingest worker %d could not connect", spec.index)
            return
        with ready.get_lock():
            ready.value += 1
        try:
            while not stop.wait(PUBLISH_EVERY_S):
                counters[base : base + width] = _flatten(ingestor.stats())
        finally:
            ingestor.stop()
            counters[base : base + width] = _flatten(ingestor.stats())


class IngestPool:
    """``workers`` ingestion processes over one historian file (module docstring)."""

    def __init__(
        self,
        address: BrokerAddress | Sequence[BrokerAddress],
        topics: Topics,
        historian_path: str | Path,
        points: Sequence[str],
        *,
        workers: int = 2,
        client_id: str | None = None,
        **ingestor_kwargs: Any,
    ) -> None:
        self.shares = deal(points, workers)
        self.workers = workers
        addresses = [address] * workers if isinstance(address, BrokerAddress) else list(address)
        if len(addresses) != workers:
            raise ValueError(
                f"{workers} workers need {workers} broker identities, got {len(addresses)}"
            )
        users = [a.username for a in addresses]
        if len(addresses) > 1 and len(set(users)) != len(users):
            logger.warning(
                "ingestion pool: workers share an identity; a broker that binds client ids to "
                "user names will let only one of them stay connected"
            )
        base_id = client_id or f"twinloop-ingest-{topics.site}"
        ctx = multiprocessing.get_context("spawn")
        self._ctx = ctx
        self._counters: SynchronizedArray[int] = ctx.Array("q", workers * len(COUNTERS))
        self._ready: Synchronized[int] = ctx.Value("i", 0)
        self._stop = ctx.Event()
        self._specs = [
            _WorkerSpec(
                index=k,
                address=addresses[k],
                site=topics.site,
                prefix=topics.prefix,
                historian=str(historian_path),
                points=tuple(share),
                client_id=f"{base_id}-{k}of{workers}",
                ingestor_kwargs=dict(ingestor_kwargs),
            )
            for k, share in enumerate(self.shares)
        ]
        self._procs: list[Any] = []

    def start(self, *, wait_s: float = 60.0) -> IngestPool:
        """Start the workers and wait until every one is connected and subscribed."""
        if self._procs:
            return self
        self._stop.clear()
        self._procs = [
            self._ctx.Process(
                target=_run_worker,
                args=(spec, self._counters, self._ready, self._stop),
                name=f"ingest-{spec.index}",
                daemon=True,
            )
            for spec in self._specs
        ]
        for proc in self._procs:
            proc.start()
        deadline = time.monotonic() + wait_s
        while self._ready.value < self.workers:
            dead = [p.name for p in self._procs if not p.is_alive()]
            if dead or time.monotonic() > deadline:
                self.stop()
                why = f"{', '.join(dead)} exited" if dead else f"not ready within {wait_s} s"
                raise BrokerError(f"ingestion pool did not start: {why}")
            time.sleep(0.05)
        logger.info(
            "ingestion pool: %d workers, %s points", self.workers, sum(map(len, self.shares))
        )
        return self

    def stop(self, timeout_s: float = 30.0) -> None:
        """Ask every worker to store what it holds and stop; wait for them."""
        self._stop.set()
        for proc in self._procs:
            proc.join(timeout_s)
            if proc.is_alive():
                logger.error("ingest worker %s did not stop; terminating it", proc.name)
                proc.terminate()
                proc.join(5.0)
        self._procs = []

    def __enter__(self) -> IngestPool:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def worker_pids(self) -> list[int]:
        """Process ids of the running workers (for CPU accounting)."""
        return [int(p.pid) for p in self._procs if p.pid is not None]

    def stats(self) -> dict[str, Any]:
        """Counters summed over the workers (``rejected`` by reason, ``rejected_total``)."""
        values = list(self._counters[:])
        width = len(COUNTERS)
        totals = [sum(values[k * width + i] for k in range(self.workers)) for i in range(width)]
        out: dict[str, Any] = {}
        rejected: dict[str, int] = {}
        for name, total in zip(COUNTERS, totals, strict=True):
            if name.startswith("rejected."):
                if total:
                    rejected[name.split(".", 1)[1]] = total
            else:
                out[name] = total
        out["rejected"] = rejected
        out["rejected_total"] = sum(rejected.values())
        out["workers"] = self.workers
        out["alive"] = sum(p.is_alive() for p in self._procs)
        return out
