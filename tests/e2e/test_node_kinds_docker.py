"""Other node implementations on docker: two versions of our node in one testnet
('N:python@REF' nodes run in containers of the revision's own image, built offline and tagged by
its commit, next to today's nodes; messages cross the two groups' swarms), and the user's own
image ('N:image=IMAGE')."""

from __future__ import annotations

import io
import json
import subprocess
import sys
import tarfile
from pathlib import Path

import docker.errors
import pytest

from harness.client import Account, SessionClient
from harness.images import ensure_images
from harness.images.revision import REVISION_REPOSITORY
from harness.naming import unique_name
from harness.network import Testnet
from harness.nodekinds.custom import ENV_PREFIX
from harness.nodekinds.revisions import repo_root
from harness.topology import NodeGroup, Topology
from nodes.protocol.swarm import swarm_for, swarm_space

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

#: see tests/integration/test_node_versions.py
OLD = "c2abfbbea015598e7fe26eac811031176f61d177"


@pytest.fixture(scope="module")
def engine():
    try:
        c = docker.from_env()
        c.ping()
    except Exception as e:
        pytest.skip(f"Docker engine not reachable: {e}")
    if subprocess.run(["git", "-C", str(repo_root()), "cat-file", "-e", f"{OLD}^{{commit}}"],
                      capture_output=True).returncode != 0:
        pytest.skip(f"the checkout has no commit {OLD} (a shallow clone?)")
    try:
        yield c
    finally:
        c.close()


def _account_in(swarm: int, ids: list[int]) -> Account:
    while True:
        acc = Account.generate()
        if swarm_for(swarm_space(acc.session_id), ids) == swarm:
            return acc


def test_images_build_ref_tags_the_revision_by_its_commit(engine):
    res = subprocess.run([sys.executable, "-m", "harness", "images", "build", "--ref", OLD[:10],
                          "--json"], capture_output=True, text=True, timeout=900)
    assert res.returncode == 0, res.stderr
    out = json.loads(res.stdout)
    [rev] = out["revisions"]
    assert rev["commit"] == OLD and rev["tag"] == f"{REVISION_REPOSITORY}:{OLD[:12]}"
    img = engine.images.get(rev["tag"])
    # the image holds the revision's node, not today's: its snode differs where aba6ed1 changed it
    check = engine.containers.run(rev["tag"], ["python", "-c",
                                  "import nodes.snode.onion_handler as m, inspect; "
                                  "print('Snode not ready' in inspect.getsource(m))"],
                                  remove=True, network_disabled=True)
    assert check.decode().strip() == "False"
    now = engine.containers.run(out["node"], ["python", "-c",
                                "import nodes.snode.onion_handler as m, inspect; "
                                "print('Snode not ready' in inspect.getsource(m))"],
                                remove=True, network_disabled=True)
    assert now.decode().strip() == "True"
    assert img.labels.get("session-testnet.inputs")
    bad = subprocess.run([sys.executable, "-m", "harness", "images", "build", "--ref",
                          "a66d8c0~1"], capture_output=True, text=True, timeout=300)
    assert bad.returncode == 1 and "predates the node contract" in bad.stderr


async def test_two_revisions_side_by_side_on_docker(engine):
    topology = Topology(name=unique_name("versd"), nodes=(NodeGroup(3), NodeGroup(3, ref=OLD)),
                        swarms=2)
    net = Testnet.up(topology, backend="docker", timeout=180)
    try:
        by_name = {n.name: n for n in net.nodes}
        for n in net.nodes:
            image = engine.containers.get(n.runtime["container"]).image.tags
            if n.revision == OLD:
                assert f"{REVISION_REPOSITORY}:{OLD[:12]}" in image
            else:
                assert not any(t.startswith(REVISION_REPOSITORY) for t in image)
        assert sorted(n.revision or "" for n in net.nodes) == [""] * 3 + [OLD] * 3
        swarms = net.swarms()
        ids = sorted(swarms)
        assert {by_name[m].revision for ms in swarms.values() for m in ms} == {None, OLD}
        async with SessionClient(net.seed_url, _account_in(ids[0], ids), retry_backoff=0.05) as alice, \
                SessionClient(net.seed_url, _account_in(ids[1], ids), retry_backoff=0.05) as bob:
            sent = await alice.send(bob.session_id, "hello across versions")
            assert sent.ok and sent.confirmations == len(swarms[ids[1]])
            got = await bob.wait_for(count=1, timeout=30)
            assert [(m.sender, m.body) for m in got] == [(alice.session_id, "hello across versions")]
            reply = await bob.send(alice.session_id, "back")
            assert reply.ok and reply.confirmations == len(swarms[ids[0]])
            got = await alice.wait_for(count=1, timeout=30)
            assert [m.body for m in got] == ["back"]
    finally:
        net.down()


async def test_your_own_image_joins_a_docker_testnet(engine, tmp_path):
    """``N:image=IMAGE``: a container of the user's image, started with its own command and the
    node contract in its environment (here: the node image plus examples/nodes/snode_wrapper.py
    as its CMD)."""
    base = ensure_images(engine).node
    wrapper = (Path(__file__).resolve().parents[2] / "examples" / "nodes" / "snode_wrapper.py").read_bytes()
    dockerfile = (f"FROM {base}\nCOPY snode_wrapper.py /app/snode_wrapper.py\n"
                  'CMD ["python", "/app/snode_wrapper.py"]\n').encode()
    ctx = io.BytesIO()
    with tarfile.open(fileobj=ctx, mode="w") as tar:
        for name, data in (("Dockerfile", dockerfile), ("snode_wrapper.py", wrapper)):
            ti = tarfile.TarInfo(name)
            ti.size = len(data)
            tar.addfile(ti, io.BytesIO(data))
    ctx.seek(0)
    tag = "session-testnet-test/own-node:e2e"
    engine.images.build(fileobj=ctx, custom_context=True, tag=tag, network_mode="none", rm=True)
    topology = Topology(name=unique_name("owni"), swarms=2, nodes=(
        NodeGroup(3, "image", tag), NodeGroup(3, "image", tag, has_admin=True)))
    net = Testnet.up(topology, backend="docker", timeout=180)
    try:
        for n in net.nodes:
            c = engine.containers.get(n.runtime["container"])
            assert tag in c.image.tags
            assert c.attrs["Config"]["Cmd"] == ["python", "/app/snode_wrapper.py"]  # its own
            env = dict(e.split("=", 1) for e in c.attrs["Config"]["Env"])
            assert env[ENV_PREFIX + "PUBLIC_IP"] == n.public_ip
            assert env[ENV_PREFIX + "ADMIN_PORT"] == ("22030" if n.admin_port else "0")
        assert net.node_admin("sn04", "state")["swarm_id"] is not None
        async with SessionClient(net.seed_url, Account.generate(), retry_backoff=0.05) as alice, \
                SessionClient(net.seed_url, Account.generate(), retry_backoff=0.05) as bob:
            sent = await alice.send(bob.session_id, "from an image of my own")
            assert sent.ok and sent.confirmations == 3
            got = await bob.wait_for(count=1, timeout=30)
            assert [m.body for m in got] == ["from an image of my own"]
    finally:
        net.down()
        engine.images.remove(tag, force=True)
