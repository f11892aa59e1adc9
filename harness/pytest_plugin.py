"""pytest plugin: testnets for tests, always cleaned up, with artifacts for the tests that fail.

Fixtures:

- ``testnet_factory(**topology) -> Testnet``: start a testnet (unique name) for this test; it is
  torn down after the test.
- ``testnet``: a default testnet (2 swarms × 3 nodes) shared by the tests of a module.
- ``history``: a :class:`harness.recording.HistoryRecorder` (recorded clients, a Faults timeline,
  check results). Request it in any order with the testnet fixtures: it is finalized by the
  plugin before any fixture of the test is torn down, while every testnet still runs (clients
  closed, faults the test left applied removed).

When a test fails (in setup or call), and only then, its artifacts go to
``--testnet-artifacts/<test id>/`` (default ``./testnet-artifacts``) before anything is torn
down: the logs of every testnet the test used (``<testnet>/<node>.log``, ``state.json``; the
module ``testnet`` counts only for the tests that requested it), of a testnet that failed to
come up, and, with ``history``, ``report.md``/``report.json``/``history.json`` and the HTML
report ``report.html`` (docs/reports.md). The terminal summary lists those folders and reports;
the report's path is also in the JUnit XML (``testnet_report`` property and
``[[ATTACHMENT|…]]`` in system-out), in pytest-html's page when that plugin is installed, and in
the GitHub Actions job summary when ``$GITHUB_STEP_SUMMARY`` is set.

Options: ``--testnet-backend process|docker`` (default: process, or $SESSION_TESTNET_BACKEND),
``--testnet-artifacts DIR``, ``--testnet-prefix PREFIX`` (start of every testnet name, default
``t``), ``--testnet-keep-on-failure`` (a failed test's testnets, and the module testnet after a
failed test, stay up with the faults in force; the summary says how to inspect and remove them),
``--testnet-reports failed|all`` (default failed; ``all`` writes report.html for every test with
a history, passing ones too), ``--testnet-seed SEED`` (every testnet the fixtures start gets this
seed, so keys, swarm layout, accounts of :func:`harness.suites` scenarios and fault targets
replay; default: a random seed per testnet, printed when a test fails), ``--testnet-client CMD``
(the client under test of the packaged scenarios: a command speaking the adapter protocol of
docs/client-adapter.md; default: the built-in client), ``--testnet-nodes N[:KIND[=PATH]]``
(repeatable: the node implementation of every testnet the fixtures start, e.g.
``10:oxen-storage=PATH``; shapes are scaled as :mod:`harness.pytest_nodes` says).

Markers: the scenario families of :mod:`harness.suites` (``delivery``, ``churn``, …) and
``builtin_client`` (a scenario that needs the built-in client: skipped under ``--testnet-client``),
``node_capabilities(*caps)`` (what a test needs of the nodes: skipped under ``--testnet-nodes``
when their implementation lacks it, with the implementation's reason).

Run index: at session end (on the xdist controller; rows travel on the teardown reports)
``<artifacts>/index.html`` and ``index.json`` list every test that used a testnet fixture or
``history``: outcome, duration, check verdicts, seeds, replay command, links to its report and
logs (:mod:`harness.pytest_runindex`, :mod:`harness.report.index`). Its path is printed in the
summary and added to the GitHub step summary.

Marker ``@pytest.mark.backends("process", "docker")`` runs a test (module) once per backend;
the docker variants are marked ``e2e``. An explicit ``--testnet-backend`` runs only that one (a
test whose marker does not name it is skipped, saying so).

pytest-xdist: every worker starts its own testnets; names carry the worker id
(:func:`harness.naming.unique_name`), so ``pytest -n 2`` runs them side by side.
"""

from __future__ import annotations

import importlib
import os
import re
import shutil
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from harness.backends.registry import BACKENDS, default_backend
from harness.naming import unique_name
from harness.network import Testnet
from harness.pytest_nodes import (
    CAPABILITY_MARKER,
    check_groups,
    node_groups,
    on_groups,
    skip_lacking,
)
from harness.pytest_runindex import (
    INDEX_PATH,
    RUN_ATTR,
    RunIndexWriter,
    check_verdicts,
    outcome_of,
)
from harness.recording import HistoryRecorder, testnet_info
from harness.report.ci import FailedTest, attachment_lines, github_summary, run_url
from harness.report.index import IndexEntry
from harness.suites.families import BUILTIN_CLIENT_MARKER, FAMILIES
from harness.topology import Topology

#: --testnet-prefix: a testnet name starts with a letter or digit; room is left for the
#: worker id, counter and random suffix within the 31 characters a name may have
PREFIX_RE = re.compile(r"^[a-z0-9][a-z0-9_-]{0,11}$")
#: user properties of a test's teardown report (they travel from xdist workers to the summary)
ARTIFACTS_PROPERTY = "testnet_artifacts"
KEPT_PROPERTY = "testnet_kept"
#: the failed test's report.html (also in the JUnit XML: <properties> and [[ATTACHMENT|…]])
REPORT_PROPERTY = "testnet_report"


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("session-testnet")
    group.addoption("--testnet-backend", default=None, choices=list(BACKENDS),
                    help="runtime for testnet fixtures (default: process, or "
                         "$SESSION_TESTNET_BACKEND)")
    group.addoption("--testnet-artifacts", default="testnet-artifacts", metavar="DIR",
                    help="where the artifacts (node logs, check report) of failed tests are "
                         "saved, one folder per test (default: ./testnet-artifacts)")
    group.addoption("--testnet-prefix", default="t", metavar="PREFIX",
                    help="start of the names of testnets the fixtures create (default: t; "
                         "1-12 of a-z 0-9 - _)")
    group.addoption("--testnet-reports", default="failed", choices=["failed", "all"],
                    help="which tests with a history get a report.html in the artifacts: "
                         "failed ones (default) or all (passing runs too)")
    group.addoption("--testnet-seed", default=None, metavar="SEED",
                    help="seed of every testnet the fixtures start (replays keys, swarms, "
                         "accounts and fault targets; default: random, printed on failure)")
    group.addoption("--testnet-client", default=None, metavar="CMD",
                    help="client under test of the packaged scenarios: a command speaking the "
                         "adapter protocol (docs/client-adapter.md); default: the built-in client")
    group.addoption("--testnet-nodes", action="append", default=[], metavar="N[:KIND[=PATH]]",
                    help="node group of every testnet the fixtures start (repeatable, as "
                         "'testnet up --nodes'), e.g. 10:oxen-storage=PATH; a fixture's shape is "
                         "scaled to the groups (its swarm size, at least its node count); tests "
                         "needing what the nodes lack are skipped (default: our python nodes)")
    group.addoption("--testnet-keep-on-failure", action="store_true", default=False,
                    help="leave the testnets of a failed test up (faults still in force) and "
                         "print how to inspect and remove them")


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "backends(*names): run once per testnet backend")
    # the tiers the packaged scenarios use (e2e: the plugin marks docker variants with it), so
    # `pytest --pyargs harness.suites --strict-markers` works from any directory
    config.addinivalue_line("markers", "integration: starts real node processes on loopback")
    config.addinivalue_line("markers", "e2e: starts containers on the Docker engine")
    for family, what in FAMILIES.items():
        config.addinivalue_line("markers", f"{family}: scenario family: {what}")
    config.addinivalue_line("markers", f"{BUILTIN_CLIENT_MARKER}: a scenario that needs the "
                            "built-in client (skipped under --testnet-client)")
    config.addinivalue_line("markers", f"{CAPABILITY_MARKER}(*caps): what a test needs of the "
                            "nodes (fault families, observations, join): skipped under "
                            "--testnet-nodes when their implementation lacks it")
    check_groups(node_groups(config))  # a bad --testnet-nodes: usage error before anything runs
    prefix = config.getoption("--testnet-prefix")
    if not PREFIX_RE.match(prefix):
        raise pytest.UsageError(
            f"--testnet-prefix {prefix!r} is invalid: use 1-12 characters of a-z, 0-9, '-' or "
            "'_', starting with a letter or digit (testnet names are at most 31 characters)")
    config.pluginmanager.register(JUnitAttachments(config), "session-testnet-junit")
    config.pluginmanager.register(RunIndexWriter(config, artifacts_root(config)),
                                  "session-testnet-index")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    skip_lacking(items, node_groups(config))


#: backends a ``backends`` marker's test runs on only with ``--testnet-backend`` naming them: the
#: swarm backend needs the engine in swarm mode, which the harness never switches on itself
OPT_IN_BACKENDS = frozenset({"swarm"})


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    marker = metafunc.definition.get_closest_marker("backends")
    if marker is None or "testnet_backend" not in metafunc.fixturenames:
        return
    chosen = metafunc.config.getoption("--testnet-backend")
    if chosen:  # the user chose one backend: a test made for others is skipped, saying so
        if chosen not in marker.args:
            skip = pytest.mark.skip(reason=f"runs on the {', '.join(marker.args)} backend(s) "
                                           f"only, not {chosen}")
            metafunc.parametrize("testnet_backend", [pytest.param(chosen, id=chosen, marks=skip)],
                                 indirect=True, scope="module")
        return
    # a backend that needs the user's set-up (swarm mode) runs only when chosen (--backend)
    params = [pytest.param(b, id=b, marks=[pytest.mark.e2e] if b in ("docker", "swarm") else [])
              for b in marker.args if b not in OPT_IN_BACKENDS]
    metafunc.parametrize("testnet_backend", params, indirect=True, scope="module")


@pytest.fixture(scope="module")
def testnet_backend(request: pytest.FixtureRequest) -> str:
    """The backend testnet fixtures use: the ``backends`` marker's parameter, else the option."""
    return str(getattr(request, "param", None) or _backend(request.config))


def _backend(config: pytest.Config) -> str:
    return str(config.getoption("--testnet-backend") or default_backend())


# -- testnets ----------------------------------------------------------------------------------

class TestnetOwner:
    """Starts testnets for one fixture (a test's ``testnet_factory``, a module's ``testnet``)
    and tears them down at its end, unless a test that used them failed and
    ``--testnet-keep-on-failure`` is given. Calling it starts a testnet."""

    __test__ = False  # not a pytest test class, despite the name

    def __init__(self, config: pytest.Config, backend: str) -> None:
        self.config = config
        self.backend = backend
        self.nets: list[Testnet] = []
        #: node ids of the failed tests that used these testnets
        self.failed_tests: list[str] = []

    def __call__(self, **kwargs: Any) -> Testnet:
        backend = kwargs.pop("backend", None) or self.backend
        timeout = kwargs.pop("timeout", 90.0)
        kwargs.setdefault("name", unique_name(self.config.getoption("--testnet-prefix")))
        seed = self.config.getoption("--testnet-seed")
        if seed is not None:
            kwargs.setdefault("seed", str(seed))
        kwargs = on_groups(kwargs, node_groups(self.config))
        net = Testnet.up(Topology(**kwargs), backend=backend, timeout=timeout, lease=True)
        self.nets.append(net)
        self.config.stash.setdefault(_OWNERS, {})[net.name] = self
        return net

    @property
    def keep(self) -> bool:
        return bool(self.failed_tests) and bool(self.config.getoption("--testnet-keep-on-failure"))

    def finish(self) -> None:
        """Bring every testnet down (unless kept), even if one of them fails to."""
        errors = []
        owners = self.config.stash.get(_OWNERS, {})
        for net in self.nets:
            owners.pop(net.name, None)
            if self.keep:  # kept for inspection: it must outlive this pytest run
                net.release_lease()
                continue
            try:
                net.down()
            except Exception as e:  # tear down every testnet even if one fails
                errors.append(f"{net.name}: {e}")
        if errors:
            raise RuntimeError("testnet teardown failed: " + "; ".join(errors))


#: testnet name -> the owner that started it (to find the testnets a test used)
_OWNERS = pytest.StashKey[dict[str, TestnetOwner]]()
#: the item failed in setup or call
_FAILED = pytest.StashKey[bool]()
#: the item's history recorder, and the error closing it raised
_RECORDER = pytest.StashKey[HistoryRecorder]()
_CLOSE_ERROR = pytest.StashKey[BaseException]()
#: the logs folder of a testnet that failed to come up in the item's setup or call
_UP_FAILED = pytest.StashKey[Path]()
#: the item's reports by phase, and the testnets it used (for its row in the run index)
_PHASES = pytest.StashKey[dict[str, pytest.TestReport]]()
_TESTNETS = pytest.StashKey[list[dict[str, Any]]]()
#: the fixtures that make a test one of the run index's rows
INDEXED_FIXTURES = frozenset({"testnet", "testnet_factory", "history"})


@pytest.fixture
def testnet_factory(request: pytest.FixtureRequest,
                    testnet_backend: str) -> Iterator[TestnetOwner]:
    """``testnet_factory(**topology) -> Testnet``: a testnet (unique name) for this test."""
    owner = TestnetOwner(request.config, testnet_backend)
    try:
        yield owner
    finally:
        owner.finish()


@pytest.fixture(scope="module")
def testnet(request: pytest.FixtureRequest, testnet_backend: str) -> Iterator[Testnet]:
    """A default testnet (2 swarms × 3 nodes) shared by the tests of a module."""
    owner = TestnetOwner(request.config, testnet_backend)
    try:
        yield owner()
    finally:
        owner.finish()


@pytest.fixture
def history(request: pytest.FixtureRequest) -> Iterator[HistoryRecorder]:
    """Records one test's history; the plugin writes its check report when the test fails and
    finalizes it before any testnet of the test goes down (so fixture order does not matter)."""
    rec = HistoryRecorder(label=request.node.nodeid, nodeid=request.node.nodeid)
    request.node.stash[_RECORDER] = rec
    yield rec
    rec.close()  # already done by pytest_runtest_teardown; kept for items run without it
    error = request.node.stash.get(_CLOSE_ERROR, None)
    if error is not None:
        raise error


# -- failure handling --------------------------------------------------------------------------

@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[Any]) -> Any:
    report = yield
    if _indexed(item):
        item.stash.setdefault(_PHASES, {})[report.when] = report
        if report.when == "teardown":
            setattr(report, RUN_ATTR, _index_row(item).to_dict())
    if report.when == "teardown":
        _add_html_extra(item, report)
    if report.when in ("setup", "call") and report.failed:
        item.stash[_FAILED] = True
        # a testnet that failed to come up saved its logs (NotReadyError.artifacts)
        saved = getattr(call.excinfo.value, "artifacts", None) if call.excinfo else None
        if isinstance(saved, Path):
            item.stash[_UP_FAILED] = saved
    return report


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_teardown(item: pytest.Item, nextitem: pytest.Item | None) -> None:
    """Before the item's fixtures are torn down (its testnets still run): save the artifacts of a
    failed test, then finalize its history. Never raises: the fixtures' teardown must run."""
    rec = item.stash.get(_RECORDER, None)
    kept = False
    try:
        _stash_testnets(item, rec)
    except Exception as e:  # the index row then lacks the seeds; the teardown must go on
        item.warn(pytest.PytestWarning(f"session-testnet: testnets of {item.nodeid} not "
                                       f"recorded for the run index: {e!r}"))
    if rec is not None and not item.stash.get(_FAILED, False) and \
            item.config.getoption("--testnet-reports") == "all":
        try:
            _write_report(item, rec, artifacts_dir(item.config, item.nodeid), {})
        except Exception as e:
            item.warn(pytest.PytestWarning(f"session-testnet: report of {item.nodeid} not "
                                           f"written: {e!r}"))
    if item.stash.get(_FAILED, False):
        try:
            owners = _owners_of(item)
            for owner in owners:
                owner.failed_tests.append(item.nodeid)
            _save_artifacts(item, owners, rec)
            for owner in owners:
                if owner.keep:
                    kept = True
                    item.user_properties += [(KEPT_PROPERTY, {
                        "name": net.name, "home": os.environ.get("SESSION_TESTNET_HOME")})
                        for net in owner.nets]
        except Exception as e:  # e.g. the artifacts folder is not writable: say so, go on
            item.warn(pytest.PytestWarning(f"session-testnet: artifacts of {item.nodeid} "
                                           f"not saved: {e!r}"))
    if rec is not None:
        try:
            rec.close(remove_faults=not kept)
        except Exception as e:  # raised by the history fixture's teardown instead
            item.stash[_CLOSE_ERROR] = e


def _indexed(item: pytest.Item) -> bool:
    """The item requested one of :data:`INDEXED_FIXTURES` as this plugin defines it (not a
    test module's own fixture of the same name, e.g. a fake ``testnet``)."""
    info = getattr(item, "_fixtureinfo", None)  # pytest's resolved fixtures of the item
    defs = getattr(info, "name2fixturedefs", None) or {}
    return any(defs.get(name) and getattr(defs[name][-1].func, "__module__", None) == __name__
               for name in INDEXED_FIXTURES & set(getattr(item, "fixturenames", ())))


def _stash_testnets(item: pytest.Item, rec: HistoryRecorder | None) -> None:
    """The testnets the item used (name, seed, backend, shape), while they still run."""
    nets = [net for owner in _owners_of(item) for net in owner.nets]
    nets += [net for net in (rec.nets if rec is not None else []) if net not in nets]
    item.stash[_TESTNETS] = [testnet_info(net) for net in nets]


def _index_row(item: pytest.Item) -> IndexEntry:
    """The item's row in the run index, once its teardown report exists."""
    phases = item.stash.get(_PHASES, {})
    props = {k: str(v) for k, v in item.user_properties
             if k in (REPORT_PROPERTY, ARTIFACTS_PROPERTY)}
    report = props.get(REPORT_PROPERTY)
    logs = props.get(ARTIFACTS_PROPERTY)
    return IndexEntry(nodeid=item.nodeid, outcome=outcome_of(phases),
                      duration=round(sum(r.duration for r in phases.values()), 3),
                      testnets=item.stash.get(_TESTNETS, []),
                      verdicts=check_verdicts(getattr(item.stash.get(_RECORDER, None),
                                                      "results", []), report),
                      report=report, logs=logs)


def _report_paths(report: Any) -> list[str]:
    return [str(v) for k, v in getattr(report, "user_properties", None) or ()
            if k == REPORT_PROPERTY]


def _add_html_extra(item: pytest.Item, report: pytest.TestReport) -> None:
    """A link to the HTML report in pytest-html's page, when that plugin is installed."""
    paths = _report_paths(item)
    if not paths or not item.config.pluginmanager.hasplugin("html"):
        return
    try:
        extras = importlib.import_module("pytest_html.extras")
    except ImportError:
        return
    setattr(report, "extras", [*getattr(report, "extras", []),  # noqa: B010 - pytest-html's
                               *(extras.url(p, name="testnet report") for p in paths)])


class JUnitAttachments:
    """With --junitxml: the report's path as an attachment in the test case's system-out, the
    form the Jenkins JUnit attachments plugin and GitLab read (the path is also a <property>,
    from the teardown report's user_properties). Registered by :func:`pytest_configure`."""

    def __init__(self, config: pytest.Config) -> None:
        self.config = config

    @pytest.hookimpl(tryfirst=True)
    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        paths = _report_paths(report)
        if report.when != "teardown" or not paths:
            return
        try:
            from _pytest.junitxml import xml_key  # --junitxml's LogXML: no public API for it
        except ImportError:
            return
        xml = self.config.stash.get(xml_key, None)
        if xml is not None:
            node = ET.Element("system-out")
            node.text = attachment_lines(paths)
            xml.node_reporter(report).append(node)


def _owners_of(item: pytest.Item) -> list[TestnetOwner]:
    """The owners of the testnets ``item`` used: its ``testnet_factory`` and the ``testnet``
    (or any other fixture value that is a testnet one of the fixtures started)."""
    known = item.config.stash.get(_OWNERS, {})
    found: list[TestnetOwner] = []
    for value in (getattr(item, "funcargs", None) or {}).values():
        owner = value if isinstance(value, TestnetOwner) else (
            known.get(value.name) if isinstance(value, Testnet) else None)
        if owner is not None and owner not in found:
            found.append(owner)
    return found


def artifacts_root(config: pytest.Config) -> Path:
    """``--testnet-artifacts`` (absolute): the tests' folders and the run index."""
    return config.invocation_params.dir / str(config.getoption("--testnet-artifacts"))


def artifacts_dir(config: pytest.Config, nodeid: str) -> Path:
    """``--testnet-artifacts/<test id as a folder name>`` (absolute)."""
    return artifacts_root(config) / "".join(c if c.isalnum() or c in "-_." else "_" for c in nodeid)[:120]


def _save_artifacts(item: pytest.Item, owners: list[TestnetOwner],
                    rec: HistoryRecorder | None) -> None:
    folder = artifacts_dir(item.config, item.nodeid)
    problems: list[str] = []
    log_paths: dict[str, str] = {}
    up_failed = item.stash.get(_UP_FAILED, None)
    if up_failed is not None and up_failed.is_dir():  # copied: a module's tests share it
        try:
            shutil.copytree(up_failed, folder / up_failed.name, dirs_exist_ok=True)
        except OSError as e:
            problems.append(f"logs of the testnet that failed to start ({up_failed}): {e}")
    for owner in owners:
        for net in owner.nets:
            try:
                saved = net.save_artifacts(reason=f"test failed: {item.nodeid}")
                dest = folder / net.name
                dest.parent.mkdir(parents=True, exist_ok=True)
                shutil.copytree(saved, dest, dirs_exist_ok=True)
                shutil.rmtree(saved, ignore_errors=True)  # one copy, with the test's artifacts
            except Exception as e:  # save what can be saved
                problems.append(f"logs of testnet {net.name}: {e}")
                continue
            if rec is not None and net in rec.nets:
                log_paths.update({n.name: str(dest / f"{n.name}.log") for n in net.nodes})
    if rec is not None:
        try:
            _write_report(item, rec, folder, log_paths)
        except Exception as e:  # the test's own failure is what matters; say what is missing
            problems.append(f"check report: {e}")
    if problems:
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "ARTIFACT-ERRORS.txt").write_text("\n".join(problems) + "\n")
    if folder.exists():
        item.user_properties.append((ARTIFACTS_PROPERTY, str(folder)))


def _write_report(item: pytest.Item, rec: HistoryRecorder, folder: Path,
                  log_paths: dict[str, str]) -> None:
    written = rec.write_report(folder, log_paths=log_paths)
    if "html" in written:
        item.user_properties.append((REPORT_PROPERTY, str(written["html"])))


# -- terminal summary --------------------------------------------------------------------------

def pytest_terminal_summary(terminalreporter: Any, exitstatus: int,
                            config: pytest.Config) -> None:
    artifacts: dict[str, str] = {}
    reports: dict[str, str] = {}
    kept: dict[str, tuple[str, str | None]] = {}
    for replist in terminalreporter.stats.values():
        for rep in replist:
            for key, value in getattr(rep, "user_properties", None) or ():
                if key == ARTIFACTS_PROPERTY:
                    artifacts[rep.nodeid] = str(value)
                elif key == REPORT_PROPERTY:
                    reports[rep.nodeid] = str(value)
                elif key == KEPT_PROPERTY:
                    kept[value["name"]] = (rep.nodeid, value.get("home"))
    index = config.stash.get(INDEX_PATH, None)
    _github_summary(terminalreporter, config, artifacts, reports, index)
    if not artifacts and not kept and index is None:
        return
    tr = terminalreporter
    tr.section("session-testnet")
    if index is not None:
        tr.write_line(f"run index (every test with a testnet): {index}")
    if artifacts:
        tr.write_line("artifacts of failed tests (node logs, check report):")
        for nodeid, folder in sorted(artifacts.items()):
            tr.write_line(f"  {nodeid}: {folder}")
            if nodeid in reports:
                tr.write_line(f"    report: {reports[nodeid]}")
    if kept:
        tr.write_line("testnets kept up (--testnet-keep-on-failure); faults the test applied "
                      "are still in force:")
        for name, (nodeid, home) in sorted(kept.items()):
            env = f"SESSION_TESTNET_HOME={home} " if home else ""
            tr.write_line(f"  {name} (after {nodeid})")
            tr.write_line(f"    inspect: {env}testnet status -n {name}")
            tr.write_line(f"             {env}testnet logs -n {name}")
            tr.write_line(f"    remove:  {env}testnet down -n {name}")


def _relative(path: str, config: pytest.Config) -> str:
    try:
        return str(Path(path).relative_to(config.invocation_params.dir))
    except ValueError:
        return path


def _github_summary(tr: Any, config: pytest.Config, artifacts: dict[str, str],
                    reports: dict[str, str], index: Path | None = None) -> None:
    """In GitHub Actions ($GITHUB_STEP_SUMMARY set; not on xdist workers, nor in a pytest run
    outside $GITHUB_WORKSPACE such as a test's inner pytester session): append the pass/fail
    table and the failed tests' reports to the job's summary page."""
    target = os.environ.get("GITHUB_STEP_SUMMARY")
    # an xdist worker's config has workerinput (its environment's PYTEST_XDIST_WORKER is also
    # inherited by pytest runs it starts, which are not workers)
    if not target or hasattr(config, "workerinput"):
        return
    workspace = os.environ.get("GITHUB_WORKSPACE")
    if workspace and not config.invocation_params.dir.resolve().is_relative_to(
            Path(workspace).resolve()):
        return
    counts = {k: len(v) for k, v in tr.stats.items() if k and k != "warnings"}
    failed = [FailedTest(n, _relative(f, config),
                         _relative(reports[n], config) if n in reports else None)
              for n, f in sorted(artifacts.items())]
    try:
        with open(target, "a", encoding="utf-8") as f:
            f.write(github_summary(counts, failed, run_url(os.environ),
                                   _relative(str(index), config) if index else None))
    except OSError as e:
        tr.write_line(f"session-testnet: could not write $GITHUB_STEP_SUMMARY ({target}): {e}")
