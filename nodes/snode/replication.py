"""Replication to new swarm members and re-homing of messages after swarm changes.

On every swarm-map change (docs/DESIGN.md "Replication"):

* members that newly joined this node's swarm get every message this node owns (``push``);
* messages this node no longer owns are pushed to every member of their correct swarm and
  deleted locally once at least one member acknowledged them.

Both are retried on the next tick until they succeed (a target may not have seen the new map
yet and answers 421).  Re-homed messages are deleted locally as soon as one member of the new
swarm acknowledged them; members that had not acknowledged them yet are retried from memory for
PENDING_RETRY_S, so that every member of the new swarm ends up with a copy.  Messages keep their hash, timestamp and expiry.  Re-homing only runs
while this node itself belongs to a swarm: a node that is (perhaps only briefly) unregistered
keeps its messages rather than scattering them.

A receiver accepts a push only for accounts its own view says it owns (421 otherwise, so the
sender keeps the messages and retries) and checks every message hash.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import time
from collections import defaultdict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import aiohttp

from nodes.common.values import is_int
from nodes.protocol.hashing import message_hash
from nodes.protocol.keys import SessionID

from .clock import Clock
from .peers import PeerAuthError, PeerClient
from .storage import Message, Storage
from .swarm_view import NodeInfo, SwarmView

PUSH_MAX_MESSAGES = 200
PUSH_MAX_BYTES = 2 * 1024 * 1024
PENDING_RETRY_S = 120.0


def message_to_json(m: Message) -> dict[str, Any]:
    return {"pubkey": m.pubkey, "namespace": m.namespace, "hash": m.hash, "timestamp": m.timestamp,
            "expiry": m.expiry, "data": base64.b64encode(m.data).decode("ascii")}


def _int_field(d: dict[str, Any], name: str) -> int:
    v = d.get(name)
    if not is_int(v):
        raise ValueError(f"{name} must be an integer")
    return v


def message_from_json(d: Any) -> Message:
    """Validate one pushed message (raises ValueError saying what is wrong)."""
    if not isinstance(d, dict):
        raise ValueError("message must be an object")
    pk = d.get("pubkey")
    sid = SessionID.parse(pk.lower() if isinstance(pk, str) else pk)
    ns, ts, exp = (_int_field(d, k) for k in ("namespace", "timestamp", "expiry"))
    h, data = d.get("hash"), d.get("data")
    if not isinstance(h, str) or not isinstance(data, str):
        raise ValueError("hash and data must be strings")
    try:
        raw = base64.b64decode(data, validate=True)
    except (binascii.Error, ValueError):
        raise ValueError("data is not base64") from None
    if message_hash(sid, ns, raw) != h:
        raise ValueError(f"hash {h} does not match the message content")
    return Message(sid.hex, ns, h, ts, exp, raw)


def batches(msgs: Sequence[Message]) -> list[list[Message]]:
    out: list[list[Message]] = []
    cur: list[Message] = []
    size = 0
    for m in msgs:
        if cur and (len(cur) >= PUSH_MAX_MESSAGES or size + len(m.data) > PUSH_MAX_BYTES):
            out.append(cur)
            cur, size = [], 0
        cur.append(m)
        size += len(m.data)
    if cur:
        out.append(cur)
    return out


@dataclass
class PushResult:
    status: int
    body: dict[str, Any] | str


class Replicator:
    def __init__(self, storage: Storage, clock: Clock, client: PeerClient | None,
                 get_view: Callable[[], SwarmView], log: Any = None, timeout: float = 10.0,
                 on_stale_view: Callable[[], None] | None = None) -> None:
        self.storage = storage
        self.clock = clock
        self.client = client
        self.get_view = get_view
        self.log = log
        self.timeout = timeout
        self.on_stale_view = on_stale_view
        self.pending_members: set[str] = set()
        self.rehome_needed = False
        # re-homed (locally deleted) messages a target has not acknowledged yet:
        # target ed25519 -> hash -> (message, monotonic time first queued)
        self.pending_pushes: dict[str, dict[str, tuple[Message, float]]] = {}
        self._lock = asyncio.Lock()

    # --- sender side ---------------------------------------------------------------------------
    def on_view_change(self, old: SwarmView | None, new: SwarmView) -> None:
        """Note what to do after a new swarm map; the work happens in :meth:`sync_once`."""
        mine = new.my_swarm_id
        if mine is not None:
            now_members = set(new.swarms[mine]) - {new.my_pubkey}
            before: set[str] = set()
            if old is not None and old.my_swarm_id is not None:
                before = set(old.swarms.get(old.my_swarm_id, ()))
            self.pending_members |= now_members - before
        if old is None or dict(old.swarms) != dict(new.swarms):
            self.rehome_needed = True

    @property
    def has_work(self) -> bool:
        return bool(self.pending_members) or self.rehome_needed or bool(self.pending_pushes)

    async def push(self, node: NodeInfo, msgs: Sequence[Message]) -> set[str]:
        """Push messages to one node; returns the hashes it acknowledged."""
        acked: set[str] = set()
        if self.client is None:
            return acked
        for batch in batches(msgs):
            params = {"messages": [message_to_json(m) for m in batch]}
            try:
                reply = await self.client.send_swarm(node, self.client.swarm_request("push", params), self.timeout)
            except (TimeoutError, aiohttp.ClientError, OSError, PeerAuthError) as e:
                if self.log:
                    self.log.info("push_failed", peer=node.pubkey_ed25519, error=repr(e))
                return acked
            if reply.status != 200:
                if self.log:
                    self.log.info("push_rejected", peer=node.pubkey_ed25519, status=reply.status,
                                  reason=reply.text[:200])
                return acked
            acked.update(m.hash for m in batch)
        return acked

    async def sync_once(self) -> None:
        """Run pending replication and re-homing once (never raises for network errors)."""
        async with self._lock:
            view = self.get_view()
            mine = view.my_swarm_id
            if mine is None or not view.swarms:
                return
            now = self.clock.now_ms()
            if self.pending_members:
                await self._push_to_new_members(view, now)
            if self.rehome_needed:
                self.rehome_needed = not await self._rehome(view, now)
            if self.pending_pushes:
                await self._retry_pending(view, now)

    @staticmethod
    def _member_for(view: SwarmView, target: str, m: Message) -> bool:
        sid = view.swarm_of(m.pubkey)
        return sid is not None and target in view.swarms.get(sid, ())

    async def _retry_pending(self, view: SwarmView, now: int) -> None:
        cutoff = time.monotonic() - PENDING_RETRY_S
        for target, queued in list(self.pending_pushes.items()):
            node = view.nodes.get(target)
            keep = {h: (m, t0) for h, (m, t0) in queued.items()
                    if node is not None and t0 > cutoff and m.expiry > now and self._member_for(view, target, m)}
            if not keep or node is None:
                self.pending_pushes.pop(target, None)
                continue
            acked = await self.push(node, [m for m, _ in keep.values()])
            for h in acked:
                keep.pop(h, None)
            if keep:
                self.pending_pushes[target] = keep
            else:
                self.pending_pushes.pop(target, None)

    async def _push_to_new_members(self, view: SwarmView, now: int) -> None:
        mine = view.my_swarm_id
        assert mine is not None
        members = set(view.swarms[mine])
        for pk in list(self.pending_members):
            if pk not in members or pk == view.my_pubkey:
                self.pending_members.discard(pk)
        if not self.pending_members:
            return
        owners = [o for o in await self.storage.owners() if view.is_mine(o)]
        msgs = await self.storage.messages_of(owners, now) if owners else []
        for pk in list(self.pending_members):
            node = view.nodes[pk]
            if not msgs:
                self.pending_members.discard(pk)
                continue
            acked = await self.push(node, msgs)
            if len(acked) == len(msgs):
                self.pending_members.discard(pk)
                if self.log:
                    self.log.info("replicated_to_new_member", peer=pk, messages=len(msgs))

    async def _rehome(self, view: SwarmView, now: int) -> bool:
        """Move messages this node no longer owns; True when nothing is left to move."""
        foreign = [o for o in await self.storage.owners() if not view.is_mine(o)]
        if not foreign:
            return True
        by_swarm: dict[int, list[str]] = defaultdict(list)
        for o in foreign:
            sid = view.swarm_of(o)
            if sid is not None:
                by_swarm[sid].append(o)
        done = True
        for sid, owners in by_swarm.items():
            msgs = await self.storage.messages_of(owners, now)
            if not msgs:
                continue
            targets = [n for n in view.members(sid) if n.pubkey_ed25519 != view.my_pubkey]
            results = await asyncio.gather(*(self.push(n, msgs) for n in targets))
            acked: set[str] = set().union(*results) if results else set()
            if acked:
                t0 = time.monotonic()
                for n, got in zip(targets, results, strict=True):
                    missing = [m for m in msgs if m.hash in acked and m.hash not in got]
                    if missing:
                        q = self.pending_pushes.setdefault(n.pubkey_ed25519, {})
                        for m in missing:
                            q.setdefault(m.hash, (m, t0))
                deleted = await self.storage.delete_hashes(sorted(acked))
                if self.log:
                    self.log.info("rehomed", swarm=format(sid, "x"), messages=deleted,
                                  targets=[n.pubkey_ed25519 for n in targets])
            if len(acked) < len(msgs):
                done = False
        return done

    # --- receiver side -------------------------------------------------------------------------
    async def receive_push(self, params: Mapping[str, Any]) -> PushResult:
        raw = params.get("messages") if isinstance(params, Mapping) else None
        if not isinstance(raw, list):
            return PushResult(400, "invalid push: expected {\"messages\": [...]}")
        msgs: list[Message] = []
        for d in raw:
            try:
                msgs.append(message_from_json(d))
            except ValueError as e:
                return PushResult(400, f"invalid push message: {e}")
        view = self.get_view()
        for m in msgs:
            if not view.is_mine(m.pubkey):
                if self.on_stale_view is not None:
                    self.on_stale_view()
                return PushResult(421, f"not my swarm: account {m.pubkey} belongs elsewhere in this node's view")
        now = self.clock.now_ms()
        live = [m for m in msgs if m.expiry > now]
        stored = await self.storage.bulk_store(live) if live else 0
        return PushResult(200, {"received": len(msgs), "stored": stored})
