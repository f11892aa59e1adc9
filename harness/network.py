"""A running testnet: bring it up, wait for it, inspect it, change it, tear it down.

:class:`Testnet` holds everything that does not depend on the runtime: command lines of the seed
and the nodes, readiness from protocol state (registered at the seed, in a swarm, answering
``info``), diagnostics on failure, churn operations and the state file. The runtime itself is a
:class:`harness.backends.base.Backend`.
"""

from __future__ import annotations

import asyncio
import os
import secrets
import subprocess
import threading
import time
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor, wait
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from harness import nodekinds, rpc
from harness.backends.base import Backend, BackendError, Reporter
from harness.backends.registry import BACKENDS, backend_class
from harness.lease import start_reaper, stop_reaper
from harness.nodekinds.base import NodeContext, NodeKind
from harness.state import (
    NetworkState,
    NodeRecord,
    StateDir,
    StateError,
    is_stale,
    locked,
    process_start_time,
)
from harness.topology import Topology, node_index, node_name
from nodes.common.auth import ENV_ADMIN_TOKEN, ENV_JOIN_TOKEN, ENV_TESTNET_SEED, derive_join_token
from nodes.protocol.swarm import UNASSIGNED_SWARM


class NotReadyError(RuntimeError):
    """The testnet did not become ready in time; the message lists what each node lacks."""

    def __init__(self, message: str, artifacts: Path | None = None) -> None:
        super().__init__(message)
        self.artifacts = artifacts


#: how often ``wait_ready`` asks the backend whether a runtime exited (it polls readiness more often)
DEAD_CHECK_S = 1.0


def _quiet(_: str) -> None:
    pass


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


class Testnet:
    """A handle on one testnet. Use :meth:`up` to create one, :meth:`attach` to find one by
    name; both work as context managers that tear the testnet down on exit."""

    __test__ = False  # not a pytest test class, despite the name

    def __init__(self, state: NetworkState, statedir: StateDir, backend: Backend) -> None:
        self.state = state
        self.statedir = statedir
        self.backend = backend
        self._state_mtime = self._mtime()
        #: the reaper this handle started (``up`` with a lease), stopped by ``down``
        self._reaper: subprocess.Popen[bytes] | None = None

    # -- construction ------------------------------------------------------------------------
    @classmethod
    def up(cls, topology: Topology | None = None, *, backend: str = "process",
           timeout: float = 60.0, report: Reporter = _quiet, lease: bool = True) -> Testnet:
        """Start a testnet and return once every node is registered, in a swarm and answering.

        With ``lease`` (the default of the Python API and the pytest plugin) the testnet is
        removed when this process dies, even by SIGKILL (:mod:`harness.reaper`); without
        (``testnet up`` on the command line) it stays until ``down``.

        On failure every log is saved into the testnet's artifacts folder, everything started is
        removed, and :class:`NotReadyError` / :class:`BackendError` says what went wrong.
        """
        topology = topology or Topology()
        statedir = StateDir(topology.name)
        backend_cls = backend_class(backend)
        if any(g.ref for g in topology.nodes):  # N:python@REF -> its commit, checked
            topology = replace(topology, nodes=tuple(
                replace(g, ref=nodekinds.pin_revision(g.ref)) if g.ref else g
                for g in topology.nodes))
        nodekinds.check_groups(topology.nodes, backend)
        try:
            backend_cls.sweep_stale(report)
        except BackendError as e:
            # leftovers of another, dead testnet (e.g. a network the engine still holds an
            # endpoint of) must not stop this one from coming up; `testnet clean` reports them
            report(f"warning: could not remove every stale testnet ({e}); continuing")
        with locked():
            if statedir.exists():
                old = statedir.load()
                raise BackendError(
                    f"a testnet named {topology.name!r} already exists ({old.backend} backend, "
                    f"status {old.status}); run 'testnet down --name {topology.name}' first or "
                    "choose another --name"
                )
            statedir.remove()  # leftovers of a testnet without state (e.g. artifacts)
            statedir.create()
            be = backend_cls(statedir)
            try:
                state = be.plan(topology, admin_token=secrets.token_hex(16))
            except BaseException:  # e.g. no swarm mode, no free subnet: nothing was started
                statedir.remove()
                raise
            if lease:
                state.lease_owner_pid = os.getpid()
                state.lease_owner_start = process_start_time(state.lease_owner_pid)
            statedir.save(state)
        net = cls(state, statedir, be)
        try:
            if lease:
                net._reaper = start_reaper(statedir, state)
                net.state.reaper_pid = net._reaper.pid
                net._save()
            net._start(report)
            net.wait_ready(timeout=timeout, report=report)
        except BaseException as e:
            artifacts = net.save_artifacts(reason=f"up failed: {e}")
            report(f"up failed; logs saved to {artifacts}")
            net.down()
            if isinstance(e, NotReadyError):
                e.artifacts = artifacts
            raise
        net.state.status = "up"
        net._save()
        return net

    @classmethod
    def attach(cls, name: str) -> Testnet:
        statedir = StateDir(name)
        state = statedir.load()
        return cls(state, statedir, backend_class(state.backend)(statedir))

    def __enter__(self) -> Testnet:
        return self

    def __exit__(self, *exc: object) -> None:
        self.down()

    # -- properties --------------------------------------------------------------------------
    @property
    def name(self) -> str:
        return self.state.name

    @property
    def topology(self) -> Topology:
        return Topology.from_dict(self.state.topology)

    @property
    def seed_url(self) -> str:
        return self.state.seed_url

    @property
    def nodes(self) -> list[NodeRecord]:
        self.sync_state()
        return list(self.state.nodes)

    def node(self, name: str) -> NodeRecord:
        self.sync_state()
        return self.state.node(name)

    def to_dict(self) -> dict[str, Any]:
        """The documented JSON of ``testnet up --json``: the state's public part and the testnet
        seed (random unless given; ``--seed`` with it replays keys, swarms and schedules)."""
        return {**self.state.public_dict(), "testnet_seed": self.topology.seed}

    # -- command lines -----------------------------------------------------------------------
    def seed_argv(self) -> list[str]:
        t = self.topology
        st = self.state
        argv = [
            "-m", "nodes.seed",
            "--host", self.backend.listen_ip(st, "seed"),
            "--port", str(st.seed_runtime["port"]),
            "--https-port", str(st.seed_runtime.get("https_port", 0)),
            "--data-dir", self.backend.data_dir(st, "seed"),
            "--expect", str(t.node_count),
            "--min-swarm-size", str(t.effective_min_swarm_size),
            "--new-swarm-size", str(t.effective_new_swarm_size),
            "--ideal-swarm-margin", str(t.ideal_swarm_margin),
            "--block-interval", str(t.block_interval),
            "--proof-timeout", str(t.proof_timeout),
        ]
        log = self.backend.log_file(st, "seed")
        if log:
            argv += ["--log-file", log]
        argv += nodekinds.seed_args(st, self.statedir.path, self._link_ip)
        return argv

    def _link_ip(self, src: str, dst: str) -> str:
        """The IP of ``src``'s link proxy to ``dst`` (the backend's link address, port dropped)."""
        addr = self.backend.link_address(self.state, src=src, dst=dst)
        ip, sep, port = addr.rpartition(":")
        return ip if sep and port.isdigit() else addr

    def seed_env(self) -> dict[str, str]:
        """The seed's secrets, passed in its environment (never on its command line): the testnet
        seed (real nodes' keys derive from it), the admin token and the nodes' join token."""
        token = self.state.admin_token
        return {ENV_TESTNET_SEED: self.topology.seed, ENV_ADMIN_TOKEN: token,
                ENV_JOIN_TOKEN: derive_join_token(token)}

    def node_env(self, node: NodeRecord) -> dict[str, str]:
        """The node's secrets (key seed, tokens), from its implementation (NodeKind.env)."""
        return self.node_kind(node).env(self._node_context(node))

    def node_kind(self, node: NodeRecord) -> NodeKind:
        """The implementation of ``node`` (harness.nodekinds; the file server's for it)."""
        if node.kind == nodekinds.FILESERVER:
            return nodekinds.node_kind(node.kind)
        return nodekinds.group_kind(self.topology.node_group(node.name))

    def node_argv(self, node: NodeRecord) -> list[str]:
        """The node's command line, from its implementation (see NodeKind.argv)."""
        return self.node_kind(node).argv(self._node_context(node))

    def _node_context(self, node: NodeRecord) -> NodeContext:
        st = self.state
        return NodeContext(
            state=st, node=node, listen_ip=self.backend.listen_ip(st, node.name),
            data_dir=self.backend.data_dir(st, node.name),
            log_file=self.backend.log_file(st, node.name),
            key_seed_hex=self.topology.node_identity(node.name).seed_hex,
            topology=st.topology)

    # -- lifecycle ---------------------------------------------------------------------------
    def _start(self, report: Reporter) -> None:
        report(f"preparing {self.backend.kind} runtime for testnet {self.name!r}")
        self.backend.prepare(self.state, report)
        self._save()
        if not self.toxiproxy_url:
            self._start_seed_and_nodes(report)
            return
        pair_proxies, pair_relays = nodekinds.pair_link_proxies(self.state, self._link_ip)
        relays = [r for n in self.state.nodes for r in self.node_kind(n).udp_relays(n)]
        relays += pair_relays
        if not self.backend.concurrent_start or pair_proxies or relays:
            # real servers (pair links, UDP relays) must find their proxies in place when they
            # start: one phase after the other
            self._start_proxies(report, pair_proxies, relays)
            self._start_seed_and_nodes(report)
            return
        # Nodes of ours register at the seed directly (retrying until it answers) and reach
        # their peers only once the seed assigned swarms, which the readiness below waits for:
        # Toxiproxy with the proxies in front of the nodes (proxies may be created before their
        # upstreams listen), the seed and the nodes all start at once. Each thread sets fields
        # of its own in the state (containers); nothing saves the state until all are done.
        with ThreadPoolExecutor(max_workers=2, thread_name_prefix="testnet-up") as pool:
            started = [pool.submit(self._start_proxies, report, [], [], save=False),
                       pool.submit(self._start_seed, report, save=False)]
            try:
                self._start_nodes(report, save=False)
            finally:
                wait(started)  # never leave one running into a teardown
            for f in started:
                f.result()  # the first error, if one failed
        self._save()

    def _start_proxies(self, report: Reporter, pair_proxies: list[dict[str, Any]],
                       relays: list[dict[str, str]], save: bool = True) -> None:
        """Toxiproxy, the proxies in front of every node and, for real servers, the link proxies
        between them and the UDP relay."""
        report("starting Toxiproxy")
        self.backend.start_proxy(self.state)
        if save:
            self._save()
        rpc.run_sync(self._wait_proxy_api(30.0))
        rpc.run_sync(self._populate_proxies(self.runtime_nodes()))
        report("Toxiproxy: proxies in front of every node created")
        # real servers cannot be re-pointed at a link proxy later: each pair of them talks
        # through one of its own from the start (docs/nodes.md)
        if pair_proxies:
            report(f"creating {len(pair_proxies)} link proxies between real nodes")
            ips = sorted({p["listen"].rpartition(":")[0] for p in pair_proxies})
            self.backend.ensure_addresses(self.state, ips)
            if save:
                self._save()
            rpc.run_sync(self._post_populate(pair_proxies))
        if relays:  # Toxiproxy relays TCP only: the UDP side of proxied ports (QUIC)
            report("starting the UDP relay")
            self.backend.start_udp_relay(self.state, relays)
            if save:
                self._save()

    def _start_seed_and_nodes(self, report: Reporter) -> None:
        self._start_seed(report)
        self._start_nodes(report)

    def _start_seed(self, report: Reporter, save: bool = True) -> None:
        report("starting seed")
        self.backend.start_seed(self.state, self.seed_argv(), self.seed_env())
        if save:
            self._save()

    def _start_nodes(self, report: Reporter, save: bool = True) -> None:
        fs = " and the file server" if self.state.fileserver else ""
        report(f"starting {len(self.state.nodes)} nodes{fs}")
        self.backend.start_nodes(self.state, [(n, self.node_argv(n), self.node_env(n))
                                              for n in self.runtime_nodes()])
        if save:
            self._save()

    def _save(self) -> None:
        self.statedir.save(self.state)
        self._state_mtime = self._mtime()

    def _mtime(self) -> float | None:
        try:
            return self.statedir.state_file.stat().st_mtime_ns
        except FileNotFoundError:
            return None

    def sync_state(self) -> None:
        """Re-read the state file if another process (e.g. a CLI churn command) changed it, so
        runtime handles (pids, containers) and added nodes are current."""
        mtime = self._mtime()
        if mtime is not None and mtime != getattr(self, "_state_mtime", None):
            self.state = self.statedir.load()
            self._state_mtime = mtime

    # -- proxies -----------------------------------------------------------------------------
    @property
    def toxiproxy_url(self) -> str | None:
        return self.state.toxiproxy_url

    def runtime_nodes(self) -> list[NodeRecord]:
        """The records the backend runs like nodes: the storage nodes and the file server."""
        return self.state.nodes + ([self.state.fileserver] if self.state.fileserver else [])

    def runtime_targets(self) -> list[str]:
        """Every runtime of the testnet: the seed, the Toxiproxy server (if any), the nodes, the
        file server (if any)."""
        return (["seed"] + (["toxiproxy"] if self.toxiproxy_url else [])
                + (["udprelay"] if self.state.udprelay_pid or self.state.udprelay_container else [])
                + [n.name for n in self.runtime_nodes()])

    async def _wait_proxy_api(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        next_dead_check = time.monotonic() + DEAD_CHECK_S  # it was just started
        url = f"{self.toxiproxy_url}/version"
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
                        f"testnet {self.name!r}: the Toxiproxy server exited during start-up; "
                        f"its log:\n{self.backend.read_log(self.state, 'toxiproxy', tail=20)}")
                if time.monotonic() > deadline:
                    raise NotReadyError(f"testnet {self.name!r}: Toxiproxy API {url} not answering "
                                        f"after {timeout:.0f}s")
                await asyncio.sleep(0.1)

    async def _populate_proxies(self, nodes: list[NodeRecord]) -> None:
        """Create (or replace) the proxies of each node: advertised address -> node process
        (one per port the node serves: HTTPS, and OxenMQ for the real server)."""
        await self._post_populate([spec for n in nodes for spec in self.node_kind(n).proxies(n)])

    async def _post_populate(self, body: list[dict[str, Any]]) -> None:
        """``POST /populate`` of Toxiproxy: create (or replace) the proxies ``body``."""
        if not body:
            return
        url = f"{self.toxiproxy_url}/populate"
        async with rpc.new_session() as s:
            try:
                async with s.post(url, json=body) as resp:
                    if resp.status >= 300:
                        raise BackendError(f"{url}: HTTP {resp.status}: {await resp.text()}")
            except (rpc.aiohttp.ClientError, TimeoutError) as e:
                raise BackendError(f"{url}: cannot create proxies: {e!r}") from None

    def down(self) -> None:
        """Stop and remove everything this testnet started. Idempotent."""
        with locked():
            self.backend.destroy(self.state)
            self.statedir.remove()
        stop_reaper(self._reaper)

    def release_lease(self) -> None:
        """Let the testnet outlive this process (e.g. kept to inspect a failed test): like one
        started by ``testnet up``, it then stays until ``down``. Its reaper leaves."""
        with locked():
            self.sync_state()
            self.state.lease_owner_pid = self.state.lease_owner_start = None
            self.state.reaper_pid = None
            self._save()
        stop_reaper(self._reaper)
        self._reaper = None

    # -- readiness ---------------------------------------------------------------------------
    async def readiness(self, session: Any | None = None) -> Readiness:
        own = session is None
        session = session or rpc.new_session(rpc.aiohttp.ClientTimeout(total=3))
        try:
            return await self._readiness(session)
        finally:
            if own:
                await session.close()

    async def _readiness(self, session: Any) -> Readiness:
        r = Readiness(nodes={n.name: NodeReadiness(n.name) for n in self.state.nodes})
        by_key = {n.pubkey_ed25519: n for n in self.state.nodes}
        try:
            res = await rpc.seed_rpc(session, self.seed_url, "get_n_service_nodes",
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
        topology = self.topology
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

    def wait_ready(self, timeout: float = 60.0, report: Reporter = _quiet,
                   poll: float = 0.2) -> Readiness:
        """Poll protocol state until every node is ready; raise :class:`NotReadyError` with a
        per-node diagnostic (and the last log lines of what is not ready) on timeout."""
        return rpc.run_sync(self._wait_ready(timeout, report, poll))

    async def _wait_ready(self, timeout: float, report: Reporter, poll: float) -> Readiness:
        deadline = time.monotonic() + timeout
        next_dead_check = 0.0
        last_msg = ""
        async with rpc.new_session(rpc.aiohttp.ClientTimeout(total=3)) as session:
            while True:
                r = await self._readiness(session)
                if r.ready:
                    self._record_swarms(r)
                    report(f"ready: {len(r.nodes)} nodes in {len(self.swarms())} swarms "
                           f"(height {r.height})")
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
                    dead = self._dead_runtimes()
                    if dead or now > deadline:
                        raise NotReadyError(self._diagnose(r, timeout, dead))
                await asyncio.sleep(poll)

    def _dead_runtimes(self) -> list[str]:
        return [t for t in self.runtime_targets() if not self.backend.is_running(self.state, t)]

    def _record_swarms(self, r: Readiness) -> None:
        for n in self.state.nodes:
            n.swarm_id = r.nodes[n.name].swarm_id
        self._save()

    def _diagnose(self, r: Readiness, timeout: float, dead: list[str]) -> str:
        lines = []
        if dead:
            lines.append(f"testnet {self.name!r}: {', '.join(dead)} exited during start-up")
        else:
            lines.append(f"testnet {self.name!r} not ready after {timeout:.0f}s")
        if not r.seed_ok:
            lines.append(f"  seed at {self.seed_url}: {r.seed_error}")
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

    # -- inspection --------------------------------------------------------------------------
    def swarms(self) -> dict[int, list[str]]:
        out: dict[int, list[str]] = {}
        for n in self.state.nodes:
            if n.swarm_id is not None:
                out.setdefault(n.swarm_id, []).append(n.name)
        return out

    def refresh(self) -> Readiness:
        """Re-read swarm ids from the seed (after churn) and return the live readiness."""
        r = rpc.run_sync(self.readiness())
        self._record_swarms(r)
        return r

    def status(self) -> dict[str, Any]:
        self.sync_state()
        r = rpc.run_sync(self.readiness())
        out = self.to_dict()
        out["seed"] = {"url": self.seed_url, "answering": r.seed_ok, "height": r.height,
                       "running": self.backend.is_running(self.state, "seed")}
        if self.toxiproxy_url:
            out["toxiproxy"] = {"url": self.toxiproxy_url,
                                "running": self.backend.is_running(self.state, "toxiproxy")}
        if out.get("fileserver"):
            out["fileserver"]["running"] = self.backend.is_running(self.state, out["fileserver"]["name"])
            out["fileserver"]["ready"] = bool(r.fileserver_ok)
            if not r.fileserver_ok:
                out["fileserver"]["problem"] = r.fileserver_error or "not answering"
        for node in out["nodes"]:
            nr = r.nodes[node["name"]]
            node["running"] = self.backend.is_running(self.state, node["name"])
            node["ready"] = nr.ready
            node["swarm_id"] = nr.swarm_id
            if not nr.ready:
                node["problem"] = nr.missing()
        return out

    def log_targets(self, targets: Sequence[str] = ()) -> list[str]:
        """The runtimes named by ``targets`` (node names or Ed25519 keys, ``seed``,
        ``toxiproxy``) by their log names; every runtime when ``targets`` is empty. A name that
        is none of them raises :class:`StateError` listing the ones there are."""
        self.sync_state()
        every = self.runtime_targets()
        if not targets:
            return every
        out: list[str] = []
        for t in targets:
            if t not in every:
                try:
                    t = self.state.node(t).name
                except StateError:
                    raise StateError(f"testnet {self.name!r} has no node {t!r} (logs: "
                                     f"{', '.join(every)})") from None
            if t not in out:
                out.append(t)
        return out

    def logs(self, target: str | None = None, *, tail: int | None = None) -> str:
        """The log of one runtime (``seed``, ``toxiproxy``, a node), or of every runtime one
        after the other under ``==> name <==`` headers (the last ``tail`` lines of each)."""
        targets = self.log_targets([target] if target else [])
        if target:
            return self.backend.read_log(self.state, targets[0], tail=tail)
        parts = []
        for t in targets:
            parts.append(f"==> {t} <==\n{self.backend.read_log(self.state, t, tail=tail)}")
        return "\n".join(parts)

    def follow_logs(self, target: str, *, tail: int | None = None,
                    stop: threading.Event | None = None) -> Iterator[str]:
        """Lines of one runtime's log (its last ``tail`` lines, or all), then new lines as they
        are written, across kill/restart of the runtime, until ``stop`` is set or the testnet is
        down. :mod:`harness.logs` merges several of them."""
        (name,) = self.log_targets([target])
        return self.backend.follow_log(self.state, name, tail=tail, stop=stop)

    def save_artifacts(self, reason: str = "") -> Path:
        """Copy every log (and the state) into a new folder under ``<state home>/artifacts``,
        which outlives the testnet; return it."""
        folder = self.statedir.home / "artifacts" / f"{self.name}-{time.strftime('%Y%m%d-%H%M%S')}"
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "REASON.txt").write_text(reason + "\n")
        # the state holds the admin token and the testnet seed: owner-only, like the state file
        fd = os.open(folder / "state.json", os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(self.state.to_json())
        for t in self.runtime_targets():
            try:
                text = self.backend.read_log(self.state, t)
            except Exception as e:
                text = f"(log unavailable: {e})\n"
            (folder / f"{t}.log").write_text(text)
        return folder

    # -- control -----------------------------------------------------------------------------
    def seed_admin(self, path: str, body: dict[str, Any] | None = None, method: str = "POST") -> Any:
        async def call() -> Any:
            async with rpc.new_session() as s:
                return await rpc.seed_admin(s, self.seed_url, self.state.admin_token, path, body,
                                            method)

        return rpc.run_sync(call())

    def node_admin(self, node: str, path: str, body: dict[str, Any] | None = None,
                   method: str = "GET") -> Any:
        rec = self.node(node)

        async def call() -> Any:
            async with rpc.new_session() as s:
                return await rpc.node_admin(s, rec.admin_url, self.state.admin_token, path, body,
                                            method)

        return rpc.run_sync(call())

    def advance_block(self) -> Any:
        return self.seed_admin("block")

    # -- churn -------------------------------------------------------------------------------
    def kill(self, node: str) -> None:
        self.backend.stop_node(self.state, self.node(node), kill=True)
        self._save()

    def stop(self, node: str) -> None:
        self.backend.stop_node(self.state, self.node(node), kill=False)
        self._save()

    def start(self, node: str) -> None:
        rec = self.node(node)
        self.backend.start_node(self.state, rec, self.node_argv(rec), self.node_env(rec))
        self._save()

    def restart(self, node: str) -> None:
        self.stop(node)
        self.start(node)

    def pause(self, node: str) -> None:
        self.backend.pause_node(self.state, self.node(node))
        self._save()

    def unpause(self, node: str) -> None:
        self.backend.unpause_node(self.state, self.node(node))
        self._save()

    def decommission(self, node: str) -> None:
        self.seed_admin("decommission", {"pubkey_ed25519": self.node(node).pubkey_ed25519})

    def recommission(self, node: str) -> None:
        self.seed_admin("recommission", {"pubkey_ed25519": self.node(node).pubkey_ed25519})

    def add_nodes(self, count: int = 1, *, timeout: float = 60.0,
                  report: Reporter = _quiet) -> list[NodeRecord]:
        """Join ``count`` new nodes (deterministic keys: the next names in sequence) and wait
        until the whole testnet, new nodes included, is ready again."""
        if count < 1:
            raise ValueError(f"count must be >= 1, got {count}")
        self.sync_state()
        cannot = [k for k in self.topology.kinds if not nodekinds.kind_class(k).can_join]
        if cannot:
            raise BackendError(f"testnet {self.name!r} runs {', '.join(cannot)} nodes, which "
                               "cannot join a running testnet (the seed's list of real nodes is "
                               "fixed when it starts)")
        start = max((node_index(n.name) for n in self.state.nodes), default=0) + 1
        new = [self.backend.plan_node(self.state, node_name(i)) for i in range(start, start + count)]
        self.state.nodes.extend(new)
        self._save()
        if self.toxiproxy_url:
            rpc.run_sync(self._populate_proxies(new))
        self.backend.start_nodes(self.state, [(n, self.node_argv(n), self.node_env(n)) for n in new])
        self._save()
        self.wait_ready(timeout=timeout, report=report)
        return new

    def wait_for(self, predicate: Any, *, timeout: float = 30.0, poll: float = 0.25,
                 what: str = "condition") -> Any:
        """Poll ``predicate()`` until it returns a truthy value; raise TimeoutError naming
        ``what`` otherwise."""
        deadline = time.monotonic() + timeout
        while True:
            value = predicate()
            if value:
                return value
            if time.monotonic() > deadline:
                raise TimeoutError(f"testnet {self.name!r}: {what} not reached within {timeout}s")
            time.sleep(poll)


def clean(report: Reporter = _quiet) -> list[str]:
    """Remove every testnet whose harness is gone (crashed/SIGKILLed ``up``, dead processes)
    from every backend; return the names removed. Raises :class:`BackendError` naming what
    could not be removed (the other backends are still cleaned first)."""
    removed: list[str] = []
    errors: list[str] = []
    for kind in BACKENDS:
        try:
            cls = backend_class(kind)
        except ImportError:
            continue
        try:
            removed += cls.sweep_stale(report)
        except BackendError as e:
            report(f"{kind}: {e}")
            errors.append(f"{kind} backend: {e}")
    if errors:  # after every backend had its turn; say what was removed all the same
        done = f" (removed: {', '.join(sorted(set(removed)))})" if removed else ""
        raise BackendError("clean failed: " + "; ".join(errors) + done)
    return sorted(set(removed))


__all__ = ["Testnet", "NotReadyError", "BackendError", "StateError", "clean", "is_stale",
           "Readiness", "NodeReadiness"]
