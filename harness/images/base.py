"""The base image the node image is built on: the requested one (``python:3.11-slim`` unless
``SESSION_TESTNET_BASE_IMAGE``/``BASE_IMAGE`` or an argument say otherwise) if it is present
locally or can be pulled, else a local Debian base ``session-testnet/base:<suite>-<hash12>``
bootstrapped once with ``mmdebstrap`` from the host's apt sources and imported through the
Docker API (for engines without any registry).

The only external program of the image modules is ``mmdebstrap`` (installed by
``scripts/setup.sh``), and only when no base image can be had otherwise.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

import docker.errors  # also binds `docker`
import requests.exceptions
from docker.utils import parse_repository_tag

from harness.images.engine import (
    IMAGE_LABEL,
    RECIPE_VERSION,
    ImageError,
    Progress,
    api_timeout,
    cache_home,
    get_image,
    quiet,
)

DEFAULT_BASE_IMAGE = "python:3.11-slim"
BASE_REPOSITORY = "session-testnet/base"
#: Debian packages of the local base (mmdebstrap ``--variant=essential`` plus these)
#: (libstdc++6: the pyzmq wheel of the seed links it)
BASE_PACKAGES: tuple[str, ...] = ("python3", "python3-venv", "iproute2", "ca-certificates", "passwd",
                                  "libstdc++6")


def requested_base_image(base_image: str | None = None) -> str:
    """The base image asked for: the argument, else ``$SESSION_TESTNET_BASE_IMAGE``, else
    ``$BASE_IMAGE``, else ``python:3.11-slim``."""
    return (base_image or os.environ.get("SESSION_TESTNET_BASE_IMAGE")
            or os.environ.get("BASE_IMAGE") or DEFAULT_BASE_IMAGE)



# -- pulling --------------------------------------------------------------------------------------

def try_pull(client: docker.DockerClient, ref: str, progress: Progress = quiet,
             timeout: float | None = None) -> bool:
    """Pull ``ref``; return False (after reporting why) when no registry can provide it. The
    socket timeout (``$SESSION_TESTNET_PULL_TIMEOUT``, default 30 s) bounds every silence, so an
    unreachable registry fails fast while a slow but progressing pull goes on."""
    if timeout is None:
        timeout = float(os.environ.get("SESSION_TESTNET_PULL_TIMEOUT", "30"))
    repo, tag = parse_repository_tag(ref)
    last = 0.0
    try:
        with api_timeout(client, timeout):
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
    return get_image(client, ref) is not None


# -- the local Debian base ------------------------------------------------------------------------

def _os_release() -> dict[str, str]:
    out: dict[str, str] = {}
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
    stanzas: list[dict[str, str]] = []
    cur: dict[str, str] = {}
    key: str | None = None
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


def local_base_tag(suite: str | None = None,
                   packages: tuple[str, ...] = BASE_PACKAGES) -> str:
    """``session-testnet/base:<suite>-<hash12>``, the hash over the suite and ``packages``."""
    suite = suite or debian_suite()
    h = hashlib.sha256(f"recipe {RECIPE_VERSION}\nsuite {suite}\n"
                       f"packages {' '.join(packages)}\n".encode()).hexdigest()
    return f"{BASE_REPOSITORY}:{suite}-{h[:12]}"


def _mmdebstrap_argv(exe: str, suite: str, target: Path, mirrors: list[str],
                     packages: tuple[str, ...] = BASE_PACKAGES) -> list[str]:
    argv = [exe, "--variant=essential", "--include=" + ",".join(packages),
            "--format=tar", "--skip=output/dev"]
    hook = Path("/usr/share/mmdebstrap/hooks/maybe-merged-usr")
    if hook.is_dir():  # a merged /usr without the usrmerge package (and its perl)
        argv.append(f"--hook-dir={hook}")
    for pattern in ("/usr/share/man/*", "/usr/share/doc/*", "/usr/share/info/*",
                    "/usr/share/locale/*", "/usr/share/lintian/*"):
        argv.append(f"--dpkgopt=path-exclude={pattern}")
    argv.append("--dpkgopt=path-include=/usr/share/doc/*/copyright")
    return argv + [suite, str(target), *mirrors]


def ensure_local_base(client: docker.DockerClient, progress: Progress = quiet,
                      cache_dir: Path | None = None, packages: tuple[str, ...] = BASE_PACKAGES,
                      cmd: str | None = "python3") -> str:
    """Return the tag of the local Debian base with ``packages`` (default: the node image's),
    making it once with mmdebstrap if missing; ``cmd`` is its default command."""
    suite = debian_suite()
    tag = local_base_tag(suite, packages)
    if get_image(client, tag) is not None:
        progress(f"local base {tag}: present")
        return tag
    exe = shutil.which("mmdebstrap")
    if exe is None:
        raise ImageError(
            f"no base image: {requested_base_image()} is neither present nor pullable, and "
            "mmdebstrap (which makes a local Debian base) is not installed: install it "
            "('apt-get install mmdebstrap'; scripts/setup.sh of a checkout does), or load a "
            "python:3.11-slim image into the engine, or set SESSION_TESTNET_BASE_IMAGE to a local "
            "image with python3 (3.11) and python3-venv"
        )
    cache = cache_dir or cache_home()
    cache.mkdir(parents=True, exist_ok=True)
    mirrors = host_debian_sources(suite)
    progress(f"local base {tag}: running mmdebstrap ({suite}, "
             f"{len(mirrors) or 'default'} apt source(s)); takes about 20-60 s")
    t0 = time.monotonic()
    with tempfile.TemporaryDirectory(dir=cache, prefix="base-") as tmp:
        target = Path(tmp) / "rootfs.tar"
        argv = _mmdebstrap_argv(exe, suite, target, mirrors, packages)
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
            f"LABEL {IMAGE_LABEL}=base",
            f"LABEL session-testnet.suite={suite}",
        ] + ([f'CMD ["{cmd}"]'] if cmd else [])
        with api_timeout(client, 600):
            answer = client.api.import_image_from_file(str(target), repository=repo, tag=tag_part,
                                                       changes=changes)
    for line in str(answer).splitlines():
        with contextlib.suppress(ValueError):
            msg = json.loads(line)
            if isinstance(msg, dict) and msg.get("error"):
                raise ImageError(f"importing the local base {tag} failed: {msg['error']}")
    if get_image(client, tag) is None:
        raise ImageError(f"importing the local base {tag} failed: the engine answered {answer!r}")
    progress(f"local base {tag}: ready ({time.monotonic() - t0:.0f}s)")
    return tag


def choose_base(client: docker.DockerClient, base_image: str | None = None,
                progress: Progress = quiet, cache_dir: Path | None = None) -> str:
    """The base to build the node image on: the requested one if present or pullable, else the
    local Debian base (made once)."""
    ref = requested_base_image(base_image)
    if get_image(client, ref) is not None:
        progress(f"base image {ref}: present")
        return ref
    progress(f"base image {ref}: not present, trying to pull it")
    if try_pull(client, ref, progress):
        progress(f"base image {ref}: pulled")
        return ref
    progress(f"base image {ref}: unavailable (no registry?); using a local Debian base")
    return ensure_local_base(client, progress, cache_dir)

