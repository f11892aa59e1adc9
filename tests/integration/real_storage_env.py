"""Where real-server tests can run: the oxen-storage binary with its libraries, and a
loopback-only network namespace. Each helper skips the calling test with the reason otherwise."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from harness.nodekinds.oxen_storage import ENV_BINARY, RUNTIME_PACKAGES, missing_libraries

ROOT = Path(__file__).resolve().parents[2]
NAMESPACE_OPTIONS = ["--net", "--pid", "--fork", "--kill-child", "--mount-proc"]
# as root; else in a user namespace (unprivileged, e.g. CI runners)
NAMESPACE_CANDIDATES = (["unshare", *NAMESPACE_OPTIONS],
                        ["unshare", "--user", "--map-root-user", *NAMESPACE_OPTIONS])


def find_binary() -> Path:
    """``$SESSION_TESTNET_OXEN_STORAGE``, else ``../shared/real-storage-server/bin/oxen-storage``
    next to the checkout; skip unless it exists and its libraries are installed."""
    given = os.environ.get(ENV_BINARY)
    path = Path(given) if given else ROOT.parent / "shared" / "real-storage-server" / "bin" / "oxen-storage"
    if not path.is_file() or not os.access(path, os.X_OK):
        pytest.skip(f"no real storage server at {path}: set ${ENV_BINARY} to an oxen-storage binary "
                    "(see ../shared/real-storage-server/README.md)")
    missing = missing_libraries(path)
    if missing:
        pkgs = sorted({RUNTIME_PACKAGES.get(lib, f"? ({lib})") for lib in missing})
        pytest.skip(f"{path} cannot run: missing libraries {', '.join(missing)}; install the Debian packages: "
                    f"apt-get install {' '.join(pkgs)}")
    return path


def namespace() -> list[str]:
    """The unshare command line that gives a loopback-only network namespace here (else skip)."""
    if shutil.which("unshare") is None or shutil.which("ip") is None:
        pytest.skip("needs unshare (util-linux) and ip (iproute2) for a loopback-only network namespace")
    errors = []
    for argv in NAMESPACE_CANDIDATES:
        probe = subprocess.run([*argv, "ip", "link", "set", "lo", "up"], capture_output=True, text=True)
        if probe.returncode == 0:
            return argv
        errors.append(probe.stderr.strip())
    pytest.skip(f"cannot create a loopback-only network namespace (needs root or user namespaces): {errors}")
