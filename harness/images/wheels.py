"""The node dependencies as wheels: they are downloaded on the host for the base image's own
Python, libc and architecture (``pip download --only-binary=:all:``) into a cache folder, so
that the image build itself needs no network (``pip install --no-index``, build network
``none``)."""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import docker.errors  # also binds `docker`

from harness.images.engine import IMAGE_LABEL, ImageError, Progress, cache_home, quiet


@dataclass(frozen=True)
class PythonInfo:
    """The interpreter of a base image, as far as choosing wheels is concerned."""

    version: str  #: "3.11"
    libc: str  #: "glibc" or "musl"
    libc_version: str  #: "2.36"
    machine: str  #: "x86_64", "aarch64"
    stdlib: str = ""  #: its standard library's folder, "/usr/local/lib/python3.11"

    @property
    def cp_tag(self) -> str:
        return "cp" + self.version.replace(".", "")

    def platforms(self) -> list[str]:
        """pip ``--platform`` values for wheels this interpreter can load (newest first)."""
        arch = {"amd64": "x86_64", "arm64": "aarch64"}.get(self.machine, self.machine)
        if self.libc == "glibc":
            m = re.match(r"(\d+)\.(\d+)", self.libc_version)
            if not m or m.group(1) != "2":
                raise ImageError(f"unexpected glibc version {self.libc_version!r} in the base image")
            newest = int(m.group(2))
            out = [f"manylinux_2_{minor}_{arch}" for minor in range(newest, 4, -1)]
            out.append(f"manylinux2014_{arch}")
            if arch in ("x86_64", "i686"):
                out += [f"manylinux2010_{arch}", f"manylinux1_{arch}"]
            return out
        return [f"musllinux_1_{minor}_{arch}" for minor in (2, 1)]


_PROBE = ("import json, platform, sys, sysconfig; lib = platform.libc_ver(); "
          "print(json.dumps({'version': '%d.%d' % sys.version_info[:2], "
          "'libc': 'glibc' if lib[0] == 'glibc' else 'musl', 'libc_version': lib[1], "
          "'machine': platform.machine(), 'stdlib': sysconfig.get_paths()['stdlib']}))")


def python_info(client: docker.DockerClient, image: str) -> PythonInfo:
    """Ask the image's own ``python3`` for its version, libc and architecture."""
    try:
        out = client.containers.run(image, ["python3", "-c", _PROBE], remove=True,
                                    network_disabled=True, entrypoint=[], user="0",
                                    labels={IMAGE_LABEL: "probe"})
    except docker.errors.ContainerError as e:
        raise ImageError(f"base image {image} cannot run python3 ({e}); choose a base with "
                         "python3 and python3-venv (SESSION_TESTNET_BASE_IMAGE)") from None
    try:
        data = json.loads(out.decode().strip().splitlines()[-1])
        return PythonInfo(**data)
    except (ValueError, IndexError, TypeError) as e:
        raise ImageError(f"base image {image}: unexpected interpreter probe output {out!r}: {e}") from None


def wheel_dir(info: PythonInfo, requirements: Sequence[str], cache_dir: Path | None = None) -> Path:
    """The cache folder of the wheels of ``requirements`` for the interpreter ``info``."""
    req_hash = hashlib.sha256("\n".join(requirements).encode()).hexdigest()[:12]
    plat = info.platforms()[0]
    return (cache_dir or cache_home()) / "wheels" / f"{info.cp_tag}-{plat}-{req_hash}"


def prepare_wheels(info: PythonInfo, requirements: Sequence[str], progress: Progress = quiet,
                   cache_dir: Path | None = None) -> Path:
    """Download (once) wheels of ``requirements`` and their dependencies for the interpreter
    ``info``; return the folder (with a ``requirements.txt``)."""
    dest = wheel_dir(info, requirements, cache_dir)
    if (dest / ".complete").exists():
        progress(f"wheels: cached in {dest}")
        return dest
    dest.parent.mkdir(parents=True, exist_ok=True)
    progress(f"wheels: downloading the node dependencies for Python {info.version} "
             f"({info.libc} {info.libc_version}, {info.machine})")
    t0 = time.monotonic()
    tmp = Path(tempfile.mkdtemp(dir=dest.parent, prefix=".download-"))
    try:
        argv = [sys.executable, "-m", "pip", "download", "--only-binary=:all:", "--dest", str(tmp),
                "--progress-bar", "off", "--disable-pip-version-check",
                "--python-version", info.version, "--implementation", "cp",
                "--abi", info.cp_tag, "--abi", "abi3", "--abi", "none"]
        for plat in info.platforms():
            argv += ["--platform", plat]
        argv += list(requirements)
        res = subprocess.run(argv, capture_output=True, text=True, stdin=subprocess.DEVNULL)
        if res.returncode != 0:
            tail = "\n".join((res.stdout + res.stderr).strip().splitlines()[-15:])
            raise ImageError(
                "downloading wheels for the node image failed (pip download). The host needs "
                "PyPI, a mirror (PIP_INDEX_URL) or a wheelhouse (PIP_FIND_LINKS) with wheels for "
                f"Python {info.version} on {info.platforms()[0]}. pip said:\n{tail}"
            )
        (tmp / "requirements.txt").write_text("\n".join(requirements) + "\n")
        (tmp / ".complete").write_text(json.dumps(asdict(info)) + "\n")
        if dest.exists():  # an incomplete leftover
            shutil.rmtree(dest)
        os.replace(tmp, dest)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    wheels = sorted(p.name for p in dest.glob("*.whl"))
    progress(f"wheels: {len(wheels)} wheels in {time.monotonic() - t0:.1f}s")
    return dest


