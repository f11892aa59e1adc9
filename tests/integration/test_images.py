"""The node image: content-addressed tag, build context, base choice, and a real build + run."""

from __future__ import annotations

import io
import tarfile
import time
from pathlib import Path

import docker.errors
import pytest

from harness import images
from harness.images import ImageSet, NodeSources, PythonInfo, base, code, ensure_images, node, node_image_tag

# needs the Docker engine (it builds an image and starts a container)
pytestmark = [pytest.mark.integration, pytest.mark.e2e]

IMPORT_CHECK = (
    "import importlib.util, os, sys; "
    "import nodes.protocol, aiohttp, nacl, cryptography, google.protobuf; "
    "assert importlib.util.find_spec('harness') is None, 'harness/ must not be in the image'; "
    "print('ok', os.getuid(), sys.version_info[0], sys.version_info[1], sys.prefix)"
)


@pytest.fixture(scope="module")
def client():
    try:
        c = docker.from_env()
        c.ping()
    except Exception as e:  # engine missing or not reachable
        pytest.skip(f"Docker engine not reachable: {e}")
    try:
        yield c
    finally:
        c.close()


@pytest.fixture(scope="module")
def image_set(client) -> tuple[ImageSet, list[str], float]:
    steps: list[str] = []
    t0 = time.monotonic()
    result = ensure_images(client, progress=steps.append)
    return result, steps, time.monotonic() - t0


# -- pure parts -----------------------------------------------------------------------------------

def _copy_tree(tmp_path: Path) -> NodeSources:
    nodes = tmp_path / "nodes"
    (nodes / "protocol").mkdir(parents=True)
    (nodes / "__init__.py").write_text("")
    (nodes / "protocol" / "a.py").write_text("X = 1\n")
    (nodes / "requirements.txt").write_text("aiohttp>=3.9\n")
    dockerfile = tmp_path / "Dockerfile"
    dockerfile.write_bytes(NodeSources.installed().dockerfile_bytes())
    return NodeSources(nodes=nodes, dockerfile=dockerfile)


def test_sources_are_the_installed_packages():
    import harness.images as images_pkg
    import nodes as nodes_pkg

    installed = NodeSources.installed()
    assert Path(str(installed.nodes)) == Path(nodes_pkg.__file__).parent
    assert Path(str(installed.dockerfile)) == Path(images_pkg.__file__).parent / "Dockerfile"
    assert installed.dockerfile_bytes().startswith(b"# The node image")
    # the one list of node dependencies; pyproject.toml reads the same file
    assert "aiohttp>=3.9" in installed.requirements()
    assert images.node_requirements() == installed.requirements()


def test_requirements_file_holds_only_requirements():
    from harness.images.sources import parse_requirements

    assert parse_requirements("# c\n\naiohttp>=3.9  # why\npynacl>=1.5\n") == ("aiohttp>=3.9", "pynacl>=1.5")
    with pytest.raises(images.ImageError, match="line 2: '-r other.txt' is a pip option"):
        parse_requirements("aiohttp\n-r other.txt\n")


def test_tag_is_content_addressed(tmp_path, monkeypatch):
    sources = _copy_tree(tmp_path)
    nodes, dockerfile = Path(str(sources.nodes)), Path(str(sources.dockerfile))
    monkeypatch.delenv("SESSION_TESTNET_BASE_IMAGE", raising=False)
    monkeypatch.delenv("BASE_IMAGE", raising=False)
    tag = node_image_tag(sources=sources)
    assert tag.startswith("session-testnet/node:") and len(tag.split(":")[1]) == 12
    assert node_image_tag(sources=sources) == tag
    assert tag != node_image_tag()  # the installed nodes package is another tree

    # byte code, caches and editor files are not inputs
    (nodes / "protocol" / "__pycache__").mkdir()
    (nodes / "protocol" / "__pycache__" / "a.cpython-311.pyc").write_bytes(b"\0junk")
    (nodes / ".a.py.swp").write_text("x")
    assert node_image_tag(sources=sources) == tag

    # a source change, a new file, the Dockerfile, the requirements and the base all are
    (nodes / "protocol" / "a.py").write_text("X = 2\n")
    changed = node_image_tag(sources=sources)
    assert changed != tag
    (nodes / "protocol" / "b.json").write_text("{}")
    assert node_image_tag(sources=sources) != changed
    after_file = node_image_tag(sources=sources)
    dockerfile.write_bytes(dockerfile.read_bytes() + b"\n# comment\n")
    assert node_image_tag(sources=sources) != after_file
    after_df = node_image_tag(sources=sources)
    (nodes / "requirements.txt").write_text("aiohttp>=3.9\nattrs>=1\n")
    assert sources.requirements() == ("aiohttp>=3.9", "attrs>=1")
    assert node_image_tag(sources=sources) != after_df
    assert node_image_tag("debian:bookworm", sources) != node_image_tag(sources=sources)


def test_build_context_holds_only_dockerfile_wheels_and_nodes(tmp_path):
    wheels = tmp_path / "wheels"
    wheels.mkdir()
    (wheels / "demo-1.0-py3-none-any.whl").write_bytes(b"PK")
    (wheels / "requirements.txt").write_text("demo\n")
    (wheels / ".complete").write_text("{}")
    buf = io.BytesIO()
    node.build_context(wheels, buf)
    buf.seek(0)
    with tarfile.open(fileobj=buf) as tar:
        names = tar.getnames()
        dockerfile = tar.extractfile("Dockerfile").read()  # type: ignore[union-attr]
    assert dockerfile == NodeSources.installed().dockerfile_bytes()
    assert "wheels/demo-1.0-py3-none-any.whl" in names and "wheels/requirements.txt" in names
    assert "wheels/.complete" not in names
    assert "nodes/__init__.py" in names and "nodes/protocol/__init__.py" in names
    assert "nodes/requirements.txt" in names
    tops = {n.split("/")[0] for n in names}
    assert tops == {"Dockerfile", "wheels", "nodes"}
    assert not any("__pycache__" in n or n.endswith(".pyc") for n in names)


def test_wheel_platforms_cover_older_manylinux():
    info = PythonInfo(version="3.11", libc="glibc", libc_version="2.36", machine="x86_64")
    plats = info.platforms()
    assert plats[0] == "manylinux_2_36_x86_64"
    assert {"manylinux_2_34_x86_64", "manylinux_2_17_x86_64", "manylinux2014_x86_64",
            "manylinux1_x86_64"} <= set(plats)
    assert "manylinux_2_37_x86_64" not in plats
    arm = PythonInfo(version="3.11", libc="glibc", libc_version="2.31", machine="aarch64")
    assert arm.platforms()[0] == "manylinux_2_31_aarch64" and "manylinux1_aarch64" not in arm.platforms()
    assert info.cp_tag == "cp311"


def test_host_debian_sources_keeps_only_the_suite(tmp_path):
    apt = tmp_path / "etc" / "apt"
    (apt / "sources.list.d").mkdir(parents=True)
    key = tmp_path / "debian.gpg"
    key.write_text("k")
    (apt / "sources.list.d" / "debian.sources").write_text(
        "Types: deb\nURIs: http://deb.example/debian\nSuites: bookworm bookworm-updates\n"
        f"Components: main\nSigned-By: {key}\n\n"
        "Types: deb\nURIs: http://deb.example/debian-security\nSuites: bookworm-security\n"
        "Components: main contrib\n\n"
        "Types: deb-src\nURIs: http://deb.example/debian\nSuites: bookworm\nComponents: main\n\n"
        "Enabled: no\nTypes: deb\nURIs: http://off.example/debian\nSuites: bookworm\nComponents: main\n"
    )
    (apt / "sources.list.d" / "docker.list").write_text(
        "deb [arch=amd64] https://download.example/linux/debian bookworm stable\n"
        "deb http://deb.example/debian bookworm-backports main\n"
        "# deb http://commented.example/debian bookworm main\n"
    )
    (apt / "sources.list.d" / "node.sources.disabled-by-farm").write_text(
        "Types: deb\nURIs: https://n.example\nSuites: bookworm\nComponents: main\n")
    assert base.host_debian_sources("bookworm", root=tmp_path) == [
        f"deb [signed-by={key}] http://deb.example/debian bookworm main",
        f"deb [signed-by={key}] http://deb.example/debian bookworm-updates main",
        "deb http://deb.example/debian-security bookworm-security main contrib",
    ]
    assert base.host_debian_sources("trixie", root=tmp_path) == []


def test_missing_mmdebstrap_says_what_to_do(client, monkeypatch):
    monkeypatch.setattr(base.shutil, "which", lambda _name: None)
    monkeypatch.setenv("SESSION_TESTNET_DEBIAN_SUITE", "no-such-suite-for-test")
    with pytest.raises(images.ImageError, match="apt-get install mmdebstrap"):
        base.ensure_local_base(client)


# -- the real image -------------------------------------------------------------------------------

def test_image_builds_and_runs_the_node_code(client, image_set):
    result, steps, seconds = image_set
    assert result.node == node_image_tag()
    img = client.images.get(result.node)
    assert img.id == result.node_id
    assert img.labels.get(images.IMAGE_LABEL) == "node"
    assert img.labels.get("session-testnet.base") == result.base
    assert img.attrs["Config"]["User"] == "node"
    if result.built:
        assert any("building" in s for s in steps), steps
        print(f"\nnode image built in {seconds:.1f}s, {img.attrs['Size'] / 1e6:.0f} MB, base {result.base}")

    container = client.containers.run(result.node, ["python", "-c", IMPORT_CHECK], detach=True,
                                      network_disabled=True, labels={"session-testnet.test": "images"})
    try:
        status = container.wait(timeout=60)
        out = container.logs().decode()
        assert status["StatusCode"] == 0, out
        ok, uid, major, minor, prefix = out.split()
        assert ok == "ok"
        assert uid != "0", "the node image must not run as root"
        assert (major, minor) == ("3", "11")
        assert prefix == "/opt/venv"
    finally:
        container.remove(force=True)


def test_second_call_is_a_fast_no_op(client, image_set):
    first, _, _ = image_set
    steps: list[str] = []
    t0 = time.monotonic()
    again = ensure_images(client, progress=steps.append)
    elapsed = time.monotonic() - t0
    assert again.node == first.node and again.node_id == first.node_id
    assert again.built is False
    assert steps == []
    assert elapsed < 2.0, f"ensure_images took {elapsed:.2f}s although the image exists"


CODE_CHECK = (
    "import os, sys; "
    "mounts = {l.split()[4] for l in open('/proc/self/mountinfo')}; "
    "print(' '.join(p for p in sys.argv[1:] if p in mounts), os.access('/app/nodes', os.W_OK))"
)


def test_code_volumes_hold_the_image_code_read_only(client, image_set):
    result, _, _ = image_set
    assert result.code_paths[1:] == ("/opt/venv", "/app")
    assert result.code_paths[0].endswith("/python3.11"), result.code_paths
    steps: list[str] = []
    volumes = code.ensure_code_volumes(client, result.node_id, result.code_paths,
                                       progress=steps.append)
    assert list(volumes) == list(result.code_paths)
    client.volumes.get(code.volume_base(result.node_id))  # complete
    again: list[str] = []
    assert code.ensure_code_volumes(client, result.node_id, result.code_paths,
                                    progress=again.append) == volumes
    assert again == []  # filled once per image

    # the node code imports from them (not from the image's layers), and cannot change them
    container = client.containers.run(
        result.node, ["python", "-c", f"{IMPORT_CHECK}; {CODE_CHECK}", *volumes], detach=True,
        network_disabled=True, mounts=code.code_mounts(volumes),
        labels={"session-testnet.test": "images"})
    try:
        status = container.wait(timeout=60)
        out = container.logs().decode().split("\n")
        assert status["StatusCode"] == 0, out
        assert out[0].startswith("ok ") and out[0].endswith(" /opt/venv"), out
        assert out[1] == " ".join(volumes) + " False", out
    finally:
        container.remove(force=True)


def test_code_volumes_of_a_gone_image_are_removed(client, image_set):
    result, _, _ = image_set
    gone = "sha256:" + "0" * 64  # no such image
    name = code.volume_base(gone) + "-0"
    client.volumes.create(name=name, labels={images.IMAGE_LABEL: "code", code.CODE_OF_LABEL: gone})
    removed = code.remove_stale_code_volumes(client)
    assert name in removed
    assert code.volume_base(result.node_id) not in removed  # its image is present
    client.volumes.get(code.volume_base(result.node_id))


def test_toxiproxy_image_is_official_or_none(client):
    ref = images.toxiproxy_image(client)
    if ref is None:  # no registry and no local copy: nodes.toxiproxy stands in
        with pytest.raises(docker.errors.ImageNotFound):
            client.images.get(f"{images.TOXIPROXY_REPOSITORY}:{images.TOXIPROXY_TAG}")
    else:
        assert ref.startswith(images.TOXIPROXY_REPOSITORY + ":2.")
        client.images.get(ref)

