"""`testnet images …` and `testnet compose …`: the container side's commands."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import click

from harness.cliutil import friendly_errors
from harness.progress import progress

if TYPE_CHECKING:
    import docker

F = TypeVar("F", bound=Callable[..., Any])


class DockerUnavailable(click.ClickException):
    """The Docker engine cannot be reached."""


class ImageBuildError(click.ClickException):
    """The node image could not be found or built (the message says why and what to do)."""


def _client() -> docker.DockerClient:
    import docker

    try:
        client = docker.from_env()
        client.ping()
    except Exception as e:
        raise DockerUnavailable(
            f"the Docker engine is not reachable ({e}); start it (e.g. 'sudo systemctl start "
            "docker') and check DOCKER_HOST, or use the process backend (--backend process)"
        ) from None
    return client


def _base_image_option(fn: F) -> F:
    return click.option(
        "--base-image", default=None,
        help="Base image [default: $SESSION_TESTNET_BASE_IMAGE, $BASE_IMAGE, else python:3.11-slim "
             "if present or pullable, else a local Debian base built with mmdebstrap].")(fn)


@click.group("images")
def images() -> None:
    """Build and inspect the node image (seed, storage node and Toxiproxy run from it)."""


@images.command("build")
@click.option("--force", is_flag=True, help="Rebuild even if the content-addressed tag exists.")
@_base_image_option
@click.option("--oxen-storage", "oxen_storage", default=None, metavar="PATH",
              type=click.Path(exists=True, dir_okay=False),
              help="Also build the image of the real storage server from this binary (a Debian "
                   "base with its run-time packages, made offline with mmdebstrap; tagged by the "
                   "binary's sha256). Docker testnets with 'N:oxen-storage=PATH' nodes build it "
                   "themselves when missing.")
@click.option("--ref", "refs", multiple=True, metavar="GITREF",
              help="Also build the node image of this git revision of session-testnet (taken "
                   "from the checkout the harness runs from, or $SESSION_TESTNET_REPO; tagged "
                   "session-testnet/node-rev:<commit12>; repeatable). Docker testnets with "
                   "'N:python@GITREF' nodes build it themselves when missing.")
@click.option("--json", "as_json", is_flag=True,
              help='Print {"node": TAG, "node_id": ID, "base": IMAGE, "built": BOOL, '
                   '"code_paths": [the folders of its Python code, for code volumes], '
                   '"oxen_storage": null | {"tag": TAG, "base": IMAGE, "binary_sha256": HEX, '
                   '"built": BOOL}, "revisions": [{"tag", "commit", "ref", "base", "built"}]}.')
@friendly_errors
def images_build(force: bool, base_image: str | None, oxen_storage: str | None,
                 refs: tuple[str, ...], as_json: bool) -> None:
    """Build the node image if the installed nodes package or its dependencies changed (and,
    with --oxen-storage, the real server's image; with --ref, the node image of other
    revisions). Works without a registry: the base is then bootstrapped with mmdebstrap and the
    dependencies are prepared as wheels on the host."""
    from dataclasses import asdict

    from harness.images import ImageError, ensure_images
    from harness.images.oxen_storage import OxenStorageImage, ensure_oxen_storage_image
    from harness.images.revision import RevisionImage, ensure_revision_image
    from harness.nodekinds.base import NodeKindError
    from harness.nodekinds.revisions import pinned, require_requirements

    try:  # before the engine: a bad ref is the user's error, whatever the engine does
        revs = [pinned(ref) for ref in refs]
        for rev in revs:
            require_requirements(rev)
    except NodeKindError as e:
        raise ImageBuildError(str(e)) from None
    client = _client()
    real: OxenStorageImage | None = None
    built_revs: list[RevisionImage] = []
    try:
        with progress() as report:
            result = ensure_images(client, progress=report, force=force, base_image=base_image)
            if oxen_storage:
                real = ensure_oxen_storage_image(client, oxen_storage, progress=report,
                                                 force=force)
            for rev in revs:
                built_revs.append(ensure_revision_image(
                    client, rev, progress=report,
                    force=force, base_image=base_image))
    except ImageError as e:
        raise ImageBuildError(str(e)) from None
    finally:
        client.close()
    if as_json:
        click.echo(json.dumps({**asdict(result), "oxen_storage": asdict(real) if real else None,
                               "revisions": [asdict(r) for r in built_revs]}))
        return
    click.echo(f"{result.node} ({'built' if result.built else 'up to date'}, base {result.base})")
    if real:
        click.echo(f"{real.tag} ({'built' if real.built else 'up to date'}, base {real.base}, "
                   f"binary sha256 {real.binary_sha256[:12]})")
    for r in built_revs:
        click.echo(f"{r.tag} ({'built' if r.built else 'up to date'}, revision {r.ref} = "
                   f"{r.commit}, base {r.base})")


@images.command("tag")
@_base_image_option
@click.option("--json", "as_json", is_flag=True, help='Print {"node": TAG, "base": IMAGE}.')
@friendly_errors
def images_tag(base_image: str | None, as_json: bool) -> None:
    """Print the content-addressed tag the installed nodes package builds to (no engine needed)."""
    from harness.images import ImageError, node_image_tag, requested_base_image

    try:
        tag = node_image_tag(base_image)
    except ImageError as e:
        raise ImageBuildError(str(e)) from None
    if as_json:
        click.echo(json.dumps({"node": tag, "base": requested_base_image(base_image)}))
    else:
        click.echo(tag)


@images.command("toxiproxy")
@click.option("--pull/--no-pull", default=True, show_default=True,
              help="Pull the official image when no Toxiproxy 2.x image is present.")
@click.option("--json", "as_json", is_flag=True,
              help='Print {"toxiproxy_image": REF} (null: nodes.toxiproxy runs from the node image).')
@friendly_errors
def images_toxiproxy(pull: bool, as_json: bool) -> None:
    """Print the Toxiproxy image a docker testnet runs (the official one if present or pullable;
    otherwise nothing, and the node image runs the project's own Toxiproxy)."""
    from harness.images import toxiproxy_image

    client = _client()
    try:
        with progress() as report:
            ref = toxiproxy_image(client, pull=pull, progress=report)
    finally:
        client.close()
    if as_json:
        click.echo(json.dumps({"toxiproxy_image": ref}))
    elif ref:
        click.echo(ref)
    else:
        click.echo("no Toxiproxy image: the node image runs nodes.toxiproxy instead", err=True)


@click.group("compose")
def compose() -> None:
    """docker-compose files for a topology."""


@compose.command("render")
@click.argument("topology_file", required=False, type=click.Path(dir_okay=False))
@click.option("--output", "-o", type=click.Path(dir_okay=False), default=None,
              help="Write to FILE instead of standard output.")
@click.option("--image", default=None,
              help="Node image [default: session-testnet/node:latest, which 'testnet images "
                   "build' points at the current build].")
@click.option("--json", "as_json", is_flag=True,
              help="Write the Compose document as JSON (Compose reads it as well) instead of YAML.")
@click.option("--seed", "seed", default=None,
              help="Testnet seed: fixes node keys and the swarm layout [default: the topology "
                   "file's, else random].")
@friendly_errors
def compose_render(topology_file: str | None, output: str | None, image: str | None,
                   as_json: bool, seed: str | None) -> None:
    """Write a docker-compose file (Compose v1 and v2) for TOPOLOGY_FILE or the default."""
    from harness.compose import DEFAULT_IMAGE, compose_dict, render_compose
    from harness.topology import Topology

    topology = Topology.load(topology_file) if topology_file else Topology()
    if seed is not None:
        topology = Topology.from_dict({**topology.to_dict(), "seed": seed})
    node_image = image or DEFAULT_IMAGE
    if as_json:
        text = json.dumps(compose_dict(topology, node_image), indent=2) + "\n"
    else:
        text = render_compose(topology, node_image)
    if output:
        Path(output).write_text(text)
        click.echo(f"wrote {output}", err=True)
    else:
        click.echo(text, nl=False)


commands = [images, compose]
