"""`testnet swarm-sim …`: simulated swarm hosts on this machine (docs/backends.md)."""

from __future__ import annotations

import json

import click

from harness.cliutil import friendly_errors
from harness.progress import progress
from harness.state import state_home
from harness.swarmsim.hosts import SimError, SimHosts

ENGINES_ENV = "SESSION_TESTNET_SWARM_ENGINES"


@click.group("swarm-sim")
def swarm_sim() -> None:
    """Simulated swarm hosts: Docker engines in containers, joined as workers to a swarm the
    local engine manages, so '--backend swarm' spreads a testnet over several hosts on one
    machine."""


@swarm_sim.command("up")
@click.option("--hosts", "count", type=int, default=2, show_default=True,
              help="Simulated hosts to start (workers; the local engine is the manager).")
@click.option("--json", "as_json", is_flag=True,
              help='Print {"engines": {HOST: URL}, "env": "SESSION_TESTNET_SWARM_ENGINES=…"}.')
@friendly_errors
def up(count: int, as_json: bool) -> None:
    """Start simulated hosts and join them to a new swarm of the local engine."""
    with progress() as report:
        sim = SimHosts(state_home(), progress=report)
        try:
            engines = sim.up(count)
        except SimError as e:
            raise click.ClickException(str(e)) from None
    env = f"{ENGINES_ENV}={sim.engines_env()}"
    if as_json:
        click.echo(json.dumps({"engines": engines, "env": env}))
        return
    for host, url in sorted(engines.items()):
        click.echo(f"{host}: {url}")
    click.echo(f"export {env}")


@swarm_sim.command("env")
@friendly_errors
def env() -> None:
    """Print the SESSION_TESTNET_SWARM_ENGINES setting of the running simulated hosts."""
    click.echo(f"export {ENGINES_ENV}={SimHosts(state_home()).engines_env()}")


@swarm_sim.command("down")
@click.option("--json", "as_json", is_flag=True, help='Print {"removed": [...]}.')
@friendly_errors
def down(as_json: bool) -> None:
    """Remove the simulated hosts, their network and volumes, and the swarm 'up' created
    (also after 'up' was killed)."""
    try:
        removed = SimHosts(state_home()).down()
    except SimError as e:
        raise click.ClickException(str(e)) from None
    if as_json:
        click.echo(json.dumps({"removed": removed}))
    else:
        click.echo("removed: " + (", ".join(removed) or "nothing"))


commands = [swarm_sim]
