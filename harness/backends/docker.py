"""Containers: every testnet on its own user-defined bridge network (see docs/DESIGN.md,
"Docker layout").

Addressing: every address of a testnet is fixed, derived from its free index X (its network
``10.X.0.0/16``): see :mod:`harness.backends.docker_net` for the layout.

The network is ``internal``: the engine gives it no route out of the host (its iptables rules
drop whatever a container sends outside the subnet), while the host still reaches every address
in it. Real storage servers (``oxen-storage`` nodes) run from their own image
(:mod:`harness.images.oxen_storage`), whose entrypoint also deletes the container's default
route (docker 20.10 sets one even on internal networks), so a public address fails at once with
"network is unreachable". Their OxenMQ listens on ``10.X.i.2:22020`` (its proxy on
``10.X.i.1:22020``), and the seed serves node ``i``'s own OxenMQ endpoint on
``10.X.0.2:(23000 + i)``. QUIC (UDP on the OxenMQ port) passes ``nodes.udprelay``, run in the
proxy host's namespace next to Toxiproxy.

Every container, network and volume carries the labels ``session-testnet=<name>``,
``session-testnet.state=<state folder>``, ``session-testnet.owner-pid`` and
``session-testnet.host``; ``destroy`` and the stale sweep find resources by these labels only.
Node and seed data live on named volumes, so a restarted container keeps its messages. Logs are
the containers' own (``docker logs``). The Docker CLI is never used: everything goes through the
Docker SDK, and containers are created and started through testcontainers' ``DockerClient``
(see :class:`EngineClient`).

testcontainers and its Ryuk reaper: Ryuk is started only by ``DockerContainer.start()``. The
harness never calls it, so Ryuk (whose image would have to be pulled) never runs for a testnet and
nothing of testcontainers' process-wide configuration is touched: no ``TESTCONTAINERS_RYUK_DISABLED``
in ``os.environ`` (it would leak into the user's process and its children) and no write to the
``testcontainers_config`` singleton (it would switch Ryuk off for the user's own containers too).
Containers must outlive the process that ran ``up`` (the CLI exits; ``down``/``clean`` remove them
by label), and testcontainers 4 removes a container only through ``DockerContainer.stop()``/its
context manager or through Ryuk: it has no ``__del__`` and its only ``atexit`` hook stops Ryuk.
One caveat: testcontainers labels every container it creates with the process's
``org.testcontainers.session-id``; if the *user's own* code starts Ryuk in the same process
(its testcontainers with Ryuk enabled), that Ryuk also removes the testnet's containers after the
process exits. The CLI never does that.
"""

from __future__ import annotations

import contextlib
import ipaddress
import json
import os
import socket
import sys
import threading
import warnings
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor, wait
from dataclasses import replace
from typing import Any, ClassVar

import docker.errors  # binds `docker` too (a plain `import docker` is misfiled next to docker/)
import docker.types
import requests.exceptions
from docker.client import DockerClient

from harness import nodekinds
from harness.backends.base import FILESERVER_HOST, Backend, BackendError, Reporter, fileserver_record
from harness.backends.docker_containers import start_container
from harness.backends.docker_engine import (
    KIND,
    LABEL,
    LABEL_HOST,
    LABEL_OWNER,
    LABEL_ROLE,
    LABEL_STATE,
    LABEL_TARGET,
    EngineClient,
    connect,
    resource_prefix,
)
from harness.backends.docker_gc import EngineLeftover, EngineLeftoverWarning, remove_resources, sweep
from harness.backends.docker_net import SEED_OMQ_BASE as SEED_OMQ_BASE  # re-exported
from harness.backends.docker_net import (
    TOXIPROXY_PORT,
    assign_addresses,
    free_net_index,
    subnet_of,
)
from harness.backends.follow_container import follow_container_log
from harness.images import ImageError, ImageSet, ensure_images, toxiproxy_image
from harness.images.code import code_mounts, ensure_code_volumes
from harness.nodekinds.base import NodeKindError
from harness.state import NetworkState, NodeRecord, StateDir, StateError, list_networks, locked
from harness.topology import NodeGroup, Topology, node_index
from nodes.protocol.constants import ADMIN_PORT, SEED_HTTPS_PORT, SEED_PORT, STORAGE_PORT

#: backends whose testnets take a 10.X.0.0/16 of NET_INDEXES (docker networks, swarm overlays)
NET_KINDS = ("docker", "swarm")
DATA_DIR = "/data"
#: attempts at creating the network when another engine user took the subnet meanwhile
CREATE_ATTEMPTS = 6
#: run in the proxy host (as root) to add listen addresses: see nodes/common/netlink.py
ADD_ADDRESSES = ["python", "-m", "nodes.common.netlink"]
#: where the seed's real-node list and the UDP relay's config are put in their containers
#: containers every other one waits for (the nodes register at the seed; readiness needs the
#: proxies): with more CPU weight than the default 1024 they get the cores first while the
#: ten containers of a bring-up start at once (measured under load: Toxiproxy's API answered
#: 1.5-1.8 s after its start instead of 4.4-4.7 s)
PRIORITY_ROLES = ("seed", "proxyhost", "toxiproxy")
PRIORITY_CPU_SHARES = 4096
SEED_NODE_LIST = "/tmp/oxenmq-nodes.json"
UDP_RELAY_CONFIG = "/tmp/udp-relays.json"


def _image(state: NetworkState) -> str:
    if not state.image:
        raise BackendError(f"testnet {state.name!r} has no node image recorded in its state; "
                           "bring it down ('testnet down') and up again")
    return state.image


class DockerBackend(Backend):
    kind = KIND
    #: the label naming the state folder of a testnet's resources (what ``down`` and the stale
    #: sweep find them by)
    state_label: ClassVar[str] = LABEL_STATE
    concurrent_start = True  # one engine client; start_nodes already starts from threads

    def __init__(self, statedir: StateDir, client: DockerClient | None = None) -> None:
        super().__init__(statedir)
        self._client = client
        self._tc: EngineClient | None = None
        self._client_lock = threading.Lock()

    @property
    def client(self) -> DockerClient:
        with self._client_lock:
            if self._client is None:
                self._client = connect()
            return self._client

    @property
    def tc(self) -> EngineClient:
        """testcontainers' client on the engine of :attr:`client` (creates the containers)."""
        client = self.client
        with self._client_lock:
            if self._tc is None:
                self._tc = EngineClient(client)
            return self._tc

    # -- names and labels --------------------------------------------------------------------
    def container_name(self, state: NetworkState, target: str) -> str:
        return f"{resource_prefix(state.name)}-{target}"

    def network_name(self, state: NetworkState) -> str:
        return resource_prefix(state.name)

    def volume_name(self, state: NetworkState, target: str) -> str:
        return f"{resource_prefix(state.name)}-{target}"

    def labels(self, state: NetworkState, role: str | None = None,
               target: str | None = None) -> dict[str, str]:
        out = {LABEL: state.name, self.state_label: str(self.statedir.path),
               LABEL_OWNER: str(os.getpid()), LABEL_HOST: socket.gethostname()}
        if role:
            out[LABEL_ROLE] = role
        if target:
            out[LABEL_TARGET] = target
        return out

    def _filters(self, state: NetworkState) -> dict[str, Any]:
        return {"label": [f"{LABEL}={state.name}", f"{self.state_label}={self.statedir.path}"]}

    # -- placement ---------------------------------------------------------------------------
    def _used_indexes(self) -> set[int]:
        used = set()
        for name in list_networks(self.statedir.home):
            if name == self.statedir.name:
                continue
            with contextlib.suppress(StateError, OSError, TypeError, ValueError):
                st = StateDir(name, self.statedir.home).load()
                if st.backend in NET_KINDS:
                    used.add(st.net_index)
        return used

    def plan(self, topology: Topology, admin_token: str) -> NetworkState:
        x = free_net_index(self.client, self._used_indexes())
        state = NetworkState(name=topology.name, backend=self.kind, topology=topology.to_dict(),
                             seed_url="", admin_token=admin_token, net_index=x,
                             seed_runtime={"port": SEED_PORT, "https_port": SEED_HTTPS_PORT})
        for name in topology.node_names():
            state.nodes.append(self._node_record(topology, name))
        if topology.fileserver:
            state.fileserver = fileserver_record(topology, f"10.{x}.0", proxied=topology.proxies)
        self.assign_addresses(state)
        return state

    @staticmethod
    def assign_addresses(state: NetworkState) -> None:
        """(Re)derive every address from ``state.net_index`` (:mod:`harness.backends.docker_net`)."""
        assign_addresses(state)

    def _node_record(self, topology: Topology, name: str) -> NodeRecord:
        i = node_index(name)
        if not 1 <= i <= 254:
            raise BackendError(f"node {name}: the docker backend supports nodes sn01-sn254")
        ident = topology.node_identity(name)
        group = topology.node_group(name)
        kind = group.kind
        return NodeRecord(name=name, public_ip="", storage_port=STORAGE_PORT,
                          admin_port=ADMIN_PORT if nodekinds.group_kind(group).has_admin else 0,
                          pubkey_ed25519=ident.ed25519_hex, pubkey_x25519=ident.x25519_hex,
                          kind=kind, revision=group.ref)

    def plan_node(self, state: NetworkState, name: str) -> NodeRecord:
        node = self._node_record(Topology.from_dict(state.topology), name)
        probe = NetworkState(name=state.name, backend=state.backend, topology=state.topology,
                             seed_url="", admin_token="", net_index=state.net_index, nodes=[node])
        self.assign_addresses(probe)
        return node

    def link_address(self, state: NetworkState, src: str, dst: str) -> str:
        j, i = node_index(src), node_index(dst)
        if j + 2 > 254:
            raise BackendError(f"no link address for {src}->{dst}: source index above 252")
        return f"10.{state.net_index}.{i}.{j + 2}"

    def data_dir(self, state: NetworkState, target: str) -> str:
        return DATA_DIR

    # -- lifecycle ---------------------------------------------------------------------------
    def prepare(self, state: NetworkState, report: Reporter) -> None:
        if sys.platform != "linux":
            raise BackendError(
                "the docker backend needs the host to reach container addresses directly, which "
                "only Linux engines offer; on this platform use --backend process"
            )
        try:
            images = ensure_images(self.client, progress=report)
        except ImageError as e:
            raise BackendError(str(e)) from None
        state.image = images.node
        state.code_volumes = self._code_volumes(images, report)
        if state.toxiproxy_url:
            state.toxiproxy_image = toxiproxy_image(self.client) or images.node
        self._node_images(state, report)
        self._create_network(state, report)
        for target in ["seed"] + [n.name for n in state.nodes] + (
                [state.fileserver.name] if state.fileserver else []):
            self._ensure_volume(state, target)

    def _code_volumes(self, images: ImageSet, report: Reporter) -> dict[str, str]:
        """The node image's code volumes (:mod:`harness.images.code`), filled once per image;
        ``{}`` (the containers import from the image's layers) if the engine refuses them."""
        try:
            return ensure_code_volumes(self.client, images.node_id, images.code_paths,
                                       progress=report)
        except (docker.errors.DockerException, requests.exceptions.RequestException) as e:
            report(f"warning: no code volumes for {images.node} ({e}); the containers import "
                   "from the image's layers")
            return {}

    def _node_images(self, state: NetworkState, report: Reporter) -> None:
        """Record the image of every node whose implementation brings its own (the real
        server's, built offline if missing) in ``node.runtime["image"]``."""
        topology = Topology.from_dict(state.topology)
        by_group: dict[NodeGroup, str | None] = {}
        for node in state.nodes:
            group = topology.node_group(node.name)
            key = replace(group, count=1)
            if key not in by_group:
                try:
                    by_group[key] = nodekinds.group_kind(group).container_image(self.client, report)
                except NodeKindError as e:
                    raise BackendError(str(e)) from None
            image = by_group[key]
            if image:
                node.runtime["image"] = image

    def _create_network(self, state: NetworkState, report: Reporter) -> None:
        failed: set[int] = set()
        for attempt in range(CREATE_ATTEMPTS):
            x = state.net_index
            sub = subnet_of(x)
            pool = docker.types.IPAMPool(subnet=str(sub), iprange=f"10.{x}.255.0/25",
                                         gateway=f"10.{x}.255.254")
            try:
                self._network_create(state, pool)
                report(f"network {self.network_name(state)}: {sub}")
                return
            except docker.errors.APIError as e:
                text = str(e.explanation or e)
                if "overlap" not in text.lower() or attempt == CREATE_ATTEMPTS - 1:
                    raise BackendError(f"cannot create network {self.network_name(state)} "
                                       f"({sub}): {text}") from None
                failed.add(x)
                with locked(home=self.statedir.home):
                    state.net_index = free_net_index(self.client, self._used_indexes() | failed)
                    self.assign_addresses(state)
                    self.statedir.save(state)
                report(f"subnet {sub} was taken meanwhile; retrying with {subnet_of(state.net_index)}")

    def _network_create(self, state: NetworkState, pool: docker.types.IPAMPool) -> None:
        """Create the testnet's network with the address ``pool`` (a hook for other engines'
        layouts: the swarm backend makes it an attachable overlay)."""
        # internal: no route out of the host (see the module's docstring)
        self.client.networks.create(self.network_name(state), driver="bridge", internal=True,
                                    ipam=docker.types.IPAMConfig(pool_configs=[pool]),
                                    labels=self.labels(state, role="network"),
                                    check_duplicate=True)

    def _ensure_volume(self, state: NetworkState, target: str) -> str:
        name = self.volume_name(state, target)
        try:
            self.client.volumes.get(name)
        except docker.errors.NotFound:
            self.client.volumes.create(name=name, labels=self.labels(state, role="data", target=target))
        return name

    def _run(self, state: NetworkState, target: str, image: str, command: list[str] | None, *,
             role: str, ip: str | None = None, volume: bool = True, user: str | None = None,
             cap_add: list[str] | None = None, network_mode: str | None = None,
             files: dict[str, bytes] | None = None, env: dict[str, str] | None = None,
             **extra: Any) -> str:
        """Create and start one container through testcontainers' client; return its name.

        With ``network_mode`` (``container:<id>``) the container joins that namespace; otherwise
        it is on the testnet's network at the fixed address ``ip`` with hostname ``target``.
        ``files`` (absolute path -> content) are put into the container before it starts;
        ``env`` (secrets) is its environment: visible to ``docker inspect``, i.e. to whoever
        controls the engine, never to ``ps`` on the host or in other containers.
        """
        name = self.container_name(state, target)
        kwargs: dict[str, Any] = {"init": True, "user": user, "cap_add": cap_add,
                                  "environment": dict(env or {}), **extra}
        mounts = []
        if volume:
            mounts.append(docker.types.Mount(target=DATA_DIR, type="volume",
                                             source=self._ensure_volume(state, target)))
        if image == state.image:  # imports from plain folders, not through the storage driver
            mounts += code_mounts(state.code_volumes)
        if mounts:
            kwargs["mounts"] = mounts
        if network_mode is None:
            net = self.network_name(state)
            endpoint = self.client.api.create_endpoint_config(ipv4_address=ip)
            kwargs.update(network=net, networking_config={net: endpoint}, hostname=target)
        else:
            # an explicit network=None also stops testcontainers from attaching the container
            # to the network it guesses the caller runs in (its docker-in-docker heuristic)
            kwargs.update(network=None, network_mode=network_mode)
        if role in PRIORITY_ROLES:
            kwargs["cpu_shares"] = PRIORITY_CPU_SHARES
        labels = self.labels(state, role=role, target=target)
        start_container(self.client, self.tc, image, command, name=name, labels=labels,
                        state_label=self.state_label, target=target, testnet=state.name,
                        files=files, **kwargs)
        return name

    def start_seed(self, state: NetworkState, argv: list[str], env: dict[str, str]) -> None:
        argv, files = list(argv), {}
        if "--oxenmq-nodes" in argv:  # a file of the state folder: put a copy into the container
            i = argv.index("--oxenmq-nodes") + 1
            try:
                with open(argv[i], "rb") as f:
                    files[SEED_NODE_LIST] = f.read()
            except OSError as e:
                raise BackendError(f"cannot read the seed's real-node list {argv[i]}: {e}") from None
            argv[i] = SEED_NODE_LIST
        state.seed_runtime["container"] = self._run(
            state, "seed", _image(state), ["python", *argv], role="seed",
            ip=self.listen_ip(state, "seed"), files=files, env=env)

    def start_udp_relay(self, state: NetworkState, relays: list[dict[str, str]]) -> None:
        """``nodes.udprelay`` in the proxy host's namespace (it owns the advertised addresses)."""
        config = json.dumps({"relays": relays}, indent=1).encode()
        host_id = self.client.containers.get(self.container_name(state, "proxyhost")).id
        state.udprelay_container = self._run(
            state, "udprelay", _image(state),
            ["python", "-m", "nodes.udprelay", "--config", UDP_RELAY_CONFIG], role="udprelay",
            volume=False, network_mode=f"container:{host_id}", files={UDP_RELAY_CONFIG: config})

    def start_proxy(self, state: NetworkState) -> None:
        x = state.net_index
        host = self._start_proxyhost(state)
        image = state.toxiproxy_image or _image(state)
        if image == _image(state):
            command = ["python", "-m", "nodes.toxiproxy", "--host", "0.0.0.0",
                       "--port", str(TOXIPROXY_PORT)]
        else:  # the official image: entrypoint /toxiproxy
            command = ["-host=0.0.0.0", f"-port={TOXIPROXY_PORT}"]
        host_id = self.client.containers.get(host).id
        # every node's advertised address up front (sn01-sn254), so nodes that join later need
        # nothing more; link addresses come one by one through ensure_address(). Added while
        # Toxiproxy starts: only its proxies (created once its API answers) need them.
        with ThreadPoolExecutor(max_workers=1, thread_name_prefix="proxy-addresses") as pool:
            added = pool.submit(self._add_addresses, state,
                                [f"10.{x}.{i}.1" for i in range(1, 255)]
                                + [f"10.{x}.0.{FILESERVER_HOST}"])  # the file server's proxy
            try:
                state.toxiproxy_container = self._run(
                    state, "toxiproxy", image, command, role="toxiproxy", volume=False,
                    network_mode=f"container:{host_id}")
            finally:
                wait([added])  # never leave the exec running into a teardown
            added.result()

    def _start_proxyhost(self, state: NetworkState) -> str:
        """Start the container that owns the advertised addresses; return its name."""
        return self._run(state, "proxyhost", _image(state), ["sleep", "infinity"],
                         role="proxyhost", ip=f"10.{state.net_index}.0.1", volume=False, user="0",
                         cap_add=["NET_ADMIN"])

    def _add_addresses(self, state: NetworkState, ips: list[str]) -> None:
        sub = subnet_of(state.net_index)
        for ip in ips:
            if ipaddress.IPv4Address(ip) not in sub:
                raise BackendError(f"{ip} is not in the subnet {sub} of testnet {state.name!r}")
        name = self.container_name(state, "proxyhost")
        try:
            res = self.client.containers.get(name).exec_run([*ADD_ADDRESSES, *ips],
                                                            user="0")
        except docker.errors.APIError as e:
            raise BackendError(f"cannot add proxy addresses in {name}: {e.explanation or e}") from None
        if res.exit_code != 0:
            out = res.output if isinstance(res.output, bytes) else b"".join(res.output)
            raise BackendError(f"cannot add proxy addresses in {name}: "
                               f"{out.decode(errors='replace').strip()}")

    def ensure_address(self, state: NetworkState, ip: str) -> None:
        self._add_addresses(state, [ip])

    def ensure_addresses(self, state: NetworkState, ips: list[str]) -> None:
        if ips:
            self._add_addresses(state, ips)  # one exec in the proxy host for all of them

    def _container(self, state: NetworkState, target: str) -> Any | None:
        try:
            return self.client.containers.get(self.container_name(state, target))
        except docker.errors.NotFound:
            return None

    def start_node(self, state: NetworkState, node: NodeRecord, argv: list[str],
                   env: dict[str, str]) -> None:
        kind = nodekinds.kind_class(node.kind)
        command = ["python", *argv] if kind.runs_python else list(argv)
        image = node.runtime.get("image") or _image(state)
        existing = self._container(state, node.name)
        if existing is not None:
            st = existing.attrs["State"]
            if st.get("Running"):
                raise BackendError(f"node {node.name} of testnet {state.name!r} is already "
                                   f"running (container {existing.name})")
            # same command line (or the image's own, for the user's image nodes): keep it
            if not command or existing.attrs["Config"].get("Cmd") == command:
                existing.start()  # keep the container and its log
                node.runtime["container"] = existing.name
                node.runtime.pop("paused", None)
                return
            existing.remove(force=True)
        node.runtime["container"] = self._run(
            state, node.name, image, command or None, role="node", ip=self.listen_ip(state, node.name),
            cap_add=list(kind.container_caps) or None, env=env)
        node.runtime.pop("paused", None)

    def start_nodes(self, state: NetworkState,
                    nodes: list[tuple[NodeRecord, list[str], dict[str, str]]]) -> None:
        if len(nodes) <= 1:
            super().start_nodes(state, nodes)
            return
        _ = self.tc  # connect once, before the threads
        with ThreadPoolExecutor(max_workers=min(8, len(nodes))) as pool:
            futures = [pool.submit(self.start_node, state, n, argv, env) for n, argv, env in nodes]
            errors = [f.exception() for f in futures]
        failed = [e for e in errors if e is not None]
        if failed:
            raise failed[0]

    def stop_node(self, state: NetworkState, node: NodeRecord, *, kill: bool = False) -> None:
        c = self._container(state, node.name)
        if c is None or not c.attrs["State"].get("Running"):
            return
        try:
            if c.attrs["State"].get("Paused"):
                c.unpause()
            if kill:
                c.kill()
                c.wait(timeout=30)
            else:
                c.stop(timeout=10)
        except docker.errors.NotFound:
            pass
        except docker.errors.APIError as e:
            if "is not running" not in str(e):
                raise BackendError(f"cannot stop {c.name}: {e.explanation or e}") from None
        node.runtime.pop("paused", None)

    def pause_node(self, state: NetworkState, node: NodeRecord) -> None:
        self._running_container(state, node).pause()
        node.runtime["paused"] = True

    def unpause_node(self, state: NetworkState, node: NodeRecord) -> None:
        self._running_container(state, node).unpause()
        node.runtime.pop("paused", None)

    def _running_container(self, state: NetworkState, node: NodeRecord) -> Any:
        c = self._container(state, node.name)
        if c is None or not c.attrs["State"].get("Running"):
            raise BackendError(f"node {node.name} of testnet {state.name!r} is not running")
        return c

    def destroy(self, state: NetworkState) -> None:
        try:
            remove_resources(self.client, self._filters(state))
        except EngineLeftover as e:  # every container is gone; the engine holds a network
            warnings.warn(f"testnet {state.name!r} is down, but {e}", EngineLeftoverWarning,
                          stacklevel=2)

    # -- inspection --------------------------------------------------------------------------
    def is_running(self, state: NetworkState, target: str) -> bool:
        c = self._container(state, target)
        return c is not None and bool(c.attrs["State"].get("Running"))

    def read_log(self, state: NetworkState, target: str, tail: int | None = None) -> str:
        c = self._container(state, target)
        if c is None:
            raise BackendError(f"no container {self.container_name(state, target)}: "
                               f"{target} of testnet {state.name!r} is not started or removed")
        raw = c.logs(stdout=True, stderr=True, tail="all" if tail is None else tail)
        text: str = raw.decode("utf-8", errors="replace")
        return text if not text or text.endswith("\n") else text + "\n"

    def follow_log(self, state: NetworkState, target: str, *, tail: int | None = None,
                   stop: threading.Event | None = None) -> Iterator[str]:
        return follow_container_log(lambda: self._container(state, target),
                                    lambda: not self.statedir.state_file.exists(),
                                    tail=tail, stop=stop)

    # -- garbage collection ------------------------------------------------------------------
    @classmethod
    def sweep_stale(cls, report: Reporter) -> list[str]:
        try:
            client = connect()
        except BackendError as e:  # no engine: nothing of ours can be running in it
            report(f"docker: skipped ({e})")
            return []
        try:
            return sweep(client, report)
        finally:
            client.close()
