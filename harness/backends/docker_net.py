"""Subnet choice for docker testnets: every testnet gets a free index X in 128-254, so its
network is ``10.X.0.0/16`` (inside 10.128.0.0/9), never overlapping another docker network, a
route of the host or the host's resolver. See :mod:`harness.backends.docker` for the addresses
inside a testnet's subnet.
"""

from __future__ import annotations

import contextlib
import ipaddress
from pathlib import Path

from docker.client import DockerClient

from harness.backends.base import BackendError

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
