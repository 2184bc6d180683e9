"""Scores against synthetic truth that the pipeline tests do not reach: rings, and the
targets of the earlier issues."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from latentpath.evaluate import TARGETS, check_targets, score_rings
from latentpath.synth import synth_stem_movie


def test_rings_found_are_scored_against_the_true_rings():
    sim = synth_stem_movie(2, 320, seed=4, final_disorder=0.3)
    truth = sim.rings
    kwargs = {"pixel_size_A": sim.pixel_size_A, "frame_shape": sim.movie.shape[1:]}
    exact = score_rings(truth, truth, **kwargs)
    assert exact["ring_recall"] == exact["ring_precision"] == exact["ring_size_accuracy"] == 1
    assert exact["ring_recall_6"] == 1
    margin = 4.0 / sim.pixel_size_A
    inside = truth.y.between(margin, 319 - margin) & truth.x.between(margin, 319 - margin)
    rng = np.random.default_rng(0)
    found = truth.drop(index=rng.choice(truth.index, len(truth) // 4, replace=False))
    core = found[inside[found.index] & found.y.between(margin, 319 - 2 * margin)]
    found.loc[core.index[:10], "size"] = 9
    stray = core.head(5).assign(y=core.y.head(5) + 1.2 / sim.pixel_size_A)  # on no centre
    scores = score_rings(pd.concat([found, stray]), truth, **kwargs)
    assert scores["rings_true"] == inside.sum()
    assert scores["ring_recall"] == pytest.approx(truth.index[inside].isin(found.index).mean())
    kept = inside[found.index].sum()
    assert scores["ring_precision"] == pytest.approx(1 - 5 / (kept + 5))
    assert scores["ring_size_accuracy"] == pytest.approx(1 - 10 / kept)
    # rings cut by the frame's edge count on neither side
    edge = truth.assign(y=1.0)
    assert score_rings(edge, truth, **kwargs)["rings_found"] == 0


def test_targets_are_met_missed_or_not_measured():
    scores = {"atoms": {"f1": 0.99, "mean_error_A": 0.2},
              "tracks": {"tracks_mota": float("nan")},
              "pfm": {"switching_spearman": 0.71}}
    table = check_targets(scores).set_index("score")
    assert table.loc["f1", "met"] is True and table.loc["mean_error_A", "met"] is False
    assert table.loc["tracks_mota", "met"] is None
    assert table.loc["switching_spearman", "target"] == ">= 0.7"
    assert len(table) == 4 and all(sense in (">=", "<=") for _, _, sense, _, _ in TARGETS)
