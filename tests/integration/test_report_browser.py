"""The HTML report as a person sees it: rendered from a recorded (realistic synthetic) run and
opened in headless Chromium (Debian's ``chromium`` package; scripts/setup.sh installs it where
apt exists). No console errors, the script ran, the timeline and every plot are there and not
empty, and a screenshot is saved with the artifacts (``testnet-artifacts/report-browser/``,
uploaded by CI). The run index page likewise (``testnet-artifacts/report-browser-index/``)."""

from __future__ import annotations

import re
import shutil
import subprocess
import time
from html.parser import HTMLParser
from pathlib import Path

import pytest

# imported at collection: an in-process inner pytest (pytester) that renders a report would
# otherwise import numpy first and drop it again, and numpy cannot be imported twice
from matplotlib.image import imread
from report_samples import sample_history, sample_results

from harness.report import Report, write
from harness.report.index import IndexEntry, write_index

pytestmark = pytest.mark.integration

BROWSERS = ("chromium", "chromium-browser", "google-chrome")
PLOTS = ("plot-latency", "plot-cdf", "plot-delivered", "plot-roles", "plot-censorship")
CONSOLE = re.compile(r":CONSOLE[:(].*")


def browser() -> str:
    for name in BROWSERS:
        path = shutil.which(name)
        if path:
            return path
    pytest.skip("no headless Chromium here (looked for chromium, chromium-browser, "
                "google-chrome): install Debian's 'chromium' package (scripts/setup.sh does "
                "where apt exists)")


def chromium(page: Path, profile: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """Run headless Chromium on ``page`` (console messages logged on stderr)."""
    cmd = [browser(), "--headless=new", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
           "--no-first-run", f"--user-data-dir={profile}", "--enable-logging=stderr", "--v=0",
           *args, page.as_uri()]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=120, check=True)


def console_messages(stderr: str) -> list[str]:
    return [m.group(0) for m in CONSOLE.finditer(stderr)]


class Elements(HTMLParser):
    """Per element id: how many SVG drawing elements it contains, and its text."""

    DRAWN = {"path", "rect", "line", "polyline", "polygon", "circle", "use", "text"}

    def __init__(self) -> None:
        super().__init__()
        self.stack: list[str | None] = []
        self.drawn: dict[str, int] = {}
        self.svgs: dict[str, int] = {}
        self.text: dict[str, str] = {}

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        ident = dict(attrs).get("id")
        open_ids = [i for i in self.stack if i]
        for i in open_ids:
            self.drawn[i] = self.drawn.get(i, 0) + (tag in self.DRAWN)
            self.svgs[i] = self.svgs.get(i, 0) + (tag == "svg")
        if tag not in ("meta", "br", "input", "img", "link"):
            self.stack.append(ident)
        if ident:
            self.drawn.setdefault(ident, 0)
            self.text.setdefault(ident, "")

    def handle_endtag(self, tag: str) -> None:
        if self.stack and tag not in ("meta", "br", "input", "img", "link"):
            self.stack.pop()

    def handle_data(self, data: str) -> None:
        for i in self.stack:
            if i:
                self.text[i] += data


def fresh_folder(request: pytest.FixtureRequest, name: str) -> Path:
    folder = request.config.invocation_params.dir / "testnet-artifacts" / name
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    return folder


@pytest.fixture
def artifacts(request: pytest.FixtureRequest) -> Path:
    return fresh_folder(request, "report-browser")


@pytest.fixture
def index_artifacts(request: pytest.FixtureRequest) -> Path:
    """A folder of its own: the report test's screenshot stays where CI uploads it."""
    return fresh_folder(request, "report-browser-index")


def test_console_errors_are_caught(tmp_path: Path) -> None:
    """The check below can fail: a page with a console error and an exception shows both."""
    page = tmp_path / "bad.html"
    page.write_text("<p>x</p><script>console.error('deliberate');nope();</script>")
    stderr = chromium(page, tmp_path / "profile", "--dump-dom").stderr
    messages = console_messages(stderr)
    assert any("deliberate" in m for m in messages) and any("nope" in m for m in messages)


def test_report_in_headless_chromium(artifacts: Path, tmp_path: Path) -> None:
    h = sample_history()
    logs = {n: str(artifacts / "t-demo" / f"{n}.log") for n in h.nodes}
    report = Report.build(sample_results(h), h, log_paths=logs,
                          title="check report: tests/e2e/test_scenarios.py::test_censorship",
                          testnets=[{"name": "t-demo", "seed": "42", "backend": "process",
                                     "swarms": 3, "swarm_size": 3}],
                          nodeid="tests/e2e/test_scenarios.py::test_censorship")
    started = time.monotonic()
    page = write(report, artifacts)["html"]
    render_s = time.monotonic() - started

    dom = chromium(page, tmp_path / "profile", "--dump-dom")
    assert console_messages(dom.stderr) == []
    el = Elements()
    el.feed(dom.stdout)
    assert el.text["msg-count"] == "30 of 30"  # the filter script ran
    assert el.svgs["timeline"] == 1 and el.drawn["timeline"] > 50
    for pid in PLOTS:
        assert el.svgs.get(pid) == 1, f"{pid} has no figure: {el.text.get(pid)!r}"
        assert el.drawn[pid] > 20, f"{pid} is empty"
    for sid in ("checks", "replay", "messages", "logs"):
        assert el.text[sid].strip(), sid
    assert "censorship" in el.text["checks"] and "FAIL" in el.text["checks"]

    shot = artifacts / "report.png"
    result = chromium(page, tmp_path / "profile", f"--screenshot={shot}",
                      "--window-size=1200,2400")
    assert console_messages(result.stderr) == []
    pixels = imread(str(shot))
    assert pixels.shape[:2] == (2400, 1200)
    assert float(pixels[..., :3].std()) > 0.1  # not a blank page
    size = page.stat().st_size
    (artifacts / "figures.txt").write_text(f"report.html: {size} bytes, rendered in "
                                           f"{render_s:.2f}s; screenshot {shot.name}\n")
    assert size < 2_000_000


def test_run_index_in_headless_chromium(index_artifacts: Path, tmp_path: Path) -> None:
    """The run's index page: no console errors, the script ran (row count), the table holds
    every test with its links, and a screenshot is saved beside the report's."""
    h = sample_history()
    folder = index_artifacts / "test_scenarios.py__test_censorship"
    report = Report.build(sample_results(h), h, nodeid="tests/e2e/test_scenarios.py::test_censorship",
                          testnets=[{"name": "t-demo", "seed": "42", "backend": "process"}])
    page = write(report, folder)["html"]
    entries = [IndexEntry("tests/e2e/test_scenarios.py::test_censorship", "failed", 41.2,
                          report.testnets, {r.name: r.verdict.value for r in report.results},
                          str(page), str(folder)),
               IndexEntry("tests/e2e/test_scenarios.py::test_churn", "passed", 12.0,
                          [{"name": "t-other", "seed": "7"}], {"delivery": "ok"})]
    index = write_index(entries, index_artifacts)["html"]

    dom = chromium(index, tmp_path / "profile", "--dump-dom")
    assert console_messages(dom.stderr) == []
    el = Elements()
    el.feed(dom.stdout)
    assert el.text["test-count"] == "2 of 2"  # the filter/sort script ran
    assert "test_censorship" in el.text["tests"] and "test_churn" in el.text["tests"]
    assert 'href="test_scenarios.py__test_censorship/report.html"' in dom.stdout
    assert "failed" in el.text["totals"]
    shot = index_artifacts / "index.png"
    result = chromium(index, tmp_path / "profile", f"--screenshot={shot}",
                      "--window-size=1200,600")
    assert console_messages(result.stderr) == []
    assert float(imread(str(shot))[..., :3].std()) > 0.1  # not a blank page
