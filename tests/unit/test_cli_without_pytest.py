"""`testnet` is a product command: it must work where pytest is not installed (pytest is only in
the test extra). A child interpreter hides pytest and its plugins, then imports every harness
module but the pytest plugin and the packaged scenarios (harness/suites' conftest and test
modules, which pytest runs) and runs `testnet --help`; `testnet suite …` then says how to get
pytest."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

pytestmark = pytest.mark.unit

ROOT = Path(__file__).resolve().parents[2]

CHILD = textwrap.dedent("""
    import importlib, importlib.abc, pkgutil, sys

    HIDDEN = {"pytest", "_pytest", "pluggy", "xdist", "pytest_asyncio", "pytest_timeout"}

    class HidePytest(importlib.abc.MetaPathFinder):
        def find_spec(self, name, path=None, target=None):
            if name.partition(".")[0] in HIDDEN:
                raise ModuleNotFoundError(f"No module named {name!r} (hidden: pytest is not installed)")
            return None

    sys.meta_path.insert(0, HidePytest())
    try:
        import pytest  # noqa: F401
    except ModuleNotFoundError:
        pass
    else:
        raise SystemExit("the guard does not hide pytest")

    import harness
    imported = []
    for mod in pkgutil.walk_packages(harness.__path__, "harness."):
        last = mod.name.rpartition(".")[2]
        if "pytest" in mod.name or last == "__main__":  # the plugin may need pytest
            continue
        if last == "conftest" or last.startswith("test_"):  # the packaged scenarios: pytest's
            continue
        importlib.import_module(mod.name)
        imported.append(mod.name)
    print(len(imported), "modules")

    from harness.cli import main
    try:
        main(["--help"])
    except SystemExit as e:
        if e.code not in (0, None):
            raise
""")


def test_testnet_imports_and_runs_without_pytest():
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}
    res = subprocess.run([sys.executable, "-c", CHILD], capture_output=True, text=True, env=env,
                         cwd=ROOT, timeout=120)
    assert res.returncode == 0, f"without pytest:\n{res.stdout}\n{res.stderr}"
    count = int(res.stdout.split(" modules", 1)[0].split()[-1])
    assert count >= 40, res.stdout  # every harness module, not just the CLI
    assert "Usage:" in res.stdout and "up" in res.stdout


def test_the_guard_really_hides_pytest():
    # the same guard makes a module that needs pytest fail, so the test above can fail
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}
    code = CHILD.split("import harness", 1)[0] + "import harness.pytest_plugin\n"
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env,
                         cwd=ROOT, timeout=120)
    assert res.returncode != 0
    assert "hidden: pytest is not installed" in res.stderr


@pytest.mark.parametrize("args", [["suite", "list"], ["suite", "run", "delivery"]])
def test_suite_commands_say_how_to_install_pytest(args):
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}
    code = CHILD.split("import harness", 1)[0] + f"from harness.cli import main\nmain({args!r})\n"
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env,
                         cwd=ROOT, timeout=120)
    assert res.returncode == 1, res.stderr
    assert res.stderr.startswith("error: the scenario suites run with pytest, which is not installed")
    assert 'pip install "session-testnet[test]"' in res.stderr
