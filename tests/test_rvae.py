"""The skip-rVAE: model, normalisation, files, deterministic and resumable training,
encoding and decoding."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from conftest import MOTIFS, SMALL
from scipy.spatial import cKDTree

from latentpath.rvae import (
    ModelFileError,
    RVAEConfig,
    SkipRVAE,
    decode,
    encode,
    fit_rvae,
    load_rvae,
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


def test_decode_rotation_rotates_the_image():
    model = SkipRVAE(RVAEConfig(window_px=15, hidden=32, layers=3)).eval()
    z = torch.randn(1, 2)
    upright = model.decode(z, torch.zeros(1), torch.zeros(1, 2))[0].detach().numpy()
    turned = model.decode(z, torch.tensor([np.pi / 2]), torch.zeros(1, 2))[0].detach().numpy()
    # A quarter turn of the coordinates is a quarter turn of the pixel grid.
    assert np.allclose(np.rot90(upright, 1), turned, atol=1e-5) or np.allclose(
        np.rot90(upright, -1), turned, atol=1e-5)


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
