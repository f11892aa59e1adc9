"""`testnet fault …`, `testnet partition`, `testnet heal` (verbs made from the fault registry),
plus `testnet churn` and `testnet schedule …` (:mod:`harness.faults.cli_schedule`).

Registered by harness/cli.py through ``commands``. Faults live in Toxiproxy and in the nodes, so
each command is a fresh process that rediscovers them (``clear``/``heal`` work from any shell).
Every applied/removed fault is appended to ``<testnet state folder>/faults.jsonl`` (the
timeline reports read; ``testnet fault log`` prints it).

Each registered fault kind becomes one command: its verb (``kind.verb``) under ``testnet
fault`` (or top level when ``kind.cli_group`` is ``""``), its target as an argument (parsed
here, once), one option per :class:`~harness.faults.families.base.Param`, ``--duration`` when
it can be undone, ``--seed`` when it has a target, ``--json`` and ``-n/--name``.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from functools import wraps
from typing import Any

import click

from harness.cliutil import friendly_errors, name_option
from harness.faults.cli_common import (
    EVENTS_JSON_HELP,
    TARGET,
    TARGET_HELP,
    emit,
    hold,
    open_faults,
    timeline_path,
)
from harness.faults.cli_schedule import churn_cmd, schedule_group
from harness.faults.families.base import FaultKind, Param, ParamError
from harness.faults.families.registry import DEFAULT_REGISTRY, Registry
from harness.faults.fault import FaultError
from harness.faults.targets import Target, TargetError
from harness.faults.timeline import Timeline
from harness.faults.toxiproxy import ToxiproxyError
from harness.state import StateDir

#: how a Param's type is read on the command line (targets: as text, parsed by the kind)
_CLICK_TYPES: dict[type, Any] = {int: int, float: float, bool: bool, str: str, Target: str}


@click.group("fault")
def fault_group() -> None:
    """Network and node faults: Toxiproxy toxics, link faults, clock skew, misbehaviour, churn.

    NODE is a target: node names (sn01,sn02), all, random:N, random:P%, swarm:ID[:N],
    swarm-of:SESSION_ID[:N]. --link A:B applies a toxic only to A's traffic to B. With --json
    every command prints its events as JSON lines (one Event object per line).
    """


def _option(p: Param) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    dest = f"p_{p.name}"
    flag = p.name.replace("_", "-")
    if p.type is bool:
        decl = p.cli or f"--{flag}/--no-{flag}"
        default = None if p.required else p.default
        return click.option(decl, dest, default=default, show_default=default is not None,
                            help=p.help)
    kind = click.Choice(p.choices) if p.choices else _CLICK_TYPES[p.type]
    return click.option(p.cli or f"--{flag}", dest, type=kind, required=p.required,
                        default=None if p.required else p.default,
                        show_default=not p.required and p.default is not None, help=p.help)


def kind_command(kind: FaultKind) -> click.Command:
    """The CLI command of one fault kind."""
    targeted = kind.target != "none"

    def command(name: str, target: Target | None = None, duration: float | None = None,
                seed: str | None = None, as_json: bool = False, **raw: Any) -> None:
        given = {p.name: raw[f"p_{p.name}"] for p in kind.params}
        try:
            target, given = kind.cli_inputs(target, given)
            params = kind.parse(given)
        except (ParamError, TargetError) as e:
            raise click.UsageError(str(e)) from None
        faults = open_faults(name, seed)
        hold(faults, faults.apply_kind(kind, target, params), duration, as_json)

    fn: Callable[..., Any] = friendly_errors(command)
    fn = click.option("--json", "as_json", is_flag=True, help=EVENTS_JSON_HELP)(fn)
    if targeted:
        fn = click.option("--seed", default=None,
                          help="Seed of random targets [default: the testnet seed].")(fn)
    if kind.reversible:
        fn = click.option("--duration", type=float, default=None,
                          help="Remove the fault after this many seconds (default: keep it "
                               "until removed, e.g. by 'testnet fault clear').")(fn)
    for p in reversed(kind.params):
        fn = _option(p)(fn)
    if targeted:
        required = kind.target == "required" and not kind.cli_target_optional
        metavar = kind.cli_target_name if required else f"[{kind.cli_target_name}]"
        fn = click.argument("target", metavar=metavar, type=TARGET, required=required)(fn)
    fn = name_option(fn)
    epilog = TARGET_HELP if targeted else None
    return click.command(kind.verb, help=kind.summary, epilog=epilog)(fn)


def kind_commands(registry: Registry = DEFAULT_REGISTRY) -> dict[str, list[click.Command]]:
    """CLI group ("fault" or "" for top level) -> the commands of the registry's kinds."""
    out: dict[str, list[click.Command]] = {}
    for kind in registry:
        out.setdefault(kind.cli_group, []).append(kind_command(kind))
    return out


def _toxiproxy_errors(fn: Callable[..., Any]) -> Callable[..., Any]:
    """Direct Toxiproxy errors (inspection) become FaultError, which friendly_errors reports."""
    @wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except ToxiproxyError as e:
            raise FaultError(str(e)) from e

    return wrapper


@fault_group.command("status")
@name_option
@click.option("--json", "as_json", is_flag=True,
              help='Print {"nodes": {NODE: {"enabled", "toxics"}}, "links": {"A->B": '
                   '{"enabled", "listen", "toxics"}}}.')
@friendly_errors
@_toxiproxy_errors
def status_cmd(name: str, as_json: bool) -> None:
    """Network faults in force now (read from Toxiproxy)."""
    st = open_faults(name).status()
    if as_json:
        click.echo(json.dumps(st, indent=2))
        return
    quiet = True
    for node, p in st["nodes"].items():
        if p["toxics"] or not p["enabled"]:
            quiet = False
            toxics = ", ".join(f"{t['type']}({t['stream']}) {t['attributes']}" for t in p["toxics"])
            click.echo(f"{node}: {'DOWN ' if not p['enabled'] else ''}{toxics}")
    for link, p in st["links"].items():
        quiet = False
        toxics = ", ".join(f"{t['type']}({t['stream']}) {t['attributes']}" for t in p["toxics"])
        click.echo(f"{link}: {'CUT ' if not p['enabled'] else ''}{toxics}")
    if quiet:
        click.echo("no network faults")


@fault_group.command("log")
@name_option
@click.option("--json", "as_json", is_flag=True, help=EVENTS_JSON_HELP)
@friendly_errors
def log_cmd(name: str, as_json: bool) -> None:
    """Print the fault timeline of the testnet (an error if there is no such testnet)."""
    path = timeline_path(name)
    if not path.exists():
        StateDir(name).load()  # no testnet of that name: a StateError says so
        if not as_json:
            click.echo("no faults recorded")
        return
    for ev in Timeline.load(path):
        emit(ev, as_json, wall=True)


def _register(registry: Registry = DEFAULT_REGISTRY) -> list[click.Command]:
    groups = kind_commands(registry)
    for cmd in groups.pop("fault", []):
        fault_group.add_command(cmd)
    if set(groups) - {""}:
        raise ValueError(f"unknown CLI group(s) of fault kinds: {', '.join(sorted(groups))}")
    return groups.get("", [])


commands: list[click.Command] = [fault_group, *_register(), churn_cmd, schedule_group]

__all__ = ["commands", "fault_group", "kind_command", "kind_commands"]
