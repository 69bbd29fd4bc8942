"""Running ``twinloop`` as a separate process, as a user does, and reading its errors."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Protocol

from control.reservoir import Reservoir
from physics.plant.site_control import SETPOINT_FIELDS
from tests.control.deployed import deploy


def run_cli(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "twinloop.cli", *args],
        capture_output=True,
        text=True,
        cwd=cwd,
        timeout=120,
        check=False,
    )


def one_error_line(stderr: str) -> str:
    lines = stderr.splitlines()
    assert len(lines) == 1, f"expected one line on stderr, got: {stderr!r}"
    assert lines[0].startswith("twinloop: error: "), lines[0]
    return lines[0]


def processes(home: Path, word: str) -> list[str]:
    """Command lines of running processes that name ``word`` and a path under ``home``."""
    found = []
    for cmdline_file in Path("/proc").glob("[0-9]*/cmdline"):
        try:
            cmdline = cmdline_file.read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:  # the process ended meanwhile
            continue
        if word in cmdline and str(home) in cmdline:
            found.append(cmdline)
    return found


def live_rule_reservoir(root: Path, policy: str = "trim-and-respond") -> str:
    """A reservoir at ``root`` whose live policy is the built-in ``policy`` (gate 1 and the
    operator's steps recorded as a test's): what ``twinloop serve`` needs to write."""
    with Reservoir(root) as res:
        return deploy(res, policy)


def serve_process(site: Path) -> subprocess.Popen[str]:
    """``twinloop serve --site SITE`` as its own process (output captured)."""
    return subprocess.Popen(
        [sys.executable, "-m", "twinloop.cli", "serve", "--site", str(site)],
        cwd=site.parent,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def wait_until_twinloop_holds(
    control_of: Callable[[str], str], proc: subprocess.Popen[str], timeout_s: float = 90.0
) -> None:
    """Until every setpoint field is TwinLoop's at the device (``control_of(field)``)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(proc.communicate())
        if all(control_of(f) == "twinloop" for f in SETPOINT_FIELDS):
            return
        time.sleep(0.1)
    raise AssertionError(f"serve did not take TwinLoop's slot within {timeout_s:.0f} s")


class EmulatedDevice(Protocol):
    """What the serve tests read of a BACnet or Modbus emulated device."""

    @property
    def now_s(self) -> float: ...
    def control_of(self, field: str) -> str: ...
    def counters(self) -> dict[str, int]: ...


def check_serve_hands_back_on_ctrl_c(
    control_of: Callable[[str], str], site: Path, protocol: str, settle_s: float = 0.0
) -> None:
    """``twinloop serve`` until it holds the setpoints (and ``settle_s`` more), then Ctrl-C:
    it exits 0 and every setpoint is back with the site."""
    proc = serve_process(site)
    try:
        wait_until_twinloop_holds(control_of, proc)
        time.sleep(settle_s)
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 0, err[-3000:]
    assert f"over {protocol}" in out
    assert all(control_of(f) == "site" for f in SETPOINT_FIELDS)


def check_serve_hands_back_and_is_released_when_killed(
    device: EmulatedDevice, site: Path, protocol: str
) -> None:
    """``twinloop serve`` over a field protocol, twice: stopped with Ctrl-C it hands every
    setpoint back itself; killed, the device's heartbeat timeout releases them. Every run's
    polls are stored and the writes audited with the protocol's answer."""
    from connectors.historian import Historian

    check_serve_hands_back_on_ctrl_c(device.control_of, site, protocol)
    assert device.counters()["released_heartbeat"] == 0
    # Killed: nothing hands back, the device's heartbeat timeout does.
    proc = serve_process(site)
    try:
        wait_until_twinloop_holds(device.control_of, proc)
        proc.kill()
        proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    killed_at = device.now_s
    assert device.control_of("supply_air_c") == "twinloop"  # a field write never expires
    deadline = time.monotonic() + 60.0
    while device.control_of("supply_air_c") == "twinloop" and time.monotonic() < deadline:
        time.sleep(0.1)
    released_after_s = device.now_s - killed_at
    assert all(device.control_of(f) == "site" for f in SETPOINT_FIELDS)
    assert device.counters()["released_heartbeat"] == 1
    assert released_after_s <= 900.0 + 300.0  # the timeout after the last beat, plus a period
    with Historian(site.parent / "historian.sqlite", readonly=True) as store:
        # Each run polled before it took the slot (how many more periods it saw depends on the
        # machine's load): a stored reading per run at least, none of them twice.
        inlets = store.series(["rack_inlet_c.0.00"])
        assert len(inlets) >= 2
        assert inlets.index.is_unique
        audit = store.audit(limit=10_000)
        assert any(a.detail == f"{protocol}: applied" for a in audit)
        assert any("relinquished" in a.detail and "stopping" in a.detail for a in audit)


def start_emulator(args: list[str], banner: str, cwd: Path) -> subprocess.Popen[str]:
    """``twinloop emulate ARGS`` as its own process, once it printed ``banner``."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "twinloop.cli", "emulate", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=cwd,
    )
    assert proc.stdout is not None
    deadline = time.monotonic() + 90
    line = ""
    while time.monotonic() < deadline and banner not in line:
        line = proc.stdout.readline()
        if not line:
            break
    if banner not in line or "Ctrl-C" not in line:
        proc.kill()
        _, err = proc.communicate()
        raise AssertionError(f"the emulator did not start: {line!r} {err[-3000:]}")
    return proc
