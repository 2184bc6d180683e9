"""The discovery yardstick on hand-made latents of known separation."""

import numpy as np
import pandas as pd
import pytest

from latentpath.discovery import (
    DiscoveryScore,
    graph_labels,
    knn_balanced_accuracy,
    pca_features,
    read_discovery,
    score_discovery,
    summary_sentence,
)
from latentpath.io import write_json


def _clusters(separation, n=(200, 60, 40), seed=0):
    """Three Gaussian clusters of unit width, ``separation`` apart on a triangle."""
    rng = np.random.default_rng(seed)
    corners = separation * np.array([[0, 0], [1, 0], [0.5, 0.87]])
    x = np.concatenate([rng.normal(size=(m, 2)) + c for c, m in zip(corners, n, strict=True)])
    labels = np.repeat(["6-6-6", "5-6-7", "5-6-6"], n)
    return x, labels


def test_separated_clusters_score_one_and_mixed_ones_chance():
    x, y = _clusters(20.0)
    assert knn_balanced_accuracy(x, y)[0] == 1.0
    x, y = _clusters(0.0)
    chance, recall = knn_balanced_accuracy(x, y)
    assert abs(chance - 1 / 3) < 0.12
    assert set(recall) == {"6-6-6", "5-6-7", "5-6-6"}


def test_accuracy_rises_with_separation():
    scores = [knn_balanced_accuracy(*_clusters(d, seed=1))[0] for d in (0.0, 1.5, 3.0, 6.0)]
    assert scores == sorted(scores)
    assert scores[-1] > 0.97


def test_balanced_accuracy_does_not_reward_the_majority():
    # every point sits on the majority's cluster: plain accuracy would be 0.9
    rng = np.random.default_rng(2)
    x = rng.normal(size=(300, 2))
    y = np.where(np.arange(300) < 270, "6", "5")
    balanced, recall = knn_balanced_accuracy(x, y)
    assert recall["6"] > 0.95 and recall["5"] < 0.2
    assert balanced < 0.6


def test_knn_refuses_bad_input():
    with pytest.raises(ValueError, match="NaN"):
        knn_balanced_accuracy(np.full((40, 2), np.nan), np.zeros(40))
    with pytest.raises(ValueError, match="at least 30 points"):
        knn_balanced_accuracy(np.zeros((10, 2)), np.zeros(10))


def test_pca_features_project_on_the_leading_components():
    rng = np.random.default_rng(3)
    pattern = rng.normal(size=(8, 8))
    amount = rng.normal(size=200)
    windows = (amount[:, None, None] * pattern + 0.01 * rng.normal(size=(200, 8, 8)))
    pcs = pca_features(windows.astype(np.float32), 2)
    assert pcs.shape == (200, 2)
    assert abs(np.corrcoef(pcs[:, 0], amount)[0, 1]) > 0.999
    # fitted on a sample, projected on all: the same direction
    sampled = pca_features(windows, 1, max_fit=50)
    assert abs(np.corrcoef(sampled[:, 0], amount)[0, 1]) > 0.999


def _run_tables(latent_separation, seed=0):
    """Windows that are pure noise, latents that separate the labels by the given amount,
    and a map that names 6-6-6 and 5-6-6 but never 5-6-7."""
    x, y = _clusters(latent_separation, seed=seed)
    rng = np.random.default_rng(seed)
    windows = rng.normal(size=(len(x), 6, 6)).astype(np.float32)
    mapped = np.where(y == "5-6-7", "6-6-6", y)
    latents = pd.DataFrame({"z1": x[:, 0], "z2": x[:, 1], "map_structure": mapped})
    return latents, windows, pd.Series(y, dtype=object)


def test_a_separating_latent_plane_beats_pca_of_noise_windows():
    latents, windows, labels = _run_tables(20.0)
    labels[:3] = None  # unscored windows (edges)
    score = score_discovery(latents, windows, labels, kind="atom")
    assert score.latent > 0.99
    assert score.pca2 < 0.6
    assert score.gain_over_pca > 0.4
    assert score.n_scored == len(latents) - 3
    assert score.map_agreement == {"6-6-6": 1.0, "5-6-7": 0.0, "5-6-6": 1.0}
    assert score.never_named() == ["5-6-7"]
    sentence = score.sentence()
    assert "better than a 2-D PCA" in sentence and "never names 5-6-7" in sentence


def test_a_common_structure_named_for_too_few_of_its_windows_is_said():
    latents, windows, labels = _run_tables(20.0)
    five_six_six = np.flatnonzero(labels.to_numpy() == "5-6-6")  # 40 windows
    mapped = latents["map_structure"].to_numpy().copy()
    mapped[five_six_six[:12]] = "6"  # 28 of 40 named right: 70 %
    score = score_discovery(latents.assign(map_structure=mapped), windows, labels,
                            kind="atom")
    assert score.weakly_named_common() == {"5-6-6": 0.7}
    sentence = score.sentence()
    assert "never names 5-6-7" in sentence
    assert "of the commonest it names 5-6-6 for only 70% of its windows" in sentence
    assert "another seed may name it better" in sentence
    mapped[five_six_six[:12]] = "5-6-6"
    mapped[five_six_six[:4]] = "6"  # 90 %: nothing to say
    score = score_discovery(latents.assign(map_structure=mapped), windows, labels,
                            kind="atom")
    assert score.weakly_named_common() == {}
    assert "for only" not in score.sentence()


def test_a_plane_that_keeps_nothing_is_said_to_be_no_better():
    latents, windows, labels = _run_tables(0.0, seed=4)
    score = score_discovery(latents, windows, labels, kind="hollow")
    assert abs(score.gain_over_pca) < 0.15
    assert "separates the structures" in score.sentence()


def test_rare_labels_are_listed_but_not_scored():
    latents, windows, labels = _run_tables(20.0)
    labels[:4] = "5-7-7"
    score = score_discovery(latents, windows, labels, kind="atom")
    assert score.excluded == {"5-7-7": 4}
    assert "5-7-7" not in score.latent_recall
    assert "5-7-7" in score.map_agreement and "5-7-7" not in score.never_named()


def test_one_label_gives_no_accuracy_but_a_sentence():
    latents, windows, _ = _run_tables(3.0)
    score = score_discovery(latents, windows, pd.Series(["6"] * len(latents)), kind="hollow")
    assert np.isnan(score.latent)
    assert "too few structures" in score.sentence()


def test_score_refuses_misaligned_inputs():
    latents, windows, labels = _run_tables(3.0)
    with pytest.raises(ValueError, match="one row per window"):
        score_discovery(latents, windows[:-1], labels, kind="atom")
    with pytest.raises(ValueError, match="map_structure"):
        score_discovery(latents.drop(columns="map_structure"), windows, labels, kind="atom")


def test_graph_labels_of_atom_and_hollow_windows():
    atoms = pd.DataFrame({"n5": [0, 1, 0], "n6": [3, 1, 2], "n7": [0, 1, 0], "n8": 0})
    rings = pd.DataFrame({"size": [6, 5, 9]})
    atom = graph_labels(pd.DataFrame({"atom": [2, 0, 1]}), atoms, rings, "atom")
    assert atom.tolist() == [None, "6-6-6", "5-6-7"]
    # with edges, the rim atom of two hexagons is named too; an atom of no ring is not
    rim = pd.concat([atoms, pd.DataFrame({"n5": [0], "n6": [0], "n7": [0], "n8": [0]})],
                    ignore_index=True)
    edged = graph_labels(pd.DataFrame({"atom": [2, 0, 3]}), rim, rings, "atom", edges=True)
    assert edged.tolist() == ["6-6", "6-6-6", None]
    hollow = graph_labels(pd.DataFrame({"ring": [1, 2, 0]}), atoms, rings, "hollow")
    assert hollow.tolist() == ["5", None, "6"]
    with pytest.raises(ValueError, match="kind"):
        graph_labels(pd.DataFrame({"atom": [0]}), atoms, rings, "wall")


def test_scores_round_trip_through_the_run_folder(tmp_path):
    assert read_discovery(tmp_path) is None
    latents, windows, labels = _run_tables(20.0)
    score = score_discovery(latents, windows, labels, kind="atom")
    write_json(score.to_dict(), tmp_path / "discovery.json")
    back = read_discovery(tmp_path)
    assert back == score
    assert summary_sentence([back]) == score.sentence()
    (tmp_path / "discovery.json").write_text('{"kind": "atom"}')
    with pytest.raises(ValueError, match="not a discovery score"):
        read_discovery(tmp_path)
    assert isinstance(back, DiscoveryScore)
