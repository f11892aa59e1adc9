"""The node's view of the network, built from the seed's get_service_nodes result.

An immutable snapshot: the poller replaces it as a whole, so request handlers always see one
consistent map.  Only *active* nodes with an assigned swarm form swarms; every listed node with an
address can be an onion next hop or an authenticated node<->node sender.
"""

from __future__ import annotations

import functools
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from nodes.protocol.keys import SessionID
from nodes.protocol.swarm import UNASSIGNED_SWARM, swarm_for, swarm_space

_B32Z = "ybndrfg8ejkmcpqxot1uwisza345h769"


def base32z(data: bytes) -> str:
    """z-base-32 (oxenc::to_base32z): 5-bit groups, most significant first, zero-padded."""
    bits = int.from_bytes(data, "big")
    nbits = len(data) * 8
    nchars = (nbits + 4) // 5
    bits <<= nchars * 5 - nbits
    return "".join(_B32Z[(bits >> (5 * (nchars - 1 - i))) & 31] for i in range(nchars))


def swarm_id_str(swarm_id: int) -> str:
    """Swarm id as the storage server prints it: lower-case hex, no padding."""
    return format(swarm_id, "x")


@dataclass(frozen=True)
class NodeInfo:
    pubkey_ed25519: str
    pubkey_x25519: str
    pubkey_legacy: str
    public_ip: str
    storage_port: int
    lmq_port: int
    swarm_id: int
    active: bool
    version: tuple[int, ...] = ()

    @property
    def has_address(self) -> bool:
        return bool(self.public_ip) and self.public_ip != "0.0.0.0" and self.storage_port > 0

    def to_swarm_json(self) -> dict[str, Any]:
        legacy = bytes.fromhex(self.pubkey_legacy) if self.pubkey_legacy else b""
        return {
            "address": base32z(legacy) + ".snode",
            "pubkey_legacy": self.pubkey_legacy,
            "pubkey_x25519": self.pubkey_x25519,
            "pubkey_ed25519": self.pubkey_ed25519,
            "port": str(self.storage_port),
            "port_https": self.storage_port,
            "port_omq": self.lmq_port,
            "port_quic": self.lmq_port,
            "ip": self.public_ip,
        }

    @staticmethod
    def from_seed(entry: Mapping[str, Any]) -> NodeInfo:
        ed = str(entry.get("pubkey_ed25519") or "").lower()
        version = entry.get("storage_server_version") or ()
        if isinstance(version, str):
            version = tuple(int(x) for x in version.split(".") if x.isdigit())
        swarm = entry.get("swarm_id")
        return NodeInfo(
            pubkey_ed25519=ed,
            pubkey_x25519=str(entry.get("pubkey_x25519") or "").lower(),
            pubkey_legacy=str(entry.get("service_node_pubkey") or ed).lower(),
            public_ip=str(entry.get("public_ip") or ""),
            storage_port=int(entry.get("storage_port") or 0),
            lmq_port=int(entry.get("storage_lmq_port") or 0),
            swarm_id=int(swarm) if swarm is not None else UNASSIGNED_SWARM,
            active=bool(entry.get("active", True)),
            version=tuple(int(x) for x in version),
        )


@dataclass(frozen=True)
class SwarmView:
    my_pubkey: str
    nodes: Mapping[str, NodeInfo] = field(default_factory=dict)
    swarms: Mapping[int, tuple[str, ...]] = field(default_factory=dict)  # id -> sorted ed25519 hex
    height: int = 0
    block_hash: str = ""

    @staticmethod
    def build(my_pubkey: str, entries: Iterable[Mapping[str, Any]], height: int = 0,
              block_hash: str = "") -> SwarmView:
        nodes: dict[str, NodeInfo] = {}
        swarms: dict[int, list[str]] = {}
        for e in entries:
            n = NodeInfo.from_seed(e)
            if len(n.pubkey_ed25519) != 64:
                continue
            nodes[n.pubkey_ed25519] = n
            if n.active and n.swarm_id != UNASSIGNED_SWARM and n.has_address:
                swarms.setdefault(n.swarm_id, []).append(n.pubkey_ed25519)
        return SwarmView(my_pubkey=my_pubkey, nodes=nodes,
                         swarms={k: tuple(sorted(v)) for k, v in swarms.items()},
                         height=height, block_hash=block_hash)

    # --- me ------------------------------------------------------------------------------------
    @property
    def me(self) -> NodeInfo | None:
        return self.nodes.get(self.my_pubkey)

    @functools.cached_property
    def my_swarm_id(self) -> int | None:
        """(Found once per view: every request asks, through :attr:`ready` and :meth:`peers`.)"""
        for sid, members in self.swarms.items():
            if self.my_pubkey in members:
                return sid
        return None

    @property
    def ready(self) -> bool:
        return self.my_swarm_id is not None

    def not_ready_reason(self) -> str:
        me = self.me
        if not self.nodes:
            return "service node list not yet received from the seed"
        if me is None:
            return "this node is not (yet) registered with the seed"
        if not me.active:
            return "this node is not active (decommissioned)"
        return "this node has not been assigned to a swarm yet"

    def peers(self) -> list[NodeInfo]:
        sid = self.my_swarm_id
        if sid is None:
            return []
        return [self.nodes[pk] for pk in self.swarms[sid] if pk != self.my_pubkey]

    # --- lookups -------------------------------------------------------------------------------
    def find_node(self, ed25519_hex: str) -> NodeInfo | None:
        n = self.nodes.get(ed25519_hex.lower())
        return n if n is not None and n.has_address else None

    def swarm_of(self, pubkey: SessionID | str) -> int | None:
        if not self.swarms:
            return None
        return swarm_for(swarm_space(pubkey), self.swarms.keys())

    def is_mine(self, pubkey: SessionID | str) -> bool:
        mine = self.my_swarm_id
        return mine is not None and self.swarm_of(pubkey) == mine

    def members(self, swarm_id: int) -> list[NodeInfo]:
        return [self.nodes[pk] for pk in self.swarms.get(swarm_id, ())]

    def swarm_json(self, pubkey: SessionID | str) -> dict[str, Any]:
        """get_swarm / 421 body (without t/hf) for the swarm owning `pubkey`."""
        sid = self.swarm_of(pubkey)
        if sid is None:
            return {"snodes": [], "swarm": swarm_id_str(UNASSIGNED_SWARM)}
        return {"snodes": [n.to_swarm_json() for n in self.members(sid)], "swarm": swarm_id_str(sid)}

    def swarm_map(self) -> dict[int, tuple[str, ...]]:
        return dict(self.swarms)
