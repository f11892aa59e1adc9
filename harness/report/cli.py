"""`testnet report RUN.json -o report.html`: the HTML report of a run, from what it wrote."""

from __future__ import annotations

import json
import time
from pathlib import Path

import click

from harness.cliutil import CliError, friendly_errors, json_option, output_option
from harness.report import html
from harness.report.load import RunFileError, load_run

REPORT_JSON = '{"output", "bytes", "seconds", "verdict", "checks": {name: verdict}}'


@click.command("report")
@click.argument("run_file", metavar="RUN.json", type=click.Path(dir_okay=False))
@output_option("Write the HTML report to FILE [default: report.html beside RUN.json].")
@json_option(REPORT_JSON)
@friendly_errors
def report_cmd(run_file: str, output: str | None, as_json: bool) -> None:
    """Render the self-contained HTML report of a run from its report.json or history.json
    (a failed test's artifacts folder has both): check verdicts, replay commands, fault
    timeline, latency and delivery plots, the messages and links to the node logs."""
    started = time.monotonic()
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


commands: list[click.Command] = [report_cmd]

__all__ = ["commands", "report_cmd"]
