"""The JSON and HTML report: content, self-containment, atomic writing, rendering in Chromium."""

from __future__ import annotations

import importlib.util
import json
import os
import re
import subprocess
from pathlib import Path

import numpy as np
import pytest

from genosynth.evaluate import EvalConfig, copy_generator, evaluate, independent_snps_generator, split_train_holdout
from genosynth.evaluate.report import PLOTS, _genome_x, _zoom, render_html, write_report

REPO = Path(__file__).resolve().parents[2]
FAST = EvalConfig(classifiers=("lr", "rf"), rf_trees=20, mia_repeats=2, aats_repeats=1, gwas_repeats=2,
                  max_ld_pairs=20_000, min_group_size=10)


@pytest.fixture(scope="module")
def report(sim_cohort, tmp_path_factory):
    train, holdout = split_train_holdout(sim_cohort, holdout_fraction=0.25, seed=3)
    syn = {"vanilla": independent_snps_generator(train, n=120, seed=1), "guided": copy_generator(train, seed=2)}
    syn["guided"].meta["privacy"] = {"epsilon": 2.5, "delta": 1e-6, "mechanisms": {"dp_sgd": 2.0}}
    results = evaluate(train, holdout, syn, config=FAST, seed=0)
    prefix = str(tmp_path_factory.mktemp("report") / "sub" / "ev")
    paths = write_report(results, prefix, title="test report")
    return results, prefix, paths


def test_writes_json_and_html(report):
    results, prefix, paths = report
    assert paths == [f"{prefix}.json", f"{prefix}.html"]
    folder = os.path.dirname(prefix)
    assert sorted(os.listdir(folder)) == ["ev.html", "ev.json"]  # no temporary leftovers
    data = json.loads(Path(paths[0]).read_text())
    assert data["summary"]["guided"]["identical_to_train"] == results["summary"]["guided"]["identical_to_train"]
    assert "_private" not in data
    assert len(data["plot_data"]["af"]["vanilla"]) == results["inputs"]["train"]["n_variants"]


def test_html_is_self_contained_and_has_every_plot(report):
    _, _, paths = report
    text = Path(paths[1]).read_text()
    assert not re.search(r"""(?:src|href)\s*=\s*["'](?:https?:)?//""", text), "external resource in the report"
    assert "<link" not in text and "@import" not in text
    for name in PLOTS:
        assert f'data-plot="{name}"' in text, name
    assert len(re.findall(r'<img [^>]*src="data:image/png;base64,', text)) == len(PLOTS)
    # one-screen summary first, with a light per metric and the ceiling column
    head = text[: text.index("id='fidelity'")]
    assert "Real holdout (ceiling)" in head and head.count('class="dot"') >= 10
    assert "2.500" in text  # the epsilon of the guided set
    for sample_id in ("sim_000001", "copy_0"):
        assert sample_id not in text  # no per-person rows


def test_ld_heatmap_shows_every_set(report):
    results, _, _ = report
    hm = results["plot_data"]["ld_heatmap"]
    assert {"train", "holdout", "vanilla", "guided"} <= set(hm)
    assert hm["train"].shape == (len(hm["ids"]), len(hm["ids"]))


def test_failed_write_leaves_nothing(report, tmp_path, monkeypatch):
    results, _, _ = report
    import genosynth.evaluate.report as rep

    def boom(*a, **k):
        raise RuntimeError("disk full")

    monkeypatch.setattr(rep, "render_html", boom)
    with pytest.raises(RuntimeError):
        write_report(results, str(tmp_path / "x"))
    assert os.listdir(tmp_path) == []


def _screenshot_module():
    spec = importlib.util.spec_from_file_location("screenshot_report", REPO / "scripts" / "screenshot_report.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_report_renders_in_headless_chromium(report, tmp_path):
    shot = _screenshot_module()
    if shot.find_browser() is None:
        pytest.skip("headless Chromium not installed (apt-get install -y chromium)")
    _, _, paths = report
    out = shot.render(paths[1], str(tmp_path / "shot.png"), height=6000)
    assert out["external_references"] == 0
    assert out["rendered_images"] == out["expected_images"] == len(PLOTS)
    assert out["png_bytes"] > 50_000


def _dom_at(html_path: str, exe: str, *, width: int, height: int) -> str:
    """The page's DOM after load in a headless Chromium window of ``width`` x ``height``."""
    url = "file://" + os.path.abspath(html_path)
    flags = [exe, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars", "--no-first-run",
             "--disable-dev-shm-usage", "--virtual-time-budget=5000", f"--window-size={width},{height}"]
    return subprocess.run([*flags, "--dump-dom", url], check=True, timeout=120, capture_output=True,
                          text=True).stdout


def test_verdict_box_is_in_the_first_screen_in_chromium(report, tmp_path):
    shot = _screenshot_module()
    exe = shot.find_browser()
    if exe is None:
        pytest.skip("headless Chromium not installed (apt-get install -y chromium)")
    _, _, paths = report
    dom = _dom_at(paths[1], exe, width=1280, height=800)
    # the report's load script writes the box's page coordinates and the viewport it was laid out in
    box = [float(x) for x in re.search(r'data-verdict-box="([^"]+)"', dom).group(1).split(",")]
    view = [float(x) for x in re.search(r'data-viewport="([^"]+)"', dom).group(1).split(",")]
    top, bottom, left, right = box
    assert 1200 <= view[0] <= 1280 and 600 <= view[1] <= 800
    assert 0 <= top < bottom <= view[1], f"verdict box {box} not within the first screen {view}"
    assert 0 <= left < right <= view[0]
    assert bottom - top > 100  # a box, not an empty element
    out = shot.render(paths[1], str(tmp_path / "first_screen.png"), height=800)
    assert out["png_bytes"] > 10_000


def test_verdict_box_comes_first_and_says_what_and_how_private(report):
    _, _, paths = report
    text = Path(paths[1]).read_text()
    start = text.index("<section id='verdict'>")
    assert start < text.index("id='summary'") and start < text.index("<figure")
    box = text[start:text.index("</section>", start)]
    assert "simulated" in box and "msprime" in box  # the real cohort of sim_cohort is simulated
    assert "120 people \u00d7 300 SNPs" in box  # vanilla
    assert "no formal DP guarantee" in box  # vanilla has no privacy record
    assert "\u03b5 = 2.5" in box and "dp_sgd" in box  # guided's record
    assert "MIA AUC" in box and "Identical people" in box
    assert "drawn to match the holdout" in box
    data = json.loads(Path(paths[0]).read_text())
    assert data["verdict"]["guided"]["privacy"]["epsilon"] == 2.5
    assert data["verdict"]["vanilla"]["privacy"]["formal_dp"] is False


def test_unknown_origin_is_said_honestly(report):
    results, _, _ = report
    unknown = {**results, "inputs": {**results["inputs"],
                                     "train": {**results["inputs"]["train"],
                                               "origin": {"kind": "unknown", "detail": "not recorded"}}}}
    html_text = render_html(unknown)
    box = html_text[html_text.index("<section id='verdict'>"):html_text.index("</section>")]
    assert ">unknown</span>" in box


def test_report_states_matched_sizes_and_lambda_columns(report):
    _, _, paths = report
    text = Path(paths[1]).read_text()
    assert "People used" in text and "matched" in text
    assert "\u03bb_GC set (matched)" in text and "not matched" in text
    assert "LD strength by distance" in text
    assert "realism gap" in text  # what AATS above 0.5 means
    assert re.search(r"PC1 \(\d+\.\d % of variance, real train\)", text)  # PCA axes (the caption repeats them)


def test_manhattan_axis_is_in_mb_per_chromosome():
    chrom = np.array(["1"] * 4 + ["2"] * 3)
    pos = np.array([1_000_000, 1_500_000, 2_000_000, 3_000_000, 500_000, 800_000, 1_200_000], dtype=float)
    xs, mb_ticks, centres = _genome_x(chrom, pos)
    assert [c[1] for c in centres] == ["1", "2"]
    labels = [t[1] for t in mb_ticks]
    assert "1" in labels and "3" in labels  # chromosome 1 spans 1-3 Mb
    for x, label in mb_ticks:  # each tick sits where that Mb position is drawn
        if x < xs[4]:
            assert x == pytest.approx(float(label) * 1e6 - 1_000_000)
    assert xs[4] > xs[3]  # chromosome 2 after chromosome 1
    many = np.repeat([str(k) for k in range(1, 23)], 2)
    _, mb_many, centres_many = _genome_x(many, np.tile([1e6, 2e6], 22))
    assert mb_many == [] and len(centres_many) == 22  # too many chromosomes for Mb ticks: names only


def test_tstr_axis_is_zoomed_to_the_data():
    lo, hi = _zoom([0.980, 0.983, 0.990, 0.977])
    assert 0.9 < lo < 0.977 and 0.990 < hi < 1.05
    assert _zoom([]) == (0.0, 1.0)
