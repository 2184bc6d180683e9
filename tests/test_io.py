"""Tests for latentpath.io: reading movies in every supported format, and safe writing."""

from __future__ import annotations

import json
import os
from pathlib import Path

import h5py
import numpy as np
import pandas as pd
import pytest
import tifffile

from latentpath.io import (
    Movie,
    MovieError,
    load_movie,
    read_table,
    save_npz,
    validate_movie,
    write_json,
    write_table,
)
from latentpath.io.readers import _jsonable

# CI clones the repository beside shared/, so the data sit next to the repository root.
REAL = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "real"


@pytest.fixture
def real() -> Path:
    if not REAL.is_dir():
        pytest.skip(f"real data folder {REAL} not found (expected beside the repository)")
    return REAL


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(0)


def _frames(rng: np.random.Generator, shape: tuple[int, ...]) -> np.ndarray:
    return rng.random(shape).astype(np.float32)


# --------------------------------------------------------------------------- real data


@pytest.mark.parametrize(
    ("name", "shape"),
    [("G-Si-2nm.npy", (1, 256, 256)), ("G-GrainBoundary-4nm.npy", (1, 512, 512))],
)
def test_real_graphene_npy(real, name, shape):
    movie = load_movie(real / "graphene_stem" / name)
    assert movie.shape == shape
    assert movie.data.dtype == np.float32
    assert movie.data.flags.c_contiguous
    assert movie.pixel_size is None and movie.pixel_unit is None
    assert movie.metadata["format"] == "npy"


@pytest.mark.parametrize("name", ["G-dimSi.hdf5", "G-trimSi.hdf5"])
def test_real_graphene_hdf5(real, name):
    movie = load_movie(real / "graphene_stem" / name)
    assert movie.shape == (1, 512, 512)
    assert movie.data.dtype == np.float32
    assert movie.metadata["dataset"] == "/image_data"
    assert movie.metadata["file_metadata"]["type of data"] == "HAADF"
    json.dumps(movie.metadata, allow_nan=False)


def test_real_mos2_pixel_size_from_sidecar(real):
    movie = load_movie(real / "mos2_stem" / "MoS2_stem_Exp-001-5.npy")
    assert movie.shape == (1, 512, 512)
    assert movie.pixel_unit == "A"
    assert movie.pixel_size == pytest.approx(70.0 / 512)
    assert movie.pixel_size_in("nm") == pytest.approx(7.0 / 512)
    assert movie.metadata["pixel_size_source"] == "sidecar"
    assert movie.metadata["sidecar"]["experimental_details"]["voltage"] == "60 kV"


def test_real_pzt_phase_stack(real):
    files = [real / "pzt_pfm" / f"PZT_final000{i}.h5" for i in (1, 2, 3)]
    movie = load_movie(files, channel="PhaseRetrace")
    assert movie.shape == (3, 256, 256)
    assert movie.data.dtype == np.float32
    # 2 um scanned with 256 samples, i.e. 255 intervals.
    assert movie.pixel_unit == "nm"
    assert movie.pixel_size == pytest.approx(2000.0 / 255)
    assert movie.metadata["data_units"] == "deg"
    assert movie.metadata["quantity"] == "PhaseRetrace"
    assert movie.metadata["sources"] == [str(f) for f in files]
    assert movie.metadata["frames_per_source"] == [1, 1, 1]
    assert not np.array_equal(movie.data[0], movie.data[2])
    json.dumps(movie.metadata, allow_nan=False)


def test_real_pzt_needs_a_channel(real):
    path = real / "pzt_pfm" / "PZT_final0001.h5"
    with pytest.raises(MovieError, match="several candidate") as err:
        load_movie(path)
    assert path.name in str(err.value) and "PhaseRetrace" in str(err.value)
    with pytest.raises(MovieError, match="not found") as err:
        load_movie(path, channel="Topography")
    assert "HeightRetrace" in str(err.value)
    height = load_movie(path, channel="heightretrace")
    assert height.metadata["data_units"] == "m"


# --------------------------------------------------------------------------- npy / npz


def test_npy_2d_and_3d(tmp_path, rng):
    image, stack = _frames(rng, (16, 20)), _frames(rng, (4, 16, 20))
    np.save(tmp_path / "image.npy", image.astype(np.float64))
    with open(tmp_path / "stack.NPY", "wb") as f:  # a name would get ".npy" appended
        np.save(f, stack)
    movie = load_movie(tmp_path / "image.npy")
    assert movie.shape == (1, 16, 20) and movie.n_frames == 1
    np.testing.assert_allclose(movie.data[0], image)
    movie = load_movie(str(tmp_path / "stack.NPY"))
    assert movie.shape == (4, 16, 20)
    np.testing.assert_array_equal(movie.data, stack)


def test_integer_and_bool_become_float32(tmp_path):
    ints = np.arange(3 * 8 * 8, dtype=np.uint16).reshape(3, 8, 8)
    np.save(tmp_path / "ints.npy", ints)
    movie = load_movie(tmp_path / "ints.npy")
    assert movie.data.dtype == np.float32
    np.testing.assert_array_equal(movie.data, ints)
    assert validate_movie(np.ones((8, 8), bool)).dtype == np.float32


def test_npz_member_selection(tmp_path, rng):
    a, b = _frames(rng, (2, 16, 16)), _frames(rng, (16, 16))
    np.savez(tmp_path / "one.npz", frames=a, note=np.array("hello"), scale=np.array(2.0))
    np.testing.assert_array_equal(load_movie(tmp_path / "one.npz").data, a)

    np.savez(tmp_path / "two.npz", a=a, b=b)
    with pytest.raises(MovieError, match="several candidate") as err:
        load_movie(tmp_path / "two.npz")
    assert "two.npz" in str(err.value) and "a, b" in str(err.value)
    np.testing.assert_array_equal(load_movie(tmp_path / "two.npz", channel="b").data[0], b)
    with pytest.raises(MovieError, match="no array named 'c'") as err:
        load_movie(tmp_path / "two.npz", channel="c")
    assert "available: a, b" in str(err.value)

    np.savez(tmp_path / "none.npz", axis=np.arange(5.0))
    with pytest.raises(MovieError, match="no 2-D or 3-D numeric array"):
        load_movie(tmp_path / "none.npz")


def test_npz_prefers_movie_and_reads_pixel_size(tmp_path, rng):
    stack = _frames(rng, (3, 16, 16))
    np.savez(
        tmp_path / "synth.npz",
        movie=stack,
        positions=rng.random((10, 2)),
        pixel_size=np.float64(0.25),
        pixel_unit=np.array("A"),
        metadata=np.array(json.dumps({"seed": 3})),
    )
    movie = load_movie(tmp_path / "synth.npz")
    np.testing.assert_array_equal(movie.data, stack)
    assert (movie.pixel_size, movie.pixel_unit) == (0.25, "A")
    assert movie.metadata["channel"] == "movie"
    assert movie.metadata["file_metadata"] == {"seed": 3}


# --------------------------------------------------------------------------- TIFF


def test_tiff_imagej_stack_with_pixel_size(tmp_path, rng):
    stack = _frames(rng, (4, 16, 12))
    path = tmp_path / "stack.tif"
    tifffile.imwrite(path, stack, imagej=True, resolution=(1 / 0.5, 1 / 0.5),
                     metadata={"unit": "nm"})
    movie = load_movie(path)
    assert movie.shape == (4, 16, 12)
    np.testing.assert_array_equal(movie.data, stack)
    assert movie.pixel_size_in("nm") == pytest.approx(0.5)
    assert (movie.pixel_size, movie.pixel_unit) == (5.0, "A")
    assert movie.metadata["file_pixel_unit"] == "nm"


def test_tiff_pages_without_calibration(tmp_path, rng):
    stack = (rng.random((3, 16, 16)) * 1000).astype(np.uint16)
    path = tmp_path / "pages.TIFF"
    with tifffile.TiffWriter(path) as tif:
        for frame in stack:
            tif.write(frame, metadata=None)
    movie = load_movie(path)
    assert movie.shape == (3, 16, 16) and movie.pixel_size is None
    np.testing.assert_array_equal(movie.data, stack)


def test_tiff_colour_is_rejected(tmp_path, rng):
    path = tmp_path / "rgb.tif"
    tifffile.imwrite(path, (rng.random((16, 16, 3)) * 255).astype(np.uint8), photometric="rgb")
    with pytest.raises(MovieError, match="colour") as err:
        load_movie(path)
    assert "rgb.tif" in str(err.value)


# --------------------------------------------------------------------------- HDF5


def test_hdf5_named_and_ambiguous(tmp_path, rng):
    a, b = _frames(rng, (2, 16, 16)), _frames(rng, (16, 16))
    path = tmp_path / "two.h5"
    with h5py.File(path, "w") as f:
        f["group/a"] = a
        f["b"] = b
        f["axis"] = np.arange(16.0)
    with pytest.raises(MovieError, match="several candidate") as err:
        load_movie(path)
    assert "two.h5" in str(err.value) and "/group/a" in str(err.value)
    assert "axis" not in str(err.value)
    np.testing.assert_array_equal(load_movie(path, channel="/group/a").data, a)
    np.testing.assert_array_equal(load_movie(path, channel="a").data, a)
    np.testing.assert_array_equal(load_movie(path, channel="b").data[0], b)
    with pytest.raises(MovieError, match="'c' not found"):
        load_movie(path, channel="c")


def test_hdf5_single_dataset_and_json_metadata(tmp_path, rng):
    image = _frames(rng, (16, 16))
    path = tmp_path / "one.hdf5"
    with h5py.File(path, "w") as f:
        f["image_data"] = image
        f["metadata"] = json.dumps({"type of data": "HAADF"})
    movie = load_movie(path)
    np.testing.assert_array_equal(movie.data[0], image)
    assert movie.metadata["file_metadata"] == {"type of data": "HAADF"}


def _sidpy_file(path: Path, rng: np.random.Generator, axis_units: str) -> None:
    """A pyNSID-like file: two channels with attached x/y dimension scales in metres."""
    with h5py.File(path, "w") as f:
        for k, (quantity, units) in enumerate([("Height", "m"), ("Phase", "deg")]):
            group = f.create_group(f"Measurement_000/Channel_{k}")
            dset = group.create_dataset("Channel", data=_frames(rng, (16, 16)))
            dset.attrs.update(quantity=quantity, units=units, data_type="IMAGE")
            for axis, name in enumerate(("x", "y")):
                scale = group.create_dataset(name, data=np.linspace(0, 1.5e-7, 16))
                scale.attrs.update(units=axis_units if units == "deg" else "m",
                                   dimension_type="SPATIAL")
                scale.make_scale(name)
                dset.dims[axis].attach_scale(scale)


def test_hdf5_sidpy_channel_and_bogus_axis_units(tmp_path, rng):
    path = tmp_path / "pfm.h5"
    _sidpy_file(path, rng, axis_units="deg")
    movie = load_movie(path, channel="phase")
    assert movie.metadata["quantity"] == "Phase"
    assert movie.metadata["data_units"] == "deg"
    # The axis says "deg" but spans 150 nm, so it is read as metres: 10 nm per pixel.
    assert (movie.pixel_unit, movie.pixel_size) == ("nm", pytest.approx(10.0))
    assert "deg" in movie.metadata["pixel_unit_assumed"]
    assert load_movie(path, channel="HEIGHT").pixel_size == pytest.approx(10.0)


def test_hdf5_no_image(tmp_path):
    path = tmp_path / "axes.h5"
    with h5py.File(path, "w") as f:
        f["x"] = np.arange(10.0)
    with pytest.raises(MovieError, match="no 2-D or 3-D") as err:
        load_movie(path)
    assert "axes.h5" in str(err.value)


# --------------------------------------------------------------------------- EMD / DM


def test_emd_written_by_rosettasciio(tmp_path, rng):
    from rsciio.emd import file_writer

    stack = _frames(rng, (3, 16, 20))
    axes = [
        {"name": "time", "scale": 1.0, "offset": 0.0, "units": "s", "size": 3, "navigate": True},
        {"name": "y", "scale": 0.05, "offset": 0.0, "units": "nm", "size": 16,
         "navigate": False},
        {"name": "x", "scale": 0.05, "offset": 0.0, "units": "nm", "size": 20,
         "navigate": False},
    ]
    signal = {"data": stack, "axes": axes, "original_metadata": {},
              "metadata": {"General": {"title": "HAADF"}, "Signal": {}}}
    path = tmp_path / "stack.emd"
    file_writer(str(path), signal)
    movie = load_movie(path)
    np.testing.assert_array_equal(movie.data, stack)
    assert (movie.pixel_size, movie.pixel_unit) == (0.5, "A")
    assert movie.metadata["channel"] == "HAADF"
    assert load_movie(path, channel="haadf").shape == (3, 16, 20)
    with pytest.raises(MovieError, match="not found") as err:
        load_movie(path, channel="BF")
    assert "'HAADF'" in str(err.value)
    json.dumps(movie.metadata, allow_nan=False)


def _dm_signal(title: str, data: np.ndarray, units: str, scale: float) -> dict:
    names = ["time", "y", "x"][-data.ndim:]
    axes = [{"name": n, "scale": scale, "offset": 0.0, "units": units, "size": s,
             "navigate": n == "time"} for n, s in zip(names, data.shape, strict=True)]
    return {"data": data, "axes": axes, "metadata": {"General": {"title": title}},
            "original_metadata": {"ImageList": {"TagGroup0": {"Name": title}}}}


def test_dm_signal_selection(tmp_path, rng, monkeypatch):
    # RosettaSciIO cannot write DigitalMicrograph files, so its reader is stood in for.
    import rsciio.digitalmicrograph

    stack = _frames(rng, (2, 16, 16))
    spectrum = {"data": rng.random(64), "metadata": {"General": {"title": "EELS"}},
                "axes": [{"name": "E", "scale": 1.0, "units": "eV", "size": 64,
                          "navigate": False}], "original_metadata": {}}
    signals = [spectrum, _dm_signal("HAADF", stack, "Å", 0.2)]
    monkeypatch.setattr(rsciio.digitalmicrograph, "file_reader", lambda filename: signals)
    path = tmp_path / "series.dm4"
    path.write_bytes(b"stand-in")

    movie = load_movie(path)
    np.testing.assert_array_equal(movie.data, stack)
    assert (movie.pixel_size, movie.pixel_unit) == (pytest.approx(0.2), "A")
    assert movie.metadata["format"] == "dm4"

    signals.append(_dm_signal("BF", stack[0], "nm", 0.02))
    with pytest.raises(MovieError, match="several image signals") as err:
        load_movie(path)
    assert "'HAADF', 'BF'" in str(err.value) and "series.dm4" in str(err.value)
    bright = load_movie(path, channel="BF")
    assert bright.shape == (1, 16, 16) and bright.pixel_size == pytest.approx(0.2)

    signals[:] = [spectrum]
    with pytest.raises(MovieError, match="no image signal"):
        load_movie(path)


def test_corrupt_dm3(tmp_path, rng):
    path = tmp_path / "broken.dm3"
    path.write_bytes(rng.bytes(256))
    with pytest.raises(MovieError, match="could not read") as err:
        load_movie(path)
    assert "broken.dm3" in str(err.value)


# --------------------------------------------------------------------------- pixel sizes


def test_sidecar_and_explicit_pixel_size(tmp_path, rng):
    path = tmp_path / "scan.npy"
    np.save(path, _frames(rng, (16, 20)))
    sidecar = {"experimental_details": {"spatial_info": {
        "field_of_view_x": 10.0, "field_of_view_y": 8.0, "field_of_view_units": "nm"}}}
    (tmp_path / "scan.json").write_text(json.dumps(sidecar))
    movie = load_movie(path)
    assert (movie.pixel_size, movie.pixel_unit) == (5.0, "A")
    assert movie.metadata["sidecar"] == sidecar

    movie = load_movie(path, pixel_size=0.3, pixel_unit="Å")
    assert (movie.pixel_size, movie.pixel_unit) == (0.3, "A")
    assert movie.metadata["pixel_size_source"] == "argument"
    assert load_movie(path, pixel_unit="nm").pixel_size == pytest.approx(0.5)
    with pytest.raises(MovieError, match="without pixel_unit"):
        load_movie(path, pixel_size=0.3)
    with pytest.raises(ValueError, match="unsupported pixel unit"):
        load_movie(path, pixel_size=0.3, pixel_unit="furlong")


def test_movie_units():
    movie = Movie(np.zeros((1, 8, 8), np.float64), pixel_size=2.0, pixel_unit="micron")
    assert movie.data.dtype == np.float32
    assert movie.pixel_unit == "um"
    assert movie.pixel_size_in("nm") == pytest.approx(2000.0)
    assert movie.pixel_size_in("A") == pytest.approx(20000.0)
    assert "2 um" in repr(movie)
    with pytest.raises(ValueError, match="unsupported pixel unit"):
        movie.pixel_size_in("inch")
    with pytest.raises(ValueError, match="unknown"):
        Movie(np.zeros((1, 8, 8), np.float32)).pixel_size_in("nm")
    with pytest.raises(MovieError, match="together"):
        Movie(np.zeros((1, 8, 8), np.float32), pixel_size=1.0)
    with pytest.raises(MovieError, match=r"\(T, H, W\)"):
        Movie(np.zeros((8, 8), np.float32))


# --------------------------------------------------------------------------- errors


def test_path_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"missing\.npy"):
        load_movie(tmp_path / "missing.npy")
    folder = tmp_path / "frames.npy"
    folder.mkdir()
    with pytest.raises(MovieError, match="directory") as err:
        load_movie(folder)
    assert "frames.npy" in str(err.value)
    odd = tmp_path / "movie.avi"
    odd.write_bytes(b"")
    with pytest.raises(MovieError, match="unsupported extension") as err:
        load_movie(odd)
    assert "movie.avi" in str(err.value) and ".npy" in str(err.value)
    with pytest.raises(MovieError, match="empty list"):
        load_movie([])


@pytest.mark.parametrize("name", ["bad.npy", "bad.npz", "bad.tif", "bad.h5", "bad.emd"])
def test_corrupt_files(tmp_path, rng, name):
    path = tmp_path / name
    path.write_bytes(rng.bytes(300))
    with pytest.raises(MovieError, match="could not read") as err:
        load_movie(path)
    assert name in str(err.value)


def test_pickled_npy_is_refused(tmp_path):
    path = tmp_path / "objects.npy"
    np.save(path, np.array([{"a": 1}], dtype=object), allow_pickle=True)
    with pytest.raises(MovieError, match="could not read") as err:
        load_movie(path)
    assert "objects.npy" in str(err.value)


def test_channel_with_single_array_format(tmp_path, rng):
    np.save(tmp_path / "x.npy", _frames(rng, (8, 8)))
    with pytest.raises(MovieError, match="channel='HAADF'"):
        load_movie(tmp_path / "x.npy", channel="HAADF")


@pytest.mark.parametrize(
    ("array", "keyword"),
    [
        (np.zeros(64, np.float32), "1-D"),
        (np.zeros((2, 2, 16, 16), np.float32), "4-D"),
        (np.zeros((16, 16, 3), np.uint8), "colour"),
        (np.zeros((2, 16, 16, 4), np.uint8), "colour"),
        (np.zeros((2, 16, 16), np.complex64), "complex"),
        (np.zeros((0, 16, 16), np.float32), "empty"),
        (np.zeros((16, 0), np.float32), "empty"),
        (np.zeros((2, 4, 16), np.float32), "smaller than"),
        (np.array([["a"] * 8] * 8), "not numeric"),
    ],
)
def test_bad_arrays(tmp_path, array, keyword):
    path = tmp_path / "bad_array.npy"
    np.save(path, array)
    with pytest.raises(MovieError, match=keyword) as err:
        load_movie(path)
    assert "bad_array.npy" in str(err.value)
    with pytest.raises(MovieError, match=keyword):
        validate_movie(array, name="user array")


def test_nan_policies(tmp_path, rng):
    stack = _frames(rng, (4, 8, 8))
    stack[1, 2, 3] = np.nan
    stack[3, 0, 0] = np.inf
    stack[3, 1, 1] = np.nan
    path = tmp_path / "holes.npy"
    np.save(path, stack)

    with pytest.raises(MovieError, match="2 NaN and 1 infinite") as err:
        load_movie(path)
    assert "holes.npy" in str(err.value) and "frames 1, 3" in str(err.value)

    filled = load_movie(path, nan_policy="fill")
    assert np.isfinite(filled.data).all()
    assert filled.data[1, 2, 3] == pytest.approx(np.nanmedian(stack[1]))
    assert filled.metadata["n_nonfinite_filled"] == 3
    assert np.isnan(stack[1, 2, 3])  # the caller's array is not modified

    kept = load_movie(path, nan_policy="ignore")
    assert np.isnan(kept.data[1, 2, 3]) and np.isinf(kept.data[3, 0, 0])

    stack[2] = np.nan
    with pytest.raises(MovieError, match="frame 2 has no finite"):
        validate_movie(stack, nan_policy="fill")
    with pytest.raises(ValueError, match="nan_policy"):
        load_movie(path, nan_policy="drop")


def test_validate_movie_returns_float32_thw(rng):
    image = rng.random((10, 12))
    out = validate_movie(image)
    assert out.shape == (1, 10, 12) and out.dtype == np.float32 and out.flags.c_contiguous
    stack = _frames(rng, (2, 10, 12))
    assert validate_movie(stack) is stack
    strided = validate_movie(_frames(rng, (2, 10, 24))[:, :, ::2])
    assert strided.flags.c_contiguous


# --------------------------------------------------------------------------- stacking


def test_list_stacks_frames(tmp_path, rng):
    a, b = _frames(rng, (2, 16, 16)), _frames(rng, (16, 16))
    np.save(tmp_path / "a.npy", a)
    np.save(tmp_path / "b.npy", b)
    movie = load_movie([tmp_path / "a.npy", str(tmp_path / "b.npy")])
    assert movie.shape == (3, 16, 16)
    np.testing.assert_array_equal(movie.data[:2], a)
    np.testing.assert_array_equal(movie.data[2], b)
    assert movie.metadata["frames_per_source"] == [2, 1]
    assert len(movie.metadata["sources"]) == 2


def test_list_with_mismatched_shapes(tmp_path, rng):
    np.save(tmp_path / "first.npy", _frames(rng, (16, 16)))
    np.save(tmp_path / "second.npy", _frames(rng, (16, 20)))
    with pytest.raises(MovieError, match="cannot be stacked") as err:
        load_movie((tmp_path / "first.npy", tmp_path / "second.npy"))
    message = str(err.value)
    assert "second.npy" in message and "(16, 20)" in message and "(16, 16)" in message


# --------------------------------------------------------------------------- writers


def _write_npz(path, overwrite=False):
    return save_npz(path, {"movie": np.ones((1, 8, 8)), "pixel_unit": "nm"}, overwrite=overwrite)


def _write_parquet(path, overwrite=False):
    return write_table(pd.DataFrame({"a": [1, 2]}), path, overwrite=overwrite)


def _write_csv(path, overwrite=False):
    return write_table(pd.DataFrame({"a": [1, 2]}), path, overwrite=overwrite)


def _write_json(path, overwrite=False):
    return write_json({"a": np.float32(1.5)}, path, overwrite=overwrite)


@pytest.mark.parametrize(
    ("writer", "name"),
    [(_write_npz, "out.npz"), (_write_parquet, "out.parquet"), (_write_csv, "out.csv"),
     (_write_json, "out.json")],
)
def test_writers_never_overwrite_by_default(tmp_path, writer, name):
    path = tmp_path / name
    path.write_bytes(b"precious user data")
    with pytest.raises(FileExistsError, match="overwrite") as err:
        writer(path)
    assert str(path) in str(err.value)
    assert path.read_bytes() == b"precious user data"
    assert writer(path, overwrite=True) == path
    assert path.read_bytes() != b"precious user data"
    assert sorted(os.listdir(tmp_path)) == [name]


def test_failed_write_leaves_target_intact(tmp_path, monkeypatch):
    path = tmp_path / "result.npz"
    _write_npz(path)
    before = path.read_bytes()

    def broken_savez(file, **arrays):
        file.write(b"half a file")
        raise RuntimeError("disk full")

    monkeypatch.setattr(np, "savez_compressed", broken_savez)
    with pytest.raises(RuntimeError, match="disk full"):
        _write_npz(path, overwrite=True)
    assert path.read_bytes() == before
    assert os.listdir(tmp_path) == ["result.npz"]


def test_writers_check_paths(tmp_path):
    with pytest.raises(ValueError, match=r"\.parquet or \.csv"):
        write_table(pd.DataFrame({"a": [1]}), tmp_path / "t.xlsx")
    with pytest.raises(ValueError, match=r"\.npz files only"):
        save_npz(tmp_path / "t.npy", {"a": np.zeros(3)})
    with pytest.raises(ValueError, match="object array"):
        save_npz(tmp_path / "t.npz", {"a": np.array([None, 1], dtype=object)})
    with pytest.raises(FileNotFoundError, match="does not exist"):
        write_json({}, tmp_path / "no" / "such" / "dir.json")
    with pytest.raises(TypeError):
        write_json({"a": object()}, tmp_path / "bad.json")
    assert os.listdir(tmp_path) == []


@pytest.mark.parametrize("suffix", [".parquet", ".csv"])
def test_table_roundtrip(tmp_path, suffix):
    df = pd.DataFrame({"frame": np.arange(4), "x": np.linspace(0, 1, 4), "label": list("abcd")})
    path = write_table(df, tmp_path / f"atoms{suffix}")
    pd.testing.assert_frame_equal(read_table(path), df)
    with pytest.raises(FileNotFoundError, match="missing"):
        read_table(tmp_path / f"missing{suffix}")


def test_npz_and_json_roundtrip(tmp_path, rng):
    stack = _frames(rng, (2, 16, 16))
    path = save_npz(tmp_path / "synth.npz",
                    {"movie": stack, "pixel_size": 0.1, "pixel_unit": "nm"}, compressed=False)
    movie = load_movie(path)
    np.testing.assert_array_equal(movie.data, stack)
    assert (movie.pixel_size, movie.pixel_unit) == (pytest.approx(1.0), "A")
    write_json(movie.metadata, tmp_path / "meta.json")
    assert json.loads((tmp_path / "meta.json").read_text())["channel"] == "movie"


def test_metadata_is_strict_json():
    assert _jsonable({"a": np.float64(np.inf), "b": np.arange(3), "c": b"x",
                         "d": np.zeros(100)}) == {
        "a": "inf", "b": [0, 1, 2], "c": "x", "d": "<array shape=(100,) dtype=float64>"}


def test_check_writable_names_the_first_existing_file(tmp_path):
    from latentpath.io import check_writable

    a, b, c = tmp_path / "a.npz", tmp_path / "b.parquet", tmp_path / "c.png"
    check_writable([a, b, c])
    a.write_bytes(b"x")
    c.write_bytes(b"y")
    with pytest.raises(FileExistsError, match=r"a\.npz \(and 1 more output files\)"):
        check_writable([a, b, c])
    check_writable([a, b, c], overwrite=True)
    assert a.read_bytes() == b"x"


def test_tables_roundtrip_through_npz(tmp_path):
    from latentpath.io import save_npz, tables_from_arrays, tables_to_arrays

    atoms = pd.DataFrame({"frame": [0, 1], "species": ["C", "Si"], "x": [1.5, 2.5]})
    path = save_npz(tmp_path / "t.npz", tables_to_arrays({"atoms": atoms}))
    with np.load(path, allow_pickle=False) as data:
        back = tables_from_arrays(data, ["atoms"])["atoms"]
    assert list(back.columns) == ["frame", "species", "x"]
    pd.testing.assert_frame_equal(back, atoms, check_dtype=False)


def test_zarr_store_round_trip_and_lazy_frames(tmp_path):
    from latentpath.io import open_zarr_frames, save_zarr

    data = np.random.default_rng(0).random((5, 12, 10), dtype=np.float32)
    movie = Movie(data, pixel_size=0.8, pixel_unit="A", metadata={"sources": ["x.dm4"]})
    path = save_zarr(movie, tmp_path / "movie.zarr", chunk_frames=2)
    back = load_movie(path)
    assert np.array_equal(back.data, data)
    assert (back.pixel_size, back.pixel_unit) == (0.8, "A")
    assert back.metadata["file_metadata"] == {"sources": ["x.dm4"]}
    frames, attrs = open_zarr_frames(path)
    assert frames.chunks == (2, 12, 10) and attrs["pixel_size"] == 0.8
    assert np.array_equal(frames[3:5], data[3:5])  # read from disk only now
    with pytest.raises(FileExistsError):
        save_zarr(movie, path)
    save_zarr(Movie(data[:2]), path, overwrite=True)
    assert load_movie(path).shape == (2, 12, 10)
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no leftovers


def test_zarr_errors_name_the_store(tmp_path):
    import zarr

    from latentpath.io import open_zarr_frames

    with pytest.raises(FileNotFoundError, match="no such"):
        open_zarr_frames(tmp_path / "missing.zarr")
    group = zarr.open_group(str(tmp_path / "g.zarr"), mode="w")
    group.create_array("phase", shape=(2, 9, 9), dtype="float32")
    group.create_array("labels", shape=(4,), dtype="int32")
    with pytest.raises(MovieError, match="no array named 'movie'; available: labels, phase"):
        load_movie(tmp_path / "g.zarr")
    assert load_movie(tmp_path / "g.zarr", channel="phase").shape == (2, 9, 9)
    with pytest.raises(MovieError, match="2-D or 3-D"):
        load_movie(tmp_path / "g.zarr", channel="labels")
    (tmp_path / "flat.zarr").write_text("not a store")
    with pytest.raises(MovieError, match="directory"):
        load_movie(tmp_path / "flat.zarr")
    (tmp_path / "empty.zarr").mkdir()
    with pytest.raises(MovieError, match="Zarr"):
        load_movie(tmp_path / "empty.zarr")
