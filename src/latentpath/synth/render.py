"""Incoherent annular dark-field (ADF) STEM imaging of atom positions.

An ADF image is, to a good approximation, the convolution of the probe intensity
with the projected scattering potential, each atom contributing about Z^1.7. The
probe of an aberration-corrected microscope has a sharp core (about 1 A wide at
60-100 kV) and long tails from residual aberrations and source size; the tails are
what gives real images their diffuse glow between atoms.
"""

from __future__ import annotations

import numpy as np

Z_EXPONENT = 1.7


def probe_otf(shape: tuple[int, int], pixel_size_A: float, *, fwhm_A: float = 1.05,
              tail_weight: float = 0.15, tail_width_A: float = 2.5) -> np.ndarray:
    """Fourier transform (rfft2 layout) of the probe intensity, unit integral.

    The probe is a Gaussian core of full width at half maximum ``fwhm_A`` plus a
    Lorentzian-like tail ``(1 + r^2 / w^2)^-1.5`` of width ``tail_width_A`` carrying
    ``tail_weight`` of the intensity.

    Parameters
    ----------
    shape : (H, W)
        Size of the (padded) image in pixels.
    pixel_size_A : float
        Angstrom per pixel.

    Returns
    -------
    ndarray, shape (H, W // 2 + 1), complex128
    """
    h, w = shape
    y = np.fft.fftfreq(h, 1.0 / h)[:, None] * pixel_size_A
    x = np.fft.fftfreq(w, 1.0 / w)[None, :] * pixel_size_A
    r2 = y**2 + x**2
    sigma = fwhm_A / (2 * np.sqrt(2 * np.log(2)))
    core = np.exp(-r2 / (2 * sigma**2))
    tail = (1 + r2 / tail_width_A**2) ** -1.5
    kernel = (1 - tail_weight) * core / core.sum() + tail_weight * tail / tail.sum()
    return np.fft.rfft2(kernel)


def splat(y_px: np.ndarray, x_px: np.ndarray, weight: np.ndarray,
          shape: tuple[int, int]) -> np.ndarray:
    """Deposit point weights on a grid with bilinear weights (sub-pixel exact centroid)."""
    h, w = shape
    grid = np.zeros(h * w)
    y0, x0 = np.floor(y_px).astype(np.int64), np.floor(x_px).astype(np.int64)
    fy, fx = y_px - y0, x_px - x0
    for dy, dx, wt in ((0, 0, (1 - fy) * (1 - fx)), (0, 1, (1 - fy) * fx),
                       (1, 0, fy * (1 - fx)), (1, 1, fy * fx)):
        yy, xx = y0 + dy, x0 + dx
        ok = (yy >= 0) & (yy < h) & (xx >= 0) & (xx < w)
        grid += np.bincount(yy[ok] * w + xx[ok], (weight * wt)[ok], h * w)
    return grid.reshape(h, w)


def ideal_adf(y_px: np.ndarray, x_px: np.ndarray, z: np.ndarray, shape: tuple[int, int],
              otf: np.ndarray, pad: int) -> np.ndarray:
    """Noise-free ADF signal, normalised so that an isolated C atom peaks near 1.

    ``otf`` must come from :func:`probe_otf` for the padded shape
    ``(H + 2 pad, W + 2 pad)``; padding keeps atoms just outside the frame
    contributing their tails and stops the FFT from wrapping.
    """
    h, w = shape
    padded = (h + 2 * pad, w + 2 * pad)
    weight = (z / 6.0) ** Z_EXPONENT
    grid = splat(y_px + pad, x_px + pad, weight, padded)
    image = np.fft.irfft2(np.fft.rfft2(grid) * otf, s=padded)[pad:pad + h, pad:pad + w]
    peak = np.fft.irfft2(otf, s=padded)[0, 0]
    return image / peak


def scan_jitter(image: np.ndarray, rms_px: float, rng: np.random.Generator) -> np.ndarray:
    """Shift each scan line sideways by a random sub-pixel amount (Fourier shift).

    Line-to-line jitter in real scans comes from mechanical and electrical
    instabilities during the fast scan; it shears atoms row by row.
    """
    if rms_px <= 0:
        return image
    h, w = image.shape
    shift = rng.normal(0.0, rms_px, h)
    freq = np.fft.rfftfreq(w)
    spec = np.fft.rfft(image, axis=1) * np.exp(-2j * np.pi * freq[None, :] * shift[:, None])
    return np.fft.irfft(spec, n=w, axis=1)


def smooth_background(shape: tuple[int, int], rng: np.random.Generator,
                      scale_px: float) -> np.ndarray:
    """A slowly varying field in [0, 1]: contamination and thickness gradients."""
    h, w = shape
    ky = np.fft.fftfreq(h)[:, None]
    kx = np.fft.rfftfreq(w)[None, :]
    envelope = np.exp(-0.5 * (ky**2 + kx**2) * scale_px**2)
    noise = rng.normal(size=(h, w // 2 + 1)) + 1j * rng.normal(size=(h, w // 2 + 1))
    field = np.fft.irfft2(noise * envelope, s=(h, w))
    field -= field.min()
    return field / max(field.max(), 1e-12)


def detect(signal: np.ndarray, *, counts_per_unit: float, read_noise: float,
           rng: np.random.Generator) -> np.ndarray:
    """Electron counting: Poisson shot noise on the expected counts plus detector noise.

    Parameters
    ----------
    signal : ndarray
        Expected signal, 1.0 at the peak of a C atom.
    counts_per_unit : float
        Detected electrons for signal 1.0 (from dose, pixel area and the scattered
        fraction).
    read_noise : float
        Standard deviation of the Gaussian detector noise, in counts.

    Returns
    -------
    ndarray, float32
        Detected counts.
    """
    expected = np.clip(signal, 0, None) * counts_per_unit
    counts = rng.poisson(expected).astype(np.float64)
    counts += rng.normal(0.0, read_noise, signal.shape)
    return counts.astype(np.float32)
