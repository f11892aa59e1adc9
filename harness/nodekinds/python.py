"""Our own storage node, ``python -m nodes.snode``: speaks the client protocol and the testnet
admin interface (observations, behaviours, clock), joins the seed with signed HTTP proofs.

A group may name another git revision of this project (``3:python@REF``): its nodes then run
that revision's ``nodes`` package (:mod:`harness.nodekinds.revisions`) — from an extracted copy
on the process backend, from an image built of it on the docker backend — with the same
command line and environment, which the revision must accept (checked before anything starts).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any, ClassVar

from harness.nodekinds.base import ALL_FAULT_FAMILIES, NodeContext, NodeKind, NodeKindError, NodeView
from harness.nodekinds.names import PYTHON_ARGV_FLAGS, PYTHON_ENV_NAMES
from harness.nodekinds.probes import admin_probe
from harness.nodekinds.revisions import Revision, pinned, require_requirements, takes_flag
from harness.state import NetworkState, NodeRecord
from nodes.common.auth import ENV_ADMIN_TOKEN, ENV_JOIN_TOKEN, ENV_KEY_SEED, derive_join_token

#: every flag :meth:`PythonNode.argv` may pass (another revision's node must take them all)
ARGV_FLAGS = PYTHON_ARGV_FLAGS
#: the environment variables :meth:`PythonNode.env` passes (secrets)
ENV_NAMES = PYTHON_ENV_NAMES


class PythonNode(NodeKind):
    name: ClassVar[str] = "python"
    has_admin: bool = True
    fault_families: frozenset[str] = ALL_FAULT_FAMILIES
    backends: ClassVar[frozenset[str]] = frozenset({"process", "docker", "swarm"})
    can_join: ClassVar[bool] = True
    runs_python: ClassVar[bool] = True
    writes_log_file: ClassVar[bool] = True

    def __init__(self, path: str | None = None, *, ref: str | None = None) -> None:
        super().__init__(path)
        #: the git revision to run (a commit once the testnet is planned), None: the installed one
        self.ref = ref

    def revision(self) -> Revision | None:
        """The extracted revision of ``ref`` (None for the installed node)."""
        return pinned(self.ref) if self.ref else None

    def check(self, backend: str = "process") -> None:
        rev = self.revision()
        if rev is not None and backend in ("docker", "swarm"):
            require_requirements(rev)

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
        rev = self.revision()
        # where exit nodes may forward onion requests to servers; a revision that predates the
        # forwarding has no such option (its exits refuse requests to servers, as they did then)
        if rev is None or takes_flag(rev, "--forward-allow"):
            for net in ctx.state.forward_networks:
                argv += ["--forward-allow", net]
        if ctx.log_file:
            argv += ["--log-file", ctx.log_file]
        return argv

    def env(self, ctx: NodeContext) -> dict[str, str]:
        out = {ENV_KEY_SEED: ctx.key_seed_hex, ENV_ADMIN_TOKEN: ctx.state.admin_token,
               ENV_JOIN_TOKEN: derive_join_token(ctx.state.admin_token)}
        rev = self.revision()
        if rev is not None and ctx.state.backend == "process":
            # the revision's nodes package, not the installed one (its image has its own)
            out["PYTHONPATH"] = str(rev.root)
        return out

    def container_image(self, client: Any, progress: Callable[[str], None]) -> str | None:
        rev = self.revision()
        if rev is None:
            return None
        from harness.images import ImageError
        from harness.images.revision import ensure_revision_image

        try:
            return ensure_revision_image(client, rev, progress=progress).tag
        except ImageError as e:
            raise NodeKindError(str(e)) from None

    async def probe(self, session: Any, state: NetworkState,
                    nodes: dict[str, tuple[NodeRecord, int | None]]) -> dict[str, NodeView]:
        views = await asyncio.gather(*(admin_probe(session, rec, state.admin_token)
                                       for rec, _ in nodes.values()))
        return dict(zip(nodes, views, strict=True))

