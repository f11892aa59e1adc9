"""The HTML report and the pure data behind its timeline and plots (harness.report.data)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner
from report_samples import FAULTS, NODES, sample_history, sample_results

from harness.checks import History
from harness.checks.synth import T0, attempt, receive, send
from harness.report import Report, data, html, load_run, write
from harness.report.load import RunFileError

pytestmark = pytest.mark.unit


def test_bands_are_the_timelines_apply_remove_pairs():
    h = sample_history()
    bands = data.fault_bands(h, T0)
    assert sorted((b.action, b.lane, b.start, b.end) for b in bands) == sorted(
        (a, n[0], s, e) for a, n, s, e, _ in FAULTS)
    marks = data.churn_marks(h, T0)
    assert [(m.lane, m.phase, m.t) for m in marks] == [("sn05", "apply", 20.0),
                                                       ("sn05", "remove", 24.0)]


def test_link_faults_get_one_band_per_link_and_unremoved_ones_stay_open():
    h = sample_history()
    h.events = [h.events[0]]
    h.events[0].links = ["sn01->sn02", "sn02->sn01"]
    bands = data.fault_bands(h, T0)
    assert [(b.lane, b.end) for b in bands] == [("sn01->sn02", None), ("sn02->sn01", None)]


def test_send_outcomes():
    h = sample_history()
    points = data.send_points(h, T0)
    by = {p.op_id: p.outcome for p in points}
    assert by["send-09"] == "failed" and by["send-00"] == "delivered"
    assert sum(o == "failed" for o in by.values()) == 5
    assert all(o == "delivered" for k, o in by.items() if k not in
               {"send-09", "send-11", "send-13", "send-15", "send-17"})
    s = send("x", "a", "b", "H", [attempt(NODES, 1, ["sn01"], "sn02", at=T0, ok=False,
                                          error_kind="timeout", status=None)], ok=False)
    assert data.send_outcome(s, False, False) == "indeterminate"
    ok = send("y", "a", "b", "H", [attempt(NODES, 1, ["sn01"], "sn02", at=T0)])
    assert data.send_outcome(ok, False, True) == "lost"
    assert data.send_outcome(ok, False, False) == "acknowledged"


def test_cdf_and_cumulative_points():
    assert data.cdf([30.0, 10.0, 20.0, 20.0]) == [(10.0, 0.25), (20.0, 0.5), (20.0, 0.75),
                                                  (30.0, 1.0)]
    assert data.cdf([]) == []
    assert data.cumulative([3.0, 1.0]) == [(1.0, 1), (3.0, 2)]


def test_delivered_versus_sent():
    points = data.send_points(sample_history(), T0)
    sent, got = data.sent_and_delivered(points)
    assert len(sent) == 30 and sent[-1] == (29.0, 30)
    assert len(got) == 25 and all(t >= 0 for t, _ in got)
    assert [n for _, n in got] == list(range(1, 26))


def test_role_counts_from_the_records_paths():
    h = History(nodes=NODES)
    h.records = [send("a", "x", "y", "H", [attempt(NODES, 1, ["sn01", "sn02", "sn03"], "sn04",
                                                   at=T0)]),
                 send("b", "x", "y", "H", [attempt(NODES, 1, ["sn04", "sn02"], "sn01", at=T0)])]
    counts = data.role_counts(h)
    assert counts["sn01"] == {"guard": 1, "relay": 0, "destination": 1}
    assert counts["sn02"] == {"guard": 0, "relay": 2, "destination": 0}
    assert counts["sn04"] == {"guard": 1, "relay": 0, "destination": 1}
    assert set(counts) == {"sn01", "sn02", "sn03", "sn04"}


def test_censorship_rate_by_fraction_of_censoring_nodes():
    h = sample_history()
    points = data.censorship_points(h, data.send_points(h, T0), T0)
    assert [(p.censoring, p.nodes, p.sends, p.delivered) for p in points] == [
        (0, 9, 19, 19), (1, 9, 11, 6)]  # sends overlapping +8 s..+18 s count as censored
    assert points[1].fraction == pytest.approx(1 / 9) and points[1].rate == pytest.approx(6 / 11)
    h.events = [e for e in h.events if e.action != "misbehave"]
    assert data.censorship_points(h, data.send_points(h, T0), T0) == []


def test_replay_commands_quote_and_name_the_seed():
    cmds = data.replay_commands([{"name": "t1", "seed": "a b", "swarms": 3, "swarm_size": 3}],
                                "tests/x.py::test_y[1]")
    assert cmds[0] == "python3 -m pytest 'tests/x.py::test_y[1]'"
    assert cmds[1] == "testnet up -n t1 --seed 'a b' --swarms 3 --swarm-size 3"
    assert "schedule from-report" in cmds[2] and cmds[3].endswith("-n t1")


def report_of(h: History, **kw) -> Report:
    return Report.build(sample_results(h), h, title="demo",
                        testnets=[{"name": "t1", "seed": "9", "backend": "process"}], **kw)


def test_html_has_every_section_plot_and_no_external_resource(tmp_path: Path):
    h = sample_history()
    logs = {n: str(tmp_path / "t1" / f"{n}.log") for n in h.nodes}
    page = html.render(report_of(h, log_paths=logs), tmp_path)
    for pid in ("timeline", "plot-latency", "plot-cdf", "plot-delivered", "plot-roles",
                "plot-censorship", "messages", "checks", "replay", "logs"):
        assert f'id="{pid}"' in page, pid
    assert page.count("<svg") == 6 and "nodata" not in page.split("<style>")[1].split(
        "</style>")[1]
    assert 'href="t1/sn02.log"' in page
    for external in ('href="http', "href='http", 'src=', "url(http", "<link", "@import"):
        assert external not in page, external
    assert 'data-outcome="failed"' in page and "store dropped" in page


def test_html_says_what_is_missing_instead_of_empty_axes():
    h = History(nodes=NODES, records=[receive("r", "b", [], at=T0)])
    page = html.render(Report.build([], h))
    assert "<svg" not in page
    for text in ("no send and no fault", "no successful send", "no node censored",
                 "no check ran", "nothing to replay"):
        assert text in page, text


def test_load_run_from_report_or_history_and_cli(tmp_path: Path):
    from harness.cli import main

    h = sample_history()
    paths = write(report_of(h, nodeid="tests/t.py::test_x"), tmp_path / "art")
    for f in (paths["json"], paths["history"]):
        r = load_run(f)
        assert [c.name for c in r.results] == ["delivery", "latency", "censorship"]
        assert len(r.history.sends) == 30 and r.nodeid == "tests/t.py::test_x"
    alone = tmp_path / "alone" / "history.json"
    h.save(alone)
    assert [c.name for c in load_run(alone).results] == ["delivery", "latency"]
    out = tmp_path / "out" / "r.html"
    res = CliRunner().invoke(main, ["report", str(paths["json"]), "-o", str(out), "--json"])
    assert res.exit_code == 0, res.output
    info = json.loads(res.output)
    assert info["verdict"] == "failed" and info["bytes"] == out.stat().st_size
    assert info["checks"]["censorship"] == "failed"
    (tmp_path / "x.json").write_text("{\"hello\": 1}")
    res = CliRunner().invoke(main, ["report", str(tmp_path / "x.json")])
    assert res.exit_code == 1 and "neither a run's report.json" in res.output
    with pytest.raises(RunFileError, match="does not exist"):
        load_run(tmp_path / "none.json")


def test_github_summary_table_and_links():
    from harness.report.ci import FailedTest, attachment_lines, github_summary, run_url

    text = github_summary({"passed": 3, "failed": 1}, [FailedTest(
        "t.py::test_a[x|y]", "testnet-artifacts/t", "testnet-artifacts/t/report.html")],
        run_url({"GITHUB_SERVER_URL": "https://gh.example", "GITHUB_REPOSITORY": "o/r",
                 "GITHUB_RUN_ID": "7"}))
    assert "| passed | failed |\n| --- | --- |\n| 3 | 1 |" in text
    assert "`t.py::test_a[x\\|y]`" in text and "`testnet-artifacts/t/report.html`" in text
    assert "(https://gh.example/o/r/actions/runs/7#artifacts)" in text
    assert run_url({}) is None
    assert attachment_lines(["/a/r.html"]) == "[[ATTACHMENT|/a/r.html]]\n"
