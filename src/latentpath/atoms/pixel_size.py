"""Estimating the pixel size of an atomic-resolution image from its lattice.

The power spectrum of a crystalline image has rings (or spots) at the reciprocal of
the lattice-plane spacings; for graphene the strongest are the {100} planes at 2.13 A.
The radius of that ring in the discrete spectrum gives the spacing in pixels, hence
angstrom per pixel.
"""

from __future__ import annotations

import numpy as np
import scipy.fft

GRAPHENE_D100_A = 2.46 * np.sqrt(3) / 2
"""Spacing of the {100} lattice planes of graphene, angstrom (2.13)."""


def estimate_pixel_size(images: np.ndarray, *, spacing_A: float = GRAPHENE_D100_A,
                        min_spacing_px: float = 4.0, max_spacing_px: float = 80.0
                        ) -> tuple[float, float]:
    """Angstrom per pixel from the strongest lattice reflection.

    Parameters
    ----------
    images : ndarray, shape (T, H, W) or (H, W)
        Frames of one movie (their spectra are averaged).
    spacing_A : float
        Real spacing of the reflection taken as the strongest, angstrom (graphene
        {100}: 2.13 A; MoS2 {100}: 2.74 A).
    min_spacing_px, max_spacing_px : float
        Range of plane spacings to search, pixels.

    Returns
    -------
    pixel_size_A : float
    prominence : float
        Height of the peak over the smooth background of the radial spectrum, in
        units of that background; below about 0.5 there is no clear lattice and the
        estimate should not be trusted.
    """
    # float32 throughout: the peak is placed to a fraction of a bin either way, in half
    # the time of float64
    images = np.asarray(images, dtype=np.float32)
    if images.ndim == 2:
        images = images[None]
    _, h, w = images.shape
    side = min(h, w)
    window = np.outer(np.hanning(side), np.hanning(side)).astype(np.float32)
    # Zero-padding small frames samples the spectrum finely enough to place the peak
    # within a percent or two.
    n = max(side, 1024)
    # A real image's spectrum is symmetric: half of it (a real FFT) holds it all, each
    # column but the first and last standing for itself and its mirror image.
    power = np.zeros((n, n // 2 + 1), np.float32)
    for frame in images[:, :side, :side]:
        # scaled to unit spread: float32 powers neither overflow on large counts nor
        # sink below the log's floor on tiny ones; the peak and its prominence are ratios
        f = frame - frame.mean()
        f /= max(float(f.std()), np.finfo(np.float32).tiny)
        power += np.abs(scipy.fft.rfft2(f * window, s=(n, n), workers=-1)) ** 2
    ky = np.fft.fftfreq(n, 1.0 / n).astype(np.float32)
    radius = np.hypot(ky[:, None], np.arange(n // 2 + 1, dtype=np.float32)[None])
    mirrored = np.full(n // 2 + 1, 2.0)
    mirrored[[0, -1]] = 1.0
    weight = np.broadcast_to(mirrored, power.shape).ravel()
    r_int = np.rint(radius).astype(np.int64).ravel()
    counts = np.bincount(r_int, weight)
    radial = np.bincount(r_int, weight * power.ravel()) / np.maximum(counts, 1)
    r_lo = max(2, int(np.floor(n / max_spacing_px)))
    r_hi = min(n // 2 - 1, int(np.ceil(n / min_spacing_px)))
    if side < 4 * min_spacing_px or r_hi - r_lo < 3:
        raise ValueError(f"frames of {h}x{w} px are too small to estimate a pixel size")
    log_radial = np.log(radial[: n // 2] + 1e-12)
    # The spectrum falls off smoothly, close to a power law: fit it in log-log
    # coordinates (robustly: twice, the second time without the peaks) and look for
    # the largest excess over it.
    r = np.arange(len(log_radial), dtype=np.float64)
    fit_r = np.arange(max(1, r_lo // 2), n // 2)
    weights = np.ones(len(fit_r))
    for _ in range(2):
        coef = np.polyfit(np.log(fit_r), log_radial[fit_r], 4, w=weights)
        resid = log_radial[fit_r] - np.polyval(coef, np.log(fit_r))
        weights = (resid < np.median(resid) + 1.5 * resid.std()).astype(np.float64)
    background = np.polyval(coef, np.log(np.maximum(r, 1)))
    excess = log_radial - background
    k = r_lo + int(np.argmax(excess[r_lo:r_hi]))
    # Sub-pixel peak from a parabola through the three highest bins.
    a, b, c = excess[k - 1], excess[k], excess[k + 1]
    offset = 0.5 * (a - c) / (a - 2 * b + c) if (a - 2 * b + c) != 0 else 0.0
    r_peak = k + float(np.clip(offset, -0.5, 0.5))
    spacing_px = n / r_peak
    return float(spacing_A / spacing_px), float(np.expm1(excess[k]))
