"""Reports of a run: what failed, why, and what it looked like.

- :class:`Report` (:mod:`harness.report.model`): the checks explained against the history;
  ``report.md`` (:mod:`.markdown`), ``report.json``, and one self-contained ``report.html``
  (:mod:`.html`, figures by :mod:`.plots` from the pure data of :mod:`.data`);
- :func:`load_run` (:mod:`.load`): a report back from the ``report.json`` or ``history.json``
  a run wrote (``testnet report RUN.json -o report.html``, :mod:`.cli`).

    report = Report.build(results, history, log_paths={"sn01": "…/sn01.log"})
    write(report, folder)        # report.md + report.json + report.html + history.json
"""

from __future__ import annotations

from typing import Any

from harness.checks.history import History
from harness.checks.result import CheckResult
from harness.report import html, markdown
from harness.report.load import RunFileError, load_run
from harness.report.model import Report
from harness.report.windows import FaultWindow, fault_windows
from harness.report.write import write


def render_markdown(results: list[CheckResult], history: History, **kw: Any) -> str:
    return markdown.render(Report.build(results, history, **kw))


def render_json(results: list[CheckResult], history: History, **kw: Any) -> dict[str, Any]:
    return Report.build(results, history, **kw).to_dict()


def render_html(results: list[CheckResult], history: History, **kw: Any) -> str:
    return html.render(Report.build(results, history, **kw))


__all__ = ["FaultWindow", "Report", "RunFileError", "fault_windows", "load_run", "render_html",
           "render_json", "render_markdown", "write"]
