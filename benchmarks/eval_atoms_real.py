"""Atom finding on small crops of the shared real graphene images, found against
expected: none refused, the pixel size estimated on a few rings, the atoms and the Si
dopants of the full image found again.

    python benchmarks/eval_atoms_real.py [--figure crops.png]

The crops (``tests/helpers/real_crops.py``) are 64 to 128 px and 7 to 15 A across,
binned from the full images for coarser samplings, without a pixel size. The expected
atoms of a crop are those found on its full image (checked by eye, docs/atoms.md), in
the crop's pixels; atoms within 1.5 A of the crop's edge are matched but not scored
(the finder drops those within 1 A, and an atom 1.0 A from the edge in one table may be
0.98 A in the other). Printed per crop: the pixel size estimated and the one expected, the
recall and precision of the atoms, the C/Si accuracy of the matched atoms, and the
expected Si found as Si.
"""

from __future__ import annotations

import argparse
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
from common import machine_line  # benchmarks/common.py, beside this script

from latentpath.atoms import find_atoms
from latentpath.atoms.match import match_atoms

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "helpers"))
import real_crops  # the crops are the tests' fixtures

MATCH_A = 0.5
SCORED_A = 1.5
"""Atoms nearer the crop's edge than this are matched but not scored (the finder drops
those within 1 A)."""


def _inside(atoms: pd.DataFrame, size: int, margin_px: float) -> np.ndarray:
    return ((atoms.y >= margin_px) & (atoms.y <= size - 1 - margin_px)
            & (atoms.x >= margin_px) & (atoms.x <= size - 1 - margin_px)).to_numpy()


def reference_atoms(image: str, bin_: int) -> pd.DataFrame:
    """The full image's atoms, in the pixels of its binned version."""
    atoms = find_atoms(real_crops.full_image(image), device="cpu", keep_border=True)
    return atoms.assign(y=(atoms.y + 0.5) / bin_ - 0.5, x=(atoms.x + 0.5) / bin_ - 0.5)


def score_crop(crop: real_crops.Crop, reference: pd.DataFrame) -> dict:
    """Found against expected on one crop."""
    expected_px = real_crops.pixel_size_A(crop)
    row = {"crop": crop.name, "px": crop.size, "field_A": round(crop.size * expected_px, 1),
           "expected_A": expected_px}
    began = time.perf_counter()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            found = find_atoms(real_crops.cut(crop), device="cpu")
        except ValueError as err:
            return {**row, "refused": str(err)}
    row["seconds"] = time.perf_counter() - began
    px = found.attrs["pixel_size_A"]
    ref = reference.assign(y=reference.y - crop.top, x=reference.x - crop.left)
    ref = ref[_inside(ref, crop.size, 0)].reset_index(drop=True)
    pairs = match_atoms(found, ref, MATCH_A / px)
    # counted away from the band where the finder's border rule cuts: an atom 1.0 A from
    # the edge in one table and 0.98 A in the other is neither missed nor extra
    counted_ref = _inside(ref, crop.size, SCORED_A / px)
    counted_found = _inside(found, crop.size, SCORED_A / px)
    matched_ref = ref.index.isin(pairs.truth)
    matched_found = found.index.isin(pairs.found)
    same = (found.loc[pairs.found, "species"].to_numpy()
            == ref.loc[pairs.truth, "species"].to_numpy())
    si_found = 0
    for y, x in crop.si:
        near = np.hypot(found.y - y, found.x - x) <= MATCH_A / px
        si_found += bool((found.species[near] == "Si").any())
    row.update({
        "found_A": px, "confidence": found.attrs["pixel_size"]["confidence"],
        "padded": found.attrs["padded_to_px"] is not None,
        "expected": int(counted_ref.sum()), "found": int(counted_found.sum()),
        "recall": float(matched_ref[counted_ref].mean()),
        "precision": float(matched_found[counted_found].mean()),
        "c_si_accuracy": float(same.mean()) if len(same) else np.nan,
        "matched": int(matched_ref[counted_ref].sum()),
        "kept": int(matched_found[counted_found].sum()), "same_species": int(same.sum()),
        "pairs": len(same), "si_found": si_found, "si_expected": len(crop.si),
        "si": f"{si_found}/{len(crop.si)}",
        "warnings": len(caught),
    })
    return row


def figure(rows: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(2, (len(real_crops.CROPS) + 1) // 2, figsize=(20, 7))
    for ax, crop, row in zip(axes.ravel(), real_crops.CROPS, rows, strict=False):
        ax.imshow(real_crops.cut(crop), cmap="gray")
        found = row.get("atoms")
        if found is not None:
            c = found.species == "C"
            ax.plot(found.x[c], found.y[c], ".", color="c", ms=3)
            ax.plot(found.x[~c], found.y[~c], "o", color="r", ms=5)
        for y, x in crop.si:
            ax.plot(x, y, "o", mfc="none", mec="y", ms=12)
        ax.set_title(f"{crop.name}\n{row.get('found_A', float('nan')):.3f} A/px, "
                     f"Si {row.get('si', '-')}", fontsize=8)
        ax.axis("off")
    fig.tight_layout()
    fig.savefig(path, dpi=90)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--figure", type=Path, help="draw the crops and their atoms")
    args = parser.parse_args()
    print(machine_line())
    references: dict[tuple[str, int], pd.DataFrame] = {}
    rows = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for crop in real_crops.CROPS:
            key = (crop.image, crop.bin)
            if key not in references:
                references[key] = reference_atoms(crop.image, crop.bin)
            row = score_crop(crop, references[key])
            if args.figure and "refused" not in row:
                row["atoms"] = find_atoms(real_crops.cut(crop), device="cpu")
            rows.append(row)
    table = pd.DataFrame([{k: v for k, v in r.items() if k != "atoms"} for r in rows])
    shown = [c for c in table.columns if c not in
             ("matched", "kept", "same_species", "pairs", "si_found", "si_expected")]
    with pd.option_context("display.width", 200, "display.max_columns", 30,
                           "display.float_format", "{:.3f}".format):
        print(table[shown].to_string(index=False))
    done = table[table.get("refused").isna()] if "refused" in table else table
    print(f"pooled over the crops: recall {done.matched.sum() / done.expected.sum():.3f}, "
          f"precision {done.kept.sum() / done.found.sum():.3f}, C/Si accuracy "
          f"{done.same_species.sum() / done.pairs.sum():.3f}, Si recall "
          f"{done.si_found.sum()}/{done.si_expected.sum()}")
    print(f"refused {len(table) - len(done)} of {len(table)}; recall "
          f"{done.recall.min():.3f}-{done.recall.max():.3f}, precision "
          f"{done.precision.min():.3f}-{done.precision.max():.3f}, C/Si accuracy "
          f"{done.c_si_accuracy.min():.3f}-{done.c_si_accuracy.max():.3f}; pixel size "
          f"within {np.max(np.abs(done.found_A / done.expected_A - 1)):.1%} of the "
          "expected")
    if args.figure:
        figure(rows, args.figure)
        print(f"figure: {args.figure}")


if __name__ == "__main__":
    main()
