"""Which Toxiproxy image a docker testnet runs: the official one when present or pullable, else
none (the node image then runs ``python -m nodes.toxiproxy``, which speaks the same API)."""

from __future__ import annotations

import os
import re

import docker
from docker.utils import parse_repository_tag

from harness.images.base import try_pull
from harness.images.engine import Progress, get_image, quiet

TOXIPROXY_REPOSITORY = "ghcr.io/shopify/toxiproxy"
TOXIPROXY_TAG = "2.12.0"


def toxiproxy_image(client: docker.DockerClient, *, pull: bool = True,
                    progress: Progress | None = None) -> str | None:
    """The official Toxiproxy 2.x image if it is present (or pullable), else None: then the node
    image runs ``python -m nodes.toxiproxy``, which speaks the same API.

    ``$SESSION_TESTNET_TOXIPROXY_IMAGE`` overrides the image looked for.
    """
    report = progress or quiet
    wanted = os.environ.get("SESSION_TESTNET_TOXIPROXY_IMAGE", f"{TOXIPROXY_REPOSITORY}:{TOXIPROXY_TAG}")
    if get_image(client, wanted) is not None:
        return wanted
    repo, _ = parse_repository_tag(wanted)
    candidates: list[tuple[tuple[int, ...], str]] = []
    for img in client.images.list(name=repo):
        for t in img.tags:
            m = re.fullmatch(re.escape(repo) + r":v?(2)\.(\d+)\.(\d+)", t)
            if m:
                candidates.append((tuple(int(x) for x in m.groups()), t))
    if candidates:
        return max(candidates)[1]
    if pull and try_pull(client, wanted, report):
        return wanted
    return None

