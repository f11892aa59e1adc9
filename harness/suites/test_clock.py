"""Clock scenarios: nodes and clients whose clocks disagree by minutes still agree on time the
way production clients do (every answer carries the node's time ``t``; a 406/425 refusal makes
the client re-read the network time and retry) and deliver.

A node's clock is skewed with ``faults.skew_clock`` (``PUT /admin/v1/clock``: the node's storage
RPC checks and its ``t`` use the skewed time; node-to-node authentication keeps the system
clock). The client's own clock is skewed with the built-in client's ``local_now_ms`` knob.
"""

from __future__ import annotations

import re
import time
from typing import Any

import pytest

from harness.checks import delivery
from harness.client.records import AttemptRecord, OperationRecord
from harness.network import Testnet
from harness.recording import HistoryRecorder
from harness.suites.conftest import Clients
from harness.suites.support import CLIENT

pytestmark = [pytest.mark.clock, pytest.mark.integration, pytest.mark.builtin_client,
              pytest.mark.backends("process", "docker")]

#: how far behind the skewed node's clock is (ms): far outside every tolerance (10 s for a
#: store's timestamp, 60 s for a signed retrieve)
SKEW_MS = -5 * 60 * 1000
_OFFSET = re.compile(r"^clock_offset:(-?\d+)->(-?\d+)$")


def resyncs(rec: OperationRecord) -> list[tuple[AttemptRecord, AttemptRecord, int]]:
    """(refused attempt, ``info`` attempt that re-read the time, new offset) for each 406/425
    the operation met and resynced after."""
    out = []
    for prev, a in zip(rec.attempts, rec.attempts[1:], strict=False):
        if prev.status in (406, 425) and a.method == "info":
            m = next((_OFFSET.match(x) for x in a.actions if _OFFSET.match(x)), None)
            if m is not None:
                out.append((prev, a, int(m.group(2))))
    return out


@pytest.mark.node_capabilities("clock")
def test_node_clock_skewed_by_minutes(testnet: Testnet, history: HistoryRecorder,
                                      clients: Clients) -> None:
    """A member of the recipient's swarm whose clock is 5 minutes behind refuses the clients'
    timestamps (406/425); the sender and the recipient re-read the network time from it and
    retry, every send succeeds and every message is delivered.

    The sender's refusals come only from the skewed node (a store's timestamp may lie in a
    node's past, not in its future); after each resync the client's offset is the node's skew."""
    alice = clients.builtin(testnet, **CLIENT)
    bob = clients.builtin(testnet, poll_mode="all", **CLIENT)
    with history.faults(testnet) as faults:
        skewed = faults.skew_clock(f"swarm-of:{bob.session_id}:1", SKEW_MS).nodes[0]
        key = testnet.node(skewed).pubkey_ed25519
        sent: list[Any] = []
        # until a store met the skewed member (the member a store lands on is random)
        while len(sent) < 40:
            sent.append(alice.send(bob.session_id, f"skewed {len(sent)}"))
            if len(sent) >= 6 and any(resyncs(r) for r in sent):
                break
        bob.wait_for(count=len(sent), timeout=40)
    h = history.collect()
    history.require(delivery(h))
    assert all(r.ok for r in sent)
    send_resyncs = [x for r in sent for x in resyncs(r)]
    assert send_resyncs, f"no store of {len(sent)} met the skewed node {skewed}"
    for refused, _info, offset in send_resyncs:
        assert refused.destination and refused.destination["ed25519"] == key, refused.destination
        assert abs(offset + SKEW_MS) < 5_000, offset  # local - network = minus the skew
    # a resync re-builds the message with the network time it read
    assert all(r.details.get("rebuilt_for_clock", 0) >= 1 for r in sent if resyncs(r))
    receives = [r for r in h.receives if r.account == bob.session_id]
    recv_resyncs = [x for r in receives if r.ok for x in resyncs(r)
                    if x[0].destination and x[0].destination["ed25519"] == key]
    assert recv_resyncs, "bob never resynced after a refusal by the skewed node"
    assert all(abs(offset + SKEW_MS) < 5_000 for _r, _i, offset in recv_resyncs)


def test_client_clock_skewed_by_minutes(testnet: Testnet, history: HistoryRecorder,
                                        clients: Clients) -> None:
    """A client whose own clock is 15 minutes slow takes the network time from the nodes'
    answers before its first signed request: it is never refused, its messages carry the
    network's time, and they are delivered."""
    slow_ms = 15 * 60 * 1000

    def local_now_ms() -> int:
        return int(time.time() * 1000) - slow_ms

    alice = clients.builtin(testnet, local_now_ms=local_now_ms, **CLIENT)
    bob = clients.builtin(testnet, **CLIENT)
    sent = [alice.send(bob.session_id, f"late clock {i}") for i in range(5)]
    got = bob.wait_for(count=len(sent), timeout=30)
    h = history.collect()
    history.require(delivery(h))
    mine = [r for r in h.records if r.account == alice.session_id]
    assert not [a for r in mine for a in r.attempts if a.status in (406, 425)]
    assert all(abs(r.clock_offset_ms + slow_ms) < 5_000 for r in sent), \
        [r.clock_offset_ms for r in sent]
    for r in sent:  # the store timestamp is network time, not the client's clock
        assert r.timestamp_ms is not None and abs(r.timestamp_ms - r.started_at * 1000) < 5_000
    stamps = {m.hash: m.timestamp_ms for m in got}
    assert all(abs(stamps[r.message_hash] - r.started_at * 1000) < 5_000 for r in sent)
