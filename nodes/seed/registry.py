"""The seed's state machine: node registry, proofs, blocks, swarms, oxend-style listings.

Pure logic (no sockets, no files): every method takes/returns plain data and time comes from the
``clock`` function given to :class:`SeedCore`, so the unit tests drive it with a fake clock.

Facts mirrored from oxend (oxen-core ``core_rpc_server.cpp`` / ``core_rpc_server_commands_defs.h``,
``GET_SERVICE_NODES``):

* method names ``get_service_nodes`` = ``get_n_service_nodes`` = ``get_all_service_nodes``;
* ``fields`` is a list of names (``"all"`` = everything, ``"-name"`` removes a name after ``"all"``)
  or the deprecated dict ``{"name": true}`` (``"all": true`` = everything); no/empty fields = all;
* ``limit`` > 0 → that many random nodes in random order; < 0, or ≥ the node count → all nodes
  shuffled; 0 → all nodes (we sort them by pubkey);
* ``poll_block_hash`` equal to the top block hash → ``{"unchanged": true}`` without nodes;
* per node: ``service_node_pubkey`` (hex), ``active``/``funded`` bools, ``swarm_id`` (u64 number),
  ``swarm`` (``"{:x}"`` of the id), ``storage_server_version`` ``[major, minor, patch]``,
  ``public_ip``, ``storage_port``, ``storage_lmq_port``, ``pubkey_ed25519``, ``pubkey_x25519``,
  ``last_uptime_proof`` (unix seconds), ``registration_height``, ``state_height``, …

Testnet choices (documented deviations): ``height``, ``block_hash`` and ``hardfork`` are always in
the result (oxend includes top-level fields only when requested; extra keys are harmless to
clients); ``service_node_pubkey`` (oxend's "legacy" key) is the node's Ed25519 key.
"""

from __future__ import annotations

import ipaddress
import random
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

from nodes.common.logs import JsonLogger, NullLogger
from nodes.common.proof import proof_message
from nodes.common.values import is_int, parse_hex32
from nodes.protocol.constants import HARDFORK, STORAGE_SERVER_VERSION
from nodes.protocol.keys import derive_seed, ed25519_pk_to_x25519, verify_ed25519
from nodes.protocol.signing import SignatureError, decode_signature
from nodes.protocol.swarm import UNASSIGNED_SWARM, SwarmParams, assign_swarms

from .listing import (
    NODE_FIELDS,
    CachedListing,
    InvalidParams,
    ListingParams,
    listing_digest,
    node_entry,
    parse_fields,
    requested,
    select_nodes,
)
from .records import LIVENESS_OXENMQ, LIVENESS_PROOF, NodeRecord

__all__ = ["NODE_FIELDS", "InvalidParams", "ListingParams", "parse_fields", "requested", "RequestError",
           "SeedConfig", "NodeRecord", "SeedCore", "BlockResult", "LIVENESS_PROOF", "LIVENESS_OXENMQ",
           "MIN_HARDFORK", "RPC_METHODS"]

PROOF_WINDOW_S = 60.0
STATE_FORMAT = 1
RPC_METHODS = ("get_service_nodes", "get_n_service_nodes", "get_all_service_nodes")
# the real storage server stays "not ready" below hardfork 19.3 (STORAGE_SERVER_HARDFORK)
MIN_HARDFORK: tuple[int, int] = (19, 3)

class RequestError(Exception):
    """A request the seed refuses; ``status`` is the HTTP status to answer with."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


# The chain starts at the height of a long-running network, not at 0: height-gated requests
# (``ifelse`` with ``height_at_least`` / ``height_before``) then behave as clients see them on a
# real network (Oxen mainnet passed 1,000,000 blocks in 2022).
DEFAULT_START_HEIGHT = 1_000_000


@dataclass(frozen=True)
class SeedConfig:
    testnet_seed: str
    expect: int = 0
    params: SwarmParams = field(default_factory=SwarmParams)
    proof_timeout: float = 6.0
    proof_window: float = PROOF_WINDOW_S
    # silence after which a node served over OxenMQ is deregistered: the real storage server
    # pings every 30 s, so this must cover a few pings
    oxenmq_timeout: float = 90.0
    hardfork: tuple[int, int] = HARDFORK  # [hardfork, snode_revision] the chain reports
    # the height before this chain's first block: 0 for a bare in-process core; the seed process
    # (``--start-height``, build_server) defaults to DEFAULT_START_HEIGHT
    start_height: int = 0

    def __post_init__(self) -> None:
        if self.start_height < 0:
            raise ValueError(f"start_height must be >= 0, got {self.start_height}")
        if self.oxenmq_timeout <= 0:
            raise ValueError(f"oxenmq_timeout must be > 0 seconds, got {self.oxenmq_timeout}")
        if tuple(self.hardfork) < MIN_HARDFORK:
            raise ValueError(f"hardfork must be at least {MIN_HARDFORK[0]}.{MIN_HARDFORK[1]} (the real storage "
                             f"server is never ready below it), got {self.hardfork[0]}.{self.hardfork[1]}")
        if self.expect < 0:
            raise ValueError(f"expect must be >= 0, got {self.expect}")
        if self.proof_timeout <= 0:
            raise ValueError(f"proof_timeout must be > 0 seconds, got {self.proof_timeout}")


@dataclass(frozen=True)
class BlockResult:
    height: int
    block_hash: str
    deregistered: list[str]
    recomputed: bool
    active: int
    swarm_sizes: dict[int, int]


# --------------------------------------------------------------------------------------------
# validation helpers
# --------------------------------------------------------------------------------------------

def _hex32(body: dict[str, Any], key: str) -> str:
    v = body.get(key)
    try:
        parse_hex32(v)
    except ValueError as exc:
        raise RequestError(400, f"`{key}`: {exc}") from None
    return str(v).lower()


def _port(body: dict[str, Any], key: str, *, allow_zero: bool) -> int:
    v = body.get(key)
    lo = 0 if allow_zero else 1
    if not is_int(v) or not lo <= v <= 65535:
        raise RequestError(400, f"`{key}` must be an integer port in [{lo}, 65535], got {v!r}")
    return v


def _signature(v: Any) -> bytes:
    try:
        return decode_signature(v)
    except SignatureError as exc:
        raise RequestError(400, f"`signature`: {exc.reason}") from None


# --------------------------------------------------------------------------------------------
# the core
# --------------------------------------------------------------------------------------------

class SeedCore:
    """Registry + block producer.  ``clock()`` returns unix time in seconds (float)."""

    def __init__(self, config: SeedConfig, clock: Callable[[], float],
                 logger: JsonLogger | None = None) -> None:
        self.config = config
        self.clock = clock
        self.log = logger or NullLogger("seed")
        self.nodes: dict[str, NodeRecord] = {}
        self.start_height = config.start_height  # a restored state keeps the height it started at
        self.height = config.start_height
        # active set the current swarm layout was computed for
        self.last_active: frozenset[str] = frozenset()
        # bumped on every change that must be persisted
        self.revision = 0
        #: the last full listing asked for with poll_nodes_hash (one render per revision)
        self._listing: CachedListing | None = None

    # --- basic state ---------------------------------------------------------------------------
    def block_hash_at(self, height: int) -> bytes:
        return derive_seed(self.config.testnet_seed, "block", str(height))

    @property
    def block_hash(self) -> str:
        return self.block_hash_at(self.height).hex()

    def active_nodes(self) -> list[NodeRecord]:
        return [n for n in self.nodes.values() if n.active]

    def swarms(self) -> dict[int, list[str]]:
        out: dict[int, list[str]] = {}
        for pk in sorted(self.nodes):
            n = self.nodes[pk]
            if n.active and n.swarm_id != UNASSIGNED_SWARM:
                out.setdefault(n.swarm_id, []).append(pk)
        return dict(sorted(out.items()))

    @property
    def first_block_done(self) -> bool:
        """Has this chain produced a block past its start height?"""
        return self.height > self.start_height

    def ready_for_first_block(self) -> bool:
        return not self.first_block_done and len(self.active_nodes()) >= self.config.expect

    def _changed(self) -> None:
        self.revision += 1

    # --- proofs --------------------------------------------------------------------------------
    def accept_proof(self, body: Any) -> dict[str, Any]:
        """Register or refresh a node from a signed proof; raises RequestError(400/401)."""
        if not isinstance(body, dict):
            raise RequestError(400, "proof body must be a JSON object")
        ed = _hex32(body, "pubkey_ed25519")
        x = _hex32(body, "pubkey_x25519")
        try:
            expected_x = ed25519_pk_to_x25519(bytes.fromhex(ed)).hex()
        except ValueError as exc:
            raise RequestError(400, f"`pubkey_ed25519` is not a valid Ed25519 key: {exc}") from None
        if expected_x != x:
            raise RequestError(400, f"`pubkey_x25519` {x} is not the X25519 conversion of pubkey_ed25519 "
                                    f"(expected {expected_x})")
        ip = body.get("public_ip")
        try:
            addr = ipaddress.IPv4Address(ip) if isinstance(ip, str) else None
        except ValueError:
            addr = None
        if addr is None or addr.is_unspecified:
            raise RequestError(400, f"`public_ip` must be a dotted IPv4 address other than 0.0.0.0, got {ip!r}")
        storage_port = _port(body, "storage_port", allow_zero=False)
        lmq_port = _port(body, "storage_lmq_port", allow_zero=True)
        admin_port = _port(body, "admin_port", allow_zero=True)
        version_raw = body.get("version", list(STORAGE_SERVER_VERSION))
        if (not isinstance(version_raw, list) or len(version_raw) != 3
                or not all(is_int(v) and 0 <= v <= 65535 for v in version_raw)):
            raise RequestError(400, f"`version` must be [major, minor, patch] (0-65535 each), got {version_raw!r}")
        version = (version_raw[0], version_raw[1], version_raw[2])
        ts = body.get("timestamp")
        if not is_int(ts):
            raise RequestError(400, f"`timestamp` must be an integer (unix milliseconds), got {ts!r}")
        now = self.clock()
        skew = ts / 1000.0 - now
        if abs(skew) > self.config.proof_window:
            raise RequestError(400, f"proof timestamp {ts} is {skew:+.1f} s from the seed's clock "
                                    f"(allowed ±{self.config.proof_window:.0f} s); check the node's clock")
        sig = _signature(body.get("signature"))
        msg = proof_message(ed, str(addr), storage_port, ts)
        if not verify_ed25519(bytes.fromhex(ed), msg, sig):
            raise RequestError(401, "proof signature does not verify: sign "
                                    "'proof' + pubkey_ed25519 + public_ip + storage_port + timestamp "
                                    "with the node's Ed25519 key")

        node = self.nodes.get(ed)
        if node is None:
            node = NodeRecord(pubkey_ed25519=ed, pubkey_x25519=x, public_ip=str(addr),
                              storage_port=storage_port, storage_lmq_port=lmq_port, admin_port=admin_port,
                              version=version, registration_height=self.height, state_height=self.height,
                              last_proof=now, proof_timestamp_ms=ts)
            self.nodes[ed] = node
            self._changed()
            self.log.info("registered", pubkey_ed25519=ed, public_ip=node.public_ip,
                          storage_port=storage_port, height=self.height, nodes=len(self.nodes))
        else:
            before = (node.public_ip, node.storage_port, node.storage_lmq_port, node.admin_port, node.version)
            node.public_ip, node.storage_port = str(addr), storage_port
            node.storage_lmq_port, node.admin_port, node.version = lmq_port, admin_port, version
            node.last_proof, node.proof_timestamp_ms = now, ts
            if before != (node.public_ip, node.storage_port, node.storage_lmq_port, node.admin_port,
                          node.version):
                self._changed()
                self.log.info("node_updated", pubkey_ed25519=ed, public_ip=node.public_ip,
                              storage_port=storage_port, version=list(version))
        return {"height": self.height, "registered": True}

    def oxenmq_contact(self, *, pubkey_ed25519: str, pubkey_x25519: str, public_ip: str, storage_port: int,
                       storage_lmq_port: int, version: tuple[int, int, int] | None = None) -> NodeRecord:
        """A node served over OxenMQ (nodes.seed.omq) showed life: register it or refresh it.

        Such a node sends no signed proof: its contact with the seed as its oxend is the proof,
        and its advertised addresses come from the seed's configuration, not from the node.
        ``version`` (from its ``admin.storage_server_ping``) updates the listed version.
        """
        now = self.clock()
        node = self.nodes.get(pubkey_ed25519)
        if node is None:
            node = NodeRecord(pubkey_ed25519=pubkey_ed25519, pubkey_x25519=pubkey_x25519, public_ip=public_ip,
                              storage_port=storage_port, storage_lmq_port=storage_lmq_port, admin_port=0,
                              version=version or (0, 0, 0), registration_height=self.height,
                              state_height=self.height, last_proof=now, proof_timestamp_ms=int(now * 1000),
                              liveness=LIVENESS_OXENMQ)
            self.nodes[pubkey_ed25519] = node
            self._changed()
            self.log.info("registered", pubkey_ed25519=pubkey_ed25519, public_ip=public_ip,
                          storage_port=storage_port, liveness=LIVENESS_OXENMQ, height=self.height,
                          nodes=len(self.nodes))
            return node
        node.last_proof, node.proof_timestamp_ms = now, int(now * 1000)
        if version is not None and version != node.version:
            node.version = version
            self._changed()
            self.log.info("node_updated", pubkey_ed25519=pubkey_ed25519, version=list(version))
        return node

    # --- admin state changes -------------------------------------------------------------------
    def _get(self, pubkey: Any) -> NodeRecord:
        if not isinstance(pubkey, str):
            raise RequestError(400, "body must be {\"pubkey_ed25519\": \"<64 hex chars>\"}")
        pk = _hex32({"pubkey_ed25519": pubkey}, "pubkey_ed25519")
        node = self.nodes.get(pk)
        if node is None:
            raise RequestError(404, f"no registered node with pubkey_ed25519 {pk}")
        return node

    def decommission(self, pubkey: Any) -> dict[str, Any]:
        node = self._get(pubkey)
        changed = node.active
        if changed:
            node.active = False
            node.swarm_id = UNASSIGNED_SWARM
            node.decommission_count += 1
            node.state_height = self.height
            self._changed()
            self.log.info("decommissioned", pubkey_ed25519=node.pubkey_ed25519, height=self.height)
        return {"pubkey_ed25519": node.pubkey_ed25519, "status": node.status, "changed": changed,
                "height": self.height}

    def recommission(self, pubkey: Any) -> dict[str, Any]:
        node = self._get(pubkey)
        changed = not node.active
        if changed:
            node.active = True
            node.swarm_id = UNASSIGNED_SWARM
            node.state_height = self.height
            self._changed()
            self.log.info("recommissioned", pubkey_ed25519=node.pubkey_ed25519, height=self.height)
        return {"pubkey_ed25519": node.pubkey_ed25519, "status": node.status, "changed": changed,
                "height": self.height}

    def deregister(self, pubkey: Any, reason: str = "admin") -> dict[str, Any]:
        node = self._get(pubkey)
        self._remove(node, reason)
        return {"pubkey_ed25519": node.pubkey_ed25519, "status": "deregistered", "changed": True,
                "height": self.height}

    def _remove(self, node: NodeRecord, reason: str, **fields: Any) -> None:
        del self.nodes[node.pubkey_ed25519]
        self._changed()
        self.log.info("deregistered", pubkey_ed25519=node.pubkey_ed25519, reason=reason,
                      swarm_id=None if node.swarm_id == UNASSIGNED_SWARM else node.swarm_id,
                      height=self.height, nodes=len(self.nodes), **fields)

    def excuse_stall(self, seconds: float) -> None:
        """The seed itself was unresponsive for ``seconds`` (its event loop stalled): proofs sent
        meanwhile are still queued, so that time does not count towards any node's proof age."""
        if seconds <= 0:
            return
        now = self.clock()
        for node in self.nodes.values():
            node.last_proof = min(now, node.last_proof + seconds)
        self.log.warning("seed_stalled", seconds=round(seconds, 3), excused_nodes=len(self.nodes))

    # --- blocks --------------------------------------------------------------------------------
    def produce_block(self) -> BlockResult:
        """Deregister silent nodes, advance one block, recompute swarms if the active set changed."""
        now = self.clock()
        gone: list[str] = []
        for pk in sorted(self.nodes):
            node = self.nodes[pk]
            age = now - node.last_proof
            timeout = self.config.oxenmq_timeout if node.liveness == LIVENESS_OXENMQ else self.config.proof_timeout
            if age > timeout:
                self._remove(node, "proof_timeout", last_proof_age=round(age, 3))
                gone.append(pk)

        self.height += 1
        block_hash = self.block_hash_at(self.height)
        active = frozenset(n.pubkey_ed25519 for n in self.active_nodes())
        unassigned = any(self.nodes[pk].swarm_id == UNASSIGNED_SWARM for pk in active)
        recomputed = active != self.last_active or unassigned
        if recomputed:
            current = {pk: self.nodes[pk].swarm_id for pk in active}
            new = assign_swarms(current, active, block_hash, self.config.params)
            moved = sum(1 for pk in active if current[pk] != new[pk])
            for pk in active:
                self.nodes[pk].swarm_id = new[pk]
            self.last_active = active
            self.log.info("swarms_recomputed", height=self.height, active=len(active), moved=moved,
                          swarms=len(set(new.values())))
        self._changed()
        sizes = {sid: len(m) for sid, m in self.swarms().items()}
        self.log.info("block", height=self.height, block_hash=block_hash.hex(), active=len(active),
                      nodes=len(self.nodes), recomputed=recomputed,
                      swarm_sizes={str(k): v for k, v in sizes.items()}, deregistered=gone)
        return BlockResult(height=self.height, block_hash=block_hash.hex(), deregistered=gone,
                           recomputed=recomputed, active=len(active), swarm_sizes=sizes)

    # --- oxend-compatible listing --------------------------------------------------------------
    def get_service_nodes(self, params: Any, rng: random.Random) -> dict[str, Any]:
        """oxend GET_SERVICE_NODES; raises InvalidParams for malformed params."""
        req = ListingParams.parse(params)
        fields = req.fields
        top_hash = self.block_hash
        hf, revision = self.config.hardfork
        res: dict[str, Any] = {"height": self.height, "block_hash": top_hash, "hardfork": hf}
        if requested(fields, "target_height"):
            res["target_height"] = self.height
        if requested(fields, "snode_revision"):
            res["snode_revision"] = revision
        res["status"] = "OK"
        if req.poll_block_hash:
            unchanged = req.poll_block_hash == top_hash
            res["unchanged"] = unchanged
            if unchanged:
                return res

        if req.hashable:
            listing = self._hashed_listing(req)
            res["nodes_hash"] = listing.digest
            res["unchanged"] = req.poll_nodes_hash == listing.digest
            if not res["unchanged"]:
                res["service_node_states"] = listing.entries
            return res
        res["service_node_states"] = [node_entry(n, fields, self.config.hardfork[0])
                                      for n in select_nodes(self.nodes, req, rng)]
        return res

    def _hashed_listing(self, req: ListingParams) -> CachedListing:
        key = (self.revision, frozenset(req.fields), req.active_only, req.pubkeys)
        if self._listing is None or self._listing.key != key:
            entries = [node_entry(n, req.fields, self.config.hardfork[0])
                       for n in select_nodes(self.nodes, req, random.Random(0))]
            self._listing = CachedListing(key=key, entries=entries, digest=listing_digest(entries))
        return self._listing

    # --- inspection / persistence --------------------------------------------------------------
    def snapshot(self) -> dict[str, Any]:
        """GET /internal/v1/state."""
        now = self.clock()
        return {
            "height": self.height,
            "block_hash": self.block_hash,
            "expect": self.config.expect,
            "first_block": self.first_block_done,
            "start_height": self.start_height,
            "params": asdict(self.config.params),
            "proof_timeout": self.config.proof_timeout,
            "oxenmq_timeout": self.config.oxenmq_timeout,
            "hardfork": list(self.config.hardfork),
            "nodes": [
                {**{k: v for k, v in n.to_json().items() if k not in ("last_proof", "active")},
                 "status": n.status,
                 "last_proof_age": round(now - n.last_proof, 3)}
                for n in (self.nodes[pk] for pk in sorted(self.nodes))
            ],
            "swarms": [{"swarm_id": sid, "members": members} for sid, members in self.swarms().items()],
        }

    def to_json(self) -> dict[str, Any]:
        return {
            "format": STATE_FORMAT,
            "testnet_seed": self.config.testnet_seed,
            "height": self.height,
            "start_height": self.start_height,
            "block_hash": self.block_hash,
            "last_active": sorted(self.last_active),
            "nodes": [self.nodes[pk].to_json() for pk in sorted(self.nodes)],
            "swarms": [{"swarm_id": sid, "members": m} for sid, m in self.swarms().items()],
        }

    def load_json(self, data: dict[str, Any]) -> None:
        """Restore persisted state.  Every node's last proof is reset to now (grace after restart)."""
        if data.get("format") != STATE_FORMAT:
            raise ValueError(f"unsupported seed state format {data.get('format')!r} (expected {STATE_FORMAT})")
        if data.get("testnet_seed") != self.config.testnet_seed:
            raise ValueError(f"state belongs to testnet seed {data.get('testnet_seed')!r}, not "
                             f"{self.config.testnet_seed!r}: use another --data-dir or the same --testnet-seed")
        now = self.clock()
        nodes = {}
        for d in data["nodes"]:
            rec = NodeRecord.from_json(d)
            rec.last_proof = now
            nodes[rec.pubkey_ed25519] = rec
        self.nodes = nodes
        self.height = int(data["height"])
        self.start_height = int(data.get("start_height", 0))  # states from before start heights began at 0
        self.last_active = frozenset(data.get("last_active", ()))
