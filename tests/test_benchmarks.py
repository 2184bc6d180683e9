"""The evaluation and benchmark scripts of ``benchmarks/`` run end to end on tiny inputs,
so that a change of the package's API breaks a test, not the next measurement. The
scripts read the tiny STEM run of ``conftest.stem_run``."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

BENCHMARKS = Path(__file__).parents[1] / "benchmarks"


def _script(name: str, *args: str) -> str:
    """Run a script of ``benchmarks/`` as a user would; its output."""
    done = subprocess.run([sys.executable, str(BENCHMARKS / name), *args], cwd=BENCHMARKS,
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, f"{name} failed:\n{done.stderr[-4000:]}"
    return done.stdout


def test_the_map_reading_script_reads_a_finished_run_each_way(stem_run):
    out = _script("eval_map_reading.py", str(stem_run[0]), "--map-points", "12", "--top", "2",
                  "--readings", "fixed smear", "+ stand-in")
    assert "atom:" in out and "hollow:" in out
    assert out.count("fixed smear") == 2 and out.count("+ stand-in") == 2


def test_the_retraining_script_trains_scores_and_maps_a_kind_again(stem_run):
    out = _script("eval_retrain.py", str(stem_run[0]), "--kind", "hollow", "--epochs", "1",
                  "--max-steps", "5", "--hidden", "32", "--no-compile", "--map-points", "12")
    assert "steps" in out and "map" in out


def test_the_retraining_script_balances_rim_atoms_by_their_rings(stem_run):
    out = _script("eval_retrain.py", str(stem_run[0]), "--kind", "atom", "--epochs", "1",
                  "--max-steps", "5", "--hidden", "32", "--no-compile", "--map-points", "12",
                  "--balance-edges")
    assert "map accuracy" in out


def test_the_decoder_tuning_script_trains_the_decoder_and_reads_the_map_again(stem_run):
    out = _script("eval_decoder_tune.py", str(stem_run[0]), "--steps", "3")
    assert f"{stem_run[0].name}: " in out and "-> " in out and "3 decoder steps" in out


def test_the_pfm_benchmark_runs_and_scores_a_small_movie():
    out = _script("bench_pfm.py", "--frames", "6", "--size", "128", "--mode", "tip",
                  "--epochs", "2", "--max-steps", "6", "--cooldown", "0.3")
    assert "end to end" in out and "curvature_sign" in out


def test_the_plane_against_pca_script_scores_every_view(stem_run):
    out = _script("eval_plane_vs_pca.py", str(stem_run[0]), "--kind", "hollow", "--top", "1")
    for view in ("plane (z1, z2)", "2-D PCA", "10-D PCA", "30-D PCA", "raw pixels"):
        assert view in out
