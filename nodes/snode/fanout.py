"""Swarm fan-out of recursive storage RPCs (store, delete*, expire*).

Per-peer results follow the storage server's ``distribute_command``: the peer's own result dict
on success; otherwise ``{"failed": true}`` plus ``"timeout": true`` (no answer in time or the
peer is unreachable), ``"code"``/``"reason"`` (the peer answered an error status; like the storage
server, whose OxenMQ reply parts are strings, ``code`` is the status as a string) or
``"bad_peer_response": true`` (unparsable answer).

**What comes while a request to a peer is in flight goes in one bundle.** A node keeps a lane
per peer. A request to a lane with nothing in flight is sent at once, as it always was: one
body, serialised and signed once for every peer of the fan-out. Requests that come while the
lane has a request in flight wait in the lane and leave together as one ``bundle`` request
(``{"method": "bundle", "params": {"requests": [{"method", "params"}, …]}}``, answered by
``{"results": [{"status", "body"}, …]}`` in the same order) as soon as a request of the lane
answers, or :data:`MAX_WAIT` after the first of them began to wait, whichever comes first (so a
peer behind a latency fault delays a request by at most that much more). Under load that turns
k requests to a peer into one: one HTTP request, one MAC and one signature instead of k of
each, on both sides (docs/nodes.md, "Performance"). At low load nothing waits and nothing
changes.

A peer of an earlier version (``python@REF``) answers a bundle ``400 … unknown method
'bundle'``: its lane then sends every request on its own, and the waiting requests are sent so.
A request's deadline runs from the moment it enters its lane, so waiting behind a slow peer
counts against it as the storage server's timeout does.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import aiohttp

from .peers import PeerAuthError, PeerClient, PeerReply, SwarmRequest
from .swarm_view import NodeInfo

#: the swarm method that carries several requests to one peer
BUNDLE = "bundle"
#: the most requests one bundle carries, and about the most bytes of their bodies
MAX_BUNDLE_REQUESTS = 64
MAX_BUNDLE_BYTES = 1024 * 1024
#: the least time a bundle is given, even when its oldest request's deadline has passed
MIN_BUNDLE_TIMEOUT = 0.05
#: the longest a request waits for the lane's requests in flight to answer before it goes anyway
#: (with what waits with it): a slow peer, e.g. behind a latency fault, costs a request at most
#: this much more than it would cost sent at once
MAX_WAIT = 0.02

Result = dict[str, Any]


@dataclass
class _Waiting:
    method: str
    encoded: bytes  #: ``{"method", "params"}`` as JSON: a bundle's element
    deadline: float  #: loop time
    future: asyncio.Future[Result]


@dataclass
class _Lane:
    """The requests to one peer: how many are in flight, and the ones waiting to go together."""

    in_flight: int = 0
    bundles: bool = True  #: False once the peer answered that it does not know bundles
    waiting: list[_Waiting] = field(default_factory=list)
    timer: asyncio.TimerHandle | None = None  #: sends what waits after ``max_wait`` at the latest


def result_of(reply: PeerReply) -> Result:
    """A peer's answer to one request as its per-peer result."""
    if reply.status != 200:
        return {"failed": True, "code": str(reply.status), "reason": reply.text}
    try:
        result = reply.json()
    except ValueError:
        result = None
    if not isinstance(result, dict):
        return {"failed": True, "bad_peer_response": True}
    return result


def bundle_result(item: Any) -> Result:
    """One element of a bundle's ``results`` as its per-peer result (what :func:`result_of`
    makes of the same answer sent on its own)."""
    if not isinstance(item, dict) or not isinstance(item.get("status"), int):
        return {"failed": True, "bad_peer_response": True}
    status, body = item["status"], item.get("body")
    if status != 200:
        reason = body if isinstance(body, str) else json.dumps(body, separators=(",", ":"))
        return {"failed": True, "code": str(status), "reason": reason}
    if not isinstance(body, dict):
        return {"failed": True, "bad_peer_response": True}
    return body


def is_unknown_bundle(reply: PeerReply) -> bool:
    """Whether ``reply`` is a node of an earlier version refusing a bundle."""
    return reply.status == 400 and f"unknown method {BUNDLE!r}" in reply.text


class SwarmFanout:
    def __init__(self, client: PeerClient, timeout: float = 5.0, log: Any = None,
                 max_wait: float = MAX_WAIT) -> None:
        self.client = client
        self.timeout = timeout
        self.log = log
        self.max_wait = max_wait
        self._lanes: dict[str, _Lane] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        #: bundles sent and the requests they carried (GET /admin/v1/state "fanout")
        self.bundles_sent = 0
        self.bundled_requests = 0

    # --- one request -------------------------------------------------------------------------
    async def _send(self, peer: NodeInfo, method: str, request: SwarmRequest,
                    timeout: float) -> PeerReply | None:
        """The peer's reply, or None (logged) when it did not answer in time or at all."""
        try:
            return await self.client.send_swarm(peer, request, timeout)
        except (TimeoutError, aiohttp.ClientError, OSError, PeerAuthError) as e:
            if self.log:
                self.log.warning("fanout_timeout", peer=peer.pubkey_ed25519, method=method, error=repr(e))
            return None

    async def _one(self, peer: NodeInfo, method: str, request: SwarmRequest,
                   timeout: float) -> Result:
        reply = await self._send(peer, method, request, timeout)
        return {"failed": True, "timeout": True} if reply is None else result_of(reply)

    # --- lanes -------------------------------------------------------------------------------
    async def _direct(self, lane: _Lane, peer: NodeInfo, method: str, request: SwarmRequest) -> Result:
        """Send on the lane (its count of requests in flight raised by the caller); then what
        waited meanwhile."""
        try:
            return await self._one(peer, method, request, self.timeout)
        finally:
            lane.in_flight -= 1
            self._flush(lane, peer)

    def _wait(self, lane: _Lane, peer: NodeInfo, waiting: _Waiting) -> None:
        lane.waiting.append(waiting)
        if lane.timer is None:
            lane.timer = asyncio.get_running_loop().call_later(self.max_wait, self._flush, lane, peer)

    def _flush(self, lane: _Lane, peer: NodeInfo) -> None:
        """Send what waits in the lane, in bundles of at most MAX_BUNDLE_REQUESTS /
        MAX_BUNDLE_BYTES: when one of its requests answered, or ``max_wait`` after the first
        began to wait."""
        if lane.timer is not None:
            lane.timer.cancel()
            lane.timer = None
        while lane.waiting:
            take, size = 0, 0
            for w in lane.waiting:
                if take and (take >= MAX_BUNDLE_REQUESTS or size + len(w.encoded) > MAX_BUNDLE_BYTES):
                    break
                take, size = take + 1, size + len(w.encoded)
            batch, lane.waiting = lane.waiting[:take], lane.waiting[take:]
            lane.in_flight += 1
            task = asyncio.ensure_future(self._send_waiting(lane, peer, batch))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _send_waiting(self, lane: _Lane, peer: NodeInfo, batch: list[_Waiting]) -> None:
        try:
            results = await self._send_batch(lane, peer, batch)
        except Exception as e:  # noqa: BLE001 - a bug here must not leave a caller waiting forever
            if self.log:
                self.log.error("fanout_bundle_failed", peer=peer.pubkey_ed25519, error=repr(e))
            results = [{"failed": True, "timeout": True} for _ in batch]
        except BaseException:  # cancelled: the node is stopping
            for w in batch:
                if not w.future.done():
                    w.future.set_result({"failed": True, "timeout": True})
            raise
        finally:
            lane.in_flight -= 1
            self._flush(lane, peer)
        for w, result in zip(batch, results, strict=True):
            if not w.future.done():  # its caller may have given up
                w.future.set_result(result)

    async def _send_batch(self, lane: _Lane, peer: NodeInfo, batch: list[_Waiting]) -> list[Result]:
        loop = asyncio.get_running_loop()
        timeout = max(MIN_BUNDLE_TIMEOUT, min(w.deadline for w in batch) - loop.time())
        if len(batch) == 1 or not lane.bundles:
            return list(await asyncio.gather(*(self._one_waiting(peer, w) for w in batch)))
        body = (b'{"method":"' + BUNDLE.encode() + b'","params":{"requests":['
                + b",".join(w.encoded for w in batch) + b"]}}")
        reply = await self._send(peer, BUNDLE, self.client.auth.request(body), timeout)
        if reply is None:
            return [{"failed": True, "timeout": True} for _ in batch]
        if is_unknown_bundle(reply):
            lane.bundles = False
            if self.log:
                self.log.info("fanout_bundles_unsupported", peer=peer.pubkey_ed25519)
            return list(await asyncio.gather(*(self._one_waiting(peer, w) for w in batch)))
        self.bundles_sent += 1
        self.bundled_requests += len(batch)
        if reply.status != 200:
            return [result_of(reply) for _ in batch]
        try:
            results = reply.json().get("results")
        except (ValueError, AttributeError):
            results = None
        if not isinstance(results, list) or len(results) != len(batch):
            return [{"failed": True, "bad_peer_response": True} for _ in batch]
        return [bundle_result(r) for r in results]

    async def _one_waiting(self, peer: NodeInfo, w: _Waiting) -> Result:
        timeout = max(MIN_BUNDLE_TIMEOUT, w.deadline - asyncio.get_running_loop().time())
        return await self._one(peer, w.method, self.client.auth.request(w.encoded), timeout)

    # --- the fan-out -------------------------------------------------------------------------
    async def forward(self, peers: Sequence[NodeInfo], method: str,
                      params: Mapping[str, Any]) -> dict[str, Result]:
        if not peers:
            return {}
        loop = asyncio.get_running_loop()
        encoded = json.dumps({"method": method, "params": params}, separators=(",", ":")).encode()
        request: SwarmRequest | None = None  # one body, one signature, for every idle lane
        answers: list[Awaitable[Result]] = []
        for peer in peers:
            lane = self._lanes.setdefault(peer.pubkey_ed25519, _Lane())
            if lane.in_flight and lane.bundles:
                waiting = _Waiting(method, encoded, loop.time() + self.timeout, loop.create_future())
                self._wait(lane, peer, waiting)
                answers.append(waiting.future)
                continue
            lane.in_flight += 1
            if request is None:
                request = self.client.auth.request(encoded)
            answers.append(self._direct(lane, peer, method, request))
        results = await asyncio.gather(*answers)
        return {p.pubkey_ed25519: r for p, r in zip(peers, results, strict=True)}

    def stats(self) -> dict[str, int]:
        """Bundles sent so far, the requests they carried and the requests waiting now."""
        return {"bundles_sent": self.bundles_sent, "bundled_requests": self.bundled_requests,
                "waiting": sum(len(lane.waiting) for lane in self._lanes.values())}
