"""The pure parts of the swarm backend's layout (see docs/DESIGN.md, "Swarm layout"): the
addresses of a testnet's overlay, the host's way in, service names and placement constraints.

A testnet with index X has the attachable overlay ``10.X.0.0/16``. Fixed addresses (the docker
backend's) are kept for the standalone containers on the harness's host: ``10.X.0.1`` the proxy
host (it owns every advertised address ``10.X.i.1``), ``10.X.0.2`` the seed. The swarm allocates
its tasks' addresses from ``10.X.255.0/25`` only (``SWARM_RANGE``), so they never meet a fixed
one. The host reaches the overlay through the proxy host (a gateway, attached to a local bridge
too) with the source address ``10.X.255.253`` (``host_address``): on the overlay that address
is answered by the proxy host (proxy ARP) and routed back to the host over the bridge.
"""

from __future__ import annotations

import ipaddress
from typing import Any

from harness.topology import NodeGroup

#: the host's own address inside the testnet subnet (see the module docstring)
HOST_ADDRESS = "255.253"


def host_address(x: int) -> str:
    return f"10.{x}.{HOST_ADDRESS}"


def bridge_name(x: int) -> str:
    """The Linux name of testnet ``x``'s gateway bridge on the host (its route and the host
    address are on it, so they vanish with the bridge: nothing to undo after a crash)."""
    return f"st{x}gw"


def host_route_script(x: int, bridge: str, via: str) -> list[str]:
    """``ip`` commands (run in the host's network namespace) that let the host reach testnet
    ``x``'s overlay through the proxy host at ``via`` on the gateway bridge ``bridge``."""
    src = host_address(x)
    return [f"ip addr replace {src}/32 dev {bridge}",
            f"ip route replace 10.{x}.0.0/16 via {via} dev {bridge} src {src}"]


def proxyhost_route(x: int, bridge_gateway: str) -> list[str]:
    """The proxy host's route back to the host's address (argv of ``ip``)."""
    return ["ip", "route", "replace", f"{host_address(x)}/32", "via", bridge_gateway]


def placement_constraints(group: NodeGroup | None) -> list[str]:
    """Swarm placement constraints of a node of ``group``: ``node.labels.KEY==VALUE`` for a
    group with ``placement`` ``KEY=VALUE``; none otherwise."""
    if group is None or not group.placement:
        return []
    key, _, value = group.placement.partition("=")
    return [f"node.labels.{key}=={value}"]


def pin_constraint(node_id: str) -> str:
    """The constraint that keeps a restarted node on the host its data volume lives on."""
    return f"node.id=={node_id}"


def task_address(task: dict[str, Any], network_id: str) -> str | None:
    """The address a swarm task got on the network ``network_id`` (None before it has one)."""
    for att in task.get("NetworksAttachments") or []:
        if (att.get("Network") or {}).get("ID") != network_id:
            continue
        for addr in att.get("Addresses") or []:
            return str(ipaddress.IPv4Interface(addr).ip)
    return None


def task_route_script(x: int) -> str:
    """A shell script (run in a task's network namespace on a host other than the proxy
    host's) that sends everything of testnet ``x`` that is not a real overlay endpoint through
    the proxy host ``10.X.0.1``: the advertised addresses ``10.X.i.*``, the file server's
    ``10.X.0.3`` and the harness's ``10.X.255.253``.

    Why: those are extra addresses of the proxy host (and proxy ARP for the harness's), which
    the overlay's VXLAN device on another host never answers ARP for. Longest prefix wins, so
    the real endpoints stay on-link: the proxy host, the seed and the tasks' ``10.X.255.0/25``.
    """
    p = f"10.{x}"
    return "\n".join([
        "set -e",
        f"dev=$(ip -o -4 addr show | awk '$4 ~ /^{p.replace('.', '[.]')}[.]/ {{print $2; exit}}')",
        f'[ -n "$dev" ] || {{ echo "no address in {p}.0.0/16 in this namespace" >&2; exit 1; }}',
        f'ip route replace {p}.0.1/32 dev "$dev"',
        f'ip route replace {p}.0.2/32 dev "$dev"',
        f'ip route replace {p}.255.0/25 dev "$dev"',
        f'ip route replace {p}.0.0/17 via {p}.0.1 dev "$dev"',
        f'ip route replace {p}.128.0/17 via {p}.0.1 dev "$dev"',
    ])
