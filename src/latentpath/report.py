"""``RUN/report.html``: one self-contained page of a finished run.

The page holds the run's figures, its tables and settings, and an explorer of each
latent space: a scatter of the encoded windows where hovering or clicking a point shows
its window, the skip-rVAE's reconstruction of it and its place on its frame. Images are
embedded as data URLs and the script and style are inline, so the page works offline,
sent by mail or opened from a USB stick.
"""

from __future__ import annotations

import base64
import html
import io
import json
import re
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from latentpath import rundir
from latentpath.io import write_text

if TYPE_CHECKING:
    from latentpath.discovery import DiscoveryScore
    from latentpath.pipeline import PfmRun, StemRun

#: most windows shown in one explorer (a seeded sample): the page stays a few MB
MAX_POINTS = 1000
#: longest side of the frames shown beside the explorer, pixels
FRAME_PX = 384
#: colours of the structure classes of a chemical-space map (Tableau 10), gray for the rest
PALETTE = ["#4e79a7", "#f28e2b", "#e15759", "#76b7b2", "#59a14f", "#edc948", "#b07aa1",
           "#ff9da7", "#9c755f", "#17becf"]

FIGURE_CAPTIONS = {
    "graph": "The movie with the atoms found and the rings of their bond graph.",
    "atom_manifold": "Atom-centred windows: images decoded over the latent plane.",
    "atom_chemical_space": "Atom-centred windows: the chemical-space map (rings adjacent "
                           "to the centre of each decoded image) with the encoded windows.",
    "atom_latents": "Atom-centred windows in latent space, coloured by their bond graph.",
    "atom_encoded": "Atom-centred windows of one frame, coloured by their latent values.",
    "hollow_manifold": "Hollow-site windows: images decoded over the latent plane.",
    "hollow_chemical_space": "Hollow-site windows: the chemical-space map.",
    "hollow_latents": "Hollow-site windows in latent space, coloured by their ring's size.",
    "hollow_encoded": "Hollow-site windows of one frame, coloured by their latent values.",
    "track_paths": "Tracked atoms: their paths over the chemical-space map.",
    "track_latents": "Tracked atoms: latent values against time, changes of state marked.",
    "transitions": "Windows before and after each change of chemical state.",
    "walls": "Domain walls found on the registered frames.",
    "manifold": "Wall windows: images decoded over the latent plane (frames t and t + d).",
    "physics_maps": "Switching degree, wall count and wall curvature over the latent plane "
                    "(the method's Figure 7b-d).",
    "latents": "Wall windows in latent space.",
    "wall_history": "The longest-lived wall: coloured by its windows' latents, and its "
                    "curvature's mean and dispersion through the movie (Figure 7a, e, f).",
}


def _png(image: np.ndarray) -> str:
    """A data URL of a grayscale image, scaled to its own range."""
    from PIL import Image

    data = np.asarray(image, np.float64)
    low, high = np.nanpercentile(data, [0.5, 99.5]) if data.size else (0.0, 1.0)
    scaled = np.clip((data - low) / (high - low if high > low else 1.0), 0, 1)
    buffer = io.BytesIO()
    Image.fromarray((scaled * 255).astype(np.uint8)).save(buffer, format="PNG", optimize=True)
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode()


def _frame_jpeg(frame: np.ndarray, side_px: int) -> str:
    """A data URL of a frame, shrunk to ``side_px`` on its longer side, as JPEG."""
    from PIL import Image

    data = np.asarray(frame, np.float64)
    low, high = np.percentile(data, [0.5, 99.5])
    scaled = np.clip((data - low) / (high - low if high > low else 1.0), 0, 1)
    image = Image.fromarray((scaled * 255).astype(np.uint8))
    scale = side_px / max(image.size)
    if scale < 1:
        image = image.resize((round(image.width * scale), round(image.height * scale)),
                             Image.Resampling.LANCZOS)
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", quality=85)
    return "data:image/jpeg;base64," + base64.b64encode(buffer.getvalue()).decode()


def _sprite(cells: np.ndarray) -> tuple[str, int]:
    """Windows (N, w, w), each scaled to its own range, tiled into one PNG; and the
    number of columns."""
    n, w = len(cells), cells.shape[-1]
    cols = max(1, int(np.ceil(np.sqrt(n))))
    rows = max(1, int(np.ceil(n / cols)))
    flat = cells.reshape(n, -1).astype(np.float64)
    low, high = flat.min(1, keepdims=True), flat.max(1, keepdims=True)
    flat = (flat - low) / np.where(high > low, high - low, 1.0)
    sheet = np.zeros((rows * w, cols * w))
    for i, cell in enumerate(flat.reshape(n, w, w)):
        r, c = divmod(i, cols)
        sheet[r * w:(r + 1) * w, c * w:(c + 1) * w] = cell
    return _png(sheet), cols


def explorer_data(name: str, title: str, windows: np.ndarray, latents: pd.DataFrame,
                  model, *, window_px: float, colour: str, max_points: int = MAX_POINTS,
                  seed: int = 0) -> dict:
    """What one latent-space explorer of the page shows.

    Parameters
    ----------
    name, title : str
        Identifier and heading.
    windows : ndarray (N, w, w) or (N, c, w, w)
        The encoded windows, row i of ``latents`` being window i.
    latents : DataFrame
        ``frame, y, x`` (pixels of the frames shown), ``z1, z2, ...``, ``angle, dx, dy``
        and the ``colour`` column.
    model : SkipRVAE
        Decodes each shown window's latents (with its angle and shift) into its
        reconstruction.
    window_px : float
        Side of a window, pixels of the frames shown.
    colour : str
        Column colouring the points: text for classes, numbers for a diverging scale.
    max_points : int
        Windows shown at most (a seeded sample of them).
    """
    from latentpath.rvae import decode

    if len(windows) != len(latents):
        raise ValueError(f"{name}: {len(windows)} windows but {len(latents)} latent rows")
    rng = np.random.default_rng(seed)
    keep = np.sort(rng.choice(len(latents), min(max_points, len(latents)), replace=False))
    shown = latents.iloc[keep].reset_index(drop=True)
    cells = np.asarray(windows[keep], np.float32)
    z_names = [f"z{i + 1}" for i in range(model.config.latent_dim)]
    decoded = decode(model, shown[z_names].to_numpy(np.float32),
                     angle=shown["angle"].to_numpy(np.float32),
                     shift=shown[["dx", "dy"]].to_numpy(np.float32))
    if cells.ndim == 3:
        cells, decoded = cells[:, None], decoded[:, None]
    channels = cells.shape[1]
    sprites = {"window": [], "decoded": []}
    cols = 1
    for c in range(channels):
        url, cols = _sprite(cells[:, c])
        sprites["window"].append(url)
        sprites["decoded"].append(_sprite(decoded[:, c])[0])
    values = shown[colour]
    if pd.api.types.is_numeric_dtype(values):
        finite = values.to_numpy(np.float64)
        # a few extreme windows should not wash out the rest of the scale
        limit = (float(np.nanpercentile(np.abs(finite), 98)) if np.isfinite(finite).any()
                 else 1.0)
        scale = {"kind": "value", "name": colour, "limit": limit or 1.0}
        value = [None if not np.isfinite(v) else round(float(v), 4) for v in finite]
    else:
        order = values.value_counts().index.tolist()
        names = [n for n in order if n != "unphysical"][:len(PALETTE)]
        scale = {"kind": "class", "name": colour, "names": names,
                 "colours": PALETTE[:len(names)]}
        value = [str(v) for v in values]
    return {"name": name, "title": title, "channels": channels, "cell": int(cells.shape[-1]),
            "cols": cols, "window_px": float(window_px), "sprites": sprites, "scale": scale,
            "points": {"z1": shown["z1"].round(4).tolist(), "z2": shown["z2"].round(4).tolist(),
                       "frame": shown["frame"].astype(int).tolist(),
                       "y": shown["y"].round(2).tolist(), "x": shown["x"].round(2).tolist(),
                       "value": value}}


def _table(frame: pd.DataFrame, *, max_rows: int = 30) -> str:
    shown = frame.head(max_rows)
    head = "".join(f"<th>{html.escape(str(c))}</th>" for c in shown.columns)
    rows = []
    for row in shown.itertuples(index=False):
        cells = "".join(f"<td>{html.escape(_fmt(v))}</td>" for v in row)
        rows.append(f"<tr>{cells}</tr>")
    more = (f'<p class="note">{len(frame) - max_rows} more rows in the file.</p>'
            if len(frame) > max_rows else "")
    return f"<table><tr>{head}</tr>{''.join(rows)}</table>{more}"


def _fmt(value) -> str:
    if isinstance(value, float | np.floating):
        return f"{value:.4g}"
    return str(value)


def _figure(path: Path) -> str:
    caption = FIGURE_CAPTIONS.get(path.stem, path.stem.replace("_", " "))
    url = "data:image/png;base64," + base64.b64encode(path.read_bytes()).decode()
    return (f'<figure><img src="{url}" alt="{html.escape(path.stem)}">'
            f"<figcaption>{html.escape(caption)}</figcaption></figure>")


def _settings(record: dict) -> pd.DataFrame:
    return pd.DataFrame({"setting": list(record["config"]),
                         "value": [json.dumps(v) for v in record["config"].values()]})


def render_report(*, title: str, summary: list[str], sections: list[tuple[str, str]],
                  frames: list[str], frame_shape: tuple[int, int], explorers: list[dict]
                  ) -> str:
    """The page's HTML from its parts (see :func:`write_report`)."""
    assets = resources.files("latentpath") / "report_assets"
    style = (assets / "report.css").read_text()
    script = (assets / "explorer.js").read_text()
    # "</" would end the script element that holds the data
    payload = json.dumps({"frames": frames, "frame_shape": list(frame_shape),
                          "explorers": explorers}, separators=(",", ":")).replace("</", "<\\/")
    nav = "".join(f'<a href="#{html.escape(anchor(h))}">{html.escape(h)}</a>'
                  for h, _ in sections)
    body = "".join(f'<section id="{html.escape(anchor(h))}"><h2>{html.escape(h)}</h2>{content}'
                   "</section>" for h, content in sections)
    lines = "".join(f"<li>{html.escape(s)}</li>" for s in summary)
    return (f'<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">'
            f'<meta name="viewport" content="width=device-width, initial-scale=1">'
            f'<link rel="icon" href="data:,"><title>{html.escape(title)}</title>'
            f"<style>{style}</style></head><body><header><h1>{html.escape(title)}</h1>"
            f"<ul class=\"summary\">{lines}</ul><nav>{nav}</nav></header><main>{body}</main>"
            f'<script id="report-data" type="application/json">'
            f"{payload}</script><script>{script}</script></body></html>")


def anchor(heading: str) -> str:
    """The id of a section from its heading."""
    return re.sub(r"[^a-z0-9]+", "-", heading.lower()).strip("-")


def _explorer_section(explorer: dict) -> str:
    name = html.escape(explorer["name"])
    return (f'<div class="explorer" data-explorer="{name}">'
            f'<div class="scatter-box"><canvas class="scatter" width="460" height="460" '
            f'aria-label="latent scatter"></canvas><div class="legend"></div></div>'
            f'<div class="detail"><p class="info">Hover over or click a point.</p>'
            f'<div class="cells"></div><canvas class="frame"></canvas></div></div>')


def write_report(run: StemRun | PfmRun, frames: np.ndarray, *,
                 overwrite: bool = True, max_points: int = MAX_POINTS) -> Path:
    """Write ``RUN/report.html`` for a finished run.

    Parameters
    ----------
    run : StemRun or PfmRun
        The run, as its pipeline returns it or ``StemRun.read(dir)`` / ``PfmRun.read(dir)``
        reads it back; its directory's ``config.json`` adds the figures' list and the
        version that made it.
    frames : ndarray (T, H, W)
        The frames the windows were cut from, in the windows' coordinates: the movie
        of a STEM run, the aligned polarisation signal of a PFM run
        (:func:`latentpath.pipeline.run_frames` makes them again for a finished run).
    overwrite : bool
        Replace an existing report (a run's own output, rewritten with the run).
    max_points : int
        Windows shown at most in each explorer.

    Returns
    -------
    Path of the page.
    """
    from latentpath.rvae import load_rvae

    out = run.out
    record = rundir.read_run_record(out)
    stack = np.asarray(frames)
    if stack.ndim == 2:
        stack = stack[None]
    if stack.ndim != 3 or 0 in stack.shape:
        raise ValueError(f"frames must have shape (T, H, W), got {np.shape(frames)}")
    pipeline = record.get("pipeline")
    if pipeline not in ("stem", "pfm"):
        raise ValueError(f"{out}: config.json names no pipeline this report knows "
                         f"({pipeline!r})")
    explorers = []
    if pipeline == "stem":
        kinds = [("atom", "Atom-centred windows"), ("hollow", "Hollow-site windows")]
        latents = {kind: run.kinds[kind].latents for kind, _ in kinds}
        window_px = run.settings.window_A / run.pixel_size_A
        colour = "map_structure"
    else:
        kinds = [("walls", "Wall windows")]
        latents = {"walls": run.latents}
        window_px = run.settings.window_px
        colour = "switching"
    for kind, title in kinds:
        if not len(latents[kind]):
            continue
        windows = np.load(out / kind / rundir.WINDOWS, mmap_mode="r")
        explorers.append(explorer_data(kind, title, windows, latents[kind],
                                       load_rvae(out / kind / rundir.MODEL), window_px=window_px,
                                       colour=colour, max_points=max_points,
                                       seed=run.settings.seed))
    sections = (_stem_sections if pipeline == "stem" else _pfm_sections)(run, latents, explorers)
    figures = [out / f for f in record.get("figures", []) if (out / f).is_file()]
    shown = {stem for _, _, stems in _SECTIONS[pipeline] for stem in stems}
    rest = [f for f in figures if f.stem not in shown]
    if rest:
        sections.append(("More figures", "".join(_figure(f) for f in rest)))
    scores = out / rundir.SCORES
    if scores.is_file():
        sections.append(("Accuracy against the synthetic truth", _scores_table(scores)))
    timings = pd.DataFrame({"step": list(run.timings_s), "seconds": list(run.timings_s.values())})
    sections.append(("Settings", _table(_settings(record), max_rows=200)
                     + f"<p>Movie: <code>{html.escape(json.dumps(run.movie))}"
                     f"</code>; latentpath {html.escape(str(record.get('version')))}; "
                     f"repeat with <code>latentpath {pipeline} --config "
                     f"{html.escape(str(out / rundir.RECORD))}</code>.</p>"
                     + _table(timings)))
    frame_urls = [_frame_jpeg(f, FRAME_PX) for f in stack]
    page = render_report(
        title=f"latentpath {pipeline.upper()} run: {out.name}",
        summary=_summary(run, record, pipeline), sections=sections, frames=frame_urls,
        frame_shape=stack.shape[1:], explorers=explorers)
    path = out / rundir.REPORT
    return write_text(page, path, overwrite=overwrite)


#: each pipeline's sections, in order: heading, the window kind whose explorer closes the
#: section (if any), and the stems of the figures it shows
_SECTIONS = {
    "stem": [("Data and atoms", "", ["graph"]),
             ("Structures: atom-centred windows", "atom",
              ["atom_manifold", "atom_chemical_space", "atom_latents", "atom_encoded"]),
             ("Structures: hollow-site windows", "hollow",
              ["hollow_manifold", "hollow_chemical_space", "hollow_latents", "hollow_encoded"]),
             ("Trajectories and transitions", "", ["track_paths", "track_latents",
                                                   "transitions"])],
    "pfm": [("Data and walls", "", ["walls"]),
            ("Latent space of the wall windows", "walls", ["manifold", "latents"]),
            ("Physics over the latent space", "", ["physics_maps"]),
            ("The longest-lived wall", "", ["wall_history"])],
}


def _grouped(out: Path, pipeline: str, explorers: list[dict]) -> dict[str, str]:
    """Each section's figures, with the explorer of its windows after them."""
    by_name = {e["name"]: e for e in explorers}
    sections = {}
    for heading, kind, stems in _SECTIONS[pipeline]:
        paths = [out / rundir.FIGURES / f"{stem}.png" for stem in stems]
        sections[heading] = "".join(_figure(p) for p in paths if p.is_file())
        if kind in by_name:
            sections[heading] += ("<h3>Explore the latent space</h3>"
                                  + _explorer_section(by_name[kind]))
    return sections


def _structure_shares(labels: pd.Series, kind: str, what: str) -> pd.DataFrame:
    """Share of each structure label, with what a chemist calls it."""
    from latentpath.graph import structure_name

    share = labels.value_counts(normalize=True).rename("share").rename_axis(what)
    table = share.reset_index()
    table.insert(1, "what it is", [structure_name(label, kind) for label in table[what]])
    return table


def _discovered(run: StemRun, latents: dict[str, pd.DataFrame]) -> str:
    """The structures a run found, named as a chemist would: from the latent space of
    each window kind, the tracked atoms' sites, and the found atoms' bond graph."""
    from latentpath.graph import RING_SIZES, ring_label
    from latentpath.tracks import site_name

    parts = ["<p>Named from the ring sizes at each structure's centre. The latent "
             "space's classes are discovered without labels; the bond graph of the found "
             "atoms is the reference they can be checked against.</p>"]
    for kind, what in (("atom", "atom-centred windows"), ("hollow", "hollow-site windows")):
        if kind in latents:
            parts.append(f"<h3>Latent space of the {what}</h3>" + _table(_structure_shares(
                latents[kind].map_structure, kind, "class at the latent point"), max_rows=8))
    states = run.tracks["state"].dropna() if "state" in run.tracks else pd.Series(dtype=str)
    if len(states):
        sites = states.value_counts().rename("atom-frames").rename_axis("state").reset_index()
        sites.insert(1, "site", [site_name(state) for state in sites.state])
        parts.append("<h3>Sites of the tracked atoms</h3>" + _table(sites, max_rows=10))
    atoms = run.atoms[[f"n{k}" for k in RING_SIZES]].to_numpy()
    graph = pd.Series([ring_label(counts) for counts in atoms])
    parts.append("<h3>Bond graph of all found atoms</h3>"
                 + _table(_structure_shares(graph, "atom", "rings of the atom"), max_rows=10))
    return "".join(parts)


def _discovery_scores(run: StemRun) -> list[DiscoveryScore]:
    """The run's discovery scores (:mod:`latentpath.discovery`), atom then hollow; runs
    of earlier versions have none."""
    found = (run.kinds[kind].discovery for kind in ("atom", "hollow"))
    return [score for score in found if score is not None]


def _discovery_table(score: DiscoveryScore) -> pd.DataFrame:
    """Per structure of the reference: windows, 5-NN recall from the latent plane and
    from a 2-D PCA, and the map's agreement."""
    rows = [{"structure": label, "windows": n,
             "recall from (z1, z2)": score.latent_recall.get(label, float("nan")),
             "recall from 2-D PCA": score.pca2_recall.get(label, float("nan")),
             "map names it": score.map_agreement.get(label, float("nan"))}
            for label, n in score.label_counts.items()]
    return pd.DataFrame(rows)


def _discovery_section(run: StemRun) -> str:
    scores = _discovery_scores(run)
    if not scores:
        return ""
    parts = ["<h3>Does the latent space separate the structures?</h3><p>The bond graph "
             "of the found atoms names every window's structure without any truth. Each "
             "structure's recall is the share of its windows whose 5 nearest neighbours "
             "(5-fold) in the plane are mostly of the same structure; the balanced "
             "accuracy is their mean. A 2-D PCA of the same windows is the baseline any "
             "linear method gets; a 10-D PCA shows how much the windows hold.</p>"]
    for score in scores:
        parts.append(f"<p>{html.escape(score.sentence())}</p>"
                     + _table(_discovery_table(score), max_rows=12))
    return "".join(parts)


def _stem_sections(run: StemRun, latents: dict[str, pd.DataFrame], explorers: list[dict]
                   ) -> list[tuple[str, str]]:
    out = run.out
    grouped = {"What the run discovered": _discovered(run, latents) + _discovery_section(run),
               **_grouped(out, "stem", explorers)}
    for heading, kind, _ in _SECTIONS["stem"]:
        if kind not in latents:
            continue
        table = _structure_shares(latents[kind].map_structure, kind,
                                  "structure at the window's latent point")
        grouped[heading] = ("<p>The structures the latent space discovered: the class of "
                            "the chemical-space map at each window's latent point.</p>"
                            + _table(table, max_rows=12) + grouped[heading])
    quality = out / rundir.ATOM_QUALITY
    if quality.is_file():
        grouped["Data and atoms"] += _atom_quality_section(pd.read_csv(quality))
    table = run.transition_counts
    grouped["Trajectories and transitions"] += (
        "<h3>Changes of chemical state</h3>"
        + (_table(table) if len(table) else "<p>No change of state was seen.</p>"))
    return list(grouped.items())


def _atom_quality_section(quality: pd.DataFrame) -> str:
    """The atom finder's measures of each frame, which need no truth."""
    from latentpath.atoms.quality import QUALITY_COLUMNS

    legend = "".join(f"<li><code>{html.escape(c)}</code>: {html.escape(text)}</li>"
                     for c, text in QUALITY_COLUMNS.items() if c in quality and c != "frame")
    return ("<h3>How far the atoms can be trusted, frame by frame</h3>"
            "<p>Measured on the found atoms alone; frames unlike the rest of the movie "
            "are named among the warnings above.</p><ul>" + legend + "</ul>"
            + _table(quality.round(3), max_rows=30))


def _pfm_sections(run: PfmRun, latents: dict[str, pd.DataFrame], explorers: list[dict]
                  ) -> list[tuple[str, str]]:
    grouped = _grouped(run.out, "pfm", explorers)
    grouped["Data and walls"] += "<h3>Frames</h3>" + _table(run.frames, max_rows=12)
    grouped["The longest-lived wall"] += _table(run.wall_history, max_rows=12)
    return list(grouped.items())


def _summary(run: StemRun | PfmRun, record: dict, pipeline: str) -> list[str]:
    movie = run.movie
    lines = [f"Movie: {movie if isinstance(movie, str) else ', '.join(movie or ['(in memory)'])}",
             f"Finished in {record.get('total_s', 0):.0f} s with latentpath "
             f"{record.get('version')} on {run.settings.device}"]
    if pipeline == "stem":
        lines.append(f"{len(run.atoms)} atoms and {len(run.rings)} rings in "
                     f"{run.atoms.frame.nunique()} frames")
        if len(run.tracks):
            lines.append(f"{run.tracks['track'].nunique()} tracked atoms, "
                         f"{len(run.transitions)} changes of state")
        lines += [score.sentence() for score in _discovery_scores(run)]
    else:
        frames = run.frames
        lines.append(f"{len(frames)} frames; switched "
                     f"{frames.switched_fraction.iloc[0]:.0%} -> "
                     f"{frames.switched_fraction.iloc[-1]:.0%}; "
                     f"{frames.walls.mean():.0f} walls per frame")
    # what the run doubts of itself, first thing after the numbers
    lines += [f"Warning: {w}" for w in run.warnings]
    return lines


def _scores_table(path: Path) -> str:
    """The targets of the earlier issues (met or not), then every score, by part."""
    scores = json.loads(path.read_text())
    targets = pd.DataFrame([{"score": name, **values}
                            for name, values in scores.pop("targets", {}).items()])
    rows = []
    for part, values in scores.items():
        if isinstance(values, dict):
            rows += [(part, k, v) for k, v in values.items()]
    table = pd.DataFrame(rows, columns=["part", "score", "value"])
    return (_table(targets, max_rows=50) if len(targets) else "") + _table(table, max_rows=200)
