"""The JSON and HTML report: content, self-containment, atomic writing, rendering in Chromium."""

from __future__ import annotations

import importlib.util
import json
import os
import re
from pathlib import Path

import pytest

from genosynth.evaluate import EvalConfig, copy_generator, evaluate, independent_snps_generator, split_train_holdout
from genosynth.evaluate.report import PLOTS, write_report

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
