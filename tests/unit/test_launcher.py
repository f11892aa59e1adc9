"""The node launcher (nodes.launcher): its request/reply protocol, and a real launcher forking
children that run a module in their own session, with their own environment and log file."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from nodes import launcher
from nodes.launcher import LauncherError, SpawnRequest, decode_reply, encode_reply

pytestmark = pytest.mark.unit


def _request(**kw: object) -> SpawnRequest:
    base: dict[str, object] = {"module": "nodes.snode", "args": ["--ip", "127.0.0.1"],
                               "env": {"A": "1"}, "cwd": "/tmp", "output": "/tmp/x.log"}
    base.update(kw)
    return SpawnRequest(**base)  # type: ignore[arg-type]


def test_request_round_trip():
    req = _request()
    line = req.encode()
    assert line.endswith(b"\n") and line.count(b"\n") == 1
    assert SpawnRequest.decode(line[:-1]) == req


@pytest.mark.parametrize("line, why", [
    (b"not json", "not JSON"),
    (b"[1]", "JSON object"),
    (b'{"module": "m", "args": [], "env": {}, "cwd": "/"}', "'output'"),
    (b'{"module": "m", "args": "x", "env": {}, "cwd": "/", "output": "o"}', "'args'"),
    (b'{"module": "m", "args": [1], "env": {}, "cwd": "/", "output": "o"}', "'args' must be strings"),
    (b'{"module": "m", "args": [], "env": {"a": 1}, "cwd": "/", "output": "o"}', "'env'"),
])
def test_bad_requests_are_named(line, why):
    with pytest.raises(ValueError, match=why):
        SpawnRequest.decode(line)


def test_replies():
    assert decode_reply(encode_reply(pid=1234)[:-1]) == 1234
    with pytest.raises(LauncherError, match="refused: no such module"):
        decode_reply(encode_reply(error="no such module")[:-1])
    for garbage in (b"{}", b'{"pid": 0}', b'{"pid": "1"}', b"xx"):
        with pytest.raises(LauncherError, match="garbage"):
            decode_reply(garbage)


def test_unreachable_launcher_is_an_error(tmp_path):
    assert not launcher.alive(str(tmp_path / "none.sock"))
    with pytest.raises(LauncherError, match="unreachable"):
        launcher.spawn(str(tmp_path / "none.sock"), _request(), timeout=2)


@pytest.fixture
def running_launcher(tmp_path):
    """A launcher that may run `timeit` and `platform`, marked like a testnet's."""
    sock = tmp_path / "l.sock"
    env = dict(os.environ, LAUNCHER_TEST_MARK="yes")
    proc = subprocess.Popen([sys.executable, "-m", "nodes.launcher", "--socket", str(sock),
                             "--run", "timeit", "--run", "platform", "--preload", "json"],
                            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            start_new_session=True)
    try:
        deadline = time.monotonic() + 60
        while not launcher.alive(str(sock)):
            assert proc.poll() is None, f"launcher exited: {proc.stderr.read() if proc.stderr else ''}"
            assert time.monotonic() < deadline, "launcher did not listen within 60 s"
            time.sleep(0.05)
        yield sock, proc
    finally:
        proc.terminate()
        proc.wait(10)
        if proc.stderr:
            proc.stderr.close()


def _wait_gone(pid: int) -> bool:
    deadline = time.monotonic() + 10
    while Path(f"/proc/{pid}").exists() and time.monotonic() < deadline:
        time.sleep(0.02)
    return not Path(f"/proc/{pid}").exists()


def test_launcher_forks_a_child_per_request(running_launcher, tmp_path):
    sock, proc = running_launcher
    out = tmp_path / "child.log"
    req = SpawnRequest(module="timeit", args=["-n", "1", "import time; time.sleep(60)"],
                       env={"ONLY_IN_CHILD": "secret"}, cwd=str(tmp_path), output=str(out))
    pid = launcher.spawn(str(sock), req)
    try:
        assert os.getsid(pid) == pid, "the child must lead a session of its own"
        stat = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        assert int(stat[1]) == proc.pid
        environ = Path(f"/proc/{pid}/environ").read_bytes()
        assert b"LAUNCHER_TEST_MARK=yes" in environ, "children show the launcher's (marked) environment"
        assert b"ONLY_IN_CHILD" not in environ, "a request's environment must not show in /proc"
        assert Path(f"/proc/{pid}/cwd").resolve() == tmp_path.resolve()
        assert Path(f"/proc/{pid}/comm").read_text().strip() == "timeit"  # what `ps -e` shows
    finally:
        os.killpg(pid, signal.SIGKILL)
    assert _wait_gone(pid), "the launcher must reap its children (no zombies)"
    assert launcher.alive(str(sock)), "a child's death must not end the launcher"


def test_child_output_and_exit(running_launcher, tmp_path):
    sock, _ = running_launcher
    out = tmp_path / "platform.log"
    pid = launcher.spawn(str(sock), SpawnRequest(module="platform", args=[], env={}, cwd=str(tmp_path),
                                                 output=str(out)))
    assert _wait_gone(pid)
    assert "Linux" in out.read_text(), "the child's stdout goes to its output file"


def test_refuses_modules_it_does_not_run(running_launcher, tmp_path):
    sock, _ = running_launcher
    with pytest.raises(LauncherError, match="'os' is not one this launcher runs"):
        launcher.spawn(str(sock), SpawnRequest(module="os", args=[], env={}, cwd=str(tmp_path),
                                               output=str(tmp_path / "o")))
    with pytest.raises(LauncherError, match="does not exist"):
        launcher.spawn(str(sock), SpawnRequest(module="platform", args=[], env={},
                                               cwd=str(tmp_path / "nope"), output=str(tmp_path / "o")))
