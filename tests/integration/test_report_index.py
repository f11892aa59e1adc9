"""The run index of a pytest run with testnets (an inner pytest on the process backend): one
passing and one failing test using testnet_factory + history, plus one test without testnets;
``index.html`` / ``index.json`` list the two testnet tests with the right outcome, seed and
verdicts, and their links resolve to files that exist. Again with ``-n 2`` when pytest-xdist
is installed (rows travel from the workers to the controller on the reports)."""

from __future__ import annotations

import importlib.util
import json
import os
import secrets
from html.parser import HTMLParser
from pathlib import Path

import pytest
from click.testing import CliRunner

from harness.backends.process import _all_marked
from harness.cli import main
from harness.state import state_home

pytest_plugins = ["pytester"]
pytestmark = pytest.mark.integration

INNER = """
from harness.checks import delivery


def test_passes(testnet_factory, history):
    net = testnet_factory(swarms=1, swarm_size=4, proxies=False, seed="1234")
    alice, bob = history.client(net), history.client(net)
    alice.send(bob.session_id, "hello")
    bob.wait_for(count=1, timeout=20)
    history.require(delivery(history.collect()))


def test_fails(testnet_factory, history):
    net = testnet_factory(swarms=1, swarm_size=4, proxies=False, seed="5678")
    alice, bob = history.client(net), history.client(net)
    alice.send(bob.session_id, "hello")
    assert False, "deliberate failure"


def test_without_testnet():
    pass
"""


class Links(HTMLParser):
    """Per row of #tests: its cells' text and its links."""

    def __init__(self) -> None:
        super().__init__()
        self.rows: list[dict[str, list[str]]] = []
        self.in_body = False
        self.cell: list[str] | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "tbody":
            self.in_body = True
        elif self.in_body and tag == "tr":
            self.rows.append({"cells": [], "links": []})
        elif self.in_body and tag == "td":
            self.cell = []
        elif self.in_body and tag == "a":
            self.rows[-1]["links"].append(str(dict(attrs)["href"]))

    def handle_endtag(self, tag: str) -> None:
        if tag == "td" and self.cell is not None:
            self.rows[-1]["cells"].append("".join(self.cell).strip())
            self.cell = None
        elif tag == "tbody":
            self.in_body = False

    def handle_data(self, data: str) -> None:
        if self.cell is not None:
            self.cell.append(data)


def xdist_modes() -> list[list[str]]:
    modes = [[]]
    if importlib.util.find_spec("xdist") is not None:
        modes.append(["-n", "2"])
    return modes


@pytest.mark.parametrize("extra", xdist_modes(), ids=lambda a: "xdist" if a else "serial")
def test_run_index_lists_testnet_tests_with_outcomes_and_links(
        pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch, tmp_path: Path,
        extra: list[str]) -> None:
    monkeypatch.delenv("SESSION_TESTNET_BACKEND", raising=False)
    summary = tmp_path / "step-summary.md"
    monkeypatch.setenv("GITHUB_STEP_SUMMARY", str(summary))
    monkeypatch.setenv("GITHUB_WORKSPACE", str(pytester.path))
    prefix = f"x{secrets.token_hex(3)}"
    pytester.makepyfile(test_inner=INNER)
    result = pytester.runpytest_subprocess(
        "-p", "no:cacheprovider", "--testnet-backend", "process", "--testnet-prefix", prefix,
        "--testnet-reports", "all", *extra)
    result.assert_outcomes(passed=2, failed=1)
    root = pytester.path / "testnet-artifacts"
    page = root / "index.html"
    assert page.is_file()
    result.stdout.fnmatch_lines([f"run index (every test with a testnet): {page}"])
    assert "testnet-artifacts/index.html" in summary.read_text()

    # index.json: the two testnet tests, not the one without
    index = json.loads((root / "index.json").read_text())
    rows = {t["nodeid"]: t for t in index["tests"]}
    assert set(rows) == {"test_inner.py::test_passes", "test_inner.py::test_fails"}
    passed, failed = rows["test_inner.py::test_passes"], rows["test_inner.py::test_fails"]
    assert (passed["outcome"], failed["outcome"]) == ("passed", "failed")
    assert passed["seeds"] == ["1234"] and failed["seeds"] == ["5678"]
    assert passed["verdicts"] == {"delivery": "ok"}
    assert set(failed["verdicts"]) == {"delivery", "latency"}  # the default checks
    assert passed["duration"] > 0 and failed["duration"] > 0
    assert index["totals"]["outcomes"] == {"passed": 1, "failed": 1}
    # --testnet-reports all: the passing test has a report too; logs only for the failed one
    assert passed["report"] and passed["logs"] is None
    assert failed["report"] and failed["logs"]
    for row in (passed, failed):
        assert (root / row["report"]).is_file()
    assert (root / failed["logs"]).is_dir()

    # index.html: both rows, the outcome in its column, every link resolves to a file
    links = Links()
    links.feed(page.read_text())
    by_test = {r["cells"][0]: r for r in links.rows}
    assert set(by_test) == set(rows)
    assert by_test["test_inner.py::test_passes"]["cells"][1] == "passed"
    assert by_test["test_inner.py::test_fails"]["cells"][1] == "failed"
    assert len(by_test["test_inner.py::test_fails"]["links"]) == 2  # report and logs
    for r in links.rows:
        for href in r["links"]:
            assert not os.path.isabs(href) and (root / href).exists(), href

    # regenerated from the folder: the same rows
    out = tmp_path / "again.html"
    res = CliRunner().invoke(main, ["report", "--index", str(root), "-o", str(out), "--json"])
    assert res.exit_code == 0, res.output
    assert json.loads(res.output)["checks"] == {"test_inner.py::test_passes": "ok",
                                                "test_inner.py::test_fails": "failed"}
    assert out.is_file()

    nets = sorted(p.name for p in (state_home() / "networks").glob(f"{prefix}*"))
    marks = str(state_home() / "networks" / prefix)
    assert nets == [] and not [p for p, m in _all_marked().items() if m.startswith(marks)]
