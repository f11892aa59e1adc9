"""The installable product: the wheel and sdist carry what the package needs at run time, and a
wheel installed in a fresh venv outside the checkout runs testnets (process backend; the docker
backend's image builds from the wheel's own Dockerfile and nodes package).

The build uses ``python -m build --no-isolation`` when setuptools and wheel are installed (the
test extra has them), so it needs no network; the venv sees the host's site-packages for the
dependencies (``--system-site-packages``) and installs only the wheel, from no index.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

import pytest

from harness.images.sources import NodeSources, parse_requirements
from harness.naming import unique_name

pytestmark = [pytest.mark.integration, pytest.mark.slow]

ROOT = Path(__file__).resolve().parents[2]
#: what the sdist is built from (pyproject.toml reads the two requirement files)
SOURCES = ("pyproject.toml", "README.md", "MANIFEST.in", "harness", "nodes")
_JUNK = shutil.ignore_patterns("__pycache__", "*.pyc", ".mypy_cache", ".ruff_cache", ".pytest_cache")


def _run(argv: list[str], *, cwd: Path, env: dict[str, str] | None = None, timeout: float = 300,
         check: bool = True) -> subprocess.CompletedProcess[str]:
    res = subprocess.run(argv, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout,
                         stdin=subprocess.DEVNULL)
    if check and res.returncode != 0:
        pytest.fail(f"{' '.join(argv)} exited {res.returncode}\nstdout:\n{res.stdout}\nstderr:\n{res.stderr}")
    return res


def _offline_build_possible() -> bool:
    try:
        major = int(version("setuptools").split(".")[0])
        version("wheel")
    except (PackageNotFoundError, ValueError):
        return False
    return major >= 64


@dataclass
class Dist:
    wheel: Path
    sdist: Path
    seconds: float


@pytest.fixture(scope="module")
def workdir() -> Iterator[Path]:
    """A scratch folder outside the checkout, removed afterwards whatever happened."""
    path = Path(tempfile.mkdtemp(prefix="session-testnet-wheel-"))
    assert not path.resolve().is_relative_to(ROOT)
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


@pytest.fixture(scope="module")
def dist(workdir: Path) -> Dist:
    # build from a copy: an in-tree build would leave build/ and *.egg-info in the checkout
    src = workdir / "src"
    src.mkdir()
    for name in SOURCES:
        p = ROOT / name
        if p.is_dir():
            shutil.copytree(p, src / name, ignore=_JUNK)
        else:
            shutil.copy2(p, src / name)
    out = workdir / "dist"
    argv = [sys.executable, "-m", "build", "--outdir", str(out)]
    if _offline_build_possible():
        argv.append("--no-isolation")
    t0 = time.monotonic()
    _run([*argv, str(src)], cwd=workdir)
    seconds = time.monotonic() - t0
    wheels, sdists = list(out.glob("*.whl")), list(out.glob("*.tar.gz"))
    assert len(wheels) == 1 and len(sdists) == 1, sorted(p.name for p in out.iterdir())
    return Dist(wheel=wheels[0], sdist=sdists[0], seconds=seconds)


@dataclass
class Venv:
    path: Path
    env: dict[str, str]
    cwd: Path
    install_seconds: float

    def bin(self, name: str) -> str:
        return str(self.path / "bin" / name)

    def testnet(self, *args: str, check: bool = True, timeout: float = 300) -> subprocess.CompletedProcess[str]:
        return _run([self.bin("testnet"), *args], cwd=self.cwd, env=self.env, check=check, timeout=timeout)

    def python(self, code: str) -> str:
        return _run([self.bin("python"), "-c", code], cwd=self.cwd, env=self.env).stdout


@pytest.fixture(scope="module")
def venv(dist: Dist, workdir: Path) -> Venv:
    path = workdir / "venv"
    t0 = time.monotonic()
    # the host's pip and dependencies are visible through --system-site-packages; only the wheel
    # is installed, from no index, and dependencies must resolve from what is installed
    _run([sys.executable, "-m", "venv", "--without-pip", "--system-site-packages", str(path)], cwd=workdir)
    _run([str(path / "bin" / "python"), "-m", "pip", "install", "--no-index", "-q",
          "--disable-pip-version-check", str(dist.wheel)], cwd=workdir)
    seconds = time.monotonic() - t0
    cwd = workdir / "cwd"
    cwd.mkdir()
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    env["SESSION_TESTNET_HOME"] = str(workdir / "home")
    env["PATH"] = f"{path / 'bin'}{os.pathsep}{env.get('PATH', '')}"
    env.pop("SESSION_TESTNET_NAME", None)
    return Venv(path=path, env=env, cwd=cwd, install_seconds=seconds)


def _down(venv: Venv, name: str) -> subprocess.CompletedProcess[str]:
    """``testnet down``; when it fails, ``testnet clean`` still removes what is left."""
    down = venv.testnet("down", "--name", name, check=False, timeout=600)
    if down.returncode != 0:
        venv.testnet("clean", check=False, timeout=600)
    return down


def _requirements(name: str) -> tuple[str, ...]:
    return parse_requirements((ROOT / name).read_text(), name)


# -- what the archives carry ------------------------------------------------------------------------

def test_wheel_carries_the_runtime_files(dist: Dist):
    with zipfile.ZipFile(dist.wheel) as whl:
        names = set(whl.namelist())
        meta_name = next(n for n in names if n.endswith(".dist-info/METADATA"))
        metadata = whl.read(meta_name).decode()
        dockerfile = whl.read("harness/images/Dockerfile")
    assert dockerfile == (ROOT / "harness/images/Dockerfile").read_bytes()
    assert "nodes/requirements.txt" in names
    # every file the image is built from (a data file needs [tool.setuptools.package-data])
    checkout = NodeSources(nodes=ROOT / "nodes", dockerfile=ROOT / "harness/images/Dockerfile")
    source_nodes = {arcname for arcname, _ in checkout.files()}
    assert source_nodes <= names, f"missing from the wheel: {sorted(source_nodes - names)}"
    # the packaged scenario suites (testnet suite run / pytest --pyargs harness.suites)
    suites = {f"harness/suites/{p.name}" for p in (ROOT / "harness" / "suites").glob("*.py")}
    assert {"harness/suites/conftest.py", "harness/suites/cli.py"} <= suites
    assert suites <= names, f"missing from the wheel: {sorted(suites - names)}"
    assert not any(n.startswith(("tests/", "docs/", "scripts/")) for n in names)
    assert not any(n.endswith(".pyc") for n in names)
    # the dependencies come from the requirement files: the nodes' and the harness's
    requires = [line.split(":", 1)[1].strip() for line in metadata.splitlines()
                if line.startswith("Requires-Dist:") and "extra ==" not in line]
    assert requires == [*_requirements("nodes/requirements.txt"), *_requirements("harness/requirements.txt")]
    print(f"\nwheel {dist.wheel.name}: {dist.wheel.stat().st_size / 1e3:.0f} kB, "
          f"sdist {dist.sdist.stat().st_size / 1e3:.0f} kB, built in {dist.seconds:.1f}s")


def test_sdist_builds_the_same_package(dist: Dist):
    with tarfile.open(dist.sdist) as tar:
        names = {n.split("/", 1)[1] for n in tar.getnames() if "/" in n}
    for needed in ("pyproject.toml", "MANIFEST.in", "nodes/requirements.txt", "harness/requirements.txt",
                   "harness/images/Dockerfile", "harness/cli.py", "nodes/snode/__main__.py"):
        assert needed in names, needed


# -- the installed product --------------------------------------------------------------------------

def test_installed_wheel_is_what_runs(venv: Venv):
    where = json.loads(venv.python(
        "import json, harness, nodes, harness.images as i; "
        "from harness.images import NodeSources; s = NodeSources.installed(); "
        "print(json.dumps([harness.__file__, nodes.__file__, str(s.dockerfile), str(s.nodes)]))"))
    site = venv.path.resolve()
    for p in where:
        assert Path(p).resolve().is_relative_to(site), f"{p} is not from the venv"
    # the same sources give the same content-addressed image tag as the checkout
    from harness.images import node_image_tag

    tagged = json.loads(venv.testnet("images", "tag", "--json").stdout)
    assert tagged["node"] == node_image_tag(tagged["base"])


def test_process_testnet_from_the_wheel(venv: Venv):
    name = unique_name("wheel")
    t0 = time.monotonic()
    try:
        up = json.loads(venv.testnet("up", "--backend", "process", "--json", "--name", name).stdout)
        up_seconds = time.monotonic() - t0
        assert up["name"] == name and up["backend"] == "process" and up["status"] == "up"
        assert len(up["nodes"]) == 6 and up["seed_url"].startswith("http://127.")

        accounts = {}
        for who in ("alice", "bob"):
            path = venv.cwd / f"{who}.json"
            # the option that writes the account file: -o/--output (the CLI convention), --out before
            help_text = venv.testnet("account", "new", "--help").stdout
            out_opt = "--output" if "--output" in help_text else "--out"
            venv.testnet("account", "new", out_opt, str(path))
            accounts[who] = json.loads(path.read_text())
        body = f"hello from the wheel {name}"
        venv.testnet("send", "--name", name, "--account", "alice.json", "--to",
                     accounts["bob"]["session_id"], body)
        got = json.loads(venv.testnet("recv", "--name", name, "--account", "bob.json",
                                      "--timeout", "20", "--json").stdout)
        assert [(m["from"], m["body"]) for m in got] == [(accounts["alice"]["session_id"], body)]
    finally:
        down = _down(venv, name)
    assert down.returncode == 0, down.stderr
    status = venv.testnet("status", "--json", check=False)
    assert name not in status.stdout
    print(f"\ninstall {venv.install_seconds:.1f}s, up {up_seconds:.1f}s (process backend, 6 nodes)")


def test_suite_list_from_the_wheel(venv: Venv):
    """The installed scenario suites are listed (collected by pytest, with the wheel's plugin and
    conftest) from outside the checkout: the same families and scenarios as the checkout's."""
    res = venv.testnet("suite", "list", "--json")
    listed = json.loads(res.stdout)
    assert Path(listed["package_dir"]).resolve().is_relative_to(venv.path.resolve())
    from harness.suites import FAMILIES
    from harness.suites.cli import collect

    assert [f["name"] for f in listed["families"]] == list(FAMILIES)
    checkout = {(s.name, s.family, tuple(s.nodeids)) for s in collect()}
    assert {(s["name"], s["family"], tuple(s["nodeids"])) for s in listed["scenarios"]} == checkout
    bad = venv.testnet("suite", "run", "no_such_family", check=False)
    assert bad.returncode == 2 and "families: delivery, churn" in bad.stderr


# -- the docker backend from the wheel --------------------------------------------------------------

@pytest.fixture(scope="module")
def docker_client() -> Iterator[Any]:
    docker = pytest.importorskip("docker")
    try:
        client = docker.from_env()
        client.ping()
    except Exception as e:  # engine missing or not reachable
        pytest.skip(f"Docker engine not reachable: {e}")
    try:
        yield client
    finally:
        client.close()


#: run in the venv: write the build context from the installed package, compare it with the
#: wheel's own files, then build it for real (no layer cache) under a throwaway tag
BUILD_FROM_WHEEL = """
import io, json, sys, tarfile, zipfile
import docker
from harness.images import NodeSources, ensure_images
from harness.images.node import build_context, build_image
from harness.images.wheels import prepare_wheels, python_info

wheel, tag = sys.argv[1], sys.argv[2]
client = docker.from_env()
sources = NodeSources.installed()
base = ensure_images(client).base
wheels = prepare_wheels(python_info(client, base), sources.requirements())
buf = io.BytesIO()
build_context(wheels, buf, sources)
buf.seek(0)
with tarfile.open(fileobj=buf) as tar:
    ctx = {m.name: tar.extractfile(m).read() for m in tar.getmembers() if m.isfile()}
where = {"Dockerfile": "harness/images/Dockerfile"}
with zipfile.ZipFile(wheel) as whl:
    differs = [n for n in ctx if not n.startswith("wheels/") and whl.read(where.get(n, n)) != ctx[n]]
steps = []
image_id = build_image(client, tag, base, wheels, sources=sources, progress=steps.append, nocache=True)
print(json.dumps({"differs": differs, "files": len(ctx), "id": image_id, "steps": steps}))
"""


@pytest.mark.e2e
def test_docker_image_builds_from_the_wheel(venv: Venv, dist: Dist, docker_client: Any):
    """A real build (no layer cache) whose every input comes from the installed wheel, run and
    removed afterwards; the throwaway repository keeps it out of the node images' pruning."""
    tag = f"session-testnet/wheel-test:{unique_name('img')}"
    t0 = time.monotonic()
    try:
        res = _run([venv.bin("python"), "-c", BUILD_FROM_WHEEL, str(dist.wheel), tag], cwd=venv.cwd,
                   env=venv.env, timeout=900)
        result = json.loads(res.stdout.strip().splitlines()[-1])
        assert result["differs"] == [], "the build context differs from the wheel's files"
        assert result["files"] > 40
        assert any(s.startswith("building ") for s in result["steps"]), result["steps"]
        img = docker_client.images.get(tag)
        assert img.id == result["id"] and img.labels.get("session-testnet.image") == "node"
        out = docker_client.containers.run(
            tag, ["python", "-c", "import nodes.snode.__main__, nodes.seed, aiohttp; print('ok')"],
            remove=True, network_disabled=True, labels={"session-testnet.test": "wheel"})
        assert out.decode().strip() == "ok"
        print(f"\nnode image built from the wheel (no cache) in {time.monotonic() - t0:.1f}s")
    finally:
        try:
            docker_client.images.remove(tag, force=True)
        except Exception:
            pass  # never built


@pytest.mark.e2e
def test_docker_testnet_from_the_wheel(venv: Venv, docker_client: Any):
    name = unique_name("wheeld")
    try:
        up = json.loads(venv.testnet("up", "--backend", "docker", "--json", "--name", name,
                                     timeout=600).stdout)
        assert up["backend"] == "docker" and up["status"] == "up" and len(up["nodes"]) == 6
        status = venv.testnet("status", "--json", "--name", name).stdout
        assert name in status and up["nodes"][0]["pubkey_ed25519"] in status
    finally:
        down = _down(venv, name)
    assert down.returncode == 0, down.stderr


def test_report_and_replay_schedule_from_the_wheel(venv: Venv):
    """`testnet report` and `testnet schedule from-report` on a run's files, from the wheel."""
    from report_samples import sample_history, sample_results

    from harness.report import Report, write

    h = sample_history()
    folder = venv.cwd / "run-artifacts"
    write(Report.build(sample_results(h), h, testnets=[{"name": "t", "seed": "42"}]), folder)
    out = json.loads(venv.testnet("report", str(folder / "history.json"), "-o", "r.html",
                                  "--json").stdout)
    assert out["verdict"] == "failed" and (venv.cwd / "r.html").stat().st_size == out["bytes"]
    venv.testnet("schedule", "from-report", str(folder / "report.json"), "-o", "s.json")
    schedule = json.loads((venv.cwd / "s.json").read_text())
    assert schedule["seed"] == "42"
    assert [(s["action"], s["target"]) for s in schedule["steps"]] == [
        ("misbehave", "sn02"), ("latency", "sn07"), ("kill", "sn05")]
