"""The typed result every checker returns, and the wrapper every checker runs through.

A verdict is one of three, as Jepsen's ``:valid?`` is ``true``, ``false`` or ``:unknown``:
``OK`` (the property held on the data), ``FAILED`` (the data shows it broken) or ``UNKNOWN``
(the checker had too little data to decide, or crashed). Only ``OK`` counts as passing.
"""

from __future__ import annotations

import functools
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, ParamSpec

P = ParamSpec("P")


class Verdict(StrEnum):
    OK = "ok"
    FAILED = "failed"
    UNKNOWN = "unknown"

    @property
    def label(self) -> str:
        """``PASS`` / ``FAIL`` / ``UNKNOWN``: how reports and ``str(result)`` show it."""
        return {"ok": "PASS", "failed": "FAIL", "unknown": "UNKNOWN"}[self.value]


@dataclass
class CheckResult:
    """Outcome of one checker over a history.

    ``summary`` is one line; ``details`` are human-readable lines (one per problem, or the
    measurements, or why the verdict is unknown); ``evidence`` is JSON-ready data for reports
    (``op_ids`` names the operation records a failure is about, ``hashes`` the messages).
    """

    name: str
    verdict: Verdict
    summary: str
    details: list[str] = field(default_factory=list)
    evidence: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not isinstance(self.verdict, Verdict):
            raise TypeError(f"CheckResult.verdict must be a Verdict (OK, FAILED, UNKNOWN), "
                            f"got {self.verdict!r}")

    @property
    def ok(self) -> bool:
        """True only for :attr:`Verdict.OK`: unknown is not a pass."""
        return self.verdict is Verdict.OK

    @property
    def failed(self) -> bool:
        return self.verdict is Verdict.FAILED

    @property
    def unknown(self) -> bool:
        return self.verdict is Verdict.UNKNOWN

    @classmethod
    def crashed(cls, name: str, error: BaseException) -> CheckResult:
        """The result of a checker that raised ``error``: unknown, with the error and where."""
        frames = traceback.extract_tb(error.__traceback__)
        where = f" at {frames[-1].filename}:{frames[-1].lineno} in {frames[-1].name}" \
            if frames else ""
        text = f"{type(error).__name__}: {error}"
        return cls(name, Verdict.UNKNOWN, f"checker crashed: {text}",
                   [f"the checker raised {text}{where}; its verdict is unknown"],
                   {"error": text, "traceback": "".join(traceback.format_exception(error))})

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "verdict": self.verdict.value, "ok": self.ok,
                "summary": self.summary, "details": list(self.details),
                "evidence": dict(self.evidence)}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> CheckResult:
        """Inverse of :meth:`to_dict`; also reads results saved before verdicts (``ok`` only)."""
        if "verdict" in data:
            verdict = Verdict(data["verdict"])
        else:
            verdict = Verdict.OK if data["ok"] else Verdict.FAILED
        return cls(name=data["name"], verdict=verdict, summary=data.get("summary", ""),
                   details=list(data.get("details", [])), evidence=dict(data.get("evidence", {})))

    def __str__(self) -> str:
        head = f"[{self.verdict.label}] {self.name}: {self.summary}"
        return "\n".join([head, *(f"  - {d}" for d in self.details)])


def checker(name: str) -> Callable[[Callable[P, CheckResult]], Callable[P, CheckResult]]:
    """Declare a checker: calling it never raises; a crash (or a return value that is not a
    :class:`CheckResult`) becomes an ``UNKNOWN`` result named ``name`` with the error in its
    details. Every checker in :mod:`harness.checks` is declared with it."""

    def wrap(fn: Callable[P, CheckResult]) -> Callable[P, CheckResult]:
        @functools.wraps(fn)
        def run(*args: P.args, **kwargs: P.kwargs) -> CheckResult:
            try:
                result = fn(*args, **kwargs)
            except Exception as e:  # a crashed checker knows nothing: unknown, never ok
                return CheckResult.crashed(name, e)
            if not isinstance(result, CheckResult):
                return CheckResult(name, Verdict.UNKNOWN,
                                   f"checker returned {type(result).__name__}, not a CheckResult",
                                   [f"the checker returned {result!r}"])
            return result

        return run

    return wrap


__all__ = ["CheckResult", "Verdict", "checker"]
