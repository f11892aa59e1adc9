"""The order of ``Testnet.up``'s start steps (``Testnet._start``) on a backend that starts
concurrently (the docker backend) and on one that does not, with a recording fake backend."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import pytest

from harness.backends.base import BackendError
from harness.backends.docker import DockerBackend
from harness.network import Testnet
from harness.state import NetworkState, NodeRecord, StateDir
from harness.topology import Topology

pytestmark = pytest.mark.unit

#: how long a step waits for the other's event before concluding the steps ran one after the
#: other (never reached when they overlap: they wait for each other)
OVERLAP_WAIT_S = 20.0


class RecordingBackend:
    """Starts nothing; records the start steps. With ``concurrent_start`` Toxiproxy's start
    waits until the nodes are being started and the nodes wait until Toxiproxy is being
    started: both return only if ``Testnet._start`` runs them at the same time."""

    kind = "fake"

    def __init__(self, concurrent: bool, fail: str | None = None) -> None:
        self.concurrent_start = concurrent
        self.fail = fail
        self.events: list[str] = []
        self.proxy_started = threading.Event()
        self.nodes_started = threading.Event()
        self._lock = threading.Lock()

    def _note(self, event: str) -> None:
        with self._lock:
            self.events.append(event)

    def prepare(self, state: NetworkState, report: Any) -> None:
        self._note("prepare")

    def listen_ip(self, state: NetworkState, target: str) -> str:
        return "127.0.0.1"

    def data_dir(self, state: NetworkState, target: str) -> str:
        return f"/tmp/{target}"

    def log_file(self, state: NetworkState, target: str) -> str | None:
        return None

    def link_address(self, state: NetworkState, src: str, dst: str) -> str:
        return "127.0.0.2:1"

    def is_running(self, state: NetworkState, target: str) -> bool:
        return True

    def start_proxy(self, state: NetworkState) -> None:
        self._note("start_proxy")
        self.proxy_started.set()
        if self.fail == "proxy":
            raise BackendError("toxiproxy failed")
        if self.concurrent_start:
            assert self.nodes_started.wait(OVERLAP_WAIT_S), "Toxiproxy started after the nodes"
        state.toxiproxy_container = "toxiproxy"

    def start_seed(self, state: NetworkState, argv: list[str], env: dict[str, str]) -> None:
        self._note("start_seed")
        state.seed_runtime["container"] = "seed"

    def start_nodes(self, state: NetworkState,
                    nodes: list[tuple[NodeRecord, list[str], dict[str, str]]]) -> None:
        self._note("start_nodes")
        self.nodes_started.set()
        if self.concurrent_start:
            assert self.proxy_started.wait(OVERLAP_WAIT_S), "the nodes started after Toxiproxy"
        for n, _, _ in nodes:
            n.runtime["container"] = n.name


def make_net(tmp_path: Path, backend: RecordingBackend) -> tuple[Testnet, list[str]]:
    topo = Topology(name="order", swarms=2, swarm_size=3, seed="unit")
    state = NetworkState(name="order", backend="fake", topology=topo.to_dict(), seed_url="",
                         admin_token="t", net_index=250, seed_runtime={"port": 1, "https_port": 0})
    for name in topo.node_names():
        ident = topo.node_identity(name)
        state.nodes.append(NodeRecord(name=name, public_ip="", storage_port=22021, admin_port=22030,
                                      pubkey_ed25519=ident.ed25519_hex,
                                      pubkey_x25519=ident.x25519_hex))
    DockerBackend.assign_addresses(state)  # fixed addresses, a Toxiproxy URL
    statedir = StateDir("order", tmp_path)
    statedir.create()
    net = Testnet(state, statedir, backend)  # type: ignore[arg-type]
    calls: list[str] = []

    async def wait_api(timeout: float) -> None:
        calls.append("proxy_api")

    async def populate(nodes: list[NodeRecord]) -> None:
        calls.append(f"populate {len(nodes)}")
        backend._note("populate")

    net._wait_proxy_api = wait_api  # type: ignore[method-assign]
    net._populate_proxies = populate  # type: ignore[method-assign]
    return net, calls


def test_docker_backend_starts_concurrently() -> None:
    assert DockerBackend.concurrent_start


def test_concurrent_start_overlaps_toxiproxy_with_seed_and_nodes(tmp_path: Path) -> None:
    backend = RecordingBackend(concurrent=True)
    net, calls = make_net(tmp_path, backend)
    net._start(lambda _: None)
    assert backend.events[0] == "prepare"
    assert set(backend.events) == {"prepare", "start_proxy", "start_seed", "start_nodes", "populate"}
    # the proxies still come after Toxiproxy's API answers, for every node
    assert calls == ["proxy_api", f"populate {len(net.state.nodes)}"]
    assert backend.events.index("populate") > backend.events.index("start_proxy")
    # what every thread recorded is in the saved state
    saved = net.statedir.load()
    assert saved.toxiproxy_container == "toxiproxy"
    assert saved.seed_runtime["container"] == "seed"
    assert all(n.runtime["container"] == n.name for n in saved.nodes)


def test_sequential_backend_keeps_the_phases(tmp_path: Path) -> None:
    backend = RecordingBackend(concurrent=False)
    net, _ = make_net(tmp_path, backend)
    net._start(lambda _: None)
    assert backend.events == ["prepare", "start_proxy", "populate", "start_seed", "start_nodes"]


def test_concurrent_start_raises_the_proxy_error_after_the_nodes_started(tmp_path: Path) -> None:
    backend = RecordingBackend(concurrent=True, fail="proxy")
    net, _ = make_net(tmp_path, backend)
    with pytest.raises(BackendError, match="toxiproxy failed"):
        net._start(lambda _: None)
    # the other steps finished before the error left _start (up() tears everything down then)
    assert {"start_seed", "start_nodes"} <= set(backend.events)
