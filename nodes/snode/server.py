"""The storage node: wiring, background loops, startup/shutdown; its storage port's routes are
nodes/snode/storage_port.py."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import ssl
from typing import Any

from aiohttp import web

from nodes.common.http import start_site
from nodes.common.lean_http import LeanRoutes, lean_http_wanted
from nodes.common.limits import ServerLimits
from nodes.common.logs import JsonLogger
from nodes.common.service import StartupError
from nodes.common.tls import server_context_for
from nodes.protocol.constants import STORAGE_SERVER_VERSION
from nodes.protocol.keys import Identity

from .admin import Observations, make_admin_app
from .behaviours import Behaviours
from .clock import Clock
from .config import Config
from .fanout import SwarmFanout
from .onion_handler import OnionHandler
from .peers import PeerClient, PeerOverrides
from .ratelimit import RateLimiter
from .replication import Replicator
from .rpc import RpcHandler
from .seed_client import SeedClient, SeedError
from .server_forward import ForwardPolicy, ServerForwarder
from .storage import Storage
from .storage_port import StoragePort
from .swarm_view import SwarmView, swarm_id_str

__all__ = ["Node", "StartupError"]

#: first retry of a proof the seed did not take before the node was ever registered (doubling
#: up to ``proof_interval``): the seed may still be starting when the node is
STARTUP_RETRY_S = 0.1
#: polls of the seed a second by all nodes not in a swarm yet together (see Node.poll_delay)
UNREADY_POLLS_PER_S = 40.0
#: the shortest poll interval of a node not in a swarm yet
UNREADY_POLL_MIN_S = 0.1



class Node:
    def __init__(self, cfg: Config, log: JsonLogger | None = None) -> None:
        self.cfg = cfg
        self.identity = Identity.from_seed_hex(cfg.key_seed_hex)
        self.name = cfg.name or self.identity.ed25519_hex[:12]
        self.log = log or JsonLogger(self.name, cfg.log_file, level=cfg.log_level)
        self.clock = Clock()
        self.behaviours = Behaviours()
        self.observations = Observations()
        self.view = SwarmView(my_pubkey=self.identity.ed25519_hex)
        self.ratelimiter = RateLimiter(cfg.rate_limit)
        self.limits = ServerLimits()
        #: the storage port's lean front (made with the app: make_storage_app)
        self.lean: LeanRoutes | None = None
        self.storage: Storage | None = None
        self.peer_overrides = PeerOverrides()
        self.peers = PeerClient(self.identity, overrides=self.peer_overrides)
        self.forwarder = ServerForwarder(ForwardPolicy(cfg.forward_allow))
        self.seed = SeedClient(cfg.seed_url, self.identity, cfg.public_ip, cfg.port, cfg.lmq_port,
                               cfg.admin_port, timeout=cfg.seed_timeout, join_token=cfg.join_token)
        self.fanout = SwarmFanout(self.peers, cfg.fanout_timeout, self.log)
        self._poll_now = asyncio.Event()
        self._replicate_now = asyncio.Event()
        self._stop = asyncio.Event()
        self._tasks: list[asyncio.Task[Any]] = []
        self._runners: list[web.AppRunner] = []
        self._seed_ok: bool | None = None
        #: digest of the last node list from the seed ("": none yet, or a seed without digests)
        self._nodes_hash = ""
        self._proof_ok: bool | None = None
        self.rpc: RpcHandler
        self.onion: OnionHandler
        self.replicator: Replicator

    # --- view ----------------------------------------------------------------------------------
    def get_view(self) -> SwarmView:
        return self.view

    def set_view(self, new: SwarmView) -> None:
        old = self.view
        self.view = new
        changed = dict(old.swarms) != dict(new.swarms) or old.my_swarm_id != new.my_swarm_id
        if old.ready != new.ready:
            if new.ready:
                self.log.info("ready", swarm_id=swarm_id_str(new.my_swarm_id or 0),
                              members=list(new.swarms.get(new.my_swarm_id or 0, ())))
            else:
                self.log.warning("not_ready", reason=new.not_ready_reason())
        if changed:
            self.log.info("swarm_map_changed", height=new.height, my_swarm=(
                swarm_id_str(new.my_swarm_id) if new.my_swarm_id is not None else None),
                swarms={swarm_id_str(k): len(v) for k, v in new.swarms.items()})
            self.replicator.on_view_change(old if old.nodes else None, new)
            self._replicate_now.set()

    def request_poll(self) -> None:
        self._poll_now.set()

    # --- startup -------------------------------------------------------------------------------
    def _build_handlers(self) -> None:
        assert self.storage is not None
        self.rpc = RpcHandler(self.identity, self.storage, self.clock, self.get_view, self.fanout,
                              self.seed.json_rpc, self.behaviours, self.log)
        self.onion = OnionHandler(self.identity, self.get_view, self.rpc, self.peers, self.behaviours,
                                  self.cfg.relay_timeout, self.log, self.forwarder)
        self.replicator = Replicator(self.storage, self.clock, self.peers, self.get_view, self.log,
                                     on_stale_view=self.request_poll)

    async def start(self) -> None:
        cfg = self.cfg
        try:
            cfg.data_dir.mkdir(parents=True, exist_ok=True)
            ctx = server_context_for(cfg.data_dir / "tls", cfg.public_ip, self.identity.ed25519_hex)
        except (OSError, ssl.SSLError, ValueError) as e:
            raise StartupError(f"cannot prepare TLS certificate in {cfg.data_dir / 'tls'}: {e}") from e
        try:
            self.storage = Storage(cfg.data_dir / "storage.db")
        except Exception as e:  # noqa: BLE001 - sqlite3/OS errors: report and stop
            raise StartupError(f"cannot open database {cfg.data_dir / 'storage.db'}: {e}") from e
        self._build_handlers()
        if not cfg.admin_token:
            self.log.warning("admin_disabled", reason="no admin token (--admin-token-file or "
                             "$SESSION_TESTNET_ADMIN_TOKEN): every admin call is refused")
        app = self.make_storage_app()
        if not lean_http_wanted():  # SESSION_TESTNET_LEAN_HTTP=0: aiohttp answers every request
            self.lean = None
        await self._listen(app, cfg.ip, cfg.port, ctx, "storage", lean=self.lean)
        await self._listen(make_admin_app(self.admin_state, self.observations, self.behaviours,
                                          self.clock, self.peer_overrides, self.log,
                                          token=cfg.admin_token),
                           cfg.ip, cfg.admin_port, None, "admin")
        self.log.info("started", ip=cfg.ip, public_ip=cfg.public_ip, port=cfg.port,
                      admin_port=cfg.admin_port, pubkey_ed25519=self.identity.ed25519_hex,
                      pubkey_x25519=self.identity.x25519_hex, seed_url=cfg.seed_url,
                      messages=await self.storage.count())
        for coro in (self._proof_loop(), self._poll_loop(), self._purge_loop(), self._replication_loop()):
            self._tasks.append(asyncio.create_task(coro))

    async def _listen(self, app: web.Application, ip: str, port: int, ctx: ssl.SSLContext | None,
                      what: str, lean: LeanRoutes | None = None) -> None:
        runner = web.AppRunner(app, access_log=None, handle_signals=False, shutdown_timeout=2.0,
                               **self.limits.runner_kwargs())
        await runner.setup()
        try:
            await start_site(runner, ip, port, what=f"{what} port", ssl_context=ctx, limits=self.limits,
                             lean=lean)
        except StartupError:
            await runner.cleanup()
            raise
        self._runners.append(runner)

    async def stop(self) -> None:
        self._stop.set()
        for t in self._tasks:
            t.cancel()
        for t in self._tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await t
        for r in reversed(self._runners):
            await r.cleanup()
        await self.peers.close()
        await self.forwarder.close()
        await self.seed.close()
        if self.storage is not None:
            self.storage.close()
        self.log.info("stopped")

    # --- background loops ----------------------------------------------------------------------
    async def _sleep(self, seconds: float, event: asyncio.Event | None = None) -> None:
        waiters = [asyncio.ensure_future(self._stop.wait())]
        if event is not None:
            waiters.append(asyncio.ensure_future(event.wait()))
        try:
            await asyncio.wait(waiters, timeout=seconds, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for w in waiters:
                w.cancel()
        if event is not None:
            event.clear()

    async def _proof_loop(self) -> None:
        retry = STARTUP_RETRY_S  # until the first proof is accepted (the seed may start later)
        registered = False
        while not self._stop.is_set():
            try:
                await self.seed.send_proof()
                if self._proof_ok is not True:
                    self.log.info("proof_accepted", seed_url=self.cfg.seed_url)
                self._proof_ok = True
                if not registered:  # fetch the node list now, not a poll interval later
                    registered = True
                    self.request_poll()
            except SeedError as e:
                wait = self.cfg.proof_interval if registered else min(retry, self.cfg.proof_interval)
                retry *= 2
                if self._proof_ok is not False:
                    self.log.warning("proof_failed", error=str(e), retry_in_s=wait)
                self._proof_ok = False
                await self._sleep(wait)
                continue
            await self._sleep(self.cfg.proof_interval)

    async def poll_once(self) -> None:
        result = await self.seed.get_service_nodes(self._nodes_hash)
        height, block_hash = int(result.get("height") or 0), str(result.get("block_hash") or "")
        if "service_node_states" not in result:  # unchanged since the list of self._nodes_hash
            self.set_view(dataclasses.replace(self.view, height=height, block_hash=block_hash))
            return
        self.set_view(SwarmView.build(self.identity.ed25519_hex, result["service_node_states"],
                                      height, block_hash))
        self._nodes_hash = str(result.get("nodes_hash") or "")

    async def _poll_loop(self) -> None:
        while not self._stop.is_set():
            try:
                await self.poll_once()
                if self._seed_ok is not True:
                    self.log.info("seed_poll_ok", nodes=len(self.view.nodes), swarms=len(self.view.swarms))
                self._seed_ok = True
            except SeedError as e:
                if self._seed_ok is not False:
                    self.log.warning("seed_poll_failed", error=str(e), retry_in_s=self.cfg.poll_interval)
                self._seed_ok = False
            except Exception as e:  # noqa: BLE001 - keep polling whatever the seed sends
                self.log.error("seed_poll_error", error=repr(e))
            await self._sleep(self.poll_delay(), self._poll_now)

    def poll_delay(self) -> float:
        """Seconds until the next poll of the seed: ``poll_interval`` once the node is in a
        swarm (or while the seed has not taken its proof); registered but not in a swarm yet,
        shorter (the first block assigns swarms right after the last expected
        node registered, and readiness waits for every node to see it), scaled with the listed
        nodes so that the unready nodes of a testnet ask the seed ~UNREADY_POLLS_PER_S times
        a second together, whatever its size."""
        if self.view.ready or self._proof_ok is not True:  # in a swarm, or not registered
            return self.cfg.poll_interval
        fast = max(UNREADY_POLL_MIN_S, len(self.view.nodes) / UNREADY_POLLS_PER_S)
        return min(self.cfg.poll_interval, fast)

    async def _purge_loop(self) -> None:
        assert self.storage is not None
        while not self._stop.is_set():
            try:
                n = await self.storage.purge_expired(self.clock.now_ms())
                if n:
                    self.log.info("purged_expired", messages=n)
            except Exception as e:  # noqa: BLE001
                self.log.error("purge_failed", error=repr(e))
            await self._sleep(self.cfg.purge_interval)

    async def _replication_loop(self) -> None:
        while not self._stop.is_set():
            await self._sleep(self.cfg.poll_interval, self._replicate_now)
            if self._stop.is_set():
                break
            if self.replicator.has_work:
                try:
                    await self.replicator.sync_once()
                except Exception as e:  # noqa: BLE001
                    self.log.error("replication_failed", error=repr(e))

    # --- admin ---------------------------------------------------------------------------------
    async def admin_state(self) -> dict[str, Any]:
        v = self.view
        sid = v.my_swarm_id
        assert self.storage is not None
        return {
            "name": self.name,
            "pubkey_ed25519": self.identity.ed25519_hex,
            "pubkey_x25519": self.identity.x25519_hex,
            "public_ip": self.cfg.public_ip,
            "storage_port": self.cfg.port,
            "admin_port": self.cfg.admin_port,
            "swarm_id": sid,
            "swarm_members": list(v.swarms.get(sid, ())) if sid is not None else [],
            "ready": v.ready,
            "not_ready_reason": None if v.ready else v.not_ready_reason(),
            "height": v.height,
            "messages": await self.storage.count(),
            "clock_offset_ms": self.clock.offset_ms,
            "behaviours": self.behaviours.to_json(),
            "peer_overrides": self.peer_overrides.to_json(),
            "version": list(STORAGE_SERVER_VERSION),
            # requests this node started since it started (idle traffic: testnet bench --scale)
            "requests_sent": {"seed": self.seed.requests_sent, "peers": self.peers.requests_sent},
            # requests to peers that went in bundles (nodes/snode/fanout.py)
            "fanout": self.fanout.stats(),
            # storage-port requests answered by the lean front, and connections it handed to aiohttp
            "lean_http": ({"answered": self.lean.answered, "handed_over": self.lean.handed_over}
                          if self.lean is not None else None),
        }

    # --- storage port ----------------------------------------------------------------------------
    def make_storage_app(self) -> web.Application:
        """The storage port's aiohttp app; ``self.lean`` is then the lean front that answers its
        busiest routes before it (nodes/snode/storage_port.py)."""
        port = StoragePort(self)
        self.lean = port.lean
        return port.app
