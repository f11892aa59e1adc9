"""CheckResult verdicts (ok / failed / unknown) and the wrapper every checker runs through."""

from __future__ import annotations

import pytest

from harness.checks import CheckResult, History, Verdict, censorship, checker, delivery, privacy
from harness.checks.latency import latency

pytestmark = pytest.mark.unit


def test_ok_is_true_only_for_the_ok_verdict():
    assert CheckResult("x", Verdict.OK, "fine").ok
    assert not CheckResult("x", Verdict.FAILED, "broken").ok
    unknown = CheckResult("x", Verdict.UNKNOWN, "no data")
    assert not unknown.ok and unknown.unknown and not unknown.failed


def test_verdict_must_be_a_verdict():
    with pytest.raises(TypeError, match="must be a Verdict"):
        CheckResult("x", True, "old style")  # type: ignore[arg-type]


@pytest.mark.parametrize("verdict,label", [(Verdict.OK, "PASS"), (Verdict.FAILED, "FAIL"),
                                           (Verdict.UNKNOWN, "UNKNOWN")])
def test_round_trip_and_str(verdict, label):
    r = CheckResult("delivery", verdict, "s", ["d1"], {"op_ids": ["a"]})
    data = r.to_dict()
    assert data["verdict"] == verdict.value and data["ok"] is (verdict is Verdict.OK)
    assert CheckResult.from_dict(data) == r
    assert str(r) == f"[{label}] delivery: s\n  - d1"


def test_from_dict_reads_results_saved_before_verdicts():
    assert CheckResult.from_dict({"name": "x", "ok": True}).verdict is Verdict.OK
    assert CheckResult.from_dict({"name": "x", "ok": False}).verdict is Verdict.FAILED


def test_a_crashing_checker_is_unknown_with_the_error():
    @checker("boom")
    def boom(history: History) -> CheckResult:
        raise ZeroDivisionError("no samples")

    r = boom(History())
    assert r.verdict is Verdict.UNKNOWN and r.name == "boom"
    assert r.evidence["error"] == "ZeroDivisionError: no samples"
    assert "ZeroDivisionError: no samples" in r.details[0] and "in boom" in r.details[0]
    assert "Traceback" in r.evidence["traceback"]


def test_a_checker_returning_something_else_is_unknown():
    @checker("sloppy")
    def sloppy(history: History) -> CheckResult:
        return True  # type: ignore[return-value]

    r = sloppy(History())
    assert r.verdict is Verdict.UNKNOWN and "not a CheckResult" in r.summary


@pytest.mark.parametrize("check", [delivery, latency, privacy, censorship])
def test_builtin_checkers_run_through_the_wrapper(check):
    r = check(None)  # not a history: the checker crashes inside
    assert r.verdict is Verdict.UNKNOWN and not r.ok, r
    assert r.name == check.__name__ and r.evidence["error"].startswith("AttributeError")
