"""evaluate() end to end on the small msprime cohort: structure of the results, labels, checks."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest

from genosynth.cohort import make_samples
from genosynth.errors import InputError
from genosynth.evaluate import (EvalConfig, copy_generator, evaluate, independent_snps_generator,
                                split_train_holdout, summary)
from genosynth.evaluate.report import to_json_ready

FAST = EvalConfig(classifiers=("lr",), mia_repeats=3, aats_repeats=2, gwas_repeats=2, max_ld_pairs=20_000,
                  min_group_size=10)


@pytest.fixture(scope="module")
def split(sim_cohort):
    return split_train_holdout(sim_cohort, holdout_fraction=0.25, seed=3)


@pytest.fixture(scope="module")
def results(split):
    train, holdout = split
    syn = {"indep": independent_snps_generator(train, n=150, seed=4), "copy": copy_generator(train, seed=5)}
    syn["indep"].meta["privacy"] = {"epsilon": 3.0, "delta": 1e-6, "mechanisms": {"dp_sgd": 2.5}}
    return evaluate(train, holdout, syn, config=FAST, seed=7)


def test_results_are_json_serialisable_and_hold_no_per_person_values(results):
    text = json.dumps(to_json_ready(results), allow_nan=False)
    assert "_private" not in text and "pc_scores" not in text
    assert "_dcr_to_train" not in text


def test_sections_and_summary_keys(results):
    for section in ("fidelity", "structure", "gwas", "privacy", "summary", "lights", "labels", "config"):
        assert section in results
    s = summary(results, "indep")
    for key in ("af_r", "ld_r_near_within", "aats", "privacy_loss", "mia_auc", "tstr_super_pop_lr",
                "trtr_super_pop_lr", "gwas_overlap_top10", "identical_to_train", "epsilon"):
        assert key in s, key
    assert s["epsilon"] == 3.0
    assert summary(results)["af_r"] == summary(results, "indep")["af_r"]  # default: the first synthetic set
    assert set(results["summary"]) == {"holdout", "indep", "copy"}
    with pytest.raises(InputError, match="no set named"):
        summary(results, "nope")


def test_calibration_directions_on_simulated_data(results):
    ho, ind, cp = (summary(results, k) for k in ("holdout", "indep", "copy"))
    assert cp["identical_to_train"] == results["inputs"]["synthetic"]["copy"]["n_samples"]
    assert ho["identical_to_train"] == 0 and ind["identical_to_train"] == 0
    assert cp["mia_auc"] > 0.95 and abs(ho["mia_auc"] - 0.5) < 0.15
    assert cp["aats"] < 0.05 and cp["privacy_loss"] > 0.3
    # msprime LD is real LD: independent SNPs lose it within populations, the holdout keeps it
    assert ho["ld_r_near_within"] > 0.5 and ind["ld_r_near_within"] < 0.2
    assert ind["af_r"] > 0.97
    lights = {r["key"]: r["light"] for r in results["lights"]["indep"]}
    assert lights["ld_r_near_within"] == "red" and lights["af_r"] == "green"
    lights = {r["key"]: r["light"] for r in results["lights"]["copy"]}
    assert lights["identical_to_train"] == "red" and lights["mia_auc"] == "red"


def test_same_seed_same_figures(split, results):
    train, holdout = split
    syn = {"indep": independent_snps_generator(train, n=150, seed=4), "copy": copy_generator(train, seed=5)}
    syn["indep"].meta["privacy"] = {"epsilon": 3.0, "delta": 1e-6, "mechanisms": {"dp_sgd": 2.5}}
    again = evaluate(train, holdout, syn, config=FAST, seed=7, progress=True)  # the bar changes no figure
    assert again["summary"] == results["summary"]


def test_progress_bar_walks_the_five_sections(split, capsys):
    train, holdout = split
    evaluate(train, holdout, {"indep": independent_snps_generator(train, n=60, seed=4)}, config=FAST, seed=7,
             progress=True)
    err = capsys.readouterr().err
    assert "evaluate" in err and "5/5" in err and "privacy" in err


def test_variant_mismatch_names_the_fix(split):
    train, holdout = split
    other = holdout.subset(variants=np.arange(1, holdout.n_variants))
    with pytest.raises(InputError, match="convert --extract"):
        evaluate(train, holdout, other, config=FAST)
    flipped = dataclasses.replace(holdout, variants=holdout.variants.assign(alt="N"))
    with pytest.raises(InputError, match="ALT alleles"):
        evaluate(train, flipped, copy_generator(train), config=FAST)


def test_reserved_name_and_bad_synthetic(split):
    train, holdout = split
    with pytest.raises(InputError, match="reserved"):
        evaluate(train, holdout, {"holdout": train}, config=FAST)
    with pytest.raises(InputError, match="Cohort"):
        evaluate(train, holdout, [train], config=FAST)


def _unlabelled(c, **extra):
    samples = make_samples([f"s{k}" for k in range(c.n_samples)], **extra)
    return dataclasses.replace(c, samples=samples)


@pytest.fixture(scope="module")
def label_sources(split):
    """One evaluation of three differently labelled synthetic sets (keeps the suite fast)."""
    train, holdout = split
    tagged = copy_generator(train, seed=2)
    syn = {
        "unlabelled": _unlabelled(copy_generator(train, seed=1)),
        "tagged": _unlabelled(tagged, tag=list(tagged.labels("super_pop"))),
        "unphased": independent_snps_generator(train, n=57, seed=9).unphased(),
    }
    return evaluate(train, holdout, syn, config=FAST, seed=1)


def test_unlabelled_synthetic_is_pseudo_labelled_and_says_so(label_sources):
    res = label_sources
    assert res["labels"]["unlabelled"]["super_pop"]["source"] == "pseudo"
    assert any("pseudo-labels" in n and "unlabelled" in n for n in res["notes"])
    assert set(res["labels"]["unlabelled"]["super_pop"]["counts"]) <= {"AFR", "EUR", "EAS"}


def test_labels_from_hapt_tag_column(label_sources):
    res = label_sources
    assert res["labels"]["tagged"]["super_pop"]["source"] == "tag"
    assert res["labels"]["tagged"]["pop"]["source"] == "pseudo"
    assert res["labels"]["unphased"]["super_pop"]["source"] == "given"


def test_unphased_synthetic_of_other_size(label_sources):
    res = label_sources
    assert res["inputs"]["synthetic"]["unphased"]["n_samples"] == 57
    assert "identical_haplotypes_to_train" not in res["privacy"]["unphased"]
    assert res["privacy"]["unphased"]["aats_n_train"] == res["privacy"]["unphased"]["aats_n_holdout"] == 57
    assert res["privacy"]["tagged"]["identical_haplotypes_to_train"] == 2 * res["privacy"]["tagged"]["n"]


def test_gwas_on_a_phenotype_column(sim_pheno_cohort):
    train, holdout = split_train_holdout(sim_pheno_cohort, holdout_fraction=0.3, seed=1)
    cfg = dataclasses.replace(FAST, gwas_phenotype="phenotype")
    res = evaluate(train, holdout, copy_generator(train, seed=1), config=cfg, seed=2)
    d = res["gwas"]["design"]
    assert d["mode"] == "phenotype" and d["case"] == "1"
    assert res["gwas"]["sets"]["holdout"]["n_case"] == d["n_case_matched"] > 5
    assert "phenotype" not in res["structure"]["trtr"]


def test_gwas_groups_must_exist(split):
    train, holdout = split
    cfg = dataclasses.replace(FAST, gwas_groups=("AFR", "MARS"))
    with pytest.raises(InputError, match="--gwas-groups"):
        evaluate(train, holdout, copy_generator(train), config=cfg)


def test_config_from_dict_rejects_unknown_options():
    with pytest.raises(InputError, match="unknown evaluation option"):
        EvalConfig.from_dict({"n_pc": 3})
    assert EvalConfig.from_dict({"gwas_groups": ["A", "B"]}).gwas_groups == ("A", "B")


def test_without_any_labels_label_figures_are_skipped_and_said(split):
    train, holdout = split
    res = evaluate(_unlabelled(train), _unlabelled(holdout), _unlabelled(copy_generator(train, seed=1)),
                   config=FAST, seed=1)
    assert any("no usable 'super_pop' labels" in n for n in res["notes"])
    assert any("GWAS skipped" in n for n in res["notes"])
    assert res["structure"]["trtr"] == {} and res["gwas"]["design"] is None
    s = summary(res)
    assert s["ld_r_near_within"] is None and s["af_r"] > 0.99 and s["identical_to_train"] == train.n_samples
    assert {r["key"]: r["light"] for r in res["lights"]["synthetic"]}["ld_r_near_within"] == "grey"


# ---------------------------------------------------------------------------------- matched sample sizes
def test_matched_rows_draw_the_holdout_size_per_group_and_are_seeded():
    from genosynth.evaluate.core import matched_rows

    y_set = np.array(["A"] * 40 + ["B"] * 30 + ["C"] * 5, dtype=object)
    y_hold = np.array(["A"] * 10 + ["B"] * 8, dtype=object)
    rows, info = matched_rows(len(y_set), y_set, y_hold, len(y_hold), np.random.default_rng(1))
    assert info["matched"] and info["n_used"] == len(rows) == 18
    assert (y_set[rows] == "A").sum() == 10 and (y_set[rows] == "B").sum() == 8  # group C: not in the holdout
    assert np.all(np.diff(rows) > 0)
    again, _ = matched_rows(len(y_set), y_set, y_hold, len(y_hold), np.random.default_rng(1))
    assert np.array_equal(rows, again)
    # too few of a group: all of it is kept and the set is marked as not matched
    rows, info = matched_rows(len(y_set), y_set, np.array(["C"] * 9 + ["A"] * 3, dtype=object), 12,
                              np.random.default_rng(1))
    assert not info["matched"] and info["per_group"]["C"] == {"holdout": 9, "used": 5} and len(rows) == 8
    # no labels: a plain random draw of the holdout's size
    rows, info = matched_rows(75, None, None, 18, np.random.default_rng(2))
    assert len(rows) == 18 and info["matched"] and info["per_group"] == {}


def test_fidelity_of_a_larger_set_rests_on_the_holdouts_sizes(results, split):
    _, holdout = split
    m = results["fidelity"]["indep"]["matching"]
    assert m["matched"] and m["n_full"] == 150 and m["n_used"] == holdout.n_samples
    per = results["fidelity"]["indep"]["ld"]["near_within"]["per_group"]
    ceiling = results["fidelity"]["holdout"]["ld"]["near_within"]["per_group"]
    assert per and {g: v["n"] for g, v in per.items()} == {g: v["n"] for g, v in ceiling.items()}
    assert "matching" not in results["fidelity"]["holdout"]


def test_a_smaller_set_is_labelled_not_matched(label_sources):
    m = label_sources["fidelity"]["unphased"]["matching"]
    assert not m["matched"] and m["n_used"] <= 57 < m["n_holdout"]
    assert any(g["used"] < g["holdout"] for g in m["per_group"].values())
    assert label_sources["verdict"]["unphased"]["matched_sizes"] is False


def test_matching_can_be_turned_off(split):
    train, holdout = split
    cfg = dataclasses.replace(FAST, match_holdout_size=False, classifiers=("lr",))
    res = evaluate(train, holdout, independent_snps_generator(train, n=150, seed=4), config=cfg, seed=7)
    m = res["fidelity"]["synthetic"]["matching"]
    assert m["n_used"] == m["n_full"] == 150 and not m["matched"]


def test_lambda_gc_is_compared_at_matched_sizes(results):
    sets = results["gwas"]["sets"]
    ho, ind = sets["holdout"], sets["indep"]
    # indep has twice the holdout's people: its full-size lambda is inflated by the size alone
    assert ind["n_full"]["case"] > ho["n_full"]["case"]
    assert abs(ind["lambda_gc"] - ho["lambda_gc"]) < abs(ind["lambda_gc_full"] - ho["lambda_gc"])
    assert ho["lambda_gc_ref"] > 0 and ind["n_case"] == ho["n_case"]


def test_ld_strength_of_independent_snps_is_near_zero_and_of_the_holdout_near_one(results):
    ho = results["fidelity"]["holdout"]["ld"]["strength"]
    ind = results["fidelity"]["indep"]["ld"]["strength"]
    assert ho["basis"] == "within" and ho["worst_bin"] is not None
    assert 0.8 < ho["worst"] < 1.25 and ind["worst"] < 0.1
    lights = {r["key"]: r["light"] for r in results["lights"]["indep"]}
    assert lights["ld_strength_ratio"] == "red" and "dist_wasserstein_rel" in lights


# ---------------------------------------------------------------------------------- verdict
def test_verdict_in_results_names_origin_privacy_mia_and_identical_people(results, split):
    train, _ = split
    v = results["verdict"]
    assert set(v) == {"indep", "copy"}
    assert v["indep"]["real_cohort"]["kind"] == "simulated" and "msprime" in v["indep"]["real_cohort"]["detail"]
    assert v["indep"]["privacy"]["formal_dp"] and v["indep"]["privacy"]["epsilon"] == 3.0
    assert v["indep"]["privacy"]["mechanisms"] == ["dp_sgd"]
    assert v["copy"]["privacy"]["statement"] == "no formal DP guarantee"
    assert v["copy"]["identical_people"] == train.n_samples and v["copy"]["identical_light"] == "red"
    assert v["copy"]["mia_auc"] == summary(results, "copy")["mia_auc"] and v["copy"]["mia_light"] == "red"
    assert (v["indep"]["n_people"], v["indep"]["n_snps"]) == (150, train.n_variants)
    assert "verdict" in json.loads(json.dumps(to_json_ready(results)))


def test_origin_is_unknown_unless_recorded():
    from genosynth.evaluate.core import origin

    assert origin({"source": "/data/x.vcf.gz", "format": "vcf"})["kind"] == "unknown"
    assert origin({"simulation": {"model": "m", "seed": 3}})["kind"] == "simulated"
    assert origin({"origin": "real"})["kind"] == "real"
    assert origin({"synthetic": True, "seed": 4})["kind"] == "synthetic"
