"""Other revisions of this project's own node, for testnets that run two versions side by side
(``--nodes 3:python@REF``; protocol-change rollouts).

A revision is taken from the git repository of the checkout the harness runs from (or
``$SESSION_TESTNET_REPO``): :func:`resolve` pins a ref to its commit, :func:`extract` writes
``git archive COMMIT nodes`` once into ``<state home>/revisions/<commit>/`` (the process
backend runs it from there with ``PYTHONPATH`` pointing at it; the docker backend builds its
image from it, :mod:`harness.images.revision`), and :func:`check_contract` refuses a revision
that predates what the harness hands our node today (command-line flags, environment
variables, the requirements file the image needs), naming the ref and what is missing.
"""

from __future__ import annotations

import io
import json
import os
import re
import shutil
import subprocess
import sys
import tarfile
import tempfile
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from harness.nodekinds.base import NodeKindError
from harness.nodekinds.names import PYTHON_ARGV_FLAGS as ARGV_FLAGS
from harness.nodekinds.names import PYTHON_ENV_NAMES as ENV_NAMES
from harness.state import state_home

#: where the harness's checkout is found when ``$SESSION_TESTNET_REPO`` is not set
ENV_REPO = "SESSION_TESTNET_REPO"
#: the node package a revision must hold
NODE_PACKAGE = "nodes"
#: the node dependencies file the image recipe installs from (added with the images package)
REQUIREMENTS = "nodes/requirements.txt"
#: a marker written after a complete extraction, holding the checked contract
CONTRACT_FILE = ".contract.json"
_COMMIT_RE = re.compile(r"^[0-9a-f]{40}$")


@dataclass(frozen=True)
class Revision:
    """One extracted revision: ``root`` holds its ``nodes/`` package."""

    ref: str
    commit: str
    root: Path

    @property
    def short(self) -> str:
        return self.commit[:12]


def repo_root() -> Path:
    """The git work tree the harness is imported from (or ``$SESSION_TESTNET_REPO``)."""
    env = os.environ.get(ENV_REPO)
    start = Path(env) if env else Path(__file__).resolve().parents[2]
    try:
        out = subprocess.run(["git", "-C", str(start), "rev-parse", "--show-toplevel"],
                             capture_output=True, text=True, timeout=30, check=True)
    except FileNotFoundError:
        raise NodeKindError("nodes of another revision ('N:python@REF') need git: install it") from None
    except subprocess.CalledProcessError:
        raise NodeKindError(
            f"nodes of another revision ('N:python@REF') are taken from a git checkout of "
            f"session-testnet, but {start} is not in one: run from a checkout or set "
            f"${ENV_REPO} to one") from None
    return Path(out.stdout.strip())


def _git(repo: Path, *args: str) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(["git", "-C", str(repo), *args], capture_output=True, timeout=120,
                          check=False)


def resolve(ref: str, repo: Path | None = None) -> str:
    """The full commit hash ``ref`` names in ``repo`` (the harness's checkout by default)."""
    repo = repo or repo_root()
    if ref.startswith("-"):
        raise NodeKindError(f"{ref!r} is not a git revision")
    res = _git(repo, "rev-parse", "--verify", "--quiet", f"{ref}^{{commit}}")
    commit = res.stdout.decode().strip()
    if res.returncode != 0 or not _COMMIT_RE.match(commit):
        raise NodeKindError(f"revision {ref!r} is not a commit of {repo} (git rev-parse found "
                            "nothing): give a commit, branch or tag of that repository "
                            "(git log --oneline)")
    return commit


def revisions_home() -> Path:
    return state_home() / "revisions"


def extract(ref: str, commit: str, repo: Path | None = None) -> Revision:
    """The revision ``commit`` (named ``ref`` by the user), extracted once into
    ``<state home>/revisions/<commit>/`` (atomically: a half-written copy is never used)."""
    if not _COMMIT_RE.match(commit):
        raise NodeKindError(f"revision {ref!r}: {commit!r} is not a full commit hash")
    dest = revisions_home() / commit
    if (dest / CONTRACT_FILE).exists():
        return Revision(ref, commit, dest)
    repo = repo or repo_root()
    res = _git(repo, "archive", "--format=tar", commit, "--", NODE_PACKAGE)
    if res.returncode != 0:
        why = res.stderr.decode(errors="replace").strip()
        if "pathspec" in why or "did not match" in why:
            raise NodeKindError(f"revision {ref!r} ({commit[:12]}) has no {NODE_PACKAGE}/ package: "
                                "it predates the node; choose a later revision")
        raise NodeKindError(f"git archive of revision {ref!r} ({commit[:12]}) in {repo} failed: {why}")
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=dest.parent, prefix=f".{commit[:12]}-"))
    try:
        with tarfile.open(fileobj=io.BytesIO(res.stdout), mode="r:") as tar:
            tar.extractall(tmp, filter="data")
        contract = check_contract(Revision(ref, commit, tmp))
        (tmp / CONTRACT_FILE).write_text(json.dumps(contract, indent=1) + "\n")
        try:
            os.replace(tmp, dest)
        except OSError:  # another process put it there first
            if not (dest / CONTRACT_FILE).exists():
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return Revision(ref, commit, dest)


def _help_flags(rev: Revision) -> set[str]:
    """The options ``python -m nodes.snode --help`` of the revision lists."""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env["PYTHONPATH"] = str(rev.root)
    try:
        res = subprocess.run([sys.executable, "-m", "nodes.snode", "--help"], capture_output=True,
                             text=True, env=env, cwd=rev.root, timeout=60, check=False)
    except subprocess.TimeoutExpired:
        raise NodeKindError(f"revision {rev.ref!r} ({rev.short}): 'python -m nodes.snode --help' "
                            "did not finish in 60 s") from None
    if res.returncode != 0:
        tail = "\n".join((res.stdout + res.stderr).strip().splitlines()[-8:])
        raise NodeKindError(f"revision {rev.ref!r} ({rev.short}): its node does not start "
                            f"('python -m nodes.snode --help' exited {res.returncode}):\n{tail}")
    return set(re.findall(r"(?<![\w-])(--[a-z][a-z0-9-]*)", res.stdout))


def _sources_mention(rev: Revision, names: Iterable[str]) -> set[str]:
    """Which of ``names`` occur in the revision's node sources."""
    left = set(names)
    found: set[str] = set()
    for path in (rev.root / NODE_PACKAGE).rglob("*.py"):
        text = path.read_text(errors="replace")
        for name in list(left):
            if name in text:
                found.add(name)
                left.discard(name)
        if not left:
            break
    return found


def takes_flag(rev: Revision, flag: str) -> bool:
    """Whether the revision's node has the command-line option ``flag`` (for options the
    harness passes only where they exist, e.g. ``--forward-allow``, newer than the contract)."""
    return flag in _sources_mention(rev, [flag])


def check_contract(rev: Revision) -> dict[str, object]:
    """Raise :class:`NodeKindError` naming the ref and what is missing unless the revision's
    node takes what the harness hands our python node (``PYTHON_ARGV_FLAGS`` and
    ``PYTHON_ENV_NAMES`` in :mod:`harness.nodekinds.names`) and holds the requirements file its image installs; return what was
    checked."""
    if not (rev.root / NODE_PACKAGE / "snode").is_dir():
        raise NodeKindError(f"revision {rev.ref!r} ({rev.short}) has no nodes/snode package: it "
                            "predates our storage node; choose a later revision")
    problems = []
    flags = _help_flags(rev)
    missing_flags = sorted(set(ARGV_FLAGS) - flags)
    if missing_flags:
        problems.append(f"its node lacks the command-line flags {', '.join(missing_flags)}")
    missing_env = sorted(set(ENV_NAMES) - _sources_mention(rev, ENV_NAMES))
    if missing_env:
        problems.append(f"its node never reads the environment variables "
                        f"{', '.join(missing_env)} (secrets through the environment, the join "
                        "token)")
    has_requirements = (rev.root / REQUIREMENTS).is_file()
    if problems:
        raise NodeKindError(
            f"revision {rev.ref!r} ({rev.short}) predates the node contract this harness uses: "
            + "; ".join(problems) + ". Choose a later revision (git log -- nodes/)")
    return {"commit": rev.commit, "flags": sorted(flags), "requirements": has_requirements}


def require_requirements(rev: Revision) -> None:
    """The docker backend's image installs ``nodes/requirements.txt`` of the revision."""
    if not (rev.root / REQUIREMENTS).is_file():
        raise NodeKindError(
            f"revision {rev.ref!r} ({rev.short}) has no {REQUIREMENTS} (it predates the images "
            "package), so its node image cannot be built offline: use the process backend or a "
            "later revision")


def pinned(ref: str) -> Revision:
    """``ref`` resolved and extracted (the usual entry)."""
    commit = ref if _COMMIT_RE.match(ref) else resolve(ref)
    return extract(ref, commit)
