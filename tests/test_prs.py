"""Tests of genosynth.prs: AUC, L2 logistic, PRS transfer (TSTR vs TRTR) and causal-SNP recovery."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
from scipy import special

from genosynth.cohort import Cohort, make_samples, make_variants
from genosynth.errors import InputError
from genosynth.prs import auc, causal_recovery, fit_l2_logistic, prs_transfer, tstr_trtr

CAUSAL = (2, 9, 14, 21, 33)


def make_cohort(n, *, seed, v=40, effect=0.7):
    """Independent SNPs; logistic trait on CAUSAL with fixed allele frequencies across calls."""
    freq = np.random.default_rng(123).uniform(0.15, 0.5, size=v)
    rng = np.random.default_rng(seed)
    g = rng.binomial(2, freq, size=(n, v)).astype(np.int8)
    eta = -0.8 + effect * (g[:, list(CAUSAL)] - 2 * freq[list(CAUSAL)]).sum(axis=1)
    y = (rng.random(n) < special.expit(eta)).astype(float)
    variants = make_variants(chrom=["1"] * v, pos=(np.arange(v) + 1) * 1_000_000, ref=["C"] * v, alt=["T"] * v)
    return Cohort(g, variants, make_samples([f"s{seed}_{i}" for i in range(n)], phenotype=y), phased=False)


@pytest.fixture(scope="module")
def cohorts():
    return make_cohort(1500, seed=1), make_cohort(1000, seed=2), make_cohort(1500, seed=3)


def permuted(cohort, seed=0):
    """Same genotypes, phenotype shuffled: a 'generator' that keeps no genotype-trait link."""
    samples = cohort.samples.copy()
    samples["phenotype"] = np.random.default_rng(seed).permutation(samples["phenotype"].to_numpy())
    return dataclasses.replace(cohort, samples=samples)


def test_auc_matches_the_mann_whitney_definition_with_ties():
    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, 300)
    s = rng.integers(0, 5, 300).astype(float) + y
    pairs = (s[y == 1][:, None] > s[y == 0][None, :]).mean() + 0.5 * (s[y == 1][:, None] == s[y == 0][None, :]).mean()
    assert auc(y, s) == pytest.approx(pairs)
    assert auc(y, np.zeros(300)) == 0.5
    assert auc(y, -s) == pytest.approx(1 - pairs)


def test_fit_l2_logistic_matches_scikit_learn():
    from sklearn.linear_model import LogisticRegression

    rng = np.random.default_rng(1)
    x = rng.standard_normal((400, 12))
    y = (rng.random(400) < special.expit(x[:, 0] - 0.5 * x[:, 3])).astype(float)
    for C in (0.01, 1.0):
        ref = LogisticRegression(C=C, tol=1e-10, max_iter=10_000).fit(x, y)
        b = fit_l2_logistic(x, y, C=C)
        np.testing.assert_allclose(b[1:], ref.coef_.ravel(), atol=1e-6)
        assert b[0] == pytest.approx(ref.intercept_[0], abs=1e-6)


@pytest.mark.parametrize("method", ["logistic_l2", "clumped_beta"])
def test_copy_generator_has_tstr_equal_to_trtr(cohorts, method):
    train, test, _ = cohorts
    res = tstr_trtr(train, test, train, method=method, C=0.01)
    assert res["tstr"]["auc"] == res["trtr"]["auc"] and res["gap"] == 0.0
    assert res["trtr"]["auc"] > 0.7
    assert res["trtr"]["n_test"] == 1000 and res["trtr"]["n_snps"] == 40


def test_independent_real_cohort_is_close_and_a_broken_generator_is_not(cohorts):
    train, test, other = cohorts
    close = tstr_trtr(train, test, other, method="logistic_l2", C=0.01)
    assert abs(close["gap"]) < 0.03
    broken = tstr_trtr(train, test, permuted(train), method="logistic_l2", C=0.01)
    assert abs(broken["tstr"]["auc"] - 0.5) < 0.07 and broken["gap"] > 0.15


def test_clumped_beta_uses_significant_snps_only(cohorts):
    train, test, _ = cohorts
    res = prs_transfer(train, test, method="clumped_beta", p_threshold=1e-6)
    assert 3 <= res["n_snps_used"] <= 8
    none = prs_transfer(permuted(train), test, method="clumped_beta", p_threshold=1e-12)
    assert none["n_snps_used"] == 0 and none["auc"] == 0.5


def test_snps_select_predictors_by_id_or_index(cohorts):
    train, test, _ = cohorts
    ids = train.variants["id"].to_numpy()[list(CAUSAL)]
    by_id = prs_transfer(train, test, snps=list(ids), C=0.1)
    by_index = prs_transfer(train, test, snps=list(CAUSAL), C=0.1)
    assert by_id["auc"] == by_index["auc"] and by_id["n_snps"] == 5
    noise_only = prs_transfer(train, test, snps=[0, 1, 3], C=0.1)
    assert noise_only["auc"] < by_id["auc"] - 0.1


def test_cross_validated_penalty_is_chosen_on_the_training_cohort(cohorts):
    train, test, _ = cohorts
    a = prs_transfer(train, test, seed=5)
    b = prs_transfer(train, test, seed=5)
    assert a == b and a["C"] in (1e-4, 1e-3, 1e-2, 1e-1)


def test_missing_variants_are_named(cohorts):
    train, test, _ = cohorts
    fewer = test.subset(variants=np.arange(30))
    with pytest.raises(InputError, match="lacks 10 of the 40 SNPs"):
        prs_transfer(train, fewer, C=0.1)
    with pytest.raises(InputError, match="method must be"):
        prs_transfer(train, test, method="bayes")


def test_causal_recovery(cohorts):
    train, _, other = cohorts
    truth = {"causal": [{"id": i} for i in train.variants["id"].to_numpy()[list(CAUSAL)]]}
    same = causal_recovery(train, train, truth, alpha=1e-4)
    assert same["recovery"] == 1.0 and same["found_real"] == same["found_synthetic"]
    assert len(same["found_real"]) >= 3 and same["sign_agreement"] == 1.0
    indep = causal_recovery(train, other, truth, alpha=1e-4)
    assert indep["recovery"] >= 0.6
    broken = causal_recovery(train, permuted(train), truth, alpha=1e-4)
    assert broken["recovery"] == 0.0 and broken["found_synthetic"] == []
    bonf = causal_recovery(train, train, list(truth_id["id"] for truth_id in truth["causal"]), alpha="bonferroni")
    assert bonf["alpha_real"] == pytest.approx(0.05 / 40)
    rep = causal_recovery(train, other, truth, alpha=1e-4, alpha_synthetic="replication")
    assert rep["alpha_synthetic"] == pytest.approx(0.05 / len(rep["found_real"]))
    assert rep["recovery"] >= indep["recovery"]  # a looser threshold in the synthetic GWAS finds at least as many
    with pytest.raises(InputError, match="lacks"):
        causal_recovery(train, other.subset(variants=[0, 1]), truth)
    with pytest.raises(InputError, match="replication"):
        causal_recovery(train, other, truth, alpha="replication")
