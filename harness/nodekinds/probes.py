"""How readiness asks one node what it knows: through the testnet admin interface
(:func:`admin_probe`), or from outside through the client protocol (:func:`protocol_probe`) for
nodes without one."""

from __future__ import annotations

from typing import Any

from harness import rpc
from harness.nodekinds.base import NodeView
from harness.state import NodeRecord
from nodes.protocol.swarm import UNASSIGNED_SWARM

_ZERO_TAIL = "00" * 24


def swarm_probe_account(swarm_id: int) -> str:
    """A Session ID whose swarm-space position is exactly ``swarm_id`` (so it belongs to that
    swarm): its first 8 key bytes are the id, the rest zero."""
    return "05" + swarm_id.to_bytes(8, "big").hex() + _ZERO_TAIL


async def admin_probe(session: Any, node: NodeRecord, token: str) -> NodeView:
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


async def protocol_probe(session: Any, node: NodeRecord, swarm_id: int | None,
                         view: NodeView | None = None) -> NodeView:
    """A node's view from outside: it answers ``info`` over HTTPS, and its ``get_swarm`` answer
    for an account placed exactly at ``swarm_id`` (the seed's assignment) lists its members —
    so the node has the current node list and counts itself in that swarm."""
    view = view or NodeView()
    try:
        if swarm_id is not None:
            status, body = await rpc.storage_rpc(session, node.storage_url, "get_swarm",
                                                 {"pubkey": swarm_probe_account(swarm_id)})
            if status == 200 and isinstance(body, dict):
                members = tuple(sorted(s.get("pubkey_ed25519", "") for s in body.get("snodes", [])))
                view.swarm_members = members
                if node.pubkey_ed25519 in members:
                    view.swarm_id = swarm_id
        status, body = await rpc.storage_rpc(session, node.storage_url, "info", {})
        view.answering = status == 200
        if status != 200:
            view.error = f"HTTP {status}: {str(body)[:120]}"
    except rpc.RpcError as e:
        view.error = str(e)
    return view
