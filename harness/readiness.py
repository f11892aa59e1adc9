"""Readiness of a testnet: the checks and waits that decide it is up.

A testnet is ready when the seed answers, every node is registered at the seed, active, in a
swarm, sees that swarm as the seed does and answers ``info`` (each node group's implementation
asks in its own way: :meth:`harness.nodekinds.base.NodeKind.probe`), and the file server, if
any, answers. :class:`ReadinessCheck` reads that from protocol state, waits for it, and on
failure says what each runtime lacks (:class:`NotReadyError`, with the last log lines).
:class:`harness.network.Testnet` runs it.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from harness import nodekinds, rpc
from harness.backends.base import Backend, Reporter
from harness.nodekinds.base import NodeKind
from harness.state import NetworkState, NodeRecord
from harness.topology import Topology
from nodes.protocol.swarm import UNASSIGNED_SWARM


class NotReadyError(RuntimeError):
    """The testnet did not become ready in time; the message lists what each node lacks."""

    def __init__(self, message: str, artifacts: Path | None = None) -> None:
        super().__init__(message)
        self.artifacts = artifacts


#: how often ``wait_ready`` asks the backend whether a runtime exited (it polls readiness more often)
DEAD_CHECK_S = 1.0


@dataclass
class NodeReadiness:
    name: str
    registered: bool = False
    active: bool = False
    swarm_id: int | None = None
    node_swarm_id: int | None = None
    #: the swarm's members as the seed and as the node see them (ed25519 hex, sorted)
    swarm_members: tuple[str, ...] = ()
    node_swarm_members: tuple[str, ...] | None = None
    answering: bool = False
    error: str | None = None

    @property
    def ready(self) -> bool:
        return (self.registered and self.active and self.swarm_id is not None
                and self.swarm_id == self.node_swarm_id
                and self.node_swarm_members == self.swarm_members and self.answering)

    def missing(self) -> str:
        if not self.registered:
            return "not registered at the seed (no proof received)"
        if not self.active:
            return "registered but not active"
        if self.swarm_id is None:
            return "registered but not assigned to a swarm yet"
        if self.node_swarm_id != self.swarm_id:
            return (f"seed assigned swarm {self.swarm_id:#x} but the node reports "
                    f"{self.node_swarm_id if self.node_swarm_id is None else hex(self.node_swarm_id)}")
        if self.node_swarm_members != self.swarm_members:
            return (f"the node's view of swarm {self.swarm_id:#x} "
                    f"({len(self.node_swarm_members or ())} members) differs from the seed's "
                    f"({len(self.swarm_members)} members): it has not fetched the latest block yet")
        if not self.answering:
            return f"not answering storage RPC 'info': {self.error or 'no answer'}"
        return "ready"


@dataclass
class Readiness:
    seed_ok: bool = False
    seed_error: str | None = None
    height: int | None = None
    nodes: dict[str, NodeReadiness] = field(default_factory=dict)
    #: the file server (None: the testnet has none): answering, or why not
    fileserver_ok: bool | None = None
    fileserver_error: str | None = None

    @property
    def ready(self) -> bool:
        return (self.seed_ok and all(n.ready for n in self.nodes.values())
                and self.fileserver_ok is not False)



@dataclass
class ReadinessCheck:
    """The readiness of one testnet: ``state`` as its runtimes were started by ``backend``,
    ``node_kind`` the implementation of a node record, ``targets`` every runtime to watch for
    an early exit."""

    state: NetworkState
    backend: Backend
    node_kind: Callable[[NodeRecord], NodeKind]
    targets: Callable[[], list[str]]

    async def probe(self, session: Any) -> Readiness:
        r = Readiness(nodes={n.name: NodeReadiness(n.name) for n in self.state.nodes})
        by_key = {n.pubkey_ed25519: n for n in self.state.nodes}
        try:
            res = await rpc.seed_rpc(session, self.state.seed_url, "get_n_service_nodes",
                                     {"active_only": False,
                                      "fields": {"pubkey_ed25519": True, "swarm_id": True,
                                                 "active": True}})
            r.seed_ok = True
            r.height = res.get("height")
            members: dict[int, list[str]] = {}  # swarm -> active members, as the nodes count them
            for sn in res.get("service_node_states", []):
                sid = sn.get("swarm_id")
                if (sn.get("active") and sid not in (None, UNASSIGNED_SWARM)
                        and isinstance(sn.get("pubkey_ed25519"), str)):
                    members.setdefault(int(sid), []).append(sn["pubkey_ed25519"])
                node = by_key.get(sn.get("pubkey_ed25519"))
                if node is None:
                    continue
                nr = r.nodes[node.name]
                nr.registered = True
                nr.active = bool(sn.get("active"))
                nr.swarm_id = None if sid in (None, UNASSIGNED_SWARM) else int(sid)
            for nr in r.nodes.values():
                if nr.swarm_id is not None:
                    nr.swarm_members = tuple(sorted(members.get(nr.swarm_id, ())))
        except rpc.RpcError as e:
            r.seed_error = str(e)

        # each node group's implementation asks its nodes (or the seed about them) in its own
        # way (groups of one kind may differ: another revision, a declared admin interface)
        by_kind: dict[Any, tuple[NodeKind, dict[str, tuple[NodeRecord, int | None]]]] = {}
        topology = Topology.from_dict(self.state.topology)
        for n in self.state.nodes:
            group = replace(topology.node_group(n.name), count=1)
            entry = by_kind.setdefault(group, (nodekinds.group_kind(group), {}))
            entry[1][n.name] = (n, r.nodes[n.name].swarm_id)
        fs = self.state.fileserver
        if fs is not None:
            by_kind[fs.kind] = (self.node_kind(fs), {fs.name: (fs, None)})
        results = await asyncio.gather(*(kind.probe(session, self.state, group)
                                         for kind, group in by_kind.values()))
        for views in results:
            for name, view in views.items():
                if fs is not None and name == fs.name:
                    r.fileserver_ok, r.fileserver_error = view.answering, view.error
                    continue
                nr = r.nodes[name]
                nr.node_swarm_id, nr.node_swarm_members = view.swarm_id, view.swarm_members
                nr.answering, nr.error = view.answering, view.error
        return r

    async def wait(self, timeout: float, report: Reporter, poll: float) -> Readiness:
        """Poll :meth:`probe` until every node is ready; raise :class:`NotReadyError` with a
        per-node diagnostic on timeout or when a runtime exited."""
        deadline = time.monotonic() + timeout
        next_dead_check = 0.0
        last_msg = ""
        async with rpc.new_session(rpc.aiohttp.ClientTimeout(total=3)) as session:
            while True:
                r = await self.probe(session)
                if r.ready:
                    return r
                ready = sum(n.ready for n in r.nodes.values())
                msg = (f"waiting for readiness: {ready}/{len(r.nodes)} nodes ready"
                       if r.seed_ok else "waiting for the seed to answer")
                if msg != last_msg:
                    report(msg)
                    last_msg = msg
                # one engine/process query per runtime: not at every poll (the containers and
                # the processes starting need the cores more than this loop)
                now = time.monotonic()
                if now >= next_dead_check or now > deadline:
                    next_dead_check = now + DEAD_CHECK_S
                    dead = self.dead_runtimes()
                    if dead or now > deadline:
                        raise NotReadyError(self.diagnose(r, timeout, dead))
                await asyncio.sleep(poll)

    def dead_runtimes(self) -> list[str]:
        return [t for t in self.targets() if not self.backend.is_running(self.state, t)]

    def diagnose(self, r: Readiness, timeout: float, dead: list[str]) -> str:
        lines = []
        if dead:
            lines.append(f"testnet {self.state.name!r}: {', '.join(dead)} exited during start-up")
        else:
            lines.append(f"testnet {self.state.name!r} not ready after {timeout:.0f}s")
        if not r.seed_ok:
            lines.append(f"  seed at {self.state.seed_url}: {r.seed_error}")
        for n in self.state.nodes:
            nr = r.nodes[n.name]
            if not nr.ready:
                admin = f", admin {n.admin_url}" if n.admin_port else f", {n.kind}"
                lines.append(f"  {n.name} ({n.public_ip}:{n.storage_port}{admin}): {nr.missing()}")
        fs = self.state.fileserver
        if fs is not None and r.fileserver_ok is False:
            lines.append(f"  {fs.name} (http://{fs.public_ip}:{fs.storage_port}, admin "
                         f"{fs.admin_url}): {r.fileserver_error or 'not answering'}")
        bad = [t for t in (["seed"] if (not r.seed_ok or "seed" in dead) else [])]
        bad += [n for n, nr in r.nodes.items() if not nr.ready]
        if fs is not None and (r.fileserver_ok is False or fs.name in dead):
            bad.append(fs.name)
        for target in bad[:6]:
            try:
                tail = self.backend.read_log(self.state, target, tail=15).rstrip()
            except Exception as e:  # diagnostics must never hide the real error
                tail = f"(log unavailable: {e})"
            lines.append(f"--- last log lines of {target} ---\n{tail}")
        return "\n".join(lines)

    async def wait_proxy_api(self, timeout: float) -> None:
        """Wait until the Toxiproxy server's API answers; raise :class:`NotReadyError` if it
        exited or did not answer within ``timeout``."""
        deadline = time.monotonic() + timeout
        next_dead_check = time.monotonic() + DEAD_CHECK_S  # it was just started
        url = f"{self.state.toxiproxy_url}/version"
        async with rpc.new_session(rpc.aiohttp.ClientTimeout(total=2)) as s:
            while True:
                try:
                    async with s.get(url) as resp:
                        if resp.status == 200:
                            return
                except (rpc.aiohttp.ClientError, TimeoutError):
                    pass
                now = time.monotonic()
                if now >= next_dead_check or now > deadline:
                    next_dead_check = now + DEAD_CHECK_S
                    running = self.backend.is_running(self.state, "toxiproxy")
                else:
                    running = True
                if not running:
                    raise NotReadyError(
                        f"testnet {self.state.name!r}: the Toxiproxy server exited during start-up; "
                        f"its log:\n{self.backend.read_log(self.state, 'toxiproxy', tail=20)}")
                if time.monotonic() > deadline:
                    raise NotReadyError(f"testnet {self.state.name!r}: Toxiproxy API {url} not answering "
                                        f"after {timeout:.0f}s")
                await asyncio.sleep(0.1)
