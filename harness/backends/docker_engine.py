"""The Docker engine as the docker backend sees it: one checked connection, testcontainers'
client bound to it, and the names and labels that mark a testnet's containers, networks and
volumes (``destroy`` and the stale sweep find resources by these labels only).
"""

from __future__ import annotations

import docker.errors  # binds `docker` too (a plain `import docker` is misfiled next to docker/)
import requests.exceptions
from docker.client import DockerClient
from testcontainers.core.docker_client import DockerClient as TestcontainersClient

from harness.backends.base import BackendError

#: the backend kind recorded in a testnet's state (``NetworkState.backend``)
KIND = "docker"

LABEL = "session-testnet"
LABEL_STATE = "session-testnet.state"
LABEL_OWNER = "session-testnet.owner-pid"
LABEL_HOST = "session-testnet.host"
LABEL_ROLE = "session-testnet.role"
LABEL_TARGET = "session-testnet.target"
#: set by backends other than ``docker`` that share these labels (``swarm``): each one's stale
#: sweep judges only its own resources
LABEL_BACKEND = "session-testnet.backend"
#: the swarm backend's state-folder label, in place of ``session-testnet.state``: harness
#: versions that predate the swarm backend sweep every resource labelled
#: ``session-testnet.state`` whose state names another backend, i.e. they would remove a live
#: swarm testnet (seen: an older `up` beside a swarm testnet took its containers mid-scenario)
LABEL_SWARM_STATE = "session-testnet.swarm-state"


def connect() -> DockerClient:
    """A client for the engine of ``DOCKER_HOST`` (or the default socket), checked with a ping."""
    try:
        client = DockerClient.from_env(timeout=120)
        client.ping()
    except (docker.errors.DockerException, requests.exceptions.RequestException) as e:
        raise BackendError(
            f"cannot reach the Docker engine ({e}): start it, check DOCKER_HOST and that this "
            "user may use it ('docker info'), or use --backend process"
        ) from None
    return client


class EngineClient(TestcontainersClient):
    """testcontainers' ``DockerClient`` bound to an existing Docker SDK client (the one of
    :func:`connect`), so containers are created on exactly the engine the rest of the backend
    talks to, over the same connection pool.

    ``super().__init__()`` is deliberately not called: it would open a second client on the
    engine testcontainers picks by its own rules (``tc.host`` in ``~/.testcontainers.properties``,
    the current docker context), write that choice into ``os.environ["DOCKER_HOST"]`` and log in
    to the registries of ``DOCKER_AUTH_CONFIG``. The wrapper's only state is ``client``.
    """

    def __init__(self, client: DockerClient) -> None:
        self.client = client


def resource_prefix(name: str) -> str:
    return f"st-{name}"


def explain(e: Exception) -> str:
    """What the engine said, plus what to do for the failures a user can fix. (``APIError`` is
    a ``requests`` ``HTTPError`` too: the engine's answers are told apart from no answer.)"""
    if isinstance(e, docker.errors.APIError):
        text = str(e.explanation or e)
        if e.status_code == 409:
            return f"{text}; run 'testnet clean' (or remove that container) and retry"
        return text
    if isinstance(e, docker.errors.DockerException):
        return str(e)
    return f"the Docker engine did not answer ({e}); check that it runs ('docker info') and retry"
