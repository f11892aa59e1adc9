"""Node failure counters, clock offset, operation records (pure)."""

from __future__ import annotations

import json

import pytest

from harness.client.clock import MIN_VALID_TIMESTAMP_MS, NetworkClock
from harness.client.pool import NodePool
from harness.client.records import (
    AttemptRecord,
    OperationRecord,
    ReceiveRecord,
    SendRecord,
    emit,
    record_from_dict,
)
from harness.client.snode import Snode, parse_swarm_body

pytestmark = pytest.mark.unit

T0 = 1_750_000_000_000


def node(i: int) -> Snode:
    return Snode(ed25519=f"{i:064x}", x25519=f"{i + 1000:064x}", ip=f"10.0.{i}.1", port=22021)


# -- failure counters ------------------------------------------------------------------------

def test_node_dropped_on_third_failure_and_counter_reset():
    pool = NodePool(failure_threshold=3)
    pool.replace([node(1), node(2)])
    ed = node(1).ed25519
    assert pool.strike(ed) is False and pool.failures(ed) == 1
    assert pool.strike(ed) is False and pool.failures(ed) == 2
    assert ed in pool
    assert pool.strike(ed) is True
    assert ed not in pool and pool.failures(ed) == 0
    assert "3 failures" in pool.dropped[ed]
    assert len(pool) == 1


def test_drop_is_immediate_and_dropped_nodes_are_not_relearned_until_refresh():
    pool = NodePool()
    pool.replace([node(1), node(2)])
    assert pool.drop(node(2).ed25519, "next node not found") is True
    assert node(2).ed25519 not in pool
    pool.add(node(2))  # e.g. listed again in a stale get_swarm answer
    assert node(2).ed25519 not in pool
    pool.replace([node(1), node(2)])  # a seed refresh brings it back
    assert node(2).ed25519 in pool and pool.failures(node(2).ed25519) == 0


def test_random_node_respects_exclusions():
    pool = NodePool()
    pool.replace([node(1), node(2), node(3)])
    for _ in range(20):
        assert pool.random_node(exclude={node(1).ed25519, node(2).ed25519}) == node(3)
    assert pool.random_node(exclude={n.ed25519 for n in pool.nodes()}) is None


# -- clock -----------------------------------------------------------------------------------

def test_clock_offset_from_t_corrects_now():
    local = [T0]
    clock = NetworkClock(lambda: local[0])
    assert clock.offset_ms == 0 and clock.now_ms() == T0
    assert clock.observe("a", T0 + 120_000)  # the network is 2 minutes ahead
    assert clock.offset_ms == -120_000
    assert clock.now_ms() == T0 + 120_000
    local[0] += 5_000
    assert clock.now_ms() == T0 + 125_000


def test_clock_averages_sources_and_replaces_a_source():
    clock = NetworkClock(lambda: T0)
    clock.observe("a", T0 - 10)
    clock.observe("b", T0 - 20)
    clock.observe("c", T0 - 30)
    assert clock.offset_ms == 20
    clock.observe("a", T0 - 100)  # same source: replaces its sample
    assert clock.offset_ms == round((100 + 20 + 30) / 3)


def test_clock_keeps_last_ten_sources_and_ignores_bogus_values():
    clock = NetworkClock(lambda: T0)
    for i in range(10):
        clock.observe(f"s{i}", T0 - 10)
    for i in range(3):
        clock.observe(f"new{i}", T0 - 100)
    assert len(clock.samples) == 10
    assert clock.offset_ms == round((3 * 100 + 7 * 10) / 10)
    before = clock.offset_ms
    assert clock.observe("x", None) is False
    assert clock.observe("x", "123") is False
    assert clock.observe("x", True) is False
    assert clock.observe("x", MIN_VALID_TIMESTAMP_MS - 1) is False
    assert clock.offset_ms == before


# -- swarm bodies ----------------------------------------------------------------------------

def test_parse_swarm_body_reads_get_swarm_and_421_answers():
    body = {"swarm": "7fffffffffffffff", "t": T0, "hf": [21, 1], "snodes": [
        {"ip": "10.0.1.1", "port": "22021", "port_https": 22021, "pubkey_ed25519": "ab" * 32,
         "pubkey_x25519": "cd" * 32, "pubkey_legacy": "ab" * 32, "port_omq": 22020, "address": ""},
        {"ip": "0.0.0.0", "port_https": 22021, "pubkey_ed25519": "ee" * 32, "pubkey_x25519": "ff" * 32},
        {"ip": "10.0.2.1", "port_https": 22021, "pubkey_ed25519": "zz", "pubkey_x25519": "ff" * 32},
    ]}
    swarm_id, members = parse_swarm_body(body)
    assert swarm_id == 0x7FFFFFFFFFFFFFFF
    assert members == [Snode("ab" * 32, "cd" * 32, "10.0.1.1", 22021, 0x7FFFFFFFFFFFFFFF)]
    assert parse_swarm_body("Wrong swarm") == (None, [])


def test_seed_entries_without_address_are_skipped():
    good = {"public_ip": "10.0.1.1", "storage_port": 22021, "pubkey_ed25519": "ab" * 32,
            "pubkey_x25519": "cd" * 32, "swarm_id": 5}
    assert Snode.from_seed_entry(good) == Snode("ab" * 32, "cd" * 32, "10.0.1.1", 22021, 5)
    assert Snode.from_seed_entry({**good, "public_ip": "0.0.0.0"}) is None
    assert Snode.from_seed_entry({**good, "storage_port": 0}) is None
    assert Snode.from_seed_entry({**good, "pubkey_x25519": "nothex"}) is None
    assert Snode.from_seed_entry({**good, "swarm_id": 2**64 - 1}).swarm_id is None


# -- records ---------------------------------------------------------------------------------

def _attempt(n: int, ok: bool) -> AttemptRecord:
    return AttemptRecord(n=n, method="store", path=[node(1).ref(), node(2).ref(), node(3).ref()],
                         destination=node(4).ref(), enc_type="aes-gcm", started_at=1.5, elapsed_ms=12.5,
                         http_status=200 if ok else 502, status=200 if ok else None, ok=ok,
                         error_kind=None if ok else "path", error=None if ok else "boom",
                         failed_node=None if ok else node(2).ref(),
                         actions=[] if ok else ["drop_node:00000002", "strike_path:P1"])


def test_send_record_round_trips_through_json():
    rec = SendRecord(op_id="send-1", kind="send", account="05" + "11" * 32, recipient="05" + "22" * 32,
                     enc_type="xchacha20", started_at=10.0, ended_at=10.25, outcome="ok",
                     attempts=[_attempt(1, False), _attempt(2, True)], destination=node(4).ref(),
                     path=[node(5).ref()], clock_offset_ms=-42, details={"data_bytes": 300},
                     message_hash="h" * 43, timestamp_ms=T0, ttl_ms=1209600000, confirmations=3,
                     swarm_results={"ab" * 32: {"ok": True, "reason": None, "already": False}})
    text = rec.to_json()
    data = json.loads(text)
    assert data["duration_ms"] == pytest.approx(250.0)
    back = record_from_dict(data)
    assert isinstance(back, SendRecord)
    assert back == rec
    assert back.failed_attempts == [rec.attempts[0]]
    assert back.ok


def test_receive_and_plain_records_round_trip():
    rr = ReceiveRecord(op_id="receive-1", kind="receive", outcome="error", error="x", error_type="RetrieveFailed",
                       polled=[{**node(1).ref(), "namespace": 0, "count": 2}], namespaces=[0],
                       new_hashes=["a"], duplicate_hashes=["b"], undecryptable=[{"hash": "c", "error": "bad"}])
    back = record_from_dict(json.loads(rr.to_json()))
    assert isinstance(back, ReceiveRecord) and back == rr and not back.ok
    op = OperationRecord(op_id="get_swarm-1", kind="get_swarm", attempts=[_attempt(1, True)])
    back2 = record_from_dict(op.to_dict())
    assert type(back2) is OperationRecord and back2 == op
    assert back2.duration_ms is None


def test_emit_to_list_callable_or_nothing():
    rec = OperationRecord(op_id="x", kind="bootstrap")
    sink: list = []
    emit(sink, rec)
    assert sink == [rec]
    seen = []
    emit(seen.append, rec)
    assert seen == [rec]
    emit(None, rec)  # discarded, no error
