"""Fixtures for the connectors tests: a real Mosquitto broker on loopback and a plant."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from connectors.broker import MosquittoBroker, mosquitto_available
from physics.plant.plant import Plant
from physics.plant.scenario import Scenario, load_scenario
from physics.plant.simulation import build_plant

needs_mosquitto = pytest.mark.skipif(
    not mosquitto_available(),
    reason="Mosquitto is not installed (/usr/sbin/mosquitto, mosquitto_passwd); "
    "scripts/setup.sh installs it",
)


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[MosquittoBroker]:
    """A secured Mosquitto on free loopback ports, stopped after the test."""
    if not mosquitto_available():
        pytest.skip(
            "Mosquitto is not installed (/usr/sbin/mosquitto); scripts/setup.sh installs it"
        )
    with MosquittoBroker(tmp_path / "broker") as running:
        yield running


@pytest.fixture(scope="session")
def scenario() -> Scenario:
    """A shipped two-day scenario (60 s steps, 142 points); loading the weather takes a
    while the first time in a process, so it is loaded once per session."""
    return load_scenario("chiller-trip")


@pytest.fixture
def plant(scenario: Scenario) -> Plant:
    """A fresh plant of ``scenario``."""
    return build_plant(scenario)


@pytest.fixture
def volatile_broker(tmp_path: Path) -> Iterator[MosquittoBroker]:
    """Like ``broker`` but saving its database only every 30 minutes (Mosquitto's default),
    for tests about ingestion rather than broker durability."""
    if not mosquitto_available():
        pytest.skip(
            "Mosquitto is not installed (/usr/sbin/mosquitto); scripts/setup.sh installs it"
        )
    with MosquittoBroker(tmp_path / "volatile-broker", autosave_interval_s=1800) as running:
        yield running


@pytest.fixture(scope="session")
def postgres_admin_url() -> Iterator[str]:
    """A real PostgreSQL server on loopback for the whole session (skipped if not installed).
    Its folder is outside pytest's private temporary tree: the server's own user (not root)
    must reach it."""
    import tempfile

    from tests.connectors.pg_server import postgres_bin, running_postgres

    if postgres_bin() is None:
        pytest.skip(
            "PostgreSQL is not installed (/usr/lib/postgresql); scripts/setup.sh installs it"
        )
    with running_postgres(Path(tempfile.mkdtemp(prefix="twinloop-pg-"))) as url:
        yield url


@pytest.fixture
def postgres_url(postgres_admin_url: str, request: pytest.FixtureRequest) -> str:
    """A fresh, empty database on the session's server."""
    import re

    import psycopg

    name = "t_" + re.sub(r"[^a-z0-9]", "_", request.node.name.lower())[-50:]
    with psycopg.connect(postgres_admin_url, autocommit=True) as admin:
        admin.execute(f'DROP DATABASE IF EXISTS "{name}"')
        admin.execute(f'CREATE DATABASE "{name}"')
    return postgres_admin_url.rsplit("/", 1)[0] + f"/{name}"
