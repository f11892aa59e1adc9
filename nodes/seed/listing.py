"""oxend ``get_service_nodes`` request parsing (shared by the JSON-RPC and the OxenMQ front ends).

Testnet extension (our nodes' idle polling, docs/DESIGN.md "Seed"): ``poll_nodes_hash`` (a
string, ``""`` on a first poll) asks for the digest of the listed nodes, ``nodes_hash`` in the
result; when it equals the digest of the listing the seed would send now, the result is
``{"unchanged": true, "nodes_hash", "height", "block_hash", …}`` without nodes. So a node polls
every second but fetches the whole list only when a node it lists changed: the idle traffic of
n nodes grows as n, not n². Only for a full listing (no ``limit``) without
``last_uptime_proof`` (it changes with every proof); otherwise the key is ignored.

Facts mirrored from oxend (``core_rpc_server_commands_defs.h``, ``GET_SERVICE_NODES``): ``fields``
is a list of names (``"all"`` = everything, ``"-name"`` removes a name after ``"all"``) or the
deprecated dict ``{"name": true}`` (``"all": true`` = everything); no/empty fields = all.
"""

from __future__ import annotations

import hashlib
import json
import random
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from nodes.common.values import is_int

from .records import NodeRecord

# the per-node fields this seed can produce (the order is the order in the JSON object)
NODE_FIELDS = (
    "service_node_pubkey", "registration_height", "registration_hf_version",
    "requested_unlock_height", "active", "funded", "state_height", "decommission_count",
    "swarm_id", "swarm", "last_uptime_proof", "storage_server_version", "public_ip",
    "storage_port", "storage_lmq_port", "pubkey_ed25519", "pubkey_x25519",
)




class InvalidParams(ValueError):
    """Bad JSON-RPC params (JSON-RPC error -32602)."""


def parse_fields(raw: Any) -> set[str]:
    """oxend's `fields` parsing; the empty set means "all fields"."""
    if raw is None:
        return set()
    if isinstance(raw, dict):
        out: set[str] = set()
        for k, v in raw.items():
            if not isinstance(v, bool):
                raise InvalidParams(f"`fields` dict values must be true/false, got {k!r}: {v!r}")
            if v:
                if k == "all":
                    return set()
                out.add(k)
        return out
    if isinstance(raw, list):
        if not all(isinstance(x, str) for x in raw):
            raise InvalidParams("`fields` list must contain only field-name strings")
        out = set(raw)
        return set() if out == {"all"} else out
    raise InvalidParams(f"`fields` must be a list of names or a {{name: true}} dict, got {type(raw).__name__}")


def requested(fields: set[str], key: str) -> bool:
    if not fields:
        return True
    if "all" in fields:
        return f"-{key}" not in fields
    return key in fields


@dataclass(frozen=True)
class ListingParams:
    """Validated ``get_service_nodes`` params."""

    fields: set[str]
    active_only: bool
    limit: int
    pubkeys: frozenset[str] | None  # service_node_pubkeys filter, lower-case hex
    poll_block_hash: str | None
    #: the testnet's ``poll_nodes_hash`` (None: not asked for)
    poll_nodes_hash: str | None = None

    @property
    def hashable(self) -> bool:
        """The listing may be answered by its digest (``poll_nodes_hash``): a full listing whose
        fields change only with the seed's revision."""
        return (self.poll_nodes_hash is not None and self.limit == 0
                and not requested(self.fields, "last_uptime_proof"))

    @classmethod
    def parse(cls, params: Any) -> ListingParams:
        """Raises InvalidParams for malformed params."""
        if params is None:
            params = {}
        if not isinstance(params, dict):
            raise InvalidParams("params must be an object, e.g. {\"active_only\": true, \"fields\": [...]}")
        fields = parse_fields(params.get("fields"))
        active_only = params.get("active_only", False)
        if not isinstance(active_only, bool):
            raise InvalidParams(f"`active_only` must be true/false, got {active_only!r}")
        limit = params.get("limit", 0)
        if not is_int(limit):
            raise InvalidParams(f"`limit` must be an integer, got {limit!r}")
        wanted = params.get("service_node_pubkeys")
        pubkeys: frozenset[str] | None = None
        if wanted is not None:
            if not isinstance(wanted, list) or not all(isinstance(k, str) for k in wanted):
                raise InvalidParams("`service_node_pubkeys` must be a list of hex pubkeys")
            pubkeys = frozenset(k.lower() for k in wanted)
        poll = params.get("poll_block_hash")
        if poll is not None and not isinstance(poll, str):
            raise InvalidParams("`poll_block_hash` must be a hex string")
        nodes_hash = params.get("poll_nodes_hash")
        if nodes_hash is not None and not isinstance(nodes_hash, str):
            raise InvalidParams("`poll_nodes_hash` must be a string (\"\" on a first poll)")
        return cls(fields=fields, active_only=active_only, limit=limit, pubkeys=pubkeys,
                   poll_block_hash=poll.lower() if poll else None, poll_nodes_hash=nodes_hash)


def listing_digest(entries: list[dict[str, Any]]) -> str:
    """The ``nodes_hash`` of a listing's node entries (order matters: a full listing is sorted)."""
    return hashlib.sha256(json.dumps(entries, sort_keys=True, separators=(",", ":")).encode()).hexdigest()[:32]


@dataclass
class CachedListing:
    """The entries and digest of one full listing, valid while the seed's revision is ``revision``
    (every change of a listed field but ``last_uptime_proof`` bumps it)."""

    key: tuple[Any, ...]
    entries: list[dict[str, Any]]
    digest: str


def node_entry(node: NodeRecord, fields: set[str], hf_version: int) -> dict[str, Any]:
    """One ``service_node_states`` entry: the requested ``fields`` of ``node``, in
    :data:`NODE_FIELDS` order (``registration_hf_version``: the chain's hardfork)."""
    values: dict[str, Any] = {
        "service_node_pubkey": node.pubkey_ed25519,
        "registration_height": node.registration_height,
        "registration_hf_version": hf_version,
        "requested_unlock_height": 0,
        "active": node.active,
        "funded": True,
        "state_height": node.state_height,
        "decommission_count": node.decommission_count,
        "swarm_id": node.swarm_id,
        "swarm": f"{node.swarm_id:x}",
        "last_uptime_proof": int(node.last_proof),
        "storage_server_version": list(node.version),
        "public_ip": node.public_ip,
        "storage_port": node.storage_port,
        "storage_lmq_port": node.storage_lmq_port,
        "pubkey_ed25519": node.pubkey_ed25519,
        "pubkey_x25519": node.pubkey_x25519,
    }
    return {k: values[k] for k in NODE_FIELDS if requested(fields, k)}


def select_nodes(nodes: Mapping[str, NodeRecord], req: ListingParams, rng: random.Random) -> list[NodeRecord]:
    """The nodes a listing names, as oxend picks them: by pubkey order, only the requested
    ``pubkeys`` and only active ones when asked; with a ``limit``, a random sample of that many
    (shuffled when the limit covers them all)."""
    listed = [nodes[pk] for pk in sorted(nodes)]
    if req.pubkeys is not None:
        listed = [n for n in listed if n.pubkey_ed25519 in req.pubkeys]
    if req.active_only:
        listed = [n for n in listed if n.active]
    limit = req.limit
    if limit < 0 or limit > len(listed) - 1:
        if limit != 0:
            rng.shuffle(listed)
    elif limit > 0:
        listed = rng.sample(listed, limit)
    return listed
