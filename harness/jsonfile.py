"""Reading the harness's JSON input files (topologies, schedules) with errors that name the file."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any


def load_json(path: str | Path, what: str, error: type[Exception]) -> Any:
    """Parse the JSON file ``path``; raise ``error`` saying which ``what`` file is missing or
    malformed."""
    p = Path(path)
    try:
        return json.loads(p.read_text())
    except FileNotFoundError:
        raise error(f"{what} file {p} does not exist") from None
    except json.JSONDecodeError as e:
        raise error(f"{what} file {p} is not valid JSON: {e}") from None
