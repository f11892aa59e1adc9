"""The network of a docker testnet: its subnet and every address in it.

Addressing: a testnet gets a free index X in 128-254, so its network is ``10.X.0.0/16`` (inside
10.128.0.0/9, never overlapping another docker network, a host route or the host's resolver).
Docker's own automatic addresses are confined to ``10.X.255.0/25`` (gateway ``10.X.255.254``), so
every address below is fixed:

- ``10.X.0.1``  the proxy host: owns the Toxiproxy listen addresses (NET_ADMIN), API on ``:8474``
- ``10.X.0.2``  the seed (``:22023`` HTTP, ``:22024`` HTTPS)
- ``10.X.i.2``  node ``i``'s container (storage ``:22021``, admin ``:22030``)
- ``10.X.i.1``  node ``i``'s advertised address: its Toxiproxy proxy (upstream ``10.X.i.2``)
- ``10.X.i.(j+2)`` the dedicated proxy for traffic from node ``j`` to node ``i`` (on demand)
- ``10.X.0.4``  the file server's container (HTTP ``:22050``, admin ``:22030``); ``10.X.0.3`` its
  advertised address, its Toxiproxy proxy ``fileserver``. Nodes get ``--forward-allow
  10.X.0.0/16``: exit nodes forward onion requests only there (and to loopback).

Without proxies (``Topology.proxies=False``) node ``i`` advertises ``10.X.i.2`` itself.
"""

from __future__ import annotations

import contextlib
import ipaddress
from pathlib import Path

from docker.client import DockerClient

from harness import nodekinds
from harness.backends.base import FILESERVER_HOST, BackendError
from harness.nodekinds.oxen_storage import DEFAULT_OMQ_PORT
from harness.state import NetworkState
from harness.topology import node_index
from nodes.protocol.constants import SEED_HTTPS_PORT, SEED_PORT

#: Toxiproxy's API port on the proxy host
TOXIPROXY_PORT = 8474
#: the seed's OxenMQ endpoint of real node i (its oxend) is 10.X.0.2:(SEED_OMQ_BASE + i)
SEED_OMQ_BASE = 23000
#: the second octet X of a testnet's 10.X.0.0/16
NET_INDEXES = range(128, 255)


def subnet_of(x: int) -> ipaddress.IPv4Network:
    return ipaddress.IPv4Network(f"10.{x}.0.0/16")


def _host_networks() -> list[ipaddress.IPv4Network]:
    """Networks the host already routes (besides the default route) and its resolvers: a testnet
    subnet over one of them would cut the host off from it."""
    out: list[ipaddress.IPv4Network] = []
    with contextlib.suppress(OSError):
        for line in Path("/proc/net/route").read_text().splitlines()[1:]:
            f = line.split()
            if len(f) < 8:
                continue
            dest = ipaddress.IPv4Address(int(f[1], 16).to_bytes(4, "little"))
            mask = ipaddress.IPv4Address(int(f[7], 16).to_bytes(4, "little"))
            if int(mask) == 0:
                continue
            out.append(ipaddress.IPv4Network(f"{dest}/{mask}", strict=False))
    with contextlib.suppress(OSError):
        for line in Path("/etc/resolv.conf").read_text().splitlines():
            parts = line.split()
            if len(parts) >= 2 and parts[0] == "nameserver":
                with contextlib.suppress(ValueError):
                    out.append(ipaddress.IPv4Network(f"{parts[1]}/32"))
    return out


def _docker_networks(client: DockerClient) -> list[ipaddress.IPv4Network]:
    out = []
    for net in client.networks.list():
        for cfg in (net.attrs.get("IPAM") or {}).get("Config") or []:
            with contextlib.suppress(ValueError, KeyError, TypeError):
                sub = ipaddress.ip_network(cfg["Subnet"], strict=False)
                if isinstance(sub, ipaddress.IPv4Network):
                    out.append(sub)
    return out


def free_net_index(client: DockerClient, used: set[int]) -> int:
    """The first X in :data:`NET_INDEXES` not in ``used`` whose 10.X.0.0/16 overlaps no docker
    network, host route or resolver."""
    taken = _docker_networks(client) + _host_networks()
    for x in NET_INDEXES:
        if x in used:
            continue
        sub = subnet_of(x)
        if not any(sub.overlaps(t) for t in taken):
            return x
    raise BackendError("no free 10.X.0.0/16 subnet in 10.128.0.0/9 for a docker testnet: "
                       "run 'testnet clean' or remove unused docker networks")


def assign_addresses(state: NetworkState) -> None:
    """(Re)derive every address of the testnet from ``state.net_index`` (the layout above)."""
    x = state.net_index
    proxies = bool(state.topology.get("proxies", True))
    seed_ip = f"10.{x}.0.2"
    state.seed_runtime["ip"] = seed_ip
    state.seed_url = f"http://{seed_ip}:{SEED_PORT}"
    state.seed_https_url = f"https://{seed_ip}:{SEED_HTTPS_PORT}"
    if proxies:
        state.toxiproxy_url = f"http://10.{x}.0.1:{TOXIPROXY_PORT}"
    # exit nodes may forward onion requests into the testnet's own network (the file server)
    state.forward_networks = [str(subnet_of(x))]
    fs = state.fileserver
    if fs is not None:
        own = f"10.{x}.0.{FILESERVER_HOST + 1}"
        fs.public_ip = f"10.{x}.0.{FILESERVER_HOST}" if proxies else own
        fs.bind_ip = own if proxies else None
        fs.proxy = fs.name if proxies else None
    for node in state.nodes:
        i = node_index(node.name)
        node.public_ip = f"10.{x}.{i}.1" if proxies else f"10.{x}.{i}.2"
        node.bind_ip = f"10.{x}.{i}.2" if proxies else None
        node.proxy = node.name if proxies else None
        if node.kind == nodekinds.OXEN_STORAGE:  # every node has its own addresses
            node.omq_bind_port = node.omq_port = DEFAULT_OMQ_PORT
            node.oxend_endpoint = f"tcp://{seed_ip}:{SEED_OMQ_BASE + i}"
