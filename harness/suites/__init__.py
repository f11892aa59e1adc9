"""The packaged end-to-end scenario suites: what a Session network must survive, run against a
testnet of the installed session-testnet (and, with ``--testnet-client``, a client under test).

Run them with ``testnet suite run [FAMILY|SCENARIO…]`` (:mod:`harness.suites.cli`) or directly
with ``pytest --pyargs harness.suites`` (the pytest plugin provides the fixtures and options).
Families are pytest markers (:data:`harness.suites.families.FAMILIES`); every scenario asserts
with the checkers of :mod:`harness.checks` over its recorded history, says in its docstring
which property of the network it checks, and replays with ``--testnet-seed``. See
docs/suites.md.
"""

from harness.suites.families import BUILTIN_CLIENT_MARKER, FAMILIES

__all__ = ["BUILTIN_CLIENT_MARKER", "FAMILIES"]
