"""What the seed knows of one registered node (:class:`NodeRecord`), shared by the registry
(which keeps them) and the listing (which answers ``get_service_nodes`` from them)."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from nodes.protocol.swarm import UNASSIGNED_SWARM

# how a node shows it is alive: signed HTTP proofs (our nodes) or its OxenMQ contact with the
# seed as its oxend (real storage servers; see nodes.seed.omq and docs/nodes.md)
LIVENESS_PROOF = "proof"
LIVENESS_OXENMQ = "oxenmq"


@dataclass
class NodeRecord:
    pubkey_ed25519: str
    pubkey_x25519: str
    public_ip: str
    storage_port: int
    storage_lmq_port: int
    admin_port: int
    version: tuple[int, int, int]
    registration_height: int
    state_height: int
    last_proof: float  # clock() seconds of the last accepted proof
    proof_timestamp_ms: int  # the `timestamp` the node put in that proof
    active: bool = True
    swarm_id: int = UNASSIGNED_SWARM
    decommission_count: int = 0
    liveness: str = LIVENESS_PROOF

    @property
    def status(self) -> str:
        return "active" if self.active else "decommissioned"

    def to_json(self) -> dict[str, Any]:
        d = asdict(self)
        d["version"] = list(self.version)
        return d

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> NodeRecord:
        d = dict(d)
        d["version"] = tuple(int(x) for x in d["version"])
        return cls(**d)
