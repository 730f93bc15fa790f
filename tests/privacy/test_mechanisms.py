"""Tests of the privacy mechanisms: clipping, Gaussian releases, stage-1 release, correlation
prior, allele frequencies and private SNP selection."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from genosynth.errors import InputError, PrivacyError
from genosynth.privacy import (
    PrivacyAccountant,
    allele_frequencies,
    band_to_dense,
    clip_rows,
    clipped_association_scores,
    correlation_band,
    dp_allele_frequencies,
    dp_correlation_prior,
    gaussian_mechanism,
    noisy_top_k,
    release_stage1_latents,
    stage1_eps_to_standard_eps,
    stage1_noise_multiplier,
    stage1_training_pair,
)
from genosynth.stats.ld import band_products
from genosynth.privacy.releases import _person_band_norms


@pytest.fixture
def genotypes():
    """Seeded (300, 40) dosages with LD: neighbouring SNPs share a latent haplotype factor."""
    rng = np.random.default_rng(7)
    n, v = 300, 40
    base = rng.normal(size=(n, v // 4)).repeat(4, axis=1) + 0.7 * rng.normal(size=(n, v))
    p = rng.uniform(0.1, 0.5, size=v)
    thresh = np.array([np.quantile(base[:, j], 1 - p[j]) for j in range(v)])  # (V,)
    h1 = base > thresh
    h2 = (np.roll(base, 1, axis=0) + 0.3 * rng.normal(size=(n, v))) > thresh
    return (h1.astype(float) + h2.astype(float))  # (N, V) in {0, 1, 2}


# ----------------------------------------------------------------------------------------------
# clipping and the Gaussian mechanism
# ----------------------------------------------------------------------------------------------


def test_clip_rows_bounds_norms_and_keeps_small_rows():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(50, 3, 7)) * rng.uniform(0.01, 5, size=(50, 1, 1))  # (N, C, L) latents
    out = clip_rows(x, 2.0)
    norms_in = np.linalg.norm(x.reshape(50, -1), axis=1)
    norms_out = np.linalg.norm(out.reshape(50, -1), axis=1)
    assert out.shape == x.shape
    assert (norms_out <= 2.0 + 1e-12).all()
    small = norms_in <= 2.0
    assert small.any() and (~small).any()
    np.testing.assert_array_equal(out[small], x[small])
    np.testing.assert_allclose(norms_out[~small], 2.0)
    # direction kept
    np.testing.assert_allclose(out[~small] / norms_out[~small, None, None], x[~small] / norms_in[~small, None, None])
    t = clip_rows(torch.as_tensor(x, dtype=torch.float32), 2.0)
    assert isinstance(t, torch.Tensor) and t.shape == x.shape
    assert (torch.linalg.vector_norm(t.reshape(50, -1), dim=1) <= 2.0 + 1e-5).all()
    np.testing.assert_array_equal(clip_rows(x, math.inf), x)
    zero = clip_rows(np.zeros((2, 3)), 1.0)
    assert np.isfinite(zero).all() and (zero == 0).all()


def test_gaussian_mechanism_noise_scale_and_accounting():
    acc = PrivacyAccountant()
    value = np.zeros(40_000)
    out = gaussian_mechanism(value, sensitivity=2.0, noise_multiplier=3.0, rng=np.random.default_rng(1),
                             accountant=acc, name="stat")  # fmt: skip
    assert out.std() == pytest.approx(6.0, rel=0.02)
    assert abs(out.mean()) < 4 * 6.0 / math.sqrt(out.size)
    assert acc.events == [{"name": "stat", "kind": "gaussian", "noise_multiplier": 3.0, "count": 1}]
    t = gaussian_mechanism(torch.zeros(40_000), sensitivity=1.0, noise_multiplier=0.5,
                           rng=torch.Generator().manual_seed(0))  # fmt: skip
    assert float(t.std()) == pytest.approx(0.5, rel=0.02)
    with pytest.raises(PrivacyError, match="generator"):
        gaussian_mechanism(value, sensitivity=1.0, noise_multiplier=1.0, rng=None)
    with pytest.raises(PrivacyError, match="calibrate"):
        gaussian_mechanism(value, sensitivity=1.0, noise_multiplier=0.0, rng=np.random.default_rng(0))


# ----------------------------------------------------------------------------------------------
# stage 1
# ----------------------------------------------------------------------------------------------


def test_release_stage1_latents_clips_before_noising_and_accounts():
    latents = torch.randn(64, 4, 8) * 10  # norms far above the clip
    acc = PrivacyAccountant()
    y = release_stage1_latents(latents, latent_clip=1.5, alpha_bar=0.05, rng=torch.Generator().manual_seed(3),
                               accountant=acc)  # fmt: skip
    noise = torch.randn(latents.shape, generator=torch.Generator().manual_seed(3))
    signal = (y - math.sqrt(0.95) * noise) / math.sqrt(0.05)  # recover the clipped latents
    norms = torch.linalg.vector_norm(signal.reshape(64, -1), dim=1)
    assert torch.allclose(norms, torch.full_like(norms, 1.5), atol=1e-4)
    (ev,) = acc.events
    assert ev["kind"] == "stage1" and ev["count"] == 1 and ev["latent_clip"] == 1.5
    assert ev["noise_multiplier"] == pytest.approx(stage1_noise_multiplier(latent_clip=1.5, alpha_bar=0.05))


def test_stage1_training_pair_has_forward_marginal_and_refuses_stage2_timesteps():
    T = 100
    ab = torch.cumprod(1 - torch.linspace(1e-3, 0.1, T, dtype=torch.float64), 0)
    s = 40
    y = torch.full((20_000, 1, 1), 0.8, dtype=torch.float64)  # released latents (one value)
    t = torch.full((20_000,), 70)
    x_t, eps = stage1_training_pair(y, t, alphas_cumprod=ab, release_step=s, rng=torch.Generator().manual_seed(0))
    r = float(ab[70] / ab[s])
    assert float(x_t.mean()) == pytest.approx(math.sqrt(r) * 0.8, abs=0.02)
    assert float(x_t.var()) == pytest.approx(1 - r, rel=0.03)
    assert torch.allclose(x_t, math.sqrt(r) * y + math.sqrt(1 - r) * eps)
    with pytest.raises(PrivacyError, match="stage 2"):
        stage1_training_pair(y[:2], torch.tensor([40, 80]), alphas_cumprod=ab, release_step=s)


def test_stage1_eps_conversion_is_exact_for_gaussian_data():
    # x0 ~ N(0, v0): every conditional expectation is linear in x_t and known in closed form.
    T, s, v0 = 200, 50, 2.5
    ab = torch.cumprod(1 - torch.linspace(1e-4, 0.05, T, dtype=torch.float64), 0)
    t = torch.tensor([51, 90, 150, 199])
    x_t = torch.linspace(-3, 3, 4 * 6, dtype=torch.float64).reshape(4, 2, 3)
    a_s, a_t = float(ab[s]), ab[t].reshape(-1, 1, 1)
    r = a_t / a_s
    var_s = a_s * v0 + 1 - a_s  # Var(x_s)
    x_s_hat = torch.sqrt(r) * var_s / (r * var_s + 1 - r) * x_t  # E[x_s | x_t]
    eps_prime = (x_t - torch.sqrt(r) * x_s_hat) / torch.sqrt(1 - r)  # optimal stage-1 target
    x0_hat = torch.sqrt(a_t) * v0 / (a_t * v0 + 1 - a_t) * x_t  # E[x_0 | x_t]
    eps_std = (x_t - torch.sqrt(a_t) * x0_hat) / torch.sqrt(1 - a_t)  # optimal usual target
    out = stage1_eps_to_standard_eps(eps_prime, x_t, t, alphas_cumprod=ab, release_step=s)
    torch.testing.assert_close(out, eps_std, rtol=1e-9, atol=1e-10)


# ----------------------------------------------------------------------------------------------
# correlation prior
# ----------------------------------------------------------------------------------------------


def test_correlation_band_matches_numpy(genotypes):
    band = correlation_band(genotypes, window=5)
    full = np.corrcoef(genotypes.T)
    v = genotypes.shape[1]
    assert band.shape == (v, 5)
    for lag in range(1, 6):
        np.testing.assert_allclose(band[: v - lag, lag - 1], np.diag(full, lag), atol=1e-10)
        assert (band[v - lag :, lag - 1] == 0).all()
    dense = band_to_dense(band)
    np.testing.assert_allclose(dense, dense.T)
    np.testing.assert_allclose(np.diag(dense), 1.0)
    np.testing.assert_allclose(dense[np.abs(np.subtract.outer(range(v), range(v))) <= 5],
                               full[np.abs(np.subtract.outer(range(v), range(v))) <= 5], atol=1e-10)  # fmt: skip


def test_dp_correlation_prior_sensitivity_is_the_clip(genotypes):
    center = 2 * allele_frequencies(genotypes)
    gc = genotypes - center
    clip = 3.0
    norms = _person_band_norms(gc, 4)
    assert (norms > clip).any()
    w = np.minimum(1, clip / norms)
    total = band_products(gc, 4, w)
    for i in (0, 17, 123):  # replace person i by the null record (contributes nothing)
        without = band_products(np.delete(gc, i, axis=0), 4, np.delete(w, i))
        assert np.linalg.norm(total - without) <= clip + 1e-9


def test_dp_correlation_prior_approaches_truth_with_little_noise(genotypes):
    acc = PrivacyAccountant()
    center = 2 * allele_frequencies(genotypes)
    priv = dp_correlation_prior(genotypes, window=5, clip=1e3, noise_multiplier=1e-9, center=center,
                                rng=np.random.default_rng(0), accountant=acc)  # fmt: skip
    np.testing.assert_allclose(priv, correlation_band(genotypes, window=5), atol=1e-6)
    assert acc.events[0]["name"] == "correlation_prior" and acc.events[0]["kind"] == "gaussian"
    # with real noise the error grows and stays bounded in [-1, 1]
    noisy = dp_correlation_prior(genotypes, window=5, clip=20.0, noise_multiplier=0.5, center=center,
                                 rng=np.random.default_rng(1))  # fmt: skip
    assert noisy.shape == (40, 5) and np.abs(noisy).max() <= 1.0
    assert (noisy[-1] == 0).all()
    err = np.abs(noisy - correlation_band(genotypes, window=5))[:-5].mean()
    assert 0.005 < err < 0.3
    with pytest.raises(PrivacyError, match="dp_allele_frequencies"):
        dp_correlation_prior(genotypes, window=5, clip=1.0, noise_multiplier=1.0, center=None,
                             rng=np.random.default_rng(0))  # fmt: skip


def test_missing_genotypes_are_refused(genotypes):
    g = genotypes.copy()
    g[0, 0] = -1
    with pytest.raises(InputError, match="impute"):
        dp_allele_frequencies(g, noise_multiplier=1.0, rng=np.random.default_rng(0))


# ----------------------------------------------------------------------------------------------
# allele frequencies
# ----------------------------------------------------------------------------------------------


def test_dp_allele_frequencies(genotypes):
    truth = allele_frequencies(genotypes)
    acc = PrivacyAccountant()
    close = dp_allele_frequencies(genotypes, noise_multiplier=1e-9, rng=np.random.default_rng(0),
                                  accountant=acc)  # fmt: skip
    np.testing.assert_allclose(close, truth, atol=1e-8)
    assert acc.events[0]["name"] == "allele_frequencies"
    z, n, v = 2.0, *genotypes.shape
    draws = np.array([dp_allele_frequencies(genotypes, noise_multiplier=z, rng=np.random.default_rng(s))
                      for s in range(300)])  # fmt: skip
    expected_sd = z * 2 * math.sqrt(v) / (2 * n)  # sensitivity ploidy*sqrt(V), divided by ploidy*n
    inner = (truth > 0.2) & (truth < 0.8)  # away from the [0, 1] clamp
    assert np.median(draws[:, inner].std(axis=0)) == pytest.approx(expected_sd, rel=0.1)
    assert ((draws >= 0) & (draws <= 1)).all()


# ----------------------------------------------------------------------------------------------
# SNP selection
# ----------------------------------------------------------------------------------------------


def test_association_scores_have_bounded_sensitivity(genotypes):
    rng = np.random.default_rng(3)
    y = (genotypes[:, 5] + rng.normal(size=genotypes.shape[0]) > 1.5).astype(float)
    center = 2 * allele_frequencies(genotypes)  # stands in for public frequencies
    scores, sens = clipped_association_scores(genotypes, y, genotype_center=center, phenotype_center=0.5, clip=0.6)
    assert sens == 0.6 and scores.shape == (40,)
    assert np.argmax(scores) in range(4, 8)  # the causal SNP's LD block
    for i in range(0, 300, 37):  # zero out person i
        g0, y0 = genotypes.copy(), y.copy()
        g0[i], y0[i] = center, 0.5  # the null record contributes exactly 0
        s0, _ = clipped_association_scores(g0, y0, genotype_center=center, phenotype_center=0.5, clip=0.6)
        assert np.abs(scores - s0).max() <= 0.6 + 1e-12


def test_noisy_top_k_follows_the_exponential_mechanism():
    scores = np.array([0.0, 1.0, 2.0, -50.0])
    rng = np.random.default_rng(0)
    picks = np.array([noisy_top_k(scores, 1, sensitivity=1.0, noise_multiplier=2.0, rng=rng)[0]
                      for _ in range(20_000)])  # fmt: skip
    freq = np.bincount(picks, minlength=4) / picks.size
    expected = np.exp(scores / 2.0) / np.exp(scores / 2.0).sum()  # exp(eps0 u / (2 sens)), eps0 = 2/z
    np.testing.assert_allclose(freq, expected, atol=0.012)
    acc = PrivacyAccountant()
    sel = noisy_top_k(np.arange(100.0) * 100, 10, sensitivity=1.0, noise_multiplier=1.0,
                      rng=np.random.default_rng(1), accountant=acc)  # fmt: skip
    np.testing.assert_array_equal(sel, np.arange(99, 89, -1))  # clear winners, in order
    assert len(set(sel.tolist())) == 10
    assert acc.events == [{"name": "snp_selection", "kind": "top_k", "noise_multiplier": 1.0, "k": 10, "count": 1}]
    with pytest.raises(InputError):
        noisy_top_k(scores, 5, sensitivity=1.0, noise_multiplier=1.0, rng=rng)


# ----------------------------------------------------------------------------------------------
# what is released about the privacy accounting itself
# ----------------------------------------------------------------------------------------------


def _run_all_mechanisms(g, seed):
    """Every mechanism on cohort ``g``; returns the accountant's report."""
    import json

    from genosynth.privacy import DPSGD

    acc = PrivacyAccountant()
    rng = np.random.default_rng(seed)
    p = dp_allele_frequencies(g, noise_multiplier=20.0, rng=rng, accountant=acc)
    dp_correlation_prior(g, window=3, clip=10.0, noise_multiplier=5.0, center=2 * p, rng=rng, accountant=acc)
    y = (g[:, 0] > 0).astype(float)
    scores, sens = clipped_association_scores(g, y, genotype_center=2 * p, phenotype_center=0.5, clip=1.0)
    noisy_top_k(scores, 5, sensitivity=sens, noise_multiplier=30.0, rng=rng, accountant=acc)
    lat = torch.as_tensor(g[:, :8], dtype=torch.float32).reshape(-1, 2, 4)
    release_stage1_latents(lat, latent_clip=2.0, alpha_bar=0.01, rng=torch.Generator().manual_seed(seed),
                           accountant=acc)  # fmt: skip
    model = torch.nn.Linear(8, 1)
    n = g.shape[0]
    dp = DPSGD(model, torch.optim.SGD(model.parameters(), lr=0.1), noise_multiplier=1.0, max_grad_norm=1.0,
               expected_batch_size=0.1 * n, sample_rate=0.1, n_samples=n, accountant=acc,
               rng=torch.Generator().manual_seed(seed), name="diffusion/stage2")  # fmt: skip
    x = torch.as_tensor(g[:, :8], dtype=torch.float32)
    for idx in dp.batches(3):
        dp.step(lambda fwd, a: fwd(a).pow(2).mean(), (x[idx],))
    return json.dumps(acc.report(1e-5), sort_keys=True), acc


def test_privacy_report_depends_on_parameters_only(genotypes):
    """The released report (checkpoint, log, sample outputs) is identical for two different
    cohorts of the same size: it carries no private statistic or per-person value."""
    other = np.random.default_rng(99).integers(0, 3, size=genotypes.shape).astype(float)
    rep_a, acc = _run_all_mechanisms(genotypes, seed=1)
    rep_b, _ = _run_all_mechanisms(other, seed=2)
    assert rep_a == rep_b
    allowed = {"name", "kind", "noise_multiplier", "sample_rate", "latent_clip", "alpha_bar", "k", "rho", "count"}
    assert all(set(ev) <= allowed for ev in acc.events)
    assert [ev["name"] for ev in acc.events] == ["allele_frequencies", "correlation_prior", "snp_selection",
                                                 "diffusion/stage1", "diffusion/stage2"]  # fmt: skip


def test_low_rank_denoiser_cuts_the_error_of_a_low_rank_release_and_keeps_its_rank():
    from genosynth.privacy.mechanisms import denoise_low_rank

    rng = np.random.default_rng(11)
    m, n, sigma = 26, 400, 1.0
    # rank-3 truth whose singular values (about 60, 45, 30) sit above the noise edge sigma (sqrt m + sqrt n) ~ 25
    u, _ = np.linalg.qr(rng.normal(size=(m, 3)))  # (m, 3)
    v, _ = np.linalg.qr(rng.normal(size=(n, 3)))  # (n, 3)
    truth = (u * np.array([60.0, 45.0, 30.0])) @ v.T  # (m, n)
    noisy = truth + rng.normal(0.0, sigma, size=(m, n))
    est, rank = denoise_low_rank(noisy, noise_sd=sigma)
    err_raw, err_est = np.linalg.norm(noisy - truth), np.linalg.norm(est - truth)
    assert rank == 3
    assert err_est < 0.4 * err_raw  # ~0.27 here: the noise off the 3 signal directions is removed
    # a truncated SVD at the same rank without shrinkage keeps the noise inflation of the kept values
    uu, ss, vv = np.linalg.svd(noisy, full_matrices=False)
    hard = (uu[:, :3] * ss[:3]) @ vv[:3]
    assert err_est < np.linalg.norm(hard - truth)
    # transposed input, transposed output; pure noise is all below the edge
    est_t, rank_t = denoise_low_rank(noisy.T, noise_sd=sigma)
    assert rank_t == 3 and np.allclose(est_t, est.T)
    pure = rng.normal(0.0, sigma, size=(m, n))
    zero, r0 = denoise_low_rank(pure, noise_sd=sigma)
    # the top singular value of pure noise sits near the edge (Tracy-Widom): at most one may cross, shrunk to ~0
    assert r0 <= 1 and np.linalg.norm(zero) < 0.1 * np.linalg.norm(pure)
    with pytest.raises(PrivacyError, match="noise_sd"):
        denoise_low_rank(noisy, noise_sd=0.0)
