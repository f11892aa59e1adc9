"""The run index's data (totals, rows, relative links, outcomes from pytest's phase reports),
its page, and `testnet report --index`, from synthetic inputs."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from click.testing import CliRunner

from harness.cli import main
from harness.pytest_runindex import outcome_of
from harness.report.ci import github_summary
from harness.report.index import (
    IndexEntry,
    RunFileError,
    index_dict,
    load_index,
    render_index,
    totals,
    verdict_of,
    write_index,
)

NET = {"name": "t-a", "seed": "42", "backend": "process", "swarms": 1, "swarm_size": 4}


def entries(root: Path) -> list[IndexEntry]:
    failed_dir = root / "test_x.py__test_fails"
    (failed_dir / "t-b").mkdir(parents=True)
    (failed_dir / "report.html").write_text("<html></html>")
    (root / "test_x.py__test_passes").mkdir()
    (root / "test_x.py__test_passes" / "report.html").write_text("<html></html>")
    return [
        IndexEntry("test_x.py::test_passes", "passed", 3.5, [NET], {"delivery": "ok"},
                   str(root / "test_x.py__test_passes" / "report.html")),
        IndexEntry("test_x.py::test_fails", "failed", 7.25, [{**NET, "name": "t-b", "seed": "7"}],
                   {"delivery": "failed", "latency": "unknown"},
                   str(failed_dir / "report.html"), str(failed_dir)),
        IndexEntry("test_x.py::test_skipped", "skipped", 0.01),
    ]


def test_totals_count_outcomes_and_check_verdicts(tmp_path: Path) -> None:
    t = totals(entries(tmp_path))
    assert t == {"tests": 3, "outcomes": {"passed": 1, "failed": 1, "skipped": 1},
                 "verdicts": {"ok": 1, "failed": 1, "unknown": 1}, "duration": 10.76}
    assert totals([]) == {"tests": 0, "outcomes": {},
                          "verdicts": {"ok": 0, "failed": 0, "unknown": 0}, "duration": 0.0}


def test_verdict_of_a_test() -> None:
    assert verdict_of(IndexEntry("a", "passed", verdicts={"d": "ok"})) == "ok"
    assert verdict_of(IndexEntry("a", "passed", verdicts={"d": "unknown"})) == "unknown"
    assert verdict_of(IndexEntry("a", "passed", verdicts={"d": "failed"})) == "failed"
    assert verdict_of(IndexEntry("a", "error")) == "failed"
    assert verdict_of(IndexEntry("a", None)) == "unknown"
    assert verdict_of(IndexEntry("a", "skipped")) == "ok"


def test_rows_have_relative_paths_seeds_and_replay(tmp_path: Path) -> None:
    d = index_dict(entries(tmp_path), tmp_path)
    rows = d["tests"]
    assert [r["nodeid"] for r in rows] == ["test_x.py::test_passes", "test_x.py::test_fails",
                                          "test_x.py::test_skipped"]
    assert rows[1]["report"] == "test_x.py__test_fails/report.html"
    assert rows[1]["logs"] == "test_x.py__test_fails"
    assert rows[1]["seeds"] == ["7"] and rows[0]["seeds"] == ["42"]
    assert rows[1]["replay"] == "python3 -m pytest test_x.py::test_fails"
    assert IndexEntry("t.py::f[a b]", "passed").replay == "python3 -m pytest 't.py::f[a b]'"
    assert rows[2]["report"] is None and rows[2]["logs"] is None
    # a path outside the folder stays absolute
    far = IndexEntry("a", "passed", report="/elsewhere/report.html").to_dict(tmp_path)
    assert far["report"] == "/elsewhere/report.html"


def test_index_round_trips_through_index_json(tmp_path: Path) -> None:
    original = entries(tmp_path)
    write_index(original, tmp_path)
    assert load_index(tmp_path) == original


def test_load_index_adds_report_json_files_the_index_does_not_list(tmp_path: Path) -> None:
    write_index(entries(tmp_path)[:1], tmp_path)
    extra = tmp_path / "test_y.py__test_other"
    (extra / "t-c").mkdir(parents=True)
    (extra / "report.html").write_text("<html></html>")
    (extra / "report.json").write_text(json.dumps({
        "nodeid": "test_y.py::test_other", "testnets": [NET], "timeline": [],
        "checks": [{"name": "delivery", "verdict": "failed"}]}))
    got = load_index(tmp_path)
    assert [e.nodeid for e in got] == ["test_x.py::test_passes", "test_y.py::test_other"]
    assert got[1] == IndexEntry("test_y.py::test_other", None, None, [NET],
                                {"delivery": "failed"}, str(extra / "report.html"), str(extra))


def test_load_index_errors_say_what_to_give(tmp_path: Path) -> None:
    with pytest.raises(RunFileError, match="not a folder"):
        load_index(tmp_path / "missing")
    with pytest.raises(RunFileError, match="neither index.json nor any report.json"):
        load_index(tmp_path)
    (tmp_path / "index.json").write_text('{"rows": []}')
    with pytest.raises(RunFileError, match="not a run index"):
        load_index(tmp_path)
    (tmp_path / "index.json").write_text('{"tests": [{"outcome": "passed"}]}')
    with pytest.raises(RunFileError, match="invalid"):
        load_index(tmp_path)


def test_page_is_self_contained_with_rows_links_and_totals(tmp_path: Path) -> None:
    page = render_index(entries(tmp_path), tmp_path)
    assert "http://" not in page and "https://" not in page and "<link" not in page
    assert page.count('<tr data-outcome="') == 3
    assert 'href="test_x.py__test_fails/report.html"' in page
    assert 'href="test_x.py__test_fails"' in page
    assert '<td class="outcome o-failed">failed</td>' in page
    assert "<b>1</b>checks unknown" in page and "<b>3</b>tests" in page
    assert 'class="badge v-failed">FAIL</span> testnet run' in page  # the run's worst verdict
    assert '<span class="seed">t-b: 7</span>' in page


def phase(outcome: str, **kw: Any) -> SimpleNamespace:
    return SimpleNamespace(failed=outcome == "failed", skipped=outcome == "skipped",
                           passed=outcome == "passed", **kw)


@pytest.mark.parametrize(("phases", "expected"), [
    ({"setup": phase("passed"), "call": phase("passed"), "teardown": phase("passed")}, "passed"),
    ({"setup": phase("passed"), "call": phase("failed"), "teardown": phase("passed")}, "failed"),
    ({"setup": phase("failed"), "teardown": phase("passed")}, "error"),
    ({"setup": phase("skipped"), "teardown": phase("passed")}, "skipped"),
    ({"setup": phase("passed"), "call": phase("passed"), "teardown": phase("failed")}, "error"),
    ({"setup": phase("passed"), "call": phase("skipped", wasxfail=""),
      "teardown": phase("passed")}, "xfailed"),
    ({"setup": phase("passed"), "call": phase("passed", wasxfail=""),
      "teardown": phase("passed")}, "xpassed"),
])
def test_outcome_from_phase_reports(phases: dict[str, Any], expected: str) -> None:
    assert outcome_of(phases) == expected


def test_cli_regenerates_the_index(tmp_path: Path) -> None:
    write_index(entries(tmp_path), tmp_path)
    (tmp_path / "index.html").unlink()
    res = CliRunner().invoke(main, ["report", "--index", str(tmp_path), "--json"])
    assert res.exit_code == 0, res.output
    out = json.loads(res.output)
    assert out["output"] == str(tmp_path / "index.html") and out["verdict"] == "failed"
    assert out["checks"] == {"test_x.py::test_passes": "ok", "test_x.py::test_fails": "failed",
                             "test_x.py::test_skipped": "ok"}
    assert (tmp_path / "index.html").stat().st_size == out["bytes"]


def test_cli_index_usage_and_errors(tmp_path: Path) -> None:
    res = CliRunner().invoke(main, ["report"])
    assert res.exit_code == 2 and "either RUN.json or --index" in res.output
    res = CliRunner().invoke(main, ["report", "x.json", "--index", str(tmp_path)])
    assert res.exit_code == 2
    res = CliRunner().invoke(main, ["report", "--index", str(tmp_path)])
    assert res.exit_code == 1 and "nothing to index" in res.output


def test_github_summary_names_the_index() -> None:
    text = github_summary({"passed": 1}, [], "https://h/o/r/actions/runs/1",
                          "testnet-artifacts/index.html")
    assert "`testnet-artifacts/index.html`" in text and "runs/1#artifacts" in text
    assert "index" not in github_summary({"passed": 1}, [])


def test_check_verdicts_from_results_else_from_the_written_report(tmp_path: Path) -> None:
    from harness.checks.result import CheckResult, Verdict
    from harness.pytest_runindex import check_verdicts

    (tmp_path / "report.json").write_text(json.dumps({"checks": [
        {"name": "delivery", "verdict": "failed"}, {"name": "latency", "verdict": "ok"}]}))
    page = str(tmp_path / "report.html")
    recorded = [CheckResult("censorship", Verdict.UNKNOWN, "no node censored")]
    assert check_verdicts(recorded, page) == {"censorship": "unknown"}
    assert check_verdicts([], page) == {"delivery": "failed", "latency": "ok"}
    assert check_verdicts([], None) == {}
    assert check_verdicts([], str(tmp_path / "elsewhere" / "report.html")) == {}
