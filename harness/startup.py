"""Starting a testnet's runtimes: what each of them runs and in which order they start.

:class:`NetworkStartUp` builds the seed's and the nodes' command lines and secrets (from each
node's implementation, :mod:`harness.nodekinds`) and starts Toxiproxy with a proxy in front of
every node, the seed and the nodes through the backend: all at once on a backend that starts
concurrently, one phase after the other otherwise. :class:`harness.network.Testnet` runs it in
``up`` and ``add_nodes``.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor, wait
from typing import Any

from harness import nodekinds, rpc
from harness.backends.base import BackendError, Reporter
from harness.handle import NetworkHandle
from harness.nodekinds.base import NodeContext, NodeKind
from harness.readiness import ReadinessCheck
from harness.state import NodeRecord
from nodes.common.auth import ENV_ADMIN_TOKEN, ENV_JOIN_TOKEN, ENV_TESTNET_SEED, derive_join_token


class NetworkStartUp(NetworkHandle):
    """The command lines of a testnet's runtimes and their start."""

    # -- command lines -----------------------------------------------------------------------
    def seed_argv(self) -> list[str]:
        t = self.topology
        st = self.state
        argv = [
            "-m", "nodes.seed",
            "--host", self.backend.listen_ip(st, "seed"),
            "--port", str(st.seed_runtime["port"]),
            "--https-port", str(st.seed_runtime.get("https_port", 0)),
            "--data-dir", self.backend.data_dir(st, "seed"),
            "--expect", str(t.node_count),
            "--min-swarm-size", str(t.effective_min_swarm_size),
            "--new-swarm-size", str(t.effective_new_swarm_size),
            "--ideal-swarm-margin", str(t.ideal_swarm_margin),
            "--block-interval", str(t.block_interval),
            "--proof-timeout", str(t.proof_timeout),
        ]
        log = self.backend.log_file(st, "seed")
        if log:
            argv += ["--log-file", log]
        argv += nodekinds.seed_args(st, self.statedir.path, self._link_ip)
        return argv

    def _link_ip(self, src: str, dst: str) -> str:
        """The IP of ``src``'s link proxy to ``dst`` (the backend's link address, port dropped)."""
        addr = self.backend.link_address(self.state, src=src, dst=dst)
        ip, sep, port = addr.rpartition(":")
        return ip if sep and port.isdigit() else addr

    def seed_env(self) -> dict[str, str]:
        """The seed's secrets, passed in its environment (never on its command line): the testnet
        seed (real nodes' keys derive from it), the admin token and the nodes' join token."""
        token = self.state.admin_token
        return {ENV_TESTNET_SEED: self.topology.seed, ENV_ADMIN_TOKEN: token,
                ENV_JOIN_TOKEN: derive_join_token(token)}

    def node_env(self, node: NodeRecord) -> dict[str, str]:
        """The node's secrets (key seed, tokens), from its implementation (NodeKind.env)."""
        return self.node_kind(node).env(self._node_context(node))

    def node_kind(self, node: NodeRecord) -> NodeKind:
        """The implementation of ``node`` (harness.nodekinds; the file server's for it)."""
        if node.kind == nodekinds.FILESERVER:
            return nodekinds.node_kind(node.kind)
        return nodekinds.group_kind(self.topology.node_group(node.name))

    def node_argv(self, node: NodeRecord) -> list[str]:
        """The node's command line, from its implementation (see NodeKind.argv)."""
        return self.node_kind(node).argv(self._node_context(node))

    def _node_context(self, node: NodeRecord) -> NodeContext:
        st = self.state
        return NodeContext(
            state=st, node=node, listen_ip=self.backend.listen_ip(st, node.name),
            data_dir=self.backend.data_dir(st, node.name),
            log_file=self.backend.log_file(st, node.name),
            key_seed_hex=self.topology.node_identity(node.name).seed_hex,
            topology=st.topology)

    # -- start-up ----------------------------------------------------------------------------
    def _start(self, report: Reporter) -> None:
        report(f"preparing {self.backend.kind} runtime for testnet {self.name!r}")
        self.backend.prepare(self.state, report)
        self._save()
        if not self.toxiproxy_url:
            self._start_seed_and_nodes(report)
            return
        pair_proxies, pair_relays = nodekinds.pair_link_proxies(self.state, self._link_ip)
        relays = [r for n in self.state.nodes for r in self.node_kind(n).udp_relays(n)]
        relays += pair_relays
        if not self.backend.concurrent_start or pair_proxies or relays:
            # real servers (pair links, UDP relays) must find their proxies in place when they
            # start: one phase after the other
            self._start_proxies(report, pair_proxies, relays)
            self._start_seed_and_nodes(report)
            return
        # Nodes of ours register at the seed directly (retrying until it answers) and reach
        # their peers only once the seed assigned swarms, which the readiness below waits for:
        # Toxiproxy with the proxies in front of the nodes (proxies may be created before their
        # upstreams listen), the seed and the nodes all start at once. Each thread sets fields
        # of its own in the state (containers); nothing saves the state until all are done.
        with ThreadPoolExecutor(max_workers=2, thread_name_prefix="testnet-up") as pool:
            started = [pool.submit(self._start_proxies, report, [], [], save=False),
                       pool.submit(self._start_seed, report, save=False)]
            try:
                self._start_nodes(report, save=False)
            finally:
                wait(started)  # never leave one running into a teardown
            for f in started:
                f.result()  # the first error, if one failed
        self._save()

    def _start_proxies(self, report: Reporter, pair_proxies: list[dict[str, Any]],
                       relays: list[dict[str, str]], save: bool = True) -> None:
        """Toxiproxy, the proxies in front of every node and, for real servers, the link proxies
        between them and the UDP relay."""
        report("starting Toxiproxy")
        self.backend.start_proxy(self.state)
        if save:
            self._save()
        rpc.run_sync(self._wait_proxy_api(30.0))
        rpc.run_sync(self._populate_proxies(self.runtime_nodes()))
        report("Toxiproxy: proxies in front of every node created")
        # real servers cannot be re-pointed at a link proxy later: each pair of them talks
        # through one of its own from the start (docs/nodes.md)
        if pair_proxies:
            report(f"creating {len(pair_proxies)} link proxies between real nodes")
            ips = sorted({p["listen"].rpartition(":")[0] for p in pair_proxies})
            self.backend.ensure_addresses(self.state, ips)
            if save:
                self._save()
            rpc.run_sync(self._post_populate(pair_proxies))
        if relays:  # Toxiproxy relays TCP only: the UDP side of proxied ports (QUIC)
            report("starting the UDP relay")
            self.backend.start_udp_relay(self.state, relays)
            if save:
                self._save()

    def _start_seed_and_nodes(self, report: Reporter) -> None:
        self._start_seed(report)
        self._start_nodes(report)

    def _start_seed(self, report: Reporter, save: bool = True) -> None:
        report("starting seed")
        self.backend.start_seed(self.state, self.seed_argv(), self.seed_env())
        if save:
            self._save()

    def _start_nodes(self, report: Reporter, save: bool = True) -> None:
        fs = " and the file server" if self.state.fileserver else ""
        report(f"starting {len(self.state.nodes)} nodes{fs}")
        self.backend.start_nodes(self.state, [(n, self.node_argv(n), self.node_env(n))
                                              for n in self.runtime_nodes()])
        if save:
            self._save()

    # -- Toxiproxy --------------------------------------------------------------------------
    async def _wait_proxy_api(self, timeout: float) -> None:
        await self._check().wait_proxy_api(timeout)

    async def _populate_proxies(self, nodes: list[NodeRecord]) -> None:
        """Create (or replace) the proxies of each node: advertised address -> node process
        (one per port the node serves: HTTPS, and OxenMQ for the real server)."""
        await self._post_populate([spec for n in nodes for spec in self.node_kind(n).proxies(n)])

    async def _post_populate(self, body: list[dict[str, Any]]) -> None:
        """``POST /populate`` of Toxiproxy: create (or replace) the proxies ``body``."""
        if not body:
            return
        url = f"{self.toxiproxy_url}/populate"
        async with rpc.new_session() as s:
            try:
                async with s.post(url, json=body) as resp:
                    if resp.status >= 300:
                        raise BackendError(f"{url}: HTTP {resp.status}: {await resp.text()}")
            except (rpc.aiohttp.ClientError, TimeoutError) as e:
                raise BackendError(f"{url}: cannot create proxies: {e!r}") from None

    def _check(self) -> ReadinessCheck:
        """The readiness of this testnet (:mod:`harness.readiness`)."""
        return ReadinessCheck(self.state, self.backend, self.node_kind, self.runtime_targets)
