"""Fidelity: allele frequencies, linkage disequilibrium, PCA, heterozygosity, pairwise distances.

Every function compares a real-train reference with one other set (the real holdout, which gives
the ceiling, or a synthetic set). Inputs are genotype counts, int8 shape (n_people, n_variants).

References
----------
Patterson N., Price A. L., Reich D. (2006) Population structure and eigenanalysis. PLoS Genetics
2(12): e190. (SNP standardisation before PCA.)
Szekely G. J., Rizzo M. L. (2013) Energy statistics: a class of statistics based on distances.
Journal of Statistical Planning and Inference 143(8): 1249-1272.
Yelmen B. et al. (2021) Creating artificial human genomes using generative neural networks.
PLOS Genetics 17(2): e1009303. (AF, LD and PCA comparisons of synthetic genomes.)
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from scipy import stats

from genosynth.stats.frequency import allele_frequencies, dosage
from genosynth.evaluate._arrays import pairwise_distance_sample, pca_solver


# ---------------------------------------------------------------------------------- helpers
def pearson(a: np.ndarray, b: np.ndarray) -> float:
    """Pearson r over positions where both are finite; NaN when fewer than 3 or a constant side."""
    ok = np.isfinite(a) & np.isfinite(b)
    if ok.sum() < 3 or np.std(a[ok]) == 0 or np.std(b[ok]) == 0:
        return float("nan")
    return float(np.corrcoef(a[ok], b[ok])[0, 1])


def spearman(a: np.ndarray, b: np.ndarray) -> float:
    ok = np.isfinite(a) & np.isfinite(b)
    if ok.sum() < 3:
        return float("nan")
    return float(stats.spearmanr(a[ok], b[ok]).statistic)


# ---------------------------------------------------------------------------------- allele frequencies
def allele_frequency_metrics(af_ref: np.ndarray, af_other: np.ndarray) -> dict:
    """Agreement of two allele-frequency vectors, float64 shape (n_variants,) each."""
    ok = np.isfinite(af_ref) & np.isfinite(af_other)
    d = np.abs(af_ref[ok] - af_other[ok])
    return {
        "r": pearson(af_ref, af_other),
        "mean_abs_diff": float(d.mean()) if d.size else float("nan"),
        "max_abs_diff": float(d.max()) if d.size else float("nan"),
        "n_variants": int(ok.sum()),
    }


# ---------------------------------------------------------------------------------- LD pair sets
def near_pairs(variants: pd.DataFrame, *, window_bp: int, max_pairs: int,
               rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, int]:
    """SNP pairs on the same chromosome at most ``window_bp`` apart, subsampled to ``max_pairs``.

    Returns
    -------
    i, j : int64, shape (n_pairs,), column indices with ``i != j``
    total : int, the number of such pairs before subsampling
    """
    chrom = variants["chrom"].astype(str).to_numpy()
    pos = variants["pos"].to_numpy(dtype=np.int64)
    counts = []
    order_all = []
    for c in pd.unique(chrom):
        idx = np.flatnonzero(chrom == c)
        idx = idx[np.argsort(pos[idx], kind="stable")]
        p = pos[idx]
        end = np.searchsorted(p, p + window_bp, side="right")  # first index beyond the window
        k = end - np.arange(len(p)) - 1  # partners after each SNP
        order_all.append((idx, k))
        counts.append(int(k.sum()))
    total = int(sum(counts))
    ii, jj = [], []
    for idx, k in order_all:
        if k.sum() == 0:
            continue
        a = np.repeat(np.arange(len(idx)), k)
        offs = np.arange(k.sum()) - np.repeat(np.cumsum(k) - k, k) + 1
        ii.append(idx[a])
        jj.append(idx[a + offs])
    if not ii:
        return np.zeros(0, np.int64), np.zeros(0, np.int64), 0
    i = np.concatenate(ii)
    j = np.concatenate(jj)
    if len(i) > max_pairs:
        keep = np.sort(rng.choice(len(i), size=max_pairs, replace=False))
        i, j = i[keep], j[keep]
    return i.astype(np.int64), j.astype(np.int64), total


def random_pairs(n_variants: int, *, max_pairs: int, rng: np.random.Generator,
                 chrom: np.ndarray | None = None, same_chrom: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """Uniformly drawn distinct SNP pairs (all of them when there are few), int64 (n_pairs,) each.

    With ``same_chrom`` only pairs on one chromosome are drawn (for LD decay curves).
    """
    if same_chrom:
        assert chrom is not None
        ii, jj = [], []
        groups = [np.flatnonzero(chrom == c) for c in pd.unique(chrom)]
        sizes = np.array([len(g) * (len(g) - 1) // 2 for g in groups], dtype=np.float64)
        if sizes.sum() == 0:
            return np.zeros(0, np.int64), np.zeros(0, np.int64)
        share = np.floor(max_pairs * sizes / sizes.sum()).astype(int)
        for g, want in zip(groups, share):
            if len(g) < 2 or want == 0:
                continue
            a, b = random_pairs(len(g), max_pairs=int(want), rng=rng)
            ii.append(g[a])
            jj.append(g[b])
        if not ii:
            return np.zeros(0, np.int64), np.zeros(0, np.int64)
        return np.concatenate(ii), np.concatenate(jj)
    n_all = n_variants * (n_variants - 1) // 2
    if n_all <= max_pairs:
        i, j = np.triu_indices(n_variants, k=1)
        return i.astype(np.int64), j.astype(np.int64)
    i = rng.integers(0, n_variants, size=int(max_pairs * 1.3) + 16)
    j = rng.integers(0, n_variants, size=i.size)
    lo, hi = np.minimum(i, j), np.maximum(i, j)
    ok = lo != hi
    key = np.unique(lo[ok] * n_variants + hi[ok])
    if key.size > max_pairs:
        key = rng.choice(key, size=max_pairs, replace=False)
    key = np.sort(key)
    return (key // n_variants).astype(np.int64), (key % n_variants).astype(np.int64)


def compare_pair_r(r_ref: np.ndarray, r_other: np.ndarray) -> dict:
    """Agreement of SNP-pair correlations: pairs undefined in the reference are dropped, pairs
    undefined in the other set (a monomorphic SNP) count as r = 0."""
    ok = np.isfinite(r_ref)
    a = r_ref[ok]
    b = np.nan_to_num(r_other[ok], nan=0.0)
    return {
        "r": pearson(a, b),
        "r2_r": pearson(a ** 2, b ** 2),
        "mean_abs_diff": float(np.abs(a - b).mean()) if a.size else float("nan"),
        "n_pairs": int(a.size),
    }


def ld_decay(r: np.ndarray, dist: np.ndarray, edges: np.ndarray) -> list[float | None]:
    """Mean r^2 per distance bin ``[edges[k], edges[k+1])``; None for empty bins."""
    out = []
    r2 = r ** 2
    for lo, hi in zip(edges[:-1], edges[1:]):
        m = (dist >= lo) & (dist < hi) & np.isfinite(r2)
        out.append(float(r2[m].mean()) if m.any() else None)
    return out


def ld_strength(decay: list, null: list, decay_ref: list, null_ref: list, n_pairs: list[int], *,
                min_r2: float, min_pairs: int) -> dict:
    """LD strength of a set against real data: mean r^2 of the set over that of the reference, per bin.

    Each mean r^2 (from :func:`ld_decay`, per distance bin) first loses ``null``, the r^2 that chance
    alone gives at the set's sample size (``1 / (n - 1)`` for n people), so sets of different sizes
    compare. Bins where the reference's corrected r^2 is below ``min_r2`` or that hold fewer than
    ``min_pairs`` pairs are skipped (None).

    Returns
    -------
    dict
        ``ratio`` (per bin, None when skipped), ``worst`` (the ratio farthest from 1 on a log scale,
        NaN when no bin is usable) and ``worst_bin`` (its index, or None).
    """
    ratios: list[float | None] = []
    for d, c, dr, cr, k in zip(decay, null, decay_ref, null_ref, n_pairs):
        if d is None or dr is None or c is None or cr is None or k < min_pairs or dr - cr < min_r2:
            ratios.append(None)
            continue
        ratios.append(float(max(d - c, 0.0) / (dr - cr)))
    usable = [(abs(np.log(max(r, 1e-6))), b) for b, r in enumerate(ratios) if r is not None]
    if not usable:
        return {"ratio": ratios, "worst": float("nan"), "worst_bin": None}
    b = max(usable)[1]
    return {"ratio": ratios, "worst": ratios[b], "worst_bin": int(b)}


# ---------------------------------------------------------------------------------- PCA
class RealPCA:
    """PCA fitted on real-train genotypes, standardised as in Patterson et al. (2006).

    Each SNP is centred by ``2p`` and scaled by ``sqrt(2p(1-p))`` of real train; monomorphic SNPs get
    scale 1 (they contribute nothing). Other sets are projected with the same loadings.
    """

    def __init__(self, g_train: np.ndarray, *, n_components: int, seed: int):
        from sklearn.decomposition import PCA

        p = allele_frequencies(g_train, missing="skip")
        p = np.where(np.isfinite(p), p, 0.0)
        self.center = (2 * p).astype(np.float32)
        scale = np.sqrt(2 * p * (1 - p))
        self.scale = np.where(scale > 0, scale, 1.0).astype(np.float32)
        x = self._standardise(g_train)
        k = int(max(1, min(n_components, x.shape[0] - 1, x.shape[1])))
        self.pca = PCA(n_components=k, svd_solver=pca_solver(x.shape[0], x.shape[1]),
                       random_state=seed)
        self.pca.fit(x)
        self.explained_variance_ratio = self.pca.explained_variance_ratio_

    def _standardise(self, g: np.ndarray) -> np.ndarray:
        return (dosage(g, self.center) - self.center) / self.scale  # (N, V)

    def transform(self, g: np.ndarray, *, chunk: int = 1024) -> np.ndarray:
        """PC scores, float64 shape (n_people, n_components)."""
        out = [self.pca.transform(self._standardise(g[s:s + chunk])) for s in range(0, g.shape[0], chunk)]
        return np.vstack(out) if out else np.zeros((0, self.pca.n_components_))


def energy_distance(a: np.ndarray, b: np.ndarray, *, max_samples: int, rng: np.random.Generator) -> float:
    """Multivariate energy distance ``2E|X-Y| - E|X-X'| - E|Y-Y'|`` (U-statistics within sets).

    Parameters
    ----------
    a : float, shape (n_a, k); b : float, shape (n_b, k). Each is subsampled to ``max_samples`` rows.
    """
    terms = _energy_terms(a, b, max_samples=max_samples, rng=rng)
    if terms is None:
        return float("nan")
    ab, aa, bb = terms
    return float(2 * ab - aa - bb)


def _energy_terms(a: np.ndarray, b: np.ndarray, *, max_samples: int, rng: np.random.Generator):
    """Mean distances ``(E|X-Y|, E|X-X'|, E|Y-Y'|)`` after subsampling each set to ``max_samples``
    rows; None when a set has fewer than 2 rows."""
    if len(a) > max_samples:
        a = a[rng.choice(len(a), max_samples, replace=False)]
    if len(b) > max_samples:
        b = b[rng.choice(len(b), max_samples, replace=False)]
    if len(a) < 2 or len(b) < 2:
        return None
    ab = pairwise_distance_sample(a, b).mean()
    return ab, pairwise_distance_sample(a).mean(), pairwise_distance_sample(b).mean()


def energy_coefficient(a: np.ndarray, b: np.ndarray, *, max_samples: int, rng: np.random.Generator) -> float:
    """Energy distance divided by ``2 E|X-Y|``: 0 for identical distributions, at most 1, scale-free.

    Same subsampling as :func:`energy_distance`; a U-statistic, so it can be slightly negative when
    the two samples come from one distribution.
    """
    terms = _energy_terms(a, b, max_samples=max_samples, rng=rng)
    if terms is None:
        return float("nan")
    ab, aa, bb = terms
    return float((2 * ab - aa - bb) / (2 * ab)) if ab > 0 else float("nan")


# ---------------------------------------------------------------------------------- per-person summaries
def heterozygosity(g: np.ndarray) -> np.ndarray:
    """Fraction of heterozygous calls per person, float64 shape (n_people,)."""
    ok = g >= 0
    with np.errstate(invalid="ignore", divide="ignore"):
        return (g == 1).sum(axis=1) / np.maximum(ok.sum(axis=1), 1)


def histogram(values: np.ndarray, edges: np.ndarray) -> list[int]:
    """Counts per bin (aggregate; safe to publish)."""
    return np.histogram(values[np.isfinite(values)], bins=edges)[0].astype(int).tolist()


def distribution_metrics(ref: np.ndarray, other: np.ndarray) -> dict:
    """Mean, sd and Wasserstein-1 distance / KS statistic between two 1-D samples."""
    ref = ref[np.isfinite(ref)]
    other = other[np.isfinite(other)]
    if ref.size == 0 or other.size == 0:
        return {"mean_ref": None, "mean": None, "sd": None, "wasserstein": None, "ks": None}
    return {
        "mean_ref": float(ref.mean()),
        "mean": float(other.mean()),
        "sd_ref": float(ref.std()),
        "sd": float(other.std()),
        "mean_diff": float(other.mean() - ref.mean()),
        "wasserstein": float(stats.wasserstein_distance(ref, other)),
        "ks": float(stats.ks_2samp(ref, other).statistic),
    }
