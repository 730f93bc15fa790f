"""Tests of the DP within-label ancestry spread (genosynth.privacy.releases.release_ancestry_spread)
and its sampling shift (genosynth.sampling.ancestry)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from genosynth.errors import PrivacyError
from genosynth.privacy import PrivacyAccountant
from genosynth.privacy.releases import ancestry_basis, release_ancestry_spread, spread_clip
from genosynth.sampling.ancestry import draw_person_frequencies, person_logit_shift


def _admixed(seed: int = 0, v: int = 300, n: int = 200):
    """Two source populations and one admixed label whose people mix them in proportions t ~ U(0.2, 0.8)."""
    rng = np.random.default_rng(seed)
    a, b = rng.uniform(0.05, 0.95, size=(2, v))  # (V,), (V,)
    t = np.r_[np.ones(n), np.zeros(n), rng.uniform(0.2, 0.8, size=n)]  # (3n,) share of source a
    p = t[:, None] * a + (1 - t[:, None]) * b  # (3n, V) each person's own frequencies
    g = rng.binomial(2, p).astype(float)  # (3n, V)
    y = np.repeat([0, 1, 2], n)
    freq = np.stack([g[y == j].mean(0) / 2 for j in range(3)])  # (3, V) exact, as if released without noise
    return g, y, freq, a - b, t


def test_release_recovers_the_admixed_labels_spread_and_is_one_gaussian_event():
    g, y, freq, d, t = _admixed()
    acc = PrivacyAccountant()
    out = release_ancestry_spread(g, y, freq=freq, counts=np.bincount(y).astype(float), dims=2, clip=50.0,
                                  noise_multiplier=1e-9, rng=np.random.default_rng(1), accountant=acc)
    assert acc.events == [{"name": "ancestry_spread", "kind": "gaussian", "noise_multiplier": 1e-9, "count": 1}]
    basis = out["basis"]  # (V, 2)
    assert np.allclose(basis.T @ basis, np.eye(2))
    assert out["clip"] == pytest.approx(spread_clip(2, clip=50.0))
    # along the source axis the admixed people spread by var(t) |a - b|^2; pure labels hardly at all
    axis = basis.T @ (d / np.linalg.norm(d))  # (2,) the source axis in the basis
    expected = t[y == 2].var() * float(d @ d) * float(axis @ axis)
    got = float(axis @ out["cov"][2] @ axis)
    assert got == pytest.approx(expected, rel=0.15)
    assert float(np.linalg.eigvalsh(out["cov"][0]).max()) < 0.1 * got
    assert float(np.linalg.eigvalsh(out["cov"][1]).max()) < 0.1 * got
    for cov in out["cov"]:
        assert np.linalg.eigvalsh(cov).min() >= -1e-12  # positive semi-definite


def test_noise_scale_is_the_clip_squared_and_clipping_bounds_each_person():
    g, y, freq, _, _ = _admixed(seed=2)
    counts = np.bincount(y).astype(float)
    kw = dict(freq=freq, counts=counts, dims=2, noise_multiplier=1e-9)
    tight = release_ancestry_spread(g, y, clip=0.5, rng=np.random.default_rng(0), **kw)
    # clipped to c, nobody's second moment can exceed c^2: the admixed spread is capped
    assert np.trace(tight["cov"][2]) <= tight["clip"] ** 2 + 1e-9
    # with noise z, the spread of repeated releases of a pure label is z c^2 / n per entry
    z, c = 5.0, spread_clip(2, clip=3.0)
    draws = [release_ancestry_spread(g, y, freq=freq, counts=counts, dims=2, clip=3.0, noise_multiplier=z,
                                     rng=np.random.default_rng(r))["cov"][2][0, 1] for r in range(200)]
    assert np.std(draws) == pytest.approx(z * c * c / counts[2], rel=0.2)
    # noise far above the signal: every direction is below the noise edge, no spread is invented
    drowned = release_ancestry_spread(g, y, freq=freq, counts=counts, dims=2, clip=3.0, noise_multiplier=500.0,
                                      rng=np.random.default_rng(0))
    assert np.all(drowned["cov"] == 0.0)


def test_release_needs_two_labels():
    g, y, freq, _, _ = _admixed()
    with pytest.raises(PrivacyError, match="ancestry_dims=0"):
        release_ancestry_spread(g[y == 0], y[y == 0], freq=freq[:1], counts=np.ones(1), dims=2, clip=3.0,
                                noise_multiplier=1.0, rng=np.random.default_rng(0))
    assert ancestry_basis(freq[:1], 4).shape == (freq.shape[1], 0)


def _spread(seed: int = 0, v: int = 50, k: int = 2, n_labels: int = 3) -> dict:
    rng = np.random.default_rng(seed)
    basis, _ = np.linalg.qr(rng.normal(size=(v, k)))  # (V, k) orthonormal
    root = rng.normal(0, 0.3, size=(n_labels, k, k))
    return {"basis": basis, "freq": rng.uniform(0.2, 0.8, size=(n_labels, v)), "cov": root @ root.transpose(0, 2, 1)}


def test_person_frequencies_follow_the_released_covariance():
    spread = _spread()
    labels = torch.full((20000,), 1)
    p = draw_person_frequencies(spread, labels, rng=torch.Generator().manual_seed(0)).numpy()  # (P, V)
    coords = (p - spread["freq"][1]) @ spread["basis"]  # (P, k)
    assert np.allclose(coords.mean(0), 0.0, atol=0.02)
    assert np.allclose(np.cov(coords.T), spread["cov"][1], atol=0.01)


@pytest.mark.parametrize("n_classes,per", [(2, 2), (3, 1)])
def test_logit_shift_moves_a_label_mean_row_to_the_persons_frequencies(n_classes, per):
    spread = _spread(seed=1)
    q = torch.as_tensor(spread["freq"])  # (L, V)
    labels = torch.tensor([0, 2, 1, 1]).repeat_interleave(per)  # (B,) rows of 4 people
    m = torch.arange(n_classes, dtype=torch.float64)[None, :, None]  # (1, K, 1)
    qb = q[labels][:, None, :]  # (B, 1, V)
    binom = torch.tensor([float(math.comb(n_classes - 1, j)) for j in range(n_classes)]).log()[None, :, None]
    base = binom + m * qb.log() + (n_classes - 1 - m) * (1 - qb).log()  # (B, K, V) binomial log-probabilities at q
    shift = person_logit_shift(spread, labels, rows_per_person=per, n_classes=n_classes,
                               rng=torch.Generator().manual_seed(3))
    assert shift.shape == (labels.shape[0], n_classes, q.shape[1])
    probs = torch.softmax(base + shift.double(), dim=1)  # (B, K, V)
    alt = (probs * m).sum(1) / (n_classes - 1)  # (B, V) expected ALT fraction
    p = draw_person_frequencies(spread, labels[::per], rng=torch.Generator().manual_seed(3))  # (P, V)
    assert torch.allclose(alt, p.repeat_interleave(per, dim=0), atol=1e-5)
    if per == 2:
        assert torch.equal(shift[0::2], shift[1::2])  # both haplotypes of a person share its ancestry
