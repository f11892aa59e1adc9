"""Reports explain failures: the check, the message, the attempts, the overlapping faults, logs."""

from __future__ import annotations

import json

import pytest

from harness.checks import History, Verdict, delivery, latency, privacy
from harness.checks.synth import T0, attempt, directory, event, receive, send
from harness.report import Report, fault_windows, markdown, write

pytestmark = pytest.mark.unit

A, B = "05" + "aa" * 32, "05" + "bb" * 32


def failing_history() -> History:
    nodes = directory()
    h = History(nodes=nodes, events=[
        event("latency", "apply", ["sn04"], T0 - 1, 0, ms=200),
        event("kill", "apply", ["sn02"], T0 + 1.5, 1),
        event("kill", "remove", ["sn02"], T0 + 3, 2),
        event("down", "apply", ["sn06"], T0 + 50, 3),   # after everything: not overlapping
    ])
    ok = send("send-ok", A, B, "H0", [attempt(nodes, 1, ["sn01", "sn03", "sn05"], "sn04", at=T0)])
    lost = send("send-lost", A, B, "H1", [
        attempt(nodes, 1, ["sn01", "sn03", "sn05"], "sn02", at=T0 + 2, ok=False,
                error_kind="connect", status=None, error="connection refused",
                actions=["strike_node:sn02"]),
        attempt(nodes, 2, ["sn06", "sn03", "sn05"], "sn04", at=T0 + 2.2, ms=80)])
    h.records += [ok, lost, receive("r", B, ["H0"], at=T0 + 4)]
    h.sent = {"send-ok": {"to": B, "body": "first"}, "send-lost": {"to": B, "body": "second"}}
    return h


def test_fault_windows_pair_apply_and_remove():
    ws = fault_windows(failing_history().events)
    assert [(w.action, w.nodes, w.end) for w in ws] == [
        ("latency", ["sn04"], None), ("kill", ["sn02"], T0 + 3), ("down", ["sn06"], None)]


def test_failing_delivery_report_names_message_path_fault_and_logs(tmp_path):
    h = failing_history()
    results = [delivery(h), latency(h)]
    rep = Report.build(results, h, log_paths={"sn02": "/art/t/net/sn02.log"}, testnet="net1")
    md = markdown.render(rep)
    assert "## FAILED: delivery" in md and "| latency | PASS |" in md
    assert "send send-lost message 'second'" in md and "`H1`" in md
    # the attempts, with their paths, destinations and errors
    assert "sn01 (127.1.1.1) → sn03 (127.1.3.1) → sn05 (127.1.5.1) | sn02 (127.1.2.1)" in md
    assert "connect: connection refused" in md and "strike_node:sn02" in md
    # faults overlapping the send's time: the kill of sn02 and the latency on sn04, not sn06's
    section = md.split("#### send send-lost")[1].split("## ")[0]
    assert "kill sn02" in section and "latency sn04" in section and "down sn06" not in section
    assert "sn02: /art/t/net/sn02.log" in section
    assert "testnet logs sn06 --name net1" in md

    data = json.loads(rep.to_json())
    assert data["ok"] is False
    fail = data["failures"][0]
    assert fail["check"] == "delivery"
    op = fail["operations"][0]
    assert op["op_id"] == "send-lost" and op["body"] == "second"
    assert op["attempts"][0]["path"][0].startswith("sn01") and op["attempts"][0]["destination"].startswith("sn02")
    assert {f["action"] for f in op["faults"]} == {"kill", "latency"}
    assert op["logs"]["sn02"] == "/art/t/net/sn02.log"

    paths = write(rep, tmp_path)
    assert paths["html"].read_text().startswith("<!DOCTYPE html>")
    assert paths["markdown"].read_text() == md
    assert History.load(paths["history"]).sent == h.sent


def test_passing_report_has_no_failure_section():
    h = failing_history()
    h.records.append(receive("r2", B, ["H1"], at=T0 + 5))
    rep = Report.build([delivery(h)], h)
    assert rep.ok and "FAILED" not in markdown.render(rep) and rep.to_dict()["failures"] == []


def test_failed_operations_are_explained_even_without_a_failing_check():
    h = failing_history()
    nodes = h.nodes
    h.records.append(receive("r2", B, ["H1"], at=T0 + 5))
    h.records.append(send("send-err", A, B, "HX", [attempt(
        nodes, 1, ["sn06", "sn03", "sn05"], "sn04", at=T0 + 51, ok=False, error_kind="path",
        status=None, error="status 504: 'Request time out'")], ok=False))
    rep = Report.build([delivery(h)], h)
    md = markdown.render(rep)
    assert "## Operations that failed (1)" in md and "send send-err" in md
    assert "down sn06" in md.split("send send-err")[1]
    assert [o["op_id"] for o in rep.to_dict()["failed_operations"]] == ["send-err"]


def test_unknown_check_is_its_own_verdict_in_the_report():
    h = failing_history()
    h.records.append(receive("r2", B, ["H1"], at=T0 + 5))
    rep = Report.build([delivery(h), latency(h, delivery_p95_ms=1), privacy(h)], h)
    md = markdown.render(rep)
    assert "| privacy | **UNKNOWN** |" in md and "## UNKNOWN: privacy" in md
    assert "| delivery | PASS |" in md and "## FAILED: latency" in md
    data = rep.to_dict()
    assert data["ok"] is False and data["verdict"] == "failed"
    assert {f["check"]: f["verdict"] for f in data["failures"]} == {
        "latency": "failed", "privacy": "unknown"}
    only_unknown = Report.build([delivery(h), privacy(h)], h)
    assert not only_unknown.ok and only_unknown.verdict is Verdict.UNKNOWN
