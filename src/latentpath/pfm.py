"""Domain walls in piezoresponse force microscopy (PFM) movies.

- :func:`normalize_phase`: wrapped phase (degrees) to a signed polarisation signal in
  [-1, 1], whatever the wrap and the phase offset of the instrument;
- :func:`register_frames`, :func:`align_frames`: the drift between frames, and the
  movie shifted onto its first frame; :func:`registration_doubts`: whether to trust it;
- :func:`find_walls`: Canny edges of the polarisation signal (scikit-image), with
  thresholds set from the image itself.

Lengths are pixels unless a name says otherwise.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from scipy import ndimage

from latentpath.checks import check_float


def _as_stack(images: np.ndarray, name: str) -> np.ndarray:
    """A (T, H, W) view of a stack or of a single (H, W) image."""
    stack = np.asarray(images)
    if stack.ndim == 2:
        stack = stack[None]
    if stack.ndim != 3 or 0 in stack.shape:
        raise ValueError(f"{name} must have shape (T, H, W) or (H, W), got {np.shape(images)}")
    return stack


def _check_stack(images: np.ndarray, name: str) -> np.ndarray:
    stack = _as_stack(images, name)
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


def register_frames(images: np.ndarray, *, reference: str = "pairs",
                    offsets: tuple[int, ...] = (1, 2, 4, 8), upsample_factor: int = 10,
                    max_shift_px: float | None = None) -> pd.DataFrame:
    """Drift of every frame relative to the first.

    Frames are registered by cross-correlation of the Hann-windowed frames
    (:func:`skimage.registration.phase_cross_correlation` without its phase
    normalisation, which on near-binary domain images chases interpolation noise: 0.15
    px errors against 0.05; sub-pixel by upsampling).

    Parameters
    ----------
    images : ndarray (T, H, W)
        A channel whose pattern is fixed to the sample. The PFM amplitude is best: its
        ferroelastic texture does not move, while the moving walls of the phase pull
        the registration with them (the normalised phase, chained frame to frame,
        drifts by 2-7 px over 50 synthetic frames).
    reference : {"pairs", "first", "previous"}
        ``"pairs"``: register every frame to the first and to the frames ``offsets``
        before it, and solve for the drift that best fits all those shifts (least
        squares). Noise averages out and nearby frames, which differ least, keep
        their relative drift exact: on the synthetic tip movies the drift between
        frames t and t + 2 is within 0.04-0.12 px rms, against 0.13-0.35 for
        ``"first"``, where the pattern drifts away from frame 0 as domains switch.
        ``"first"``: every frame to the first only (errors do not add up).
        ``"previous"``: each to the one before, shifts added up.
    offsets : tuple of int
        Frame offsets of the pairs for ``reference="pairs"``.
    upsample_factor : int
        Sub-pixel precision 1 / ``upsample_factor``.
    max_shift_px : float, optional
        Reject shifts larger than this between consecutive frames (ValueError naming the
        frame).

    Returns
    -------
    DataFrame
        ``frame, dy, dx`` (pixels; the content of frame 0 at (y, x) is at
        (y + dy, x + dx) in this frame) and ``error`` (1 - normalised peak correlation
        of the pair registering the frame to the first, or to the previous one for
        ``"previous"``: near 0 for a pattern that only moved, towards 1 as it changed;
        0 for frame 0).
    """
    from skimage.registration import phase_cross_correlation

    if reference not in ("pairs", "first", "previous"):
        raise ValueError(f"reference must be 'pairs', 'first' or 'previous', got {reference!r}")
    if reference == "pairs" and (not offsets or min(offsets) < 1):
        raise ValueError(f"offsets must be positive frame offsets, got {offsets}")
    stack = _check_stack(images, "images").astype(np.float32)
    window = np.outer(np.hanning(stack.shape[1]), np.hanning(stack.shape[2])).astype(np.float32)
    tapered = [(frame - frame.mean()) * window for frame in stack]

    def moved(earlier: int, later: int) -> tuple[np.ndarray, float]:
        # phase_cross_correlation returns the shift that moves ``later`` onto
        # ``earlier``; the content moved the other way
        shift, error, _ = phase_cross_correlation(tapered[earlier], tapered[later],
                                                  upsample_factor=upsample_factor,
                                                  normalization=None)
        return -np.asarray(shift, np.float64), float(error)

    n = len(stack)
    drift = np.zeros((n, 2))
    error = np.zeros(n)
    if reference == "pairs":
        pairs = sorted({(t - k, t) for t in range(1, n) for k in (*offsets, t) if k <= t})
        design = np.zeros((len(pairs), n))
        shifts = np.zeros((len(pairs), 2))
        for row, (earlier, later) in enumerate(pairs):
            shifts[row], err = moved(earlier, later)
            design[row, later], design[row, earlier] = 1.0, -1.0
            if earlier == 0:
                error[later] = err
        drift[1:] = np.linalg.lstsq(design[:, 1:], shifts, rcond=None)[0]
    else:
        for t in range(1, n):
            drift[t], error[t] = moved(0 if reference == "first" else t - 1, t)
            if reference == "previous":
                drift[t] += drift[t - 1]
    if max_shift_px is not None:
        steps = np.hypot(*np.diff(drift, axis=0).T)
        if (steps > max_shift_px).any():
            t = int(np.argmax(steps > max_shift_px)) + 1
            raise ValueError(f"frame {t} moved {steps[t - 1]:.1f} px from frame {t - 1}, "
                             f"more than max_shift_px={max_shift_px}")
    return pd.DataFrame({"frame": np.arange(n), "dy": drift[:, 0], "dx": drift[:, 1],
                         "error": error})


def registration_doubts(images: np.ndarray, drift: pd.DataFrame, *,
                        max_error: float = 0.95, max_disagreement_px: float = 3.0,
                        max_share: float = 0.25) -> list[str]:
    """What makes a registered drift untrustworthy, in plain sentences (none: trust it).

    Three checks, on the images the drift was registered from:

    - frames whose registration ``error`` exceeds ``max_error``: nothing of their
      reference in them (a noise frame, another place), so their drift is a guess. (The
      error alone cannot tell places apart: three scans of one PZT area read 0.80-0.86.)
    - the drift against a second registration by another route, every frame directly to
      the first: frames of one place agree within a pixel or so, while frames of
      different places, or a registration that followed something moving (the phase's
      walls) or chained an error on (one noise frame shifts every frame after it when
      frames are registered one to the next), disagree by more than
      ``max_disagreement_px``;
    - a drift beyond ``max_share`` of the frame: not the drift of one place.

    Parameters
    ----------
    images : ndarray (T, H, W)
        The frames the drift was registered on.
    drift : DataFrame
        :func:`register_frames`' table.

    Returns
    -------
    list of str
    """
    stack = _check_stack(images, "images")
    doubts: list[str] = []
    if len(stack) < 2:
        return doubts
    poor = drift[drift.error > max_error]
    if len(poor):
        doubts.append(f"frame(s) {poor.frame.tolist()[:10]} hold nothing of their reference "
                      f"(registration error up to {poor.error.max():.2f}, 1 = no likeness): "
                      "noise, or another place; their drift is a guess")
    direct = register_frames(stack, reference="first")
    gap = np.hypot(drift.dy.to_numpy() - direct.dy.to_numpy(),
                   drift.dx.to_numpy() - direct.dx.to_numpy())
    if (gap > max_disagreement_px).any():
        t = int(np.argmax(gap))
        doubts.append(f"the drift disagrees by {gap[t]:.1f} px at frame {t} with registering "
                      "each frame directly to the first: the frames may not show one place, "
                      "or the registration followed what moved (the amplitude channel moves "
                      "only with the sample); check drift.csv")
    reach = float(np.hypot(drift.dy, drift.dx).max())
    if reach > max_share * min(stack.shape[1:]):
        doubts.append(f"the drift reaches {reach:.0f} px, over {max_share:.0%} of the "
                      f"{min(stack.shape[1:])} px frame: are these frames one movie of one "
                      "place?")
    return doubts


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


_RING = np.ones((3, 3), bool)
_CROSS = ndimage.generate_binary_structure(2, 1)
# Pixels of a 3 x 3 neighbourhood, 4-neighbours first: a walk along a one-pixel line
# then takes the step along the line before a diagonal shortcut past it.
_STEPS = ((-1, 0), (1, 0), (0, -1), (0, 1), (-1, -1), (-1, 1), (1, -1), (1, 1))


def _check_mask(mask: np.ndarray, name: str) -> np.ndarray:
    stack = _as_stack(mask, name)
    if stack.dtype != bool:
        raise ValueError(f"{name} must be a boolean mask, got dtype {stack.dtype}")
    return stack


def _in_plane(structure: np.ndarray) -> np.ndarray:
    """A 2-D neighbourhood as a 3-D one that links nothing across a stack's images."""
    out = np.zeros((3, 3, 3), bool)
    out[1] = structure
    return out


def _trace(ys: np.ndarray, xs: np.ndarray) -> list[tuple[list[int], bool]]:
    """Order the pixels of a thin 8-connected line (or loop) by walking along it.

    Returns the pieces walked (indices into ``ys``) and whether each closes on itself.
    """
    index = {(y, x): i for i, (y, x) in enumerate(zip(ys.tolist(), xs.tolist(), strict=True))}
    neighbours = [[index[(y + dy, x + dx)] for dy, dx in _STEPS if (y + dy, x + dx) in index]
                  for y, x in zip(ys.tolist(), xs.tolist(), strict=True)]
    left = set(range(len(ys)))
    pieces = []
    while left:
        ends = [i for i in left if sum(n in left for n in neighbours[i]) <= 1]
        start = min(ends) if ends else min(left)
        path = [start]
        left.discard(start)
        while True:
            step = next((n for n in neighbours[path[-1]] if n in left), None)
            if step is None:
                break
            path.append(step)
            left.discard(step)
        closed = len(path) > 2 and path[0] in neighbours[path[-1]]
        pieces.append((path, closed))
    return pieces


def wall_curves(walls: np.ndarray, *, min_length_px: int = 12) -> pd.DataFrame:
    """Walls as ordered curves: every wall pixel with its wall and its place along it.

    The wall pixels are thinned to one-pixel lines; pixels where three or more lines
    meet (which 180-degree walls never form, but noise and crossing scan lines do) are
    cut out, so each curve is an open line or a closed loop, walked end to end.

    Parameters
    ----------
    walls : ndarray of bool (T, H, W) or (H, W)
        Wall pixels, e.g. from :func:`find_walls`.
    min_length_px : int
        Curves of fewer pixels are left out.

    Returns
    -------
    DataFrame
        ``frame, wall, order, y, x`` (pixels) and ``closed`` (the curve is a loop),
        sorted by frame, wall and order; ``wall`` numbers the curves of each frame
        from 0, longest first.
    """
    from skimage.morphology import skeletonize

    stack = _check_mask(walls, "walls")
    min_length_px = int(check_float("min_length_px", min_length_px, minimum=2))
    columns = {"frame": [], "wall": [], "order": [], "y": [], "x": [], "closed": []}
    for t, frame in enumerate(stack):
        thin = skeletonize(frame)
        degree = ndimage.convolve(thin.astype(np.uint8), _RING.astype(np.uint8),
                                  mode="constant") - 1
        plain = thin & (degree <= 2)
        labels, _ = ndimage.label(plain, structure=_RING)
        curves = []
        for lab, sl in enumerate(ndimage.find_objects(labels), start=1):
            ys, xs = np.nonzero(labels[sl] == lab)
            if len(ys) < min_length_px:
                continue
            for path, closed in _trace(ys + sl[0].start, xs + sl[1].start):
                if len(path) >= min_length_px:
                    curves.append((ys[path] + sl[0].start, xs[path] + sl[1].start, closed))
        curves.sort(key=lambda c: -len(c[0]))
        for w, (ys, xs, closed) in enumerate(curves):
            columns["frame"].append(np.full(len(ys), t))
            columns["wall"].append(np.full(len(ys), w))
            columns["order"].append(np.arange(len(ys)))
            columns["y"].append(ys.astype(np.float64))
            columns["x"].append(xs.astype(np.float64))
            columns["closed"].append(np.full(len(ys), closed))
    dtypes = {"frame": np.int64, "wall": np.int64, "order": np.int64, "y": np.float64,
              "x": np.float64, "closed": bool}
    return pd.DataFrame({k: np.concatenate(v) if v else np.zeros(0, dtypes[k])
                         for k, v in columns.items()})


def level_set_curvature(signal: np.ndarray, *, sigma_px: float = 2.0) -> np.ndarray:
    """Signed curvature of the level lines of a polarisation signal, 1 / pixels.

    ``kappa = -div(grad S / |grad S|)`` of the Gaussian-smoothed signal S (switched
    domains high), from Gaussian derivatives: at a wall it is the curvature of the
    wall, positive where the switched domain is convex (a growing bubble of radius r
    gives ``+1 / r``), negative where the wall bends around an unswitched region.

    Parameters
    ----------
    signal : ndarray (T, H, W) or (H, W)
        Frames or windows, switched high (:func:`normalize_phase` output).
    sigma_px : float
        Smoothing: walls are followed on scales above it.

    Returns
    -------
    ndarray, float32, same shape; 0 where the signal is flat.
    """
    stack = _check_stack(signal, "signal").astype(np.float32)
    sigma_px = check_float("sigma_px", sigma_px, minimum=0.5)

    def derivative(dy: int, dx: int) -> np.ndarray:
        return ndimage.gaussian_filter(stack, (0, sigma_px, sigma_px), order=(0, dy, dx),
                                       mode="nearest")

    sy, sx = derivative(1, 0), derivative(0, 1)
    syy, sxx, sxy = derivative(2, 0), derivative(0, 2), derivative(1, 1)
    grad2 = sx**2 + sy**2
    flat = grad2 <= 1e-12 * max(float(grad2.max()), 1e-30)
    kappa = -(sxx * sy**2 - 2 * sx * sy * sxy + syy * sx**2) / np.where(flat, 1, grad2**1.5)
    return np.where(flat, 0, kappa).astype(np.float32).reshape(np.shape(signal))


def wall_points(walls: np.ndarray, *, delay: int = 0, valid: np.ndarray | None = None,
                margin_px: int = 0) -> pd.DataFrame:
    """Every wall pixel that can centre a window: ``frame, y, x, kind="wall"``.

    Parameters
    ----------
    walls : ndarray of bool (T, H, W)
    delay : int
        Frames to the second image of a time-delayed window: only frames ``t`` with a
        frame ``t + delay`` give points, and the pixel must be valid in both.
    valid : ndarray of bool (T, H, W), optional
        Pixels inside the scanned field after alignment (:func:`align_frames`).
    margin_px : int
        Points nearer the frame's border or an invalid pixel are left out (half the
        window keeps windows inside).
    """
    stack = _check_mask(walls, "walls")
    if delay < 0 or delay >= len(stack):
        raise ValueError(f"delay must lie in [0, {len(stack) - 1}] frames, got {delay}")
    usable = np.ones(stack.shape, bool) if valid is None else _check_mask(valid, "valid")
    if usable.shape != stack.shape:
        raise ValueError(f"valid has shape {usable.shape}, walls {stack.shape}")
    usable = usable[:len(stack) - delay] & usable[delay:]
    if margin_px > 0:
        usable = ndimage.binary_erosion(usable, structure=np.ones((1, 3, 3), bool),
                                        iterations=int(margin_px), border_value=0)
    frame, y, x = np.nonzero(stack[:len(stack) - delay] & usable)
    return pd.DataFrame({"frame": frame, "y": y.astype(np.float64), "x": x.astype(np.float64),
                         "kind": "wall"})


def _switched_share(smooth: np.ndarray, level: float) -> np.ndarray:
    """Share of each sample that is switched, in [0, 1]: 1/2 at ``level``, rising
    linearly to the switched state (+1) and falling to the unswitched one (-1), so that
    a sample the wall crosses counts in part and sub-pixel motion changes the areas."""
    level = float(np.clip(level, -0.99, 0.99))
    above = 0.5 + 0.5 * (np.minimum(smooth, 1.0) - level) / (1.0 - level)
    below = 0.5 * (np.maximum(smooth, -1.0) + 1.0) / (level + 1.0)
    return np.where(smooth > level, above, below)


def _centre_weights(w: int, sigma_samples: float | None) -> np.ndarray:
    """Weights of a window's samples, summing to 1: Gaussian about the centre, or flat."""
    if sigma_samples is None:
        return np.full((w, w), 1.0 / w**2)
    r = np.arange(w) - (w - 1) / 2
    weights = np.exp(-(r[:, None] ** 2 + r[None, :] ** 2) / (2 * sigma_samples**2))
    return weights / weights.sum()


def window_physics(windows: np.ndarray, *, threshold: float | str = 0.0,
                   sigma_px: float = 1.0, min_wall_px: int | None = None,
                   step_px: float = 1.0, switching_sigma_px: float | None = 6.0,
                   static_px: float = 0.4) -> pd.DataFrame:
    """Switching degree, wall count and wall curvature of every window.

    Parameters
    ----------
    windows : ndarray (N, w, w) or (N, 2, w, w)
        Windows of the polarisation signal (switched high), observed or decoded. With
        two channels (frames t and t + d of the same place) the walls and their
        curvature are those at t, and the switching degree is the change between the
        two: D(t + d) - D(t).
    threshold : float or "median"
        Level splitting switched from unswitched. 0 is midway between the two states of
        the normalised signal. "median" is the method's rule, the median of all the
        windows' pixels; it assumes windows hold both states in equal parts, and where
        most of a window set is unswitched (a field-switching movie) it falls inside
        the unswitched level and turns noise into walls: wall counts agree with the
        truth for 23 % of windows against 96 % at 0.
    sigma_px : float
        Gaussian smoothing before the split and for the curvature, window samples.
    min_wall_px : int, optional
        Walls of fewer pixels are not counted (default a quarter of the window side).
    step_px : float
        Image pixels per window sample, so that curvature comes in 1 / image pixel.
    switching_sigma_px : float or None
        The areas A_s and A_u are weighted by a Gaussian of this width (image pixels)
        about the window's centre, so that D describes the wall at the centre rather
        than every wall in the window; None weighs the whole window evenly, as the
        method. Samples the wall crosses count in part (:func:`_switched_share`).
    static_px : float
        Two channels only: a change of D smaller than that of a straight wall moving
        this far through the centre is set to 0, a static wall. Noise and the drift
        left after registration (about 0.1 px between nearby frames) move a pinned wall
        by a few tenths of a pixel; the default keeps the synthetic movies' pinned walls
        at 0 and their slowly creeping ones (0.2 px per frame and more) apart from them.

    Returns
    -------
    DataFrame
        ``switching`` (D = (A_s - A_u) / (A_s + A_u), in [-1, 1]; for two channels the
        change, in [-2, 2]), ``walls`` (count), ``curvature`` (mean signed curvature
        of the walls, 1 / pixel, positive where the switched domain is convex; NaN
        without walls, 0 for three walls or more, as in the method).
    """
    data = np.asarray(windows, np.float32)
    if data.ndim == 3:
        data = data[:, None]
    if data.ndim != 4 or data.shape[1] not in (1, 2) or data.shape[-1] != data.shape[-2]:
        raise ValueError(f"windows must have shape (N, w, w) or (N, 2, w, w), got "
                         f"{np.shape(windows)}")
    if len(data) == 0 or data.shape[-1] < 8:
        raise ValueError(f"need at least one window of at least 8 x 8 samples, got "
                         f"{np.shape(windows)}")
    if not np.isfinite(data).all():
        raise ValueError("windows contain NaN or infinite values")
    n, _, w, _ = data.shape
    sigma_samples = None
    if switching_sigma_px is not None:
        sigma_samples = check_float("switching_sigma_px", switching_sigma_px, minimum=0.0,
                                    strict=True) / step_px
    static_px = check_float("static_px", static_px, minimum=0.0)
    level = float(np.median(data)) if threshold == "median" else float(threshold)
    smooth = ndimage.gaussian_filter(data, (0, 0, sigma_px, sigma_px), mode="nearest")
    switched = smooth > level
    weights = _centre_weights(w, sigma_samples)
    degree = 2 * (_switched_share(smooth, level) * weights).sum((2, 3)) - 1
    switching = degree[:, 0]
    if data.shape[1] == 2:
        # the change of D as a straight wall through the centre moves static_px
        centre = weights[(w - 1) // 2: w // 2 + 1].sum(1).mean()
        static = 2 * static_px / step_px * centre
        switching = degree[:, 1] - degree[:, 0]
        switching = np.where(np.abs(switching) > static, switching, 0.0)
    first = switched[:, 0]
    # switched pixels with an unswitched 4-neighbour, as the synthetic truth draws walls
    edge = first & ~ndimage.binary_erosion(first, structure=_in_plane(_CROSS), border_value=1)
    labels, count = ndimage.label(edge, structure=_in_plane(_RING))
    sizes = np.bincount(labels.ravel(), minlength=count + 1)
    keep = sizes >= (w // 4 if min_wall_px is None else min_wall_px)
    keep[0] = False
    owner = np.zeros(count + 1, np.int64)
    for lab, sl in enumerate(ndimage.find_objects(labels), start=1):
        owner[lab] = sl[0].start
    n_walls = np.bincount(owner[keep], minlength=n) if keep.any() else np.zeros(n, np.int64)
    on_wall = keep[labels]
    kappa = level_set_curvature(data[:, 0], sigma_px=max(sigma_px, 0.5))
    total = np.bincount(np.nonzero(on_wall)[0], weights=kappa[on_wall], minlength=n)
    pixels = on_wall.sum((1, 2))
    curvature = np.where(pixels > 0, total / np.maximum(pixels, 1), np.nan) / step_px
    curvature = np.where(n_walls >= 3, 0.0, np.where(n_walls == 0, np.nan, curvature))
    return pd.DataFrame({"switching": switching.astype(np.float64), "walls": n_walls,
                         "curvature": curvature})


def follow_wall(curves: pd.DataFrame, *, reach_px: float = 4.0,
                min_overlap: float = 0.5) -> pd.DataFrame:
    """The longest-lived continuous wall: one curve per frame, linked through the movie.

    A curve of frame t + 1 continues a curve of frame t when at least ``min_overlap`` of
    the shorter one's pixels lie within ``reach_px`` of the other (a wall moves little
    between frames); each curve continues into the one it overlaps most. Of the chains
    so formed the one spanning most frames is kept (ties: the most pixels).

    Parameters
    ----------
    curves : DataFrame
        :func:`wall_curves` output (``frame, wall, y, x``), in aligned coordinates.

    Returns
    -------
    DataFrame
        ``frame, wall``: the curve followed in each frame of the chain (empty without
        walls).
    """
    from scipy.spatial import cKDTree

    missing = {"frame", "wall", "y", "x"} - set(curves.columns)
    if missing:
        raise ValueError(f"curves has no column(s) {sorted(missing)}")
    if curves.empty:
        return pd.DataFrame({"frame": np.zeros(0, np.int64), "wall": np.zeros(0, np.int64)})
    groups = {key: g[["y", "x"]].to_numpy() for key, g in curves.groupby(["frame", "wall"])}
    frames = sorted({f for f, _ in groups})
    successor = {}
    for f in frames:
        later = [k for k in groups if k[0] == f + 1]
        if not later:
            continue
        trees = {k: cKDTree(groups[k]) for k in later}
        for key in (k for k in groups if k[0] == f):
            here = cKDTree(groups[key])
            best, best_share = None, min_overlap
            for k in later:
                shorter, longer = ((here, trees[k]) if len(groups[key]) <= len(groups[k])
                                   else (trees[k], here))
                share = np.mean([bool(n) for n in shorter.query_ball_tree(longer, reach_px)])
                if share >= best_share:
                    best, best_share = k, share
            if best is not None:
                successor[key] = best
    started = set(successor.values())
    chains = []
    for key in groups:
        if key in started:
            continue
        chain = [key]
        while chain[-1] in successor:
            chain.append(successor[chain[-1]])
        chains.append(chain)
    chain = max(chains, key=lambda c: (len(c), sum(len(groups[k]) for k in c)))
    return pd.DataFrame(chain, columns=["frame", "wall"]).astype(np.int64)
