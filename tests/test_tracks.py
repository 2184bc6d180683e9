"""Drift, linking, chemical states and transitions, on the exact atoms of a synthetic
movie (persistent ids) and on small hand-made tables."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from latentpath.evaluate import score_tracks
from latentpath.synth import synth_stem_movie
from latentpath.tracks import (
    chemical_states,
    estimate_drift,
    find_transitions,
    link_atoms,
    site_name,
    state_lifetimes,
    transition_counts,
)

SIZE = 256
PX = 0.1


@pytest.fixture(scope="module")
def sim():
    return synth_stem_movie(10, SIZE, seed=5, si_fraction=0.04, final_disorder=0.3,
                            drift_A_per_frame=0.4)


@pytest.fixture(scope="module")
def seen(sim):
    """The true atoms inside the frames, as an atom finder would report them."""
    a = sim.atoms
    inside = a.y.between(0, SIZE - 1) & a.x.between(0, SIZE - 1)
    return a[inside].reset_index(drop=True)


def true_displacement(atoms: pd.DataFrame) -> np.ndarray:
    """Median move of the atoms from frame to frame, from their ids (pixels)."""
    wide = atoms.pivot_table(index="id", columns="frame", values=["y", "x"])
    frames = sorted(atoms.frame.unique())
    steps = [np.nanmedian(np.stack([wide["y"][f] - wide["y"][f - 1],
                                    wide["x"][f] - wide["x"][f - 1]], 1), axis=0)
             for f in frames[1:]]
    return np.cumsum(np.vstack([[0.0, 0.0], *steps]), axis=0)


def test_drift_follows_the_sample(seen):
    drift = estimate_drift(seen, PX, (SIZE, SIZE))
    assert list(drift.frame) == list(range(10))
    truth = true_displacement(seen)
    assert np.abs(truth).max() > 5, "the test movie should drift by several pixels"
    error_A = np.hypot(*(drift[["dy", "dx"]].to_numpy() - truth).T) * PX
    assert error_A.max() < 0.05
    assert (drift.matched.iloc[1:] > 0.8 * seen.groupby("frame").size().min()).all()


def test_drift_is_not_fooled_by_the_lattice_period(seen):
    # Shift every frame after the first by most of a lattice period (2.46 A): a
    # lattice-only alignment would snap back to the nearest lattice vector.
    moved = seen.copy()
    jump_px = np.array([13.0, -9.0])
    later = moved.frame > 0
    moved.loc[later, "y"] += jump_px[0]
    moved.loc[later, "x"] += jump_px[1]
    drift = estimate_drift(moved, PX, (SIZE, SIZE))
    truth = true_displacement(seen) + np.where(np.arange(10)[:, None] > 0, jump_px, 0)
    assert np.abs(drift[["dy", "dx"]].to_numpy() - truth).max() * PX < 0.05


def test_si_tracks_follow_their_atoms(seen):
    drift = estimate_drift(seen, PX, (SIZE, SIZE))
    tracks = link_atoms(seen, PX, drift=drift)
    assert (tracks.species == "Si").all()
    assert set(tracks.atom) == set(seen.index[seen.species == "Si"])
    ids = seen.loc[tracks.atom, "id"].to_numpy()
    # one true atom per track and one track per true atom
    assert (pd.Series(ids).groupby(tracks.track.to_numpy()).nunique() == 1).all()
    assert (pd.Series(tracks.track.to_numpy()).groupby(ids).nunique() == 1).all()
    assert list(tracks.track.drop_duplicates()) == sorted(tracks.track.unique())
    assert np.allclose(tracks.y - tracks.y_fixed,
                       drift.set_index("frame").dy.loc[tracks.frame].to_numpy())


def test_all_atoms_can_be_tracked(seen):
    frames = seen[seen.frame < 3]
    drift = estimate_drift(frames, PX, (SIZE, SIZE))
    tracks = link_atoms(frames, PX, species=None, drift=drift)
    assert set(tracks.species) == {"C", "Si"}
    ids = frames.loc[tracks.atom, "id"].to_numpy()
    purity = pd.Series(ids).groupby(tracks.track.to_numpy()).agg(lambda s: s.value_counts().iloc[0]
                                                                 / len(s))
    assert purity.mean() > 0.98


def lonely_atom(frames: list[int], y: float = 100.0, x: float = 100.0) -> pd.DataFrame:
    return pd.DataFrame({"frame": frames, "y": y + 0.1 * np.arange(len(frames)),
                         "x": x, "species": "Si"})


def test_gaps_are_recorded_and_memory_bridges_them():
    atoms = pd.concat([lonely_atom([0, 1, 4, 5]), lonely_atom([2, 3, 4, 5], y=200.0)],
                      ignore_index=True)
    tracks = link_atoms(atoms, PX, memory=3, search_A=1.0)
    first = tracks[tracks.track == 0]
    assert list(first.frame) == [0, 1, 4, 5]
    assert list(first.gap_before) == [0, 0, 2, 0]
    # the atom that first appears in frame 2 has its own track, without a gap
    late = tracks[tracks.track == 1]
    assert list(late.frame) == [2, 3, 4, 5] and (late.gap_before == 0).all()
    split = link_atoms(atoms, PX, memory=1, search_A=1.0)
    assert split.track.nunique() == 3


def test_a_si_hop_stays_on_its_track():
    atoms = lonely_atom(list(range(6)))
    atoms.loc[atoms.frame >= 3, "x"] += 1.6 / PX
    assert link_atoms(atoms, PX).track.nunique() == 1


def test_chemical_states_name_species_coordination_and_rings():
    atoms = pd.DataFrame({"y": [100.0, 100.0, 10.0], "x": [100.0, 120.0, 100.0],
                          "species": ["Si", "C", "Si"], "coordination": [4, 3, 3],
                          "n5": [2, 1, 0], "n6": [2, 1, 3], "n7": [0, 1, 0], "n8": [0, 0, 0]})
    states = chemical_states(atoms, (256, 256), PX, border_A=3.0)
    assert list(states) == ["Si4 5-5-6-6", "C3 5-6-7", None]
    assert site_name("Si3 6-6-6") == "3-fold Si: graphene lattice"
    assert site_name("Si2 6") == "2-fold Si: edge of a hole"
    assert site_name("C3 5-6-7") == "3-fold C: 5-7 pair (dislocation core, Stone-Wales)"


def states_table(rows: list[tuple[int, int, str | None]]) -> pd.DataFrame:
    tracks = pd.DataFrame(rows, columns=["track", "frame", "state"])
    return tracks.assign(y=1.0, x=2.0)


def test_transitions_skip_unknown_states_and_track_ends():
    tracks = states_table([(0, 0, "Si3 6-6-6"), (0, 1, "Si3 6-6-6"), (0, 2, None),
                           (0, 3, "Si3 6-6-6"), (0, 4, "Si4 5-5-6-6"), (0, 6, "Si4 5-5-6-6"),
                           (0, 7, "Si3 6-6-6"), (1, 0, "Si4 5-5-6-6"), (1, 1, None),
                           (1, 2, "Si3 6-6")])
    changes = find_transitions(tracks)
    listed = changes[["track", "frame", "from_state", "to_state", "frames_since"]]
    assert listed.values.tolist() == [
        [0, 4, "Si3 6-6-6", "Si4 5-5-6-6", 1], [0, 7, "Si4 5-5-6-6", "Si3 6-6-6", 1],
        [1, 2, "Si4 5-5-6-6", "Si3 6-6", 2]]
    counts = transition_counts(changes)
    assert counts.iloc[0].tolist() == ["Si3 6-6-6", "Si4 5-5-6-6", 1] and counts["count"].sum() == 3
    life = state_lifetimes(tracks).set_index("state")
    # track 0: Si3 frames 0-3 (censored), Si4 frames 4-6 (complete), Si3 frame 7 (censored)
    assert life.loc["Si4 5-5-6-6", "stays"] == 2
    assert life.loc["Si4 5-5-6-6", "complete"] == 1
    assert life.loc["Si4 5-5-6-6", "mean_complete_frames"] == 3
    assert life.loc["Si3 6-6-6", "complete"] == 0
    assert np.isnan(life.loc["Si3 6-6-6", "mean_complete_frames"])


def test_bad_inputs_are_named():
    with pytest.raises(ValueError, match="lacks the column"):
        link_atoms(pd.DataFrame({"frame": [0], "y": [1.0], "x": [1.0]}), PX)
    with pytest.raises(ValueError, match="empty"):
        estimate_drift(pd.DataFrame(columns=["frame", "y", "x"]), PX, (10, 10))
    with pytest.raises(ValueError, match="NaN"):
        link_atoms(lonely_atom([0, 1]).assign(y=np.nan), PX)
    with pytest.raises(ValueError, match=r"no atoms of species \['Si'\]"):
        link_atoms(lonely_atom([0, 1]).assign(species="C"), PX)
    with pytest.raises(ValueError, match="frame_shape"):
        estimate_drift(lonely_atom([0, 1]), PX, (10,))
    with pytest.raises(ValueError, match="sorted"):
        find_transitions(states_table([(0, 1, "a"), (0, 0, "b")]))
    with pytest.raises(ValueError, match="pixel_size_A"):
        link_atoms(lonely_atom([0, 1]), -1.0)
    with pytest.raises(ValueError, match="no row for frame"):
        link_atoms(lonely_atom([0, 1]), PX, drift=pd.DataFrame({"frame": [0], "dy": [0.0],
                                                                 "dx": [0.0]}))


def truth_tracks(seen: pd.DataFrame) -> pd.DataFrame:
    """Perfect tracks: the true Si atoms with their ids as track numbers."""
    si = seen[seen.species == "Si"].sort_values(["id", "frame"]).reset_index(drop=True)
    return si.assign(track=si.id, state=chemical_states(si, (SIZE, SIZE), PX))


def test_perfect_tracks_score_perfectly(sim, seen):
    scores = score_tracks(truth_tracks(seen), sim.atoms, pixel_size_A=PX,
                          frame_shape=(SIZE, SIZE))
    assert scores["tracks_mota"] == 1.0
    assert scores["tracks_id_switches"] == 0 and scores["transitions_false"] == 0
    assert scores["coordination_changes_found_within_1"] in (1.0,) or np.isnan(
        scores["coordination_changes_found_within_1"])


def test_scores_count_switches_misses_and_false_changes(sim, seen):
    tracks = truth_tracks(seen)
    frames_of = tracks.groupby("track").frame.nunique()
    first, second = frames_of.index[frames_of == 10][:2]
    # swap the two atoms' tracks from frame 5 on: two identity switches
    late = tracks.frame >= 5
    swapped = tracks.track.where(~late, tracks.track.map({first: second, second: first})
                                 .fillna(tracks.track))
    tracks = tracks.assign(track=swapped.astype(int)).sort_values(["track", "frame"])
    tracks = tracks.reset_index(drop=True)
    # drop one observation, and invent a change of state that never happened: for one
    # frame, where the true atom keeps its state from the frame before to two after
    tracks = tracks.drop(index=3).reset_index(drop=True)
    true_changes = find_transitions(truth_tracks(seen))
    row = next(i for i, t in tracks.iterrows()
               if 0 < i < len(tracks) - 1 and t.state is not None
               and tracks.state[i - 1] is not None and tracks.state[i + 1] is not None
               and tracks.track[i - 1] == t.track == tracks.track[i + 1]
               and tracks.frame[i + 1] == t.frame + 1
               and not true_changes[true_changes.track == t.id].frame.between(
                   t.frame - 1, t.frame + 2).any())
    before = score_tracks(tracks, sim.atoms, pixel_size_A=PX, frame_shape=(SIZE, SIZE))
    tracks.loc[row, "state"] = "Si9 nonsense"
    scores = score_tracks(tracks, sim.atoms, pixel_size_A=PX, frame_shape=(SIZE, SIZE))
    assert scores["tracks_id_switches"] == 2
    assert scores["tracks_misses"] == 1 and scores["tracks_false_positives"] == 0
    n_true = scores["tracks_true_atom_frames"]
    assert scores["tracks_mota"] == pytest.approx(1 - 3 / n_true)
    # the invented state makes a change into it and one out of it (the swap may have
    # joined two atoms' states into a false change of its own)
    assert scores["transitions_false"] - before["transitions_false"] == 2
    assert scores["transitions_exact"] < before["transitions_exact"]
