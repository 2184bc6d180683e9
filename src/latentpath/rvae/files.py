"""Model directories and training checkpoints of the skip-rVAE, without pickle.

A model directory holds ``config.json`` and ``weights.safetensors``; training adds
``checkpoint.safetensors`` + ``checkpoint.json`` (last epoch: weights, Adam state, random
generator states) and keeps the best epoch by validation loss as the model itself.
Tensors go to safetensors and everything else to JSON, so loading a file from a
stranger cannot run code.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from latentpath.rvae.model import RVAEConfig, SkipRVAE

MODEL_KIND = "latentpath.rvae.SkipRVAE"


class RVAEFileError(ValueError):
    """A model directory or checkpoint that is missing, corrupt or of another kind."""


def _save_tensors(tensors: dict[str, torch.Tensor], path: Path) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    save_file({k: v.detach().cpu().contiguous() for k, v in tensors.items()}, str(tmp))
    os.replace(tmp, path)


def _save_json(obj: dict, path: Path) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(obj, indent=2), encoding="utf-8")
    os.replace(tmp, path)


def _load_tensors(path: Path) -> dict[str, torch.Tensor]:
    if not path.is_file():
        raise RVAEFileError(f"{path.parent}: {path.name} missing")
    try:
        return load_file(str(path))
    except (SafetensorError, OSError) as err:
        raise RVAEFileError(f"{path}: unreadable tensors ({err})") from err


def _load_json(path: Path) -> dict:
    if not path.is_file():
        raise RVAEFileError(f"{path.parent}: {path.name} missing")
    try:
        record = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise RVAEFileError(f"{path}: not valid JSON ({err})") from err
    if not isinstance(record, dict):
        raise RVAEFileError(f"{path}: expected a JSON object")
    return record


def save_rvae(model: SkipRVAE, directory: str | Path, *, training: dict | None = None) -> Path:
    """Write the model (``config.json`` + ``weights.safetensors``) into ``directory``."""
    from latentpath import __version__

    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    _save_tensors(model.state_dict(), directory / "weights.safetensors")
    _save_json({"kind": MODEL_KIND, "latentpath_version": __version__,
                "architecture": asdict(model.config), "training": training or {}},
               directory / "config.json")
    return directory


def load_rvae(directory: str | Path, *, device: str | torch.device = "cpu") -> SkipRVAE:
    """Load a skip-rVAE model directory.

    Raises
    ------
    RVAEFileError
        Missing files, invalid JSON, another kind of model, or weights that do not fit.
    """
    directory = Path(directory)
    record = _load_json(directory / "config.json")
    if record.get("kind") != MODEL_KIND:
        raise RVAEFileError(f"{directory / 'config.json'}: not a latentpath skip-rVAE "
                            f"(kind {record.get('kind')!r})")
    try:
        model = SkipRVAE(RVAEConfig(**record["architecture"]))
    except (KeyError, TypeError, ValueError) as err:
        raise RVAEFileError(f"{directory / 'config.json'}: bad architecture ({err})") from err
    state = _load_tensors(directory / "weights.safetensors")
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as err:
        raise RVAEFileError(f"{directory / 'weights.safetensors'}: weights do not fit the "
                            f"architecture ({str(err).splitlines()[0]})") from err
    model.training_record = record.get("training", {})
    return model.to(device).eval()


def save_checkpoint(directory: Path, model: SkipRVAE, optimizer: torch.optim.Adam,
                    torch_gen: torch.Generator, state: dict) -> None:
    """Everything needed to continue training exactly where it stopped."""
    tensors = {f"model.{k}": v for k, v in model.state_dict().items()}
    params = list(model.parameters())
    for i, p in enumerate(params):
        for key, value in optimizer.state.get(p, {}).items():
            tensors[f"adam.{i}.{key}"] = torch.as_tensor(value)
    tensors["torch_generator"] = torch_gen.get_state()
    # Tensors first, then the JSON that points at them: a kill in between leaves the
    # previous JSON, which only resumes from an epoch earlier.
    _save_tensors(tensors, directory / "checkpoint.safetensors")
    _save_json({**state, "kind": MODEL_KIND, "n_params": len(params),
                "lr": optimizer.param_groups[0]["lr"]}, directory / "checkpoint.json")


def load_checkpoint(directory: Path, model: SkipRVAE, optimizer: torch.optim.Adam,
                    torch_gen: torch.Generator) -> dict:
    """Restore model, optimiser and generator from a checkpoint; return its JSON state."""
    state = _load_json(directory / "checkpoint.json")
    tensors = _load_tensors(directory / "checkpoint.safetensors")
    if state.get("kind") != MODEL_KIND:
        raise RVAEFileError(f"{directory / 'checkpoint.json'}: not a skip-rVAE checkpoint")
    try:
        model.load_state_dict({k[6:]: v for k, v in tensors.items() if k.startswith("model.")})
    except RuntimeError as err:
        raise RVAEFileError(f"{directory}: checkpoint does not fit the model being trained "
                            f"({str(err).splitlines()[0]})") from err
    params = list(model.parameters())
    for i, p in enumerate(params):
        entry = {key.split(".", 2)[2]: value for key, value in tensors.items()
                 if key.startswith(f"adam.{i}.")}
        if entry:
            optimizer.state[p] = entry
    torch_gen.set_state(tensors["torch_generator"])
    return state
