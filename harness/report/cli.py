"""`testnet report RUN.json -o report.html`: the HTML report of a run, from what it wrote."""

from __future__ import annotations

import json
import time
from pathlib import Path

import click

from harness.cliutil import CliError, friendly_errors, json_option, output_option
from harness.report import html, index
from harness.report.load import RunFileError, load_run

REPORT_JSON = ('{"output", "bytes", "seconds", "verdict", "checks": {name: verdict}} (with '
               '--index: "checks" is {test id: verdict} and "verdict" the run\'s worst)')


@click.command("report")
@click.argument("run_file", metavar="RUN.json", type=click.Path(dir_okay=False), required=False)
@click.option("--index", "index_dir", metavar="ARTIFACTS_DIR", type=click.Path(file_okay=False),
              help="Render the run's index page instead, from ARTIFACTS_DIR's index.json and "
                   "the report.json files below it [default output: ARTIFACTS_DIR/index.html].")
@output_option("Write the HTML page to FILE [default: report.html beside RUN.json; with "
               "--index: ARTIFACTS_DIR/index.html].")
@json_option(REPORT_JSON)
@friendly_errors
def report_cmd(run_file: str | None, index_dir: str | None, output: str | None,
               as_json: bool) -> None:
    """Render the self-contained HTML report of a run from its report.json or history.json
    (a failed test's artifacts folder has both): check verdicts, replay commands, fault
    timeline, latency and delivery plots, the messages and links to the node logs.

    With --index ARTIFACTS_DIR: the index page of a pytest run (every test with a testnet:
    outcome, duration, verdicts, seed, links to its report and logs)."""
    if (run_file is None) == (index_dir is None):
        raise click.UsageError("give either RUN.json or --index ARTIFACTS_DIR (not both)")
    started = time.monotonic()
    if index_dir is not None:
        _index(index_dir, output, as_json, started)
        return
    assert run_file is not None
    try:
        report = load_run(run_file)
    except RunFileError as e:
        raise CliError(str(e)) from None
    out = Path(output) if output else Path(run_file).with_name("report.html")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(html.render(report, out.parent))
    seconds = round(time.monotonic() - started, 3)
    size = out.stat().st_size
    if as_json:
        click.echo(json.dumps({"output": str(out), "bytes": size, "seconds": seconds,
                               "verdict": report.verdict.value,
                               "checks": {r.name: r.verdict.value for r in report.results}}))
    else:
        click.echo(f"{out} ({size / 1024:.0f} KiB, {report.verdict.label}, "
                   f"rendered in {seconds:.2f}s)")


def _index(folder: str, output: str | None, as_json: bool, started: float) -> None:
    try:
        entries = index.load_index(folder)
    except RunFileError as e:
        raise CliError(str(e)) from None
    out = Path(output) if output else Path(folder) / index.INDEX_HTML
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(index.render_index(entries, out.parent))
    seconds = round(time.monotonic() - started, 3)
    size = out.stat().st_size
    verdicts = {e.nodeid: index.verdict_of(e) for e in entries}
    worst = next((v for v in ("failed", "unknown") if v in verdicts.values()), "ok")
    if as_json:
        click.echo(json.dumps({"output": str(out), "bytes": size, "seconds": seconds,
                               "verdict": worst, "checks": verdicts}))
    else:
        n_bad = sum(v == "failed" for v in verdicts.values())
        click.echo(f"{out} ({len(entries)} tests, {n_bad} failed, {size / 1024:.0f} KiB, "
                   f"rendered in {seconds:.2f}s)")


commands: list[click.Command] = [report_cmd]

__all__ = ["commands", "report_cmd"]
