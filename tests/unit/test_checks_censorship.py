"""Censorship checker: misbehaving nodes from the timeline, routes around them."""

from __future__ import annotations

import pytest

from harness.checks import History, Verdict, censorship, misbehaviours
from harness.checks.synth import T0, attempt, directory, event, receive, send

pytestmark = pytest.mark.unit

A, B = "05" + "aa" * 32, "05" + "bb" * 32


def scenario(final_dest: str = "sn04", deliver: bool = True, read: bool = True) -> History:
    nodes = directory()
    h = History(nodes=nodes, events=[
        event("misbehave", "apply", ["sn02"], T0, 0, drop_stores=True),
        event("misbehave", "apply", ["sn05"], T0, 1, drop_relays=True),
        event("misbehave", "remove", ["sn05"], T0 + 100, 2, drop_relays=True),
    ])
    a1 = attempt(nodes, 1, ["sn01", "sn05", "sn03"], "sn04", at=T0 + 1, ok=False,
                 error_kind="path", status=None, actions=["strike_path:P1"])
    a2 = attempt(nodes, 2, ["sn01", "sn03", "sn06"], "sn02", at=T0 + 2, ok=False,
                 error_kind="unconfirmed", actions=["strike_node:sn02"])
    a3 = attempt(nodes, 3, ["sn01", "sn03", "sn06"], final_dest, at=T0 + 3)
    h.records.append(send("send-1", A, B, "H1", [a1, a2, a3]))
    if deliver or read:  # bob read after the send: got H1, or nothing
        h.records.append(receive("r", B, ["H1"] if deliver else [], at=T0 + 4))
    return h


def test_windows_from_timeline():
    ms = misbehaviours(scenario())
    assert [(m.node, m.behaviours, m.end) for m in ms] == [
        ("sn02", ["drop_stores"], float("inf")), ("sn05", ["drop_relays"], T0 + 100)]


def test_routed_around_and_delivered_passes_and_names_nodes():
    r = censorship(scenario())
    assert r.ok and r.verdict is Verdict.OK, r
    assert "sn02 (drop_stores)" in r.summary and "sn05 (drop_relays)" in r.summary
    assert r.evidence["avoided"]["sn02"]["failed_attempts"] == 1
    assert r.evidence["avoided"]["sn05"]["failed_attempts"] == 1
    assert r.evidence["avoided"]["sn05"]["routes_around"] == 1


def test_success_through_censor_or_loss_fails():
    r = censorship(scenario(final_dest="sn02"))
    assert r.verdict is Verdict.FAILED and "through censoring node sn02" in r.details[0]
    r = censorship(scenario(deliver=False))
    assert r.verdict is Verdict.FAILED and r.evidence["op_ids"] == ["send-1"]
    assert "not delivered" in r.details[0]


def test_nothing_to_check_is_unknown():
    r = censorship(History())
    assert r.verdict is Verdict.UNKNOWN and not r.ok and "nothing to check" in r.summary
    assert censorship(scenario(), behaviours={"sn06": {"drop_relays": True}}).evidence[
        "avoided"]["sn06"]["routes_around"] == 0


def test_no_send_during_censoring_is_unknown():
    h = scenario()
    # sn05 censored only before the send (T0 + 1); sn02 not at all
    h.events = [event("misbehave", "apply", ["sn05"], T0, 0, drop_relays=True),
                event("misbehave", "remove", ["sn05"], T0 + 0.5, 1, drop_relays=True)]
    r = censorship(h)
    assert r.verdict is Verdict.UNKNOWN and r.evidence["sends_during"] == 0
    assert "no send overlapped a censoring period" in r.summary


def test_unread_recipient_is_unknown_not_lost():
    r = censorship(scenario(deliver=False, read=False))
    assert r.verdict is Verdict.UNKNOWN and r.evidence["op_ids"] == []
    assert any("unchecked" in d for d in r.details)


def test_the_curve_of_delivery_versus_censoring_fraction():
    h = scenario()
    nodes = h.nodes
    # a message before any censor: the curve's point at fraction 0
    h.events = [event("misbehave", "apply", ["sn02"], T0 + 0.5, 0, drop_stores=True),
                event("misbehave", "apply", ["sn05"], T0 + 0.5, 1, drop_relays=True)]
    early = attempt(nodes, 1, ["sn01", "sn03", "sn06"], "sn04", at=T0 - 5)
    h.records.insert(0, send("send-0", A, B, "H0", [early], at=T0 - 5))
    h.records.append(receive("r0", B, ["H0"], at=T0 - 4))
    r = censorship(h)
    assert r.verdict is Verdict.OK, r
    assert r.evidence["curve"] == [
        {"censoring": 0, "nodes": 6, "censoring_fraction": 0.0, "messages": 1, "sends": 1,
         "delivered": 1, "delivery_rate": 1.0},
        {"censoring": 2, "nodes": 6, "censoring_fraction": 0.3333, "messages": 1, "sends": 1,
         "delivered": 1, "delivery_rate": 1.0}]


def test_a_failed_send_the_app_sent_again_is_no_violation():
    h = scenario()
    nodes = h.nodes
    failed = attempt(nodes, 1, ["sn01", "sn05", "sn03"], "sn04", at=T0 + 0.5, ok=False,
                     error_kind="path", status=None)
    h.records.insert(0, send("send-0", A, B, "H1", [failed], at=T0 + 0.5, ok=False))
    h.sent = {"send-0": {"to": B, "body": "hello"}, "send-1": {"to": B, "body": "hello"}}
    r = censorship(h)
    assert r.verdict is Verdict.OK, r
    assert len(r.evidence["resent"]) == 1 and "sent again" in r.summary
    assert [(p["messages"], p["sends"], p["delivered"]) for p in r.evidence["curve"]] == [(1, 2, 1)]
    h.sent["send-0"]["body"] = "another"  # never sent again: the failure is a violation
    r = censorship(h)
    assert r.verdict is Verdict.FAILED and "send send-0 failed" in r.details[0]


def test_nodes_blocked_from_clients_censor_as_guards():
    h = scenario()
    h.events = [event("block_clients", "apply", ["sn01"], T0, 0, prefix=24)]
    r = censorship(h)  # every attempt of the scenario enters through sn01
    assert [(m.node, m.behaviours, m.roles) for m in misbehaviours(h)] == [
        ("sn01", ["client_blocked"], {"guard"})]
    assert r.verdict is Verdict.FAILED and "through censoring node sn01" in r.details[0]
    h.events = [event("block_clients", "apply", ["sn06"], T0, 0, prefix=24)]
    assert censorship(h).verdict is Verdict.OK  # sn06 was a relay, never the guard
