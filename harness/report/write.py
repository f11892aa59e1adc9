"""Writing a run's report files into one folder."""

from __future__ import annotations

from pathlib import Path

from harness.report import html, markdown
from harness.report.model import Report


def write(report: Report, folder: str | Path, *, with_history: bool = True,
          with_html: bool = True) -> dict[str, Path]:
    """Write ``report.md``, ``report.json``, ``history.json`` and ``report.html`` into
    ``folder``; returns their paths by kind (markdown, json, history, html)."""
    d = Path(folder)
    d.mkdir(parents=True, exist_ok=True)
    paths = {"markdown": d / "report.md", "json": d / "report.json"}
    paths["markdown"].write_text(markdown.render(report))
    paths["json"].write_text(report.to_json())
    if with_history:
        paths["history"] = report.history.save(d / "history.json")
    if with_html:
        paths["html"] = d / "report.html"
        paths["html"].write_text(html.render(report, d))
    return paths


__all__ = ["write"]
