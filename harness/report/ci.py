"""What CI servers read about a run's reports: the ``[[ATTACHMENT|path]]`` lines Jenkins
(JUnit attachments plugin) and GitLab read from a test case's ``system-out``, and the Markdown
summary GitHub Actions shows from ``$GITHUB_STEP_SUMMARY``."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass


def attachment_lines(paths: Sequence[str]) -> str:
    """``[[ATTACHMENT|/abs/path]]``, one line per file."""
    return "".join(f"[[ATTACHMENT|{p}]]\n" for p in paths)


@dataclass(frozen=True)
class FailedTest:
    nodeid: str
    folder: str
    report: str | None = None


def run_url(env: Mapping[str, str]) -> str | None:
    """The GitHub Actions run's page (where its uploaded artifacts are listed), from the
    variables the runner sets."""
    keys = ("GITHUB_SERVER_URL", "GITHUB_REPOSITORY", "GITHUB_RUN_ID")
    if not all(env.get(k) for k in keys):
        return None
    return f"{env['GITHUB_SERVER_URL']}/{env['GITHUB_REPOSITORY']}/actions/runs/{env['GITHUB_RUN_ID']}"


def _cell(text: str) -> str:
    return text.replace("|", "\\|")


def github_summary(counts: Mapping[str, int], failed: Sequence[FailedTest],
                   url: str | None = None, index: str | None = None) -> str:
    """The step summary: a pass/fail table, the run index page, then each failed test with its
    artifacts and report (paths inside the uploaded ``testnet-artifacts`` artifact)."""
    order = ("passed", "failed", "error", "skipped", "xfailed", "xpassed")
    shown = [k for k in order if counts.get(k)] or ["passed"]
    out = ["## session-testnet", "", "| " + " | ".join(shown) + " |",
           "| " + " | ".join("---" for _ in shown) + " |",
           "| " + " | ".join(str(counts.get(k, 0)) for k in shown) + " |", ""]
    if index:
        where = f" (in the [artifacts of this run]({url}#artifacts))" if url else ""
        out += [f"Run index (every test with a testnet, its outcome, checks and report): "
                f"`{_cell(index)}`{where}", ""]
    if failed:
        where = f" ([artifacts of this run]({url}#artifacts))" if url else ""
        out += [f"### Failed tests with testnet artifacts{where}", "",
                "| test | report | artifacts folder |", "| --- | --- | --- |"]
        out += [f"| `{_cell(f.nodeid)}` | {f'`{_cell(f.report)}`' if f.report else '-'} | "
                f"`{_cell(f.folder)}` |" for f in failed]
        out.append("")
    return "\n".join(out) + "\n"


__all__ = ["FailedTest", "attachment_lines", "github_summary", "run_url"]
