"""Tests of the DP within-label ancestry spread (genosynth.privacy.releases.release_ancestry_spread)
and its sampling shift (genosynth.sampling.ancestry)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from genosynth.errors import InputError, PrivacyError
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


@pytest.mark.parametrize("denoiser", ["low_rank", "shrink"])
def test_phenotype_release_is_one_event_pools_labels_and_shares_the_contrast(denoiser):
    """One ``allele_frequencies`` event over (label, phenotype) groups; labels, case fractions and contrast from it."""
    from genosynth.errors import InputError
    from genosynth.privacy.releases import release_phenotype_frequencies

    rng = np.random.default_rng(3)
    n, v = 400, 30
    y = np.repeat([0, 1], n // 2)
    pheno = (rng.random(n) < np.where(y == 0, 0.25, 0.6)).astype(np.int64)
    p = np.stack([rng.uniform(0.1, 0.5, size=v), rng.uniform(0.2, 0.6, size=v)])[y]  # (N, V) two ancestries
    effect = np.where(np.arange(v) < 5, 0.3, 0.0)  # the same case/control shift in both labels
    g = rng.binomial(2, p + effect * pheno[:, None]).astype(float)  # (N, V)
    acc = PrivacyAccountant()
    out = release_phenotype_frequencies(g, y, pheno, 2, noise_multiplier=1e-9, rng=np.random.default_rng(0),
                                        accountant=acc, denoiser=denoiser)
    assert acc.events == [{"name": "allele_frequencies", "kind": "gaussian", "noise_multiplier": 1e-9, "count": 1}]
    exact_labels = np.stack([g[y == j].mean(0) / 2 for j in range(2)])
    assert np.allclose(out["freq"], np.clip(exact_labels, 1e-3, 1 - 1e-3), atol=1e-6)
    assert np.allclose(out["counts"], [200, 200], atol=1e-5) and np.allclose(out["mix"], [0.5, 0.5])
    grp = 2 * y + pheno
    assert np.allclose(out["group_counts"], np.bincount(grp, minlength=4), atol=1e-5)
    pi = np.array([pheno[y == j].mean() for j in range(2)])
    assert np.allclose(out["case_fraction"], pi, atol=1e-6)
    diff = np.stack([g[(y == j) & (pheno == 1)].mean(0) / 2 - g[(y == j) & (pheno == 0)].mean(0) / 2
                     for j in range(2)])  # (L, V) exact per-label contrasts
    assert out["contrast_weight"] == pytest.approx(1.0, abs=1e-6)  # no noise: nothing to shrink
    assert diff.min(axis=0)[0] - 1e-9 <= out["contrast"][0] <= diff.max(axis=0)[0] + 1e-9  # a weighted mean
    gf = out["group_freq"].reshape(2, 2, v)  # (L, controls/cases, V)
    assert np.allclose(gf[:, 1] - gf[:, 0], out["contrast"], atol=1e-6)
    assert np.allclose((1 - pi)[:, None] * gf[:, 0] + pi[:, None] * gf[:, 1], out["freq"], atol=1e-6)
    # with noise (z 1.5): the pooled, shrunk contrast still stands out at the 5 shifted SNPs
    noisy = release_phenotype_frequencies(g, y, pheno, 2, noise_multiplier=1.5, rng=np.random.default_rng(5),
                                          denoiser=denoiser)
    assert 0.0 < noisy["contrast_weight"] < 1.0
    assert np.abs(noisy["contrast"][:5]).mean() > 3 * np.abs(noisy["contrast"][5:]).mean()
    assert np.corrcoef(noisy["contrast"], diff.mean(0))[0, 1] > 0.8
    assert 0.01 <= noisy["case_fraction"].min() and noisy["case_fraction"].max() <= 0.99
    with pytest.raises(InputError, match="remove the people without a phenotype"):
        release_phenotype_frequencies(g, y, np.where(np.arange(n) == 0, 2, pheno), 2, noise_multiplier=1.0,
                                      rng=np.random.default_rng(0))


@pytest.mark.parametrize("centre", ["one", "public"])
def test_public_rows_keep_the_event_and_all_nan_rows_change_nothing(centre):
    """Public frequencies (post-processing, or the centre of the release) keep the Gaussian event and its noise
    multiplier; all-NaN rows change nothing; a public label's count comes out within a few people."""
    from genosynth.privacy.releases import release_label_frequencies

    rng = np.random.default_rng(3)
    v, n = 200, 30
    p = rng.uniform(0.1, 0.9, size=(2, v))
    y = np.repeat([0, 1], n)
    dos = rng.binomial(2, p[y]).astype(np.float64)  # (2n, V)
    runs = {}
    for key, public in (("none", None), ("nan", np.full((2, v), np.nan)), ("row", np.vstack([p[0], np.full(v, np.nan)]))):
        acc = PrivacyAccountant()
        runs[key] = release_label_frequencies(dos, y, 2, noise_multiplier=0.7, rng=np.random.default_rng(9),
                                              accountant=acc, public_freq=public, centre=centre)
        assert acc.events == [{"name": "allele_frequencies", "kind": "gaussian", "noise_multiplier": 0.7, "count": 1}]
    assert np.array_equal(runs["nan"]["freq"], runs["none"]["freq"])
    assert np.array_equal(runs["nan"]["counts"], runs["none"]["counts"])
    assert np.isnan(runs["nan"]["public_weight"]).all()
    assert np.abs(runs["row"]["freq"][0] - p[0]).mean() < np.abs(runs["none"]["freq"][0] - p[0]).mean()
    assert abs(runs["row"]["counts"][0] - n) < 3.0  # fitted on all SNPs / weighted count slot (released alone: sd ~10)


def test_centred_release_bounds_each_person_and_its_sensitivity():
    """Centred on public rows, every person's vector (clipped deviation, weighted count) stays within the sensitivity."""
    from genosynth.privacy.releases import PUBLIC_CLIP_FRACTION, PUBLIC_COUNT_WEIGHT, _label_sums, public_centres

    rng = np.random.default_rng(5)
    v = 150
    public = np.vstack([rng.uniform(0.0, 1.0, v), np.full(v, np.nan), rng.uniform(0.0, 1.0, v)])
    centres = public_centres(public)  # (3, V)
    assert np.allclose(centres[1], (centres[0] + centres[2]) / 2)  # a label without a row: the public mean
    g = rng.integers(0, 3, size=(40, v)).astype(np.float64)  # (N, V), far from the public rows: many clipped
    g[0] = np.where(public[0] < 0.5, 2.0, 0.0)  # the farthest person possible from label 0's row
    y = np.arange(40) % 3
    bound = PUBLIC_CLIP_FRACTION * math.sqrt(v)
    for i in range(40):  # one person alone: the sums are that person's vector
        one, sens = _label_sums(g[i:i + 1], y[i:i + 1], 3, ploidy=2, clip_fraction=PUBLIC_CLIP_FRACTION,
                                denoiser="low_rank", centres=centres, count_weight=PUBLIC_COUNT_WEIGHT)
        assert sens == pytest.approx(math.sqrt(bound ** 2 + PUBLIC_COUNT_WEIGHT ** 2))
        assert np.linalg.norm(one) <= sens + 1e-9
        assert one[y[i], v] == PUBLIC_COUNT_WEIGHT
    with pytest.raises(PrivacyError, match="count_weight"):
        _label_sums(g, y, 3, ploidy=2, clip_fraction=None, denoiser="low_rank", count_weight=0.0)


def test_centred_clipped_release_is_closer_than_unclipped_and_than_centred_on_one():
    """The default bound of a release centred on public rows clips few people and removes noise: a new label and a
    public one come out closer to the truth than with no clipping or centred on 1 (same noise multiplier, draws)."""
    from genosynth.privacy.releases import release_label_frequencies

    rng = np.random.default_rng(1)
    v, n = 400, 80
    p = rng.uniform(0.1, 0.9, size=(3, v))
    p[2] = np.clip(0.5 * p[0] + 0.5 * p[1] + rng.normal(0, 0.05, v), 0.05, 0.95)  # new to the public panel
    y = np.repeat([0, 1, 2], n)
    dos = rng.binomial(2, p[y]).astype(np.float64)  # (3n, V)
    exact = np.stack([dos[y == j].mean(0) / 2 for j in range(3)])  # (3, V)
    public = np.vstack([p[0], p[1], np.full(v, np.nan)])
    err = {(None, "public"): [], (1.0, "public"): [], (None, "one"): []}
    for draw in range(6):
        for clip, centre in err:
            rel = release_label_frequencies(dos, y, 3, noise_multiplier=0.3, rng=np.random.default_rng(draw),
                                            public_freq=public, clip_fraction=clip, centre=centre)
            err[clip, centre].append(np.sqrt(((rel["freq"] - exact) ** 2).mean(axis=1)))  # (3,)
    tight, loose, one = (np.mean(err[k], axis=0) for k in err)
    assert tight[2] < 0.9 * loose[2] and tight[0] < loose[0]
    assert tight[2] < 0.9 * one[2]
    with pytest.raises(InputError, match="frequency centre"):
        release_label_frequencies(dos, y, 3, noise_multiplier=0.3, rng=np.random.default_rng(0), centre="half")
