"""Docker Swarm mode: every node of a testnet is a swarm *service* on the testnet's attachable
overlay network, so a swarm of several hosts spreads the nodes over them (docs/DESIGN.md,
"Swarm layout"; docs/backends.md for when to pick it and how to run it over your own cluster).

What is a service and what is not, and why:

- node ``sn<i>`` (and the file server): service ``st-<name>-<node>`` (one replica, restart
  policy ``none``: a stopped or killed node stays down until the harness starts it again,
  ``endpoint_mode=dnsrr``: no virtual IP), placed by the group's ``placement`` (a host label)
  and, once it ran, pinned to the host that holds its data volume. Swarm gives a task an
  address from ``10.X.255.0/25`` that changes when the task is replaced, so a node listens on
  ``0.0.0.0``, its record's ``bind_ip`` is its current task's address and its Toxiproxy proxy is
  re-pointed there after each (re)start (toxics stay).
- the seed, the proxy host and Toxiproxy: *standalone* containers attached to the same
  overlay at the docker backend's fixed addresses (``10.X.0.2``, ``10.X.0.1``): every node
  advertises its proxy address ``10.X.i.1`` and needs the seed's URL before it starts, and
  swarm services cannot have fixed addresses (attachable overlays do give standalone
  containers the address they ask for). They run on the harness's host, which is a manager.
- the host's way in: the proxy host is also on a local internal bridge ``st-<name>-gw``
  (device ``st<X>gw``); a short-lived ``network_mode=host`` container adds the host address
  ``10.X.255.253/32`` and the route ``10.X.0.0/16 via <proxy host>`` on that bridge; the proxy
  host forwards, and answers ARP for ``10.X.255.253`` on the overlay (proxy ARP), so replies
  come back the same way. Route and address live on the bridge device: removing the network
  (``down``, the stale sweep) removes them, nothing is left on the host after a crash.

Swarm mode is the user's choice: the harness never runs ``docker swarm init`` (it is
engine-wide state other users of the engine see); ``up`` fails with what to run instead.
"""

from __future__ import annotations

import contextlib
import time
from typing import Any

import docker.errors  # binds `docker` too (a plain `import docker` is misfiled next to docker/)
import docker.types
import requests
import requests.exceptions
from docker.client import DockerClient

from harness import nodekinds
from harness.backends.base import BackendError, Reporter
from harness.backends.docker import DATA_DIR, DockerBackend, _image
from harness.backends.docker_engine import (
    LABEL_BACKEND,
    LABEL_SWARM_STATE,
    LABEL_TARGET,
    connect,
    explain,
)
from harness.backends.docker_gc import sweep
from harness.backends.swarm_engines import ENV as ENGINES_ENV
from harness.backends.swarm_engines import HostEngines, engines_from_env
from harness.backends.swarm_gc import POLL, TASK_STOP_TIMEOUT, remove_swarm_resources, run_in_namespace
from harness.backends.swarm_images import load_image
from harness.backends.swarm_net import (
    bridge_name,
    host_route_script,
    pin_constraint,
    placement_constraints,
    proxyhost_route,
    task_address,
    task_route_script,
)
from harness.state import NetworkState, NodeRecord, StateError
from harness.topology import Topology

KIND = "swarm"
#: how long a node's task may take to be scheduled and start (image on the host, volume)
TASK_START_TIMEOUT = 90.0
#: task states after which the task will not run (restart policy "none")
TASK_ENDED = {"complete", "failed", "shutdown", "rejected", "orphaned", "remove"}


def swarm_manager(client: DockerClient) -> dict[str, Any]:
    """The engine's swarm info; raises with what to do unless the engine is a swarm manager."""
    try:
        info = client.info().get("Swarm") or {}
    except (docker.errors.DockerException, requests.exceptions.RequestException) as e:
        raise BackendError(f"cannot ask the Docker engine about swarm mode: {explain(e)}") from None
    if info.get("LocalNodeState") != "active":
        raise BackendError(
            "the swarm backend needs the Docker engine in swarm mode and it is not "
            f"(state {info.get('LocalNodeState') or 'unknown'!r}): run 'docker swarm init "
            "--advertise-addr 127.0.0.1' for a single-host swarm (undo with 'docker swarm leave "
            "--force'), or point DOCKER_HOST at a manager of your swarm; or use --backend docker")
    if not info.get("ControlAvailable"):
        raise BackendError("the swarm backend must talk to a swarm manager and this engine is a "
                           "worker: point DOCKER_HOST at a manager of the swarm")
    return dict(info)


class SwarmBackend(DockerBackend):
    kind = KIND
    state_label = LABEL_SWARM_STATE  # see docker_engine.LABEL_SWARM_STATE
    #: a node's task gets its address only when it runs, and its Toxiproxy proxy is pointed
    #: there then (:meth:`_await_task`): Toxiproxy must be up before the first node starts
    concurrent_start = False

    # -- names and labels --------------------------------------------------------------------
    def labels(self, state: NetworkState, role: str | None = None,
               target: str | None = None) -> dict[str, str]:
        return {**super().labels(state, role, target), LABEL_BACKEND: KIND}

    def gateway_name(self, state: NetworkState) -> str:
        return f"{self.network_name(state)}-gw"

    def service_name(self, state: NetworkState, target: str) -> str:
        return self.container_name(state, target)

    # -- placement ---------------------------------------------------------------------------
    def plan(self, topology: Topology, admin_token: str) -> NetworkState:
        swarm_manager(self.client)
        hosts = self._ready_hosts()
        manager_host = self.manager_host()
        engines = engines_from_env()
        missing = sorted(set(hosts) - {manager_host} - set(engines))
        if missing:
            example = ",".join(f"{h}=URL" for h in missing)
            raise BackendError(
                f"the swarm has {len(hosts)} ready hosts ({', '.join(sorted(hosts))}) and nodes "
                f"may run on any of them, but the engines of {', '.join(missing)} are not named: "
                f"set {ENGINES_ENV}={example} (URL: unix:///…/docker.sock, tcp://…, ssh://…; "
                "docs/backends.md, 'Several hosts'), or drain those hosts ('docker node update "
                "--availability drain HOST')")
        if not topology.proxies:
            raise BackendError("the swarm backend needs proxies (nodes advertise their proxy's "
                               "fixed address; swarm tasks have none): drop --no-proxies")
        for group in topology.nodes:
            if group.kind == nodekinds.OXEN_STORAGE:
                raise BackendError("the swarm backend runs python and image nodes; real "
                                   "storage servers (oxen-storage) need --backend docker")
        state = super().plan(topology, admin_token)
        state.host_engines = {h: engines[h] for h in sorted(hosts) if h != manager_host}
        return state

    def manager_host(self) -> str:
        """The host name of the manager this backend talks to (as ``docker node ls`` shows)."""
        cached: str | None = getattr(self, "_manager_host", None)
        if cached is None:
            node_id = str(swarm_manager(self.client).get("NodeID", ""))
            try:
                cached = str(self.client.nodes.get(node_id).attrs["Description"]["Hostname"])
            except (docker.errors.DockerException, KeyError) as e:
                raise BackendError(f"cannot look up the swarm manager's host: {e}") from None
            self._manager_host = cached
        return cached

    def engines(self, state: NetworkState) -> HostEngines:
        """The engines of the testnet's hosts (the manager's and those named at ``up``)."""
        cached: HostEngines | None = getattr(self, "_engines", None)
        if cached is None or cached.urls != state.host_engines:
            cached = HostEngines(self.client, self.manager_host(), state.host_engines)
            self._engines = cached
        return cached

    def _ready_hosts(self) -> list[str]:
        try:
            nodes = self.client.nodes.list()
        except docker.errors.APIError as e:
            raise BackendError(f"cannot list the swarm's hosts: {explain(e)}") from None
        return [str(n.attrs.get("Description", {}).get("Hostname", n.id)) for n in nodes
                if n.attrs.get("Status", {}).get("State") == "ready"
                and n.attrs.get("Spec", {}).get("Availability") == "active"]

    @staticmethod
    def assign_addresses(state: NetworkState) -> None:
        DockerBackend.assign_addresses(state)
        # until its task runs a node is known by its service's name (Docker DNS on the overlay,
        # which the proxy host uses): Toxiproxy's proxies are made before the nodes start
        for node in [*state.nodes, *([state.fileserver] if state.fileserver else [])]:
            node.bind_ip = f"st-{state.name}-{node.name}"

    def listen_ip(self, state: NetworkState, target: str) -> str:
        if target == "seed":
            return super().listen_ip(state, target)
        return "0.0.0.0"  # a task's address is the swarm's choice (module docstring)

    # -- lifecycle ---------------------------------------------------------------------------
    def prepare(self, state: NetworkState, report: Reporter) -> None:
        swarm_manager(self.client)
        super().prepare(state, report)  # images, the overlay (_network_create), volumes
        self._distribute_images(state, report)
        x = state.net_index
        try:
            self.client.networks.create(
                self.gateway_name(state), driver="bridge", internal=True,
                options={"com.docker.network.bridge.name": bridge_name(x)},
                labels=self.labels(state, role="gateway"), check_duplicate=True)
        except docker.errors.APIError as e:
            raise BackendError(f"cannot create the gateway network {self.gateway_name(state)}: "
                               f"{explain(e)}") from None
        report(f"overlay {self.network_name(state)}: 10.{x}.0.0/16 (host route via "
               f"{self.gateway_name(state)})")

    def _distribute_images(self, state: NetworkState, report: Reporter) -> None:
        """Put every node image on every other host (no registry: through the engine API)."""
        images = {_image(state), *(str(n.runtime["image"]) for n in state.nodes
                                   if n.runtime.get("image"))}
        for host, engine in self.engines(state).others():
            for tag in sorted(images):
                load_image(self.client, engine, tag, host, report)

    def _network_create(self, state: NetworkState, pool: docker.types.IPAMPool) -> None:
        # attachable: the standalone seed and proxy host join it at fixed addresses
        self.client.networks.create(self.network_name(state), driver="overlay", attachable=True,
                                    internal=True, scope="swarm",
                                    ipam=docker.types.IPAMConfig(pool_configs=[pool]),
                                    labels=self.labels(state, role="network"),
                                    check_duplicate=True)

    def _start_proxyhost(self, state: NetworkState) -> str:
        x = state.net_index
        name = self._run(state, "proxyhost", _image(state), ["sleep", "infinity"],
                         role="proxyhost", ip=f"10.{x}.0.1", volume=False, user="0",
                         cap_add=["NET_ADMIN"],
                         sysctls={"net.ipv4.ip_forward": "1", "net.ipv4.conf.all.proxy_arp": "1"})
        try:
            gw = self.client.networks.get(self.gateway_name(state))
            gw.connect(name)
            gw.reload()
            container = self.client.containers.get(name)
            via = container.attrs["NetworkSettings"]["Networks"][gw.name]["IPAddress"]
            gateway = gw.attrs["IPAM"]["Config"][0]["Gateway"]
        except (docker.errors.DockerException, KeyError, IndexError) as e:
            raise BackendError(f"cannot attach {name} to {self.gateway_name(state)}: {e}") from None
        res = container.exec_run(proxyhost_route(x, gateway), user="0")
        if res.exit_code != 0:
            out = res.output if isinstance(res.output, bytes) else b"".join(res.output)
            raise BackendError(f"cannot add the route to the host in {name}: "
                               f"{out.decode(errors='replace').strip()}")
        self._host_route(state, via)
        return name

    def _host_route(self, state: NetworkState, via: str) -> None:
        """Add the host's address and route to the overlay on the gateway bridge, from a
        short-lived container in the host's network namespace."""
        script = " && ".join(host_route_script(state.net_index, bridge_name(state.net_index), via))
        with contextlib.suppress(docker.errors.NotFound):  # left by a crash: ours, by name+label
            old = self.client.containers.get(self.container_name(state, "hostroute"))
            if (old.labels or {}).get(self.state_label) == str(self.statedir.path):
                old.remove(force=True)
        run_in_namespace(self.client, _image(state), script, network_mode="host",
                         labels=self.labels(state, role="hostroute"),
                         name=self.container_name(state, "hostroute"),
                         what=f"route the host to testnet {state.name!r} ({script})")

    # -- nodes as services -------------------------------------------------------------------
    def _service(self, state: NetworkState, target: str) -> Any | None:
        try:
            return self.client.services.get(self.service_name(state, target))
        except docker.errors.NotFound:
            return None
        except docker.errors.APIError as e:
            if e.status_code == 503:  # the engine left the swarm: no service exists any more
                return None
            raise BackendError(f"cannot look up service {self.service_name(state, target)}: "
                               f"{explain(e)}") from None

    def _tasks(self, svc: Any) -> list[dict[str, Any]]:
        tasks = [t for t in svc.tasks() if t.get("DesiredState") == "running"]
        return sorted(tasks, key=lambda t: str(t.get("CreatedAt", "")))

    def _container(self, state: NetworkState, target: str) -> Any | None:
        """The seed's/proxies' container, or node ``target``'s current task container on this
        engine (the newest one: after a restart the old task's container may linger)."""
        if self._service(state, target) is None:
            return super()._container(state, target)
        try:
            host = state.node(target).runtime.get("host")
        except StateError:
            host = None
        engine = self.engines(state).require(host, f"node {target}")
        filters = self._filters(state)
        filters["label"] = [*filters["label"], f"{LABEL_TARGET}={target}"]
        found = engine.containers.list(all=True, filters=filters, ignore_removed=True)
        found.sort(key=lambda c: str(c.attrs.get("Created", "")))
        return found[-1] if found else None

    def start_node(self, state: NetworkState, node: NodeRecord, argv: list[str],
                   env: dict[str, str]) -> None:
        kind = nodekinds.kind_class(node.kind)
        command = ["python", *argv] if kind.runs_python else list(argv)
        name = self.service_name(state, node.name)
        svc = self._service(state, node.name)
        if svc is not None and any(t["Status"]["State"] == "running" for t in self._tasks(svc)):
            raise BackendError(f"node {node.name} of testnet {state.name!r} is already running "
                               f"(service {name})")
        try:
            if svc is None:
                group = Topology.from_dict(state.topology).node_group(node.name) \
                    if node.kind != nodekinds.FILESERVER else None
                self.client.services.create(
                    self._image_id(node.runtime.get("image") or _image(state)),
                    args=command or None,
                    name=name, hostname=node.name, init=True,
                    env=[f"{k}={v}" for k, v in env.items()],
                    # labelled: another host makes the volume itself, and cleaning finds it
                    mounts=[docker.types.Mount(target=DATA_DIR, type="volume",
                                               source=self._ensure_volume(state, node.name),
                                               labels=self.labels(state, role="data",
                                                                  target=node.name))],
                    networks=[self.network_name(state)],
                    labels=self.labels(state, role="node", target=node.name),
                    container_labels=self.labels(state, role="node", target=node.name),
                    cap_add=list(kind.container_caps) or None,
                    constraints=placement_constraints(group),
                    restart_policy=docker.types.RestartPolicy(condition="none"),
                    endpoint_spec=docker.types.EndpointSpec(mode="dnsrr"),
                    mode=docker.types.ServiceMode("replicated", replicas=1),
                    stop_grace_period=10 * 10**9)
            else:  # a restart: a new task on the host that holds the node's volume
                constraints = list(svc.attrs["Spec"]["TaskTemplate"].get("Placement", {})
                                   .get("Constraints") or [])
                pin = node.runtime.get("swarm_node")
                if pin and pin_constraint(pin) not in constraints:
                    constraints.append(pin_constraint(pin))
                svc.update(args=command or None, env=[f"{k}={v}" for k, v in env.items()],
                           constraints=constraints, force_update=True,
                           mode=docker.types.ServiceMode("replicated", replicas=1))
        except docker.errors.APIError as e:
            raise BackendError(f"cannot start service {name} for node {node.name} of testnet "
                               f"{state.name!r}: {explain(e)}") from None
        self._await_task(state, node)
        node.runtime.pop("paused", None)

    def _image_id(self, tag: str) -> str:
        """The image's id: a service given an id runs the image its host has; given a tag, each
        host first tries to pull it from a registry (slow with none, and traffic out)."""
        try:
            return str(self.client.images.get(tag).id)
        except docker.errors.ImageNotFound:
            raise BackendError(f"image {tag} is not on the manager's engine: run 'testnet "
                               "images build' there first") from None

    def _await_task(self, state: NetworkState, node: NodeRecord) -> None:
        """Wait until the node's task runs; record where (host, container, address) and point
        its proxy at the address."""
        name = self.service_name(state, node.name)
        net_id = str(self.client.networks.get(self.network_name(state)).id)
        deadline = time.monotonic() + TASK_START_TIMEOUT
        last = "no task yet"
        while time.monotonic() < deadline:
            svc = self._service(state, node.name)
            tasks = self._tasks(svc) if svc is not None else []
            task = tasks[-1] if tasks else None
            if task is not None:
                status = task.get("Status") or {}
                last = f"{status.get('State')}: {status.get('Err') or status.get('Message')}"
                if status.get("State") in TASK_ENDED:
                    raise BackendError(f"node {node.name}'s task of service {name} did not start "
                                       f"({last}); see 'docker service ps {name} --no-trunc'")
                ip = task_address(task, net_id)
                if status.get("State") == "running" and ip:
                    self._record_task(node, task, ip)
                    if node.runtime.get("host") != self.manager_host():
                        self._route_task(state, node)
                    self._repoint_proxy(state, node)
                    return
            time.sleep(POLL)
        raise BackendError(f"node {node.name}'s task of service {name} is not running after "
                           f"{TASK_START_TIMEOUT:.0f}s (last: {last}); see 'docker service ps "
                           f"{name} --no-trunc'")

    def _record_task(self, node: NodeRecord, task: dict[str, Any], ip: str) -> None:
        node_id = str(task.get("NodeID", ""))
        try:
            host = self.client.nodes.get(node_id).attrs["Description"]["Hostname"]
        except (docker.errors.DockerException, KeyError):
            host = node_id
        cid = ((task.get("Status") or {}).get("ContainerStatus") or {}).get("ContainerID", "")
        node.runtime.update(service=task.get("ServiceID", ""), task=task.get("ID", ""),
                            container=cid[:12], host=host, swarm_node=node_id)
        node.bind_ip = ip

    def _route_task(self, state: NetworkState, node: NodeRecord) -> None:
        """Route the advertised addresses through the proxy host inside the task of ``node``,
        which runs on another host than the proxy host (``swarm_net.task_route_script``), from
        a short-lived container in the task's network namespace on the task's host."""
        host = node.runtime.get("host")
        cid = node.runtime.get("container")
        run_in_namespace(self.engines(state).require(host, f"node {node.name}"), _image(state),
                         task_route_script(state.net_index), network_mode=f"container:{cid}",
                         labels=self.labels(state, role="taskroute", target=node.name),
                         what=f"route node {node.name}'s task (container {cid} on host {host}) "
                              "through the proxy host")

    def _repoint_proxy(self, state: NetworkState, node: NodeRecord) -> None:
        """Point the node's Toxiproxy proxy at its task's address (its toxics stay)."""
        if not (node.proxy and state.toxiproxy_url):
            return
        url = f"{state.toxiproxy_url}/proxies/{node.proxy}"
        try:
            r = requests.post(url, json={"upstream": f"{node.bind_ip}:{node.storage_port}"},
                              timeout=10)
        except requests.exceptions.RequestException as e:
            raise BackendError(f"cannot point proxy {node.proxy} at {node.name}: {e}") from None
        if r.status_code >= 300:
            raise BackendError(f"{url}: HTTP {r.status_code}: {r.text.strip()}")

    def stop_node(self, state: NetworkState, node: NodeRecord, *, kill: bool = False) -> None:
        svc = self._service(state, node.name)
        if svc is None:  # the seed (stop_seed): a standalone container, as on docker
            super().stop_node(state, node, kill=kill)
            return
        if kill:  # SIGKILL the task's container; restart policy "none": it stays down
            c = self._container(state, node.name)
            if c is None:
                raise BackendError(f"node {node.name} has no task container on host "
                                   f"{node.runtime.get('host')!r}: it is not running")
            with contextlib.suppress(docker.errors.NotFound, docker.errors.APIError):
                if c.attrs["State"].get("Paused"):
                    c.unpause()
                c.kill()
        elif (c := self._container(state, node.name)) is not None and c.attrs["State"].get("Paused"):
            c.unpause()
        try:  # no replica: SIGTERM, then SIGKILL after the grace period
            svc.update(mode=docker.types.ServiceMode("replicated", replicas=0))
        except docker.errors.APIError as e:
            raise BackendError(f"cannot stop service {svc.name}: {explain(e)}") from None
        # until the container is gone and the manager no longer lists a running task (the
        # task's state reaches the manager a moment after its container died)
        deadline = time.monotonic() + TASK_STOP_TIMEOUT
        while time.monotonic() < deadline and (self.is_running(state, node.name)
                                               or self._task_running(svc)):
            time.sleep(POLL)
        node.runtime.pop("paused", None)

    @staticmethod
    def _task_running(svc: Any) -> bool:
        """Whether the manager lists a task of ``svc`` as running."""
        with contextlib.suppress(docker.errors.NotFound):
            return any(t["Status"]["State"] == "running" for t in svc.tasks())
        return False

    def _running_container(self, state: NetworkState, node: NodeRecord) -> Any:
        return super()._running_container(state, node)

    def destroy(self, state: NetworkState) -> None:
        others: list[tuple[str, DockerClient]] = []
        unreachable: BackendError | None = None
        for host in sorted(state.host_engines):
            try:
                engine = self.engines(state).client(host)
            except BackendError as e:  # clean the rest, then say which host keeps something
                unreachable = unreachable or e
                continue
            if engine is not None:
                others.append((host, engine))
        remove_swarm_resources(self.client, self._filters(state), others)
        if unreachable is not None:
            raise unreachable

    # -- garbage collection ------------------------------------------------------------------
    @classmethod
    def sweep_stale(cls, report: Reporter) -> list[str]:
        try:
            client = connect()
        except BackendError as e:
            report(f"swarm: skipped ({e})")
            return []
        engines = HostEngines(client, "", engines_from_env())  # the hosts named now, if any

        def remove(c: DockerClient, filters: dict[str, Any]) -> None:
            remove_swarm_resources(c, filters, engines.others())

        try:
            return sweep(client, report, kind=KIND, remove=remove, state_label=LABEL_SWARM_STATE)
        finally:
            engines.close()
            client.close()
