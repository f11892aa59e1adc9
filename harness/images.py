"""Container images of the testnet: the node image and the choice of a Toxiproxy image.

One image runs everything inside a docker testnet (``python -m nodes.seed``, ``nodes.snode``,
``nodes.toxiproxy``). :func:`ensure_images` returns it, building it only when needed:

1. The tag is content-addressed: ``session-testnet/node:<hash12>``, where the hash covers every
   source file under ``nodes/``, :data:`NODE_REQUIREMENTS`, ``docker/Dockerfile`` and the
   requested base image. When that tag exists the call returns at once (one API call).
2. Otherwise a base is chosen: the requested base image (``python:3.11-slim`` unless
   ``SESSION_TESTNET_BASE_IMAGE``/``BASE_IMAGE`` or the ``base_image`` argument say otherwise)
   if it is present locally or can be pulled; else a local Debian base
   ``session-testnet/base:<suite>-<hash12>`` is made once with ``mmdebstrap`` from the host's
   apt sources and imported through the Docker API (for engines without any registry).
3. The node dependencies are downloaded on the host as wheels for the base's Python, libc and
   architecture (``pip download --only-binary=:all:``) into a cache folder, so that the image
   build itself needs no network (``pip install --no-index``, build network ``none``).
4. The image is built through the Docker API from a build context holding only the Dockerfile,
   the wheels and ``nodes/`` (never ``harness/``).

Nothing here runs the ``docker`` CLI. The only external program is ``mmdebstrap`` (installed by
``scripts/setup.sh``), and only when no base image can be had otherwise.
"""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import hashlib
import io
import json
import os
import re
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import docker.errors  # also binds `docker` (a plain `import docker` is misfiled by isort next to docker/)
import requests.exceptions
from docker.utils import parse_repository_tag

#: What the node image installs: the runtime dependencies of ``nodes/`` (the one place they are
#: listed; pyproject.toml points here).
NODE_REQUIREMENTS: tuple[str, ...] = (
    "aiohttp>=3.9",
    "pynacl>=1.5",
    "cryptography>=42",
    "protobuf>=4.25",
)

DEFAULT_BASE_IMAGE = "python:3.11-slim"
NODE_REPOSITORY = "session-testnet/node"
#: moving tag of the node image last returned by ensure_images (used by compose/default.yml)
NODE_LATEST = f"{NODE_REPOSITORY}:latest"
BASE_REPOSITORY = "session-testnet/base"
TOXIPROXY_REPOSITORY = "ghcr.io/shopify/toxiproxy"
TOXIPROXY_TAG = "2.12.0"
#: image label: "node" or "base"
IMAGE_LABEL = "session-testnet.image"
#: Debian packages of the local base (mmdebstrap ``--variant=essential`` plus these)
BASE_PACKAGES: tuple[str, ...] = ("python3", "python3-venv", "iproute2", "ca-certificates", "passwd")
#: bump when the build recipe in this module changes in a way the hashed inputs do not show
RECIPE_VERSION = "1"
#: how many node images (other than the current one) to keep when a new one is built
KEEP_OLD_NODE_IMAGES = 3

PROJECT_ROOT = Path(__file__).resolve().parents[1]
NODES_DIR = PROJECT_ROOT / "nodes"
DOCKERFILE = PROJECT_ROOT / "docker" / "Dockerfile"

#: fixed metadata for build-context entries, so identical content gives identical layers
_CONTEXT_MTIME = 1_700_000_000
_IGNORED_DIRS = {"__pycache__", ".pytest_cache", ".mypy_cache", ".ruff_cache"}
_IGNORED_SUFFIXES = (".pyc", ".pyo", ".swp", "~")

Progress = Callable[[str], None]


class ImageError(RuntimeError):
    """An image could not be found or built; the message says what failed and what to do."""


@dataclass(frozen=True)
class PythonInfo:
    """The interpreter of a base image, as far as choosing wheels is concerned."""

    version: str  #: "3.11"
    libc: str  #: "glibc" or "musl"
    libc_version: str  #: "2.36"
    machine: str  #: "x86_64", "aarch64"

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


# -- small helpers ------------------------------------------------------------------------------

def _quiet(_msg: str) -> None:
    pass


def requested_base_image(base_image: str | None = None) -> str:
    """The base image asked for: the argument, else ``$SESSION_TESTNET_BASE_IMAGE``, else
    ``$BASE_IMAGE``, else ``python:3.11-slim``."""
    return (base_image or os.environ.get("SESSION_TESTNET_BASE_IMAGE")
            or os.environ.get("BASE_IMAGE") or DEFAULT_BASE_IMAGE)


def cache_home() -> Path:
    """Where wheels and the base-image recipe output are cached: ``$SESSION_TESTNET_CACHE``,
    else ``$XDG_CACHE_HOME/session-testnet``, else ``~/.cache/session-testnet``."""
    env = os.environ.get("SESSION_TESTNET_CACHE")
    if env:
        return Path(env)
    xdg = os.environ.get("XDG_CACHE_HOME")
    return (Path(xdg) if xdg else Path.home() / ".cache") / "session-testnet"


@contextlib.contextmanager
def _file_lock(path: Path) -> Iterator[None]:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


@contextlib.contextmanager
def _api_timeout(client: docker.DockerClient, seconds: float) -> Iterator[None]:
    """Temporarily change the socket timeout of the client's API calls (pulls must fail fast,
    builds may be silent for longer than the default 60 s)."""
    old = client.api.timeout
    client.api.timeout = seconds
    try:
        yield
    finally:
        client.api.timeout = old


def _image(client: docker.DockerClient, ref: str) -> Any | None:
    try:
        return client.images.get(ref)
    except docker.errors.ImageNotFound:
        return None


def _node_files() -> list[tuple[str, Path]]:
    """(path in the build context, file) for every source file of ``nodes/``, sorted."""
    if not NODES_DIR.is_dir():
        raise ImageError(f"{NODES_DIR} not found: the node image is built from a source checkout "
                         "(install the project with 'pip install -e .')")
    out = []
    for dirpath, dirnames, filenames in os.walk(NODES_DIR):
        dirnames[:] = sorted(d for d in dirnames if d not in _IGNORED_DIRS and not d.startswith("."))
        for fn in filenames:
            if fn.startswith(".") or fn.endswith(_IGNORED_SUFFIXES):
                continue
            p = Path(dirpath) / fn
            out.append(("nodes/" + p.relative_to(NODES_DIR).as_posix(), p))
    return sorted(out)


def _dockerfile() -> bytes:
    try:
        return DOCKERFILE.read_bytes()
    except FileNotFoundError:
        raise ImageError(f"{DOCKERFILE} not found: run from a source checkout of session-testnet "
                         "(pip install -e .)") from None


def context_hash(base_image: str | None = None) -> str:
    """sha256 (hex) over everything that goes into the node image."""
    h = hashlib.sha256()
    h.update(f"recipe {RECIPE_VERSION}\nbase {requested_base_image(base_image)}\n".encode())
    for req in NODE_REQUIREMENTS:
        h.update(f"requirement {req}\n".encode())
    df = _dockerfile()
    h.update(f"dockerfile {len(df)}\n".encode() + df)
    for arcname, path in _node_files():
        data = path.read_bytes()
        h.update(f"file {arcname} {len(data)}\n".encode() + data)
    return h.hexdigest()


def node_image_tag(base_image: str | None = None) -> str:
    """The content-addressed tag of the node image for the current source tree."""
    return f"{NODE_REPOSITORY}:{context_hash(base_image)[:12]}"


# -- pulling --------------------------------------------------------------------------------------

def try_pull(client: docker.DockerClient, ref: str, progress: Progress = _quiet,
             timeout: float | None = None) -> bool:
    """Pull ``ref``; return False (after reporting why) when no registry can provide it. The
    socket timeout (``$SESSION_TESTNET_PULL_TIMEOUT``, default 30 s) bounds every silence, so an
    unreachable registry fails fast while a slow but progressing pull goes on."""
    if timeout is None:
        timeout = float(os.environ.get("SESSION_TESTNET_PULL_TIMEOUT", "30"))
    repo, tag = parse_repository_tag(ref)
    last = 0.0
    try:
        with _api_timeout(client, timeout):
            for ev in client.api.pull(repo, tag=tag or "latest", stream=True, decode=True):
                if "error" in ev:
                    progress(f"pull {ref}: {ev['error']}")
                    return False
                now = time.monotonic()
                if now - last > 5 and ev.get("status"):
                    progress(f"pull {ref}: {ev['status']} {ev.get('progress', '')}".rstrip())
                    last = now
    except (docker.errors.APIError, requests.exceptions.RequestException) as e:
        reason = getattr(e, "explanation", None) or str(e)
        progress(f"pull {ref}: not available ({str(reason).splitlines()[0][:200]})")
        return False
    return _image(client, ref) is not None


# -- the local Debian base ------------------------------------------------------------------------

def _os_release() -> dict[str, str]:
    out = {}
    try:
        text = Path("/etc/os-release").read_text()
    except OSError:
        return out
    for line in text.splitlines():
        k, sep, v = line.partition("=")
        if sep:
            out[k.strip()] = v.strip().strip('"')
    return out


def debian_suite() -> str:
    """The Debian suite of the local base: ``$SESSION_TESTNET_DEBIAN_SUITE``, else the host's
    codename when the host runs Debian, else ``bookworm`` (Python 3.11)."""
    env = os.environ.get("SESSION_TESTNET_DEBIAN_SUITE")
    if env:
        return env
    osr = _os_release()
    if osr.get("ID") == "debian" and osr.get("VERSION_CODENAME"):
        return osr["VERSION_CODENAME"]
    return "bookworm"


def _deb822_stanzas(text: str) -> list[dict[str, str]]:
    stanzas, cur, key = [], {}, None
    for line in text.splitlines():
        if line.startswith("#"):
            continue
        if not line.strip():
            if cur:
                stanzas.append(cur)
            cur, key = {}, None
        elif line[0] in " \t" and key:
            cur[key] += "\n" + line.strip()
        else:
            k, _, v = line.partition(":")
            key = k.strip().lower()
            cur[key] = v.strip()
    if cur:
        stanzas.append(cur)
    return stanzas


def host_debian_sources(suite: str, root: Path = Path("/")) -> list[str]:
    """One-line apt entries (``deb [signed-by=…] URI SUITE COMPONENTS``) of the host's apt
    sources that serve Debian ``suite`` (its -updates and -security too) with ``main``.

    Third-party repositories (other suites, no ``main`` component) are left out. An empty list
    means mmdebstrap's default mirror is used.
    """
    wanted = {suite, f"{suite}-updates", f"{suite}-security"}
    entries: list[tuple[str, str, list[str], str | None]] = []
    apt = root / "etc" / "apt"
    files = [apt / "sources.list"] + sorted((apt / "sources.list.d").glob("*"))
    for f in files:
        if not f.is_file():
            continue
        try:
            text = f.read_text()
        except OSError:
            continue
        if f.name.endswith(".list"):
            for line in text.splitlines():
                line = line.split("#", 1)[0].strip()
                m = re.match(r"^deb\s+(?:\[([^\]]*)\]\s+)?(\S+)\s+(\S+)\s+(.*)$", line)
                if not m:
                    continue
                opts = dict(o.split("=", 1) for o in (m.group(1) or "").split() if "=" in o)
                entries.append((m.group(2), m.group(3), m.group(4).split(), opts.get("signed-by")))
        elif f.name.endswith(".sources"):
            for st in _deb822_stanzas(text):
                if st.get("enabled", "yes").lower() == "no" or "deb" not in st.get("types", "").split():
                    continue
                signed = st.get("signed-by")
                if signed and "\n" in signed:  # an inline key: let mmdebstrap use its keyrings
                    signed = None
                for uri in st.get("uris", "").split():
                    for s in st.get("suites", "").split():
                        entries.append((uri, s, st.get("components", "").split(), signed))
    out = []
    for uri, s, comps, signed in entries:
        if s not in wanted or "main" not in comps:
            continue
        opt = f"[signed-by={signed}] " if signed and Path(signed).exists() else ""
        line = f"deb {opt}{uri} {s} {' '.join(comps)}"
        if line not in out:
            out.append(line)
    return out


def local_base_tag(suite: str | None = None) -> str:
    suite = suite or debian_suite()
    h = hashlib.sha256(f"recipe {RECIPE_VERSION}\nsuite {suite}\n"
                       f"packages {' '.join(BASE_PACKAGES)}\n".encode()).hexdigest()
    return f"{BASE_REPOSITORY}:{suite}-{h[:12]}"


def _mmdebstrap_argv(exe: str, suite: str, target: Path, mirrors: list[str]) -> list[str]:
    argv = [exe, "--variant=essential", "--include=" + ",".join(BASE_PACKAGES),
            "--format=tar", "--skip=output/dev"]
    hook = Path("/usr/share/mmdebstrap/hooks/maybe-merged-usr")
    if hook.is_dir():  # a merged /usr without the usrmerge package (and its perl)
        argv.append(f"--hook-dir={hook}")
    for pattern in ("/usr/share/man/*", "/usr/share/doc/*", "/usr/share/info/*",
                    "/usr/share/locale/*", "/usr/share/lintian/*"):
        argv.append(f"--dpkgopt=path-exclude={pattern}")
    argv.append("--dpkgopt=path-include=/usr/share/doc/*/copyright")
    return argv + [suite, str(target), *mirrors]


def ensure_local_base(client: docker.DockerClient, progress: Progress = _quiet,
                      cache_dir: Path | None = None) -> str:
    """Return the tag of the local Debian base, making it once with mmdebstrap if missing."""
    suite = debian_suite()
    tag = local_base_tag(suite)
    if _image(client, tag) is not None:
        progress(f"local base {tag}: present")
        return tag
    exe = shutil.which("mmdebstrap")
    if exe is None:
        raise ImageError(
            f"no base image: {requested_base_image()} is neither present nor pullable, and "
            "mmdebstrap (which makes a local Debian base) is not installed: run scripts/setup.sh "
            "(it installs mmdebstrap), or load a python:3.11-slim image into the engine, or set "
            "SESSION_TESTNET_BASE_IMAGE to a local image with python3 (3.11) and python3-venv"
        )
    cache = cache_dir or cache_home()
    cache.mkdir(parents=True, exist_ok=True)
    mirrors = host_debian_sources(suite)
    progress(f"local base {tag}: running mmdebstrap ({suite}, "
             f"{len(mirrors) or 'default'} apt source(s)); takes about 20-60 s")
    t0 = time.monotonic()
    with tempfile.TemporaryDirectory(dir=cache, prefix="base-") as tmp:
        target = Path(tmp) / "rootfs.tar"
        argv = _mmdebstrap_argv(exe, suite, target, mirrors)
        tail: list[str] = []
        proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                                stdin=subprocess.DEVNULL, text=True, errors="replace")
        assert proc.stderr is not None
        for line in proc.stderr:
            line = line.rstrip()
            tail = (tail + [line])[-25:]
            if line.startswith("I: ") and not line.startswith("I: running"):
                progress(f"mmdebstrap: {line[3:]}")
        rc = proc.wait()
        if rc != 0 or not target.exists():
            raise ImageError(
                f"mmdebstrap failed (exit {rc}) making the local base for {suite}. "
                "It needs root or unprivileged user namespaces (see 'man mmdebstrap', MODES) and "
                "the Debian mirror of the host's apt sources. Command: " + " ".join(argv)
                + "\nLast output:\n" + "\n".join(tail)
            )
        progress(f"local base: rootfs of {target.stat().st_size / 1e6:.0f} MB made in "
                 f"{time.monotonic() - t0:.0f}s; importing it")
        repo, tag_part = parse_repository_tag(tag)
        changes = [
            "ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
            "ENV LANG=C.UTF-8",
            'CMD ["python3"]',
            f"LABEL {IMAGE_LABEL}=base",
            f"LABEL session-testnet.suite={suite}",
        ]
        with _api_timeout(client, 600):
            answer = client.api.import_image_from_file(str(target), repository=repo, tag=tag_part,
                                                       changes=changes)
    for line in str(answer).splitlines():
        with contextlib.suppress(ValueError):
            msg = json.loads(line)
            if isinstance(msg, dict) and msg.get("error"):
                raise ImageError(f"importing the local base {tag} failed: {msg['error']}")
    if _image(client, tag) is None:
        raise ImageError(f"importing the local base {tag} failed: the engine answered {answer!r}")
    progress(f"local base {tag}: ready ({time.monotonic() - t0:.0f}s)")
    return tag


def choose_base(client: docker.DockerClient, base_image: str | None = None,
                progress: Progress = _quiet, cache_dir: Path | None = None) -> str:
    """The base to build the node image on: the requested one if present or pullable, else the
    local Debian base (made once)."""
    ref = requested_base_image(base_image)
    if _image(client, ref) is not None:
        progress(f"base image {ref}: present")
        return ref
    progress(f"base image {ref}: not present, trying to pull it")
    if try_pull(client, ref, progress):
        progress(f"base image {ref}: pulled")
        return ref
    progress(f"base image {ref}: unavailable (no registry?); using a local Debian base")
    return ensure_local_base(client, progress, cache_dir)


# -- wheels ---------------------------------------------------------------------------------------

_PROBE = ("import json, platform, sys; lib = platform.libc_ver(); "
          "print(json.dumps({'version': '%d.%d' % sys.version_info[:2], "
          "'libc': 'glibc' if lib[0] == 'glibc' else 'musl', 'libc_version': lib[1], "
          "'machine': platform.machine()}))")


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


def wheel_dir(info: PythonInfo, cache_dir: Path | None = None) -> Path:
    req_hash = hashlib.sha256("\n".join(NODE_REQUIREMENTS).encode()).hexdigest()[:12]
    plat = info.platforms()[0]
    return (cache_dir or cache_home()) / "wheels" / f"{info.cp_tag}-{plat}-{req_hash}"


def prepare_wheels(info: PythonInfo, progress: Progress = _quiet,
                   cache_dir: Path | None = None) -> Path:
    """Download (once) wheels of :data:`NODE_REQUIREMENTS` and their dependencies for the
    interpreter ``info``; return the folder (with a ``requirements.txt``)."""
    dest = wheel_dir(info, cache_dir)
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
        argv += list(NODE_REQUIREMENTS)
        res = subprocess.run(argv, capture_output=True, text=True, stdin=subprocess.DEVNULL)
        if res.returncode != 0:
            tail = "\n".join((res.stdout + res.stderr).strip().splitlines()[-15:])
            raise ImageError(
                "downloading wheels for the node image failed (pip download). The host needs "
                "PyPI, a mirror (PIP_INDEX_URL) or a wheelhouse (PIP_FIND_LINKS) with wheels for "
                f"Python {info.version} on {info.platforms()[0]}. pip said:\n{tail}"
            )
        (tmp / "requirements.txt").write_text("\n".join(NODE_REQUIREMENTS) + "\n")
        (tmp / ".complete").write_text(json.dumps(info.__dict__) + "\n")
        if dest.exists():  # an incomplete leftover
            shutil.rmtree(dest)
        os.replace(tmp, dest)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    wheels = sorted(p.name for p in dest.glob("*.whl"))
    progress(f"wheels: {len(wheels)} wheels in {time.monotonic() - t0:.1f}s")
    return dest


# -- the node image -------------------------------------------------------------------------------

def _add_bytes(tar: tarfile.TarFile, name: str, data: bytes, mode: int = 0o644) -> None:
    ti = tarfile.TarInfo(name)
    ti.size = len(data)
    ti.mode = mode
    ti.mtime = _CONTEXT_MTIME
    ti.uid = ti.gid = 0
    ti.uname = ti.gname = "root"
    tar.addfile(ti, io.BytesIO(data))


def build_context(wheels: Path, out: Any) -> None:
    """Write the build context (Dockerfile, wheels/, nodes/) as an uncompressed tar to ``out``."""
    with tarfile.open(fileobj=out, mode="w") as tar:
        _add_bytes(tar, "Dockerfile", _dockerfile())
        for p in sorted(wheels.iterdir()):
            if p.suffix == ".whl" or p.name == "requirements.txt":
                _add_bytes(tar, f"wheels/{p.name}", p.read_bytes())
        for arcname, path in _node_files():
            _add_bytes(tar, arcname, path.read_bytes())


def _build(client: docker.DockerClient, tag: str, base: str, wheels: Path, progress: Progress,
           nocache: bool) -> str:
    # labels (session-testnet.image=node, .base) are set in the Dockerfile: the API's `labels`
    # parameter would add one uncached build step per label
    log: list[str] = []
    image_id = None
    with tempfile.TemporaryFile() as ctx:
        build_context(wheels, ctx)
        ctx.seek(0)
        progress(f"building {tag} from {base}")
        try:
            with _api_timeout(client, 900):
                stream = client.api.build(
                    fileobj=ctx, custom_context=True, tag=tag, buildargs={"BASE_IMAGE": base},
                    rm=True, forcerm=True, pull=False, nocache=nocache,
                    network_mode="none", decode=True,
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
    img = _image(client, tag)
    if img is None:
        raise ImageError(f"building {tag} finished without an image (id {image_id}); "
                         "output:\n" + "\n".join(log[-20:]))
    return img.id


def _tag_latest(img: Any) -> None:
    if NODE_LATEST not in img.tags:
        img.tag(NODE_REPOSITORY, "latest")


def _prune_old_node_images(client: docker.DockerClient, keep: str, progress: Progress) -> None:
    """Remove node images older than the newest few (never one a container still uses)."""
    images = client.images.list(name=NODE_REPOSITORY, filters={"label": f"{IMAGE_LABEL}=node"})
    images.sort(key=lambda i: i.attrs.get("Created", ""), reverse=True)
    old = [i for i in images if keep not in i.tags][KEEP_OLD_NODE_IMAGES:]
    for img in old:
        for t in img.tags:
            try:
                client.images.remove(t)
                progress(f"removed old node image {t}")
            except docker.errors.APIError:
                pass  # still used by a container, or removed meanwhile


def ensure_images(client: docker.DockerClient, *, progress: Progress | None = None,
                  force: bool = False, base_image: str | None = None,
                  cache_dir: Path | None = None) -> ImageSet:
    """Return the node image for the current source tree, building it if it does not exist
    (or always with ``force``). Safe to call from several processes at once."""
    report = progress or _quiet
    tag = node_image_tag(base_image)
    try:
        if not force:
            img = _image(client, tag)
            if img is not None:
                _tag_latest(img)
                return ImageSet(node=tag, node_id=img.id,
                                base=img.labels.get("session-testnet.base", ""), built=False)
        cache = cache_dir or cache_home()
        with _file_lock(cache / "images.lock"):
            if not force:  # another process may have built it while we waited for the lock
                img = _image(client, tag)
                if img is not None:
                    _tag_latest(img)
                    return ImageSet(node=tag, node_id=img.id,
                                    base=img.labels.get("session-testnet.base", ""), built=False)
            t0 = time.monotonic()
            report(f"node image {tag}: not present, building it")
            base = choose_base(client, base_image, report, cache)
            info = python_info(client, base)
            wheels = prepare_wheels(info, report, cache)
            image_id = _build(client, tag, base, wheels, report, nocache=force)
            size = (_image(client, tag).attrs.get("Size") or 0) / 1e6  # type: ignore[union-attr]
            report(f"node image {tag}: built in {time.monotonic() - t0:.1f}s ({size:.0f} MB)")
            _tag_latest(client.images.get(tag))
            _prune_old_node_images(client, tag, report)
            return ImageSet(node=tag, node_id=image_id, base=base, built=True)
    except (docker.errors.DockerException, requests.exceptions.RequestException) as e:
        raise ImageError(f"Docker engine error while preparing {tag}: {e}. Is the engine "
                         "running and reachable (DOCKER_HOST, 'docker info')?") from e


def toxiproxy_image(client: docker.DockerClient, *, pull: bool = True,
                    progress: Progress | None = None) -> str | None:
    """The official Toxiproxy 2.x image if it is present (or pullable), else None: then the node
    image runs ``python -m nodes.toxiproxy``, which speaks the same API.

    ``$SESSION_TESTNET_TOXIPROXY_IMAGE`` overrides the image looked for.
    """
    report = progress or _quiet
    wanted = os.environ.get("SESSION_TESTNET_TOXIPROXY_IMAGE", f"{TOXIPROXY_REPOSITORY}:{TOXIPROXY_TAG}")
    if _image(client, wanted) is not None:
        return wanted
    repo, _ = parse_repository_tag(wanted)
    candidates = []
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


# -- command line ---------------------------------------------------------------------------------

def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m harness.images",
                                description="Build or inspect the session-testnet node image.")
    sub = p.add_subparsers(dest="cmd", required=True)
    b = sub.add_parser("build", help="build the node image if needed and print its tag")
    b.add_argument("--force", action="store_true", help="rebuild even if the tag exists")
    b.add_argument("--base", help=f"base image (default {DEFAULT_BASE_IMAGE}, or local Debian)")
    sub.add_parser("tag", help="print the tag the current source tree builds to")
    sub.add_parser("toxiproxy", help="print the Toxiproxy image to use (empty: nodes.toxiproxy)")
    args = p.parse_args(argv)
    if args.cmd == "tag":
        print(node_image_tag())
        return 0

    def report(msg: str) -> None:
        print(msg, file=sys.stderr, flush=True)

    client = docker.from_env()
    try:
        if args.cmd == "toxiproxy":
            print(toxiproxy_image(client, progress=report) or "")
            return 0
        images = ensure_images(client, progress=report, force=args.force, base_image=args.base)
    except ImageError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    finally:
        client.close()
    print(images.node)
    return 0


if __name__ == "__main__":
    sys.exit(main())
