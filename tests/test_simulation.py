"""Tests of genosynth.simulation: the out-of-Africa cohort and the liability-threshold trait."""

from __future__ import annotations

import dataclasses
import doctest
import json
import re

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from scipy import stats

import genosynth.simulation as sim
from genosynth.cohort import Cohort, make_samples
from genosynth.errors import InputError
from genosynth.simulation import PhenotypeSpec, simulate_cohort, simulate_phenotype


# ---------------------------------------------------------------------------------- helpers
def r2_pairs(g: np.ndarray, i: np.ndarray, j: np.ndarray) -> np.ndarray:
    """Squared Pearson correlation of columns i[k], j[k] of g (rows = haplotypes)."""
    x = g.astype(float)
    x = (x - x.mean(0)) / x.std(0)
    return (x[:, i] * x[:, j]).mean(0) ** 2


def hudson_fst(p1: np.ndarray, p2: np.ndarray, n1: int, n2: int) -> float:
    """Hudson's Fst (ratio of averages), Bhatia et al. (2013) eq. 10; n = haplotype counts."""
    num = (p1 - p2) ** 2 - p1 * (1 - p1) / (n1 - 1) - p2 * (1 - p2) / (n2 - 1)
    den = p1 * (1 - p2) + p2 * (1 - p1)
    return float(num.sum() / den.sum())


def pop_freq(cohort: Cohort, pop: str) -> tuple[np.ndarray, int]:
    keep = cohort.labels("pop") == pop
    sub = cohort.subset(samples=keep)
    return sub.allele_frequencies(), 2 * sub.n_samples


# ---------------------------------------------------------------------------------- the cohort
def test_same_seed_same_cohort_other_seed_differs():
    kw = dict(n_samples=60, sequence_length=200_000, seed=5,
              phenotype=PhenotypeSpec(n_causal=5, heritability=0.5, prevalence=0.2))
    a, b = simulate_cohort(**kw), simulate_cohort(**kw)
    assert np.array_equal(a.alleles, b.alleles)
    assert a.variants.equals(b.variants)
    assert a.samples.equals(b.samples)
    timing = ("seconds", "seconds_ancestry")
    assert {k: v for k, v in a.meta["simulation"].items() if k not in timing} == \
        {k: v for k, v in b.meta["simulation"].items() if k not in timing}
    assert a.meta["truth"] == b.meta["truth"]
    c = simulate_cohort(**(kw | {"seed": 6}))
    assert c.alleles.shape != a.alleles.shape or not np.array_equal(c.alleles, a.alleles)


def test_seed_none_is_drawn_recorded_and_replays():
    a = simulate_cohort(n_samples=30, sequence_length=100_000, seed=None)
    seed = a.meta["simulation"]["seed"]
    assert isinstance(seed, int) and seed >= 0
    b = simulate_cohort(n_samples=30, sequence_length=100_000, seed=seed)
    assert np.array_equal(a.alleles, b.alleles) and a.variants.equals(b.variants)


def test_population_labels_counts_and_ids():
    c = simulate_cohort(n_samples=301, sequence_length=100_000, seed=3)
    assert c.phased and c.ploidy == 2 and c.alleles.shape[0] == 602
    pops = c.labels("pop")
    assert list(pops[:101]) == ["YRI"] * 101  # remainder goes to the first population
    assert dict(zip(*np.unique(pops, return_counts=True))) == {"YRI": 101, "CEU": 100, "CHB": 100}
    assert {(p, s) for p, s in zip(pops, c.labels("super_pop"))} == {("YRI", "AFR"), ("CEU", "EUR"),
                                                                        ("CHB", "EAS")}
    assert c.samples["sample"].iat[0] == "sim_000001" and c.samples["sample"].iat[-1] == "sim_000301"
    assert set(c.samples["sex"]) <= {1, 2}
    assert c.samples["phenotype"].isna().all()
    assert c.meta["simulation"]["samples_per_population"] == {"YRI": 101, "CEU": 100, "CHB": 100}


def test_population_subset_and_order():
    c = simulate_cohort(n_samples=20, sequence_length=100_000, populations=["CHB", "CEU"], seed=3)
    assert list(c.labels("pop")) == ["CHB"] * 10 + ["CEU"] * 10


def test_biallelic_snps_letters_positions_and_maf(sim_cohort):
    c = sim_cohort
    assert c.alleles.dtype == np.int8 and set(np.unique(c.alleles)) <= {0, 1}
    v = c.variants
    assert set(v["ref"]) <= set("ACGT") and set(v["alt"]) <= set("ACGT")
    assert (v["ref"] != v["alt"]).all()
    pos = v["pos"].to_numpy()
    assert (np.diff(pos) > 0).all() and pos.min() >= 1 and pos.max() <= 500_000
    assert all(re.fullmatch(r"1:\d+_[ACGT]_[ACGT]", i) for i in v["id"])
    assert list(v["id"]) == [f"1:{p}_{r}_{a}" for p, r, a in zip(v["pos"], v["ref"], v["alt"])]
    af = c.allele_frequencies()
    assert np.minimum(af, 1 - af).min() >= 0.05
    # Transitions outnumber transversions about 2:1.
    ti = np.mean([{r, a} in ({"A", "G"}, {"C", "T"}) for r, a in zip(v["ref"], v["alt"])])
    assert 0.5 < ti < 0.85
    assert np.allclose(v["cm"], v["pos"] * 1e-8 * 100)


def test_maf_zero_keeps_rare_and_maf_filter_counts():
    lo = simulate_cohort(n_samples=100, sequence_length=200_000, maf=0.0, seed=9)
    hi = simulate_cohort(n_samples=100, sequence_length=200_000, maf=0.1, seed=9)
    af = lo.allele_frequencies()
    maf = np.minimum(af, 1 - af)
    assert maf.min() > 0 and maf.min() < 0.01  # singletons are kept, monomorphic sites are not
    assert hi.n_variants == int((maf >= 0.1 - 1e-12).sum())  # same genealogy, same filter
    assert set(hi.variants["pos"]) <= set(lo.variants["pos"])


def test_max_snps_thins_evenly():
    full = simulate_cohort(n_samples=50, sequence_length=300_000, seed=4)
    thin = simulate_cohort(n_samples=50, sequence_length=300_000, seed=4, max_snps=40)
    assert thin.n_variants == 40 < full.n_variants
    assert thin.meta["simulation"]["snps_after_maf"] == full.n_variants
    rank = np.searchsorted(full.variants["pos"].to_numpy(), thin.variants["pos"].to_numpy())
    gaps = np.diff(rank)
    assert rank[0] == 0 and rank[-1] == full.n_variants - 1 and gaps.max() - gaps.min() <= 1
    assert np.array_equal(thin.alleles, full.alleles[:, rank])


@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(n=st.integers(1, 40), maf=st.sampled_from([0.0, 0.01, 0.1, 0.3]), max_snps=st.none() | st.integers(1, 30),
       pops=st.permutations(["YRI", "CEU", "CHB"]).flatmap(lambda p: st.integers(1, 3).map(lambda k: p[:k])),
       seed=st.integers(0, 2**31))
def test_invariants_for_any_options(n, maf, max_snps, pops, seed):
    c = simulate_cohort(n_samples=n, sequence_length=20_000, maf=maf, max_snps=max_snps, populations=pops,
                        seed=seed)
    assert c.alleles.shape == (2 * n, c.n_variants) and c.n_samples == n
    assert max_snps is None or c.n_variants <= max_snps
    assert set(c.labels("pop")) <= set(pops) and list(c.labels("pop")) == sorted(
        c.labels("pop"), key=list(pops).index)
    if c.n_variants:
        af = c.allele_frequencies()
        assert (np.minimum(af, 1 - af) >= maf - 1e-12).all() and (af > 0).all() and (af < 1).all()
        assert (np.diff(c.variants["pos"]) > 0).all()


def test_ref_allele_choice_only_recodes():
    a = simulate_cohort(n_samples=60, sequence_length=200_000, seed=8, ref_allele="reference_haplotype")
    b = simulate_cohort(n_samples=60, sequence_length=200_000, seed=8, ref_allele="ancestral")
    assert np.array_equal(a.variants["pos"], b.variants["pos"])
    flipped = (a.alleles != b.alleles)  # (2N, V)
    per_site = flipped.mean(axis=0)
    assert set(np.unique(per_site)) <= {0.0, 1.0}  # a site is either recoded entirely or not at all
    assert 0 < per_site.mean() < 1
    # Where recoded, REF/ALT letters swap.
    sw = per_site == 1
    assert (a.variants["ref"][sw].to_numpy() == b.variants["alt"][sw].to_numpy()).all()
    # With a reference haplotype, ALT is the major allele at some SNPs (as in real data).
    assert (a.allele_frequencies() > 0.5).any()


def test_ld_decays_with_distance():
    c = simulate_cohort(n_samples=300, sequence_length=5_000_000, seed=21, max_snps=600,
                        populations=("CEU",))
    g = c.alleles  # (2N, V)
    pos = c.variants["pos"].to_numpy()
    v = np.arange(c.n_variants)
    near = r2_pairs(g, v[:-1], v[1:]).mean()
    rng = np.random.default_rng(0)
    i, j = rng.integers(0, c.n_variants, (2, 20_000))
    far = np.abs(pos[i] - pos[j]) > 2_000_000
    far_r2 = r2_pairs(g, i[far], j[far]).mean()
    assert far.sum() > 1000
    assert near > 4 * far_r2, (near, far_r2)
    assert far_r2 < 0.01


def test_population_differentiation(sim_cohort):
    p_yri, n_yri = pop_freq(sim_cohort, "YRI")
    p_ceu, n_ceu = pop_freq(sim_cohort, "CEU")
    p_chb, n_chb = pop_freq(sim_cohort, "CHB")
    fst_yri_chb = hudson_fst(p_yri, p_chb, n_yri, n_chb)
    fst_ceu_chb = hudson_fst(p_ceu, p_chb, n_ceu, n_chb)
    assert fst_yri_chb > 0.08, fst_yri_chb
    assert fst_ceu_chb > 0.03, fst_ceu_chb
    # A random split of one population shows none.
    yri = sim_cohort.subset(samples=np.flatnonzero(sim_cohort.labels("pop") == "YRI"))
    half = yri.n_samples // 2
    fa = yri.subset(samples=np.arange(half)).allele_frequencies()
    fb = yri.subset(samples=np.arange(half, yri.n_samples)).allele_frequencies()
    assert abs(hudson_fst(fa, fb, 2 * half, 2 * (yri.n_samples - half))) < 0.01


def test_dense_region_of_1500_people():
    c = simulate_cohort(n_samples=1500, sequence_length=2_000_000, seed=1)
    assert c.n_variants >= 2000
    assert c.meta["simulation"]["seconds"] < 30


def test_meta_is_provenance_and_json(sim_cohort):
    s = sim_cohort.meta["simulation"]
    assert s["seed"] == 11 and s["model"] == "OutOfAfrica_3G09" and s["n_samples"] == 300
    assert s["model_parameters"]["N_A"] == 7300 and s["snps"] == sim_cohort.n_variants
    json.dumps(sim_cohort.meta)


def test_demography_is_valid_and_matches_published_sizes():
    d = sim.out_of_africa_demography()
    d.validate()
    assert [p.name for p in d.populations][:3] == ["YRI", "CEU", "CHB"]
    p = sim.OutOfAfricaParameters()
    t = p.T_EU_AS_years / p.generation_time
    assert d["CEU"].initial_size == pytest.approx(p.N_EU0 * np.exp(p.r_EU * t))
    assert d["CHB"].initial_size == pytest.approx(p.N_AS0 * np.exp(p.r_AS * t))
    splits = sorted((e.time, e.ancestral) for e in d.events if hasattr(e, "ancestral"))
    assert splits == [(pytest.approx(848), "OOA"), (pytest.approx(5600), "AMH"), (pytest.approx(8800), "ANC")]


def test_recent_expansion_grows_only_the_last_generations():
    p = sim.OutOfAfricaParameters()
    t_g = p.T_G_years / p.generation_time
    base, grown = sim.out_of_africa_demography(), sim.out_of_africa_demography(recent_expansion=True)
    grown.validate()
    times = [0.0, t_g / 2, t_g, t_g + 1, 500.0, 2000.0]
    a = base.debug().population_size_trajectory(times)[:, :3]  # (times, YRI/CEU/CHB)
    b = grown.debug().population_size_trajectory(times)[:, :3]
    np.testing.assert_allclose(b[2:], a[2:], rtol=1e-9)  # from the onset back: the published model
    rates = np.array([p.r_AF_recent, p.r_EU_recent, p.r_AS_recent])
    np.testing.assert_allclose(b[0], a[2] * np.exp(rates * t_g), rtol=1e-9)
    assert (b[0] > 10 * a[0]).all()  # hundreds of thousands today instead of tens of thousands


def test_recent_expansion_removes_cryptic_relatives():
    """Without the expansion a sample of 600 is a large share of the model's populations: many
    haplotypes have an exact copy in the sample (cryptic relatives). With it, few do."""
    def copied(c):  # fraction of haplotypes equal to another haplotype of the cohort
        _, inverse, counts = np.unique(c.alleles, axis=0, return_inverse=True, return_counts=True)
        return float((counts[inverse.ravel()] > 1).mean())

    kw = dict(n_samples=600, sequence_length=1_000_000, seed=1, populations=("YRI", "CEU"))
    base, grown = simulate_cohort(**kw), simulate_cohort(**kw, recent_expansion=True)
    assert copied(grown) < 0.5 * copied(base), (copied(grown), copied(base))
    s = grown.meta["simulation"]
    assert s["recent_expansion"] is True and s["model"] == sim.EXPANSION_MODEL_NAME
    assert "Tennessen" in s["model_citation"]
    assert base.meta["simulation"]["recent_expansion"] is False


@pytest.mark.parametrize(
    "kw, fix",
    [
        (dict(n_samples=0), "--n"),
        (dict(populations=("YRI", "GBR")), "YRI, CEU, CHB"),
        (dict(maf=0.6), "[0, 0.5)"),
        (dict(max_snps=0), "max_snps"),
        (dict(sequence_length=10), "--length-mb"),
        (dict(seed=-1), "seed must be an integer >= 0"),
        (dict(phenotype=PhenotypeSpec(heritability=1.5)), "--h2"),
        (dict(phenotype=PhenotypeSpec(prevalence=0.0)), "--prevalence"),
        (dict(phenotype=PhenotypeSpec(n_causal=0)), "--causal"),
    ],
)
def test_bad_options_name_the_fix(kw, fix):
    with pytest.raises(InputError, match=re.escape(fix)):
        simulate_cohort(**({"n_samples": 30, "sequence_length": 50_000} | kw))


def test_doctests():
    result = doctest.testmod(sim, optionflags=doctest.ELLIPSIS)
    assert result.attempted >= 2 and result.failed == 0


# ---------------------------------------------------------------------------------- the trait
def _auc(score: np.ndarray, y: np.ndarray) -> float:
    return float(stats.mannwhitneyu(score[y == 1], score[y == 0]).statistic / ((y == 1).sum() * (y == 0).sum()))


def test_phenotype_prevalence_and_truth(sim_pheno_cohort):
    c = sim_pheno_cohort
    y = c.samples["phenotype"].to_numpy()
    assert set(np.unique(y)) == {0.0, 1.0}
    assert abs(y.mean() - 0.3) <= 1 / c.n_samples + 1e-12
    t = c.meta["truth"]
    assert t["heritability"] == 0.8 and t["prevalence"] == 0.3 and len(t["causal"]) == 20
    assert t["n_cases"] == int(y.sum()) and t["n_controls"] == c.n_samples - int(y.sum())
    ids = set(c.variants["id"])
    assert all(row["id"] in ids for row in t["causal"])
    assert len({row["id"] for row in t["causal"]}) == 20
    idx = [row["index"] for row in t["causal"]]
    assert list(c.variants["id"].iloc[idx]) == [row["id"] for row in t["causal"]]
    af = c.allele_frequencies()[idx]
    assert np.minimum(af, 1 - af).min() >= 0.05
    assert 0.5 < t["realised_h2"] < 0.95
    json.dumps(t)


def test_cases_carry_more_risk_alleles(sim_pheno_cohort):
    c = sim_pheno_cohort
    y = c.samples["phenotype"].to_numpy()
    t = c.meta["truth"]
    idx = np.array([row["index"] for row in t["causal"]])
    beta = np.array([row["beta_per_alt"] for row in t["causal"]])
    g = c.genotypes()[:, idx].astype(float)  # (N, C)
    # The true genetic score, centred within population as the truth says, separates cases from
    # controls (liability r = sqrt(0.8)); centring leaves case fractions alike across populations.
    assert t["centered_within"] == "pop"
    score = g @ beta  # (N,)
    pops = c.labels("pop")
    for pop in np.unique(pops):
        score[pops == pop] -= score[pops == pop].mean()
        assert 0.15 < y[pops == pop].mean() < 0.45
    assert _auc(score, y) > 0.8
    # GWAS: the strongest causal SNPs are significant, and causal SNPs beat non-causal ones.
    gall = c.genotypes().astype(float)
    r = np.array([stats.pearsonr(gall[:, j], y).statistic for j in range(c.n_variants)])
    p = stats.chi2.sf(c.n_samples * r**2, df=1)  # Armitage trend test
    top = idx[np.argsort(-np.abs([row["effect_std"] for row in t["causal"]]))[:3]]
    assert p[top].min() < 1e-4
    other = np.setdiff1d(np.arange(c.n_variants), idx)
    assert np.median(-np.log10(p[idx])) > np.median(-np.log10(p[other]))
    # Risk alleles are more frequent in cases.
    risk_dir = np.sign(beta)
    diff = (g[y == 1].mean(0) - g[y == 0].mean(0)) * risk_dir
    assert (diff > 0).mean() >= 0.7


def test_simulate_phenotype_on_any_cohort_with_missing():
    rng = np.random.default_rng(0)
    base = simulate_cohort(n_samples=200, sequence_length=300_000, seed=2).unphased()
    a = base.alleles.copy()
    a[rng.random(a.shape) < 0.02] = -1
    c = Cohort(alleles=a, variants=base.variants, samples=make_samples(base.samples["sample"]), phased=False)
    y, truth = simulate_phenotype(c, PhenotypeSpec(n_causal=10, heritability=0.0, prevalence=0.5), seed=4)
    assert y.shape == (200,) and y.dtype == np.float64 and y.sum() == 100
    assert truth["realised_h2"] == pytest.approx(0.0)
    y2, truth2 = simulate_phenotype(c, PhenotypeSpec(n_causal=10, heritability=0.0, prevalence=0.5), seed=4)
    assert np.array_equal(y, y2) and truth == truth2
    y3, _ = simulate_phenotype(c, PhenotypeSpec(n_causal=10, effect_distribution="laplace"), seed=5)
    assert abs(y3.mean() - 0.3) < 0.01


def test_too_few_eligible_snps_names_the_fix(sim_cohort):
    with pytest.raises(InputError, match="--length-mb"):
        simulate_phenotype(sim_cohort, PhenotypeSpec(n_causal=10_000), seed=1)
    with pytest.raises(InputError, match="effect_distribution"):
        simulate_phenotype(sim_cohort, dataclasses.replace(PhenotypeSpec(), effect_distribution="cauchy"), seed=1)


@pytest.mark.shared
def test_phenotype_on_real_1000g_haplotypes(cohort_805):
    y, truth = simulate_phenotype(cohort_805, PhenotypeSpec(n_causal=30, heritability=0.5, prevalence=0.3), seed=1)
    assert y.shape == (cohort_805.n_samples,) and abs(y.mean() - 0.3) < 0.001
    assert truth["centered_within"] == "pop" and len(truth["group_offsets"]) == len(set(cohort_805.labels("pop")))
    assert {row["id"] for row in truth["causal"]} <= set(cohort_805.variants["id"])
    # Centring within population keeps the case fraction of every super-population near the prevalence.
    sp = cohort_805.labels("super_pop")
    assert all(0.2 < y[sp == s].mean() < 0.4 for s in np.unique(sp))


# ---------------------------------------------------------------------------------- stdpopsim models
def test_config_dataclass_runs_a_simulation():
    """docs/simulate.md: ``simulate_cohort(**dataclasses.asdict(config), seed=...)`` runs one."""
    config = sim.SimulationConfig(n_samples=20, sequence_length=50_000, demographic_model="OutOfAfrica_2T12",
                                  populations=("EUR",), reference_population="EUR")
    c = simulate_cohort(**dataclasses.asdict(config), seed=1)
    assert set(c.labels("pop")) == {"EUR"} and c.meta["simulation"]["demographic_model"] == "OutOfAfrica_2T12"


def test_builtin_model_is_the_default_and_unchanged():
    """``demographic_model="builtin"`` is today's hand-written model: same cohort as the default, recorded by name."""
    kw = dict(n_samples=40, sequence_length=100_000, seed=2)
    a, b = simulate_cohort(**kw), simulate_cohort(**kw, demographic_model="builtin")
    assert np.array_equal(a.alleles, b.alleles) and a.variants.equals(b.variants)
    assert a.meta["simulation"]["demographic_model"] == "builtin"
    assert a.meta["simulation"]["model"] == "OutOfAfrica_3G09"


@pytest.mark.parametrize("name, pops, supers, cite", [
    ("OutOfAfrica_3G09", ["YRI", "CEU", "CHB"], {"AFR", "EUR", "EAS"}, "Gutenkunst"),
    ("OutOfAfrica_2T12", ["AFR", "EUR"], {"AFR", "EUR"}, "Tennessen"),
    ("AmericanAdmixture_4B18", ["AFR", "EUR", "ASIA", "ADMIX"], {"AFR", "EUR", "EAS", "AMR"}, "Browning"),
])
def test_stdpopsim_models(name, pops, supers, cite):
    assert sim.model_populations(name) == pops
    c = simulate_cohort(n_samples=12 * len(pops), sequence_length=200_000, seed=5, demographic_model=name)
    assert list(dict.fromkeys(c.labels("pop"))) == pops and set(c.labels("super_pop")) == supers
    s = c.meta["simulation"]
    assert s["model"] == f"stdpopsim HomSap/{name}" and cite in s["model_citation"] and "doi:10." in s["model_citation"]
    assert s["model_parameters"]["id"] == name and s["demographic_model"] == name
    json.dumps(c.meta)
    again = simulate_cohort(n_samples=12 * len(pops), sequence_length=200_000, seed=5, demographic_model=name)
    assert np.array_equal(c.alleles, again.alleles)


def test_stdpopsim_3g09_is_the_same_model_as_the_builtin():
    """Same demography, written differently: population sizes through time agree, and so does the
    differentiation of a simulated cohort (Fst YRI-CHB), though the genealogies for a seed differ."""
    d_std, _ = sim.demographic_model("OutOfAfrica_3G09")
    d_own, _ = sim.demographic_model("builtin")
    times = [0.0, 100.0, 847.0, 2000.0, 9000.0]
    np.testing.assert_allclose(d_std.debug().population_size_trajectory(times)[:, :3][:2],
                               d_own.debug().population_size_trajectory(times)[:, :3][:2], rtol=1e-6)
    kw = dict(n_samples=300, sequence_length=1_000_000, seed=3, max_snps=400)
    fst = {}
    for name in ("builtin", "OutOfAfrica_3G09"):
        c = simulate_cohort(**kw, demographic_model=name)
        (p1, n1), (p2, n2) = pop_freq(c, "YRI"), pop_freq(c, "CHB")
        fst[name] = hudson_fst(p1, p2, n1, n2)
    assert all(0.08 < f < 0.3 for f in fst.values()), fst


@pytest.mark.parametrize("kw, fix", [
    (dict(demographic_model="NoSuchModel"), "OutOfAfrica_2T12"),
    (dict(demographic_model="OutOfAfrica_2T12", populations=("YRI",)), "AFR, EUR"),
    (dict(demographic_model="OutOfAfrica_2T12", recent_expansion=True), "OutOfAfrica_2T12"),
    (dict(trait_model="other"), "--trait-model"),
])
def test_bad_model_options_name_the_fix(kw, fix):
    with pytest.raises(InputError, match=re.escape(fix)):
        simulate_cohort(n_samples=20, sequence_length=50_000, seed=1, **kw)


# ---------------------------------------------------------------------------------- the regions model
def test_regions_model_nests_populations_in_regions():
    c = simulate_cohort(n_samples=24 * 30, sequence_length=3_000_000, seed=5, demographic_model="regions")
    pops, regions = c.labels("pop"), c.labels("super_pop")
    assert len(set(pops.tolist())) == 24 and sorted(set(regions.tolist())) == ["A", "B", "C", "D"]
    assert all(p[0] == r for p, r in zip(pops, regions))  # A1..A6 in region A ...
    assert c.meta["simulation"]["model_parameters"]["per_region"] == 6
    (a1, n1), (a2, n2), (b1, m1) = pop_freq(c, "A1"), pop_freq(c, "A2"), pop_freq(c, "B1")
    within, between = hudson_fst(a1, a2, n1, n2), hudson_fst(a1, b1, n1, m1)
    assert 0.0 < within < 0.06 and 0.05 < between < 0.3 and between > 2 * within, (within, between)


def test_min_spacing_keeps_snps_apart_before_max_snps():
    kw = dict(n_samples=40, sequence_length=3_000_000, seed=2, chromosomes=("1", "2"))
    dense = simulate_cohort(**kw)
    sparse = simulate_cohort(**kw, min_spacing_bp=100_000)
    for chrom, pos in sparse.variants.groupby("chrom")["pos"]:
        assert np.diff(pos.to_numpy()).min() >= 100_000
        assert len(pos) >= 20  # about one per 100 kb of 3 Mb
    assert sparse.n_variants < dense.n_variants
    assert set(zip(sparse.variants["chrom"], sparse.variants["pos"])) <= set(zip(dense.variants["chrom"],
                                                                                  dense.variants["pos"]))
    capped = simulate_cohort(**kw, min_spacing_bp=100_000, max_snps=10)
    assert capped.n_variants == 20 and np.diff(capped.variants["pos"][:10].to_numpy()).min() >= 100_000
    with pytest.raises(InputError, match="min_spacing_bp"):
        simulate_cohort(**kw, min_spacing_bp=-1)


# ---------------------------------------------------------------------------------- the tstrait trait
@pytest.fixture(scope="module")
def tstrait_cohort():
    return simulate_cohort(n_samples=300, sequence_length=500_000, seed=12, max_snps=300, trait_model="tstrait",
                           phenotype=PhenotypeSpec(n_causal=20, heritability=0.8, prevalence=0.3))


def test_tstrait_trait_truth_and_prevalence(tstrait_cohort):
    c = tstrait_cohort
    y = c.samples["phenotype"].to_numpy()
    t = c.meta["truth"]
    assert t["trait_model"] == "tstrait" and "tstrait" in t["model"]
    assert abs(y.mean() - 0.3) <= 1 / c.n_samples + 1e-12 and t["n_cases"] == int(y.sum())
    idx = [row["index"] for row in t["causal"]]
    assert len(set(idx)) == 20 and list(c.variants["id"].iloc[idx]) == [row["id"] for row in t["causal"]]
    af = c.allele_frequencies()[idx]
    assert np.minimum(af, 1 - af).min() >= 0.05
    assert 0.6 < t["realised_h2"] < 0.95 and t["centered_within"] == "pop"
    json.dumps(t)


def test_tstrait_beta_per_alt_gives_tstraits_genetic_value():
    """The truth's per-ALT effects, applied to the cohort's genotypes, equal the genetic value tstrait
    computes on the tree sequence (up to the constant of the allele coding and the centring), so
    the causal-site and ALT-allele mapping is right; and they separate cases from controls."""
    import pandas as pd
    import tstrait

    spec = PhenotypeSpec(n_causal=20, heritability=0.8, prevalence=0.3)
    config = sim._resolve_config("builtin", None, None, n_samples=300, sequence_length=500_000, maf=0.05,
                                 max_snps=300, recombination_rate=1e-8, mutation_rate=1.25e-8, chrom="1",
                                 ref_allele="reference_haplotype", recent_expansion=False)
    s_anc, s_mut, s_letters, s_pheno = np.random.SeedSequence(12).generate_state(4, dtype=np.uint32)
    cohort, tree = sim._simulate_genotypes(config, seed=12, ancestry_seed=int(s_anc), mutation_seed=int(s_mut),
                                           rng=np.random.default_rng(int(s_letters)))
    y, t = sim.tstrait_phenotype(cohort, tree, spec, seed=int(s_pheno))
    whole = simulate_cohort(n_samples=300, sequence_length=500_000, seed=12, max_snps=300, phenotype=spec,
                            trait_model="tstrait")
    assert whole.meta["truth"] == t and np.array_equal(whole.samples["phenotype"].to_numpy(), y)

    idx = np.array([row["index"] for row in t["causal"]])
    beta = np.array([row["beta_per_alt"] for row in t["causal"]])
    ts = tree["ts"].simplify(samples=tree["ts"].samples()[:600], filter_sites=False)
    site_ids = np.searchsorted(ts.tables.sites.position, tree["positions"][idx])
    derived = np.array([ts.genotype_matrix()[s] for s in site_ids]).T  # (2N, C) derived-allele flags
    alt_is_derived = (derived == cohort.alleles[:, idx]).all(axis=0)  # else ALT = ancestral everywhere
    assert ((derived != cohort.alleles[:, idx]).all(axis=0) | alt_is_derived).all()
    trait_df = pd.DataFrame({"site_id": site_ids, "effect_size": np.where(alt_is_derived, beta, -beta),
                             "causal_allele": "1", "trait_id": 0})
    gv = tstrait.genetic_value(ts, trait_df)["genetic_value"].to_numpy()  # (N,)
    score = cohort.genotypes()[:, idx].astype(float) @ beta  # (N,)
    pops = cohort.labels("pop")
    for pop in np.unique(pops):
        m = pops == pop
        np.testing.assert_allclose(score[m] - score[m].mean(), gv[m] - gv[m].mean(), atol=1e-9)
        score[m] -= score[m].mean()
        assert 0.1 < y[m].mean() < 0.5
    assert _auc(score, y) > 0.8


def test_tstrait_same_seed_same_trait_and_genotypes_unchanged():
    kw = dict(n_samples=60, sequence_length=200_000, seed=5, phenotype=PhenotypeSpec(n_causal=5))
    a = simulate_cohort(**kw, trait_model="tstrait")
    b = simulate_cohort(**kw, trait_model="tstrait")
    plain = simulate_cohort(**kw)
    assert a.meta["truth"] == b.meta["truth"] and a.samples.equals(b.samples)
    assert np.array_equal(a.alleles, plain.alleles) and a.variants.equals(plain.variants)
    assert a.meta["truth"]["causal"] != plain.meta["truth"]["causal"]  # another trait model, another draw


def test_tstrait_trait_refuses_what_it_cannot_do():
    kw = dict(n_samples=60, sequence_length=200_000, seed=5, trait_model="tstrait")
    with pytest.raises(InputError, match="--trait-model genosynth"):
        simulate_cohort(**kw, phenotype=PhenotypeSpec(n_causal=5, heritability=0.0))
    with pytest.raises(InputError, match="--length-mb"):
        simulate_cohort(**kw, phenotype=PhenotypeSpec(n_causal=10_000))


# ---------------------------------------------------------------------------------- several chromosomes (issue 17)
def test_several_chromosomes_share_the_people_and_are_independent():
    one = simulate_cohort(n_samples=60, sequence_length=150_000, seed=9)
    many = simulate_cohort(n_samples=60, sequence_length=150_000, seed=9, chromosomes=3)
    assert many.phased and many.n_samples == 60
    assert many.samples.equals(one.samples)  # the same people, populations and sexes
    chrom = many.variants["chrom"].to_numpy()
    assert list(dict.fromkeys(chrom)) == ["1", "2", "3"]
    first = chrom == "1"
    assert np.array_equal(many.alleles[:, first], one.alleles)  # chromosome 1 = the one-chromosome run
    assert many.variants[first].reset_index(drop=True).equals(one.variants)
    for name in ("2", "3"):
        pos = many.variants["pos"].to_numpy()[chrom == name]
        assert len(pos) > 20 and (np.diff(pos) > 0).all() and pos.max() <= 150_000
    a2, a3 = many.alleles[:, chrom == "2"], many.alleles[:, chrom == "3"]
    n = min(a2.shape[1], a3.shape[1])
    assert not np.array_equal(a2[:, :n], a3[:, :n])  # other seeds, other genealogies
    # Independent chromosomes: no LD between them beyond sampling noise (after removing population means).
    pops = many.labels("pop").repeat(2)
    x = many.alleles.astype(float)
    for p in np.unique(pops):
        x[pops == p] -= x[pops == p].mean(axis=0)
    x /= np.maximum(x.std(axis=0), 1e-9)
    r = (x[:, chrom == "1"].T @ x[:, chrom == "2"]) / x.shape[0]  # (V1, V2)
    assert np.mean(r ** 2) < 3.0 / x.shape[0]
    s = many.meta["simulation"]
    assert [c["chrom"] for c in s["per_chromosome"]] == ["1", "2", "3"]
    assert [c["snps"] for c in s["per_chromosome"]] == [int((chrom == k).sum()) for k in ("1", "2", "3")]
    assert s["snps"] == many.n_variants and s["total_length"] == 450_000
    assert s["chromosomes"] == ["1", "2", "3"]
    json.dumps(many.meta)
    again = simulate_cohort(n_samples=60, sequence_length=150_000, seed=9, chromosomes=["1", "2", "3"])
    assert np.array_equal(again.alleles, many.alleles) and again.variants.equals(many.variants)


def test_chromosome_names_lengths_and_max_snps_per_chromosome():
    c = simulate_cohort(n_samples=40, sequence_length=[200_000, 100_000], chromosomes=["chr2", "chrX"],
                        max_snps=30, seed=4)
    counts = c.variants["chrom"].value_counts().to_dict()
    assert counts == {"chr2": 30, "chrX": 30}
    per = c.meta["simulation"]["per_chromosome"]
    assert [(p["chrom"], p["sequence_length"]) for p in per] == [("chr2", 200_000), ("chrX", 100_000)]
    assert all(p["snps_after_maf"] > 30 for p in per)
    assert c.variants["id"].str.startswith(("chr2:", "chrX:")).all()
    via_lengths = simulate_cohort(n_samples=40, chromosome_lengths=(200_000, 100_000), chromosomes=("chr2", "chrX"),
                                  max_snps=30, seed=4)
    assert np.array_equal(via_lengths.alleles, c.alleles)


def test_phenotype_on_several_chromosomes():
    c = simulate_cohort(n_samples=120, sequence_length=100_000, chromosomes=4, seed=3,
                        phenotype=PhenotypeSpec(n_causal=40, heritability=0.8))
    t = c.meta["truth"]
    assert len({row["chrom"] for row in t["causal"]}) >= 3  # causal SNPs drawn over the whole genome
    assert [x["chrom"] for x in t["chromosomes"]] == ["1", "2", "3", "4"]
    assert sum(x["snps"] for x in t["chromosomes"]) == c.n_variants
    idx = [row["index"] for row in t["causal"]]
    assert [c.variants["chrom"].iat[i] for i in idx] == [row["chrom"] for row in t["causal"]]
    assert abs(c.samples["phenotype"].mean() - 0.3) < 0.02


def test_unphased_with_missing_calls():
    kw = dict(n_samples=100, sequence_length=200_000, seed=8, chromosomes=2)
    full = simulate_cohort(**kw, phenotype=PhenotypeSpec(n_causal=5))
    thin = simulate_cohort(**kw, phenotype=PhenotypeSpec(n_causal=5), phased=False, missing_rate=0.05)
    assert not thin.phased and thin.alleles.shape == (100, full.n_variants)
    missing = thin.alleles < 0
    assert abs(missing.mean() - 0.05) < 0.006
    assert np.array_equal(thin.alleles[~missing], full.genotypes()[~missing])  # only calls were hidden
    assert thin.samples.equals(full.samples) and thin.meta["truth"] == full.meta["truth"]  # trait on full data
    assert thin.meta["simulation"]["missing_rate"] == 0.05 and thin.meta["simulation"]["phased"] is False
    again = simulate_cohort(**kw, phenotype=PhenotypeSpec(n_causal=5), phased=False, missing_rate=0.05)
    assert np.array_equal(again.alleles, thin.alleles)
    phased = simulate_cohort(**kw, missing_rate=0.1)
    h = phased.haplotypes()  # (N, 2, V)
    assert phased.phased and np.array_equal(h[:, 0] < 0, h[:, 1] < 0)  # a missing call hides both alleles
    assert abs((h[:, 0] < 0).mean() - 0.1) < 0.01
    assert np.array_equal(phased.alleles[phased.alleles >= 0], full.alleles[phased.alleles >= 0])


def test_set_missing_at_random_rate_and_independence_of_blocks():
    c = simulate_cohort(n_samples=50, sequence_length=100_000, maf=0.0, seed=2, phased=False)
    before = c.alleles.copy()
    sim.set_missing_at_random(c, 0.3, rng=np.random.default_rng(1), block=7)
    hit = c.alleles < 0
    assert 0.25 < hit.mean() < 0.35 and np.array_equal(c.alleles[~hit], before[~hit])
    with pytest.raises(InputError, match="--missing-rate"):
        sim.set_missing_at_random(c, 1.0, rng=np.random.default_rng(1))


@pytest.mark.parametrize(
    "kw, fix",
    [
        (dict(chromosomes=0), "--chromosomes"),
        (dict(chromosomes=["1", "1"]), "listed twice"),
        (dict(chromosomes=["1", "a b"]), "without spaces"),
        (dict(chromosomes=3, sequence_length=[50_000, 60_000]), "one length for all or one per chromosome"),
        (dict(chromosomes=2, sequence_length=[50_000, 10]), "--length-mb"),
        (dict(missing_rate=1.0), "missing_rate"),
        (dict(chromosomes=2, phenotype=PhenotypeSpec(n_causal=3), trait_model="tstrait"), "--trait-model genosynth"),
    ],
)
def test_bad_chromosome_options_name_the_fix(kw, fix):
    with pytest.raises(InputError, match=re.escape(fix)):
        simulate_cohort(**({"n_samples": 30, "sequence_length": 50_000} | kw))
