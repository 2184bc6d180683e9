"""Atoms brighter than any class the model knows.

The shipped model tells C from Si. An annular dark-field detector sees an atom of atomic
number Z about as Z^n (n 1.6-2.0; our simulator allows up to 2.5), so Si (Z = 14) is 4 to 8
times as bright as C (Z = 6), and a Pt atom (Z = 78) 60 to 170 times. The network, asked
"C or Si?", answers one of the two for anything; the peak heights say when the
answer cannot be either.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

HEAVY = "heavy"
"""Species name of an atom far brighter than Si: an element the model does not know."""
HEAVY_OVER_C = 15.0
"""Peak height, in units of the frame's median C atom, above which an atom is heavy. Si
reaches 4 to 5 at n = 1.6-1.7 (2.1 to 7.3 on the shared real images, where neighbouring
Si add their tails) and 8.3 at the steepest exponent, 2.5; Zn and heavier pass at
n = 1.7, Fe at n = 2."""
MIN_REFERENCE_ATOMS = 5
"""C atoms a frame needs for its median to be the reference."""


def label_heavy(atoms: pd.DataFrame, *, ratio: float = HEAVY_OVER_C) -> pd.DataFrame:
    """Relabel atoms far brighter than the frame's carbon as :data:`HEAVY`.

    Parameters
    ----------
    atoms : DataFrame
        ``frame, species, intensity`` (the brightness over the surroundings, as
        :func:`~latentpath.atoms.locate.peak_heights` gives it; NaN where unknown, and
        then never heavy).
    ratio : float
        Peak height over the frame's median C atom above which an atom is heavy.

    Returns
    -------
    DataFrame
        A copy with ``species`` set to "heavy" where the rule holds. Frames with fewer
        than :data:`MIN_REFERENCE_ATOMS` C atoms of known height are left as they are.

    Examples
    --------
    >>> import pandas as pd
    >>> atoms = pd.DataFrame({"frame": 0, "species": ["C"] * 6 + ["Si", "C"],
    ...                       "intensity": [1.0] * 6 + [4.5, 60.0]})
    >>> label_heavy(atoms).species.tolist()[-2:]
    ['Si', 'heavy']
    """
    if not ratio > 1:
        raise ValueError(f"ratio must exceed 1 (brighter than carbon), got {ratio}")
    out = atoms.copy()
    if len(out) == 0 or "intensity" not in out:
        return out
    height = out.intensity.to_numpy(np.float64)
    is_c = (out.species == "C").to_numpy() & np.isfinite(height)
    frames = out.frame.to_numpy()
    heavy = np.zeros(len(out), bool)
    for t in np.unique(frames):
        here = frames == t
        reference = height[here & is_c]
        if len(reference) < MIN_REFERENCE_ATOMS:
            continue
        carbon = float(np.median(reference))
        if carbon > 0:
            heavy |= here & (height > ratio * carbon)
    out.loc[heavy, "species"] = HEAVY
    return out
