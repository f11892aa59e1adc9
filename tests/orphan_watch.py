"""Kill what a test run left running once the run's own process is gone (even after kill -9).

``tests/conftest.py`` marks the run: it puts ``SESSION_TESTNET_TEST_RUN=<mark>`` into its own
environment, which every process the tests start inherits (node launchers, Toxiproxy servers,
CLI subprocesses, ...), and starts this watcher in a session of its own::

    python tests/orphan_watch.py OWNER_PID MARK

The watcher waits for ``OWNER_PID`` to exit (a pidfd: no polling, no PID-reuse race), then
SIGKILLs every process whose environment carries the mark, then removes the simulated swarm
hosts the run registered (:func:`register_sim_home`: Docker engines in containers, and the swarm
they made the local engine manage). A run that ends normally stops the watcher first (its
fixtures have cleaned up). Testnets' containers are not processes of the run: the harness's
reaper and stale sweep handle those.
"""

from __future__ import annotations

import contextlib
import os
import select
import signal
import sys
import tempfile
from pathlib import Path

ENV_RUN = "SESSION_TESTNET_TEST_RUN"


def marked(mark: str) -> list[int]:
    """PIDs of live processes whose environment has ``ENV_RUN=mark``."""
    want = f"{ENV_RUN}={mark}".encode()
    out = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            environ = (entry / "environ").read_bytes()
        except OSError:
            continue
        if want in environ.split(b"\0"):
            out.append(int(entry.name))
    return out


def wait_exit(pid: int) -> None:
    """Return once ``pid`` has exited."""
    try:
        fd = os.pidfd_open(pid)
    except ProcessLookupError:
        return
    try:
        poller = select.poll()
        poller.register(fd, select.POLLIN)
        poller.poll()  # readable when the process exits
    finally:
        os.close(fd)


def reap(mark: str) -> list[int]:
    """SIGKILL every marked process but this one; return their PIDs."""
    killed = []
    for pid in marked(mark):
        if pid == os.getpid():
            continue
        try:
            os.kill(pid, signal.SIGKILL)
            killed.append(pid)
        except ProcessLookupError:
            pass
    return killed


def sim_homes_file(mark: str) -> Path:
    return Path(tempfile.gettempdir()) / f"session-testnet-run-{mark}.sim-homes"


def register_sim_home(home: Path) -> None:
    """Have the watcher remove the simulated swarm hosts of ``home`` if the run dies."""
    mark = os.environ.get(ENV_RUN)
    if mark:
        with open(sim_homes_file(mark), "a") as f:
            f.write(f"{home}\n")


def remove_sims(mark: str) -> None:
    """``SimHosts(home).down()`` for every home the run registered."""
    f = sim_homes_file(mark)
    if not f.exists():
        return
    from harness.swarmsim import SimHosts  # only now: the watcher itself stays light

    for line in f.read_text().splitlines():
        if line.strip():
            with contextlib.suppress(Exception):
                SimHosts(Path(line.strip())).down()
    f.unlink(missing_ok=True)


def main(argv: list[str]) -> int:
    if len(argv) != 2:
        print("usage: orphan_watch.py OWNER_PID MARK", file=sys.stderr)
        return 2
    owner, mark = int(argv[0]), argv[1]
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))  # the run ended normally
    wait_exit(owner)
    reap(mark)
    remove_sims(mark)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
