"""Garbage collection of docker testnets: removing every resource of a testnet by its labels
(``destroy``), and sweeping the testnets whose harness is gone (``testnet clean``, and before
every ``up``). Only resources created on this host are judged.
"""

from __future__ import annotations

import os
import re
import socket
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from pathlib import Path
from typing import Any

import docker.errors  # binds `docker` too (a plain `import docker` is misfiled next to docker/)
from docker.client import DockerClient

from harness.backends.base import BackendError, Reporter
from harness.backends.docker_engine import (
    KIND,
    LABEL,
    LABEL_BACKEND,
    LABEL_HOST,
    LABEL_OWNER,
    LABEL_STATE,
    resource_prefix,
)
from harness.state import (
    StateDir,
    StateError,
    list_networks,
    locked,
    pid_alive,
    stale_reason,
    state_home,
)


def _list_labelled(client: DockerClient, filters: dict[str, Any]) -> tuple[list, list, list]:
    containers = client.containers.list(all=True, filters=filters, ignore_removed=True)
    networks = client.networks.list(filters=filters)
    volumes = client.volumes.list(filters=filters)
    return containers, networks, volumes


def _remove(what: str, action: Callable[[], Any], errors: list[str]) -> None:
    """Run one removal; a resource already gone is fine, any other engine error is noted."""
    try:
        action()
    except docker.errors.NotFound:
        pass
    except docker.errors.APIError as e:
        errors.append(f"{what}: {e.explanation or e}")


class EngineLeftover(BackendError):
    """Only networks are left, held by the engine through endpoints of containers that are gone
    (no container attached, removal refused with "has active endpoints"): a fault of the engine
    that only its restart clears. Nothing of the testnet runs; ``networks`` names what is left."""

    def __init__(self, message: str, networks: list[str]) -> None:
        super().__init__(message)
        self.networks = networks


class EngineLeftoverWarning(RuntimeWarning):
    """A testnet went down but the engine keeps one of its networks (:class:`EngineLeftover`)."""


def _orphaned(net: Any, errors: list[str]) -> bool:
    """The network has no container attached and its removal failed with "active endpoints"."""
    try:
        net.reload()
    except docker.errors.NotFound:
        return True
    except docker.errors.APIError:
        return False
    return not (net.attrs.get("Containers") or {}) and any(
        e.startswith(f"network {net.name}:") and "active endpoints" in e for e in errors)


def remove_resources(client: DockerClient, filters: dict[str, Any], rounds: int = 5) -> None:
    """Remove every container, then network and volume matching ``filters``. Idempotent.

    Works in rounds until nothing matches: a harness killed in the middle of ``up`` may leave
    requests the engine is still carrying out (a container created after the listing, a
    removal in progress that keeps the network busy)."""
    errors: list[str] = []
    for _ in range(rounds):
        containers, networks, volumes = _list_labelled(client, filters)
        if not (containers or networks or volumes):
            return
        errors.clear()

        def rm_container(c: Any) -> None:
            try:
                c.remove(force=True)
            except docker.errors.NotFound:
                return
            except docker.errors.APIError as e:
                if "already in progress" not in str(e):
                    errors.append(f"container {c.name}: {e.explanation or e}")
                    return
            # the network can only go once the container is really gone
            try:
                _remove(f"container {c.name}", lambda: c.wait(condition="removed", timeout=30), errors)
            except Exception as e:  # e.g. the wait timed out
                errors.append(f"container {c.name}: not removed ({e})")

        if containers:
            with ThreadPoolExecutor(max_workers=min(8, len(containers))) as pool:
                list(pool.map(rm_container, containers))
        for net in networks:
            _remove(f"network {net.name}", net.remove, errors)
        for vol in volumes:
            _remove(f"volume {vol.name}", partial(vol.remove, force=True), errors)
    left = _list_labelled(client, filters)
    if not any(left):
        return
    what = [f"container {c.name}" for c in left[0]] + [f"network {n.name}" for n in left[1]] \
        + [f"volume {v.name}" for v in left[2]]
    if not left[0] and not left[2] and all(_orphaned(n, errors) for n in left[1]):
        raise EngineLeftover(
            f"the Docker engine keeps {', '.join(what)} with an endpoint of a container that no "
            "longer exists (an engine fault: no container is attached, the engine refuses the "
            "removal with 'has active endpoints'); nothing of the testnet runs any more. The "
            "engine lets it go once it restarts (e.g. 'sudo systemctl restart docker'); 'testnet "
            "clean' removes it then", [n.name for n in left[1]])
    raise BackendError(f"could not remove {', '.join(what)} after {rounds} rounds"
                       + (f": {'; '.join(errors)}" if errors else "")
                       + " (retry 'testnet down' / 'testnet clean')")


def _stale_reason(client: DockerClient, labels: dict[str, str], home: Path,
                  kind: str = KIND, state_label: str = LABEL_STATE) -> str | None:
    """Why the testnet these labels belong to is stale, or None when it is alive (or not ours
    to judge: created from another host)."""
    if labels.get(LABEL_HOST) != socket.gethostname():
        return None
    folder = Path(labels.get(state_label, ""))
    state_file = folder / "state.json"
    if not state_file.exists():
        owner = int(labels.get(LABEL_OWNER, "0") or 0)
        if pid_alive(owner) and owner != os.getpid():
            return None  # its harness still runs (e.g. `down` removing the state right now)
        return "its state is gone"
    try:
        st = StateDir(folder.name, folder.parent.parent).load()
    except StateError:
        return None if folder.parent.parent != home else "its state is unreadable"
    if st.backend != kind:
        return "its state belongs to another backend"
    reason = stale_reason(st)
    if reason:
        return reason
    if st.status == "up":
        # a seed container that exists but is stopped is a testnet in use (the stop_seed fault,
        # a user's `docker stop`): sweeping it would pull the network from under the scenario
        # (and hand its subnet to the next testnet); `testnet down`/`clean NAME` remove it
        try:
            client.containers.get(f"{resource_prefix(st.name)}-seed")
        except docker.errors.NotFound:
            return "its seed container is gone"
    return None


def sweep(client: DockerClient, report: Reporter, kind: str = KIND,
          remove: Callable[[DockerClient, dict[str, Any]], None] = remove_resources,
          state_label: str = LABEL_STATE) -> list[str]:
    """Remove docker resources of testnets whose harness is gone (state missing, ``up`` killed,
    seed gone); return their names. Only resources created on this host are considered, and
    only those of backend ``kind`` (the label ``session-testnet.backend``, absent: ``docker``)
    found by their ``state_label``: the swarm backend sweeps its own (services first) with its
    ``remove``."""
    home = state_home()
    removed: list[str] = []
    with locked(home=home):
        containers, networks, volumes = _list_labelled(client, {"label": [state_label]})
        groups: dict[tuple[str, str], dict[str, str]] = {}
        for res in [*containers, *networks, *volumes]:
            labels = (res.attrs.get("Labels") or res.attrs.get("Config", {}).get("Labels") or {})
            key = (labels.get(LABEL, ""), labels.get(state_label, ""))
            if key[0] and key[1] and labels.get(LABEL_BACKEND, KIND) == kind:
                groups.setdefault(key, labels)
        for (name, folder), labels in sorted(groups.items()):
            reason = _stale_reason(client, labels, home, kind, state_label)
            if reason is None:
                continue
            report(f"removing stale {kind} testnet {name!r} ({reason})")
            path = Path(folder)
            try:
                remove(client, {"label": [f"{LABEL}={name}", f"{state_label}={folder}"]})
            except EngineLeftover as e:  # nothing runs; the engine holds a dangling network
                report(f"warning: {name}: {e}")
                if not (path.exists() and path.parent.parent == home):
                    continue  # its state went earlier (or is not ours): only the leftover remains
            if path.parent.parent == home and re.fullmatch(r"[a-z0-9][a-z0-9_-]*", path.name):
                StateDir(path.name, home).remove()
            removed.append(name)
        # testnets of this home whose `up` died before it created anything
        for name in list_networks(home):
            sd = StateDir(name, home)
            try:
                st = sd.load()
            except StateError:
                continue
            reason = stale_reason(st) if st.backend == kind else None
            if reason and name not in removed:
                report(f"removing stale {kind} testnet {name!r} ({reason})")
                try:
                    remove(client, {"label": [f"{LABEL}={name}", f"{state_label}={sd.path}"]})
                except EngineLeftover as e:
                    report(f"warning: {name}: {e}")
                sd.remove()
                removed.append(name)
    return removed
