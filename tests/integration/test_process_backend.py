"""The process backend and the `testnet` CLI, end to end with real seed and node processes."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from sweep_support import sweep_removes  # tests/ is on sys.path

from harness.backends.process import ENV_MARK, _all_marked, launcher_socket
from harness.naming import unique_name
from harness.network import Testnet
from harness.state import StateDir
from harness.topology import Topology

pytestmark = pytest.mark.integration


def cli(*args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "harness", *args], capture_output=True,
                          text=True, timeout=timeout, env=os.environ.copy())


def marked_pids(name: str) -> list[int]:
    folder = str(StateDir(name).path)
    return [pid for pid, mark in _all_marked().items() if mark == folder]


def test_cli_up_status_logs_down():
    name = unique_name("cli")
    try:
        t0 = time.monotonic()
        up = cli("up", "--backend", "process", "--name", name, "--json")
        elapsed = time.monotonic() - t0
        assert up.returncode == 0, up.stderr
        info = json.loads(up.stdout)
        assert info["name"] == name and info["backend"] == "process"
        assert info["seed_url"].startswith("http://127.")
        nodes = info["nodes"]
        assert len(nodes) == 6
        for n in nodes:
            assert set(n) >= {"name", "public_ip", "storage_port", "pubkey_ed25519",
                              "pubkey_x25519", "swarm_id"}
            assert n["storage_port"] == 22021
            assert len(n["pubkey_ed25519"]) == 64 and len(n["pubkey_x25519"]) == 64
        # every node in its own /24
        assert len({n["public_ip"].rsplit(".", 1)[0] for n in nodes}) == 6
        swarms = {n["swarm_id"] for n in nodes}
        assert len(swarms) >= 2 and None not in swarms
        assert elapsed < 60, f"up took {elapsed:.1f}s"

        st = cli("status", "--name", name, "--json")
        assert st.returncode == 0, st.stderr
        (status,) = json.loads(st.stdout)  # one shape: a list, with or without -n
        assert status["name"] == name
        assert all(n["ready"] and n["running"] for n in status["nodes"])
        assert status["seed"]["answering"]
        every = json.loads(cli("status", "--json").stdout)
        assert isinstance(every, list) and name in [d["name"] for d in every]

        logs = cli("logs", "--name", name, "sn01", "--tail", "50", "--json")
        assert logs.returncode == 0
        lines = [json.loads(line) for line in logs.stdout.splitlines() if line.startswith("{")]
        assert lines, "node log has no structured (JSON) lines"
        assert {rec["node"] for rec in lines} == {"sn01"}

        assert status["fileserver"]["ready"] and status["fileserver"]["running"]
        assert len(marked_pids(name)) == 10  # seed + toxiproxy + launcher + 6 nodes + the file server
    finally:
        down = cli("down", "--name", name)
    assert down.returncode == 0, down.stderr
    assert marked_pids(name) == []
    assert not StateDir(name).exists()


def test_bad_input_gets_a_clear_error_and_loses_nothing(testnet):
    again = cli("up", "--backend", "process", "--name", testnet.name)
    assert again.returncode == 1
    assert "already exists" in again.stderr
    assert testnet.status()["nodes"][0]["ready"]  # the running testnet is untouched

    bad = cli("up", "--backend", "process", "--name", "Bad Name!")
    assert bad.returncode == 1 and "name" in bad.stderr
    missing = cli("down", "--name", "no-such-net")
    assert missing.returncode == 1 and "no testnet named" in missing.stderr
    assert testnet.name in missing.stderr  # it lists the testnets there are
    for command in (["status", "-n", "no-such-net"], ["logs", "-n", "no-such-net"]):
        r = cli(*command)
        assert r.returncode == 1 and r.stderr.startswith("error: no testnet named 'no-such-net'")
    logs = cli("logs", "--name", testnet.name, "sn99")
    assert logs.returncode == 1 and "no node 'sn99'" in logs.stderr
    usage = cli("logs", "--name", testnet.name, "--tail", "-1")
    assert usage.returncode == 2 and "error: Invalid value for '--tail'" in usage.stderr
    assert "Traceback" not in missing.stderr + logs.stderr + usage.stderr


def test_same_seed_same_keys_and_swarm_layout(testnet_factory):
    a = testnet_factory(seed="layout-1")
    b = testnet_factory(seed="layout-1")
    c = testnet_factory(seed="layout-2")

    def layout(net: Testnet) -> dict[str, int | None]:
        return {n.pubkey_ed25519: n.swarm_id for n in net.nodes}

    assert layout(a) == layout(b)
    assert set(layout(a)) != set(layout(c))


def test_sigkill_during_up_then_clean_leaves_nothing(tmp_path):
    name = unique_name("kill")
    proc = subprocess.Popen([sys.executable, "-m", "harness", "up", "--backend", "process",
                             "--name", name], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            text=True)
    try:
        deadline = time.monotonic() + 30
        while len(marked_pids(name)) < 3 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert marked_pids(name), "up never started any process"
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    assert StateDir(name).exists()
    sweep_removes(name)
    assert marked_pids(name) == []
    assert not StateDir(name).exists()


def test_failed_up_saves_logs_and_cleans_up(monkeypatch):
    name = unique_name("fail")
    # a node that cannot start: its command line has a flag the node rejects
    from harness import network

    real = network.Testnet.node_argv

    def broken(self, node):
        argv = real(self, node)
        return argv + ["--no-such-flag"] if node.name == "sn02" else argv

    monkeypatch.setattr(network.Testnet, "node_argv", broken)
    with pytest.raises(network.NotReadyError) as err:
        Testnet.up(Topology(name=name), backend="process", timeout=30)
    msg = str(err.value)
    assert "sn02" in msg and "exited" in msg
    assert "--- last log lines of sn02 ---" in msg
    assert err.value.artifacts is not None
    saved = Path(err.value.artifacts)
    assert (saved / "sn02.log").exists() and (saved / "seed.log").exists()
    assert marked_pids(name) == []
    assert not StateDir(name).exists()


def test_processes_are_marked_with_their_state_folder(testnet):
    pids = marked_pids(testnet.name)
    # seed, toxiproxy, the node launcher, nodes, the file server
    assert len(pids) == 3 + len(testnet.nodes) + 1
    env = Path(f"/proc/{pids[0]}/environ").read_bytes()
    assert f"{ENV_MARK}={StateDir(testnet.name).path}".encode() in env


def test_churn_from_another_handle_is_seen(testnet):
    other = Testnet.attach(testnet.name)
    old_pid = testnet.node("sn03").runtime["pid"]
    other.restart("sn03")
    assert testnet.node("sn03").runtime["pid"] != old_pid  # re-read from the state file
    assert testnet.backend.is_running(testnet.state, "sn03")
    testnet.wait_ready(timeout=30)


def _state_of(pid: int) -> str:
    return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]


def _wait_state(pid: int, states: str) -> str:
    """The process state once it is one of ``states`` (a signal takes effect asynchronously)."""
    deadline = time.monotonic() + 10
    while (st := _state_of(pid)) not in states and time.monotonic() < deadline:
        time.sleep(0.02)
    return st


def _parent(pid: int) -> int:
    return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])


def test_launcher_forks_nodes_and_their_life_cycle_still_works(testnet_factory):
    """Nodes are forked by the testnet's launcher, each in its own session and marked, without
    its secrets in /proc/PID/environ; kill/restart, stop/start and pause/unpause act on one node
    alone (restarted nodes are forked again); down leaves no process and no socket."""
    from nodes.common.auth import ENV_KEY_SEED

    net = testnet_factory()
    sock = launcher_socket(StateDir(net.name).path)
    assert sock.is_socket()
    pids = {n.name: int(n.runtime["pid"]) for n in net.nodes}
    launcher = _parent(pids["sn01"])
    assert launcher in marked_pids(net.name) and launcher not in pids.values()
    assert b"nodes.launcher" in Path(f"/proc/{launcher}/cmdline").read_bytes()
    for name, pid in pids.items():
        assert os.getsid(pid) == pid, f"{name} is not in a session of its own"
        assert _parent(pid) == launcher, f"{name} (pid {pid}) was not forked by the launcher"
        env = Path(f"/proc/{pid}/environ").read_bytes()
        assert f"{ENV_MARK}={StateDir(net.name).path}".encode() in env
        assert ENV_KEY_SEED.encode() not in env, "a node's key seed shows in /proc/PID/environ"
    seeds = {net.node_admin(n, "state")["pubkey_ed25519"] for n in pids}
    assert len(seeds) == len(pids), "forked nodes must keep their own keys"

    net.kill("sn02")
    deadline = time.monotonic() + 30  # auto-reaped as it exits (the launcher ignores SIGCHLD)
    while Path(f"/proc/{pids['sn02']}").exists() and time.monotonic() < deadline:
        time.sleep(0.02)
    assert not Path(f"/proc/{pids['sn02']}").exists(), "a killed node must not linger (zombie)"
    net.start("sn02")
    new = int(net.node("sn02").runtime["pid"])
    assert new != pids["sn02"]
    assert _parent(new) == launcher, "a restarted node is forked by the launcher too"
    net.stop("sn03")
    assert not net.backend.is_running(net.state, "sn03")
    net.start("sn03")
    net.pause("sn04")
    assert _wait_state(pids["sn04"], "T") == "T"
    assert all(_state_of(p) != "T" for n, p in pids.items() if n not in ("sn02", "sn03", "sn04"))
    net.unpause("sn04")
    assert _wait_state(pids["sn04"], "SR") in "SR"
    net.wait_ready(timeout=60)
    assert net.node_admin("sn02", "state")["ready"]

    net.down()
    assert marked_pids(net.name) == []
    assert not sock.exists()


def test_without_the_launcher_nodes_get_an_interpreter_each(testnet_factory, monkeypatch):
    monkeypatch.setenv("SESSION_TESTNET_LAUNCHER", "0")
    net = testnet_factory(swarms=1)
    for n in net.nodes:
        cmdline = Path(f"/proc/{n.runtime['pid']}/cmdline").read_bytes()
        assert b"nodes.snode" in cmdline and b"nodes.launcher" not in cmdline
    assert not launcher_socket(StateDir(net.name).path).exists()
