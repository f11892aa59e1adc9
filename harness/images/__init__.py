"""Container images of the testnet: the node image and the choice of a Toxiproxy image.

One image runs everything inside a docker testnet (``python -m nodes.seed``, ``nodes.snode``,
``nodes.toxiproxy``). :func:`ensure_images` returns it, building it only when needed. Everything
it is made of is read from the installed packages, so it builds from a wheel as from a checkout:

- :mod:`~harness.images.sources` — the inputs: the ``nodes`` package, its ``requirements.txt``
  (the one list of node dependencies) and the ``Dockerfile`` shipped next to this module;
- :mod:`~harness.images.base` — the base image: pulled, or a local Debian base bootstrapped with
  mmdebstrap where no registry is reachable;
- :mod:`~harness.images.wheels` — the node dependencies as wheels for the base's interpreter, so
  the build needs no network;
- :mod:`~harness.images.node` — the content-addressed tag, the build context, build and ensure;
- :mod:`~harness.images.toxiproxy` — the official Toxiproxy image, if there is one;
- :mod:`~harness.images.oxen_storage` — the real storage server's own image (a second local
  Debian base with its run-time packages, the binary, ``dh.pem`` and an entrypoint), for
  ``oxen-storage`` nodes on the docker backend.

``testnet images build`` (:mod:`harness.images_cli`) is the command line.
"""

from harness.images.base import DEFAULT_BASE_IMAGE, choose_base, requested_base_image
from harness.images.engine import IMAGE_LABEL, ImageError, Progress, cache_home
from harness.images.node import NODE_LATEST, NODE_REPOSITORY, ImageSet, ensure_images, node_image_tag
from harness.images.sources import NodeSources, node_requirements
from harness.images.toxiproxy import TOXIPROXY_REPOSITORY, TOXIPROXY_TAG, toxiproxy_image
from harness.images.wheels import PythonInfo

__all__ = [
    "DEFAULT_BASE_IMAGE",
    "IMAGE_LABEL",
    "NODE_LATEST",
    "NODE_REPOSITORY",
    "TOXIPROXY_REPOSITORY",
    "TOXIPROXY_TAG",
    "ImageError",
    "ImageSet",
    "NodeSources",
    "Progress",
    "PythonInfo",
    "cache_home",
    "choose_base",
    "ensure_images",
    "node_image_tag",
    "node_requirements",
    "requested_base_image",
    "toxiproxy_image",
]
