"""`testnet images …` and `testnet compose …`: the container side's commands."""

from __future__ import annotations

from pathlib import Path

import click

from harness.cliutil import friendly_errors
from harness.progress import progress


class DockerUnavailable(click.ClickException):
    pass


def _client():  # type: ignore[no-untyped-def]
    import docker

    try:
        client = docker.from_env()
        client.ping()
    except Exception as e:
        raise DockerUnavailable(
            f"the Docker engine is not reachable ({e}); start it (e.g. 'sudo systemctl start "
            "docker') or run 'bash scripts/setup.sh'") from None
    return client


@click.group("images")
def images() -> None:
    """Build and inspect the node image (seed, storage node and Toxiproxy run from it)."""


@images.command("build")
@click.option("--force", is_flag=True, help="Rebuild even if the content-addressed tag exists.")
@click.option("--base-image", default=None, envvar="BASE_IMAGE",
              help="Base image [default: python:3.11-slim if present or pullable, else a local "
                   "Debian base built with mmdebstrap].")
@friendly_errors
def images_build(force: bool, base_image: str | None) -> None:
    """Build the node image if nodes/ or the dependencies changed (offline-capable)."""
    from harness.images import ImageError, ensure_images

    client = _client()
    with progress() as report:
        try:
            result = ensure_images(client, progress=report, force=force, base_image=base_image)
        except ImageError as e:
            raise click.ClickException(str(e)) from None
    click.echo(f"{result.node} ({'built' if result.built else 'up to date'}, base {result.base})")


@click.group("compose")
def compose() -> None:
    """docker-compose files for a topology."""


@compose.command("render")
@click.argument("topology_file", required=False, type=click.Path(dir_okay=False))
@click.option("--out", "-o", type=click.Path(dir_okay=False), default=None,
              help="Write to this file instead of standard output.")
@click.option("--image", default=None,
              help="Node image [default: session-testnet/node:latest, which 'testnet images "
                   "build' points at the current build].")
@friendly_errors
def compose_render(topology_file: str | None, out: str | None, image: str | None) -> None:
    """Write a docker-compose file (Compose v1 and v2) for TOPOLOGY_FILE or the default."""
    from harness.compose import render_compose
    from harness.topology import Topology

    topology = Topology.load(topology_file) if topology_file else Topology()
    text = render_compose(topology, image) if image else render_compose(topology)
    if out:
        Path(out).write_text(text)
        click.echo(f"wrote {out}", err=True)
    else:
        click.echo(text, nl=False)


commands = [images, compose]
