"""Synthetic STEM movies of Si-doped graphene under the beam, with exact ground truth.

A movie starts from rippled, mildly strained graphene at any orientation carrying
Si dopants (3-fold and 4-fold), Stone-Wales 55-77 defects, single (5-9) and double
(5-8-5) vacancies, a grain-boundary-like chain of 5-7 pairs, faceted holes and an
amorphous patch. Between frames the beam drives events: Si hops and changes
coordination, bonds rotate, vacancies form and migrate, holes grow and amorphous
regions spread, so that disorder (holes plus amorphous area) rises from
``initial_disorder`` to ``final_disorder`` of the field of view. Each frame is rendered
as an ADF image (Z^n contrast, probe with tails, shot and detector noise, scan
jitter, drift, background) by one of two models (``render_model``, see
:mod:`latentpath.synth.render`).

Truth, per frame: every atom with a persistent id, its position in pixels and
angstrom, species, coordination, region, and the sizes of the rings it belongs to;
every ring (primitive: a face of the planar bond graph with at most 8 atoms) with its
members and centre; every bond; and a table of the events applied.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from scipy.spatial import cKDTree
from tqdm.auto import tqdm

from latentpath.checks import check_float, check_int, check_memory
from latentpath.io import (
    check_writable,
    save_npz,
    tables_from_arrays,
    tables_to_arrays,
    write_table,
)
from latentpath.synth import defects, render
from latentpath.synth.sheet import (
    CC_BOND_A,
    REGION_AMORPHOUS,
    Sheet,
    faces,
    graphene_sheet,
    relax,
)

SPECIES_NAME = {6: "C", 14: "Si"}
_ATOM_AREA_A2 = 3 * np.sqrt(3) / 4 * CC_BOND_A**2
"""Area per atom in graphene, angstrom^2."""
_HOLE_DISTANCE_A = 2.2
"""A point farther than this from every atom is vacuum (a hexagon centre is 1.42 A)."""
_TRUTH_MARGIN_A = 4.0
TABLES = ("atoms", "rings", "bonds", "events", "frames")
RENDER_MODELS = ("gauss-tail", "aperture")
"""Imaging models of :func:`synth_stem_movie` (``render_model``)."""
_APERTURE_STREAM = 1
"""Spawn key of the aperture model's own random stream (the seed's child)."""


@dataclass
class SynthSTEM:
    """A synthetic STEM movie and its ground truth.

    Attributes
    ----------
    movie : ndarray, shape (T, H, W), float32
        Detected ADF counts.
    pixel_size_A : float
        Angstrom per pixel.
    atoms : DataFrame
        One row per atom per frame: ``frame, id, y, x`` (pixels of the image,
        drift included), ``y_A, x_A`` (the same position in angstrom), ``species``
        ("C"/"Si"), ``Z``, ``coordination``, ``region`` ("lattice"/"amorphous"),
        ``edge`` (on the boundary of a hole), ``n3 .. n8`` (rings of each size the
        atom belongs to), ``ring_sizes`` (e.g. "5,6,7"), ``in_image``. Atoms up to
        4 A outside the frame are listed, with ``in_image`` False.
    rings : DataFrame
        ``frame, ring, size, y, x, y_A, x_A, members, in_image``: ``members`` are the
        atom ids around the ring in order, space separated; ``in_image`` is True when
        every member is inside the frame.
    bonds : DataFrame
        ``frame, id_a, id_b, length_A`` (projected length).
    events : DataFrame
        ``frame, kind, ids, y, x``: the event first visible in ``frame``, the atoms it
        involved and where (pixels in that frame).
    frames : DataFrame
        ``frame, n_atoms, n_si, hole_fraction, amorphous_fraction, disorder_fraction,
        drift_y_px, drift_x_px, n_events``.
    params : dict
        Every parameter of the movie, the seed included.
    """

    movie: np.ndarray
    pixel_size_A: float
    atoms: pd.DataFrame
    rings: pd.DataFrame
    bonds: pd.DataFrame
    events: pd.DataFrame
    frames: pd.DataFrame
    params: dict


class _Imaging:
    """Maps sheet coordinates (angstrom) to image pixels for each frame.

    Uniform strain and a smooth long-wavelength displacement deform the sheet;
    drift moves it between frames and shears it within a frame (rows are scanned
    one after the other while the stage keeps moving).
    """

    def __init__(self, n_frames: int, size: int, pixel_size_A: float, strain: float,
                 drift_A_per_frame: float, rng: np.random.Generator):
        self.size, self.px = size, pixel_size_A
        eps = rng.normal(0, strain, 3)
        self.strain = np.array([[1 + eps[0], eps[2]], [eps[2], 1 + eps[1]]])
        self.wave_k = rng.normal(0, 2 * np.pi / 80.0, (2, 2))
        self.wave_amp = rng.normal(0, 0.15, (2, 2))
        velocity = np.zeros((n_frames, 2))
        for t in range(1, n_frames):
            velocity[t] = 0.8 * velocity[t - 1] + rng.normal(0, drift_A_per_frame, 2)
        self.velocity = velocity
        self.drift = np.cumsum(velocity, axis=0)
        self.drift -= self.drift.mean(axis=0)

    def to_image_A(self, xy: np.ndarray, t: int) -> np.ndarray:
        q = xy @ self.strain.T
        q = q + np.sin(xy @ self.wave_k.T) @ self.wave_amp
        q = q + self.drift[t]
        return q + self.velocity[t] * (q[:, 1:2] / (self.size * self.px))

    def reach_A(self) -> float:
        return float(np.abs(self.drift).max() + np.abs(self.velocity).max()) + 2.0


def synth_stem_movie(
    n_frames: int = 50,
    size: int = 512,
    *,
    pixel_size_A: float = 0.1,
    seed: int = 0,
    lattice_angle_deg: float | None = None,
    si_fraction: float = 0.01,
    initial_disorder: float = 0.06,
    final_disorder: float = 0.6,
    hole_share: float = 0.45,
    event_rate: float = 1.0,
    dose_e_per_A2: float = 5e5,
    c_peak_fraction: float = 0.01,
    probe_fwhm_A: float = 1.05,
    probe_tail_weight: float = 0.15,
    read_noise: float = 1.5,
    jitter_px: float = 0.25,
    drift_A_per_frame: float = 0.15,
    background: float = 0.25,
    ripple_A: float = 0.3,
    strain: float = 0.005,
    z_exponent: float = render.Z_EXPONENT,
    render_model: str = "gauss-tail",
    progress: bool = False,
) -> SynthSTEM:
    """Make a synthetic ADF-STEM movie of Si-doped graphene with its ground truth.

    Parameters
    ----------
    n_frames : int
        Number of frames T.
    size : int
        Frame height and width in pixels.
    pixel_size_A : float
        Angstrom per pixel (real data: about 0.05 to 0.2).
    seed : int
        Seed of every random choice; the same seed gives the same movie.
    lattice_angle_deg : float or None
        Orientation of the lattice; random when None.
    si_fraction : float
        Fraction of atoms that are Si at the start.
    initial_disorder, final_disorder : float
        Fraction of the field of view covered by holes plus amorphous carbon in the
        first and last frame.
    hole_share : float
        Share of the disorder that is holes (the rest amorphous).
    event_rate : float
        Multiplier of the rates of point events (Si hops and coordination changes,
        bond rotations, vacancy formation and migration).
    dose_e_per_A2 : float
        Electron dose per frame, e-/A^2.
    c_peak_fraction : float
        Fraction of the probe's electrons scattered onto the detector with the probe
        on a C atom; with the dose and the pixel area it sets the counts of a C peak.
    probe_fwhm_A, probe_tail_weight : float
        Probe core FWHM (angstrom) and the share of intensity in its tails (the
        Lorentzian-like tail of "gauss-tail", the Gaussian halo of "aperture").
    read_noise : float
        Detector noise, counts (standard deviation).
    jitter_px : float
        RMS scan-line jitter, pixels. Not in the truth positions: it is zero-mean noise.
        In the "aperture" model it also scales the flyback error (about 2 ``jitter_px``
        at the start of each line) and the rare line glitches; 0 gives a perfect scan.
    drift_A_per_frame : float
        Scale of the random stage drift between frames, angstrom.
    background : float
        Amplitude of the smooth background, in units of a C peak.
    ripple_A : float
        RMS out-of-plane height of the ripples, angstrom.
    strain : float
        Scale of the uniform in-plane strain.
    z_exponent : float
        Exponent n of the ADF contrast: an atom scatters as (Z / 6)^n times a C atom
        (1.0 to 2.5; real data 1.5 to 2, larger for higher detector inner angles).
    render_model : {"gauss-tail", "aperture"}
        Imaging model; the structure and its truth are the same for both.

        - "gauss-tail": probe of Gaussian core plus a ``(1 + r^2 / w^2)^-1.5`` tail
          (w = 2.5 A); each scan line shifted by an independent Gaussian offset; Poisson
          counts plus Gaussian read noise.
        - "aperture": Airy probe of a circular aperture convolved with a Gaussian
          source image (FWHM half of ``probe_fwhm_A``), the aperture set so that the
          core's FWHM is ``probe_fwhm_A``, and ``probe_tail_weight`` in a Gaussian halo
          of 4 A FWHM (chromatic skirt); correlated (AR(1), about 6 lines) line jitter
          of RMS ``jitter_px``, a damped sinusoidal flyback error along each line and
          rare line glitches (0.2 % of lines); a scintillator detector: Poisson
          electrons times a gamma gain per electron (mean 1, shape 3), a causal
          exponential response of 0.5 px along the fast scan, a dark-level offset per
          line (0.3 ``read_noise``) and Gaussian read noise. Its random numbers come
          from a stream of its own (a child of ``seed``), so the structure evolves
          exactly as in the "gauss-tail" movie with the same arguments.

        See :mod:`latentpath.synth.render` for each part.
    progress : bool
        Show a progress bar.

    Returns
    -------
    SynthSTEM
    """
    params = {k: v for k, v in locals().items() if k != "progress"}
    check_int("n_frames", n_frames, 1)
    check_int("size", size, 32)
    # the movie, and about as much again for its truth and the rendering
    check_memory(f"a movie of {n_frames} frames of {size} x {size} px", 2 * 4.0 * n_frames
                 * size**2)
    for name, value in (("pixel_size_A", pixel_size_A), ("dose_e_per_A2", dose_e_per_A2),
                        ("c_peak_fraction", c_peak_fraction), ("probe_fwhm_A", probe_fwhm_A)):
        check_float(name, value, minimum=0.0, strict=True)
    for name, value in (("si_fraction", si_fraction), ("initial_disorder", initial_disorder),
                        ("hole_share", hole_share), ("probe_tail_weight", probe_tail_weight)):
        check_float(name, value, minimum=0.0, maximum=1.0)
    check_float("final_disorder", final_disorder, minimum=0.0, maximum=0.85)
    for name, value in (("event_rate", event_rate), ("read_noise", read_noise),
                        ("jitter_px", jitter_px), ("drift_A_per_frame", drift_A_per_frame),
                        ("background", background), ("ripple_A", ripple_A),
                        ("strain", strain)):
        check_float(name, value, minimum=0.0)
    z_exponent = check_float("z_exponent", z_exponent, minimum=1.0, maximum=2.5)
    if render_model not in RENDER_MODELS:
        raise ValueError(f"render_model must be one of {', '.join(RENDER_MODELS)}; "
                         f"got {render_model!r}")
    rng = np.random.default_rng(seed)
    # Drawn even when given, so that repeating a movie from its recorded params
    # (angle included) replays the same random stream.
    random_angle = float(rng.uniform(0, 60))
    if lattice_angle_deg is None:
        lattice_angle_deg = random_angle
        params["lattice_angle_deg"] = lattice_angle_deg
    imaging = _Imaging(n_frames, size, pixel_size_A, strain, drift_A_per_frame, rng)
    field_A = size * pixel_size_A
    reach = imaging.reach_A() + _TRUTH_MARGIN_A + 3.0
    sheet = graphene_sheet((-reach, field_A + reach, -reach, field_A + reach),
                           angle_deg=lattice_angle_deg, ripple_amplitude_A=ripple_A, rng=rng)
    relax(sheet, sheet.alive_indices(), n_iter=150)
    movie_maker = _Movie(sheet, imaging, rng, params)
    movie_maker.seed_defects()
    pad = int(np.ceil(6.0 / pixel_size_A))
    otf = render.probe_otf((size + 2 * pad, size + 2 * pad), pixel_size_A, fwhm_A=probe_fwhm_A,
                           tail_weight=probe_tail_weight)
    counts_per_unit = dose_e_per_A2 * pixel_size_A**2 * c_peak_fraction
    backdrop = 0.05 + background * render.smooth_background((size, size), rng, size / 6)

    def gauss_tail_frame(y_px: np.ndarray, x_px: np.ndarray, z: np.ndarray) -> np.ndarray:
        signal = render.ideal_adf(y_px, x_px, z, (size, size), otf, pad,
                                  z_exponent=z_exponent) + backdrop
        signal = render.scan_jitter(signal, jitter_px, rng)
        return render.detect(signal, counts_per_unit=counts_per_unit,
                             read_noise=read_noise, rng=rng)

    if render_model == "aperture":
        look_rng = np.random.default_rng(np.random.SeedSequence(
            seed, spawn_key=(_APERTURE_STREAM,)))
        look_otf = render.aperture_probe_otf((size + 2 * pad, size + 2 * pad), pixel_size_A,
                                             fwhm_A=probe_fwhm_A, tail_weight=probe_tail_weight)
        flyback = render.flyback_profile(size, 2.0 * jitter_px, look_rng)
    movie = np.empty((n_frames, size, size), np.float32)
    for t in tqdm(range(n_frames), desc="synthetic STEM", disable=not progress):
        if t > 0:
            movie_maker.evolve(t, n_frames)
        y_px, x_px, z = movie_maker.record(t)
        if render_model == "gauss-tail":
            movie[t] = gauss_tail_frame(y_px, x_px, z)
            continue
        signal = render.ideal_adf(y_px, x_px, z, (size, size), look_otf, pad,
                                  z_exponent=z_exponent) + backdrop
        signal = render.resample_scan(signal, render.line_offsets(size, jitter_px, look_rng),
                                      flyback)
        movie[t] = render.detect_scintillator(signal, counts_per_unit=counts_per_unit,
                                              read_noise=read_noise, rng=look_rng)
        if t < n_frames - 1:
            # The gauss-tail frame's noise draws (their number depends on the image)
            # sit between the structure's draws on the shared stream: replay them so
            # that the next frames' structure is the same as in the gauss-tail movie.
            # After the last frame nothing is drawn, so there the replay is skipped.
            gauss_tail_frame(y_px, x_px, z)
    tables = movie_maker.tables()
    return SynthSTEM(movie=movie, pixel_size_A=float(pixel_size_A), params=params, **tables)


class _Movie:
    """The sheet through time: seeds defects, drives events, records the truth."""

    def __init__(self, sheet: Sheet, imaging: _Imaging, rng: np.random.Generator, params: dict):
        self.sheet, self.imaging, self.rng, self.p = sheet, imaging, rng, params
        self.field_A = params["size"] * params["pixel_size_A"]
        self.rows: dict[str, list] = {k: [] for k in TABLES}
        self.pending_events: list[tuple[str, list[int]]] = []
        self.edge: set[int] = set()

    # -- where things are ------------------------------------------------------------
    def image_A(self, idx: np.ndarray, t: int) -> np.ndarray:
        return self.imaging.to_image_A(self.sheet.pos[idx], t)

    def in_view(self, t: int, margin_A: float = 0.0) -> np.ndarray:
        """Indices of alive atoms inside the field of view (grown by ``margin_A``)."""
        idx = self.sheet.alive_indices()
        q = self.image_A(idx, t)
        ok = ((q >= -margin_A) & (q <= self.field_A + margin_A)).all(axis=1)
        return idx[ok]

    def measure_disorder(self, t: int) -> tuple[float, float]:
        """Hole and amorphous fractions of the field of view."""
        idx = self.in_view(t, margin_A=_HOLE_DISTANCE_A + 1)
        step = max(self.field_A / 96, 0.3)
        g = np.arange(step / 2, self.field_A, step)
        gx, gy = np.meshgrid(g, g)
        grid = np.stack([gx.ravel(), gy.ravel()], 1)
        if len(idx) == 0:
            return 1.0, 0.0
        dist, nearest = cKDTree(self.image_A(idx, t)).query(
            grid, distance_upper_bound=_HOLE_DISTANCE_A)
        hole = ~np.isfinite(dist)
        amorphous = ~hole & (self.sheet.region[idx[np.minimum(nearest, len(idx) - 1)]]
                             == REGION_AMORPHOUS)
        return float(hole.mean()), float(amorphous.mean())

    def _inner(self, t: int, margin_A: float) -> np.ndarray:
        """Atoms at least ``margin_A`` inside the view; in views too small for that, all
        atoms of the view (or of the sheet)."""
        for m in (-margin_A, 0.0, 1e6):
            idx = self.in_view(t, margin_A=m)
            if len(idx):
                return idx
        return self.sheet.alive_indices()

    def _random_point(self, t: int) -> np.ndarray:
        """A random point of the view, in sheet coordinates (the nearest atom)."""
        return self.sheet.pos[self.rng.choice(self._inner(t, 3.0))]

    def _near(self, xy: np.ndarray, radius: float) -> np.ndarray:
        idx = self.sheet.alive_indices()
        d = np.linalg.norm(self.sheet.pos[idx] - xy, axis=1)
        return idx[d < radius]

    # -- the structure at the start -------------------------------------------------
    def seed_defects(self) -> None:
        s, rng = self.sheet, self.rng
        view = self.in_view(0)
        area_nm2 = self.field_A**2 / 100
        n_si = rng.binomial(len(view), self.p["si_fraction"])
        for i in rng.permutation(view)[: n_si * 3]:
            if n_si == 0:
                break
            if s.species[i] == 6 and all(s.species[n] == 6 for n in s.nbrs[i]):
                s.species[i] = 14
                n_si -= 1
        relax(s, s.alive_indices(), n_iter=60)
        si = [i for i in view if s.species[i] == 14]
        for i in si[: len(si) // 3]:
            defects.attempt(s, defects.si_to_fourfold(i, int(rng.choice(sorted(s.nbrs[i])))))
        # Early frames are mostly clean lattice: a few point defects of each kind.
        for _ in range(rng.poisson(0.1 * area_nm2) + 1):
            self._stone_wales_somewhere(0)
        for _ in range(rng.poisson(0.08 * area_nm2) + 1):
            self._vacancy_somewhere(0, double=False)
        for _ in range(rng.poisson(0.08 * area_nm2) + 1):
            self._vacancy_somewhere(0, double=True)
        self._five_seven_chain(0)
        target_hole = self.p["initial_disorder"] * self.p["hole_share"]
        target_amorph = self.p["initial_disorder"] - target_hole
        if target_hole > 0:
            self._cut_faceted_hole(0, target_hole)
        self._grow(0, target_hole, target_amorph)
        self.pending_events.clear()

    def _stone_wales_somewhere(self, t: int) -> None:
        for _ in range(20):
            i = int(self.rng.choice(self._inner(t, 2.0)))
            if self.sheet.region[i] != 0 or self.sheet.coordination(i) != 3:
                continue
            j = int(self.rng.choice(sorted(self.sheet.nbrs[i])))
            done = defects.attempt(self.sheet, defects.stone_wales(i, j))
            if done:
                self.pending_events.append(("stone_wales", done[:2]))
                return

    def _vacancy_somewhere(self, t: int, double: bool) -> None:
        s = self.sheet
        for _ in range(20):
            i = int(self.rng.choice(self._inner(t, 2.0)))
            if s.species[i] != 6 or s.region[i] != 0 or s.coordination(i) != 3:
                continue
            group = [i]
            if double:
                j = int(self.rng.choice(sorted(s.nbrs[i])))
                if s.species[j] != 6:
                    continue
                group.append(j)
            done = defects.attempt(s, defects.remove_atoms(group))
            if done:
                self.pending_events.append(("divacancy" if double else "vacancy", done))
                return

    def _five_seven_chain(self, t: int) -> None:
        """A line of Stone-Wales rotations spaced a few bonds apart: a chain of 5-7 pairs."""
        s, rng = self.sheet, self.rng
        start = self._random_point(t)
        direction = rng.normal(size=2)
        direction /= np.linalg.norm(direction)
        length = 0.5 * self.field_A
        for k in range(int(length / (3 * CC_BOND_A))):
            near = self._near(start + direction * k * 3 * CC_BOND_A, 1.0)
            for i in near:
                if s.coordination(i) == 3 and s.region[i] == 0:
                    nbrs = sorted(s.nbrs[i], key=lambda n: -abs(
                        float(np.dot(s.pos[n] - s.pos[i], direction))))
                    done = defects.attempt(s, defects.stone_wales(int(i), int(nbrs[-1])))
                    if done:
                        self.pending_events.append(("five_seven_chain", done[:2]))
                    break

    def _cut_faceted_hole(self, t: int, fraction: float) -> None:
        """Remove a hexagon aligned with the lattice: zigzag or armchair edges."""
        s, rng = self.sheet, self.rng
        radius = np.sqrt(fraction * self.field_A**2 / (1.5 * np.sqrt(3)))
        centre = self._random_point(t)
        angle = np.deg2rad(self.p["lattice_angle_deg"]) + rng.choice([0.0, np.pi / 6])
        d = s.pos - centre
        inside = s.alive.copy()
        for k in range(6):
            normal = np.array([np.cos(angle + k * np.pi / 3), np.sin(angle + k * np.pi / 3)])
            inside &= d @ normal < radius * np.sqrt(3) / 2
        edge_before = set()
        for i in np.flatnonzero(inside):
            edge_before.update(s.nbrs[i])
            s.remove(int(i))
        self.edge.update(i for i in edge_before if s.alive[i])
        for i in list(self.edge):
            if s.alive[i] and s.coordination(i) <= 1:
                for n in list(s.nbrs[i]):
                    self.edge.add(n)
                s.remove(i)

    # -- the beam at work -------------------------------------------------------------
    def evolve(self, t: int, n_frames: int) -> None:
        """Apply the events between frame t-1 and frame t."""
        s, rng, rate = self.sheet, self.rng, self.p["event_rate"]
        view = self.in_view(t - 1, margin_A=-1.0)
        area_nm2 = self.field_A**2 / 100
        for i in view:
            if s.species[i] != 14 or not s.alive[i]:
                continue
            coord, u = s.coordination(i), rng.random()
            if coord == 3 and u < 0.12 * rate:
                carbons = [n for n in s.nbrs[i] if s.species[n] == 6]
                if carbons:
                    j = int(rng.choice(carbons))
                    if defects.attempt(s, defects.swap_sites(int(i), j)):
                        self.pending_events.append(("si_hop", [int(i), j]))
            elif coord == 3 and u < 0.16 * rate:
                carbons = [n for n in s.nbrs[i] if s.species[n] == 6]
                if carbons:
                    carbon = int(rng.choice(carbons))
                    if defects.attempt(s, defects.si_to_fourfold(int(i), carbon)):
                        self.pending_events.append(("si_3_to_4_fold", [int(i)]))
            elif coord == 4 and u < 0.05 * rate:
                done = defects.attempt(s, defects.si_to_threefold(int(i)))
                if done:
                    self.pending_events.append(("si_4_to_3_fold", done[:2]))
        for _ in range(rng.poisson(0.05 * rate * area_nm2)):
            self._stone_wales_somewhere(t - 1)
        for _ in range(rng.poisson(0.02 * rate * area_nm2)):
            self._vacancy_somewhere(t - 1, double=False)
        for _ in range(rng.poisson(0.01 * rate * area_nm2)):
            self._vacancy_somewhere(t - 1, double=True)
        twofold = [i for i in view if s.alive[i] and s.region[i] == 0 and i not in self.edge
                   and s.coordination(i) == 2 and s.species[i] == 6]
        for i in twofold:
            if rng.random() < 0.3 * rate:
                done = defects.attempt(s, defects.vacancy_hop(int(i)))
                if done:
                    self.pending_events.append(("vacancy_hop", [int(i)]))
        progress = t / max(n_frames - 1, 1)
        total = self.p["initial_disorder"] + (
            self.p["final_disorder"] - self.p["initial_disorder"]) * progress**1.3
        hole_target = total * self.p["hole_share"]
        self._grow(t - 1, hole_target, total - hole_target)

    def _grow(self, t: int, hole_target: float, amorph_target: float) -> None:
        """Erode holes and spread amorphous carbon until the targets are met."""
        s, rng = self.sheet, self.rng
        view_area = self.field_A**2
        hole, amorph = self.measure_disorder(t)
        for _ in range(40):
            if hole >= hole_target:
                break
            in_view = set(self.in_view(t, margin_A=-1.0).tolist())
            candidates = self.edge & in_view
            if not candidates:
                centre = self._random_point(t)
                group = [int(i) for i in self._near(centre, 1.6) if s.species[i] == 6]
                self.edge.update(n for i in group for n in s.nbrs[i])
                for i in group:
                    s.remove(i)
                self.edge -= set(group)
                self.pending_events.append(("hole_nucleation", group))
                hole, amorph = self.measure_disorder(t)
                continue
            n_steps = max(1, int((hole_target - hole) * view_area / _ATOM_AREA_A2))
            for _ in range(n_steps):
                removed = defects.erode_edge(s, candidates, rng)
                self.edge |= candidates
                if removed:
                    self.pending_events.append(("sputter", removed))
            hole, amorph = self.measure_disorder(t)
        for _ in range(20):
            if amorph >= amorph_target:
                break
            # An accepted rotation converts about four atoms and a good half of the
            # attempts are taken (most rejections would close a 4-ring).
            n_steps = max(1, int((amorph_target - amorph) * view_area / _ATOM_AREA_A2 / 3))
            self._amorphize(t, n_steps)
            hole, amorph = self.measure_disorder(t)
        churn = [i for i in self.in_view(t) if s.region[i] == REGION_AMORPHOUS]
        for i in rng.permutation(churn)[: max(2, len(churn) // 40)]:
            nbrs = sorted(s.nbrs[i])
            if nbrs:
                defects.attempt(s, defects.amorphize_bond(int(i), int(rng.choice(nbrs))))

    def _amorphize(self, t: int, n_steps: int) -> None:
        """Rotate bonds at the front of the amorphous regions.

        A share of the rotations (more when the fronts are stuck, e.g. hemmed in by
        holes) starts new patches in the lattice, so amorphous carbon appears in
        several places as it does under the beam.
        """
        s, rng = self.sheet, self.rng
        view = self._inner(t, 1.0)
        is_amorph = s.region == REGION_AMORPHOUS
        lattice = [int(i) for i in view if not is_amorph[i] and s.coordination(i) == 3]
        lattice_set = set(lattice)
        front = [i for i in lattice if any(is_amorph[n] for n in s.nbrs[i])]
        if not lattice:
            return
        accepted = 0
        for step in range(n_steps):
            stuck = step >= 10 and accepted < 0.2 * step
            fresh = not front or rng.random() < (0.3 if stuck else 0.05)
            i = int(rng.choice(lattice if fresh else front))
            nbrs = sorted(n for n in s.nbrs[i] if s.region[n] != REGION_AMORPHOUS)
            nbrs = nbrs or sorted(s.nbrs[i])
            if not nbrs:
                continue
            done = defects.attempt(s, defects.amorphize_bond(i, int(rng.choice(nbrs))))
            if done:
                accepted += 1
                self.pending_events.append(("amorphization", done[:2]))
                front.extend(n for k in done for n in s.nbrs[k]
                             if n in lattice_set and s.region[n] != REGION_AMORPHOUS)

    # -- truth ------------------------------------------------------------------------
    def record(self, t: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Write the truth of frame t; return pixel positions and Z of every atom to draw."""
        s, px = self.sheet, self.p["pixel_size_A"]
        idx = self.in_view(t, margin_A=6.0)
        xy_A = self.image_A(idx, t)
        in_image = ((xy_A >= 0) & (xy_A <= self.field_A - px)).all(axis=1)
        listed = ((xy_A >= -_TRUTH_MARGIN_A) & (xy_A <= self.field_A + _TRUTH_MARGIN_A)).all(1)
        pos_of = np.full(s.n_slots, -1)
        pos_of[idx] = np.arange(len(idx))
        face_set = faces(s)
        rings = face_set.rings(8)
        ring_counts = np.zeros((s.n_slots, 9), np.int64)
        ring_rows = []
        for m in rings:
            ring_counts[m, len(m)] += 1
            if (pos_of[m] < 0).any():
                continue
            c = xy_A[pos_of[m]].mean(axis=0)
            if not ((c >= 0) & (c <= self.field_A)).all():
                continue
            ring_rows.append((t, len(m), c[1] / px, c[0] / px, c[1], c[0],
                              " ".join(map(str, s.ids[m])), bool(in_image[pos_of[m]].all())))
        self.edge = {int(i) for m, simple, area in zip(face_set.members, face_set.simple,
                                                       face_set.area_A2, strict=True)
                     if not (simple and area > 0 and len(m) <= 12) for i in m}
        listed_idx = idx[listed]
        xy_l = xy_A[listed]
        coord = np.array([s.coordination(i) for i in listed_idx], dtype=np.int64)
        counts = ring_counts[listed_idx]
        sizes = [",".join(str(k) for k in range(3, 9) for _ in range(c[k])) for c in counts]
        atoms = pd.DataFrame({
            "frame": t, "id": s.ids[listed_idx], "y": xy_l[:, 1] / px, "x": xy_l[:, 0] / px,
            "y_A": xy_l[:, 1], "x_A": xy_l[:, 0],
            "species": [SPECIES_NAME[int(z)] for z in s.species[listed_idx]],
            "Z": s.species[listed_idx].astype(np.int64), "coordination": coord,
            "region": np.where(s.region[listed_idx] == REGION_AMORPHOUS, "amorphous", "lattice"),
            "edge": [int(i) in self.edge for i in listed_idx],
            **{f"n{k}": counts[:, k] for k in range(3, 9)},
            "ring_sizes": sizes, "in_image": in_image[listed],
        })
        self.rows["atoms"].append(atoms)
        self.rows["rings"].extend(ring_rows)
        listed_set = set(listed_idx.tolist())
        for a in listed_idx:
            for b in s.nbrs[a]:
                if a < b and b in listed_set:
                    d = float(np.linalg.norm(xy_A[pos_of[a]] - xy_A[pos_of[b]]))
                    self.rows["bonds"].append((t, int(s.ids[a]), int(s.ids[b]), d))
        for kind, members in self.pending_events:
            alive = [m for m in members if s.alive[m]]
            where = self.image_A(np.array(alive or members), t).mean(axis=0) / px
            self.rows["events"].append((t, kind, " ".join(str(s.ids[m]) for m in members),
                                        where[1], where[0]))
        hole, amorph = self.measure_disorder(t)
        drift = self.imaging.drift[t] / px
        n_si = int((s.species[idx[in_image]] == 14).sum())
        self.rows["frames"].append((t, int(in_image.sum()), n_si, hole, amorph, hole + amorph,
                                    drift[1], drift[0], len(self.pending_events)))
        self.pending_events = []
        return xy_A[:, 1] / px, xy_A[:, 0] / px, s.species[idx].astype(float)

    def tables(self) -> dict[str, pd.DataFrame]:
        return {
            "atoms": pd.concat(self.rows["atoms"], ignore_index=True),
            "rings": pd.DataFrame(self.rows["rings"], columns=[
                "frame", "size", "y", "x", "y_A", "x_A", "members", "in_image"]).pipe(
                    lambda df: df.insert(1, "ring", df.groupby("frame").cumcount()) or df),
            "bonds": pd.DataFrame(self.rows["bonds"],
                                  columns=["frame", "id_a", "id_b", "length_A"]),
            "events": pd.DataFrame(self.rows["events"], columns=["frame", "kind", "ids", "y", "x"]),
            "frames": pd.DataFrame(self.rows["frames"], columns=[
                "frame", "n_atoms", "n_si", "hole_fraction", "amorphous_fraction",
                "disorder_fraction", "drift_y_px", "drift_x_px", "n_events"]),
        }


def write_synth_stem(result: SynthSTEM, path: str | Path, *, overwrite: bool = False) -> Path:
    """Write a synthetic movie and its truth: one .npz plus a parquet copy of each table.

    The .npz holds ``movie`` (T, H, W) float32, ``pixel_size`` and ``pixel_unit``
    ("A"), ``params_json``, and every column of every table as ``<table>.<column>``;
    :func:`read_synth_stem` reads it back and :func:`latentpath.io.load_movie` reads
    its movie. Parquet copies go beside it as ``<stem>_<table>.parquet``.

    Parameters
    ----------
    result : SynthSTEM
    path : str or Path
        Target .npz (the suffix is added when missing).
    overwrite : bool
        Replace existing files; without it an existing file raises FileExistsError.

    Returns
    -------
    Path
        The .npz written.
    """
    path = Path(path)
    if path.suffix != ".npz":
        path = path.with_name(path.name + ".npz")
    tables = {name: getattr(result, name) for name in TABLES}
    parquet = {name: path.with_name(f"{path.stem}_{name}.parquet") for name in TABLES}
    check_writable([path, *parquet.values()], overwrite=overwrite)
    arrays = {"movie": result.movie, "pixel_size": np.float64(result.pixel_size_A),
              "pixel_unit": np.str_("A"), "params_json": np.str_(json.dumps(result.params)),
              **tables_to_arrays(tables)}
    save_npz(path, arrays, overwrite=overwrite)
    for name, df in tables.items():
        write_table(df, parquet[name], overwrite=overwrite)
    return path


def read_synth_stem(path: str | Path) -> SynthSTEM:
    """Read a movie written by :func:`write_synth_stem`."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such synthetic movie file")
    with np.load(path, allow_pickle=False) as data:
        missing = [k for k in ("movie", "pixel_size", "params_json", "atoms.__columns__")
                   if k not in data.files]
        if missing:
            raise ValueError(f"{path} is not a latentpath synthetic STEM movie "
                             f"(missing {', '.join(missing)})")
        return SynthSTEM(movie=data["movie"], pixel_size_A=float(data["pixel_size"]),
                         params=json.loads(str(data["params_json"])),
                         **tables_from_arrays(data, TABLES))
