"""Running ``twinloop`` as a separate process, as a user does, and reading its errors."""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

from control import approval
from control.preevaluation import register_builtin
from control.reservoir import Reservoir
from physics.plant.site_control import SETPOINT_FIELDS


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
        ref = register_builtin(res, policy, actor="test").ref
        res.add_evaluation(ref, on="twin", scenario="w", kpis={"cooling_kwh": 1.0})
        res.transition(ref, "pre_evaluated", actor="gate1", reason="passed")
        approval.approve(res, ref, operator="ann", reason="ok")
        approval.promote(res, ref, operator="ann", reason="shadow")
        approval.promote(res, ref, operator="ann", reason="live")
    return ref


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
