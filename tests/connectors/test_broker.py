"""Security and configuration of the Mosquitto broker TwinLoop runs (real broker, loopback)."""

from __future__ import annotations

import json
import ssl
import stat
import threading
import time
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from connectors.bms_emulator import BmsEmulator
from connectors.broker import IDENTITIES, BrokerAddress, BrokerError, MosquittoBroker, acl_text
from connectors.historian import Historian
from connectors.mqtt_client import make_client
from connectors.setpoint_writer import SetpointRefusedError, SetpointWriter
from connectors.topics import Topics
from physics.plant.plant import Plant
from tests.connectors.conftest import needs_mosquitto

TOPICS = Topics("hall1")


def _connack(address: BrokerAddress, client: mqtt.Client | None = None) -> Any:
    """The CONNACK reason code the broker gives ``address``'s credentials."""
    client = client or make_client(address, "probe")
    result: dict[str, Any] = {}
    done = threading.Event()

    def on_connect(c: mqtt.Client, u: Any, f: Any, rc: Any, p: Any) -> None:
        result["rc"] = rc
        done.set()

    client.on_connect = on_connect
    client.connect(address.host, address.port)
    client.loop_start()
    try:
        assert done.wait(10), "no CONNACK"
    finally:
        client.disconnect()
        client.loop_stop()
    return result["rc"]


def _publish_rc(address: BrokerAddress, topic: str) -> Any:
    """The PUBACK reason code of one QoS 1 publish by ``address``."""
    client = make_client(address, f"pub-{address.username}")
    codes: dict[int, Any] = {}
    done = threading.Event()

    def on_publish(c: mqtt.Client, u: Any, mid: int, rc: Any, p: Any) -> None:
        codes[mid] = rc
        done.set()

    client.on_publish = on_publish
    client.connect(address.host, address.port)
    client.loop_start()
    try:
        info = client.publish(topic, b"{}", qos=1)
        assert done.wait(10), "no PUBACK"
        return codes[info.mid]
    finally:
        client.disconnect()
        client.loop_stop()


@needs_mosquitto
def test_generated_files_and_acl(tmp_path: Path) -> None:
    broker = MosquittoBroker(tmp_path / "b")
    conf = broker.config_file.read_text()
    assert "allow_anonymous false" in conf
    assert "autosave_on_changes false" in conf and "autosave_interval 5\n" in conf
    assert "persistence true" in conf
    assert stat.S_IMODE(broker.credentials_file.stat().st_mode) == 0o600
    creds = json.loads(broker.credentials_file.read_text())
    assert set(creds["users"]) == set(IDENTITIES)
    assert "use_username_as_clientid true" in conf
    assert "ingest:" in (tmp_path / "b" / "passwd").read_text()
    assert creds["users"]["ingest"] not in (tmp_path / "b" / "passwd").read_text()
    # Reopening keeps passwords and ports (clients and persisted sessions stay valid).
    again = MosquittoBroker(tmp_path / "b")
    assert (again.users, again.port, again.tls_port) == (broker.users, broker.port, broker.tls_port)
    acl = acl_text()
    controller = acl.split("user controller")[1].split("user dashboard")[0]
    writes = [line for line in controller.splitlines() if "write" in line]
    assert writes and all("/setpoints/" in line for line in writes)
    ingest = acl.split("user ingest")[1].split("user controller")[0]
    assert "write" not in ingest
    address = BrokerAddress.from_credentials(broker.credentials_file, "ingest", tls=True)
    assert address.port == broker.tls_port and address.ca_file == broker.tls_files.ca_file
    with pytest.raises(BrokerError, match="no identity"):
        BrokerAddress.from_credentials(broker.credentials_file, "root")


@needs_mosquitto
def test_identities_added_since_get_passwords_and_the_others_keep_theirs(tmp_path: Path) -> None:
    broker = MosquittoBroker(tmp_path / "b")
    creds = json.loads(broker.credentials_file.read_text())
    older = {k: v for k, v in creds["users"].items() if not k.startswith("bms.")}
    older["dashboard"] = "bad\nroot:line"  # never copied into the password file
    broker.credentials_file.write_text(json.dumps({**creds, "users": older}))
    again = MosquittoBroker(tmp_path / "b")
    assert set(again.users) == set(IDENTITIES)
    assert again.users["ingest"] == broker.users["ingest"]
    assert again.users["bms.0"] and again.users["dashboard"] != older["dashboard"]
    assert "root:line" not in (tmp_path / "b" / "passwd").read_text()
    gateway = acl_text().split("user bms.0\n")[1].split("\n\n")[0]
    assert gateway == acl_text().split("user bms\n")[1].split("\n\n")[0]


def test_missing_mosquitto_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(BrokerError, match="Mosquitto not found"):
        MosquittoBroker(tmp_path, executable=str(tmp_path / "no-mosquitto"))


@pytest.mark.integration
def test_anonymous_and_wrong_password_refused(broker: MosquittoBroker) -> None:
    good = broker.address("dashboard")
    assert not _connack(good).is_failure
    anonymous = mqtt.Client(
        callback_api_version=CallbackAPIVersion.VERSION2, client_id="anon", protocol=mqtt.MQTTv5
    )
    assert _connack(good, anonymous).is_failure
    wrong = BrokerAddress(good.host, good.port, "dashboard", "not-the-password")
    rc = _connack(wrong)
    assert rc.is_failure and rc.value in (0x86, 0x87)  # bad user name or password / not authorized


@pytest.mark.integration
def test_acl_least_privilege(broker: MosquittoBroker) -> None:
    setpoint = TOPICS.setpoint("supply_air_c")
    assert not _publish_rc(broker.address("controller"), setpoint).is_failure
    assert _publish_rc(broker.address("ingest"), setpoint).value == 0x87
    assert _publish_rc(broker.address("dashboard"), setpoint).value == 0x87
    assert _publish_rc(broker.address("bms"), setpoint).value == 0x87
    # The controller may write only the allow-listed setpoint topics.
    assert _publish_rc(broker.address("controller"), f"{TOPICS.root}/setpoints/valve").value == 0x87
    assert _publish_rc(broker.address("controller"), TOPICS.sensor("supply_air_c")).value == 0x87
    assert _publish_rc(broker.address("controller"), TOPICS.override).value == 0x87
    assert not _publish_rc(broker.address("bms"), TOPICS.sensor("supply_air_c")).is_failure
    # A gateway's second process has bms's rights under its own identity.
    assert not _publish_rc(broker.address("bms.1"), TOPICS.sensor("supply_air_c")).is_failure
    assert _publish_rc(broker.address("bms.1"), setpoint).value == 0x87


@pytest.mark.integration
def test_ingest_identity_setpoint_refused_and_never_applied(
    broker: MosquittoBroker, plant: Plant, tmp_path: Path
) -> None:
    with (
        Historian(tmp_path / "h.sqlite") as historian,
        BmsEmulator(plant, broker.address("bms"), TOPICS) as emulator,
        SetpointWriter(broker.address("ingest"), TOPICS, historian, client_id="rogue") as rogue,
        SetpointWriter(broker.address("controller"), TOPICS, historian) as controller,
    ):
        with pytest.raises(SetpointRefusedError, match="0x87") as err:
            rogue.write("supply_air_c", 26.0, expires_at=1e6, issued_at=0.0, command_id="rogue-1")
        assert err.value.result is not None and err.value.result.reason_code == 0x87
        # A good command after it shows the emulator is listening.
        controller.write("fan_speed_frac", 0.9, expires_at=1e6, issued_at=0.0, command_id="ok-1")
        for _ in range(100):
            emulator.step()
            if emulator.counters()["applied"]:
                break
        assert emulator.applied_ids == ["ok-1"]
        assert "supply_air_c" not in emulator.active_commands()
        deadline = time.monotonic() + 5  # the BMS's echo is audited when it arrives
        while len(historian.audit()) < 3 and time.monotonic() < deadline:
            time.sleep(0.02)
        audit = historian.audit()
        assert [(a.command_id, a.outcome, a.actor) for a in audit] == [
            ("ok-1", "applied", "controller"),
            ("ok-1", "published", "controller"),
            ("rogue-1", "refused", "ingest"),
        ]


@pytest.mark.integration
def test_tls_listener_with_generated_ca(broker: MosquittoBroker, tmp_path: Path) -> None:
    tls = broker.address("controller", tls=True)
    assert not _connack(tls).is_failure
    with SetpointWriter(tls, TOPICS, None, client_id="tls-writer") as writer:
        result = writer.write("supply_air_c", 21.0, expires_at=100.0, issued_at=0.0)
        assert result.outcome == "published"
    # Without the CA (system trust store only) the server certificate is refused.
    untrusted = mqtt.Client(
        callback_api_version=CallbackAPIVersion.VERSION2, client_id="no-ca", protocol=mqtt.MQTTv5
    )
    untrusted.username_pw_set(tls.username, tls.password)
    untrusted.tls_set(tls_version=ssl.PROTOCOL_TLS_CLIENT)
    with pytest.raises(ssl.SSLCertVerificationError):
        untrusted.connect(tls.host, tls.port)
    # A plain-text client on the TLS port gets no CONNACK.
    plain_on_tls = BrokerAddress(tls.host, tls.port, tls.username, tls.password)
    client = make_client(plain_on_tls, "plain-on-tls")
    connected = threading.Event()
    client.on_connect = lambda *a: connected.set()
    try:
        client.connect(tls.host, tls.port)
        client.loop_start()
        assert not connected.wait(1.5)
    except OSError:
        pass
    finally:
        client.loop_stop()
