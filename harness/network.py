"""A running testnet: bring it up, wait for it, inspect it, change it, tear it down.

:class:`Testnet` holds everything that does not depend on the runtime: ``up`` and ``down``,
status, logs and artifacts, the admin calls and churn operations. It builds on
:class:`harness.handle.NetworkHandle` (the state and its file) and
:class:`harness.startup.NetworkStartUp` (command lines and the start of the runtimes), and waits
for readiness from protocol state (registered at the seed, in a swarm, answering ``info``;
:mod:`harness.readiness`, with the diagnostics on failure). The runtime itself is a
:class:`harness.backends.base.Backend`.
"""
from __future__ import annotations

import os
import secrets
import subprocess
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

from harness import nodekinds, rpc
from harness.backends.base import Backend, BackendError, Reporter
from harness.backends.registry import BACKENDS, backend_class
from harness.lease import start_reaper, stop_reaper
from harness.readiness import NodeReadiness, NotReadyError, Readiness
from harness.startup import NetworkStartUp
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


def _quiet(_: str) -> None:
    pass


class Testnet(NetworkStartUp):
    """A handle on one testnet. Use :meth:`up` to create one, :meth:`attach` to find one by
    name; both work as context managers that tear the testnet down on exit."""

    __test__ = False  # not a pytest test class, despite the name

    def __init__(self, state: NetworkState, statedir: StateDir, backend: Backend) -> None:
        super().__init__(state, statedir, backend)
        #: the reaper this handle started (``up`` with a lease), stopped by ``down``
        self._reaper: subprocess.Popen[bytes] | None = None

    # -- construction and teardown -----------------------------------------------------------
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
