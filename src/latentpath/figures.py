"""Figures of movies and of their ground truth."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import matplotlib
import matplotlib.colors
import matplotlib.patches
import numpy as np
import pandas as pd
from matplotlib.axes import Axes
from matplotlib.figure import Figure

if TYPE_CHECKING:
    from latentpath.pipeline import PfmRun, StemRun
    from latentpath.synth.pfm import SynthPFM
    from latentpath.synth.stem import SynthSTEM

RING_COLOURS = {5: "#e41a1c", 6: "#4daf4a", 7: "#377eb8", 8: "#984ea3"}


def _frames_to_show(n_frames: int) -> list[int]:
    return sorted({0, n_frames // 2, n_frames - 1})


def _subplots(*args, figsize: tuple[float, float], **kwargs) -> tuple[Figure, object]:
    """A figure and its axes, made without pyplot: no global figure state, and the
    backend of a notebook or a desktop session is left as the user set it."""
    fig = Figure(figsize=figsize)
    return fig, fig.subplots(*args, **kwargs)


def _save(fig: Figure, path: str | Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110, bbox_inches="tight")
    return path


def figure_stem_truth(result: SynthSTEM, path: str | Path) -> Path:
    """First, middle and last frame with the true atoms and rings, and disorder over time.

    Atoms are dots (cyan C, red Si); ring centres are crosses coloured by ring size
    (5 red, 6 green, 7 blue, 8 purple).
    """
    frames = _frames_to_show(len(result.movie))
    fig, axes = _subplots(1, len(frames) + 1, figsize=(5 * (len(frames) + 1), 5))
    for ax, t in zip(axes, frames, strict=False):
        ax.imshow(result.movie[t], cmap="gray")
        atoms = result.atoms[(result.atoms.frame == t) & result.atoms.in_image]
        si = atoms.species == "Si"
        ax.scatter(atoms.x[~si], atoms.y[~si], s=3, c="c", lw=0)
        ax.scatter(atoms.x[si], atoms.y[si], s=25, c="r", lw=0)
        rings = result.rings[result.rings.frame == t]
        for size, colour in RING_COLOURS.items():
            sel = rings[rings["size"] == size]
            ax.scatter(sel.x, sel.y, s=14, c=colour, marker="x", lw=1)
        ax.set_title(f"frame {t}")
        ax.set_axis_off()
    ax = axes[-1]
    fr = result.frames
    ax.plot(fr.frame, fr.hole_fraction, label="holes")
    ax.plot(fr.frame, fr.amorphous_fraction, label="amorphous")
    ax.plot(fr.frame, fr.disorder_fraction, label="holes + amorphous", c="k")
    ax.set_xlabel("frame")
    ax.set_ylabel("fraction of the field of view")
    ax.set_ylim(0, 1)
    ax.legend(loc="upper left")
    ax.set_title(f"{result.pixel_size_A:.3g} A/px, rings: " + ", ".join(
        f"{k}" for k in RING_COLOURS))
    return _save(fig, path)


def figure_pfm_truth(result: SynthPFM, path: str | Path) -> Path:
    """Phase of the first, middle and last frame with the true walls, amplitude, and
    the switched fraction over time."""
    frames = _frames_to_show(len(result.phase))
    fig, axes = _subplots(1, len(frames) + 2, figsize=(4.5 * (len(frames) + 2), 4.5))
    for ax, t in zip(axes, frames, strict=False):
        ax.imshow(result.phase[t], cmap="RdBu_r")
        wy, wx = np.nonzero(result.walls[t])
        ax.scatter(wx, wy, s=0.5, c="k", lw=0)
        ax.set_title(f"phase, frame {t}")
        ax.set_axis_off()
    axes[-2].imshow(result.amplitude[frames[-1]], cmap="viridis")
    axes[-2].set_title(f"amplitude, frame {frames[-1]}")
    axes[-2].set_axis_off()
    ax = axes[-1]
    ax.plot(result.frames.frame, result.frames.switched_fraction, c="k")
    ax.set_xlabel("frame")
    ax.set_ylabel("switched fraction")
    ax.set_ylim(0, 1)
    return _save(fig, path)


def figure_atoms(image: np.ndarray, atoms, path: str | Path, *, title: str = "") -> Path:
    """One frame with its atoms: small cyan dots for C, larger red dots for Si, other
    species in further colours."""
    fig, ax = _subplots(figsize=(8, 8))
    ax.imshow(image, cmap="gray")
    colours = {"C": ("c", 4), "Si": ("r", 30)}
    spare = iter(["#ff7f00", "#ffff33", "#a65628", "#f781bf"])
    for species, group in atoms.groupby("species"):
        colour, size = colours.get(species, (next(spare, "w"), 16))
        ax.scatter(group.x, group.y, s=size, c=colour, lw=0, label=f"{species} ({len(group)})")
    if len(atoms):
        ax.legend(loc="upper right", markerscale=2)
    ax.set_title(title)
    ax.set_axis_off()
    return _save(fig, path)


def _ring_patches(ax: Axes, atoms, rings) -> None:
    """Rings of one frame as translucent polygons coloured by size."""
    from matplotlib.collections import PolyCollection

    yx = atoms[["y", "x"]]
    polygons, colours = [], []
    for members, size in zip(rings.members, rings["size"], strict=True):
        pts = yx.loc[list(members)].to_numpy()
        polygons.append(pts[:, ::-1])
        colours.append(RING_COLOURS.get(int(size), "#999999"))
    ax.add_collection(PolyCollection(polygons, facecolors=colours, edgecolors="none",
                                     alpha=0.35))


def figure_run_graph(frames: np.ndarray, atoms, rings, path: str | Path) -> Path:
    """First, middle and last frame with the found atoms and their rings by size."""
    shown = _frames_to_show(len(frames))
    fig, axes = _subplots(1, len(shown), figsize=(5.5 * len(shown), 5.8), squeeze=False)
    for ax, t in zip(axes[0], shown, strict=True):
        ax.imshow(frames[t], cmap="gray")
        fa, fr = atoms[atoms.frame == t], rings[rings.frame == t]
        _ring_patches(ax, fa, fr)
        for species, colour, size in (("C", "c", 2), ("Si", "r", 14)):
            sel = fa[fa.species == species]
            ax.scatter(sel.x, sel.y, s=size, c=colour, lw=0)
        sizes = fr["size"].value_counts().sort_index()
        ax.set_title(f"frame {t}: {len(fa)} atoms; rings "
                     + ", ".join(f"{k}:{v}" for k, v in sizes.items()), fontsize=9)
        ax.set_axis_off()
    handles = [matplotlib.patches.Rectangle((0, 0), 1, 1, color=c, alpha=0.5)
               for c in RING_COLOURS.values()]
    fig.legend(handles, [f"{k}-ring" for k in RING_COLOURS], loc="lower center", ncol=4)
    return _save(fig, path)


def figure_manifold(images: np.ndarray, z1: np.ndarray, z2: np.ndarray, path: str | Path, *,
                    title: str = "") -> Path:
    """The decoded manifold: image at (z1, z2) on a grid, z2 upwards."""
    from latentpath.latent import mosaic

    tiles = mosaic(images)
    fig, ax = _subplots(figsize=(8, 8))
    ax.imshow(tiles, cmap="viridis", extent=(z1[0], z1[-1], z2[0], z2[-1]), aspect="auto")
    ax.set_xlabel("z1")
    ax.set_ylabel("z2")
    ax.set_title(title)
    return _save(fig, path)


def chemical_space_rgb(counts: np.ndarray, kind: str) -> np.ndarray:
    """RGB image of a map's 5-, 6- and 7-ring counts (red, green, blue); 8-rings add
    to red and blue (purple); unphysical points are black."""
    full = 3.0 if kind == "atom" else 1.0
    c = np.clip(np.asarray(counts, np.float32), 0, None) / full
    rgb = np.stack([c[..., 0] + 0.6 * c[..., 3], c[..., 1], c[..., 2] + 0.6 * c[..., 3]], -1)
    rgb = np.clip(rgb, 0, 1)
    # Points without rings (edges, isolated atoms) grey, to tell them from unphysical.
    none = (np.asarray(counts) == 0).all(-1)
    rgb[none] = 0.35
    return rgb


def figure_chemical_space(space, latents, path: str | Path, *, title: str = "") -> Path:
    """The chemical-space map as an RGB image of ring counts, beside the map of its
    most common structures, with the encoded windows on top."""
    from latentpath.graph import RING_SIZES, ring_label

    extent = (space.z1[0], space.z1[-1], space.z2[0], space.z2[-1])
    fig, axes = _subplots(1, 2, figsize=(15, 6.8))
    axes[0].imshow(chemical_space_rgb(space.counts, space.kind), origin="lower",
                   extent=extent, aspect="auto", interpolation="nearest")
    axes[0].set_title("rings at the centre: 5 red, 6 green, 7 blue, 8 purple; none grey; "
                      "unphysical black", fontsize=9)
    classes = space.classes()
    top = classes.head(9)
    flat = space.counts.reshape(-1, len(RING_SIZES))
    code = np.full(len(flat), len(top), np.int64)
    for k, row in enumerate(top[[f"n{s}" for s in RING_SIZES]].to_numpy()):
        code[(flat == row).all(1)] = k
    palette = iter(matplotlib.colormaps["tab10"].colors)
    fixed = {"unphysical": "black", "no ring": "#777777"}
    colours = [fixed.get(name) or next(palette) for name in top.structure]
    colours.append("#dddddd")
    cmap = matplotlib.colors.ListedColormap(colours)
    axes[1].imshow(code.reshape(space.counts.shape[:2]), origin="lower", extent=extent,
                   aspect="auto", cmap=cmap, vmin=-0.5, vmax=len(top) + 0.5,
                   interpolation="nearest")
    handles = [matplotlib.patches.Rectangle((0, 0), 1, 1, color=c) for c in colours]
    names = [f"{ring_label(r)} ({s:.0%})" for r, s in
             zip(top[[f"n{s}" for s in RING_SIZES]].to_numpy(), top.share, strict=True)]
    axes[1].legend(handles, [*names, "other"], loc="center left", bbox_to_anchor=(1.01, 0.5),
                   fontsize=8)
    axes[1].set_title("structures", fontsize=9)
    for ax in axes:
        ax.scatter(latents.z1, latents.z2, s=1, c="w", alpha=0.4, lw=0)
        ax.set_xlim(extent[:2])
        ax.set_ylim(extent[2:])
        ax.set_xlabel("z1")
        ax.set_ylabel("z2")
    fig.suptitle(title)
    return _save(fig, path)


def figure_latents(latents, labels, path: str | Path, *, title: str = "") -> Path:
    """Encoded windows in the (z1, z2) plane, coloured by the structure the bond graph
    of the found atoms gives them (the most common eight named)."""
    labels = np.asarray(labels).astype(str)
    counts = {k: v for k, v in zip(*np.unique(labels, return_counts=True), strict=True)}
    top = sorted(counts, key=counts.get, reverse=True)[:8]
    fig, ax = _subplots(figsize=(8, 7))
    other = ~np.isin(labels, top)
    ax.scatter(latents.z1[other], latents.z2[other], s=3, c="#cccccc", lw=0,
               label=f"other ({other.sum()})")
    cmap = matplotlib.colormaps["tab10"]
    for k, name in enumerate(top):
        sel = labels == name
        ax.scatter(latents.z1[sel], latents.z2[sel], s=4, color=cmap(k), lw=0,
                   label=f"{name} ({sel.sum()})")
    ax.legend(markerscale=3, fontsize=8, loc="best")
    ax.set_xlabel("z1")
    ax.set_ylabel("z2")
    ax.set_title(title)
    return _save(fig, path)


def figure_encoded(frame: np.ndarray, windows, path: str | Path, *, radius_px: float,
                   title: str = "") -> Path:
    """A frame beside its windows' z1 and z2 drawn at their centres."""
    from latentpath.latent import encoded_image

    fig, axes = _subplots(1, 3, figsize=(16, 5.6))
    axes[0].imshow(frame, cmap="gray")
    axes[0].set_title("frame")
    for ax, name in zip(axes[1:], ("z1", "z2"), strict=True):
        ax.imshow(frame, cmap="gray", alpha=0.5)
        img = ax.imshow(encoded_image(frame.shape, windows, windows[name].to_numpy(),
                                      radius_px=radius_px), cmap="coolwarm")
        fig.colorbar(img, ax=ax, fraction=0.046)
        ax.set_title(name)
    for ax in axes:
        ax.set_axis_off()
    fig.suptitle(title)
    return _save(fig, path)


def _tracks_to_show(tracks, transitions, n: int) -> list:
    """The tracks with the most changes of state, then the longest."""
    changes = transitions.groupby("track").size()
    length = tracks.groupby("track").size()
    order = (pd.DataFrame({"changes": changes.reindex(length.index, fill_value=0),
                           "length": length})
             .sort_values(["changes", "length"], ascending=False, kind="stable"))
    return order.index[:n].tolist()


def figure_track_paths(space, tracks, transitions, path: str | Path, *, n_tracks: int = 6
                       ) -> Path:
    """Latent paths of the tracked atoms over the chemical-space map, coloured by frame
    (the method's Figure 5b), one panel per track."""
    shown = _tracks_to_show(tracks, transitions, n_tracks)
    extent = (space.z1[0], space.z1[-1], space.z2[0], space.z2[-1])
    cols = min(3, max(len(shown), 1))
    rows = max(1, -(-len(shown) // cols))
    fig, axes = _subplots(rows, cols, figsize=(5.2 * cols, 4.6 * rows), squeeze=False)
    frames = tracks["frame"]
    norm = matplotlib.colors.Normalize(frames.min(), frames.max())
    for ax in axes.ravel():
        ax.set_axis_off()
    for ax, track in zip(axes.ravel(), shown, strict=False):
        ax.set_axis_on()
        ax.imshow(chemical_space_rgb(space.counts, space.kind), origin="lower", extent=extent,
                  aspect="auto", interpolation="nearest", alpha=0.55)
        one = tracks[tracks["track"] == track]
        ax.plot(one["z1"], one["z2"], "-", color="w", lw=0.8)
        points = ax.scatter(one["z1"], one["z2"], c=one["frame"], cmap="viridis", norm=norm,
                            s=18, edgecolors="k", linewidths=0.3, zorder=3)
        n = int((transitions["track"] == track).sum())
        species = one["species"].iloc[0]
        ax.set_title(f"{species} track {track}: frames {one['frame'].min()}-"
                     f"{one['frame'].max()}, {n} changes", fontsize=9)
        ax.set_xlabel("z1")
        ax.set_ylabel("z2")
        ax.set_xlim(extent[:2])
        ax.set_ylim(extent[2:])
    if shown:
        fig.colorbar(points, ax=axes.ravel().tolist(), fraction=0.02, label="frame")
    fig.suptitle("latent paths over the chemical-space map (5 red, 6 green, 7 blue)")
    return _save(fig, path)


def figure_track_latents(tracks, transitions, path: str | Path, *, n_tracks: int = 6) -> Path:
    """z1, z2 and the position (x + y, pixels) of tracked atoms against time, with their
    changes of chemical state marked (the method's Figure 5a)."""
    shown = _tracks_to_show(tracks, transitions, n_tracks)
    fig, axes = _subplots(max(len(shown), 1), 1, figsize=(11, 2.3 * max(len(shown), 1)),
                             squeeze=False, sharex=True)
    for ax, track in zip(axes[:, 0], shown, strict=False):
        one = tracks[tracks["track"] == track]
        ax.plot(one["frame"], one["z1"], ".-", label="z1")
        ax.plot(one["frame"], one["z2"], ".-", label="z2")
        ax.set_ylabel(f"track {track}")
        position = ax.twinx()
        position.plot(one["frame"], one["x"] + one["y"], color="0.6", lw=1)
        position.set_ylabel("x + y (px)", color="0.5", fontsize=8)
        for change in transitions[transitions["track"] == track].itertuples():
            ax.axvline(change.frame, color="k", lw=0.6, ls=":")
            ax.annotate(change.to_state, (change.frame, 1), xycoords=("data", "axes fraction"),
                        rotation=90, fontsize=6, va="top", ha="right")
        ax.legend(fontsize=7, loc="lower left")
    axes[-1, 0].set_xlabel("frame")
    fig.suptitle("latents of tracked atoms against time; dotted: change of chemical state")
    return _save(fig, path)


def figure_transition_gallery(tracks, windows: np.ndarray, transitions, path: str | Path, *,
                              n_tracks: int = 4, max_changes: int = 7) -> Path:
    """The window of a tracked atom at its first frame and at each change of state (the
    method's Figure 5c), one row per track; windows cut by the frame's edge are marked."""
    shown = _tracks_to_show(tracks, transitions, n_tracks)
    position = pd.Series(np.arange(len(tracks)), index=pd.MultiIndex.from_frame(
        tracks[["track", "frame"]]))
    rows = []
    for track in shown:
        one = tracks[tracks["track"] == track]
        known = one[one["state"].notna()]
        start = known.iloc[0] if len(known) else one.iloc[0]
        panels = [(int(start["frame"]), start["state"])]
        changes = transitions[transitions["track"] == track].head(max_changes)
        panels += [(int(c.frame), c.to_state) for c in changes.itertuples()]
        rows.append((track, panels))
    cols = max([len(p) for _, p in rows], default=1)
    fig, axes = _subplots(max(len(rows), 1), cols, figsize=(1.9 * cols, 2.1 * max(len(rows), 1)),
                             squeeze=False)
    for ax in axes.ravel():
        ax.set_axis_off()
    for r, (track, panels) in enumerate(rows):
        for c, (frame, state) in enumerate(panels):
            row = position[(track, frame)]
            axes[r, c].imshow(windows[row], cmap="gray", vmin=0, vmax=1)
            edge = "" if tracks["window_inside"].iloc[row] else ", at edge"
            axes[r, c].set_title(f"track {track}, frame {frame}\n{state}{edge}", fontsize=7)
    fig.suptitle("tracked atoms at their first frame and at each change of chemical state")
    return _save(fig, path)


def stem_run_figures(frames: np.ndarray, run: StemRun, folder: str | Path) -> list[Path]:
    """All figures of a STEM run (:class:`~latentpath.pipeline.StemRun`) over its
    movie's ``frames``, into ``folder``."""
    from latentpath.graph import ring_label

    folder = Path(folder)
    atoms, rings = run.atoms, run.rings
    paths = [figure_run_graph(frames, atoms, rings, folder / "graph.png")]
    for kind, found in run.kinds.items():
        latents, space = found.latents, found.map
        m1, m2, images = found.manifold
        what = "atom-centred" if kind == "atom" else "hollow-site-centred"
        paths.append(figure_manifold(images, m1, m2, folder / f"{kind}_manifold.png",
                                     title=f"{what} windows: decoded latent manifold"))
        paths.append(figure_chemical_space(space, latents, folder / f"{kind}_chemical_space.png",
                                           title=f"{what} windows: chemical-space map"))
        if kind == "atom":
            counts = atoms.loc[latents.atom, ["n5", "n6", "n7", "n8"]].to_numpy()
            graph = [ring_label(c) for c in counts]
        else:
            graph = [f"{s}-ring" for s in latents["size"]]
        paths.append(figure_latents(latents, graph, folder / f"{kind}_latents.png",
                                    title=f"{what} windows, coloured by the bond graph"))
        t = int(latents.frame.iloc[0])
        paths.append(figure_encoded(frames[t], latents[latents.frame == t],
                                    folder / f"{kind}_encoded.png",
                                    radius_px=0.7 / run.pixel_size_A,
                                    title=f"{what} windows of frame {t}, encoded"))
    tracks, transitions = run.tracks, run.transitions
    if len(tracks):
        paths.append(figure_track_paths(run.kinds["atom"].map, tracks, transitions,
                                        folder / "track_paths.png"))
        paths.append(figure_track_latents(tracks, transitions, folder / "track_latents.png"))
        paths.append(figure_transition_gallery(tracks, run.track_windows, transitions,
                                               folder / "transitions.png"))
    return paths


def figure_pfm_walls(signal: np.ndarray, curves: pd.DataFrame, path: str | Path) -> Path:
    """Frames of the aligned polarisation signal with the found walls, one colour per
    curve."""
    shown = _frames_to_show(len(signal))
    fig, axes = _subplots(1, len(shown), figsize=(5 * len(shown), 5), squeeze=False)
    for ax, t in zip(axes[0], shown, strict=True):
        ax.imshow(signal[t], cmap="gray", vmin=-1, vmax=1)
        frame = curves[curves.frame == t]
        ax.scatter(frame.x, frame.y, c=frame.wall % 10, cmap="tab10", s=1, vmin=0, vmax=9)
        ax.set_title(f"frame {t}: {frame.wall.nunique()} walls")
        ax.axis("off")
    return _save(fig, path)


def figure_pfm_manifold(images: np.ndarray, z1: np.ndarray, z2: np.ndarray,
                        path: str | Path) -> Path:
    """The decoded manifold; for time-delayed windows the two frames side by side."""
    from latentpath.latent import mosaic

    channels = [images] if images.ndim == 4 else [images[:, :, 0], images[:, :, -1]]
    titles = ["decoded windows"] if images.ndim == 4 else ["frame t", "frame t + d"]
    fig, axes = _subplots(1, len(channels), figsize=(7 * len(channels), 7), squeeze=False)
    for ax, chan, title in zip(axes[0], channels, titles, strict=True):
        ax.imshow(mosaic(chan), cmap="RdBu_r", vmin=-1, vmax=1,
                  extent=(z1[0], z1[-1], z2[0], z2[-1]), aspect="auto")
        ax.set(xlabel="z1", ylabel="z2", title=title)
    return _save(fig, path)


def figure_pfm_physics(maps: dict, latents: pd.DataFrame, path: str | Path) -> Path:
    """Switching degree, wall count and wall curvature over the latent plane (the
    method's Figure 7b-d), with the encoded windows as dots."""
    extent = (maps["z1"][0], maps["z1"][-1], maps["z2"][0], maps["z2"][-1])
    limit = np.nanpercentile(np.abs(maps["curvature"]), 95) if np.isfinite(
        maps["curvature"]).any() else 1.0
    panels = [("switching", "switching degree D", "RdBu_r", None),
              ("walls", "wall count", "viridis", None),
              ("curvature", "wall curvature (1/px)", "PiYG", limit)]
    fig, axes = _subplots(1, 3, figsize=(18, 5.5))
    for ax, (name, title, cmap, lim) in zip(axes, panels, strict=True):
        values = maps[name].astype(float)
        if name == "switching":
            lim = max(float(np.nanmax(np.abs(values))), 1e-6)
        shown = ax.imshow(values, origin="lower", extent=extent, aspect="auto", cmap=cmap,
                          vmin=-lim if lim else None, vmax=lim)
        ax.scatter(latents.z1, latents.z2, s=1, c="k", alpha=0.15)
        ax.set(xlabel="z1", ylabel="z2", title=title)
        fig.colorbar(shown, ax=ax, shrink=0.8)
    return _save(fig, path)


def figure_pfm_history(history: pd.DataFrame, wall_latents: pd.DataFrame,
                       path: str | Path) -> Path:
    """The longest-lived wall: its pixels through the movie coloured by the latents of
    their windows (Figure 7a), and its curvature's mean and dispersion per frame
    (Figure 7e, f)."""
    fig, axes = _subplots(1, 4, figsize=(22, 5))
    for ax, name in zip(axes[:2], ("z1", "z2"), strict=True):
        if len(wall_latents):
            shown = ax.scatter(wall_latents.x, wall_latents.y, c=wall_latents[name], s=2,
                               cmap="jet")
            fig.colorbar(shown, ax=ax, shrink=0.8)
        ax.invert_yaxis()
        ax.set_aspect("equal")
        ax.set(xlabel="x (px)", ylabel="y (px)", title=f"followed wall, coloured by {name}")
    axes[2].plot(history.frame, history.curvature_mean, "o-")
    axes[2].axhline(0, color="grey", lw=0.5)
    axes[2].set(xlabel="frame", ylabel="mean curvature (1/px)", title="curvature along the wall")
    axes[3].plot(history.frame, history.curvature_std, "o-", color="C3")
    axes[3].set(xlabel="frame", ylabel="curvature dispersion (1/px)",
                title="curvature dispersion along the wall")
    return _save(fig, path)


def figure_pfm_latents(latents: pd.DataFrame, path: str | Path) -> Path:
    """The encoded windows in the latent plane, coloured by their own switching degree
    and wall curvature."""
    fig, axes = _subplots(1, 2, figsize=(12, 5))
    for ax, name, cmap in zip(axes, ("switching", "curvature"), ("RdBu_r", "PiYG"),
                              strict=True):
        values = latents[name].to_numpy(float)
        lim = np.nanpercentile(np.abs(values), 95) if np.isfinite(values).any() else 1.0
        shown = ax.scatter(latents.z1, latents.z2, c=values, s=3, cmap=cmap, vmin=-lim,
                           vmax=lim)
        fig.colorbar(shown, ax=ax, shrink=0.8)
        ax.set(xlabel="z1", ylabel="z2", title=f"windows coloured by their {name}")
    return _save(fig, path)


def pfm_run_figures(run: PfmRun, folder: str | Path) -> list[Path]:
    """All figures of a PFM run (:class:`~latentpath.pipeline.PfmRun`, run now or read
    back), into ``folder``."""
    folder = Path(folder)
    m1, m2, images = run.manifold
    return [figure_pfm_walls(run.signal, run.curves, folder / "walls.png"),
            figure_pfm_manifold(images, m1, m2, folder / "manifold.png"),
            figure_pfm_physics(run.maps, run.latents, folder / "physics_maps.png"),
            figure_pfm_latents(run.latents, folder / "latents.png"),
            figure_pfm_history(run.wall_history, run.wall_latents,
                               folder / "wall_history.png")]
