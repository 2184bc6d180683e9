"""Domain walls in piezoresponse force microscopy (PFM) movies.

- :func:`normalize_phase`: wrapped phase (degrees) to a signed polarisation signal in
  [-1, 1], whatever the wrap and the phase offset of the instrument;
- :func:`register_frames`, :func:`align_frames`: the drift between frames, and the
  movie shifted onto its first frame;
- :func:`find_walls`: Canny edges of the polarisation signal (scikit-image), with
  thresholds set from the image itself.

Lengths are pixels unless a name says otherwise.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from scipy import ndimage

from latentpath.checks import check_float


def _check_stack(images: np.ndarray, name: str) -> np.ndarray:
    stack = np.asarray(images)
    if stack.ndim == 2:
        stack = stack[None]
    if stack.ndim != 3 or 0 in stack.shape:
        raise ValueError(f"{name} must have shape (T, H, W) or (H, W), got {np.shape(images)}")
    if min(stack.shape[1:]) < 8:
        raise ValueError(f"{name} frames of {stack.shape[1:]} pixels are too small")
    if not np.isfinite(stack).all():
        raise ValueError(f"{name} contains NaN or infinite values")
    return stack


def normalize_phase(phase_deg: np.ndarray) -> np.ndarray:
    """The signed polarisation signal of a PFM phase movie.

    The two polarisation states sit 180 degrees apart at an offset set by the
    instrument, and the phase is wrapped somewhere. Doubling the angle maps both states
    onto one direction; its mean over the movie gives the axis of the two states, and
    the cosine of the phase measured from that axis is +1 for one state and -1 for the
    other, independent of the wrap. The sign is chosen so that the state covering
    most of the first frame is -1 ("unswitched").

    Parameters
    ----------
    phase_deg : ndarray (T, H, W) or (H, W)
        Phase in degrees, any wrap.

    Returns
    -------
    ndarray, float32, same shape
        cos(phase - axis): near -1 in unswitched, +1 in switched domains, near 0 where
        the phase is noisy (at walls).
    """
    stack = _check_stack(phase_deg, "phase_deg")
    angle = np.deg2rad(stack.astype(np.float64))
    doubled = np.exp(2j * angle).mean()
    # two clean states give |doubled| near 1 (0.88 on the synthetic movies, 0.67 on the
    # real PZT scans); uniform phase gives about 1 / sqrt(pixels)
    if abs(doubled) < 0.2:
        raise ValueError(f"phase_deg shows no two states 180 degrees apart (doubled-angle "
                         f"concentration {abs(doubled):.2f} < 0.2): is this a PFM phase "
                         f"channel?")
    axis = np.angle(doubled) / 2
    signal = np.cos(angle - axis).astype(np.float32)
    if np.median(signal[0]) > 0:
        signal = -signal
    return signal.reshape(np.shape(phase_deg))


def register_frames(images: np.ndarray, *, upsample_factor: int = 10,
                    max_shift_px: float | None = None) -> pd.DataFrame:
    """Drift of every frame relative to the first, from consecutive frames.

    Each frame is registered to the previous one by cross-correlation of the
    Hann-windowed frames (:func:`skimage.registration.phase_cross_correlation` without
    its phase normalisation, which on near-binary domain images chases interpolation
    noise: 0.15 px errors against 0.05; sub-pixel by upsampling). The shifts add up, so
    a domain pattern that changes slowly through the movie still registers pair by
    pair.

    Parameters
    ----------
    images : ndarray (T, H, W)
        Any channel that keeps its pattern between frames (height, amplitude, or the
        normalised phase).
    upsample_factor : int
        Sub-pixel precision 1 / ``upsample_factor``.
    max_shift_px : float, optional
        Reject shifts larger than this between consecutive frames (ValueError naming the
        frame).

    Returns
    -------
    DataFrame
        ``frame, dy, dx`` (pixels; the content of frame 0 at (y, x) is at
        (y + dy, x + dx) in this frame) and ``error`` (the registration error of each
        pair, 1 - normalised peak correlation: near 0 for a pattern that only moved,
        towards 1 as it changed; 0 for frame 0).
    """
    from skimage.registration import phase_cross_correlation

    stack = _check_stack(images, "images").astype(np.float32)
    window = np.outer(np.hanning(stack.shape[1]), np.hanning(stack.shape[2])).astype(np.float32)
    drift = np.zeros((len(stack), 2))
    error = np.zeros(len(stack))
    for t in range(1, len(stack)):
        prev = (stack[t - 1] - stack[t - 1].mean()) * window
        cur = (stack[t] - stack[t].mean()) * window
        # phase_cross_correlation returns the shift that moves ``moving`` onto the
        # reference; the content moved the other way
        shift, error[t], _ = phase_cross_correlation(prev, cur, upsample_factor=upsample_factor,
                                                     normalization=None)
        step = -np.asarray(shift, np.float64)
        if max_shift_px is not None and np.hypot(*step) > max_shift_px:
            raise ValueError(f"frame {t} moved {np.hypot(*step):.1f} px from frame {t - 1}, "
                             f"more than max_shift_px={max_shift_px}")
        drift[t] = drift[t - 1] + step
    return pd.DataFrame({"frame": np.arange(len(stack)), "dy": drift[:, 0], "dx": drift[:, 1],
                         "error": error})


def align_frames(images: np.ndarray, drift: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
    """Shift every frame back onto the first.

    Returns
    -------
    aligned : ndarray (T, H, W), float32
        Frames resampled (bilinear) so that a feature sits where it was in frame 0.
    valid : ndarray (T, H, W), bool
        Pixels that were inside the scanned frame; outside them ``aligned`` repeats the
        edge and should not be used.
    """
    stack = _check_stack(images, "images")
    if len(drift) != len(stack) or not {"dy", "dx"} <= set(drift.columns):
        raise ValueError(f"drift must have columns dy, dx and one row per frame "
                         f"({len(stack)}), got {len(drift)} rows")
    aligned = np.empty(stack.shape, np.float32)
    valid = np.empty(stack.shape, bool)
    ones = np.ones(stack.shape[1:], np.float32)
    for t, (dy, dx) in enumerate(drift[["dy", "dx"]].to_numpy()):
        aligned[t] = ndimage.shift(stack[t].astype(np.float32), (-dy, -dx), order=1,
                                   mode="nearest")
        valid[t] = ndimage.shift(ones, (-dy, -dx), order=1, mode="constant", cval=0) > 0.99
    return aligned, valid


def _step_gradient(sigma_px: float) -> float:
    """Peak Sobel gradient magnitude of a unit step smoothed as Canny smooths it."""
    width = int(8 * sigma_px) + 9
    step = np.zeros((width, width))
    step[:, width // 2:] = 1.0
    smooth = ndimage.gaussian_filter(step, sigma_px, mode="nearest")
    return float(np.abs(ndimage.sobel(smooth, axis=1))[width // 2].max())


def find_walls(signal: np.ndarray, *, sigma_px: float = 1.5, median_px: int = 3,
               min_length_px: int = 12, low: float | None = None,
               high: float | None = None) -> np.ndarray:
    """Domain walls of a polarisation signal: Canny edges, frame by frame.

    Parameters
    ----------
    signal : ndarray (T, H, W) or (H, W)
        :func:`normalize_phase` output (or any image with the two domains at two
        levels).
    sigma_px : float
        Gaussian smoothing of Canny, pixels: above the noise, below the smallest domain.
    median_px : int
        A median filter of this size first (1: none). It removes what a Gaussian only
        spreads: single noisy pixels, whose phase jumps to the other state inside a
        domain, and single scan lines that the tip wrote with the wrong phase.
    min_length_px : int
        Wall pieces (8-connected) of fewer pixels are dropped: rings around a few bad
        pixels, not domains.
    low, high : float, optional
        Hysteresis thresholds on the smoothed gradient magnitude. By default they follow
        the step itself: a wall between the two levels of the signal (their difference
        ``step``, from the 1st and 99th percentiles of the whole movie, so that a frame
        of one domain has no walls) has a peak gradient of ``step`` times that of a
        unit step under Canny's smoothing and Sobel operator; ``high`` is 0.5 and
        ``low`` 0.25 of that, so walls are kept and noise (a fraction of the step) is
        not.

    Returns
    -------
    ndarray of bool, same shape: wall pixels (one pixel thin).
    """
    from skimage.feature import canny

    stack = _check_stack(signal, "signal").astype(np.float32)
    sigma_px = check_float("sigma_px", sigma_px, minimum=0.3)
    lo_level, hi_level = np.percentile(stack[:, ::2, ::2], [1, 99])
    peak = (hi_level - lo_level) * _step_gradient(sigma_px)
    hi = high if high is not None else 0.5 * peak
    lo = low if low is not None else 0.25 * peak
    if lo > hi:
        raise ValueError(f"low ({lo}) must not exceed high ({hi})")
    walls = np.zeros(stack.shape, bool)
    for t, frame in enumerate(stack):
        if median_px > 1:
            frame = ndimage.median_filter(frame, size=median_px, mode="nearest")
        edges = canny(frame, sigma=sigma_px, low_threshold=lo, high_threshold=hi)
        labels, n = ndimage.label(edges, structure=np.ones((3, 3), bool))
        sizes = np.bincount(labels.ravel(), minlength=n + 1)
        keep = sizes >= min_length_px
        keep[0] = False
        walls[t] = keep[labels]
    return walls.reshape(np.shape(signal))
