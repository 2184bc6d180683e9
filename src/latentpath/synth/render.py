"""Incoherent annular dark-field (ADF) STEM imaging of atom positions.

An ADF image is, to a good approximation, the convolution of the probe intensity
with the projected scattering potential, each atom contributing about Z^n with n
between 1.5 and 2 (1.7 by default; it depends on the detector's inner angle). The
probe of an aberration-corrected microscope has a sharp core (about 1 A wide at
60-100 kV) and long tails from residual aberrations and source size; the tails are
what gives real images their diffuse glow between atoms.

Two rendering models share :func:`ideal_adf`:

- "gauss-tail" (the default): Gaussian probe core plus a Lorentzian-like tail
  (:func:`probe_otf`), independent per-line jitter (:func:`scan_jitter`), Poisson
  counts plus Gaussian read noise (:func:`detect`).
- "aperture": an Airy probe from a circular aperture blurred by the source size, with
  a Gaussian halo (:func:`aperture_probe_otf`); correlated line jitter, flyback and
  rare glitches (:func:`line_offsets`, :func:`flyback_profile`, :func:`resample_scan`);
  a scintillator detector with gain noise, line streaks and a fast-scan low-pass
  (:func:`detect_scintillator`).
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np
from scipy.integrate import trapezoid
from scipy.ndimage import map_coordinates
from scipy.optimize import brentq
from scipy.signal import lfilter
from scipy.special import j0

Z_EXPONENT = 1.7
"""Default exponent n of the Z^n contrast of ADF imaging."""
_AIRY_HALF_V = 1.6163399483106482
"""Where the Airy intensity (2 J1(v) / v)^2 falls to half its peak."""
_AIRY_ZERO_V = 3.8317059702075125
"""First zero of J1: the Airy pattern's first dark ring."""


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
              otf: np.ndarray, pad: int, *, z_exponent: float = Z_EXPONENT) -> np.ndarray:
    """Noise-free ADF signal, normalised so that an isolated C atom peaks near 1.

    ``otf`` must come from :func:`probe_otf` or :func:`aperture_probe_otf` for the
    padded shape ``(H + 2 pad, W + 2 pad)``; padding keeps atoms just outside the frame
    contributing their tails and stops the FFT from wrapping. Each atom is weighted
    ``(Z / 6) ** z_exponent`` (dimensionless, C = 1), so an isolated Si atom peaks at
    ``(14 / 6) ** z_exponent``.
    """
    h, w = shape
    padded = (h + 2 * pad, w + 2 * pad)
    weight = (z / 6.0) ** z_exponent
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


# -- the "aperture" rendering model ------------------------------------------------------

def _aperture_mtf(rho: np.ndarray) -> np.ndarray:
    """Autocorrelation of a unit disc, 1 at rho = 0 and 0 from rho = 1 on.

    The Fourier transform of an Airy intensity pattern: the incoherent transfer
    function of a circular aperture, ``rho`` being the frequency over the cutoff.
    """
    rho = np.clip(np.abs(rho), 0.0, 1.0)
    return 2 / np.pi * (np.arccos(rho) - rho * np.sqrt(1 - rho**2))


def _core_half_width_A(cutoff: float, source_sigma_A: float) -> float:
    """Half width at half maximum (angstrom) of an Airy pattern of OTF cutoff ``cutoff``
    (cycles per angstrom) convolved with a Gaussian of standard deviation ``source_sigma_A``.

    The radial profile comes from the Hankel transform of the OTF, which is exact for a
    circularly symmetric probe and cheap in 1-D.
    """
    q = np.linspace(0.0, cutoff, 2049)
    weight = _aperture_mtf(q / cutoff) * np.exp(-2 * np.pi**2 * source_sigma_A**2 * q**2) * q
    peak = trapezoid(weight, q)

    def below_half(r: float) -> float:
        return trapezoid(weight * j0(2 * np.pi * q * r), q) / peak - 0.5

    airy_hw = _AIRY_HALF_V / (np.pi * cutoff)
    source_hw = source_sigma_A * np.sqrt(2 * np.log(2))
    # Beyond the core the profile stays under 2 % of the peak (the Airy rings), so the
    # bracket holds the one crossing of one half.
    return brentq(below_half, 0.0, 3 * (airy_hw + source_hw), xtol=1e-7)


@lru_cache(maxsize=64)
def aperture_cutoff(fwhm_A: float, source_fwhm_A: float) -> float:
    """OTF cutoff of the aperture whose Airy core, blurred by the source, has ``fwhm_A``.

    Parameters
    ----------
    fwhm_A : float
        Full width at half maximum of the probe core (Airy pattern convolved with the
        source image), angstrom.
    source_fwhm_A : float
        FWHM of the Gaussian image of the source, angstrom; below 0.9 ``fwhm_A``.

    Returns
    -------
    float
        Cutoff frequency ``2 alpha / lambda`` (aperture semi-angle over wavelength),
        cycles per angstrom. The Airy pattern's first dark ring lies at
        ``3.8317 / (pi * cutoff)`` angstrom (0.61 lambda / alpha).
    """
    if not 0.0 <= source_fwhm_A < 0.9 * fwhm_A:
        raise ValueError(f"source_fwhm_A must be >= 0 and below 0.9 fwhm_A ({0.9 * fwhm_A:.3g} A)"
                         f", got {source_fwhm_A}")
    sigma = source_fwhm_A / (2 * np.sqrt(2 * np.log(2)))
    airy_only = 2 * _AIRY_HALF_V / (np.pi * fwhm_A)
    # The blurred core is wider than the Airy pattern alone, so the aperture must be
    # larger (higher cutoff); at 20 times the Airy-only cutoff the source width rules.
    return brentq(lambda c: 2 * _core_half_width_A(c, sigma) - fwhm_A,
                  airy_only, 20 * airy_only, xtol=1e-9 * airy_only)


def aperture_probe_otf(shape: tuple[int, int], pixel_size_A: float, *, fwhm_A: float = 1.05,
                       tail_weight: float = 0.15, source_fwhm_A: float | None = None,
                       halo_fwhm_A: float = 4.0) -> np.ndarray:
    """Fourier transform (rfft2 layout) of an aperture-limited probe's intensity, unit integral.

    Physically motivated alternative to :func:`probe_otf`:

    - The probe-forming aperture (semi-angle alpha) of an aberration-corrected
      microscope makes an Airy pattern ``(2 J1(v) / v)^2``, ``v = 2 pi alpha r / lambda``:
      a sharp core with dark rings, band limited at the cutoff ``2 alpha / lambda``.
    - The finite, incoherent source is imaged demagnified onto the sample: a Gaussian
      blur of FWHM ``source_fwhm_A`` (default half of ``fwhm_A``; comparable to the
      diffraction limit in practice), which also fills the dark rings.
    - The aperture is chosen (:func:`aperture_cutoff`) so that the blurred core's FWHM
      is ``fwhm_A``.
    - ``tail_weight`` of the intensity lies in a broad Gaussian halo of FWHM
      ``halo_fwhm_A``: the skirt from chromatic aberration (energy spread) and residual
      higher-order aberrations, smoother and shorter-ranged than the Lorentzian tail of
      :func:`probe_otf`.

    The OTF is built analytically in Fourier space (the disc autocorrelation times
    Gaussians), so the Airy pattern's slowly decaying rings are not cut off in real
    space. It is 1 at zero frequency: the kernel sums to 1 over the pixels.

    Parameters
    ----------
    shape : (H, W)
        Size of the (padded) image in pixels.
    pixel_size_A : float
        Angstrom per pixel.
    fwhm_A : float
        FWHM of the probe core (Airy pattern convolved with the source), angstrom.
    tail_weight : float
        Share of the intensity in the halo, 0 to 1.
    source_fwhm_A : float or None
        FWHM of the source image, angstrom; None for ``fwhm_A / 2``.
    halo_fwhm_A : float
        FWHM of the halo, angstrom.

    Returns
    -------
    ndarray, shape (H, W // 2 + 1), complex128
    """
    h, w = shape
    source = 0.5 * fwhm_A if source_fwhm_A is None else source_fwhm_A
    cutoff = aperture_cutoff(float(fwhm_A), float(source))
    to_sigma = 1 / (2 * np.sqrt(2 * np.log(2)))
    qy = np.fft.fftfreq(h, pixel_size_A)[:, None]
    qx = np.fft.rfftfreq(w, pixel_size_A)[None, :]
    q2 = qy**2 + qx**2

    def gaussian(fwhm: float) -> np.ndarray:
        return np.exp(-2 * np.pi**2 * (fwhm * to_sigma) ** 2 * q2)

    core = _aperture_mtf(np.sqrt(q2) / cutoff) * gaussian(source)
    otf = (1 - tail_weight) * core + tail_weight * gaussian(halo_fwhm_A)
    return otf.astype(np.complex128)


def line_offsets(n_lines: int, rms_px: float, rng: np.random.Generator, *,
                 correlation_lines: float = 6.0, glitch_rate: float = 0.002) -> np.ndarray:
    """Sideways offsets of the scan lines: correlated jitter plus rare glitches.

    Line jitter in real scans comes from stray fields (mains hum) and mechanical
    vibration, whose periods span several line times, so neighbouring lines move
    together: the offsets are an AR(1) process (a damped random walk) with
    stationary RMS ``rms_px`` and correlation ``exp(-1 / correlation_lines)`` between
    neighbours. A line is hit by a glitch (a sudden electrical disturbance, e.g. a
    scan-generator or ground-loop spike) with probability ``glitch_rate``; it is then
    displaced by a further 4 to 12 ``rms_px`` of either sign.

    Parameters
    ----------
    n_lines : int
        Number of scan lines (image height).
    rms_px : float
        RMS of the offsets, pixels. 0 gives no offsets (and no glitches).
    rng : numpy.random.Generator
    correlation_lines : float
        Correlation length of the jitter, lines.
    glitch_rate : float
        Probability of a glitch per line.

    Returns
    -------
    ndarray, shape (n_lines,), float64
        Offset of each line along the fast-scan direction, pixels (positive: the
        content moves to larger x).
    """
    if rms_px <= 0:
        return np.zeros(n_lines)
    phi = np.exp(-1.0 / correlation_lines)
    innovation = rng.normal(0.0, 1.0, n_lines)
    # The first line starts from the stationary distribution, so that every line has
    # the same RMS.
    innovation[0] /= np.sqrt(1 - phi**2)
    offsets = lfilter([rms_px * np.sqrt(1 - phi**2)], [1.0, -phi], innovation)
    glitch = rng.random(n_lines) < glitch_rate
    jump = rng.choice([-1.0, 1.0], n_lines) * rng.uniform(4.0, 12.0, n_lines) * rms_px
    return offsets + np.where(glitch, jump, 0.0)


def flyback_profile(width: int, amplitude_px: float, rng: np.random.Generator) -> np.ndarray:
    """Fast-scan position error after the flyback: a slow, damped sinusoid along each line.

    After each line the scan coils jump back; their current overshoots and rings
    before settling, so the first part of every line is stretched and compressed the
    same way in every line and frame. The error is ``A exp(-x / tau) cos(2 pi x / (3
    tau))`` with ``A`` of magnitude 0.6 to 1.4 ``amplitude_px`` (either sign) and the
    settling length ``tau`` 12 to 32 pixels (a fixed time, a few tens of microseconds
    at usual dwell times), both drawn once per call.

    Parameters
    ----------
    width : int
        Pixels per line.
    amplitude_px : float
        Typical size of the error at the start of a line, pixels.
    rng : numpy.random.Generator

    Returns
    -------
    ndarray, shape (width,), float64
        Offset of each column along the fast-scan direction, pixels.
    """
    amplitude = amplitude_px * rng.uniform(0.6, 1.4) * rng.choice([-1.0, 1.0])
    tau = rng.uniform(12.0, 32.0)
    x = np.arange(width, dtype=np.float64)
    return amplitude * np.exp(-x / tau) * np.cos(2 * np.pi * x / (3 * tau))


def resample_scan(image: np.ndarray, line_px: np.ndarray, column_px: np.ndarray) -> np.ndarray:
    """Image as scanned with the probe displaced along the fast-scan direction (x).

    Pixel (i, j) records the signal at ``x = j - line_px[i] - column_px[j]``, so content
    moves by ``line_px[i] + column_px[j]`` pixels. Cubic-spline interpolation: the
    signal is smooth (band limited by the probe), so the spline is accurate; beyond the
    edges the edge value is repeated.

    Parameters
    ----------
    image : ndarray, shape (H, W)
        Noise-free signal.
    line_px : ndarray, shape (H,)
        Offset of each line, pixels (:func:`line_offsets`).
    column_px : ndarray, shape (W,)
        Offset of each column, pixels (:func:`flyback_profile`).

    Returns
    -------
    ndarray, shape (H, W), float64
    """
    h, w = image.shape
    if not (np.any(line_px) or np.any(column_px)):
        return image
    rows, cols = np.mgrid[0:h, 0:w].astype(np.float64)
    cols -= line_px[:, None] + column_px[None, :]
    return map_coordinates(np.asarray(image, np.float64), [rows, cols], order=3,
                           mode="nearest")


def detect_scintillator(signal: np.ndarray, *, counts_per_unit: float, read_noise: float,
                        rng: np.random.Generator, gain_shape: float = 3.0,
                        response_px: float = 0.5, streak_share: float = 0.3) -> np.ndarray:
    """Scintillator-photomultiplier ADF detector: gain noise, lag, streaks, read noise.

    - Each scattered electron (Poisson number, mean ``signal * counts_per_unit``)
      makes a light pulse of random height: the gain per electron is gamma distributed
      with mean 1 and shape ``gain_shape`` (relative spread ``1 / sqrt(gain_shape)``,
      0.58 at 3, as measured pulse-height spectra of ADF detectors show), so the sum
      over N electrons is Gamma(N gain_shape, 1 / gain_shape). The noise variance grows
      by the excess noise factor ``1 + 1 / gain_shape`` over pure shot noise.
    - The scintillator's decay and the amplifier's bandwidth smear the signal along the
      fast-scan direction: a causal exponential response with decay length
      ``response_px`` pixels (x only; it delays peaks by about 0.16 px at 0.5 px).
    - The dark level drifts between lines: an offset per line with standard deviation
      ``streak_share * read_noise`` counts shows as horizontal streaks.
    - The ADC adds white Gaussian read noise of ``read_noise`` counts.

    Parameters
    ----------
    signal : ndarray, shape (H, W)
        Expected signal, 1.0 at the peak of a C atom.
    counts_per_unit : float
        Detected electrons for signal 1.0.
    read_noise : float
        Standard deviation of the read noise, counts.
    rng : numpy.random.Generator
    gain_shape : float
        Shape of the per-electron gamma gain (larger: more uniform pulses).
    response_px : float
        Decay length of the detector response along x, pixels; 0 for none.
    streak_share : float
        Standard deviation of the per-line offsets as a share of ``read_noise``.

    Returns
    -------
    ndarray, float32
        Detected signal in counts (mean gain 1: an electron counts 1 on average).
    """
    expected = np.clip(signal, 0, None) * counts_per_unit
    electrons = rng.poisson(expected)
    # Gamma with shape 0 is exactly 0: pixels without electrons stay dark.
    counts = rng.gamma(electrons * gain_shape, 1.0 / gain_shape)
    if response_px > 0:
        a = np.exp(-1.0 / response_px)
        # Start each line in the steady state of its first pixel, not from zero.
        counts, _ = lfilter([1 - a], [1.0, -a], counts, axis=1, zi=a * counts[:, :1])
    counts += rng.normal(0.0, streak_share * read_noise, (signal.shape[0], 1))
    counts += rng.normal(0.0, read_noise, signal.shape)
    return counts.astype(np.float32)
