"""Array helpers shared by the evaluation sections: dosages, chunked distances, pair correlations.

Nothing here builds a dense (n_variants x n_variants) or (n_people x n_people) matrix larger than
one block of ``chunk`` rows.
"""

from __future__ import annotations

import numpy as np


def allele_freq(g: np.ndarray) -> np.ndarray:
    """ALT allele frequency per variant of genotype counts.

    Parameters
    ----------
    g : int8, shape (n_people, n_variants); 0/1/2, -1 missing.

    Returns
    -------
    float64, shape (n_variants,); NaN where every call is missing.
    """
    ok = g >= 0
    n = ok.sum(axis=0, dtype=np.int64)
    s = np.where(ok, g, 0).sum(axis=0, dtype=np.int64)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(n > 0, s / (2.0 * np.maximum(n, 1)), np.nan)


def dosage(g: np.ndarray, fill: np.ndarray) -> np.ndarray:
    """Genotype counts as float32 with missing calls replaced by ``fill``.

    Parameters
    ----------
    g : int8, shape (n_people, n_variants)
    fill : float, shape (n_variants,), usually twice the real-train allele frequency.

    Returns
    -------
    float32, shape (n_people, n_variants)
    """
    x = g.astype(np.float32)
    miss = g < 0
    if miss.any():
        x[miss] = np.broadcast_to(fill.astype(np.float32), g.shape)[miss]
    return x


def nearest_distances(query: np.ndarray, ref: np.ndarray, *, exclude_self: bool = False,
                      chunk: int = 1024) -> np.ndarray:
    """Euclidean distance from each query row to its closest reference row, in blocks.

    Parameters
    ----------
    query : float32, shape (n_query, n_variants)
    ref : float32, shape (n_ref, n_variants)
    exclude_self : bool
        ``query`` and ``ref`` are the same set; row ``i`` is not compared with itself (by index,
        so exact duplicates of other people still count as distance 0).
    chunk : int
        Query rows per block; memory is ``chunk * n_ref`` floats.

    Returns
    -------
    float64, shape (n_query,)
    """
    q = np.ascontiguousarray(query, dtype=np.float32)
    r = np.ascontiguousarray(ref, dtype=np.float32)
    if exclude_self and q.shape[0] != r.shape[0]:
        raise ValueError("exclude_self needs query and ref to be the same set")
    rn = np.einsum("ij,ij->i", r, r)  # (R,)
    out = np.empty(q.shape[0], dtype=np.float64)
    for start in range(0, q.shape[0], chunk):
        block = q[start:start + chunk]  # (C, V)
        d2 = np.einsum("ij,ij->i", block, block)[:, None] + rn[None, :] - 2.0 * (block @ r.T)  # (C, R)
        if exclude_self:
            idx = np.arange(block.shape[0])
            d2[idx, start + idx] = np.inf
        out[start:start + block.shape[0]] = d2.min(axis=1)
    return np.sqrt(np.maximum(out, 0.0))


def distance_matrix(a: np.ndarray, b: np.ndarray, *, chunk: int = 1024) -> np.ndarray:
    """All Euclidean distances between rows of ``a`` and ``b``, computed in row blocks.

    Only for sets whose ``n_a * n_b`` matrix fits comfortably in memory (callers check).

    Returns
    -------
    float32, shape (n_a, n_b)
    """
    a = np.ascontiguousarray(a, dtype=np.float32)
    b = np.ascontiguousarray(b, dtype=np.float32)
    bn = np.einsum("ij,ij->i", b, b)
    out = np.empty((a.shape[0], b.shape[0]), dtype=np.float32)
    for s in range(0, a.shape[0], chunk):
        blk = a[s:s + chunk]
        d2 = np.einsum("ij,ij->i", blk, blk)[:, None] + bn[None, :] - 2.0 * (blk @ b.T)
        out[s:s + chunk] = np.sqrt(np.maximum(d2, 0.0))
    return out


def pairwise_distance_sample(a: np.ndarray, b: np.ndarray | None = None) -> np.ndarray:
    """All Euclidean distances within ``a`` (upper triangle) or between ``a`` and ``b``.

    Callers subsample first (a few hundred rows); returns float64, shape (n_pairs,).
    """
    a = np.asarray(a, dtype=np.float32)
    an = np.einsum("ij,ij->i", a, a)
    if b is None:
        d2 = an[:, None] + an[None, :] - 2.0 * (a @ a.T)
        iu = np.triu_indices(a.shape[0], k=1)
        d2 = d2[iu]
    else:
        b = np.asarray(b, dtype=np.float32)
        d2 = (an[:, None] + np.einsum("ij,ij->i", b, b)[None, :] - 2.0 * (a @ b.T)).ravel()
    return np.sqrt(np.maximum(d2, 0.0)).astype(np.float64)


def column_moments(x_int8: np.ndarray, fill: np.ndarray, *, chunk: int = 4096) -> tuple[np.ndarray, np.ndarray]:
    """Per-variant mean and standard deviation of dosages (missing filled), float64 (n_variants,) each."""
    n, v = x_int8.shape
    mean = np.empty(v)
    std = np.empty(v)
    for s in range(0, v, chunk):
        x = dosage(x_int8[:, s:s + chunk], fill[s:s + chunk]).astype(np.float64)
        mean[s:s + chunk] = x.mean(axis=0)
        std[s:s + chunk] = x.std(axis=0)
    return mean, std


def pair_correlations(g: np.ndarray, i: np.ndarray, j: np.ndarray, *, fill: np.ndarray,
                      chunk: int = 4096, dense_max: int = 2048) -> np.ndarray:
    """Pearson r between variant columns ``i[k]`` and ``j[k]`` for a list of pairs.

    With at most ``dense_max`` variants the (small) variant x variant correlation matrix is formed
    once and indexed; beyond that the pairs are processed in blocks of ``chunk`` without any
    variant x variant matrix.

    Parameters
    ----------
    g : int8, shape (n_people, n_variants)
    i, j : int64, shape (n_pairs,)
    fill : float, shape (n_variants,); value for missing calls.

    Returns
    -------
    float64, shape (n_pairs,); NaN where either variant is monomorphic in ``g``.
    """
    n, v = g.shape
    if len(i) == 0:
        return np.zeros(0)
    if v <= dense_max:
        x = dosage(g, fill).astype(np.float64)
        x -= x.mean(axis=0)
        sd = np.sqrt((x * x).mean(axis=0))
        with np.errstate(invalid="ignore", divide="ignore"):
            x /= np.where(sd > 0, sd, np.nan)
        x = np.nan_to_num(x)
        c = (x.T @ x) / n  # (V, V), V <= dense_max
        out = c[i, j]
        out[(sd[i] == 0) | (sd[j] == 0)] = np.nan
        return np.clip(out, -1.0, 1.0)
    mean, std = column_moments(g, fill)
    gt = np.ascontiguousarray(g.T)  # (V, N) int8: gathering variants becomes gathering rows
    mean32 = mean.astype(np.float32)[:, None]
    out = np.empty(len(i), dtype=np.float64)
    for s in range(0, len(i), chunk):
        ii, jj = i[s:s + chunk], j[s:s + chunk]
        xi = dosage(gt[ii].T, fill[ii]).T - mean32[ii]  # (C, N)
        xj = dosage(gt[jj].T, fill[jj]).T - mean32[jj]  # (C, N)
        cov = np.einsum("cn,cn->c", xi, xj).astype(np.float64) / n
        with np.errstate(invalid="ignore", divide="ignore"):
            out[s:s + chunk] = cov / (std[ii] * std[jj])
    out[~np.isfinite(out)] = np.nan
    return np.clip(out, -1.0, 1.0)


def pca_solver(n_rows: int, n_variants: int) -> str:
    """sklearn PCA solver: the covariance eigendecomposition while the variant x variant covariance
    is small, randomized SVD beyond (no dense variant x variant matrix for large panels)."""
    if n_variants <= 2048:
        return "covariance_eigh"
    return "randomized"
