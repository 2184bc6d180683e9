"""Windows of known motifs in random orientations: ground truth for the skip-rVAE.

Each window is centred on the centre of a carbon ring of a chosen size (a hollow-site
window), drawn as Gaussian atoms at the C-C bond length with the ring's first shell of
neighbours, rotated by a random angle, shifted slightly and noised. The rVAE must put
the rotation into its angle latent and the ring size into its content latents.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from latentpath.synth.sheet import CC_BOND_A


def _ring_atoms(size: int) -> np.ndarray:
    """Atoms of a regular ``size``-ring and one outward neighbour per ring atom, angstrom."""
    radius = CC_BOND_A / (2 * np.sin(np.pi / size))
    phi = 2 * np.pi * np.arange(size) / size
    ring = radius * np.stack([np.cos(phi), np.sin(phi)], 1)
    outward = ring + CC_BOND_A * ring / radius
    return np.concatenate([ring, outward])


def synth_motif_windows(n: int, *, window_px: int = 24, pixel_size_A: float = 0.25,
                        ring_sizes: tuple[int, ...] = (5, 6, 7), atom_sigma_A: float = 0.35,
                        max_shift_px: float = 1.0, noise: float = 0.05,
                        heavy_atom: bool = False, rotate_rad: float | np.ndarray = 0.0,
                        seed: int = 0) -> tuple[np.ndarray, pd.DataFrame]:
    """Hollow-site windows of rings of known sizes in random orientations.

    Parameters
    ----------
    n : int
        Number of windows.
    window_px : int
        Window side, pixels.
    pixel_size_A : float
        Angstrom per pixel.
    ring_sizes : tuple of int
        The kinds; each window gets one at random.
    atom_sigma_A : float
        Gaussian width of an atom, angstrom.
    max_shift_px : float
        Largest random offset of the ring centre from the window centre, pixels.
    noise : float
        Standard deviation of the Gaussian noise, relative to an atom's peak.
    heavy_atom : bool
        Make one ring atom twice as bright (a dopant): the motif then has no rotational
        symmetry, so its orientation is defined modulo 360 degrees.
    rotate_rad : float or ndarray (n,)
        Turn added to the random orientations, radians. The same seed with another
        ``rotate_rad`` gives the same motifs, shifts and noise statistics, turned: the
        test of rotation invariance.
    seed : int

    Returns
    -------
    windows : ndarray (n, window_px, window_px), float32
    truth : DataFrame
        ``ring_size, angle (radians), dy, dx (pixels)`` per window.
    """
    if n < 1 or window_px < 4:
        raise ValueError(f"need n >= 1 and window_px >= 4, got {n}, {window_px}")
    rng = np.random.default_rng(seed)
    kinds = rng.choice(np.asarray(ring_sizes), n)
    angles = rng.uniform(-np.pi, np.pi, n) + np.broadcast_to(np.asarray(rotate_rad), (n,))
    shifts = rng.uniform(-max_shift_px, max_shift_px, (n, 2))
    centre = (window_px - 1) / 2
    yy, xx = np.mgrid[:window_px, :window_px].astype(np.float64)
    windows = np.empty((n, window_px, window_px), np.float32)
    templates = {k: _ring_atoms(k) for k in ring_sizes}
    sigma_px = atom_sigma_A / pixel_size_A
    for i in range(n):
        c, s = np.cos(angles[i]), np.sin(angles[i])
        atoms = templates[kinds[i]] @ np.array([[c, s], [-s, c]]) / pixel_size_A
        ay = atoms[:, 1] + centre + shifts[i, 0]
        ax = atoms[:, 0] + centre + shifts[i, 1]
        d2 = (yy[None] - ay[:, None, None]) ** 2 + (xx[None] - ax[:, None, None]) ** 2
        weight = np.ones(len(ay))
        if heavy_atom:
            weight[0] = 2.0
        image = (weight[:, None, None] * np.exp(-d2 / (2 * sigma_px**2))).sum(0)
        windows[i] = image + rng.normal(0, noise, image.shape)
    truth = pd.DataFrame({"ring_size": kinds, "angle": angles, "dy": shifts[:, 0],
                          "dx": shifts[:, 1]})
    return windows, truth
