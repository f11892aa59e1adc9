"""The testnet's file server, ``python -m nodes.fileserver`` (docs/fileserver.md), run like a node:
same backends, its own Toxiproxy proxy (``fileserver``), network and churn faults by name. It is
not a storage node: it never joins the seed and is not a topology node group."""

from __future__ import annotations

import asyncio
from typing import Any, ClassVar

from harness import rpc
from harness.nodekinds.base import CHURN, NETWORK, NodeContext, NodeKind, NodeKindError, NodeView
from harness.state import NetworkState, NodeRecord
from nodes.common.auth import ENV_ADMIN_TOKEN, ENV_KEY_SEED


class FileServerKind(NodeKind):
    name: ClassVar[str] = "fileserver"
    has_admin: bool = True
    fault_families: frozenset[str] = frozenset({NETWORK, CHURN})
    backends: ClassVar[frozenset[str]] = frozenset({"process", "docker", "swarm"})
    runs_python: ClassVar[bool] = True
    writes_log_file: ClassVar[bool] = True

    def refuse_fault(self, family: str, node: str, backend: str | None = None) -> None:
        if not self.supports(family):
            raise NodeKindError(f"{node} is the file server: it takes network and churn faults "
                                f"only, not {family} faults (docs/fileserver.md)")

    def argv(self, ctx: NodeContext) -> list[str]:
        node = ctx.node
        argv = ["-m", "nodes.fileserver", "--ip", ctx.listen_ip, "--public-ip", node.public_ip,
                "--port", str(node.storage_port), "--admin-port", str(node.admin_port),
                "--data-dir", ctx.data_dir, "--name", node.name]
        if ctx.log_file:
            argv += ["--log-file", ctx.log_file]
        return argv

    def env(self, ctx: NodeContext) -> dict[str, str]:
        return {ENV_KEY_SEED: ctx.key_seed_hex, ENV_ADMIN_TOKEN: ctx.state.admin_token}

    async def probe(self, session: Any, state: NetworkState,
                    nodes: dict[str, tuple[NodeRecord, int | None]]) -> dict[str, NodeView]:
        views = await asyncio.gather(*(probe_fileserver(session, rec, state.admin_token)
                                       for rec, _ in nodes.values()))
        return dict(zip(nodes, views, strict=True))


async def probe_fileserver(session: Any, node: NodeRecord, token: str) -> NodeView:
    """Ready = its admin state names the expected key and its HTTP port (through its proxy, at
    the advertised address) answers the file API (404 for an id that does not exist)."""
    view = NodeView()
    try:
        st = await rpc.node_admin(session, node.admin_url, token, "state")
        if st.get("pubkey_x25519") != node.pubkey_x25519:
            view.error = (f"admin state reports key {st.get('pubkey_x25519')!r}, expected "
                          f"{node.pubkey_x25519}")
            return view
        url = f"http://{node.public_ip}:{node.storage_port}/file/0/info"
        async with session.get(url) as resp:
            view.answering = resp.status == 404
            if not view.answering:
                view.error = f"GET {url}: HTTP {resp.status}, expected 404"
    except rpc.RpcError as e:
        view.error = str(e)
    except (rpc.aiohttp.ClientError, TimeoutError) as e:
        view.error = f"HTTP port {node.public_ip}:{node.storage_port} not answering: {e!r}"
    return view
