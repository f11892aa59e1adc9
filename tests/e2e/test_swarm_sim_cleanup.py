"""`testnet swarm-sim down` after `testnet swarm-sim up` was killed (SIGKILL) in the middle of
starting a host: the host container, its volume, the network and the swarm `up` made on the
local engine are all gone afterwards, and the engine is back to no swarm."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from orphan_watch import register_sim_home
from swarm_support import engine_or_skip, exclusive_swarm_mode

from harness.images import ensure_images
from harness.swarmsim import SimHosts
from harness.swarmsim.hosts import LABEL_HOME, NETWORK
from harness.swarmsim.image import sim_image

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

ROOT = Path(__file__).resolve().parents[2]


def test_down_cleans_up_after_a_killed_up(tmp_path_factory: pytest.TempPathFactory) -> None:
    client = engine_or_skip()
    home = Path(tmp_path_factory.mktemp("simkill", numbered=True))
    env = {**os.environ, "SESSION_TESTNET_HOME": str(home), "PYTHONPATH": str(ROOT)}
    mine: dict[str, Any] = {"label": f"{LABEL_HOME}={home / 'swarm-sim'}"}

    def listed() -> list[Any]:
        return client.containers.list(all=True, filters=mine, ignore_removed=True)

    with exclusive_swarm_mode():
        if (client.info().get("Swarm") or {}).get("LocalNodeState") != "inactive":
            pytest.skip("the engine is in a swarm already; the simulated hosts need their own")
        ensure_images(client)
        sim_image(client)  # made once here, so `up` below gets to its hosts at once
        register_sim_home(home)
        log = home / "swarm-sim-up.log"  # what `up` printed, in the failure's message
        with log.open("wb") as out:
            up = subprocess.Popen([sys.executable, "-m", "harness", "swarm-sim", "up", "--hosts", "2"],
                                  env=env, cwd=ROOT, stdout=out, stderr=subprocess.STDOUT)

        def printed() -> str:
            return log.read_text(errors="replace")[-3000:]

        try:
            try:
                deadline = time.monotonic() + 120
                while time.monotonic() < deadline and not listed():
                    assert up.poll() is None, \
                        f"swarm-sim up ended ({up.returncode}) before it started a host:\n{printed()}"
                    time.sleep(0.05)
                assert listed(), f"no host was started in 120 s; swarm-sim up printed:\n{printed()}"
            finally:
                up.send_signal(signal.SIGKILL)
                up.wait()
            assert (client.info().get("Swarm") or {}).get("LocalNodeState") == "active"
            down = subprocess.run([sys.executable, "-m", "harness", "swarm-sim", "down"],
                                  env=env, cwd=ROOT, capture_output=True, text=True, timeout=300)
            assert down.returncode == 0, down.stderr
            assert "network st-sim" in down.stdout, down.stdout  # what up made, by its label
            assert listed() == []
            assert client.volumes.list(filters=mine) == []
            assert client.networks.list(names=[NETWORK]) == []
            assert (client.info().get("Swarm") or {}).get("LocalNodeState") == "inactive"
            assert not (home / "swarm-sim" / "state.json").exists()
        finally:  # a failed test leaves the engine clean too (after a passing one: a no-op)
            SimHosts(home, client).down()
    client.close()
