"""Synthetic piezoresponse force microscopy (PFM) switching movies with exact truth.

A scalar polarisation field ``P(y, x)`` (about -1 unswitched, +1 switched) evolves by
time-dependent Ginzburg-Landau (Allen-Cahn) relaxation in reduced units
(double-well coefficient 1, kinetic coefficient 1, lengths in image pixels)::

    dP/dt = R( div(K grad P) + P - P**3 + E(t, r) + h(r) ;  Fc(r, n) )

where

* ``K`` is an anisotropic gradient tensor: stiffness ``K_par`` along the needle axis
  and ``K_perp`` across it. A flat wall moves at a speed proportional to
  ``sqrt(K_nn)``, so walls whose normal lies along the axis (needle tips) outrun the
  side walls and nuclei grow into needles;
* ``E`` is the applied field: a uniform ramp (``mode="field"``) or the field of a
  biased tip ``V(t) * (d**2 / (r**2 + d**2))**1.5`` that parks at waypoints and
  moves between them (``mode="tip"``), optionally on a weak uniform background;
* ``h`` is a quenched, smoothed Gaussian random field (bends and roughens walls);
* ``R(F; Fc) = F - clip(F, -Fc, Fc)`` is dry friction, i.e. a local coercive
  threshold: nothing moves where the local driving force is below ``Fc``. ``Fc`` is
  an intrinsic value, plus Gaussian pinning centres (local raised coercivity, where
  walls stick until the field or the wall's own bowing tension frees them), plus an
  orientation-dependent term that resists sideways motion of walls lying along the
  needle axis (the step-nucleation barrier that keeps needles narrow).

New needle domains nucleate at random defect sites: when the local field exceeds a
site's threshold while the site is still unswitched, a small blunt needle-shaped
nucleus (about 18 x 6 px) along the needle axis is written into ``P``. Domains grow, bend around
pinning centres, merge, and leave pinned islands behind.

Field strengths (``field``, ``tip_bias``, ``pinning_strength``, ``random_field``) are
given in units of the intrinsic (homogeneous) coercive field of the double well,
``E_c = 2 / (3 * sqrt(3))`` in reduced units.

The simulation runs on a canvas somewhat larger than the field of view; each frame
is a crop of it at an integer offset that follows a slow sample drift, so image and
truth move together. Imaging: the local complex piezoresponse ``a(r) * q(r)``
(``q = tanh(P / 0.15)``, ``a`` ~ 1 with an optional ferroelastic stripe texture) is
blurred by the tip (Gaussian, ``resolution_px``), a constant complex background is
added, scan-line glitches multiply whole or partial rows by a random gain and phase,
complex Gaussian noise is added, and the phase (degrees, wrapped to
``[wrap_low_deg, wrap_low_deg + 360)``) and amplitude of the result are the two
channels. Amplitude therefore drops at 180-degree walls and phase noise grows there.

Ground truth per frame (aligned with the images, drift included):

* ``polarization``: ``+1`` where ``P > 0`` (switched), ``-1`` elsewhere (int8);
* ``walls``: switched pixels with at least one 4-neighbour that is unswitched (a
  one-pixel-thin line on the switched side of every boundary);
* ``wall_velocity``: instantaneous normal velocity of the ``P = 0`` level set at the
  moment the frame is taken, in pixels per frame, positive when the wall advances
  into unswitched material (the switched region grows), NaN off-wall. It is
  ``v = (d phi/dt) / |grad phi| * tau_frame`` with ``phi = artanh(P)`` (the same
  level set as ``P``, but nearly linear across a wall, so central differences
  give its slope accurately), ``dP/dt`` the model's own rate at that instant and
  ``tau_frame`` the simulated time between frames. Pinned walls have exactly 0. It
  is measured in the sample frame (drift excluded). For a wall moving steadily it
  equals the displacement of the wall between frames (area change / wall length).

The initial state is relaxed without applied field before frame 0 (so it is
metastable); the field is switched on at frame 0. Nuclei are seeded right after a
frame is recorded, never caught unrelaxed in a frame.
"""

from __future__ import annotations

import dataclasses
import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from scipy import ndimage
from tqdm.auto import tqdm

from latentpath.checks import check_float, check_int, check_memory, check_pair
from latentpath.io import (
    check_writable,
    save_npz,
    tables_from_arrays,
    tables_to_arrays,
    write_table,
)

__all__ = ["E_COERCIVE", "SynthPFM", "read_synth_pfm", "synth_pfm_movie", "write_synth_pfm"]

#: Intrinsic coercive field of the reduced double well ``P - P**3`` (reduced units).
E_COERCIVE = 2.0 / (3.0 * math.sqrt(3.0))

_MODES = ("tip", "field")
_INITIAL = ("needles", "wall", "none")
_FRAME_COLUMNS = (
    "frame",
    "switched_fraction",
    "n_domains",
    "wall_length_px",
    "mean_abs_wall_velocity",
    "field",
    "tip_y",
    "tip_x",
    "tip_bias",
    "drift_y",
    "drift_x",
)


@dataclass
class SynthPFM:
    """A synthetic PFM movie and its ground truth.

    Attributes
    ----------
    phase : ndarray, shape (T, H, W), float32
        Phase channel in degrees, wrapped to ``[wrap_low_deg, wrap_low_deg + 360)``
        (default -90..270, like the real PhaseRetrace data). Unswitched domains sit
        near ``phase_offset_deg``, switched ones about 180 degrees higher.
    amplitude : ndarray, shape (T, H, W), float32
        Amplitude channel, arbitrary units, about 1 inside domains, dropping toward 0
        at 180-degree walls.
    polarization : ndarray, shape (T, H, W), int8
        Truth polarisation: +1 switched (P > 0), -1 unswitched.
    walls : ndarray, shape (T, H, W), bool
        Truth wall pixels: switched pixels with a 4-neighbour that is unswitched.
    wall_velocity : ndarray, shape (T, H, W), float32
        Local normal wall velocity in pixels per frame on wall pixels (positive =
        advancing into unswitched material), NaN elsewhere.
    field : ndarray, shape (T,) or (T, H, W), float32
        Applied field at each frame in units of the intrinsic coercive field: one
        value per frame in ``mode="field"``, a map per frame (tip plus background,
        aligned with the images) in ``mode="tip"``. The quenched random field is not
        included.
    frames : DataFrame
        One row per frame: ``frame``, ``switched_fraction``, ``n_domains`` (connected
        switched domains, 8-connectivity), ``wall_length_px`` (number of wall
        pixels), ``mean_abs_wall_velocity`` (px/frame, NaN without walls), ``field``
        (mean applied field over the image, units of E_c), ``tip_y``, ``tip_x`` (tip
        position in image pixels, NaN in field mode), ``tip_bias`` (peak tip field,
        E_c units, NaN in field mode), ``drift_y``, ``drift_x`` (displacement in
        pixels of the image content relative to frame 0).
    pixel_size_nm : float
        Size of one pixel in nanometres.
    params : dict
        Every parameter used (JSON-serialisable), including the seed.
    """

    phase: np.ndarray
    amplitude: np.ndarray
    polarization: np.ndarray
    walls: np.ndarray
    wall_velocity: np.ndarray
    field: np.ndarray
    frames: pd.DataFrame
    pixel_size_nm: float
    params: dict

    @property
    def n_frames(self) -> int:
        """Number of frames T."""
        return int(self.phase.shape[0])


# ------------------------------------------------------------------ argument checks


# ------------------------------------------------------------------ generator


#: the parameters' checks: (lowest, highest) of whole numbers, and the keyword arguments of
#: :func:`latentpath.checks.check_float` for numbers
_INT_BOUNDS = {"n_frames": (1, None), "size": (32, 8192), "seed": (0, None),
               "n_pinning": (0, None), "n_nucleation": (0, None)}
_FLOAT_CHECKS = {
    "pixel_size_nm": {"minimum": 0.0, "strict": True}, "noise": {"minimum": 0.0},
    "pinning_strength": {"minimum": 0.0}, "needle_axis_deg": {},
    "anisotropy": {"minimum": 1.0, "maximum": 10.0}, "side_friction": {"minimum": 0.0},
    "coercivity": {"minimum": 0.0}, "random_field": {"minimum": 0.0},
    "tip_radius_px": {"minimum": 0.5},
    "initial_switched": {"minimum": 0.0, "maximum": 0.9}, "sim_time": {"minimum": 0.0},
    "scan_lines": {"minimum": 0.0, "maximum": 1.0}, "drift_px_per_frame": {"minimum": 0.0},
    "phase_offset_deg": {}, "wrap_low_deg": {},
    "background": {"minimum": 0.0, "maximum": 0.5},
    "resolution_px": {"minimum": 0.0, "maximum": 20.0}}
_PAIR_MINIMUM = {"field_range": -10.0, "tip_bias": 0.0}


@dataclass(frozen=True)
class PfmSimParams:
    """Everything a synthetic PFM movie depends on, checked when made (ValueError naming
    the parameter); the parameters left as None are filled from ``size`` and ``mode``.

    Attributes
    ----------
    n_frames : int
        Number of frames T (>= 1).
    size : int
        Image height and width H = W in pixels (>= 32).
    seed : int
        Seed of ``np.random.default_rng``; the same seed gives the same movie.
    mode : {"tip", "field"}
        ``"tip"``: a biased tip parks at waypoints laid out over the image and moves
        between them while its bias ramps up (``tip_bias``). ``"field"``: a uniform
        field ramps linearly over the movie (``field_range``).
    pixel_size_nm : float
        Pixel size in nm (metadata only; lengths in the model are in pixels).
    noise : float
        Standard deviation of each quadrature of the additive complex Gaussian noise,
        relative to the in-domain response (~1). Phase noise inside domains is about
        ``noise`` radians (0.15 -> ~9 degrees) and grows at walls, where the
        amplitude drops; amplitude noise is about ``noise``.
    n_pinning : int or None
        Expected number of pinning centres in the field of view (Poisson; the
        margin around it gets the same density). None: one per 1200 px^2 (55 at
        256 x 256). 0: no pinning centres.
    pinning_strength : float
        Mean extra local coercive field at the centre of a pinning centre (units of
        E_c); individual strengths are exponentially distributed, radii 3-7 px.
    n_nucleation : int or None
        Expected number of nucleation defects in the field of view (Poisson;
        thresholds uniform in 0.2-0.8 E_c). None: one per 1500 px^2 (44 at
        256 x 256). 0: no nucleation, only existing domains grow.
    needle_axis_deg : float
        Direction of the needle axis in degrees, counter-clockwise from the +x (column)
        axis as the image is displayed (rows downward).
    anisotropy : float
        Ratio ``K_par / K_perp`` of the gradient stiffness along and across the needle
        axis (>= 1; 1 is isotropic). Needle tips move ``sqrt(anisotropy)`` times
        faster than side walls at the same field.
    side_friction : float
        Extra coercive field (E_c units) opposing sideways motion of walls that lie
        along the needle axis; 0 switches it off.
    coercivity : float
        Intrinsic coercive field felt by walls everywhere (E_c units).
    random_field : float
        Standard deviation of the quenched random field (E_c units, correlation
        length 5 px); 0 switches it off.
    field_range : (float, float) or None
        Uniform applied field at the first and last frame (E_c units). In field mode
        it is the driving field (None: (0.3, 0.75)); in tip mode a background on
        top of the tip field (None: (0.0, 0.1)).
    tip_bias : (float, float)
        Peak field under the tip at the first and last frame (E_c units; tip mode).
    tip_radius_px : float or None
        Tip field length scale d in pixels; None: ``max(8, size / 10)``.
    initial : {"needles", "wall", "none"}
        Initial state: unswitched with a few needle domains covering about
        ``initial_switched`` of the image; a straight vertical wall with the left
        ``initial_switched`` of the image switched; or all unswitched.
    initial_switched : float
        Initial switched fraction (0..0.9) for ``initial`` "needles" and "wall".
    sim_time : float or None
        Simulated time of the whole movie in reduced units (None: 220 in field mode,
        ``2.2 * size`` in tip mode). Longer runs switch more and cost more.
    stripes : bool
        Add in-plane ferroelastic stripe texture (two grains with wandering stripes at
        right angles, near +-45 degrees, period 16 px) modulating the amplitude by
        about +-35% (and the phase by a few degrees).
    scan_lines : float
        Expected fraction of scan lines (rows) per frame hit by a glitch: the row, or
        a segment of it, is multiplied by a random complex gain (phase offset of
        tens of degrees, amplitude change of tens of percent).
    drift_px_per_frame : float
        Mean speed of the slow sample drift in pixels per frame (plus a small random
        walk); image and truth are shifted together by whole pixels.
    phase_offset_deg : float
        Phase of unswitched domains in degrees; switched ones appear about 180
        degrees higher.
    wrap_low_deg : float
        Lower end of the 360-degree phase window: phases are wrapped into
        ``[wrap_low_deg, wrap_low_deg + 360)``. Put a domain level near the window
        edge to get phase-wrapping artefacts.
    background : float
        Magnitude of a constant complex background added to the response (random
        phase), which makes the two domain levels differ slightly in amplitude and
        lie not exactly 180 degrees apart.
    resolution_px : float
        Standard deviation in pixels of the Gaussian tip response function.

    Examples
    --------
    >>> params = PfmSimParams(size=128, mode="field")
    >>> params.n_pinning, params.field_range, params.sim_time  # filled in for the size
    (14, (0.3, 0.75), 220.0)
    >>> PfmSimParams(noise=-1.0)
    Traceback (most recent call last):
    ...
    ValueError: noise must be ...
    """

    n_frames: int = 50
    size: int = 256
    seed: int = 0
    mode: str = "tip"
    pixel_size_nm: float = 8.0
    noise: float = 0.15
    n_pinning: int | None = None
    pinning_strength: float = 1.2
    n_nucleation: int | None = None
    needle_axis_deg: float = 35.0
    anisotropy: float = 5.0
    side_friction: float = 0.3
    coercivity: float = 0.15
    random_field: float = 0.2
    field_range: tuple[float, float] | None = None
    tip_bias: tuple[float, float] = (1.5, 2.5)
    tip_radius_px: float | None = None
    initial: str = "needles"
    initial_switched: float = 0.05
    sim_time: float | None = None
    stripes: bool = True
    scan_lines: float = 0.01
    drift_px_per_frame: float = 0.15
    phase_offset_deg: float = -45.0
    wrap_low_deg: float = -90.0
    background: float = 0.06
    resolution_px: float = 1.0

    def __post_init__(self) -> None:
        def set_(name: str, value: Any) -> None:
            object.__setattr__(self, name, value)

        for name in ("n_frames", "size"):
            low, high = _INT_BOUNDS[name]
            set_(name, check_int(name, getattr(self, name), low))
        # phase, amplitude, polarisation, walls and velocity of every frame
        check_memory(f"a PFM movie of {self.n_frames} frames of {self.size} x {self.size} px",
                     5 * 4.0 * self.n_frames * self.size**2)
        if self.mode not in _MODES:
            raise ValueError(f"mode must be one of {_MODES}, got {self.mode!r}")
        if self.initial not in _INITIAL:
            raise ValueError(f"initial must be one of {_INITIAL}, got {self.initial!r}")
        area, field = self.size**2, self.mode == "field"
        defaults = {"n_pinning": round(area / 1200), "n_nucleation": round(area / 1500),
                    "field_range": (0.3, 0.75) if field else (0.0, 0.1),
                    "tip_radius_px": max(8.0, self.size / 10.0),
                    "sim_time": 220.0 if field else 2.2 * self.size}
        for name, value in defaults.items():
            if getattr(self, name) is None:
                set_(name, value)
        for name, (low, high) in _INT_BOUNDS.items():
            value = check_int(name, getattr(self, name), low)
            if high is not None and value > high:
                raise ValueError(f"{name} must be <= {high}, got {value}")
            set_(name, value)
        for name, limits in _FLOAT_CHECKS.items():
            set_(name, check_float(name, getattr(self, name), **limits))
        for name, minimum in _PAIR_MINIMUM.items():
            set_(name, check_pair(name, getattr(self, name), minimum=minimum))
        if not isinstance(self.stripes, bool | np.bool_):
            raise ValueError(f"stripes must be True or False, got {self.stripes!r}")
        set_("stripes", bool(self.stripes))
        if self.drift_px_per_frame * self.n_frames > 4 * self.size:
            raise ValueError(
                f"drift_px_per_frame={self.drift_px_per_frame} moves the sample more than 4 "
                f"image widths over {self.n_frames} frames")

    def record(self) -> dict[str, Any]:
        """The parameters as a movie's file records them (JSON-safe), with the model's
        fixed constants, so that a file says everything about itself."""
        values = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        return {"generator": "latentpath.synth.pfm.synth_pfm_movie", **values,
                "field_range": list(self.field_range), "tip_bias": list(self.tip_bias),
                "field_unit": "E_c = 2/(3*sqrt(3)) reduced units",
                "K_perp": 1.0, "random_field_corr_px": 5.0, "pinning_radius_px": [3.0, 7.0],
                "nucleation_threshold": [0.2, 0.8], "nucleus_half_axes_px": [9.0, 3.0],
                "stripe_period_px": 16.0, "stripe_contrast": 0.35,
                "polarization_sharpness": 0.15, "line_jitter_deg": 1.0, "relax_time": 40.0}


def synth_pfm_movie(n_frames: int = 50, size: int = 256, *, progress: bool = False,
                    **params: Any) -> SynthPFM:
    """Simulate a PFM switching movie (phase and amplitude) with exact ground truth.

    Parameters
    ----------
    n_frames : int
        Number of frames T (>= 1).
    size : int
        Image height and width H = W in pixels (>= 32).
    progress : bool
        Show a tqdm progress bar over frames.
    **params
        The other parameters of :class:`PfmSimParams` (``seed``, ``mode``, ``noise``,
        ``n_pinning``, ...), each with its default there.

    Returns
    -------
    SynthPFM
        Images (T, H, W) float32, truth arrays, per-frame table and parameters.

    Raises
    ------
    ValueError
        If an argument is out of range or of the wrong type; the message names it.
    TypeError
        For a parameter :class:`PfmSimParams` does not have.

    Notes
    -----
    The model is explicit finite differences (Neumann boundaries) on a canvas of
    ``size + 2 * max(4, size // 16)`` pixels plus the drift range, with a time step
    set by stability (about 0.07 reduced time units at the default anisotropy);
    cost grows with ``sim_time`` times the canvas area, hardly with ``n_frames``.
    On a 2-core CPU: 50 x 256 x 256 takes about 1 s in field mode and 2 s in tip
    mode; 100 x 512 x 512 about 5 s and 17 s (tip mode's default ``sim_time``
    grows with ``size`` so that the tip, whose reach scales with the image,
    switches a similar fraction).

    Typical outcome with defaults: the switched fraction rises from ~5% to
    ~55-75%. Walls near the parked tip can move 10-20 px per frame while most
    others are pinned (0 px/frame); in field mode wall speeds rise from ~0.1 to a
    few px per frame as the field ramps up.
    """
    checked = PfmSimParams(n_frames=n_frames, size=size, **params)
    return _Movie(checked.record(), np.random.default_rng(checked.seed)).run(progress)


# ------------------------------------------------------------------ building blocks


def _drift_path(rng: np.random.Generator, n_frames: int, speed: float) -> np.ndarray:
    """Sample-to-scanner offsets (T, 2) in whole pixels: a slow linear drift plus jitter."""
    if speed == 0.0 or n_frames == 1:
        return np.zeros((n_frames, 2), dtype=int)
    angle = rng.uniform(0.0, 2.0 * np.pi)
    t = np.arange(n_frames, dtype=float)
    steady = speed * t[:, None] * np.array([np.sin(angle), np.cos(angle)])
    walk = np.cumsum(rng.normal(0.0, 0.3 * speed, size=(n_frames, 2)), axis=0)
    walk -= walk[0]
    return np.rint(steady + walk).astype(int)


def _add_blobs(target: np.ndarray, ys: np.ndarray, xs: np.ndarray, radii: np.ndarray,
               amps: np.ndarray) -> None:
    """Add Gaussian blobs ``amp * exp(-r**2 / (2 radius**2))`` to ``target`` in place."""
    h, w = target.shape
    for y, x, s, a in zip(ys, xs, radii, amps, strict=True):
        reach = math.ceil(3.5 * s)
        y0, y1 = max(int(y) - reach, 0), min(int(y) + reach + 1, h)
        x0, x1 = max(int(x) - reach, 0), min(int(x) + reach + 1, w)
        if y0 >= y1 or x0 >= x1:
            continue
        yy = (np.arange(y0, y1) - y)[:, None]
        xx = (np.arange(x0, x1) - x)[None, :]
        target[y0:y1, x0:x1] += (a * np.exp(-(yy**2 + xx**2) / (2.0 * s * s))).astype(
            np.float32)


def _smooth_noise(rng: np.random.Generator, shape: tuple[int, int], corr: float) -> np.ndarray:
    """Gaussian random field with unit standard deviation and correlation length ``corr``."""
    white = rng.standard_normal(shape).astype(np.float32)
    # a correlation length beyond the canvas would average the noise away
    corr = min(corr, min(shape) / 4.0)
    field = ndimage.gaussian_filter(white, corr, mode="wrap")
    field -= field.mean()
    std = float(field.std())
    if std < 1e-6:
        return np.zeros(shape, np.float32)
    return (field / std).astype(np.float32)


def _ellipse(shape: tuple[int, int], cy: float, cx: float, half_len: float, half_wid: float,
             ux: float, uy: float, power: float = 3.0) -> tuple[tuple[slice, slice], np.ndarray]:
    """Smooth lens/needle domain profile (+1 inside, -1 outside) in a local window.

    The outline is a superellipse ``|u/a|**power + |v/b|**power = 1`` with ``u`` along
    the axis (``ux``, ``uy``): power 2 is an ellipse, larger powers give blunter ends.
    """
    h, w = shape
    reach = math.ceil(half_len + 4)
    y0, y1 = max(int(cy) - reach, 0), min(int(cy) + reach + 1, h)
    x0, x1 = max(int(cx) - reach, 0), min(int(cx) + reach + 1, w)
    yy = (np.arange(y0, y1) - cy)[:, None]
    xx = (np.arange(x0, x1) - cx)[None, :]
    along = xx * ux + yy * uy
    across = -xx * uy + yy * ux
    dist = (np.abs(along / half_len) ** power + np.abs(across / half_wid) ** power) ** (
        1.0 / power)
    # Signed distance to the ellipse, approximately, in pixels of the short axis.
    prof = np.tanh((1.0 - dist) * half_wid / 1.4).astype(np.float32)
    return (slice(y0, y1), slice(x0, x1)), prof


def _local_response(rng: np.random.Generator, shape: tuple[int, int], stripes: bool,
                    period: float, contrast: float) -> np.ndarray:
    """Complex local piezoresponse ``a(r)``: ~1, with optional herringbone stripes."""
    h, w = shape
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    # grain-to-grain and slow variations of the piezoresponse (log-normal, ~25%)
    amp = np.exp(0.25 * _smooth_noise(rng, shape, 25.0) - 0.03)
    phase = np.zeros(shape, np.float32)
    if stripes:
        # Two grains split by a random line; stripes at right angles in each.
        gy, gx = rng.uniform(0.3, 0.7) * h, rng.uniform(0.3, 0.7) * w
        ga = rng.uniform(0, np.pi)
        side = ((xx - gx) * np.sin(ga) - (yy - gy) * np.cos(ga)) > 0
        theta = np.deg2rad(rng.choice([45.0, 135.0]) + rng.normal(0, 8))
        stripe = np.zeros(shape, np.float32)
        # slowly wandering band positions and widths: real ferroelastic bands are
        # not a perfect grating
        warp = 1.2 * _smooth_noise(rng, shape, 2.0 * period)
        duty = 0.6 * _smooth_noise(rng, shape, 1.5 * period)
        for sel, th in ((side, theta), (~side, theta + np.pi / 2)):
            arg = 2 * np.pi * (xx * np.cos(th) - yy * np.sin(th)) / period + warp
            arg = arg + rng.uniform(0, 2 * np.pi)
            # rounded square wave: ferroelastic bands with narrow transitions
            s = np.tanh(2.5 * (np.cos(arg) + 0.4 * duty)) / np.tanh(2.5)
            stripe[sel] = s[sel]
        stripe = ndimage.gaussian_filter(stripe, 0.7)
        amp = amp * (1.0 + contrast * stripe) / (1.0 + 0.2 * contrast)
        phase = np.deg2rad(4.0) * stripe
        # grain boundary: a faint dark line in the response
        dist = np.abs((xx - gx) * np.sin(ga) - (yy - gy) * np.cos(ga))
        amp = amp * (1.0 - 0.3 * np.exp(-(dist**2) / 4.0))
    return (amp * np.exp(1j * phase)).astype(np.complex64)


def _tip_waypoints(rng: np.random.Generator, size: int) -> tuple[np.ndarray, np.ndarray]:
    """Knots of the tip path: times (fraction 0..1) and positions (y, x) in image pixels.

    Waypoints on a jittered 3 x 3 grid are visited in boustrophedon order, starting
    from a random corner; the tip dwells (is parked) at each waypoint for half of its
    share of the movie and moves at constant speed in between.
    """
    grid = np.array([0.2, 0.5, 0.8])
    order = []
    for i, gy in enumerate(grid):
        row = [(gy, gx) for gx in grid]
        order.extend(row if i % 2 == 0 else row[::-1])
    pts = np.array(order) * size
    if rng.random() < 0.5:
        pts = pts[:, ::-1]
    if rng.random() < 0.5:
        pts[:, 0] = size - 1 - pts[:, 0]
    if rng.random() < 0.5:
        pts[:, 1] = size - 1 - pts[:, 1]
    pts = pts + rng.uniform(-0.06, 0.06, size=pts.shape) * size
    n = len(pts)
    # timeline: dwell_0, move_0, dwell_1, move_1, ..., dwell_{n-1}
    dist = np.linalg.norm(np.diff(pts, axis=0), axis=1)
    dwell = 0.5 / n
    moves = 0.5 * dist / dist.sum()
    knots_t = [0.0]
    knots_p = [pts[0]]
    for i in range(n):
        knots_t.append(knots_t[-1] + dwell)
        knots_p.append(pts[i])
        if i < n - 1:
            knots_t.append(knots_t[-1] + moves[i])
            knots_p.append(pts[i + 1])
    return np.array(knots_t) / knots_t[-1], np.array(knots_p)


def _wall_mask(pol_pos: np.ndarray) -> np.ndarray:
    """Switched pixels with a 4-neighbour that is unswitched (works on (..., H, W))."""
    neg = ~pol_pos
    near = np.zeros_like(pol_pos)
    near[..., 1:, :] |= neg[..., :-1, :]
    near[..., :-1, :] |= neg[..., 1:, :]
    near[..., :, 1:] |= neg[..., :, :-1]
    near[..., :, :-1] |= neg[..., :, 1:]
    return pol_pos & near


# ------------------------------------------------------------------ the simulation


class _Movie:
    """One movie: disorder, dynamics and rendering. Internal; see synth_pfm_movie."""

    def __init__(self, params: dict, rng: np.random.Generator):
        self.p = params
        self.rng = rng
        p = params
        size, n_frames = p["size"], p["n_frames"]
        self.size = size
        self.n_frames = n_frames

        # --- canvas: field of view + pad + room for drift
        self.offsets = _drift_path(rng, n_frames, p["drift_px_per_frame"])
        pad = max(4, size // 16)
        lo = self.offsets.min(axis=0)
        hi = self.offsets.max(axis=0)
        self.origin = self.offsets - lo + pad  # canvas coords of image pixel (0, 0)
        self.hc = int(size + hi[0] - lo[0] + 2 * pad)
        self.wc = int(size + hi[1] - lo[1] + 2 * pad)
        shape = (self.hc, self.wc)
        dens = (self.hc * self.wc) / float(size * size)

        # --- anisotropic gradient tensor (rows point down: axis = (cos, -sin))
        ang = math.radians(p["needle_axis_deg"])
        self.ux, self.uy = math.cos(ang), -math.sin(ang)
        k_perp = p["K_perp"]
        k_par = k_perp * p["anisotropy"]
        dk = k_par - k_perp
        self.kxx = k_perp + dk * self.ux * self.ux
        self.kyy = k_perp + dk * self.uy * self.uy
        self.kxy = dk * self.ux * self.uy
        # explicit Euler is stable for dt * max(symbol of -div K grad) < 2; the reaction
        # term adds at most 1. Keep a margin.
        kk = np.linspace(0.0, np.pi, 65)
        kx, ky = kk[None, :], kk[:, None]
        symbol = (4 * self.kxx * np.sin(kx / 2) ** 2 + 4 * self.kyy * np.sin(ky / 2) ** 2
                  + 2 * abs(self.kxy) * np.sin(kx) * np.sin(ky))
        self.dt_max = 1.7 / (float(symbol.max()) + 1.0)

        ec = E_COERCIVE
        # --- quenched disorder
        self.h = np.zeros(shape, np.float32)
        if p["random_field"] > 0:
            self.h = (p["random_field"] * ec) * _smooth_noise(rng, shape, p["random_field_corr_px"])
        self.fc_base = np.full(shape, p["coercivity"] * ec, np.float32)
        n_pin = int(rng.poisson(p["n_pinning"] * dens)) if p["n_pinning"] > 0 else 0
        if n_pin:
            r_lo, r_hi = p["pinning_radius_px"]
            _add_blobs(
                self.fc_base,
                rng.uniform(0, self.hc, n_pin), rng.uniform(0, self.wc, n_pin),
                rng.uniform(r_lo, r_hi, n_pin),
                rng.exponential(p["pinning_strength"] * ec, n_pin),
            )
        self.n_pin_canvas = n_pin
        self.fc_side = p["side_friction"] * ec
        n_nuc = int(rng.poisson(p["n_nucleation"] * dens)) if p["n_nucleation"] > 0 else 0
        self.nuc_y = rng.uniform(0, self.hc, n_nuc)
        self.nuc_x = rng.uniform(0, self.wc, n_nuc)
        t_lo, t_hi = p["nucleation_threshold"]
        self.nuc_thr = rng.uniform(t_lo, t_hi, n_nuc) * ec
        self.nuc_iy = np.clip(self.nuc_y.astype(int), 0, self.hc - 1)
        self.nuc_ix = np.clip(self.nuc_x.astype(int), 0, self.wc - 1)
        self.nuc_h = self.h[self.nuc_iy, self.nuc_ix]
        self.nuc_done = np.zeros(n_nuc, bool)

        # --- imaging: local response, background
        self.resp = _local_response(rng, shape, p["stripes"], p["stripe_period_px"],
                                    p["stripe_contrast"])
        self.bg = p["background"] * np.exp(1j * rng.uniform(0, 2 * np.pi))

        # --- time
        t_total = p["sim_time"]
        self.tau = t_total / (n_frames - 1) if n_frames > 1 else 0.0
        self.n_sub = max(1, math.ceil(self.tau / self.dt_max)) if self.tau > 0 else 0
        self.dt = self.tau / self.n_sub if self.n_sub else 0.0
        p["time_step"] = self.dt
        p["substeps_per_frame"] = self.n_sub
        p["time_per_frame"] = self.tau
        p["canvas_shape"] = [self.hc, self.wc]

        # --- applied field schedule
        self.tip = p["mode"] == "tip"
        if self.tip:
            d = p["tip_radius_px"]
            ky = np.arange(-(self.hc - 1), self.hc, dtype=np.float32)[:, None]
            kx = np.arange(-(self.wc - 1), self.wc, dtype=np.float32)[None, :]
            self.kernel = ((d * d) / (ky * ky + kx * kx + d * d)) ** 1.5
            self.kernel = self.kernel.astype(np.float32)
            self.tip_knots = _tip_waypoints(rng, size)

        # --- initial state
        self.P = self._initial_state(shape)

    # ---------------------------------------------------------------- schedules

    def field_at(self, s: float) -> float:
        """Uniform field (reduced units) at movie fraction s in [0, 1]."""
        a, b = self.p["field_range"]
        return (a + (b - a) * s) * E_COERCIVE

    def bias_at(self, s: float) -> float:
        a, b = self.p["tip_bias"]
        return (a + (b - a) * s) * E_COERCIVE

    def tip_at(self, s: np.ndarray) -> np.ndarray:
        """Tip position in image pixels at movie fractions s."""
        kt, kp = self.tip_knots
        s = np.atleast_1d(s)
        return np.stack([np.interp(s, kt, kp[:, 0]), np.interp(s, kt, kp[:, 1])], axis=-1)

    def tip_canvas(self, s: float, frame_float: float) -> tuple[int, int]:
        """Tip position on the canvas (integer pixels) at movie fraction s."""
        ty, tx = self.tip_at(np.array([s]))[0]
        # the tip follows the scanner; sample offset interpolated between frames
        f0 = min(int(frame_float), self.n_frames - 1)
        f1 = min(f0 + 1, self.n_frames - 1)
        w = frame_float - f0
        oy = (1 - w) * self.origin[f0, 0] + w * self.origin[f1, 0]
        ox = (1 - w) * self.origin[f0, 1] + w * self.origin[f1, 1]
        return (int(np.clip(round(ty + oy), 0, self.hc - 1)),
                int(np.clip(round(tx + ox), 0, self.wc - 1)))

    def kernel_view(self, cy: int, cx: int) -> np.ndarray:
        return self.kernel[self.hc - 1 - cy: 2 * self.hc - 1 - cy,
                           self.wc - 1 - cx: 2 * self.wc - 1 - cx]

    # ---------------------------------------------------------------- initial state

    def _initial_state(self, shape: tuple[int, int]) -> np.ndarray:
        p, rng = self.p, self.rng
        P = np.full(shape, -1.0, np.float32)
        y0, x0 = self.origin[0]
        fov = (slice(y0, y0 + self.size), slice(x0, x0 + self.size))
        target = p["initial_switched"]
        if p["initial"] == "wall" and target > 0:
            xw = x0 + target * self.size
            xx = np.arange(self.wc, dtype=np.float32)[None, :]
            P[:] = -np.tanh((xx - xw + 0.5) / math.sqrt(2.0))
        elif p["initial"] == "needles" and target > 0:
            for _ in range(1000):
                if (P[fov] > 0).mean() >= target:
                    break
                cy = rng.uniform(0, self.hc)
                cx = rng.uniform(0, self.wc)
                half_len = rng.uniform(8, 30)
                half_wid = rng.uniform(3.5, 7)
                jitter = math.radians(rng.normal(0, 6))
                ux = self.ux * math.cos(jitter) - self.uy * math.sin(jitter)
                uy = self.ux * math.sin(jitter) + self.uy * math.cos(jitter)
                sl, prof = _ellipse(shape, cy, cx, half_len, half_wid, ux, uy)
                np.maximum(P[sl], prof, out=P[sl])
        return P

    # ---------------------------------------------------------------- dynamics

    def _setup_buffers(self) -> None:
        """Padded (H+2, W+2) state and work arrays.

        The stencil works on the flattened padded array: neighbours are plain offsets
        (+-1, +-(W+2)) into one contiguous buffer, several times faster than strided
        2-D slices. The flat range [a, b) covers the interior rows including their pad
        columns, whose values are junk until the next ``_pad``.
        """
        h, w = self.hc, self.wc
        w2 = w + 2
        n = (h + 2) * w2
        self.w2, self.a, self.b = w2, w2 + 1, n - w2 - 1

        def buffer() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
            full = np.zeros(n, np.float32)
            return full, full[self.a:self.b], full.reshape(h + 2, w2)[1:-1, 1:-1]

        self.Pp = np.empty((h + 2, w2), np.float32)
        self.Pp[1:-1, 1:-1] = self.P
        self.P = self.Pp[1:-1, 1:-1]
        self.pflat = self.Pp.reshape(-1)
        _, self.F, self.F2 = buffer()
        _, self.t, _ = buffer()
        _, self.drive, self.drive2 = buffer()
        _, self.fc, self.fc2 = buffer()
        _, self.nfc, self.nfc2 = buffer()
        self.fc2[...] = self.fc_base
        np.negative(self.fc, out=self.nfc)
        self.gx = np.empty((h, w), np.float32)
        self.gy = np.empty((h, w), np.float32)
        self.t2 = np.empty((h, w), np.float32)

    def _pad(self) -> None:
        """Neumann (zero normal derivative) boundary: copy edge values into the pad."""
        Pp = self.Pp
        Pp[1:-1, 0] = Pp[1:-1, 1]
        Pp[1:-1, -1] = Pp[1:-1, -2]
        Pp[0, :] = Pp[1, :]
        Pp[-1, :] = Pp[-2, :]

    def _gradient(self) -> None:
        """Central-difference gradient of P into self.gx, self.gy (per pixel)."""
        self._pad()
        Pp = self.Pp
        np.subtract(Pp[1:-1, 2:], Pp[1:-1, :-2], out=self.gx)
        self.gx *= 0.5
        np.subtract(Pp[2:, 1:-1], Pp[:-2, 1:-1], out=self.gy)
        self.gy *= 0.5

    def _update_friction(self) -> None:
        """Coercive map: base + side friction for walls lying along the needle axis."""
        if self.fc_side <= 0:
            return
        self._gradient()
        gx, gy, t = self.gx, self.gy, self.t2
        # squared component of the wall normal across the needle axis
        np.multiply(gx, -self.uy, out=t)
        t += gy * self.ux
        t *= t
        g2 = gx * gx
        g2 += gy * gy
        g2 += 1e-4
        t /= g2
        np.multiply(t, self.fc_side, out=self.fc2)
        self.fc2 += self.fc_base
        np.negative(self.fc2, out=self.nfc2)

    def _update_drive(self, e_uniform: float, tip_c: tuple[int, int] | None,
                      bias: float) -> None:
        """Total external drive: quenched random field + uniform field + tip field."""
        np.add(self.h, e_uniform, out=self.drive2)
        if tip_c is not None:
            np.multiply(self.kernel_view(*tip_c), bias, out=self.t2)
            self.drive2 += self.t2

    def _rate(self) -> np.ndarray:
        """dP/dt (reduced units) into self.F (flat); self.F2 is its 2-D interior view."""
        self._pad()
        f, a, b, w2 = self.pflat, self.a, self.b, self.w2
        F, t = self.F, self.t
        c = f[a:b]
        np.add(f[a + 1:b + 1], f[a - 1:b - 1], out=F)
        F *= self.kxx
        np.add(f[a + w2:b + w2], f[a - w2:b - w2], out=t)
        t *= self.kyy
        F += t
        np.multiply(c, 2.0 * (self.kxx + self.kyy) - 1.0, out=t)  # -centre + linear term
        F -= t
        if self.kxy != 0.0:
            # P_xy ~ (SE - SW - NE + NW) / 4 (rows run downward)
            np.subtract(f[a + w2 + 1:b + w2 + 1], f[a + w2 - 1:b + w2 - 1], out=t)
            t -= f[a - w2 + 1:b - w2 + 1]
            t += f[a - w2 - 1:b - w2 - 1]
            t *= 0.5 * self.kxy
            F += t
        np.multiply(c, c, out=t)
        t *= c
        F -= t
        F += self.drive
        # dry friction: F - clip(F, -Fc, Fc)
        np.minimum(F, self.fc, out=t)
        np.maximum(t, self.nfc, out=t)
        F -= t
        return F

    def _advance(self, dt: float) -> None:
        """One explicit Euler step with the rate in self.F (which is scaled in place)."""
        self.F *= dt
        self.pflat[self.a:self.b] += self.F

    def _nucleate(self, e_uniform: float, tip_c: tuple[int, int] | None, bias: float) -> None:
        if self.nuc_done.all():
            return
        todo = ~self.nuc_done
        e = np.full(todo.sum(), e_uniform) + self.nuc_h[todo]
        iy, ix = self.nuc_iy[todo], self.nuc_ix[todo]
        if tip_c is not None:
            cy, cx = tip_c
            e = e + bias * self.kernel[self.hc - 1 - cy + iy, self.wc - 1 - cx + ix]
        fire = (e > self.nuc_thr[todo]) & (self.P[iy, ix] < 0)
        if not fire.any():
            return
        idx = np.flatnonzero(todo)[fire]
        half_len, half_wid = self.p["nucleus_half_axes_px"]
        for i in idx:
            sl, prof = _ellipse(self.P.shape, self.nuc_y[i], self.nuc_x[i],
                                half_len * self.rng.uniform(0.8, 1.3), half_wid,
                                self.ux, self.uy)
            np.maximum(self.P[sl], prof, out=self.P[sl])
        self.nuc_done[idx] = True

    # ---------------------------------------------------------------- run

    def run(self, progress: bool) -> SynthPFM:
        T, n = self.n_frames, self.size
        self._setup_buffers()
        phase = np.empty((T, n, n), np.float32)
        amp = np.empty((T, n, n), np.float32)
        pol = np.empty((T, n, n), np.int8)
        walls = np.empty((T, n, n), bool)
        vel = np.empty((T, n, n), np.float32)
        field = np.empty((T, n, n), np.float32) if self.tip else np.empty(T, np.float32)
        rows = []
        # relax the initial state without applied field, so walls have their profile
        # and the movie starts from a metastable state; the field is switched on at
        # frame 0
        self._update_drive(0.0, None, 0.0)
        for k in range(math.ceil(self.p["relax_time"] / self.dt_max)):
            if k % 8 == 0:
                self._update_friction()
            self._rate()
            self._advance(self.dt_max)
        n_sub = max(self.n_sub, 1)
        for f in tqdm(range(T), disable=not progress, desc="synth pfm", unit="frame"):
            for k in range(n_sub):
                frame_float = f + k / n_sub
                s = frame_float / (T - 1) if T > 1 else 0.0
                if k % 4 == 0:
                    # the drive changes slowly: refresh it every 4 steps
                    e_uni = self.field_at(s)
                    tip_c, bias = None, 0.0
                    if self.tip:
                        tip_c = self.tip_canvas(s, frame_float)
                        bias = self.bias_at(s)
                    self._update_drive(e_uni, tip_c, bias)
                if k % 8 == 0:
                    self._update_friction()
                self._rate()
                if k == 0:
                    rows.append(self._record(f, s, self.F2, e_uni, tip_c, bias, phase, amp,
                                             pol, walls, vel, field))
                    if f == T - 1:
                        break
                if self.dt == 0.0:
                    continue  # sim_time = 0: a still movie
                self._advance(self.dt)
                if k % 4 == 0:
                    # after the frame is recorded, so seeds are never caught unrelaxed
                    self._nucleate(e_uni, tip_c, bias)
        frames = pd.DataFrame(rows, columns=list(_FRAME_COLUMNS))
        frames["frame"] = frames["frame"].astype(np.int64)
        frames["n_domains"] = frames["n_domains"].astype(np.int64)
        frames["wall_length_px"] = frames["wall_length_px"].astype(np.int64)
        return SynthPFM(
            phase=phase, amplitude=amp, polarization=pol, walls=walls, wall_velocity=vel,
            field=field, frames=frames, pixel_size_nm=float(self.p["pixel_size_nm"]),
            params=json.loads(json.dumps(self.p)),
        )

    def _record(self, f: int, s: float, rate: np.ndarray, e_uni: float,
                tip_c: tuple[int, int] | None, bias: float, phase: np.ndarray, amp: np.ndarray,
                pol: np.ndarray, walls: np.ndarray, vel: np.ndarray,
                field: np.ndarray) -> list:
        n = self.size
        y0, x0 = self.origin[f]
        sl = (slice(y0, y0 + n), slice(x0, x0 + n))
        P = self.P
        # --- truth
        pos = P[sl] > 0
        pol[f] = np.where(pos, 1, -1).astype(np.int8)
        wall = _wall_mask(pos)
        walls[f] = wall
        vel[f] = self._wall_velocity(sl, wall, rate)
        ec = E_COERCIVE
        if self.tip:
            fmap = (e_uni + bias * self.kernel_view(*tip_c)[sl]) / ec
            field[f] = fmap
            fmean = float(fmap.mean())
        else:
            field[f] = e_uni / ec
            fmean = e_uni / ec
        # --- image
        ph, am = self._render(f, sl)
        phase[f] = ph
        amp[f] = am
        n_dom = int(ndimage.label(pos, structure=np.ones((3, 3), bool))[1])
        wall_v = vel[f][wall]
        mav = float(np.mean(np.abs(wall_v))) if wall_v.size else float("nan")
        if self.tip:
            ty, tx = self.tip_at(np.array([s]))[0]
            tip_b = bias / ec
        else:
            ty = tx = tip_b = float("nan")
        dy, dx = -(self.offsets[f] - self.offsets[0])
        return [f, float(pos.mean()), n_dom, int(wall.sum()), mav, fmean, float(ty),
                float(tx), float(tip_b), int(dy), int(dx)]

    def _wall_velocity(self, sl: tuple[slice, slice], wall: np.ndarray,
                       rate: np.ndarray) -> np.ndarray:
        """Normal velocity of the P = 0 level set at wall pixels, px per frame.

        ``v = (dP/dt) / |grad P|`` is the speed of a level set along its normal. It is
        evaluated on ``phi = artanh(P)`` instead of ``P``: across a wall ``P`` follows
        a tanh profile only a few pixels wide, whose slope central differences
        underestimate (by ~15% for the narrowest walls), while ``phi`` is close to a
        linear (signed-distance-like) function, which they differentiate exactly.
        """
        n = self.size
        ys, xs = sl
        y0, y1 = max(ys.start - 1, 0), min(ys.stop + 1, self.hc)
        x0, x1 = max(xs.start - 1, 0), min(xs.stop + 1, self.wc)
        p = np.clip(self.P[y0:y1, x0:x1], -0.999, 0.999)
        phi = np.arctanh(p)
        # one-sided differences at the canvas edge, central elsewhere
        gy, gx = np.gradient(phi)
        cy, cx = ys.start - y0, xs.start - x0
        inner = (slice(cy, cy + n), slice(cx, cx + n))
        gnorm = np.hypot(gx[inner], gy[inner])
        phi_t = rate[sl] / (1.0 - p[inner] ** 2)
        v = np.full((n, n), np.nan, np.float32)
        v[wall] = phi_t[wall] / np.maximum(gnorm[wall], 1e-3) * self.tau
        return v

    def _render(self, f: int, sl: tuple[slice, slice]) -> tuple[np.ndarray, np.ndarray]:
        p, rng = self.p, self.rng
        n = self.size
        r = math.ceil(4 * p["resolution_px"]) + 1
        ys = slice(max(sl[0].start - r, 0), min(sl[0].stop + r, self.hc))
        xs = slice(max(sl[1].start - r, 0), min(sl[1].stop + r, self.wc))
        q = np.tanh(self.P[ys, xs] / p["polarization_sharpness"])
        resp = self.resp[ys, xs]
        re = (resp.real * q).astype(np.float32)
        im = (resp.imag * q).astype(np.float32)
        if p["resolution_px"] > 0:
            re = ndimage.gaussian_filter(re, p["resolution_px"], mode="nearest")
            im = ndimage.gaussian_filter(im, p["resolution_px"], mode="nearest")
        cy, cx = sl[0].start - ys.start, sl[1].start - xs.start
        z = -(re[cy:cy + n, cx:cx + n] + 1j * im[cy:cy + n, cx:cx + n]) + self.bg
        z = z.astype(np.complex64)
        # scan-line artefacts: per-row phase jitter and occasional glitches
        jitter = np.deg2rad(rng.normal(0.0, p["line_jitter_deg"], n))
        gain = np.exp(1j * jitter).astype(np.complex64)[:, None] * np.ones((1, n), np.complex64)
        n_bad = int(rng.binomial(n, p["scan_lines"])) if p["scan_lines"] > 0 else 0
        for row in rng.choice(n, size=n_bad, replace=False) if n_bad else ():
            if rng.random() < 0.5:
                c0, c1 = 0, n
            else:
                c0 = int(rng.integers(0, n - 4))
                c1 = int(min(n, c0 + rng.integers(8, max(9, n // 2))))
            g = (1.0 + rng.normal(0.0, 0.25)) * np.exp(1j * np.deg2rad(rng.normal(0.0, 30.0)))
            gain[row, c0:c1] *= np.complex64(g)
        z *= gain
        if p["noise"] > 0:
            z += (p["noise"] * (rng.standard_normal((n, n)) + 1j * rng.standard_normal((n, n)))
                  ).astype(np.complex64)
        lo = p["wrap_low_deg"]
        ph = np.degrees(np.angle(z)) + p["phase_offset_deg"]
        ph = np.mod(ph - lo, 360.0) + lo
        return ph.astype(np.float32), np.abs(z).astype(np.float32)


# ------------------------------------------------------------------ files


def write_synth_pfm(result: SynthPFM, path: str | Path, *, overwrite: bool = False) -> Path:
    """Write a synthetic PFM movie and its truth to one ``.npz`` (+ a Parquet table).

    The ``.npz`` holds ``movie`` (the phase channel, degrees, (T, H, W) float32; it is
    stored once, under the name a generic loader picks), ``amplitude``,
    ``polarization``, ``walls``, ``wall_velocity`` (px/frame), ``field`` (E_c units),
    ``pixel_size`` (float, nm), ``pixel_unit`` ("nm"), ``channel`` ("phase"),
    ``movie_unit`` ("deg"), ``params_json`` (JSON string of every parameter),
    ``metadata`` (JSON string: kind, channel, unit and params, for generic loaders)
    and the per-frame table as one array per column named ``frames.<column>``. The
    frame table is also written as ``<stem>_frames.parquet`` beside it.

    Parameters
    ----------
    result : SynthPFM
        What :func:`synth_pfm_movie` returned.
    path : str or Path
        Target ``.npz`` file (the suffix is added if missing).
    overwrite : bool
        Replace existing files instead of raising.

    Returns
    -------
    Path
        The ``.npz`` path written.

    Raises
    ------
    FileExistsError
        If the ``.npz`` or the Parquet file exists and ``overwrite`` is False; nothing
        is written then.
    """
    path = Path(path)
    if path.suffix.lower() != ".npz":
        path = path.with_name(path.name + ".npz")
    table_path = path.with_name(f"{path.stem}_frames.parquet")
    check_writable([path, table_path], overwrite=overwrite)
    params_json = json.dumps(result.params, sort_keys=True)
    meta = json.dumps({"kind": "synth_pfm", "channel": "phase", "unit": "deg",
                       "params": result.params}, sort_keys=True)
    arrays: dict[str, Any] = {
        "movie": np.asarray(result.phase, np.float32),
        "amplitude": np.asarray(result.amplitude, np.float32),
        "polarization": np.asarray(result.polarization, np.int8),
        "walls": np.asarray(result.walls, bool),
        "wall_velocity": np.asarray(result.wall_velocity, np.float32),
        "field": np.asarray(result.field, np.float32),
        "pixel_size": np.float64(result.pixel_size_nm),
        "pixel_unit": np.str_("nm"),
        "channel": np.str_("phase"),
        "movie_unit": np.str_("deg"),
        "params_json": np.str_(params_json),
        "metadata": np.str_(meta),
    }
    arrays.update(tables_to_arrays({"frames": result.frames}))
    save_npz(path, arrays, overwrite=overwrite, compressed=True)
    write_table(result.frames, table_path, overwrite=overwrite)
    return path


def read_synth_pfm(path: str | Path) -> SynthPFM:
    """Read a file written by :func:`write_synth_pfm`.

    Parameters
    ----------
    path : str or Path
        The ``.npz`` file.

    Returns
    -------
    SynthPFM

    Raises
    ------
    FileNotFoundError
        If ``path`` does not exist.
    ValueError
        If the file lacks a member a synthetic PFM file must have.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such file")
    with np.load(path, allow_pickle=False) as npz:
        names = set(npz.files)
        need = {"movie", "amplitude", "polarization", "walls", "wall_velocity", "field",
                "pixel_size", "params_json", "frames.__columns__"}
        missing = sorted(need - names)
        if missing:
            raise ValueError(f"{path}: not a synthetic PFM file, missing {', '.join(missing)}")
        frames = tables_from_arrays(npz, ["frames"])["frames"]
        return SynthPFM(
            phase=npz["movie"].astype(np.float32, copy=False),
            amplitude=npz["amplitude"].astype(np.float32, copy=False),
            polarization=npz["polarization"].astype(np.int8, copy=False),
            walls=npz["walls"].astype(bool, copy=False),
            wall_velocity=npz["wall_velocity"].astype(np.float32, copy=False),
            field=npz["field"].astype(np.float32, copy=False),
            frames=frames,
            pixel_size_nm=float(npz["pixel_size"]),
            params=json.loads(str(npz["params_json"])),
        )
