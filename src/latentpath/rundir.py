"""What a run directory holds, read by every module that reads a finished run."""

from __future__ import annotations

import json
from pathlib import Path


def read_run_record(out: str | Path) -> dict:
    """The ``config.json`` of a finished run directory (ValueError if there is none)."""
    path = Path(out) / "config.json"
    if not path.is_file():
        raise ValueError(f"{out} is not a finished run: no config.json")
    try:
        record = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError, RecursionError) as err:
        raise ValueError(f"{path} is not a readable run record ({type(err).__name__})"
                         ) from None
    if not isinstance(record, dict):
        raise ValueError(f"{path} is not a run record (not a JSON object)")
    return record
