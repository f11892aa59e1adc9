"""Per-user state: one folder per testnet name, holding ``state.json``, logs and node data.

The state directory is ``$SESSION_TESTNET_HOME``, else ``$XDG_STATE_HOME/session-testnet``, else
``~/.local/state/session-testnet``. Any shell of the same user can act on a testnet by name.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import shutil
import tempfile
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

STATE_FILE = "state.json"


class StateError(RuntimeError):
    """A testnet's state is missing or unreadable; the message says which and what to do."""


def state_home() -> Path:
    env = os.environ.get("SESSION_TESTNET_HOME")
    if env:
        return Path(env)
    xdg = os.environ.get("XDG_STATE_HOME")
    base = Path(xdg) if xdg else Path.home() / ".local" / "state"
    return base / "session-testnet"


@dataclass
class NodeRecord:
    name: str
    public_ip: str
    storage_port: int
    admin_port: int
    pubkey_ed25519: str
    pubkey_x25519: str
    swarm_id: int | None = None
    #: backend-specific handle: {"pid": …} for processes, {"container": …} for docker
    runtime: dict[str, Any] = field(default_factory=dict)
    #: the bind address when it differs from the advertised one (e.g. behind a proxy)
    bind_ip: str | None = None
    proxy: str | None = None
    #: the node implementation (harness.nodekinds): "python" (ours), "oxen-storage", or the
    #: user's own "command" / "image"
    kind: str = "python"
    #: python nodes of another git revision of this project: its commit
    revision: str | None = None
    #: nodes speaking OxenMQ (the real server): the advertised OxenMQ port (its proxy's when
    #: proxied), the port it listens on, and its own endpoint at the seed (its oxend)
    omq_port: int | None = None
    omq_bind_port: int | None = None
    oxend_endpoint: str | None = None

    @property
    def admin_url(self) -> str:
        return f"http://{self.bind_ip or self.public_ip}:{self.admin_port}"

    @property
    def storage_url(self) -> str:
        return f"https://{self.public_ip}:{self.storage_port}"

    def public_dict(self) -> dict[str, Any]:
        """The documented per-node JSON of ``testnet up --json``."""
        out: dict[str, Any] = {
            "name": self.name,
            "public_ip": self.public_ip,
            "storage_port": self.storage_port,
            "pubkey_ed25519": self.pubkey_ed25519,
            "pubkey_x25519": self.pubkey_x25519,
            "swarm_id": self.swarm_id,
            "admin_url": self.admin_url if self.admin_port else None,
            "kind": self.kind,
        }
        if self.proxy is not None:
            out["proxy"] = self.proxy
        if self.omq_port is not None:
            out["omq_port"] = self.omq_port
        if self.revision is not None:
            out["revision"] = self.revision
        if self.runtime.get("host"):  # multi-host backends (swarm): where the node runs
            out["host"] = self.runtime["host"]
        return out

    def fileserver_dict(self) -> dict[str, Any]:
        """The documented ``fileserver`` JSON of ``testnet up --json`` (docs/fileserver.md)."""
        out: dict[str, Any] = {
            "name": self.name,
            "url": f"http://{self.public_ip}:{self.storage_port}",
            "public_ip": self.public_ip,
            "port": self.storage_port,
            "pubkey_x25519": self.pubkey_x25519,
            "admin_url": self.admin_url,
        }
        if self.proxy is not None:
            out["proxy"] = self.proxy
        return out


@dataclass
class NetworkState:
    name: str
    backend: str
    topology: dict[str, Any]
    seed_url: str
    admin_token: str
    net_index: int
    status: str = "starting"
    created: float = field(default_factory=time.time)
    owner_pid: int = field(default_factory=os.getpid)
    seed_https_url: str | None = None
    seed_runtime: dict[str, Any] = field(default_factory=dict)
    nodes: list[NodeRecord] = field(default_factory=list)
    #: the testnet's Toxiproxy API (None: the testnet runs without proxies)
    toxiproxy_url: str | None = None
    #: process backend: pid of the Toxiproxy server
    toxiproxy_pid: int | None = None
    #: process backend: pid of the UDP relay of proxied QUIC ports (nodes.udprelay), if any
    udprelay_pid: int | None = None
    #: docker backend: its container (nodes.udprelay in the proxy host's namespace), if any
    udprelay_container: str | None = None
    #: docker backend: the node image, the Toxiproxy image and the Toxiproxy container's id
    image: str | None = None
    toxiproxy_image: str | None = None
    toxiproxy_container: str | None = None
    #: docker backend: the node image's code volumes (path in the container -> volume), mounted
    #: read-only in every container of that image (harness/images/code.py); empty: none
    code_volumes: dict[str, str] = field(default_factory=dict)
    #: a lease (``Testnet.up(lease=True)``: the pytest plugin, the Python API): the process
    #: whose death ends the testnet, and its start time (``/proc/PID/stat`` field 22, clock
    #: ticks since boot) so that a reused pid is not taken for the owner; None: no lease
    #: (``testnet up`` from the CLI), the testnet stays until ``down``
    lease_owner_pid: int | None = None
    lease_owner_start: int | None = None
    #: the reaper (``python -m harness.reaper``) watching the lease owner, if one was started
    reaper_pid: int | None = None
    #: the file server (docs/fileserver.md): a record of kind ``fileserver`` whose
    #: ``storage_port`` is its HTTP port; None when the topology has none
    fileserver: NodeRecord | None = None
    #: networks besides loopback that exit nodes may forward onion requests to (the docker
    #: backend's container network)
    forward_networks: list[str] = field(default_factory=list)
    #: swarm backend: the engine of each host other than the manager's, by host name
    #: (``$SESSION_TESTNET_SWARM_ENGINES`` at ``up``; docs/backends.md, "Several hosts")
    host_engines: dict[str, str] = field(default_factory=dict)

    def node(self, name: str) -> NodeRecord:
        """A storage node by name or Ed25519 key, or the file server (``fileserver``)."""
        for n in self.nodes:
            if n.name == name or n.pubkey_ed25519 == name:
                return n
        if self.fileserver is not None and name in (self.fileserver.name, self.fileserver.pubkey_ed25519):
            return self.fileserver
        known = ", ".join([n.name for n in self.nodes]
                          + ([self.fileserver.name] if self.fileserver else [])) or "none"
        raise StateError(f"testnet {self.name!r} has no node {name!r} (nodes: {known})")

    def public_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "name": self.name,
            "backend": self.backend,
            "status": self.status,
            "seed_url": self.seed_url,
            "nodes": [n.public_dict() for n in self.nodes],
        }
        if self.seed_https_url:
            out["seed_https_url"] = self.seed_https_url
        if self.toxiproxy_url:
            out["toxiproxy_url"] = self.toxiproxy_url
        out["fileserver"] = self.fileserver.fileserver_dict() if self.fileserver else None
        return out

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2, sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> NetworkState:
        data = json.loads(text)
        nodes = [NodeRecord(**n) for n in data.pop("nodes", [])]
        fs = data.pop("fileserver", None)
        data["fileserver"] = NodeRecord(**fs) if fs else None
        data.update(data.pop("extra", None) or {})  # state files written before typed fields
        data.pop("internal_seed_url", None)
        return cls(nodes=nodes, **data)


class StateDir:
    """The folder of one testnet."""

    def __init__(self, name: str, home: Path | None = None) -> None:
        self.name = name
        self.home = home or state_home()
        self.path = self.home / "networks" / name

    @property
    def state_file(self) -> Path:
        return self.path / STATE_FILE

    @property
    def logs(self) -> Path:
        return self.path / "logs"

    @property
    def data(self) -> Path:
        return self.path / "data"

    def exists(self) -> bool:
        return self.state_file.exists()

    def create(self) -> None:
        for d in (self.path, self.logs, self.data):
            d.mkdir(parents=True, exist_ok=True)

    def load(self) -> NetworkState:
        try:
            return NetworkState.from_json(self.state_file.read_text())
        except FileNotFoundError:
            raise StateError(
                f"no testnet named {self.name!r} (testnets here: "
                f"{', '.join(list_networks(self.home)) or 'none'}); start it with "
                f"'testnet up -n {self.name}' or pick one with -n NAME"
            ) from None
        except (json.JSONDecodeError, TypeError) as e:
            raise StateError(
                f"state file {self.state_file} is unreadable ({e}); "
                f"remove the folder {self.path} and run 'testnet clean' to stop what it left running"
            ) from None

    def save(self, state: NetworkState) -> None:
        self.path.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=self.path, prefix=".state-", suffix=".json")
        with os.fdopen(fd, "w") as f:
            f.write(state.to_json())
        os.replace(tmp, self.state_file)

    def remove(self) -> None:
        shutil.rmtree(self.path, ignore_errors=True)


def list_networks(home: Path | None = None) -> list[str]:
    root = (home or state_home()) / "networks"
    if not root.is_dir():
        return []
    return sorted(p.name for p in root.iterdir() if (p / STATE_FILE).exists())


@contextlib.contextmanager
def locked(name: str = "global", home: Path | None = None) -> Iterator[None]:
    """An exclusive advisory lock across processes of this user (allocations, up/down)."""
    root = home or state_home()
    root.mkdir(parents=True, exist_ok=True)
    with open(root / f".{name}.lock", "w") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def pid_alive(pid: int) -> bool:
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def process_start_time(pid: int) -> int | None:
    """When ``pid`` started (``/proc/PID/stat`` field 22, clock ticks since boot), or None when
    there is no such process or it is a zombie (it has exited; only its parent's wait is left)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except (OSError, ValueError):
        return None
    fields = stat.rsplit(")", 1)[-1].split()  # after "pid (comm)": the comm may hold spaces
    if len(fields) < 20 or fields[0] in ("Z", "X"):
        return None
    return int(fields[19])


def owner_alive(pid: int, start: int | None) -> bool:
    """Whether the process ``pid`` that started at ``start`` still runs (a reused pid, a zombie
    or a missing process count as dead; without a start time, any live ``pid`` counts)."""
    now = process_start_time(pid)
    if now is None:
        return False
    return start is None or now == start


def lease_expired(state: NetworkState) -> bool:
    """The testnet holds a lease and its owner process is gone."""
    return state.lease_owner_pid is not None and not owner_alive(state.lease_owner_pid,
                                                                 state.lease_owner_start)


def stale_reason(state: NetworkState) -> str | None:
    """Why the testnet is stale (its ``up`` never finished and the process running it is gone,
    or the owner of its lease died), or None when it is not."""
    if state.status != "up" and not pid_alive(state.owner_pid):
        return f"its harness (pid {state.owner_pid}) died before it was up"
    if lease_expired(state):
        return f"the owner of its lease (pid {state.lease_owner_pid}) died"
    return None


def is_stale(state: NetworkState) -> bool:
    """A testnet is stale when its ``up`` never finished and the process running it is gone,
    or when it holds a lease whose owner process died (see :func:`stale_reason`)."""
    return stale_reason(state) is not None
