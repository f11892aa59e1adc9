"""Failure classification and path policy of the client, directly (harness.client.failures,
harness.client.policy); the behaviour through a whole client is in test_client_behaviour.py."""

from __future__ import annotations

import json
import random

import pytest

from harness.client.config import ClientConfig
from harness.client.errors import NoPathError
from harness.client.failures import (
    NODE_NOT_FOUND_PREFIXES,
    ErrorKind,
    FailureClassifier,
    Outcome,
    extract_pubkey,
)
from harness.client.paths import OnionPath, PathSet
from harness.client.policy import PathPolicy
from harness.client.pool import NodePool
from harness.client.records import AttemptRecord, OperationRecord, record_from_dict
from harness.client.snode import Snode, SwarmEntry
from harness.client.transport import CONNECT, DISCONNECTED, TIMEOUT, TransportError

pytestmark = pytest.mark.unit


def node(i: int) -> Snode:
    return Snode(ed25519=f"{i:064x}", x25519=f"{i + 1000:064x}", ip=f"10.0.{i}.1", port=22021)


def make_policy(n: int = 8, **settings: float) -> PathPolicy:
    cfg = ClientConfig().with_overrides(**settings) if settings else ClientConfig()
    pool = NodePool(cfg.node_failure_threshold, rng=random.Random(1))
    pool.replace([node(i) for i in range(1, n + 1)])
    paths = PathSet(count=cfg.path_count, hops=cfg.path_hops, failure_threshold=cfg.path_failure_threshold,
                    subnet_diversity=cfg.subnet_diversity, rng=random.Random(1))
    return PathPolicy(cfg, pool, paths, {})


def test_error_kinds_keep_their_documented_json_values():
    # docs/client.md lists these; records written before the enum must still read the same
    assert {k.value for k in ErrorKind} == {"connect", "timeout", "disconnected", "path", "decrypt",
                                            "destination", "rejected", "swarm", "clock",
                                            "unconfirmed", "seed"}
    assert {ErrorKind(CONNECT), ErrorKind(TIMEOUT), ErrorKind(DISCONNECTED)} <= set(ErrorKind)
    rec = OperationRecord(op_id="send-1", kind="send")
    rec.attempts.append(AttemptRecord(n=1, method="store", error_kind=ErrorKind.UNCONFIRMED.value))
    text = rec.to_json()
    assert json.loads(text)["attempts"][0]["error_kind"] == "unconfirmed"
    assert record_from_dict(json.loads(text)).attempts[0].error_kind == ErrorKind.UNCONFIRMED


def test_extract_pubkey_reads_the_missing_node_from_the_error_text():
    key = "ab" * 32
    for prefix in NODE_NOT_FOUND_PREFIXES:
        assert extract_pubkey(f"{prefix}{key.upper()} (hop 2)", prefix) == key
    assert extract_pubkey(f"{NODE_NOT_FOUND_PREFIXES[0]}abcd", NODE_NOT_FOUND_PREFIXES[0]) is None
    assert extract_pubkey(f"{NODE_NOT_FOUND_PREFIXES[0]}{'zz' * 32}", NODE_NOT_FOUND_PREFIXES[0]) is None
    assert extract_pubkey("Request time out", NODE_NOT_FOUND_PREFIXES[0]) is None


def test_a_connection_refused_by_the_guard_retires_the_path_and_marks_the_guard():
    policy = make_policy()
    path = OnionPath([node(1), node(2), node(3)])
    policy.paths.add(path)
    classify = FailureClassifier(policy, lambda *args: None)
    a = AttemptRecord(n=1, method="store")
    verdict = classify.transport(a, TransportError(CONNECT, "https://10.0.1.1:22021", "refused"), path,
                                 node(4), "store")
    assert verdict.kind is Outcome.RETRY_PATH and verdict.error is not None
    assert a.error_kind == "connect" and a.failed_node == node(1).ref()
    assert policy.paths.get(path.id) is None and f"drop_path:{path.id}" in a.actions
    assert node(1).ed25519 in policy.unreachable_nodes()
    assert {h.ed25519 for h in path.hops} <= policy.quarantined()
    assert policy.prefer_reachable([node(1), node(5)]) == [node(5)]
    assert policy.prefer_reachable([node(1)]) == [node(1)]  # never leaves nothing


def test_a_timeout_strikes_the_path_and_the_third_drops_it_with_its_nodes():
    policy = make_policy()
    path = OnionPath([node(1), node(2), node(3)])
    policy.paths.add(path)
    classify = FailureClassifier(policy, lambda *args: None)
    for n in range(1, 4):
        a = AttemptRecord(n=n, method="retrieve")
        verdict = classify.transport(a, TransportError(TIMEOUT, "u", "slow"), path, node(4), "retrieve")
        assert verdict.kind is Outcome.RETRY_PATH and a.error_kind == "timeout"
    assert policy.paths.get(path.id) is None
    assert "drop_path:" + path.id in a.actions
    assert all(f"strike_node:{h.ed25519[-8:]}" in a.actions for h in path.hops)


def test_421_with_a_swarm_body_moves_the_swarm_and_a_second_one_drops_the_node():
    policy = make_policy()
    cached: list[tuple[str, list[Snode]]] = []
    classify = FailureClassifier(policy, lambda acct, members, sid, rep: cached.append((acct, list(members))))
    new = [node(6), node(7), node(8)]
    body = {"snodes": [{"ip": m.ip, "port_https": m.port, "pubkey_ed25519": m.ed25519,
                        "pubkey_x25519": m.x25519} for m in new], "swarm": "0000000000000002"}
    seen: set[tuple[str, str]] = set()
    a = AttemptRecord(n=1, method="store")
    verdict = classify.destination(seen, a, 421, json.dumps(body), body, OnionPath([node(1)]), node(5),
                                   "store", "05" + "11" * 32)
    assert verdict.kind is Outcome.SWARM_MOVED and a.error_kind == "swarm"
    assert [(acct, [m.ed25519 for m in members]) for acct, members in cached] == \
        [("05" + "11" * 32, [m.ed25519 for m in new])]
    assert all(m.swarm_id == 2 for m in cached[0][1])
    a2 = AttemptRecord(n=2, method="store")
    again = classify.destination(seen, a2, 421, json.dumps(body), body, OnionPath([node(1)]), node(5),
                                 "store", "05" + "11" * 32)
    assert again.kind is Outcome.RETRY_DEST and f"drop_node:{node(5).ed25519[-8:]}" in a2.actions
    assert node(5).ed25519 not in policy.pool


@pytest.mark.parametrize(("status", "outcome", "kind"), [
    (401, Outcome.FATAL, "rejected"), (406, Outcome.CLOCK, "clock"), (429, Outcome.RETRY_DEST, "destination"),
    (500, Outcome.RETRY_DEST, "destination")])
def test_destination_statuses(status: int, outcome: Outcome, kind: str):
    policy = make_policy()
    a = AttemptRecord(n=1, method="store")
    verdict = FailureClassifier(policy, lambda *args: None).destination(
        set(), a, status, "no", None, OnionPath([node(1)]), node(5), "store", None)
    assert verdict.kind is outcome and a.error_kind == kind
    struck = f"strike_node:{node(5).ed25519[-8:]}" in a.actions
    assert struck == (status == 500)  # 429 and rejections are no fault of the node


def test_dropping_a_node_removes_it_from_cached_swarms():
    policy = make_policy()
    policy.swarms["acct"] = SwarmEntry(None, [node(1), node(2)], 0.0, 2, [node(1), node(2)])
    policy.drop_node(node(1).ed25519, "gone", None)
    assert policy.swarms["acct"].members == [node(2)]
    assert node(1).ed25519 not in policy.pool


def test_graded_exclusions_relax_in_order():
    policy = make_policy(path_quarantine=60.0)
    policy.quarantine_path(OnionPath([node(1)]))
    policy.mark_unreachable(node(2))
    tried: list[set[str]] = []

    def build(exclude: set[str]) -> str:
        tried.append(set(exclude))
        if exclude:
            raise NoPathError("too few")
        return "built"

    assert policy.graded(build) == "built"
    assert tried == [{node(1).ed25519, node(2).ed25519}, {node(2).ed25519}, set()]


def test_quarantine_ends_after_path_quarantine_seconds():
    policy = make_policy(path_quarantine=0.0)
    policy.quarantine_path(OnionPath([node(1), node(2)]))
    policy.mark_unreachable(node(3))
    assert policy.quarantined() == set() and policy.unreachable_nodes() == set()
