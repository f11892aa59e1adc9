"""A storage node's start-up against the seed: proofs retried soon while the seed is not up
yet, the node list fetched right after the seed took the first proof, quick polls until the node
is in a swarm. A fake seed client records the order of events (no timing asserted)."""

from __future__ import annotations

import asyncio
import io
from pathlib import Path
from typing import Any

import pytest

from nodes.common.logs import JsonLogger
from nodes.snode.config import Config
from nodes.snode.seed_client import SeedError
from nodes.snode.server import UNREADY_POLL_MIN_S, UNREADY_POLLS_PER_S, Node
from nodes.snode.swarm_view import SwarmView
from nodes.snode.testing import node_identity, seed_entry

pytestmark = pytest.mark.unit

#: long enough that only the start-up paths under test (never a full interval) can act
INTERVAL_S = 3600.0


class FakeSeed:
    """Refuses the first ``down`` proofs (the seed is not listening yet), then takes them; lists
    ``entries``. ``events`` is what the node did, in order."""

    def __init__(self, node: Node, down: int, entries: list[dict[str, Any]]) -> None:
        self.node, self.down, self.entries = node, down, entries
        self.events: list[str] = []
        self.polled_after_proof = asyncio.Event()

    async def send_proof(self) -> dict[str, Any]:
        if self.down > 0:
            self.down -= 1
            self.events.append("proof refused")
            raise SeedError("seed unreachable: connection refused")
        self.events.append("proof accepted")
        return {"height": 1, "registered": True}

    async def get_service_nodes(self, *args: Any, **kwargs: Any) -> dict[str, Any]:
        self.events.append("poll")
        if "proof accepted" in self.events:
            self.polled_after_proof.set()
        return {"service_node_states": self.entries, "height": 1, "block_hash": ""}

    async def close(self) -> None:
        pass


def make_node(tmp_path: Path, name: str = "sn01") -> Node:
    ident = node_identity(name)
    cfg = Config(ip="127.0.0.1", public_ip="127.0.0.1", port=1, admin_port=1, lmq_port=22020,
                 seed_url="http://127.0.0.1:9", data_dir=tmp_path / name, key_seed_hex=ident.seed_hex,
                 proof_interval=INTERVAL_S, poll_interval=INTERVAL_S)
    return Node(cfg, log=JsonLogger(name, stream=io.StringIO()))


async def test_node_fetches_the_list_right_after_registering(tmp_path: Path) -> None:
    node = make_node(tmp_path)
    me = seed_entry(node.identity, "127.0.0.1", 1, 0)
    seed = FakeSeed(node, down=2, entries=[me])
    node.seed = seed  # type: ignore[assignment]
    node.replicator = type("R", (), {"on_view_change": lambda *a: None})()
    tasks = [asyncio.create_task(node._proof_loop()), asyncio.create_task(node._poll_loop())]
    try:
        # refused proofs are retried without waiting a proof interval; the accepted one is
        # followed by a poll without waiting a poll interval (both are an hour here)
        await asyncio.wait_for(seed.polled_after_proof.wait(), timeout=30)
    finally:
        node._stop.set()
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
    first_ok = seed.events.index("proof accepted")
    assert seed.events[:first_ok].count("proof refused") == 2
    assert "poll" in seed.events[first_ok + 1:]
    assert node.view.ready


def test_poll_delay_is_short_only_while_registered_and_not_in_a_swarm(tmp_path: Path) -> None:
    node = make_node(tmp_path)
    others = [seed_entry(node_identity(f"sn{i:02d}"), "127.0.0.1", 1, 0) for i in range(2, 8)]
    me_unassigned = seed_entry(node.identity, "127.0.0.1", 1, 0xFFFFFFFFFFFFFFFF)
    node.view = SwarmView.build(node.identity.ed25519_hex, [me_unassigned, *others])
    assert not node.view.ready
    # the seed has not taken a proof: no reason to ask it more often
    assert node.poll_delay() == INTERVAL_S
    node._proof_ok = True
    assert node.poll_delay() == max(UNREADY_POLL_MIN_S, 7 / UNREADY_POLLS_PER_S) < INTERVAL_S
    # many nodes: the unready ones together still poll ~UNREADY_POLLS_PER_S a second
    many = [seed_entry(node_identity(f"sn{i:03d}"), "127.0.0.1", 1, 0) for i in range(2, 402)]
    node.view = SwarmView.build(node.identity.ed25519_hex, [me_unassigned, *many])
    assert node.poll_delay() == pytest.approx(401 / UNREADY_POLLS_PER_S)
    # in a swarm: the configured interval
    node.view = SwarmView.build(node.identity.ed25519_hex,
                                [seed_entry(node.identity, "127.0.0.1", 1, 0), *others])
    assert node.view.ready
    assert node.poll_delay() == INTERVAL_S
