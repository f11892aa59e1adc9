"""The docker half of ``testnet bench --quick``: how long the default topology takes to come up
on the docker backend (warm: images built, one bring-up before the measured one), and how long
the same topology takes when its rendered Compose file is started by plain ``docker-compose up``
until the same readiness holds — the side-by-side baseline.

Readiness of the Compose testnet is :meth:`harness.network.Testnet.readiness` on the state the
renderer planned (:func:`harness.compose.compose_state`): the very check ``Testnet.up`` waits
for, not a second one. Each figure comes with a dict of details; a figure that could not be
measured is None and its details say why (``reason``).
"""

from __future__ import annotations

import asyncio
import shutil
import subprocess
import tempfile
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

from harness import rpc
from harness.network import Testnet
from harness.topology import Topology

Reporter = Callable[[str], None]

#: subnets tried by the Compose baseline when another testnet takes its choice before ``up``
SUBNET_ATTEMPTS = 4
#: how long a bring-up (harness or Compose) may take before it counts as failed
UP_TIMEOUT_S = 120.0
#: how often the Compose testnet's readiness is asked (as ``Testnet.wait_ready`` polls)
READY_POLL_S = 0.2


def docker_client() -> tuple[Any | None, str | None]:
    """A reachable Docker engine client, or None and why not."""
    try:
        import docker

        client = docker.from_env()
        client.ping()
    except Exception as e:  # no SDK, no socket, engine down: all mean "cannot measure"
        return None, f"Docker engine not reachable ({type(e).__name__}: {e}); start it or run without docker"
    return client, None


def compose_command() -> list[str] | None:
    """The Compose v1 binary (``docker-compose``), which the project's compose tests use too,
    else the Compose v2 CLI plugin; None when neither is installed."""
    exe = shutil.which("docker-compose")
    if exe:
        return [exe]
    cli = shutil.which("docker")
    if cli and subprocess.run([cli, "compose", "version"], capture_output=True,
                              timeout=30).returncode == 0:
        return [cli, "compose"]
    return None


def harness_bringup(topology: Topology, report: Reporter) -> dict[str, Any]:
    """``{"up_s", "warm_up_s", "down_s", "steps", "nodes", "proxies"}``: ``Testnet.up`` of
    ``topology`` on docker once to warm (caches, engine), then once measured (``steps``: its
    progress messages with the seconds since its start). Both are taken down."""
    out: dict[str, Any] = {"backend": "docker", "nodes": topology.node_count,
                           "proxies": topology.proxies, "fileserver": topology.fileserver}
    for phase in ("warm_up_s", "up_s"):
        topo = replace(topology, name=f"{topology.name}-{'w' if phase == 'warm_up_s' else 'm'}")
        report(f"bench --quick: docker bring-up of the default topology ({phase.split('_')[0]})")
        t0 = time.perf_counter()
        steps: list[tuple[float, str]] = []

        def noted(msg: str, t0: float = t0, steps: list[tuple[float, str]] = steps) -> None:
            steps.append((round(time.perf_counter() - t0, 2), msg))
            report(msg)

        net = Testnet.up(topo, backend="docker", timeout=UP_TIMEOUT_S, report=noted)
        out[phase] = round(time.perf_counter() - t0, 2)
        out["steps"] = steps  # where the measured bring-up spent its time (seconds from start)
        t1 = time.perf_counter()
        net.down()
        out["down_s"] = round(time.perf_counter() - t1, 2)
    return out


async def _wait_compose_ready(net: Testnet, timeout: float) -> str | None:
    """Poll ``net.readiness()`` until it holds; None when it did, else what is missing."""
    deadline = time.monotonic() + timeout
    async with rpc.new_session(rpc.aiohttp.ClientTimeout(total=3)) as session:
        while True:
            r = await net.readiness(session)
            if r.ready:
                return None
            if time.monotonic() > deadline:
                if not r.seed_ok:
                    return f"seed at {net.seed_url} not answering: {r.seed_error}"
                bad = {n: nr.missing() for n, nr in r.nodes.items() if not nr.ready}
                return f"not ready after {timeout:.0f}s: {bad or r.fileserver_error}"
            await asyncio.sleep(READY_POLL_S)


def compose_bringup(topology: Topology, client: Any, report: Reporter,
                    timeout: float = UP_TIMEOUT_S) -> dict[str, Any]:
    """``{"up_s", ...}``: render ``topology`` with :func:`harness.compose.render_compose`, run
    ``docker-compose -p <unique> -f FILE up -d`` and time it until the harness's readiness holds;
    ``docker-compose down -v`` always follows. ``up_s`` is None (with ``reason``) when Compose
    is missing or the testnet did not come up. When another testnet took the chosen subnet
    between the choice and ``up`` ("Pool overlaps"), the next free one is tried (as the docker
    backend does), up to :data:`SUBNET_ATTEMPTS` times; only the try that got its network is
    timed."""
    from harness.backends.docker_net import free_net_index
    from harness.images import ensure_images

    out: dict[str, Any] = {"backend": "docker-compose", "nodes": topology.node_count,
                           "proxies": False, "fileserver": topology.fileserver, "up_s": None}
    cmd = compose_command()
    if cmd is None:
        out["reason"] = ("neither docker-compose (Compose v1) nor the docker compose plugin is "
                         "installed")
        return out
    out["command"] = " ".join(Path(cmd[0]).name.split() + cmd[1:])
    image = ensure_images(client).node
    taken: set[int] = set()
    for attempt in range(1, SUBNET_ATTEMPTS + 1):
        x = free_net_index(client, used=taken)
        taken.add(x)
        out.pop("reason", None)
        if not _compose_try(topology, image, x, cmd, out, report, timeout):
            break
        out["subnet_retries"] = attempt
    return out


def _compose_try(topology: Topology, image: str, x: int, cmd: list[str], out: dict[str, Any],
                 report: Reporter, timeout: float) -> bool:
    """One ``up -d`` of ``topology`` on net index ``x``, timed into ``out``, and its ``down -v``;
    True when ``up`` failed because that subnet was taken meanwhile (try another)."""
    from harness.compose import compose_state, render_compose

    project = topology.name.replace("-", "").lower()
    state, backend = compose_state(topology, net_index=x)
    net = Testnet(state, backend.statedir, backend)
    with tempfile.TemporaryDirectory(prefix="bench-compose-") as tmp:
        path = Path(tmp) / "compose.yml"
        path.write_text(render_compose(topology, image, net_index=x))
        base = [*cmd, "-p", project, "-f", str(path)]
        report(f"bench --quick: plain '{out['command']} up -d' of the same topology (project {project})")
        try:
            t0 = time.perf_counter()
            up = subprocess.run([*base, "up", "-d"], capture_output=True, text=True, timeout=timeout)
            if up.returncode != 0:
                out["reason"] = f"'{out['command']} up -d' failed: {up.stderr.strip()[-500:]}"
                return "pool overlaps" in up.stderr.lower()
            out["up_d_s"] = round(time.perf_counter() - t0, 2)
            missing = rpc.run_sync(_wait_compose_ready(net, timeout - (time.perf_counter() - t0)))
            if missing is not None:
                out["reason"] = f"the Compose testnet did not become ready: {missing}"
                return False
            out["up_s"] = round(time.perf_counter() - t0, 2)
        except subprocess.TimeoutExpired:
            out["reason"] = f"'{out['command']} up -d' did not return within {timeout:.0f}s"
        finally:
            t1 = time.perf_counter()
            down = subprocess.run([*base, "down", "-v"], capture_output=True, text=True, timeout=180)
            out["down_s"] = round(time.perf_counter() - t1, 2)
            if down.returncode != 0:
                out["down_error"] = (f"'{out['command']} -p {project} down -v' failed: "
                                     f"{down.stderr.strip()[-300:]}; remove the project by hand")
    return False


def docker_figures(topology: Topology, report: Reporter) -> tuple[dict[str, Any], dict[str, Any]]:
    """(bring-up details, Compose details) of ``topology`` on docker; each has ``up_s`` (None
    and ``reason`` when it could not be measured)."""
    client, why = docker_client()
    if client is None:
        return ({"backend": "docker", "up_s": None, "reason": why},
                {"backend": "docker-compose", "up_s": None, "reason": why})
    try:
        try:
            harness = harness_bringup(topology, report)
        except Exception as e:  # the figure is then unmeasured; the run goes on
            harness = {"backend": "docker", "up_s": None,
                       "reason": f"docker bring-up failed: {type(e).__name__}: {e}"}
        try:
            compose = compose_bringup(replace(topology, name=f"{topology.name}-c"), client, report)
        except Exception as e:
            compose = {"backend": "docker-compose", "up_s": None,
                       "reason": f"Compose bring-up failed: {type(e).__name__}: {e}"}
    finally:
        client.close()
    return harness, compose
