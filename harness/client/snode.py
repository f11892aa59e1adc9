"""A service node as the client knows it (from the seed's node list or a ``get_swarm`` answer)."""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from typing import Any, TypeGuard

from nodes.protocol.onion import OnionHop
from nodes.protocol.swarm import UNASSIGNED_SWARM


def _is_hex(s: Any, n: int) -> TypeGuard[str]:
    if not isinstance(s, str) or len(s) != n:
        return False
    try:
        bytes.fromhex(s)
    except ValueError:
        return False
    return True


@dataclass(frozen=True)
class Snode:
    """Identity and address of one service node (hashable; equality by every field)."""

    ed25519: str  # hex
    x25519: str  # hex
    ip: str
    port: int
    swarm_id: int | None = None

    @property
    def short(self) -> str:
        """Last 8 hex characters of the Ed25519 key (session-desktop logs ``(...xxxxxx)``)."""
        return f"…{self.ed25519[-8:]}"

    @property
    def url(self) -> str:
        return f"https://{self.ip}:{self.port}"

    @property
    def subnet24(self) -> str:
        """The /24 network of an IPv4 address (``a.b.c``); the address itself otherwise."""
        try:
            addr = ipaddress.ip_address(self.ip)
        except ValueError:
            return self.ip
        if isinstance(addr, ipaddress.IPv4Address):
            return ".".join(self.ip.split(".")[:3])
        return str(ipaddress.ip_network(f"{self.ip}/64", strict=False))

    def hop(self) -> OnionHop:
        return OnionHop.from_hex(self.ed25519, self.x25519)

    def ref(self) -> dict[str, Any]:
        """What operation records keep of a node."""
        return {"ip": self.ip, "port": self.port, "ed25519": self.ed25519}

    def __str__(self) -> str:
        return f"{self.ip}:{self.port} ({self.short})"

    # -- parsing -------------------------------------------------------------------------------
    @classmethod
    def from_seed_entry(cls, entry: Any) -> Snode | None:
        """A ``service_node_states`` entry of ``get_n_service_nodes``; None if unusable
        (no address, bad keys), as session-desktop skips such entries."""
        if not isinstance(entry, dict):
            return None
        ip = entry.get("public_ip")
        port = entry.get("storage_port")
        swarm = entry.get("swarm_id")
        if isinstance(swarm, bool) or not isinstance(swarm, int) or swarm == UNASSIGNED_SWARM:
            swarm = None
        return cls._checked(entry, ip, port, swarm)

    @classmethod
    def from_swarm_entry(cls, entry: Any, swarm_id: int | None = None) -> Snode | None:
        """A ``snodes`` entry of ``get_swarm`` / a 421 body (``ip``, ``port_https``, keys)."""
        if not isinstance(entry, dict):
            return None
        ip = entry.get("ip") or entry.get("public_ip")
        port = entry.get("port_https", entry.get("storage_port"))
        if port is None:
            port = entry.get("port")
        if isinstance(port, str) and port.isdigit():
            port = int(port)
        return cls._checked(entry, ip, port, swarm_id)

    @classmethod
    def _checked(cls, entry: dict[str, Any], ip: Any, port: Any, swarm_id: int | None) -> Snode | None:
        """The Snode of an entry's address and keys; None when one of them is unusable."""
        ed = entry.get("pubkey_ed25519")
        x = entry.get("pubkey_x25519")
        if not isinstance(ip, str) or not ip or ip == "0.0.0.0":
            return None
        if isinstance(port, bool) or not isinstance(port, int) or not 0 < port < 65536:
            return None
        if not _is_hex(ed, 64) or not _is_hex(x, 64):
            return None
        return cls(ed25519=ed.lower(), x25519=x.lower(), ip=ip, port=port, swarm_id=swarm_id)


def parse_swarm_body(body: Any) -> tuple[int | None, list[Snode]]:
    """(swarm id, members) of a ``get_swarm`` answer or a 421 body; ([] if it holds none)."""
    if not isinstance(body, dict):
        return None, []
    swarm_id: int | None = None
    raw_id = body.get("swarm")
    if isinstance(raw_id, str):
        try:
            swarm_id = int(raw_id, 16)
        except ValueError:
            swarm_id = None
    elif isinstance(raw_id, int) and not isinstance(raw_id, bool):
        swarm_id = raw_id
    snodes = body.get("snodes")
    if not isinstance(snodes, list):
        return swarm_id, []
    members: list[Snode] = []
    seen: set[str] = set()
    for entry in snodes:
        node = Snode.from_swarm_entry(entry, swarm_id)
        if node is not None and node.ed25519 not in seen:
            seen.add(node.ed25519)
            members.append(node)
    return swarm_id, members


@dataclass
class SwarmEntry:
    """An account's swarm as a client caches it."""

    swarm_id: int | None
    members: list[Snode]
    fetched_at: float
    fetched_size: int
    #: the swarm as the network reported it (before dropping nodes we struck out)
    reported: list[Snode]
