"""`testnet`: bring Session testnets up and down, inspect them, inject faults, send messages."""

from __future__ import annotations

import json
import time
from typing import Any

import click

from harness.backends.registry import BACKENDS, default_backend
from harness.cliutil import (
    DEFAULT_NAME,
    ENV_NAME,
    CliGroup,
    attach,
    friendly_errors,
    json_option,
    name_option,
)
from harness.lease import take_reaped
from harness.logs import LogLine, Renderer, follow_merged, parse_record, read_merged
from harness.network import Testnet, clean
from harness.progress import progress
from harness.state import StateDir, list_networks
from harness.topology import Topology

TESTNET_JSON = ('{"name", "backend", "status", "testnet_seed", "seed_url", "seed_https_url", '
                '"toxiproxy_url", "nodes": [{"name", "public_ip", "storage_port", "pubkey_ed25519", '
                '"pubkey_x25519", "swarm_id", "admin_url", "proxy"}], "fileserver": {"name", "url", '
                '"public_ip", "port", "pubkey_x25519", "admin_url", "proxy"} | null}')


@click.group(cls=CliGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="session-testnet")
def main() -> None:
    """Private Session testnets: service nodes in swarms, faults on demand, e2e checks.

    Every command acting on a testnet takes -n/--name (default "default", env
    SESSION_TESTNET_NAME). Failures print "error: …" and exit 1; usage errors exit 2.
    """


@main.command()
@name_option
@click.option("--backend", "-b", type=click.Choice(BACKENDS), default=default_backend,
              show_default="process (env SESSION_TESTNET_BACKEND)")
@click.option("--swarms", type=int, default=None, help="Number of swarms [default: 2].")
@click.option("--swarm-size", type=int, default=None, help="Nodes per swarm [default: 3].")
@click.option("--seed", "seed", default=None, help="Testnet seed: fixes keys and swarm layout.")
@click.option("--nodes", "node_groups", multiple=True, metavar="N[:KIND[@REF][=PATH]]",
              help="A group of N nodes of one implementation (repeatable): 'N:python' (ours, "
                   "the default); 'N:python@GITREF' (ours at another git revision of this "
                   "checkout, e.g. 3:python@HEAD~5: two versions side by side); "
                   "'N:oxen-storage=PATH' (the real Session storage server; PATH defaults to "
                   "$SESSION_TESTNET_OXEN_STORAGE; needs >= 10 nodes; on the docker backend each "
                   "runs in a container of the image 'testnet images build --oxen-storage PATH' "
                   "makes, built offline when missing); 'N:command=PATH' (process backend) or "
                   "'N:image=IMAGE' (docker backend): your own node, given the node contract "
                   "through its environment (docs/nodes.md; declare its admin interface with "
                   "\"has_admin\": true in a --topology file). Swarms follow from --swarm-size.")
@click.option("--topology", "topology_file", type=click.Path(dir_okay=False), default=None,
              help="JSON topology file (fields of harness.topology.Topology).")
@click.option("--no-fileserver", "no_fileserver", is_flag=True,
              help="Run no file server (default: one per testnet, docs/fileserver.md).")
@click.option("--timeout", type=float, default=90.0, show_default=True,
              help="Seconds to wait for readiness.")
@json_option(TESTNET_JSON)
@friendly_errors
def up(name: str, backend: str, swarms: int | None, swarm_size: int | None, seed: str | None,
       node_groups: tuple[str, ...], topology_file: str | None, no_fileserver: bool,
       timeout: float, as_json: bool) -> None:
    """Start a testnet; return when every node is registered, in a swarm and answering.

    --json prints {"name", "backend", "status", "testnet_seed", "seed_url", "nodes": [{"name", "kind",
    "public_ip", "storage_port", "pubkey_ed25519", "pubkey_x25519", "swarm_id", "admin_url"
    (null without an admin interface), "proxy"?, "omq_port"?, "host"? (swarm: where it runs)}],
    "toxiproxy_url"?, "fileserver":
    {"name", "url", "public_ip", "port", "pubkey_x25519", "admin_url", "proxy"?} (null with
    --no-fileserver), …}.
    """
    base = Topology.load(topology_file).to_dict() if topology_file else {}
    if node_groups:  # the swarm count follows from the groups unless --swarms says otherwise
        base["nodes"] = list(node_groups)
        base.pop("swarms", None)
    overrides = {"name": name, "swarms": swarms, "swarm_size": swarm_size, "seed": seed}
    if topology_file and name == DEFAULT_NAME and "name" in base:
        overrides.pop("name")
    base.update({k: v for k, v in overrides.items() if v is not None})
    if no_fileserver:
        base["fileserver"] = False
    topology = Topology.from_dict(base)
    with progress() as report:
        net = Testnet.up(topology, backend=backend, timeout=timeout, report=report, lease=False)
    if as_json:
        click.echo(json.dumps(net.to_dict(), indent=2))
    else:
        _print_summary(net.to_dict())


def _print_summary(d: dict[str, Any]) -> None:
    click.echo(f"testnet {d['name']} ({d['backend']}) {d.get('status', '')}: seed {d['seed_url']}")
    if d.get("testnet_seed"):
        click.echo(f"  testnet seed {d['testnet_seed']} (same keys and swarms: --seed {d['testnet_seed']})")
    for n in d["nodes"]:
        swarm = n.get("swarm_id")
        swarm_s = f"{swarm:#018x}" if isinstance(swarm, int) else "-"
        extra = ""
        if "ready" in n:
            extra = "  ready" if n["ready"] else f"  NOT READY: {n.get('problem', '')}"
            if not n.get("running", True):
                extra += " (not running)"
        click.echo(f"  {n['name']}  {n['public_ip']}:{n['storage_port']}  swarm {swarm_s}  "
                   f"{n['pubkey_ed25519'][:16]}…{extra}")
    fs = d.get("fileserver")
    if fs:
        extra = ""
        if "ready" in fs:
            extra = "  ready" if fs["ready"] else f"  NOT READY: {fs.get('problem', '')}"
            if not fs.get("running", True):
                extra += " (not running)"
        click.echo(f"  {fs['name']}  {fs['url']}  x25519 {fs['pubkey_x25519'][:16]}…{extra}")


@main.command()
@name_option
@click.option("--all", "all_", is_flag=True, help="Bring down every testnet of this user.")
@friendly_errors
def down(name: str, all_: bool) -> None:
    """Stop a testnet and remove everything it started (processes, containers, networks, data)."""
    nets = [Testnet.attach(n) for n in list_networks()] if all_ else [attach(name)]
    for net in nets:
        net.down()
        click.echo(f"testnet {net.name} is down")


@main.command()
@click.option("--name", "-n", default=None, envvar=ENV_NAME,
              help=f"Testnet name [default: every testnet] (env {ENV_NAME}).")
@json_option('a list with one entry per testnet: the shape of "up --json" plus "seed": '
             '{"url", "answering", "height", "running"}, "toxiproxy": {"url", "running"} and, '
             'per node and for the file server, "running", "ready" and (when not ready) "problem"')
@friendly_errors
def status(name: str | None, as_json: bool) -> None:
    """Show testnets with live readiness of every node."""
    nets = [attach(name)] if name else [Testnet.attach(n) for n in list_networks()]
    out = [net.status() for net in nets]
    if as_json:
        click.echo(json.dumps(out, indent=2))
        return
    if not out:
        click.echo("no testnets")
    for d in out:
        _print_summary(d)


@main.command()
@name_option
@click.argument("targets", metavar="[NODE]...", nargs=-1)
@click.option("--follow", "-f", is_flag=True,
              help="Keep printing new lines (across node restarts) until Ctrl-C or the testnet "
                   "goes down.")
@click.option("--tail", type=click.IntRange(min=0), default=None,
              help="Start with the last N lines of each log [default: all].")
@json_option("the logs' JSON records as the runtimes wrote them (each names its \"node\"); a "
             'line that is not a record becomes {"node", "line"}')
@friendly_errors
def logs(name: str, targets: tuple[str, ...], follow: bool, tail: int | None,
         as_json: bool) -> None:
    """Print the logs of NODEs ('seed', 'toxiproxy', 'sn01', …; default: all), merged, each
    line prefixed with its node ("sn01 | 12:00:01.250 info  event key=value")."""
    net = attach(name)
    sources = net.log_targets(targets)

    def show(source: str, text: str) -> None:
        if as_json:
            click.echo(text if parse_record(text) is not None
                       else json.dumps({"node": source, "line": text}))
        else:
            click.echo(render(LogLine(source, text)))

    render = Renderer(sources, colour=True)
    if not follow:
        for line in read_merged(net, sources, tail=tail):
            show(line.source, line.text)
        return
    lines = follow_merged(net, sources if targets else (), tail=tail)
    try:
        for line in lines:
            show(line.source, line.text)
    except KeyboardInterrupt:  # Ctrl-C is how following ends: not an error
        lines.close()
        return
    if not StateDir(name).exists():
        click.echo(f"testnet {name} is down", err=True)


@main.command("clean")
@json_option('{"removed": [names of what was removed now], "reaped": [{"name", "backend", '
             '"owner_pid", "reaped_at", "reason"} of testnets the reaper removed since the '
             'last clean]}')
@friendly_errors
def clean_cmd(as_json: bool) -> None:
    """Remove everything left by testnets whose harness is gone (crash, SIGKILL) or whose lease
    owner died, and report the testnets the reaper removed since the last clean."""
    with progress() as report:
        removed = clean(report)
    reaped = take_reaped()
    if as_json:
        click.echo(json.dumps({"removed": removed, "reaped": reaped}))
        return
    for r in reaped:
        when = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(r.get("reaped_at", 0)))
        click.echo(f"reaped: {r.get('name')} ({r.get('backend')} backend; {r.get('reason')}; "
                   f"at {when})")
    if removed:
        click.echo(f"removed: {', '.join(removed)}")
    elif not reaped:
        click.echo("nothing to clean")


def _register_feature_commands() -> None:
    """Command groups that live with their feature (client, client adapter, images/compose,
    faults, bench, report, the scenario suites, simulated swarm hosts)."""
    from harness import bench, images_cli
    from harness.adapter import cli as adapter_cli
    from harness.client import cli as client_cli
    from harness.faults import cli as faults_cli
    from harness.report import cli as report_cli
    from harness.suites import cli as suites_cli
    from harness.swarmsim import cli as swarmsim_cli

    for module in (client_cli, adapter_cli, images_cli, faults_cli, bench, report_cli,
                   suites_cli, swarmsim_cli):
        for cmd in module.commands:
            main.add_command(cmd)


_register_feature_commands()


if __name__ == "__main__":
    main()
