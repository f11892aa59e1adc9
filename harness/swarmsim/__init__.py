"""Simulated swarm hosts: Docker-in-Docker engines on one machine, joined as workers to the
local engine's swarm, so the swarm backend can be run (and tested) across several hosts on a
laptop or a CI runner (docs/backends.md, "Simulated hosts")."""

from harness.swarmsim.hosts import SimError, SimHosts

__all__ = ["SimError", "SimHosts"]
