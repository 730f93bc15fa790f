"""Traffic lights and the verdict: beating the ceiling, LD strength, distance W1, AATS, privacy status."""

from __future__ import annotations

import pytest

from genosynth.evaluate.lights import RULES, LightRule, explain, judge, privacy_status, traffic_lights, verdict

RULE = {r.key: r for r in RULES}


@pytest.mark.parametrize("kind,value,ceiling", [("higher", 0.887, 0.755), ("lower", 0.0, 0.2)])
def test_beating_the_ceiling_by_more_than_the_tolerance_is_amber_and_explained(kind, value, ceiling):
    rule = LightRule("k", "k", "fidelity", kind, 0.02, 0.2)
    assert judge(rule, value, ceiling) == "amber"
    assert "better than the real holdout" in explain(rule, value, ceiling)


def test_beating_the_ceiling_within_the_tolerance_stays_green():
    rule = LightRule("k", "k", "fidelity", "higher", 0.02, 0.2)
    assert judge(rule, 0.76, 0.755) == "green"
    assert explain(rule, 0.76, 0.755, "green") is None


def test_issue_example_within_population_ld_above_the_ceiling_is_not_green():
    # issue 20: 0.887 for the synthetic set against a ceiling of 0.755 was green
    assert judge(RULE["ld_r_near_within"], 0.887, 0.755) == "amber"


def test_ld_strength_light_needs_a_ratio_near_one():
    rule = RULE["ld_strength_ratio"]
    weak = 0.36 / 0.43  # issue 20: short-range r^2 0.36 against 0.43 must not be green
    assert judge(rule, weak, 1.0) != "green"
    assert judge(rule, weak, 0.80) != "green"  # a noisy holdout cannot excuse it (slack capped)
    assert judge(rule, 0.97, 1.01) == "green"
    assert judge(rule, 1.02, 0.99) == "green"
    assert judge(rule, 0.3, 1.0) == "red"
    assert "weaker" in explain(rule, weak, 1.0, judge(rule, weak, 1.0))


def test_distance_w1_has_a_light():
    rows = traffic_lights({"dist_wasserstein_rel": 0.023}, {"dist_wasserstein_rel": 0.003})
    row = next(r for r in rows if r["key"] == "dist_wasserstein_rel")
    assert row["light"] == "amber" and row["section"] == "fidelity"
    rows = traffic_lights({"dist_wasserstein_rel": 0.004}, {"dist_wasserstein_rel": 0.003})
    assert next(r for r in rows if r["key"] == "dist_wasserstein_rel")["light"] == "green"


def test_aats_note_says_above_half_is_a_realism_gap_not_a_leak():
    rows = {r["key"]: r for r in traffic_lights({"aats": 0.6}, {"aats": 0.5})}
    assert rows["aats"]["light"] == "amber"
    assert "realism gap" in rows["aats"]["note"] and "not a privacy leak" in rows["aats"]["note"]
    rows = {r["key"]: r for r in traffic_lights({"aats": 0.2}, {"aats": 0.5})}
    assert "memorisation" in rows["aats"]["note"]
    rows = {r["key"]: r for r in traffic_lights({"aats": 0.51}, {"aats": 0.5})}
    assert rows["aats"]["light"] == "green" and rows["aats"]["note"] is None


def test_privacy_status_from_an_accountant_report_or_none():
    none = privacy_status(None)
    assert none == {"formal_dp": False, "epsilon": None, "delta": None, "mechanisms": [],
                    "statement": "no formal DP guarantee"}
    report = {"epsilon": 3.2, "delta": 1e-6, "breakdown": {"dp_sgd": 2.9, "label_frequencies": 0.4, "total": 3.2}}
    s = privacy_status(report)
    assert s["formal_dp"] and s["epsilon"] == 3.2 and s["mechanisms"] == ["dp_sgd", "label_frequencies"]
    assert "3.2" in s["statement"] and "1e-06" in s["statement"] and "dp_sgd" in s["statement"]
    assert privacy_status({"epsilon": 1.0, "mechanisms": {"stage1": 1.0}})["mechanisms"] == ["stage1"]


def test_verdict_counts_quality_lights_and_keeps_privacy_apart():
    flat = {"af_r": 0.99, "ld_r_near_within": 0.2, "identical_to_train": 0, "mia_auc": 0.5}
    ceiling = {"af_r": 0.99, "ld_r_near_within": 0.7, "identical_to_train": 0, "mia_auc": 0.5}
    rows = traffic_lights(flat, ceiling)
    described = {"n_samples": 10, "n_variants": 5, "source": None, "origin": {"kind": "synthetic", "detail": ""}}
    real = {"origin": {"kind": "unknown", "detail": ""}, "source": "/x/train.vcf.gz"}
    v = verdict("s", rows, described, real, None, {"matched": True})
    assert v["fidelity"]["green"] == 1 and v["fidelity"]["red"] == 1
    assert [f["key"] for f in v["fidelity"]["flagged"]] == ["ld_r_near_within"]
    assert v["privacy"]["statement"] == "no formal DP guarantee"
    assert v["mia_auc"] == 0.5 and v["identical_people"] == 0 and v["identical_light"] == "green"
    assert v["real_cohort"]["kind"] == "unknown" and v["matched_sizes"] is True
    assert v["source"].startswith("in memory")
