"""The image of the real storage server (``oxen-storage``): a Debian base with the server's
run-time packages, the binary, a ready ``dh.pem`` and an entrypoint that cuts the container's
route out before the server starts. Built offline.

1. The tag is ``session-testnet/oxen-storage:<hash12>``, the hash over the binary's sha256, the
   run-time package list, the entrypoint and the recipe version. When it exists the call returns
   at once.
2. The base: where ``mmdebstrap`` is installed, a second local Debian base bootstrapped from the
   host's apt sources with the run-time packages included (``session-testnet/base:<suite>-<hash>``,
   :func:`harness.images.base.ensure_local_base`) — no registry needed and the build itself runs
   with network ``none``. Without mmdebstrap, ``debian:bookworm-slim`` (present or pulled) and the
   packages installed by ``apt-get`` in the build (this path needs the Debian mirror).
3. The entrypoint runs as root with ``NET_ADMIN`` (the docker backend grants it): it deletes the
   default route, so an address outside the testnet's subnet fails at once with "network is
   unreachable" instead of reaching the engine's bridge, copies ``dh.pem`` into the data dir if it
   is missing (else the server spends 5-130 s generating one), hands the data dir to uid 10001 and
   executes the server as that user with no capabilities (``setpriv``, util-linux).
"""

from __future__ import annotations

import hashlib
import io
import shutil
import tarfile
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import IO

import docker.errors  # also binds `docker`
import requests.exceptions

from harness.images.base import BASE_REPOSITORY, ensure_local_base, try_pull
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

OXEN_STORAGE_REPOSITORY = "session-testnet/oxen-storage"
#: Debian 12 packages of the server's run-time libraries (../shared/real-storage-server/README.md),
#: and iproute2 for the entrypoint (util-linux with setpriv is essential)
RUNTIME_PACKAGES: tuple[str, ...] = (
    "libssl3", "libcurl4", "libsodium23", "libzmq5", "libevent-core-2.1-7",
    "libevent-pthreads-2.1-7", "libgnutls30", "libspdlog1.10", "libfmt9", "libsqlite3-0",
    "libstdc++6", "iproute2",
)
#: the registry base used when mmdebstrap is not installed
REGISTRY_BASE = "debian:bookworm-slim"
#: where the image holds the server, and the uid it runs as
BINARY_IN_IMAGE = "/usr/local/bin/oxen-storage"
ENTRYPOINT_IN_IMAGE = "/usr/local/bin/oxen-storage-entrypoint"
DH_IN_IMAGE = "/usr/share/oxen-storage/dh.pem"
SERVER_UID = 10001
#: the data dir inside the container (the docker backend mounts the node's volume there)
DATA_DIR = "/data"
#: RFC 7919 ffdhe2048, the group ``openssl genpkey -genparam -algorithm DH -pkeyopt
#: group:ffdhe2048`` writes: public, fixed parameters (no secret), so the image carries them
FFDHE2048_PEM = b"""-----BEGIN DH PARAMETERS-----
MIIBCAKCAQEA//////////+t+FRYortKmq/cViAnPTzx2LnFg84tNpWp4TZBFGQz
+8yTnc4kmz75fS/jY2MMddj2gbICrsRhetPfHtXV/WVhJDP1H18GbtCFY2VVPe0a
87VXE15/V8k1mE8McODmi3fipona8+/och3xWKE2rec1MKzKT0g6eXq8CrGCsyT7
YdEIqUuyyOP7uWrat2DX9GgdT0Kj3jlN9K5W7edjcrsZCwenyO4KbXCeAvzhzffi
7MA0BM0oNC9hkXL+nOmFg/+OTxIy7vKBg8P+OxtMb61zO7X8vC7CIAXFjvGDfRaD
ssbzSibBsu/6iGtCOGEoXJf//////////wIBAg==
-----END DH PARAMETERS-----
"""
ENTRYPOINT = f"""#!/bin/sh
# Runs as root with NET_ADMIN, then executes the server ("$@", program first) as uid {SERVER_UID}
# without any capability. See harness/images/oxen_storage.py.
set -eu
# no route out of the testnet's subnet: public addresses fail at once ("network is unreachable")
while ip route show default | grep -q .; do ip route del default; done
if ip -6 route show default 2>/dev/null | grep -q .; then ip -6 route flush default; fi
data={DATA_DIR}
mkdir -p "$data"
[ -s "$data/dh.pem" ] || cp {DH_IN_IMAGE} "$data/dh.pem"
chown -R {SERVER_UID}:{SERVER_UID} "$data"
exec setpriv --reuid={SERVER_UID} --regid={SERVER_UID} --clear-groups --inh-caps=-all \\
    --bounding-set=-all --no-new-privs -- "$@"
"""
DOCKERFILE_OFFLINE = f"""ARG BASE_IMAGE
FROM ${{BASE_IMAGE}}
ARG BASE_IMAGE
COPY oxen-storage {BINARY_IN_IMAGE}
COPY dh.pem {DH_IN_IMAGE}
COPY entrypoint.sh {ENTRYPOINT_IN_IMAGE}
LABEL {IMAGE_LABEL}=oxen-storage session-testnet.base=${{BASE_IMAGE}}
ENTRYPOINT ["{ENTRYPOINT_IN_IMAGE}"]
CMD ["{BINARY_IN_IMAGE}", "--version"]
"""
#: without mmdebstrap: the packages come from the Debian mirror during the build
DOCKERFILE_APT = DOCKERFILE_OFFLINE.replace(
    "ARG BASE_IMAGE\nCOPY", "ARG BASE_IMAGE\nRUN apt-get update && apt-get install -y "
    "--no-install-recommends " + " ".join(RUNTIME_PACKAGES) + " && rm -rf /var/lib/apt/lists/*\nCOPY", 1)
_CONTEXT_MTIME = 1_700_000_000


@dataclass(frozen=True)
class OxenStorageImage:
    #: ``session-testnet/oxen-storage:<hash12>``
    tag: str
    #: the base it was built from
    base: str
    #: sha256 of the binary inside
    binary_sha256: str
    #: True when this call built it
    built: bool = False


def binary_digest(binary: Path) -> str:
    h = hashlib.sha256()
    try:
        with open(binary, "rb") as f:
            for chunk in iter(lambda: f.read(1 << 20), b""):
                h.update(chunk)
    except OSError as e:
        raise ImageError(f"cannot read the oxen-storage binary {binary}: {e}") from None
    return h.hexdigest()


def oxen_storage_image_tag(binary_sha256: str) -> str:
    """The content-addressed tag for a binary (sha256 hex) on the run-time packages."""
    h = hashlib.sha256("\n".join([
        f"recipe {RECIPE_VERSION}", f"binary {binary_sha256}",
        f"packages {' '.join(RUNTIME_PACKAGES)}", f"entrypoint {ENTRYPOINT}",
        f"dockerfile {DOCKERFILE_OFFLINE}", f"dh {FFDHE2048_PEM.decode()}"]).encode()).hexdigest()
    return f"{OXEN_STORAGE_REPOSITORY}:{h[:12]}"


def _add(tar: tarfile.TarFile, name: str, data: bytes, mode: int) -> None:
    ti = tarfile.TarInfo(name)
    ti.size, ti.mode, ti.mtime = len(data), mode, _CONTEXT_MTIME
    ti.uid = ti.gid = 0
    ti.uname = ti.gname = "root"
    tar.addfile(ti, io.BytesIO(data))


def _context(binary: Path, dockerfile: str, out: IO[bytes]) -> None:
    with tarfile.open(fileobj=out, mode="w") as tar:
        _add(tar, "Dockerfile", dockerfile.encode(), 0o644)
        _add(tar, "dh.pem", FFDHE2048_PEM, 0o644)
        _add(tar, "entrypoint.sh", ENTRYPOINT.encode(), 0o755)
        _add(tar, "oxen-storage", binary.read_bytes(), 0o755)


def _choose_base(client: docker.DockerClient, progress: Progress, cache: Path) -> tuple[str, str]:
    """(base image, Dockerfile): the local base with the packages (mmdebstrap), else the
    registry's Debian with apt-get in the build."""
    if shutil.which("mmdebstrap") is not None:
        return (ensure_local_base(client, progress, cache, packages=RUNTIME_PACKAGES, cmd=None),
                DOCKERFILE_OFFLINE)
    progress(f"mmdebstrap is not installed: trying {REGISTRY_BASE} and apt-get in the build")
    if get_image(client, REGISTRY_BASE) is not None or try_pull(client, REGISTRY_BASE, progress):
        return REGISTRY_BASE, DOCKERFILE_APT
    raise ImageError(
        f"no base for the oxen-storage image: mmdebstrap is not installed (it makes a Debian base "
        f"with the run-time packages offline: 'apt-get install mmdebstrap') and {REGISTRY_BASE} "
        "is neither present nor pullable")


def _build(client: docker.DockerClient, tag: str, base: str, dockerfile: str, binary: Path,
           progress: Progress) -> None:
    log: list[str] = []
    offline = dockerfile == DOCKERFILE_OFFLINE
    with tempfile.TemporaryFile() as ctx:
        _context(binary, dockerfile, ctx)
        ctx.seek(0)
        progress(f"building {tag} from {base}")
        try:
            with api_timeout(client, 900):
                for chunk in client.api.build(
                        fileobj=ctx, custom_context=True, tag=tag, buildargs={"BASE_IMAGE": base},
                        rm=True, forcerm=True, pull=False,
                        network_mode="none" if offline else None, decode=True):
                    if "error" in chunk:
                        raise ImageError(f"building {tag} failed: {chunk['error'].strip()}\n"
                                         "Build output (last lines):\n" + "\n".join(log[-20:]))
                    log += [ln.rstrip() for ln in chunk.get("stream", "").splitlines() if ln.strip()]
        except docker.errors.APIError as e:
            raise ImageError(f"building {tag} failed: {e.explanation or e}") from None
    if get_image(client, tag) is None:
        raise ImageError(f"building {tag} finished without an image; output:\n" + "\n".join(log[-20:]))


def ensure_oxen_storage_image(client: docker.DockerClient, binary: Path | str, *,
                              progress: Progress | None = None, force: bool = False,
                              cache_dir: Path | None = None) -> OxenStorageImage:
    """Return the image running ``binary``, building it if its content-addressed tag is
    missing (or always with ``force``). Safe to call from several processes at once."""
    report = progress or quiet
    binary = Path(binary)
    if not binary.is_file():
        raise ImageError(f"no oxen-storage binary at {binary}: give the path of the server "
                         "(e.g. ../shared/real-storage-server/bin/oxen-storage)")
    digest = binary_digest(binary)
    tag = oxen_storage_image_tag(digest)
    try:
        img = get_image(client, tag)
        if img is not None and not force:
            return OxenStorageImage(tag, str(img.labels.get("session-testnet.base", "")), digest)
        cache = cache_dir or cache_home()
        with file_lock(cache / "images.lock"):
            img = get_image(client, tag)
            if img is not None and not force:
                return OxenStorageImage(tag, str(img.labels.get("session-testnet.base", "")), digest)
            t0 = time.monotonic()
            report(f"oxen-storage image {tag}: not present, building it (binary sha256 {digest[:12]})")
            base, dockerfile = _choose_base(client, report, cache)
            _build(client, tag, base, dockerfile, binary, report)
            size = float(client.images.get(tag).attrs.get("Size") or 0) / 1e6
            report(f"oxen-storage image {tag}: built in {time.monotonic() - t0:.1f}s ({size:.0f} MB)")
            return OxenStorageImage(tag, base, digest, built=True)
    except (docker.errors.DockerException, requests.exceptions.RequestException) as e:
        raise ImageError(f"Docker engine error while preparing {tag}: {e}. Is the engine "
                         "running and reachable (DOCKER_HOST, 'docker info')?") from e


__all__ = ["BASE_REPOSITORY", "BINARY_IN_IMAGE", "DATA_DIR", "OXEN_STORAGE_REPOSITORY",
           "RUNTIME_PACKAGES", "OxenStorageImage", "ensure_oxen_storage_image",
           "oxen_storage_image_tag"]
