"""Start, join and remove simulated swarm hosts (docs/backends.md, "Simulated hosts").

``SimHosts(home).up(n)``:

1. an internal bridge network ``st-sim`` (a free ``10.127.K.0/24``, no route out) for the
   hosts and the local engine, which is the manager;
2. ``n`` containers ``st-sim-host<i>`` of :func:`harness.swarmsim.image.sim_image`, each running
   a Docker engine on a socket in a folder of this machine (``<home>/swarm-sim/host<i>``), its
   data on a labelled volume. Privileged where the engine can grant it, else every capability
   the engine has, unconfined (an engine inside a sandbox may lack one, as this project's CI
   machine lacks ``CAP_SYS_RESOURCE``);
3. the local engine initialised as a swarm manager on the bridge's gateway address when it is
   in no swarm (and only then: otherwise its swarm must be reachable from the bridge), the
   hosts joined as workers with the worker token (through the engine API, never on a command
   line) and labelled ``sim-host=host<i>`` (the manager ``sim-host=manager``).

Everything is written to ``<home>/swarm-sim/state.json`` before it is made, so ``down`` removes
it even after ``up`` was killed: the hosts leave the swarm, their containers, volumes and the
network go, and the swarm is left (``docker_gwbridge`` removed) only if ``up`` initialised it.
"""

from __future__ import annotations

import contextlib
import ipaddress
import json
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import docker.errors  # binds `docker` too
import requests.exceptions
from docker.client import DockerClient

from harness.images.engine import Progress, quiet
from harness.swarmsim.image import ENTRY_SCRIPT, SOCKET_DIR, sim_image

NETWORK = "st-sim"
LABEL = "session-testnet.swarm-sim"
#: the folder of the simulated hosts' state: ``down`` removes only what carries its own
LABEL_HOME = "session-testnet.swarm-sim.home"
SWARM_PORT = 2377
#: how long a host's engine may take to answer, and a joined host to be ready
START_TIMEOUT = 90.0
POLL = 0.2
#: capabilities the Docker API may not know by name (older engines)
_NEWER_CAPS = {"BPF", "PERFMON", "CHECKPOINT_RESTORE"}


class SimError(RuntimeError):
    """A simulated host could not be started, joined or removed (the message says what to do)."""


@dataclass
class SimState:
    network: str = NETWORK
    subnet: str = ""
    #: host name -> its engine's socket on this machine
    hosts: dict[str, str] = field(default_factory=dict)
    initialised_swarm: bool = False
    had_gwbridge: bool = True


def capabilities(mask: int | None = None) -> list[str]:
    """Docker's names of the capabilities in ``mask`` (default: what this machine's processes
    may hold, CapBnd of /proc/self/status)."""
    names = ["CHOWN", "DAC_OVERRIDE", "DAC_READ_SEARCH", "FOWNER", "FSETID", "KILL", "SETGID",
             "SETUID", "SETPCAP", "LINUX_IMMUTABLE", "NET_BIND_SERVICE", "NET_BROADCAST",
             "NET_ADMIN", "NET_RAW", "IPC_LOCK", "IPC_OWNER", "SYS_MODULE", "SYS_RAWIO",
             "SYS_CHROOT", "SYS_PTRACE", "SYS_PACCT", "SYS_ADMIN", "SYS_BOOT", "SYS_NICE",
             "SYS_RESOURCE", "SYS_TIME", "SYS_TTY_CONFIG", "MKNOD", "LEASE", "AUDIT_WRITE",
             "AUDIT_CONTROL", "SETFCAP", "MAC_OVERRIDE", "MAC_ADMIN", "SYSLOG", "WAKE_ALARM",
             "BLOCK_SUSPEND", "AUDIT_READ", "PERFMON", "BPF", "CHECKPOINT_RESTORE"]
    if mask is None:
        mask = (1 << len(names)) - 1
        with contextlib.suppress(OSError, ValueError):
            for line in Path("/proc/self/status").read_text().splitlines():
                if line.startswith("CapBnd:"):
                    mask = int(line.split()[1], 16)
    return [n for i, n in enumerate(names) if mask >> i & 1]


class SimHosts:
    def __init__(self, home: Path, client: DockerClient | None = None,
                 progress: Progress = quiet) -> None:
        self.dir = home / "swarm-sim"
        self.state_file = self.dir / "state.json"
        self._client = client
        self.progress = progress

    def labels(self, what: str) -> dict[str, str]:
        return {LABEL: what, LABEL_HOME: str(self.dir)}

    @property
    def client(self) -> DockerClient:
        if self._client is None:
            try:
                self._client = docker.from_env()
                self._client.ping()
            except (docker.errors.DockerException, requests.exceptions.RequestException) as e:
                raise SimError(f"the local Docker engine is not reachable ({e}): start it") from None
        return self._client

    # -- state -------------------------------------------------------------------------------
    def load(self) -> SimState | None:
        try:
            return SimState(**json.loads(self.state_file.read_text()))
        except FileNotFoundError:
            return None
        except (ValueError, TypeError) as e:
            raise SimError(f"{self.state_file} is unreadable ({e}); remove the containers "
                           f"labelled {LABEL} and the network {NETWORK} by hand") from None

    def _save(self, state: SimState) -> None:
        self.dir.mkdir(parents=True, exist_ok=True)
        tmp = self.state_file.with_suffix(".tmp")
        tmp.write_text(json.dumps(asdict(state), indent=2))
        tmp.replace(self.state_file)

    def engines(self) -> dict[str, str]:
        """``{host: "unix:///…/docker.sock"}`` of the running simulated hosts."""
        state = self.load()
        return {h: f"unix://{sock}" for h, sock in (state.hosts if state else {}).items()}

    def engines_env(self) -> str:
        """The value of ``$SESSION_TESTNET_SWARM_ENGINES`` for these hosts."""
        return ",".join(f"{h}={u}" for h, u in sorted(self.engines().items()))

    # -- up ----------------------------------------------------------------------------------
    def up(self, count: int) -> dict[str, str]:
        if count < 1:
            raise SimError(f"--hosts must be at least 1 (got {count})")
        if self.load() is not None:
            raise SimError(f"simulated hosts are up already ({self.state_file}); run "
                           "'testnet swarm-sim down' first")
        swarm = (self.client.info().get("Swarm") or {})
        if swarm.get("LocalNodeState") != "inactive":
            raise SimError(
                "the local engine is in a swarm already (state "
                f"{swarm.get('LocalNodeState')!r}); the simulated hosts join a swarm that "
                "'testnet swarm-sim up' creates on their network and removes at 'down': leave "
                "the engine's swarm first ('docker swarm leave --force') or run the swarm "
                "backend over your own hosts (docs/backends.md)")
        state = SimState(initialised_swarm=True,
                         had_gwbridge=bool(self.client.networks.list(names=["docker_gwbridge"])))
        image = sim_image(self.client, self.progress)
        self._save(state)
        try:
            gateway = self._network(state)
            self._swarm(gateway)
            for i in range(1, count + 1):
                self._start_host(state, f"host{i}", image, str(ipaddress.IPv4Network(
                    state.subnet)[10 + i]), gateway)
        except BaseException:
            with contextlib.suppress(Exception):
                self.down()
            raise
        return self.engines()

    def _network(self, state: SimState) -> str:
        taken = []
        for net in self.client.networks.list():
            for cfg in (net.attrs.get("IPAM") or {}).get("Config") or []:
                with contextlib.suppress(ValueError, KeyError, TypeError):
                    taken.append(ipaddress.ip_network(cfg["Subnet"], strict=False))
        for k in range(256):
            sub = ipaddress.IPv4Network(f"10.127.{k}.0/24")
            if not any(sub.overlaps(t) for t in taken):
                break
        else:
            raise SimError("no free 10.127.K.0/24 for the simulated hosts' network")
        state.subnet = str(sub)
        self._save(state)
        gateway = str(sub[1])
        try:
            self.client.networks.create(
                NETWORK, driver="bridge", internal=True, labels=self.labels("network"),
                ipam=docker.types.IPAMConfig(pool_configs=[docker.types.IPAMPool(
                    subnet=str(sub), gateway=gateway)]), check_duplicate=True)
        except docker.errors.APIError as e:
            raise SimError(f"cannot create the network {NETWORK} ({sub}): {e}") from None
        return gateway

    def _swarm(self, gateway: str) -> None:
        self.progress(f"initialising swarm mode on the local engine ({gateway}:{SWARM_PORT})")
        try:
            self.client.swarm.init(advertise_addr=gateway, listen_addr=f"{gateway}:{SWARM_PORT}")
        except docker.errors.APIError as e:
            raise SimError(f"cannot initialise swarm mode on the local engine: {e}") from None
        self.client.swarm.reload()
        me = self.client.nodes.get(str((self.client.info().get("Swarm") or {}).get("NodeID")))
        spec = dict(me.attrs["Spec"])
        spec["Labels"] = {**(spec.get("Labels") or {}), "sim-host": "manager"}
        me.update(spec)

    def _start_host(self, state: SimState, host: str, image: str, ip: str, gateway: str) -> None:
        sock_dir = self.dir / host
        sock_dir.mkdir(parents=True, exist_ok=True)
        state.hosts[host] = str(sock_dir / "docker.sock")
        self._save(state)
        name = f"st-sim-{host}"
        volume = self.client.volumes.create(name=f"{name}-data", labels=self.labels(host))
        self.progress(f"starting simulated host {host} ({ip})")
        c = self._create(image, name, host, ip, binds=[f"{sock_dir}:{SOCKET_DIR}:rw",
                                                       f"{volume.name}:/var/lib/docker:rw"])
        engine = self._await_engine(host, c, sock_dir / "docker.sock")
        token = self.client.swarm.attrs["JoinTokens"]["Worker"]
        try:
            engine.swarm.join(remote_addrs=[f"{gateway}:{SWARM_PORT}"], join_token=token,
                              listen_addr=f"{ip}:{SWARM_PORT}", advertise_addr=ip)
        except docker.errors.APIError as e:
            raise SimError(f"simulated host {host} cannot join the swarm: {e}; see 'docker "
                           f"logs {name}'") from None
        finally:
            engine.close()
        self._await_ready(host)

    def _storage_driver(self) -> str:
        """The inner engines' storage driver: the local engine's when it is one that nests
        (fuse-overlayfs, vfs), else the inner engine's own choice."""
        driver = str(self.client.info().get("Driver", ""))
        return driver if driver in ("fuse-overlayfs", "vfs") else ""

    def _create(self, image: str, name: str, host: str, ip: str, binds: list[str]) -> Any:
        """Create and start a host's container: privileged if the engine can grant that, else
        with every capability it has, unconfined (seccomp, AppArmor, /proc and /sys paths)."""
        api = self.client.api
        spec: dict[str, Any] = dict(
            name=name, hostname=host, detach=True, labels=self.labels(host),
            entrypoint=["sh", "-c", ENTRY_SCRIPT],
            environment={"SIM_STORAGE_DRIVER": self._storage_driver()},
            networking_config=api.create_networking_config(
                {NETWORK: api.create_endpoint_config(ipv4_address=ip)}))  # type: ignore[arg-type]
        try:
            hc = api.create_host_config(privileged=True, binds=binds, network_mode=NETWORK)
            cid = api.create_container(image, host_config=hc, **spec)["Id"]
            api.start(cid)
            return self.client.containers.get(cid)
        except docker.errors.APIError as e:
            if "caps" not in str(e) and "capabilit" not in str(e):
                raise SimError(f"cannot start {name}: {e}") from None
            with contextlib.suppress(docker.errors.DockerException):
                self.client.containers.get(name).remove(force=True)
        caps = capabilities()
        devices = ["/dev/fuse:/dev/fuse:rwm"] if Path("/dev/fuse").exists() else []
        for _ in range(len(_NEWER_CAPS) + 1):
            hc = api.create_host_config(
                cap_add=caps, devices=devices, binds=binds, network_mode=NETWORK,
                security_opt=["seccomp=unconfined", "apparmor=unconfined"])
            hc["MaskedPaths"], hc["ReadonlyPaths"] = [], []  # what `systempaths=unconfined` does
            try:
                cid = api.create_container(image, host_config=hc, **spec)["Id"]
                break
            except docker.errors.APIError as e:
                unknown = [n for n in _NEWER_CAPS if f'"CAP_{n}"' in str(e) and n in caps]
                if not unknown:
                    raise SimError(f"cannot create {name}: {e}") from None
                caps = [x for x in caps if x not in unknown]
        else:
            raise SimError(f"cannot create {name}: the engine refuses the capabilities {caps}")
        try:
            api.start(cid)
        except docker.errors.APIError as e:
            raise SimError(f"cannot start {name}: {e}") from None
        return self.client.containers.get(cid)

    def _await_engine(self, host: str, container: Any, sock: Path) -> DockerClient:
        deadline = time.monotonic() + START_TIMEOUT
        last = "no socket yet"
        while time.monotonic() < deadline:
            container.reload()
            if container.status not in ("created", "running"):
                logs = container.logs(tail=15).decode(errors="replace")
                raise SimError(f"simulated host {host}'s engine exited ({container.status}):\n"
                               f"{logs}")
            if sock.exists():
                try:
                    engine = DockerClient(base_url=f"unix://{sock}", timeout=60)
                    engine.ping()
                    return engine
                except (docker.errors.DockerException, requests.exceptions.RequestException) as e:
                    last = str(e)
            time.sleep(POLL)
        raise SimError(f"simulated host {host}'s engine did not answer on {sock} within "
                       f"{START_TIMEOUT:.0f}s ({last}); see 'docker logs {container.name}'")

    def _await_ready(self, host: str) -> None:
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            for n in self.client.nodes.list(filters={"name": host}):
                if (n.attrs.get("Description", {}).get("Hostname") == host
                        and n.attrs.get("Status", {}).get("State") == "ready"):
                    spec = dict(n.attrs["Spec"])
                    spec["Labels"] = {**(spec.get("Labels") or {}), "sim-host": host}
                    n.update(spec)
                    return
            time.sleep(POLL)
        raise SimError(f"simulated host {host} joined but is not ready in the swarm after "
                       f"{START_TIMEOUT:.0f}s; see 'docker node ls'")

    # -- down --------------------------------------------------------------------------------
    def down(self) -> list[str]:
        """Remove the simulated hosts of this folder and what ``up`` made (also without a state
        file: by their labels, and the swarm if its manager carries ``sim-host=manager``);
        returns what was removed."""
        state = self.load()
        removed: list[str] = []
        client = self.client
        mine: dict[str, Any] = {"label": f"{LABEL_HOME}={self.dir}"}
        for c in client.containers.list(all=True, filters=mine):
            sock = self.dir / str((c.labels or {}).get(LABEL, "")) / "docker.sock"
            if c.status == "running" and sock.exists():  # leave, so the manager forgets it
                with contextlib.suppress(Exception):
                    engine = DockerClient(base_url=f"unix://{sock}", timeout=20)
                    engine.swarm.leave(force=True)
                    engine.close()
        ours = state.initialised_swarm if state is not None else self._swarm_is_ours()
        if ours:
            with contextlib.suppress(docker.errors.APIError):
                for n in client.nodes.list():  # the workers that left (or whose host is gone)
                    if n.attrs.get("Spec", {}).get("Role") == "worker":
                        with contextlib.suppress(docker.errors.APIError):
                            n.remove(force=True)
            with contextlib.suppress(docker.errors.APIError):
                client.swarm.leave(force=True)
                removed.append("swarm mode of the local engine")
            if state is not None and not state.had_gwbridge and self._remove_gwbridge():
                removed.append("network docker_gwbridge")
        self._remove_labelled(mine, removed)
        if self.dir.is_dir():
            for sub in self.dir.iterdir():
                if sub.is_dir() and sub.name.startswith("host"):
                    with contextlib.suppress(OSError):
                        for f in sub.iterdir():
                            f.unlink()
                        sub.rmdir()
        self.state_file.unlink(missing_ok=True)
        return removed

    def _remove_labelled(self, mine: dict[str, Any], removed: list[str]) -> None:
        """Remove this folder's containers, then its network and volumes, in rounds until none
        is left: a killed ``up`` may leave a create the engine is still carrying out, and a
        network is free only a moment after its last container is gone."""
        client = self.client
        deadline = time.monotonic() + START_TIMEOUT
        while True:
            containers = client.containers.list(all=True, filters=mine, ignore_removed=True)
            networks = client.networks.list(filters=mine)
            volumes = client.volumes.list(filters=mine)
            if not (containers or networks or volumes):
                return
            for c in containers:
                with contextlib.suppress(docker.errors.NotFound):
                    c.remove(force=True)
                    removed.append(f"container {c.name}")
            parts: list[tuple[str, Any]] = [("network", n) for n in networks]
            parts += [("volume", v) for v in volumes]
            for kind, obj in parts:
                with contextlib.suppress(docker.errors.NotFound):
                    try:
                        obj.remove(**({"force": True} if kind == "volume" else {}))
                        removed.append(f"{kind} {obj.name}")
                    except docker.errors.APIError as e:  # still in use: the next round
                        if time.monotonic() > deadline:
                            raise SimError(f"cannot remove {kind} {obj.name} of the simulated "
                                           f"hosts: {e.explanation or e}") from None
            if time.monotonic() > deadline:
                left = [c.name for c in containers]
                raise SimError(f"simulated hosts' containers {left} are still there after "
                               f"{START_TIMEOUT:.0f}s: remove them with 'docker rm -f'")
            time.sleep(POLL)

    def _remove_gwbridge(self) -> bool:
        """Remove the ``docker_gwbridge`` swarm mode made; the engine lets its ingress endpoint
        go a moment after ``swarm leave``: retried for a while."""
        deadline = time.monotonic() + 30
        while True:
            nets = self.client.networks.list(names=["docker_gwbridge"])
            if not nets:
                return True
            try:
                nets[0].remove()
                return True
            except docker.errors.NotFound:
                return True
            except docker.errors.APIError as e:
                if time.monotonic() > deadline:
                    self.progress(f"docker_gwbridge not removed ({e.explanation or e}): remove "
                                  "it with 'docker network rm docker_gwbridge'")
                    return False
            time.sleep(POLL)

    def _swarm_is_ours(self) -> bool:
        """Whether the local engine manages a swarm that ``up`` made (its node is labelled
        ``sim-host=manager``)."""
        with contextlib.suppress(docker.errors.APIError, KeyError):
            info = self.client.info().get("Swarm") or {}
            if info.get("LocalNodeState") != "active" or not info.get("ControlAvailable"):
                return False
            me = self.client.nodes.get(str(info.get("NodeID")))
            return bool((me.attrs["Spec"].get("Labels") or {}).get("sim-host") == "manager")
        return False
