"""The node image of another git revision of this project (``testnet images build --ref REF``,
and docker testnets with ``N:python@REF`` nodes).

The recipe is the node image's (:mod:`harness.images.node`): the same Dockerfile, base image
and offline build (wheels prepared on the host, build network ``none``), with the revision's
``nodes/`` package and its ``nodes/requirements.txt`` in place of the installed ones. The tag is
the revision's commit, ``session-testnet/node-rev:<commit12>``; a label records the hash of
everything that went in, so a tag built by another recipe or base is rebuilt.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import docker.errors  # also binds `docker`
import requests.exceptions

from harness.images.base import choose_base, requested_base_image
from harness.images.engine import (
    RECIPE_VERSION,
    ImageError,
    Progress,
    cache_home,
    file_lock,
    get_image,
    quiet,
)
from harness.images.node import build_image
from harness.images.sources import NodeSources
from harness.images.wheels import prepare_wheels, python_info
from harness.nodekinds.revisions import Revision

REVISION_REPOSITORY = "session-testnet/node-rev"
#: image label holding the hash of the build's inputs
INPUTS_LABEL = "session-testnet.inputs"


@dataclass(frozen=True)
class RevisionImage:
    """The node image of one revision."""

    tag: str
    commit: str
    ref: str
    base: str
    built: bool


def revision_sources(rev: Revision) -> NodeSources:
    """The build inputs: the revision's ``nodes`` package, today's Dockerfile."""
    installed = NodeSources.installed()
    return NodeSources(nodes=Path(rev.root) / "nodes", dockerfile=installed.dockerfile)


def revision_tag(rev: Revision) -> str:
    return f"{REVISION_REPOSITORY}:{rev.short}"


def inputs_hash(rev: Revision, base_image: str | None = None) -> str:
    return revision_sources(rev).digest(f"recipe {RECIPE_VERSION}",
                                        f"base {requested_base_image(base_image)}")


def ensure_revision_image(client: docker.DockerClient, rev: Revision, *,
                          progress: Progress | None = None, force: bool = False,
                          base_image: str | None = None,
                          cache_dir: Path | None = None) -> RevisionImage:
    """Return the node image of ``rev``, building it offline when missing, built from other
    inputs, or ``force``d."""
    report = progress or quiet
    tag = revision_tag(rev)
    sources = revision_sources(rev)
    want = inputs_hash(rev, base_image)

    def existing() -> RevisionImage | None:
        img = get_image(client, tag)
        if img is None or force or img.labels.get(INPUTS_LABEL) != want:
            return None
        return RevisionImage(tag=tag, commit=rev.commit, ref=rev.ref,
                             base=img.labels.get("session-testnet.base", ""), built=False)

    try:
        if (found := existing()) is not None:
            return found
        cache = cache_dir or cache_home()
        with file_lock(cache / "images.lock"):
            if (found := existing()) is not None:
                return found
            t0 = time.monotonic()
            report(f"node image of revision {rev.ref} ({rev.short}): building {tag}")
            base = choose_base(client, base_image, report, cache)
            wheels = prepare_wheels(python_info(client, base), sources.requirements(), report, cache)
            build_image(client, tag, base, wheels, sources=sources, progress=report,
                        nocache=force, labels={INPUTS_LABEL: want})
            report(f"node image {tag}: built in {time.monotonic() - t0:.1f}s")
            return RevisionImage(tag=tag, commit=rev.commit, ref=rev.ref, base=base, built=True)
    except (docker.errors.DockerException, requests.exceptions.RequestException) as e:
        raise ImageError(f"Docker engine error while preparing {tag}: {e}. Is the engine "
                         "running and reachable (DOCKER_HOST, 'docker info')?") from e
