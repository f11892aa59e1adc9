"""The run index of a pytest session (``<artifacts>/index.html`` and ``index.json``): one row per
test that used a testnet fixture or ``history`` (:mod:`harness.report.index`).

The session-testnet plugin puts each test's row on its teardown report as the attribute
:data:`RUN_ATTR` (a plain dict: pytest's report serialisation carries it from xdist workers to
the controller, so nothing is shared on disk); :class:`RunIndexWriter` collects the rows from
``pytest_runtest_logreport`` and, on the controller only, writes the index at session end.
"""

from __future__ import annotations

import json
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest

from harness.checks.result import CheckResult
from harness.report.index import IndexEntry, RunFileError, write_index

#: attribute of a test's teardown report: its index row (IndexEntry.to_dict())
RUN_ATTR = "testnet_run"
#: the written index.html (for the terminal and GitHub summaries)
INDEX_PATH = pytest.StashKey[Path]()


def outcome_of(phases: dict[str, Any]) -> str:
    """A test's outcome from its reports by phase (setup, call, teardown): error (setup or
    teardown failed), failed, skipped, xfailed, xpassed or passed."""
    setup, call, teardown = (phases.get(w) for w in ("setup", "call", "teardown"))
    if setup is not None and setup.failed:
        return "error"
    if setup is not None and setup.skipped:
        return "xfailed" if hasattr(setup, "wasxfail") else "skipped"
    if call is not None and hasattr(call, "wasxfail"):
        return "xfailed" if call.skipped else "xpassed"
    if call is not None and call.failed:
        return "failed"
    if call is not None and call.skipped:
        return "skipped"
    if teardown is not None and teardown.failed:
        return "error"
    return "passed"


def check_verdicts(results: Sequence[CheckResult], report: str | None) -> dict[str, str]:
    """A test's check verdicts: those its history recorded, else those of the report written
    for it (the default checks), read from the ``report.json`` beside ``report``."""
    if results:
        return {r.name: r.verdict.value for r in results}
    if report is None:
        return {}
    try:
        checks = json.loads(Path(report).with_name("report.json").read_text())["checks"]
        return {str(c["name"]): str(c["verdict"]) for c in checks}
    except (OSError, ValueError, KeyError, TypeError):
        return {}


class RunIndexWriter:
    """Collects the rows of the session's tests; the controller (not an xdist worker) writes
    the index into ``folder`` at session end. Registered by the session-testnet plugin."""

    def __init__(self, config: pytest.Config, folder: Path) -> None:
        self.config = config
        self.folder = folder
        self.entries: dict[str, IndexEntry] = {}

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        row = getattr(report, RUN_ATTR, None)
        if report.when == "teardown" and isinstance(row, dict):
            try:
                self.entries[report.nodeid] = IndexEntry.from_dict(row)
            except RunFileError as e:
                warnings.warn(pytest.PytestWarning(
                    f"session-testnet: run index row of {report.nodeid} ignored: {e}"),
                    stacklevel=1)

    def pytest_sessionfinish(self, session: pytest.Session) -> None:
        if hasattr(self.config, "workerinput") or not self.entries:
            return  # an xdist worker: its rows travel to the controller with its reports
        try:
            paths = write_index(list(self.entries.values()), self.folder)
        except OSError as e:
            tr = self.config.pluginmanager.get_plugin("terminalreporter")
            if tr is not None:
                tr.write_line(f"session-testnet: run index not written to {self.folder}: {e}")
            return
        self.config.stash[INDEX_PATH] = paths["html"]


__all__ = ["INDEX_PATH", "RUN_ATTR", "RunIndexWriter", "check_verdicts", "outcome_of"]
