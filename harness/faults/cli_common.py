"""What the fault commands share: opening a testnet's faults with its timeline file, the
target argument type, and printing events (text or JSON lines)."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import click

from harness.faults.actions import Faults
from harness.faults.fault import Fault
from harness.faults.runner import RealClock, RunResult
from harness.faults.targets import Target, TargetError
from harness.faults.timeline import Event, Timeline
from harness.network import Testnet
from harness.state import StateDir

TIMELINE_FILE = "faults.jsonl"

#: the --json shape of every command that prints events
EVENTS_JSON_HELP = ("Print events as JSON lines: one object per event with action, phase, "
                    "nodes, target, params, links, result, error, step, wall, offset, seq.")

TARGET_HELP = ("Targets: node names (sn01,sn02), all, random:N, random:P%, swarm:ID[:N], "
               "swarm-of:SESSION_ID[:N]; a target that cannot be met (unknown node, random:9 "
               "of 6 nodes) is an error.")


def timeline_path(name: str) -> Path:
    return StateDir(name).path / TIMELINE_FILE


def open_faults(name: str, seed: str | None = None) -> Faults:
    """A :class:`Faults` on testnet ``name`` (an error if there is none) that appends to the
    testnet's timeline file. Its random draws continue the sequence of earlier invocations
    (call i of the testnet's life)."""
    net = Testnet.attach(name)
    path = timeline_path(name)
    earlier = sum(1 for line in path.open() if line.strip()) if path.exists() else 0
    return Faults(net, Timeline(path), seed=seed, first_call=earlier)


class TargetType(click.ParamType):
    """A target argument, parsed once here (a malformed one is a usage error)."""

    name = "target"

    def convert(self, value: Any, param: click.Parameter | None,
                ctx: click.Context | None) -> Target:
        if isinstance(value, Target):
            return value
        try:
            return Target.parse(str(value))
        except TargetError as e:
            self.fail(str(e), param, ctx)


TARGET = TargetType()


def emit(ev: Event | None, as_json: bool, wall: bool = False) -> None:
    if ev is None:
        return
    if as_json:
        click.echo(json.dumps(ev.to_json(), sort_keys=True, default=str))
    else:
        click.echo(ev.describe(wall=wall))


def warn_errors(ev: Event | None) -> None:
    """Errors a fault reported without failing (nodes that did not answer a reset)."""
    result = ev.result if ev is not None else None
    if isinstance(result, dict):
        for err in result.get("errors", []):
            click.echo(f"warning: {err}", err=True)


def hold(faults: Faults, fault: Fault, duration: float | None, as_json: bool) -> None:
    """Print the fault's event; with ``duration`` keep the fault for that long (Ctrl-C ends
    early), then remove it."""
    emit(fault.event, as_json)
    warn_errors(fault.event)
    if duration is None:
        return
    clock = RealClock()
    try:
        clock.sleep_until(clock.monotonic() + duration)
    except KeyboardInterrupt:
        click.echo("interrupted: removing the fault", err=True)
    emit(faults.remove(fault), as_json)


def report_run(result: RunResult) -> None:
    for err in result.errors:
        click.echo(f"error: {err}", err=True)
    if result.interrupted:
        click.echo("schedule interrupted; timed faults were removed", err=True)
    if not result.ok:
        sys.exit(1)


__all__ = ["EVENTS_JSON_HELP", "TARGET", "TARGET_HELP", "TIMELINE_FILE", "TargetType", "emit",
           "hold", "open_faults", "report_run", "timeline_path", "warn_errors"]
