"""The image of a simulated swarm host: a Docker engine that runs inside a container.

Where a registry is reachable (or the image is already present) it is the official
``docker:dind`` (``$SESSION_TESTNET_SIM_IMAGE`` names another); offline it is a local Debian base
with Debian's ``docker.io``, made once with mmdebstrap like the node image's base
(``harness.images.base.ensure_local_base``). The host's start script (:data:`ENTRY_SCRIPT`)
is ours in both cases, so both behave alike.
"""

from __future__ import annotations

import os

import docker

from harness.images.base import ensure_local_base, try_pull
from harness.images.engine import Progress, get_image, quiet

DEFAULT_SIM_IMAGE = "docker:dind"
#: Debian packages of the offline image: the engine, what it runs containers with, and the
#: tools of the start script
SIM_PACKAGES: tuple[str, ...] = ("docker.io", "iptables", "fuse-overlayfs", "iproute2",
                                 "ca-certificates", "procps", "util-linux")
#: where the host's engine socket is (a folder of the machine, bind-mounted)
SOCKET_DIR = "/run/sim"

#: The start script of a simulated host (POSIX sh; Debian's and Alpine's tools). A container
#: that is not privileged (an engine whose bounding set lacks a capability cannot give that)
#: has read-only cgroup and /sys mounts: make them writable (cgroup v2: remount; v1: a fresh
#: hierarchy per controller), then run the engine on a socket in the bind-mounted folder.
ENTRY_SCRIPT = r"""
set -e
mount -o remount,rw /sys 2>/dev/null || true
if [ -e /sys/fs/cgroup/cgroup.controllers ]; then
  mount -o remount,rw /sys/fs/cgroup 2>/dev/null || true
else
  umount -R -l /sys/fs/cgroup 2>/dev/null || true
  mount -t tmpfs -o mode=755 cgroup /sys/fs/cgroup
  for sub in $(awk '!/^#/ && $4 == 1 {print $1}' /proc/cgroups); do
    mkdir -p "/sys/fs/cgroup/$sub"
    mount -t cgroup -o "$sub" cgroup "/sys/fs/cgroup/$sub" || echo "cgroup $sub: not mounted"
  done
fi
driver=""
if [ -n "$SIM_STORAGE_DRIVER" ]; then driver="--storage-driver=$SIM_STORAGE_DRIVER"; fi
rm -f /run/sim/docker.sock
exec dockerd --host=unix:///run/sim/docker.sock --data-root=/var/lib/docker $driver
"""


def sim_image(client: docker.DockerClient, progress: Progress = quiet) -> str:
    """The image simulated hosts run: the requested one if present or pullable, else the local
    Debian base with ``docker.io`` (made once)."""
    ref = os.environ.get("SESSION_TESTNET_SIM_IMAGE") or DEFAULT_SIM_IMAGE
    if get_image(client, ref) is not None:
        return ref
    if try_pull(client, ref, progress):
        return ref
    progress(f"simulated host image {ref}: unavailable (no registry?); using a local Debian "
             "base with docker.io")
    return ensure_local_base(client, progress, packages=SIM_PACKAGES, cmd=None)
