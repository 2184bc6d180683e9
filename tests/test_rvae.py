"""The skip-rVAE: model, normalisation, files, deterministic and resumable training,
encoding and decoding."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest
import torch
from conftest import MOTIFS, SMALL
from scipy.spatial import cKDTree

import latentpath.rvae.train
from latentpath.adam import Adam
from latentpath.rvae import (
    ModelFileError,
    RVAEConfig,
    SkipRVAE,
    TrainingStop,
    balanced_weights,
    compile_pays,
    decode,
    encode,
    epoch_order,
    fit_rvae,
    load_rvae,
    training_record,
)
from latentpath.synth.motifs import synth_motif_windows


def test_decoder_takes_latents_in_every_layer():
    model = SkipRVAE(RVAEConfig(window_px=12, latent_dim=3, hidden=16, layers=4))
    assert len(model.latent_in) == 5
    atomai_like = SkipRVAE(RVAEConfig(window_px=12, latent_dim=3, hidden=16, layers=4,
                                      skip="first_layer"))
    assert len(atomai_like.latent_in) == 1
    x = torch.randn(5, 12, 12)
    recon, mu, logvar = model(x, generator=torch.Generator().manual_seed(0))
    assert recon.shape == (5, 12, 12) and mu.shape == logvar.shape == (5, 6)
    # The content latents change the decoded image through the skip connections.
    z = torch.zeros(1, 3)
    a = model.decode(z, torch.zeros(1), torch.zeros(1, 2))
    b = model.decode(z + 1, torch.zeros(1), torch.zeros(1, 2))
    assert not torch.allclose(a, b)


@pytest.mark.parametrize("n_windows", [0, 1, 5])
@pytest.mark.parametrize("pixels", [10, 4])  # more samples than units, and fewer
def test_a_decoder_layer_is_tanh_of_the_linear_layer_plus_the_skip(n_windows, pixels):
    from latentpath.rvae.model import _tanh_layer

    gen = torch.Generator().manual_seed(0)
    layer = torch.nn.Linear(6, 8)
    a = torch.randn(n_windows, pixels, 6, generator=gen, requires_grad=True)
    skip = torch.randn(n_windows, 1, 8, generator=gen, requires_grad=True)
    out = _tanh_layer(a, layer, skip)
    expected = torch.tanh(layer(a) + skip)
    torch.testing.assert_close(out, expected)
    if n_windows:
        grads = torch.autograd.grad(out.square().sum(), [a, skip, layer.weight, layer.bias])
        wanted = torch.autograd.grad(expected.square().sum(),
                                     [a, skip, layer.weight, layer.bias])
        for got, want in zip(grads, wanted, strict=True):
            torch.testing.assert_close(got, want)
    # under autocast the whole layer runs in bfloat16 (the separate add had promoted
    # the sum, and so the tanh, to float32)
    with torch.autocast("cpu", dtype=torch.bfloat16), torch.no_grad():
        low = _tanh_layer(a, layer, skip)
    assert low.dtype == torch.bfloat16
    torch.testing.assert_close(low.float(), expected.detach(), atol=0.02, rtol=0)


def test_decode_rotation_rotates_the_image():
    model = SkipRVAE(RVAEConfig(window_px=15, hidden=32, layers=3)).eval()
    z = torch.randn(1, 2)
    upright = model.decode(z, torch.zeros(1), torch.zeros(1, 2))[0].detach().numpy()
    turned = model.decode(z, torch.tensor([np.pi / 2]), torch.zeros(1, 2))[0].detach().numpy()
    # A quarter turn of the coordinates is a quarter turn of the pixel grid.
    assert np.allclose(np.rot90(upright, 1), turned, atol=1e-5) or np.allclose(
        np.rot90(upright, -1), turned, atol=1e-5)


def test_decoding_chosen_pixels_gives_those_pixels_of_the_whole_image():
    for channels in (1, 2):
        model = SkipRVAE(RVAEConfig(window_px=9, channels=channels, hidden=16, layers=2))
        z, angle, shift = torch.randn(3, 2), torch.randn(3), 0.1 * torch.randn(3, 2)
        pixels = torch.tensor([0, 7, 40, 80, 41])
        whole = model.decode(z, angle, shift).flatten(-2)
        assert torch.allclose(model.decode(z, angle, shift, pixels=pixels),
                              whole[..., pixels], atol=1e-6)


def test_sampled_pixel_losses_average_to_the_whole_windows_loss():
    from latentpath.rvae.train import _BatchLoss

    model = SkipRVAE(RVAEConfig(window_px=8, hidden=16, layers=2)).eval()
    terms = _BatchLoss(model)
    x, eps = torch.randn(4, 8, 8), torch.randn(4, 5)
    whole, kl = terms(x, eps, torch.tensor(1.0), False)
    # four disjoint quarters of the pixels, each scaled up to the whole window
    quarters = [terms(x, eps, torch.tensor(1.0), False, part)
                for part in torch.randperm(64, generator=torch.Generator().manual_seed(0))
                .reshape(4, 16)]
    assert torch.allclose(torch.stack([rec for rec, _ in quarters]).mean(), whole)
    assert all(torch.equal(k, kl) for _, k in quarters)


def test_raw_counts_train_without_nan(tmp_path):
    rng = np.random.default_rng(0)
    counts = rng.poisson(4000.0, (64, 8, 8)).astype(np.uint16)
    history = fit_rvae(counts, tmp_path / "m", epochs=2, seed=0, **SMALL)
    assert np.isfinite(history[["train_loss", "val_loss"]].to_numpy()).all()
    model = load_rvae(tmp_path / "m")
    assert model.config.offset == pytest.approx(counts.mean(), rel=1e-4)
    assert model.config.scale == pytest.approx(counts.std(), rel=1e-3)


def test_ring_sizes_separate_in_the_content_latents(rings, trained):
    windows, truth = rings
    model = load_rvae(trained[0])
    latents = encode(model, windows)
    z = latents[["z1", "z2"]].to_numpy()
    sizes = truth.ring_size.to_numpy()
    train, test = slice(0, 800), slice(800, None)
    _, idx = cKDTree(z[train]).query(z[test], k=5)
    votes = sizes[train][idx]
    predicted = np.array([np.bincount(v).argmax() for v in votes])
    assert (predicted == sizes[test]).mean() >= 0.95


def test_content_latents_are_rotation_invariant(rings, trained):
    windows, truth = rings
    model = load_rvae(trained[0])
    turn = np.random.default_rng(1).uniform(-np.pi, np.pi, len(windows))
    turned, _ = synth_motif_windows(len(windows), rotate_rad=turn, **MOTIFS)
    before, after = encode(model, windows), encode(model, turned)
    z, z_turned = before[["z1", "z2"]].to_numpy(), after[["z1", "z2"]].to_numpy()
    move = np.linalg.norm(z_turned - z, axis=1) / np.linalg.norm(z.std(0))
    assert move.mean() < 0.10
    # A ring of n atoms looks the same every 2 pi / n, so its angle is defined modulo
    # that. Turning the coordinates by +a turns the image by -a, hence the sign.
    period = 2 * np.pi / truth.ring_size.to_numpy()
    error = (after.angle - before.angle + turn + period / 2) % period - period / 2
    assert (np.abs(error) < 0.2).mean() >= 0.95


def test_model_files_of_earlier_versions_still_load(rings, trained, tmp_path):
    import shutil

    old = tmp_path / "old"
    shutil.copytree(trained[0], old)
    record = json.loads((old / "config.json").read_text())
    assert "extra" not in record["architecture"]
    record["architecture"]["extra"] = {}  # what earlier versions wrote
    (old / "config.json").write_text(json.dumps(record))
    windows, _ = rings
    assert np.array_equal(encode(load_rvae(old), windows[:20])[["z1", "z2"]].to_numpy(),
                          encode(load_rvae(trained[0]), windows[:20])[["z1", "z2"]].to_numpy())


def test_save_load_encode_identical(rings, trained, tmp_path):
    windows, truth = rings
    model = load_rvae(trained[0])
    table = truth.iloc[:100].rename(columns={"angle": "true_angle", "dy": "true_dy",
                                             "dx": "true_dx"})
    first = encode(model, windows[:100], table=table)
    again = encode(load_rvae(trained[0]), windows[:100])
    assert np.array_equal(first[["angle", "dx", "dy", "z1", "z2"]].to_numpy(),
                          again[["angle", "dx", "dy", "z1", "z2"]].to_numpy())
    assert list(first.columns[:5]) == ["ring_size", "true_angle", "true_dy", "true_dx", "angle"]
    with pytest.raises(ValueError, match="latent column"):
        encode(model, windows[:100], table=truth.iloc[:100])
    assert {"sd_z1", "sd_angle"} <= set(first.columns)
    record = json.loads((trained[0] / "config.json").read_text())
    assert record["training"]["best_epoch"] >= 1


def test_history_reports_speed_and_losses(trained):
    _, history = trained
    assert list(history.epoch) == list(range(1, 41))
    assert (history.windows_per_s > 0).all()
    assert history.val_loss.iloc[-5:].mean() < history.val_loss.iloc[:3].mean()


def test_decode_gives_images_in_data_units(rings, trained):
    windows, _ = rings
    model = load_rvae(trained[0])
    images = decode(model, np.zeros((3, 2)), angle=[0.0, 1.0, 2.0])
    assert images.shape == (3, 16, 16) and images.dtype == np.float32
    assert abs(images.mean() - windows.mean()) < 3 * windows.std()
    with pytest.raises(ValueError, match="latents"):
        decode(model, np.zeros((2, 5)))


def test_training_is_deterministic_and_resumes_to_the_same_result(tmp_path):
    windows, _ = synth_motif_windows(160, window_px=10, seed=3)
    straight = fit_rvae(windows, tmp_path / "a", epochs=4, seed=7, **SMALL)
    fit_rvae(windows, tmp_path / "b", epochs=2, seed=7, **SMALL)
    resumed = fit_rvae(windows, tmp_path / "b", epochs=4, seed=7, resume=True, **SMALL)
    assert np.allclose(straight.val_loss, resumed.val_loss, rtol=0, atol=0)
    za = encode(load_rvae(tmp_path / "a"), windows)
    zb = encode(load_rvae(tmp_path / "b"), windows)
    assert np.array_equal(za.to_numpy(), zb.to_numpy())
    with pytest.raises(FileExistsError, match="resume"):
        fit_rvae(windows, tmp_path / "a", epochs=4, seed=7, **SMALL)
    with pytest.raises(ModelFileError, match="other data or settings"):
        fit_rvae(windows, tmp_path / "a", epochs=5, seed=8, resume=True, **SMALL)


def test_a_kill_while_saving_a_checkpoint_resumes_to_the_same_result(tmp_path, monkeypatch):
    import latentpath.rvae.files as files

    windows, _ = synth_motif_windows(120, window_px=10, seed=3)
    straight = fit_rvae(windows, tmp_path / "a", epochs=3, seed=7, **SMALL)
    write_record = files.write_record

    def killed_at_epoch_2(record, path):
        if path.name == "checkpoint.json" and record["epoch"] == 2:
            raise KeyboardInterrupt  # after epoch 2's tensors, before its JSON
        write_record(record, path)

    monkeypatch.setattr(files, "write_record", killed_at_epoch_2)
    with pytest.raises(KeyboardInterrupt):
        fit_rvae(windows, tmp_path / "b", epochs=3, seed=7, **SMALL)
    monkeypatch.setattr(files, "write_record", write_record)
    assert json.loads((tmp_path / "b" / "checkpoint.json").read_text())["epoch"] == 1
    resumed = fit_rvae(windows, tmp_path / "b", epochs=3, seed=7, resume=True, **SMALL)
    assert np.array_equal(straight.val_loss, resumed.val_loss)
    assert [p.name for p in (tmp_path / "b").glob("checkpoint*.safetensors")] == [
        "checkpoint-00003.safetensors"]


def test_memory_mapped_windows(tmp_path):
    windows, _ = synth_motif_windows(96, window_px=8, seed=4)
    path = tmp_path / "w.npy"
    np.save(path, windows)
    history = fit_rvae(path, tmp_path / "m", epochs=1, seed=0, **SMALL)
    assert len(history) == 1
    latents = encode(load_rvae(tmp_path / "m"), path)
    assert len(latents) == 96


def test_bad_windows_are_rejected(tmp_path):
    with pytest.raises(ValueError, match=r"\(N, w, w\)"):
        fit_rvae(np.zeros((4, 8, 9)), tmp_path / "m", **SMALL)
    nan = np.zeros((10, 8, 8), np.float32)
    nan[6, 1, 1] = np.nan
    with pytest.raises(ValueError, match="window 6"):
        fit_rvae(nan, tmp_path / "m", **SMALL)
    with pytest.raises(FileNotFoundError, match=r"missing\.npy"):
        fit_rvae(tmp_path / "missing.npy", tmp_path / "m", **SMALL)


def test_bad_model_directories(tmp_path, trained):
    with pytest.raises(ModelFileError, match=r"config\.json missing"):
        load_rvae(tmp_path)
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "config.json").write_text(json.dumps({"kind": "something else"}))
    with pytest.raises(ModelFileError, match="not a latentpath skip-rVAE"):
        load_rvae(bad)
    record = json.loads((trained[0] / "config.json").read_text())
    (bad / "config.json").write_text(json.dumps(record))
    (bad / "weights.safetensors").write_bytes(b"\x00" * 20)
    with pytest.raises(ModelFileError, match="unreadable"):
        load_rvae(bad)


def test_compiled_training_matches_eager(tmp_path, monkeypatch):
    windows, _ = synth_motif_windows(96, window_px=8, seed=6)
    settings = {**SMALL, "epochs": 2, "seed": 0}
    eager = fit_rvae(windows, tmp_path / "eager", **settings)
    compiled = fit_rvae(windows, tmp_path / "compiled", **{**settings, "compile": True})
    assert np.allclose(eager.val_loss, compiled.val_loss, rtol=1e-3)
    fit_rvae(windows, tmp_path / "resumed", **{**settings, "compile": True, "epochs": 1})
    resumed = fit_rvae(windows, tmp_path / "resumed", resume=True,
                       **{**settings, "compile": True})
    assert np.array_equal(resumed.val_loss, compiled.val_loss)

    def broken(fn, **options):
        def call(*args):
            raise RuntimeError("no C++ compiler")
        return call

    monkeypatch.setattr(torch, "compile", broken)
    with pytest.warns(RuntimeWarning, match="torch.compile failed"):
        fallback = fit_rvae(windows, tmp_path / "fallback", **{**settings, "compile": True})
    assert np.array_equal(fallback.val_loss, eager.val_loss)


def test_compile_auto_compiles_only_long_trainings(tmp_path, monkeypatch):
    windows, _ = synth_motif_windows(64, window_px=8, seed=5)
    settings = {**SMALL, "epochs": 1, "seed": 0, "compile": "auto"}
    calls = []
    monkeypatch.setattr(torch, "compile", lambda fn, **options: calls.append(fn) or fn)
    fit_rvae(windows, tmp_path / "short", **settings)
    record = json.loads((tmp_path / "short" / "config.json").read_text())["training"]
    assert (calls, record["compile"]) == ([], False)
    assert not compile_pays(24, 100, 1024, 256, 4, "cpu")  # 1,200 windows, 2 epochs
    assert compile_pays(4000, 32, 256, 128, 3, "cpu")  # a STEM model of 16 x 16 windows
    monkeypatch.setattr(latentpath.rvae.train, "COMPILE_MIN_FLOP", {"cpu": 1.0, "cuda": 1.0})
    # compiled kernels go to the user's cache directory, not the temporary folder
    monkeypatch.delenv("TORCHINDUCTOR_CACHE_DIR", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    fit_rvae(windows, tmp_path / "long", **settings)
    assert len(calls) == 1
    assert os.environ["TORCHINDUCTOR_CACHE_DIR"] == str(tmp_path / "cache" / "latentpath"
                                                        / "torch-compile")
    # the checkpoint of a compiled run resumes without compiling: only the speed differs
    fit_rvae(windows, tmp_path / "long", resume=True, **{**settings, "compile": False,
                                                         "epochs": 2})
    with pytest.raises(ValueError, match="compile must be"):
        fit_rvae(windows, tmp_path / "bad", **{**settings, "compile": "yes"})


def test_precision_options(tmp_path):
    windows, _ = synth_motif_windows(64, window_px=8, seed=5)
    settings = {**SMALL, "epochs": 1, "seed": 0}
    for precision in ("bfloat16", "auto"):
        history = fit_rvae(windows, tmp_path / precision, **{**settings, "precision": precision})
        assert np.isfinite(history.val_loss).all()
    chosen = json.loads((tmp_path / "auto" / "config.json").read_text())["training"]
    assert chosen["precision"] in ("float32", "bfloat16")
    with pytest.raises(ValueError, match="precision"):
        fit_rvae(windows, tmp_path / "n", **{**settings, "precision": "float16"})


def test_channels_turn_together_and_round_trip(tmp_path):
    model = SkipRVAE(RVAEConfig(window_px=15, channels=2, hidden=32, layers=3)).eval()
    z = torch.randn(1, 2)
    upright = model.decode(z, torch.zeros(1), torch.zeros(1, 2))[0].detach().numpy()
    turned = model.decode(z, torch.tensor([np.pi / 2]), torch.zeros(1, 2))[0].detach().numpy()
    assert upright.shape == (2, 15, 15)
    # Both channels turn by the same quarter turn.
    k = 1 if np.allclose(np.rot90(upright[0], 1), turned[0], atol=1e-5) else -1
    assert np.allclose(np.rot90(upright, k, axes=(1, 2)), turned, atol=1e-5)
    # The two channels are different images of one window (the same place at two times).
    rng = np.random.default_rng(0)
    first = rng.normal(size=(64, 8, 8)).astype(np.float32)
    pairs = np.stack([first, -first], axis=1)
    fit_rvae(pairs, tmp_path / "m", epochs=1, seed=0, **SMALL)
    trained = load_rvae(tmp_path / "m")
    assert trained.config.channels == 2
    assert len(encode(trained, pairs)) == 64
    assert decode(trained, np.zeros((3, 2))).shape == (3, 2, 8, 8)
    with pytest.raises(ValueError, match="channel"):
        encode(trained, first)



#: 100 windows of 12 px: 10 held out, 90 trained on in 3 batches of up to 32
TOY = {**SMALL, "hidden": 16, "seed": 0}
TOY_BATCHES = 3
#: a loose convergence rule, so that the toy run stops within a few epochs
STALL = {"patience": 2, "min_delta": 0.05}


@pytest.fixture(scope="module")
def toy():
    windows, truth = synth_motif_windows(100, window_px=12, seed=3)
    return windows, truth.ring_size.to_numpy()


def _first_stall(val_loss, patience, min_delta):
    """The epoch at which the documented rule stops, recomputed from the history."""
    ref, bad = None, 0
    for epoch, val in enumerate(val_loss, 1):
        if ref is None or val < ref * (1 - min_delta):
            ref, bad = val, 0
        else:
            bad += 1
        if bad >= patience:
            return epoch
    return None


def _same_run(a, b):
    """Same losses, steps and stop; the timing columns are the only ones that may differ."""
    columns = ["epoch", "train_loss", "train_recon", "train_kl", "val_loss", "steps"]
    assert np.array_equal(a[columns].to_numpy(), b[columns].to_numpy())
    assert a.attrs["stop"] == b.attrs["stop"]


def _same_weights(dir_a, dir_b):
    """The kept model and the last checkpoint (weights, Adam state, generator) agree."""
    from safetensors.torch import load_file

    for name in ("weights.safetensors",
                 json.loads((dir_a / "checkpoint.json").read_text())["tensors"]):
        a, b = load_file(str(dir_a / name)), load_file(str(dir_b / name))
        assert a.keys() == b.keys()
        assert all(torch.equal(a[k], b[k]) for k in a), name


def test_patience_stops_a_stalled_run_before_the_epoch_ceiling(tmp_path, toy):
    windows, _ = toy
    history = fit_rvae(windows, tmp_path / "m", epochs=40, **STALL, **TOY)
    stop = history.attrs["stop"]
    assert stop.reason == "converged" and stop.epochs_run < 40
    assert stop.epochs_run == len(history) == _first_stall(history.val_loss, **STALL)
    assert stop.steps == stop.epochs_run * TOY_BATCHES
    assert list(history.steps) == [TOY_BATCHES * e for e in history.epoch]
    assert stop.best_epoch == int(history.epoch[history.val_loss.idxmin()])
    assert stop.best_val_loss == history.val_loss.min()


def test_the_patience_stops_no_training_before_min_steps(tmp_path, toy):
    windows, _ = toy
    plain = fit_rvae(windows, tmp_path / "plain", epochs=40, **STALL, **TOY)
    stalled = plain.attrs["stop"].steps
    floor = stalled + 2 * TOY_BATCHES + 1
    history = fit_rvae(windows, tmp_path / "m", epochs=40, min_steps=floor, **STALL, **TOY)
    stop = history.attrs["stop"]
    # the patience ran out before the floor and is obeyed at the first check past it
    assert stop.reason == "converged"
    assert floor <= stop.steps < floor + TOY_BATCHES
    assert np.array_equal(history.val_loss.to_numpy()[:len(plain)], plain.val_loss.to_numpy())
    assert json.loads((tmp_path / "m" / "config.json").read_text())["training"][
        "min_steps"] == floor
    # a floor the run passes anyway changes nothing
    _same_run(fit_rvae(windows, tmp_path / "low", epochs=40, min_steps=1, **STALL, **TOY),
              plain)
    # the other stops still end it before the floor
    capped = fit_rvae(windows, tmp_path / "capped", epochs=40, max_steps=4, min_steps=100,
                      **STALL, **TOY)
    assert capped.attrs["stop"].reason == "max_steps" and capped.attrs["stop"].steps == 4
    # a floor out of the epochs' reach still leaves the cool-down its share: the
    # patience is obeyed at 0.7 of the 30 steps the epochs allow, and the cool-down ends
    # the training, not the epoch ceiling
    short = fit_rvae(windows, tmp_path / "short", epochs=10, cooldown=0.3, min_steps=1000,
                     **STALL, **TOY)
    assert short.attrs["stop"].reason == "converged" and short.attrs["stop"].steps == 30


def test_max_steps_stops_part_way_through_an_epoch(tmp_path, toy):
    windows, _ = toy
    history = fit_rvae(windows, tmp_path / "m", epochs=40, max_steps=7, **TOY)
    assert history.attrs["stop"] == TrainingStop(
        reason="max_steps", steps=7, epochs_run=3,
        best_epoch=int(history.epoch[history.val_loss.idxmin()]),
        best_val_loss=history.val_loss.min())
    assert list(history.steps) == [3, 6, 7]
    # Before the ceiling the run is the plain one, which stops at its epoch ceiling.
    plain = fit_rvae(windows, tmp_path / "plain", epochs=2, **TOY)
    assert plain.attrs["stop"].reason == "epochs" and list(plain.steps) == [3, 6]
    columns = ["train_loss", "val_loss", "steps"]
    assert np.array_equal(plain[columns].to_numpy(), history[columns].iloc[:2].to_numpy())


def test_the_stop_is_read_back_from_the_model_directory(tmp_path, toy):
    windows, _ = toy
    history = fit_rvae(windows, tmp_path / "m", epochs=40, **STALL, **TOY)
    assert training_record(tmp_path / "m") == history.attrs["stop"]
    record = json.loads((tmp_path / "m" / "config.json").read_text())["training"]
    assert record["stop_reason"] == "converged" and record["patience"] == 2
    with pytest.raises(ModelFileError, match=r"config\.json missing"):
        training_record(tmp_path)
    config = tmp_path / "m" / "config.json"
    for damage, message in ((lambda t: t.pop("stop_reason"), "no record of how"),
                            (lambda t: t.update(stop_reason=None), "not finished"),
                            (lambda t: t.pop("steps"), "damaged training record"),
                            (lambda t: t.update(stop_reason="bored"), "damaged")):
        damaged = json.loads(json.dumps(record))
        damage(damaged)
        full = json.loads(config.read_text())
        config.write_text(json.dumps({**full, "training": damaged}))
        with pytest.raises(ModelFileError, match=message) as err:
            training_record(tmp_path / "m")
        assert "config.json" in str(err.value)
    # a kill after the last checkpoint, before the record: resuming completes the record
    fit_rvae(windows, tmp_path / "m", epochs=40, resume=True, **STALL, **TOY)
    assert training_record(tmp_path / "m") == history.attrs["stop"]


def test_a_run_killed_at_any_epoch_resumes_to_the_same_stop(tmp_path, toy, monkeypatch):
    import latentpath.rvae.train as train

    windows, labels = toy
    settings = {**STALL, **TOY, "epochs": 40,
                "sample_weights": balanced_weights(labels, power=0.5)}
    straight = fit_rvae(windows, tmp_path / "straight", **settings)
    last = straight.attrs["stop"].epochs_run
    save_checkpoint = train.save_checkpoint
    # after epoch 1, mid-run, and after the last checkpoint, before the record's update
    for kill in sorted({1, last - 1, last}):
        def killed(directory, model, optimizer, gen, state, kill=kill):
            save_checkpoint(directory, model, optimizer, gen, state)
            if state["epoch"] == kill:
                raise KeyboardInterrupt

        out = tmp_path / f"killed-{kill}"
        monkeypatch.setattr(train, "save_checkpoint", killed)
        with pytest.raises(KeyboardInterrupt):
            fit_rvae(windows, out, **settings)
        monkeypatch.setattr(train, "save_checkpoint", save_checkpoint)
        resumed = fit_rvae(windows, out, resume=True, **settings)
        _same_run(straight, resumed)
        _same_weights(tmp_path / "straight", out)
        assert training_record(out) == straight.attrs["stop"]


def _recorded_rates(monkeypatch):
    """The learning rate of every optimiser step, as Adam reads it."""
    rates = []
    step = Adam.step

    def recording(self, *args, **kwargs):
        rates.append(self.lr)
        return step(self, *args, **kwargs)

    monkeypatch.setattr(Adam, "step", recording)
    return rates


def test_a_cooldown_begins_where_the_patience_runs_out(tmp_path, toy, monkeypatch):
    windows, _ = toy
    plain = fit_rvae(windows, tmp_path / "plain", epochs=40, **STALL, **TOY)
    stalled = plain.attrs["stop"].steps
    rates = _recorded_rates(monkeypatch)
    cooled = fit_rvae(windows, tmp_path / "cooled", epochs=40, cooldown=0.5, **STALL, **TOY)
    stop = cooled.attrs["stop"]
    # half of the training is the cool-down: as many steps again as the stall took
    assert stop.reason == "converged" and stop.steps == 2 * stalled == len(rates)
    assert rates[:stalled] == [TOY["lr"]] * stalled
    falling = np.array(rates[stalled:])
    assert np.all(np.diff(falling) < 0) and falling[0] == TOY["lr"] and falling[-1] > 0
    assert falling[-1] < 0.02 * TOY["lr"]
    # up to the stall it is the plain run
    columns = ["train_loss", "val_loss", "steps"]
    same = len(plain)
    assert np.array_equal(plain[columns].to_numpy(), cooled[columns].iloc[:same].to_numpy())


def test_a_cooldown_ends_at_the_step_ceiling(tmp_path, toy, monkeypatch):
    windows, _ = toy
    rates = _recorded_rates(monkeypatch)
    history = fit_rvae(windows, tmp_path / "m", epochs=40, max_steps=12, cooldown=0.25,
                       **TOY)
    assert history.attrs["stop"].reason == "max_steps"
    assert list(history.steps) == [3, 6, 9, 12]
    assert rates[:9] == [TOY["lr"]] * 9
    assert rates[9] == TOY["lr"] and rates[9] > rates[10] > rates[11] > 0


def test_a_run_killed_in_its_cooldown_resumes_to_the_same_result(tmp_path, toy, monkeypatch):
    import latentpath.rvae.train as train

    windows, _ = toy
    settings = {**STALL, **TOY, "epochs": 40, "cooldown": 0.5}
    straight = fit_rvae(windows, tmp_path / "straight", **settings)
    save_checkpoint = train.save_checkpoint
    kill = straight.attrs["stop"].epochs_run - 1

    def killed(directory, model, optimizer, gen, state):
        save_checkpoint(directory, model, optimizer, gen, state)
        if state["epoch"] == kill:
            assert state["cooldown_from"] is not None  # killed inside the cool-down
            raise KeyboardInterrupt

    monkeypatch.setattr(train, "save_checkpoint", killed)
    with pytest.raises(KeyboardInterrupt):
        fit_rvae(windows, tmp_path / "killed", **settings)
    monkeypatch.setattr(train, "save_checkpoint", save_checkpoint)
    _same_run(straight, fit_rvae(windows, tmp_path / "killed", resume=True, **settings))
    _same_weights(tmp_path / "straight", tmp_path / "killed")
    with pytest.raises(ModelFileError, match="other data or settings"):
        fit_rvae(windows, tmp_path / "killed", resume=True, **{**settings, "cooldown": 0.3})


def test_a_stopped_run_resumes_without_training(tmp_path, toy, monkeypatch):
    import latentpath.rvae.train as train

    windows, labels = toy
    converged = fit_rvae(windows, tmp_path / "c", epochs=40, **STALL, **TOY)
    capped = fit_rvae(windows, tmp_path / "s", epochs=40, max_steps=4, **TOY)

    def no_training(*args):
        raise AssertionError("a stopped run trained again")

    monkeypatch.setattr(train._BatchLoss, "forward", no_training)
    # a higher epoch ceiling does not reopen a run that converged or ran out of steps
    _same_run(converged, fit_rvae(windows, tmp_path / "c", epochs=80, resume=True,
                                  **STALL, **TOY))
    _same_run(capped, fit_rvae(windows, tmp_path / "s", epochs=80, max_steps=4,
                               resume=True, **TOY))
    for changed in ({**STALL, "patience": 3}, {**STALL, "max_steps": 100},
                    {**STALL, "min_steps": 100},
                    {**STALL, "sample_weights": balanced_weights(labels)}):
        with pytest.raises(ModelFileError, match="other data or settings"):
            fit_rvae(windows, tmp_path / "c", epochs=40, resume=True, **changed, **TOY)


def test_an_epoch_or_time_budget_stop_trains_on_when_resumed(tmp_path, toy):
    windows, _ = toy
    straight = fit_rvae(windows, tmp_path / "a", epochs=4, **TOY)
    # a budget already spent stops after the first epoch, whatever the machine's speed
    first = fit_rvae(windows, tmp_path / "b", epochs=4, time_budget_s=1e-9, **TOY)
    assert first.attrs["stop"].reason == "time_budget" and len(first) == 1
    assert training_record(tmp_path / "b").reason == "time_budget"
    fit_rvae(windows, tmp_path / "b", epochs=2, resume=True, **TOY)
    assert training_record(tmp_path / "b").reason == "epochs"
    _same_run(straight, fit_rvae(windows, tmp_path / "b", epochs=4, resume=True, **TOY))
    _same_weights(tmp_path / "a", tmp_path / "b")


def test_training_on_a_share_of_the_pixels(tmp_path, toy):
    windows, _ = toy
    history = fit_rvae(windows, tmp_path / "half", epochs=6, pixel_fraction=0.5, **TOY)
    assert history.val_loss.iloc[-1] < history.val_loss.iloc[0]
    whole = fit_rvae(windows, tmp_path / "whole", epochs=6, **TOY)
    # the validation loss compares whole windows either way: the two are on one scale
    assert history.val_loss.iloc[-1] < 2 * whole.val_loss.iloc[-1]
    again = fit_rvae(windows, tmp_path / "again", epochs=6, pixel_fraction=0.5, **TOY)
    _same_run(history, again)
    with pytest.raises(ModelFileError, match="other data or settings"):
        fit_rvae(windows, tmp_path / "half", resume=True, epochs=8, **TOY)
    for bad in (0.0, 1.5):
        with pytest.raises(ValueError, match="pixel_fraction"):
            fit_rvae(windows, tmp_path / "bad", epochs=1, pixel_fraction=bad, **TOY)


def test_a_diverging_training_stops_with_a_clear_error_and_saves_nothing(tmp_path, toy,
                                                                         capsys):
    from latentpath.cli import main
    from latentpath.rvae import TrainingDivergedError

    windows, _ = toy
    with pytest.raises(TrainingDivergedError, match=r"diverged in epoch 1.*lower the "
                                                    r"learning rate \(lr=1e\+10"):
        fit_rvae(windows, tmp_path / "m", epochs=3, **{**TOY, "lr": 1e10})
    assert not (tmp_path / "m" / "weights.safetensors").exists()
    assert not (tmp_path / "m" / "checkpoint.json").exists()
    path = tmp_path / "w.npy"
    np.save(path, windows)
    assert main(["rvae", str(path), "--out", str(tmp_path / "cli"), "--lr", "1e10",
                 "--epochs", "2", "--hidden", "16", "--layers", "2", "--device", "cpu",
                 "--precision", "float32", "--no-compile"]) == 2
    assert "training diverged" in capsys.readouterr().err


def test_pixel_weights_weigh_each_pixels_error(tmp_path, toy):
    windows, _ = toy
    plain = fit_rvae(windows, tmp_path / "plain", epochs=2, **TOY)
    # any constant weight is every pixel alike (weights are scaled to mean 1)
    flat = fit_rvae(windows, tmp_path / "flat", epochs=2, pixel_weights=np.full((12, 12), 3.0),
                    **TOY)
    columns = ["train_loss", "val_loss", "steps"]
    assert np.allclose(plain[columns].to_numpy(), flat[columns].to_numpy(), rtol=1e-5)
    centre = np.zeros((12, 12))
    centre[4:8, 4:8] = 1.0
    weighted = fit_rvae(windows, tmp_path / "centre", epochs=2, pixel_weights=centre, **TOY)
    assert not np.allclose(weighted.val_loss, plain.val_loss)
    with pytest.raises(ModelFileError, match="other data or settings"):
        fit_rvae(windows, tmp_path / "centre", resume=True, epochs=3, **TOY)
    for bad in (np.ones((5, 5)), -centre, np.zeros((12, 12)), centre * np.nan):
        with pytest.raises(ValueError, match="pixel_weights"):
            fit_rvae(windows, tmp_path / "bad", epochs=1, pixel_weights=bad, **TOY)


def test_balanced_weights():
    weights = balanced_weights(["a", "a", "a", "b"])
    assert np.allclose(weights, [2 / 3, 2 / 3, 2 / 3, 2])
    assert weights.mean() == pytest.approx(1)
    assert np.array_equal(balanced_weights(np.array([5, 6, 6, 6]), power=0), np.ones(4))
    half = balanced_weights([1, 2, 2, 2, 2], power=0.5)
    assert half[0] / half[1] == pytest.approx(2)
    assert np.allclose(balanced_weights([(1, "x"), (1, "x"), None, np.nan]), 1)
    with pytest.raises(ValueError, match="empty"):
        balanced_weights([])
    with pytest.raises(ValueError, match="power"):
        balanced_weights(["a"], power=-1)


def test_weighted_epochs_draw_rare_windows_as_often_as_common_ones(tmp_path, toy,
                                                                   monkeypatch):
    import latentpath.rvae.train as train

    labels = np.array(["rare"] * 100 + ["common"] * 900)
    train_idx = np.random.default_rng(0).permutation(1000)[100:]
    weights = balanced_weights(labels)
    drawn = np.concatenate([epoch_order(train_idx, 0, epoch, weights)
                            for epoch in range(1, 6)])
    assert len(drawn) == 5 * len(train_idx) and np.isin(drawn, train_idx).all()
    assert 0.45 < (labels[drawn] == "rare").mean() < 0.55
    assert np.array_equal(drawn[:900], epoch_order(train_idx, 0, 1, weights))
    # without weights, every window once, in the order of (seed, epoch) as before
    assert np.array_equal(epoch_order(train_idx, 0, 3),
                          np.random.default_rng([0, 3]).permutation(train_idx))
    zero = weights.copy()
    zero[labels == "rare"] = 0
    assert (labels[epoch_order(train_idx, 0, 1, zero)] == "common").all()
    # fit_rvae draws its epochs so; the validation windows are never drawn
    windows, ring_sizes = toy
    orders = []

    def spy(*args):
        orders.append(epoch_order(*args))
        return orders[-1]

    monkeypatch.setattr(train, "epoch_order", spy)
    weights = balanced_weights(ring_sizes)
    history = fit_rvae(windows, tmp_path / "m", epochs=2, sample_weights=weights, **TOY)
    assert len(history) == 2 and len(orders) == 2 and all(len(o) == 90 for o in orders)
    val_idx = np.random.default_rng(TOY["seed"]).permutation(100)[:10]
    assert not np.isin(np.concatenate(orders), val_idx).any()
    settings = json.loads((tmp_path / "m" / "checkpoint.json").read_text())["settings"]
    assert isinstance(settings["sample_weights"], str)


@pytest.mark.parametrize(("weights", "message"), [
    (np.ones(99), r"shape \(100,\)"),
    (np.ones((100, 1)), "one weight per window"),
    (np.r_[np.ones(99), -1.0], "non-negative"),
    (np.r_[np.ones(99), np.nan], "NaN"),
    (np.zeros(100), "all zero"),
    (np.where(np.isin(np.arange(100), np.random.default_rng(0).permutation(100)[:10]),
              1.0, 0.0), "zero on all 90 training windows"),
    (["a"] * 100, "must be numbers"),
])
def test_bad_sample_weights_are_refused(tmp_path, toy, weights, message):
    windows, _ = toy
    with pytest.raises(ValueError, match=message) as err:
        fit_rvae(windows, tmp_path / "m", epochs=1, sample_weights=weights, **TOY)
    assert "sample_weights" in str(err.value)
    assert not (tmp_path / "m").exists()


@pytest.mark.parametrize(("setting", "message"), [
    ({"patience": 0}, "patience"), ({"max_steps": 2.5}, "max_steps"),
    ({"min_steps": 0}, "min_steps"),
    ({"min_delta": 1.0}, "min_delta"), ({"time_budget_s": 0}, "time_budget_s"),
    ({"cooldown": 1.0, "max_steps": 10}, "cooldown must lie"),
    ({"cooldown": 0.2}, "cooldown needs patience or max_steps"),
])
def test_bad_stopping_settings_are_refused(tmp_path, toy, setting, message):
    windows, _ = toy
    with pytest.raises(ValueError, match=message):
        fit_rvae(windows, tmp_path / "m", epochs=1, **setting, **TOY)


def test_run_settings_pass_the_stopping_rule_on(tmp_path, monkeypatch):
    import latentpath.rvae as rvae
    from latentpath.pipeline.common import RunSettings

    seen = {}
    monkeypatch.setattr(rvae, "fit_rvae", lambda windows, folder, **kw: seen.update(kw))
    monkeypatch.setattr(rvae, "load_rvae", lambda folder: None)
    settings = RunSettings(patience=5, max_steps=100, min_steps=50, time_budget_s=60.0,
                           cooldown=0.3, pixel_fraction=0.5, neighbour_weight=30.0)
    settings.train_rvae(np.zeros((4, 8, 8)), tmp_path, sample_weights=np.ones(4))
    assert (seen["patience"], seen["max_steps"], seen["min_steps"], seen["time_budget_s"],
            seen["cooldown"], seen["pixel_fraction"], seen["neighbour_weight"]) == (
        5, 100, 50, 60.0, 0.3, 0.5, 30)
    assert np.array_equal(seen["sample_weights"], np.ones(4))
    defaults = RunSettings()
    assert (defaults.patience, defaults.max_steps, defaults.time_budget_s) == (None,) * 3
    for bad in ({"patience": 0}, {"max_steps": -1}, {"min_steps": 0}, {"time_budget_s": 0.0},
                {"cooldown": 1.0}, {"pixel_fraction": 0.0}, {"neighbour_weight": -1.0}):
        with pytest.raises(ValueError, match=next(iter(bad))):
            RunSettings(**bad)
    assert RunSettings.from_dict({"patience": 3}).patience == 3


def test_rvae_command_stops_early_and_says_why(tmp_path, toy, capsys):
    from latentpath.cli import main

    windows, _ = toy
    path = tmp_path / "w.npy"
    np.save(path, windows)
    assert main(["rvae", str(path), "--out", str(tmp_path / "m"), "--epochs", "40",
                 "--max-steps", "4", "--patience", "3", "--time-budget", "3600",
                 "--hidden", "16", "--layers", "2", "--batch-size", "32", "--device",
                 "cpu", "--precision", "float32", "--no-compile"]) == 0
    assert "stopped: max_steps after 2 epochs, 4 steps" in capsys.readouterr().out


def _nuisance_and_spots(n: int = 480, w: int = 10, seed: int = 0):
    """Windows whose largest variance is a brightness ramp in two random directions (two
    continuous nuisances), with one faint spot in one of four places: the structure."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:w, :w] / (w - 1) - 0.5
    a, b = rng.normal(size=(2, n))
    label = rng.integers(0, 4, n)
    windows = a[:, None, None] * xx + b[:, None, None] * yy
    spots = np.array([(3, 3), (3, 6), (6, 3), (6, 6)])[label]
    r2 = (np.arange(w)[None, :, None] - spots[:, 0, None, None]) ** 2 \
        + (np.arange(w)[None, None, :] - spots[:, 1, None, None]) ** 2
    windows += np.exp(-r2 / 2) + 0.05 * rng.normal(size=windows.shape)
    return windows.astype(np.float32), label


def test_the_neighbour_term_keeps_a_structure_the_reconstruction_drops(tmp_path):
    from latentpath.discovery import knn_balanced_accuracy

    windows, label = _nuisance_and_spots()
    scores = {}
    for weight in (0.0, 100.0):
        fit_rvae(windows, tmp_path / str(weight), epochs=40, seed=0,
                 neighbour_weight=weight, **SMALL)
        z = encode(load_rvae(tmp_path / str(weight)), windows)[["z1", "z2"]].to_numpy()
        scores[weight] = knn_balanced_accuracy(z, label)[0]
    # the two latents go to the two ramps without it (chance: 0.25); the windows'
    # nearest neighbours share their spot, and the term keeps them together
    assert scores[0.0] < 0.4 and scores[100.0] > 0.65


def test_neighbour_graph_finds_the_nearest_windows():
    from latentpath.rvae.neighbours import neighbour_graph

    x = np.random.default_rng(1).normal(size=(300, 4, 4)).astype(np.float32)
    graph = neighbour_graph(torch.from_numpy(x), k=5).numpy()
    _, expected = cKDTree(x.reshape(300, -1)).query(x.reshape(300, -1), k=6)
    assert np.array_equal(np.sort(graph, 1), np.sort(expected[:, 1:], 1))
    with pytest.raises(ValueError, match="k must be"):
        neighbour_graph(torch.from_numpy(x), k=300)


def test_the_neighbour_loss_is_t_sne_s_and_its_written_gradient_is_right():
    import math

    from latentpath.rvae.neighbours import _LogRepulsion, neighbour_loss

    gen = torch.Generator().manual_seed(0)
    z = torch.randn(24, 2, generator=gen, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(_LogRepulsion.apply, (z,))
    a, b = z[:12], z[12:]
    kernel = (1 / (1 + torch.cdist(z, z).square())) * (1 - torch.eye(24, dtype=z.dtype))
    log_q = torch.log(kernel[torch.arange(12), torch.arange(12, 24)] / kernel.sum())
    # KL(P || Q) with P = 1/24 on each ordered anchor-neighbour pair
    assert torch.isclose(neighbour_loss(a, b), -math.log(24) - log_q.mean())


def test_training_with_the_neighbour_term_resumes_to_the_same_result(tmp_path):
    windows, _ = _nuisance_and_spots(160)
    kw = {"seed": 7, "neighbour_weight": 50.0, "neighbour_batch": 64, **SMALL}
    straight = fit_rvae(windows, tmp_path / "a", epochs=4, **kw)
    fit_rvae(windows, tmp_path / "b", epochs=2, **kw)
    resumed = fit_rvae(windows, tmp_path / "b", epochs=4, resume=True, **kw)
    assert np.array_equal(straight.val_loss, resumed.val_loss)
    assert np.array_equal(encode(load_rvae(tmp_path / "a"), windows).to_numpy(),
                          encode(load_rvae(tmp_path / "b"), windows).to_numpy())
    assert training_record(tmp_path / "a").steps == 20
    with pytest.raises(ModelFileError, match="other data or settings"):
        fit_rvae(windows, tmp_path / "a", epochs=5, resume=True,
                 **{**kw, "neighbour_weight": 10.0})


def test_without_the_neighbour_term_its_batch_does_not_block_a_resume(tmp_path):
    windows, _ = _nuisance_and_spots(40)
    fit_rvae(windows, tmp_path / "m", epochs=1, neighbour_batch=256, **SMALL)
    resumed = fit_rvae(windows, tmp_path / "m", epochs=2, resume=True,
                       neighbour_batch=64, neighbour_k=5, **SMALL)
    assert len(resumed) == 2


def test_the_neighbour_graph_of_many_windows_holds_a_spread_share(monkeypatch):
    import latentpath.rvae.neighbours as neighbours

    monkeypatch.setattr(neighbours, "GRAPH_WINDOWS", 30)
    windows = torch.from_numpy(_nuisance_and_spots(100)[0])
    term = neighbours.NeighbourTerm.build(5.0, 16, 4, lambda rows: windows[rows],
                                          np.arange(10, 100), np.arange(10))
    assert len(term.rows) == 30 and term.rows[0] == 10 and term.rows[-1] == 99
    assert term.graph.shape == (30, 4) and len(term.val_anchors) == 10
    gen = torch.Generator().manual_seed(0)
    z = torch.randn(100, 2, generator=gen)
    value = term.step(lambda rows: z[rows], np.arange(10, 100), gen)
    assert torch.isfinite(value) and value > 0
    assert term.step(lambda rows: z[rows], np.arange(11, 13), gen) == 0
    assert term.validation(lambda rows: z[rows]) > 0


@pytest.mark.parametrize(("setting", "message"), [
    ({"neighbour_weight": -1.0}, "neighbour_weight"),
    ({"neighbour_weight": float("nan")}, "neighbour_weight"),
    ({"neighbour_batch": 0}, "neighbour_batch"),
    ({"neighbour_k": 2.5}, "neighbour_k")])
def test_bad_neighbour_settings_are_refused(tmp_path, setting, message):
    windows, _ = _nuisance_and_spots(40)
    with pytest.raises(ValueError, match=message):
        fit_rvae(windows, tmp_path / "m", epochs=1, **setting, **SMALL)
