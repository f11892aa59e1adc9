"""Delivery and latency checkers on synthetic histories."""

from __future__ import annotations

import pytest

from harness.checks import History, Verdict, delivery, latency, percentile
from harness.checks.synth import T0, attempt, directory, receive, send

pytestmark = pytest.mark.unit

A, B = "05" + "aa" * 32, "05" + "bb" * 32


def history_of(n: int = 3) -> History:
    nodes = directory()
    h = History(nodes=nodes)
    for i in range(n):
        at = T0 + i
        s = send(f"send-{i}", A, B, f"H{i}", [attempt(nodes, 1, ["sn01", "sn03", "sn05"], "sn02", at=at)])
        h.records.append(s)
        h.sent[s.op_id] = {"to": B, "body": f"m{i}"}
    return h


def deliver(h: History, i: int, *, body: str | None = None, sender: str = A) -> None:
    h.records.append(receive(f"recv-{i}", B, [f"H{i}"], at=T0 + i + 0.5))
    h.deliveries.append({"account": B, "sender": sender, "body": body or f"m{i}", "hash": f"H{i}",
                         "node": "127.1.2.1:22021"})


def test_all_delivered_passes():
    h = history_of()
    for i in range(3):
        deliver(h, i)
    r = delivery(h)
    assert r.ok and r.verdict is Verdict.OK
    assert r.evidence["delivered"] == 3 and r.summary.startswith("3/3")


def test_lost_message_is_named_with_its_route():
    h = history_of()
    deliver(h, 0)
    deliver(h, 2)
    r = delivery(h)
    assert r.verdict is Verdict.FAILED and not r.ok
    assert [e["op_id"] for e in r.evidence["lost"]] == ["send-1"]
    assert r.evidence["op_ids"] == ["send-1"] and r.evidence["hashes"] == ["H1"]
    assert "'m1'" in r.details[0] and "sn01 (127.1.1.1) → sn03" in r.details[0]
    assert "sn02" in r.evidence["lost"][0]["route"]


def test_duplicate_and_corrupted():
    h = history_of(2)
    deliver(h, 0)
    deliver(h, 0)  # the application got H0 twice
    deliver(h, 1, body="tampered")
    r = delivery(h)
    assert not r.ok
    assert [e["op_id"] for e in r.evidence["duplicated"]] == ["send-0"]
    assert r.evidence["duplicated"][0]["times"] == 2
    assert r.evidence["corrupted"][0]["op_id"] == "send-1"
    assert "tampered" in r.evidence["corrupted"][0]["problems"][0]


def test_wrong_sender_is_corruption_and_failed_send_is_not_loss():
    h = history_of(1)
    deliver(h, 0, sender="05" + "cc" * 32)
    nodes = h.nodes
    h.records.append(send("send-x", A, B, "HX", [attempt(nodes, 1, ["sn01", "sn03", "sn05"], "sn02",
                                                           at=T0 + 5, ok=False, error_kind="timeout")],
                          ok=False))
    r = delivery(h)
    assert not r.ok and "sender" in r.evidence["corrupted"][0]["problems"][0]
    assert r.evidence["failed_sends"] == ["send-x"] and not r.evidence["lost"]


def test_history_round_trips_through_json(tmp_path):
    h = history_of()
    deliver(h, 0)
    again = History.load(h.save(tmp_path / "h.json"))
    assert delivery(again).evidence == delivery(h).evidence


def test_latency_thresholds_and_per_node_breakdown():
    nodes = directory()
    h = History(nodes=nodes)
    for i in range(10):
        slow = i % 2 == 0
        path = ["sn01", "sn03", "sn05"] if slow else ["sn04", "sn03", "sn05"]
        a = attempt(nodes, 1, path, "sn02", at=T0 + i, ms=300 if slow else 50)
        h.records.append(send(f"s{i}", A, B, f"H{i}", [a]))
        h.records.append(receive(f"r{i}", B, [f"H{i}"], at=T0 + i + 0.4))
    assert percentile([1, 2, 3, 4], 50) == 2 and percentile([], 50) is None
    r = latency(h, send_p95_ms=1000, delivery_p95_ms=1000)
    assert r.ok
    by = r.evidence["by_node"]
    assert by["sn01"]["p50"] == 300 and by["sn01"]["others"]["p50"] == 50
    assert by["sn03"]["others"]["count"] == 0
    assert r.evidence["delivery_ms"]["max"] == pytest.approx(450, abs=1)
    bad = latency(h, send_p95_ms=100)
    assert bad.verdict is Verdict.FAILED and "send p95 300 ms > 100 ms" in bad.summary
    assert set(bad.evidence["op_ids"]) == {f"s{i}" for i in range(0, 10, 2)}


def test_nothing_sent_is_unknown_even_with_a_failed_send():
    assert delivery(History()).verdict is Verdict.UNKNOWN
    nodes = directory()
    h = History(nodes=nodes)
    h.records.append(send("send-x", A, B, "HX", [attempt(
        nodes, 1, ["sn01", "sn03", "sn05"], "sn02", at=T0, ok=False, error_kind="path",
        status=None, error="timeout")], ok=False))
    r = delivery(h)
    assert r.verdict is Verdict.UNKNOWN and not r.ok
    assert r.summary.startswith("0/0 sent messages delivered; 1 sends failed")
    assert "nothing to check" in r.summary and str(r).startswith("[UNKNOWN] delivery")


def test_message_whose_recipient_never_read_after_it_is_unchecked():
    h = history_of(2)
    deliver(h, 0)   # bob read once, at T0 + 0.5: before send-1 (T0 + 1) was made
    r = delivery(h)
    assert r.verdict is Verdict.UNKNOWN
    assert [e["op_id"] for e in r.evidence["unchecked"]] == ["send-1"] and not r.evidence["lost"]
    h.records.append(receive("recv-late", B, [], at=T0 + 5))   # a later read without it: lost
    r = delivery(h)
    assert r.verdict is Verdict.FAILED and [e["op_id"] for e in r.evidence["lost"]] == ["send-1"]


def test_latency_without_data_is_unknown():
    r = latency(History())
    assert r.verdict is Verdict.UNKNOWN and "no successful send to measure" in r.summary
    nodes = directory()
    h = History(nodes=nodes)
    h.records.append(send("s", A, B, "H", [attempt(nodes, 1, ["sn01", "sn03", "sn05"], "sn02",
                                                    at=T0)]))
    assert latency(h).verdict is Verdict.OK                     # measured, no thresholds
    r = latency(h, delivery_p95_ms=1000)                        # nothing was received
    assert r.verdict is Verdict.UNKNOWN and "no delivery latency was measured" in r.summary
    assert latency(h, send_p95_ms=1).verdict is Verdict.FAILED  # a violation outweighs it
