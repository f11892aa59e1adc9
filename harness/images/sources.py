"""What the node image is made of, read from the installed packages (a wheel or a checkout
alike, never through the source tree's layout):

- the ``nodes`` package (its files, found with :mod:`importlib.resources`), which the image runs;
- ``nodes/requirements.txt``, the node dependencies: the one list of them (pyproject.toml reads
  it too, so installing the package installs them);
- the ``Dockerfile`` shipped next to this module as package data.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from importlib.resources import files
from importlib.resources.abc import Traversable

from harness.images.engine import ImageError

#: the node requirements file inside the ``nodes`` package
REQUIREMENTS_FILE = "requirements.txt"

_IGNORED_DIRS = {"__pycache__", ".pytest_cache", ".mypy_cache", ".ruff_cache"}
_IGNORED_SUFFIXES = (".pyc", ".pyo", ".swp", "~")


def parse_requirements(text: str, origin: str = REQUIREMENTS_FILE) -> tuple[str, ...]:
    """The requirements of a requirements file holding only PEP 508 lines (blank lines and
    ``#`` comments allowed, no pip options: pyproject.toml reads the same file)."""
    out = []
    for number, raw in enumerate(text.splitlines(), 1):
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        if line.startswith("-"):
            raise ImageError(f"{origin}, line {number}: {line!r} is a pip option; the file may hold "
                             "only requirements such as 'aiohttp>=3.9'")
        out.append(line)
    return tuple(out)


@dataclass(frozen=True)
class NodeSources:
    """The inputs of the node image: the ``nodes`` package folder and the Dockerfile.

    :meth:`installed` finds both where Python imports them from; tests pass other folders.
    """

    nodes: Traversable
    dockerfile: Traversable

    @classmethod
    def installed(cls) -> NodeSources:
        return cls(nodes=files("nodes"), dockerfile=files("harness.images") / "Dockerfile")

    def dockerfile_bytes(self) -> bytes:
        try:
            return self.dockerfile.read_bytes()
        except FileNotFoundError:
            raise ImageError(f"the node image's Dockerfile ({self.dockerfile}) is missing: the "
                             "session-testnet installation is incomplete; reinstall it "
                             "(pip install --force-reinstall session-testnet)") from None

    def files(self) -> list[tuple[str, Traversable]]:
        """(path in the build context, file) for every source file of ``nodes``, sorted; byte
        code, caches, hidden and editor files are left out."""
        if not self.nodes.is_dir():
            raise ImageError(f"the nodes package ({self.nodes}) is not a folder: install "
                             "session-testnet from a wheel or a checkout (not a zip)")
        out: list[tuple[str, Traversable]] = []

        def walk(folder: Traversable, prefix: str) -> None:
            for entry in folder.iterdir():
                name = entry.name
                if name.startswith("."):
                    continue
                if entry.is_dir():
                    if name not in _IGNORED_DIRS:
                        walk(entry, f"{prefix}{name}/")
                elif not name.endswith(_IGNORED_SUFFIXES):
                    out.append((f"{prefix}{name}", entry))

        walk(self.nodes, "nodes/")
        return sorted(out, key=lambda item: item[0])

    def requirements(self) -> tuple[str, ...]:
        """The node dependencies (``nodes/requirements.txt``)."""
        path = self.nodes / REQUIREMENTS_FILE
        try:
            text = path.read_text()
        except FileNotFoundError:
            raise ImageError(f"{path} is missing: the node dependencies are listed there; "
                             "reinstall session-testnet") from None
        return parse_requirements(text, str(path))

    def digest(self, *extra: str) -> str:
        """sha256 (hex) over the Dockerfile, every file of ``nodes`` (which includes the
        requirements) and the ``extra`` strings (recipe version, base image)."""
        h = hashlib.sha256()
        for item in extra:
            h.update(f"{item}\n".encode())
        df = self.dockerfile_bytes()
        h.update(f"dockerfile {len(df)}\n".encode() + df)
        for arcname, entry in self.files():
            data = entry.read_bytes()
            h.update(f"file {arcname} {len(data)}\n".encode() + data)
        return h.hexdigest()


def node_requirements() -> tuple[str, ...]:
    """The node dependencies of the installed ``nodes`` package."""
    return NodeSources.installed().requirements()
