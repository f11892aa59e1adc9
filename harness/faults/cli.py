"""`testnet fault …`, `testnet churn`, `testnet partition`, `testnet heal`, `testnet schedule …`.

Registered by harness/cli.py through ``commands``. Faults live in Toxiproxy and in the nodes, so
each command is a fresh process that rediscovers them (``clear``/``heal`` work from any shell).
Every applied/removed fault is appended to ``<testnet state folder>/faults.jsonl`` (the
timeline reports read; ``testnet fault log`` prints it).
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click

from harness.cliutil import friendly_errors, name_option
from harness.faults.actions import BEHAVIOURS, Fault, FaultError, Faults
from harness.faults.schedule import DEFAULT_MIX, RealClock, Schedule, run
from harness.faults.targets import Target, live_view
from harness.faults.timeline import Event, Timeline
from harness.faults.toxiproxy import ToxiproxyError
from harness.network import Testnet
from harness.state import StateDir

TIMELINE_FILE = "faults.jsonl"


def timeline_path(name: str) -> Path:
    return StateDir(name).path / TIMELINE_FILE


def open_faults(name: str, seed: str | None = None) -> Faults:
    """A :class:`Faults` on testnet ``name`` that appends to the testnet's timeline file. Its
    random draws continue the sequence of earlier invocations (call i of the testnet's life)."""
    net = Testnet.attach(name)
    path = timeline_path(name)
    earlier = sum(1 for line in path.open() if line.strip()) if path.exists() else 0
    return Faults(net, Timeline(path), seed=seed, first_call=earlier)


def _emit(ev: Event | None, as_json: bool, wall: bool = False) -> None:
    if ev is None:
        return
    if as_json:
        click.echo(json.dumps(ev.to_json(), sort_keys=True, default=str))
    else:
        click.echo(ev.describe(wall=wall))


def _hold(faults: Faults, fault: Fault, duration: float | None, as_json: bool) -> None:
    """With ``--duration``: keep the fault for that long (Ctrl-C ends early), then remove it."""
    _emit(fault.event, as_json)
    if duration is None:
        return
    clock = RealClock()
    try:
        clock.sleep_until(clock.monotonic() + duration)
    except KeyboardInterrupt:
        click.echo("interrupted: removing the fault", err=True)
    _emit(faults.remove(fault), as_json)


def _toxiproxy_errors(fn: Callable[..., Any]) -> Callable[..., Any]:
    """Direct Toxiproxy errors (inspection) become FaultError, which friendly_errors reports."""
    from functools import wraps

    @wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except ToxiproxyError as e:
            raise FaultError(str(e)) from e

    return wrapper


def _split_link(node: str | None, link: str | None) -> tuple[str, str | None]:
    """NODE and --link: ``A:B`` or ``A->B`` (source and destination targets; use ``->`` when a
    side is a spec with colons such as random:2), or just ``B`` with NODE as the source."""
    if link is None:
        if not node:
            raise click.UsageError("give a NODE (e.g. sn01, random:2, swarm-of:05…) or --link A:B")
        return node, None
    src: str | None = None
    dst = link
    if "->" in link:
        src, _, dst = link.partition("->")
    elif ":" in link and not link.lower().startswith(("random:", "swarm:", "swarm-of:",
                                                      "swarm_of:")):
        src, _, dst = link.partition(":")
    if src is not None:
        src, dst = src.strip(), dst.strip()
        if not src or not dst:
            raise click.UsageError(f"--link {link!r}: write A:B or A->B")
        if node and node != src:
            raise click.UsageError(f"NODE {node!r} and --link {link!r} name different sources; "
                                   "give one of them")
        return src, dst
    if not node:
        raise click.UsageError(f"--link {link!r} has no source: write --link A:B or give NODE")
    return node, dst


# -- testnet fault ----------------------------------------------------------------------------

@click.group("fault")
def fault_group() -> None:
    """Network and node faults: Toxiproxy toxics, link faults, clock skew, misbehaviour.

    NODE is a target: node names (sn01,sn02), all, random:N, random:P%, swarm:ID[:N],
    swarm-of:SESSION_ID[:N]. --link A:B applies the fault only to A's traffic to B.
    """


def _common(fn: Callable[..., Any]) -> Callable[..., Any]:
    fn = click.option("--json", "as_json", is_flag=True, help="Print events as JSON lines.")(fn)
    fn = click.option("--duration", type=float, default=None,
                      help="Remove the fault after this many seconds (default: keep it).")(fn)
    fn = click.option("--seed", default=None,
                      help="Seed of random targets [default: the testnet seed].")(fn)
    return name_option(fn)


def _network_fault(cmd_name: str, action: str, options: list[Callable[..., Any]],
                   doc: str) -> click.Command:
    def command(name: str, node: str | None, link: str | None, stream: str,
                duration: float | None, seed: str | None, as_json: bool, **params: Any) -> None:
        src, dst = _split_link(node, link)
        faults = open_faults(name, seed)
        fault = getattr(faults, action)(src, link=dst, stream=stream, **params)
        _hold(faults, fault, duration, as_json)

    command.__doc__ = doc
    fn: Callable[..., Any] = friendly_errors(command)
    for opt in reversed(options):
        fn = opt(fn)
    fn = click.option("--stream", type=click.Choice(["downstream", "upstream", "both"]),
                      default="downstream", show_default=True,
                      help="downstream: data from the node; upstream: data to it.")(fn)
    fn = click.option("--link", default=None,
                      help="Only traffic from A to B: A:B (or B with NODE as A).")(fn)
    fn = click.argument("node", required=False)(fn)
    fn = _common(fn)
    return fault_group.command(cmd_name)(fn)


_network_fault("latency", "latency", [
    click.option("--ms", type=int, required=True, help="Added delay in milliseconds."),
    click.option("--jitter", type=int, default=0, show_default=True, help="± milliseconds."),
], "Delay data of NODE (or of one link) by --ms ± --jitter.")
_network_fault("bandwidth", "bandwidth", [
    click.option("--kbps", type=int, required=True, help="Kilobytes per second (Toxiproxy rate)."),
], "Limit the throughput of NODE (or of one link).")
_network_fault("timeout", "timeout", [
    click.option("--ms", type=int, required=True,
                 help="Close connections after this many ms; 0 = hold them silently."),
], "Swallow all data of NODE (or of one link) and close after --ms.")
_network_fault("reset", "reset", [
    click.option("--timeout-ms", type=int, default=0, show_default=True,
                 help="Reset this many ms after the first data."),
], "Reset connections (TCP RST) to NODE (or on one link).")
_network_fault("slow-close", "slow_close", [
    click.option("--delay-ms", type=int, required=True, help="Delay of the close."),
], "Delay the close of connections.")
_network_fault("slicer", "slicer", [
    click.option("--average-size", type=int, required=True, help="Bytes per piece."),
    click.option("--size-variation", type=int, default=0, show_default=True),
    click.option("--delay-us", type=int, default=0, show_default=True,
                 help="Microseconds between pieces."),
], "Cut data into small pieces.")
_network_fault("limit-data", "limit_data", [
    click.option("--bytes", "nbytes", type=int, required=True,
                 help="Close each connection after this many bytes."),
], "Close connections after some bytes.")


@fault_group.command("down")
@_common
@click.argument("node")
@friendly_errors
def down_cmd(name: str, node: str, duration: float | None, seed: str | None,
             as_json: bool) -> None:
    """Make NODE unreachable (its proxy stops listening); the process keeps running."""
    faults = open_faults(name, seed)
    _hold(faults, faults.down(node), duration, as_json)


@fault_group.command("up")
@name_option
@click.argument("node")
@click.option("--json", "as_json", is_flag=True)
@friendly_errors
def up_cmd(name: str, node: str, as_json: bool) -> None:
    """Undo 'fault down': NODE's proxy listens again."""
    _emit(open_faults(name).up(node).event, as_json)


@fault_group.command("clear")
@name_option
@click.argument("node", required=False)
@click.option("--network-only", is_flag=True,
              help="Keep clock skew and misbehaviours (only remove Toxiproxy faults).")
@click.option("--json", "as_json", is_flag=True)
@friendly_errors
def clear_cmd(name: str, node: str | None, network_only: bool, as_json: bool) -> None:
    """Remove every fault of NODE (default: all nodes): toxics, link proxies, down, and unless
    --network-only clock skew and misbehaviours."""
    ev = open_faults(name).clear(node, node_side=not network_only)
    _emit(ev, as_json)
    for err in (ev.result or {}).get("errors", []):
        click.echo(f"warning: {err}", err=True)


@fault_group.command("skew")
@_common
@click.argument("node")
@click.option("--offset-ms", type=int, required=True, help="Clock offset (may be negative).")
@friendly_errors
def skew_cmd(name: str, node: str, offset_ms: int, duration: float | None, seed: str | None,
             as_json: bool) -> None:
    """Skew NODE's clock by --offset-ms."""
    faults = open_faults(name, seed)
    _hold(faults, faults.skew_clock(node, offset_ms), duration, as_json)


@fault_group.command("misbehave")
@_common
@click.argument("node")
@click.option("--drop-stores/--no-drop-stores", default=None)
@click.option("--drop-relays/--no-drop-relays", default=None)
@click.option("--corrupt-relays/--no-corrupt-relays", default=None)
@click.option("--delay-ms", type=int, default=None, help="Delay every storage-port response.")
@friendly_errors
def misbehave_cmd(name: str, node: str, duration: float | None, seed: str | None,
                  as_json: bool, **behaviours: Any) -> None:
    """Switch NODE's misbehaviours (drop stores, drop/corrupt onion relays, delay responses)."""
    chosen = {k: v for k, v in behaviours.items() if v is not None}
    if not chosen:
        raise click.UsageError(f"give at least one behaviour ({', '.join(BEHAVIOURS)})")
    faults = open_faults(name, seed)
    _hold(faults, faults.misbehave(node, **chosen), duration, as_json)


def _churn_command(action: str, doc: str) -> None:
    @fault_group.command(action, help=doc)
    @name_option
    @click.argument("node")
    @click.option("--seed", default=None, help="Seed of random targets.")
    @click.option("--json", "as_json", is_flag=True)
    @friendly_errors
    def command(name: str, node: str, seed: str | None, as_json: bool) -> None:
        _emit(getattr(open_faults(name, seed), action)(node).event, as_json)


for _action, _doc in (("kill", "SIGKILL NODE (data kept; 'fault start' brings it back)."),
                      ("stop", "Stop NODE gracefully."), ("start", "Start a stopped NODE."),
                      ("restart", "Stop and start NODE."), ("pause", "Freeze NODE."),
                      ("unpause", "Unfreeze NODE."),
                      ("decommission", "Decommission NODE at the seed (it leaves its swarm)."),
                      ("recommission", "Recommission NODE at the seed.")):
    _churn_command(_action, _doc)


@fault_group.command("add-nodes")
@name_option
@click.option("--count", type=int, default=1, show_default=True)
@click.option("--timeout", type=float, default=90.0, show_default=True)
@click.option("--json", "as_json", is_flag=True)
@friendly_errors
def add_nodes_cmd(name: str, count: int, timeout: float, as_json: bool) -> None:
    """Join COUNT new nodes and wait until the testnet is ready."""
    _emit(open_faults(name).add_nodes(count, timeout=timeout).event, as_json)


@fault_group.command("status")
@name_option
@click.option("--json", "as_json", is_flag=True)
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
@click.option("--json", "as_json", is_flag=True)
@friendly_errors
def log_cmd(name: str, as_json: bool) -> None:
    """Print the fault timeline of the testnet."""
    path = timeline_path(name)
    if not path.exists():
        click.echo("no faults recorded")
        return
    for ev in Timeline.load(path):
        _emit(ev, as_json, wall=True)


# -- partition / heal / churn -----------------------------------------------------------------

@click.command("partition")
@_common
@click.argument("side_a")
@click.option("--from", "side_b", default=None,
              help="The other side (default: every other node).")
@friendly_errors
def partition_cmd(name: str, side_a: str, side_b: str | None, duration: float | None,
                  seed: str | None, as_json: bool) -> None:
    """Cut node-to-node traffic between SIDE_A (e.g. sn01,sn02) and --from (e.g. sn03,sn04)."""
    faults = open_faults(name, seed)
    _hold(faults, faults.partition(side_a, side_b), duration, as_json)


@click.command("heal")
@name_option
@click.option("--json", "as_json", is_flag=True)
@friendly_errors
def heal_cmd(name: str, as_json: bool) -> None:
    """End every partition (removes the cut link proxies and peer overrides)."""
    ev = open_faults(name).heal()
    _emit(ev, as_json)
    for err in (ev.result or {}).get("errors", []):
        click.echo(f"warning: {err}", err=True)


def _report_run(result: Any) -> None:
    for err in result.errors:
        click.echo(f"error: {err}", err=True)
    if result.interrupted:
        click.echo("schedule interrupted; timed faults were removed", err=True)
    if not result.ok:
        sys.exit(1)


@click.command("churn")
@name_option
@click.option("--kill", "kill_", type=int, default=None, help="Kill N nodes per round.")
@click.option("--stop", type=int, default=None, help="Stop N nodes per round.")
@click.option("--pause", type=int, default=None, help="Pause N nodes per round.")
@click.option("--decommission", type=int, default=None, help="Decommission N nodes per round.")
@click.option("--down", type=int, default=None, help="Take N nodes' proxies down per round.")
@click.option("--interval", type=float, required=True, help="Seconds per round.")
@click.option("--duration", type=float, required=True, help="Total seconds.")
@click.option("--seed", default=None, help="Seed [default: the testnet seed].")
@click.option("--unsafe", is_flag=True,
              help="Allow taking every member of a swarm out at once.")
@click.option("--save", "save_to", type=click.Path(dir_okay=False), default=None,
              help="Also write the generated schedule to this file.")
@click.option("--json", "as_json", is_flag=True)
@friendly_errors
def churn_cmd(name: str, kill_: int | None, stop: int | None, pause: int | None,
              decommission: int | None, down: int | None, interval: float, duration: float,
              seed: str | None, unsafe: bool, save_to: str | None, as_json: bool) -> None:
    """Every --interval seconds take N random nodes out and bring the previous ones back, for
    --duration seconds. Keeps one member of every swarm up unless --unsafe."""
    chosen = {a: n for a, n in (("kill", kill_), ("stop", stop), ("pause", pause),
                                ("decommission", decommission), ("down", down)) if n is not None}
    if len(chosen) != 1:
        raise click.UsageError("give exactly one of --kill/--stop/--pause/--decommission/--down N")
    (action, count), = chosen.items()
    faults = open_faults(name, seed)
    net = faults.net
    swarms = None if unsafe else live_view(net.state).swarms()
    schedule = Schedule.churn(faults.seed, duration, interval, nodes=[n.name for n in net.nodes],
                              count=count, action=action, swarms=swarms)
    if save_to:
        schedule.save(save_to)
    result = run(schedule, faults, on_event=lambda ev: _emit(ev, as_json))
    _report_run(result)


# -- schedules --------------------------------------------------------------------------------

@click.group("schedule")
def schedule_group() -> None:
    """Seeded, replayable fault schedules (JSON files, see docs/faults.md)."""


@schedule_group.command("run")
@name_option
@click.argument("file", type=click.Path(dir_okay=False))
@click.option("--timeline", "timeline_file", type=click.Path(dir_okay=False), default=None,
              help="Also write this run's events to this JSON-lines file.")
@click.option("--stop-on-error", is_flag=True)
@click.option("--json", "as_json", is_flag=True)
@friendly_errors
def schedule_run_cmd(name: str, file: str, timeline_file: str | None, stop_on_error: bool,
                     as_json: bool) -> None:
    """Apply the steps of FILE at their times; timed faults are removed when due. Ctrl-C stops
    the run and removes the timed faults in force."""
    schedule = Schedule.load(file)
    faults = open_faults(name)
    result = run(schedule, faults, stop_on_error=stop_on_error,
                 on_event=lambda ev: _emit(ev, as_json))
    if timeline_file:
        tl = Timeline()
        tl.events = list(result.events)
        tl.save(timeline_file)
    _report_run(result)


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


@schedule_group.command("generate")
@click.option("--name", "-n", default=None, envvar="SESSION_TESTNET_NAME",
              help="Testnet whose seed and node names to use [default: none, give --seed].")
@click.option("--seed", default=None, help="Schedule seed [default: the testnet seed].")
@click.option("--duration", type=float, required=True, help="Seconds.")
@click.option("--nodes", default=None, help="Explicit node names to draw from (sn01,sn02,…).")
@click.option("--role", "roles", multiple=True,
              help="Target spec resolved at run time (repeatable), e.g. random:1, guard.")
@click.option("--mix", default=None,
              help=f"ACTION=WEIGHT,… [default: {','.join(f'{k}={v:g}' for k, v in DEFAULT_MIX.items())}]")
@click.option("--gap", type=(float, float), default=(1.0, 5.0), show_default=True,
              help="Min and max seconds between steps.")
@click.option("--length", type=(float, float), default=(2.0, 10.0), show_default=True,
              help="Min and max seconds a fault lasts.")
@click.option("--max-down", type=int, default=1, show_default=True,
              help="Exclusive faults (kill, pause, down, partition, …) in force at once.")
@click.option("--schedule-name", default="schedule", show_default=True)
@click.option("--output", "-o", type=click.Path(dir_okay=False), default=None,
              help="Write here instead of stdout.")
@friendly_errors
def schedule_generate_cmd(name: str | None, seed: str | None, duration: float,
                          nodes: str | None, roles: tuple[str, ...], mix: str | None,
                          gap: tuple[float, float], length: tuple[float, float], max_down: int,
                          schedule_name: str, output: str | None) -> None:
    """Generate a schedule from a seed (same seed and options: same schedule)."""
    node_list = [n.strip() for n in nodes.split(",") if n.strip()] if nodes else None
    if name:
        net = Testnet.attach(name)
        seed = seed if seed is not None else str(net.topology.seed)
        if node_list is None and not roles:
            node_list = [n.name for n in net.nodes]
    if seed is None:
        raise click.UsageError("give --seed (or --name of a testnet to use its seed)")
    for r in roles:
        Target.parse(r)
    schedule = Schedule.generate(seed, duration, nodes=node_list, roles=list(roles) or None,
                                 mix=_parse_mix(mix), name=schedule_name, gap=gap, length=length,
                                 max_down=max_down)
    if output:
        schedule.save(output)
        click.echo(f"{len(schedule.steps)} steps written to {output}", err=True)
    else:
        click.echo(schedule.dumps(), nl=False)


commands: list[click.Command] = [fault_group, partition_cmd, heal_cmd, churn_cmd,
                                 schedule_group]

__all__ = ["commands", "open_faults", "timeline_path", "TIMELINE_FILE"]
