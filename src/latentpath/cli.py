"""The ``latentpath`` command."""

from __future__ import annotations

import argparse
import functools
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from latentpath import __version__, rundir
from latentpath.allocator import keep_large_blocks
from latentpath.io import check_writable


def _npz_path(out: str) -> Path:
    path = Path(out)
    return path if path.suffix == ".npz" else path.with_name(path.name + ".npz")


def _figure_path(npz: Path) -> Path:
    return npz.with_name(npz.stem + ".png")


def _stem_outputs(npz: Path) -> list[Path]:
    from latentpath.synth.stem import TABLES

    return [npz, _figure_path(npz), *(npz.with_name(f"{npz.stem}_{t}.parquet") for t in TABLES)]


def _pfm_outputs(npz: Path) -> list[Path]:
    return [npz, _figure_path(npz), npz.with_name(f"{npz.stem}_frames.parquet")]


_STEM_LOOK = {"z_exponent": "z_exponent", "render_model": "render_model",
              "probe_fwhm": "probe_fwhm_A", "probe_tail": "probe_tail_weight",
              "jitter_px": "jitter_px", "read_noise": "read_noise"}
"""Imaging options of 'synth stem' -> arguments of synth_stem_movie."""


def _synth_stem(args: argparse.Namespace) -> Path:
    look = {key: getattr(args, name) for name, key in _STEM_LOOK.items()
            if getattr(args, name) is not None}
    return _write_stem_movie(_npz_path(args.out), args.frames, args.size, seed=args.seed,
                             overwrite=args.overwrite, pixel_size_A=args.pixel_size,
                             dose_e_per_A2=args.dose, si_fraction=args.si_fraction,
                             final_disorder=args.final_disorder, **look)


def _write_stem_movie(npz: Path, frames: int, size: int, *, seed: int, overwrite: bool,
                      **params) -> Path:
    """A synthetic STEM movie (:func:`latentpath.synth.synth_stem_movie` of ``params``)
    with its truth tables and figure, beside ``npz``."""
    from latentpath.figures import figure_stem_truth
    from latentpath.synth.stem import synth_stem_movie, write_synth_stem

    check_writable(_stem_outputs(npz), overwrite=overwrite)
    start = time.perf_counter()
    result = synth_stem_movie(frames, size, seed=seed, progress=True, **params)
    npz.parent.mkdir(parents=True, exist_ok=True)
    write_synth_stem(result, npz, overwrite=overwrite)
    figure_stem_truth(result, _figure_path(npz))
    last = result.frames.iloc[-1]
    print(f"synthetic STEM movie: {npz} ({frames} frames of {size}x{size} px at "
          f"{result.pixel_size_A} A/px, {len(result.atoms)} atom rows, {len(result.rings)} "
          f"rings, {len(result.events)} events; last frame {last.disorder_fraction:.0%} "
          f"holes + amorphous) in {time.perf_counter() - start:.1f} s")
    return npz


def _synth_pfm(args: argparse.Namespace) -> Path:
    return _write_pfm_movie(_npz_path(args.out), args.frames, args.size, seed=args.seed,
                            mode=args.mode, overwrite=args.overwrite)


def _write_pfm_movie(npz: Path, frames: int, size: int, *, seed: int, mode: str,
                     overwrite: bool) -> Path:
    """A synthetic PFM movie with its truth table and figure, beside ``npz``."""
    from latentpath.figures import figure_pfm_truth
    from latentpath.synth.pfm import synth_pfm_movie, write_synth_pfm

    check_writable(_pfm_outputs(npz), overwrite=overwrite)
    start = time.perf_counter()
    result = synth_pfm_movie(frames, size, seed=seed, mode=mode, progress=True)
    npz.parent.mkdir(parents=True, exist_ok=True)
    write_synth_pfm(result, npz, overwrite=overwrite)
    figure_pfm_truth(result, _figure_path(npz))
    fr = result.frames
    print(f"synthetic PFM movie: {npz} ({frames} frames of {size}x{size} px, "
          f"switched {fr.switched_fraction.iloc[0]:.0%} -> {fr.switched_fraction.iloc[-1]:.0%}) "
          f"in {time.perf_counter() - start:.1f} s")
    return npz


def _demo(args: argparse.Namespace) -> None:
    from latentpath.pipeline.steps import RunSteps, StepOutput, content_key

    out = Path(args.out)
    npz, pfm_npz = out / "stem.npz", out / "pfm.npz"
    # the demo folder resumes like a run: its movies are made once for these settings
    identity = {"demo": __version__, "frames": args.frames, "size": args.size,
                "seed": args.seed}
    movies = {"stem movie": (functools.partial(
                  _write_stem_movie, npz, args.frames, args.size, seed=args.seed,
                  overwrite=True), _stem_outputs(npz)),
              "pfm movie": (functools.partial(
                  _write_pfm_movie, pfm_npz, args.frames, 256, seed=args.seed, mode="tip",
                  overwrite=True), _pfm_outputs(pfm_npz))}
    with RunSteps.open(out, identity, overwrite=args.overwrite, resume=args.resume,
                       outputs=[p for _, files in movies.values() for p in files]) as steps:
        for step, (make, files) in movies.items():
            def made(make=make, files=files) -> StepOutput:
                make()
                return StepOutput(files)

            steps.run(step, content_key(step, identity), made)
    run, pfm_run = out / "stem-run", out / "pfm-run"
    print(f"STEM pipeline on {npz} -> {run}/")
    _run_stem_and_summarise(str(npz), run, _stem_config(args), truth=npz,
                            overwrite=args.overwrite, resume=args.resume)
    print(f"PFM pipeline on {pfm_npz} -> {pfm_run}/")
    _run_pfm_and_summarise([str(pfm_npz)], pfm_run, _pfm_config(args), truth=pfm_npz,
                           overwrite=args.overwrite, resume=args.resume)
    print(f"demo written to {out}/ (truth figures stem.png, pfm.png); open the reports "
          f"{run / rundir.REPORT} and {pfm_run / rundir.REPORT} in a browser; score the runs "
          f"with: latentpath evaluate {run} and latentpath evaluate {pfm_run}")


def _run_inputs(args: argparse.Namespace, pipeline: str) -> tuple[object, Path, object, dict]:
    """The movie, run directory, truth and settings of a ``stem`` or ``pfm`` command: from
    ``--config`` (a run's record or a user's file) where given, the command line taking
    precedence."""
    from latentpath.pipeline.common import read_config_file

    named = {"config": {}, "movie": None, "truth": None, "out": None}
    if getattr(args, "config", None):
        named = read_config_file(args.config, pipeline)
    movie = args.movie or named["movie"]
    if not movie:
        raise ValueError(f"no movie: give one, or a --config that names one "
                         f"(latentpath {pipeline} MOVIE --out RUN)")
    out = args.out or named["out"]
    if not out:
        raise ValueError("no run directory: give --out RUN")
    return movie, Path(out), args.truth or named["truth"], dict(named["config"])


def _flag_settings(args: argparse.Namespace, base: dict | None, names: tuple[str, ...]
                   ) -> dict:
    """Settings of ``base`` (a config file's) overridden by the flags given: those
    ``names`` and the run options every pipeline takes (:func:`_add_run_options`)."""
    values = dict(base or {})
    for name in (*names, "epochs", "patience", "max_steps", "min_steps", "cooldown",
                 "pixel_fraction",
                 "time_budget_s", "hidden", "layers", "map_points", "device", "seed"):
        value = getattr(args, name, None)
        if value is not None:
            values[name] = value
    if getattr(args, "compile", True) is False:
        values["compile"] = False
    if getattr(args, "side_by_side", True) is False:
        values["side_by_side"] = False
    return values


def _balance_flags(flags: list[str], base: dict | float | None) -> dict | float:
    """``--balance POWER`` (every kind) or ``--balance KIND=POWER ...`` over ``base``."""
    if len(flags) == 1 and "=" not in flags[0]:
        try:
            return float(flags[0])
        except ValueError:
            pass
    from latentpath.graph import KINDS

    # a config file's single number holds for every kind the flags do not name
    power = dict(base) if isinstance(base, dict) else \
        {} if base is None else dict.fromkeys(KINDS, base)
    for flag in flags:
        kind, sep, value = flag.partition("=")
        if not sep:
            raise ValueError(f"--balance takes one POWER or KIND=POWER pairs, got {flag!r}")
        try:
            power[kind] = float(value)
        except ValueError:
            raise ValueError(f"--balance {kind} must be a number, got {value!r}") from None
    return power


def _pfm_config(args: argparse.Namespace, base: dict | None = None):
    from latentpath.pipeline import PfmConfig

    values = _flag_settings(args, base, ("phase_channel", "amplitude_channel", "window_px",
                                         "window_samples", "delay"))
    if getattr(args, "walls_per_frame", None) is not None:
        values["walls_per_frame"] = None if args.walls_per_frame < 0 else args.walls_per_frame
    return PfmConfig.from_dict(values)


def _print_warnings(warnings: list[str]) -> None:
    """What a run doubts of itself, after its summary (also in its record and report)."""
    for warning in warnings:
        print(f"warning: {warning}")


def _run_pfm_and_summarise(movie: list[str], out: Path, config, *, truth: Path | None,
                           overwrite: bool, resume: bool, config_file: str | None = None
                           ) -> None:
    import numpy as np

    from latentpath.pipeline import run_pfm

    run = run_pfm(movie if len(movie) > 1 else movie[0], out, config, truth=truth,
                  overwrite=overwrite, resume=resume, inputs={"--config": config_file})
    frames, drift, latents = run.frames, run.drift, run.latents
    shift = float(np.hypot(drift.dy, drift.dx).max())
    print(f"{len(frames)} frames registered (largest drift {shift:.1f} px); switched "
          f"{frames.switched_fraction.iloc[0]:.0%} -> {frames.switched_fraction.iloc[-1]:.0%}; "
          f"{frames.walls.mean():.0f} walls per frame")
    one = latents[latents.walls == 1]
    print(f"{len(latents)} wall windows: switching degree {latents.switching.mean():+.3f} on "
          f"average; {len(one)} hold one wall, mean curvature {one.curvature.mean():+.4f} /px")
    history = run.wall_history
    if len(history):
        print(f"longest-lived wall: frames {history.frame.min()}-{history.frame.max()}, "
              f"curvature dispersion {history.curvature_std.iloc[0]:.4f} -> "
              f"{history.curvature_std.iloc[-1]:.4f} /px")
    _print_warnings(run.warnings)
    print(f"run -> {out}/ in {run.total_s:.0f} s; open the report: {run.report}")


def _pfm(args: argparse.Namespace) -> None:
    movie, out, truth, settings = _run_inputs(args, "pfm")
    _run_pfm_and_summarise([movie] if isinstance(movie, str) else list(movie), out,
                           _pfm_config(args, settings), truth=truth, overwrite=args.overwrite,
                           resume=args.resume, config_file=args.config)


def _stem_config(args: argparse.Namespace, base: dict | None = None):
    from latentpath.pipeline import StemConfig

    values = _flag_settings(args, base, ("pixel_size_A", "channel", "self_train_frames",
                                         "window_A", "window_px", "orient_windows",
                                         "track_search_A", "hollow_max_steps",
                                         "track_memory", "track_border_A",
                                         "neighbour_weight", "atom_draws"))
    for name, key in (("c_per_frame", "C"), ("si_per_frame", "Si")):
        if getattr(args, name, None) is not None:
            chosen = getattr(args, name)
            per_frame = dict(values.get("atoms_per_frame", StemConfig().atoms_per_frame))
            per_frame[key] = None if chosen < 0 else chosen
            values["atoms_per_frame"] = per_frame
    if getattr(args, "balance_power", None) is not None:
        values["balance_power"] = _balance_flags(args.balance_power,
                                                 values.get("balance_power"))
    if getattr(args, "hollow_per_frame", None) is not None:
        values["hollow_per_frame"] = None if args.hollow_per_frame < 0 else args.hollow_per_frame
    if getattr(args, "track", None) is not None:
        values["track_species"] = None if args.track == ["all"] else tuple(args.track)
    return StemConfig.from_dict(values)


def _run_stem_and_summarise(movie: str, out: Path, config, *, truth: Path | None,
                            overwrite: bool, resume: bool, config_file: str | None = None
                            ) -> None:
    from latentpath.pipeline import run_stem

    run = run_stem(movie, out, config, truth=truth, overwrite=overwrite, resume=resume,
                   inputs={"--config": config_file})
    atoms = run.atoms
    print(f"{len(atoms)} atoms in {atoms.frame.nunique()} frames, {len(run.rings)} rings")
    for kind, found in run.kinds.items():
        latents, space = found.latents, found.map
        top = space.classes()
        top = top[top.structure != "unphysical"].head(5)
        print(f"{kind}-centred: {len(latents)} windows; chemical-space map: "
              f"{space.physical.mean():.0%} physical; structures "
              + ", ".join(f"{r.structure} {r.share:.0%}" for r in top.itertuples()))
        if found.discovery is not None:
            print(f"  {found.discovery.sentence()}")
    tracks, counts = run.tracks, run.transition_counts
    if len(tracks):
        print(f"tracks: {tracks['track'].nunique()} tracks over {len(tracks)} atom-frames, "
              f"{len(run.transitions)} changes of chemical state; most common: "
              + ", ".join(f"{r.from_state} -> {r.to_state} ({r.count})"
                          for r in counts.head(3).itertuples()))
    else:
        print("tracks: no atom of the tracked species in the movie")
    _print_warnings(run.warnings)
    print(f"run -> {out}/ in {run.total_s:.0f} s; open the report: {run.report}")


def _stem(args: argparse.Namespace) -> None:
    movie, out, truth, settings = _run_inputs(args, "stem")
    if not isinstance(movie, str):
        raise ValueError(f"a STEM run takes one movie file; --config names "
                         f"{len(movie) if isinstance(movie, list) else type(movie).__name__}")
    _run_stem_and_summarise(movie, out, _stem_config(args, settings), truth=truth,
                            overwrite=args.overwrite, resume=args.resume,
                            config_file=args.config)


def _atoms(args: argparse.Namespace) -> None:
    import pandas as pd

    from latentpath.atoms import compare_tables, find_atoms, load_model, self_train
    from latentpath.atoms.find import describe_found, found_metadata
    from latentpath.device import resolve_device
    from latentpath.figures import figure_atoms
    from latentpath.io import load_movie, write_json, write_table

    out = Path(args.out)
    if out.suffix not in (".csv", ".parquet"):
        raise ValueError(f"--out {out}: use a .csv or .parquet file name")
    figure, metadata = out.with_suffix(".png"), out.with_suffix(".json")
    check_writable([out, figure, metadata], overwrite=args.overwrite,
                   inputs={"the movie": args.movie, "--model": args.model})
    movie = load_movie(args.movie, channel=args.channel)
    device = resolve_device(args.device)
    model = load_model(args.model, device=device)
    start = time.perf_counter()
    # left out unless asked for, so that find_atoms' default applies
    faint = ({"faint_level": None if args.keep_faint else args.faint_level}
             if args.keep_faint or args.faint_level is not None else {})
    kwargs = {"pixel_size_A": args.pixel_size, "device": device, "threshold": args.threshold,
              "keep_border": args.keep_border, "precision": args.precision,
              "augment": args.augment, **faint}
    atoms = find_atoms(movie, model=model, progress=True, **kwargs)
    pixel_A = atoms.attrs["pixel_size_A"]
    if args.self_train:
        model, _ = self_train(movie, n_frames=args.self_train, pixel_size_A=pixel_A, model=model,
                              device=device, progress=True, **faint)
        before = atoms
        atoms = find_atoms(movie, model=model, progress=True, **{**kwargs, "pixel_size_A": pixel_A})
        change = compare_tables(before, atoms, radius_px=0.5 / pixel_A)
        print(f"self-training on {args.self_train} frames: per frame "
              f"{change.added.mean():.1f} atoms added, {change.removed.mean():.1f} removed, "
              f"{change.species_changed.mean():.1f} changed species (mean over "
              f"{len(change)} frames)")
    for line in describe_found(atoms):
        print(line)
    out.parent.mkdir(parents=True, exist_ok=True)
    write_table(pd.DataFrame(atoms), out, overwrite=args.overwrite)
    write_json(found_metadata(atoms), metadata, overwrite=args.overwrite)
    figure_atoms(movie.data[0], atoms[atoms.frame == 0], figure,
                 title=f"{Path(args.movie).name}, frame 0: {int((atoms.frame == 0).sum())} atoms")
    counts = atoms.species.value_counts().to_dict()
    print(f"{len(atoms)} atoms in {movie.n_frames} frames ({counts}) -> {out}, {figure}, "
          f"{metadata} "
          f"in {time.perf_counter() - start:.1f} s")


def _print_scores(scores: dict) -> None:
    for key, value in scores.items():
        shown = f"{value:.4f}" if isinstance(value, float) else str(value)
        print(f"{key:>32}: {shown}")


def _evaluate(args: argparse.Namespace) -> None:
    from latentpath.evaluate import score_atoms
    from latentpath.io import read_table, write_json
    from latentpath.synth import read_synth_stem

    target = Path(args.target)
    if target.is_dir():
        _evaluate_run(args, target)
        return
    if not args.truth:
        raise ValueError("--truth is required to score an atom table")
    if args.out:
        check_writable([args.out], overwrite=args.overwrite,
                       inputs={"the atom table": target, "--truth": args.truth})
    truth = read_synth_stem(args.truth)
    found = read_table(target)
    missing = {"frame", "y", "x", "species"} - set(found.columns)
    if missing:
        raise ValueError(f"{target}: not an atom table (missing {sorted(missing)})")
    scores = score_atoms(found, truth.atoms, pixel_size_A=truth.pixel_size_A,
                         match_radius_A=args.match_radius, frames_table=truth.frames,
                         image_shape=truth.movie.shape[1:])
    _print_scores(scores)
    if args.out:
        write_json({"atoms": str(target), "truth": str(args.truth),
                    "match_radius_A": args.match_radius, **scores}, args.out,
                   overwrite=args.overwrite)
        print(f"scores -> {args.out}")


def _evaluate_run(args: argparse.Namespace, run_dir: Path) -> None:
    from latentpath.evaluate import check_targets
    from latentpath.io import write_json
    from latentpath.pipeline.steps import check_run_file, record_run_files

    out = Path(args.out) if args.out else run_dir / rundir.SCORES
    in_run = out == run_dir / rundir.SCORES
    if in_run:  # before the scoring, which takes a minute on a large run
        for name in (rundir.SCORES, rundir.REPORT):
            check_run_file(run_dir, run_dir / name, overwrite=args.overwrite)
    pipeline = rundir.read_run_record(run_dir).get("pipeline")
    scores, truth_path, settings = (_score_pfm_run if pipeline == "pfm" else _score_stem_run)(
        args, run_dir)
    for part, values in scores.items():
        print(f"{part}:")
        _print_scores(values)
    targets = check_targets(scores)
    print(f"targets: {sum(met is True for met in targets.met)} of {len(targets)} met")
    for row in targets.itertuples():
        verdict = {True: "met", False: "NOT MET", None: "not measured"}[row.met]
        print(f"  {row.part}.{row.score} = {row.value:.4g} ({row.target}): {verdict}; "
              f"{row.meaning}")
    check_writable([out], overwrite=args.overwrite or not args.out,
                   inputs={"--truth": truth_path})
    write_json({"run": str(run_dir), "truth": truth_path and str(truth_path), **settings,
                **scores,
                "targets": {f"{r.part}.{r.score}": {"value": r.value, "target": r.target,
                                                     "met": r.met, "meaning": r.meaning}
                            for r in targets.itertuples()}}, out,
               overwrite=args.overwrite or not args.out)
    print(f"scores -> {out}")
    if in_run:
        record_run_files(run_dir, [out])
    if in_run and (run_dir / rundir.REPORT).is_file():
        from latentpath.pipeline import read_finished_run, run_frames
        from latentpath.report import write_report

        page = write_report(read_finished_run(run_dir), run_frames(run_dir), overwrite=True)
        record_run_files(run_dir, [page])
        print(f"report with the scores -> {page}")


def _score_pfm_run(args: argparse.Namespace, run_dir: Path) -> tuple[dict, str, dict]:
    from latentpath.evaluate import score_pfm
    from latentpath.pipeline import PfmRun, check_pfm_truth
    from latentpath.synth.pfm import read_synth_pfm

    run = PfmRun.read(run_dir)
    truth_path = args.truth or run.truth
    if not truth_path:
        raise ValueError(f"{run_dir}: the run records no synthetic truth; pass --truth")
    check_pfm_truth(run_dir, truth_path)
    return {"pfm": score_pfm(run, read_synth_pfm(truth_path))}, truth_path, {}


def _print_discovery(found: dict) -> None:
    for ref, kinds in found.items():
        for score in kinds.values():
            print(f"against the {ref}: {score.sentence()}")


def _score_stem_run(args: argparse.Namespace, run_dir: Path) -> tuple[dict, str, dict]:
    from latentpath.evaluate import score_stem_run
    from latentpath.pipeline import StemRun, check_stem_truth
    from latentpath.synth import read_synth_stem

    run = StemRun.read(run_dir)
    truth_path = args.truth or run.truth
    if truth_path:
        check_stem_truth(run_dir, truth_path)
    else:
        print("no synthetic truth: scoring the latent spaces against the run's bond graph")
    scores, found = score_stem_run(run, read_synth_stem(truth_path) if truth_path else None,
                                   match_radius_A=args.match_radius)
    _print_discovery(found)
    return scores, truth_path, {"match_radius_A": args.match_radius}


def _report(args: argparse.Namespace) -> None:
    from latentpath.pipeline import read_finished_run, run_frames
    from latentpath.pipeline.steps import check_run_file, record_run_files
    from latentpath.report import write_report

    check_run_file(args.run, Path(args.run) / rundir.REPORT, overwrite=args.overwrite)
    path = write_report(read_finished_run(args.run), run_frames(args.run),
                        max_points=args.max_points)
    record_run_files(args.run, [path])
    print(f"report -> {path}")


def _atoms_many(args: argparse.Namespace) -> None:
    from latentpath.scale import DOUBTS, KIND_CENTRES, atoms_many

    table = atoms_many(args.movies, args.out, run=args.run, scheduler=args.scheduler,
                       workers=args.workers, frames_per_task=args.frames_per_task,
                       pixel_size_A=args.pixel_size, channel=args.channel, device=args.device,
                       overwrite=args.overwrite, resume=args.resume)
    for row in table.to_dict("records"):
        windows = "".join(f", {row[f'windows_{kind}']} {kind} windows encoded"
                          for kind in KIND_CENTRES if f"windows_{kind}" in row)
        reused = f"; {row['tasks_reused']} task(s) reused" if row["tasks_reused"] else ""
        doubts = (f"; {row['doubts']} doubt(s) about its atoms, in {row['folder']}/"
                  f"{DOUBTS}" if row["doubts"] else "")
        print(f"{row['movie']}: {row['frames']} frames, {row['atoms']} atoms, "
              f"{row['rings']} rings{windows} ({row['pixel_size_A']:.4g} A/px{reused}"
              f"{doubts}) -> {row['folder']}/")
    print(f"{len(table)} movie(s) in {table.seconds.iloc[0]:.1f} s")


def _rvae(args: argparse.Namespace) -> None:
    from latentpath.distributed import is_main_process
    from latentpath.rvae import fit_rvae

    history = fit_rvae(args.windows, args.out, latent_dim=args.latent_dim, hidden=args.hidden,
                       layers=args.layers, skip=args.skip, loss=args.loss, epochs=args.epochs,
                       batch_size=args.batch_size, lr=args.lr, seed=args.seed,
                       device=args.device, precision=args.precision, compile=args.compile,
                       resume=args.resume, progress=True, patience=args.patience,
                       max_steps=args.max_steps, min_steps=args.min_steps,
                       time_budget_s=args.time_budget,
                       cooldown=args.cooldown, pixel_fraction=args.pixel_fraction,
                       overwrite=args.overwrite)
    if not is_main_process():
        return
    best = history.loc[history.val_loss.idxmin()]
    stop = history.attrs["stop"]
    print(f"model -> {args.out} (best epoch {int(best.epoch)}, val loss {best.val_loss:.3f}; "
          f"{history.windows_per_s.median():.0f} windows/s)")
    print(f"stopped: {stop.reason} after {stop.epochs_run} epochs, {stop.steps} steps")


def _encode(args: argparse.Namespace) -> None:
    from latentpath.device import resolve_device
    from latentpath.io import read_table, write_table
    from latentpath.rvae import encode, load_rvae

    out = Path(args.out)
    check_writable([out], overwrite=args.overwrite,
                   inputs={"the windows": args.windows, "--table": args.table,
                           "the model": args.model})
    model = load_rvae(args.model, device=resolve_device(args.device))
    table = read_table(args.table) if args.table else None
    latents = encode(model, args.windows, table=table)
    write_table(latents, out, overwrite=args.overwrite)
    print(f"{len(latents)} windows encoded -> {out}")


def _add_common(p: argparse.ArgumentParser, frames: int, size: int) -> None:
    p.add_argument("--frames", type=int, default=frames,
                   help="number of frames (default %(default)s)")
    p.add_argument("--size", type=int, default=size,
                   help="frame size in pixels (default %(default)s)")
    p.add_argument("--seed", type=int, default=0, help="random seed (default %(default)s)")
    p.add_argument("--overwrite", action="store_true", help="replace existing output files")


def _add_config_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--out", help="run directory (default: the one --config names, or the "
                                 "folder of a run's RUN/config.json)")
    p.add_argument("--config", metavar="FILE",
                   help="JSON settings: a run's RUN/config.json (repeats that run) or "
                        '{"config": {...}, "movie": ..., "out": ...}; flags override it')


def _add_run_options(p: argparse.ArgumentParser, *, map_help: str, cpu_epochs: int) -> None:
    """The skip-rVAE, map, device and output options that every pipeline takes."""
    p.add_argument("--epochs", type=int,
                   help=f"skip-rVAE epochs ({cpu_epochs} on a CPU, 300 on a GPU)")
    p.add_argument("--patience", type=int,
                   help="stop the skip-rVAE's training once its validation loss has not "
                        "improved for this many epochs (10 by default)")
    p.add_argument("--max-steps", type=int,
                   help="ceiling on the skip-rVAE's optimiser steps (on a CPU: STEM 4000, "
                        "PFM 700)")
    p.add_argument("--min-steps", type=int,
                   help="the patience does not stop the skip-rVAE's training before this "
                        "many optimiser steps (STEM 2000, so that a small image's short "
                        "epochs do not end it early; 1: no floor)")
    p.add_argument("--cooldown", type=float, metavar="SHARE",
                   help="share of the skip-rVAE's training spent at the end with the "
                        "learning rate falling to zero, begun by the patience or the step "
                        "ceiling (0.3)")
    p.add_argument("--pixel-fraction", type=float, metavar="SHARE",
                   help="share of each window's pixels the skip-rVAE's decoder draws in a "
                        "training step, a new random set each step (1: all)")
    p.add_argument("--time-budget", dest="time_budget_s", type=float, metavar="S",
                   help="wall-clock budget of each skip-rVAE's training, seconds (the run "
                        "is then not reproducible)")
    p.add_argument("--hidden", type=int,
                   help="skip-rVAE units per layer (128 on a CPU, 256 on a GPU)")
    p.add_argument("--layers", type=int, help="skip-rVAE layers (3 on a CPU, 4 on a GPU)")
    p.add_argument("--map-points", type=int, help=map_help)
    p.add_argument("--no-compile", dest="compile", action="store_false",
                   help="skip torch.compile of the skip-rVAE (by default it compiles only "
                        "trainings long enough to repay the warm-up)")
    p.add_argument("--truth", help="synthetic truth .npz, for 'latentpath evaluate RUN'")
    p.add_argument("--device", help="auto, cpu or cuda (default auto)")
    p.add_argument("--seed", type=int, help="random seed (0)")
    p.add_argument("--overwrite", action="store_true",
                   help="replace a run of other inputs or settings in --out (the steps the "
                        "two share are reused)")
    p.add_argument("--no-resume", dest="resume", action="store_false",
                   help="compute every step again, even those an earlier run into --out "
                        "finished with the same inputs and settings")


class _SubParsers:
    """``add_subparsers()``'s object, giving every subcommand the ``parent``'s options."""

    def __init__(self, actions, parent: argparse.ArgumentParser):
        self.actions, self.parent = actions, parent

    def add_parser(self, name: str, **kwargs) -> argparse.ArgumentParser:
        return self.actions.add_parser(name, parents=[self.parent], **kwargs)


def _add_demo_command(sub: _SubParsers) -> None:
    """The ``latentpath demo`` command and its options."""
    demo = sub.add_parser("demo", help="run on built-in synthetic data")
    demo.add_argument("--out", default="latentpath-demo",
                      help="output folder (default %(default)s)")
    _add_common(demo, frames=50, size=512)
    demo.add_argument("--epochs", type=int,
                      help="skip-rVAE epochs of both runs (default on a CPU: STEM to "
                           "convergence, at most 4000 steps; PFM 40; 300 on a GPU)")
    demo.add_argument("--no-resume", dest="resume", action="store_false",
                      help="compute everything again, even what an earlier demo into --out "
                           "finished with the same settings")
    demo.set_defaults(func=_demo)


def _add_stem_command(sub: _SubParsers) -> None:
    """The ``latentpath stem`` command and its options."""
    stem_run = sub.add_parser("stem", help="the full STEM pipeline on a movie")
    stem_run.add_argument("movie", nargs="?",
                          help="movie file (npy, npz, tif, h5, dm3/dm4, emd); default: the "
                               "one --config names")
    _add_config_options(stem_run)
    stem_run.add_argument("--channel", help="dataset or channel name inside the file")
    stem_run.add_argument("--pixel-size", dest="pixel_size_A", type=float,
                          help="angstrom per pixel (default: from the file or the lattice)")
    stem_run.add_argument("--self-train", dest="self_train_frames", type=int, nargs="?",
                          const=5, metavar="N",
                          help="fine-tune the atom finder on the first N frames (5)")
    stem_run.add_argument("--window", dest="window_A", type=float,
                          help="window side, angstrom (default 8)")
    stem_run.add_argument("--window-px", type=int, help="samples per window side (16)")
    stem_run.add_argument("--no-orient", dest="orient_windows", action="store_const",
                          const=False, help="cut atom windows as the image lies, not in "
                                            "their bonds' frame")
    stem_run.add_argument("--c-per-frame", type=int,
                          help="C-centred windows per frame (default: all; -1 for all)")
    stem_run.add_argument("--si-per-frame", type=int,
                          help="Si-centred windows per frame (-1, all, by default)")
    stem_run.add_argument("--hollow-per-frame", type=int,
                          help="hollow-site windows per frame (default: all; -1 for all)")
    stem_run.add_argument("--balance", dest="balance_power", nargs="+",
                          metavar="[KIND=]POWER",
                          help="train on windows drawn as (windows of their bond-graph "
                               "structure)^-POWER: 1 draws every structure equally often, 0 "
                               "as they come; one POWER for both kinds or e.g. atom=0.5 "
                               "hollow=1 (atom 0.5, hollow 1)")
    stem_run.add_argument("--neighbour-weight", type=float, metavar="W",
                          help="weight of the term that keeps each atom window's nearest "
                               "windows near it in the latent plane (200; 0: the plain "
                               "skip-rVAE)")
    stem_run.add_argument("--atom-draws", type=int, metavar="K",
                          help="train the atom skip-rVAE K times from seeds SEED..SEED+K-1 "
                               "and keep the one whose map names the bond graph's three "
                               "commonest structures best (1; each draw costs a model's "
                               "training)")
    _add_run_options(stem_run, map_help="chemical-space map points per axis (200)",
                     cpu_epochs=1000)
    stem_run.add_argument("--one-at-a-time", dest="side_by_side", action="store_false",
                          help="on a CPU, train the atom and hollow skip-rVAEs one after "
                               "the other on every thread (by default side by side, each "
                               "on its share)")
    stem_run.add_argument("--hollow-max-steps", type=int,
                          help="ceiling on the hollow-site skip-rVAE's optimiser steps, "
                               "where lower than --max-steps (default: --max-steps)")
    stem_run.add_argument("--track", nargs="+", metavar="SPECIES",
                          help="species to follow through the movie (default Si; 'all' for "
                               "every atom)")
    stem_run.add_argument("--track-search", dest="track_search_A", type=float,
                          help="farthest move of a tracked atom between frames, A (default: "
                               "from the spacing of the tracked atoms, at most 2.5)")
    stem_run.add_argument("--track-memory", type=int,
                          help="frames a tracked atom may be missed (3)")
    stem_run.add_argument("--track-border", dest="track_border_A", type=float,
                          help="atoms this near the frame's border get no chemical state, A "
                               "(4)")
    stem_run.set_defaults(func=_stem)


def _add_pfm_command(sub: _SubParsers) -> None:
    """The ``latentpath pfm`` command and its options."""
    pfm_run = sub.add_parser("pfm", help="the full PFM pipeline on a phase movie")
    pfm_run.add_argument("movie", nargs="*",
                         help="movie file(s) (npy, npz, tif, h5); several are stacked in "
                              "order; default: the one(s) --config names")
    _add_config_options(pfm_run)
    pfm_run.add_argument("--phase-channel",
                         help="phase channel in the file (default: phase, PhaseRetrace, ...)")
    pfm_run.add_argument("--amplitude-channel",
                         help="amplitude channel, for the drift (default: amplitude, "
                              "AmplitudeRetrace, ...; without one the phase is used)")
    pfm_run.add_argument("--window", dest="window_px", type=int,
                         help="window side, pixels (40)")
    pfm_run.add_argument("--window-samples", type=int, help="samples per window side (20)")
    pfm_run.add_argument("--walls-per-frame", type=int,
                         help="wall pixels per frame to centre windows on (80; -1 for all)")
    pfm_run.add_argument("--delay", type=int,
                         help="frames between the two images of a window (2; 0: same time)")
    _add_run_options(pfm_run, map_help="physics map points per axis (40)", cpu_epochs=1000)
    pfm_run.set_defaults(func=_pfm)


def _add_synth_command(sub: _SubParsers) -> None:
    """The ``latentpath synth stem|pfm`` command and its options."""
    synth = sub.add_parser("synth", help="write a synthetic movie with its ground truth")
    kinds = _SubParsers(synth.add_subparsers(dest="kind", required=True), sub.parent)
    stem = kinds.add_parser("stem", help="Si-doped graphene under the beam, ADF-STEM")
    stem.add_argument("out", help="output .npz (tables go beside it as parquet)")
    _add_common(stem, frames=50, size=512)
    stem.add_argument("--pixel-size", type=float, default=0.1,
                      help="angstrom per pixel (default %(default)s)")
    stem.add_argument("--dose", type=float, default=5e5,
                      help="electron dose per frame, e-/A^2 (default %(default)g)")
    stem.add_argument("--si-fraction", type=float, default=0.01,
                      help="fraction of Si atoms (default %(default)s)")
    stem.add_argument("--final-disorder", type=float, default=0.6,
                      help="holes + amorphous fraction in the last frame (default %(default)s)")
    stem.add_argument("--z-exponent", type=float,
                      help="ADF contrast exponent n: atoms scatter as Z^n, 1.0 to 2.5 "
                           "(default 1.7; real data 1.5-2)")
    stem.add_argument("--render-model", choices=["gauss-tail", "aperture"],
                      help="imaging model: Gaussian probe with Lorentzian tail, or Airy "
                           "probe with halo, correlated scan distortion and a scintillator "
                           "detector (default gauss-tail)")
    stem.add_argument("--probe-fwhm", type=float, metavar="A",
                      help="probe core FWHM, angstrom (default 1.05)")
    stem.add_argument("--probe-tail", type=float, metavar="SHARE",
                      help="share of the probe intensity in its tail or halo (default 0.15)")
    stem.add_argument("--jitter-px", type=float,
                      help="RMS scan-line jitter, pixels (default 0.25)")
    stem.add_argument("--read-noise", type=float,
                      help="detector read noise, counts (default 1.5)")
    stem.set_defaults(func=_synth_stem)
    pfm = kinds.add_parser("pfm", help="ferroelectric domain switching, PFM phase")
    pfm.add_argument("out", help="output .npz (the per-frame table goes beside it as parquet)")
    _add_common(pfm, frames=50, size=256)
    pfm.add_argument("--mode", choices=["tip", "field"], default="tip",
                     help="switching by a biased tip or a uniform field (default %(default)s)")
    pfm.set_defaults(func=_synth_pfm)


def _add_atoms_command(sub: _SubParsers) -> None:
    """The ``latentpath atoms`` command and its options."""
    atoms = sub.add_parser("atoms", help="find atoms in a STEM movie")
    atoms.add_argument("movie", help="movie file (npy, npz, tif, h5, dm3/dm4, emd)")
    atoms.add_argument("--out", required=True,
                       help="atom table, .csv or .parquet; beside it a figure of frame 0 "
                            "(.png) and the pixel size and per-frame quality (.json)")
    atoms.add_argument("--channel", help="dataset or channel name inside the file")
    atoms.add_argument("--pixel-size", type=float,
                       help="angstrom per pixel (default: from the file, else estimated "
                            "from the lattice)")
    atoms.add_argument("--self-train", type=int, nargs="?", const=5, default=0, metavar="N",
                       help="fine-tune on the first N frames (5 if N is omitted)")
    atoms.add_argument("--threshold", type=float, default=0.5,
                       help="atom probability threshold (default %(default)s)")
    atoms.add_argument("--keep-border", action="store_true",
                       help="keep atoms closer than 1 A to the frame edge")
    atoms.add_argument("--faint-level", type=float,
                       help="drop atoms the network is unsure of that stand on less than "
                            "this share of the way from the frame's floor to its typical "
                            "atom: the ghosts of low doses in holes (default 0.6)")
    atoms.add_argument("--keep-faint", action="store_true",
                       help="keep those atoms (no --faint-level test)")
    atoms.add_argument("--augment", action="store_true",
                       help="average the network over the 8 rotations and reflections of "
                            "each frame: atoms placed nearer the truth at low dose, in 2-4x "
                            "the time")
    atoms.add_argument("--model", help="model directory (default: the shipped weights)")
    atoms.add_argument("--device", default="auto", help="auto, cpu or cuda (default auto)")
    atoms.add_argument("--precision", choices=["auto", "float32", "bfloat16"], default="auto",
                       help="of the network: bfloat16 where the device has it natively "
                            "(auto), the same atoms to within a few in 10,000")
    atoms.add_argument("--overwrite", action="store_true", help="replace existing outputs")
    atoms.set_defaults(func=_atoms)


def _add_atoms_many_command(sub: _SubParsers) -> None:
    """The ``latentpath atoms-many`` command and its options."""
    many = sub.add_parser("atoms-many", help="atoms and rings of many movies (with --run, "
                                             "the latents of every atom and ring), frame "
                                             "tasks in parallel on a Dask cluster")
    many.add_argument("movies", nargs="+", help="movie files or .zarr stores")
    many.add_argument("--out", required=True, help="results folder, one subfolder per movie")
    many.add_argument("--run", help="a finished STEM run whose skip-rVAEs encode a window "
                                    "around every atom and ring, labelled by its maps")
    many.add_argument("--workers", type=int, default=1,
                      help="processes of the local cluster (default %(default)s)")
    many.add_argument("--scheduler", help="address of a running Dask scheduler "
                                          "(tcp://host:8786) instead of a local cluster")
    many.add_argument("--frames-per-task", type=int, default=8,
                      help="frames each task reads (default %(default)s)")
    many.add_argument("--pixel-size", type=float, help="angstrom per pixel of every movie")
    many.add_argument("--channel", help="dataset or channel name inside the files")
    many.add_argument("--device", default="cpu", help="cpu, cuda or auto (default cpu)")
    many.add_argument("--overwrite", action="store_true",
                      help="replace the results of a different earlier call")
    many.add_argument("--no-resume", dest="resume", action="store_false",
                      help="run every task again instead of reusing finished ones")
    many.set_defaults(func=_atoms_many)


def _add_rvae_command(sub: _SubParsers) -> None:
    """The ``latentpath rvae`` command and its options."""
    rvae = sub.add_parser("rvae", help="train a skip-rVAE on a stack of windows (N, w, w)")
    rvae.add_argument("windows", help=".npy stack of windows (memory-mapped)")
    rvae.add_argument("--out", required=True, help="model directory")
    rvae.add_argument("--epochs", type=int, default=20)
    rvae.add_argument("--batch-size", type=int, default=100)
    rvae.add_argument("--latent-dim", type=int, default=2, help="content latents")
    rvae.add_argument("--hidden", type=int, default=256, help="units per layer")
    rvae.add_argument("--layers", type=int, default=4, help="layers of encoder and decoder")
    rvae.add_argument("--skip", choices=["latent", "first_layer"], default="latent",
                      help="latent skips into every decoder layer (paper) or AtomAI's variant")
    rvae.add_argument("--loss", choices=["mse", "bce"], default="mse")
    rvae.add_argument("--lr", type=float, default=1e-4)
    rvae.add_argument("--seed", type=int, default=0)
    rvae.add_argument("--device", default="auto")
    rvae.add_argument("--precision", choices=["auto", "float32", "bfloat16"], default="auto",
                      help="bfloat16 autocast where the device has it natively (auto)")
    rvae.add_argument("--no-compile", dest="compile", action="store_const", const=False,
                      default="auto", help="skip torch.compile (by default it compiles "
                                           "only trainings long enough to repay its "
                                           "10-45 s warm-up)")
    rvae.add_argument("--resume", action="store_true", help="continue the checkpoint in --out")
    rvae.add_argument("--overwrite", action="store_true",
                      help="replace a model already in --out (its config.json, weights and "
                           "checkpoint)")
    rvae.add_argument("--patience", type=int,
                      help="stop once the validation loss has not improved for this many "
                           "epochs (default: train all --epochs)")
    rvae.add_argument("--max-steps", type=int, help="ceiling on optimiser steps")
    rvae.add_argument("--min-steps", type=int,
                      help="the patience does not stop training before this many "
                           "optimiser steps (default: no floor)")
    rvae.add_argument("--cooldown", type=float, default=0.0, metavar="SHARE",
                      help="share of training spent at the end with the learning rate "
                           "falling to zero, begun by --patience or --max-steps (0)")
    rvae.add_argument("--pixel-fraction", type=float, default=1.0, metavar="SHARE",
                      help="share of each window's pixels decoded in a training step, a "
                           "new random set each step (1: all)")
    rvae.add_argument("--time-budget", type=float,
                      help="wall-clock budget, seconds: stop after the epoch that exceeds "
                           "it (not reproducible)")
    rvae.set_defaults(func=_rvae)


def _add_encode_command(sub: _SubParsers) -> None:
    """The ``latentpath encode`` command and its options."""
    enc = sub.add_parser("encode", help="encode windows with a trained skip-rVAE")
    enc.add_argument("model", help="model directory")
    enc.add_argument("windows", help=".npy stack of windows")
    enc.add_argument("--out", required=True, help="latent table, .csv or .parquet")
    enc.add_argument("--table", help="window table to carry along (row i = window i)")
    enc.add_argument("--device", default="auto")
    enc.add_argument("--overwrite", action="store_true")
    enc.set_defaults(func=_encode)


def _add_report_command(sub: _SubParsers) -> None:
    """The ``latentpath report`` command and its options."""
    report = sub.add_parser("report", help="write RUN/report.html again (from the run's "
                                           "files and the movie its record names)")
    report.add_argument("run", help="run directory")
    report.add_argument("--overwrite", action="store_true",
                        help="replace a report.html that latentpath did not write as it "
                             "stands (a user's, or one edited since)")
    report.add_argument("--max-points", type=int, default=1000,
                        help="windows shown at most in each latent explorer (%(default)s)")
    report.set_defaults(func=_report)


def _add_evaluate_command(sub: _SubParsers) -> None:
    """The ``latentpath evaluate`` command and its options."""
    evaluate = sub.add_parser("evaluate", help="score results on synthetic data against truth")
    evaluate.add_argument("target", help="a run directory, or an atom table from "
                                         "'latentpath atoms' (.csv/.parquet)")
    evaluate.add_argument("--truth", help="synthetic movie .npz with its truth (default for a "
                                          "run: the truth it records)")
    evaluate.add_argument("--match-radius", type=float, default=0.5,
                          help="largest distance of a detection, angstrom (default %(default)s)")
    evaluate.add_argument("--out", help="write the scores as JSON here (a run's default: "
                                        "RUN/scores.json, replaced on every evaluation)")
    evaluate.add_argument("--overwrite", action="store_true",
                          help="replace an existing --out, or a scores.json or report.html in "
                               "the run that latentpath did not write as it stands")
    evaluate.set_defaults(func=_evaluate)


def build_parser() -> argparse.ArgumentParser:
    """The ``latentpath`` command line: one builder per subcommand."""
    parser = argparse.ArgumentParser(
        prog="latentpath",
        description="Discover structural units and transformation pathways in STEM and PFM "
                    "movies.")
    parser.add_argument("--version", action="version", version=f"latentpath {__version__}")
    parser.add_argument("--debug", action="store_true", help="show tracebacks on errors")
    sub = parser.add_subparsers(dest="command", required=True)
    # --debug after the command too; SUPPRESS keeps a subcommand from resetting it
    debug = argparse.ArgumentParser(add_help=False)
    debug.add_argument("--debug", action="store_true", default=argparse.SUPPRESS,
                       help="show the traceback of an error")
    sub = _SubParsers(sub, debug)
    _add_demo_command(sub)
    _add_stem_command(sub)
    _add_pfm_command(sub)
    _add_synth_command(sub)
    _add_atoms_command(sub)
    _add_atoms_many_command(sub)
    _add_rvae_command(sub)
    _add_encode_command(sub)
    _add_report_command(sub)
    _add_evaluate_command(sub)
    return parser


def _one_line(err: BaseException) -> str:
    """An error as one line: its message (first line), named by kind unless it is one of
    the errors our checks raise about a user's input."""
    text = str(err).strip().splitlines()[0] if str(err).strip() else ""
    if isinstance(err, FileNotFoundError) and err.filename:
        return f"{err.filename}: no such file or directory"
    if isinstance(err, ValueError | OSError):
        return text or type(err).__name__
    return f"{type(err).__name__}: {text}" if text else type(err).__name__


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    keep_large_blocks()
    try:
        args.func(args)
    except KeyboardInterrupt:
        print("latentpath: interrupted", file=sys.stderr)
        return 130
    except Exception as err:
        if args.debug:
            raise
        hint = "" if isinstance(err, ValueError | OSError) else " (--debug shows where)"
        print(f"latentpath: error: {_one_line(err)}{hint}", file=sys.stderr)
        return 2 if isinstance(err, ValueError | OSError) else 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
