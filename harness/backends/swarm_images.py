"""The offline way to put an image on another swarm host: the engine API, no registry.

The harness builds (or finds) the node image on the manager's engine; every host that may run
a node needs it under the same tag. :func:`load_image` streams ``GET /images/<tag>/get`` of the
source engine into ``POST /images/load`` of a target engine (``image.save()`` into
``images.load()`` in the SDK), only when the target lacks the tag. ``SwarmBackend.prepare``
does it for every host named in ``$SESSION_TESTNET_SWARM_ENGINES`` (docs/backends.md,
"Several hosts").
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator

import docker.errors  # binds `docker` too (a plain `import docker` is misfiled next to docker/)
import requests.exceptions
from docker.client import DockerClient

from harness.backends.base import BackendError


class ChunkReader:
    """A file-like ``read()`` over the chunks of ``image.save()``: the archive is streamed to
    the target engine, never held in memory whole."""

    def __init__(self, chunks: Iterable[bytes]) -> None:
        self._chunks: Iterator[bytes] = iter(chunks)
        self._buf = b""

    def __iter__(self) -> Iterator[bytes]:
        """What requests streams (chunked) when it is handed this object as a body."""
        if self._buf:
            yield self._buf
            self._buf = b""
        yield from self._chunks

    def read(self, size: int = -1) -> bytes:
        while size < 0 or len(self._buf) < size:
            chunk = next(self._chunks, None)
            if chunk is None:
                break
            self._buf += chunk
        if size < 0:
            out, self._buf = self._buf, b""
        else:
            out, self._buf = self._buf[:size], self._buf[size:]
        return out


def has_image(client: DockerClient, tag: str) -> bool:
    try:
        client.images.get(tag)
    except docker.errors.ImageNotFound:
        return False
    return True


def load_image(source: DockerClient, target: DockerClient, tag: str, host: str,
               report: Callable[[str], None]) -> bool:
    """Copy image ``tag`` from ``source`` to ``target`` (host ``host``) unless it is there;
    return whether it was copied."""
    try:
        if has_image(target, tag):
            return False
        report(f"loading image {tag} onto {host}")
        image = source.images.get(tag)
        target.images.load(ChunkReader(image.save(named=True)))
        if not has_image(target, tag):
            raise BackendError(f"host {host}: the engine loaded the archive of {tag} but does "
                               "not list the tag; load it by hand ('docker save | docker load')")
    except docker.errors.ImageNotFound:
        raise BackendError(f"image {tag} is not on the manager's engine: run 'testnet images "
                           "build' there first") from None
    except (docker.errors.APIError, requests.exceptions.RequestException) as e:
        raise BackendError(f"cannot load image {tag} onto host {host}: {e}") from None
    return True
