"""A handle on one testnet's state: what every operation on a testnet starts from.

:class:`NetworkHandle` holds the testnet's :class:`~harness.state.NetworkState`, its state folder
and its :class:`~harness.backends.base.Backend`; it saves the state, re-reads it when another
process changed it, and names the testnet's runtimes. :class:`harness.startup.NetworkStartUp`
starts them; :class:`harness.network.Testnet` is the operator built on both.
"""

from __future__ import annotations

from typing import Any

from harness.backends.base import Backend
from harness.state import NetworkState, NodeRecord, StateDir
from harness.topology import Topology


class NetworkHandle:
    """One testnet's state, state folder and backend."""

    def __init__(self, state: NetworkState, statedir: StateDir, backend: Backend) -> None:
        self.state = state
        self.statedir = statedir
        self.backend = backend
        self._state_mtime = self._mtime()

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

    # -- state file --------------------------------------------------------------------------
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

    # -- runtimes ----------------------------------------------------------------------------
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
