"""The user's own node implementation: ``N:command=PATH`` (a program, process backend) or
``N:image=IMAGE`` (a container image, docker backend).

It gets everything through its environment — never its command line (docs/nodes.md, "Your own
node"): :func:`contract_env` is the one definition of those variables. It joins the seed as our
python node does (signed HTTP proofs, ``POST /internal/v1/proof`` with the join token). Whether
it serves the testnet admin interface is the group's declaration (``has_admin`` in the topology
JSON; default false): with it, readiness asks the node's admin ``state`` and every fault family
is allowed; without, readiness is judged from the seed's listing and protocol answers, and
faults that need the admin interface (behaviours, clock skew) or per-link addresses
(partitions) are refused.
"""

from __future__ import annotations

import asyncio
import os
from typing import Any, ClassVar

from harness.nodekinds.base import (
    ALL_FAULT_FAMILIES,
    CHURN,
    NETWORK,
    NodeContext,
    NodeKind,
    NodeKindError,
    NodeView,
)
from harness.nodekinds.names import COMMAND, IMAGE
from harness.nodekinds.probes import admin_probe, protocol_probe
from harness.state import NetworkState, NodeRecord
from nodes.common.auth import ENV_ADMIN_TOKEN, ENV_JOIN_TOKEN, ENV_KEY_SEED, derive_join_token

#: the node contract's environment (besides the secrets ENV_KEY_SEED, ENV_JOIN_TOKEN and,
#: with the admin interface, ENV_ADMIN_TOKEN from nodes.common.auth)
ENV_PREFIX = "SESSION_TESTNET_"
CONTRACT_VARS: tuple[str, ...] = (
    "NODE_NAME", "LISTEN_IP", "PUBLIC_IP", "STORAGE_PORT", "ADMIN_PORT", "SEED_URL", "DATA_DIR",
    "LOG_FILE", "PUBKEY_ED25519", "PUBKEY_X25519", "PROOF_INTERVAL", "POLL_INTERVAL",
    "RATE_LIMIT")


def contract_env(ctx: NodeContext, *, has_admin: bool) -> dict[str, str]:
    """Everything the harness tells the user's node, as environment variables (docs/nodes.md)."""
    t, node = ctx.topology, ctx.node
    values = {
        "NODE_NAME": node.name,
        "LISTEN_IP": ctx.listen_ip,
        "PUBLIC_IP": node.public_ip,
        "STORAGE_PORT": str(node.storage_port),
        "ADMIN_PORT": str(node.admin_port) if has_admin else "0",
        "SEED_URL": ctx.state.seed_url,
        "DATA_DIR": ctx.data_dir,
        "LOG_FILE": ctx.log_file or "",
        "PUBKEY_ED25519": node.pubkey_ed25519,
        "PUBKEY_X25519": node.pubkey_x25519,
        "PROOF_INTERVAL": str(t["proof_interval"]),
        "POLL_INTERVAL": str(t["poll_interval"]),
        "RATE_LIMIT": str(t.get("rate_limit") or 0),
    }
    out = {ENV_PREFIX + k: v for k, v in values.items()}
    out[ENV_KEY_SEED] = ctx.key_seed_hex
    out[ENV_JOIN_TOKEN] = derive_join_token(ctx.state.admin_token)
    if has_admin:
        out[ENV_ADMIN_TOKEN] = ctx.state.admin_token
    return out


class CustomNode(NodeKind):
    """What both of the user's kinds share: the contract, readiness, faults by declaration."""

    name: ClassVar[str]
    backends: ClassVar[frozenset[str]]
    has_admin: bool = False
    fault_families: frozenset[str] = frozenset({NETWORK, CHURN})

    def __init__(self, path: str | None = None, *, has_admin: bool | None = None) -> None:
        super().__init__(path)
        self.has_admin = bool(has_admin)
        self.fault_families = ALL_FAULT_FAMILIES if self.has_admin else frozenset({NETWORK, CHURN})

    @classmethod
    def for_record(cls, node: NodeRecord) -> NodeKind:
        # the record holds an admin port exactly when the group declared the interface
        return cls(has_admin=bool(node.admin_port))

    def refuse_fault(self, family: str, node: str, backend: str | None = None) -> None:
        if not self.supports(family):
            raise NodeKindError(
                f"node {node} runs the user's own {self.name!r} node without a declared admin "
                f"interface, which does not support {family} faults (supported: "
                f"{', '.join(sorted(self.fault_families))}); if it serves the testnet admin "
                "interface (docs/nodes.md), declare \"has_admin\": true in its node group")

    def env(self, ctx: NodeContext) -> dict[str, str]:
        return contract_env(ctx, has_admin=self.has_admin)

    async def probe(self, session: Any, state: NetworkState,
                    nodes: dict[str, tuple[NodeRecord, int | None]]) -> dict[str, NodeView]:
        if self.has_admin:
            views = await asyncio.gather(*(admin_probe(session, rec, state.admin_token)
                                           for rec, _ in nodes.values()))
        else:
            views = await asyncio.gather(*(protocol_probe(session, rec, sid)
                                           for rec, sid in nodes.values()))
        return dict(zip(nodes, views, strict=True))


class CommandNode(CustomNode):
    """``N:command=PATH``: the program at PATH, started without arguments."""

    name: ClassVar[str] = COMMAND
    backends: ClassVar[frozenset[str]] = frozenset({"process"})

    def check(self, backend: str = "process") -> None:
        if not self.path or not os.path.isfile(self.path) or not os.access(self.path, os.X_OK):
            raise NodeKindError(f"no executable node program at {self.path} ('N:command=PATH' "
                                "names the program of your own node; chmod +x it)")

    def argv(self, ctx: NodeContext) -> list[str]:
        assert self.path is not None
        return [self.path]


class ImageNode(CustomNode):
    """``N:image=IMAGE``: a container of IMAGE with its own entrypoint and command."""

    name: ClassVar[str] = IMAGE
    backends: ClassVar[frozenset[str]] = frozenset({"docker", "swarm"})

    def argv(self, ctx: NodeContext) -> list[str]:
        return []  # the image's own ENTRYPOINT/CMD

    def container_image(self, client: Any, progress: Any) -> str | None:
        import docker.errors

        try:
            client.images.get(self.path)
        except docker.errors.ImageNotFound:
            raise NodeKindError(f"image {self.path} is not on the Docker engine: build or load "
                                "it first (testnets pull nothing for your own nodes)") from None
        return self.path

