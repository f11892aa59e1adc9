"""pytest plugin: testnet fixtures that always clean up, and logs saved when a test fails.

Fixtures:

- ``testnet_factory(**topology) -> Testnet``: start a testnet (unique name) for this test; it is
  torn down after the test, and when the test failed every node's log is first copied to
  ``--testnet-artifacts`` (default ``./testnet-artifacts``).
- ``testnet``: a default testnet (2 swarms × 3 nodes) shared by a test module.
- ``history``: a :class:`harness.recording.HistoryRecorder` (clients, Faults timeline,
  check results); when the test fails, ``report.md``/``report.json``/``history.json`` are written
  to ``--testnet-artifacts/<test>/`` next to the saved logs. Request it after the testnet
  fixtures (``def test(testnet, history)``) so it is torn down while the testnet still runs.

Options: ``--testnet-backend process|docker`` (default: process, or $SESSION_TESTNET_BACKEND),
``--testnet-artifacts DIR``.

Marker ``@pytest.mark.backends("process", "docker")`` runs a test (module) once per backend;
the docker variants are marked ``e2e``. An explicit ``--testnet-backend`` runs only that one.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from harness.backends.registry import BACKENDS, default_backend
from harness.naming import unique_name
from harness.network import Testnet
from harness.topology import Topology


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("session-testnet")
    group.addoption("--testnet-backend", default=None, choices=list(BACKENDS),
                    help="runtime for testnet fixtures (default: process, or "
                         "$SESSION_TESTNET_BACKEND)")
    group.addoption("--testnet-artifacts", default="testnet-artifacts",
                    help="where logs of failed tests' testnets are saved")


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "backends(*names): run once per testnet backend")


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    marker = metafunc.definition.get_closest_marker("backends")
    if marker is None or "testnet_backend" not in metafunc.fixturenames:
        return
    if metafunc.config.getoption("--testnet-backend"):
        return  # the user chose one backend
    params = [pytest.param(b, id=b, marks=[pytest.mark.e2e] if b == "docker" else [])
              for b in marker.args]
    metafunc.parametrize("testnet_backend", params, indirect=True, scope="module")


@pytest.fixture(scope="module")
def testnet_backend(request: pytest.FixtureRequest) -> str:
    """The backend testnet fixtures use: the ``backends`` marker's parameter, else the option."""
    return getattr(request, "param", None) or _backend(request.config)


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[Any]) -> Any:
    report = yield
    if report.when == "call" and report.failed:
        item.stash[_FAILED] = True
    return report


_FAILED = pytest.StashKey[bool]()
#: testnet name -> folder its logs are saved to when its test fails
_LOG_DIRS = pytest.StashKey[dict[str, Path]]()


def _backend(config: pytest.Config) -> str:
    return config.getoption("--testnet-backend") or default_backend()


class _Owner:
    """Starts testnets for one fixture scope and guarantees their teardown."""

    def __init__(self, config: pytest.Config, label: str, backend: str) -> None:
        self.config = config
        self.label = label
        self.backend = backend
        self.nets: list[Testnet] = []

    def start(self, **kwargs: Any) -> Testnet:
        backend = kwargs.pop("backend", None) or self.backend
        timeout = kwargs.pop("timeout", 90.0)
        kwargs.setdefault("name", unique_name())
        net = Testnet.up(Topology(**kwargs), backend=backend, timeout=timeout)
        self.nets.append(net)
        self.config.stash.setdefault(_LOG_DIRS, {})[net.name] = self._dest(net)
        return net

    def _dest(self, net: Testnet) -> Path:
        return Path(self.config.getoption("--testnet-artifacts")) / _safe(self.label) / net.name

    def finish(self, failed: bool) -> None:
        errors = []
        for net in self.nets:
            try:
                if failed:
                    self._save(net)
                net.down()
            except Exception as e:  # tear down every testnet even if one fails
                errors.append(f"{net.name}: {e}")
        if errors:
            raise RuntimeError("testnet teardown failed: " + "; ".join(errors))

    def _save(self, net: Testnet) -> None:
        folder = net.save_artifacts(reason=f"test failed: {self.label}")
        dest = self._dest(net)
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.copytree(folder, dest, dirs_exist_ok=True)


def _safe(label: str) -> str:
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in label)[:120]


@pytest.fixture
def testnet_factory(request: pytest.FixtureRequest,
                    testnet_backend: str) -> Iterator[Callable[..., Testnet]]:
    owner = _Owner(request.config, request.node.nodeid, testnet_backend)
    try:
        yield owner.start
    finally:
        owner.finish(failed=request.node.stash.get(_FAILED, False))


@pytest.fixture(scope="module")
def testnet(request: pytest.FixtureRequest, testnet_backend: str) -> Iterator[Testnet]:
    owner = _Owner(request.config, request.node.nodeid, testnet_backend)
    failed = False
    try:
        yield owner.start()
        failed = request.session.testsfailed > 0
    finally:
        owner.finish(failed=failed)


@pytest.fixture
def history(request: pytest.FixtureRequest) -> Iterator[Any]:
    """Records one test's history; writes the check report when the test fails."""
    from harness.recording import HistoryRecorder

    rec = HistoryRecorder(label=request.node.nodeid)
    try:
        yield rec
    finally:
        try:
            if request.node.stash.get(_FAILED, False):
                dirs = request.config.stash.get(_LOG_DIRS, {})
                logs = {n: str(dirs[net.name] / f"{n}.log")
                        for net in rec.nets if net.name in dirs for n in rec.history.nodes}
                folder = Path(request.config.getoption("--testnet-artifacts")) / _safe(
                    request.node.nodeid)
                rec.write_report(folder, log_paths=logs)
        finally:
            rec.close()
