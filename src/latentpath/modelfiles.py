"""Model files without pickle: JSON for settings, safetensors for tensors.

Every model latentpath writes (segmentation nets, skip-rVAEs, their checkpoints) is a
directory of JSON and safetensors files, read back here with errors that name the file
and what is wrong with it. Nothing is ever unpickled, so a model file from a stranger
cannot run code.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save

#: a model directory's settings (JSON) and weights (safetensors)
MODEL_CONFIG = "config.json"
WEIGHTS = "weights.safetensors"


class ModelFileError(ValueError):
    """A model file that is missing, corrupt, of another kind or of another shape."""


def write_tensors(tensors: dict[str, torch.Tensor], path: Path) -> None:
    """Write tensors atomically (temporary file, then rename), with the permissions the
    user's umask gives every other file (safetensors' own writer makes them 0600)."""
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_bytes(save({k: v.detach().cpu().contiguous() for k, v in tensors.items()}))
    os.replace(tmp, path)


def write_record(record: dict, path: Path) -> None:
    """Write a JSON object atomically."""
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(record, indent=2), encoding="utf-8")
    os.replace(tmp, path)


def read_tensors(path: Path) -> dict[str, torch.Tensor]:
    if not path.is_file():
        raise ModelFileError(f"{path.parent}: not a model directory ({path.name} missing)")
    try:
        return load_file(str(path))
    except (SafetensorError, OSError) as err:
        raise ModelFileError(f"{path}: unreadable weights ({err})") from err


def read_record(path: Path, kind: str, what: str) -> dict:
    """Read a JSON object and check that it describes a ``kind`` (named ``what``)."""
    if not path.is_file():
        raise ModelFileError(f"{path.parent}: not a model directory ({path.name} missing)")
    try:
        record = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise ModelFileError(f"{path}: not valid JSON ({err})") from err
    except RecursionError:
        raise ModelFileError(f"{path}: JSON nested too deeply to be a model record") from None
    found = record.get("kind") if isinstance(record, dict) else None
    if found != kind:
        raise ModelFileError(f"{path}: not a latentpath {what} (kind {found!r}, expected "
                             f"{kind!r})")
    return record


def load_state(model: torch.nn.Module, tensors: dict[str, torch.Tensor], path: Path) -> None:
    """Load weights into ``model``, or say that they do not fit its architecture or
    are not numbers (integer-cast, NaN or infinite weights would load silently)."""
    expected = model.state_dict()
    for name, tensor in tensors.items():
        if name not in expected or not expected[name].is_floating_point():
            continue
        if not tensor.is_floating_point():
            raise ModelFileError(f"{path}: weight {name!r} is {tensor.dtype}, not floating "
                                 "point: the file is damaged")
        if not torch.isfinite(tensor).all():
            raise ModelFileError(f"{path}: weight {name!r} holds NaN or infinite values: "
                                 "the file is damaged, or its training diverged")
    try:
        model.load_state_dict(tensors, strict=True)
    except RuntimeError as err:
        raise ModelFileError(f"{path}: weights do not fit the architecture in config.json "
                             f"({str(err).splitlines()[0]})") from err
