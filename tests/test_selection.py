"""Tests of genosynth.stats.association and genosynth.selection: logistic IRLS, PCs, LD clumping,
SNP selection and its DP path (genosynth.privacy.releases)."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import special, stats

from genosynth.cohort import Cohort, make_variants
from genosynth.errors import InputError, PrivacyError
from genosynth.stats.association import association_scores
from genosynth.privacy.releases import dp_select, epsilon_per_step
from genosynth.selection import population_phenotype, select_snps
from _testlib import toy



# ------------------------------------------------------------------------- logistic regression


# ------------------------------------------------------------------------- PCs


# ------------------------------------------------------------------------- clumping


# ------------------------------------------------------------------------- selection
def test_select_snps_ranks_causal_first_and_writes_the_table():
    c = toy(seed=12)
    sel = select_snps(c, k=5, clump_r2=None, seed=1)
    assert len(sel.indices) == 5 and np.all(np.diff(sel.indices) > 0)
    assert set(sel.indices[sel.rank <= 2].tolist()) == {3, 17}
    assert sel.gwas["selected"].sum() == 5
    assert sel.gwas.loc[sel.gwas["rank"] == 1, "p"].iloc[0] == sel.gwas["p"].min()
    assert sel.privacy is None and sel.epsilon == 0.0 and sel.config["seed"] == 1
    few = select_snps(c, k=30, p_threshold=1e-4, seed=1)
    assert set(few.indices.tolist()) == {3, 17}
    assert any("only 2 SNPs" in n for n in few.notes)


def test_select_snps_clumps_a_duplicated_signal():
    c = toy(seed=13)
    g = np.hstack([c.alleles, c.alleles[:, [3]]])  # SNP 40 duplicates causal SNP 3, 1 kb away
    variants = make_variants(chrom=["1"] * 41, pos=list((np.arange(40) + 1) * 1_000_000) + [4_001_000],
                             ref=["A"] * 41, alt=["G"] * 41)
    c2 = Cohort(g, variants, c.samples, phased=False)
    picked = set(select_snps(c2, k=3, seed=0).indices.tolist())
    assert len(picked & {3, 40}) == 1 and 17 in picked
    assert {3, 40} <= set(select_snps(c2, k=3, clump_r2=None, seed=0).indices.tolist())


def test_population_phenotype():
    c = toy(seed=14)
    cc = population_phenotype(c, ["YRI"], ["EUR"])
    assert cc.n_samples == c.n_samples
    np.testing.assert_array_equal(cc.samples["phenotype"], (cc.labels("pop") == "YRI").astype(float))
    with pytest.raises(InputError, match="matches no sample"):
        population_phenotype(c, ["XXX"], ["CEU"])
    with pytest.raises(InputError, match="overlap"):
        population_phenotype(c, ["YRI"], ["AFR"])


# ------------------------------------------------------------------------- differential privacy
@settings(max_examples=60, deadline=None)
@given(seed=st.integers(0, 10_000), model=st.sampled_from(["additive", "dominant"]),
       stratified=st.booleans(), y_new=st.sampled_from([0.0, 1.0]))
def test_association_score_sensitivity_bound_holds(seed, model, stratified, y_new):
    """Adding one person changes every score by at most the stated sensitivity."""
    rng = np.random.default_rng(seed)
    n, v = int(rng.integers(3, 40)), 25
    g = rng.integers(-1, 3, size=(n + 1, v)).astype(np.int8)  # includes missing
    y = rng.integers(0, 2, size=n + 1).astype(float)
    y[-1] = y_new
    strata = rng.integers(0, 3, size=n + 1) if stratified else None
    s_small, delta = association_scores(g[:n], y[:n], model=model, strata=None if strata is None else strata[:n])
    s_big, _ = association_scores(g, y, model=model, strata=strata)
    assert delta == (2.0 if model == "additive" else 1.0)
    assert np.max(np.abs(s_big - s_small)) <= delta + 1e-9


def test_worst_case_sensitivity_is_attained():
    # n controls all with genotype 0 at a SNP; adding a case with genotype 2 moves the co-moment by 2n/(n+1)
    n = 999
    g = np.zeros((n + 1, 1), dtype=np.int8)
    g[-1] = 2
    y = np.zeros(n + 1)
    y[-1] = 1
    small, delta = association_scores(g[:n], y[:n])
    big, _ = association_scores(g, y)
    assert big[0] - small[0] == pytest.approx(delta * n / (n + 1))


def test_epsilon_per_step_composes_back_to_the_budget():
    eps0, acc, rho = epsilon_per_step(1.0, 0.0, 100)
    assert acc == "pure" and eps0 * 100 == pytest.approx(1.0)
    eps0, acc, rho = epsilon_per_step(1.0, 1e-6, 1024)
    assert acc == "zcdp" and rho == pytest.approx(1024 * eps0**2 / 8)
    assert rho + 2 * math.sqrt(rho * math.log(1e6)) == pytest.approx(1.0)
    assert eps0 > 1.0 / 1024


def test_dp_select_without_noise_is_plain_top_k():
    scores = np.random.default_rng(15).permutation(200).astype(float)
    chosen, priv = dp_select(scores, 10, sensitivity=2.0, epsilon=1e9, seed=0)
    assert sorted(chosen.tolist()) == sorted(np.argsort(-scores)[:10].tolist())
    peeled, _ = dp_select(scores, 10, sensitivity=2.0, epsilon=1e9, seed=0, exclude=lambda j: [])
    assert peeled.tolist() == np.argsort(-scores)[:10].tolist()


def test_dp_selection_is_charged_to_the_accountant():
    from genosynth.privacy import PrivacyAccountant

    scores = np.random.default_rng(19).random(500) * 100
    acc = PrivacyAccountant()
    chosen, priv = dp_select(scores, 50, sensitivity=2.0, epsilon=1.0, delta=1e-6, seed=0, accountant=acc)
    assert len(chosen) == 50 and len(set(chosen.tolist())) == 50
    assert priv["noise_multiplier"] == pytest.approx(2.0 / priv["epsilon_step"])
    # the accountant's RDP bound is at least as tight as the zCDP calibration that set the noise
    assert 0.3 < acc.get_epsilon(1e-6) <= 1.0 + 1e-9
    assert priv["accountant_epsilon"] == pytest.approx(acc.get_epsilon(1e-6))
    acc2 = PrivacyAccountant()
    dp_select(scores, 5, sensitivity=2.0, epsilon=1.0, delta=1e-6, seed=0, accountant=acc2,
              exclude=lambda j: [j + 1] if j + 1 < 500 else [])
    (event,) = acc2.state_dict()["events"]
    assert event["kind"] == "top_k" and event["k"] == 1 and event["count"] == 5


def test_dp_select_step_is_the_exponential_mechanism():
    """One step draws j with probability proportional to exp(eps * u_j / (2 * Delta))."""
    u = np.array([0.0, 1.0, 2.0])
    eps, delta_s, reps = 2.0, 1.0, 6000
    counts = np.zeros(3)
    rng = np.random.default_rng(16)
    for seed in rng.integers(0, 2**31, size=reps):
        counts[dp_select(u, 1, sensitivity=delta_s, epsilon=eps, seed=int(seed))[0][0]] += 1
    expected = special.softmax(eps * u / (2 * delta_s)) * reps
    assert stats.chisquare(counts, expected).pvalue > 1e-3


def test_select_snps_under_epsilon_is_private_and_useful():
    c = toy(n=3000, seed=17, effect=1.0)
    sel = select_snps(c, k=2, epsilon=20.0, seed=3, clump_r2=None, deterministic_noise=True)
    assert sel.gwas is None
    assert sel.privacy["epsilon"] == 20.0 and sel.privacy["steps"] == 2 and sel.epsilon == 20.0
    assert set(sel.indices.tolist()) == {3, 17}  # strong signal survives the noise
    noisy = [set(select_snps(c, k=2, epsilon=1e-3, seed=s, clump_r2=None, deterministic_noise=True).indices.tolist())
             == {3, 17}
             for s in range(20)]
    assert sum(noisy) < 5  # with almost no budget the choice is close to uniform
    note = select_snps(c, k=2, epsilon=1.0, seed=3)
    assert any("clumping skipped" in n for n in note.notes)
    clumped = select_snps(c, k=2, epsilon=20.0, seed=3, ld_reference=c)
    assert clumped.privacy["steps"] == 2 and not clumped.notes
    with pytest.raises(PrivacyError, match="--strata"):
        select_snps(c, k=2, epsilon=1.0, pcs=2)
    with pytest.raises(PrivacyError, match="p-threshold"):
        select_snps(c, k=2, epsilon=1.0, p_threshold=1e-5)
    strat = select_snps(c, k=2, epsilon=20.0, strata="super_pop", seed=3, clump_r2=None)
    assert "stratified by super_pop" in strat.privacy["score"]


def test_select_snps_dp_noise_is_secret_unless_asked_and_charged_to_the_accountant():
    from genosynth.privacy import PrivacyAccountant

    c = toy(n=800, v=200, seed=21, effect=0.0)  # no signal: the choice is the noise alone
    picks = {tuple(select_snps(c, k=5, epsilon=0.1, seed=3, clump_r2=None).indices.tolist()) for _ in range(3)}
    assert len(picks) > 1  # the same seed does not replay the DP noise
    same = [select_snps(c, k=5, epsilon=0.1, seed=3, clump_r2=None, deterministic_noise=True).indices.tolist()
            for _ in range(2)]
    assert same[0] == same[1]
    with pytest.raises(InputError, match="explicit seed"):
        select_snps(c, k=5, epsilon=0.1, clump_r2=None, deterministic_noise=True)
    acc = PrivacyAccountant()
    sel = select_snps(c, k=5, epsilon=0.1, delta=1e-6, seed=3, clump_r2=None, accountant=acc)
    assert sel.config["seed"] is None
    (event,) = acc.state_dict()["events"]
    assert event["kind"] == "top_k" and event["name"] == "snp_selection" and event["k"] == 5
    assert event == sel.privacy["accountant"]["events"][0]


def test_select_snps_validates_options():
    c = toy(seed=18)
    for kwargs, match in (({"k": 0}, "k must"), ({"model": "recessive"}, "model must"),
                          ({"clump_r2": 1.5}, "clump_r2"), ({"epsilon": -1.0}, "epsilon"),
                          ({"strata": "pop"}, "needs --epsilon")):
        with pytest.raises(InputError, match=match):
            select_snps(c, **kwargs)


def test_selection_enriches_causal_snps_on_the_shared_simulated_cohort(sim_pheno_cohort):
    c = sim_pheno_cohort
    causal = {row["index"] for row in c.meta["truth"]["causal"]}
    sel = select_snps(c, k=30, clump_r2=None, seed=0)
    chance = 30 * len(causal) / c.n_variants
    assert len(causal & set(sel.indices.tolist())) >= 3 * chance
