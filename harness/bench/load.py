"""The load ``testnet bench`` puts on a testnet, the same for every node implementation.

- :func:`messaging`: Session messages sent one after another through 3-hop onion paths by the
  harness client (the onion round trip of a store), then polled by the recipient (delivery).
- :func:`direct_store`: unauthenticated ``store`` RPCs one after another, straight to a node.
- :func:`store_throughput` / :func:`retrieve_throughput`: direct ``store`` and signed
  ``retrieve`` RPCs, many at a time, each to a member of its account's swarm.

Every request goes to a node's advertised address (``NodeRecord.storage_url``: its Toxiproxy
proxy when the testnet has proxies), exactly as a client reaches it.
"""

from __future__ import annotations

import asyncio
import base64
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import aiohttp

from harness import rpc
from harness.bench.figures import Stats, latency_summary, throughput
from harness.client.snode import Snode, parse_swarm_body
from harness.network import Testnet
from nodes.protocol.keys import Identity
from nodes.protocol.signing import retrieve_message, sign_request

#: per request; generous, since six jobs may share two cores
REQUEST_TIMEOUT = aiohttp.ClientTimeout(total=30)
#: how long the recipient polls for the last messages
DELIVERY_WAIT_S = 60.0


@dataclass(frozen=True)
class Load:
    """How much of each load one testnet gets (the same for both testnets of a comparison)."""

    messages: int = 30        #: sequential onion stores (and sequential direct stores)
    stores: int = 200         #: direct stores for the throughput figure
    retrieves: int = 200      #: signed retrieves for the throughput figure
    concurrency: int = 16     #: requests in flight at once (and accounts the load spreads over)

    def to_dict(self) -> dict[str, int]:
        return {"messages": self.messages, "stores": self.stores, "retrieves": self.retrieves,
                "concurrency": self.concurrency}


async def messaging(net: Testnet, messages: int) -> dict[str, Any]:
    """``{"send": …, "delivery": …}``: one message is sent first and not counted (it builds the
    sender's onion paths), then ``messages`` are timed one after another."""
    from harness.client import Account, SessionClient

    send = Stats()
    delivery: list[float] = []
    started: dict[str, float] = {}
    async with (SessionClient(net.seed_url, Account.generate()) as alice,
                SessionClient(net.seed_url, Account.generate()) as bob):
        await alice.bootstrap()
        await bob.bootstrap()
        await alice.send(bob.session_id, "bench warm-up")
        t_all = time.perf_counter()
        for i in range(messages):
            body = f"bench {i}"
            started[body] = t0 = time.perf_counter()
            await alice.send(bob.session_id, body)
            send.samples_ms.append((time.perf_counter() - t0) * 1000)
        sent_s = time.perf_counter() - t_all
        got: set[str] = set()
        deadline = time.monotonic() + DELIVERY_WAIT_S
        while len(got) < messages and time.monotonic() < deadline:
            for m in await bob.receive():
                if m.body in started and m.body not in got:
                    got.add(m.body)
                    delivery.append((time.perf_counter() - started[m.body]) * 1000)
    return {"send": {**send.summary(), "msgs_per_s": round(messages / sent_s, 1)},
            "delivery": {**latency_summary(delivery), "delivered": len(got), "sent": messages}}


async def swarm_of(session: aiohttp.ClientSession, net: Testnet, session_id: str) -> list[Snode]:
    """The members of ``session_id``'s swarm, as the testnet's first node answers ``get_swarm``."""
    node = net.nodes[0]
    status, body = await rpc.storage_rpc(session, node.storage_url, "get_swarm", {"pubkey": session_id})
    _, members = parse_swarm_body(body) if status == 200 else (None, [])
    if not members:
        raise RuntimeError(f"get_swarm for {session_id} at {node.name} ({node.storage_url}) answered "
                           f"HTTP {status}: {body!r}; see 'testnet logs {node.name}'")
    return members


def _store_params(ident: Identity, i: int) -> dict[str, Any]:
    return {"pubkey": ident.session_id, "ttl": 600_000, "timestamp": int(time.time() * 1000),
            "namespace": 0, "data": base64.b64encode(f"bench store {i}".encode()).decode()}


async def direct_store(net: Testnet, count: int) -> dict[str, Any]:
    """Latency of ``count`` stores one after another to a member of one account's swarm."""
    ident = Identity.generate()
    samples = []
    async with rpc.new_session(REQUEST_TIMEOUT) as s:
        member = (await swarm_of(s, net, ident.session_id))[0]
        for i in range(count):
            t0 = time.perf_counter()
            status, body = await rpc.storage_rpc(s, member.url, "store", _store_params(ident, i))
            samples.append((time.perf_counter() - t0) * 1000)
            if status != 200:
                raise RuntimeError(f"direct store to {member} failed: HTTP {status}: {body!r}")
    return latency_summary(samples)


@dataclass
class LoadAccount:
    """An account the throughput load stores for: its swarm and how many stores succeeded."""

    ident: Identity
    members: list[Snode]
    stored: int = 0


async def _accounts(s: aiohttp.ClientSession, net: Testnet, count: int) -> list[LoadAccount]:
    idents = [Identity.generate() for _ in range(count)]
    swarms = await asyncio.gather(*(swarm_of(s, net, i.session_id) for i in idents))
    return [LoadAccount(i, m) for i, m in zip(idents, swarms, strict=True)]


async def _batch(total: int, concurrency: int,
                 request: Callable[[int], Awaitable[str | None]]) -> dict[str, Any]:
    """Run ``request(0..total-1)``, ``concurrency`` at a time; each returns None on success or
    what failed. Returns :func:`~harness.bench.figures.throughput` figures."""
    queue: asyncio.Queue[int] = asyncio.Queue()
    for i in range(total):
        queue.put_nowait(i)
    samples: list[float] = []
    errors: Counter[str] = Counter()

    async def worker() -> None:
        while not queue.empty():
            i = queue.get_nowait()
            t0 = time.perf_counter()
            try:
                error = await request(i)
            except rpc.RpcError as e:  # "URL: METHOD failed: ClientOSError(…)": keep the kind
                error = str(e).rsplit("failed: ", 1)[-1].split("(", 1)[0][:60]
            if error is None:
                samples.append((time.perf_counter() - t0) * 1000)
            else:
                errors[error] += 1

    t_all = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(min(concurrency, total))))
    wall = time.perf_counter() - t_all
    return throughput(total, len(samples), errors, wall, concurrency, samples)


async def store_throughput(net: Testnet, load: Load) -> tuple[dict[str, Any], list[LoadAccount]]:
    """``load.stores`` direct stores, ``load.concurrency`` at a time, spread over as many
    accounts (request i: account i mod n, to member i of its swarm in turn). Returns the
    figures and the accounts (with how many messages each holds) for the retrieves."""
    connector = aiohttp.TCPConnector(ssl=False, limit=0)
    async with aiohttp.ClientSession(timeout=REQUEST_TIMEOUT, connector=connector) as s:
        accounts = await _accounts(s, net, load.concurrency)

        async def store(i: int) -> str | None:
            acct = accounts[i % len(accounts)]
            member = acct.members[(i // len(accounts)) % len(acct.members)]
            status, body = await rpc.storage_rpc(s, member.url, "store", _store_params(acct.ident, i))
            if status != 200:
                return f"HTTP {status}"
            acct.stored += 1
            return None

        return await _batch(load.stores, load.concurrency, store), accounts


async def retrieve_throughput(net: Testnet, load: Load, accounts: list[LoadAccount]) -> dict[str, Any]:
    """``load.retrieves`` signed retrieves (namespace 0, from the start), ``load.concurrency``
    at a time, each for one of the stored accounts at a member of its swarm. A retrieve counts
    as ok when it returns every message stored for the account (``incomplete`` otherwise)."""
    connector = aiohttp.TCPConnector(ssl=False, limit=0)
    async with aiohttp.ClientSession(timeout=REQUEST_TIMEOUT, connector=connector) as s:

        async def retrieve(i: int) -> str | None:
            acct = accounts[i % len(accounts)]
            member = acct.members[(i // len(accounts) + 1) % len(acct.members)]
            ts = int(time.time() * 1000)
            params = {"pubkey": acct.ident.session_id, "namespace": 0, "last_hash": "", "timestamp": ts,
                      "signature": sign_request(acct.ident, retrieve_message(0, ts)),
                      "pubkey_ed25519": acct.ident.ed25519_hex}
            status, body = await rpc.storage_rpc(s, member.url, "retrieve", params)
            if status != 200:
                return f"HTTP {status}"
            msgs = body.get("messages") if isinstance(body, dict) else None
            if not isinstance(msgs, list) or len(msgs) < acct.stored:
                return "incomplete"
            return None

        return await _batch(load.retrieves, load.concurrency, retrieve)
