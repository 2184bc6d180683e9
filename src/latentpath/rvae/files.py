"""Model directories and training checkpoints of the skip-rVAE, without pickle.

A model directory holds ``config.json`` and ``weights.safetensors``; training adds
``checkpoint.json`` and the ``checkpoint-<epoch>.safetensors`` it names (last epoch:
weights, Adam state, random generator states) and keeps the best epoch by validation
loss as the model itself.
Tensors go to safetensors and everything else to JSON, so loading a file from a
stranger cannot run code.
"""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path

import torch

from latentpath.adam import Adam
from latentpath.modelfiles import (
    MODEL_CONFIG,
    WEIGHTS,
    ModelFileError,
    load_state,
    read_record,
    read_tensors,
    write_record,
    write_tensors,
)
from latentpath.rvae.model import RVAEConfig, SkipRVAE

MODEL_KIND = "latentpath.rvae.SkipRVAE"
#: a model directory's training checkpoint: its JSON state and its tensors
CHECKPOINT = "checkpoint.json"
CHECKPOINT_TENSORS = "checkpoint.safetensors"


def save_rvae(model: SkipRVAE, directory: str | Path, *, training: dict | None = None) -> Path:
    """Write the model (``config.json`` + ``weights.safetensors``) into ``directory``."""
    from latentpath import __version__

    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    write_tensors(model.state_dict(), directory / WEIGHTS)
    write_record({"kind": MODEL_KIND, "latentpath_version": __version__,
                  "architecture": asdict(model.config), "training": training or {}},
                 directory / MODEL_CONFIG)
    return directory


def update_training_record(directory: str | Path, training: dict) -> None:
    """Replace the training record in ``directory``'s ``config.json``, weights untouched
    (the model is the best epoch's, the record says how the whole run went). An
    unchanged record is not rewritten."""
    path = Path(directory) / MODEL_CONFIG
    record = read_record(path, MODEL_KIND, "skip-rVAE")
    if record.get("training") != training:
        write_record({**record, "training": training}, path)


def load_rvae(directory: str | Path, *, device: str | torch.device = "cpu") -> SkipRVAE:
    """Load a skip-rVAE model directory.

    Raises
    ------
    ModelFileError
        Missing files, invalid JSON, another kind of model, or weights that do not fit.
    """
    directory = Path(directory)
    record = read_record(directory / MODEL_CONFIG, MODEL_KIND, "skip-rVAE")
    try:
        # files written by earlier versions carry an "extra" entry that nothing read
        architecture = {k: v for k, v in record["architecture"].items() if k != "extra"}
        model = SkipRVAE(RVAEConfig(**architecture))
    except (KeyError, TypeError, ValueError) as err:
        raise ModelFileError(f"{directory / MODEL_CONFIG}: bad architecture ({err})") from err
    weights = directory / WEIGHTS
    load_state(model, read_tensors(weights), weights)
    model.training_record = record.get("training", {})
    return model.to(device).eval()


def save_checkpoint(directory: Path, model: SkipRVAE, optimizer: Adam,
                    torch_gen: torch.Generator, state: dict) -> None:
    """Everything needed to continue training exactly where it stopped."""
    tensors = {f"model.{k}": v for k, v in model.state_dict().items()}
    params = list(model.parameters())
    for i, p in enumerate(params):
        for key, value in optimizer.state.get(p, {}).items():
            tensors[f"adam.{i}.{key}"] = torch.as_tensor(value)
    tensors["torch_generator"] = torch_gen.get_state()
    # The tensors go to a file of their own epoch, which the JSON then names: a kill
    # before the JSON is replaced leaves the previous JSON and the previous epoch's
    # tensors, a consistent state one epoch earlier.
    name = f"checkpoint-{state['epoch']:05d}.safetensors"
    write_tensors(tensors, directory / name)
    write_record({**state, "kind": MODEL_KIND, "n_params": len(params), "tensors": name,
                  "lr": optimizer.lr}, directory / CHECKPOINT)
    for old in directory.glob("checkpoint*.safetensors"):
        if old.name != name:
            old.unlink()


def load_checkpoint(directory: Path, model: SkipRVAE, optimizer: Adam,
                    torch_gen: torch.Generator) -> dict:
    """Restore model, optimiser and generator from a checkpoint; return its JSON state."""
    state = read_record(directory / CHECKPOINT, MODEL_KIND, "skip-rVAE checkpoint")
    name = state.get("tensors", CHECKPOINT_TENSORS)
    # a plain file name in the directory: a record must not point the loader elsewhere
    if not isinstance(name, str) or Path(name).name != name or name in ("", ".", ".."):
        raise ModelFileError(f"{directory / CHECKPOINT}: 'tensors' must name a file "
                             f"in {directory}, got {name!r}")
    path = directory / name
    tensors = read_tensors(path)
    load_state(model, {k[6:]: v for k, v in tensors.items() if k.startswith("model.")}, path)
    params = list(model.parameters())
    for i, p in enumerate(params):
        # the running moments go where their parameter is (safetensors loads onto the
        # CPU, which a CUDA step refuses); the step count stays on the CPU, as torch's
        entry = {key.split(".", 2)[2]: value for key, value in tensors.items()
                 if key.startswith(f"adam.{i}.")}
        entry = {key: value if key == "step" else value.to(p.device)
                 for key, value in entry.items()}
        if entry:
            optimizer.state[p] = entry
    if "torch_generator" not in tensors:
        raise ModelFileError(f"{path}: damaged checkpoint (no random generator state)")
    torch_gen.set_state(tensors["torch_generator"])
    return state
