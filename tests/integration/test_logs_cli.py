"""`testnet logs`: several nodes merged with a prefix, --tail per node, readable or raw JSON, and
following that survives a node's kill and restart and ends on Ctrl-C or when the testnet goes
down (process backend, real node processes)."""

from __future__ import annotations

import json
import os
import queue
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable

import pytest

from harness.network import Testnet

pytestmark = [pytest.mark.integration, pytest.mark.backends("process", "docker")]

#: "sn01 | 12:00:01.250 info  event key=value": prefix, time, level, event
READABLE = re.compile(r"^(?P<node>\S+)\s* \| \d\d:\d\d:\d\d\.\d{3} (?P<level>\w+)\s+(?P<event>\S+)")


def cli(*args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "harness", *args], capture_output=True, text=True,
                          timeout=timeout, env=os.environ.copy())


class Follow:
    """`testnet logs -f …` running in the background; its stdout lines collected as they come."""

    def __init__(self, *args: str) -> None:
        self.proc = subprocess.Popen([sys.executable, "-m", "harness", "logs", "-f", *args],
                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                     env=os.environ.copy())
        self.lines: list[str] = []
        self._q: queue.Queue[str] = queue.Queue()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self._q.put(line.rstrip("\n"))

    def wait_for(self, what: str, done: Callable[[list[str]], bool], timeout: float = 30) -> None:
        """Collect lines until ``done(lines)`` holds; fail naming ``what`` after ``timeout``."""
        deadline = time.monotonic() + timeout
        while not done(self.lines):
            left = deadline - time.monotonic()
            if left <= 0 or self.proc.poll() is not None and self._q.empty():
                tail = "\n".join(self.lines[-10:])
                pytest.fail(f"{what}: not seen within {timeout}s (exit {self.proc.poll()}); "
                            f"last lines:\n{tail}")
            try:
                self.lines.append(self._q.get(timeout=min(left, 0.2)))
            except queue.Empty:
                continue

    def stop(self) -> tuple[int, str]:
        """Ctrl-C; the exit status and stderr."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
        _, err = self.proc.communicate(timeout=15)
        return self.proc.returncode, err


def prefixed(lines: list[str], node: str) -> list[str]:
    return [line for line in lines if line.startswith(f"{node} |")]


def poke(net: Testnet, node: str) -> None:
    """Make ``node`` write one log line now (``clock_offset_changed offset_ms=0``: harmless)."""
    net.node_admin(node, "clock", {"offset_ms": 0}, method="PUT")


def poked(lines: list[str], node: str) -> bool:
    return any("clock_offset_changed" in line for line in prefixed(lines, node))


def test_tail_gives_n_lines_per_node_merged_readable_and_raw(testnet: Testnet):
    r = cli("logs", "-n", testnet.name, "--tail", "3", "sn01", "sn02")
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert len(prefixed(lines, "sn01")) == 3 and len(prefixed(lines, "sn02")) == 3
    assert len(lines) == 6
    for line in lines:
        m = READABLE.match(line)
        assert m, f"not rendered readably: {line!r}"
        assert "{" not in line.split("|", 1)[1][:30]  # a rendered record, not JSON

    raw = cli("logs", "-n", testnet.name, "--tail", "2", "--json", "sn01", "seed")
    assert raw.returncode == 0, raw.stderr
    records = [json.loads(line) for line in raw.stdout.splitlines()]
    assert sorted(rec["node"] for rec in records) == ["seed", "seed", "sn01", "sn01"]
    assert [rec["ts"] for rec in records] == sorted(rec["ts"] for rec in records)  # merged by time

    every = cli("logs", "-n", testnet.name, "--tail", "1")
    assert every.returncode == 0, every.stderr
    sources = {line.split("|", 1)[0].strip() for line in every.stdout.splitlines()}
    assert testnet.state.fileserver is not None  # every testnet runs one unless told not to
    assert sources == {"seed", "toxiproxy", "fileserver", *(n.name for n in testnet.nodes)}


def test_follow_merges_nodes_and_honours_tail(testnet: Testnet):
    f = Follow("-n", testnet.name, "--tail", "2", "sn01", "sn02")
    try:
        f.wait_for("2 lines of sn01 and sn02",
                   lambda lines: len(prefixed(lines, "sn01")) >= 2 and len(prefixed(lines, "sn02")) >= 2)
        assert len(f.lines) == 4  # --tail 2 per node, nothing else yet
        assert all(READABLE.match(line) for line in f.lines)
        poke(testnet, "sn01")
        poke(testnet, "sn02")
        f.wait_for("lines of both nodes written after following began",
                   lambda lines: poked(lines, "sn01") and poked(lines, "sn02"))
    finally:
        code, err = f.stop()
    assert code == 0 and "Traceback" not in err  # Ctrl-C ends following cleanly


def test_follow_survives_kill_and_restart(testnet: Testnet):
    f = Follow("-n", testnet.name, "--tail", "0", "sn01")
    try:
        # --tail 0: nothing old; a line written now shows the follower is attached
        f.wait_for("a new line of sn01", lambda lines: poke(testnet, "sn01") or poked(lines, "sn01"),
                   timeout=30)
        before = len(f.lines)
        kill = cli("fault", "kill", "-n", testnet.name, "sn01")
        assert kill.returncode == 0, kill.stderr
        start = cli("fault", "start", "-n", testnet.name, "sn01")
        assert start.returncode == 0, start.stderr
        f.wait_for("sn01's start-up lines after its restart",
                   lambda lines: any(" started " in line for line in lines[before:]))
        Testnet.attach(testnet.name).wait_ready(timeout=60)  # sees the new pid
        after = len(f.lines)
        poke(testnet, "sn01")
        f.wait_for("a line the restarted sn01 wrote",
                   lambda lines: poked(lines[after:], "sn01"))
        assert f.proc.poll() is None  # still following
    finally:
        code, _ = f.stop()
    assert code == 0


def test_follow_ends_when_the_testnet_goes_down(testnet_factory):
    net = testnet_factory(swarms=1, swarm_size=2)
    f = Follow("-n", net.name, "--json")
    f.wait_for("the existing lines", lambda lines: len(lines) > 3)
    assert all(json.loads(line)["node"] for line in f.lines)  # raw JSON lines
    down = cli("down", "-n", net.name)
    assert down.returncode == 0, down.stderr
    code, err = f.proc.wait(timeout=30), f.proc.stderr.read() if f.proc.stderr else ""
    assert code == 0 and f"testnet {net.name} is down" in err
