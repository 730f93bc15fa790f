"""Tests of genosynth.stats.association: logistic IRLS, complete-case missing genotypes, codings, PCs, LD clumping."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import optimize, special, stats

from genosynth.cohort import make_variants
from genosynth.errors import InputError
from genosynth.stats.association import binary_phenotype, encode, genotype_pcs, gwas, ld_clump, logistic_gwas
from _testlib import toy



def reference_fit(x, y, c):
    """Unpenalised logistic MLE of y on [1, c, x] by BFGS; (beta_x, se_x) from the exact Hessian."""
    X = np.column_stack([np.ones(len(y)), c, x]) if c is not None else np.column_stack([np.ones(len(y)), x])

    def nll(b):
        eta = X @ b
        return np.sum(np.logaddexp(0, eta) - y * eta)

    def grad(b):
        return X.T @ (special.expit(X @ b) - y)

    b = optimize.minimize(nll, np.zeros(X.shape[1]), jac=grad, method="BFGS", options={"gtol": 1e-10}).x
    p = special.expit(X @ b)
    cov = np.linalg.inv(X.T @ (X * (p * (1 - p))[:, None]))
    return b[-1], math.sqrt(cov[-1, -1])


def test_logistic_matches_direct_maximum_likelihood_with_covariates():
    c = toy(seed=1)
    g, y = c.genotypes(), c.samples["phenotype"].to_numpy()
    cov = np.random.default_rng(2).standard_normal((c.n_samples, 2))
    res = logistic_gwas(g, y, covariates=cov)
    for j in (0, 3, 17, 30):
        beta, se = reference_fit(g[:, j].astype(float), y, cov)
        assert res["beta"][j] == pytest.approx(beta, abs=1e-6)
        assert res["se"][j] == pytest.approx(se, rel=1e-6)
    assert res["converged"].all()
    assert res["p"][3] < 1e-8 and res["p"][17] < 1e-8
    np.testing.assert_allclose(res["p"], 2 * stats.norm.sf(np.abs(res["beta"] / res["se"])))
    np.testing.assert_allclose(10 ** -res["neg_log10_p"], res["p"], rtol=1e-10)


def test_missing_genotypes_are_complete_case_per_snp():
    c = toy(seed=3, missing=0.05)
    g, y = c.genotypes(), c.samples["phenotype"].to_numpy()
    res = logistic_gwas(g, y)
    for j in (3, 5):
        ok = g[:, j] >= 0
        beta, se = reference_fit(g[ok, j].astype(float), y[ok], None)
        assert res["beta"][j] == pytest.approx(beta, abs=1e-6)
        assert res["se"][j] == pytest.approx(se, rel=1e-6)
        assert res["obs_ct"][j] == ok.sum()


def test_dominant_coding_tests_carriers():
    c = toy(seed=4)
    g, y = c.genotypes(), c.samples["phenotype"].to_numpy()
    dom = logistic_gwas(g, y, model="dominant")
    add_of_carrier = logistic_gwas(np.minimum(g, 1).astype(np.int8), y, model="additive")
    np.testing.assert_allclose(dom["beta"], add_of_carrier["beta"], rtol=1e-9)
    assert np.nanmax(encode(g, "dominant")) == 1.0


def test_monomorphic_and_separating_snps_get_no_test():
    c = toy(seed=5)
    g, y = c.genotypes().copy(), c.samples["phenotype"].to_numpy()
    g[:, 0] = 1  # monomorphic
    g[:, 1] = (y * 2).astype(np.int8)  # perfectly separates cases and controls
    res = logistic_gwas(g, y)
    assert not res["converged"][0] and not res["converged"][1]
    assert np.isnan(res["p"][:2]).all()
    assert res["converged"][2:].all()


def test_null_p_values_are_uniform():
    rng = np.random.default_rng(6)
    g = rng.binomial(2, rng.uniform(0.1, 0.5, 400), size=(800, 400)).astype(np.int8)
    y = (rng.random(800) < 0.3).astype(float)
    p = logistic_gwas(g, y)["p"]
    assert stats.kstest(p, "uniform").pvalue > 1e-3
    assert 0.02 < np.mean(p < 0.05) < 0.09


def test_covariates_that_separate_the_trait_are_refused():
    c = toy(seed=7)
    y = c.samples["phenotype"].to_numpy()
    with pytest.raises(InputError, match="drop --pcs"):
        logistic_gwas(c.genotypes(), y, covariates=(y - 0.5)[:, None] * 10)


def test_binary_phenotype_codings():
    c = toy(seed=8)
    y = c.samples["phenotype"].to_numpy()
    c.samples["plink"] = y + 1
    np.testing.assert_array_equal(binary_phenotype(c, "plink"), y)
    c.samples["quant"] = np.linspace(0, 1, c.n_samples)
    with pytest.raises(InputError, match="not a binary trait"):
        binary_phenotype(c, "quant")
    with pytest.raises(InputError, match="no column"):
        binary_phenotype(c, "nope")
    c.samples["allcase"] = 1.0
    with pytest.raises(InputError, match="600 cases and 0 controls"):
        binary_phenotype(c, "allcase")


def test_genotype_pcs_capture_population_structure():
    rng = np.random.default_rng(9)
    pop = np.repeat([0, 1], 150)
    freq = np.vstack([rng.uniform(0.05, 0.95, 300), rng.uniform(0.05, 0.95, 300)])  # (2, V)
    g = rng.binomial(2, freq[pop]).astype(np.int8)
    pcs = genotype_pcs(g, 3, seed=0)
    assert pcs.shape == (300, 3)
    np.testing.assert_allclose(pcs.mean(axis=0), 0, atol=1e-9)
    np.testing.assert_allclose(pcs.std(axis=0), 1, atol=1e-9)
    assert abs(np.corrcoef(pcs[:, 0], pop)[0, 1]) > 0.99
    np.testing.assert_allclose(genotype_pcs(g, 3, seed=0), pcs)  # deterministic


def test_ld_clump_removes_correlated_neighbours_only_within_the_window():
    rng = np.random.default_rng(10)
    base = rng.binomial(2, 0.4, size=(500, 1)).astype(np.int8)
    indep = rng.binomial(2, 0.4, size=(500, 2)).astype(np.int8)
    # 0,1: identical at 10 kb apart; 2: identical copy on another chromosome; 3: identical but 400 kb away;
    # 4: independent neighbour
    g = np.hstack([base, base, base, base, indep[:, :1]])
    variants = make_variants(chrom=["1", "1", "2", "1", "1"], pos=[100_000, 110_000, 100_000, 500_000, 105_000],
                             ref=["A"] * 5, alt=["G"] * 5)
    kept = ld_clump(g, variants, np.array([0, 1, 2, 3, 4]), r2=0.2, kb=250)
    assert kept.tolist() == [0, 2, 3, 4]
    assert ld_clump(g, variants, np.array([1, 0, 4]), r2=0.2, kb=250).tolist() == [1, 4]
    assert ld_clump(g, variants, np.array([0, 1, 2, 3, 4]), r2=0.2, kb=250, max_index=2).tolist() == [0, 2]


def test_ld_clump_threshold_is_on_r_squared():
    rng = np.random.default_rng(11)
    a = rng.standard_normal(4000)
    b = 0.6 * a + 0.8 * rng.standard_normal(4000)  # r ~ 0.6, r^2 ~ 0.36
    g = np.column_stack([(a > 0).astype(np.int8) + (a > 1), (b > 0).astype(np.int8) + (b > 1)]).astype(np.int8)
    r2 = np.corrcoef(g.T)[0, 1] ** 2
    variants = make_variants(chrom=["1", "1"], pos=[1000, 2000], ref=["A", "A"], alt=["G", "G"])
    assert len(ld_clump(g, variants, np.array([0, 1]), r2=r2 - 0.02)) == 1
    assert len(ld_clump(g, variants, np.array([0, 1]), r2=r2 + 0.02)) == 2


def test_gwas_on_simulated_cohort_finds_causal_snps():
    from genosynth.simulation import PhenotypeSpec, simulate_cohort

    c = simulate_cohort(n_samples=1200, sequence_length=600_000, seed=5,
                        phenotype=PhenotypeSpec(n_causal=5, heritability=0.6))
    table = gwas(c, pcs=2)
    causal = [row["index"] for row in c.meta["truth"]["causal"]]
    assert table["p"].to_numpy()[causal].min() < 1e-6
    assert list(table.columns[:6]) == ["chrom", "pos", "id", "ref", "alt", "a1"]
    assert (table["a1"] == table["alt"]).all()
