"""A bounded load-and-soak check (issue 12): several clients store and retrieve concurrently
across a 6-node testnet (process backend, loopback only) while one node is SIGKILLed and
started again in the middle. Every store a swarm member acknowledged (its signature over the
message hash, verified) must be retrievable from that member at the end, the restarted one
included (what it acknowledged before it was killed); no request may be answered 5xx.

Bounded: it stops after ``DURATION_S`` seconds or ``MAX_STORES`` stores, whichever comes first.
The figures (rates, p50/p99 latencies, errors, lost) are printed (``-s`` shows them).

The proof timeout is raised above the kill's length so that the swarms stay as they are: each
acknowledged store is then checked at exactly the members that acknowledged it (a reshuffle
would move accounts to other swarms and answer 421 there, hiding a loss).
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import random
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import pytest

from harness.network import Testnet
from harness.state import NodeRecord
from nodes.protocol.hashing import message_hash
from nodes.protocol.keys import Identity, verify_ed25519
from nodes.protocol.swarm import swarm_for, swarm_space

pytestmark = [pytest.mark.integration, pytest.mark.slow]

CLIENTS = 6
ACCOUNTS_PER_CLIENT = 4
DURATION_S = float(os.environ.get("SOAK_DURATION_S", "24"))
MAX_STORES = 20_000
#: the load phases, as fractions of DURATION_S: kill one node, then start it again
KILL_AT, RESTART_AT = 0.3, 0.5
#: every Nth operation of an account is a retrieve from a random member of its swarm
RETRIEVE_EVERY = 3
TIMEOUT = aiohttp.ClientTimeout(total=30)


@dataclass
class Account:
    identity: Identity = field(default_factory=Identity.generate)

    @property
    def pubkey(self) -> str:
        return "05" + self.identity.x25519_hex

    def retrieve_params(self, now_ms: int) -> dict[str, Any]:
        sig = self.identity.sign(f"retrieve{now_ms}".encode())
        return {"pubkey": self.pubkey, "pubkey_ed25519": self.identity.ed25519_hex,
                "timestamp": now_ms, "signature": base64.b64encode(sig).decode()}


@dataclass
class Figures:
    store_ms: list[float] = field(default_factory=list)
    retrieve_ms: list[float] = field(default_factory=list)
    statuses: Counter[int] = field(default_factory=Counter)
    #: requests that got no HTTP answer, by node name (a killed node refuses connections)
    unanswered: Counter[str] = field(default_factory=Counter)
    #: (account index, member ed25519) -> hashes that member acknowledged
    acked: dict[tuple[int, str], set[str]] = field(default_factory=dict)
    #: acknowledgements by the node that is killed: before the kill, after the restart
    victim_acks: Counter[str] = field(default_factory=Counter)
    stores: int = 0
    elapsed_s: float = 0.0
    bad: list[str] = field(default_factory=list)


def pct(values: list[float], p: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(p / 100 * len(ordered)))]


async def rpc(session: aiohttp.ClientSession, node: NodeRecord, method: str,
              params: dict[str, Any]) -> tuple[int, Any]:
    body = json.dumps({"method": method, "params": params}).encode()
    async with session.post(f"https://{node.public_ip}:{node.storage_port}/storage_rpc/v1",
                            data=body, headers={"Content-Type": "application/json"}) as resp:
        raw = await resp.read()
        try:
            return resp.status, json.loads(raw)
        except ValueError:
            return resp.status, raw.decode(errors="replace")


def test_concurrent_load_with_a_node_killed_and_restarted_loses_nothing(testnet_factory: Any) -> None:
    net: Testnet = testnet_factory(swarms=2, swarm_size=3, proxies=False, proof_timeout=60.0)
    swarms = net.swarms()
    assert len(swarms) == 2 and all(len(m) == 3 for m in swarms.values()), swarms
    by_name = {n.name: n for n in net.nodes}
    members = {sid: [by_name[name] for name in names] for sid, names in swarms.items()}
    victim = members[min(members)][0]
    accounts = [Account() for _ in range(CLIENTS * ACCOUNTS_PER_CLIENT)]
    figures = asyncio.run(_load(net, members, victim, accounts))
    lost = asyncio.run(_lost(figures, accounts, net.nodes))
    _report(figures, victim, lost)

    assert figures.bad == [], figures.bad[:10]
    fivexx = sum(n for status, n in figures.statuses.items() if status >= 500)
    assert fivexx == 0, f"{fivexx} answers were 5xx: {dict(figures.statuses)}"
    assert set(figures.unanswered) <= {victim.name}, f"live nodes did not answer: {figures.unanswered}"
    assert figures.victim_acks["before kill"] > 0 and figures.victim_acks["after restart"] > 0, (
        f"the killed node's acknowledgements {dict(figures.victim_acks)}: the kill/restart did not "
        "happen in the middle of the load")
    assert figures.stores >= 200, f"only {figures.stores} stores in {DURATION_S}s"
    assert lost == 0, f"{lost} acknowledged stores are missing from members that acknowledged them"


async def _load(net: Testnet, members: dict[int, list[NodeRecord]], victim: NodeRecord,
                accounts: list[Account]) -> Figures:
    figures = Figures()
    swarm_ids = sorted(members)
    swarm_of = [members[swarm_for(swarm_space(a.pubkey), swarm_ids)] for a in accounts]
    phase = {"now": "before kill"}
    t0 = time.monotonic()
    deadline = t0 + DURATION_S

    async def account_loop(session: aiohttp.ClientSession, i: int) -> None:
        rng = random.Random(i)
        op = 0
        while time.monotonic() < deadline and figures.stores < MAX_STORES:
            op += 1
            node = rng.choice(swarm_of[i])
            started = time.monotonic()
            try:
                if op % RETRIEVE_EVERY == 0:
                    now_ms = int(time.time() * 1000)
                    status, body = await rpc(session, node, "retrieve",
                                             accounts[i].retrieve_params(now_ms))
                    figures.retrieve_ms.append((time.monotonic() - started) * 1000)
                else:
                    figures.stores += 1
                    status, body = await _store(session, node, accounts[i], i, rng, figures, phase,
                                                victim)
                    figures.store_ms.append((time.monotonic() - started) * 1000)
            except (aiohttp.ClientError, TimeoutError):
                figures.unanswered[node.name] += 1
                await asyncio.sleep(0.05)  # a refused connection returns at once: don't spin
                continue
            figures.statuses[status] += 1
            if status != 200:
                figures.bad.append(f"{node.name} {status}: {str(body)[:200]}")

    async def client(c: int) -> None:
        connector = aiohttp.TCPConnector(ssl=False, limit=ACCOUNTS_PER_CLIENT)
        async with aiohttp.ClientSession(timeout=TIMEOUT, connector=connector) as session:
            await asyncio.gather(*(account_loop(session, c * ACCOUNTS_PER_CLIENT + k)
                                   for k in range(ACCOUNTS_PER_CLIENT)))

    async def chaos() -> None:
        await asyncio.sleep(max(0.0, t0 + KILL_AT * DURATION_S - time.monotonic()))
        await asyncio.to_thread(net.kill, victim.name)
        phase["now"] = "while down"
        await asyncio.sleep(max(0.0, t0 + RESTART_AT * DURATION_S - time.monotonic()))
        await asyncio.to_thread(net.start, victim.name)
        phase["now"] = "restarting"
        await asyncio.to_thread(net.wait_ready, 60)
        phase["now"] = "after restart"

    await asyncio.gather(chaos(), *(client(c) for c in range(CLIENTS)))
    figures.elapsed_s = time.monotonic() - t0
    return figures


async def _store(session: aiohttp.ClientSession, node: NodeRecord, account: Account, i: int,
                 rng: random.Random, figures: Figures, phase: dict[str, str],
                 victim: NodeRecord) -> tuple[int, Any]:
    data = rng.randbytes(rng.randint(40, 400))
    now_ms = int(time.time() * 1000)
    status, body = await rpc(session, node, "store", {
        "pubkey": account.pubkey, "timestamp": now_ms, "ttl": 3_600_000,
        "data": base64.b64encode(data).decode()})
    if status != 200:
        return status, body
    h = message_hash(account.pubkey, 0, data)
    for ed, res in body.get("swarm", {}).items():
        if res.get("failed"):
            continue  # not acknowledged (e.g. the killed peer): nothing promised
        sig = base64.b64decode(res.get("signature", ""))
        if res.get("hash") != h or not verify_ed25519(bytes.fromhex(ed), h.encode(), sig):
            figures.bad.append(f"{node.name}: member {ed[:12]} acknowledged {res} for hash {h}")
            continue
        figures.acked.setdefault((i, ed), set()).add(h)
        if ed == victim.pubkey_ed25519:
            figures.victim_acks[phase["now"]] += 1
    return status, body


async def _lost(figures: Figures, accounts: list[Account], nodes: list[NodeRecord]) -> int:
    """How many acknowledged hashes the members that acknowledged them no longer return (each
    member's messages retrieved page by page)."""
    by_ed = {n.pubkey_ed25519: n for n in nodes}
    lost = 0
    connector = aiohttp.TCPConnector(ssl=False, limit=8)
    async with aiohttp.ClientSession(timeout=TIMEOUT, connector=connector) as session:
        for (i, ed), hashes in sorted(figures.acked.items()):
            node, seen, last = by_ed[ed], set(), None
            while True:
                params = accounts[i].retrieve_params(int(time.time() * 1000))
                if last:
                    params["last_hash"] = last
                status, body = await rpc(session, node, "retrieve", params)
                assert status == 200, f"final retrieve at {node.name}: {status} {str(body)[:200]}"
                seen |= {m["hash"] for m in body["messages"]}
                if not body.get("more") or not body["messages"]:
                    break
                last = body["messages"][-1]["hash"]
            missing = hashes - seen
            if missing:
                print(f"  LOST at {node.name}: {len(missing)} of account {i}, e.g. {sorted(missing)[:3]}")
            lost += len(missing)
    return lost


def _report(figures: Figures, victim: NodeRecord, lost: int) -> None:
    elapsed = figures.elapsed_s
    acks = sum(len(h) for h in figures.acked.values())
    fivexx = sum(n for status, n in figures.statuses.items() if status >= 500)
    print(f"\nsoak: {CLIENTS} clients x {ACCOUNTS_PER_CLIENT} accounts over 6 nodes, "
          f"{elapsed:.1f}s; {victim.name} SIGKILLed at {KILL_AT * DURATION_S:.0f}s, started at "
          f"{RESTART_AT * DURATION_S:.0f}s")
    print(f"  stores    {len(figures.store_ms):6d} ({len(figures.store_ms) / elapsed:5.0f}/s)  "
          f"p50 {pct(figures.store_ms, 50):5.0f} ms  p99 {pct(figures.store_ms, 99):5.0f} ms")
    print(f"  retrieves {len(figures.retrieve_ms):6d} ({len(figures.retrieve_ms) / elapsed:5.0f}/s)  "
          f"p50 {pct(figures.retrieve_ms, 50):5.0f} ms  p99 {pct(figures.retrieve_ms, 99):5.0f} ms")
    print(f"  member acknowledgements {acks} (by {victim.name}: {dict(figures.victim_acks)})")
    print(f"  statuses {dict(figures.statuses)}; 5xx {fivexx}; unanswered (node down) "
          f"{dict(figures.unanswered)}; other errors {len(figures.bad)}; lost {lost}")
