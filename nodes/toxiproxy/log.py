"""The Toxiproxy server logs like every other process of the testnet (nodes.common.logs)."""

from nodes.common.logs import LEVELS, JsonLogger, parse_level

__all__ = ["LEVELS", "JsonLogger", "parse_level"]
