"""The node image's Python code on named volumes ("code volumes"), mounted read-only over the
same paths in every container of the image that a docker testnet starts.

Why: on engines whose storage driver is ``fuse-overlayfs`` every file an import opens from the
image's layers goes through FUSE: ~0.1–0.2 s more CPU per Python process (in its
``fuse-overlayfs`` helper) and thousands of context switches, for the ten Python processes a
default testnet starts at once on a few cores. A named volume is a plain folder of the engine's
host, so the seed, the nodes, the file server and Toxiproxy import their code without FUSE.

Which paths: the node image names them in its label ``session-testnet.code-paths`` (the
interpreter's standard library, the virtualenv with the node dependencies, ``/app`` with
``nodes/``; see the Dockerfile). An image without that label (another revision's, an older
build) gets no code volumes and runs from its layers as before.

The volumes of one image are ``session-testnet-code-<image id 12>-<i>`` (one per path, filled
by the engine's copy of the image's content into an empty volume when a container that mounts
it is created), and ``session-testnet-code-<image id 12>``, created empty once all are filled:
its existence says they are complete (one API call per ``up``). They are shared by every
testnet of that image, carry the label ``session-testnet.image=code`` and the image id in
``session-testnet.code-of``, and are removed once their image is gone
(:func:`remove_stale_code_volumes`, run when volumes of a new image are filled and when old
node images are pruned).
"""

from __future__ import annotations

import contextlib
import uuid
from pathlib import Path

import docker.errors  # also binds `docker`
import docker.types
import requests.exceptions

from harness.images.engine import IMAGE_LABEL, Progress, cache_home, file_lock, quiet

#: the node image's label naming the folders of its Python code (space-separated)
CODE_PATHS_LABEL = "session-testnet.code-paths"
#: the code volumes' label holding the id of the image they were filled from
CODE_OF_LABEL = "session-testnet.code-of"
CODE_VOLUME_PREFIX = "session-testnet-code-"


def code_paths(labels: dict[str, str] | None) -> tuple[str, ...]:
    """The absolute folders an image's label names as its code (none: no label)."""
    raw = (labels or {}).get(CODE_PATHS_LABEL, "")
    return tuple(p for p in raw.split() if p.startswith("/") and p != "/")


def volume_base(image_id: str) -> str:
    """The marker volume's name for the image ``image_id`` (``sha256:…``)."""
    return CODE_VOLUME_PREFIX + image_id.removeprefix("sha256:")[:12]


def slot_volumes(image_id: str, paths: tuple[str, ...]) -> dict[str, str]:
    """Path in the container -> the name of the code volume mounted there."""
    base = volume_base(image_id)
    return {path: f"{base}-{i}" for i, path in enumerate(paths)}


def code_mounts(volumes: dict[str, str]) -> list[docker.types.Mount]:
    """Read-only mounts of the code volumes ``volumes`` (path -> volume name)."""
    return [docker.types.Mount(target=path, source=name, type="volume", read_only=True)
            for path, name in volumes.items()]


def _exists(client: docker.DockerClient, name: str) -> bool:
    try:
        client.volumes.get(name)
    except docker.errors.NotFound:
        return False
    return True


def ensure_code_volumes(client: docker.DockerClient, image_id: str, paths: tuple[str, ...], *,
                        progress: Progress = quiet, cache_dir: Path | None = None
                        ) -> dict[str, str]:
    """The code volumes of the image ``image_id`` (path -> volume name), filled from it if they
    are not yet; ``{}`` when ``paths`` is empty. Safe to call from several processes at once."""
    if not paths:
        return {}
    volumes = slot_volumes(image_id, paths)
    marker = volume_base(image_id)
    if _exists(client, marker):
        return volumes
    with file_lock((cache_dir or cache_home()) / "images.lock"):
        if _exists(client, marker):  # filled by another process meanwhile
            return volumes
        progress(f"code volumes of {image_id[:19]}: filling {' '.join(paths)}")
        labels = {IMAGE_LABEL: "code", CODE_OF_LABEL: image_id}
        for name in volumes.values():  # left over by a fill that did not finish
            with contextlib.suppress(docker.errors.NotFound):
                client.volumes.get(name).remove(force=True)
            client.volumes.create(name=name, labels=labels)
        # creating a container copies the image's content into each empty volume it mounts
        mounts = [docker.types.Mount(target=p, source=v, type="volume")
                  for p, v in volumes.items()]
        filler = client.containers.create(image_id, ["true"], entrypoint=[], mounts=mounts,
                                          network_disabled=True, labels={IMAGE_LABEL: "probe"},
                                          name=f"session-testnet-code-fill-{uuid.uuid4().hex[:8]}")
        filler.remove(force=True)
        client.volumes.create(name=marker, labels=labels)
        remove_stale_code_volumes(client)
    return volumes


def remove_stale_code_volumes(client: docker.DockerClient) -> list[str]:
    """Remove code volumes whose image is gone (those still mounted stay); return their names."""
    removed: list[str] = []
    try:
        vols = client.volumes.list(filters={"label": f"{IMAGE_LABEL}=code"})
        present = {str(i.id) for i in client.images.list(filters={"label": f"{IMAGE_LABEL}=node"})}
    except (docker.errors.DockerException, requests.exceptions.RequestException):
        return removed
    # the marker first: an incomplete set is refilled, never taken for complete
    vols.sort(key=lambda v: v.name.count("-"))
    for vol in vols:
        of = (vol.attrs.get("Labels") or {}).get(CODE_OF_LABEL, "")
        if of in present:
            continue
        try:
            vol.remove()
            removed.append(vol.name)
        except (docker.errors.DockerException, requests.exceptions.RequestException):
            pass  # mounted by a running container, or removed meanwhile
    return removed
