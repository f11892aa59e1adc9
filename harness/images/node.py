"""The node image: its content-addressed tag, its build context, and :func:`ensure_images`, which
returns it and builds it only when needed.

1. The tag is ``session-testnet/node:<hash12>``, where the hash covers every file of the
   installed ``nodes`` package (its ``requirements.txt`` too), the Dockerfile and the requested
   base image. When that tag exists the call returns at once (one API call).
2. Otherwise a base is chosen (:mod:`harness.images.base`), the node dependencies are prepared as
   wheels on the host (:mod:`harness.images.wheels`), and the image is built through the Docker
   API with network ``none`` from a context holding only the Dockerfile, the wheels and
   ``nodes/`` (never ``harness/``).
"""

from __future__ import annotations

import io
import tarfile
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import IO

import docker.errors  # also binds `docker`
import requests.exceptions
from docker.models.images import Image

from harness.images.base import choose_base, requested_base_image
from harness.images.code import code_paths, remove_stale_code_volumes
from harness.images.engine import (
    IMAGE_LABEL,
    RECIPE_VERSION,
    ImageError,
    Progress,
    api_timeout,
    cache_home,
    file_lock,
    get_image,
    quiet,
)
from harness.images.sources import NodeSources
from harness.images.wheels import prepare_wheels, python_info

NODE_REPOSITORY = "session-testnet/node"
#: moving tag of the node image last returned by ensure_images (what rendered Compose files use)
NODE_LATEST = f"{NODE_REPOSITORY}:latest"
#: how many node images (other than the current one) to keep when a new one is built
KEEP_OLD_NODE_IMAGES = 3
#: where the Dockerfile puts the virtualenv of the node dependencies and the ``nodes`` package
VENV = "/opt/venv"
APP = "/app"
#: fixed metadata for build-context entries, so identical content gives identical layers
_CONTEXT_MTIME = 1_700_000_000


@dataclass(frozen=True)
class ImageSet:
    """The images a docker testnet runs."""

    #: tag of the node image, ``session-testnet/node:<hash12>``
    node: str
    #: its image id (``sha256:…``)
    node_id: str
    #: the base image it was built from
    base: str
    #: True when this call built the node image, False when it already existed
    built: bool = False
    #: the folders of its Python code, for code volumes (:mod:`harness.images.code`)
    code_paths: tuple[str, ...] = ()


def context_hash(base_image: str | None = None, sources: NodeSources | None = None) -> str:
    """sha256 (hex) over everything that goes into the node image."""
    sources = sources or NodeSources.installed()
    return sources.digest(f"recipe {RECIPE_VERSION}", f"base {requested_base_image(base_image)}")


def node_image_tag(base_image: str | None = None, sources: NodeSources | None = None) -> str:
    """The content-addressed tag of the node image for the installed ``nodes`` package."""
    return f"{NODE_REPOSITORY}:{context_hash(base_image, sources)[:12]}"


def _add_bytes(tar: tarfile.TarFile, name: str, data: bytes, mode: int = 0o644) -> None:
    ti = tarfile.TarInfo(name)
    ti.size = len(data)
    ti.mode = mode
    ti.mtime = _CONTEXT_MTIME
    ti.uid = ti.gid = 0
    ti.uname = ti.gname = "root"
    tar.addfile(ti, io.BytesIO(data))


def build_context(wheels: Path, out: IO[bytes], sources: NodeSources | None = None) -> None:
    """Write the build context (Dockerfile, wheels/, nodes/) as an uncompressed tar to ``out``."""
    sources = sources or NodeSources.installed()
    with tarfile.open(fileobj=out, mode="w") as tar:
        _add_bytes(tar, "Dockerfile", sources.dockerfile_bytes())
        for p in sorted(wheels.iterdir()):
            if p.suffix == ".whl" or p.name == "requirements.txt":
                _add_bytes(tar, f"wheels/{p.name}", p.read_bytes())
        for arcname, entry in sources.files():
            _add_bytes(tar, arcname, entry.read_bytes())


def build_image(client: docker.DockerClient, tag: str, base: str, wheels: Path, *,
                sources: NodeSources | None = None, progress: Progress = quiet,
                nocache: bool = False, labels: dict[str, str] | None = None,
                code_paths: tuple[str, ...] = ()) -> str:
    """Build the node image as ``tag`` on ``base`` with the prepared ``wheels``; return its id.
    ``code_paths``: the folders of its Python code, for its label (:mod:`harness.images.code`).

    Only the build: :func:`ensure_images` is the usual entry (it also chooses the base, prepares
    the wheels, moves ``:latest`` and prunes old node images)."""
    sources = sources or NodeSources.installed()
    # labels (session-testnet.image=node, .base) are set in the Dockerfile: the API's `labels`
    # parameter would add one uncached build step per label (``labels``: for images built
    # once, such as another revision's)
    log: list[str] = []
    image_id = None
    buildargs = {"BASE_IMAGE": base}
    if code_paths:
        buildargs["CODE_PATHS"] = " ".join(code_paths)
    with tempfile.TemporaryFile() as ctx:
        build_context(wheels, ctx, sources)
        ctx.seek(0)
        progress(f"building {tag} from {base}")
        try:
            with api_timeout(client, 900):
                stream = client.api.build(
                    fileobj=ctx, custom_context=True, tag=tag, buildargs=buildargs,
                    rm=True, forcerm=True, pull=False, nocache=nocache,
                    network_mode="none", decode=True, labels=labels,
                )
                for chunk in stream:
                    if "error" in chunk:
                        detail = "\n".join(log[-20:])
                        raise ImageError(f"building {tag} failed: {chunk['error'].strip()}\n"
                                         f"Build output (last lines):\n{detail}")
                    text = chunk.get("stream", "")
                    for line in text.splitlines():
                        if line.strip():
                            log.append(line.rstrip())
                            if line.startswith("Step "):
                                progress(f"build: {line.strip()}")
                    aux = chunk.get("aux")
                    if isinstance(aux, dict) and aux.get("ID"):
                        image_id = aux["ID"]
        except docker.errors.APIError as e:
            raise ImageError(f"building {tag} failed: {e.explanation or e}") from None
    img = get_image(client, tag)
    if img is None:
        raise ImageError(f"building {tag} finished without an image (id {image_id}); "
                         "output:\n" + "\n".join(log[-20:]))
    return str(img.id)


def _tag_latest(img: Image) -> None:
    if NODE_LATEST not in img.tags:
        img.tag(NODE_REPOSITORY, "latest")


def _prune_old_node_images(client: docker.DockerClient, keep: str, progress: Progress) -> None:
    """Remove node images older than the newest few (never one a container still uses)."""
    images = client.images.list(name=NODE_REPOSITORY, filters={"label": f"{IMAGE_LABEL}=node"})
    images.sort(key=lambda i: str(i.attrs.get("Created", "")), reverse=True)
    old = [i for i in images if keep not in i.tags][KEEP_OLD_NODE_IMAGES:]
    for img in old:
        for t in img.tags:
            try:
                client.images.remove(t)
                progress(f"removed old node image {t}")
            except docker.errors.APIError:
                pass  # still used by a container, or removed meanwhile
    if old:
        remove_stale_code_volumes(client)


def _existing(client: docker.DockerClient, tag: str) -> ImageSet | None:
    img = get_image(client, tag)
    if img is None:
        return None
    _tag_latest(img)
    return ImageSet(node=tag, node_id=str(img.id), base=img.labels.get("session-testnet.base", ""),
                    built=False, code_paths=code_paths(img.labels))


def ensure_images(client: docker.DockerClient, *, progress: Progress | None = None,
                  force: bool = False, base_image: str | None = None,
                  cache_dir: Path | None = None, sources: NodeSources | None = None) -> ImageSet:
    """Return the node image for the installed ``nodes`` package, building it if it does not
    exist (or always with ``force``). Safe to call from several processes at once."""
    report = progress or quiet
    sources = sources or NodeSources.installed()
    tag = node_image_tag(base_image, sources)
    try:
        if not force and (found := _existing(client, tag)) is not None:
            return found
        cache = cache_dir or cache_home()
        with file_lock(cache / "images.lock"):
            # another process may have built it while we waited for the lock
            if not force and (found := _existing(client, tag)) is not None:
                return found
            t0 = time.monotonic()
            report(f"node image {tag}: not present, building it")
            base = choose_base(client, base_image, report, cache)
            info = python_info(client, base)
            wheels = prepare_wheels(info, sources.requirements(), report, cache)
            paths = (info.stdlib, VENV, APP) if info.stdlib else ()
            image_id = build_image(client, tag, base, wheels, sources=sources, progress=report,
                                   nocache=force, code_paths=paths)
            img = client.images.get(tag)
            size = float(img.attrs.get("Size") or 0) / 1e6
            report(f"node image {tag}: built in {time.monotonic() - t0:.1f}s ({size:.0f} MB)")
            _tag_latest(img)
            _prune_old_node_images(client, tag, report)
            return ImageSet(node=tag, node_id=image_id, base=base, built=True,
                            code_paths=code_paths(img.labels))
    except (docker.errors.DockerException, requests.exceptions.RequestException) as e:
        raise ImageError(f"Docker engine error while preparing {tag}: {e}. Is the engine "
                         "running and reachable (DOCKER_HOST, 'docker info')?") from e
