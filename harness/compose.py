"""A Compose file for a topology: the same containers, addresses and command lines as the docker
backend, for people who drive containers with ``docker-compose`` / ``docker compose`` instead of
the harness.

    testnet images build                                # the node image (also tagged :latest)
    testnet compose render --image session-testnet/node:latest -o compose/default.yml
    docker-compose -f compose/default.yml -p default up -d
    docker-compose -f compose/default.yml -p default down -v

The file uses format 2.4 (docker-compose v1 reads it; Compose v2 ignores the version line).
Compose testnets have no Toxiproxy in front of the nodes: Compose cannot create the proxies and
their addresses, so network faults need the harness (``testnet up --backend docker``). Nodes
advertise their container address ``10.X.i.2``; the seed is at ``10.X.0.2:22023``; the file
server (unless the topology says ``fileserver: false``) at ``10.X.0.4:22050``.

The image is ``${SESSION_TESTNET_IMAGE:-<image>}``: set SESSION_TESTNET_IMAGE to run another
build without re-rendering. ``harness.images`` tags every node image it returns as
``session-testnet/node:latest`` too, which the checked-in ``compose/default.yml`` (this module's
output for the default topology) uses. The file is rendered from code, not from a template, so an
installed package needs no data file for it.
"""

from __future__ import annotations

import json
from dataclasses import replace
from typing import Any

from harness.backends.base import fileserver_record
from harness.backends.docker import DockerBackend
from harness.backends.docker_net import subnet_of
from harness.state import NetworkState, StateDir
from harness.topology import Topology
from nodes.protocol.constants import SEED_HTTPS_PORT, SEED_PORT
from nodes.protocol.keys import derive_seed

#: the subnet index of rendered files (10.250.0.0/16): the harness allocates from 10.128 upward
#: and skips networks that exist, so a running Compose testnet is never overlapped
DEFAULT_NET_INDEX = 250
DEFAULT_IMAGE = "session-testnet/node:latest"
#: label on every Compose service, network and volume (the harness's stale sweep ignores them:
#: it only touches resources labelled with a harness state folder)
COMPOSE_LABEL = "session-testnet.compose"


def _admin_token(topology: Topology) -> str:
    return derive_seed(topology.seed, "admin", topology.name).hex()[:32]


def compose_state(topology: Topology, *, net_index: int = DEFAULT_NET_INDEX,
                  admin_token: str | None = None) -> tuple[NetworkState, DockerBackend]:
    """The planned state of a Compose testnet (addresses as the docker backend assigns them,
    without proxies) and the backend that describes its runtime paths."""
    if net_index not in range(1, 255):
        raise ValueError(f"net_index must be within 1-254, got {net_index}")
    other = [g.spec() for g in topology.nodes if g.kind != "python" or g.ref]
    if other:
        raise ValueError(f"compose files run our python nodes of the installed revision only, not "
                         f"{', '.join(other)}: use 'testnet up --backend docker' for such groups")
    topo = replace(topology, proxies=False)
    backend = DockerBackend(StateDir(topo.name))  # paths only: no engine call, nothing created
    state = NetworkState(name=topo.name, backend="compose", topology=topo.to_dict(), seed_url="",
                         admin_token=admin_token or _admin_token(topo), net_index=net_index,
                         seed_runtime={"port": SEED_PORT, "https_port": SEED_HTTPS_PORT})
    state.nodes = [backend._node_record(topo, name) for name in topo.node_names()]
    if topo.fileserver:
        state.fileserver = fileserver_record(topo, f"10.{net_index}.0", proxied=False)
    DockerBackend.assign_addresses(state)
    return state, backend


def compose_dict(topology: Topology, image: str = DEFAULT_IMAGE, *,
                 net_index: int = DEFAULT_NET_INDEX, admin_token: str | None = None) -> dict[str, Any]:
    """The Compose document as a dict (see :func:`render_compose`)."""
    from harness.network import Testnet

    state, backend = compose_state(topology, net_index=net_index, admin_token=admin_token)
    net = Testnet(state, backend.statedir, backend)
    x = state.net_index
    name = state.name
    image_ref = "${SESSION_TESTNET_IMAGE:-" + image + "}"

    def labels(role: str, target: str | None = None) -> dict[str, str]:
        out = {"session-testnet": name, COMPOSE_LABEL: "1", "session-testnet.role": role}
        if target:
            out["session-testnet.target"] = target
        return out

    def service(target: str, argv: list[str], env: dict[str, str], ip: str, role: str) -> dict[str, Any]:
        return {
            "image": image_ref,
            "command": ["python", *argv],
            "environment": dict(env),  # secrets: never on the command line
            "init": True,
            "hostname": target,
            "labels": labels(role, target),
            "networks": {"testnet": {"ipv4_address": ip}},
            "volumes": [f"{target}-data:/data"],
        }

    services: dict[str, Any] = {"seed": service("seed", net.seed_argv(), net.seed_env(), state.seed_runtime["ip"],
                                           "seed")}
    for node in state.nodes:
        svc = service(node.name, net.node_argv(node), net.node_env(node), node.public_ip, "node")
        svc["depends_on"] = ["seed"]
        services[node.name] = svc
    fs = state.fileserver
    if fs is not None:
        services[fs.name] = service(fs.name, net.node_argv(fs), net.node_env(fs), fs.public_ip,
                                    "fileserver")
    return {
        "version": "2.4",
        "services": services,
        "networks": {"testnet": {
            "driver": "bridge",
            "labels": labels("network"),
            "ipam": {"config": [{"subnet": str(subnet_of(x)), "ip_range": f"10.{x}.255.0/25",
                                 "gateway": f"10.{x}.255.254"}]},
        }},
        "volumes": {f"{t}-data": {"labels": labels("data", t)}
                    for t in ["seed"] + [n.name for n in net.runtime_nodes()]},
    }


def _scalar(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return json.dumps(value)
    # a JSON string is a valid YAML double-quoted scalar; `$` stays as is for interpolation
    return json.dumps(str(value))


def to_yaml(value: Any, indent: int = 0) -> str:
    """Block-style YAML for dicts/lists of scalars; lists of scalars are written inline."""
    pad = "  " * indent
    lines: list[str] = []
    if isinstance(value, dict):
        for k, v in value.items():
            key = k if isinstance(k, str) and k.replace("-", "").replace("_", "").replace(".", "").isalnum() \
                else json.dumps(str(k))
            if isinstance(v, dict) and v:
                lines.append(f"{pad}{key}:")
                lines.append(to_yaml(v, indent + 1))
            elif isinstance(v, list) and v and any(isinstance(i, dict | list) for i in v):
                lines.append(f"{pad}{key}:")
                lines.append(to_yaml(v, indent + 1))
            elif isinstance(v, list | dict):
                inner = ", ".join(_scalar(i) for i in v) if isinstance(v, list) else ""
                lines.append(f"{pad}{key}: {'[' + inner + ']' if isinstance(v, list) else '{}'}")
            else:
                lines.append(f"{pad}{key}: {_scalar(v)}")
    elif isinstance(value, list):
        for item in value:
            if isinstance(item, dict):
                body = to_yaml(item, indent + 1).lstrip()
                lines.append(f"{pad}- {body}")
            else:
                lines.append(f"{pad}- {_scalar(item)}")
    else:
        lines.append(pad + _scalar(value))
    return "\n".join(lines)


def render_compose(topology: Topology, image: str = DEFAULT_IMAGE, *,
                   net_index: int = DEFAULT_NET_INDEX, admin_token: str | None = None) -> str:
    """A Compose file (format 2.4, valid for docker-compose v1 and Compose v2) that runs
    ``topology`` with ``image``: the seed at ``10.X.0.2``, node ``i`` at ``10.X.i.2`` on the
    subnet ``10.X.0.0/16`` (X = ``net_index``), data on named volumes."""
    doc = compose_dict(topology, image, net_index=net_index, admin_token=admin_token)
    header = (
        f"# session-testnet: testnet {topology.name!r} ({topology.swarms} swarms x "
        f"{topology.swarm_size} nodes, seed {topology.seed!r}) on 10.{net_index}.0.0/16.\n"
        "# Generated by harness/compose.py (render_compose); do not edit by hand.\n"
        "# The seed's JSON-RPC: http://" + f"10.{net_index}.0.2:22023/json_rpc\n"
        + (f"# The file server: http://10.{net_index}.0.4:22050\n" if topology.fileserver else "")
    )
    return header + to_yaml(doc) + "\n"
