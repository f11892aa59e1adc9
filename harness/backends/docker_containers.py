"""Creating and starting one container of a docker testnet (through testcontainers' client,
:class:`~harness.backends.docker_engine.EngineClient`): files put in before it starts, and on
failure the half-created container removed and an error naming the container, its image and why.
:meth:`harness.backends.docker.DockerBackend._run` builds the container's settings.
"""

from __future__ import annotations

import io
import tarfile
import time
from typing import Any

import docker.errors  # binds `docker` too (a plain `import docker` is misfiled next to docker/)
import requests.exceptions
from docker.client import DockerClient

from harness.backends.base import BackendError
from harness.backends.docker_engine import LABEL, LABEL_TARGET, EngineClient, explain


def tar_files(files: dict[str, bytes]) -> bytes:
    """An archive of ``files`` (absolute path -> content, world-readable) for put_archive."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        for path, data in files.items():
            ti = tarfile.TarInfo(path.lstrip("/"))
            ti.size, ti.mode, ti.mtime = len(data), 0o644, int(time.time())
            tar.addfile(ti, io.BytesIO(data))
    return buf.getvalue()


def start_container(client: DockerClient, tc: EngineClient, image: str, command: list[str] | None,
                    *, name: str, labels: dict[str, str], state_label: str, target: str,
                    testnet: str, files: dict[str, bytes] | None = None, **kwargs: Any) -> None:
    """Create the container ``name`` of ``image`` (``kwargs``: testcontainers' create options),
    put ``files`` into it and start it; raise :class:`BackendError` naming ``target`` of
    ``testnet`` if that fails, after removing what was created (only if ``labels`` say it is
    ours: ``state_label`` names the testnet's state folder)."""
    try:
        # pulls `image` only if absent; ours are built or checked by prepare()
        container = tc.create(image, command=command, labels=labels, name=name, **kwargs)
        if files:
            container.put_archive("/", tar_files(files))
        tc.start(container)
    except (docker.errors.DockerException, requests.exceptions.RequestException) as e:
        remove_failed(client, name, labels, state_label)
        why = explain(e)
        if image_missing(client, image):
            why = (f"the image is not on the engine and could not be pulled ({why}); run "
                   "'testnet up' again, which rebuilds or pulls it")
        raise BackendError(f"cannot start container {name} ({image}) for {target} of testnet "
                           f"{testnet!r}: {why}") from None


def image_missing(client: DockerClient, image: str) -> bool:
    """Whether ``image`` is absent from the engine (False when the engine cannot tell)."""
    try:
        client.images.get(image)
    except docker.errors.ImageNotFound:
        return True
    except (docker.errors.DockerException, requests.exceptions.RequestException):
        pass
    return False


def remove_failed(client: DockerClient, name: str, labels: dict[str, str],
                  state_label: str) -> None:
    """Remove what a failed :func:`start_container` left behind: the container ``name`` if it is this
    testnet's (a name conflict must not remove somebody else's container)."""
    try:
        c = client.containers.get(name)
        own = c.labels or {}
        if all(own.get(k) == labels[k] for k in (LABEL, state_label, LABEL_TARGET)):
            c.remove(force=True)
    except (docker.errors.DockerException, requests.exceptions.RequestException):
        pass  # gone, or the engine is unreachable: down/clean find it by label later
