"""The spec of a testnet: how many swarms and nodes, which seed, which timings.

A :class:`Topology` is pure data. Everything random in a testnet (node keys, block hashes and so
the swarm layout, fault schedules) derives from ``seed``, so two testnets with the same topology
have the same keys and the same initial swarms.
"""

from __future__ import annotations

import os
import re
import secrets
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import Any

from harness import nodekinds
from harness.jsonfile import load_json
from nodes.protocol.keys import Identity, derive_seed

NAME_RE = re.compile(r"^[a-z0-9][a-z0-9_-]{0,30}$")
#: the file server's runtime name (logs, churn and fault targets, its Toxiproxy proxy)
FILESERVER_NAME = "fileserver"


class TopologyError(ValueError):
    """A topology spec is invalid; the message says which field and why."""


#: a git revision as a node group names it (``3:python@REF``): no whitespace, no leading '-'
#: (it goes to ``git rev-parse`` as an argument), no ':' or '=' (the group syntax's separators)
REF_RE = re.compile(r"^[A-Za-z0-9_.~^/@{}+-]{1,200}$")
#: a group's host placement: a label KEY=VALUE of swarm nodes (letters, digits, ._-)
PLACEMENT_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,62}=[A-Za-z0-9_.-]{1,63}")


@dataclass(frozen=True)
class NodeGroup:
    """``count`` nodes of one implementation (:mod:`harness.nodekinds`).

    ``path``: the program of kinds that take one (``oxen-storage``: the server binary,
    ``command``: the user's node program; made absolute here so that later commands, run from
    elsewhere, find it), or the image of ``image`` nodes. ``ref``: for ``python`` nodes, a git
    revision of this project to run instead of the installed one (``3:python@HEAD~5``; pinned to
    its commit when the testnet starts). ``has_admin``: for the user's own nodes (``command``,
    ``image``), whether they serve the testnet admin interface (docs/nodes.md)."""

    count: int
    kind: str = nodekinds.DEFAULT_KIND
    path: str | None = None
    ref: str | None = None
    has_admin: bool | None = None
    #: where the group's nodes run on a multi-host backend (``swarm``): ``KEY=VALUE``, a label
    #: of the hosts they may run on (e.g. ``region=eu``: placement constraint
    #: ``node.labels.region==eu``); None: anywhere. Other backends run every node on one host.
    placement: str | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.count, int) or self.count < 1:
            raise TopologyError(f"node group {self.spec()!r}: count must be an integer >= 1")
        if self.kind not in nodekinds.KIND_NAMES:
            raise TopologyError(f"node group {self.spec()!r}: unknown kind {self.kind!r}; "
                                f"choose one of {', '.join(nodekinds.KIND_NAMES)}")
        if self.path is None and self.kind in nodekinds.PATH_ENV:
            object.__setattr__(self, "path", os.environ.get(nodekinds.PATH_ENV[self.kind]) or None)
        if self.path is not None and self.kind not in nodekinds.KINDS_WITH_PATH:
            raise TopologyError(f"node group {self.spec()!r}: kind {self.kind!r} takes no path")
        if self.path is None and self.kind in nodekinds.KINDS_NEEDING_PATH:
            raise TopologyError(f"node group {self.spec()!r}: kind {self.kind!r} needs "
                                f"{nodekinds.KINDS_NEEDING_PATH[self.kind]} "
                                f"('N:{self.kind}=…', or \"path\" in a topology file)")
        if self.path is not None and self.kind in nodekinds.KINDS_WITH_FILE_PATH:
            object.__setattr__(self, "path", os.path.abspath(os.path.expanduser(self.path)))
        if self.ref is not None:
            if self.kind != nodekinds.PYTHON:
                raise TopologyError(f"node group {self.spec()!r}: only python nodes run a git "
                                    f"revision ('N:python@REF'), not {self.kind!r} nodes")
            if not isinstance(self.ref, str) or not REF_RE.match(self.ref) or self.ref.startswith("-"):
                raise TopologyError(f"node group {self.spec()!r}: {self.ref!r} is not a git "
                                    "revision (a commit, branch, tag or e.g. HEAD~5)")
        if self.placement is not None and (not isinstance(self.placement, str)
                                           or not PLACEMENT_RE.fullmatch(self.placement)):
            raise TopologyError(f"node group {self.spec()!r}: placement must be KEY=VALUE, a "
                                f"label of the hosts its nodes run on (e.g. region=eu), not "
                                f"{self.placement!r}")
        if self.has_admin is not None:
            if self.kind not in nodekinds.KINDS_DECLARING_ADMIN:
                raise TopologyError(f"node group {self.spec()!r}: has_admin is declared for the "
                                    f"user's own nodes ({', '.join(sorted(nodekinds.KINDS_DECLARING_ADMIN))}) "
                                    f"only; {self.kind!r} nodes have a fixed interface")
            if not isinstance(self.has_admin, bool):
                raise TopologyError(f"node group {self.spec()!r}: has_admin must be true or false")

    def spec(self) -> str:
        return (f"{self.count}:{self.kind}" + (f"@{self.ref}" if self.ref else "")
                + (f"={self.path}" if self.path else ""))

    @classmethod
    def parse(cls, spec: str) -> NodeGroup:
        """``N``, ``N:KIND``, ``N:KIND=PATH`` or ``N:python@REF`` (as ``testnet up --nodes``
        takes it)."""
        count_s, _, rest = spec.partition(":")
        kind_ref, _, path = rest.partition("=")
        kind, _, ref = kind_ref.partition("@")
        try:
            count = int(count_s)
        except ValueError:
            raise TopologyError(f"node group {spec!r}: expected N, N:KIND, N:KIND=PATH or "
                                f"N:python@REF (e.g. 12:oxen-storage=./oxen-storage, "
                                f"3:python@HEAD~5)") from None
        if "@" in kind_ref and not ref:
            raise TopologyError(f"node group {spec!r}: '@' must be followed by a git revision")
        return cls(count=count, kind=kind or nodekinds.DEFAULT_KIND, path=path or None,
                   ref=ref or None)


@dataclass(frozen=True)
class Topology:
    name: str = "default"
    swarms: int = 2
    swarm_size: int = 3
    #: fixes every key, the swarm layout and fault schedules; random per testnet unless given
    seed: str = field(default_factory=lambda: secrets.token_hex(8))
    #: swarm-assignment constants (oxen-core's MIN_SWARM_SIZE, NEW_SWARM_SIZE,
    #: IDEAL_SWARM_MARGIN); None means "derived from swarm_size" (min = new = swarm_size,
    #: margin 0), which makes ``swarms * swarm_size`` nodes settle into exactly ``swarms`` swarms.
    min_swarm_size: int | None = None
    new_swarm_size: int | None = None
    ideal_swarm_margin: int = 0
    block_interval: float = 1.0
    proof_interval: float = 1.0
    proof_timeout: float = 6.0
    poll_interval: float = 1.0
    #: per-client-IP request rate limit on every node (requests/s); 0 = off
    rate_limit: float = 0.0
    #: put a Toxiproxy proxy in front of every node's storage port (needed for network faults)
    proxies: bool = True
    #: run the testnet's file server (docs/fileserver.md)
    fileserver: bool = True
    #: node groups, each with its implementation, numbered in order (sn01… for the first group);
    #: empty: ``swarms * swarm_size`` of our python nodes. With groups, ``swarms`` must be
    #: ``node_count // swarm_size`` (``from_dict`` fills it in when absent)
    nodes: tuple[NodeGroup, ...] = ()
    extra: dict[str, Any] = field(default_factory=dict, compare=False)

    def __post_init__(self) -> None:
        if not NAME_RE.match(self.name):
            raise TopologyError(
                f"name {self.name!r} is invalid: use 1-31 characters of a-z, 0-9, '-' or '_', "
                "starting with a letter or digit"
            )
        if self.swarms < 1:
            raise TopologyError(f"swarms must be >= 1, got {self.swarms}")
        if self.swarm_size < 1:
            raise TopologyError(f"swarm_size must be >= 1, got {self.swarm_size}")
        if self.node_count > 250:
            raise TopologyError(f"{self.node_count} nodes is more than the 250 a testnet supports")
        for name in ("block_interval", "proof_interval", "proof_timeout", "poll_interval"):
            if getattr(self, name) <= 0:
                raise TopologyError(f"{name} must be > 0, got {getattr(self, name)}")
        if self.proof_timeout <= self.proof_interval:
            raise TopologyError(
                f"proof_timeout ({self.proof_timeout}s) must exceed proof_interval "
                f"({self.proof_interval}s), or healthy nodes would be deregistered"
            )
        if self.rate_limit < 0:
            raise TopologyError(f"rate_limit must be >= 0, got {self.rate_limit}")
        if self.effective_min_swarm_size < 1 or self.effective_new_swarm_size < 1:
            raise TopologyError("min_swarm_size and new_swarm_size must be >= 1")
        if self.ideal_swarm_margin < 0:
            raise TopologyError("ideal_swarm_margin must be >= 0")
        self._check_groups()

    def _check_groups(self) -> None:
        if not self.nodes:
            return
        if not all(isinstance(g, NodeGroup) for g in self.nodes):
            raise TopologyError("nodes must be NodeGroup entries (use Topology.from_dict for JSON)")
        want = max(1, self.node_count // self.swarm_size)
        if self.swarms != want:
            raise TopologyError(f"{self.node_count} nodes in swarms of {self.swarm_size} make "
                                f"{want} swarm(s), not swarms={self.swarms}: leave swarms out or "
                                f"set it to {want}")
        kinds = {g.kind for g in self.nodes}
        real = kinds & nodekinds.KINDS_OVER_OXENMQ
        if real and kinds - real:
            raise TopologyError(
                f"a testnet cannot mix {', '.join(sorted(kinds - real))} nodes with "
                f"{', '.join(sorted(real))} nodes yet: "
                "node-to-node traffic of the real server (OxenMQ sn.*) is not implemented by ours "
                "(docs/nodes.md); use one kind")
        if real and self.node_count < nodekinds.MIN_NODES_WITH_REAL:
            raise TopologyError(
                f"a testnet with {', '.join(sorted(real))} nodes needs at least "
                f"{nodekinds.MIN_NODES_WITH_REAL} nodes, got {self.node_count}: with fewer the real "
                "server asks hard-coded public seed nodes, and no traffic may leave the machine")

    @property
    def node_count(self) -> int:
        if self.nodes:
            return sum(g.count for g in self.nodes)
        return self.swarms * self.swarm_size

    def node_group(self, name: str) -> NodeGroup:
        """The group node ``name`` belongs to (nodes beyond the groups, e.g. joined later, are
        of the last group's kind)."""
        if not self.nodes:
            return NodeGroup(count=self.node_count)
        i = node_index(name)
        for g in self.nodes:
            if i <= g.count:
                return g
            i -= g.count
        return self.nodes[-1]

    @property
    def kinds(self) -> list[str]:
        return sorted({g.kind for g in self.nodes} or {nodekinds.DEFAULT_KIND})

    @property
    def effective_min_swarm_size(self) -> int:
        return self.min_swarm_size if self.min_swarm_size is not None else self.swarm_size

    @property
    def effective_new_swarm_size(self) -> int:
        return self.new_swarm_size if self.new_swarm_size is not None else self.swarm_size

    def node_names(self, count: int | None = None, start: int = 1) -> list[str]:
        n = self.node_count if count is None else count
        return [node_name(i) for i in range(start, start + n)]

    def node_identity(self, name: str) -> Identity:
        """The deterministic key of node ``name`` in this testnet (the file server's for
        ``fileserver``)."""
        if name == FILESERVER_NAME:
            return self.fileserver_identity()
        return Identity.from_seed(derive_seed(self.seed, "node", name))

    def fileserver_identity(self) -> Identity:
        """The file server's key: ``derive_seed(seed, "fileserver", "fileserver")`` is its
        Ed25519 seed; its X25519 form encrypts onion requests to it."""
        return Identity.from_seed(derive_seed(self.seed, "fileserver", FILESERVER_NAME))

    def with_name(self, name: str) -> Topology:
        return replace(self, name=name)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Topology:
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise TopologyError(f"unknown topology field(s): {', '.join(unknown)}; known: {sorted(known)}")
        data = dict(data)
        if data.get("nodes"):
            data["nodes"] = tuple(_group(g) for g in data["nodes"])
            if "swarms" not in data:
                count = sum(g.count for g in data["nodes"])
                data["swarms"] = max(1, count // int(data.get("swarm_size", cls.swarm_size)))
        else:
            data.pop("nodes", None)
        try:
            return cls(**data)
        except TypeError as e:  # wrong types reach dataclass checks as TypeError
            raise TopologyError(f"invalid topology: {e}") from e

    @classmethod
    def load(cls, path: str | Path) -> Topology:
        p = Path(path)
        data = load_json(p, "topology", TopologyError)
        if not isinstance(data, dict):
            raise TopologyError(f"topology file {p} must hold a JSON object")
        return cls.from_dict(data)


def _group(entry: Any) -> NodeGroup:
    """A node group from JSON: ``{"count", "kind", "path", "ref", "has_admin", "placement"}`` or the CLI
    string ``N:KIND=PATH`` / ``N:python@REF``."""
    if isinstance(entry, NodeGroup):
        return entry
    if isinstance(entry, str):
        return NodeGroup.parse(entry)
    if isinstance(entry, dict):
        known = {f.name for f in fields(NodeGroup)}
        unknown = sorted(set(entry) - known)
        if unknown or "count" not in entry:
            raise TopologyError(f"node group {entry!r}: expected fields {', '.join(sorted(known))} "
                                f"(count required; unknown: {unknown})")
        return NodeGroup(**entry)
    raise TopologyError(f"node group {entry!r}: expected an object or 'N:KIND=PATH'")


def node_name(index: int) -> str:
    """Node names are sn01, sn02, …: stable, sortable, short."""
    return f"sn{index:02d}"


def node_index(name: str) -> int:
    m = re.fullmatch(r"sn(\d+)", name)
    if not m:
        raise TopologyError(f"{name!r} is not a node name (expected snNN)")
    return int(m.group(1))
