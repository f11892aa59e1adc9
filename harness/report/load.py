"""A report back from what a run wrote: its ``report.json`` (with the ``history.json`` beside
it) or its ``history.json`` (with the ``report.json`` beside it, for the check results)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from harness.checks import delivery, latency
from harness.checks.history import History
from harness.checks.result import CheckResult
from harness.jsonfile import load_json
from harness.report.model import Report

REPORT_KEYS = {"checks", "timeline"}
HISTORY_KEYS = {"records", "events"}


class RunFileError(ValueError):
    """The file is not a run's report.json or history.json (the message says which and why)."""


def kind_of(data: Any, path: Path) -> str:
    """``"report"`` or ``"history"``, from the keys of the file's JSON object."""
    if isinstance(data, dict) and REPORT_KEYS <= set(data):
        return "report"
    if isinstance(data, dict) and HISTORY_KEYS <= set(data):
        return "history"
    raise RunFileError(f"{path} is neither a run's report.json (keys {sorted(REPORT_KEYS)}) nor "
                       f"its history.json (keys {sorted(HISTORY_KEYS)}); give the report.json "
                       "or history.json from a test's artifacts folder")


def _history(path: Path, report: dict[str, Any]) -> History:
    """The history beside a report.json, else the timeline the report itself carries."""
    beside = path.with_name("history.json")
    if beside.is_file():
        return _parse_history(load_json(beside, "history", RunFileError), beside)
    return _parse_history({"events": report.get("timeline", [])}, path)


def _parse_history(data: Any, path: Path) -> History:
    try:
        return History.from_dict(data)
    except (TypeError, ValueError, KeyError, AttributeError) as e:
        raise RunFileError(f"{path}: not a valid history: {e}") from None


def _report_beside(path: Path) -> dict[str, Any] | None:
    beside = path.with_name("report.json")
    if not beside.is_file():
        return None
    data = load_json(beside, "report", RunFileError)
    return data if isinstance(data, dict) and REPORT_KEYS <= set(data) else None


def _results(report: dict[str, Any] | None, history: History) -> list[CheckResult]:
    if report is None:  # only a history: the default checks, computed now (they are pure)
        return [delivery(history), latency(history)]
    try:
        return [CheckResult.from_dict(c) for c in report.get("checks", [])]
    except (TypeError, ValueError, KeyError) as e:
        raise RunFileError(f"report.json: a check result is invalid: {e}") from None


def load_run(path: str | Path) -> Report:
    """The :class:`Report` of the run that wrote ``path`` (its report.json or history.json)."""
    p = Path(path)
    data = load_json(p, "run", RunFileError)
    if kind_of(data, p) == "report":
        meta: dict[str, Any] | None = data
        history = _history(p, data)
    else:
        meta = _report_beside(p)
        history = _parse_history(data, p)
    meta = meta or {}
    logs = {n: str(v) for n, v in (meta.get("logs") or {}).items()
            if isinstance(v, str) and v.endswith(".log")}
    return Report.build(_results(meta or None, history), history, log_paths=logs,
                        title=str(meta.get("title") or f"report of {p.parent.name or p.name}"),
                        testnet=meta.get("testnet"), testnets=list(meta.get("testnets") or []),
                        nodeid=meta.get("nodeid"))


__all__ = ["RunFileError", "kind_of", "load_run"]
