"""What the image modules share: the error type, progress reporting, the cache folder, and small
Docker API helpers (nothing here runs the ``docker`` CLI)."""

from __future__ import annotations

import contextlib
import fcntl
import math
import os
from collections.abc import Callable, Iterator
from pathlib import Path

import docker.errors  # also binds `docker`
from docker.models.images import Image

#: image label: "node", "base" or "probe"
IMAGE_LABEL = "session-testnet.image"
#: bump when the build recipe changes in a way the hashed inputs do not show
RECIPE_VERSION = "2"

Progress = Callable[[str], None]


class ImageError(RuntimeError):
    """An image could not be found or built; the message says what failed and what to do."""


def quiet(_msg: str) -> None:
    """A :data:`Progress` that reports nothing."""


def cache_home() -> Path:
    """Where wheels and the base-image recipe output are cached: ``$SESSION_TESTNET_CACHE``,
    else ``$XDG_CACHE_HOME/session-testnet``, else ``~/.cache/session-testnet``."""
    env = os.environ.get("SESSION_TESTNET_CACHE")
    if env:
        return Path(env)
    xdg = os.environ.get("XDG_CACHE_HOME")
    return (Path(xdg) if xdg else Path.home() / ".cache") / "session-testnet"


@contextlib.contextmanager
def file_lock(path: Path) -> Iterator[None]:
    """Hold an exclusive lock on ``path`` (created if missing) across processes."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


@contextlib.contextmanager
def api_timeout(client: docker.DockerClient, seconds: float) -> Iterator[None]:
    """Temporarily change the socket timeout of the client's API calls (pulls must fail fast,
    builds may be silent for longer than the default 60 s); whole seconds, rounded up."""
    old = client.api.timeout
    client.api.timeout = math.ceil(seconds)
    try:
        yield
    finally:
        client.api.timeout = old


def get_image(client: docker.DockerClient, ref: str) -> Image | None:
    """The local image ``ref``, or None when the engine does not have it."""
    try:
        return client.images.get(ref)
    except docker.errors.ImageNotFound:
        return None
