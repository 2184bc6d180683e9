"""The notebook under examples/ runs from top to bottom on the shared real data."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
REAL = Path(__file__).resolve().parents[2] / "shared" / "data" / "real"


@pytest.mark.skipif(not REAL.is_dir(), reason="shared real data not present")
def test_real_data_notebook_runs(tmp_path, monkeypatch):
    import matplotlib

    matplotlib.use("Agg")  # no screen here; a notebook shows its figures inline
    monkeypatch.setenv("LATENTPATH_REAL_DATA", str(REAL))
    monkeypatch.setenv("LATENTPATH_EXAMPLE_OUT", str(tmp_path / "runs"))
    notebook = json.loads((EXAMPLES / "real_data.ipynb").read_text())
    namespace: dict = {}
    for cell in notebook["cells"]:
        if cell["cell_type"] == "code":
            exec(compile("".join(cell["source"]), "real_data.ipynb", "exec"), namespace)
    # the runs it promises are there, with their reports
    assert (tmp_path / "runs" / "grain-boundary" / "report.html").is_file()
    assert (tmp_path / "runs" / "pzt" / "report.html").is_file()
    hollow = namespace["stem"].kinds["hollow"].latents
    assert {5, 6, 7} <= set(hollow["size"])  # the grain boundary's rings were found
    assert len(namespace["pfm"].frames) == 3
