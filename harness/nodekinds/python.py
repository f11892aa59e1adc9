"""Our own storage node, ``python -m nodes.snode``: speaks the client protocol and the testnet
admin interface (observations, behaviours, clock), joins the seed with signed HTTP proofs."""

from __future__ import annotations

import asyncio
from typing import Any, ClassVar

from harness import rpc
from harness.nodekinds.base import ALL_FAULT_FAMILIES, NodeContext, NodeKind, NodeView
from harness.state import NetworkState, NodeRecord
from nodes.common.auth import ENV_ADMIN_TOKEN, ENV_JOIN_TOKEN, ENV_KEY_SEED, derive_join_token
from nodes.protocol.swarm import UNASSIGNED_SWARM


class PythonNode(NodeKind):
    name: ClassVar[str] = "python"
    has_admin: ClassVar[bool] = True
    fault_families: ClassVar[frozenset[str]] = ALL_FAULT_FAMILIES
    backends: ClassVar[frozenset[str]] = frozenset({"process", "docker"})
    runs_python: ClassVar[bool] = True
    writes_log_file: ClassVar[bool] = True

    def argv(self, ctx: NodeContext) -> list[str]:
        t = ctx.topology
        node = ctx.node
        argv = [
            "-m", "nodes.snode",
            "--ip", ctx.listen_ip,
            "--public-ip", node.public_ip,
            "--port", str(node.storage_port),
            "--admin-port", str(node.admin_port),
            "--seed-url", ctx.state.seed_url,
            "--data-dir", ctx.data_dir,
            "--name", node.name,
            "--proof-interval", str(t["proof_interval"]),
            "--poll-interval", str(t["poll_interval"]),
        ]
        if t.get("rate_limit"):
            argv += ["--rate-limit", str(t["rate_limit"])]
        for net in ctx.state.forward_networks:  # where exit nodes may forward onion requests
            argv += ["--forward-allow", net]
        if ctx.log_file:
            argv += ["--log-file", ctx.log_file]
        return argv

    def env(self, ctx: NodeContext) -> dict[str, str]:
        return {ENV_KEY_SEED: ctx.key_seed_hex, ENV_ADMIN_TOKEN: ctx.state.admin_token,
                ENV_JOIN_TOKEN: derive_join_token(ctx.state.admin_token)}

    def proxies(self, node: NodeRecord) -> list[dict[str, Any]]:
        if not node.proxy:
            return []
        return [{"name": node.proxy, "listen": f"{node.public_ip}:{node.storage_port}",
                 "upstream": f"{node.bind_ip}:{node.storage_port}", "enabled": True}]

    async def probe(self, session: Any, state: NetworkState,
                    nodes: dict[str, tuple[NodeRecord, int | None]]) -> dict[str, NodeView]:
        views = await asyncio.gather(*(self._probe(session, rec, state.admin_token)
                                       for rec, _ in nodes.values()))
        return dict(zip(nodes, views, strict=True))

    @staticmethod
    async def _probe(session: Any, node: NodeRecord, token: str) -> NodeView:
        """The node's own view through its admin interface, and an ``info`` answer."""
        view = NodeView()
        try:
            st = await rpc.node_admin(session, node.admin_url, token, "state")
            sid = st.get("swarm_id")
            view.swarm_id = None if sid in (None, UNASSIGNED_SWARM) else int(sid)
            sm = st.get("swarm_members")
            view.swarm_members = tuple(sorted(sm)) if isinstance(sm, list) else None
            status, body = await rpc.storage_rpc(session, node.storage_url, "info", {})
            view.answering = status == 200
            if status != 200:
                view.error = f"HTTP {status}: {str(body)[:120]}"
        except rpc.RpcError as e:
            view.error = str(e)
        return view
