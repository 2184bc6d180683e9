"""What the benchmark scripts share: the machine line, and running a script in a fresh
process (another Python for AtomAI, ours for clean peak-memory figures)."""

from __future__ import annotations

import json
import os
import platform
import subprocess
import tempfile
from pathlib import Path

import numpy as np
import torch


def machine_line() -> str:
    return (f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
            f"python {platform.python_version()}, torch {torch.__version__}, "
            f"{torch.get_num_threads()} threads")


def run_script(python: str | Path, script: str, *args: object,
               data: dict[str, np.ndarray] | None = None) -> dict:
    """Run ``script`` with ``python`` in a fresh process and return its last printed line,
    parsed as JSON.

    The script gets a temporary folder as ``sys.argv[1]`` (holding ``data.npz`` when
    ``data`` is given) and ``args`` after. It also runs in that folder, because some
    tools write files into the working directory (AtomAI saves ``model.tar``), and the
    folder is removed afterwards.
    """
    with tempfile.TemporaryDirectory() as tmp:
        if data is not None:
            np.savez(Path(tmp) / "data.npz", **data)
        done = subprocess.run([str(python), "-c", script, tmp, *map(str, args)],
                              cwd=tmp, capture_output=True, text=True, check=True)
    return json.loads(done.stdout.strip().splitlines()[-1])
