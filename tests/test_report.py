"""RUN/report.html: written with every run, self-contained, and working in a real browser
(Debian's headless Chromium, driven by Playwright)."""

from __future__ import annotations

import json
import os
import re
import shutil

import pytest

from latentpath.cli import main
from latentpath.pipeline import PfmConfig, PfmRun, StemConfig, run_pfm, run_stem
from latentpath.report import write_report
from latentpath.synth import synth_stem_movie, write_synth_stem
from latentpath.synth.pfm import synth_pfm_movie, write_synth_pfm

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
#: CI installs Chromium and sets this, so that the browser tests run there, never skip
REQUIRED = os.environ.get("LATENTPATH_REQUIRE_BROWSER") == "1"
RVAE = {"epochs": 2, "hidden": 16, "layers": 2, "compile": False, "precision": "float32",
        "device": "cpu", "manifold_points": 4}


@pytest.fixture(scope="module")
def pfm_run(tmp_path_factory):
    folder = tmp_path_factory.mktemp("pfm")
    movie = write_synth_pfm(synth_pfm_movie(8, 128, seed=1), folder / "movie.npz")
    run_pfm(movie, folder / "run", PfmConfig(**RVAE, map_points=8, walls_per_frame=30),
            progress=False)
    return folder / "run"


@pytest.fixture(scope="module")
def stem_run(tmp_path_factory):
    folder = tmp_path_factory.mktemp("stem")
    movie = folder / "movie.npz"
    write_synth_stem(synth_stem_movie(3, 160, seed=3, final_disorder=0.3), movie)
    run_stem(movie, folder / "run", StemConfig(**RVAE, map_points=16, track_species=None,
                                               atoms_per_frame={"C": 30, "Si": None},
                                               hollow_per_frame=20), progress=False)
    return folder / "run"


@pytest.mark.parametrize("which", ["pfm_run", "stem_run"])
def test_report_is_one_self_contained_page(which, request):
    run = request.getfixturevalue(which)
    page = (run / "report.html").read_text()
    # nothing is fetched: no external script, style, font or image
    assert not re.search(r"""(src|href)\s*=\s*["']?(https?:)?//""", page)
    assert "@import" not in page and "url(http" not in page
    data = json.loads(re.search(r'<script id="report-data" type="application/json">(.*?)'
                                r"</script>", page, re.S).group(1))
    record = json.loads((run / "config.json").read_text())
    assert len(data["frames"]) == (8 if which == "pfm_run" else 3)
    for figure in record["figures"]:  # every figure of the run is on the page
        assert f'alt="{figure.split("/")[-1][:-4]}"' in page
    assert "Settings" in page and "--config" in page
    for explorer in data["explorers"]:
        points = explorer["points"]
        assert len(points["z1"]) == len(points["frame"]) == len(points["value"]) > 0
        assert len(explorer["sprites"]["window"]) == explorer["channels"]
    names = {e["name"] for e in data["explorers"]}
    assert names == ({"walls"} if which == "pfm_run" else {"atom", "hollow"})
    if which == "stem_run":  # the structures found, named as a chemist would
        assert "What the run discovered" in page and "graphene lattice" in page
        assert "Bond graph of all found atoms" in page


def test_report_command_rewrites_the_page_from_the_run(pfm_run, capsys):
    before = (pfm_run / "report.html").read_text()
    (pfm_run / "report.html").unlink()
    assert main(["report", str(pfm_run)]) == 0
    assert "report.html" in capsys.readouterr().out
    assert (pfm_run / "report.html").read_text() == before


def test_report_refuses_a_movie_that_changed_since_the_run(stem_run, tmp_path, capsys):
    movie, page = stem_run.parent / "movie.npz", stem_run / "report.html"
    original, before = movie.read_bytes(), page.read_bytes()
    other = write_synth_stem(synth_stem_movie(3, 160, seed=4), tmp_path / "other.npz")
    try:
        movie.write_bytes(other.read_bytes())
        assert main(["report", str(stem_run)]) == 2
        err = capsys.readouterr().err
        assert "movie.npz has changed since the run" in err and "again" in err
        assert page.read_bytes() == before
    finally:
        movie.write_bytes(original)


def test_report_refuses_what_is_not_a_run(tmp_path, capsys, pfm_run):
    assert main(["report", str(tmp_path)]) == 2
    assert "not a finished run" in capsys.readouterr().err
    (tmp_path / "config.json").write_text(json.dumps({"pipeline": "pfm", "config": {}}))
    assert main(["report", str(tmp_path)]) == 2
    with pytest.raises(ValueError, match="frames must have shape"):
        write_report(PfmRun.read(pfm_run), frames=[1.0, 2.0])


def _browser():
    if CHROMIUM is None:
        if REQUIRED:
            pytest.fail("Chromium is required (LATENTPATH_REQUIRE_BROWSER=1) but not found")
        pytest.skip("no Chromium on this machine (CI installs Debian's)")
    sync_api = pytest.importorskip("playwright.sync_api")
    return sync_api.sync_playwright()


@pytest.mark.parametrize("which", ["pfm_run", "stem_run"])
def test_explorer_answers_a_click_in_a_real_browser(which, request, tmp_path):
    run = request.getfixturevalue(which)
    with _browser() as playwright:
        browser = playwright.chromium.launch(
            executable_path=CHROMIUM,
            args=["--no-sandbox", "--disable-gpu", "--disable-background-networking",
                  "--disable-component-update", "--disable-sync", "--no-first-run"])
        page = browser.new_page(viewport={"width": 1300, "height": 900})
        problems = []
        page.on("console", lambda m: problems.append(m.text) if m.type == "error" else None)
        page.on("pageerror", lambda e: problems.append(str(e)))
        page.on("request", lambda r: None if r.url.startswith(("file:", "data:"))
                else problems.append(f"fetched {r.url}"))
        page.goto((run / "report.html").as_uri())
        page.wait_for_load_state("load")
        data = page.evaluate("JSON.parse(document.getElementById('report-data').textContent)")
        for explorer in data["explorers"]:
            root = page.locator(f'.explorer[data-explorer="{explorer["name"]}"]')
            root.scroll_into_view_if_needed()
            canvas = root.locator(".scatter")
            box = canvas.bounding_box()
            # where the page draws point 0 (the script's own layout: 24 px margins)
            z1, z2 = explorer["points"]["z1"], explorer["points"]["z2"]
            width = page.evaluate("c => c.width", canvas.element_handle())
            fx = (z1[0] - min(z1)) / ((max(z1) - min(z1)) or 1)
            fy = (z2[0] - min(z2)) / ((max(z2) - min(z2)) or 1)
            x = (24 + fx * (width - 48)) * box["width"] / width
            y = (width - 24 - fy * (width - 48)) * box["height"] / width
            page.mouse.click(box["x"] + x, box["y"] + y)
            page.wait_for_function(
                "n => document.querySelector(`.explorer[data-explorer=\"${n}\"]`)"
                ".dataset.shown !== undefined", arg=explorer["name"])
            shown = int(root.get_attribute("data-shown"))
            points = explorer["points"]
            assert f"frame {points['frame'][shown]}" in root.locator(".info").text_content()
            # the window, its reconstruction and the frame are drawn, not blank
            cells = root.locator(".cells canvas")
            assert cells.count() == 2 * explorer["channels"]
            for handle in [*cells.element_handles(), root.locator(".frame").element_handle()]:
                inked = page.evaluate(
                    "c => { const d = c.getContext('2d').getImageData(0, 0, c.width, c.height)"
                    ".data; let s = 0; for (let i = 0; i < d.length; i += 4) s += d[i]; "
                    "return c.width > 0 && s > 0; }", handle)
                assert inked
            shot = tmp_path / f"{explorer['name']}.png"
            root.screenshot(path=str(shot))
            assert shot.stat().st_size > 10_000
        browser.close()
    assert problems == []
