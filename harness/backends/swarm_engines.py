"""The engines of a swarm's hosts (docs/backends.md, "Several hosts").

The manager's engine (``DOCKER_HOST``) creates and removes services and sees every task, but a
task's container lives on its host's engine: killing or pausing a node, reading its log,
routing its network namespace, loading the node image and removing what a host keeps after a
service is gone (its volumes) all go through that host's engine. The user names them in
``$SESSION_TESTNET_SWARM_ENGINES``: ``HOST=URL`` pairs separated by commas, ``HOST`` a swarm
node's host name (``docker node ls``), ``URL`` anything the docker SDK takes as ``base_url``
(``unix:///path/docker.sock``, ``tcp://10.0.0.2:2376``, ``ssh://user@host``). ``testnet swarm-sim
up`` prints that value for the hosts it simulates.
"""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Mapping
from typing import Any

import docker.errors  # binds `docker` too (a plain `import docker` is misfiled next to docker/)
import requests.exceptions
from docker.client import DockerClient

from harness.backends.base import BackendError

ENV = "SESSION_TESTNET_SWARM_ENGINES"
#: seconds an engine of another host may take to answer one API call
ENGINE_TIMEOUT = 60


def parse_engines(text: str) -> dict[str, str]:
    """``{"host1": "unix:///…", …}`` from ``host1=URL,host2=URL`` (blank: none)."""
    out: dict[str, str] = {}
    for item in text.split(","):
        item = item.strip()
        if not item:
            continue
        host, sep, url = item.partition("=")
        host, url = host.strip(), url.strip()
        if not sep or not host or not url or "://" not in url:
            raise BackendError(f"${ENV}: {item!r} is not HOST=URL (e.g. "
                               "host2=unix:///run/host2/docker.sock or host2=tcp://10.0.0.2:2376)")
        if host in out:
            raise BackendError(f"${ENV}: host {host!r} is named twice")
        out[host] = url
    return out


def engines_from_env() -> dict[str, str]:
    return parse_engines(os.environ.get(ENV, ""))


class HostEngines:
    """The manager's engine plus one client per other host, connected on first use."""

    def __init__(self, manager: DockerClient, manager_host: str, urls: Mapping[str, str]) -> None:
        self.manager = manager
        self.manager_host = manager_host
        self.urls = {h: u for h, u in urls.items() if h != manager_host}
        self._clients: dict[str, DockerClient] = {}

    def client(self, host: str | None) -> DockerClient | None:
        """The engine of ``host`` (the manager's for its own host or an unknown one: None)."""
        if not host or host == self.manager_host:
            return self.manager
        if host not in self.urls:
            return None
        if host not in self._clients:
            try:
                c = DockerClient(base_url=self.urls[host], timeout=ENGINE_TIMEOUT)
                c.ping()
            except (docker.errors.DockerException, requests.exceptions.RequestException) as e:
                raise BackendError(f"cannot reach the engine of swarm host {host} at "
                                   f"{self.urls[host]} (${ENV}): {e}") from None
            self._clients[host] = c
        return self._clients[host]

    def require(self, host: str | None, what: str) -> DockerClient:
        c = self.client(host)
        if c is None:
            raise BackendError(f"{what} runs on swarm host {host!r}, whose engine is not named: "
                               f"add {host}=URL to ${ENV} (docs/backends.md, 'Several hosts')")
        return c

    def others(self) -> list[tuple[str, DockerClient]]:
        """Every named host but the manager's, connected."""
        out = []
        for host in sorted(self.urls):
            c = self.client(host)
            assert c is not None
            out.append((host, c))
        return out

    def close(self) -> None:
        for c in self._clients.values():
            with contextlib.suppress(Exception):
                c.close()
        self._clients.clear()


def remove_host_resources(client: DockerClient, host: str, filters: dict[str, Any],
                          timeout: float = 60.0) -> None:
    """Remove the containers and volumes matching ``filters`` from another host's engine (the
    overlay is swarm-scoped: the manager removes it; a worker refuses to).

    A removed service's task containers are ended by the host's own agent a moment later, and a
    volume can only go once no container uses it: retried until nothing is left or
    ``timeout``."""
    deadline = time.monotonic() + timeout
    last = ""
    while True:
        try:
            containers = client.containers.list(all=True, filters=filters, ignore_removed=True)
            for c in containers:
                with contextlib.suppress(docker.errors.NotFound):
                    c.remove(force=True)
            volumes = client.volumes.list(filters=filters)
            for v in volumes:
                with contextlib.suppress(docker.errors.NotFound):
                    v.remove(force=True)
            if not containers and not volumes:
                return
            last = ", ".join([f"container {c.name}" for c in containers]
                             + [f"volume {v.name}" for v in volumes])
        except docker.errors.APIError as e:
            last = str(e.explanation or e)
        except requests.exceptions.RequestException as e:
            raise BackendError(f"cannot clean swarm host {host}: its engine does not answer "
                               f"({e}); remove what is labelled with the testnet by hand") from None
        if time.monotonic() > deadline:
            raise BackendError(f"swarm host {host} still holds {last} of the testnet after "
                               f"{timeout:.0f}s; remove them through that host's engine")
        time.sleep(0.5)
