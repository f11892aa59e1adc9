"""The runtime interface: one implementation per way of running nodes (processes, containers).

A backend only knows how to place, start, stop and inspect the seed and node *runtimes*. What a
testnet is (topology, keys, command lines, readiness, diagnostics) lives in
:mod:`harness.network` and is shared by every backend.
"""

from __future__ import annotations

import abc
import threading
from collections.abc import Callable, Iterator
from typing import ClassVar

from harness.nodekinds.names import FILESERVER
from harness.state import NetworkState, NodeRecord, StateDir
from harness.topology import FILESERVER_NAME, Topology
from nodes.fileserver.config import FILESERVER_PORT
from nodes.protocol.constants import ADMIN_PORT

#: progress callback: one human-readable line per step
Reporter = Callable[[str], None]

#: the file server's host number in the testnet's ``P.0.0/24``: advertised at ``P.0.3`` (its
#: Toxiproxy proxy), running at ``P.0.4`` (``P`` = ``127.X`` or ``10.X``; docs/fileserver.md)
FILESERVER_HOST = 3


def fileserver_record(topology: Topology, prefix: str, *, proxied: bool) -> NodeRecord:
    """The file server's record for a testnet whose ``P.0`` prefix is ``prefix``."""
    ident = topology.fileserver_identity()
    own = f"{prefix}.{FILESERVER_HOST + 1}"
    return NodeRecord(name=FILESERVER_NAME, kind=FILESERVER,
                      public_ip=f"{prefix}.{FILESERVER_HOST}" if proxied else own,
                      bind_ip=own if proxied else None, proxy=FILESERVER_NAME if proxied else None,
                      storage_port=FILESERVER_PORT, admin_port=ADMIN_PORT,
                      pubkey_ed25519=ident.ed25519_hex, pubkey_x25519=ident.x25519_hex)


class BackendError(RuntimeError):
    """A runtime operation failed; the message names the node/container/process and what to do."""


class Backend(abc.ABC):
    kind: ClassVar[str]
    #: ``Testnet.up`` may start Toxiproxy (and create the proxies) while it starts the seed and
    #: the nodes, from two threads: the backend's start methods must be thread-safe for that
    concurrent_start: ClassVar[bool] = False

    def __init__(self, statedir: StateDir) -> None:
        self.statedir = statedir

    # -- placement ---------------------------------------------------------------------------
    @abc.abstractmethod
    def plan(self, topology: Topology, admin_token: str) -> NetworkState:
        """Choose addresses for the seed and every node (no side effects except reservations)."""

    @abc.abstractmethod
    def plan_node(self, state: NetworkState, name: str) -> NodeRecord:
        """Address a new node ``name`` in a running testnet (for joins)."""

    # -- paths as seen by the runtime -------------------------------------------------------
    @abc.abstractmethod
    def data_dir(self, state: NetworkState, target: str) -> str:
        """Where the seed (``"seed"``) or node ``target`` keeps its data, as its process sees it."""

    def log_file(self, state: NetworkState, target: str) -> str | None:
        """A log file path for ``target``, or None when the runtime captures stderr itself."""
        return None

    def listen_ip(self, state: NetworkState, target: str) -> str:
        """The address ``target`` binds to (the advertised address unless overridden)."""
        if target == "seed":
            return str(state.seed_runtime["ip"])
        node = state.node(target)
        return node.bind_ip or node.public_ip

    # -- lifecycle ---------------------------------------------------------------------------
    def prepare(self, state: NetworkState, report: Reporter) -> None:  # noqa: B027 - optional hook
        """Create shared resources (images, networks) before anything starts."""

    @abc.abstractmethod
    def start_seed(self, state: NetworkState, argv: list[str], env: dict[str, str]) -> None:
        """Start the seed with ``python -m nodes.seed`` arguments ``argv`` and the secrets ``env``
        (environment variables: never on a command line)."""

    @abc.abstractmethod
    def start_proxy(self, state: NetworkState) -> None:
        """Start the Toxiproxy server of the testnet (API at ``state.toxiproxy_url``)."""

    def start_udp_relay(self, state: NetworkState, relays: list[dict[str, str]]) -> None:
        """Start ``python -m nodes.udprelay`` for ``relays`` (``{"listen", "upstream"}``): the
        UDP side of proxied addresses (QUIC of the real storage server)."""
        raise BackendError(f"the {self.kind} backend cannot relay UDP (needed by nodes that "
                           "speak QUIC behind proxies): use the process backend")

    @abc.abstractmethod
    def link_address(self, state: NetworkState, src: str, dst: str) -> str:
        """The address of the dedicated proxy for traffic from node ``src`` to node ``dst``."""

    def ensure_address(self, state: NetworkState, ip: str) -> None:  # noqa: B027 - optional hook
        """Make ``ip`` an address of the proxy host (no-op where every address is local)."""

    def ensure_addresses(self, state: NetworkState, ips: list[str]) -> None:
        """:meth:`ensure_address` for many addresses (backends may do it in one step)."""
        for ip in ips:
            self.ensure_address(state, ip)

    @abc.abstractmethod
    def start_node(self, state: NetworkState, node: NodeRecord, argv: list[str],
                   env: dict[str, str]) -> None:
        """Start (or restart after a stop/kill) node ``node`` with its command line ``argv`` and
        its secrets ``env`` (environment variables: never on a command line)."""

    def start_nodes(self, state: NetworkState,
                    nodes: list[tuple[NodeRecord, list[str], dict[str, str]]]) -> None:
        """Start several nodes (``(node, argv, env)``); backends may override to start them in
        parallel."""
        for node, argv, env in nodes:
            self.start_node(state, node, argv, env)

    @abc.abstractmethod
    def stop_node(self, state: NetworkState, node: NodeRecord, *, kill: bool = False) -> None:
        """Stop a node: SIGTERM (graceful) or SIGKILL (``kill``). Its data is kept."""

    @abc.abstractmethod
    def pause_node(self, state: NetworkState, node: NodeRecord) -> None:
        """Freeze a node (SIGSTOP / docker pause): it holds connections but answers nothing."""

    @abc.abstractmethod
    def unpause_node(self, state: NetworkState, node: NodeRecord) -> None: ...

    @abc.abstractmethod
    def destroy(self, state: NetworkState) -> None:
        """Remove everything the testnet owns in this runtime. Idempotent, never raises for
        resources that are already gone."""

    # -- inspection --------------------------------------------------------------------------
    @abc.abstractmethod
    def is_running(self, state: NetworkState, target: str) -> bool:
        """Whether the seed (``target == "seed"``) or node ``target`` is running."""

    @abc.abstractmethod
    def read_log(self, state: NetworkState, target: str, tail: int | None = None) -> str:
        """The log of the seed or a node (the last ``tail`` lines if given)."""

    @abc.abstractmethod
    def follow_log(self, state: NetworkState, target: str, *, tail: int | None = None,
                   stop: threading.Event | None = None) -> Iterator[str]:
        """Yield the log of ``target`` (its last ``tail`` lines when given), then every line as
        it is written. Following survives the runtime's restarts (kill/stop then start: lines of
        the new run follow). Ends when ``stop`` is set or the testnet is gone (its state file
        removed by ``down``)."""

    # -- garbage collection ------------------------------------------------------------------
    @classmethod
    @abc.abstractmethod
    def sweep_stale(cls, report: Reporter) -> list[str]:
        """Remove runtime resources of testnets whose harness is gone; return their names."""
