"""`testnet churn` and `testnet schedule generate|run`: seeded fault schedules from the shell."""

from __future__ import annotations

from typing import Any

import click

from harness.cliutil import CliError, attach, friendly_errors, name_option
from harness.faults.cli_common import EVENTS_JSON_HELP, emit, open_faults, report_run
from harness.faults.families.registry import DEFAULT_MIX, DEFAULT_REGISTRY
from harness.faults.replay import run_file_events
from harness.faults.runner import run
from harness.faults.schedule import Schedule
from harness.faults.targets import Target, TargetError, live_view
from harness.faults.timeline import Timeline
from harness.network import Testnet

#: the actions churn can take nodes out with (the exclusive kinds), by CLI option
CHURN_ACTIONS = {k.verb: k.action for k in DEFAULT_REGISTRY if k.exclusive}


def _churn_options(fn: Any) -> Any:
    for verb in sorted(CHURN_ACTIONS, reverse=True):
        fn = click.option(f"--{verb}", f"churn_{CHURN_ACTIONS[verb]}", type=int, default=None,
                          metavar="N", help=f"{verb.capitalize()} N nodes per round.")(fn)
    return fn


@click.command("churn")
@name_option
@_churn_options
@click.option("--interval", type=float, required=True, help="Seconds per round.")
@click.option("--duration", type=float, required=True, help="Total seconds.")
@click.option("--seed", default=None, help="Seed [default: the testnet seed].")
@click.option("--unsafe", is_flag=True,
              help="Allow taking every member of a swarm out at once.")
@click.option("--output", "-o", type=click.Path(dir_okay=False), default=None,
              help="Also write the generated schedule to FILE.")
@click.option("--json", "as_json", is_flag=True, help=EVENTS_JSON_HELP)
@friendly_errors
def churn_cmd(name: str, interval: float, duration: float, seed: str | None, unsafe: bool,
              output: str | None, as_json: bool, **counts: int | None) -> None:
    """Every --interval seconds take N random nodes out and bring the previous ones back, for
    --duration seconds. Keeps one member of every swarm up unless --unsafe."""
    chosen = {k.removeprefix("churn_"): n for k, n in counts.items() if n is not None}
    if len(chosen) != 1:
        raise click.UsageError("give exactly one of "
                               + "/".join(f"--{v}" for v in sorted(CHURN_ACTIONS)) + " N")
    (action, count), = chosen.items()
    faults = open_faults(name, seed)
    net = faults.net
    swarms = None if unsafe else live_view(net.state).swarms()
    schedule = Schedule.churn(faults.seed, duration, interval, nodes=[n.name for n in net.nodes],
                              count=count, action=action, swarms=swarms)
    if output:
        schedule.save(output)
    report_run(run(schedule, faults, on_event=lambda ev: emit(ev, as_json)))


@click.group("schedule")
def schedule_group() -> None:
    """Seeded, replayable fault schedules (JSON files, see docs/faults.md)."""


@schedule_group.command("run")
@name_option
@click.argument("file", type=click.Path(dir_okay=False))
@click.option("--output", "-o", type=click.Path(dir_okay=False), default=None,
              help="Also write this run's events to FILE (JSON lines).")
@click.option("--stop-on-error", is_flag=True)
@click.option("--json", "as_json", is_flag=True, help=EVENTS_JSON_HELP)
@friendly_errors
def schedule_run_cmd(name: str, file: str, output: str | None, stop_on_error: bool,
                     as_json: bool) -> None:
    """Apply the steps of FILE at their times; timed faults are removed when due. Ctrl-C stops
    the run and removes the timed faults in force."""
    schedule = Schedule.load(file)
    faults = open_faults(name)
    result = run(schedule, faults, stop_on_error=stop_on_error,
                 on_event=lambda ev: emit(ev, as_json))
    if output:
        tl = Timeline()
        tl.events = list(result.events)
        tl.save(output)
    report_run(result)


@schedule_group.command("from-report")
@name_option
@click.argument("run_file", metavar="RUN.json", type=click.Path(dir_okay=False))
@click.option("--seed", default=None,
              help="Schedule seed [default: the run's testnet seed, from the report].")
@click.option("--schedule-name", default="replay", show_default=True)
@click.option("--output", "-o", type=click.Path(dir_okay=False), default=None,
              help="Write the schedule to FILE instead of stdout.")
@click.pass_context
@friendly_errors
def schedule_from_report_cmd(ctx: click.Context, name: str, run_file: str, seed: str | None,
                             schedule_name: str, output: str | None) -> None:
    """The fault schedule a run applied, from its report.json or history.json: one step per
    fault, on the nodes it hit, with its parameters, start (seconds after the first fault) and
    duration. `testnet schedule run FILE` on a testnet with the run's seed reproduces it. With
    -n (or SESSION_TESTNET_NAME) the testnet is checked to have every node the schedule names
    and the run's seed."""
    events, run_seed = run_file_events(run_file)
    schedule = Schedule.from_timeline(events, seed=seed or run_seed or "0", name=schedule_name)
    if not schedule.steps:
        raise CliError(f"{run_file}: the run applied no fault (its timeline has no successful "
                       "apply event): there is nothing to replay")
    if ctx.get_parameter_source("name") not in (click.core.ParameterSource.DEFAULT, None):
        _check_replay_testnet(name, schedule)
    if output:
        schedule.save(output)
        click.echo(f"{len(schedule.steps)} steps written to {output}", err=True)
    else:
        click.echo(schedule.dumps(), nl=False)


def _check_replay_testnet(name: str, schedule: Schedule) -> None:
    """The testnet ``name`` can replay ``schedule``: it has every node the steps name, and the
    schedule's seed (same keys and swarms)."""
    net = attach(name)
    known = {n.name for n in net.nodes}
    named = {n for s in schedule.steps for t in [s.target, *s.params.values()]
             if isinstance(t, Target) and t.kind == "nodes" for n in t.names}
    missing = sorted(named - known)
    if missing:
        raise CliError(f"testnet {name!r} has no node(s) {', '.join(missing)} that the run's "
                       f"faults hit (nodes: {', '.join(sorted(known))}); bring one up with the "
                       "run's topology")
    if str(net.topology.seed) != schedule.seed:
        raise CliError(f"testnet {name!r} has seed {net.topology.seed!r}, the run had "
                       f"{schedule.seed!r}: the same node names would be other keys and swarms; "
                       f"use 'testnet up --seed {schedule.seed}' (or --seed to override)")


def _parse_mix(text: str | None) -> dict[str, float] | None:
    if not text:
        return None
    mix = {}
    for part in text.split(","):
        action, sep, weight = part.partition("=")
        try:
            mix[action.strip()] = float(weight) if sep else 1.0
        except ValueError:
            raise click.BadParameter(f"{part!r}: write ACTION=WEIGHT", param_hint="--mix") from None
    return mix


def _roles(values: tuple[str, ...]) -> list[Target] | None:
    try:
        return [Target.parse(r) for r in values] or None
    except TargetError as e:
        raise click.BadParameter(str(e), param_hint="--role") from None


@schedule_group.command("generate")
@name_option
@click.option("--seed", default=None,
              help="Schedule seed [default: the seed of the testnet -n].")
@click.option("--duration", type=float, required=True, help="Seconds.")
@click.option("--nodes", default=None,
              help="Explicit node names to draw from (sn01,sn02,…) [default: the nodes of the "
                   "testnet when it is used].")
@click.option("--role", "roles", multiple=True,
              help="Target spec resolved at run time (repeatable), e.g. random:1, guard.")
@click.option("--mix", default=None,
              help=f"ACTION=WEIGHT,… [default: {','.join(f'{k}={v:g}' for k, v in DEFAULT_MIX.items())}]")
@click.option("--gap", type=(float, float), default=(1.0, 5.0), show_default=True,
              help="Min and max seconds between steps.")
@click.option("--length", type=(float, float), default=(2.0, 10.0), show_default=True,
              help="Min and max seconds a fault lasts.")
@click.option("--max-down", type=int, default=1, show_default=True,
              help="Disruptive faults (kill, pause, down, partition, …) in force at once.")
@click.option("--schedule-name", default="schedule", show_default=True)
@click.option("--output", "-o", type=click.Path(dir_okay=False), default=None,
              help="Write the schedule to FILE instead of stdout.")
@click.pass_context
@friendly_errors
def schedule_generate_cmd(ctx: click.Context, name: str, seed: str | None, duration: float,
                          nodes: str | None, roles: tuple[str, ...], mix: str | None,
                          gap: tuple[float, float], length: tuple[float, float], max_down: int,
                          schedule_name: str, output: str | None) -> None:
    """Generate a schedule (JSON, the file format) from a seed: same seed and options, same
    schedule. The testnet -n is read (and must exist) when it is named explicitly (-n or
    SESSION_TESTNET_NAME) or when --seed is not given: its seed, and its nodes unless --nodes
    or --role are given."""
    node_list = [n.strip() for n in nodes.split(",") if n.strip()] if nodes else None
    role_list = _roles(roles)
    source = ctx.get_parameter_source("name")
    if seed is None or source not in (click.core.ParameterSource.DEFAULT, None):
        net = Testnet.attach(name)
        seed = seed if seed is not None else str(net.topology.seed)
        known = [n.name for n in net.nodes]
        if node_list is None and role_list is None:
            node_list = known
        unknown = sorted(set(node_list or ()) - set(known))
        if unknown:
            raise click.BadParameter(f"no node(s) {', '.join(unknown)} in testnet {name!r} "
                                     f"(nodes: {', '.join(known)})", param_hint="--nodes")
    schedule = Schedule.generate(seed, duration, nodes=node_list, roles=role_list,
                                 mix=_parse_mix(mix), name=schedule_name, gap=gap, length=length,
                                 max_down=max_down)
    if output:
        schedule.save(output)
        click.echo(f"{len(schedule.steps)} steps written to {output}", err=True)
    else:
        click.echo(schedule.dumps(), nl=False)


__all__ = ["churn_cmd", "schedule_group"]
