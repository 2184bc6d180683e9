"""Atom finding: locating, the network and its files, pixel size, segmentation,
training, self-training and the end-to-end finder with the shipped weights."""

from __future__ import annotations

import json
import warnings

import numpy as np
import pandas as pd
import pytest
import torch

from latentpath.atoms import (
    AtomNetConfig,
    AtomUNet,
    ModelFileError,
    blobs,
    compare_tables,
    drop_border,
    estimate_pixel_size,
    find_atoms,
    load_model,
    refine_gaussian,
    save_model,
    segment,
    self_train,
)
from latentpath.atoms.find import describe_found
from latentpath.atoms.model import SHIPPED_MODEL_DIR
from latentpath.atoms.training import label_map, synthetic_training_set, train_segmenter
from latentpath.evaluate import score_atoms
from latentpath.synth import synth_stem_movie

TINY = AtomNetConfig(base_channels=4, depth=2, dilations=[2, 4])


@pytest.fixture(scope="module")
def frame():
    """A synthetic movie never used in training (the shipped weights use seeds < 2^31
    drawn from seed 0; this one is fixed and clean enough to judge positions)."""
    return synth_stem_movie(2, 256, seed=987_654, final_disorder=0.4)


def _ideal_maps(sim, radius_px=3.5):
    t_count, height, width = sim.movie.shape
    probs = np.zeros((t_count, 3, height, width), np.float32)
    probs[:, 0] = 1
    for t in range(t_count):
        atoms = sim.atoms[(sim.atoms.frame == t) & sim.atoms.in_image]
        cls = np.where(atoms.species == "Si", 2, 1)
        lab = label_map((height, width), atoms.y.to_numpy(), atoms.x.to_numpy(), cls, radius_px)
        for c in (1, 2):
            probs[t, c] = lab == c
        probs[t, 0] = lab == 0
    return probs


def test_blobs_recover_true_atoms_from_ideal_maps(frame):
    found = blobs(_ideal_maps(frame), species=("C", "Si"))
    truth = frame.atoms[frame.atoms.in_image]
    scores = score_atoms(found, truth, pixel_size_A=frame.pixel_size_A)
    assert scores["f1"] > 0.99
    assert scores["species_accuracy"] == 1.0
    assert scores["mean_error_A"] < 0.03


def test_blobs_on_empty_maps_give_an_empty_table():
    probs = np.zeros((2, 3, 32, 32), np.float32)
    probs[:, 0] = 1
    table = blobs(probs, species=("C", "Si"))
    assert list(table.columns) == ["frame", "y", "x", "species", "score"]
    assert len(table) == 0


def test_blobs_reject_bad_maps():
    with pytest.raises(ValueError, match=r"\(T, C, H, W\)"):
        blobs(np.zeros((4, 4)), species=("C",))
    with pytest.raises(ValueError, match="species names"):
        blobs(np.zeros((3, 8, 8)), species=("C",))
    with pytest.raises(ValueError, match="NaN"):
        blobs(np.full((2, 8, 8), np.nan), species=("C",))


def test_gaussian_refinement_moves_guesses_onto_atoms():
    clean = synth_stem_movie(1, 192, seed=31, dose_e_per_A2=1e8, jitter_px=0.0)
    truth = clean.atoms[clean.atoms.in_image].reset_index(drop=True)
    truth = truth[truth.x.between(6, 185) & truth.y.between(6, 185)].reset_index(drop=True)
    rng = np.random.default_rng(0)
    guess = truth[["frame", "y", "x", "species"]].copy()
    guess["y"] += rng.normal(0, 0.7, len(guess))
    guess["x"] += rng.normal(0, 0.7, len(guess))
    refined = refine_gaussian(clean.movie, guess, half_width_px=4, sigma_px=4.5)
    before = np.hypot(guess.y - truth.y, guess.x - truth.x)
    after = np.hypot(refined.y - truth.y, refined.x - truth.x)
    assert refined.refined.mean() > 0.9
    assert np.median(after[refined.refined]) < 0.3 < np.median(before)


def test_gaussian_refinement_does_not_depend_on_a_detector_offset():
    """The fits run in float32 on patches relative to their darkest pixel: a large
    constant offset (raw counts on a pedestal) must place the atoms the same."""
    clean = synth_stem_movie(1, 128, seed=32, dose_e_per_A2=1e8, jitter_px=0.0)
    truth = clean.atoms[clean.atoms.in_image]
    guess = truth[truth.x.between(6, 121) & truth.y.between(6, 121)][["frame", "y", "x"]]
    guess = guess.reset_index(drop=True) + np.r_[0, 0.4, -0.3]
    image = clean.movie.astype(np.float64) / clean.movie.max()
    plain = refine_gaussian(image, guess, half_width_px=4, sigma_px=4.5)
    lifted = refine_gaussian(image + 1e5, guess, half_width_px=4, sigma_px=4.5)
    assert plain.refined.mean() > 0.9 and (plain.refined == lifted.refined).mean() > 0.97
    both = plain.refined & lifted.refined
    assert np.hypot(plain.y - lifted.y, plain.x - lifted.x)[both].max() < 0.01


def test_a_fit_moves_an_atom_only_where_it_places_it_well():
    """On a clean frame the fits' positions are certain and kept; on a noisy one they
    scatter more than the starting positions and the starting positions stay."""
    for dose, kept in ((1e8, True), (2e4, False)):
        sim = synth_stem_movie(1, 192, seed=31, dose_e_per_A2=dose, jitter_px=0.0)
        truth = sim.atoms[sim.atoms.in_image]
        truth = truth[truth.x.between(6, 185) & truth.y.between(6, 185)].reset_index(drop=True)
        start = truth[["frame", "y", "x"]].copy()
        start["y"] += np.random.default_rng(0).normal(0, 0.3, len(start))
        free = refine_gaussian(sim.movie, start, half_width_px=4, sigma_px=4.5)
        gated = refine_gaussian(sim.movie, start, half_width_px=4, sigma_px=4.5,
                                max_error_px=0.3)
        fitted = free.refined.to_numpy()
        assert fitted.mean() > 0.3 and free.fit_error_px[fitted].notna().all()
        # the gate takes a fit's position or leaves the start, nothing else
        took = gated.refined.to_numpy()
        assert took.sum() <= fitted.sum()
        np.testing.assert_array_equal(gated.y[took], free.y[took])
        np.testing.assert_array_equal(gated.y[~took], start.y[~took])
        assert (gated.fit_error_px[took] <= 0.3).all()
        error = np.hypot(free.y - truth.y, free.x - truth.x)[fitted]
        if kept:
            assert took.mean() > 0.9 and np.median(error) < 0.3
        else:
            assert took.mean() < 0.2 and np.median(error) > 0.3


def test_bfloat16_segmentation_finds_the_same_atoms():
    sim = synth_stem_movie(1, 192, seed=12)
    exact = find_atoms(sim.movie, pixel_size_A=sim.pixel_size_A, device="cpu",
                       precision="float32")
    fast = find_atoms(sim.movie, pixel_size_A=sim.pixel_size_A, device="cpu",
                      precision="bfloat16")
    assert abs(len(fast) - len(exact)) <= 1
    assert (exact.attrs["precision"], fast.attrs["precision"]) == ("float32", "bfloat16")
    scores = score_atoms(fast, exact, pixel_size_A=sim.pixel_size_A)
    assert scores["f1"] > 0.99 and scores["mean_error_A"] < 0.01
    with pytest.raises(ValueError, match="precision"):
        find_atoms(sim.movie, pixel_size_A=sim.pixel_size_A, precision="half")


def test_model_forward_and_safe_roundtrip(tmp_path):
    torch.manual_seed(0)
    model = AtomUNet(TINY).eval()
    x = torch.randn(2, 1, 32, 48)
    out = model(x)
    assert out.shape == (2, 3, 32, 48)
    save_model(model, tmp_path / "m", extra={"note": "test"})
    loaded = load_model(tmp_path / "m")
    with torch.no_grad():
        assert torch.equal(model(x), loaded(x))
    assert loaded.training_record == {"note": "test"}
    with pytest.raises(FileExistsError):
        save_model(model, tmp_path / "m")


def test_the_inference_copy_is_reused_until_the_model_changes():
    torch.manual_seed(0)
    model = AtomUNet(TINY).eval()
    fast = model.for_inference("cpu")
    assert model.for_inference("cpu") is fast
    assert "_inference" not in model.state_dict() and not any(
        "_inference" in name for name, _ in model.named_modules())
    x = torch.randn(1, 1, 32, 32)
    with torch.no_grad():
        assert torch.allclose(fast(x), model(x), atol=1e-5)
        next(model.parameters()).mul_(1.5)
        changed = model.for_inference("cpu")
        assert changed is not fast and torch.allclose(changed(x), model(x), atol=1e-5)
        model.head = torch.nn.Conv2d(model.head.in_channels, model.head.out_channels, 1)
        assert torch.allclose(model.for_inference("cpu")(x), model(x), atol=1e-5)
    # tensors made in inference mode keep no version: such a model is folded each time
    with torch.inference_mode():
        frozen = AtomUNet(TINY).eval()
        assert torch.allclose(frozen.for_inference("cpu")(x), frozen(x), atol=1e-5)


def test_bad_model_directories_give_clear_errors(tmp_path):
    with pytest.raises(ModelFileError, match=r"config\.json missing"):
        load_model(tmp_path)
    model = AtomUNet(TINY)
    save_model(model, tmp_path / "m")
    (tmp_path / "m" / "weights.safetensors").write_bytes(b"not a tensor file at all")
    with pytest.raises(ModelFileError, match="unreadable weights"):
        load_model(tmp_path / "m")
    save_model(model, tmp_path / "k")
    record = json.loads((tmp_path / "k" / "config.json").read_text())
    (tmp_path / "k" / "config.json").write_text(json.dumps({**record, "kind": "rvae"}))
    with pytest.raises(ModelFileError, match="not a latentpath atom-segmentation model"):
        load_model(tmp_path / "k")
    record["architecture"]["base_channels"] = 8
    (tmp_path / "k" / "config.json").write_text(json.dumps(record))
    with pytest.raises(ModelFileError, match="do not fit"):
        load_model(tmp_path / "k")
    (tmp_path / "k" / "config.json").write_text("{broken")
    with pytest.raises(ModelFileError, match="not valid JSON"):
        load_model(tmp_path / "k")


@pytest.mark.parametrize("pixel_size", [0.06, 0.11, 0.18])
def test_pixel_size_from_the_lattice(pixel_size):
    # At least ten lattice periods across the frame.
    sim = synth_stem_movie(1, 384, pixel_size_A=pixel_size, seed=5, final_disorder=0.3)
    estimate, prominence = estimate_pixel_size(sim.movie)
    assert estimate == pytest.approx(pixel_size, rel=0.04)
    assert prominence > 1


def test_segment_shapes_and_probabilities():
    model = AtomUNet(TINY).eval()
    images = np.random.default_rng(0).random((3, 70, 90)).astype(np.float32)
    probs = segment(images, model, pixel_size_A=0.1, batch_size=2)
    assert probs.shape == (3, 3, 70, 90)
    assert np.allclose(probs.sum(1), 1, atol=1e-4)
    small = segment(images, model, pixel_size_A=0.1, at_input_sampling=False)
    assert small.shape == (3, 3, 35, 45)


def test_training_lowers_the_loss():
    images, labels, meta = synthetic_training_set(2, frames_per_movie=2, size_px=64, seed=1)
    assert images.shape == labels.shape == (4, 64, 64)
    assert set(np.unique(labels)) <= {0, 1, 2} and (labels == 1).any()
    assert {"pixel_size_A", "dose_e_per_A2"} <= set(meta.columns)
    torch.manual_seed(0)
    model = AtomUNet(TINY)
    history = train_segmenter(model, images, labels, steps=150, batch_size=4, crop_px=32,
                              lr=3e-3, seed=0)
    assert history.loss.iloc[-1] < 0.6 * history.loss.iloc[0]


def test_find_atoms_rejects_bad_input():
    model = AtomUNet(TINY).eval()
    with pytest.raises(ValueError, match=r"\(T, H, W\)"):
        find_atoms(np.zeros((1, 1, 64, 64)), pixel_size_A=0.1, model=model)
    noisy = np.random.default_rng(0).random((2, 200, 200)).astype(np.float32)
    nan = noisy.copy()
    nan[1, 5, 5] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        find_atoms(nan, pixel_size_A=0.1, model=model)
    flat = noisy.copy()
    flat[1] = 3.0
    with pytest.raises(ValueError, match="constant"):
        find_atoms(flat, pixel_size_A=0.1, model=model)
    with pytest.raises(ValueError, match="too small"):
        find_atoms(noisy[:, :40, :40], pixel_size_A=0.1, model=model)
    with pytest.raises(ValueError, match="pixel size"):
        find_atoms(noisy, pixel_size_A=-1.0, model=model)


def test_score_atoms_counts_what_it_should(frame):
    truth = frame.atoms[frame.atoms.in_image]
    perfect = score_atoms(truth, truth, pixel_size_A=0.1)
    assert perfect["f1"] == 1.0 and perfect["mean_error_A"] == 0.0
    shape = frame.movie.shape[1:]
    inner = drop_border(truth, shape, 10.0)
    half = inner.iloc[::2]
    scores = score_atoms(half, truth, pixel_size_A=0.1, frames_table=frame.frames,
                         image_shape=shape, border_A=1.0)
    assert scores["precision"] == 1.0
    # true atoms are scored from 1 A + the match radius (0.5 A) inward
    scored = drop_border(truth, shape, 15.0)
    kept = half.merge(scored[["frame", "y", "x"]], on=["frame", "y", "x"])
    assert scores["recall"] == pytest.approx(len(kept) / len(scored))
    assert scores["false_per_10nm2_disordered"] == 0.0
    # A found atom in a hole is a false atom in the disordered area.
    first = frame.atoms[frame.atoms.frame == 0]
    gy, gx = np.mgrid[20:236:4, 20:236:4]
    far = np.hypot(gy.ravel()[:, None] - first.y.to_numpy(),
                   gx.ravel()[:, None] - first.x.to_numpy()).min(1) > 30
    assert far.any(), "the fixture's first frame should have a hole"
    k = int(np.flatnonzero(far)[0])
    stray = pd.DataFrame({"frame": [0], "y": [float(gy.ravel()[k])],
                          "x": [float(gx.ravel()[k])], "species": ["C"]})
    with_stray = score_atoms(pd.concat([inner, stray]), truth, pixel_size_A=0.1,
                             frames_table=frame.frames, image_shape=shape)
    assert with_stray["false_per_10nm2_disordered"] > 0


def test_atoms_on_the_border_line_are_neither_missed_nor_false(frame):
    """A finder that scatters every atom by 0.05 A and drops those within 1 A of the
    edge, as find_atoms does, scores F1 = 1: the true atom just beyond the line whose
    found atom fell just inside is no miss, and the other way round no false find."""
    truth = frame.atoms[frame.atoms.in_image].reset_index(drop=True)
    shape = frame.movie.shape[1:]
    rng = np.random.default_rng(3)
    jittered = truth[["frame", "y", "x", "species"]].copy()
    jittered[["y", "x"]] += rng.normal(0, 0.5, (len(truth), 2))
    found = drop_border(jittered, shape, 10.0)
    beyond = drop_border(truth, shape, 10.0)
    assert len(found) != len(beyond), "the jitter should move atoms across the 1 A line"
    assert score_atoms(found, truth, pixel_size_A=0.1, image_shape=shape)["f1"] == 1.0
    # a find 1.1 A from the edge with no true atom near is still false...
    first = truth[truth.frame == 0]
    ys = np.arange(20.0, shape[0] - 20.0)
    gap = np.hypot(ys[:, None] - first.y.to_numpy(), 11.0 - first.x.to_numpy()).min(1)
    assert gap.max() > 5
    lone = pd.DataFrame({"frame": [0], "y": [ys[gap.argmax()]], "x": [11.0], "species": ["C"]})
    worse = score_atoms(pd.concat([found, lone]), truth, pixel_size_A=0.1, image_shape=shape)
    assert worse["precision"] < 1.0 and worse["recall"] == 1.0
    # ...and a true atom well inside without its find still missed
    centre = np.hypot(found.y - shape[0] / 2, found.x - shape[1] / 2)
    missing = score_atoms(found.drop(index=centre.nsmallest(3).index), truth,
                          pixel_size_A=0.1, image_shape=shape)
    assert missing["recall"] < 1.0 and missing["precision"] == 1.0


shipped = pytest.mark.skipif(not (SHIPPED_MODEL_DIR / "weights.safetensors").exists(),
                             reason="no shipped weights (run scripts/train_atom_weights.py)")


@shipped
def test_shipped_weights_are_small_and_load():
    assert (SHIPPED_MODEL_DIR / "weights.safetensors").stat().st_size < 10 * 2**20
    model = load_model()
    assert model.config.species == ["C", "Si"]
    assert model.training_record["seconds"]["total"] > 0


@shipped
def test_the_averaged_network_turns_with_the_frame():
    # averaged over the eight orientations, the probabilities of a turned or mirrored
    # frame are those of the frame, turned or mirrored alike; one pass's are not
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        model = AtomUNet(TINY).eval()
    frame = np.random.default_rng(1).random((1, 48, 48)).astype(np.float32)
    turned = np.rot90(frame, 1, (-2, -1)).copy()
    mirrored = frame[..., ::-1].copy()
    kwargs = {"pixel_size_A": TINY.pixel_size_A, "at_input_sampling": False,
              "precision": "float32"}
    once = segment(frame, model, **kwargs)
    assert not np.allclose(segment(turned, model, **kwargs), np.rot90(once, 1, (-2, -1)),
                           atol=1e-4)
    both = segment(frame, model, augment=True, **kwargs)
    assert np.allclose(segment(turned, model, augment=True, **kwargs),
                       np.rot90(both, 1, (-2, -1)), atol=1e-5)
    assert np.allclose(segment(mirrored, model, augment=True, **kwargs), both[..., ::-1],
                       atol=1e-5)
    assert np.allclose(both.sum(1), 1, atol=1e-5)


def test_shipped_weights_find_atoms_on_unseen_synthetic_frames(frame):
    found = find_atoms(frame.movie, pixel_size_A=frame.pixel_size_A, device="cpu")
    scores = score_atoms(found, frame.atoms, pixel_size_A=frame.pixel_size_A,
                         image_shape=frame.movie.shape[1:])
    assert scores["f1"] > 0.98
    assert scores["species_accuracy"] > 0.98
    assert scores["mean_error_A"] < 0.1
    assert found.attrs["pixel_size_source"] == "argument"
    assert not found.attrs["augmented"]
    averaged = find_atoms(frame.movie, pixel_size_A=frame.pixel_size_A, device="cpu",
                          augment=True)
    assert averaged.attrs["augmented"]
    assert any("averaged over 8" in line for line in describe_found(averaged))
    again = score_atoms(averaged, frame.atoms, pixel_size_A=frame.pixel_size_A,
                        image_shape=frame.movie.shape[1:])
    assert again["f1"] > 0.98 and again["mean_error_A"] < 0.1


@shipped
def test_tiles_are_stitched_without_duplicate_atoms(frame):
    model = load_model()
    whole = segment(frame.movie[:1], model, pixel_size_A=0.1, at_input_sampling=False)
    tiled = segment(frame.movie[:1], model, pixel_size_A=0.1, at_input_sampling=False,
                    tile_px=64, overlap_px=16)
    a = blobs(whole, species=model.config.species)
    b = blobs(tiled, species=model.config.species)
    assert abs(len(a) - len(b)) <= 0.01 * len(a) + 1
    scores = score_atoms(b, a.assign(in_image=True), pixel_size_A=0.2, match_radius_A=0.1)
    assert scores["f1"] > 0.98


@shipped
def test_vacuum_gives_an_empty_table_and_a_warning():
    rng = np.random.default_rng(3)
    vacuum = rng.poisson(5.0, (1, 256, 256)).astype(np.float32)
    with pytest.warns(UserWarning, match="no atoms"):
        found = find_atoms(vacuum, pixel_size_A=0.1, device="cpu")
    assert len(found) == 0 and list(found.columns)[:5] == ["frame", "y", "x", "species",
                                                          "score"]


@shipped
def test_self_training_returns_a_tuned_copy(frame):
    base = load_model()
    tuned, labels = self_train(frame.movie, n_frames=1, pixel_size_A=0.1, model=base,
                               steps=3, batch_size=2, device="cpu")
    assert tuned is not base
    assert len(labels) > 100
    first = next(iter(base.parameters()))
    assert not torch.equal(first, next(iter(tuned.parameters())))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        after = find_atoms(frame.movie, pixel_size_A=0.1, model=tuned, device="cpu")
    change = compare_tables(labels, after[after.frame == 0], radius_px=5)
    assert list(change.columns) == ["frame", "before", "after", "added", "removed",
                                    "species_changed"]
    assert isinstance(change, pd.DataFrame)


@shipped
def test_pixel_size_is_estimated_when_not_given(frame):
    found = find_atoms(frame.movie[:1], device="cpu")
    assert found.attrs["pixel_size_source"] == "lattice"
    assert found.attrs["pixel_size_A"] == pytest.approx(0.1, rel=0.04)
    given = find_atoms(frame.movie[:1], pixel_size_A=0.1, device="cpu")
    assert abs(len(found) - len(given)) <= 0.03 * len(given)
