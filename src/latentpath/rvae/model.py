"""The skip-rVAE: a rotation-invariant VAE whose latent vector feeds every decoder layer.

The encoder maps a window to the mean and log-variance of 1 angle + 2 translations +
k content latents. The decoder is a spatial generator: an MLP evaluated at every pixel
coordinate of the window after the coordinates are rotated by the angle and shifted by
the translation, so rotation and translation are absorbed by the first three latents
and the content latents are free to describe structure (Bepler et al.; Kalinin et al.).
As the method states, the content latents enter every decoder layer ("skip connections
from the latent space", against posterior collapse); their projection is computed once
per window and broadcast over its pixels, which is what makes the decoder affordable.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

COORD_INIT_SCALE = 3.0
#: the largest size of each part of a model: beyond them a config is a typo, and would
#: allocate a petabyte before failing
SIZE_LIMITS = {"window_px": 512, "channels": 64, "latent_dim": 64, "hidden": 8192,
               "layers": 32}


@dataclass
class RVAEConfig:
    """Architecture, priors and input normalisation of a skip-rVAE.

    Attributes
    ----------
    window_px : int
        Window side w; inputs are (N, w, w), or (N, c, w, w) with several channels.
    channels : int
        Images per window c, rotated and shifted together (e.g. the same place at two
        times, so that the content latents encode the motion between them).
    latent_dim : int
        Content latents k (the angle and the two translations come on top).
    hidden : int
        Units per layer, encoder and decoder.
    layers : int
        Hidden layers of the encoder, and hidden layers of the decoder after its
        coordinate input layer (AtomAI's convention: "4 x 256" is four 256 x 256
        layers in the decoder).
    angle_prior_rad : float
        Width of the angle prior, radians: the posterior's uncertainty about the angle
        is penalised against it, its mean is free (every orientation is equally
        likely). Small values ask for a precise angle; wide ones let the angle latent
        collapse and rotations leak into the content latents.
    translation_prior : float
        Standard deviation of the prior of the translations, in units of the window
        half-width. The two translation latents are standard normal and scaled by it
        (AtomAI's convention), which conditions their encoder outputs like the others.
    loss : {"mse", "bce"}
        Gaussian (MSE) or Bernoulli (BCE on images scaled to [0, 1]) likelihood.
    skip : {"latent", "first_layer"}
        "latent": the content latents are projected into every decoder layer (the
        paper); "first_layer": the first layer's embedding of coordinates and latents
        is re-added after every layer (AtomAI's residual variant).
    offset, scale : float
        Input normalisation, ``(x - offset) / scale``, set from the training data and
        stored with the model so that raw counts never reach the loss unscaled.
    """

    window_px: int = 32
    channels: int = 1
    latent_dim: int = 2
    hidden: int = 256
    layers: int = 4
    angle_prior_rad: float = 0.1
    translation_prior: float = 0.1
    loss: str = "mse"
    skip: str = "latent"
    offset: float = 0.0
    scale: float = 1.0

    def __post_init__(self) -> None:
        if self.loss not in ("mse", "bce"):
            raise ValueError(f"loss must be 'mse' or 'bce', got {self.loss!r}")
        if self.skip not in ("latent", "first_layer"):
            raise ValueError(f"skip must be 'latent' or 'first_layer', got {self.skip!r}")
        for name, high in SIZE_LIMITS.items():
            if not 1 <= int(getattr(self, name)) <= high:
                raise ValueError(f"{name} must be a whole number from 1 to {high}, got "
                                 f"{getattr(self, name)}")
        if not self.scale > 0:
            raise ValueError(f"scale must be positive, got {self.scale}")


def _grid(size: int) -> torch.Tensor:
    """Pixel centres of an s x s image as (x, y) rows in [-1, 1]."""
    axis = torch.linspace(-1, 1, size)
    yy, xx = torch.meshgrid(axis, axis, indexing="ij")
    return torch.stack([xx, yy], -1).reshape(-1, 2)


def _tanh_layer(a: torch.Tensor, layer: nn.Linear, skip: torch.Tensor) -> torch.Tensor:
    """tanh(a W^T + b + skip) for inputs a (N, m, n) and a per-window skip (N, 1, h).

    One batched matrix product that starts from the per-window bias, and a tanh in
    place: the same layer as ``tanh(layer(a) + skip)`` without the separate pass over,
    and allocations of, the (N, m, h) activations that the add costs, which in eager
    mode take a fifth of a training step (docs/benchmarks.md). The product sees the
    weight once per window, and its gradient is summed from N copies: where a window
    has fewer samples than the layer has units, those copies would outweigh the
    activations, and the layer adds in place after one plain product instead.
    """
    bias = skip + layer.bias
    if a.shape[1] < layer.weight.shape[0]:
        return nn.functional.linear(a, layer.weight).add_(bias).tanh_()
    weight = layer.weight.t()
    if torch.is_autocast_enabled(a.device.type):
        # cast before the expand: autocast would cast, and so copy, all N views
        weight = weight.to(torch.get_autocast_dtype(a.device.type))
    return torch.baddbmm(bias, a, weight.expand(a.shape[0], -1, -1)).tanh_()


class SkipRVAE(nn.Module):
    """Encoder MLP -> (angle, dx, dy, z); coordinate decoder with latent skips."""

    def __init__(self, config: RVAEConfig):
        super().__init__()
        self.config = c = config
        n_in, k, h = c.channels * c.window_px**2, c.latent_dim, c.hidden
        enc = [nn.Linear(n_in, h), nn.Tanh()]
        for _ in range(c.layers - 1):
            enc += [nn.Linear(h, h), nn.Tanh()]
        self.encoder = nn.Sequential(*enc, nn.Linear(h, 2 * (3 + k)))
        self.coord_in = nn.Linear(2, h)
        # The coordinate input layer plus `layers` hidden layers, as AtomAI counts them.
        self.hidden_layers = nn.ModuleList(nn.Linear(h, h) for _ in range(c.layers))
        n_skips = c.layers + 1 if c.skip == "latent" else 1
        self.latent_in = nn.ModuleList(nn.Linear(k, h, bias=False) for _ in range(n_skips))
        self.out = nn.Linear(h, c.channels)
        self._init_decoder()
        self.register_buffer("grid", _grid(c.window_px), persistent=False)

    def _init_decoder(self) -> None:
        # PyTorch's default init shrinks activations by about sqrt(3) per tanh layer, and
        # without residual paths (the paper's decoder has none) the decoder then sits for
        # epochs on the mean image. Xavier init with the tanh gain keeps the signal at
        # unit scale through the layers; coordinate weights COORD_INIT_SCALE times wider
        # than the default start the first layer with features a few pixels across
        # instead of the whole window. Measured: the validation loss after 3 epochs of
        # the benchmark drops from 512 to 412 (docs/benchmarks.md).
        for layer in self.hidden_layers:
            nn.init.xavier_uniform_(layer.weight, gain=nn.init.calculate_gain("tanh"))
            nn.init.zeros_(layer.bias)
        with torch.no_grad():
            self.coord_in.weight.mul_(COORD_INIT_SCALE)

    def normalize(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self.config.offset) / self.config.scale

    def encode(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Normalised windows (N, [c,] w, w) -> mean and log-variance (N, 3 + k) of the
        latents (angle in radians, then standard-normal translations and contents)."""
        # The head predicts log standard deviations, as AtomAI's does: the same
        # posterior, but its width moves half as fast per step as a log-variance head,
        # which trains more steadily.
        mu, log_sd = self.encoder(x.flatten(1)).chunk(2, dim=1)
        return mu, (2 * log_sd).clamp(-12, 8)

    def decode(self, z: torch.Tensor, angle: torch.Tensor, shift: torch.Tensor,
               size: int | None = None, pixels: torch.Tensor | None = None
               ) -> torch.Tensor:
        """Content latents (N, k), angle (N,) radians, shift (N, 2) -> images (N, s, s),
        or (N, c, s, s) for c > 1 channels, in normalised units (logits for the BCE
        loss).

        The decoder is a function of continuous coordinates: ``size`` samples the same
        field of view on an s x s grid (default: the training windows' w); ``pixels``
        (m,) indexes the flattened grid and decodes only those, as (N, m) or (N, c, m).
        """
        s = self.config.window_px if size is None else size
        grid = self.grid if s == self.config.window_px else _grid(s).to(self.grid.device)
        if pixels is not None:
            grid = grid[pixels]
        cos, sin = torch.cos(angle), torch.sin(angle)
        rot = torch.stack([torch.stack([cos, -sin], -1), torch.stack([sin, cos], -1)], -2)
        coords = grid[None] @ rot.transpose(1, 2) + shift[:, None, :]
        skips = [proj(z)[:, None, :] for proj in self.latent_in]
        if self.config.skip == "latent":
            a = _tanh_layer(coords, self.coord_in, skips[0])
            for layer, skip in zip(self.hidden_layers, skips[1:], strict=True):
                a = _tanh_layer(a, layer, skip)
        else:
            # AtomAI: the first layer's embedding of coordinates and latents is added
            # back after every layer.
            first = self.coord_in(coords) + skips[0]
            a = first
            for layer in self.hidden_layers:
                a = torch.tanh(layer(a)) + first
        out = self.out(a)
        if pixels is not None:
            return out[..., 0] if self.config.channels == 1 else out.transpose(1, 2)
        if self.config.channels == 1:
            return out.reshape(-1, s, s)
        return out.transpose(1, 2).reshape(-1, self.config.channels, s, s)

    def forward(self, x: torch.Tensor, generator: torch.Generator | None = None
                ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Sample the posterior and reconstruct; returns (reconstruction, mu, logvar)."""
        eps = torch.randn((x.shape[0], 3 + self.config.latent_dim), generator=generator,
                          device=x.device, dtype=torch.float32)
        return self.reconstruct(x, eps)

    def reconstruct(self, x: torch.Tensor, eps: torch.Tensor,
                    pixels: torch.Tensor | None = None
                    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """:meth:`forward` with the standard-normal noise ``eps`` (N, 3 + k) given, so
        that the noise is drawn outside a compiled graph; ``pixels`` as in
        :meth:`decode`."""
        mu, logvar = self.encode(x)
        sample = mu + eps * torch.exp(0.5 * logvar)
        shift = sample[:, 1:3] * self.config.translation_prior
        recon = self.decode(sample[:, 3:], sample[:, 0], shift, pixels=pixels)
        return recon, mu, logvar

    def loss(self, x: torch.Tensor, recon: torch.Tensor, mu: torch.Tensor,
             logvar: torch.Tensor, kl_weight: float | torch.Tensor = 1.0,
             pixel_weights: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Reconstruction and KL terms per window, averaged over the batch; the
        reconstruction of pixel i weighted by ``pixel_weights[i]`` (flattened pixels,
        mean 1) if given."""
        n = x.shape[0]
        if self.config.loss == "mse":
            error = 0.5 * (recon - x) ** 2
        else:
            error = nn.functional.binary_cross_entropy_with_logits(
                recon, x.clamp(0, 1), reduction="none")
        if pixel_weights is not None:
            error = error.reshape(n, -1, pixel_weights.numel()) * pixel_weights
        recon_term = error.reshape(n, -1).sum(1)
        c = self.config
        prior_sd = torch.tensor([c.angle_prior_rad] + [1.0] * (2 + c.latent_dim),
                                device=mu.device, dtype=mu.dtype)
        # Every orientation is equally likely: the angle's mean is not pulled towards 0,
        # only its uncertainty is compared with the prior width (as in spatial-VAE).
        mean_term = torch.cat([torch.zeros_like(mu[:, :1]), mu[:, 1:]], dim=1)
        var = logvar.exp()
        kl = 0.5 * ((var + mean_term**2) / prior_sd**2 - 1 - logvar
                    + 2 * torch.log(prior_sd)).sum(1)
        return recon_term.mean(), kl_weight * kl.mean()
