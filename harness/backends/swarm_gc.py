"""Running ``ip`` scripts in a network namespace, and removing a swarm testnet: the engine-side
helpers of the swarm backend (``swarm.py`` holds the lifecycle, ``swarm_net.py`` the pure
layout, ``swarm_engines.py`` the hosts' engines)."""

from __future__ import annotations

import contextlib
import time
from typing import Any

import docker.errors  # binds `docker` too (a plain `import docker` is misfiled next to docker/)
from docker.client import DockerClient

from harness.backends.base import BackendError
from harness.backends.docker_engine import explain
from harness.backends.docker_gc import remove_resources
from harness.backends.swarm_engines import remove_host_resources

#: how long a stopped node's task may take to end (its grace period is 10 s)
TASK_STOP_TIMEOUT = 30.0
POLL = 0.25


def run_in_namespace(client: DockerClient, image: str, script: str, *, network_mode: str,
                     labels: dict[str, str], what: str, name: str | None = None) -> None:
    """Run the shell ``script`` as root with ``NET_ADMIN`` in the network namespace
    ``network_mode`` (``host`` or ``container:<id>``) from a short-lived container (removed at
    once; labelled, so a crash leaves it to ``down``/the sweep); raise naming ``what``."""
    try:
        c = client.containers.run(image, ["sh", "-c", script], detach=True,
                                  network_mode=network_mode, user="0", cap_add=["NET_ADMIN"],
                                  labels=labels, name=name)
    except docker.errors.DockerException as e:
        raise BackendError(f"cannot {what}: {explain(e)}") from None
    try:
        code = c.wait(timeout=60).get("StatusCode")
        out = c.logs().decode(errors="replace").strip()
    finally:
        with contextlib.suppress(docker.errors.DockerException):
            c.remove(force=True)
    if code != 0:
        raise BackendError(f"cannot {what}: {out or f'exit {code}'}")


def _remove_services(client: DockerClient, filters: dict[str, Any]) -> None:
    with contextlib.suppress(docker.errors.APIError):  # not a manager (any more): none to remove
        for svc in client.services.list(filters=filters):
            with contextlib.suppress(docker.errors.NotFound):
                svc.remove()
    # the services' task containers end on their own; wait for them so the overlay is free
    deadline = time.monotonic() + TASK_STOP_TIMEOUT
    while time.monotonic() < deadline:
        tasks = [c for c in client.containers.list(all=True, filters=filters, ignore_removed=True)
                 if "com.docker.swarm.task.id" in (c.labels or {}) and c.status == "running"]
        if not tasks:
            return
        time.sleep(POLL)


def remove_swarm_resources(client: DockerClient, filters: dict[str, Any],
                           others: list[tuple[str, DockerClient]] | None = None) -> None:
    """Remove a swarm testnet's services, then what the other hosts (``others``: host name and
    engine) keep of it (task containers, volumes), then (as the docker backend does) the
    manager's containers, networks and volumes. The overlay is released a moment after its
    last task: retried. A host whose engine fails does not stop the others' cleaning; its
    error is raised at the end."""
    _remove_services(client, filters)
    failed: list[BackendError] = []
    for host, engine in others or []:
        try:
            remove_host_resources(engine, host, filters)
        except BackendError as e:
            failed.append(e)
    for attempt in range(20):
        try:
            remove_resources(client, filters)
            break
        except BackendError:
            if attempt == 19:
                raise
            time.sleep(0.5)
    if failed:
        raise failed[0]
