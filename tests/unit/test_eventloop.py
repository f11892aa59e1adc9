"""The node processes' event loop choice (nodes.common.eventloop): uvloop when installed, the stock
loop when it is not or when SESSION_TESTNET_UVLOOP=0."""

from __future__ import annotations

import asyncio
import builtins
from typing import Any

import pytest

from nodes.common import eventloop

pytestmark = pytest.mark.unit


@pytest.mark.parametrize("value", ["0", "false", "No", "off"])
def test_opt_out_runs_the_stock_loop(value: str) -> None:
    assert eventloop.loop_factory({eventloop.ENV_UVLOOP: value}) is None


def test_uvloop_when_installed() -> None:
    uvloop = pytest.importorskip("uvloop")
    assert eventloop.loop_factory({}) is uvloop.new_event_loop
    assert eventloop.loop_factory({eventloop.ENV_UVLOOP: "1"}) is uvloop.new_event_loop


def test_without_uvloop_falls_back(monkeypatch: pytest.MonkeyPatch) -> None:
    real_import = builtins.__import__

    def no_uvloop(name: str, *args: Any, **kwargs: Any) -> Any:
        if name == "uvloop":
            raise ImportError("no uvloop (test)")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_uvloop)
    assert eventloop.loop_factory({}) is None


def test_run_returns_the_coroutines_result_on_the_chosen_loop(monkeypatch: pytest.MonkeyPatch) -> None:
    async def which() -> str:
        return type(asyncio.get_running_loop()).__module__

    monkeypatch.setenv(eventloop.ENV_UVLOOP, "0")
    assert eventloop.run(which()).startswith("asyncio")
    monkeypatch.delenv(eventloop.ENV_UVLOOP)
    if eventloop.loop_factory() is not None:
        assert eventloop.run(which()).startswith("uvloop")
