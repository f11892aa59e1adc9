"""One applied fault (:class:`Fault`), the error faults raise, and the error collector undo uses.

A :class:`Fault` is the handle :class:`harness.faults.Faults` returns: which action it is (a name
in the registry of :mod:`harness.faults.families`), what it resolved to
(nodes, links) and what its kind needs to undo it (toxics, disabled proxies, created link
proxies, previous values).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Protocol

from harness.backends.base import BackendError
from harness.faults.timeline import Event


class FaultError(BackendError):
    """Applying or removing a fault failed; the message names the action, the nodes and the
    cause (Toxiproxy, node admin or runtime error)."""


class Remover(Protocol):
    def remove(self, fault: Fault, *, step: int | None = None) -> Event | None: ...


@dataclass(eq=False)
class Fault:
    """A handle on one applied fault. ``remove()`` undoes it (once). Handles compare by
    identity."""

    action: str
    target: str | None
    params: dict[str, Any]
    nodes: list[str] = field(default_factory=list)
    links: list[tuple[str, str]] = field(default_factory=list)
    step: int | None = None
    #: what to undo: toxics [(proxy, toxic name)], disabled proxies, link proxies this fault
    #: created, previous values per node (clock offsets, behaviours)
    toxics: list[tuple[str, str]] = field(default_factory=list)
    disabled: list[str] = field(default_factory=list)
    created_links: list[str] = field(default_factory=list)
    previous: dict[str, Any] = field(default_factory=dict)
    result: Any = None
    event: Event | None = None
    removed: bool = False
    #: whether :meth:`remove` can undo it (its kind's ``reversible``)
    reversible: bool = False
    owner: Remover | None = field(default=None, repr=False)

    def link_names(self) -> list[str]:
        return [f"{s}->{d}" for s, d in self.links]

    def remove(self) -> Event | None:
        if self.owner is None:
            raise FaultError(f"fault {self.action} has no owner to remove it")
        return self.owner.remove(self)


class Attempts:
    """Runs the steps of an undo one after the other, keeping the errors instead of stopping
    at the first: ``with attempts.step("enable sn01"): …``."""

    def __init__(self) -> None:
        self.errors: list[str] = []

    @contextmanager
    def step(self, what: str) -> Iterator[None]:
        try:
            yield
        except Exception as e:  # keep undoing the rest; report every failure
            self.errors.append(f"{what}: {e}")


__all__ = ["Attempts", "Fault", "FaultError", "Remover"]
