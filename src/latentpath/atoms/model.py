"""The segmentation network: a U-Net whose bottleneck is a pyramid of dilated convolutions.

Dilated convolutions in the bottleneck see a wide context (several bond lengths) at
little cost, which helps to tell atoms from noise and from amorphous contamination
(Ziatdinov et al.; the method of the paper). A model directory holds ``config.json``
and ``weights.safetensors``; loading never unpickles, so a model from a stranger cannot
run code.
"""

from __future__ import annotations

import copy
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
from torch import nn
from torch.nn.utils.fusion import fuse_conv_bn_eval

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

MODEL_KIND = "latentpath.atoms.AtomUNet"
SHIPPED_MODEL_DIR = Path(__file__).parent / "weights"


@dataclass
class AtomNetConfig:
    """Architecture and sampling of a segmentation model.

    Attributes
    ----------
    species : list of str
        Atom classes after background (channel 0), e.g. ``["C", "Si"]``.
    base_channels : int
        Channels of the first level; each level down doubles them.
    depth : int
        Number of 2x downsamplings before the bottleneck.
    dilations : list of int
        Dilation rates of the bottleneck pyramid.
    pixel_size_A : float
        Sampling the model works at; inputs are resampled to it.
    """

    species: list[str] = field(default_factory=lambda: ["C", "Si"])
    base_channels: int = 16
    depth: int = 3
    dilations: list[int] = field(default_factory=lambda: [2, 4, 6])
    pixel_size_A: float = 0.2

    @property
    def n_classes(self) -> int:
        return 1 + len(self.species)


def _conv(c_in: int, c_out: int, dilation: int = 1) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(c_in, c_out, 3, padding=dilation, dilation=dilation, bias=False),
        nn.BatchNorm2d(c_out), nn.LeakyReLU(0.1))


class DilatedPyramid(nn.Module):
    """Sequential dilated convolutions whose outputs are summed: one feature map that
    sees every scale from one to ``2 * max(dilations) + 1`` pixels."""

    def __init__(self, c_in: int, c_out: int, dilations: list[int]):
        super().__init__()
        self.convs = nn.ModuleList(
            _conv(c_in if k == 0 else c_out, c_out, d) for k, d in enumerate(dilations))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        total = 0
        for conv in self.convs:
            x = conv(x)
            total = total + x
        return total


class AtomUNet(nn.Module):
    """U-Net: per-pixel logits (N, 1 + n_species, H, W) from images (N, 1, H, W)."""

    def __init__(self, config: AtomNetConfig):
        super().__init__()
        self.config = config
        widths = [config.base_channels * 2**k for k in range(config.depth + 1)]
        self.down = nn.ModuleList()
        c_in = 1
        for w in widths[:-1]:
            self.down.append(nn.Sequential(_conv(c_in, w), _conv(w, w)))
            c_in = w
        self.bottleneck = DilatedPyramid(widths[-2], widths[-1], config.dilations)
        self.up = nn.ModuleList(
            nn.Sequential(_conv(widths[k + 1] + widths[k], widths[k]), _conv(widths[k], widths[k]))
            for k in reversed(range(config.depth)))
        self.head = nn.Conv2d(widths[0], config.n_classes, 1)

    @property
    def multiple(self) -> int:
        """Input height and width must be multiples of this."""
        return 2**self.config.depth

    def for_inference(self, device: str | torch.device = "cpu") -> AtomUNet:
        """A copy on ``device`` for prediction only: each convolution's batch norm folded
        into its weights (one pass over the activations less per layer) and the
        tensors in channels-last order, which the CPU's convolutions run faster on.
        The same logits to float32 rounding (4e-6 on the shipped weights); 1.5x faster
        on a 2-core CPU (docs/benchmarks.md).

        The copy is kept and given again, so that finding atoms frame by frame does not
        fold the network each time, until a parameter or buffer of this model is
        replaced or changed in place (training, loading weights). Changes made through
        ``tensor.data`` are not seen: call it on a fresh :func:`load_model` after them.
        The copy is shared: do not move or modify it."""
        device = torch.device(device)
        if device.type == "cuda" and device.index is None:
            device = torch.device("cuda", torch.cuda.current_device())
        key = _weights_key(self, device)
        cached = self.__dict__.get("_inference")
        if key is not None and cached is not None and cached[0] == key:
            return cached[1]
        net = copy.deepcopy(self, memo={id(cached): None}).eval()
        for module in net.modules():
            if isinstance(module, nn.Sequential) and isinstance(module[0], nn.Conv2d) \
                    and len(module) > 1 and isinstance(module[1], nn.BatchNorm2d):
                module[0] = fuse_conv_bn_eval(module[0], module[1])
                module[1] = nn.Identity()
        net = net.to(device, memory_format=torch.channels_last)
        # a plain attribute, not a submodule: the copy is not part of the model's state
        self.__dict__["_inference"] = None if key is None else (key, net)
        return net

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        skips = []
        for block in self.down:
            x = block(x)
            skips.append(x)
            x = nn.functional.max_pool2d(x, 2)
        x = self.bottleneck(x)
        for block, skip in zip(self.up, reversed(skips), strict=True):
            x = nn.functional.interpolate(x, scale_factor=2, mode="bilinear", align_corners=False)
            x = block(torch.cat([x, skip], dim=1))
        return self.head(x)


def _weights_key(model: nn.Module, device: torch.device) -> tuple | None:
    """What identifies a model's weights on ``device``: each tensor's identity, storage
    and in-place version; None where tensors keep no version (made under
    ``torch.inference_mode``), which then go uncached."""
    try:
        return (str(device), *((id(t), t.data_ptr(), t._version)
                               for t in [*model.parameters(), *model.buffers()]))
    except RuntimeError:
        return None


def save_model(model: AtomUNet, directory: str | Path, *, extra: dict | None = None,
               overwrite: bool = False) -> Path:
    """Write ``config.json`` and ``weights.safetensors`` into ``directory``.

    Parameters
    ----------
    model : AtomUNet
    directory : str or Path
        Created if needed; existing model files are kept unless ``overwrite``.
    extra : dict, optional
        Training record (data, steps, time, metrics) stored in the config.
    """
    from latentpath import __version__
    from latentpath.io import check_writable

    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    config_path, weights_path = directory / MODEL_CONFIG, directory / WEIGHTS
    check_writable([config_path, weights_path], overwrite=overwrite)
    write_tensors(model.state_dict(), weights_path)
    write_record({"kind": MODEL_KIND, "latentpath_version": __version__,
                  "architecture": asdict(model.config), "training": extra or {}}, config_path)
    return directory


def load_model(directory: str | Path | None = None, *, device: str | torch.device = "cpu"
               ) -> AtomUNet:
    """Load a segmentation model; ``None`` loads the weights shipped with latentpath.

    Raises
    ------
    ModelFileError
        When the directory lacks the files, the config is not JSON or not a
        latentpath segmentation model, or the weights do not fit the architecture.
    """
    directory = SHIPPED_MODEL_DIR if directory is None else Path(directory)
    config_path, weights_path = directory / MODEL_CONFIG, directory / WEIGHTS
    record = read_record(config_path, MODEL_KIND, "atom-segmentation model")
    try:
        model = AtomUNet(AtomNetConfig(**record["architecture"]))
    except (KeyError, TypeError, ValueError) as err:
        raise ModelFileError(f"{config_path}: bad architecture ({err})") from err
    load_state(model, read_tensors(weights_path), weights_path)
    model.training_record = record.get("training", {})
    return model.to(device).eval()
