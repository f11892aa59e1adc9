"""A deliberately failing censorship scenario, run the way CI runs it (an inner pytest with
--junitxml on the process backend): its report.html shows the fault band with the failed sends
inside it, the path is printed by pytest, is in the JUnit XML (property and attachment) and in
the GitHub step summary, and `testnet schedule from-report` gives back the faults it applied."""

from __future__ import annotations

import importlib.util
import secrets
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from harness.backends.process import _all_marked
from harness.cli import main
from harness.faults import Faults, Schedule, Timeline, run
from harness.faults.timeline import Event
from harness.report import data, load_run
from harness.state import state_home

pytest_plugins = ["pytester"]
pytestmark = pytest.mark.integration

INNER = """
from harness.checks import censorship
from harness.client import ClientError


def test_every_swarm_member_drops_stores(testnet_factory, history):
    net = testnet_factory(swarms=1, swarm_size=4, proxies=False)
    alice = history.client(net, request_timeout=4.0)
    bob = history.client(net, request_timeout=4.0)
    bob.receive()
    alice.send(bob.session_id, "before the fault")
    with history.faults(net) as faults:
        faults.misbehave("all", drop_stores=True)   # one swarm: every member drops
        for i in range(2):
            try:
                alice.send(bob.session_id, f"censored {i}")
            except ClientError:
                pass
    alice.send(bob.session_id, "after the fault")
    bob.wait_for(count=2, timeout=20)
    history.require(censorship(history.collect()))
"""


def test_failing_censorship_scenario_report_reaches_junit_terminal_and_ci_summary(
        pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch, tmp_path: Path,
        testnet_factory: Any) -> None:
    monkeypatch.delenv("SESSION_TESTNET_BACKEND", raising=False)
    summary = tmp_path / "step-summary.md"
    monkeypatch.setenv("GITHUB_STEP_SUMMARY", str(summary))
    for k, v in {"GITHUB_SERVER_URL": "https://github.example", "GITHUB_REPOSITORY": "o/r",
                 "GITHUB_RUN_ID": "42", "GITHUB_WORKSPACE": str(pytester.path)}.items():
        monkeypatch.setenv(k, v)
    prefix = f"r{secrets.token_hex(3)}"
    pytester.makepyfile(test_inner=INNER)
    junit = pytester.path / "junit.xml"
    # pytest-html (optional): the report is linked from its page as an extra
    with_html = importlib.util.find_spec("pytest_html") is not None
    html_args = [f"--html={pytester.path / 'pytest-html.html'}"] if with_html else []
    result = pytester.runpytest("-p", "no:cacheprovider", "--testnet-backend", "process",
                                "--testnet-prefix", prefix, f"--junitxml={junit}", *html_args)
    result.assert_outcomes(failed=1)
    folder = pytester.path / "testnet-artifacts" / "test_inner.py__test_every_swarm_member_drops_stores"
    page = folder / "report.html"
    assert page.is_file()
    # printed by pytest
    result.stdout.fnmatch_lines(["*session-testnet*", f"    report: {page}"])
    # in the JUnit XML: a property and the attachment form Jenkins / GitLab read
    case = ET.parse(junit).getroot().find(".//testcase")
    assert case is not None
    props = {p.get("name"): p.get("value") for p in case.iter("property")}
    assert props["testnet_report"] == str(page)
    outs = "".join(e.text or "" for e in case.iter("system-out"))
    assert f"[[ATTACHMENT|{page}]]" in outs
    # the GitHub step summary: pass/fail table and the report's path
    text = summary.read_text()
    assert "| failed |" in text and "| 1 |" in text
    assert "testnet-artifacts/test_inner.py__test_every_swarm_member_drops_stores/report.html" in text
    assert "https://github.example/o/r/actions/runs/42#artifacts" in text
    if with_html:
        linked = (pytester.path / "pytest-html.html").read_text()
        assert "testnet report" in linked and str(page) in linked

    # the timeline: the fault band on every node, the failed sends inside it
    report = load_run(folder / "report.json")
    t0 = data.origin(report.history)
    bands = data.fault_bands(report.history, t0)
    assert {b.lane for b in bands} == set(report.history.nodes) and len(report.history.nodes) == 4
    assert {b.action for b in bands} == {"misbehave"}
    start, end = bands[0].start, bands[0].end
    assert end is not None
    points = data.send_points(report.history, t0)
    bad = [p for p in points if p.outcome in ("failed", "indeterminate")]
    assert len(bad) == 2 and all(start <= p.t and p.end <= end for p in bad)
    assert all(p.outcome == "delivered" for p in points if p not in bad)
    html = page.read_text()
    timeline = html.split('id="timeline"')[1].split("</section>")[0]
    assert "<svg" in timeline and "misbehave" in timeline
    assert html.count('data-outcome="indeterminate"') + html.count('data-outcome="failed"') == 2

    # from the failure to a replay: the faults it applied, on the nodes it hit
    out = tmp_path / "s.json"
    res = CliRunner().invoke(main, ["schedule", "from-report", str(folder / "report.json"),
                                    "-o", str(out)])
    assert res.exit_code == 0, res.output
    schedule = Schedule.load(out)
    assert [(s.action, str(s.target), s.params.get("drop_stores")) for s in schedule.steps] == [
        ("misbehave", ",".join(sorted(report.history.nodes)), True)]
    # … replayed on a fresh testnet with the run's seed: the same faults on the same nodes
    fresh = testnet_factory(swarms=1, swarm_size=4, proxies=False,
                            seed=report.testnets[0]["seed"])
    res = CliRunner().invoke(main, ["schedule", "from-report", str(folder / "report.json"),
                                    "-n", fresh.name])
    assert res.exit_code == 0, res.output  # -n: the testnet has the nodes and the seed
    replayed = run(schedule, Faults(fresh, Timeline()))
    assert replayed.ok, replayed.errors

    def what(evs: list[Event]) -> list[tuple[str, str, tuple[str, ...]]]:
        return [(e.action, e.phase, tuple(e.nodes)) for e in evs if e.ok]
    assert what(replayed.events) == what(report.history.events)

    nets = sorted(p.name for p in (state_home() / "networks").glob(f"{prefix}*"))
    marks = str(state_home() / "networks" / prefix)
    assert nets == [] and not [p for p, m in _all_marked().items() if m.startswith(marks)]
