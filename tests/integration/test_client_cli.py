"""`testnet account new` / `send` / `recv` as subprocesses against a running testnet."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys

import pytest

from harness.client.account import Account
from harness.network import Testnet

pytestmark = [pytest.mark.integration, pytest.mark.backends("process", "docker")]


def cli(*args: str, timeout: float = 120,
        env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "harness", *args], capture_output=True, text=True,
                          timeout=timeout, env={**os.environ, **(env or {})})


def test_account_send_recv(testnet: Testnet, tmp_path):
    alice_f, bob_f = tmp_path / "alice.json", tmp_path / "bob.json"
    accounts = {}
    for f in (alice_f, bob_f):
        r = cli("account", "new", "-o", str(f), "--json")
        assert r.returncode == 0, r.stderr
        accounts[f] = json.loads(r.stdout)
        assert stat.S_IMODE(f.stat().st_mode) == 0o600
        assert json.loads(f.read_text()) == accounts[f]
    alice, bob = accounts[alice_f], accounts[bob_f]

    r = cli("send", "--name", testnet.name, "--account", str(alice_f), "--to", bob["session_id"],
            "hello from the CLI", "--json")
    assert r.returncode == 0, r.stderr
    sent = json.loads(r.stdout)
    assert sent["from"] == alice["session_id"] and sent["to"] == bob["session_id"]
    assert len(sent["hash"]) == 43 and sent["confirmations"] >= 2

    r = cli("recv", "--name", testnet.name, "--account", str(bob_f), "--timeout", "20", "--json")
    assert r.returncode == 0, r.stderr
    got = json.loads(r.stdout)
    assert got == [{"from": alice["session_id"], "body": "hello from the CLI", "hash": sent["hash"],
                    "timestamp": sent["timestamp"]}]

    # --record prints the whole operation record
    r = cli("send", "--name", testnet.name, "--account", str(bob_f), "--to", alice["session_id"],
            "--record", "reply")
    assert r.returncode == 0, r.stderr
    rec = json.loads(r.stdout)
    assert rec["kind"] == "send" and rec["outcome"] == "ok" and rec["attempts"][-1]["method"] == "store"
    assert len(rec["attempts"][-1]["path"]) == 3


def test_send_recv_take_the_testnet_from_the_environment_and_print_text(testnet: Testnet, tmp_path):
    """No -n: SESSION_TESTNET_NAME names the testnet (the README's `testnet send` works as
    shown); without --json the output is text for people, with --json it is the JSON list."""
    env = {"SESSION_TESTNET_NAME": testnet.name}
    alice_f, bob_f = tmp_path / "alice.json", tmp_path / "bob.json"
    ids = {}
    for f in (alice_f, bob_f):
        r = cli("account", "new", "-o", str(f))
        assert r.returncode == 0, r.stderr
        ids[f] = r.stdout.strip()  # the human output is the Session ID alone
        assert ids[f] == Account.load(f).session_id and f"saved to {f}" in r.stderr

    r = cli("send", "--account", str(alice_f), "--to", ids[bob_f], "text mode", env=env)
    assert r.returncode == 0, r.stderr
    assert r.stdout.startswith("sent ") and "confirmations" in r.stdout

    r = cli("recv", "--account", str(bob_f), "--timeout", "20", env=env)
    assert r.returncode == 0, r.stderr
    (line,) = r.stdout.splitlines()
    assert line.endswith("  text mode") and f"from {ids[alice_f][:6]}" in line
    with pytest.raises(json.JSONDecodeError):
        json.loads(r.stdout)

    r = cli("recv", "--account", str(bob_f), "--json", env=env)  # the same message, as JSON
    assert r.returncode == 0, r.stderr
    (got,) = json.loads(r.stdout)
    assert set(got) == {"from", "body", "hash", "timestamp"}
    assert got["from"] == ids[alice_f] and got["body"] == "text mode"


def test_cli_errors_are_one_clear_line(testnet: Testnet, tmp_path):
    r = cli("recv", "--name", "no-such-testnet", "--account", str(tmp_path / "missing.json"))
    assert r.returncode == 1 and "does not exist" in r.stderr
    acct = tmp_path / "a.json"
    assert cli("account", "new", "-o", str(acct)).returncode == 0
    r = cli("recv", "--name", "no-such-testnet", "--account", str(acct))
    assert r.returncode == 1
    assert r.stderr.startswith("error: no testnet named 'no-such-testnet'")
    assert testnet.name in r.stderr  # the testnets there are
    r = cli("send", "--name", testnet.name, "--account", str(acct), "--to", "05" + "ab" * 32, "x",
            "--bogus-option")
    assert r.returncode == 2 and "error: No such option" in r.stderr
    r = cli("send", "--name", testnet.name, "--account", str(acct), "--to", "not-an-id", "x")
    assert r.returncode == 1 and "Session ID" in r.stderr
    assert "Traceback" not in r.stderr
