"""The churn family's ``stop_seed``: the seed runtime is stopped through the backend (by its
name, as nodes are) and started again on removal, waiting until it answers."""

from __future__ import annotations

from typing import Any

import pytest
from test_faults_actions import FakeNet, make_faults

from harness.faults import FaultError, Timeline
from harness.faults.families import churn

pytestmark = pytest.mark.unit


class SeedBackend:
    """A backend whose seed can be stopped (process backend: a new process on start)."""

    kind = "fake"

    def __init__(self) -> None:
        self.calls: list[tuple[str, Any]] = []
        self.running = True

    def is_running(self, state: Any, target: str) -> bool:
        return self.running if target == "seed" else True

    def stop_node(self, state: Any, node: Any, *, kill: bool = False) -> None:
        self.calls.append(("stop", node.name, kill, node.runtime is state.seed_runtime))
        self.running = False

    def start_seed(self, state: Any, argv: list[str], env: dict[str, str]) -> None:
        self.calls.append(("start_seed", argv, env))
        self.running = True


class SeedNet(FakeNet):
    def __init__(self) -> None:
        super().__init__(None)
        self.backend = SeedBackend()  # type: ignore[assignment]
        self.saved = 0

    @property
    def seed_url(self) -> str:
        return self.state.seed_url

    def seed_argv(self) -> list[str]:
        return ["-m", "nodes.seed"]

    def seed_env(self) -> dict[str, str]:
        return {"SECRET": "x"}

    def _save(self) -> None:
        self.saved += 1


def test_stop_seed_stops_the_seed_and_removal_starts_it_and_waits(monkeypatch):
    net = SeedNet()
    asked: list[str] = []
    monkeypatch.setattr(churn, "seed_answers", lambda url: asked.append(url) or len(asked) >= 2)
    timeline = Timeline()
    f = make_faults(net, timeline=timeline)
    fault = f.apply("stop_seed", kill=True)
    assert net.backend.calls == [("stop", "seed", True, True)] and not net.backend.running
    assert fault.nodes == [] and fault.result == {"seed": net.seed_url, "kill": True}
    f.remove(fault)
    assert net.backend.calls[-1] == ("start_seed", ["-m", "nodes.seed"], {"SECRET": "x"})
    assert net.backend.running and net.saved == 1 and asked == [net.seed_url] * 2
    assert [(e.action, e.phase, e.ok) for e in timeline.events] == [
        ("stop_seed", "apply", True), ("stop_seed", "remove", True)]


def test_stop_seed_needs_a_running_seed_and_reports_one_that_never_answers(monkeypatch):
    net = SeedNet()
    net.backend.running = False
    with pytest.raises(FaultError, match="not running"):
        make_faults(net).apply("stop_seed")
    net.backend.running = True
    monkeypatch.setattr(churn, "seed_answers", lambda url: False)
    f = make_faults(net)
    fault = f.apply("stop_seed", timeout=0.05)
    with pytest.raises(FaultError, match="restarted seed"):
        f.remove(fault)
