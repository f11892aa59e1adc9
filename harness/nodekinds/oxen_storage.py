"""The production Session storage server (``oxen-storage``, tested with 2.8.0) as a testnet node.

It has no admin interface: it gets its keys and the node list from the seed over OxenMQ (the seed
is its oxend, see docs/nodes.md), so the harness only gives it addresses, ports and a data dir.
Readiness is judged from outside: the seed saw it fetch the node list (``GET
/internal/v1/oxend``), it answers ``info`` over HTTPS, and its ``get_swarm`` answer for the
node's own swarm equals the seed's.

Ports: its OxenMQ (TCP) socket always binds ``0.0.0.0:omq_bind_port``, so every real node of
every testnet on the host needs its own port; the seed's per-node OxenMQ endpoints and the
Toxiproxy proxies in front of OxenMQ need ports of their own as well. :func:`place_nodes`
allocates them all from :data:`PORT_RANGE`.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import shutil
import socket
import subprocess
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

from harness import rpc
from harness.nodekinds.base import (
    CHURN,
    NETWORK,
    PARTITION,
    NodeContext,
    NodeKind,
    NodeKindError,
    NodeView,
)
from harness.nodekinds.names import OXEN_STORAGE, PATH_ENV
from harness.nodekinds.probes import protocol_probe
from harness.state import NetworkState, NodeRecord

ENV_BINARY = PATH_ENV[OXEN_STORAGE]
#: the server's own default OxenMQ port (where every node has an address of its own: docker)
DEFAULT_OMQ_PORT = 22020
#: host ports for OxenMQ listeners, their proxies and the seed's per-node endpoints
PORT_RANGE = range(26000, 32000)
#: the Debian 12 packages holding the server's run-time libraries (shared README)
RUNTIME_PACKAGES = {
    "libssl.so.3": "libssl3", "libcrypto.so.3": "libssl3", "libcurl.so.4": "libcurl4",
    "libsodium.so.23": "libsodium23", "libzmq.so.5": "libzmq5",
    "libevent_core-2.1.so.7": "libevent-core-2.1-7",
    "libevent_pthreads-2.1.so.7": "libevent-pthreads-2.1-7", "libgnutls.so.30": "libgnutls30",
    "libspdlog.so.1.10": "libspdlog1.10", "libfmt.so.9": "libfmt9",
    "libsqlite3.so.0": "libsqlite3-0", "libstdc++.so.6": "libstdc++6",
}
#: the seed's file of real nodes (in the testnet's state folder)
NODE_LIST_FILE = "oxenmq-nodes.json"


def missing_libraries(binary: Path) -> list[str]:
    """Shared libraries ``binary`` needs but the dynamic loader cannot find."""
    try:
        out = subprocess.run(["ldd", str(binary)], capture_output=True, text=True,
                             timeout=30).stdout
    except (OSError, subprocess.TimeoutExpired):
        return []  # no ldd: the start itself will say what is missing
    return sorted({m.group(1) for m in re.finditer(r"^\s*(\S+) => not found", out, re.M)})


def ensure_dh_pem(data_dir: Path) -> None:
    """Put the RFC 7919 ffdhe2048 group in ``data_dir/dh.pem`` (else the server spends 5-130 s
    generating its own at first start)."""
    target = data_dir / "dh.pem"
    if target.exists():
        return
    data_dir.mkdir(parents=True, exist_ok=True)
    tmp = data_dir / ".dh.pem.tmp"
    try:
        subprocess.run(["openssl", "genpkey", "-genparam", "-algorithm", "DH", "-pkeyopt",
                        "group:ffdhe2048", "-out", str(tmp)], check=True, capture_output=True,
                       timeout=30)
    except (OSError, subprocess.SubprocessError) as e:
        raise NodeKindError(f"cannot write {target} with openssl (needed by oxen-storage): {e}; "
                            "install openssl") from None
    os.replace(tmp, target)


def _port_free(port: int) -> bool:
    """Free for a 0.0.0.0 TCP listener and a UDP socket (QUIC shares the OxenMQ port)."""
    for kind in (socket.SOCK_STREAM, socket.SOCK_DGRAM):
        with socket.socket(socket.AF_INET, kind) as s:
            try:
                s.bind(("0.0.0.0", port))
            except OSError:
                return False
    return True


def _used_ports(state: NetworkState) -> set[int]:
    out: set[int] = set()
    for n in state.nodes:
        out.update(p for p in (n.omq_port, n.omq_bind_port) if p)
        if n.oxend_endpoint:
            out.add(int(n.oxend_endpoint.rsplit(":", 1)[1]))
    return out


def place_nodes(state: NetworkState, others: Iterable[NetworkState]) -> None:
    """Give every real node of ``state`` (without ports yet) its OxenMQ port, the port of its
    OxenMQ proxy (when proxied) and its seed endpoint, avoiding the ports of ``others``."""
    todo = [n for n in state.nodes if n.kind == OXEN_STORAGE and n.omq_bind_port is None]
    if not todo:
        return
    reserved = _used_ports(state)
    for other in others:
        reserved |= _used_ports(other)
    free = (p for p in PORT_RANGE if p not in reserved and _port_free(p))
    seed_ip = state.seed_runtime["ip"]
    try:
        for n in todo:
            n.omq_bind_port = next(free)
            n.omq_port = next(free) if n.proxy else n.omq_bind_port
            n.oxend_endpoint = f"tcp://{seed_ip}:{next(free)}"
    except StopIteration:
        raise NodeKindError(f"no free ports left in {PORT_RANGE.start}-{PORT_RANGE.stop - 1} for "
                            "real nodes' OxenMQ sockets: bring other testnets down") from None


#: the backends on which every pair of real nodes talks through a link proxy of its own
PAIR_ROUTED_BACKENDS = frozenset({"process", "docker"})
#: (source node, destination node) -> the IP of the source's link proxy to the destination
LinkIP = Callable[[str, str], str]


@dataclass(frozen=True)
class PairLink:
    """The route of one real node's traffic to one other real node: a link proxy pair (HTTPS and
    OxenMQ) on ``ip`` with the destination's advertised ports, forwarding to the destination's
    own proxies, and a UDP relay (QUIC) there. The seed's node list for ``src`` shows ``dst`` at
    ``ip`` (``peer_ips``), so the real server uses it without knowing."""

    src: NodeRecord
    dst: NodeRecord
    ip: str

    @property
    def name(self) -> str:
        """The HTTPS link proxy (``sn01->sn02``), named as every link proxy of the harness."""
        return f"{self.src.proxy}->{self.dst.proxy}"

    @property
    def omq_name(self) -> str:
        """Its OxenMQ companion (``sn01->sn02-omq``)."""
        return link_omq_name(self.name)

    def proxies(self) -> list[dict[str, Any]]:
        d = self.dst
        return [{"name": self.name, "listen": f"{self.ip}:{d.storage_port}",
                 "upstream": f"{d.public_ip}:{d.storage_port}", "enabled": True},
                {"name": self.omq_name, "listen": f"{self.ip}:{d.omq_port}",
                 "upstream": f"{d.public_ip}:{d.omq_port}", "enabled": True}]

    def udp_relay(self) -> dict[str, str]:
        d = self.dst
        return {"listen": f"{self.ip}:{d.omq_port}",
                "upstream": f"{d.bind_ip or d.public_ip}:{d.omq_bind_port}"}


def link_omq_name(link: str) -> str:
    """The OxenMQ companion of the link proxy ``link`` between two real nodes."""
    return f"{link}-omq"


def pair_links(state: NetworkState, link_ip: LinkIP) -> list[PairLink]:
    """Every ordered pair of proxied real nodes of ``state`` (none on backends outside
    :data:`PAIR_ROUTED_BACKENDS`)."""
    if state.backend not in PAIR_ROUTED_BACKENDS:
        return []
    real = [n for n in state.nodes if n.kind == OXEN_STORAGE and n.proxy]
    return [PairLink(a, b, link_ip(a.name, b.name)) for a in real for b in real if a is not b]


def write_node_list(state: NetworkState, folder: Path, link_ip: LinkIP | None = None) -> Path | None:
    """Write the seed's real-node list (``--oxenmq-nodes``); None when there are no real nodes.
    It holds addresses only: keys follow from the testnet seed. With ``link_ip``, every node sees
    every other real node at its link proxy to it (``peer_ips``, see :func:`pair_links`)."""
    real = [n for n in state.nodes if n.kind == OXEN_STORAGE]
    if not real:
        return None
    peer_ips: dict[str, dict[str, str]] = {}
    for link in pair_links(state, link_ip) if link_ip else []:
        peer_ips.setdefault(link.src.name, {})[link.dst.name] = link.ip
    spec = {"nodes": [{"name": n.name, "endpoint": n.oxend_endpoint, "public_ip": n.public_ip,
                       "storage_port": n.storage_port, "storage_lmq_port": n.omq_port,
                       **({"peer_ips": peer_ips[n.name]} if n.name in peer_ips else {})}
                      for n in real]}
    path = folder / NODE_LIST_FILE
    path.write_text(json.dumps(spec, indent=1) + "\n")
    return path


class OxenStorageNode(NodeKind):
    name: ClassVar[str] = OXEN_STORAGE
    has_admin: bool = False
    #: per-link faults act on the link proxies every pair of real nodes talks through from the
    #: start (:func:`pair_links`); behaviours and clock need the admin interface
    fault_families: frozenset[str] = frozenset({NETWORK, CHURN, PARTITION})
    routes_pairs: ClassVar[bool] = True
    backends: ClassVar[frozenset[str]] = frozenset({"process", "docker"})
    peer_links_either_way: ClassVar[bool] = True
    #: "Response timeout from <peer> for forwarded command store" in its log, 5 s after the store
    dead_peer_wait_s: ClassVar[float] = 5.0
    #: the image's entrypoint deletes the container's default route, then drops every capability
    container_caps: ClassVar[tuple[str, ...]] = ("NET_ADMIN",)

    def __init__(self, path: str | None = None) -> None:
        super().__init__(path or os.environ.get(ENV_BINARY))

    @property
    def binary(self) -> Path:
        if not self.path:
            raise NodeKindError(f"oxen-storage nodes need the server binary: give "
                                f"'N:oxen-storage=PATH' or set ${ENV_BINARY}")
        return Path(self.path)

    def check(self, backend: str = "process") -> None:
        binary = self.binary
        if not binary.is_file() or not os.access(binary, os.X_OK):
            raise NodeKindError(f"no executable oxen-storage binary at {binary} (give "
                                f"'N:oxen-storage=PATH' or set ${ENV_BINARY})")
        if backend == "docker":
            return  # libraries and dh.pem come with its image (harness.images.oxen_storage)
        missing = missing_libraries(binary)
        if missing:
            pkgs = sorted({RUNTIME_PACKAGES.get(lib, f"? ({lib})") for lib in missing})
            raise NodeKindError(f"{binary} cannot run: missing libraries {', '.join(missing)}; "
                                f"install them (Debian 12: apt-get install {' '.join(pkgs)})")
        if shutil.which("openssl") is None:
            raise NodeKindError("oxen-storage nodes need openssl (to write dh.pem): install it")

    def refuse_fault(self, family: str, node: str, backend: str | None = None) -> None:
        super().refuse_fault(family, node, backend)
        if family == PARTITION and backend is not None and backend not in PAIR_ROUTED_BACKENDS:
            raise NodeKindError(
                f"node {node} runs {self.name!r}: per-link faults and partitions between real "
                f"servers need the link proxy of every node pair, which only the "
                f"{', '.join(sorted(PAIR_ROUTED_BACKENDS))} backends set up (not {backend}); "
                "see docs/nodes.md \"Link faults between real servers\"")

    def argv(self, ctx: NodeContext) -> list[str]:
        node = ctx.node
        if node.oxend_endpoint is None or node.omq_bind_port is None:
            raise NodeKindError(f"node {node.name} has no OxenMQ ports: its testnet was planned "
                                "without them (recreate it)")
        if ctx.state.backend == "docker":  # the image's entrypoint puts dh.pem in place
            from harness.images.oxen_storage import BINARY_IN_IMAGE
            program = BINARY_IN_IMAGE
        else:
            ensure_dh_pem(Path(ctx.data_dir))
            program = os.path.abspath(self.binary)
        return [program, "--testnet",
                "--data-dir", ctx.data_dir,
                "--oxend-rpc", node.oxend_endpoint,
                "--bind-ip", ctx.listen_ip,
                "--https-port", str(node.storage_port),
                "--omq-port", str(node.omq_bind_port),
                "--log-level", "info"]

    def container_image(self, client: Any, progress: Callable[[str], None]) -> str | None:
        from harness.images import ImageError
        from harness.images.oxen_storage import ensure_oxen_storage_image

        try:
            return ensure_oxen_storage_image(client, self.binary, progress=progress).tag
        except ImageError as e:
            raise NodeKindError(str(e)) from None

    def proxies(self, node: NodeRecord) -> list[dict[str, Any]]:
        if not node.proxy:
            return []
        return [{"name": node.proxy, "listen": f"{node.public_ip}:{node.storage_port}",
                 "upstream": f"{node.bind_ip}:{node.storage_port}", "enabled": True},
                {"name": omq_proxy_name(node), "listen": f"{node.public_ip}:{node.omq_port}",
                 "upstream": f"{node.bind_ip}:{node.omq_bind_port}", "enabled": True}]

    def udp_relays(self, node: NodeRecord) -> list[dict[str, str]]:
        """QUIC shares the OxenMQ port (UDP): peers reach it at the advertised (proxy) address."""
        if not node.proxy:
            return []
        return [{"listen": f"{node.public_ip}:{node.omq_port}",
                 "upstream": f"{node.bind_ip}:{node.omq_bind_port}"}]

    async def probe(self, session: Any, state: NetworkState,
                    nodes: dict[str, tuple[NodeRecord, int | None]]) -> dict[str, NodeView]:
        try:
            oxend = await rpc.seed_admin(session, state.seed_url, state.admin_token, "oxend",
                                         method="GET")
            seen = {n.get("name"): n for n in oxend.get("nodes", [])}
            seed_error = None
        except rpc.RpcError as e:
            seen, seed_error = {}, f"seed's OxenMQ observations unavailable: {e}"
        names = list(nodes)
        views = await asyncio.gather(*(
            self._probe(session, *nodes[name], seen.get(name), seed_error) for name in names))
        return dict(zip(names, views, strict=True))

    @staticmethod
    async def _probe(session: Any, node: NodeRecord, swarm_id: int | None,
                     seen: dict[str, Any] | None, seed_error: str | None) -> NodeView:
        view = NodeView()
        if seed_error:
            view.error = seed_error
            return view
        if seen is None or not seen.get("commands", {}).get("rpc.get_service_nodes"):
            view.error = (f"has not fetched the node list from the seed over OxenMQ "
                          f"({node.oxend_endpoint}) yet")
            return view
        if seen.get("status") != "active":
            view.error = f"the seed lists it as {seen.get('status')!r}"
            return view
        return await protocol_probe(session, node, swarm_id, view)


def omq_proxy_name(node: NodeRecord) -> str:
    """The Toxiproxy proxy in front of a real node's OxenMQ port."""
    return f"{node.proxy}-omq"
