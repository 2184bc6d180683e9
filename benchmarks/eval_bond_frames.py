"""How consistently the bond frames put each structure's rings in one order: by the bond
angles alone, and by the sizes of the atom's rings (the default).

    python benchmarks/eval_bond_frames.py RUN [RUN ...]

For every atom of a finished STEM run that lies in three rings of more than one size,
the direction of each ring's centre in the atom's bond frame
(:func:`latentpath.graph.bond_frames`) gives the ring at about 180, 60 and 300 degrees.
The frame is in the standard order when the smallest ring lies at 180 and the larger
of the other two at 60. Printed per structure (the nine commonest): the share of its
atoms in the standard order with each frame. Windows of one structure cut in frames of
both orders show it as two mirror images, which the rVAE's angle latent cannot undo.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import pandas as pd
from common import machine_line  # benchmarks/common.py, beside this script

from latentpath.graph import CC_BOND_A, bond_frames, find_bonds, find_rings
from latentpath.pipeline import StemRun


def standard_order(pos: np.ndarray, rings: pd.DataFrame, turn: np.ndarray,
                   mirror: np.ndarray) -> pd.DataFrame:
    """Per atom in three rings of more than one size: its structure and whether the
    frame puts the smallest ring at 180 degrees and the larger other one at 60."""
    members = np.concatenate([np.asarray(m, np.int64) for m in rings.members])
    ring = np.repeat(np.arange(len(rings)), rings["size"].to_numpy())
    size = rings["size"].to_numpy()[ring]
    d = rings[["y", "x"]].to_numpy()[ring] - pos[members]
    t, sign = turn[members], np.where(mirror[members], -1.0, 1.0)
    u = d[:, 1] * np.cos(t) + d[:, 0] * np.sin(t)
    v = sign * (-d[:, 1] * np.sin(t) + d[:, 0] * np.cos(t))
    slot = np.round(np.degrees(np.arctan2(v, u)) % 360 / 120 - 0.5).astype(int) % 3
    table = pd.DataFrame({"atom": members, "slot": np.array([60, 180, 300])[slot],
                          "size": size})
    rows = []
    for _, group in table.groupby("atom"):
        if len(group) != 3 or group.slot.nunique() != 3 or group["size"].nunique() == 1:
            continue
        at = dict(zip(group.slot, group["size"], strict=True))
        rows.append(("-".join(map(str, sorted(at.values()))),
                     at[180] == min(at.values()) and at[60] >= at[300]))
    return pd.DataFrame(rows, columns=["structure", "standard"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("runs", nargs="+", type=Path)
    args = parser.parse_args()
    print(machine_line())
    for run_dir in args.runs:
        run = StemRun.read(run_dir)
        atoms, px = run.atoms, run.pixel_size_A
        tables = {"angles": [], "rings": []}
        for _, frame in atoms.groupby("frame"):
            pos = frame[["y", "x"]].to_numpy() * px
            bonds = find_bonds(pos, frame["species"].to_numpy(), bond_length=CC_BOND_A)
            rings = find_rings(pos, bonds)
            tables["angles"].append(standard_order(pos, rings, *bond_frames(pos, bonds)))
            tables["rings"].append(standard_order(pos, rings, *bond_frames(pos, bonds, rings)))
        found = {k: pd.concat(v) for k, v in tables.items()}
        top = found["rings"].structure.value_counts().index[:9]
        print(f"{run_dir.name}: share of atoms in the standard order, angles -> rings")
        for name in top:
            share = {k: t.standard[t.structure == name].mean() for k, t in found.items()}
            print(f"  {name} ({int((found['rings'].structure == name).sum())}): "
                  f"{share['angles']:.2f} -> {share['rings']:.2f}")


if __name__ == "__main__":
    main()
