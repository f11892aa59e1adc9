"""Clients under test through the adapter protocol, on a real process-backend testnet: adapter
zero (``testnet client-adapter``, the built-in client) and the independent minimal client
(``examples/adapters/minimal_client.py``, written from the wire protocol alone) each exchange
messages both ways with the built-in client, and the recorded history passes the delivery
check unchanged."""

from __future__ import annotations

import shlex
import sys
from pathlib import Path

import pytest

from harness.adapter import AdapterClient
from harness.checks import delivery
from harness.client import Account, ReceiveRecord, SendRecord
from harness.network import Testnet
from harness.recording import HistoryRecorder
from nodes.protocol.keys import derive_seed

pytestmark = [pytest.mark.integration, pytest.mark.backends("process", "docker")]

ROOT = Path(__file__).resolve().parents[2]
PY = shlex.quote(sys.executable)
ADAPTER_ZERO = f"{PY} -m harness client-adapter --request-timeout 4"
MINIMAL = f"{PY} {shlex.quote(str(ROOT / 'examples' / 'adapters' / 'minimal_client.py'))}"


def seed_for(net: Testnet, label: str) -> str:
    return derive_seed(str(net.topology.seed), "account", label).hex()


def exchange(net: Testnet, history: HistoryRecorder, command: str, label: str) -> AdapterClient:
    """The adapter and a built-in client send each other two messages; delivery must be OK."""
    seed = seed_for(net, f"{label}-adapter")
    builtin = history.client(net, Account.from_seed_hex(seed_for(net, f"{label}-builtin")),
                             request_timeout=4.0, poll_mode="all")
    with AdapterClient.start(command, net, history, seed_hex=seed) as adapter:
        assert adapter.session_id == Account.from_seed_hex(seed).session_id
        rec = adapter.send(builtin.session_id, f"{label}: adapter → built-in")
        assert isinstance(rec, SendRecord) and rec.ok and rec.message_hash
        builtin.send(adapter.session_id, f"{label}: built-in → adapter 1")
        builtin.send(adapter.session_id, f"{label}: built-in → adapter 2")

        got = builtin.wait_for(count=1, timeout=20)
        assert [(m.sender, m.body, m.hash) for m in got] == [
            (adapter.session_id, f"{label}: adapter → built-in", rec.message_hash)]
        mine = adapter.wait_for(count=2, timeout=20)
        assert sorted(m.body for m in mine) == [f"{label}: built-in → adapter 1",
                                               f"{label}: built-in → adapter 2"]
        assert {m.sender for m in mine} == {builtin.session_id}
        assert adapter.receive() == []  # nothing is handed back twice
    assert not adapter.process.running

    h = history.collect()
    mine_reads = [r for r in h.receives if r.account == adapter.session_id]
    assert mine_reads and all(isinstance(r, ReceiveRecord) and r.ended_at for r in mine_reads)
    sends = [s for s in h.sends if s.account == adapter.session_id]
    assert [h.sent[s.op_id]["body"] for s in sends] == [f"{label}: adapter → built-in"]
    assert sends[0].details["adapter"] == adapter.hello.adapter
    assert any(a.ok and a.method == "store" for a in sends[0].attempts)
    history.require(delivery(h))
    assert history.results[-1].evidence["delivered"] == 3
    return adapter


def test_adapter_zero_is_the_builtin_client(testnet: Testnet, history: HistoryRecorder) -> None:
    adapter = exchange(testnet, history, ADAPTER_ZERO, "zero")
    assert adapter.hello.adapter == "session-testnet built-in client"
    # the built-in client stores through onion paths: the adapter's records keep them
    send = next(s for s in history.history.sends if s.account == adapter.session_id)
    store = [a for a in send.attempts if a.method == "store" and a.ok][-1]
    assert len(store.path) == 3 and store.destination


def test_independent_minimal_client_interoperates(testnet: Testnet,
                                                   history: HistoryRecorder) -> None:
    adapter = exchange(testnet, history, MINIMAL, "minimal")
    assert adapter.hello.adapter.startswith("minimal-session-client")
    send = next(s for s in history.history.sends if s.account == adapter.session_id)
    store = [a for a in send.attempts if a.method == "store" and a.ok][-1]
    assert store.path == [] and store.destination  # direct storage RPC, no onion
    assert send.confirmations >= 2


def test_adapters_talk_to_each_other(testnet: Testnet, history: HistoryRecorder) -> None:
    """Neither side is the built-in client: the minimal client and adapter zero."""
    with AdapterClient.start(MINIMAL, testnet, history, seed_hex=seed_for(testnet, "a")) as a, \
            AdapterClient.start(ADAPTER_ZERO, testnet, history, seed_hex=seed_for(testnet, "b")) as b:
        a.send(b.session_id, "minimal → zero")
        b.send(a.session_id, "zero → minimal")
        assert [m.body for m in b.wait_for(count=1, timeout=20)] == ["minimal → zero"]
        assert [m.body for m in a.wait_for(count=1, timeout=20)] == ["zero → minimal"]
    history.require(delivery(history.collect()))
