"""Correlation-guided decoding: prior, banded factor, copula sampler, latent guidance."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from genosynth.models.ld_prior import CorrelationPrior, CorrGuideConfig, previous_counts
from genosynth.sampling.ld_guidance import band_correlation_from_moments, banded_factor, batch_band_correlation, copula_sample, frequency_shift, guided_decode, latent_guidance, mix_marginals, reach_weights, sample_markov_gaussian, solve_residual_band
from genosynth.training.ld_fit import fit_prior
from genosynth.errors import InputError


def ar_band(v: int, w: int, rho: float) -> np.ndarray:
    """Band of an AR(1)-like correlation ``rho ** lag`` (entries past the end are 0)."""
    band = np.zeros((v, w))
    for lag in range(1, w + 1):
        band[: v - lag, lag - 1] = rho ** lag
    return band


def lag_corr(x: np.ndarray, lag: int) -> np.ndarray:
    c = np.corrcoef(x.astype(float), rowvar=False)
    return np.array([c[j, j + lag] for j in range(x.shape[1] - lag)])


# ---------------------------------------------------------------------------------- geometry
def test_previous_counts_respects_window_chromosomes_and_distance():
    chrom = ["1"] * 5 + ["2"] * 4
    pos = [100, 200, 300, 5_000, 5_100, 10, 20, 30, 40]
    k = previous_counts(9, 3, chrom=chrom, pos=pos, max_bp=1_000)
    # SNP 3 (pos 5000) is > 1 kb from 300; SNP 5 starts chromosome 2
    assert k.tolist() == [0, 1, 2, 0, 1, 0, 1, 2, 3]
    assert previous_counts(5, 2).tolist() == [0, 1, 2, 2, 2]


# ---------------------------------------------------------------------------------- banded factor
def test_banded_factor_reproduces_a_valid_band_with_unit_variance():
    v, w = 40, 3
    resid = ar_band(v, w, 0.8)
    k = previous_counts(v, w)
    beta, s, real = banded_factor(resid, k)
    np.testing.assert_allclose(real[: v - w], resid[: v - w], atol=2e-3)  # feasible: reproduced (up to ridge)
    u = sample_markov_gaussian(beta, s, k, 20_000, rng=torch.Generator().manual_seed(0)).numpy()
    np.testing.assert_allclose(u.std(0), 1.0, atol=0.03)
    assert abs(lag_corr(u, 1).mean() - 0.8) < 0.02
    assert abs(lag_corr(u, 3).mean() - 0.512) < 0.02


@pytest.mark.parametrize("v,w", [(300, 64), (257, 5), (40, 0), (100, 200)])
def test_markov_draw_in_blocks_is_the_snp_by_snp_recursion(v, w):
    rng = np.random.default_rng(v + w)
    beta = rng.normal(0, 0.3 / max(w, 1), (v, w))  # (V, w)
    s = rng.uniform(0.5, 1.5, v)
    k = previous_counts(v, min(w, v))
    k[v // 3: v // 3 + 4] = 0  # a chromosome start in the middle
    k[v // 2] = min(w, 2)  # a SNP whose far partners are out of reach
    n = 7
    u = sample_markov_gaussian(beta, s, k, n, rng=torch.Generator().manual_seed(3)).numpy()  # (n, V)
    eps = torch.randn(n, v, generator=torch.Generator().manual_seed(3), dtype=torch.float64).numpy()
    ref = np.empty((n, v))
    for j in range(v):  # u_j = sum_a beta[j, a-1] u_{j-a} + s_j eps_j; an unconstrained SNP is eps_j
        kj = int(min(k[j], w))
        ref[:, j] = eps[:, j] if kj == 0 else ref[:, j - kj:j] @ beta[j, :kj][::-1] + s[j] * eps[:, j]
    np.testing.assert_allclose(u, ref, rtol=0, atol=1e-12)


def test_banded_factor_survives_an_infeasible_band():
    v, w = 30, 4
    resid = np.zeros((v, w))
    resid[:, 0] = 0.99
    resid[:, 1] = -0.99  # lag-1 0.99 and lag-2 -0.99 cannot hold together
    k = previous_counts(v, w)
    beta, s, real = banded_factor(resid, k, var_floor=1e-2)
    assert np.isfinite(beta).all() and (s >= 0.1 - 1e-9).all()
    u = sample_markov_gaussian(beta, s, k, 20_000, rng=torch.Generator().manual_seed(1)).numpy()
    np.testing.assert_allclose(u.std(0), 1.0, atol=0.03)  # marginals stay standard normal
    assert lag_corr(u, 1).mean() > 0.5  # the strongest constraint is kept


# ---------------------------------------------------------------------------------- copula sampler
def test_copula_reproduces_a_known_band_from_constant_marginals():
    v, w, n = 60, 4, 6000
    prior = CorrelationPrior(bands=ar_band(v, w, 0.6)[None], labels=["A"], window=w)
    probs = torch.full((n, v), 0.5, dtype=torch.float64)  # a "decoder" with constant marginals
    gen = torch.Generator().manual_seed(0)
    x = copula_sample(probs, prior, None, rng=gen, config=CorrGuideConfig(window=w)).numpy()
    assert x.dtype == np.int8 and x.shape == (n, v)
    assert np.abs(x.mean(0) - 0.5).max() < 0.035
    assert abs(lag_corr(x, 1).mean() - 0.6) < 0.03
    assert abs(lag_corr(x, 2).mean() - 0.36) < 0.03
    # independent draws from the same marginals carry no LD
    from genosynth.models.vae import sample_alleles

    xi = sample_alleles(torch.stack([1 - probs, probs], 1).log(), rng=torch.Generator().manual_seed(0))
    assert abs(lag_corr(xi.numpy(), 1).mean()) < 0.03


def test_copula_genotype_classes_keep_marginals_and_match_dosage_correlation():
    v, w, n, p = 30, 2, 6000, 0.3
    prior = CorrelationPrior(bands=ar_band(v, w, 0.5)[None], labels=["A"], window=w)
    hwe = torch.tensor([(1 - p) ** 2, 2 * p * (1 - p), p * p], dtype=torch.float64)
    probs = hwe[None, :, None].expand(n, 3, v).clone()
    x = copula_sample(probs, prior, rng=torch.Generator().manual_seed(2), config=CorrGuideConfig(window=w))
    x = x.numpy()
    assert set(np.unique(x)) == {0, 1, 2}
    freq = np.stack([(x == c).mean(0) for c in range(3)], 1)  # (V, 3)
    np.testing.assert_allclose(freq.mean(0), hwe.numpy(), atol=0.01)
    assert abs(lag_corr(x, 1).mean() - 0.5) < 0.03


def test_copula_subtracts_the_ld_already_explained_by_the_marginals():
    # two groups of rows with opposite frequencies: independent draws already have LD 0.36 at
    # every pair; a prior of 0.36 then needs no residual dependence (doubling it would be wrong)
    v, n = 20, 6000
    p = torch.where(torch.arange(n)[:, None] < n // 2, 0.2, 0.8).double().expand(n, v).clone()
    target = 0.36
    band = np.zeros((v, 2))
    band[:-1, 0] = target
    band[:-2, 1] = target
    prior = CorrelationPrior(bands=band[None], labels=["A"], window=2)
    probs2 = torch.stack([1 - p, p], 1)
    calib = probs2[torch.linspace(0, n - 1, 64).round().long()]
    resid = solve_residual_band(calib, band, previous_counts(v, 2))
    assert np.abs(resid).max() < 0.05
    x = copula_sample(p, prior, rng=torch.Generator().manual_seed(3), config=CorrGuideConfig(window=2))
    assert abs(lag_corr(x.numpy(), 1).mean() - target) < 0.03


def test_copula_uses_each_labels_band_and_is_deterministic():
    v, w, n = 24, 2, 4000
    bands = np.stack([ar_band(v, w, 0.7), np.zeros((v, w))])
    prior = CorrelationPrior(bands=bands, labels=["A", "B"], window=w)
    labels = torch.arange(n) % 2
    probs = torch.full((n, v), 0.5, dtype=torch.float64)
    cfg = CorrGuideConfig(window=w)
    x1 = copula_sample(probs, prior, labels, rng=torch.Generator().manual_seed(5), config=cfg)
    x2 = copula_sample(probs, prior, labels, rng=torch.Generator().manual_seed(5), config=cfg)
    assert torch.equal(x1, x2)
    xa, xb = x1[labels == 0].numpy(), x1[labels == 1].numpy()
    assert abs(lag_corr(xa, 1).mean() - 0.7) < 0.04
    assert abs(lag_corr(xb, 1).mean()) < 0.04


def test_copula_leaves_pairs_across_chromosomes_unconstrained():
    v, n = 10, 5000
    prior = CorrelationPrior(bands=ar_band(v, 1, 0.9)[None], labels=["A"], window=1)
    chrom = ["1"] * 5 + ["2"] * 5
    pos = list(range(1, 6)) * 2
    x = copula_sample(torch.full((n, v), 0.5, dtype=torch.float64), prior, rng=torch.Generator().manual_seed(6),
                      config=CorrGuideConfig(window=1), chrom=chrom, pos=pos).numpy()
    r = lag_corr(x, 1)
    assert abs(r[4]) < 0.05  # SNPs 4 and 5 are on different chromosomes
    assert np.delete(r, 4).min() > 0.85


def test_copula_checks_the_snp_count():
    prior = CorrelationPrior(bands=np.zeros((1, 5, 2)), labels=["A"], window=2)
    with pytest.raises(InputError, match="5 SNPs"):
        copula_sample(torch.full((4, 6), 0.5), prior)


def sharp_probs(n: int, v: int, *, seed: int) -> torch.Tensor:
    """ALT probabilities near 0 or 1, drawn independently per row and SNP (a confident decoder that
    carries no LD): independent draws from them have r ~ 0 and rows leave a copula little room."""
    gen = torch.Generator().manual_seed(seed)
    return torch.where(torch.rand(n, v, generator=gen, dtype=torch.float64) < 0.5, 0.02, 0.98)


def test_reach_weights_mix_only_where_the_prior_is_out_of_reach():
    v, w, n = 12, 2, 64
    band = ar_band(v, w, 0.9)
    k = previous_counts(v, w)
    sharp = torch.stack([1 - sharp_probs(n, v, seed=0), sharp_probs(n, v, seed=0)], 1)  # (n, 2, V)
    lam = reach_weights(sharp, band, k)
    assert lam.shape == (v,) and (lam > 0).all() and (lam <= 1).all()  # 0.9 cannot come from such rows
    assert not reach_weights(sharp, band, k, max_partners=2).any()  # a dense band (4 partners each) keeps its rows
    flat = torch.full((n, 2, v), 0.5, dtype=torch.float64)
    assert not reach_weights(flat, ar_band(v, w, 0.6), k).any()  # constant marginals: within reach already
    mixed = mix_marginals(sharp, lam)
    torch.testing.assert_close(mixed.mean(0), sharp.mean(0))  # the label's frequencies are kept
    assert mix_marginals(sharp, np.zeros(v)) is sharp


def test_copula_only_decoding_reaches_the_prior_from_sharp_marginals():
    v, w, n, rho = 16, 2, 4000, 0.85
    prior = CorrelationPrior(bands=ar_band(v, w, rho)[None], labels=["A"], window=w)
    p = sharp_probs(n, v, seed=1)
    labels = torch.zeros(n, dtype=torch.long)
    got = {}
    for reach in ("copula", "never"):
        cfg = CorrGuideConfig(method="copula", window=w, reach=reach)
        got[reach] = copula_sample(p, prior, labels, rng=torch.Generator().manual_seed(2), config=cfg).numpy()
    assert abs(lag_corr(got["copula"], 1).mean() - rho) < 0.05
    assert lag_corr(got["never"], 1).mean() < rho - 0.3  # the residual alone has no room left
    np.testing.assert_allclose(got["copula"].mean(0), p.mean(0).numpy(), atol=0.03)  # frequencies kept
    # the default decoding (latent+copula) keeps its copula as it was
    a = copula_sample(p, prior, labels, rng=torch.Generator().manual_seed(2), config=CorrGuideConfig(window=w))
    b = copula_sample(p, prior, labels, rng=torch.Generator().manual_seed(2),
                      config=CorrGuideConfig(method="copula", window=w, reach="never"))
    assert torch.equal(a, b)


def test_copula_only_decoding_reaches_the_prior_from_sharp_genotype_classes():
    v, w, n = 12, 2, 3000
    prior = CorrelationPrior(bands=ar_band(v, w, 0.8)[None], labels=["A"], window=w)
    cls = torch.randint(0, 3, (n, v), generator=torch.Generator().manual_seed(0))
    probs = torch.full((n, 3, v), 0.01, dtype=torch.float64).scatter_(1, cls[:, None, :], 0.98)  # (n, 3, V)
    cfg = CorrGuideConfig(method="copula", window=w)
    x = copula_sample(probs, prior, torch.zeros(n, dtype=torch.long), rng=torch.Generator().manual_seed(1),
                      config=cfg).numpy()
    assert abs(lag_corr(x, 1).mean() - 0.8) < 0.06
    expected = (probs[:, 1] + 2 * probs[:, 2]).mean(0).numpy()  # (V,) the label's mean dosage is kept
    np.testing.assert_allclose(x.mean(0), expected, atol=0.06)


def test_frequency_shift_moves_only_pairs_beyond_their_frechet_bound():
    band = np.array([[0.95], [0.2], [-0.9], [0.0]])  # pairs (0,1), (1,2), (2,3)
    alt = np.array([0.30, 0.40, 0.45, 0.40])
    k = previous_counts(4, 1)
    shift = frequency_shift(alt, band, k, np.ones(4), cap=0.05)

    def bound(a, b):
        lo, hi = min(a, b), max(a, b)
        return np.sqrt(lo * (1 - hi) / (hi * (1 - lo)))

    assert bound(0.30, 0.40) < 0.95 and bound(*(alt[:2] + shift[:2])) >= 0.95 - 1e-9  # moved just enough
    assert shift[0] > 0 > shift[1] and max(abs(shift[0]), abs(shift[1])) <= 0.05
    b = alt + shift
    assert bound(b[2], 1 - b[3]) >= 0.9 - 1e-9 and shift[2] > 0 and shift[3] > 0  # negative prior: towards a + b = 1
    assert not frequency_shift(alt, band, k, np.zeros(4), cap=0.05).any()  # only fully mixed SNPs move


# ---------------------------------------------------------------------------------- prior




# ---------------------------------------------------------------------------------- latent guidance
def test_latent_guidance_pulls_batch_ld_towards_the_prior():
    torch.manual_seed(0)
    b, c, t, v, w = 256, 2, 4, 8, 2
    weight = torch.randn(c * t, v) * 0.3

    def decode(z, labels):  # a toy decoder: logits of ALT are a linear map of z
        alt = z.reshape(z.shape[0], -1) @ weight  # (B, V)
        return torch.stack([torch.zeros_like(alt), alt], dim=1)  # (B, 2, V)

    prior = CorrelationPrior(bands=ar_band(v, w, 0.6)[None], labels=["A"], window=w)
    z = torch.randn(b, c, t, generator=torch.Generator().manual_seed(1))
    labels = torch.zeros(b, dtype=torch.long)
    cfg = CorrGuideConfig(method="latent", window=w, latent_steps=30, latent_lr=0.1)

    def err(zz):
        corr, _ = batch_band_correlation(torch.softmax(decode(zz, labels), 1), w)
        return float((corr[: v - 2] - torch.from_numpy(prior.bands[0][: v - 2])).abs().mean())

    z2 = latent_guidance(decode, z, labels, prior, config=cfg)
    assert z2.shape == z.shape and not z2.requires_grad
    assert err(z2) < 0.6 * err(z)


def test_batch_band_correlation_matches_a_direct_computation():
    """The blockwise matrix products give, pair by pair, the correlation over rows and allele draws."""
    gen = torch.Generator().manual_seed(4)
    n, v, w = 40, 23, 5  # V not a multiple of the window: the last block is short
    probs = torch.softmax(torch.randn(n, 3, v, generator=gen, dtype=torch.float64), dim=1)  # genotype classes
    corr, mbar = batch_band_correlation(probs, w)
    vals = torch.arange(3, dtype=torch.float64)
    m = (probs * vals[None, :, None]).sum(1)  # (n, V) expected dosage per row
    var = (probs * vals[None, :, None] ** 2).sum(1).mean(0) - m.mean(0) ** 2  # mixture variance
    assert corr.shape == (v, w) and torch.allclose(mbar, m.mean(0))
    for j in range(v):
        for lag in range(1, w + 1):
            if j + lag >= v:
                assert corr[j, lag - 1] == 0
                continue
            cov = ((m[:, j] - m[:, j].mean()) * (m[:, j + lag] - m[:, j + lag].mean())).mean()
            assert torch.isclose(corr[j, lag - 1], cov / (var[j] * var[j + lag]).sqrt(), atol=1e-12)


def test_band_correlation_gradient_is_deterministic_at_a_wide_band():
    """Same input, same gradient: a wide band over many rows must not go through a threaded scatter-add."""
    gen = torch.Generator().manual_seed(5)
    m = torch.rand(600, 2000, generator=gen)
    e2 = m + 0.1
    weights = torch.randn(2000, 729, generator=gen)
    grads = []
    for _ in range(3):
        leaf = m.clone().requires_grad_(True)
        corr, _ = band_correlation_from_moments(leaf, e2, 729)
        (corr * weights).sum().backward()
        grads.append(leaf.grad)
    assert all(torch.equal(grads[0], g) for g in grads[1:])


def test_latent_guidance_uses_its_own_window_beyond_the_copula_band():
    """Pairs beyond ``window`` but within ``latent_window`` are pulled to the prior; beyond it they are not."""
    torch.manual_seed(0)
    b, c, t, v = 256, 2, 4, 10
    weight = torch.randn(c * t, v) * 0.3

    def decode(z, labels):
        alt = z.reshape(z.shape[0], -1) @ weight  # (B, V)
        return torch.stack([torch.zeros_like(alt), alt], dim=1)  # (B, 2, V)

    w = 6
    band = np.zeros((v, w))
    band[: v - 4, 3] = 0.7  # only lag 4 is constrained
    prior = CorrelationPrior(bands=band[None], labels=["A"], window=w)
    z = torch.randn(b, c, t, generator=torch.Generator().manual_seed(1))
    labels = torch.zeros(b, dtype=torch.long)

    def lag4_err(zz):
        corr, _ = batch_band_correlation(torch.softmax(decode(zz, labels), 1), w)
        return float((corr[: v - 4, 3] - 0.7).abs().mean())

    wide = CorrGuideConfig(method="latent", window=1, latent_window=6, latent_steps=30, latent_lr=0.1)
    narrow = CorrGuideConfig(method="latent", window=6, latent_window=3, latent_steps=30, latent_lr=0.1)
    assert lag4_err(latent_guidance(decode, z, labels, prior, config=wide)) < 0.6 * lag4_err(z)
    assert lag4_err(latent_guidance(decode, z, labels, prior, config=narrow)) > 0.9 * lag4_err(z)
    with pytest.raises(InputError, match="latent guidance window"):
        CorrGuideConfig(latent_window=0)


def test_latent_guidance_in_chunks_equals_one_graph():
    """Back-propagating the batch loss chunk by chunk through the decoder gives the same steps."""
    torch.manual_seed(0)
    b, c, t, v, w = 90, 2, 3, 12, 4
    weight = torch.randn(c * t, 2 * v) * 0.4

    def decode(z, labels):  # genotype classes from a linear map of z
        h = (z.reshape(z.shape[0], -1) @ weight).reshape(-1, 2, v)
        return torch.cat([torch.zeros(z.shape[0], 1, v), h], dim=1)  # (B, 3, V)

    prior = CorrelationPrior(bands=np.stack([ar_band(v, w, 0.5), ar_band(v, w, -0.3)]), labels=["A", "B"],
                             window=w)
    z = torch.randn(b, c, t, generator=torch.Generator().manual_seed(1))
    labels = torch.arange(b) % 2
    one = CorrGuideConfig(method="latent", window=w, latent_steps=5, latent_lr=0.1)
    chunked = CorrGuideConfig(method="latent", window=w, latent_steps=5, latent_lr=0.1, latent_chunk_cells=25 * v)
    a = latent_guidance(decode, z, labels, prior, config=one)
    b_ = latent_guidance(decode, z, labels, prior, config=chunked)  # 4 chunks of 25, 25, 25, 15 rows
    assert not torch.equal(a, z)
    torch.testing.assert_close(a, b_, rtol=1e-4, atol=1e-5)
    # a batch with no label of two rows has nothing to correlate: the latents come back as drawn
    assert torch.equal(latent_guidance(decode, z[:2], labels[:2], prior, config=one), z[:2])


def test_guided_decode_none_is_plain_sampling_and_guided_needs_a_prior():
    from genosynth.models.vae import sample_alleles

    logits = torch.randn(16, 2, 10, generator=torch.Generator().manual_seed(0))

    def decode(z, labels):
        return logits

    z = torch.zeros(16, 1, 1)
    a = guided_decode(decode, z, None, None, rng=torch.Generator().manual_seed(3),
                      config=CorrGuideConfig(method="none"))
    b = sample_alleles(logits, rng=torch.Generator().manual_seed(3))
    assert torch.equal(a, b)
    with pytest.raises(InputError, match="corr-guidance"):
        guided_decode(decode, z, None, None, config=CorrGuideConfig(method="copula"))
    with pytest.raises(InputError, match="corr-guidance"):
        CorrGuideConfig(method="bogus")


def test_copula_covariance_matches_scipy_bivariate_normal():
    from scipy.stats import multivariate_normal, norm

    from genosynth.sampling.ld_guidance import _copula_cov, _gauss_legendre

    nodes, weights = _gauss_legendre(8)
    for a, b, r in [(0.3, -0.5, 0.5), (1.2, 1.0, 0.9), (-0.7, 0.4, -0.6), (0.0, 0.0, 0.99)]:
        ta = torch.tensor([[[a]]], dtype=torch.float64)
        tb = torch.tensor([[[b]]], dtype=torch.float64)
        g, dg = _copula_cov(ta, tb, torch.tensor([np.arcsin(r)], dtype=torch.float64), nodes, weights)
        exact = multivariate_normal(mean=[0, 0], cov=[[1, r], [r, 1]]).cdf([a, b]) - norm.cdf(a) * norm.cdf(b)
        assert abs(float(g) - exact) < 1e-6
        # derivative in theta = bivariate density * cos(theta)
        dens = multivariate_normal(mean=[0, 0], cov=[[1, r], [r, 1]]).pdf([a, b]) * np.sqrt(1 - r * r)
        assert abs(float(dg) - dens) < 1e-9


def test_copula_covariance_of_many_rows_classes_and_chunks_matches_scipy():
    """The chunked form: mean over rows, sum over class thresholds, any chunking (1, 3 or all pairs per chunk)."""
    from scipy.stats import multivariate_normal, norm

    from genosynth.sampling.ld_guidance import _copula_cov, _gauss_legendre

    rng = np.random.default_rng(3)
    n, s, p = 5, 2, 7
    a, b = rng.normal(size=(n, s, p)), rng.normal(size=(n, s, p))
    theta = rng.uniform(-1.2, 1.2, size=p)
    nodes, weights = _gauss_legendre(8)
    ta, tb, tt = (torch.from_numpy(x) for x in (a, b, theta))
    for pairs in (1, 3, 64):  # a temporary of n S S (nodes + 1) values per pair
        g, dg = _copula_cov(ta, tb, tt, nodes, weights, cells=pairs * n * s * s * 9)
        _, d_only = _copula_cov(ta, tb, tt, None, None, cells=pairs * n * s * s)
        torch.testing.assert_close(d_only, dg, rtol=0, atol=1e-15)
        for j in range(p):
            r = np.sin(theta[j])
            mvn = multivariate_normal(mean=[0, 0], cov=[[1, r], [r, 1]])
            exact = np.mean([sum(mvn.cdf([a[i, u, j], b[i, t, j]]) - norm.cdf(a[i, u, j]) * norm.cdf(b[i, t, j])
                                 for u in range(s) for t in range(s)) for i in range(n)])
            slope = np.mean([sum(mvn.pdf([a[i, u, j], b[i, t, j]]) * np.cos(theta[j])
                                 for u in range(s) for t in range(s)) for i in range(n)])
            assert abs(float(g[j]) - exact) < 1e-6
            assert abs(float(dg[j]) - slope) < 1e-9


def test_ridge_is_the_least_that_caps_the_explained_variance():
    from genosynth.sampling.ld_guidance import _ridge_for, _ridge_solve

    rng = np.random.default_rng(4)
    x = rng.normal(size=(40, 6))
    S = np.corrcoef(x, rowvar=False)  # (6, 6) PSD
    ev, vec = np.linalg.eigh(S)
    for r, q_max in [(np.full(6, 0.9), 0.99), (rng.uniform(-0.8, 0.8, 6), 0.5), (np.full(6, 0.01), 0.99)]:
        c = vec.T @ r
        e = np.maximum(ev, 0)
        d = _ridge_for(e, c, 1e-3, q_max)
        assert d >= 1e-3 and float(np.sum(e * c * c / (e + d) ** 2)) <= q_max * (1 + 1e-12)
        if d > 1e-3:  # no smaller ridge would do
            assert float(np.sum(e * c * c / (e + d * (1 - 1e-6)) ** 2)) > q_max
        for start in (None, 1e-3, d, 0.5 * d, 3 * d, 1e6):  # any first guess finds the same least ridge
            b, got = _ridge_solve(S, r, ridge=1e-3, q_max=q_max, start=start)
            assert got == pytest.approx(d, rel=1e-7)
            np.testing.assert_allclose(b, np.linalg.solve(S + d * np.eye(6), r), rtol=1e-7, atol=1e-10)


def test_copula_cache_reuses_factors_across_batches():
    v, w, n = 12, 2, 200
    prior = CorrelationPrior(bands=ar_band(v, w, 0.5)[None], labels=["A"], window=w)
    probs = torch.full((n, v), 0.4, dtype=torch.float64)
    cfg = CorrGuideConfig(window=w)
    cache: dict = {}
    a = copula_sample(probs, prior, torch.zeros(n, dtype=torch.long), rng=torch.Generator().manual_seed(0),
                      config=cfg, cache=cache)
    assert list(cache) == [0]
    cache[0] = (np.zeros_like(cache[0][0]), np.ones_like(cache[0][1]), None)  # a cached factor is used as is
    b = copula_sample(probs, prior, torch.zeros(n, dtype=torch.long), rng=torch.Generator().manual_seed(0),
                      config=cfg, cache=cache)
    c = copula_sample(probs, prior, torch.zeros(n, dtype=torch.long), rng=torch.Generator().manual_seed(0),
                      config=cfg)
    assert torch.equal(a, c) and not torch.equal(a, b)




def test_guided_decode_through_a_genotype_vae_is_deterministic(sim_cohort):
    from genosynth.models.vae import GenotypeVAE, VAEConfig

    c = sim_cohort.subset(variants=np.arange(40))
    prior = fit_prior(c, window=8)
    torch.manual_seed(0)
    vae = GenotypeVAE(40, 2, len(prior.labels), VAEConfig(patch=8, snp_dim=4, width=16, latent_channels=2, blocks=1))
    z = torch.randn(32, 2, vae.n_tokens, generator=torch.Generator().manual_seed(1))
    labels = torch.arange(32) % len(prior.labels)
    cfg = CorrGuideConfig(method="latent+copula", window=8, latent_steps=3)
    chrom, pos = c.variants["chrom"].to_numpy(), c.variants["pos"].to_numpy()
    runs = [guided_decode(vae.decode, z, labels, prior, rng=torch.Generator().manual_seed(2), config=cfg,
                          chrom=chrom, pos=pos) for _ in range(2)]
    assert runs[0].dtype == torch.int8 and runs[0].shape == (32, 40)
    assert torch.equal(runs[0], runs[1])
    assert set(torch.unique(runs[0]).tolist()) <= {0, 1}




def test_narrow_band_by_lag_equals_block_form(monkeypatch):
    """Bands of a few lags take the elementwise path; values and gradients equal the block form."""
    import genosynth.sampling.ld_guidance as ldg

    gen = torch.Generator().manual_seed(0)
    m = (torch.rand(200, 37, generator=gen, dtype=torch.float64) * 2).requires_grad_(True)
    e2 = (m.detach() ** 2 + 0.1).requires_grad_(True)
    for w in (1, 4, 16):
        lag, mbar = ldg.band_correlation_from_moments(m, e2, w)
        g_lag = torch.autograd.grad(lag.pow(2).sum(), (m, e2))
        monkeypatch.setattr(ldg, "_LAG_LOOP_MAX", 0)
        block, _ = ldg.band_correlation_from_moments(m, e2, w)
        g_block = torch.autograd.grad(block.pow(2).sum(), (m, e2))
        monkeypatch.setattr(ldg, "_LAG_LOOP_MAX", 16)
        assert lag.shape == (37, w) and torch.allclose(lag, block, atol=1e-12)
        assert all(torch.allclose(a, b, atol=1e-10) for a, b in zip(g_lag, g_block))
        assert float(lag[-1].abs().max()) == 0.0  # no pair past the last SNP


def test_residual_solve_leaves_no_reachable_pair_unsolved():
    """Every pair the bracketed Newton iteration can reach ends at its root: a converged pair is never
    pushed out of its bracket by a later bisection step (it once was, about 1 pair in 17,000).
    Pairs whose first step is below ``small`` keep that one step by design."""
    from genosynth.models.ld_prior import previous_counts
    from genosynth.sampling.ld_guidance import (_class_thresholds, _copula_cov, _gauss_legendre,
                                                solve_residual_band)

    g = torch.Generator().manual_seed(0)
    v, w, n = 3000, 64, 64
    p1 = (torch.rand(1, v, generator=g) + 0.2 * torch.randn(n, v, generator=g)).clamp(0.02, 0.98)  # (n, V)
    probs = torch.stack([1 - p1, p1], 1)  # (n, 2, V)
    band = np.clip(np.random.default_rng(0).normal(0.2, 0.2, (v, w)), -0.9, 0.9)
    resid = solve_residual_band(probs, band, previous_counts(v, w))  # (V, w)
    m = p1.double()
    mc = m - m.mean(0)
    sd = (m.mean(0) - m.mean(0) ** 2).sqrt()
    a = _class_thresholds(probs.double())
    nodes, weights = _gauss_legendre(8)
    for lag in (13, 19, 25, 35, 48, 62):  # lags where the old iteration left pairs unsolved
        j = torch.arange(v - lag)
        target = torch.from_numpy(band[: v - lag, lag - 1]) * sd[j] * sd[j + lag] - (mc[:, j] * mc[:, j + lag]).mean(0)
        theta = torch.asin(torch.from_numpy(resid[: v - lag, lag - 1]))
        got, _ = _copula_cov(a[:, :, j], a[:, :, j + lag], theta, nodes, weights)
        reachable = (theta.abs() > 0.051) & (theta.abs() < 1.3)  # iterated (|first step| > small), well inside the bracket
        assert float((got - target)[reachable].abs().max()) < 1e-5  # the old failure left 0.007-0.014


def test_residual_solve_clamps_pairs_beyond_reach_and_solves_the_rest():
    """A target the copula cannot reach even at |R| = r_max gets exactly +-theta_max (on its sign's
    side); a reachable one is solved to its root, whatever the sign."""
    from genosynth.sampling.ld_guidance import _THETA_MAX, _class_thresholds, _copula_cov, _gauss_legendre, _solve_theta

    g = torch.Generator().manual_seed(1)
    n, p = 64, 400
    pa = (0.5 + 0.45 * torch.randn(n, p, generator=g).tanh()).clamp(0.01, 0.99)  # sharp marginals, (n, P)
    pb = (0.5 + 0.45 * torch.randn(n, p, generator=g).tanh()).clamp(0.01, 0.99)
    a = _class_thresholds(torch.stack([1 - pa, pa], 1).double())  # (n, 1, P)
    b = _class_thresholds(torch.stack([1 - pb, pb], 1).double())
    nodes, weights = _gauss_legendre(8)
    edge, _ = _copula_cov(a, b, torch.full((p,), _THETA_MAX, dtype=torch.float64), nodes, weights)  # (P,) most reachable
    sign = torch.where(torch.arange(p) % 2 == 0, 1.0, -1.0).double()
    target = sign * edge.abs() * torch.where(torch.arange(p) % 4 < 2, 0.5, 1.5).double()  # half reachable, half not
    theta = _solve_theta(a, b, target, nodes, weights, newton_iters=12, small=0.0)
    beyond = torch.arange(p) % 4 >= 2
    assert torch.equal(theta[beyond], sign[beyond] * _THETA_MAX)
    got, _ = _copula_cov(a[..., ~beyond], b[..., ~beyond], theta[~beyond], nodes, weights)
    assert float((got - target[~beyond]).abs().max()) < 1e-8


def test_auto_decoding_is_the_copula_on_a_sparse_panel_and_latent_guidance_on_a_dense_one():
    from genosynth.sampling.ld_guidance import auto_method

    v, w = 200, 8
    prior = CorrelationPrior(bands=ar_band(v, w, 0.5)[None], labels=["A"], window=w)
    cfg = CorrGuideConfig(window=w, reach_partners=8)
    chrom = np.ones(v, dtype=int)
    dense = np.arange(v) * 1_000  # every SNP has w neighbours on each side within 1 Mb
    sparse = np.arange(v) * 400_000  # at most 2 on each side within 1 Mb
    assert auto_method(prior, cfg, chrom=chrom, pos=dense) == "latent+copula"
    assert auto_method(prior, cfg, chrom=chrom, pos=sparse) == "copula"
    assert auto_method(prior, CorrGuideConfig(window=w, reach_partners=3), chrom=chrom, pos=sparse) == "latent+copula"
