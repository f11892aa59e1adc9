"""Helpers for tests of the storage node: fake seed entries, views and accounts, and a node's
storage port served on 127.0.0.1 as a running node serves it.

Used by tests/unit/test_snode_*.py and tests/integration/test_snode_*.py; nothing here reaches
beyond loopback.
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from aiohttp import web
from yarl import URL

from nodes.common.http import start_site
from nodes.protocol.keys import Identity, derive_seed

from .peers import PeerAuth
from .swarm_view import NodeInfo, SwarmView

if TYPE_CHECKING:
    from .server import Node


def node_identity(name: str, seed: str = "unit") -> Identity:
    return Identity.from_seed(derive_seed(seed, "node", name))


def seed_entry(identity: Identity, ip: str, port: int, swarm_id: int, active: bool = True,
               lmq_port: int = 22020) -> dict[str, Any]:
    """One get_service_nodes entry the way the seed reports it."""
    return {
        "pubkey_ed25519": identity.ed25519_hex,
        "pubkey_x25519": identity.x25519_hex,
        "service_node_pubkey": identity.ed25519_hex,
        "public_ip": ip,
        "storage_port": port,
        "storage_lmq_port": lmq_port,
        "swarm_id": swarm_id,
        "active": active,
        "funded": True,
        "storage_server_version": [2, 11, 3],
    }


def make_view(me: Identity, swarms: Mapping[int, Sequence[Identity]], port: int = 22021,
              extra: Sequence[dict[str, Any]] = ()) -> SwarmView:
    """A view where node k of the listing has ip 127.77.<k>.1."""
    entries = []
    k = 1
    for sid, members in swarms.items():
        for ident in members:
            entries.append(seed_entry(ident, f"127.77.{k}.1", port, sid))
            k += 1
    entries.extend(extra)
    return SwarmView.build(me.ed25519_hex, entries, height=1)


def account_in_swarm(view: SwarmView, swarm_id: int, seed: str = "acct") -> Identity:
    """A deterministic account identity whose Session ID maps to `swarm_id` in `view`."""
    for i in itertools.count():
        ident = Identity.from_seed(derive_seed(seed, "account", str(i)))
        if view.swarm_of(ident.session_id) == swarm_id:
            return ident
        if i > 10_000:
            raise RuntimeError(f"no account found for swarm {swarm_id:x}")
    raise AssertionError("unreachable")


def peer_auth_headers(sender: Identity, receiver: Identity, body: bytes,
                      timestamp_ms: int | None = None) -> dict[str, str]:
    """The X-Snode-* headers ``sender`` puts on a swarm request with ``body`` to ``receiver``."""
    to = NodeInfo(receiver.ed25519_hex, receiver.x25519_hex, receiver.ed25519_hex, "127.0.0.1", 1, 1, 0, True)
    auth = PeerAuth(sender)
    return auth.headers(to, auth.request(body, timestamp_ms))


class StoragePortServer:
    """``node``'s storage port on 127.0.0.1 over plain HTTP as :meth:`Node.start` serves it: the
    lean front (nodes/common/lean_http.py) before the aiohttp app, under ``node.limits``. It has
    what aiohttp's ``TestClient`` uses of a ``TestServer`` (``host``, ``port``, ``make_url``,
    ``start_server``, ``close``), so tests of hostile input reach both paths."""

    def __init__(self, node: Node, host: str = "127.0.0.1") -> None:
        self.node = node
        self.host = host
        self.port = 0
        self.runner: web.AppRunner | None = None

    async def start_server(self, **_: Any) -> None:
        if self.runner is not None:
            return
        app = self.node.make_storage_app()
        runner = web.AppRunner(app, access_log=None, handle_signals=False, **self.node.limits.runner_kwargs())
        await runner.setup()
        await start_site(runner, self.host, 0, what="storage port", limits=self.node.limits, lean=self.node.lean)
        self.runner = runner
        self.port = int(runner.addresses[0][1])

    def make_url(self, path: str) -> URL:
        return URL(f"http://{self.host}:{self.port}").join(URL(path))

    async def close(self) -> None:
        if self.runner is not None:
            await self.runner.cleanup()
            self.runner = None
