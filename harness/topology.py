"""The spec of a testnet: how many swarms and nodes, which seed, which timings.

A :class:`Topology` is pure data. Everything random in a testnet (node keys, block hashes and so
the swarm layout, fault schedules) derives from ``seed``, so two testnets with the same topology
have the same keys and the same initial swarms.
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import Any

from harness.jsonfile import load_json
from nodes.protocol.keys import Identity, derive_seed

NAME_RE = re.compile(r"^[a-z0-9][a-z0-9_-]{0,30}$")


class TopologyError(ValueError):
    """A topology spec is invalid; the message says which field and why."""


@dataclass(frozen=True)
class Topology:
    name: str = "default"
    swarms: int = 2
    swarm_size: int = 3
    seed: str = "0"
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

    @property
    def node_count(self) -> int:
        return self.swarms * self.swarm_size

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
        """The deterministic key of node ``name`` in this testnet."""
        return Identity.from_seed(derive_seed(self.seed, "node", name))

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


def node_name(index: int) -> str:
    """Node names are sn01, sn02, …: stable, sortable, short."""
    return f"sn{index:02d}"


def node_index(name: str) -> int:
    m = re.fullmatch(r"sn(\d+)", name)
    if not m:
        raise TopologyError(f"{name!r} is not a node name (expected snNN)")
    return int(m.group(1))
