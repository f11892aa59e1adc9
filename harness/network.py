"""A running testnet: bring it up, wait for it, inspect it, change it, tear it down.

:class:`Testnet` holds everything that does not depend on the runtime: command lines of the seed
and the nodes, churn operations and the state file; it waits for readiness from protocol state
(registered at the seed, in a swarm, answering ``info``; :mod:`harness.readiness`, with the
diagnostics on failure). The runtime itself is a :class:`harness.backends.base.Backend`.
"""

from __future__ import annotations

import os
import secrets
import subprocess
import threading
import time
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor, wait
from dataclasses import replace
from pathlib import Path
from typing import Any

from harness import nodekinds, rpc
from harness.backends.base import Backend, BackendError, Reporter
from harness.backends.registry import BACKENDS, backend_class
from harness.lease import start_reaper, stop_reaper
from harness.nodekinds.base import NodeContext, NodeKind
from harness.readiness import NodeReadiness, NotReadyError, Readiness, ReadinessCheck
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


def _quiet(_: str) -> None:
    pass


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
        await self._check().wait_proxy_api(timeout)

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

    # -- readiness (harness.readiness) -----------------------------------------------------
    def _check(self) -> ReadinessCheck:
        return ReadinessCheck(self.state, self.backend, self.node_kind, self.runtime_targets)

    async def readiness(self, session: Any | None = None) -> Readiness:
        own = session is None
        session = session or rpc.new_session(rpc.aiohttp.ClientTimeout(total=3))
        try:
            return await self._check().probe(session)
        finally:
            if own:
                await session.close()

    def wait_ready(self, timeout: float = 60.0, report: Reporter = _quiet,
                   poll: float = 0.2) -> Readiness:
        """Poll protocol state until every node is ready; raise :class:`NotReadyError` with a
        per-node diagnostic (and the last log lines of what is not ready) on timeout."""
        return rpc.run_sync(self._wait_ready(timeout, report, poll))

    async def _wait_ready(self, timeout: float, report: Reporter, poll: float) -> Readiness:
        r = await self._check().wait(timeout, report, poll)
        self._record_swarms(r)
        report(f"ready: {len(r.nodes)} nodes in {len(self.swarms())} swarms (height {r.height})")
        return r

    def _record_swarms(self, r: Readiness) -> None:
        for n in self.state.nodes:
            n.swarm_id = r.nodes[n.name].swarm_id
        self._save()

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
