"""Unit tests of the evaluation metrics on small numpy-built arrays (each checked against a
brute-force or textbook computation)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy import stats
from scipy.spatial.distance import cdist

from genosynth.cohort import make_variants
from genosynth.evaluate import fidelity as fid
from genosynth.evaluate import replication as gw
from genosynth.evaluate import attacks as pv
from genosynth.errors import InputError
from genosynth.stats.frequency import allele_freq, allele_frequencies, called_mean, dosage
from genosynth.evaluate._arrays import nearest_distances
from genosynth.stats.ld import pair_correlations, r2_matrix
from genosynth.evaluate.lights import LightRule, judge


def _geno(n, v, seed=0, p=None):
    rng = np.random.default_rng(seed)
    p = rng.uniform(0.05, 0.95, v) if p is None else p
    return rng.binomial(2, p, size=(n, v)).astype(np.int8)


# ---------------------------------------------------------------------------------- arrays
def test_allele_frequencies_skip_ignores_missing_and_raise_refuses_it():
    g = np.array([[0, 2, -1], [2, 2, -1], [1, -1, -1]], dtype=np.int8)
    af = allele_frequencies(g, missing="skip")
    assert af[0] == pytest.approx(0.5)
    assert af[1] == pytest.approx(1.0)
    assert np.isnan(af[2])
    assert allele_freq(g).tobytes() == af.tobytes()  # the old name is the same function
    assert allele_frequencies(g[:, :1], missing="raise")[0] == pytest.approx(0.5)
    with pytest.raises(InputError, match="missing values"):
        allele_frequencies(g, missing="raise")
    with pytest.raises(InputError, match="missing must be one of"):
        allele_frequencies(g, missing="fill")


def test_dosage_fills_missing_calls_with_the_given_values_or_the_called_mean():
    g = np.array([[0, 2, -1], [2, -1, -1], [1, 1, -1]], dtype=np.int8)
    np.testing.assert_array_equal(called_mean(g), [1.0, 1.5, 0.0])  # 0 where nothing is called
    x = dosage(g, called_mean(g), dtype=np.float64)
    assert x.dtype == np.float64 and x[1, 1] == 1.5 and (x[:, 2] == 0).all()
    assert dosage(g, np.array([9.0, 8.0, 7.0])).dtype == np.float32
    assert dosage(g, np.array([9.0, 8.0, 7.0]))[1, 1] == 8.0


def test_r2_matrix_is_squared_corrcoef_with_monomorphic_variants_zero():
    g = _geno(60, 6, seed=5)
    g[:, 4] = 2
    r2 = r2_matrix(g, 2 * allele_frequencies(g, missing="skip"))
    with np.errstate(invalid="ignore", divide="ignore"):
        ref = np.corrcoef(g.astype(float), rowvar=False) ** 2
    assert np.allclose(r2, np.nan_to_num(ref))
    assert (r2[4] == 0).all() and (r2[:, 4] == 0).all()


@pytest.mark.parametrize("chunk", [3, 64])
def test_nearest_distances_match_brute_force(chunk):
    a = _geno(37, 25, seed=1).astype(np.float32)
    b = _geno(19, 25, seed=2).astype(np.float32)
    d = cdist(a, b)
    assert np.allclose(nearest_distances(a, b, chunk=chunk), d.min(1), atol=1e-4)
    daa = cdist(a, a)
    np.fill_diagonal(daa, np.inf)
    assert np.allclose(nearest_distances(a, a, exclude_self=True, chunk=chunk), daa.min(1), atol=1e-4)


def test_nearest_distances_duplicates_count_as_zero_when_excluding_self():
    a = np.vstack([_geno(5, 10, seed=3), _geno(1, 10, seed=3)]).astype(np.float32)  # row 5 == row 0
    d = nearest_distances(a, a, exclude_self=True)
    assert d[0] == 0 and d[5] == 0 and (d[1:5] > 0).all()


def test_pair_correlations_dense_and_blocked_paths_equal_corrcoef():
    g = _geno(80, 30, seed=4)
    g[:, 7] = 1  # monomorphic
    g[3, 2] = -1  # a missing call
    fill = 2 * np.nan_to_num(allele_frequencies(g, missing="skip"))
    i, j = np.triu_indices(30, k=1)
    dense = pair_correlations(g, i, j, fill=fill)
    blocked = pair_correlations(g, i, j, fill=fill, dense_max=0, chunk=17)
    assert np.allclose(dense, blocked, equal_nan=True, atol=1e-5)
    x = g.astype(float)
    x[3, 2] = fill[2]
    with np.errstate(invalid="ignore", divide="ignore"):
        ref = np.corrcoef(x, rowvar=False)[i, j]
    assert np.allclose(dense, ref, equal_nan=True, atol=1e-6)
    assert np.isnan(dense[(i == 7) | (j == 7)]).all()


# ---------------------------------------------------------------------------------- pair sets
def test_near_pairs_are_exactly_the_pairs_within_the_window():
    rng = np.random.default_rng(5)
    chrom = np.repeat(["1", "2", "3"], 40)
    pos = np.concatenate([np.sort(rng.integers(0, 5_000_000, 40)) for _ in range(3)])
    order = rng.permutation(120)  # unsorted input order
    v = make_variants(chrom=chrom[order], pos=pos[order], ref=["A"] * 120, alt=["G"] * 120,
                      id=[f"v{k}" for k in range(120)])
    i, j, total = fid.near_pairs(v, window_bp=500_000, max_pairs=10**9, rng=rng)
    got = {tuple(sorted(p)) for p in zip(i.tolist(), j.tolist())}
    c, p = v["chrom"].to_numpy(), v["pos"].to_numpy()
    want = {(a, b) for a in range(120) for b in range(a + 1, 120)
            if c[a] == c[b] and abs(p[a] - p[b]) <= 500_000}
    assert got == want and total == len(want) and len(i) == len(want)
    i2, j2, total2 = fid.near_pairs(v, window_bp=500_000, max_pairs=10, rng=rng)
    assert len(i2) == 10 and total2 == total
    assert {tuple(sorted(p)) for p in zip(i2.tolist(), j2.tolist())} <= want


def test_random_pairs_are_distinct_and_ordered():
    rng = np.random.default_rng(6)
    i, j = fid.random_pairs(1000, max_pairs=5000, rng=rng)
    assert len(i) == 5000 and (i < j).all()
    assert len(set(zip(i.tolist(), j.tolist()))) == 5000
    i, j = fid.random_pairs(10, max_pairs=5000, rng=rng)  # few variants: all 45 pairs
    assert len(i) == 45
    chrom = np.repeat(["1", "2"], 50)
    i, j = fid.random_pairs(100, max_pairs=300, rng=rng, chrom=chrom, same_chrom=True)
    assert (chrom[i] == chrom[j]).all() and (i < j).all()


def test_compare_pair_r_treats_undefined_synthetic_r_as_zero():
    out = fid.compare_pair_r(np.array([0.5, np.nan, 0.2, 0.9]), np.array([0.4, 0.3, np.nan, 0.8]))
    assert out["n_pairs"] == 3
    assert out["mean_abs_diff"] == pytest.approx((0.1 + 0.2 + 0.1) / 3)


def test_ld_decay_bins():
    r = np.array([1.0, 0.5, 0.1, np.nan])
    dist = np.array([10.0, 10.0, 5000.0, 20.0])
    assert fid.ld_decay(r, dist, np.array([0, 100, 1e4, 1e5])) == [pytest.approx(0.625), pytest.approx(0.01), None]


def test_ld_strength_removes_chance_r2_and_picks_the_bin_farthest_from_one():
    out = fid.ld_strength([0.37, 0.12, 0.02, None], [0.01, 0.01, 0.01, None], [0.43, 0.11, 0.015, 0.2],
                          [0.0025, 0.0025, 0.0025, 0.0025], [100, 100, 100, 100], min_r2=0.02, min_pairs=50)
    r = out["ratio"]
    assert r[0] == pytest.approx(0.36 / 0.4275) and r[1] == pytest.approx(0.11 / 0.1075)
    assert r[2] is None and r[3] is None  # too little real LD; no value for the set
    assert out["worst_bin"] == 0 and out["worst"] == r[0]
    few = fid.ld_strength([0.3], [0.0], [0.3], [0.0], [10], min_r2=0.02, min_pairs=50)
    assert few["ratio"] == [None] and np.isnan(few["worst"]) and few["worst_bin"] is None


def test_chance_r2_of_independent_snps_is_one_over_n_minus_one():
    # the correction ld_strength relies on: E[r^2] of unlinked SNPs in n people is 1 / (n - 1)
    n = 50
    g = _geno(n, 400, seed=3, p=np.full(400, 0.4))
    i, j = np.triu_indices(400, k=1)
    r = pair_correlations(g, i, j, fill=np.full(400, 0.8))
    assert np.nanmean(r ** 2) == pytest.approx(1 / (n - 1), rel=0.05)


def test_lambda_gc_of_null_p_values_is_one():
    p = (np.arange(1, 10_001) - 0.5) / 10_000
    assert gw.lambda_gc(-np.log10(p)) == pytest.approx(1.0, abs=1e-3)
    assert gw.lambda_gc(-np.log10(p) * 3) > 3
    assert gw.qq_points(-np.log10(p))["lambda_gc"] == gw.lambda_gc(-np.log10(p))


# ---------------------------------------------------------------------------------- distributions
def test_energy_distance_zero_for_same_distribution_and_grows_with_shift():
    rng = np.random.default_rng(7)
    a = rng.normal(size=(400, 3))
    b = rng.normal(size=(400, 3))
    same = fid.energy_distance(a, b, max_samples=1000, rng=rng)
    shifted = fid.energy_distance(a, b + 1.0, max_samples=1000, rng=rng)
    assert abs(same) < 0.05 and shifted > 0.5
    coef = fid.energy_coefficient(a, b + 5.0, max_samples=1000, rng=rng)
    assert 0.5 < coef <= 1.0


def test_heterozygosity_per_person():
    g = np.array([[1, 1, 0, -1], [2, 0, 0, 0]], dtype=np.int8)
    assert np.allclose(fid.heterozygosity(g), [2 / 3, 0.0])


# ---------------------------------------------------------------------------------- GWAS
def test_dominant_ztest_equals_chi_square_of_carrier_table():
    rng = np.random.default_rng(8)
    g = _geno(300, 40, seed=8)
    case = rng.random(300) < 0.4
    g[case, 0] = np.maximum(g[case, 0], 1)  # a strong signal
    g[5, 3] = -1
    z, lp = gw.dominant_ztest(g, case)
    for k in range(40):
        ok = g[:, k] >= 0
        carrier = g[ok, k] >= 1
        table = np.array([[np.sum(carrier & case[ok]), np.sum(~carrier & case[ok])],
                          [np.sum(carrier & ~case[ok]), np.sum(~carrier & ~case[ok])]])
        if (table.sum(axis=0) == 0).any():  # every called person is a carrier (or none is)
            assert z[k] == 0 and lp[k] == 0
            continue
        chi2, p, _, _ = stats.chi2_contingency(table, correction=False)
        assert z[k] ** 2 == pytest.approx(chi2, rel=1e-9)
        assert lp[k] == pytest.approx(-np.log10(p), rel=1e-6)
    assert z[0] > 5


def test_dominant_ztest_monomorphic_snp_has_p_one_and_tiny_p_keeps_rank():
    g = np.zeros((100, 3), dtype=np.int8)
    case = np.arange(100) < 50
    g[case, 1] = 2  # perfect separation
    g[case[:], 2] = np.where(np.arange(50) < 45, 2, 0)
    z, lp = gw.dominant_ztest(g, case)
    assert lp[0] == 0 and z[0] == 0
    assert np.isfinite(lp).all() and lp[1] > lp[2] > 10


def test_top_overlap():
    a = np.arange(100, dtype=float)
    assert gw.top_overlap(a, a, 0.1) == 1.0
    assert gw.top_overlap(a, -a, 0.1) == 0.0
    assert gw.top_overlap(a, -a, 0.5) == 0.0
    assert gw.top_overlap(a, -a, 0.6) == pytest.approx(20 / 60)


def test_replication_of_a_set_with_itself_is_perfect():
    rng = np.random.default_rng(9)
    g = _geno(200, 50, seed=9)
    case = rng.random(200) < 0.5
    rep = gw.replication(g, case, g, case, n_case=int(case.sum()), n_control=int((~case).sum()),
                         fractions=(0.1, 0.3), repeats=2, rng=rng)
    assert rep["overlap_top10"] == 1.0 and rep["rank_r"] == pytest.approx(1.0)


# ---------------------------------------------------------------------------------- privacy
def test_identical_rows():
    a = _geno(20, 15, seed=10)
    b = np.vstack([a[:5], _geno(10, 15, seed=11)])
    assert pv.identical_rows(b, a) == 5
    assert pv.identical_rows(a, a) == 20


def test_aats_copy_is_zero_far_is_one_and_fresh_is_about_half():
    real = _geno(150, 60, seed=12).astype(np.float32)
    assert pv.aats(real, real.copy())["aats"] == 0.0
    assert pv.aats(real, real + 10.0)["aats"] == 1.0
    p = np.random.default_rng(13).uniform(0.1, 0.9, 60)
    fresh = [pv.aats(_geno(150, 60, seed=s, p=p).astype(np.float32), _geno(150, 60, seed=s + 100, p=p)
                     .astype(np.float32))["aats"] for s in range(3)]
    assert abs(np.mean(fresh) - 0.5) < 0.08


def test_mia_auc_flags_members_at_distance_zero():
    assert pv.mia_auc(np.zeros(10), np.ones(10)) == 1.0
    assert pv.mia_auc(np.ones(10), np.ones(10)) == 0.5


def test_privacy_metrics_copy_vs_fresh():
    p = np.random.default_rng(14).uniform(0.1, 0.9, 80)
    train = _geno(200, 80, seed=15, p=p).astype(np.float32)
    hold = _geno(100, 80, seed=16, p=p).astype(np.float32)
    rng = np.random.default_rng(0)
    copy = pv.privacy_metrics(train, hold, train.copy(), mia_repeats=3, aats_repeats=2, max_samples=500,
                              chunk=64, rng=rng)
    fresh = pv.privacy_metrics(train, hold, _geno(200, 80, seed=17, p=p).astype(np.float32), mia_repeats=3,
                               aats_repeats=2, max_samples=500, chunk=64, rng=rng)
    assert copy["mia_auc"] == pytest.approx(1.0) and copy["privacy_loss"] > 0.1
    assert abs(fresh["mia_auc"] - 0.5) < 0.1 and abs(fresh["privacy_loss"]) < 0.1
    assert copy["dcr_closer_to_train"] > fresh["dcr_closer_to_train"]


# ---------------------------------------------------------------------------------- lights
@pytest.mark.parametrize("kind,value,ceiling,expected", [
    ("higher", 0.99, 1.0, "green"), ("higher", 0.9, 1.0, "amber"), ("higher", 0.5, 1.0, "red"),
    ("lower", 0.0, 0.0, "green"), ("lower", 0.1, 0.0, "amber"), ("lower", 0.5, 0.0, "red"),
])
def test_judge(kind, value, ceiling, expected):
    assert judge(LightRule("k", "k", "s", kind, 0.02, 0.2), value, ceiling) == expected


def test_judge_ideal_and_zero():
    rule = LightRule("mia_auc", "x", "privacy", "ideal", 0.05, 0.1, ideal=0.5)
    assert judge(rule, 0.52, 0.5) == "green"
    assert judge(rule, 0.58, 0.5) == "amber"
    assert judge(rule, 0.99, 0.5) == "red"
    assert judge(LightRule("identical_to_train", "x", "privacy", "zero"), 3, 0) == "red"
    assert judge(LightRule("identical_to_train", "x", "privacy", "zero"), 0, 0) == "green"
    assert judge(rule, None, 0.5) == "grey"


def test_metrics_are_independent_of_pandas_index():
    v = make_variants(chrom=["1"] * 3, pos=[1, 2, 3], ref=["A"] * 3, alt=["C"] * 3)
    v.index = pd.Index([10, 11, 12])
    i, j, total = fid.near_pairs(v, window_bp=10, max_pairs=100, rng=np.random.default_rng(0))
    assert total == 3 and set(zip(i.tolist(), j.tolist())) == {(0, 1), (0, 2), (1, 2)}


def test_privacy_metrics_same_with_cached_and_blocked_distances():
    p = np.random.default_rng(18).uniform(0.1, 0.9, 50)
    train = _geno(120, 50, seed=19, p=p).astype(np.float32)
    hold = _geno(60, 50, seed=20, p=p).astype(np.float32)
    syn = _geno(150, 50, seed=21, p=p).astype(np.float32)
    kw = dict(mia_repeats=3, aats_repeats=2, max_samples=500, chunk=32)
    cached = pv.privacy_metrics(train, hold, syn, rng=np.random.default_rng(1), **kw)
    blocked = pv.privacy_metrics(train, hold, syn, rng=np.random.default_rng(1), max_cells=0, **kw)
    for key in ("mia_auc", "dcr_closer_to_train", "aats_train", "aats_holdout", "privacy_loss"):
        assert cached[key] == pytest.approx(blocked[key], abs=1e-9), key
