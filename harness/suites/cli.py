"""`testnet suite`: run and list the packaged scenario suites (:mod:`harness.suites`).

``testnet suite run`` is a thin layer over pytest: it builds one ``python -m pytest --pyargs
harness.suites …`` command line (:func:`pytest_argv`), streams pytest's output and exits with
pytest's exit status; then it prints the time every scenario took, read from the JUnit XML it
had pytest write, and writes ``suite-timing.json`` into the artifacts folder.

The run does not depend on the directory it is started from: pytest reads a configuration this
module writes (``-c``; markers, ``--strict-markers``, the per-test timeout) instead of a
``pytest.ini``/``pyproject.toml`` it would find there, its rootdir is the folder holding the
``harness`` package (node ids are ``harness/suites/test_<family>.py::<scenario>`` from a checkout
and an installed wheel alike) and only the suites' own conftest is loaded.

``testnet suite list`` collects the scenarios with pytest (``--collect-only`` in a child
interpreter, so what it lists is what a run would collect).

pytest is imported only by the child interpreters: ``testnet`` works without it, and these
commands then say how to install it.
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
import subprocess
import sys
import tempfile
import time
import xml.etree.ElementTree as ET
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from importlib.metadata import entry_points
from pathlib import Path
from typing import Any

import click

from harness.backends.registry import BACKENDS
from harness.cliutil import CliError, json_option
from harness.suites.families import BUILTIN_CLIENT_MARKER, CAPABILITY_MARKER, FAMILIES
from harness.topology import NodeGroup, TopologyError

#: the package pytest collects (``--pyargs``)
PACKAGE = "harness.suites"
#: how to get what the suites need
PIP_HINT = 'pip install "session-testnet[test]"'
#: pytest's exit status when nothing was collected
NO_TESTS_COLLECTED = 5
#: per-scenario timeout (pytest-timeout), seconds; ``-- -o timeout=N`` overrides it
TIMEOUT = 300
#: how much of a failure the run's closing summary repeats (per line, lines per scenario)
FAILURE_CHARS, FAILURE_LINES = 300, 8

#: the timing report, in the artifacts folder
TIMING_FILE = "suite-timing.json"
#: the markers the scenarios use besides the families (the project's test tiers)
TIER_MARKERS = {
    "unit": "pure tests, no processes or network",
    "integration": "starts real node processes on loopback",
    "e2e": "starts containers on the Docker engine",
    "slow": "takes more than a few seconds",
}


def suites_dir() -> Path:
    """The folder of the :mod:`harness.suites` package (of this installation)."""
    return Path(__file__).resolve().parent


def package_root() -> Path:
    """The folder holding the ``harness`` package: the rootdir of the suites' pytest runs."""
    return suites_dir().parent.parent


# -- what pytest needs -----------------------------------------------------------------------

def _installed(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):  # a broken installation counts as none
        return False


def require_pytest(workers: int | None = None) -> None:
    """A :class:`CliError` naming the install command when pytest (or, for ``-n``,
    pytest-xdist) is missing."""
    if not _installed("pytest"):
        raise CliError(f"the scenario suites run with pytest, which is not installed: {PIP_HINT}")
    if workers is not None and not _installed("xdist"):
        raise CliError(f"-n {workers} runs scenarios in parallel with pytest-xdist, which is not "
                       f"installed: {PIP_HINT}")


def ini_text() -> str:
    """The pytest configuration of a suites run (given with ``-c``: no ini file of the current
    directory applies)."""
    lines = ["[pytest]",
             "# written by `testnet suite`: the packaged suites' settings, whatever directory",
             "# they are run from",
             "addopts = -ra --strict-markers",
             "python_files = test_*.py",
             "markers ="]
    lines += [f"    {name}: {what}" for name, what in TIER_MARKERS.items()]
    if _installed("pytest_timeout"):
        lines.append(f"timeout = {TIMEOUT}")
    if _installed("pytest_asyncio"):
        lines.append("asyncio_default_fixture_loop_scope = function")
    return "\n".join(lines) + "\n"


def _plugin_autoloaded() -> bool:
    """pytest loads the session-testnet plugin by itself (the package is installed, with its
    ``pytest11`` entry point, and plugin autoloading is on)."""
    if os.environ.get("PYTEST_DISABLE_PLUGIN_AUTOLOAD"):
        return False
    return any(ep.value == "harness.pytest_plugin" for ep in entry_points(group="pytest11"))


def base_argv(ini: Path) -> list[str]:
    """``python -m pytest`` with the suites' configuration, rootdir and plugins."""
    argv = [sys.executable, "-m", "pytest", "-c", str(ini), "--rootdir", str(package_root()),
            "--confcutdir", str(suites_dir()), "-p", "no:cacheprovider"]
    if not _plugin_autoloaded():  # e.g. a checkout on PYTHONPATH: load it by name
        argv += ["-p", "harness.pytest_plugin"]
    return argv


@contextmanager
def pytest_config() -> Iterator[Path]:
    """A temporary ini file with :func:`ini_text`."""
    with tempfile.TemporaryDirectory(prefix="testnet-suite-") as tmp:
        ini = Path(tmp) / "pytest.ini"
        ini.write_text(ini_text())
        yield ini


# -- the scenarios ---------------------------------------------------------------------------

@dataclass
class Scenario:
    """One scenario: a test function of a ``harness/suites/test_<family>.py`` module."""

    name: str
    module: str
    families: list[str]
    #: the first paragraph of its docstring: the property of the network it checks
    prop: str
    #: the backends of its ``backends`` marker ([]: it runs on the one ``--backend`` picks)
    backends: list[str]
    builtin_client: bool
    nodeids: list[str] = field(default_factory=list)
    #: what it needs of the nodes (its ``node_capabilities`` marker): skipped under ``--nodes``
    #: of a kind that lacks one
    node_capabilities: list[str] = field(default_factory=list)

    @property
    def family(self) -> str | None:
        return self.families[0] if self.families else None

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        return {"name": d.pop("name"), "family": self.family, "property": d.pop("prop"), **d}


class _Collector:
    """pytest plugin of the collecting child: the collected scenarios, as JSON rows."""

    def __init__(self) -> None:
        self.rows: list[dict[str, Any]] = []

    def pytest_collection_finish(self, session: Any) -> None:
        from harness.suites.explain import property_of

        for item in session.items:
            marks = [m.name for m in item.iter_markers()]
            backends = item.get_closest_marker("backends")
            fn = getattr(item, "function", None)
            module = getattr(getattr(item, "module", None), "__name__", "")
            self.rows.append({
                "nodeid": item.nodeid, "name": getattr(item, "originalname", item.name),
                "module": module, "families": [f for f in FAMILIES if f in marks],
                "property": property_of(fn), "builtin_client": BUILTIN_CLIENT_MARKER in marks,
                "backends": [str(b) for b in backends.args] if backends else [],
                "node_capabilities": sorted({str(c) for m in item.iter_markers(CAPABILITY_MARKER)
                                             for c in m.args})})


def collect_main(argv: Sequence[str]) -> int:
    """The collecting child (``python -c``): ``argv`` = output JSON file, then pytest's
    arguments. Writes the collected rows; returns pytest's exit status."""
    import pytest

    out, *args = argv
    collector = _Collector()
    rc = int(pytest.main(list(args), plugins=[collector]))
    Path(out).write_text(json.dumps(collector.rows))
    return rc


def collect(extra: Sequence[str] = ()) -> list[Scenario]:
    """The scenarios pytest collects from :mod:`harness.suites` (in a child interpreter)."""
    require_pytest()
    with pytest_config() as ini:
        out = ini.parent / "collected.json"
        argv = [sys.executable, "-c",
                "import sys; from harness.suites.cli import collect_main; "
                "sys.exit(collect_main(sys.argv[1:]))",
                str(out), *base_argv(ini)[3:], "--collect-only", "-q", "--pyargs", PACKAGE,
                *extra]
        res = subprocess.run(argv, capture_output=True, text=True, stdin=subprocess.DEVNULL)
        if res.returncode not in (0, NO_TESTS_COLLECTED) or not out.exists():
            tail = "\n".join((res.stdout + res.stderr).strip().splitlines()[-30:])
            raise CliError(f"collecting the scenarios of {PACKAGE} failed (pytest exit "
                           f"{res.returncode}):\n{tail}")
        rows = json.loads(out.read_text())
    scenarios: dict[tuple[str, str], Scenario] = {}
    for r in rows:
        key = (r["module"], r["name"])
        if key not in scenarios:
            scenarios[key] = Scenario(name=r["name"], module=r["module"], families=r["families"],
                                      prop=r["property"], backends=r["backends"],
                                      builtin_client=r["builtin_client"],
                                      node_capabilities=r["node_capabilities"])
        scenarios[key].nodeids.append(r["nodeid"])
    return list(scenarios.values())


# -- the selection ---------------------------------------------------------------------------

def _module_of(path: str) -> str:
    """``harness/suites/test_x.py`` / ``test_x.py`` / ``harness.suites.test_x`` -> ``test_x``."""
    base = path.replace("\\", "/").rsplit("/", 1)[-1]
    base = base[:-3] if base.endswith(".py") else base
    return base.rsplit(".", 1)[-1]


def resolve(names: Sequence[str], scenarios: Sequence[Scenario]) -> list[str]:
    """The pytest arguments (``module::scenario[param]``, for ``--pyargs``) of scenario names
    (``test_x``, ``test_x[process]``) and node ids (``harness/suites/test_f.py::test_x[process]``,
    as a failed scenario's replay line gives them); a :class:`click.UsageError` listing the valid
    names for one that is none."""
    out: list[str] = []
    for name in names:
        path, sep, rest = name.rpartition("::")
        func, bracket, param = rest.partition("[")
        if not func.startswith("test_"):
            func = f"test_{func}"
        found = [s for s in scenarios
                 if s.name == func and (not sep or _module_of(path) == _module_of(s.module))]
        if not found:
            raise click.UsageError(unknown_message(name, scenarios),
                                   ctx=click.get_current_context(silent=True))
        out += [f"{s.module}::{s.name}{bracket}{param}" for s in found]
    return list(dict.fromkeys(out))


def unknown_message(name: str, scenarios: Sequence[Scenario]) -> str:
    names = sorted({s.name for s in scenarios})
    return (f"no family or scenario named {name!r}; families: {', '.join(FAMILIES)}; "
            f"scenarios: {', '.join(names) if names else f'(none in {PACKAGE})'} "
            "(see 'testnet suite list')")


@dataclass
class RunOptions:
    """The options of ``testnet suite run`` (defaults as the command's)."""

    selection: Sequence[str] = ()
    backend: str | None = None
    client: str | None = None
    #: node groups (``N[:KIND[=PATH]]``) of every scenario testnet
    nodes: Sequence[str] = ()
    workers: int | None = None
    seed: str | None = None
    junit: Path | None = None
    artifacts: Path = Path("testnet-artifacts")
    reports: str = "failed"
    extra: Sequence[str] = ()


def pytest_argv(ini: Path, opts: RunOptions, scenarios: Sequence[Scenario] | None = None,
                junit: Path | None = None) -> list[str]:
    """The pytest command line of a run. Families alone select with ``-m "f1 or f2"``;
    scenario names (``scenarios`` is then the collected list) select by node id, and the
    families named with them add their scenarios' node ids."""
    families = [s for s in opts.selection if s in FAMILIES]
    names = [s for s in opts.selection if s not in FAMILIES]
    argv = base_argv(ini)
    if names:
        if scenarios is None:
            raise ValueError("scenario names need the collected scenarios")
        targets = resolve(names, scenarios)
        targets += [f"{s.module}::{s.name}" for s in scenarios
                    if set(s.families) & set(families)]
        argv += ["--pyargs", *dict.fromkeys(targets)]
    else:
        argv += ["--pyargs", PACKAGE]
        if families:
            argv += ["-m", " or ".join(families)]
    if opts.backend:
        argv += ["--testnet-backend", opts.backend]
    if opts.client:
        argv += ["--testnet-client", opts.client]
    for spec in opts.nodes:
        argv += ["--testnet-nodes", spec]
    if opts.seed is not None:
        argv += ["--testnet-seed", opts.seed]
    if opts.workers is not None:
        argv += ["-n", str(opts.workers), "--dist", "loadscope"]
    argv += ["--testnet-artifacts", str(opts.artifacts.resolve()),
             "--testnet-reports", opts.reports]
    if junit is not None:
        argv += [f"--junitxml={junit.resolve()}"]
    return [*argv, *opts.extra]


# -- the timing report -----------------------------------------------------------------------

def _nodeid(case: ET.Element) -> str:
    classname, name = case.get("classname", ""), case.get("name", "")
    parts = classname.split(".")
    # pytest: classname = module path with dots (+ .Class), name = function[param]
    for i in range(len(parts), 0, -1):
        if parts[i - 1].startswith("test_"):
            return "/".join(parts[:i]) + ".py::" + "::".join([*parts[i:], name])
    return f"{classname}::{name}"


def _failure(case: ET.Element, nodeid: str) -> dict[str, Any] | None:
    """What a failed (or erroring) case's JUnit entry says: its message and the ``E`` lines of
    its traceback, where they say what went wrong, plus where it was raised."""
    for tag in ("failure", "error"):
        el = case.find(tag)
        if el is None:
            continue
        lines = (el.text or "").splitlines()
        e_lines = [ln[1:].strip() for ln in lines if ln.startswith("E ")]
        where = [ln.strip() for ln in lines if re.match(r"^\S+\.py:\d+: \w+", ln)]
        return {"nodeid": nodeid, "outcome": "failed" if tag == "failure" else "error",
                "message": (el.get("message") or "").strip()[:FAILURE_CHARS],
                "lines": [ln[:FAILURE_CHARS] for ln in e_lines[:FAILURE_LINES]],
                "raised_at": where[-1] if where else None}
    return None


def timing(junit: Path, wall: float, opts: RunOptions, exit_code: int) -> dict[str, Any]:
    """The timing report of a run from its JUnit XML: every scenario's duration (setup, call and
    teardown: a module's shared testnet counts in its first scenario), slowest first, and what
    each failed one says."""
    root = ET.parse(junit).getroot()
    suites = [root] if root.tag == "testsuite" else root.findall("testsuite")
    cases: list[dict[str, Any]] = []
    failures: list[dict[str, Any]] = []
    for c in (c for s in suites for c in s.iter("testcase")):
        nodeid = _nodeid(c)
        failure = _failure(c, nodeid)
        if failure is not None:
            failures.append(failure)
        outcome = (failure["outcome"] if failure is not None
                   else "skipped" if c.find("skipped") is not None else "passed")
        cases.append({"nodeid": nodeid, "outcome": outcome,
                      "seconds": round(float(c.get("time") or 0.0), 3)})
    cases.sort(key=lambda c: -c["seconds"])
    pytest_s = sum(float(s.get("time") or 0.0) for s in suites)
    return {"wall_seconds": round(wall, 3), "pytest_seconds": round(pytest_s, 3),
            "sum_seconds": round(sum(c["seconds"] for c in cases), 3),
            "scenarios": len(cases), "workers": opts.workers, "backend": opts.backend,
            "client": opts.client, "nodes": list(opts.nodes), "seed": opts.seed, "selection": list(opts.selection),
            "exit_code": exit_code, "junit": str(junit.resolve()), "durations": cases,
            "failures": failures}


def _count(n: int) -> str:
    return f"{n} scenario" + ("" if n == 1 else "s")


def print_timing(report: dict[str, Any]) -> None:
    click.echo("\nscenario durations (setup + call + teardown; a module's testnet start counts in "
               "its first scenario):")
    for c in report["durations"]:
        click.echo(f"  {c['seconds']:8.1f}s  {c['outcome']:<7}  {c['nodeid']}")
    workers = f" with -n {report['workers']}" if report["workers"] is not None else ""
    click.echo(f"total: {report['wall_seconds']:.1f}s wall{workers} for "
               f"{_count(report['scenarios'])} (sum of their durations "
               f"{report['sum_seconds']:.1f}s)")
    failures = report.get("failures") or []
    if failures:
        # last, where a CI log's tail shows it: which scenarios failed and why, in short (the
        # tracebacks are above; each failed scenario's report is in the artifacts folder)
        click.echo(f"\n{_count(len(failures))} failed:")
        for f in failures:
            click.echo(f"  {f['outcome'].upper()} {f['nodeid']}")
            for line in f["lines"] or [f["message"]]:
                click.echo(f"      {line}")
            if f["raised_at"]:
                click.echo(f"      at {f['raised_at']}")


# -- the commands ----------------------------------------------------------------------------

def _wait(proc: subprocess.Popen[bytes]) -> int:
    """Wait for pytest; Ctrl-C reached it too: let it tear its testnets down and exit."""
    while True:
        try:
            return proc.wait()
        except KeyboardInterrupt:
            continue


def run(opts: RunOptions) -> int:
    """Run the suites as ``opts`` say; returns pytest's exit status."""
    require_pytest(opts.workers)
    names = [s for s in opts.selection if s not in FAMILIES]
    scenarios = collect() if names else None  # scenario names select by node id
    with pytest_config() as ini:
        junit = opts.junit or ini.parent / "junit.xml"
        argv = pytest_argv(ini, opts, scenarios, junit)  # an unknown name fails here
        junit.parent.mkdir(parents=True, exist_ok=True)
        opts.artifacts.mkdir(parents=True, exist_ok=True)
        t0 = time.monotonic()
        rc = _wait(subprocess.Popen(argv))
        wall = time.monotonic() - t0
        if rc == NO_TESTS_COLLECTED:
            what = " ".join(opts.selection) or f"the whole {PACKAGE}"
            if opts.extra:
                what += f" (with pytest arguments {' '.join(opts.extra)})"
            err = CliError(f"no scenario matched {what}: nothing was collected (see 'testnet "
                           "suite list')")
            err.exit_code = NO_TESTS_COLLECTED
            raise err
        if not junit.exists():
            click.echo(f"(no timing report: pytest exited {rc} without writing {junit})",
                       err=True)
            return rc
        report = timing(junit, wall, opts, rc)
        if not report["durations"]:  # e.g. -- --collect-only
            return rc
        print_timing(report)
        out = opts.artifacts / TIMING_FILE
        out.write_text(json.dumps(report, indent=2) + "\n")
        click.echo(f"timing report: {out.resolve()}")
    return rc


class _RunCommand(click.Command):
    """``run``: everything after ``--`` goes to pytest as it is."""

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        if "--" in args:
            i = args.index("--")
            ctx.meta["suite_pytest_args"] = args[i + 1:]
            args = args[:i]
        return super().parse_args(ctx, args)


@click.group("suite", short_help="Run and list the packaged end-to-end scenario suites.")
def suite() -> None:
    """The packaged end-to-end scenario suites (harness.suites), run with pytest.

    Families are pytest markers; every scenario checks one property of the network with the
    checkers, prints its seed and replay command when it fails, and replays with --seed. See
    docs/suites.md. Needs the test extra: pip install "session-testnet[test]".
    """


@suite.command("run", cls=_RunCommand,
               short_help="Run scenarios (families, names or node ids) with pytest.")
@click.argument("selection", metavar="[FAMILY|SCENARIO]... [-- PYTEST_ARGS...]", nargs=-1)
@click.option("--backend", "-b", type=click.Choice(BACKENDS), default=None,
              help="Run every scenario on this backend [default: each scenario's backends "
                   "marker, else process or $SESSION_TESTNET_BACKEND].")
@click.option("--client", "client", metavar="CMD", default=None,
              help="Client under test: a command speaking the adapter protocol "
                   "(docs/client-adapter.md); scenarios that need the built-in client are "
                   "skipped.")
@click.option("--nodes", "nodes", multiple=True, metavar="N[:KIND[=PATH]]",
              help="Node group of every scenario testnet (repeatable, as 'testnet up --nodes'), "
                   "e.g. 10:oxen-storage=PATH (PATH defaults to $SESSION_TESTNET_OXEN_STORAGE); "
                   "scenario shapes are scaled to it, scenarios needing what the nodes lack are "
                   "skipped, saying why [default: our python nodes].")
@click.option("-n", "--workers", type=click.IntRange(min=1), default=None, metavar="N",
              help="Parallel pytest-xdist workers (--dist loadscope: a module's testnet is "
                   "never duplicated) [default: no xdist].")
@click.option("--seed", default=None, metavar="SEED", help="Seed of every testnet (replays a failed run).")
@click.option("--junit", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Also write the JUnit XML to FILE.")
@click.option("--artifacts", type=click.Path(file_okay=False, path_type=Path), metavar="DIR",
              default=Path("testnet-artifacts"), show_default=True,
              help="Folder of failed scenarios' logs and reports, the run index and "
                   f"{TIMING_FILE}.")
@click.option("--reports", type=click.Choice(["failed", "all"]), default="failed",
              show_default=True, help="Which scenarios get a report.html.")
@click.pass_context
def run_cmd(ctx: click.Context, selection: tuple[str, ...], backend: str | None,
            client: str | None, nodes: tuple[str, ...], workers: int | None, seed: str | None, junit: Path | None,
            artifacts: Path, reports: str) -> None:
    """Run scenarios: FAMILY (e.g. delivery; several are or'ed), SCENARIO (a function name such
    as test_delivery_both_ways, or a node id as a failed scenario's replay line prints it), or
    everything when none is given. pytest's output is streamed and its exit status returned (5:
    nothing matched); then the duration of every scenario is printed and written to
    ARTIFACTS/suite-timing.json.

    pytest options go after '--', e.g. 'testnet suite run delivery -- -x -k fan_in'.
    """
    for spec in nodes:  # a bad group is a usage error here, before pytest starts
        try:
            NodeGroup.parse(spec)
        except TopologyError as e:
            raise click.BadParameter(str(e), param_hint="--nodes") from None
    opts = RunOptions(selection=selection, backend=backend, client=client, nodes=nodes,
                      workers=workers,
                      seed=seed, junit=junit, artifacts=artifacts, reports=reports,
                      extra=tuple(ctx.meta.get("suite_pytest_args", ())))
    ctx.exit(run(opts))


LIST_JSON = ('{"package_dir", "families": [{"name", "property", "scenarios"}], "scenarios": '
             '[{"name", "family", "families", "module", "property", "backends", '
             '"builtin_client", "nodeids", "node_capabilities"}]}')


@suite.command("list", short_help="List the families and scenarios with their properties.")
@json_option(LIST_JSON)
def list_cmd(as_json: bool) -> None:
    """List the families (with the property their scenarios check) and the scenarios (with
    theirs, their backends, and whether they need the built-in client)."""
    scenarios = collect()
    if as_json:
        click.echo(json.dumps({
            "package_dir": str(suites_dir()),
            "families": [{"name": f, "property": what,
                          "scenarios": sum(f in s.families for s in scenarios)}
                         for f, what in FAMILIES.items()],
            "scenarios": [s.to_dict() for s in scenarios]}, indent=2))
        return
    groups = [*FAMILIES, None]
    for family in groups:
        members = [s for s in scenarios if s.family == family]
        if family is None:
            if not members:
                continue
            click.echo("(no family marker)")
        else:
            click.echo(f"{family} ({_count(len(members))}): {FAMILIES[family]}")
        for s in members:
            backends = ", ".join(s.backends) or "--backend"
            client = "; built-in client" if s.builtin_client else ""
            needs = f"; needs {', '.join(s.node_capabilities)}" if s.node_capabilities else ""
            click.echo(f"  {s.name}  [{backends}{client}{needs}]")
            click.echo(f"      {s.prop}")
    click.echo(f"{_count(len(scenarios))} in {suites_dir()}")


commands: list[click.Command] = [suite]

__all__ = ["RunOptions", "Scenario", "collect", "commands", "pytest_argv", "resolve", "run",
           "suite", "timing"]
