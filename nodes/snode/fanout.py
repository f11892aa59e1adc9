"""Swarm fan-out of recursive storage RPCs (store, delete*, expire*).

Per-peer results follow the storage server's ``distribute_command``: the peer's own result dict
on success; otherwise ``{"failed": true}`` plus ``"timeout": true`` (no answer in time or the
peer is unreachable), ``"code"``/``"reason"`` (the peer answered an error status; like the storage
server, whose OxenMQ reply parts are strings, ``code`` is the status as a string) or
``"bad_peer_response": true`` (unparsable answer).
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence
from typing import Any

import aiohttp

from .peers import PeerAuthError, PeerClient, SwarmRequest
from .swarm_view import NodeInfo


class SwarmFanout:
    def __init__(self, client: PeerClient, timeout: float = 5.0, log: Any = None) -> None:
        self.client = client
        self.timeout = timeout
        self.log = log

    async def _one(self, peer: NodeInfo, method: str, request: SwarmRequest) -> dict[str, Any]:
        try:
            reply = await self.client.send_swarm(peer, request, self.timeout)
        except (TimeoutError, aiohttp.ClientError, OSError, PeerAuthError) as e:
            if self.log:
                self.log.warning("fanout_timeout", peer=peer.pubkey_ed25519, method=method, error=repr(e))
            return {"failed": True, "timeout": True}
        if reply.status != 200:
            return {"failed": True, "code": str(reply.status), "reason": reply.text}
        try:
            result = reply.json()
        except ValueError:
            result = None
        if not isinstance(result, dict):
            return {"failed": True, "bad_peer_response": True}
        return result

    async def forward(self, peers: Sequence[NodeInfo], method: str,
                      params: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
        if not peers:
            return {}
        request = self.client.swarm_request(method, params)  # one body, one signature
        results = await asyncio.gather(*(self._one(p, method, request) for p in peers))
        return {p.pubkey_ed25519: r for p, r in zip(peers, results, strict=True)}
