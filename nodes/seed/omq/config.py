"""Which real storage servers the seed serves over OxenMQ, and the keys it hands them.

The seed reads a JSON file (``--oxenmq-nodes FILE`` or ``$SESSION_TESTNET_OXENMQ_NODES``)::

    {"nodes": [{"name": "sn01", "endpoint": "tcp://127.0.0.1:23101",
                "public_ip": "127.60.0.1", "storage_port": 22021, "storage_lmq_port": 22020,
                "version": [2, 8, 0]}]}

* ``name``: the node's name in the testnet; its key is derived from the testnet seed and this
  name exactly like every other node's (:func:`nodes.protocol.keys.derive_seed` ``"node"``).
* ``endpoint``: where the seed binds this node's own ZeroMQ ROUTER (``ipc:///path`` or
  ``tcp://IPv4:port``); the node is started with ``--oxend-rpc`` pointing there.  One endpoint
  per node because the server fetches its keys anonymously: the endpoint says who asks.
* ``public_ip``, ``storage_port`` (HTTPS), ``storage_lmq_port`` (OxenMQ TCP + QUIC UDP): what the
  node list advertises (a proxy address when the harness puts the node behind Toxiproxy).
* ``version`` (optional): the listed storage server version until the node's first ping reports
  its own.
* ``peer_ips`` (optional): ``{"<peer name>": "IPv4"}``, the address at which *this* node sees each
  named peer (ports unchanged): the node's own node list shows those peers there instead of at
  their ``public_ip``. The harness points each real node at its own link proxy to every other
  real node this way (per-link faults, docs/nodes.md "Link faults between real servers").

The file holds no secrets: the keys follow from the testnet seed.
"""

from __future__ import annotations

import ipaddress
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from nacl import bindings

from nodes.common.values import is_int
from nodes.protocol.keys import Identity, derive_seed

ENV_NODES_FILE = "SESSION_TESTNET_OXENMQ_NODES"
IPC_PATH_MAX = 107  # sun_path of a Unix socket, minus the terminating NUL


class OxenMQConfigError(ValueError):
    """The real-node file is unusable; the message names the entry and the field."""


def node_identity(testnet_seed: str, name: str) -> Identity:
    """The deterministic key of node ``name`` (the same derivation as the harness's Topology)."""
    return Identity.from_seed(derive_seed(testnet_seed, "node", name))


def oxend_privkeys(identity: Identity) -> dict[str, str]:
    """The answer to ``admin.get_service_node_privkey`` for ``identity``.

    * Ed25519: libsodium's 64-byte secret key (seed ‖ public key);
    * X25519: ``crypto_sign_ed25519_sk_to_curve25519`` of it (the clamped Ed25519 scalar);
    * legacy (``service_node_privkey``): that scalar reduced mod L, so that the legacy public key
      (scalar × base point, no clamping) equals the Ed25519 public key, as on every current node.
    """
    scalar = identity.x25519_secret
    legacy = bindings.crypto_core_ed25519_scalar_reduce(scalar + bytes(32))
    return {
        "service_node_privkey": legacy.hex(),
        "service_node_ed25519_privkey": identity.ed25519_secret.hex(),
        "service_node_x25519_privkey": scalar.hex(),
    }


def legacy_pubkey(privkey_hex: str) -> bytes:
    """The legacy public key of a ``service_node_privkey`` (what the server derives from it)."""
    return bindings.crypto_scalarmult_ed25519_base_noclamp(bytes.fromhex(privkey_hex))


def check_endpoint(endpoint: Any, where: str) -> str:
    """``ipc:///absolute/path`` or ``tcp://IPv4:port``; raises OxenMQConfigError."""
    if not isinstance(endpoint, str):
        raise OxenMQConfigError(f"{where}: `endpoint` must be a string like \"tcp://127.0.0.1:23101\" "
                                f"or \"ipc:///run/sn01.sock\", got {endpoint!r}")
    if endpoint.startswith("ipc://"):
        path = endpoint[len("ipc://"):]
        if not path.startswith("/"):
            raise OxenMQConfigError(f"{where}: ipc endpoint {endpoint!r} needs an absolute path (ipc:///...)")
        if len(path.encode()) > IPC_PATH_MAX:
            raise OxenMQConfigError(f"{where}: ipc path {path!r} is longer than {IPC_PATH_MAX} bytes, the "
                                    "limit of a Unix socket path; use a shorter directory or tcp://")
        return endpoint
    if endpoint.startswith("tcp://"):
        host, sep, port = endpoint[len("tcp://"):].rpartition(":")
        try:
            ipaddress.IPv4Address(host)
        except ValueError:
            host = ""
        if not sep or not host or not port.isdigit() or not 1 <= int(port) <= 65535:
            raise OxenMQConfigError(f"{where}: tcp endpoint {endpoint!r} must be tcp://<IPv4>:<port 1-65535>")
        return endpoint
    raise OxenMQConfigError(f"{where}: endpoint {endpoint!r} must start with ipc:// or tcp://")


@dataclass(frozen=True)
class RealNodeSpec:
    """One real storage server the seed serves as its oxend."""

    name: str
    endpoint: str
    public_ip: str
    storage_port: int
    storage_lmq_port: int
    version: tuple[int, int, int] | None = None
    #: peer name -> the address at which this node sees that peer (its own node list only)
    peer_ips: tuple[tuple[str, str], ...] = ()

    @classmethod
    def from_json(cls, d: Any, where: str) -> RealNodeSpec:
        if not isinstance(d, dict):
            raise OxenMQConfigError(f"{where} must be an object with name, endpoint, public_ip, storage_port, "
                                    "storage_lmq_port")
        known = {"name", "endpoint", "public_ip", "storage_port", "storage_lmq_port", "version", "peer_ips"}
        if unknown := sorted(set(d) - known):
            raise OxenMQConfigError(f"{where}: unknown field(s) {', '.join(unknown)}; known: {', '.join(sorted(known))}")
        name = d.get("name")
        if not isinstance(name, str) or not name:
            raise OxenMQConfigError(f"{where}: `name` must be a non-empty string (the node's testnet name)")
        where = f"{where} ({name})"
        addr = _ipv4(d.get("public_ip"), f"{where}: `public_ip`")
        ports = []
        for key in ("storage_port", "storage_lmq_port"):
            v = d.get(key)
            if not is_int(v) or not 1 <= v <= 65535:
                raise OxenMQConfigError(f"{where}: `{key}` must be a port number 1-65535, got {v!r}")
            ports.append(v)
        version = d.get("version")
        if version is not None:
            if (not isinstance(version, list) or len(version) != 3
                    or not all(is_int(x) and 0 <= x <= 65535 for x in version)):
                raise OxenMQConfigError(f"{where}: `version` must be [major, minor, patch], got {version!r}")
            version = (version[0], version[1], version[2])
        peer_ips = d.get("peer_ips", {})
        if not isinstance(peer_ips, dict):
            raise OxenMQConfigError(f"{where}: `peer_ips` must be an object {{\"<peer name>\": \"IPv4\"}}, "
                                    f"got {peer_ips!r}")
        peers = tuple(sorted((str(peer), _ipv4(ip, f"{where}: `peer_ips[{peer!r}]`"))
                             for peer, ip in peer_ips.items()))
        if any(peer == name for peer, _ in peers):
            raise OxenMQConfigError(f"{where}: `peer_ips` names the node itself; it lists peers only")
        return cls(name=name, endpoint=check_endpoint(d.get("endpoint"), where), public_ip=addr,
                   storage_port=ports[0], storage_lmq_port=ports[1], version=version, peer_ips=peers)

    def to_json(self) -> dict[str, Any]:
        d: dict[str, Any] = {"name": self.name, "endpoint": self.endpoint, "public_ip": self.public_ip,
                             "storage_port": self.storage_port, "storage_lmq_port": self.storage_lmq_port}
        if self.version is not None:
            d["version"] = list(self.version)
        if self.peer_ips:
            d["peer_ips"] = dict(self.peer_ips)
        return d


def _ipv4(ip: Any, what: str) -> str:
    """``ip`` as a dotted IPv4 address other than 0.0.0.0; raises OxenMQConfigError naming ``what``."""
    try:
        addr = ipaddress.IPv4Address(ip) if isinstance(ip, str) else None
    except ValueError:
        addr = None
    if addr is None or addr.is_unspecified:
        raise OxenMQConfigError(f"{what} must be a dotted IPv4 address other than 0.0.0.0, got {ip!r}")
    return str(addr)


def parse_real_nodes(data: Any, source: str = "real-node list") -> list[RealNodeSpec]:
    """Validate ``{"nodes": [...]}``; names and endpoints must be unique."""
    if not isinstance(data, dict) or not isinstance(data.get("nodes"), list):
        raise OxenMQConfigError(f"{source} must be a JSON object {{\"nodes\": [...]}}")
    specs = [RealNodeSpec.from_json(d, f"{source}: nodes[{i}]") for i, d in enumerate(data["nodes"])]
    for attr in ("name", "endpoint"):
        seen: set[str] = set()
        for spec in specs:
            value = getattr(spec, attr)
            if value in seen:
                raise OxenMQConfigError(f"{source}: {attr} {value!r} appears twice; every real node needs its own")
            seen.add(value)
    names = {s.name for s in specs}
    for spec in specs:
        unknown = sorted(peer for peer, _ in spec.peer_ips if peer not in names)
        if unknown:
            raise OxenMQConfigError(f"{source}: {spec.name}'s `peer_ips` names {', '.join(unknown)}, which "
                                    "the list does not hold; name real nodes of this file")
    return specs


def load_real_nodes(path: Path) -> list[RealNodeSpec]:
    """Read and validate the real-node file; raises OxenMQConfigError naming the problem."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise OxenMQConfigError(f"cannot read the real-node list {path}: {exc}") from exc
    except json.JSONDecodeError as exc:
        raise OxenMQConfigError(f"real-node list {path} is not valid JSON: {exc}") from exc
    return parse_real_nodes(data, str(path))
