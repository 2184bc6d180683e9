"""Latent maps: decoded atoms, rings at the centre, the chemical-space map, labels,
manifold and encoded images."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from conftest import MOTIFS

from latentpath.graph import CC_BOND_A, ring_label
from latentpath.latent import (
    ChemicalSpaceMap,
    centre_rings,
    chemical_space_map,
    encoded_image,
    find_decoded_atoms,
    labels_at,
    latent_grid,
    manifold,
    mosaic,
    read_structures,
    refined_grid,
    resample_images,
)
from latentpath.rvae import encode, load_rvae

BOND_PX = CC_BOND_A / MOTIFS["pixel_size_A"]


def _render(atoms_yx: np.ndarray, size: int, sigma_px: float = 1.0) -> np.ndarray:
    yy, xx = np.mgrid[:size, :size]
    d2 = (yy[None] - atoms_yx[:, 0, None, None]) ** 2 + (xx[None] - atoms_yx[:, 1, None, None]) ** 2
    return np.exp(-d2 / (2 * sigma_px**2)).sum(0).astype(np.float32)


def _graphene(centre_on: str, size: int = 24, bond_px: float = 4.5, angle: float = 0.3
              ) -> np.ndarray:
    """Atoms (y, x) of graphene filling a size x size image, centred on an atom or on a
    hexagon's centre."""
    a1 = bond_px * np.sqrt(3) * np.array([1.0, 0.0])
    a2 = bond_px * np.sqrt(3) * np.array([0.5, np.sqrt(3) / 2])
    basis = [np.zeros(2), np.array([0.0, bond_px])]
    ij = np.stack(np.meshgrid(np.arange(-8, 9), np.arange(-8, 9)), -1).reshape(-1, 2)
    pts = np.concatenate([ij[:, :1] * a1 + ij[:, 1:] * a2 + b for b in basis])
    if centre_on == "hollow":
        pts = pts - np.array([-bond_px * np.sqrt(3) / 2, bond_px / 2])
    c, s = np.cos(angle), np.sin(angle)
    pts = pts @ np.array([[c, -s], [s, c]]) + (size - 1) / 2
    return pts[((pts > -2) & (pts < size + 1)).all(1)]


def _centre_and_far(size: int, bond: float) -> tuple[np.ndarray, int, int]:
    """Graphene atoms centred on an atom, that atom's row and the row of a far corner
    (2 bond lengths away) of one of its three hexagons."""
    atoms = _graphene("atom", size, bond)
    r = np.hypot(*(atoms - (size - 1) / 2).T)
    return atoms, int(np.argmin(r)), int(np.argmin(np.abs(r - 2 * bond)))


def test_decoded_atoms_are_blobs_of_each_image_alone():
    atoms = np.array([[5.0, 5.0], [5.0, 12.0], [14.2, 9.6]])
    images = np.stack([_render(atoms, 20), _render(atoms[:1], 20), np.zeros((20, 20))])
    # Atoms touching the border of the next image must not merge across images.
    images[1, -1, :] = 1.0
    images[2, 0, :] = 1.0
    table = find_decoded_atoms(images.astype(np.float32))
    first = table[table.image == 0].sort_values("x")
    assert len(first) == 3
    assert np.allclose(np.sort(first.y.to_numpy()), [5.0, 5.0, 14.2], atol=0.1)
    assert table.groupby("image").size().to_dict() == {0: 3, 1: 2, 2: 1}


def test_rings_at_the_centre_of_graphene_and_of_a_pentagon():
    size = 24
    atom_img = _render(_graphene("atom", size), size)
    hollow_img = _render(_graphene("hollow", size), size)
    images = np.stack([atom_img, hollow_img])
    found = find_decoded_atoms(images)
    atom_counts = centre_rings(found, 2, size, 4.5, kind="atom")
    assert atom_counts[0].tolist() == [0, 3, 0, 0]
    assert ring_label(atom_counts[0]) == "6-6-6"
    assert (atom_counts[1] == -1).all()  # no atom at the centre of a hexagon
    hollow = centre_rings(found, 2, size, 4.5, kind="hollow")
    assert hollow[1].tolist() == [0, 1, 0, 0] and ring_label(hollow[1]) == "6"
    assert (hollow[0] == -1).all()


def test_rings_that_close_only_below_the_threshold_are_read_again():
    size, bond = 28, 4.5
    atoms = _graphene("atom", size, bond)
    far = np.hypot(*(atoms - (size - 1) / 2).T) > 1.9 * bond
    # the decoder's blur: the far atoms of the three rings drawn at 0.46 of the others
    image = (_render(atoms[~far], size, 1.5) + 0.46 * _render(atoms[far], size, 1.5))[None]
    once = read_structures(image, bond, retry_threshold=None, bridge_gaps=False)
    assert once.sum() < 3  # at 0.5 alone the rings do not close
    assert ring_label(read_structures(image, bond)[0]) == "6-6-6"
    # a structure that closes at 0.5 keeps that reading
    lattice = _render(atoms, size, 1.5)[None]
    assert ring_label(read_structures(lattice, bond)[0]) == "6-6-6"
    with pytest.raises(ValueError, match="retry_threshold"):
        read_structures(image, bond, retry_threshold=0.6)


def test_a_ring_missing_one_far_atom_is_read_with_a_stand_in():
    size, bond = 32, 4.5
    atoms = _graphene("atom", size, bond)
    r = np.hypot(*(atoms - (size - 1) / 2).T)
    # the far corner of one of the three hexagons through the centre atom, drawn dim
    corner = np.flatnonzero(np.abs(r - 2 * bond) < 0.2 * bond)[0]
    gap = np.delete(atoms, corner, axis=0)
    dim = _render(gap, size) + 0.35 * _render(atoms[corner:corner + 1], size)
    images = np.stack([dim, _render(atoms, size)]).astype(np.float32)
    found = find_decoded_atoms(images)
    assert centre_rings(found, 2, size, bond).tolist() == [[0, 2, 0, 0], [0, 3, 0, 0]]
    assert centre_rings(found, 2, size, bond, bridge_gaps=True).tolist() == [
        [0, 3, 0, 0], [0, 3, 0, 0]]
    assert read_structures(images, bond, bridge_gaps=False)[0].tolist() == [0, 2, 0, 0]
    assert ring_label(read_structures(images, bond)[0]) == "6-6-6"
    # where the corner's place is dark, nothing was drawn there to stand in for
    assert centre_rings(found, 2, size, bond, bridge_gaps=True, images=images,
                        stand_in_level=0.4).tolist() == [[0, 2, 0, 0], [0, 3, 0, 0]]
    dark = _render(gap, size)[None].astype(np.float32)
    assert read_structures(dark, bond)[0].tolist() == [0, 2, 0, 0]
    assert read_structures(dark, bond, stand_in_level=None)[0].tolist() == [0, 3, 0, 0]
    # a 7-ring around a hollow site with one corner missing reads as a 7-ring
    angles = 2 * np.pi * np.arange(1, 7) / 7
    radius = bond / (2 * np.sin(np.pi / 7))
    heptagon = (size - 1) / 2 + radius * np.stack([np.sin(angles), np.cos(angles)], 1)
    found = find_decoded_atoms(_render(heptagon, size)[None].astype(np.float32))
    assert (centre_rings(found, 1, size, bond, kind="hollow") == -1).all()
    assert centre_rings(found, 1, size, bond, kind="hollow", bridge_gaps=True).tolist() == [
        [0, 0, 1, 0]]


def test_a_ring_drawn_strained_is_closed_by_the_decoded_bond_window():
    size, bond = 32, 4.5
    atoms, centre, far = _centre_and_far(size, bond)
    # a hexagon through the centre atom made a pentagon: its far atom gone, and the two
    # beside it drawn 1.25 l apart, as a decoder draws a 5-ring where the windows it
    # averages are half 5-rings and half 6-rings
    beside = np.flatnonzero((np.abs(np.hypot(*(atoms - atoms[far]).T) - bond) < 0.2 * bond)
                            & (np.abs(np.hypot(*(atoms - atoms[centre]).T) - np.sqrt(3) * bond)
                               < 0.2 * bond))
    assert len(beside) == 2
    middle = atoms[beside].mean(0)
    along = (atoms[beside[0]] - atoms[beside[1]]) / np.hypot(*(atoms[beside[0]] - atoms[beside[1]]))
    strained = atoms.copy()
    strained[beside] = middle + np.outer([0.625, -0.625], along) * bond
    image = _render(np.delete(strained, far, axis=0), size)[None].astype(np.float32)
    assert ring_label(read_structures(image, bond)[0]) == "5-6-6"
    # the method's window for found atoms leaves the strained side unbonded
    assert ring_label(read_structures(image, bond, bond_high=1.2)[0]) == "6-6"
    # the wider window bonds no second neighbours of the lattice
    lattice = _render(atoms, size)[None].astype(np.float32)
    assert ring_label(read_structures(lattice, bond)[0]) == "6-6-6"
    with pytest.raises(ValueError, match="bond_high"):
        read_structures(image, bond, bond_high=1.5)


def test_a_faint_ring_drawn_into_a_hole_is_not_closed_by_a_stand_in():
    size, bond = 32, 4.5
    atoms, centre, far = _centre_and_far(size, bond)
    # past the rim (the centre atom's third hexagon, towards the far corner) is a hole,
    # into which the decoder draws the next row faint and the corner not at all
    along = (atoms - atoms[centre]) @ (atoms[far] - atoms[centre]) / (2 * bond)
    lattice = atoms[along < 0.6 * bond]
    faint = atoms[(along > 0.6 * bond) & (along < 1.6 * bond)]
    image = (_render(lattice, size) + 0.45 * _render(faint, size))[None].astype(np.float32)
    assert ring_label(read_structures(image, bond)[0]) == "6-6"
    assert ring_label(read_structures(image, bond, stand_in_level=None)[0]) == "6-6-6"
    with pytest.raises(ValueError, match="stand_in_level"):
        read_structures(image, bond, stand_in_level=1.5)
    with pytest.raises(ValueError, match="stand_in_level"):
        centre_rings(find_decoded_atoms(image), 1, size, bond, bridge_gaps=True,
                     images=image, stand_in_level=-0.1)
    with pytest.raises(ValueError, match="the 1 images of 32 x 32 px"):
        centre_rings(find_decoded_atoms(image), 1, size, bond, bridge_gaps=True,
                     stand_in_level=0.3)


def test_smeared_and_isolated_centres_are_unphysical():
    size = 24
    smeared = _render(_graphene("atom", size), size)
    yy, xx = np.mgrid[:size, :size]
    # A long streak through the centre: atoms smeared into one blob.
    smeared += np.exp(-((yy - 11.5) ** 2) / 2.0) * (np.abs(xx - 11.5) < 6)
    lonely = _render(np.array([[11.5, 11.5]]), size)
    images = np.stack([smeared, lonely]).astype(np.float32)
    counts = centre_rings(find_decoded_atoms(images, method="blobs"), 2, size, 4.5,
                          kind="atom")
    assert (counts == -1).all()


def test_a_smeared_atom_counts_only_where_it_can_change_the_reading():
    size, bond = 36, 6.0
    atoms = _graphene("hollow", size, bond)
    r = np.hypot(*(atoms - (size - 1) / 2).T)
    images = []
    for radius in (2.0, 1.0):  # a second-shell atom, then one of the centre ring's
        k = np.argmin(np.abs(r - radius * bond))
        images.append(_render(np.delete(atoms, k, axis=0), size)
                      + _render(atoms[k:k + 1], size, sigma_px=2.5))
    found = find_decoded_atoms(np.stack(images).astype(np.float32))
    assert centre_rings(found, 2, size, bond, kind="hollow").tolist() == [
        [0, 1, 0, 0], [-1, -1, -1, -1]]
    # reaching as far as an atom window's rings, the second-shell smear counts too
    assert centre_rings(found, 2, size, bond, kind="hollow", smear_reach=2.5).tolist() == [
        [-1, -1, -1, -1]] * 2


def test_an_image_of_broad_atoms_is_not_smeared():
    # (an atom broader than the rest of its image still is: the next tests)
    size, bond = 28, 4.5
    atoms = _graphene("atom", size, bond)
    # every atom as broad as a coarse probe draws it: each blob larger than the fixed disc
    broad = _render(atoms, size, 1.6)
    found = find_decoded_atoms(broad[None])
    assert (found.area > np.pi * (0.45 * bond) ** 2).all()
    assert centre_rings(found, 1, size, bond, smear_ratio=None).tolist() == [[-1] * 4]
    assert centre_rings(found, 1, size, bond).tolist() == [[0, 3, 0, 0]]


def test_an_atom_at_the_rim_of_a_hole_keeps_its_first_reading():
    size, bond = 32, 4.5
    atoms = _graphene("atom", size, bond, angle=0.0)
    centre = (size - 1) / 2
    near = np.argsort(np.hypot(*(atoms - centre).T))[1:4]
    # a hole on the far side of one neighbour, which the decoder draws faintly
    side = atoms[near[0]] - centre
    hole = ((atoms - centre) @ side > 0.5 * bond**2)
    image = (_render(atoms[~hole], size, 1.5) + 0.45 * _render(atoms[hole], size, 1.5))[None]
    first = read_structures(image, bond, retry_threshold=None, bridge_gaps=False)
    assert first.sum() == 1  # two bonds and one ring at 0.5
    assert ring_label(read_structures(image, bond)[0]) == ring_label(first[0])
    assert ring_label(read_structures(image, bond, retry_edges=True)[0]) == "6-6-6"


def test_peaks_part_atoms_a_bright_bond_joins_and_catch_smeared_ones():
    size = 24
    atoms = _graphene("atom", size)
    sharp = _render(atoms, size)
    # an average of windows: atoms joined by bonds bright enough to pass the threshold
    bonded = sharp.copy()
    d = np.linalg.norm(atoms[:, None] - atoms[None], axis=-1)
    yy, xx = np.mgrid[:size, :size]
    for i, j in np.argwhere(np.triu((d > 3) & (d < 5))):
        mid = (atoms[i] + atoms[j]) / 2
        bonded += 0.45 * np.exp(-((yy - mid[0]) ** 2 + (xx - mid[1]) ** 2) / 2.0)
    bonded /= bonded.max()
    # the centre atom drawn as a streak (no dip along it), and as one broad blob
    centre = atoms[np.argmin(np.linalg.norm(atoms - 11.5, axis=1))]
    others = _render(atoms[np.linalg.norm(atoms - centre, axis=1) > 1], size)
    streak = others + np.exp(-((yy - centre[0]) ** 2) / 2.0) * (np.abs(xx - centre[1]) < 3)
    broad = others + _render(centre[None], size, sigma_px=3.0)
    images = np.stack([sharp, bonded, streak, broad]).astype(np.float32)
    assert centre_rings(find_decoded_atoms(images[1:2], method="blobs"), 1, size, 4.5
                        )[0].tolist() == [-1, -1, -1, -1]  # one merged blob
    counts = centre_rings(find_decoded_atoms(images), 4, size, 4.5)
    assert counts[:2].tolist() == [[0, 3, 0, 0]] * 2
    assert (counts[2:] == -1).all()


@pytest.fixture(scope="module")
def encoded(rings, trained):
    """The trained model and the latents of its ring windows."""
    model = load_rvae(trained[0])
    return model, encode(model, rings[0])


def test_chemical_space_map_of_ring_windows_names_their_ring_sizes(rings, encoded):
    _, truth = rings
    model, latents = encoded
    z1, z2 = latent_grid(latents, 40)
    space = chemical_space_map(model, z1, z2, bond_length_px=BOND_PX, kind="hollow")
    assert space.counts.shape == (40, 40, 4)
    assert set(np.unique(space.counts)) <= {-1, 0, 1}
    # Every physical point holds exactly one ring.
    assert (space.counts[space.physical].sum(-1) == 1).all()
    classes = space.classes()
    assert {"5", "6", "7"} <= set(classes.structure)
    labels = labels_at(space, latents)
    assert labels.index.equals(latents.index)
    named = labels.structure.to_numpy() == truth.ring_size.astype(str).to_numpy()
    assert named.mean() >= 0.8
    # The map survives its arrays.
    again = ChemicalSpaceMap.from_arrays(space.to_arrays())
    assert np.array_equal(again.counts, space.counts) and again.kind == "hollow"


def test_coarser_decoding_gives_the_same_map(encoded):
    model, latents = encoded
    z1, z2 = latent_grid(latents, 16)
    fine = chemical_space_map(model, z1, z2, bond_length_px=BOND_PX, kind="hollow")
    coarse = chemical_space_map(model, z1, z2, bond_length_px=BOND_PX, kind="hollow",
                                size=14, batch_size=50)
    # Where the windows lie, the two maps name the same structures. Over the whole grid
    # they differ only at class boundaries and in the plane's empty corners, whose share
    # swings with the training's draw (0.82-0.95 of the grid alike over four training
    # seeds, 1.00 of the windows on each), so the windows are what is held to.
    fine_names = labels_at(fine, latents).structure.to_numpy()
    coarse_names = labels_at(coarse, latents).structure.to_numpy()
    assert (fine_names == coarse_names).mean() >= 0.99
    assert (fine.counts == coarse.counts).all(-1).mean() >= 0.75


def test_a_map_read_on_resampled_images_is_the_map_read_as_decoded(encoded):
    model, latents = encoded
    z1, z2 = latent_grid(latents, 16)
    native = chemical_space_map(model, z1, z2, bond_length_px=BOND_PX, kind="hollow")
    finer = chemical_space_map(model, z1, z2, bond_length_px=BOND_PX, kind="hollow",
                               read_px=24)
    # the bond length follows the images to their new pixels
    assert (native.counts == finer.counts).all(-1).mean() >= 0.9
    with pytest.raises(ValueError, match="read_px"):
        chemical_space_map(model, z1, z2, bond_length_px=BOND_PX, read_px=2)


def test_lattices_too_coarse_to_read_are_read_once_resampled():
    size, fine = 16, 24
    bond = CC_BOND_A / (8.0 / (size - 1))  # 8 A windows of 16 samples: 2.7 px a bond
    sigma_px = 0.35 / (8.0 / (size - 1))
    images = np.stack([_render(_graphene("atom", size, bond, angle), size, sigma_px)
                       for angle in np.linspace(0.1, 0.9, 5)])
    images /= images.max(axis=(1, 2), keepdims=True)
    coarse = [ring_label(c) for c in read_structures(images, bond)]
    assert coarse.count("6-6-6") < len(coarse)  # 2.7 px a bond: atoms run together
    finer = read_structures(resample_images(images, fine), bond * (fine - 1) / (size - 1))
    assert [ring_label(c) for c in finer] == ["6-6-6"] * len(images)
    assert np.array_equal(resample_images(images, size), images)
    with pytest.raises(ValueError, match="images"):
        resample_images(images[0], fine)
    with pytest.raises(ValueError, match="size must be an integer of at least 4"):
        resample_images(images, 2)


def test_a_refined_grid_reads_few_points_and_keeps_every_boundary():
    def regions(i, j):
        # a disc, a band across it and a class in one corner, read with a counter
        calls.append(len(i))
        disc = (i - 30) ** 2 + (j - 25) ** 2 < 15**2
        band = np.abs(i - 0.7 * j - 5) < 3
        return np.stack([disc, band, (i < 6) & (j > 50)], 1).astype(np.int64)

    shape = (64, 57)
    calls = []
    exact = regions(*np.indices(shape).reshape(2, -1)).reshape(*shape, 3)
    for step in (1, 4, 8):
        calls = []
        grid = refined_grid(regions, shape, step)
        assert grid.shape == exact.shape and grid.dtype == exact.dtype
        assert (grid == exact).all(-1).mean() >= 0.995
        # no point is read twice, and the coarser the start the fewer are read
        assert sum(calls) <= exact[..., 0].size
        if step > 1:
            assert sum(calls) < 0.5 * exact[..., 0].size
    calls = []
    assert np.array_equal(refined_grid(regions, (1, 57), 8), exact[:1])
    with pytest.raises(ValueError, match="coarse_step"):
        refined_grid(regions, shape, 0)


def test_a_coarse_to_fine_map_is_the_full_map(encoded):
    model, latents = encoded
    z1, z2 = latent_grid(latents, 40)
    full = chemical_space_map(model, z1, z2, bond_length_px=BOND_PX, kind="hollow")
    refined = chemical_space_map(model, z1, z2, bond_length_px=BOND_PX, kind="hollow",
                                 coarse_step=4, batch_size=100)
    assert refined.counts.shape == full.counts.shape
    assert (refined.counts == full.counts).all(-1).mean() >= 0.97


def test_manifold_and_mosaic(trained):
    model = load_rvae(trained[0])
    z1, z2 = np.linspace(-2, 2, 5), np.linspace(-1, 1, 3)
    images = manifold(model, z1, z2)
    assert images.shape == (3, 5, 16, 16) and images.dtype == np.float32
    smooth = manifold(model, z1, z2, read_px=31)
    assert smooth.shape == (3, 5, 31, 31)
    # the splines pass through the decoded samples
    assert np.allclose(smooth[..., ::2, ::2], images, atol=1e-4)
    tiles = mosaic(images, gap_px=1)
    assert tiles.shape == (3 * 17 - 1, 5 * 17 - 1)
    # z2 grows upwards: the top-left tile is the last row of the grid.
    assert np.array_equal(tiles[:16, :16], images[2, 0])
    assert np.isnan(tiles[16]).all()


def test_latent_grid_covers_the_windows_and_checks_input():
    latents = pd.DataFrame({"z1": np.linspace(-3, 1, 101), "z2": np.linspace(0, 2, 101)})
    z1, z2 = latent_grid(latents, 11, quantile=0.0, margin=0.0)
    assert z1[0] == -3 and z1[-1] == 1 and len(z2) == 11
    with pytest.raises(ValueError, match="no column"):
        latent_grid(latents.drop(columns="z2"), 11)
    with pytest.raises(ValueError, match="NaN"):
        latent_grid(latents.assign(z1=np.nan), 11)
    with pytest.raises(ValueError, match="empty"):
        latent_grid(latents.iloc[:0], 11)


def test_encoded_image_paints_values_at_window_centres():
    windows = pd.DataFrame({"y": [5.0, 20.0], "x": [5.0, 20.0]})
    img = encoded_image((30, 30), windows, np.array([1.0, -2.0]), radius_px=3)
    assert img[5, 5] == 1.0 and img[20, 21] == -2.0
    assert np.isnan(img[12, 12])
    with pytest.raises(ValueError, match="values"):
        encoded_image((30, 30), windows, np.array([1.0]), radius_px=3)
