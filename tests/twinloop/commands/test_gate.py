"""``twinloop gate`` over a real reservoir and a real users file: only an operator who
proved who they are (a password asked on the terminal or read from a private file or the
environment, or an access token) decides; the history names that user, every attempt is in
the access log, and a refusal is one error line with exit status 2 that changes nothing."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from control.reservoir import Reservoir
from dashboards.auth import UserStore
from tests.twinloop.cli_process import one_error_line, run_cli
from twinloop.cli import main
from twinloop.commands import gate

ANN, VIC = "ann-password", "vic-password"


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in (gate.OPERATOR_ENV, gate.PASSWORD_ENV, gate.TOKEN_ENV):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("USER", "ann")
    monkeypatch.setattr(gate, "REFUSAL_DELAY_S", 0.0)


@pytest.fixture
def users(tmp_path: Path) -> Path:
    store = UserStore(tmp_path / "users.json")
    store.add("ann", ANN, "operator")
    store.add("bea", "bea-password", "operator")
    store.add("vic", VIC, "viewer")
    return store.path


@pytest.fixture
def root(tmp_path: Path) -> Path:
    """A reservoir with two pre-evaluated agents and a candidate."""
    root = tmp_path / "reservoir"
    with Reservoir(root) as res:
        for name in ("ppo", "sac", "td3"):
            artifact = tmp_path / f"{name}.zip"
            artifact.write_bytes(name.encode())
            res.register(name, "drl", artifact, hyperparameters={}, training_scenarios=["w"])
            res.add_evaluation(
                name,
                on="twin",
                scenario="hot-week",
                kpis={"cooling_kwh": 1234.0, "max_inlet_c": 25.5},
            )
            if name != "td3":
                res.transition(name, "pre_evaluated", actor="gate1", reason="passed")
    return root


def _gate(
    capsys: pytest.CaptureFixture[str], root: Path, users: Path, *args: str
) -> tuple[int, str, str]:
    who = [] if args[0] == "pending" else ["--users", str(users)]
    status = main(["gate", *args[:1], "--reservoir", str(root), *who, *args[1:]])
    out, err = capsys.readouterr()
    return status, out, err


def _as(monkeypatch: pytest.MonkeyPatch, name: str, password: str) -> None:
    monkeypatch.setenv(gate.OPERATOR_ENV, name)
    monkeypatch.setenv(gate.PASSWORD_ENV, password)


def _log(root: Path) -> list[tuple[str, str, str | None, str, str]]:
    with Reservoir(root, create=False) as res:
        return [(a.user, a.action, a.policy, a.method, a.outcome) for a in res.access_log()]


def test_pending_lists_policies_awaiting_a_decision(
    root: Path, users: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    status, out, _ = _gate(capsys, root, users, "pending")
    assert status == 0
    lines = out.splitlines()
    assert [line.split("\t")[0] for line in lines] == ["ppo@1", "sac@1"]
    assert "1,234 kWh" in lines[0] and "25.50 °C" in lines[0]


def test_an_authenticated_operator_approves_promotes_and_rolls_back(
    root: Path, users: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    _as(monkeypatch, "ann", ANN)
    status, out, err = _gate(capsys, root, users, "approve", "ppo", "--reason", "ok")
    assert (status, out.strip()) == (0, "ppo@1: approved (by ann)")
    with Reservoir(root, create=False) as res:
        assert err.strip() == f"history head: {res.verify_history().anchor}"
    status, out, _ = _gate(capsys, root, users, "promote", "ppo")
    assert (status, out.strip()) == (0, "ppo@1: shadow (by ann)")
    status, out, _ = _gate(capsys, root, users, "promote", "ppo@1")
    assert (status, out.strip()) == (0, "ppo@1: live (by ann)")
    _as(monkeypatch, "bea", "bea-password")
    status, out, _ = _gate(capsys, root, users, "rollback", "--reason", "inlet too warm")
    assert (status, out.strip()) == (0, "in control: the site (its own control)")
    with Reservoir(root, create=False) as res:
        last = res.history("ppo")[-1]
        actors = [h.actor for h in res.history("ppo")[-4:]]
    assert (last.to_state, last.reason, last.actor) == ("rolled_back", "inlet too warm", "bea")
    assert actors == ["ann", "ann", "ann", "bea"]
    assert _log(root) == [
        ("ann", "approve", "ppo", "password", "granted"),
        ("ann", "promote", "ppo", "password", "granted"),
        ("ann", "promote", "ppo@1", "password", "granted"),
        ("bea", "rollback", None, "password", "granted"),
    ]


def test_the_password_is_asked_on_the_terminal(
    root: Path, users: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    prompts: list[str] = []

    def ask(prompt: str) -> str:
        prompts.append(prompt)
        return ANN

    monkeypatch.setattr(gate.sys.stdin, "isatty", lambda: True)
    monkeypatch.setattr(gate.getpass, "getpass", ask)
    status, out, _ = _gate(capsys, root, users, "reject", "sac", "--reason", "risky")
    assert (status, out.strip()) == (0, "sac@1: rejected (by ann)")
    assert prompts == ["password for ann: "]
    with Reservoir(root, create=False) as res:
        assert res.get("sac").state == "rejected"
        assert (res.history("sac")[-1].reason, res.history("sac")[-1].actor) == ("risky", "ann")


def test_a_password_file_must_be_private(
    root: Path, users: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    secret = tmp_path / "ann.pass"
    secret.write_text(ANN + "\n")
    secret.chmod(0o644)
    args = ("approve", "ppo", "--operator", "ann", "--password-file", str(secret), "--reason", "ok")
    status, _, err = _gate(capsys, root, users, *args)
    assert status == 2 and "readable by others (mode 644); 'chmod 600" in one_error_line(err)
    assert _log(root) == []  # refused before any check: nothing was tried
    secret.chmod(0o600)
    status, out, _ = _gate(capsys, root, users, *args)
    assert (status, out.strip()) == (0, "ppo@1: approved (by ann)")


@pytest.mark.parametrize(
    ("name", "password", "message", "logged"),
    [
        ("ann", "not-her-password", "wrong user name or password", "ann"),
        ("nobody", ANN, "wrong user name or password", "nobody"),
        ("gate1", ANN, "wrong user name or password", "gate1"),
        ("vic", VIC, "vic is a viewer: only an operator may approve policies", "vic"),
    ],
)
def test_a_wrong_password_or_a_viewer_is_refused_and_audited(
    root: Path,
    users: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    name: str,
    password: str,
    message: str,
    logged: str,
) -> None:
    _as(monkeypatch, name, password)
    with Reservoir(root, create=False) as res:
        before = res.history()
    status, out, err = _gate(capsys, root, users, "approve", "ppo", "--reason", "ok")
    assert status == 2 and out == ""
    assert one_error_line(err) == f"twinloop: error: {message}"
    with Reservoir(root, create=False) as res:
        assert res.history() == before and res.get("ppo").state == "pre_evaluated"
        (entry,) = res.access_log()
    assert (entry.user, entry.action, entry.policy, entry.outcome) == (
        logged,
        "approve",
        "ppo",
        "refused",
    )
    assert entry.detail == message


def test_without_a_terminal_a_password_must_come_from_a_file_or_the_environment(
    root: Path, users: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(gate.sys.stdin, "isatty", lambda: False)
    status, _, err = _gate(capsys, root, users, "approve", "ppo", "--reason", "ok")
    assert status == 2
    assert "no password for ann: no terminal to ask on" in one_error_line(err)
    monkeypatch.delenv("USER")
    status, _, err = _gate(capsys, root, users, "approve", "ppo", "--reason", "ok")
    assert status == 2 and "who is acting? give --operator NAME" in one_error_line(err)


def test_no_password_on_the_command_line() -> None:
    """A password given as an argument would stay in the shell's history and in ps."""
    for flag in ("--password", "--pass", "--token"):  # nor an abbreviation of a file's flag
        with pytest.raises(SystemExit) as exit_info:
            main(["gate", "approve", "ppo", "--reason", "ok", flag, ANN])
        assert exit_info.value.code == 2


def test_an_access_token_for_automation(
    root: Path,
    users: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    _as(monkeypatch, "ann", ANN)
    status, token, err = _gate(capsys, root, users, "token")
    token = token.strip()
    assert status == 0 and token.startswith("tlop_") and "shown once" in err
    monkeypatch.delenv(gate.PASSWORD_ENV)
    monkeypatch.delenv(gate.OPERATOR_ENV)
    monkeypatch.setenv("USER", "someone-else")  # the token names its user
    monkeypatch.setenv(gate.TOKEN_ENV, token)
    status, out, _ = _gate(capsys, root, users, "approve", "ppo", "--reason", "nightly run")
    assert (status, out.strip()) == (0, "ppo@1: approved (by ann)")
    status, _, err = _gate(capsys, root, users, "promote", "ppo", "--operator", "bea")
    assert status == 2 and "the access token is ann's, not bea's" in one_error_line(err)
    monkeypatch.delenv(gate.TOKEN_ENV)
    token_file = tmp_path / "token"
    token_file.write_text(token + "\n")
    token_file.chmod(0o600)
    status, out, _ = _gate(capsys, root, users, "promote", "ppo", "--token-file", str(token_file))
    assert (status, out.strip()) == (0, "ppo@1: shadow (by ann)")
    UserStore(users).issue_token("ann")  # a new token revokes this one
    status, _, err = _gate(capsys, root, users, "promote", "ppo", "--token-file", str(token_file))
    assert status == 2 and "unknown or revoked access token" in one_error_line(err)
    assert [(u, a, m, o) for u, a, _, m, o in _log(root)] == [
        ("ann", "token", "password", "granted"),
        ("ann", "approve", "token", "granted"),
        ("bea", "promote", "token", "refused"),
        ("ann", "promote", "token", "granted"),
        ("(token)", "promote", "token", "refused"),
    ]


def test_a_viewer_gets_no_token_and_a_token_cannot_make_one(
    root: Path, users: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    _as(monkeypatch, "vic", VIC)
    status, out, err = _gate(capsys, root, users, "token")
    assert status == 2 and out == ""
    assert "only an operator may hold an access token" in one_error_line(err)
    monkeypatch.delenv(gate.PASSWORD_ENV)
    monkeypatch.setenv(gate.TOKEN_ENV, UserStore(users).issue_token("ann"))
    monkeypatch.setattr(gate.sys.stdin, "isatty", lambda: False)
    status, _, err = _gate(capsys, root, users, "token")
    assert status == 2 and "no password for vic" in one_error_line(err)


def test_no_users_is_one_line_naming_how_to_add_one(
    root: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    _as(monkeypatch, "ann", ANN)
    empty = tmp_path / "none.json"
    status, _, err = _gate(capsys, root, empty, "approve", "ppo", "--reason", "ok")
    assert status == 2
    assert "add an operator with 'twinloop dashboard users add" in one_error_line(err)


def test_rollback_returns_to_the_previous_policy_unless_to_site(
    root: Path, users: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    _as(monkeypatch, "ann", ANN)
    for ref in ("ppo", "sac"):
        _gate(capsys, root, users, "approve", ref, "--reason", "ok")
        _gate(capsys, root, users, "promote", ref)
        _gate(capsys, root, users, "promote", ref)
    status, out, _ = _gate(capsys, root, users, "rollback", "--reason", "worse")
    assert (status, out.strip()) == (0, "in control: ppo@1")
    with Reservoir(root, create=False) as res:
        assert (res.get("ppo").state, res.get("sac").state) == ("live", "rolled_back")
    status, out, _ = _gate(capsys, root, users, "rollback", "--reason", "maintenance", "--to-site")
    assert (status, out.strip()) == (0, "in control: the site (its own control)")


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("approve", "ppo"), "--reason is required"),
        (("reject", "ppo", "--reason", " "), "--reason is required"),
        (("rollback",), "--reason is required"),
        (("approve", "nope", "--reason", "x"), "unknown policy 'nope'"),
        (("promote", "ppo"), "only an approved policy goes to shadow"),
        (("promote", "td3"), "td3@1 is candidate"),
        (("rollback", "--reason", "x"), "nothing to roll back"),
        (("approve", "ppo@99999999999999999999999", "--reason", "x"), "bad policy reference"),
        (("approve", "ppo@" + "9" * 4000, "--reason", "x"), "bad policy reference"),
        (("approve", "ppo@0", "--reason", "x"), "bad policy reference"),
    ],
)
def test_bad_requests_give_one_error_line_and_change_nothing(
    root: Path,
    users: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    args: tuple[str, ...],
    message: str,
) -> None:
    _as(monkeypatch, "ann", ANN)
    with Reservoir(root, create=False) as res:
        before = res.history()
    status, out, err = _gate(capsys, root, users, *args)
    assert status == 2 and out == ""
    assert message in one_error_line(err) and "Traceback" not in err
    with Reservoir(root, create=False) as res:
        assert res.history() == before


def test_missing_reservoir_is_an_error_not_a_new_store(tmp_path: Path) -> None:
    missing = tmp_path / "none"
    result = run_cli("gate", "pending", "--reservoir", str(missing), cwd=tmp_path)
    assert result.returncode == 2
    one_error_line(result.stderr)
    assert not missing.exists()


def test_a_separate_process_without_a_terminal_uses_the_environment(
    root: Path, users: Path, tmp_path: Path
) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("TWINLOOP_OPERATOR")}
    env |= {gate.OPERATOR_ENV: "ann", gate.PASSWORD_ENV: "wrong-password"}
    command = [sys.executable, "-m", "twinloop.cli", "gate", "approve", "ppo", "--reason", "ok"]
    command += ["--reservoir", str(root), "--users", str(users)]

    def run() -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            command,
            capture_output=True,
            text=True,
            cwd=tmp_path,
            env=env,
            stdin=subprocess.DEVNULL,
            timeout=120,
            check=False,
        )

    result = run()
    assert result.returncode == 2
    assert one_error_line(result.stderr) == "twinloop: error: wrong user name or password"
    env[gate.PASSWORD_ENV] = ANN
    result = run()
    assert (result.returncode, result.stdout.strip()) == (0, "ppo@1: approved (by ann)")
    assert _log(root)[-2:] == [
        ("ann", "approve", "ppo", "password", "refused"),
        ("ann", "approve", "ppo", "password", "granted"),
    ]


def test_two_operators_approve_going_live(
    root: Path, users: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    status, out, _ = _gate(capsys, root, users, "approvers")
    assert (status, out.strip()) == (0, "going live needs 1 operator approval(s)")
    _as(monkeypatch, "vic", VIC)
    status, _, err = _gate(capsys, root, users, "approvers", "2")
    assert status == 2 and "operator" in err
    _as(monkeypatch, "ann", ANN)
    status, out, _ = _gate(capsys, root, users, "approvers", "2")
    assert (status, out.strip()) == (0, "going live needs 2 operator approval(s) (set by ann)")
    _gate(capsys, root, users, "approve", "ppo", "--reason", "ok")
    _gate(capsys, root, users, "promote", "ppo")  # to shadow: one operator suffices
    status, out, _ = _gate(capsys, root, users, "promote", "ppo", "--reason", "shadow fine")
    assert status == 0
    assert out.strip() == (
        "ppo@1: shadow, approval 1 of 2 to go live recorded (by ann); a different operator "
        "must confirm with 'twinloop gate promote'"
    )
    status, _, err = _gate(capsys, root, users, "promote", "ppo", "--reason", "me again")
    assert status == 2 and "ann has already approved ppo@1 going live" in err
    _as(monkeypatch, "bea", "bea-password")
    status, out, _ = _gate(capsys, root, users, "promote", "ppo", "--reason", "agreed")
    assert (status, out.strip()) == (0, "ppo@1: live (by bea)")
    with Reservoir(root, create=False) as res:
        assert res.history("ppo")[-1].reason == "agreed (approved to go live by ann, bea)"
        assert ("ann", "set promotion approvers") in [(a.user, a.action) for a in res.access_log()]
